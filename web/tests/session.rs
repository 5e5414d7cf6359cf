//! The wasm wrapper on the host: the same session code the page runs (scalar kernels, the
//! pull loop) writes the text the core's `generate` writes with the host's fastest backend,
//! and the exported ABI reports errors as statuses with a message.

use std::ops::ControlFlow;

use tinypoet_core::{state_words, Decoder, GenerateSettings, KvPrecision, Model};
use tinypoet_core::{Generator, Prompt};
use tinypoet_web::{
    tp_buffer, tp_load, tp_message_len, tp_message_ptr, tp_next, tp_start, Session, Settings,
    Start, WebError,
};

fn blob() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/tinypoet-tang-int8.tpb"
    );
    std::fs::read(path).expect("the bundled int8 model")
}

fn poem(session: &mut Session, start: Start, prompt: &str, s: &Settings) -> String {
    session.start(start, prompt, s).unwrap();
    let mut out = String::new();
    while let Some(c) = session.next_char().unwrap() {
        out.push(c);
    }
    out
}

#[test]
fn session_writes_the_cores_text() {
    let bytes = blob();
    let mut session = Session::load(bytes.clone()).unwrap();
    let model = Model::load(&bytes).unwrap();
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(&model, &mut state, KvPrecision::F16).unwrap();
    for (prompt, seed) in [("春夜喜雨", 7u64), ("白日", 2024), ("月", 1)] {
        let settings = Settings {
            seed,
            ..Settings::default()
        };
        let got = poem(&mut session, Start::Text, prompt, &settings);
        let mut want = String::new();
        let g = GenerateSettings {
            seed,
            ..GenerateSettings::default()
        };
        dec.generate(prompt, &g, |c| {
            want.push(c);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!(!want.is_empty());
        assert_eq!(got, want, "prompt {prompt} seed {seed}");
        assert!(session.reason().is_some());
    }
}

#[test]
fn titles_write_what_the_cores_generator_writes() {
    let bytes = blob();
    let mut session = Session::load(bytes.clone()).unwrap();
    let model = Model::load(&bytes).unwrap();
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(&model, &mut state, KvPrecision::F16).unwrap();
    for seed in [1u64, 2, 3] {
        let settings = Settings {
            seed,
            ..Settings::default()
        };
        // A poem abandoned half-way must not change the next one.
        session.start(Start::Title, "春", &settings).unwrap();
        session.next_char().unwrap();
        let got = poem(&mut session, Start::Title, "靜夜思", &settings);
        let g = GenerateSettings {
            seed,
            ..GenerateSettings::default()
        };
        let mut gen = Generator::new(&mut dec, Prompt::Title("靜夜思"), &g).unwrap();
        let mut want = String::new();
        while let Some(c) = gen.next_char().unwrap() {
            want.push(c);
        }
        assert_eq!(got, want, "seed {seed}");
        assert_eq!(session.reason(), gen.stop_reason());
    }
}

#[test]
fn session_rejects_bad_prompts_and_goes_on() {
    let mut session = Session::load(blob()).unwrap();
    let s = Settings::default();
    assert_eq!(session.next_char(), Err(WebError::NotStarted));
    for start in [Start::Title, Start::Text] {
        assert_eq!(session.start(start, "", &s), Err(WebError::EmptyPrompt));
        assert_eq!(
            session.start(start, "春x", &s),
            Err(WebError::UnknownChar('x'))
        );
        let bad = Settings {
            temperature: -1.0,
            ..s
        };
        assert!(matches!(
            session.start(start, "春", &bad),
            Err(WebError::Core(_))
        ));
    }
    let long = "春".repeat(300);
    assert!(matches!(
        session.start(Start::Title, &long, &s),
        Err(WebError::Core(tinypoet_core::Error::PromptTooLong { .. }))
    ));
    // After the refusals the session still writes.
    assert!(!poem(&mut session, Start::Text, "春", &s).is_empty());
}

fn message() -> String {
    let (ptr, len) = (tp_message_ptr(), tp_message_len() as usize);
    // SAFETY: the outbox is a live String owned by this thread; nothing runs in between.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn abi_reports_errors_with_a_message() {
    // Each test runs on its own thread: a fresh module state.
    assert_eq!(tp_next(), -1);
    assert_eq!(message(), "no model loaded");
    assert_eq!(tp_start(1, 1.0, 0, 1.0, 1.0, 10, 1, 1), -1);
    tp_buffer(64); // zero bytes: not a blob
    assert_eq!(tp_load(), -1);
    assert_eq!(message(), "not a tinypoet blob (bad magic)");
}

#[test]
fn simplified_titles_are_converted_and_reported() {
    let (text, changed) = tinypoet_web::to_traditional("静夜思，静");
    assert_eq!(text, "靜夜思，靜");
    assert_eq!(changed, vec![('静', '靜')]);
    let (text, changed) = tinypoet_web::to_traditional("春夜喜雨");
    assert_eq!((text.as_str(), changed.len()), ("春夜喜雨", 0));
    tp_buffer(1); // one zero byte: valid UTF-8, nothing to convert
    assert_eq!(tinypoet_web::tp_to_traditional(), 0);
}
