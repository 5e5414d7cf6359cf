//! The verse constraint: form (line count and length, the corpus's punctuation and layout),
//! acrostic and rhyme, as one fixed-size state machine over the generated tokens.
//!
//! Slots of a poem of `n` verse lines of `w` characters, verse line `i = 0..n`:
//! `w` Han characters (the first forced to acrostic character `i` if there is one; the last,
//! on the even verse lines `i = 1, 3, ...` with rhyme on, restricted to the rhyme groups still
//! possible), then a mark: `，` or `？` after an odd verse line (`i` even), `。` or `？` after an
//! even one; after an even verse line `\n`, or end-of-text (id 0) after the last. Then the
//! constraint is [`finished`](Constraint::finished).
//!
//! Rhyme: the set of possible groups starts as all groups; at each rhyme slot only tokens
//! with a group in it are allowed, and the set becomes its intersection with the chosen
//! token's groups. So the first rhyming character the model picks chooses the group (or, for
//! a character with several readings, the groups it could be in), and a polyphone later
//! narrows it further.

use super::class::HanRuns;
use super::form::{Form, FormSpec, MAX_LINES};
use super::rhyme::GroupSet;
use super::Constraint;
use crate::blob::RhymeTable;
use crate::config::Token;
use crate::{Error, Tokenizer};

/// What the next token must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Anything ([`Form::Free`]).
    Free,
    /// A Han character: this one (acrostic) if `forced`, one of the rhyme groups if `rhyme`.
    Han {
        /// The acrostic character's id.
        forced: Option<Token>,
        /// A rhyme slot (last character of an even verse line, with rhyme on).
        rhyme: bool,
    },
    /// A line-end mark: `，`/`？` in the middle of a couplet, `。`/`？` at its end (`end`).
    Mark {
        /// End of the couplet.
        end: bool,
    },
    /// `\n` between couplet lines.
    Newline,
    /// End-of-text (id 0) after the last line; also what is allowed once finished.
    EndOfText,
}

/// The ids of the layout characters in a vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LayoutIds {
    comma: Token,
    period: Token,
    question: Option<Token>,
    newline: Token,
}

/// Form + acrostic + rhyme as a [`Constraint`] (see the module docs). About 200 bytes, no
/// allocation; build one per poem with [`Verse::new`].
#[derive(Debug, Clone, Copy)]
pub struct Verse<'t> {
    form: Form,
    acrostic: [Token; MAX_LINES],
    n_acrostic: usize,
    rhyme: Option<RhymeTable<'t>>,
    /// Groups the remaining rhyme slots may use.
    groups: GroupSet,
    han: HanRuns,
    ids: LayoutIds,
    /// Current verse line and the number of its characters/marks already generated.
    line: usize,
    col: usize,
    done: bool,
    /// Tokens advanced over (for error messages).
    position: usize,
}

impl<'t> Verse<'t> {
    /// The constraint for `spec` over `tok`'s vocabulary. `rhyme` is the blob's rhyme table
    /// ([`crate::Model::rhyme_table`]); it is needed only if `spec.rhyme`. Errors:
    /// [`FormSpec::validate`]'s, [`Error::UnknownChar`] for an acrostic character (or for a
    /// fixed form `，`, `。` or `\n`) missing from the vocabulary, [`Error::AcrosticNotHan`],
    /// [`Error::NoRhymeTable`].
    pub fn new(
        spec: &FormSpec<'_>,
        tok: &Tokenizer<'t>,
        rhyme: Option<RhymeTable<'t>>,
    ) -> Result<Verse<'t>, Error> {
        spec.validate()?;
        let han = HanRuns::new(tok);
        let mut acrostic = [0; MAX_LINES];
        let mut n_acrostic = 0;
        for (slot, c) in acrostic.iter_mut().zip(spec.acrostic.chars()) {
            let id = tok.id(c)?;
            if !han.contains(id) {
                return Err(Error::AcrosticNotHan(c));
            }
            *slot = id;
            n_acrostic += 1;
        }
        let table = match (spec.rhyme, rhyme) {
            (false, _) => None,
            (true, None) => return Err(Error::NoRhymeTable),
            (true, Some(t)) => {
                t.validate(tok.len())?;
                Some(t)
            }
        };
        let ids = if spec.form == Form::Free {
            LayoutIds {
                comma: 0,
                period: 0,
                question: None,
                newline: 0,
            }
        } else {
            LayoutIds {
                comma: tok.id('，')?,
                period: tok.id('。')?,
                question: tok.id('？').ok(),
                newline: tok.id('\n')?,
            }
        };
        Ok(Verse {
            form: spec.form,
            acrostic,
            n_acrostic,
            groups: table.map(|t| t.all_groups()).unwrap_or(0),
            rhyme: table,
            han,
            ids,
            line: 0,
            col: 0,
            done: false,
            position: 0,
        })
    }

    /// The form.
    pub fn form(&self) -> Form {
        self.form
    }

    /// The rhyme groups the remaining rhyme slots may still use (all groups before the first
    /// rhyme slot; 0 without rhyme).
    pub fn rhyme_groups(&self) -> GroupSet {
        self.groups
    }

    /// The verse line being generated (`0..lines`; `lines` once finished).
    pub fn line(&self) -> usize {
        if self.done {
            self.form.lines()
        } else {
            self.line
        }
    }

    /// What the next token must be.
    pub fn slot(&self) -> Slot {
        let w = self.form.line_chars();
        if self.form == Form::Free {
            return Slot::Free;
        }
        if self.done {
            return Slot::EndOfText;
        }
        let couplet_end = self.line % 2 == 1;
        if self.col < w {
            let forced =
                (self.col == 0 && self.line < self.n_acrostic).then(|| self.acrostic[self.line]);
            let rhyme = self.rhyme.is_some() && couplet_end && self.col == w - 1;
            Slot::Han { forced, rhyme }
        } else if self.col == w {
            Slot::Mark { end: couplet_end }
        } else if self.line + 1 < self.form.lines() {
            Slot::Newline
        } else {
            Slot::EndOfText
        }
    }

    /// Whether token `id` may come next.
    pub fn allows(&self, id: Token) -> bool {
        match self.slot() {
            Slot::Free => true,
            Slot::Han {
                forced: Some(f), ..
            } => id == f,
            Slot::Han {
                forced: None,
                rhyme,
            } => self.han.contains(id) && (!rhyme || self.rhymes(id)),
            Slot::Mark { end } => {
                id == if end { self.ids.period } else { self.ids.comma }
                    || Some(id) == self.ids.question
            }
            Slot::Newline => id == self.ids.newline,
            Slot::EndOfText => id == 0,
        }
    }

    fn rhymes(&self, id: Token) -> bool {
        match &self.rhyme {
            Some(t) => t.groups(id) & self.groups != 0,
            None => true,
        }
    }

    fn unsatisfiable(&self) -> Error {
        Error::ConstraintUnsatisfiable {
            position: self.position,
        }
    }
}

/// Keep only `keep` (ids that exist in `logits`), every other logit `-inf`.
fn keep_only(logits: &mut [f32], keep: &[Token]) -> Result<(), ()> {
    let mut saved = [0f32; 2];
    let mut any = false;
    for (s, &id) in saved.iter_mut().zip(keep) {
        if let Some(&l) = logits.get(id as usize) {
            *s = l;
            any = true;
        }
    }
    logits.fill(f32::NEG_INFINITY);
    for (s, &id) in saved.iter().zip(keep) {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = *s;
        }
    }
    if any {
        Ok(())
    } else {
        Err(())
    }
}

impl Constraint for Verse<'_> {
    fn mask(&mut self, logits: &mut [f32], _tok: &Tokenizer<'_>) -> Result<(), Error> {
        let one = |id: Token| [id, id];
        let kept = match self.slot() {
            Slot::Free => return Ok(()),
            Slot::Han {
                forced: Some(f), ..
            } => keep_only(logits, &one(f)),
            Slot::Han {
                forced: None,
                rhyme,
            } => {
                self.han.mask_non_han(logits);
                let mut allowed = 0usize;
                for &(a, b) in self.han.runs() {
                    let Some(run) = logits.get_mut(a..b) else {
                        continue;
                    };
                    if !rhyme {
                        allowed += run.len();
                        continue;
                    }
                    for (id, l) in (a..).zip(run.iter_mut()) {
                        if self.rhymes(id as Token) {
                            allowed += 1;
                        } else {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                }
                if allowed > 0 {
                    Ok(())
                } else {
                    Err(())
                }
            }
            Slot::Mark { end } => {
                let mark = if end { self.ids.period } else { self.ids.comma };
                keep_only(logits, &[mark, self.ids.question.unwrap_or(mark)])
            }
            Slot::Newline => keep_only(logits, &one(self.ids.newline)),
            Slot::EndOfText => keep_only(logits, &one(0)),
        };
        kept.map_err(|()| self.unsatisfiable())
    }

    fn advance(&mut self, id: Token, _c: char) -> Result<(), Error> {
        if !self.allows(id) {
            return Err(Error::TokenNotAllowed { token: id as u32 });
        }
        self.position += 1;
        match self.slot() {
            Slot::Free => {}
            Slot::Han { rhyme, .. } => {
                if rhyme {
                    if let Some(t) = &self.rhyme {
                        self.groups &= t.groups(id);
                    }
                }
                self.col += 1;
            }
            Slot::Mark { end: false } => {
                self.line += 1;
                self.col = 0;
            }
            Slot::Mark { end: true } => self.col += 1,
            Slot::Newline => {
                self.line += 1;
                self.col = 0;
            }
            Slot::EndOfText => self.done = true,
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    use super::*;
    use crate::blob::RHYME_SET_BYTES;
    use crate::constrain::{is_han, Punct, TokenClass};

    /// A vocabulary with Han characters around the full-width punctuation, like the Tang one.
    const CHARS: &[char] = &[
        '\0', '\n', 'A', '。', '一', '天', '山', '月', '水', '風', '\u{E829}', '，', '？', '！',
        '𠀀',
    ];

    fn vocab() -> Vec<u8> {
        let mut v: Vec<char> = CHARS.to_vec();
        v.sort();
        v.iter().flat_map(|&c| (c as u32).to_le_bytes()).collect()
    }

    /// Rhyme groups: 0 = {天 山}, 1 = {月 水}, 2 = {風}; 山 is also in group 1 (a polyphone).
    fn table_bytes(tok: &Tokenizer) -> (Vec<u8>, Vec<u8>) {
        let sets: [u128; 5] = [0, 0b001, 0b010, 0b011, 0b100];
        let set_of = |c: char| match c {
            '天' => 1u16,
            '山' => 3,
            '月' | '水' => 2,
            '風' => 4,
            _ => 0,
        };
        let token_sets = tok.chars().flat_map(|c| set_of(c).to_le_bytes()).collect();
        let sets = sets.iter().flat_map(|s| s.to_le_bytes()).collect();
        (token_sets, sets)
    }

    fn table<'a>(token_sets: &'a [u8], sets: &'a [u8]) -> RhymeTable<'a> {
        RhymeTable {
            source: "test",
            n_groups: 3,
            group_names: "a\nb\nc",
            level_groups: [0; RHYME_SET_BYTES],
            token_sets,
            sets,
        }
    }

    /// Drive `v` to the end: at each step mask zero logits and take the allowed id chosen by
    /// `pick` (an index into the allowed ids). Returns the text, end-of-text as `$`.
    fn run(v: &mut Verse, tok: &Tokenizer, mut pick: impl FnMut(usize) -> usize) -> String {
        let mut text = String::new();
        for _ in 0..200 {
            if v.finished() {
                return text;
            }
            let mut logits = std::vec![0f32; tok.len()];
            v.mask(&mut logits, tok).unwrap();
            let allowed: Vec<usize> = (0..logits.len())
                .filter(|&i| logits[i] != f32::NEG_INFINITY)
                .collect();
            assert!(!allowed.is_empty());
            for &i in &allowed {
                assert!(v.allows(i as Token), "mask and allows agree");
            }
            let id = allowed[pick(allowed.len()) % allowed.len()] as Token;
            let c = tok.char(id).unwrap();
            v.advance(id, c).unwrap();
            text.push(if id == 0 { '$' } else { c });
        }
        panic!("did not finish: {text}");
    }

    fn lcg(seed: u64) -> impl FnMut(usize) -> usize {
        let mut s = seed;
        move |_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as usize
        }
    }

    #[test]
    fn classes_and_han_runs() {
        let bytes = vocab();
        let tok = Tokenizer::from_validated(&bytes);
        let runs = HanRuns::new(&tok);
        let han: Vec<char> = tok
            .chars()
            .enumerate()
            .filter(|&(i, _)| runs.contains(i as Token))
            .map(|(_, c)| c)
            .collect();
        assert_eq!(han, ['一', '天', '山', '月', '水', '風', '𠀀']);
        assert_eq!(runs.count(), 7);
        let mut logits = std::vec![1f32; tok.len()];
        runs.mask_non_han(&mut logits);
        for (i, c) in tok.chars().enumerate() {
            assert_eq!(
                logits[i] == 1.0,
                TokenClass::of(c) == TokenClass::Han,
                "{c:?}"
            );
        }
        assert_eq!(TokenClass::of('，'), TokenClass::Punct(Punct::Comma));
        assert_eq!(TokenClass::of('\u{E829}'), TokenClass::Other);
        assert_eq!(TokenClass::of('\0'), TokenClass::EndOfText);
    }

    #[test]
    fn forms_have_the_corpus_layout() {
        let bytes = vocab();
        let tok = Tokenizer::from_validated(&bytes);
        for form in Form::FIXED {
            for seed in 0..20 {
                let spec = FormSpec {
                    form,
                    acrostic: "",
                    rhyme: false,
                };
                let mut v = Verse::new(&spec, &tok, None).unwrap();
                let text = run(&mut v, &tok, lcg(seed));
                assert_eq!(text.chars().count(), form.tokens(), "{text}");
                let body = text.strip_suffix('$').unwrap();
                let lines: Vec<&str> = body.split('\n').collect();
                assert_eq!(lines.len(), form.lines() / 2, "{text}");
                let w = form.line_chars();
                for l in lines {
                    let c: Vec<char> = l.chars().collect();
                    assert_eq!(c.len(), 2 * w + 2, "{l}");
                    assert!(matches!(c[w], '，' | '？'), "{l}");
                    assert!(matches!(c[2 * w + 1], '。' | '？'), "{l}");
                    for &h in c[..w].iter().chain(&c[w + 1..2 * w + 1]) {
                        assert!(is_han(h), "{l}");
                    }
                }
                assert_eq!(v.line(), form.lines());
                // once finished only end-of-text is allowed
                assert_eq!(v.slot(), Slot::EndOfText);
            }
        }
    }

    #[test]
    fn acrostic_opens_the_verse_lines() {
        let bytes = vocab();
        let tok = Tokenizer::from_validated(&bytes);
        let spec = FormSpec {
            form: Form::WuLu,
            acrostic: "山水𠀀",
            rhyme: false,
        };
        let mut v = Verse::new(&spec, &tok, None).unwrap();
        let text = run(&mut v, &tok, lcg(3));
        let verse_lines: Vec<&str> = text
            .split(['，', '？', '。', '\n'])
            .filter(|l| !l.is_empty())
            .collect();
        assert!(verse_lines[0].starts_with('山'), "{text}");
        assert!(verse_lines[1].starts_with('水'), "{text}");
        assert!(verse_lines[2].starts_with('𠀀'), "{text}");
    }

    #[test]
    fn rhyme_keeps_the_first_group_and_narrows_polyphones() {
        let bytes = vocab();
        let tok = Tokenizer::from_validated(&bytes);
        let (ts, sets) = table_bytes(&tok);
        let t = table(&ts, &sets);
        for seed in 0..50 {
            let spec = FormSpec {
                form: Form::QiLu,
                acrostic: "",
                rhyme: true,
            };
            let mut v = Verse::new(&spec, &tok, Some(t)).unwrap();
            let text = run(&mut v, &tok, lcg(seed));
            let ends: Vec<char> = text
                .split('\n')
                .map(|l| l.trim_end_matches('$').chars().rev().nth(1).unwrap())
                .collect();
            let common = ends
                .iter()
                .fold(t.all_groups(), |g, &c| g & t.groups(tok.id(c).unwrap()));
            assert_ne!(common, 0, "{text}: {ends:?}");
            assert_eq!(common, v.rhyme_groups());
        }
    }

    #[test]
    fn errors_are_typed() {
        let bytes = vocab();
        let tok = Tokenizer::from_validated(&bytes);
        let spec = |form, acrostic, rhyme| FormSpec {
            form,
            acrostic,
            rhyme,
        };
        let e = |s: FormSpec| Verse::new(&s, &tok, None).unwrap_err();
        assert_eq!(
            e(spec(Form::WuJue, "一天山月水", false)),
            Error::AcrosticTooLong { chars: 5, lines: 4 }
        );
        assert_eq!(e(spec(Form::WuJue, "春", false)), Error::UnknownChar('春'));
        assert_eq!(e(spec(Form::WuJue, "A", false)), Error::AcrosticNotHan('A'));
        assert_eq!(e(spec(Form::WuJue, "", true)), Error::NoRhymeTable);
        assert_eq!(
            e(spec(Form::Free, "天", false)),
            Error::NeedsForm("an acrostic")
        );
        assert_eq!(e(spec(Form::Free, "", true)), Error::NeedsForm("rhyme"));
        // a token the mask forbids
        let mut v = Verse::new(&spec(Form::WuJue, "", false), &tok, None).unwrap();
        let comma = tok.id('，').unwrap();
        assert_eq!(
            v.advance(comma, '，'),
            Err(Error::TokenNotAllowed {
                token: comma as u32
            })
        );
        // a rhyme table in which no character rhymes: the first rhyme slot has no token
        let ts = std::vec![0u8; 2 * tok.len()];
        let sets = [0u8; RHYME_SET_BYTES];
        let t = table(&ts, &sets);
        let mut v = Verse::new(&spec(Form::WuJue, "", true), &tok, Some(t)).unwrap();
        let mut logits = std::vec![0f32; tok.len()];
        let han = tok.id('天').unwrap();
        let mut err = None;
        for _ in 0..20 {
            logits.fill(0.0);
            match v.mask(&mut logits, &tok) {
                Ok(()) => {
                    let id = (0..logits.len()).find(|&i| logits[i] == 0.0).unwrap() as Token;
                    v.advance(if v.allows(han) { han } else { id }, '?')
                        .unwrap();
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        // 5 characters, a comma, 4 characters: the 11th token is the rhyme slot
        assert_eq!(err, Some(Error::ConstraintUnsatisfiable { position: 10 }));
    }

    #[test]
    fn free_form_masks_nothing() {
        let bytes = vocab();
        let tok = Tokenizer::from_validated(&bytes);
        let mut v = Verse::new(&FormSpec::FREE, &tok, None).unwrap();
        let mut logits = std::vec![0.5f32; tok.len()];
        v.mask(&mut logits, &tok).unwrap();
        assert!(logits.iter().all(|&l| l == 0.5));
        assert!(!v.finished());
    }

    #[test]
    fn form_spec_spellings() {
        for (s, f) in [
            ("五絕", Form::WuJue),
            ("五绝", Form::WuJue),
            ("WuJue", Form::WuJue),
            ("七絕", Form::QiJue),
            ("七绝", Form::QiJue),
            ("qijue", Form::QiJue),
            ("五律", Form::WuLu),
            ("wulv", Form::WuLu),
            ("七律", Form::QiLu),
            ("七言律詩", Form::QiLu),
            ("qilu", Form::QiLu),
            ("free", Form::Free),
        ] {
            assert_eq!(Form::parse(s), Ok(f), "{s}");
        }
        let s = FormSpec::parse("五律, acrostic=春夜喜雨 rhyme").unwrap();
        assert_eq!(
            s,
            FormSpec {
                form: Form::WuLu,
                acrostic: "春夜喜雨",
                rhyme: true
            }
        );
        let s = FormSpec::parse("七絕 藏頭=春夜 押韻").unwrap();
        assert_eq!(
            s,
            FormSpec {
                form: Form::QiJue,
                acrostic: "春夜",
                rhyme: true
            }
        );
        assert_eq!(FormSpec::parse("").unwrap(), FormSpec::FREE);
        assert!(matches!(
            FormSpec::parse("六絕"),
            Err(Error::InvalidFormSpec(_))
        ));
        assert!(matches!(
            FormSpec::parse("五絕 colour=red"),
            Err(Error::InvalidFormSpec(_))
        ));
        assert!(matches!(
            FormSpec::parse("五絕 loud"),
            Err(Error::InvalidFormSpec(_))
        ));
        assert_eq!(
            FormSpec::parse("wujue acrostic=春夜喜雨春"),
            Err(Error::AcrosticTooLong { chars: 5, lines: 4 })
        );
    }

    #[test]
    fn rhyme_table_validation() {
        let bytes = vocab();
        let tok = Tokenizer::from_validated(&bytes);
        let (ts, sets) = table_bytes(&tok);
        let v = tok.len();
        assert_eq!(table(&ts, &sets).validate(v), Ok(()));
        let bad =
            |t: RhymeTable| assert!(matches!(t.validate(v), Err(Error::InvalidRhymeTable(_))));
        bad(RhymeTable {
            n_groups: 0,
            ..table(&ts, &sets)
        });
        bad(RhymeTable {
            n_groups: 2,
            ..table(&ts, &sets)
        }); // names and a set use group 2
        bad(RhymeTable {
            group_names: "a\nb",
            ..table(&ts, &sets)
        });
        bad(table(&ts[..ts.len() - 2], &sets));
        bad(table(&ts, &sets[..sets.len() - 1]));
        bad(table(&ts, &sets[RHYME_SET_BYTES..])); // set 0 not empty
        let mut ts2 = ts.clone();
        ts2[0] = 9; // set 9 does not exist
        bad(table(&ts2, &sets));
        bad(RhymeTable {
            level_groups: [0xFF; RHYME_SET_BYTES],
            ..table(&ts, &sets)
        });
    }
}
