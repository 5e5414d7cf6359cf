//! Character tokenizer over the blob's sorted vocabulary: id = index of the code point.

use crate::config::Token;
use crate::Error;

/// What [`Tokenizer::encode_with`] does with a character that is not in the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Return [`Error::UnknownChar`] naming the character (the default).
    Error,
    /// Skip the character.
    Skip,
    /// Replace it with this token id.
    Replace(Token),
}

/// Encoder/decoder borrowing the vocabulary (u32 little-endian code points, strictly sorted).
#[derive(Debug, Clone, Copy)]
pub struct Tokenizer<'a> {
    vocab: &'a [u8],
}

impl<'a> Tokenizer<'a> {
    pub(crate) fn from_validated(vocab: &'a [u8]) -> Self {
        Tokenizer { vocab }
    }

    /// Number of entries (V).
    pub fn len(&self) -> usize {
        self.vocab.len() / 4
    }

    /// True if the vocabulary is empty (never for a parsed blob).
    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    fn code(&self, i: usize) -> u32 {
        match self.vocab.get(4 * i..4 * i + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => u32::MAX,
        }
    }

    /// Token id of `c` by binary search over the code points.
    pub fn id(&self, c: char) -> Result<Token, Error> {
        let target = c as u32;
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let v = self.code(mid);
            if v < target {
                lo = mid + 1;
            } else if v > target {
                hi = mid;
            } else {
                return Ok(mid as Token);
            }
        }
        Err(Error::UnknownChar(c))
    }

    /// Character of token `id`.
    pub fn char(&self, id: Token) -> Result<char, Error> {
        char::from_u32(self.code(id as usize)).ok_or(Error::TokenOutOfRange {
            token: id as u32,
            vocab_size: self.len(),
        })
    }

    /// Encode `text` into `out`; returns the number of ids written. Unknown characters are an
    /// error. `out` too short gives [`Error::OutputTooSmall`] (in characters).
    pub fn encode(&self, text: &str, out: &mut [Token]) -> Result<usize, Error> {
        self.encode_with(text, out, Unknown::Error)
    }

    /// Encode with a chosen policy for unknown characters.
    pub fn encode_with(
        &self,
        text: &str,
        out: &mut [Token],
        unknown: Unknown,
    ) -> Result<usize, Error> {
        let mut n = 0;
        for c in text.chars() {
            let id = match (self.id(c), unknown) {
                (Ok(id), _) => id,
                (Err(e), Unknown::Error) => return Err(e),
                (Err(_), Unknown::Skip) => continue,
                (Err(_), Unknown::Replace(r)) => r,
            };
            let got = out.len();
            let slot = out.get_mut(n).ok_or(Error::OutputTooSmall {
                needed: text.chars().count(),
                got,
            })?;
            *slot = id;
            n += 1;
        }
        Ok(n)
    }

    /// Iterate over the ids of `text` (each unknown character yields an error).
    pub fn encode_iter<'t>(&self, text: &'t str) -> impl Iterator<Item = Result<Token, Error>> + 't
    where
        'a: 't,
    {
        let t = *self;
        text.chars().map(move |c| t.id(c))
    }

    /// Decode `ids` as UTF-8 into `out`; returns the written prefix as `&str`.
    pub fn decode<'o>(&self, ids: &[Token], out: &'o mut [u8]) -> Result<&'o str, Error> {
        let mut n = 0;
        for &id in ids {
            let c = self.char(id)?;
            let need = n + c.len_utf8();
            let got = out.len();
            let dst = out
                .get_mut(n..need)
                .ok_or(Error::OutputTooSmall { needed: need, got })?;
            c.encode_utf8(dst);
            n = need;
        }
        // Only whole characters were written.
        core::str::from_utf8(&out[..n]).map_err(|_| Error::MalformedHeader)
    }

    /// All characters in id order.
    pub fn chars(&self) -> impl Iterator<Item = char> + 'a {
        self.vocab
            .chunks_exact(4)
            .filter_map(|b| char::from_u32(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }
}
