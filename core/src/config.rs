//! Model hyper-parameters and the canonical tensor list.
//!
//! The canonical order below is the order of the trainer's flat parameter buffer and of the
//! blob's tensor directory (docs/ARCHITECTURE.md). Shapes use the PyTorch convention: a Linear
//! weight is `[out, in]`.

use core::fmt::Write as _;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Largest number of transformer blocks a blob may declare (bounds the fixed-size weight table).
pub const MAX_LAYERS: usize = 16;
/// Largest vocabulary: token ids are `u16`, so at most 65,536 entries.
pub const MAX_VOCAB: usize = 1 << 16;
/// Largest context length (positions are stored in `u16` token history).
pub const MAX_CONTEXT: usize = 1 << 15;
/// Largest `dim` and `ffn_dim`.
pub const MAX_WIDTH: usize = 1 << 14;

/// A token id (index into the sorted vocabulary; id 0 is `'\0'`, end-of-text).
pub type Token = u16;

/// Model hyper-parameters, stored in the blob header.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// V: number of characters in the vocabulary (8548 for the Tang corpus).
    pub vocab_size: usize,
    /// C: model width (64).
    pub dim: usize,
    /// Attention heads (4); head size = dim / n_heads.
    pub n_heads: usize,
    /// Transformer blocks (4).
    pub n_layers: usize,
    /// T: maximum context (256).
    pub context: usize,
    /// F: hidden width of the feed-forward block (256).
    pub ffn_dim: usize,
    /// LayerNorm epsilon (1e-5).
    pub ln_eps: f32,
    /// Multiplier of the attention scores (the reference uses 1/sqrt(64) = 0.125).
    pub attn_scale: f32,
}

impl Config {
    /// The default TutorialLLM model for the Tang corpus.
    pub const TANG: Config = Config {
        vocab_size: 8548,
        dim: 64,
        n_heads: 4,
        n_layers: 4,
        context: 256,
        ffn_dim: 256,
        ln_eps: 1e-5,
        attn_scale: 0.125,
    };

    /// Head size (dim / n_heads).
    pub const fn head_dim(&self) -> usize {
        match self.dim.checked_div(self.n_heads) {
            Some(h) => h,
            None => 0,
        }
    }

    /// Number of tensors in the canonical list: 2 + 13 per layer + 4.
    pub const fn n_tensors(&self) -> usize {
        2 + 13 * self.n_layers + 4
    }

    /// Total parameter count (1,318,372 for [`Config::TANG`]). Saturates on absurd configs.
    pub const fn param_count(&self) -> usize {
        let (v, c, t, f) = (self.vocab_size, self.dim, self.context, self.ffn_dim);
        let cc = c.saturating_mul(c);
        let fc = f.saturating_mul(c);
        let vc = v.saturating_mul(c);
        // ln1, ln2 weight + bias: 4C; wq, wk, wv: 3C²; proj: C² + C; fc1: FC + F; fc2: CF + C
        let block = c
            .saturating_mul(6)
            .saturating_add(cc.saturating_mul(4))
            .saturating_add(fc.saturating_mul(2))
            .saturating_add(f);
        // tok_emb VC, pos_emb TC, blocks, ln_f 2C, head VC + V
        vc.saturating_add(t.saturating_mul(c))
            .saturating_add(self.n_layers.saturating_mul(block))
            .saturating_add(c.saturating_mul(2))
            .saturating_add(vc)
            .saturating_add(v)
    }

    /// The canonical tensors in order (same as the free function [`tensor_specs`]).
    pub fn tensor_specs(&self) -> TensorSpecs {
        tensor_specs(self)
    }

    /// Check every limit the core relies on. The parser and the writer both call this.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &'static str| Err(Error::InvalidConfig(what));
        if self.vocab_size == 0 || self.vocab_size > MAX_VOCAB {
            return bad("vocab_size must be in 1..=65536");
        }
        if self.dim == 0 || self.dim > MAX_WIDTH {
            return bad("dim must be in 1..=16384");
        }
        if self.n_heads == 0 || !self.dim.is_multiple_of(self.n_heads) {
            return bad("n_heads must be >= 1 and divide dim");
        }
        if self.n_layers == 0 || self.n_layers > MAX_LAYERS {
            return bad("n_layers must be in 1..=16");
        }
        if self.context == 0 || self.context > MAX_CONTEXT {
            return bad("context must be in 1..=32768");
        }
        if self.ffn_dim == 0 || self.ffn_dim > MAX_WIDTH {
            return bad("ffn_dim must be in 1..=16384");
        }
        if !(self.ln_eps.is_finite() && self.ln_eps > 0.0) {
            return bad("ln_eps must be finite and > 0");
        }
        // 1/sqrt(head size) is at most 1 for every head size; a larger multiplier only
        // sharpens the softmax towards argmax until the scores overflow f32 (3.4e38 gave NaN
        // logits and an empty poem), so it is out of range.
        if !(self.attn_scale > 0.0 && self.attn_scale <= 1.0) {
            return bad("attn_scale must be in (0, 1]");
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::TANG
    }
}

const _: () = assert!(Config::TANG.param_count() == 1_318_372);

/// What a tensor is; decides its physical layout in the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum TensorKind {
    TokEmb,
    PosEmb,
    Ln1Weight,
    Ln1Bias,
    Wq,
    Wk,
    Wv,
    ProjWeight,
    ProjBias,
    Ln2Weight,
    Ln2Bias,
    Fc1Weight,
    Fc1Bias,
    Fc2Weight,
    Fc2Bias,
    LnFWeight,
    LnFBias,
    HeadWeight,
    HeadBias,
}

const BLOCK_KINDS: [TensorKind; 13] = [
    TensorKind::Ln1Weight,
    TensorKind::Ln1Bias,
    TensorKind::Wq,
    TensorKind::Wk,
    TensorKind::Wv,
    TensorKind::ProjWeight,
    TensorKind::ProjBias,
    TensorKind::Ln2Weight,
    TensorKind::Ln2Bias,
    TensorKind::Fc1Weight,
    TensorKind::Fc1Bias,
    TensorKind::Fc2Weight,
    TensorKind::Fc2Bias,
];

impl TensorKind {
    /// True for Linear weights (and the LM head): stored transposed, `[in, out]`, in the blob.
    pub const fn is_linear_weight(self) -> bool {
        matches!(
            self,
            TensorKind::Wq
                | TensorKind::Wk
                | TensorKind::Wv
                | TensorKind::ProjWeight
                | TensorKind::Fc1Weight
                | TensorKind::Fc2Weight
                | TensorKind::HeadWeight
        )
    }

    /// True for the matrices: the embedding tables and every Linear weight (the tensors an int8
    /// blob stores as int8; vectors, i.e. biases and LayerNorm parameters, stay f16).
    pub const fn is_matrix(self) -> bool {
        self.is_linear_weight() || matches!(self, TensorKind::TokEmb | TensorKind::PosEmb)
    }

    /// Name suffix (after `blocks.{l}.` for block tensors).
    pub const fn suffix(self) -> &'static str {
        match self {
            TensorKind::TokEmb => "tok_emb",
            TensorKind::PosEmb => "pos_emb",
            TensorKind::Ln1Weight => "ln1.weight",
            TensorKind::Ln1Bias => "ln1.bias",
            TensorKind::Wq => "attn.wq",
            TensorKind::Wk => "attn.wk",
            TensorKind::Wv => "attn.wv",
            TensorKind::ProjWeight => "attn.proj.weight",
            TensorKind::ProjBias => "attn.proj.bias",
            TensorKind::Ln2Weight => "ln2.weight",
            TensorKind::Ln2Bias => "ln2.bias",
            TensorKind::Fc1Weight => "ffn.fc1.weight",
            TensorKind::Fc1Bias => "ffn.fc1.bias",
            TensorKind::Fc2Weight => "ffn.fc2.weight",
            TensorKind::Fc2Bias => "ffn.fc2.bias",
            TensorKind::LnFWeight => "ln_f.weight",
            TensorKind::LnFBias => "ln_f.bias",
            TensorKind::HeadWeight => "head.weight",
            TensorKind::HeadBias => "head.bias",
        }
    }
}

/// Logical shape of a tensor (rank 1 or 2), PyTorch convention.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    rank: u8,
    dims: [usize; 2],
}

impl Shape {
    /// A vector `[n]`.
    pub const fn vector(n: usize) -> Shape {
        Shape {
            rank: 1,
            dims: [n, 0],
        }
    }
    /// A matrix `[rows, cols]`.
    pub const fn matrix(rows: usize, cols: usize) -> Shape {
        Shape {
            rank: 2,
            dims: [rows, cols],
        }
    }
    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        let r = if self.rank == 2 { 2 } else { 1 };
        &self.dims[..r]
    }
    /// Number of elements (saturating). Ranks other than 1 and 2 count as 0.
    pub const fn numel(&self) -> usize {
        match self.rank {
            1 => self.dims[0],
            2 => self.dims[0].saturating_mul(self.dims[1]),
            _ => 0,
        }
    }
}

/// Maximum length of a canonical tensor name.
pub const NAME_CAPACITY: usize = 32;
/// A canonical tensor name such as `blocks.3.ffn.fc2.bias`.
pub type TensorName = heapless::String<NAME_CAPACITY>;

/// One entry of the canonical tensor list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Position in the canonical order.
    pub index: usize,
    /// Canonical name (docs/ARCHITECTURE.md).
    pub name: TensorName,
    /// Logical shape, PyTorch convention (Linear weights `[out, in]`).
    pub shape: Shape,
    /// What the tensor is.
    pub kind: TensorKind,
    /// Block index for per-block tensors.
    pub layer: Option<usize>,
}

/// The `i`-th tensor of the canonical list, or `None` past the end.
pub fn tensor_spec(cfg: &Config, i: usize) -> Option<TensorSpec> {
    let (v, c, t, f) = (cfg.vocab_size, cfg.dim, cfg.context, cfg.ffn_dim);
    let n = cfg.n_tensors();
    let (kind, layer) = if i == 0 {
        (TensorKind::TokEmb, None)
    } else if i == 1 {
        (TensorKind::PosEmb, None)
    } else if i < n - 4 {
        let j = i - 2;
        (BLOCK_KINDS[j % 13], Some(j / 13))
    } else if i < n {
        let tail = [
            TensorKind::LnFWeight,
            TensorKind::LnFBias,
            TensorKind::HeadWeight,
            TensorKind::HeadBias,
        ];
        (tail[i - (n - 4)], None)
    } else {
        return None;
    };
    let shape = match kind {
        TensorKind::TokEmb | TensorKind::HeadWeight => Shape::matrix(v, c),
        TensorKind::PosEmb => Shape::matrix(t, c),
        TensorKind::Wq | TensorKind::Wk | TensorKind::Wv | TensorKind::ProjWeight => {
            Shape::matrix(c, c)
        }
        TensorKind::Fc1Weight => Shape::matrix(f, c),
        TensorKind::Fc2Weight => Shape::matrix(c, f),
        TensorKind::Fc1Bias => Shape::vector(f),
        TensorKind::HeadBias => Shape::vector(v),
        _ => Shape::vector(c),
    };
    let mut name = TensorName::new();
    // Cannot fail: the longest name is "blocks.15.attn.proj.weight" (26 bytes).
    let _ = match layer {
        Some(l) => write!(name, "blocks.{}.{}", l, kind.suffix()),
        None => write!(name, "{}", kind.suffix()),
    };
    Some(TensorSpec {
        index: i,
        name,
        shape,
        kind,
        layer,
    })
}

/// Iterator over the canonical tensor list; see [`tensor_specs`].
#[derive(Debug, Clone)]
pub struct TensorSpecs {
    cfg: Config,
    next: usize,
}

impl Iterator for TensorSpecs {
    type Item = TensorSpec;
    fn next(&mut self) -> Option<TensorSpec> {
        let s = tensor_spec(&self.cfg, self.next)?;
        self.next += 1;
        Some(s)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.cfg.n_tensors().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for TensorSpecs {}

/// The canonical tensors of `cfg` in order: `for s in tensor_specs(&cfg) { s.name, s.shape }`.
pub fn tensor_specs(cfg: &Config) -> TensorSpecs {
    TensorSpecs { cfg: *cfg, next: 0 }
}
