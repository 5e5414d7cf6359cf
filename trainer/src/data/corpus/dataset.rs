//! The prepared dataset file (`.tpd`): everything the training stages need, in a layout that
//! loads with one read, a checksum and a few copies (8.2 MB for the Tang corpus; loads in
//! ≈ 0.05 s).
//!
//! ```text
//! offset  size  field
//! 0       8     magic "TPDSET\r\n" (the CR LF catches text-mode mangling)
//! 8       4     format version, u32 LE (= FORMAT_VERSION)
//! 12      4     header length H, u32 LE
//! 16      H     header: UTF-8 JSON (counts, recipe, hashes; see `Header`)
//! 16+H    ...   body, every array little-endian, in this order:
//!               vocab                u32 × vocab_size   (code points, strictly increasing)
//!               pretrain tokens      u16 × pretrain_tokens
//!               finetune offsets     u32 × (finetune_items + 1)
//!               finetune tokens      u16 × finetune_tokens
//!               alignment pos. off.  u32 × (alignment_pairs + 1)
//!               alignment pos. tok.  u16 × alignment_positive_tokens
//!               alignment neg. off.  u32 × (alignment_pairs + 1)
//!               alignment neg. tok.  u16 × alignment_negative_tokens
//! end-32  32    sha256 of every byte before it
//! ```
//!
//! Loading checks, in order: magic, version, sizes against the file length (truncation),
//! checksum, then the structure (vocabulary strictly increasing with `\0` first, every token id
//! inside the vocabulary, item offsets monotonic) and the vocabulary/content hashes, so that a
//! loaded dataset can be indexed without further checks. Every failure is a [`FormatError`].
//!
//! The file is written to a temporary file in the destination folder (`.<name>.tmp<pid>`),
//! fsynced and renamed over the destination, so a crash or an error never leaves a partial
//! dataset behind; the temporary file a killed `prepare` leaves is removed by the next
//! successful write of the same dataset (see `io::fsx::write_atomic`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::text::{UnknownChar, UnknownId, Vocab};
use crate::io::fsx::{self, hex};

/// File magic.
pub const MAGIC: [u8; 8] = *b"TPDSET\r\n";
/// Layout version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const PREFIX: usize = 16;
const TRAILER: usize = 32;

/// A sequence of variable-length token items (finetune texts, one side of alignment pairs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Items {
    /// `offsets[i]..offsets[i + 1]` is item i in `tokens`; `offsets[0] = 0`.
    offsets: Vec<u32>,
    tokens: Vec<u16>,
}

impl Items {
    pub fn new() -> Items {
        Items {
            offsets: vec![0],
            tokens: Vec::new(),
        }
    }

    /// Append one item.
    ///
    /// # Panics
    /// If the total exceeds u32::MAX tokens (4 G tokens; far beyond any corpus here).
    pub fn push(&mut self, item: &[u16]) {
        self.tokens.extend_from_slice(item);
        let end = u32::try_from(self.tokens.len()).expect("more than 4 G tokens in one split");
        self.offsets.push(end);
    }

    /// View of all items.
    pub fn view(&self) -> ItemsView<'_> {
        ItemsView {
            offsets: &self.offsets,
            tokens: &self.tokens,
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total tokens over all items.
    pub fn total_tokens(&self) -> usize {
        self.tokens.len()
    }
}

/// A borrowed run of items: item i is `tokens[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Copy, Debug)]
pub struct ItemsView<'a> {
    offsets: &'a [u32],
    tokens: &'a [u16],
}

impl<'a> ItemsView<'a> {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&'a [u16]> {
        if i >= self.len() {
            return None;
        }
        let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        Some(&self.tokens[a..b])
    }

    /// Items in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u16]> + 'a {
        let v = *self;
        (0..v.len()).map(move |i| {
            let (a, b) = (v.offsets[i] as usize, v.offsets[i + 1] as usize);
            &v.tokens[a..b]
        })
    }

    /// Items `range` of this view.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ItemsView<'a> {
        ItemsView {
            offsets: &self.offsets[range.start..=range.end],
            tokens: self.tokens,
        }
    }
}

/// Alignment pairs: positive (a five-character poem) and negative (a random other poem), both
/// rendered with the instruction template.
#[derive(Clone, Copy, Debug)]
pub struct PairsView<'a> {
    pub positive: ItemsView<'a>,
    pub negative: ItemsView<'a>,
}

impl<'a> PairsView<'a> {
    pub fn len(&self) -> usize {
        self.positive.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pair `i` as (positive, negative).
    pub fn get(&self, i: usize) -> Option<(&'a [u16], &'a [u16])> {
        Some((self.positive.get(i)?, self.negative.get(i)?))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'a [u16], &'a [u16])> + 'a {
        self.positive.iter().zip(self.negative.iter())
    }
}

/// Descriptive fields of a dataset, stored as the file's JSON header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Recipe that produced the data (`tutorialllm-tang`, `poem-json`, `plain-text`).
    pub recipe: String,
    /// Version of that recipe's code; bump when the produced data would change.
    pub recipe_version: u32,
    /// `SourceKind::as_str` of the input.
    pub source_kind: String,
    /// File name of the input (informational; not part of the content hash).
    pub source_name: String,
    /// sha256 of the input (hex).
    pub source_sha256: String,
    /// Poems used after filtering (0 for plain text).
    pub poems: u64,
    /// Characters of all texts the vocabulary was built from, plus the `\0` (the reference's
    /// "Dataset length").
    pub dataset_length: u64,
    pub vocab_size: u64,
    /// sha256 of the vocabulary characters in id order, UTF-8, concatenated (hex).
    pub vocab_sha256: String,
    pub pretrain_tokens: u64,
    pub pretrain_train_tokens: u64,
    pub finetune_items: u64,
    pub finetune_train_items: u64,
    pub finetune_tokens: u64,
    pub alignment_pairs: u64,
    pub alignment_train_pairs: u64,
    pub alignment_positive_tokens: u64,
    pub alignment_negative_tokens: u64,
    /// sha256 (hex) over the split boundaries and the body (vocabulary and all token arrays):
    /// identifies the prepared data regardless of where it came from.
    pub content_hash: String,
}

/// A problem with the bytes of a dataset file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a tinypoet dataset file (bad magic); prepare one with `tinypoet prepare`")]
    NotADataset,
    #[error("dataset format version {found} is not supported (this build reads version {supported}); re-run `tinypoet prepare`")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("truncated: {actual} bytes, the header describes {expected}")]
    Truncated { expected: u64, actual: u64 },
    #[error("checksum mismatch: the file is corrupt")]
    ChecksumMismatch,
    #[error("corrupt: {0}")]
    Corrupt(String),
}

/// Loading or saving a dataset failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    // The cause is part of the one-line message (not a `#[source]`), so that printing the
    // error chain does not repeat it.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Format { path: PathBuf, error: FormatError },
}

/// A prepared dataset: vocabulary, pretraining token stream, finetune items and alignment pairs,
/// each split into train and eval parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Dataset {
    header: Header,
    vocab: Vocab,
    pretrain: Vec<u16>,
    finetune: Items,
    align_pos: Items,
    align_neg: Items,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// The parts of a dataset before the derived header fields are filled in.
pub struct DatasetParts {
    pub recipe: String,
    pub recipe_version: u32,
    pub source_kind: String,
    pub source_name: String,
    pub source_sha256: [u8; 32],
    pub poems: u64,
    pub dataset_length: u64,
    pub vocab: Vocab,
    pub pretrain: Vec<u16>,
    pub pretrain_train_tokens: usize,
    pub finetune: Items,
    pub finetune_train_items: usize,
    pub align_pos: Items,
    pub align_neg: Items,
    pub alignment_train_pairs: usize,
}

impl Dataset {
    /// Assemble a dataset, computing the derived header fields (counts, hashes).
    ///
    /// # Panics
    /// If the parts are inconsistent (train counts beyond totals, token ids outside the
    /// vocabulary, different positive/negative pair counts): they come from the prepare code,
    /// not from user data.
    pub fn from_parts(p: DatasetParts) -> Dataset {
        assert!(p.pretrain_train_tokens <= p.pretrain.len());
        assert!(p.finetune_train_items <= p.finetune.len());
        assert_eq!(p.align_pos.len(), p.align_neg.len());
        assert!(p.alignment_train_pairs <= p.align_pos.len());
        let v = p.vocab.len();
        let all_ids = p
            .pretrain
            .iter()
            .chain(&p.finetune.tokens)
            .chain(&p.align_pos.tokens)
            .chain(&p.align_neg.tokens);
        assert!(all_ids.into_iter().all(|&t| (t as usize) < v));
        let mut d = Dataset {
            header: Header {
                recipe: p.recipe,
                recipe_version: p.recipe_version,
                source_kind: p.source_kind,
                source_name: p.source_name,
                source_sha256: hex(&p.source_sha256),
                poems: p.poems,
                dataset_length: p.dataset_length,
                vocab_size: v as u64,
                vocab_sha256: hex(&p.vocab.sha256()),
                pretrain_tokens: p.pretrain.len() as u64,
                pretrain_train_tokens: p.pretrain_train_tokens as u64,
                finetune_items: p.finetune.len() as u64,
                finetune_train_items: p.finetune_train_items as u64,
                finetune_tokens: p.finetune.total_tokens() as u64,
                alignment_pairs: p.align_pos.len() as u64,
                alignment_train_pairs: p.alignment_train_pairs as u64,
                alignment_positive_tokens: p.align_pos.total_tokens() as u64,
                alignment_negative_tokens: p.align_neg.total_tokens() as u64,
                content_hash: String::new(),
            },
            vocab: p.vocab,
            pretrain: p.pretrain,
            finetune: p.finetune,
            align_pos: p.align_pos,
            align_neg: p.align_neg,
        };
        let body = d.body_bytes();
        d.header.content_hash = hex(&content_hash(&d.header, &body));
        d
    }

    /// Load a dataset file written by [`Dataset::save`]: one read, a checksum and length check,
    /// and a validation of every token id against the vocabulary.
    pub fn load(path: impl AsRef<Path>) -> Result<Dataset, DatasetError> {
        let path = path.as_ref();
        let bytes =
            fsx::read_input(path, fsx::limits::DATASET).map_err(|error| DatasetError::Io {
                path: path.to_path_buf(),
                error,
            })?;
        Dataset::from_bytes(&bytes).map_err(|error| DatasetError::Format {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Write the dataset atomically: a temporary file in the same folder, fsync, rename.
    /// Creates the folder if needed. On error nothing is left at `path` or beside it.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), DatasetError> {
        let path = path.as_ref();
        fsx::write_atomic(path, &self.to_bytes()).map_err(|error| DatasetError::Io {
            path: path.to_path_buf(),
            error,
        })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec_pretty(&self.header).expect("header serialises");
        let body = self.body_bytes();
        let mut out = Vec::with_capacity(PREFIX + header.len() + body.len() + TRAILER);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&body);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    fn body_bytes(&self) -> Vec<u8> {
        let h = &self.header;
        let words = h.vocab_size + (h.finetune_items + 1) + 2 * (h.alignment_pairs + 1);
        let halves = h.pretrain_tokens
            + h.finetune_tokens
            + h.alignment_positive_tokens
            + h.alignment_negative_tokens;
        let mut out = Vec::with_capacity((words * 4 + halves * 2) as usize);
        let put32 = |out: &mut Vec<u8>, v: &[u32]| {
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
        let put16 = |out: &mut Vec<u8>, v: &[u16]| {
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
        let vocab: Vec<u32> = self.vocab.chars().iter().map(|&c| c as u32).collect();
        put32(&mut out, &vocab);
        put16(&mut out, &self.pretrain);
        for items in [&self.finetune, &self.align_pos, &self.align_neg] {
            put32(&mut out, &items.offsets);
            put16(&mut out, &items.tokens);
        }
        out
    }

    /// Parse and validate the bytes of a dataset file: the prefix, the header, the length and
    /// checksum, then the body's structure and hashes (so that a hand-made file cannot make the
    /// trainer index out of bounds).
    pub fn from_bytes(bytes: &[u8]) -> Result<Dataset, FormatError> {
        let header_len = check_prefix(bytes)?;
        let header_bytes = &bytes[PREFIX..PREFIX + header_len as usize];
        let header: Header = serde_json::from_slice(header_bytes)
            .map_err(|e| FormatError::Corrupt(format!("header: {e}")))?;
        check_length_and_checksum(bytes, &header, header_len)?;
        // The checksum matched, so the sizes are what the writer wrote.
        let body = &bytes[PREFIX + header_len as usize..bytes.len() - TRAILER];
        let ds = Dataset::read_body(header, body)?;
        ds.validate(body)?;
        Ok(ds)
    }

    /// The arrays of the body, in file order, as the header sizes them.
    fn read_body(header: Header, body: &[u8]) -> Result<Dataset, FormatError> {
        let h = &header;
        let mut r = Reader { bytes: body };
        let vocab_cps = r.u32s(h.vocab_size as usize);
        let chars: Vec<char> = vocab_cps
            .iter()
            .map(|&c| char::from_u32(c))
            .collect::<Option<_>>()
            .ok_or_else(|| FormatError::Corrupt("vocabulary holds a non-character".into()))?;
        let vocab = Vocab::from_chars(chars).map_err(|e| FormatError::Corrupt(e.to_string()))?;
        let pretrain = r.u16s(h.pretrain_tokens as usize);
        let finetune = r.items(
            h.finetune_items as usize,
            h.finetune_tokens as usize,
            "finetune",
        )?;
        let align_pos = r.items(
            h.alignment_pairs as usize,
            h.alignment_positive_tokens as usize,
            "alignment positive",
        )?;
        let align_neg = r.items(
            h.alignment_pairs as usize,
            h.alignment_negative_tokens as usize,
            "alignment negative",
        )?;
        Ok(Dataset {
            header,
            vocab,
            pretrain,
            finetune,
            align_pos,
            align_neg,
        })
    }

    /// Token ids inside the vocabulary, train splits inside their data, id 0 = `\0`, and the
    /// header's hashes describing this content (one more pass over ~8 MB, a few tens of
    /// milliseconds).
    fn validate(&self, body: &[u8]) -> Result<(), FormatError> {
        let (h, vocab) = (&self.header, &self.vocab);
        let (pretrain, finetune) = (&self.pretrain, &self.finetune);
        let (align_pos, align_neg) = (&self.align_pos, &self.align_neg);
        let v = vocab.len();
        let check_ids = |name: &str, ids: &[u16]| match ids.iter().position(|&t| t as usize >= v) {
            Some(i) => Err(FormatError::Corrupt(format!(
                "{name} token {i} has id {} outside the vocabulary of {v}",
                ids[i]
            ))),
            None => Ok(()),
        };
        check_ids("pretrain", pretrain)?;
        check_ids("finetune", &finetune.tokens)?;
        check_ids("alignment positive", &align_pos.tokens)?;
        check_ids("alignment negative", &align_neg.tokens)?;
        if h.pretrain_train_tokens > h.pretrain_tokens
            || h.finetune_train_items > h.finetune_items
            || h.alignment_train_pairs > h.alignment_pairs
        {
            return Err(FormatError::Corrupt(
                "a train split is larger than its data".into(),
            ));
        }
        if vocab.chars().first() != Some(&super::text::END_OF_TEXT) {
            return Err(FormatError::Corrupt("vocabulary id 0 is not \\0".into()));
        }
        // The hashes in the header are what checkpoints and manifests record.
        if hex(&vocab.sha256()) != h.vocab_sha256 {
            return Err(FormatError::Corrupt(
                "vocabulary does not match its sha256".into(),
            ));
        }
        if hex(&content_hash(h, body)) != h.content_hash {
            return Err(FormatError::Corrupt(
                "content does not match its content hash".into(),
            ));
        }
        Ok(())
    }

    /// The header fields (counts, recipe, hashes).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Vocabulary characters in id order (id 0 is `\0`).
    pub fn vocab(&self) -> &[char] {
        self.vocab.chars()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The tokenizer (character → id lookup).
    pub fn tokenizer(&self) -> &Vocab {
        &self.vocab
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u16>, UnknownChar> {
        self.vocab.encode(text)
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u16]) -> Result<String, UnknownId> {
        self.vocab.decode(ids)
    }

    /// The whole pretraining token stream (train then eval).
    pub fn pretrain(&self) -> &[u16] {
        &self.pretrain
    }

    /// First 90 % of the pretraining tokens.
    pub fn pretrain_train(&self) -> &[u16] {
        &self.pretrain[..self.header.pretrain_train_tokens as usize]
    }

    /// Last 10 % of the pretraining tokens.
    pub fn pretrain_eval(&self) -> &[u16] {
        &self.pretrain[self.header.pretrain_train_tokens as usize..]
    }

    /// All finetune (instruction) items, in split order.
    pub fn finetune(&self) -> ItemsView<'_> {
        self.finetune.view()
    }

    /// First 90 % of the finetune items.
    pub fn finetune_train(&self) -> ItemsView<'_> {
        self.finetune
            .view()
            .slice(0..self.header.finetune_train_items as usize)
    }

    /// Last 10 % of the finetune items.
    pub fn finetune_eval(&self) -> ItemsView<'_> {
        self.finetune
            .view()
            .slice(self.header.finetune_train_items as usize..self.finetune.len())
    }

    /// All alignment pairs.
    pub fn alignment(&self) -> PairsView<'_> {
        PairsView {
            positive: self.align_pos.view(),
            negative: self.align_neg.view(),
        }
    }

    /// First 90 % of the alignment pairs.
    pub fn alignment_train(&self) -> PairsView<'_> {
        let r = 0..self.header.alignment_train_pairs as usize;
        PairsView {
            positive: self.align_pos.view().slice(r.clone()),
            negative: self.align_neg.view().slice(r),
        }
    }

    /// Last 10 % of the alignment pairs.
    pub fn alignment_eval(&self) -> PairsView<'_> {
        let r = self.header.alignment_train_pairs as usize..self.align_pos.len();
        PairsView {
            positive: self.align_pos.view().slice(r.clone()),
            negative: self.align_neg.view().slice(r),
        }
    }

    /// sha256 (hex) of the corpus the dataset was prepared from.
    pub fn source_sha256(&self) -> &str {
        &self.header.source_sha256
    }

    /// sha256 (hex) identifying the prepared data (vocabulary, token arrays, split boundaries);
    /// record it in checkpoints and manifests.
    pub fn content_hash(&self) -> &str {
        &self.header.content_hash
    }

    /// sha256 (hex) of the vocabulary characters in id order, UTF-8.
    pub fn vocab_sha256(&self) -> &str {
        &self.header.vocab_sha256
    }

    /// Recipe name and version.
    pub fn recipe(&self) -> (&str, u32) {
        (&self.header.recipe, self.header.recipe_version)
    }
}

fn content_hash(h: &Header, body: &[u8]) -> [u8; 32] {
    let mut s = Sha256::new();
    s.update(b"tinypoet dataset content v1\0");
    for n in [
        h.pretrain_train_tokens,
        h.finetune_train_items,
        h.alignment_train_pairs,
    ] {
        s.update(n.to_le_bytes());
    }
    s.update(body);
    s.finalize().into()
}

/// Sequential reader over the body; lengths were checked against the file size beforehand.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.bytes.split_at(n);
        self.bytes = b;
        a
    }

    fn u32s(&mut self, n: usize) -> Vec<u32> {
        self.take(n * 4)
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn u16s(&mut self, n: usize) -> Vec<u16> {
        self.take(n * 2)
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    fn items(&mut self, n: usize, tokens: usize, name: &str) -> Result<Items, FormatError> {
        let offsets = self.u32s(n + 1);
        let tokens_v = self.u16s(tokens);
        let ok = offsets[0] == 0
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets[n] as usize == tokens;
        if !ok {
            return Err(FormatError::Corrupt(format!(
                "{name} item offsets are inconsistent"
            )));
        }
        Ok(Items {
            offsets,
            tokens: tokens_v,
        })
    }
}

/// Check the magic and version and that the fixed prefix is there: the header length.
fn check_prefix(bytes: &[u8]) -> Result<u64, FormatError> {
    let actual = bytes.len() as u64;
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        // A prefix of the magic (or nothing at all) is a truncated dataset, anything else is
        // another kind of file.
        if MAGIC.starts_with(bytes) {
            return Err(FormatError::Truncated {
                expected: (PREFIX + TRAILER) as u64,
                actual,
            });
        }
        return Err(FormatError::NotADataset);
    }
    if bytes.len() < PREFIX {
        return Err(FormatError::Truncated {
            expected: (PREFIX + TRAILER) as u64,
            actual,
        });
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let header_len = u32_at(12) as u64;
    if actual < PREFIX as u64 + header_len + TRAILER as u64 {
        return Err(FormatError::Truncated {
            expected: PREFIX as u64 + header_len + TRAILER as u64,
            actual,
        });
    }
    Ok(header_len)
}

/// The file is exactly as long as its header says, and its checksum matches.
fn check_length_and_checksum(
    bytes: &[u8],
    header: &Header,
    header_len: u64,
) -> Result<(), FormatError> {
    let actual = bytes.len() as u64;
    let h = header;
    // Sizes in u64 with checked arithmetic: a corrupt header must not overflow.
    let body_len = (|| {
        let words = h
            .vocab_size
            .checked_add(h.finetune_items.checked_add(1)?)?
            .checked_add(h.alignment_pairs.checked_add(1)?.checked_mul(2)?)?;
        let halves = h
            .pretrain_tokens
            .checked_add(h.finetune_tokens)?
            .checked_add(h.alignment_positive_tokens)?
            .checked_add(h.alignment_negative_tokens)?;
        words.checked_mul(4)?.checked_add(halves.checked_mul(2)?)
    })()
    .ok_or_else(|| FormatError::Corrupt("header sizes overflow".into()))?;
    let expected = (PREFIX as u64)
        .checked_add(header_len)
        .and_then(|x| x.checked_add(body_len))
        .and_then(|x| x.checked_add(TRAILER as u64))
        .ok_or_else(|| FormatError::Corrupt("header sizes overflow".into()))?;
    if actual < expected {
        return Err(FormatError::Truncated { expected, actual });
    }
    if actual > expected {
        return Err(FormatError::Corrupt(format!(
            "{} unexpected trailing bytes",
            actual - expected
        )));
    }
    let (content, sum) = bytes.split_at(bytes.len() - TRAILER);
    if Sha256::digest(content).as_slice() != sum {
        return Err(FormatError::ChecksumMismatch);
    }
    Ok(())
}
