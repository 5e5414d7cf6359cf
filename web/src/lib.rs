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
//! | `tp_takes_titles() -> 0/1` | whether the model's recipe is a finetune/align stage (the page's default mode) |
//! | `tp_to_traditional() -> n` | the inbox's text with simplified characters replaced by traditional ones goes to the outbox; `n` = how many distinct characters were replaced |
//! | `tp_start(seed, temperature, top_k, top_p, repetition_penalty, max_len, stop_at_blank_line, as_title) -> status` | take the inbox (UTF-8) as the title (`as_title` ≠ 0) or as the poem's first characters, and start a poem |
//! | `tp_next() -> i32` | the next character's code point (> 0), 0 when the poem has ended (the reason is the message), < 0 on an error |
//! | `tp_message_ptr()`, `tp_message_len()` | the *outbox*: UTF-8 text of the last error, stop reason or report |
//!
//! A status is 0 on success and negative on an error whose text is then in the outbox.
//!
//! ## Memory
//!
//! The engine itself allocates nothing. This wrapper owns the blob bytes (copied in once) and
//! the run-state buffer of exactly [`state_words`] f32 words; both, the [`Model`] table and the
//! [`Decoder`] are leaked on load so that a [`Generator`] can be kept between calls (`'static`
//! borrows; each poem's generator hands the decoder back with `into_decoder`). A
//! module instance therefore holds one model for its lifetime: to use another blob, instantiate
//! the module again (`tp_load` says so).
//!
//! ## Determinism
//!
//! The decoder runs the scalar kernels ([`Backend::Scalar`]); the core guarantees bit-identical
//! logits across backends and targets, so the page writes the same text as `tinypoet generate`
//! for the same (blob, prompt, seed, settings).

use std::cell::RefCell;

use tinypoet_core::kernels::Backend;
use tinypoet_core::prompt::{instruction_prompt_len, INSTRUCTION_HEAD, INSTRUCTION_TAIL};
use tinypoet_core::{
    state_words, Decoder, Error, GenerateSettings, Generator, KvPrecision, Model, Prompt, Sampler,
    SamplerSettings, StopReason,
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
    /// `next` before `start`.
    NotStarted,
    /// The engine refused a start that the checks let through; the decoder is gone.
    Lost,
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
            WebError::NotStarted => write!(f, "no poem started"),
            WebError::Lost => write!(f, "the engine stopped after an error; reload the page"),
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

/// Where the decoder is: waiting between poems, or lent to the poem being written.
enum Slot {
    /// No poem yet, or the last one was handed back.
    Idle(&'static mut Decoder<'static>),
    /// A poem in progress (the generator holds the decoder borrow; boxed: it is larger than
    /// the other variants by its stop-sequence buffer).
    Writing(Box<Generator<'static, 'static>>),
    /// Only after an error inside the engine's start that validation did not foresee.
    Lost,
}

/// What the poem starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A title, in the instruction template of the finetuned/aligned models
    /// ([`Prompt::Title`], `tinypoet generate --title`).
    Title,
    /// The poem's first characters, continued as they are ([`Prompt::Text`], the pretrained
    /// model's use, `tinypoet generate PROMPT`).
    Text,
}

/// A loaded model with its decoder, and the poem being written.
pub struct Session {
    model: &'static Model<'static>,
    slot: Slot,
    /// Why the last poem ended, once it has.
    reason: Option<StopReason>,
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
            model,
            slot: Slot::Idle(Box::leak(Box::new(decoder))),
            reason: None,
        })
    }

    /// The loaded model.
    pub fn model(&self) -> &'static Model<'static> {
        self.model
    }

    /// Whether the model was trained on titles (its manifest's recipe is a finetune or align
    /// stage's): the page then starts in title mode, else from the poem's first characters.
    pub fn takes_titles(&self) -> bool {
        let recipe = self.model.manifest().recipe;
        recipe.starts_with("tinypoet finetune") || recipe.starts_with("tinypoet align")
    }

    /// Start a poem from `text` (not echoed), as `tinypoet generate --title TEXT` or
    /// `tinypoet generate TEXT` does. Any poem in progress is abandoned.
    pub fn start(&mut self, start: Start, text: &str, s: &Settings) -> Result<(), WebError> {
        self.reason = None;
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
        // Everything the generator would refuse is checked first: a refused start would keep
        // the decoder borrow it was given.
        self.check(start, text, &settings)?;
        let decoder = match core::mem::replace(&mut self.slot, Slot::Lost) {
            Slot::Idle(d) => d,
            Slot::Writing(g) => (*g).into_decoder(),
            Slot::Lost => return Err(WebError::Lost),
        };
        let prompt = match start {
            Start::Title => Prompt::Title(text),
            Start::Text => Prompt::Text(text),
        };
        self.slot = Slot::Writing(Box::new(Generator::new(decoder, prompt, &settings)?));
        Ok(())
    }

    fn check(&self, start: Start, text: &str, settings: &GenerateSettings) -> Result<(), WebError> {
        if text.is_empty() {
            return Err(WebError::EmptyPrompt);
        }
        let tok = self.model.tokenizer();
        if let Some(c) = text.chars().find(|&c| tok.id(c).is_err()) {
            return Err(WebError::UnknownChar(c));
        }
        Sampler::new(settings.sampler)?;
        if start == Start::Title {
            let needed = instruction_prompt_len(text);
            let capacity = self.model.config().context - 1;
            if needed > capacity {
                return Err(Error::PromptTooLong { needed, capacity }.into());
            }
            // The template's own characters (a vocabulary other than the Tang one).
            let template = INSTRUCTION_HEAD.chars().chain(INSTRUCTION_TAIL.chars());
            if let Some(c) = template.into_iter().find(|&c| tok.id(c).is_err()) {
                return Err(Error::UnknownChar(c).into());
            }
        }
        Ok(())
    }

    /// The next character of the poem, or `None` when it has ended (see [`Session::reason`]).
    pub fn next_char(&mut self) -> Result<Option<char>, WebError> {
        let Slot::Writing(g) = &mut self.slot else {
            return Err(WebError::NotStarted);
        };
        let c = g.next_char()?;
        if c.is_none() {
            self.reason = g.stop_reason();
        }
        Ok(c)
    }

    /// Why the last poem ended (`None` while it goes on, or before the first `start`).
    pub fn reason(&self) -> Option<StopReason> {
        self.reason
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

/// 1 when the loaded model was trained on titles ([`Session::takes_titles`]), else 0.
#[no_mangle]
pub extern "C" fn tp_takes_titles() -> i32 {
    SESSION.with(|s| s.borrow().as_ref().is_some_and(Session::takes_titles) as i32)
}

/// Take the inbox (UTF-8) as the title (`as_title` ≠ 0) or the poem's first characters, and
/// start a poem with these settings.
#[no_mangle]
pub extern "C" fn tp_start(
    seed: u64,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    repetition_penalty: f32,
    max_len: u32,
    stop_at_blank_line: u32,
    as_title: u32,
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
        let start = if as_title != 0 {
            Start::Title
        } else {
            Start::Text
        };
        session.start(start, &prompt, &settings)
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
                let why = session.reason().map(reason_text).unwrap_or("the end");
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
