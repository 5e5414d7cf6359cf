//! Verse forms and the one-string form specification shared by the CLI, the firmware and the
//! browser (`FormSpec::parse`).

use crate::Error;

/// Most verse lines of a form (律詩: 8).
pub const MAX_LINES: usize = 8;

/// A poem's shape. The layout is the corpus's: a couplet per text line,
/// `XXXXX，XXXXX。` (the first verse line ends in `，`, the second in `。`; `？` may replace
/// either), couplet lines separated by `\n`, end-of-text after the last `。`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// No constraint (the model decides).
    Free,
    /// 五言絕句: 4 verse lines of 5 characters (2 couplet lines).
    WuJue,
    /// 七言絕句: 4 verse lines of 7 characters.
    QiJue,
    /// 五言律詩: 8 verse lines of 5 characters (4 couplet lines).
    WuLu,
    /// 七言律詩: 8 verse lines of 7 characters.
    QiLu,
}

/// Accepted spellings, matched exactly: traditional, simplified, the long names, and ASCII
/// aliases (pinyin without tones; `lv` for `ü` too).
const NAMES: &[(&str, Form)] = &[
    ("free", Form::Free),
    ("自由", Form::Free),
    ("五絕", Form::WuJue),
    ("五绝", Form::WuJue),
    ("五言絕句", Form::WuJue),
    ("五言绝句", Form::WuJue),
    ("wujue", Form::WuJue),
    ("七絕", Form::QiJue),
    ("七绝", Form::QiJue),
    ("七言絕句", Form::QiJue),
    ("七言绝句", Form::QiJue),
    ("qijue", Form::QiJue),
    ("五律", Form::WuLu),
    ("五言律詩", Form::WuLu),
    ("五言律诗", Form::WuLu),
    ("wulu", Form::WuLu),
    ("wulv", Form::WuLu),
    ("七律", Form::QiLu),
    ("七言律詩", Form::QiLu),
    ("七言律诗", Form::QiLu),
    ("qilu", Form::QiLu),
    ("qilv", Form::QiLu),
];

impl Form {
    /// All fixed forms, shortest first.
    pub const FIXED: [Form; 4] = [Form::WuJue, Form::QiJue, Form::WuLu, Form::QiLu];

    /// Verse lines (half-couplets): 4 or 8; 0 for [`Form::Free`].
    pub const fn lines(self) -> usize {
        match self {
            Form::Free => 0,
            Form::WuJue | Form::QiJue => 4,
            Form::WuLu | Form::QiLu => 8,
        }
    }

    /// Characters per verse line: 5 or 7; 0 for [`Form::Free`].
    pub const fn line_chars(self) -> usize {
        match self {
            Form::Free => 0,
            Form::WuJue | Form::WuLu => 5,
            Form::QiJue | Form::QiLu => 7,
        }
    }

    /// Tokens of a whole poem of this form: characters, one mark per verse line, a newline
    /// between couplet lines, and end-of-text (五絕 27, 七絕 35, 五律 55, 七律 71).
    pub const fn tokens(self) -> usize {
        match self {
            Form::Free => 0,
            _ => self.lines() * (self.line_chars() + 1) + self.lines() / 2,
        }
    }

    /// The traditional name (`五言絕句` ...; `free` for [`Form::Free`]).
    pub const fn name(self) -> &'static str {
        match self {
            Form::Free => "free",
            Form::WuJue => "五言絕句",
            Form::QiJue => "七言絕句",
            Form::WuLu => "五言律詩",
            Form::QiLu => "七言律詩",
        }
    }

    /// The form named `s` (see [`FormSpec::parse`] for the spellings; ASCII case-insensitive).
    pub fn parse(s: &str) -> Result<Form, Error> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|&(_, f)| f)
            .ok_or(Error::InvalidFormSpec(
                "unknown form: use 五絕, 七絕, 五律, 七律 (or 五绝 七绝, wujue qijue wulu qilu) or free",
            ))
    }
}

/// What to generate: a form, an optional acrostic, optional rhyme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormSpec<'a> {
    /// The shape.
    pub form: Form,
    /// 藏頭: character `i` opens verse line `i` (every 5- or 7-character half of a couplet
    /// line, so `春夜喜雨` in a 五絕 opens all four verse lines); at most [`Form::lines`]
    /// characters; may be shorter (the remaining lines are free).
    pub acrostic: &'a str,
    /// 押韻: the even verse lines (2nd, 4th, ...) end in one rhyme group, the group the first
    /// of them picks (needs a blob with a rhyme table).
    pub rhyme: bool,
}

impl FormSpec<'static> {
    /// No constraint.
    pub const FREE: FormSpec<'static> = FormSpec {
        form: Form::Free,
        acrostic: "",
        rhyme: false,
    };
}

impl<'a> FormSpec<'a> {
    /// Parse a specification: words separated by spaces or commas; the first is the form
    /// ([`Form::parse`]: `五絕` `五绝` `五言絕句` `wujue`, `七絕` `qijue`, `五律` `wulu`, `七律`
    /// `qilu`, `free`), then any of `rhyme` (or `押韻` `押韵`) and `acrostic=春夜喜雨` (or
    /// `藏頭=` `藏头=`). Examples: `七絕`, `qijue rhyme`, `五律,acrostic=春夜喜雨,rhyme`.
    /// Checks what needs no vocabulary ([`FormSpec::validate`]).
    pub fn parse(s: &'a str) -> Result<FormSpec<'a>, Error> {
        let mut words = s
            .split(|c: char| c == ',' || c == '，' || c.is_whitespace())
            .filter(|w| !w.is_empty());
        let form = Form::parse(words.next().unwrap_or("free"))?;
        let mut spec = FormSpec {
            form,
            acrostic: "",
            rhyme: false,
        };
        for w in words {
            if ["rhyme", "押韻", "押韵"]
                .iter()
                .any(|r| r.eq_ignore_ascii_case(w))
            {
                spec.rhyme = true;
            } else if let Some((key, value)) = w.split_once('=') {
                if !["acrostic", "藏頭", "藏头"]
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(key))
                {
                    return Err(Error::InvalidFormSpec(
                        "unknown setting: use rhyme or acrostic=CHARACTERS",
                    ));
                }
                spec.acrostic = value;
            } else {
                return Err(Error::InvalidFormSpec(
                    "unknown word: use rhyme or acrostic=CHARACTERS after the form",
                ));
            }
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Whether the spec asks for anything ([`Form::Free`] without acrostic or rhyme does not).
    pub fn is_free(&self) -> bool {
        self.form == Form::Free && self.acrostic.is_empty() && !self.rhyme
    }

    /// The checks that need no vocabulary: an acrostic or rhyme needs a fixed form, and the
    /// acrostic has at most [`Form::lines`] characters.
    pub fn validate(&self) -> Result<(), Error> {
        if self.form == Form::Free {
            if !self.acrostic.is_empty() {
                return Err(Error::NeedsForm("an acrostic"));
            }
            if self.rhyme {
                return Err(Error::NeedsForm("rhyme"));
            }
            return Ok(());
        }
        let chars = self.acrostic.chars().count();
        if chars > self.form.lines() {
            return Err(Error::AcrosticTooLong {
                chars,
                lines: self.form.lines(),
            });
        }
        Ok(())
    }
}
