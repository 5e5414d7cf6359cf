//! The console session driven by a scripted byte stream, as a terminal would type it: each poem
//! must be exactly what the core's `Decoder::generate` writes for the same prompt and settings,
//! and every bad line must get one `error:` line and leave the console working.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use tinypoet_console::session::{run, End, Info, Meter, Port, Unit};
use tinypoet_core::blob::{self, BlobInput, Manifest, WeightDtype};
use tinypoet_core::{
    state_words, tensor_specs, Config, Decoder, GenerateSettings, KvPrecision, Model,
    SamplerSettings,
};

/// A terminal: the bytes it will type, and everything the device sent back.
struct Script {
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
    idles: usize,
}

impl Port for Script {
    fn read_byte(&mut self) -> Option<u8> {
        let b = self.input.get(self.pos).copied();
        self.pos += b.is_some() as usize;
        b
    }
    fn write(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }
    fn idle(&mut self) {
        self.idles += 1;
        assert!(
            self.idles < 1000,
            "the console waits for input the script does not have"
        );
    }
}

static TICKS: AtomicU64 = AtomicU64::new(0);
fn ticks() -> u64 {
    TICKS.fetch_add(1000, Ordering::Relaxed)
}
const METER: Meter = Meter {
    now: ticks,
    unit: Unit::Instructions { per_tick: 40 },
};
const INFO: Info = Info {
    board: "test",
    blob: "tiny.tpb",
};

/// A small model with deterministic weights whose vocabulary has the instruction template.
fn tiny_blob() -> Vec<u8> {
    let mut vocab: Vec<char> = "\0\n，。<>EINPRS請用以下題目寫一首詩春夜喜雨月山"
        .chars()
        .collect();
    vocab.sort();
    vocab.dedup();
    let cfg = Config {
        vocab_size: vocab.len(),
        dim: 16,
        n_heads: 2,
        n_layers: 1,
        context: 64,
        ffn_dim: 32,
        ln_eps: 1e-5,
        attn_scale: 0.25,
    };
    let data: Vec<Vec<f32>> = tensor_specs(&cfg)
        .enumerate()
        .map(|(t, s)| {
            (0..s.shape.numel())
                .map(|i| (((i * 7 + t * 3) % 13) as f32 - 6.0) / 8.0)
                .collect()
        })
        .collect();
    let tensors: Vec<&[f32]> = data.iter().map(|t| t.as_slice()).collect();
    let input = BlobInput {
        config: cfg,
        vocab: &vocab,
        manifest: Manifest::EMPTY,
        dtype: WeightDtype::F16,
        tensors: &tensors,
    };
    let mut bytes = vec![0u8; blob::encoded_len(&input).unwrap()];
    blob::write(&input, &mut bytes).unwrap();
    bytes
}

/// What the core writes for `prompt` with `settings`, plus the newline the console adds.
fn reference(model: &Model, prompt: &str, settings: &GenerateSettings) -> String {
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(model, &mut state, KvPrecision::F16).unwrap();
    let mut text = String::new();
    dec.generate(prompt, settings, |c| {
        text.push(c);
        ControlFlow::Continue(())
    })
    .unwrap();
    text.push('\n');
    text
}

/// The instruction prompt for `title` as plain text (the console uses the core's
/// `Prompt::Title`; the two must give the same poem).
fn title_prompt(title: &str) -> String {
    use tinypoet_core::prompt::{INSTRUCTION_HEAD, INSTRUCTION_TAIL};
    format!("{INSTRUCTION_HEAD}{title}{INSTRUCTION_TAIL}")
}

/// Run the console over `input`; return the transcript with CR LF turned back into LF.
fn session(model: &Model, input: &[u8]) -> String {
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(model, &mut state, KvPrecision::F16).unwrap();
    let mut port = Script {
        input: input.to_vec(),
        pos: 0,
        output: Vec::new(),
        idles: 0,
    };
    assert_eq!(run(&mut port, &mut dec, &METER, &INFO), End::EndOfInput);
    assert_eq!(port.pos, input.len(), "the whole script was read");
    // Lossy: the echo of an invalid UTF-8 line is the bytes as typed.
    let out = String::from_utf8_lossy(&port.output).into_owned();
    assert!(
        !out.replace("\r\n", "").contains('\n'),
        "every newline is CR LF: {out:?}"
    );
    out.replace("\r\n", "\n")
}

/// The answers of a transcript: for each `> ` line (the echo of the input), the text until the
/// next prompt (the last prompt, answered by Ctrl-D, is left out).
fn answers(transcript: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let parts: Vec<&str> = transcript.split("\n> ").collect();
    // parts[0]: the greeting; the last: "\nbye\n" after the final prompt
    for p in &parts[1..parts.len() - 1] {
        let (input, answer) = p.split_once('\n').unwrap_or((p, ""));
        out.push((input.to_string(), answer.to_string()));
    }
    out
}

/// The poem of an answer (everything before the status line) and the status line.
fn split_status(answer: &str) -> (&str, &str) {
    let i = answer.rfind("\n[").map(|i| i + 1).unwrap_or(0);
    (&answer[..i], answer[i..].trim_end())
}

#[test]
fn poems_match_the_core_and_bad_lines_get_one_error() {
    let bytes = tiny_blob();
    let model = Model::load(&bytes).unwrap();
    let long = "月".repeat(100);
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice("春夜 seed=7 max=20\r\n".as_bytes());
    input.extend_from_slice(b"\xe6\x98\xff bad utf8\r\n");
    input.extend_from_slice("月 top_p=2\r".as_bytes());
    input.extend_from_slice("x\n".as_bytes());
    input.extend_from_slice(format!("{long}\r\n").as_bytes());
    input.extend_from_slice("山 temp=0 colour=red\r\n".as_bytes());
    input.extend_from_slice("山 月\r\n".as_bytes());
    input.extend_from_slice("seed=3\r\n".as_bytes());
    input.extend_from_slice("\r\n".as_bytes()); // a blank line: just the prompt again
    input.extend_from_slice("?\r\n".as_bytes());
    input.extend_from_slice("山\u{3000}temp=0.5  max=12 seed=9 top_k=5\n".as_bytes());
    input.extend_from_slice("月 raw=1 max=10 seed=3\r\n".as_bytes());
    input.extend_from_slice("喜雨夜\x7f\x7f雨 max=8\r\n".as_bytes()); // typed with backspaces
    input.push(0x04);
    let t = session(&model, &input);
    assert!(t.starts_with("\ntinypoet console · board test · model tiny.tpb"));
    assert!(t.ends_with("> \nbye\n"), "{t:?}");
    let a = answers(&t);
    assert_eq!(a.len(), 13, "{t}");

    let settings = |seed, max, sampler| GenerateSettings {
        seed,
        max_new_chars: max,
        sampler,
        ..GenerateSettings::default()
    };
    let poem = |i: usize, prompt: &str, s: GenerateSettings, prefix: &str| {
        let (input, answer) = &a[i];
        let (poem, status) = split_status(answer);
        let want = format!("{prefix}{}", reference(&model, prompt, &s));
        assert_eq!(poem, want, "line {i} {input:?}");
        assert!(status.starts_with('[') && status.ends_with("instructions per character]"));
        assert!(status.contains(&format!("seed {}", s.seed)), "{status}");
        let n = want.chars().count() - prefix.chars().count() - 1;
        assert!(status.contains(&format!("[{n} characters")), "{status}");
    };
    poem(
        0,
        &title_prompt("春夜"),
        settings(7, 20, SamplerSettings::DEFAULT),
        "",
    );

    let error = |i: usize, needle: &str| {
        let (input, answer) = &a[i];
        assert!(
            answer.starts_with("error: ") && answer.lines().count() == 1,
            "line {i} {input:?}: {answer:?}"
        );
        assert!(
            answer.contains(needle),
            "line {i}: {answer:?} lacks {needle:?}"
        );
    };
    error(1, "invalid UTF-8 at byte 0");
    error(2, "bad value top_p=2");
    error(3, "'x' (U+0078) is not in the model's vocabulary");
    error(4, "line too long: at most 256 bytes");
    error(5, "unknown setting 'colour'");
    error(6, "two titles");
    error(7, "no title");
    assert_eq!(a[8].1, "", "a blank line answers nothing");
    assert!(a[9].1.starts_with("TITLE [seed=N]"), "{:?}", a[9].1);

    let s = SamplerSettings {
        temperature: 0.5,
        top_k: 5,
        ..SamplerSettings::DEFAULT
    };
    poem(10, &title_prompt("山"), settings(9, 12, s), "");
    poem(11, "月", settings(3, 10, SamplerSettings::DEFAULT), "月");
    poem(
        12,
        &title_prompt("喜雨"),
        settings(2024, 8, SamplerSettings::DEFAULT),
        "",
    );
}

#[test]
fn the_same_line_gives_the_same_poem() {
    let bytes = tiny_blob();
    let model = Model::load(&bytes).unwrap();
    let t = session(
        &model,
        "春夜 seed=5 max=16\r春夜 max=16 seed=5\r\x04".as_bytes(),
    );
    let a = answers(&t);
    assert_eq!(split_status(&a[0].1).0, split_status(&a[1].1).0);
    let t2 = session(&model, "春夜 seed=6 max=16\r\x04".as_bytes());
    assert_ne!(
        split_status(&a[0].1).0,
        split_status(&answers(&t2)[0].1).0,
        "another seed, another poem"
    );
}

/// The project's Tang model: the instruction template is in its vocabulary, and a console
/// poem is the core's poem.
#[test]
fn tang_model_title_prompt() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tinypoet-tang.tpb"
    );
    let bytes = std::fs::read(path).expect("the committed default model");
    let model = Model::load(&bytes).unwrap();
    let t = session(&model, "春夜喜雨 seed=7\r\n氧气\r\n\x04".as_bytes());
    let a = answers(&t);
    let (poem, status) = split_status(&a[0].1);
    let want = reference(
        &model,
        &title_prompt("春夜喜雨"),
        &GenerateSettings {
            seed: 7,
            ..GenerateSettings::default()
        },
    );
    assert_eq!(poem, want);
    assert!(poem.chars().count() > 10, "{poem:?} {status}");
    // 氧 (oxygen) is a modern character: neither it nor a traditional form is in the corpus.
    assert!(
        a[1].1
            .starts_with("error: '氧' (U+6C27) is not in the model's vocabulary"),
        "{:?}",
        a[1]
    );
    assert!(a[1].1.contains("traditional") && !a[1].1.trim_end().contains('\n'));
}

/// Simplified titles and acrostics: converted with the core's table (as `tinypoet generate` and
/// the web page convert), reported in one line before the poem, and the poem is the one of the
/// traditional title; a character still outside the vocabulary gets one error line.
#[test]
fn simplified_titles_and_acrostics_are_converted() {
    use tinypoet_core::constrain::{Form, FormSpec};
    use tinypoet_core::simplified::to_traditional;
    use tinypoet_core::Prompt;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tinypoet-tang.tpb"
    );
    let bytes = std::fs::read(path).expect("the committed default model");
    let model = Model::load(&bytes).unwrap();
    let t = session(
        &model,
        "静夜思 seed=7 max=40\r\n\
         靜夜思 seed=7 max=40\r\n\
         静静 seed=1 max=4\r\n\
         东 raw=1 max=4\r\n\
         春夜喜雨 form=五絕 acrostic=东后 seed=3\r\n\
         静夜氧\r\n\x04"
            .as_bytes(),
    );
    let a = answers(&t);
    assert_eq!(a.len(), 6, "{t}");
    let report = "[simplified -> traditional (the corpus is traditional Chinese): 静→靜]\n";
    let converted = a[0]
        .1
        .strip_prefix(report)
        .unwrap_or_else(|| panic!("{:?}", a[0].1));
    let (poem, _) = split_status(converted);
    let s = |seed, max| GenerateSettings {
        seed,
        max_new_chars: max,
        ..GenerateSettings::default()
    };
    assert_eq!(poem, reference(&model, &title_prompt("靜夜思"), &s(7, 40)));
    // The traditional title: no report, the same poem.
    assert!(!a[1].1.contains("simplified"), "{:?}", a[1].1);
    assert_eq!(split_status(&a[1].1).0, poem);
    // Each replaced character is named once.
    assert!(a[2].1.starts_with(report), "{:?}", a[2].1);
    // raw=1 continues the converted text, and shows it.
    let raw = a[3]
        .1
        .strip_prefix("[simplified -> traditional (the corpus is traditional Chinese): 东→東]\n");
    let (poem, _) = split_status(raw.unwrap_or_else(|| panic!("{:?}", a[3].1)));
    assert_eq!(poem, format!("東{}", reference(&model, "東", &s(2024, 4))));
    // The acrostic: 东后 opens the lines with the table's 東後 (not OpenCC's phrase-level choice).
    assert_eq!(
        (to_traditional('东'), to_traditional('后')),
        (Some('東'), Some('後'))
    );
    let acrostic = a[4].1.strip_prefix(
        "[simplified -> traditional (the corpus is traditional Chinese): 东→東 后→後]\n",
    );
    let (poem, _) = split_status(acrostic.unwrap_or_else(|| panic!("{:?}", a[4].1)));
    let spec = FormSpec {
        form: Form::WuJue,
        acrostic: "東後",
        rhyme: false,
    };
    assert_eq!(
        poem,
        reference_verse(&model, Prompt::Title("春夜喜雨"), &s(3, 256), &spec)
    );
    assert!(poem.starts_with('東'), "{poem:?}");
    // Converted where it can be, the rest still named: one error line.
    assert!(
        a[5].1
            .starts_with("error: '氧' (U+6C27) is not in the model's vocabulary")
            && !a[5].1.trim_end().contains('\n'),
        "{:?}",
        a[5].1
    );
}

#[test]
fn setting_errors_name_the_problem() {
    let bytes = tiny_blob();
    let model = Model::load(&bytes).unwrap();
    let long_title = "月".repeat(33);
    let cases = [
        (
            "春 seed=1 seed=2".to_string(),
            "error: setting 'seed' given twice",
        ),
        (
            long_title,
            "error: title too long: 33 characters, at most 32",
        ),
        (
            "春 temp=-1".into(),
            "error: bad value temp=-1: a number >= 0",
        ),
        (
            "春 temp=nan".into(),
            "error: bad value temp=nan: a number >= 0",
        ),
        ("春 seed=x".into(), "error: bad value seed=x"),
        (
            "春 max=0".into(),
            "error: bad value max=0: an integer 1..=1024",
        ),
        ("春 raw=yes".into(), "error: bad value raw=yes: 0 or 1"),
        ("春 top_k=-3".into(), "error: bad value top_k=-3"),
    ];
    let mut input = String::new();
    for (line, _) in &cases {
        input.push_str(line);
        input.push_str("\r\n");
    }
    input.push_str("春 max=4\r\n\x04");
    let t = session(&model, input.as_bytes());
    let a = answers(&t);
    assert_eq!(a.len(), cases.len() + 1);
    for ((line, want), (_, got)) in cases.iter().zip(&a) {
        assert!(
            got.starts_with(want) && !got.contains('\n'),
            "{line}: {got:?}"
        );
    }
    assert!(split_status(&a[cases.len()].1)
        .1
        .starts_with("[4 characters"));
}

/// What `tinypoet generate` writes with a verse form: the core's Generator with the model's
/// verse constraint (the console's poem, without what it echoes first).
fn reference_verse(
    model: &Model,
    prompt: tinypoet_core::Prompt,
    settings: &GenerateSettings,
    spec: &tinypoet_core::constrain::FormSpec,
) -> String {
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(model, &mut state, KvPrecision::F16).unwrap();
    let verse = model.verse(spec).unwrap();
    let mut gen =
        tinypoet_core::Generator::with_constraint(&mut dec, prompt, settings, verse).unwrap();
    let mut text = String::new();
    while let Some(c) = gen.next_char().unwrap() {
        text.push(c);
    }
    text.push('\n');
    text
}

/// Verse forms, acrostic and rhyme on the Tang model (its blob carries the 平水韻 table).
#[test]
fn tang_model_verse_forms() {
    use tinypoet_core::constrain::{Form, FormSpec};
    use tinypoet_core::Prompt;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tinypoet-tang.tpb"
    );
    let bytes = std::fs::read(path).expect("the committed default model");
    let model = Model::load(&bytes).unwrap();
    let t = session(
        &model,
        "春夜喜雨 form=五絕 seed=3\r\n\
         江 raw=1 form=七絕 acrostic=春夜喜雨 rhyme=1 seed=5\r\n\
         月 acrostic=春\r\n\
         月 form=五律 max=20\r\n\
         月 form=八股\r\n\
         月 form=五絕 acrostic=春夏秋冬雪\r\n\x04"
            .as_bytes(),
    );
    let a = answers(&t);
    let s = |seed| GenerateSettings {
        seed,
        ..GenerateSettings::default()
    };
    let wujue = FormSpec {
        form: Form::WuJue,
        acrostic: "",
        rhyme: false,
    };
    let (poem, _) = split_status(&a[0].1);
    assert_eq!(
        poem,
        reference_verse(&model, Prompt::Title("春夜喜雨"), &s(3), &wujue)
    );
    // 4 lines of 5: two couplet lines "XXXXX，XXXXX。"
    let lines: Vec<&str> = poem.trim_end().split('\n').collect();
    assert_eq!(lines.len(), 2, "{poem:?}");
    assert!(lines.iter().all(|l| l.chars().count() == 12), "{poem:?}");

    let qijue = FormSpec {
        form: Form::QiJue,
        acrostic: "春夜喜雨",
        rhyme: true,
    };
    let (poem, _) = split_status(&a[1].1);
    let want = reference_verse(&model, Prompt::Text("江\n"), &s(5), &qijue);
    assert_eq!(poem, format!("江\n{want}"));
    let verses: Vec<&str> = want
        .trim_end()
        .split(['\n', '，', '。'])
        .filter(|v| !v.is_empty())
        .collect();
    let heads: String = verses.iter().filter_map(|v| v.chars().next()).collect();
    assert_eq!(heads, "春夜喜雨", "{want:?}");

    assert!(
        a[2].1.starts_with("error: an acrostic needs a fixed form"),
        "{:?}",
        a[2].1
    );
    assert!(
        a[3].1
            .starts_with("error: max=20 is too short for a 五言律詩 (52 characters)"),
        "{:?}",
        a[3].1
    );
    assert!(
        a[4].1.starts_with("error: bad value form=八股"),
        "{:?}",
        a[4].1
    );
    assert!(a[5].1.starts_with("error: "), "{:?}", a[5].1);
}
