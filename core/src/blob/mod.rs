//! Blob format v1: the self-describing weight file (`.tpb`). The format is specified in the
//! crate docs (section "Blob format v1"); [`write()`] and [`parse`] are its only implementations.

mod parse;
mod write;

pub use parse::{parse, Blob, TensorEntries, TensorView};
pub use write::{encoded_len, write, BlobInput};

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

/// Storage type of one tensor.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE binary32, little-endian. Reserved: not written or run by v1 of this core.
    F32,
    /// IEEE binary16, little-endian. What this core writes and runs.
    F16,
    /// Reserved for int8 (issue 8): `numel` signed bytes in physical order, then, at the next
    /// multiple of 4 bytes, `numel / group_size` scales (one per `group_size` consecutive
    /// physical elements) in `scale` precision, little-endian. Parsed and size-checked now,
    /// run later.
    Q8 {
        /// Elements per scale (e.g. 32 or 64); must divide the number of elements.
        group_size: u32,
        /// Precision of the scales.
        scale: ScaleDtype,
    },
}

/// Precision of int8 group scales.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleDtype {
    /// binary16 scales.
    F16,
    /// binary32 scales.
    F32,
}

impl Dtype {
    /// Exact byte size of a tensor of `numel` elements, or `None` if inconsistent/overflowing.
    pub fn byte_len(&self, numel: u64) -> Option<u64> {
        match *self {
            Dtype::F32 => numel.checked_mul(4),
            Dtype::F16 => numel.checked_mul(2),
            Dtype::Q8 { group_size, scale } => {
                let g = group_size as u64;
                if g == 0 || !numel.is_multiple_of(g) {
                    return None;
                }
                let scales = (numel / g).checked_mul(match scale {
                    ScaleDtype::F16 => 2,
                    ScaleDtype::F32 => 4,
                })?;
                numel.checked_add(3).map(|n| n & !3)?.checked_add(scales)
            }
        }
    }
}

/// Physical order of a matrix in the blob.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As the logical shape: row-major `[rows, cols]` (embeddings, vectors).
    RowMajor,
    /// Transposed: a Linear weight of logical shape `[out, in]` stored row-major as `[in, out]`,
    /// so that output `o` of a mat-vec sums `w[k][o] * x[k]` over `k = 0..in` in order.
    Transposed,
}

/// The layout v1 of this core writes (and requires for f16) for a tensor kind.
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
    /// All tensors f16 (implemented).
    F16,
    /// Matrices int8 with per-group scales (reserved for issue 8; the writer returns
    /// [`Error::Unsupported`]).
    Q8 {
        /// Elements per group.
        group_size: u32,
        /// Scale precision.
        scale: ScaleDtype,
    },
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

/// Validate a vocabulary given as u32 LE bytes; returns the number of entries.
pub(crate) fn check_vocab_bytes(cfg: &Config, vocab: &[u8]) -> Result<(), Error> {
    if !vocab.len().is_multiple_of(4) || vocab.len() / 4 != cfg.vocab_size {
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
