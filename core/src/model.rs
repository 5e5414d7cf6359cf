//! Weight views over a parsed blob: one borrowed f16 slice per tensor, grouped per block.

use crate::blob::{self, Blob, Dtype, Manifest};
use crate::config::{Config, TensorKind, MAX_LAYERS};
use crate::{Error, Tokenizer};

/// One transformer block's tensors (f16 LE bytes). Linear weights are physical `[in, out]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layer<'a> {
    /// `[C]`
    pub ln1_w: &'a [u8],
    /// `[C]`
    pub ln1_b: &'a [u8],
    /// `[C in, C out]`
    pub wq: &'a [u8],
    /// `[C in, C out]`
    pub wk: &'a [u8],
    /// `[C in, C out]`
    pub wv: &'a [u8],
    /// `[C in, C out]`
    pub proj_w: &'a [u8],
    /// `[C]`
    pub proj_b: &'a [u8],
    /// `[C]`
    pub ln2_w: &'a [u8],
    /// `[C]`
    pub ln2_b: &'a [u8],
    /// `[C in, F out]`
    pub fc1_w: &'a [u8],
    /// `[F]`
    pub fc1_b: &'a [u8],
    /// `[F in, C out]`
    pub fc2_w: &'a [u8],
    /// `[C]`
    pub fc2_b: &'a [u8],
}

/// A runnable model: the parsed blob plus typed weight views. Borrows the blob bytes.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    blob: Blob<'a>,
    /// `[V, C]` row-major
    pub(crate) tok_emb: &'a [u8],
    /// `[T, C]` row-major
    pub(crate) pos_emb: &'a [u8],
    pub(crate) layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
    /// `[C]`
    pub(crate) ln_f_w: &'a [u8],
    /// `[C]`
    pub(crate) ln_f_b: &'a [u8],
    /// `[C in, V out]`
    pub(crate) head_w: &'a [u8],
    /// `[V]`
    pub(crate) head_b: &'a [u8],
}

impl<'a> Model<'a> {
    /// Parse, validate and map a blob (see [`blob::parse`]).
    pub fn load(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::from_blob(blob::parse(bytes)?)
    }

    /// Map an already parsed blob. Fails with [`Error::Unsupported`] for dtypes this build
    /// cannot run (only f16 is implemented).
    pub fn from_blob(blob: Blob<'a>) -> Result<Self, Error> {
        let mut m = Model {
            blob,
            tok_emb: &[],
            pos_emb: &[],
            layers: heapless::Vec::new(),
            ln_f_w: &[],
            ln_f_b: &[],
            head_w: &[],
            head_b: &[],
        };
        for _ in 0..blob.config.n_layers {
            m.layers
                .push(Layer::default())
                .map_err(|_| Error::InvalidConfig("too many layers"))?;
        }
        for (i, t) in blob.tensors().enumerate() {
            if t.entry.dtype != Dtype::F16 {
                return Err(Error::Unsupported(
                    "only f16 tensors can be run by this build",
                ));
            }
            let spec = crate::config::tensor_spec(&blob.config, i).ok_or(Error::TensorCount {
                expected: blob.config.n_tensors(),
                got: i + 1,
            })?;
            let b = t.bytes;
            let layer = spec.layer.and_then(|l| m.layers.get_mut(l));
            match (spec.kind, layer) {
                (TensorKind::TokEmb, _) => m.tok_emb = b,
                (TensorKind::PosEmb, _) => m.pos_emb = b,
                (TensorKind::LnFWeight, _) => m.ln_f_w = b,
                (TensorKind::LnFBias, _) => m.ln_f_b = b,
                (TensorKind::HeadWeight, _) => m.head_w = b,
                (TensorKind::HeadBias, _) => m.head_b = b,
                (k, Some(l)) => match k {
                    TensorKind::Ln1Weight => l.ln1_w = b,
                    TensorKind::Ln1Bias => l.ln1_b = b,
                    TensorKind::Wq => l.wq = b,
                    TensorKind::Wk => l.wk = b,
                    TensorKind::Wv => l.wv = b,
                    TensorKind::ProjWeight => l.proj_w = b,
                    TensorKind::ProjBias => l.proj_b = b,
                    TensorKind::Ln2Weight => l.ln2_w = b,
                    TensorKind::Ln2Bias => l.ln2_b = b,
                    TensorKind::Fc1Weight => l.fc1_w = b,
                    TensorKind::Fc1Bias => l.fc1_b = b,
                    TensorKind::Fc2Weight => l.fc2_w = b,
                    TensorKind::Fc2Bias => l.fc2_b = b,
                    _ => return Err(Error::TensorName { index: i }),
                },
                (_, None) => return Err(Error::TensorName { index: i }),
            }
        }
        Ok(m)
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
}
