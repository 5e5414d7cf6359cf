//! `tinypoet generate`: write a poem with a model blob through `tinypoet-core`, streaming each
//! character as it is generated.
//!
//! Output contract (the firmware example prints exactly the same bytes for the same blob, seed
//! and settings): stdout receives the prompt, then every generated character as soon as the
//! core emits it, then one `\n`. Nothing else goes to stdout; the seed and other information go
//! to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::simplified::{to_traditional, unknown_char_message, Converted};
use anyhow::{anyhow, bail, Context};
use clap::Args;
use tinypoet_core::constrain::{Form, FormSpec};

use super::kv_arg::KvArg;
use tinypoet_core::{
    state_words, Decoder, GenerateSettings, Generator, KvPrecision, Model, Prompt, SamplerSettings,
    StopReason,
};

/// The bundled pretrained model (continues text), looked up like the others.
pub const BUNDLED_MODEL: &str = "models/tinypoet-tang.tpb";

/// The bundled aligned model (writes a poem for a title and ends it): the default of
/// `tinypoet generate` without a positional prompt.
pub const BUNDLED_ALIGNED_MODEL: &str = "models/tinypoet-tang-aligned.tpb";

/// The title of a bare `tinypoet generate`.
pub const DEFAULT_TITLE: &str = "春夜喜雨";

/// Write a poem with a model blob (the bundled model by default).
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  tinypoet generate                       # a poem starting with 春夜喜雨, bundled model
  tinypoet generate 白日 --seed 7          # reproducible: same seed, same poem
  tinypoet generate 月 --temperature 0.8 --top-k 40 --top-p 0.95 --repetition-penalty 1.1
  tinypoet generate 江 --no-stop --max-len 400      # keep going past the end of the poem
  tinypoet generate 山 --stop '。' --model runs/tang/model.tpb
  tinypoet generate 春夜喜雨 --form 五絕                 # four lines of five, 春夜喜雨 as the title
  tinypoet generate --title 春夜喜雨 --form 七律 --rhyme  # instruction prompt; even lines rhyme
  tinypoet generate --title 静夜思 --seed 7              # simplified input: 静 becomes 靜
  tinypoet generate 江 --form qijue --acrostic 春夜喜雨   # 藏頭: 春 夜 喜 雨 open the four lines

Forms (--form): 五絕 (五绝, 五言絕句, wujue) 4 lines of 5 characters, 七絕 (七绝, qijue) 4 of 7,
五律 (wulu) 8 of 5, 七律 (qilu) 8 of 7, free (default). A form is written in the corpus's layout,
one couplet per line (XXXXX，XXXXX。), and ends after its last line. With a form the prompt is the
poem's title: the pretrained model continues the title and a newline (its training layout); with --title the
instruction prompt of the finetuned models is used instead. --acrostic puts its characters at
the start of the verse lines (each 5- or 7-character half of a couplet), one per line, at most
as many as the form has lines. --rhyme makes the even verse lines (2nd, 4th, ...) end in one
平水韻 rhyme group, chosen by the first of them; it needs a model blob with a rhyme table
(the bundled ones have it; `tinypoet rhyme-table` adds one).

The Tang corpus is in traditional Chinese: a prompt, title or acrostic in simplified Chinese
(静夜思, 黄河) is converted (靜夜思, 黃河; one character at a time with the table the web page and
the board console use, so every platform writes the same poem: 皇后 gives 皇後, 头发 gives 頭發) and
stderr says what was converted; --no-convert keeps it as typed. Characters still outside the
model's vocabulary are an error.
stdout gets the prompt and the generated text only (then a newline); the seed and the stop
reason go to stderr.

Which model and which prompt: with --title, or with no prompt at all (a bare `tinypoet generate`
writes a poem for the title 春夜喜雨), the bundled aligned model models/tinypoet-tang-aligned.tpb
writes a poem for the title and ends it by itself; with a positional PROMPT the bundled
pretrained model models/tinypoet-tang.tpb continues that text. --model (else $TINYPOET_MODEL)
picks another blob; without a prompt it takes a title when its recipe is a finetune or
alignment stage, else it continues 春夜喜雨 as text. Bundled models are found from the
executable's location or the current directory upwards.")]
pub struct GenerateArgs {
    /// Text to continue (the poem's first characters) with the pretrained model; without it
    /// the aligned model writes a poem for a title (see below).
    pub prompt: Option<String>,
    /// Model blob (default: the bundled models/tinypoet-tang.tpb).
    #[arg(long, value_name = "BLOB")]
    pub model: Option<PathBuf>,
    /// Sampler seed (default: random, printed on stderr).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Softmax temperature; 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Keep only the k most likely characters (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set with this much probability (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Divide the logits of recently used characters by this (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Stop sequence (repeatable; `\n` is a newline). Default: a blank line (end of poem).
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Do not stop at the end of the poem (only at end-of-text or --max-len).
    #[arg(long, conflicts_with = "stop")]
    pub no_stop: bool,
    /// Maximum number of generated characters.
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// KV cache precision (int8: the RP2040 firmware's cache, same text as the board).
    #[arg(long, value_enum, default_value_t = KvArg::F16)]
    pub kv: KvArg,
    /// Write a poem for this title (the finetuned/aligned models' instruction prompt) instead
    /// of continuing PROMPT. stdout: the title, a newline, the poem.
    #[arg(long, conflicts_with = "prompt")]
    pub title: Option<String>,
    /// Verse form: 五絕|七絕|五律|七律 (also 五绝 七绝, wujue qijue wulu qilu) or free.
    #[arg(long, value_name = "FORM", default_value = "free")]
    pub form: String,
    /// 藏頭 acrostic: these characters open the verse lines, one per line (needs --form).
    #[arg(long, value_name = "CHARS", default_value = "")]
    pub acrostic: String,
    /// The even verse lines end in one rhyme group (needs --form and a blob with a rhyme table).
    #[arg(long)]
    pub rhyme: bool,
    /// Take the prompt, title and acrostic as typed (no simplified -> traditional conversion).
    #[arg(long)]
    pub no_convert: bool,
}

pub fn run(mut args: GenerateArgs) -> anyhow::Result<()> {
    // No positional prompt: a title (the aligned model's job) unless the chosen blob only
    // continues text.
    let bundled = match (&args.prompt, &args.title) {
        (Some(_), None) => BUNDLED_MODEL,
        _ => BUNDLED_ALIGNED_MODEL,
    };
    let path = resolve_model_named(args.model.as_deref(), bundled)?;
    let bytes = crate::io::fsx::read_input(&path, crate::io::fsx::limits::BLOB)
        .with_context(|| format!("cannot read model {}", path.display()))?;
    let model = Model::load(&bytes)
        .map_err(|e| anyhow!("{}: corrupt or not a tinypoet model: {e}", path.display()))?;
    if args.prompt.is_none() && args.title.is_none() {
        if takes_titles(&model) {
            args.title = Some(DEFAULT_TITLE.to_string());
        } else {
            args.prompt = Some(DEFAULT_TITLE.to_string());
        }
    }
    let prompt_arg = args.prompt.clone().unwrap_or_default();
    let form = Form::parse(&args.form).map_err(|e| anyhow!("--form {:?}: {e}", args.form))?;
    let spec = FormSpec {
        form,
        acrostic: &args.acrostic,
        rhyme: args.rhyme,
    };
    spec.validate().map_err(|e| anyhow!("{e}"))?;
    let tok = model.tokenizer();
    let typed = args.title.as_deref().unwrap_or(&prompt_arg);
    if typed.is_empty() {
        match args.title {
            Some(_) => bail!("the title is empty"),
            None => bail!("the prompt is empty: give the poem's first character(s), e.g. 春"),
        }
    }
    // Simplified -> traditional (title or prompt, and the acrostic); the report goes to stderr
    // once every character is known to the model.
    let convert = |text: &str| -> Converted {
        if args.no_convert {
            Converted::unchanged(text)
        } else {
            to_traditional(text)
        }
    };
    let converted = convert(typed);
    if let Some(c) = converted.text.chars().find(|&c| tok.id(c).is_err()) {
        bail!("{}", unknown_char_message(c, converted.typed_as(c)));
    }
    let acrostic = convert(&args.acrostic);
    if let Some(c) = acrostic.text.chars().find(|&c| tok.id(c).is_err()) {
        bail!(
            "--acrostic: {}",
            unknown_char_message(c, acrostic.typed_as(c)).replacen("prompt ", "", 1)
        );
    }
    // One line for the title and the acrostic, each replaced character once (the board
    // console prints the same pairs before its poem).
    let mut both = converted.clone();
    for &pair in &acrostic.changed {
        if !both.changed.contains(&pair) {
            both.changed.push(pair);
        }
    }
    if let Some(report) = both.report() {
        crate::errln!(
            "[simplified -> traditional (the corpus is traditional Chinese): {report}; \
             --no-convert keeps the text as typed]"
        );
    }
    let spec = FormSpec {
        acrostic: &acrostic.text,
        ..spec
    };
    spec.validate().map_err(|e| anyhow!("{e}"))?;
    let title = args.title.as_ref().map(|_| converted.text.as_str());
    let typed_prompt = if title.is_none() {
        converted.text.clone()
    } else {
        prompt_arg.clone()
    };
    let verse = model.verse(&spec).map_err(|e| match e {
        tinypoet_core::Error::NoRhymeTable => anyhow!(
            "--rhyme: {} has no rhyme table; add one with `tinypoet rhyme-table {} --table models/rhyme-pingshui.tsv -o OUT.tpb`",
            path.display(),
            path.display()
        ),
        e => anyhow!("{e}"),
    })?;
    if form != Form::Free && args.max_len < form.tokens() {
        bail!(
            "--max-len {} is too short for a {} ({} characters)",
            args.max_len,
            form.name(),
            form.tokens()
        );
    }
    // With a fixed form the prompt is the title: the pretrained model's layout is "TITLE\n"
    // then the poem; --title uses the instruction prompt. Stdout shows the title line either way.
    let text_prompt = if title.is_none() && form != Form::Free {
        format!("{typed_prompt}\n")
    } else {
        typed_prompt
    };
    let prompt = match title {
        Some(t) => Prompt::Title(t),
        None => Prompt::Text(&text_prompt),
    };
    let shown = match title {
        Some(t) => format!("{t}\n"),
        None => text_prompt.clone(),
    };
    let stops: Vec<String> = if args.no_stop {
        Vec::new()
    } else if args.stop.is_empty() {
        vec!["\n\n".to_string()]
    } else {
        args.stop.iter().map(|s| unescape(s)).collect()
    };
    // Checked before anything reaches stdout (the core checks too, after the prompt is out).
    for s in &stops {
        let n = s.chars().count();
        if n == 0 || n > tinypoet_core::generate::MAX_STOP_CHARS {
            bail!(
                "--stop {s:?}: a stop sequence must have 1 to {} characters",
                tinypoet_core::generate::MAX_STOP_CHARS
            );
        }
    }
    let stop_refs: Vec<&str> = stops.iter().map(|s| s.as_str()).collect();
    let seed = args.seed.unwrap_or_else(random_seed);
    let settings = GenerateSettings {
        sampler: SamplerSettings {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repetition_penalty: args.repetition_penalty,
            ..SamplerSettings::DEFAULT
        },
        seed,
        max_new_chars: args.max_len,
        stop: &stop_refs,
        stop_at_end_of_text: true,
    };
    settings
        .sampler
        .validate()
        .map_err(|e| anyhow!("invalid sampler setting: {e}"))?;
    let kv = KvPrecision::from(args.kv);
    let mut state = vec![0f32; state_words(model.config(), kv)];
    let mut dec = Decoder::new(&model, &mut state, kv).map_err(|e| anyhow!("{e}"))?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err: Option<std::io::Error> = None;
    let write_now = |out: &mut std::io::StdoutLock, s: &str| -> std::io::Result<()> {
        out.write_all(s.as_bytes())?;
        out.flush()
    };
    // A reader that went away (`| head -c 3`) ends the output, whenever it happens.
    let written = |r: std::io::Result<()>| match r {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow!(e).context("writing to stdout")),
    };
    if !written(write_now(&mut out, &shown))? {
        return Ok(());
    }
    let mut buf = [0u8; 4];
    let mut gen = Generator::with_constraint(&mut dec, prompt, &settings, verse)
        .map_err(|e| anyhow!("generation failed: {e}"))?;
    while let Some(c) = gen
        .next_char()
        .map_err(|e| anyhow!("generation failed: {e}"))?
    {
        if let Err(e) = write_now(&mut out, c.encode_utf8(&mut buf)) {
            write_err = Some(e);
            break;
        }
    }
    let mut summary = gen.summary();
    if write_err.is_some() {
        summary.reason = StopReason::Callback;
    }
    let rhyme_note = match (args.rhyme, model.rhyme_table()) {
        (true, Some(t)) => {
            let g = gen.constraint().rhyme_groups();
            let names: Vec<&str> = (0..128)
                .filter(|&i| g >> i & 1 == 1)
                .filter_map(|i| t.group_name(i))
                .collect();
            format!(" · rhyme {}", names.join("/"))
        }
        _ => String::new(),
    };
    if let Some(e) = write_err {
        written(Err(e))?;
        return Ok(());
    }
    if !written(write_now(&mut out, "\n"))? {
        return Ok(());
    }
    let reason = match summary.reason {
        StopReason::EndOfText => "end of text".to_string(),
        StopReason::StopSequence(i) => format!("stop sequence {:?}", stops[i]),
        StopReason::MaxLength => format!("--max-len {}", args.max_len),
        StopReason::Callback => "output closed".to_string(),
    };
    let form_note = if form == Form::Free {
        String::new()
    } else {
        format!(" · {}", form.name())
    };
    crate::errln!(
        "[{} · seed {seed} · {} characters · stopped at {reason}{form_note}{rhyme_note}]",
        path.display(),
        summary.emitted_chars
    );
    Ok(())
}

/// Whether `model` was trained on titles: its recipe is a finetune or alignment stage's.
pub fn takes_titles(model: &Model) -> bool {
    let recipe = model.manifest().recipe;
    recipe.starts_with("tinypoet finetune") || recipe.starts_with("tinypoet align")
}

/// `--model`, else `$TINYPOET_MODEL`, else `models/tinypoet-tang.tpb` in an ancestor of the
/// executable's directory (the repository it was built in) or of the current directory.
pub fn resolve_model(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
    resolve_model_named(arg, BUNDLED_MODEL)
}

/// As [`resolve_model`] with another bundled file (`bundled`, relative to the repository).
pub fn resolve_model_named(arg: Option<&Path>, bundled: &str) -> anyhow::Result<PathBuf> {
    // Only a missing path is "not found"; a device or a directory is refused by the read.
    if let Some(p) = arg {
        if !p.exists() {
            bail!("model file {} not found", p.display());
        }
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("TINYPOET_MODEL") {
        let p = PathBuf::from(p);
        if !p.exists() {
            bail!("model file {} (from TINYPOET_MODEL) not found", p.display());
        }
        return Ok(p);
    }
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    for r in &roots {
        let candidate = r.join(bundled);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no model: {bundled} was not found above the tinypoet executable or the current \
         directory; pass --model FILE"
    )
}

/// `\n`, `\t` and `\\` escapes in a stop sequence given on the command line.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // SplitMix64 finaliser over time and pid, so two runs in the same tick still differ.
    let mut z = t ^ ((std::process::id() as u64) << 32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_escapes() {
        assert_eq!(unescape("\\n\\n"), "\n\n");
        assert_eq!(unescape("。"), "。");
        assert_eq!(unescape("a\\tb\\\\"), "a\tb\\");
    }
}
