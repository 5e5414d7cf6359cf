//! Token classes: what kind of character a token is, derived from the vocabulary alone (no
//! table in the blob), and the id ranges of the Han characters for a fast mask.

use crate::config::Token;
use crate::Tokenizer;

/// Punctuation the verse forms use or must keep out of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Punct {
    /// `，` U+FF0C: ends the first verse line of a couplet.
    Comma,
    /// `。` U+3002: ends a couplet.
    Period,
    /// `？` U+FF1F: the corpus's other line end (0.1% of them).
    Question,
    /// `！` U+FF01.
    Exclamation,
    /// `；` U+FF1B.
    Semicolon,
    /// `、` `：` `《` `》` `「` `」` `『` `』` and other CJK or full-width punctuation.
    Other,
}

/// The class of one vocabulary entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenClass {
    /// A CJK ideograph ([`is_han`]): the only class allowed inside a verse line.
    Han,
    /// CJK or full-width punctuation.
    Punct(Punct),
    /// `'\n'`: separates the couplet lines of a poem.
    Newline,
    /// `'\0'` (id 0): end-of-text.
    EndOfText,
    /// Anything else: ASCII (the instruction markers `<INS>` ...), symbols, private-use
    /// placeholders of illegible characters.
    Other,
}

/// The code point ranges counted as Han: CJK Unified Ideographs Extension A (U+3400..U+4DBF),
/// the URO (U+4E00..U+9FFF), CJK Compatibility Ideographs (U+F900..U+FAFF; the corpus has
/// U+F92C) and the supplementary ideographic planes (U+20000..U+3FFFF). Private-use
/// characters (the corpus's U+E829, U+E85A) are not Han.
pub const HAN_RANGES: [(u32, u32); 4] = [
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x3FFFF),
];

/// Whether `c` is in [`HAN_RANGES`].
pub const fn is_han(c: char) -> bool {
    let v = c as u32;
    let mut i = 0;
    while i < HAN_RANGES.len() {
        if v >= HAN_RANGES[i].0 && v <= HAN_RANGES[i].1 {
            return true;
        }
        i += 1;
    }
    false
}

impl TokenClass {
    /// The class of a character.
    pub const fn of(c: char) -> TokenClass {
        match c {
            '\0' => TokenClass::EndOfText,
            '\n' => TokenClass::Newline,
            '，' => TokenClass::Punct(Punct::Comma),
            '。' => TokenClass::Punct(Punct::Period),
            '？' => TokenClass::Punct(Punct::Question),
            '！' => TokenClass::Punct(Punct::Exclamation),
            '；' => TokenClass::Punct(Punct::Semicolon),
            // CJK Symbols and Punctuation (minus the ideographic space/iteration marks that
            // are letters), full-width forms, general punctuation quotes.
            '\u{3001}'..='\u{3003}' | '\u{3008}'..='\u{3011}' | '\u{3014}'..='\u{301F}' => {
                TokenClass::Punct(Punct::Other)
            }
            '\u{FF01}'..='\u{FF0F}' | '\u{FF1A}'..='\u{FF20}' | '\u{2018}'..='\u{201F}' => {
                TokenClass::Punct(Punct::Other)
            }
            _ if is_han(c) => TokenClass::Han,
            _ => TokenClass::Other,
        }
    }
}

/// The Han tokens of a vocabulary as id ranges. The vocabulary is sorted by code point, so the
/// Han tokens of each of the 4 [`HAN_RANGES`] are one run of consecutive ids: at most 4 runs,
/// found by binary search, and a mask touches only the ids between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HanRuns {
    /// `[start, end)` id ranges in increasing order; empty runs are `(x, x)`.
    runs: [(usize, usize); 4],
}

impl HanRuns {
    /// The Han runs of `tok`'s vocabulary.
    pub fn new(tok: &Tokenizer) -> HanRuns {
        let mut runs = [(0, 0); 4];
        for (r, &(lo, hi)) in runs.iter_mut().zip(HAN_RANGES.iter()) {
            *r = (lower_bound(tok, lo), lower_bound(tok, hi + 1));
        }
        HanRuns { runs }
    }

    /// The runs, `[start, end)` in increasing id order (some may be empty).
    pub fn runs(&self) -> &[(usize, usize); 4] {
        &self.runs
    }

    /// Whether token `id` is Han.
    pub fn contains(&self, id: Token) -> bool {
        let id = id as usize;
        self.runs.iter().any(|&(a, b)| id >= a && id < b)
    }

    /// Number of Han tokens.
    pub fn count(&self) -> usize {
        self.runs.iter().map(|&(a, b)| b - a).sum()
    }

    /// Set every non-Han logit to `-inf` (only the ids outside the runs are written).
    pub fn mask_non_han(&self, logits: &mut [f32]) {
        let mut next = 0usize;
        for &(a, b) in &self.runs {
            fill(logits, next, a);
            next = next.max(b);
        }
        fill(logits, next, logits.len());
    }
}

/// `logits[a..b] = -inf`, clamped to the slice.
pub(crate) fn fill(logits: &mut [f32], a: usize, b: usize) {
    let b = b.min(logits.len());
    if let Some(s) = logits.get_mut(a.min(b)..b) {
        s.fill(f32::NEG_INFINITY);
    }
}

/// The first id whose code point is `>= cp` (`tok.len()` if none), by binary search; the
/// vocabulary is strictly increasing.
fn lower_bound(tok: &Tokenizer, cp: u32) -> usize {
    let (mut lo, mut hi) = (0usize, tok.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let v = tok.char(mid as Token).map(|c| c as u32).unwrap_or(u32::MAX);
        if v < cp {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}
