//! From a poem list to the reference's texts (spec §2): the seeded shuffle, the 5:3:2 split, the
//! pretrain text, the instruction (finetune) texts, the alignment pairs, and the vocabulary.

use super::pyrandom::PyRandom;
use super::tang::Poem;

/// `random.seed(2024)` in the reference.
pub const SHUFFLE_SEED: u64 = 2024;

/// The instruction template: `<INS>` + instruction + `<INP>` + title + `<RES>` + poem.
pub const INSTRUCTION: &str = "請用以下題目寫一首詩";
pub const INS: &str = "<INS>";
pub const INP: &str = "<INP>";
pub const RES: &str = "<RES>";

/// End-of-text character; always vocabulary id 0 (it sorts first) and the padding value.
pub const END_OF_TEXT: char = '\0';

/// Python's `int(fraction * n)` for the split points: the product is taken in IEEE double,
/// exactly as Python does, and truncated.
pub fn py_int_fraction(fraction: f64, n: usize) -> usize {
    (fraction * n as f64) as usize
}

/// One poem as pretraining text: title, then the paragraphs, one per line.
pub fn pretrain_poem_text(p: &Poem, out: &mut String) {
    out.push_str(&p.title);
    for para in &p.paragraphs {
        out.push('\n');
        out.push_str(para);
    }
}

/// The pretrain text: poems joined by one blank line, no trailing separator and no `\0`.
pub fn pretrain_text(poems: &[Poem]) -> String {
    let mut out = String::new();
    for (i, p) in poems.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        pretrain_poem_text(p, &mut out);
    }
    out
}

/// The instruction prompt for a title: `<INS>請用以下題目寫一首詩<INP>{title}<RES>`.
pub fn instruction_prompt(title: &str) -> String {
    format!("{INS}{INSTRUCTION}{INP}{title}{RES}")
}

/// A finetune item: the prompt followed by the paragraphs joined by `\n`. There is no end marker
/// in the text; training supplies `\0` as the label after the last character.
pub fn instruction_text(p: &Poem) -> String {
    let mut s = instruction_prompt(&p.title);
    s.push_str(&p.paragraphs.join("\n"));
    s
}

/// A "five-character" poem for the alignment stage: every paragraph is exactly 12 code points
/// (5 characters, a comma, 5 characters, a full stop).
pub fn is_five_char(p: &Poem) -> bool {
    p.paragraphs.iter().all(|s| s.chars().count() == 12)
}

/// The three splits of the shuffled poem list, and the alignment pairs drawn from the third.
#[derive(Clone, Debug, Default)]
pub struct Splits {
    /// First `int(0.5 n)` shuffled poems.
    pub pretrain: Vec<Poem>,
    /// Next poems up to `int(0.8 n)`.
    pub finetune: Vec<Poem>,
    /// The rest.
    pub alignment: Vec<Poem>,
    /// (positive, negative) poems: every five-character alignment poem in order, with a negative
    /// drawn by `random.choice` from the other alignment poems.
    pub pairs: Vec<(Poem, Poem)>,
}

/// Shuffle with CPython's `random.seed(2024)`, split 5:3:2 and draw the alignment negatives
/// from the same random stream, as the reference does.
///
/// The negatives matter beyond alignment: the vocabulary is built from the texts actually used,
/// so 24 characters that occur only in alignment poems never drawn as a pair side are not in
/// it. Without the exact `choice` sequence the vocabulary would not be 8,548.
///
/// If the alignment split has five-character poems but no other poems (possible only for tiny
/// custom corpora; the reference would raise IndexError), no pairs are made.
pub fn split_poems(mut poems: Vec<Poem>) -> Splits {
    let mut rng = PyRandom::new(SHUFFLE_SEED);
    rng.shuffle(&mut poems);
    let n = poems.len();
    let a = py_int_fraction(0.5, n);
    let b = py_int_fraction(0.8, n);
    let alignment = poems.split_off(b);
    let finetune = poems.split_off(a);
    let pretrain = poems;

    let (five, others): (Vec<&Poem>, Vec<&Poem>) = alignment.iter().partition(|p| is_five_char(p));
    let mut pairs = Vec::with_capacity(five.len());
    for pos in five {
        // `choice` of an empty list draws nothing and gives None: then there are no pairs.
        if let Some(neg) = rng.choice(&others) {
            pairs.push((pos.clone(), (*neg).clone()));
        }
    }
    Splits {
        pretrain,
        finetune,
        alignment,
        pairs,
    }
}

/// A character vocabulary: the sorted set of characters, id = rank by code point (Rust `char`
/// order, so astral characters get one id each, never two UTF-16 halves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
    /// Code point → id + 1 (0 = not in the vocabulary) for every code point up to the largest in
    /// the vocabulary: a flat table is much faster than a hash map on 4 M characters. Because
    /// id + 1 is stored in a u16, a vocabulary holds at most 65,535 characters.
    lookup: Vec<u16>,
}

/// Largest vocabulary whose ids (and the lookup table's id + 1) fit in u16.
pub const MAX_VOCAB: usize = u16::MAX as usize;

/// A character that is not in the vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("character {ch:?} (U+{code:04X}) at character {position} is not in the vocabulary", code = *ch as u32)]
pub struct UnknownChar {
    pub ch: char,
    /// Index in characters (not bytes) into the encoded text.
    pub position: usize,
}

/// A token id outside the vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("token id {id} at position {position} is outside the vocabulary of {vocab_size}")]
pub struct UnknownId {
    pub id: u16,
    pub position: usize,
    pub vocab_size: usize,
}

/// The vocabulary would not fit u16 token ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the text has {0} distinct characters; token ids are u16, so at most 65,535 are supported")]
pub struct VocabTooLarge(pub usize);

/// A vocabulary is not a strictly increasing list of characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("vocabulary is not sorted by code point without duplicates (at id {0})")]
pub struct VocabNotSorted(pub usize);

impl Vocab {
    /// The vocabulary of all characters of `texts` plus `\0`.
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vocab, VocabTooLarge> {
        // One bit per code point: 136 KiB, cheaper than hashing every character.
        let mut seen = vec![0u64; (char::MAX as usize + 1).div_ceil(64)];
        let mut mark = |c: char| seen[c as usize / 64] |= 1 << (c as usize % 64);
        mark(END_OF_TEXT);
        for t in texts {
            t.chars().for_each(&mut mark);
        }
        let mut chars = Vec::new();
        for (w, &bits) in seen.iter().enumerate() {
            let mut b = bits;
            while b != 0 {
                let i = b.trailing_zeros() as usize;
                b &= b - 1;
                // Every marked index came from a char, so this always succeeds.
                if let Some(c) = char::from_u32((w * 64 + i) as u32) {
                    chars.push(c);
                }
            }
        }
        if chars.len() > MAX_VOCAB {
            return Err(VocabTooLarge(chars.len()));
        }
        Ok(Self::from_sorted_unchecked(chars))
    }

    /// A vocabulary from its characters in id order; they must be strictly increasing.
    pub fn from_chars(chars: Vec<char>) -> Result<Vocab, VocabSortError> {
        if chars.len() > MAX_VOCAB {
            return Err(VocabSortError::TooLarge(VocabTooLarge(chars.len())));
        }
        if let Some(i) = chars.windows(2).position(|w| w[0] >= w[1]) {
            return Err(VocabSortError::NotSorted(VocabNotSorted(i + 1)));
        }
        Ok(Self::from_sorted_unchecked(chars))
    }

    fn from_sorted_unchecked(chars: Vec<char>) -> Vocab {
        let top = chars.last().map_or(0, |&c| c as usize + 1);
        let mut lookup = vec![0u16; top];
        for (id, &c) in chars.iter().enumerate() {
            lookup[c as usize] = id as u16 + 1;
        }
        Vocab { chars, lookup }
    }

    /// Characters in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Id of `c`, if it is in the vocabulary.
    #[inline]
    pub fn id(&self, c: char) -> Option<u16> {
        match self.lookup.get(c as usize) {
            Some(&v) if v != 0 => Some(v - 1),
            _ => None,
        }
    }

    /// Append the ids of `text` to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u16>) -> Result<(), UnknownChar> {
        out.reserve(text.len() / 3);
        for (position, ch) in text.chars().enumerate() {
            out.push(self.id(ch).ok_or(UnknownChar { ch, position })?);
        }
        Ok(())
    }

    /// The ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u16>, UnknownChar> {
        let mut out = Vec::new();
        self.encode_into(text, &mut out)?;
        Ok(out)
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u16]) -> Result<String, UnknownId> {
        let mut s = String::with_capacity(ids.len() * 3);
        for (position, &id) in ids.iter().enumerate() {
            let c = self.chars.get(id as usize).ok_or(UnknownId {
                id,
                position,
                vocab_size: self.chars.len(),
            })?;
            s.push(*c);
        }
        Ok(s)
    }

    /// sha256 of the characters concatenated as UTF-8 in id order (the spec's vocabulary hash).
    pub fn sha256(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let s: String = self.chars.iter().collect();
        Sha256::digest(s.as_bytes()).into()
    }
}

/// Why a stored vocabulary was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VocabSortError {
    #[error(transparent)]
    TooLarge(#[from] VocabTooLarge),
    #[error(transparent)]
    NotSorted(#[from] VocabNotSorted),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poem(title: &str, paragraphs: &[&str]) -> Poem {
        Poem {
            title: title.into(),
            author: String::new(),
            paragraphs: paragraphs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn pretrain_format() {
        let ps = [
            poem("春曉", &["春眠不覺曉，", "處處聞啼鳥。"]),
            poem("靜夜思", &["床前明月光，", "疑是地上霜。"]),
        ];
        assert_eq!(
            pretrain_text(&ps),
            "春曉\n春眠不覺曉，\n處處聞啼鳥。\n\n靜夜思\n床前明月光，\n疑是地上霜。"
        );
        assert_eq!(
            instruction_text(&ps[0]),
            "<INS>請用以下題目寫一首詩<INP>春曉<RES>春眠不覺曉，\n處處聞啼鳥。"
        );
    }

    #[test]
    fn vocab_sorted_by_code_point_with_nul_first() {
        // U+20000 (astral) sorts after U+FF0C in code point order; in UTF-16 order it would not.
        let v = Vocab::from_texts(["，𠀀a春", "a"]).unwrap();
        assert_eq!(v.chars(), ['\0', 'a', '春', '，', '𠀀']);
        assert_eq!(v.encode("春𠀀a").unwrap(), [2, 4, 1]);
        assert_eq!(v.decode(&[4, 0]).unwrap(), "𠀀\0");
        assert_eq!(
            v.encode("a夏"),
            Err(UnknownChar {
                ch: '夏',
                position: 1
            })
        );
        assert!(v.decode(&[5]).is_err());
        assert_eq!(v.id('\u{10FFFF}'), None);
    }

    #[test]
    fn vocab_too_large_for_u16_is_an_error() {
        // 65,536 distinct astral characters plus the `\0`: one more than u16 ids allow.
        let big: String = (0x20000u32..0x20000 + 65_536)
            .filter_map(char::from_u32)
            .collect();
        assert!(matches!(
            Vocab::from_texts([big.as_str()]),
            Err(VocabTooLarge(65_537))
        ));
    }

    #[test]
    fn from_chars_rejects_unsorted() {
        assert!(Vocab::from_chars(vec!['\0', 'b', 'a']).is_err());
        assert!(Vocab::from_chars(vec!['\0', 'a', 'a']).is_err());
        assert!(Vocab::from_chars(vec!['\0', 'a', 'b']).is_ok());
    }

    /// Poem i is titled with its number and is five-character iff i is even. Expected values
    /// from CPython 3.11: `random.seed(2024); l = list(range(20)); random.shuffle(l)` gives
    /// alignment `l[16:] = [6, 9, 5, 15]`; `random.choice([9, 5, 15])` then gives 15.
    #[test]
    fn split_and_pairs_follow_the_python_stream() {
        let poems: Vec<Poem> = (0..20)
            .map(|i| {
                let line = if i % 2 == 0 {
                    "春眠不覺曉，處處聞啼鳥。"
                } else {
                    "春眠不覺，處處聞鳥。"
                };
                poem(&i.to_string(), &[line, line])
            })
            .collect();
        let s = split_poems(poems.clone());
        let titles = |v: &[Poem]| v.iter().map(|p| p.title.clone()).collect::<Vec<_>>();
        assert_eq!(
            titles(&s.pretrain),
            ["0", "2", "16", "1", "10", "19", "17", "18", "7", "3"]
        );
        assert_eq!(titles(&s.finetune), ["8", "4", "14", "11", "12", "13"]);
        assert_eq!(titles(&s.alignment), ["6", "9", "5", "15"]);
        assert_eq!(s.pairs.len(), 1);
        assert_eq!(
            (s.pairs[0].0.title.as_str(), s.pairs[0].1.title.as_str()),
            ("6", "15")
        );

        // Only five-character poems in the alignment split: nothing to draw negatives from.
        let all_five: Vec<Poem> = poems.iter().filter(|p| is_five_char(p)).cloned().collect();
        let s = split_poems(all_five);
        assert!(!s.alignment.is_empty() && s.pairs.is_empty());
    }

    #[test]
    fn split_points_follow_python_float_truncation() {
        assert_eq!(py_int_fraction(0.5, 47457), 23728);
        assert_eq!(py_int_fraction(0.8, 47457), 37965);
        assert_eq!(py_int_fraction(0.9, 1725059), 1552553);
        assert_eq!(py_int_fraction(0.9, 14237), 12813);
        assert_eq!(py_int_fraction(0.9, 5342), 4807);
        // 0.8 * 5 = 4.000000000000001 in IEEE double -> 4; 0.9 * 10 = 9.0 -> 9.
        assert_eq!(py_int_fraction(0.8, 5), 4);
        assert_eq!(py_int_fraction(0.9, 10), 9);
    }
}
