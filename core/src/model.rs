//! Weight views over a parsed blob: one borrowed view per tensor, grouped per block. Vectors are
//! f16 bytes; matrices are [`Mat`]: f16 or int8.

use crate::blob::{self, Blob, Dtype, Layout, Manifest, ScaleDtype};
use crate::config::{Config, TensorKind, MAX_LAYERS};
use crate::kernels::Q8Matrix;
use crate::{Error, Tokenizer};

/// A weight matrix as the blob stores it. Kept small (12 bytes on a 32-bit target) because a
/// [`Model`] holds 6 per layer for up to 16 layers; the int8 view is rebuilt at each use
/// ([`Mat::q8`]), which costs a few instructions per mat-vec.
#[derive(Debug, Clone, Copy)]
pub enum Mat<'a> {
    /// f16 little-endian bytes: Linear weights transposed `[in, out]`, embeddings `[rows, C]`.
    F16(&'a [u8]),
    /// int8, row-major `[rows, cols]` (Linear weights `[out, in]`): the tensor's bytes (values,
    /// padding, scales) and the scales' precision; the group size is the model's
    /// ([`Model::q8_group`]).
    Q8 {
        /// The whole tensor.
        bytes: &'a [u8],
        /// Precision of its scales.
        scale: ScaleDtype,
    },
}

// 12 bytes on a 32-bit target: a slice and the scale precision (F16 uses its niche).
const _: () = assert!(core::mem::size_of::<Mat>() <= 3 * core::mem::size_of::<usize>());

impl Default for Mat<'_> {
    fn default() -> Self {
        Mat::F16(&[])
    }
}

impl<'a> Mat<'a> {
    /// Whether the matrix is int8.
    pub fn is_q8(&self) -> bool {
        matches!(self, Mat::Q8 { .. })
    }

    /// The int8 view of a `rows x n_in` matrix with groups of `group`; `None` for f16 or if
    /// the sizes do not match (they always do for a loaded model's shapes).
    pub fn q8(&self, group: usize, rows: usize, n_in: usize) -> Option<Q8Matrix<'a>> {
        let Mat::Q8 { bytes, scale } = *self else {
            return None;
        };
        let numel = rows.checked_mul(n_in)?;
        let at = usize::try_from(blob::q8_scales_offset(numel as u64)?).ok()?;
        Q8Matrix::new(
            bytes.get(..numel)?,
            bytes.get(at..)?,
            scale,
            group,
            rows,
            n_in,
        )
    }
}

/// One transformer block's tensors. Vectors are f16 LE bytes; matrices [`Mat`] (f16 Linear
/// weights are physical `[in, out]`, int8 ones `[out, in]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Layer<'a> {
    /// `[C]`
    pub ln1_w: &'a [u8],
    /// `[C]`
    pub ln1_b: &'a [u8],
    /// `[C, C]`
    pub wq: Mat<'a>,
    /// `[C, C]`
    pub wk: Mat<'a>,
    /// `[C, C]`
    pub wv: Mat<'a>,
    /// `[C, C]`
    pub proj_w: Mat<'a>,
    /// `[C]`
    pub proj_b: &'a [u8],
    /// `[C]`
    pub ln2_w: &'a [u8],
    /// `[C]`
    pub ln2_b: &'a [u8],
    /// `[F out, C in]` logically
    pub fc1_w: Mat<'a>,
    /// `[F]`
    pub fc1_b: &'a [u8],
    /// `[C out, F in]` logically
    pub fc2_w: Mat<'a>,
    /// `[C]`
    pub fc2_b: &'a [u8],
}

/// A runnable model: the parsed blob plus typed weight views. Borrows the blob bytes.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    blob: Blob<'a>,
    /// `[V, C]` row-major
    pub(crate) tok_emb: Mat<'a>,
    /// `[T, C]` row-major
    pub(crate) pos_emb: Mat<'a>,
    pub(crate) layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
    /// `[C]`
    pub(crate) ln_f_w: &'a [u8],
    /// `[C]`
    pub(crate) ln_f_b: &'a [u8],
    /// `[V out, C in]` logically
    pub(crate) head_w: Mat<'a>,
    /// `[V]`
    pub(crate) head_b: &'a [u8],
    /// The group size shared by every int8 matrix (`None`: all f16).
    pub(crate) q8_group: Option<usize>,
}

impl<'a> Model<'a> {
    /// Parse, validate and map a blob (see [`blob::parse`]).
    pub fn load(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::from_blob(blob::parse(bytes)?)
    }

    /// Map an already parsed blob. Runs f16 blobs and int8 blobs (matrices int8, vectors f16;
    /// any mix of f16 and int8 matrices works). Fails with [`Error::UnsupportedTensor`] for a
    /// tensor this core cannot run as stored: an int8 vector, an int8 Linear weight stored
    /// transposed, an int8 group size that is not a multiple of 4 in `4..=1024` dividing the row
    /// length, or int8 matrices with different group sizes; and with [`Error::Unsupported`] for
    /// f32 tensors.
    pub fn from_blob(blob: Blob<'a>) -> Result<Self, Error> {
        let mut m = Model {
            blob,
            tok_emb: Mat::default(),
            pos_emb: Mat::default(),
            layers: heapless::Vec::new(),
            ln_f_w: &[],
            ln_f_b: &[],
            head_w: Mat::default(),
            head_b: &[],
            q8_group: None,
        };
        for _ in 0..blob.config.n_layers {
            m.layers
                .push(Layer::default())
                .map_err(|_| Error::InvalidConfig("too many layers"))?;
        }
        for (i, t) in blob.tensors().enumerate() {
            let spec = crate::config::tensor_spec(&blob.config, i).ok_or(Error::TensorCount {
                expected: blob.config.n_tensors(),
                got: i + 1,
            })?;
            let unsupported = |reason| Error::UnsupportedTensor { index: i, reason };
            let b = t.bytes;
            let mat = match t.entry.dtype {
                Dtype::F32 => {
                    return Err(Error::Unsupported(
                        "f32 tensors cannot be run by this build",
                    ))
                }
                // the parser has checked the canonical layout of f16 tensors
                Dtype::F16 => Mat::F16(b),
                Dtype::Q8 { group_size, scale } => {
                    if !spec.kind.is_matrix() {
                        return Err(unsupported("int8 is for matrices; vectors must be f16"));
                    }
                    if t.entry.layout != Layout::RowMajor {
                        return Err(unsupported("int8 matrices must be stored row-major"));
                    }
                    let (values, scales) = t.q8_parts().ok_or(Error::TensorSize { index: i })?;
                    let &[rows, cols] = spec.shape.dims() else {
                        return Err(Error::TensorShape { index: i });
                    };
                    let g = group_size as usize;
                    Q8Matrix::new(values, scales, scale, g, rows, cols).ok_or(unsupported(
                        "int8 group size must be a multiple of 4 in 4..=1024 dividing the row length",
                    ))?;
                    if m.q8_group.is_some_and(|g0| g0 != g) {
                        return Err(unsupported("int8 matrices must share one group size"));
                    }
                    m.q8_group = Some(g);
                    Mat::Q8 { bytes: b, scale }
                }
            };
            let vec = match mat {
                Mat::F16(v) => v,
                Mat::Q8 { .. } => &[][..],
            };
            let layer = spec.layer.and_then(|l| m.layers.get_mut(l));
            match (spec.kind, layer) {
                (TensorKind::TokEmb, _) => m.tok_emb = mat,
                (TensorKind::PosEmb, _) => m.pos_emb = mat,
                (TensorKind::LnFWeight, _) => m.ln_f_w = vec,
                (TensorKind::LnFBias, _) => m.ln_f_b = vec,
                (TensorKind::HeadWeight, _) => m.head_w = mat,
                (TensorKind::HeadBias, _) => m.head_b = vec,
                (k, Some(l)) => match k {
                    TensorKind::Ln1Weight => l.ln1_w = vec,
                    TensorKind::Ln1Bias => l.ln1_b = vec,
                    TensorKind::Wq => l.wq = mat,
                    TensorKind::Wk => l.wk = mat,
                    TensorKind::Wv => l.wv = mat,
                    TensorKind::ProjWeight => l.proj_w = mat,
                    TensorKind::ProjBias => l.proj_b = vec,
                    TensorKind::Ln2Weight => l.ln2_w = vec,
                    TensorKind::Ln2Bias => l.ln2_b = vec,
                    TensorKind::Fc1Weight => l.fc1_w = mat,
                    TensorKind::Fc1Bias => l.fc1_b = vec,
                    TensorKind::Fc2Weight => l.fc2_w = mat,
                    TensorKind::Fc2Bias => l.fc2_b = vec,
                    _ => return Err(Error::TensorName { index: i }),
                },
                (_, None) => return Err(Error::TensorName { index: i }),
            }
        }
        Ok(m)
    }

    /// The group size of the int8 matrices, `None` for an all-f16 model.
    pub fn q8_group(&self) -> Option<usize> {
        self.q8_group
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.blob.config
    }

    /// Training manifest.
    pub fn manifest(&self) -> &Manifest<'a> {
        &self.blob.manifest
    }

    /// The parsed blob.
    pub fn blob(&self) -> &Blob<'a> {
        &self.blob
    }

    /// Tokenizer over the blob's vocabulary.
    pub fn tokenizer(&self) -> Tokenizer<'a> {
        self.blob.tokenizer()
    }

    /// The blob's rhyme table, if it has the optional section (crate docs, "Rhyme table").
    pub fn rhyme_table(&self) -> Option<blob::RhymeTable<'a>> {
        self.blob.rhyme
    }

    /// The verse constraint for `spec` over this model's vocabulary and rhyme table
    /// ([`crate::constrain::Verse::new`]).
    pub fn verse(
        &self,
        spec: &crate::constrain::FormSpec<'_>,
    ) -> Result<crate::constrain::Verse<'a>, Error> {
        crate::constrain::Verse::new(spec, &self.tokenizer(), self.blob.rhyme)
    }
}
