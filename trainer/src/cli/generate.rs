//! `tinypoet generate`: write a poem with a model blob through `tinypoet-core`, streaming each
//! character as it is generated.
//!
//! Output contract (the firmware example prints exactly the same bytes for the same blob, seed
//! and settings): stdout receives the prompt, then every generated character as soon as the
//! core emits it, then one `\n`. Nothing else goes to stdout; the seed and other information go
//! to stderr.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use tinypoet_core::{
    state_words, Decoder, GenerateSettings, KvPrecision, Model, SamplerSettings, StopReason,
};

/// File name of the bundled model, looked up under `models/`.
pub const BUNDLED_MODEL: &str = "models/tinypoet-tang.tpb";

/// Write a poem with a model blob (the bundled model by default).
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  tinypoet generate                       # a poem starting with 春夜喜雨, bundled model
  tinypoet generate 白日 --seed 7          # reproducible: same seed, same poem
  tinypoet generate 月 --temperature 0.8 --top-k 40 --top-p 0.95 --repetition-penalty 1.1
  tinypoet generate 江 --no-stop --max-len 400      # keep going past the end of the poem
  tinypoet generate 山 --stop '。' --model runs/tang/model.tpb

The prompt must use characters of the model's vocabulary: the Tang corpus is in traditional
Chinese (春夜喜雨, 東風, 這), so simplified characters it lacks (东风, 这) are rejected with a hint.
stdout gets the prompt and the generated text only (then a newline); the seed and the stop
reason go to stderr. The model is --model, else $TINYPOET_MODEL, else models/tinypoet-tang.tpb
found from the executable's location or the current directory upwards.")]
pub struct GenerateArgs {
    /// Prompt (the poem's first characters).
    #[arg(default_value = "春夜喜雨")]
    pub prompt: String,
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
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let path = resolve_model(args.model.as_deref())?;
    let bytes = crate::io::fsx::read_input(&path, crate::io::fsx::limits::BLOB)
        .with_context(|| format!("cannot read model {}", path.display()))?;
    let model = Model::load(&bytes)
        .map_err(|e| anyhow!("{}: corrupt or not a tinypoet model: {e}", path.display()))?;
    if args.prompt.is_empty() {
        bail!("the prompt is empty: give the poem's first character(s), e.g. 春");
    }
    let tok = model.tokenizer();
    for c in args.prompt.chars() {
        if tok.id(c).is_err() {
            bail!("{}", unknown_char_message(c, |x| tok.id(x).is_ok()));
        }
    }
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
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(&model, &mut state, KvPrecision::F16).map_err(|e| anyhow!("{e}"))?;

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
    if !written(write_now(&mut out, &args.prompt))? {
        return Ok(());
    }
    let mut buf = [0u8; 4];
    let summary = dec
        .generate(&args.prompt, &settings, |c| {
            match write_now(&mut out, c.encode_utf8(&mut buf)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    write_err = Some(e);
                    ControlFlow::Break(())
                }
            }
        })
        .map_err(|e| anyhow!("generation failed: {e}"))?;
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
    crate::errln!(
        "[{} · seed {seed} · {} characters · stopped at {reason}]",
        path.display(),
        summary.emitted_chars
    );
    Ok(())
}

/// `--model`, else `$TINYPOET_MODEL`, else `models/tinypoet-tang.tpb` in an ancestor of the
/// executable's directory (the repository it was built in) or of the current directory.
pub fn resolve_model(arg: Option<&Path>) -> anyhow::Result<PathBuf> {
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
        let candidate = r.join(BUNDLED_MODEL);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no model: {BUNDLED_MODEL} was not found above the tinypoet executable or the current \
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

fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3134F)
}

/// The one-line error for a prompt character missing from the vocabulary; `known` tells
/// whether a character is in it (for the traditional suggestion).
pub fn unknown_char_message(c: char, known: impl Fn(char) -> bool) -> String {
    let head = format!(
        "the prompt character '{c}' (U+{:04X}) is not in the model's vocabulary",
        c as u32
    );
    if let Some(t) = traditional_of(c) {
        let hint = if t.chars().all(&known) {
            format!("; try '{t}'")
        } else {
            String::new()
        };
        return format!(
            "{head}: it is a simplified Chinese character, and the corpus is in traditional Chinese{hint}"
        );
    }
    if is_cjk_ideograph(c) {
        return format!(
            "{head} (the corpus is traditional Chinese Tang poetry: simplified, modern and very rare characters are not in it)"
        );
    }
    head
}

/// Traditional form of a common simplified-only character (None if not in the table).
pub fn traditional_of(c: char) -> Option<&'static str> {
    SIMPLIFIED_TO_TRADITIONAL
        .iter()
        .find(|(s, _)| *s == c)
        .map(|(_, t)| *t)
}

/// Common simplified characters whose traditional form differs (enough to explain the error
/// for everyday prompts; not a converter).
const SIMPLIFIED_TO_TRADITIONAL: &[(char, &str)] = &[
    ('这', "這"),
    ('个', "個"),
    ('们', "們"),
    ('来', "來"),
    ('时', "時"),
    ('说', "說"),
    ('国', "國"),
    ('会', "會"),
    ('对', "對"),
    ('学', "學"),
    ('还', "還"),
    ('发', "發"),
    ('经', "經"),
    ('现', "現"),
    ('过', "過"),
    ('进', "進"),
    ('动', "動"),
    ('种', "種"),
    ('长', "長"),
    ('见', "見"),
    ('开', "開"),
    ('关', "關"),
    ('马', "馬"),
    ('门', "門"),
    ('东', "東"),
    ('车', "車"),
    ('书', "書"),
    ('风', "風"),
    ('飞', "飛"),
    ('鱼', "魚"),
    ('鸟', "鳥"),
    ('龙', "龍"),
    ('电', "電"),
    ('话', "話"),
    ('语', "語"),
    ('请', "請"),
    ('问', "問"),
    ('诗', "詩"),
    ('词', "詞"),
    ('梦', "夢"),
    ('爱', "愛"),
    ('应', "應"),
    ('边', "邊"),
    ('乡', "鄉"),
    ('归', "歸"),
    ('听', "聽"),
    ('声', "聲"),
    ('远', "遠"),
    ('红', "紅"),
    ('绿', "綠"),
    ('叶', "葉"),
    ('树', "樹"),
    ('岁', "歲"),
    ('与', "與"),
    ('为', "為"),
    ('无', "無"),
    ('从', "從"),
    ('两', "兩"),
    ('间', "間"),
    ('头', "頭"),
    ('处', "處"),
    ('尽', "盡"),
    ('观', "觀"),
    ('华', "華"),
    ('汉', "漢"),
    ('独', "獨"),
    ('旧', "舊"),
    ('乐', "樂"),
    ('泪', "淚"),
    ('灯', "燈"),
    ('烟', "煙"),
    ('楼', "樓"),
    ('桥', "橋"),
    ('园', "園"),
    ('闻', "聞"),
    ('阳', "陽"),
    ('阴', "陰"),
    ('难', "難"),
    ('离', "離"),
    ('杂', "雜"),
    ('须', "須"),
    ('顾', "顧"),
    ('忆', "憶"),
    ('忧', "憂"),
    ('怀', "懷"),
    ('惊', "驚"),
    ('战', "戰"),
    ('断', "斷"),
    ('晓', "曉"),
    ('机', "機"),
    ('杀', "殺"),
    ('条', "條"),
    ('欢', "歡"),
    ('残', "殘"),
    ('气', "氣"),
    ('沧', "滄"),
    ('浅', "淺"),
    ('涛', "濤"),
    ('满', "滿"),
    ('渔', "漁"),
    ('烛', "燭"),
    ('犹', "猶"),
    ('画', "畫"),
    ('礼', "禮"),
    ('穷', "窮"),
    ('笔', "筆"),
    ('纸', "紙"),
    ('线', "線"),
    ('细', "細"),
    ('终', "終"),
    ('结', "結"),
    ('给', "給"),
    ('绝', "絕"),
    ('缘', "緣"),
    ('罗', "羅"),
    ('习', "習"),
    ('胜', "勝"),
    ('临', "臨"),
    ('节', "節"),
    ('苏', "蘇"),
    ('荣', "榮"),
    ('药', "藥"),
    ('莲', "蓮"),
    ('蝉', "蟬"),
    ('觉', "覺"),
    ('记', "記"),
    ('论', "論"),
    ('识', "識"),
    ('读', "讀"),
    ('谁', "誰"),
    ('谈', "談"),
    ('谢', "謝"),
    ('贤', "賢"),
    ('贫', "貧"),
    ('买', "買"),
    ('卖', "賣"),
    ('贵', "貴"),
    ('赏', "賞"),
    ('赠', "贈"),
    ('轻', "輕"),
    ('辉', "輝"),
    ('辞', "辭"),
    ('连', "連"),
    ('迟', "遲"),
    ('邻', "鄰"),
    ('钟', "鐘"),
    ('钱', "錢"),
    ('铁', "鐵"),
    ('银', "銀"),
    ('锁', "鎖"),
    ('锦', "錦"),
    ('闭', "閉"),
    ('闲', "閑"),
    ('闺', "閨"),
    ('阔', "闊"),
    ('陆', "陸"),
    ('陈', "陳"),
    ('随', "隨"),
    ('隐', "隱"),
    ('雾', "霧"),
    ('韵', "韻"),
    ('顶', "頂"),
    ('顺', "順"),
    ('领', "領"),
    ('颜', "顏"),
    ('题', "題"),
    ('飘', "飄"),
    ('饮', "飲"),
    ('馆', "館"),
    ('驰', "馳"),
    ('骑', "騎"),
    ('鸡', "雞"),
    ('鸣', "鳴"),
    ('鸿', "鴻"),
    ('鹤', "鶴"),
    ('黄', "黃"),
    ('丽', "麗"),
    ('亲', "親"),
    ('伤', "傷"),
    ('侠', "俠"),
    ('剑', "劍"),
    ('劝', "勸"),
    ('单', "單"),
    ('卫', "衛"),
    ('叹', "嘆"),
    ('吴', "吳"),
    ('响', "響"),
    ('坚', "堅"),
    ('坛', "壇"),
    ('壮', "壯"),
    ('宫', "宮"),
    ('宝', "寶"),
    ('实', "實"),
    ('将', "將"),
    ('尘', "塵"),
    ('岛', "島"),
    ('岭', "嶺"),
    ('峡', "峽"),
    ('帅', "帥"),
    ('师', "師"),
    ('带', "帶"),
    ('庙', "廟"),
    ('弹', "彈"),
    ('后', "後"),
    ('恋', "戀"),
    ('悬', "懸"),
    ('惭', "慚"),
    ('愿', "願"),
    ('丝', "絲"),
    ('亏', "虧"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplified_characters_get_the_traditional_hint() {
        let m = unknown_char_message('这', |c| c == '這');
        assert!(m.contains("simplified"), "{m}");
        assert!(m.contains("traditional"), "{m}");
        assert!(m.contains("'這'"), "{m}");
        let m = unknown_char_message('黄', |_| false);
        assert!(m.contains("traditional") && !m.contains("try"), "{m}");
        let m = unknown_char_message('x', |_| false);
        assert!(!m.contains("traditional"), "{m}");
        assert!(!m.contains('\n'));
    }

    #[test]
    fn table_maps_to_different_characters() {
        for (s, t) in SIMPLIFIED_TO_TRADITIONAL {
            assert_ne!(t.chars().next(), Some(*s), "{s}");
        }
    }

    #[test]
    fn stop_escapes() {
        assert_eq!(unescape("\\n\\n"), "\n\n");
        assert_eq!(unescape("。"), "。");
        assert_eq!(unescape("a\\tb\\\\"), "a\tb\\");
    }
}
