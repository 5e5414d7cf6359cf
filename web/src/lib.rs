//! # tinypoet-web
//!
//! `tinypoet-core` for the browser: this crate compiles to a `wasm32-unknown-unknown` module
//! (`web/build.sh`) that the page's Web Worker (`web/www/worker.js`) drives through a small
//! exported C ABI. There is no wasm-bindgen: the module imports nothing, and every value that
//! crosses the boundary is a number, or bytes in the module's memory at a pointer it returns.
//!
//! ## The ABI (all `extern "C"`, names prefixed `tp_`)
//!
//! | function | does |
//! |---|---|
//! | `tp_buffer(len) -> ptr` | resize the *inbox* to `len` zero bytes and return its address; the caller copies bytes there (a blob, a prompt) |
//! | `tp_load() -> status` | take the inbox as the model blob (once per module instance) |
//! | `tp_to_traditional() -> n` | the inbox's text with simplified characters replaced by traditional ones goes to the outbox; `n` = how many distinct characters were replaced |
//! | `tp_start(seed, temperature, top_k, top_p, repetition_penalty, max_len, stop_at_blank_line) -> status` | take the inbox as the prompt (UTF-8) and start a poem |
//! | `tp_next() -> i32` | the next character's code point (> 0), 0 when the poem has ended (the reason is the message), < 0 on an error |
//! | `tp_message_ptr()`, `tp_message_len()` | the *outbox*: UTF-8 text of the last error, stop reason or report |
//!
//! A status is 0 on success and negative on an error whose text is then in the outbox.
//!
//! ## Memory
//!
//! The engine itself allocates nothing. This wrapper owns the blob bytes (copied in once) and
//! the run-state buffer of exactly [`state_words`] f32 words; both, and the [`Model`] table,
//! are leaked on load so that the decoder can be kept between calls (`'static` borrows). A
//! module instance therefore holds one model for its lifetime: to use another blob, instantiate
//! the module again (`tp_load` says so).
//!
//! ## Determinism
//!
//! The decoder runs the scalar kernels ([`Backend::Scalar`]); the core guarantees bit-identical
//! logits across backends and targets, so the page writes the same text as `tinypoet generate`
//! for the same (blob, prompt, seed, settings).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::ControlFlow;

use tinypoet_core::kernels::Backend;
use tinypoet_core::{
    state_words, Decoder, Error, GenerateSettings, KvPrecision, Model, SamplerSettings, StopReason,
};

/// What `start` needs besides the prompt: the sampler and the length limit of
/// `tinypoet generate` (its defaults are [`Settings::default`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// PRNG seed.
    pub seed: u64,
    /// Softmax temperature (0 = greedy).
    pub temperature: f32,
    /// Keep the k most likely characters (0 = off).
    pub top_k: usize,
    /// Nucleus mass (1 = off).
    pub top_p: f32,
    /// Repetition penalty (1 = off).
    pub repetition_penalty: f32,
    /// Maximum number of generated characters.
    pub max_len: usize,
    /// End the poem at a blank line (`tinypoet generate`'s default; off = `--no-stop`).
    pub stop_at_blank_line: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            seed: 2024,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            max_len: 256,
            stop_at_blank_line: true,
        }
    }
}

/// The stop sequence of `tinypoet generate`'s default: a blank line ends the poem.
const STOP: &[&str] = &["\n\n"];

/// Errors of the wrapper; the text goes to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub enum WebError {
    /// The engine refused (a bad blob, an unknown prompt character, a bad setting ...).
    Core(Error),
    /// `load` was called twice on one module instance.
    AlreadyLoaded,
    /// `start` or `next` before `load`.
    NotLoaded,
    /// The prompt bytes are not UTF-8.
    NotUtf8,
    /// The prompt is empty.
    EmptyPrompt,
    /// A prompt character outside the model's vocabulary.
    UnknownChar(char),
}

impl core::fmt::Display for WebError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WebError::Core(e) => write!(f, "{e}"),
            WebError::AlreadyLoaded => write!(
                f,
                "a model is already loaded; instantiate the module again for another blob"
            ),
            WebError::NotLoaded => write!(f, "no model loaded"),
            WebError::NotUtf8 => write!(f, "the prompt is not UTF-8"),
            WebError::EmptyPrompt => write!(f, "the title is empty"),
            WebError::UnknownChar(c) => write!(
                f,
                "the character '{c}' (U+{:04X}) is not in the model's vocabulary",
                *c as u32
            ),
        }
    }
}

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        WebError::Core(e)
    }
}

/// One poem in progress.
struct Poem {
    /// Characters generated and not yet handed out.
    pending: VecDeque<char>,
    /// Why the poem ended (once `pending` is empty, `next` reports it).
    reason: StopReason,
}

/// A loaded model with its decoder, and the poem being written.
pub struct Session {
    decoder: Decoder<'static>,
    poem: Option<Poem>,
}

impl Session {
    /// Load a blob (copied in by the caller; kept for the life of the process).
    pub fn load(blob: Vec<u8>) -> Result<Session, WebError> {
        let blob: &'static [u8] = Box::leak(blob.into_boxed_slice());
        let model: &'static Model<'static> = Box::leak(Box::new(Model::load(blob)?));
        let words = state_words(model.config(), KvPrecision::F16);
        let state: &'static mut [f32] = Box::leak(vec![0f32; words].into_boxed_slice());
        let decoder = Decoder::with_backend(model, state, KvPrecision::F16, Backend::Scalar)?;
        Ok(Session {
            decoder,
            poem: None,
        })
    }

    /// The loaded model.
    pub fn model(&self) -> &'static Model<'static> {
        self.decoder.model()
    }

    /// Start a poem after `prompt` (not echoed), as `tinypoet generate PROMPT` does.
    pub fn start(&mut self, prompt: &str, s: &Settings) -> Result<(), WebError> {
        self.poem = None;
        if prompt.is_empty() {
            return Err(WebError::EmptyPrompt);
        }
        let tok = self.model().tokenizer();
        if let Some(c) = prompt.chars().find(|&c| tok.id(c).is_err()) {
            return Err(WebError::UnknownChar(c));
        }
        let settings = GenerateSettings {
            sampler: SamplerSettings {
                temperature: s.temperature,
                top_k: s.top_k,
                top_p: s.top_p,
                repetition_penalty: s.repetition_penalty,
                ..SamplerSettings::DEFAULT
            },
            seed: s.seed,
            max_new_chars: s.max_len,
            stop: if s.stop_at_blank_line { STOP } else { &[] },
            stop_at_end_of_text: true,
        };
        let mut pending = VecDeque::new();
        let g = self.decoder.generate(prompt, &settings, |c| {
            pending.push_back(c);
            ControlFlow::Continue(())
        })?;
        self.poem = Some(Poem {
            pending,
            reason: g.reason,
        });
        Ok(())
    }

    /// The next character of the poem, or `None` when it has ended (see [`Session::reason`]).
    pub fn next_char(&mut self) -> Result<Option<char>, WebError> {
        let poem = self.poem.as_mut().ok_or(WebError::NotLoaded)?;
        Ok(poem.pending.pop_front())
    }

    /// Why the current poem ended (`None` while it goes on, or before the first `start`).
    pub fn reason(&self) -> Option<StopReason> {
        match &self.poem {
            Some(p) if p.pending.is_empty() => Some(p.reason),
            _ => None,
        }
    }
}

/// `text` with every simplified character that has a traditional form in the core's table
/// ([`tinypoet_core::simplified`]) replaced by it, and the `(simplified, traditional)` pairs
/// replaced, in order of first appearance.
pub fn to_traditional(text: &str) -> (String, Vec<(char, char)>) {
    let mut changed: Vec<(char, char)> = Vec::new();
    let out = text
        .chars()
        .map(|c| match tinypoet_core::simplified::to_traditional(c) {
            Some(t) => {
                if !changed.contains(&(c, t)) {
                    changed.push((c, t));
                }
                t
            }
            None => c,
        })
        .collect();
    (out, changed)
}

/// The words `tinypoet generate` prints for a stop reason.
pub fn reason_text(r: StopReason) -> &'static str {
    match r {
        StopReason::EndOfText => "end of text",
        StopReason::StopSequence(_) => "end of the poem (a blank line)",
        StopReason::MaxLength => "the length limit",
        StopReason::Callback => "stopped",
    }
}

// ---- the exported C ABI (one module instance = one thread: thread-locals hold the state) ----

thread_local! {
    static INBOX: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static OUTBOX: RefCell<String> = const { RefCell::new(String::new()) };
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

fn set_message(text: &str) {
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        o.clear();
        o.push_str(text);
    });
}

/// 0, or -1 with the error's text in the outbox.
fn status(r: Result<(), WebError>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            set_message(&e.to_string());
            -1
        }
    }
}

fn take_inbox() -> Vec<u8> {
    INBOX.with(|i| std::mem::take(&mut *i.borrow_mut()))
}

/// Resize the inbox to `len` zero bytes; the caller writes its bytes at the returned address.
#[no_mangle]
pub extern "C" fn tp_buffer(len: u32) -> *mut u8 {
    INBOX.with(|i| {
        let mut i = i.borrow_mut();
        i.clear();
        i.resize(len as usize, 0);
        i.as_mut_ptr()
    })
}

/// Address of the outbox text (valid until the next call).
#[no_mangle]
pub extern "C" fn tp_message_ptr() -> *const u8 {
    OUTBOX.with(|o| o.borrow().as_ptr())
}

/// Length in bytes of the outbox text.
#[no_mangle]
pub extern "C" fn tp_message_len() -> u32 {
    OUTBOX.with(|o| o.borrow().len() as u32)
}

/// Load the inbox as the model blob; the outbox then describes the model.
#[no_mangle]
pub extern "C" fn tp_load() -> i32 {
    status(SESSION.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_some() {
            return Err(WebError::AlreadyLoaded);
        }
        let session = Session::load(take_inbox())?;
        let m = session.model();
        let cfg = m.config();
        set_message(&format!(
            "{} characters, {} layers, {} parameters, {}",
            cfg.vocab_size,
            cfg.n_layers,
            cfg.param_count(),
            if m.q8_group().is_some() {
                "int8"
            } else {
                "f16"
            }
        ));
        *s = Some(session);
        Ok(())
    }))
}

/// Convert the inbox (UTF-8) from simplified to traditional Chinese ([`to_traditional`]); the
/// outbox receives the converted text. Returns how many distinct characters were replaced, or -1
/// when the inbox is not UTF-8. The inbox is left as it was.
#[no_mangle]
pub extern "C" fn tp_to_traditional() -> i32 {
    let converted = INBOX.with(|i| std::str::from_utf8(&i.borrow()).ok().map(to_traditional));
    match converted {
        Some((text, changed)) => {
            set_message(&text);
            changed.len() as i32
        }
        None => {
            set_message(&WebError::NotUtf8.to_string());
            -1
        }
    }
}

/// Take the inbox as the prompt (UTF-8) and start a poem with these settings.
#[no_mangle]
pub extern "C" fn tp_start(
    seed: u64,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    repetition_penalty: f32,
    max_len: u32,
    stop_at_blank_line: u32,
) -> i32 {
    let settings = Settings {
        seed,
        temperature,
        top_k: top_k as usize,
        top_p,
        repetition_penalty,
        max_len: max_len as usize,
        stop_at_blank_line: stop_at_blank_line != 0,
    };
    status(SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let session = s.as_mut().ok_or(WebError::NotLoaded)?;
        let prompt = String::from_utf8(take_inbox()).map_err(|_| WebError::NotUtf8)?;
        session.start(&prompt, &settings)
    }))
}

/// The next character's code point; 0 when the poem has ended (the outbox says why); -1 on an
/// error (the outbox says which).
#[no_mangle]
pub extern "C" fn tp_next() -> i32 {
    SESSION.with(|s| {
        let mut s = s.borrow_mut();
        let Some(session) = s.as_mut() else {
            set_message(&WebError::NotLoaded.to_string());
            return -1;
        };
        match session.next_char() {
            Ok(Some(c)) => c as i32,
            Ok(None) => {
                let why = session.reason().map(reason_text).unwrap_or("not started");
                set_message(why);
                0
            }
            Err(e) => {
                set_message(&e.to_string());
                -1
            }
        }
    })
}
