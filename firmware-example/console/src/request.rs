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
//! | `form` | `五絕` `七絕` `五律` `七律` (`五绝` ..., `wujue` `qijue` `wulu` `qilu`), `free` | free | verse form (`--form`) |
//! | `acrostic` (or `藏頭`) | up to one character per verse line | none | 藏頭: they open the lines (`--acrostic`; needs a form) |
//! | `rhyme` | 0 or 1 | 0 | the even lines end in one rhyme group (`--rhyme`; needs a form and a blob with a rhyme table) |
//!
//! By default the title goes into the instruction prompt the aligned model was trained on
//! (`<INS>請用以下題目寫一首詩<INP>{title}<RES>`, the core's [`Prompt::Title`]); `raw=1`
//! continues the title as text, as `tinypoet generate TITLE` does (with a form: the title and a
//! newline, the pretrained model's layout, as the CLI does).
//!
//! The Tang corpus is traditional Chinese: simplified characters of the title and the acrostic
//! are converted one at a time with the core's table ([`tinypoet_core::simplified`], the one
//! conversion the CLI and the web page use too, so 静夜思 writes the poem of 靜夜思 everywhere)
//! into the caller's [`Converted`] buffers; [`Request::conversions`] lists what was replaced.
//! Every character of the converted title must then be in the model's vocabulary. The verse
//! settings are the core's [`FormSpec`], checked by [`FormSpec::validate`] and, against the
//! vocabulary and rhyme table, by `Model::verse`.

use core::fmt;

use tinypoet_core::constrain::{Form, FormSpec, MAX_LINES};
use tinypoet_core::{simplified, GenerateSettings, Prompt, SamplerSettings, Tokenizer};

/// Longest title, in characters: the instruction prompt plus a poem must fit the context.
pub const MAX_TITLE_CHARS: usize = 32;

/// Most characters one request may ask for (`max=`).
pub const MAX_NEW_CHARS: usize = 1024;

/// The setting keys, for the help text and the unknown-key error.
pub const KEYS: &str = "seed temp top_k top_p max raw form acrostic rhyme";

/// Bytes of the longest raw prompt with a form: the title and a newline.
pub const RAW_PROMPT_BYTES: usize = 4 * MAX_TITLE_CHARS + 1;

/// Where [`parse`] writes the converted title and acrostic (no allocation: the caller keeps
/// this on its stack for as long as the request lives).
#[derive(Debug, Clone)]
pub struct Converted {
    title: [u8; 4 * MAX_TITLE_CHARS],
    acrostic: [u8; 4 * MAX_LINES],
}

impl Converted {
    /// Empty buffers.
    pub const fn new() -> Converted {
        Converted {
            title: [0; 4 * MAX_TITLE_CHARS],
            acrostic: [0; 4 * MAX_LINES],
        }
    }
}

impl Default for Converted {
    fn default() -> Converted {
        Converted::new()
    }
}

/// `text` with each simplified character replaced by the core's traditional one, written into
/// `buf`; `text` itself when nothing changes or it does not fit (callers check the length first:
/// a character is at most 4 bytes).
fn to_traditional<'b>(text: &'b str, buf: &'b mut [u8]) -> &'b str {
    let mut n = 0;
    let mut changed = false;
    for s in text.chars() {
        let t = simplified::to_traditional(s).unwrap_or(s);
        changed |= t != s;
        if n + t.len_utf8() > buf.len() {
            return text;
        }
        t.encode_utf8(&mut buf[n..]);
        n += t.len_utf8();
    }
    if !changed {
        return text;
    }
    core::str::from_utf8(&buf[..n]).unwrap_or(text)
}

/// A parsed line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request<'l> {
    /// The title the model is given: as typed, simplified characters converted.
    pub title: &'l str,
    /// The title as typed.
    pub typed_title: &'l str,
    /// The acrostic as typed (`verse.acrostic` is the converted one).
    pub typed_acrostic: &'l str,
    /// Sampler seed.
    pub seed: u64,
    /// Sampler settings (validated).
    pub sampler: SamplerSettings,
    /// Maximum generated characters.
    pub max_new_chars: usize,
    /// Continue the title as text instead of the instruction prompt.
    pub raw: bool,
    /// Verse form, acrostic (converted) and rhyme (validated without the vocabulary).
    pub verse: FormSpec<'l>,
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
    /// The verse settings do not go together (the core's error).
    Verse(tinypoet_core::Error),
    /// `max` is shorter than a poem of the form.
    MaxTooShort {
        /// `max`.
        max: usize,
        /// The form.
        form: Form,
    },
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
                    write!(
                        f,
                        " (the corpus is traditional Chinese Tang poetry: modern and very rare \
                         characters are not in it)"
                    )?;
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
            RequestError::Verse(e) => write!(f, "{e}"),
            RequestError::MaxTooShort { max, form } => write!(
                f,
                "max={max} is too short for a {} ({} characters)",
                form.name(),
                form.tokens()
            ),
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

/// Parse a non-blank line against the model's vocabulary; the converted title and acrostic go
/// into `buf`.
pub fn parse<'l>(
    line: &'l str,
    tok: &Tokenizer,
    buf: &'l mut Converted,
) -> Result<Request<'l>, RequestError<'l>> {
    let defaults = GenerateSettings::default();
    let mut req = Request {
        title: "",
        typed_title: "",
        typed_acrostic: "",
        seed: defaults.seed,
        sampler: defaults.sampler,
        max_new_chars: defaults.max_new_chars,
        raw: false,
        verse: FormSpec::FREE,
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
            "form" => {
                req.verse.form = Form::parse(value).map_err(|_| {
                    bad("五絕, 七絕, 五律, 七律 (or 五绝 七绝, wujue qijue wulu qilu) or free")
                })?;
                6
            }
            "acrostic" | "藏頭" | "藏头" => {
                req.verse.acrostic = value;
                7
            }
            "rhyme" => {
                req.verse.rhyme = match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(bad("0 or 1")),
                };
                8
            }
            _ => return Err(RequestError::UnknownKey(key)),
        };
        if seen & (1 << bit) != 0 {
            return Err(RequestError::Repeated(key));
        }
        seen |= 1 << bit;
    }
    let title = title.ok_or(RequestError::NoTitle)?;
    req.verse.validate().map_err(RequestError::Verse)?;
    if req.verse.form != Form::Free && req.max_new_chars < req.verse.form.tokens() {
        return Err(RequestError::MaxTooShort {
            max: req.max_new_chars,
            form: req.verse.form,
        });
    }
    let n = title.chars().count();
    if n > MAX_TITLE_CHARS {
        return Err(RequestError::TitleTooLong(n));
    }
    // Both lengths are checked (the acrostic by validate: at most MAX_LINES characters), so the
    // conversions fit their buffers.
    let Converted {
        title: title_buf,
        acrostic: acrostic_buf,
    } = buf;
    let converted = to_traditional(title, title_buf);
    if let Some(c) = converted.chars().find(|&c| tok.id(c).is_err()) {
        return Err(RequestError::UnknownChar(c));
    }
    req.typed_title = title;
    req.title = converted;
    req.typed_acrostic = req.verse.acrostic;
    req.verse.acrostic = to_traditional(req.verse.acrostic, acrostic_buf);
    Ok(req)
}

impl<'l> Request<'l> {
    /// What the model continues: the title in the instruction template, or (`raw=1`) the title
    /// as text, followed by a newline when a form is set (`buf` holds that copy).
    pub fn prompt<'b>(&self, buf: &'b mut [u8; RAW_PROMPT_BYTES]) -> Prompt<'b>
    where
        'l: 'b,
    {
        if !self.raw {
            return Prompt::Title(self.title);
        }
        if self.verse.form == Form::Free {
            return Prompt::Text(self.title);
        }
        // parse() keeps titles to MAX_TITLE_CHARS characters of at most 4 bytes.
        let n = self.title.len().min(RAW_PROMPT_BYTES - 1);
        buf[..n].copy_from_slice(&self.title.as_bytes()[..n]);
        buf[n] = b'\n';
        Prompt::Text(core::str::from_utf8(&buf[..n + 1]).unwrap_or(self.title))
    }

    /// What the terminal shows before the poem: the raw prompt (the CLI prints it too).
    pub fn echo(&self) -> (&'l str, bool) {
        (
            if self.raw { self.title } else { "" },
            self.raw && self.verse.form != Form::Free,
        )
    }

    /// The `(typed, converted)` characters that the simplified -> traditional conversion
    /// replaced, title first, then the acrostic, each pair once, in order of appearance.
    pub fn conversions(&self) -> impl Iterator<Item = (char, char)> + '_ {
        let pairs = move || {
            self.typed_title
                .chars()
                .zip(self.title.chars())
                .chain(self.typed_acrostic.chars().zip(self.verse.acrostic.chars()))
        };
        pairs()
            .enumerate()
            .filter(move |&(i, (s, t))| s != t && !pairs().take(i).any(|p| p == (s, t)))
            .map(|(_, p)| p)
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
