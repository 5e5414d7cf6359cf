//! One input line: a title and optional `key=value` settings.
//!
//! ```text
//! line    = word { space word }          space: ASCII space, tab or U+3000 (ideographic space)
//! word    = title | key "=" value        exactly one title per line, settings in any order
//! ```
//!
//! | key | value | default | meaning (the same as `tinypoet generate`) |
//! |---|---|---|---|
//! | `seed` | u64 | 2024 (the core's) | sampler seed (`--seed`) |
//! | `temp` (or `temperature`) | f32 >= 0 | 1 | softmax temperature, 0 = greedy (`--temperature`) |
//! | `top_k` | integer | 0 (off) | keep the k most likely characters (`--top-k`) |
//! | `top_p` | (0, 1] | 1 (off) | nucleus sampling (`--top-p`) |
//! | `max` | 1..=1024 | 256 | at most this many generated characters (`--max-len`) |
//! | `raw` | 0 or 1 | 0 | 1: the title is the poem's first characters, not an instruction |
//!
//! By default the title goes into the instruction prompt the aligned model was trained on
//! (`<INS>請用以下題目寫一首詩<INP>{title}<RES>`, the core's [`Prompt::Title`]); `raw=1`
//! continues the title as text, as `tinypoet generate TITLE` does. Every character of the title must be in the
//! model's vocabulary (the Tang corpus is traditional Chinese).

use core::fmt;

use tinypoet_core::{GenerateSettings, Prompt, SamplerSettings, Tokenizer};

/// Longest title, in characters: the instruction prompt plus a poem must fit the context.
pub const MAX_TITLE_CHARS: usize = 32;

/// Most characters one request may ask for (`max=`).
pub const MAX_NEW_CHARS: usize = 1024;

/// The setting keys, for the help text and the unknown-key error.
pub const KEYS: &str = "seed temp top_k top_p max raw";

/// A parsed line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request<'l> {
    /// The title, as typed.
    pub title: &'l str,
    /// Sampler seed.
    pub seed: u64,
    /// Sampler settings (validated).
    pub sampler: SamplerSettings,
    /// Maximum generated characters.
    pub max_new_chars: usize,
    /// Continue the title as text instead of the instruction prompt.
    pub raw: bool,
}

/// Why a line is not a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestError<'l> {
    /// Only settings, no title.
    NoTitle,
    /// A second word that is not `key=value`.
    TwoTitles(&'l str, &'l str),
    /// The title has more than [`MAX_TITLE_CHARS`] characters.
    TitleTooLong(usize),
    /// A title character the model does not know.
    UnknownChar(char),
    /// `key=value` with an unknown key.
    UnknownKey(&'l str),
    /// A known key with a value out of range or of the wrong type.
    BadValue {
        /// The key.
        key: &'l str,
        /// The value as typed.
        value: &'l str,
        /// What the value must be.
        expected: &'static str,
    },
    /// The same key twice.
    Repeated(&'l str),
}

impl fmt::Display for RequestError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RequestError::NoTitle => write!(f, "no title: type a title, then optional settings"),
            RequestError::TwoTitles(a, b) => write!(
                f,
                "two titles ('{a}' and '{b}'): one title per line, settings are key=value"
            ),
            RequestError::TitleTooLong(n) => write!(
                f,
                "title too long: {n} characters, at most {MAX_TITLE_CHARS}"
            ),
            RequestError::UnknownChar(c) => {
                write!(
                    f,
                    "'{c}' (U+{:04X}) is not in the model's vocabulary",
                    c as u32
                )?;
                if crate::line::display_width(c) == 2 {
                    write!(f, " (the corpus is traditional Chinese: 春夜喜雨, 黃河)")?;
                }
                Ok(())
            }
            RequestError::UnknownKey(k) => {
                write!(f, "unknown setting '{k}' (settings: {KEYS})")
            }
            RequestError::BadValue {
                key,
                value,
                expected,
            } => write!(f, "bad value {key}={value}: {expected}"),
            RequestError::Repeated(k) => write!(f, "setting '{k}' given twice"),
        }
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{3000}'
}

/// Words of a line, split at spaces (runs of spaces are one separator).
pub fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(is_space).filter(|w| !w.is_empty())
}

/// True if the line has no words (an empty Enter just shows the prompt again).
pub fn is_blank(line: &str) -> bool {
    words(line).next().is_none()
}

/// Parse a non-blank line against the model's vocabulary.
pub fn parse<'l>(line: &'l str, tok: &Tokenizer) -> Result<Request<'l>, RequestError<'l>> {
    let defaults = GenerateSettings::default();
    let mut req = Request {
        title: "",
        seed: defaults.seed,
        sampler: defaults.sampler,
        max_new_chars: defaults.max_new_chars,
        raw: false,
    };
    let mut title: Option<&str> = None;
    // Which keys were given (bit i: KEY_NAMES[i]).
    let mut seen = 0u32;
    for w in words(line) {
        let Some((key, value)) = w.split_once('=') else {
            if let Some(t) = title {
                return Err(RequestError::TwoTitles(t, w));
            }
            title = Some(w);
            continue;
        };
        let bad = |expected| RequestError::BadValue {
            key,
            value,
            expected,
        };
        let bit = match key {
            "seed" => {
                req.seed = value.parse().map_err(|_| bad("an integer 0..2^64"))?;
                0
            }
            "temp" | "temperature" => {
                let t: f32 = value.parse().map_err(|_| bad("a number >= 0"))?;
                if !(t.is_finite() && t >= 0.0) {
                    return Err(bad("a number >= 0"));
                }
                req.sampler.temperature = t;
                1
            }
            "top_k" => {
                req.sampler.top_k = value.parse().map_err(|_| bad("an integer >= 0"))?;
                2
            }
            "top_p" => {
                let p: f32 = value.parse().map_err(|_| bad("a number in (0, 1]"))?;
                if !(p > 0.0 && p <= 1.0) {
                    return Err(bad("a number in (0, 1]"));
                }
                req.sampler.top_p = p;
                3
            }
            "max" => {
                let n: usize = value.parse().map_err(|_| bad("an integer 1..=1024"))?;
                if !(1..=MAX_NEW_CHARS).contains(&n) {
                    return Err(bad("an integer 1..=1024"));
                }
                req.max_new_chars = n;
                4
            }
            "raw" => {
                req.raw = match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(bad("0 or 1")),
                };
                5
            }
            _ => return Err(RequestError::UnknownKey(key)),
        };
        if seen & (1 << bit) != 0 {
            return Err(RequestError::Repeated(key));
        }
        seen |= 1 << bit;
    }
    let title = title.ok_or(RequestError::NoTitle)?;
    let n = title.chars().count();
    if n > MAX_TITLE_CHARS {
        return Err(RequestError::TitleTooLong(n));
    }
    if let Some(c) = title.chars().find(|&c| tok.id(c).is_err()) {
        return Err(RequestError::UnknownChar(c));
    }
    req.title = title;
    Ok(req)
}

impl<'l> Request<'l> {
    /// What the model continues: the title in the instruction template, or the title as text.
    pub fn prompt(&self) -> Prompt<'l> {
        if self.raw {
            Prompt::Text(self.title)
        } else {
            Prompt::Title(self.title)
        }
    }

    /// The core's settings for this request (the default stop: end of the poem, end of text).
    pub fn settings(&self) -> GenerateSettings<'static> {
        GenerateSettings {
            sampler: self.sampler,
            seed: self.seed,
            max_new_chars: self.max_new_chars,
            ..GenerateSettings::default()
        }
    }
}
