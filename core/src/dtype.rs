//! Storage types of tensors: what the blob format and the kernels both speak. A leaf module
//! (no imports from the rest of the crate), so the kernels do not depend on the file format.

use serde::{Deserialize, Serialize};

/// Storage type of one tensor.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE binary32, little-endian. Reserved: not written or run by v1 of this core.
    F32,
    /// IEEE binary16, little-endian: every tensor of an f16 blob, and the vectors (biases,
    /// LayerNorm) of an int8 blob.
    F16,
    /// int8 with per-group scales (Q8_0-like, symmetric): `numel` signed bytes in physical
    /// order, then, at the next multiple of 4 bytes ([`q8_scales_offset`]), `numel / group_size`
    /// scales in `scale` precision, little-endian, scale `i` for physical elements
    /// `i*group_size .. (i+1)*group_size`; value = `q * scale`. For a matrix stored
    /// [`Layout::RowMajor`](crate::blob::Layout::RowMajor) with `group_size` dividing its row length, group `g` of row `r` is
    /// scale `r * (cols / group_size) + g`. See the crate docs ("int8 weights").
    Q8 {
        /// Elements per scale (32 in what this core writes); must divide the number of elements.
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

impl ScaleDtype {
    /// Bytes per scale.
    pub const fn bytes(self) -> usize {
        match self {
            ScaleDtype::F16 => 2,
            ScaleDtype::F32 => 4,
        }
    }
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
                let scales = (numel / g).checked_mul(scale.bytes() as u64)?;
                q8_scales_offset(numel)?.checked_add(scales)
            }
        }
    }
}

/// Byte offset of the scales inside an int8 tensor of `numel` elements (the values rounded up
/// to a multiple of 4), or `None` on overflow.
pub const fn q8_scales_offset(numel: u64) -> Option<u64> {
    match numel.checked_add(3) {
        Some(n) => Some(n & !3),
        None => None,
    }
}

/// Whether this core runs int8 matrices with `group_size` on rows of `row_len` elements: a
/// multiple of 4 in `4..=1024` (so a group's integer dot product is exact in f32) dividing
/// `row_len`.
pub const fn q8_group_ok(group_size: usize, row_len: usize) -> bool {
    group_size >= 4
        && group_size <= 1024
        && group_size.is_multiple_of(4)
        && row_len.is_multiple_of(group_size)
}
