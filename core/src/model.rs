//! Weight views over a parsed blob: one borrowed view per tensor, grouped per block, each typed
//! by its storage and checked once, at load. Vectors are [`Vec16`]; matrices are [`Mat`]: f16
//! or int8. The forward pass never re-checks a size and has no fallback for a wrong one.

use crate::blob::{Blob, Layout, Manifest, TensorEntries, TensorView};
use crate::config::{Config, TensorKind, TensorSpec, MAX_LAYERS};
use crate::dtype::Dtype;
use crate::kernels::Q8Matrix;
use crate::{Error, Tokenizer};

/// An f16 vector (bias or LayerNorm parameter): `len` little-endian binary16 values, the
/// length of its canonical shape (checked at load).
#[derive(Debug, Clone, Copy)]
pub struct Vec16<'a>(&'a [u8]);

impl<'a> Vec16<'a> {
    /// The little-endian f16 bytes (2 per value).
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len() / 2
    }

    /// True for a vector of no values (never for a loaded model).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An f16 matrix: little-endian binary16 bytes of its `rows x cols` values (checked at load).
/// Linear weights are stored transposed, physical `[in, out]`; embeddings `[rows, C]`.
#[derive(Debug, Clone, Copy)]
pub struct Mat16<'a>(&'a [u8]);

impl<'a> Mat16<'a> {
    /// The little-endian f16 bytes, row-major in the physical layout.
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// A weight matrix, typed by how the blob stores it; both views are checked at load, so every
/// use is a plain kernel call.
#[derive(Debug, Clone, Copy)]
pub enum Mat<'a> {
    /// f16: Linear weights transposed `[in, out]`, embeddings `[rows, C]`.
    F16(Mat16<'a>),
    /// int8, row-major `[rows, cols]` (Linear weights `[out, in]`), groups of
    /// [`Model::q8_group`].
    Q8(Q8Matrix<'a>),
}

impl<'a> Mat<'a> {
    /// The int8 view, `None` for an f16 matrix.
    pub fn as_q8(&self) -> Option<&Q8Matrix<'a>> {
        match self {
            Mat::Q8(q) => Some(q),
            Mat::F16(_) => None,
        }
    }

    /// Whether the matrix is int8.
    pub fn is_q8(&self) -> bool {
        self.as_q8().is_some()
    }
}

/// One transformer block's tensors (f16 Linear weights physical `[in, out]`, int8 ones
/// `[out, in]`).
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// `[C]`
    pub ln1_w: Vec16<'a>,
    /// `[C]`
    pub ln1_b: Vec16<'a>,
    /// `[C, C]`
    pub wq: Mat<'a>,
    /// `[C, C]`
    pub wk: Mat<'a>,
    /// `[C, C]`
    pub wv: Mat<'a>,
    /// `[C, C]`
    pub proj_w: Mat<'a>,
    /// `[C]`
    pub proj_b: Vec16<'a>,
    /// `[C]`
    pub ln2_w: Vec16<'a>,
    /// `[C]`
    pub ln2_b: Vec16<'a>,
    /// `[F out, C in]` logically
    pub fc1_w: Mat<'a>,
    /// `[F]`
    pub fc1_b: Vec16<'a>,
    /// `[C out, F in]` logically
    pub fc2_w: Mat<'a>,
    /// `[C]`
    pub fc2_b: Vec16<'a>,
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
    pub(crate) ln_f_w: Vec16<'a>,
    /// `[C]`
    pub(crate) ln_f_b: Vec16<'a>,
    /// `[V out, C in]` logically
    pub(crate) head_w: Mat<'a>,
    /// `[V]`
    pub(crate) head_b: Vec16<'a>,
    /// The group size shared by every int8 matrix (`None`: all f16).
    q8_group: Option<usize>,
}

/// Room for a [`Model`] that [`Model::load_in`] maps in place. The model in it is reachable
/// only through the reference `load_in` returns.
#[derive(Debug, Default)]
pub struct ModelSlot<'a>(Option<Model<'a>>);

impl ModelSlot<'_> {
    /// An empty slot.
    pub const fn new() -> Self {
        ModelSlot(None)
    }
}

/// Maps the blob's tensors, in canonical order from some index on, to typed views (llama2.c's
/// `memory_map_weights`, with every size checked).
struct Mapper<'a> {
    tensors: TensorEntries<'a>,
    cfg: Config,
    /// Index of the next tensor.
    next: usize,
    /// The int8 group size of the matrices mapped so far (all must share one).
    q8_group: Option<usize>,
}

impl<'a> Mapper<'a> {
    /// A mapper at tensor `first` of `blob` (the parser has checked that the directory holds
    /// the config's tensor count).
    fn at(blob: &Blob<'a>, first: usize, q8_group: Option<usize>) -> Self {
        let mut tensors = blob.tensors();
        for _ in 0..first {
            tensors.next();
        }
        Mapper {
            tensors,
            cfg: blob.config,
            next: first,
            q8_group,
        }
    }

    /// The next tensor, which must be of `kind`.
    fn take(&mut self, kind: TensorKind) -> Result<(TensorView<'a>, TensorSpec), Error> {
        let i = self.next;
        let count = Error::TensorCount {
            expected: self.cfg.n_tensors(),
            got: i,
        };
        let spec = crate::config::tensor_spec(&self.cfg, i).ok_or(count)?;
        let t = self.tensors.next().ok_or(count)?;
        self.next += 1;
        if spec.kind != kind {
            return Err(Error::TensorName { index: i });
        }
        if t.entry.dtype == Dtype::F32 {
            return Err(Error::Unsupported(
                "f32 tensors cannot be run by this build",
            ));
        }
        Ok((t, spec))
    }

    fn vector(&mut self, kind: TensorKind) -> Result<Vec16<'a>, Error> {
        let (t, spec) = self.take(kind)?;
        if t.entry.dtype != Dtype::F16 {
            return Err(Error::UnsupportedTensor {
                index: spec.index,
                reason: "int8 is for matrices; vectors must be f16",
            });
        }
        if t.bytes.len() != 2 * spec.shape.numel() {
            return Err(Error::TensorSize { index: spec.index });
        }
        Ok(Vec16(t.bytes))
    }

    fn matrix(&mut self, kind: TensorKind) -> Result<Mat<'a>, Error> {
        let (t, spec) = self.take(kind)?;
        let i = spec.index;
        let &[rows, cols] = spec.shape.dims() else {
            return Err(Error::TensorShape { index: i });
        };
        let unsupported = |reason| Error::UnsupportedTensor { index: i, reason };
        match t.entry.dtype {
            Dtype::Q8 { group_size, scale } => {
                if t.entry.layout != Layout::RowMajor {
                    return Err(unsupported("int8 matrices must be stored row-major"));
                }
                let (values, scales) = t.q8_parts().ok_or(Error::TensorSize { index: i })?;
                let g = group_size as usize;
                let q = Q8Matrix::new(values, scales, scale, g, rows, cols).ok_or(unsupported(
                    "int8 group size must be a multiple of 4 in 4..=1024 dividing the row length",
                ))?;
                if self.q8_group.is_some_and(|g0| g0 != g) {
                    return Err(unsupported("int8 matrices must share one group size"));
                }
                self.q8_group = Some(g);
                Ok(Mat::Q8(q))
            }
            _ => {
                // the parser has checked the canonical layout of f16 tensors
                if Some(t.bytes.len()) != rows.checked_mul(cols).and_then(|n| n.checked_mul(2)) {
                    return Err(Error::TensorSize { index: i });
                }
                Ok(Mat::F16(Mat16(t.bytes)))
            }
        }
    }
}

/// The tensors outside the blocks: embeddings, final LayerNorm, LM head. They are mapped before
/// the blocks, so that a model can hold them from the start and its table of blocks is then
/// filled in place ([`Model::load_in`]).
struct Ends<'a> {
    tok_emb: Mat<'a>,
    pos_emb: Mat<'a>,
    ln_f_w: Vec16<'a>,
    ln_f_b: Vec16<'a>,
    head_w: Mat<'a>,
    head_b: Vec16<'a>,
}

impl<'a> Ends<'a> {
    /// Map the embeddings (tensors 0 and 1) and the final LayerNorm and head (the last four),
    /// and return a mapper at the first block (tensor 2) that carries their int8 group.
    fn map(blob: &Blob<'a>) -> Result<(Self, Mapper<'a>), Error> {
        use TensorKind as K;
        let mut m = Mapper::at(blob, 0, None);
        let tok_emb = m.matrix(K::TokEmb)?;
        let pos_emb = m.matrix(K::PosEmb)?;
        let mut tail = Mapper::at(blob, 2 + 13 * blob.config.n_layers, m.q8_group);
        let ends = Ends {
            tok_emb,
            pos_emb,
            ln_f_w: tail.vector(K::LnFWeight)?,
            ln_f_b: tail.vector(K::LnFBias)?,
            head_w: tail.matrix(K::HeadWeight)?,
            head_b: tail.vector(K::HeadBias)?,
        };
        if tail.tensors.next().is_some() {
            return Err(Error::TensorCount {
                expected: blob.config.n_tensors(),
                got: tail.next + 1,
            });
        }
        Ok((ends, Mapper::at(blob, 2, tail.q8_group)))
    }

    /// A model of these views whose table of blocks is still empty ([`Model::push_layers`]
    /// fills it and sets the int8 group).
    fn into_model(self, blob: Blob<'a>) -> Model<'a> {
        Model {
            blob,
            tok_emb: self.tok_emb,
            pos_emb: self.pos_emb,
            layers: heapless::Vec::new(),
            ln_f_w: self.ln_f_w,
            ln_f_b: self.ln_f_b,
            head_w: self.head_w,
            head_b: self.head_b,
            q8_group: None,
        }
    }
}

impl<'a> Model<'a> {
    /// Parse, validate and map a blob (see [`crate::blob::parse`]).
    pub fn load(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::from_blob(crate::blob::parse(bytes)?)
    }

    /// [`Model::load`] into `slot`, the table of blocks filled in place: the same model, with
    /// its views on the stack once. (A model is 3.5 KiB on a 32-bit target, most of it the
    /// table with room for [`MAX_LAYERS`] blocks; [`Model::load`] builds it in its own frame and
    /// returns it by value, and a microcontroller's stack is a few KiB.) On an error the slot
    /// holds no model that can be reached.
    pub fn load_in<'s>(slot: &'s mut ModelSlot<'a>, bytes: &'a [u8]) -> Result<&'s Self, Error> {
        let blob = crate::blob::parse(bytes)?;
        let (ends, mut blocks) = Ends::map(&blob)?;
        let model = slot.0.insert(ends.into_model(blob));
        model.push_layers(&mut blocks)?;
        Ok(model)
    }

    /// Map an already parsed blob. Runs f16 blobs and int8 blobs (matrices int8, vectors f16;
    /// any mix of f16 and int8 matrices works). Fails with [`Error::UnsupportedTensor`] for a
    /// tensor this core cannot run as stored: an int8 vector, an int8 Linear weight stored
    /// transposed, an int8 group size that is not a multiple of 4 in `4..=1024` dividing the row
    /// length, or int8 matrices with different group sizes; and with [`Error::Unsupported`] for
    /// f32 tensors.
    pub fn from_blob(blob: Blob<'a>) -> Result<Self, Error> {
        let (ends, mut blocks) = Ends::map(&blob)?;
        let mut model = ends.into_model(blob);
        model.push_layers(&mut blocks)?;
        Ok(model)
    }

    /// Map the blocks (`blocks` is at tensor 2) into the table, in place, and set the int8
    /// group all matrices share.
    fn push_layers(&mut self, blocks: &mut Mapper<'a>) -> Result<(), Error> {
        use TensorKind as K;
        for _ in 0..self.blob.config.n_layers {
            let layer = Layer {
                ln1_w: blocks.vector(K::Ln1Weight)?,
                ln1_b: blocks.vector(K::Ln1Bias)?,
                wq: blocks.matrix(K::Wq)?,
                wk: blocks.matrix(K::Wk)?,
                wv: blocks.matrix(K::Wv)?,
                proj_w: blocks.matrix(K::ProjWeight)?,
                proj_b: blocks.vector(K::ProjBias)?,
                ln2_w: blocks.vector(K::Ln2Weight)?,
                ln2_b: blocks.vector(K::Ln2Bias)?,
                fc1_w: blocks.matrix(K::Fc1Weight)?,
                fc1_b: blocks.vector(K::Fc1Bias)?,
                fc2_w: blocks.matrix(K::Fc2Weight)?,
                fc2_b: blocks.vector(K::Fc2Bias)?,
            };
            self.layers
                .push(layer)
                .map_err(|_| Error::InvalidConfig("too many layers"))?;
        }
        self.q8_group = blocks.q8_group;
        Ok(())
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
        Tokenizer::from_validated(self.blob.vocab_bytes())
    }

    /// The blob's rhyme table, if it has the optional section (crate docs, "Rhyme table").
    pub fn rhyme_table(&self) -> Option<crate::blob::RhymeTable<'a>> {
        self.blob.rhyme()
    }

    /// The verse constraint for `spec` over this model's vocabulary and rhyme table
    /// ([`crate::constrain::Verse::new`]).
    pub fn verse(
        &self,
        spec: &crate::constrain::FormSpec<'_>,
    ) -> Result<crate::constrain::Verse<'a>, Error> {
        crate::constrain::Verse::new(spec, &self.tokenizer(), self.blob.rhyme())
    }
}

// A model is a table of views with room for MAX_LAYERS blocks: 3,488 bytes on a 32-bit
// target (thumbv7em and wasm32 alike), where the firmware keeps it on the stack (the checked
// int8 views are 24 bytes each; the blob's rhyme-table view added 48 bytes to the former 3,440).
#[cfg(target_pointer_width = "32")]
const _: () = assert!(core::mem::size_of::<Model>() <= 3488);
