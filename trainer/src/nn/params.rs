//! Model parameters (and their gradients) in one flat buffer with named views, in the canonical
//! tensor order of `docs/ARCHITECTURE.md`. All sizes are computed in one place,
//! [`ParamLayout::new`], like llm.c's `fill_in_parameter_sizes`.
//!
//! Linear weights follow the PyTorch convention `[out, in]`, row-major. Because `attn.wq`,
//! `attn.wk` and `attn.wv` are adjacent in the canonical order, the three of them together form
//! one `[3C, C]` matrix, which the model uses as a single fused QKV projection.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::nn::ops::Float;

pub use tinypoet_core::Config;

/// The model's shape (the vocabulary size comes from the dataset).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    pub dim: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub context: usize,
    pub ffn_dim: usize,
}

impl Default for ModelShape {
    fn default() -> Self {
        ModelShape {
            dim: 64,
            n_heads: 4,
            n_layers: 4,
            context: 256,
            ffn_dim: 256,
        }
    }
}

impl ModelShape {
    /// The full config for a vocabulary of `vocab_size` characters. The attention scale is
    /// `dim^-0.5` (the reference scales by the model dim, not the head size).
    pub fn config(&self, vocab_size: usize) -> Config {
        Config {
            vocab_size,
            dim: self.dim,
            n_heads: self.n_heads,
            n_layers: self.n_layers,
            context: self.context,
            ffn_dim: self.ffn_dim,
            ln_eps: 1e-5,
            attn_scale: 1.0 / (self.dim as f32).sqrt(),
        }
    }
}

/// The model configuration as stored in a checkpoint (mirror of `tinypoet_core::Config`, kept
/// apart so the file format does not change when the core's type gains fields).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigRecord {
    pub vocab_size: u32,
    pub dim: u32,
    pub n_heads: u32,
    pub n_layers: u32,
    pub context: u32,
    pub ffn_dim: u32,
    pub ln_eps: f32,
    pub attn_scale: f32,
}

impl From<&Config> for ConfigRecord {
    fn from(c: &Config) -> Self {
        ConfigRecord {
            vocab_size: c.vocab_size as u32,
            dim: c.dim as u32,
            n_heads: c.n_heads as u32,
            n_layers: c.n_layers as u32,
            context: c.context as u32,
            ffn_dim: c.ffn_dim as u32,
            ln_eps: c.ln_eps,
            attn_scale: c.attn_scale,
        }
    }
}

impl From<&ConfigRecord> for Config {
    fn from(c: &ConfigRecord) -> Self {
        Config {
            vocab_size: c.vocab_size as usize,
            dim: c.dim as usize,
            n_heads: c.n_heads as usize,
            n_layers: c.n_layers as usize,
            context: c.context as usize,
            ffn_dim: c.ffn_dim as usize,
            ln_eps: c.ln_eps,
            attn_scale: c.attn_scale,
        }
    }
}

/// One named tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

impl TensorInfo {
    /// The element range of this tensor in the flat buffer.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// Element ranges of one transformer block's tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRanges {
    pub ln1_w: Range<usize>,
    pub ln1_b: Range<usize>,
    /// `wq`, `wk`, `wv` together: a `[3C, C]` matrix (Q rows, then K rows, then V rows).
    pub wqkv: Range<usize>,
    pub proj_w: Range<usize>,
    pub proj_b: Range<usize>,
    pub ln2_w: Range<usize>,
    pub ln2_b: Range<usize>,
    pub fc1_w: Range<usize>,
    pub fc1_b: Range<usize>,
    pub fc2_w: Range<usize>,
    pub fc2_b: Range<usize>,
}

/// Element ranges of every tensor, for the kernels (no string look-ups on the hot path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranges {
    pub tok_emb: Range<usize>,
    pub pos_emb: Range<usize>,
    pub blocks: Vec<BlockRanges>,
    pub lnf_w: Range<usize>,
    pub lnf_b: Range<usize>,
    pub head_w: Range<usize>,
    pub head_b: Range<usize>,
}

/// What each tensor is, for initialisation and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// Embedding table (PyTorch init N(0, 1)).
    Embedding,
    /// Linear weight `[out, in]` (PyTorch init U(±1/√in)).
    LinearWeight { fan_in: usize },
    /// Linear bias (PyTorch init U(±1/√in) of its layer).
    LinearBias { fan_in: usize },
    /// LayerNorm gain (init 1).
    NormWeight,
    /// LayerNorm shift (init 0).
    NormBias,
}

/// The layout of all parameters: names, shapes and offsets in canonical order.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamLayout {
    cfg: Config,
    tensors: Vec<TensorInfo>,
    kinds: Vec<TensorKind>,
    ranges: Ranges,
    total: usize,
}

impl ParamLayout {
    /// Compute every tensor's shape and offset from the config (the one place sizes are defined).
    pub fn new(cfg: &Config) -> Self {
        let (v, c, t, f) = (cfg.vocab_size, cfg.dim, cfg.context, cfg.ffn_dim);
        let mut tensors = Vec::new();
        let mut kinds = Vec::new();
        let mut offset = 0usize;
        let mut push = |name: String, shape: Vec<usize>, kind: TensorKind| -> Range<usize> {
            let len = shape.iter().product();
            tensors.push(TensorInfo {
                name,
                shape,
                offset,
                len,
            });
            kinds.push(kind);
            offset += len;
            offset - len..offset
        };
        use TensorKind::*;
        let tok_emb = push("tok_emb".into(), vec![v, c], Embedding);
        let pos_emb = push("pos_emb".into(), vec![t, c], Embedding);
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let p = |s: &str| format!("blocks.{l}.{s}");
            let ln1_w = push(p("ln1.weight"), vec![c], NormWeight);
            let ln1_b = push(p("ln1.bias"), vec![c], NormBias);
            let wq = push(p("attn.wq"), vec![c, c], LinearWeight { fan_in: c });
            let _wk = push(p("attn.wk"), vec![c, c], LinearWeight { fan_in: c });
            let wv = push(p("attn.wv"), vec![c, c], LinearWeight { fan_in: c });
            let proj_w = push(
                p("attn.proj.weight"),
                vec![c, c],
                LinearWeight { fan_in: c },
            );
            let proj_b = push(p("attn.proj.bias"), vec![c], LinearBias { fan_in: c });
            let ln2_w = push(p("ln2.weight"), vec![c], NormWeight);
            let ln2_b = push(p("ln2.bias"), vec![c], NormBias);
            let fc1_w = push(p("ffn.fc1.weight"), vec![f, c], LinearWeight { fan_in: c });
            let fc1_b = push(p("ffn.fc1.bias"), vec![f], LinearBias { fan_in: c });
            let fc2_w = push(p("ffn.fc2.weight"), vec![c, f], LinearWeight { fan_in: f });
            let fc2_b = push(p("ffn.fc2.bias"), vec![c], LinearBias { fan_in: f });
            blocks.push(BlockRanges {
                ln1_w,
                ln1_b,
                wqkv: wq.start..wv.end,
                proj_w,
                proj_b,
                ln2_w,
                ln2_b,
                fc1_w,
                fc1_b,
                fc2_w,
                fc2_b,
            });
        }
        let lnf_w = push("ln_f.weight".into(), vec![c], NormWeight);
        let lnf_b = push("ln_f.bias".into(), vec![c], NormBias);
        let head_w = push("head.weight".into(), vec![v, c], LinearWeight { fan_in: c });
        let head_b = push("head.bias".into(), vec![v], LinearBias { fan_in: c });
        let total = offset;
        ParamLayout {
            cfg: *cfg,
            tensors,
            kinds,
            ranges: Ranges {
                tok_emb,
                pos_emb,
                blocks,
                lnf_w,
                lnf_b,
                head_w,
                head_b,
            },
            total,
        }
    }

    /// Total number of scalars (1,318,372 for the reference model).
    pub fn num_params(&self) -> usize {
        self.total
    }

    /// All tensors in canonical order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Each tensor's kind, parallel to [`Self::tensors`].
    pub fn kinds(&self) -> &[TensorKind] {
        &self.kinds
    }

    /// Look a tensor up by its canonical name.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Element ranges for the kernels.
    pub fn ranges(&self) -> &Ranges {
        &self.ranges
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
}

/// A flat buffer of parameters (or of gradients, or of optimizer moments) with named views.
/// `Params` is the `f32` one used for training; tests also use `ParamsT<f64>`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamsT<F> {
    pub data: Vec<F>,
    pub layout: ParamLayout,
}

/// The training parameter/gradient buffer.
pub type Params = ParamsT<f32>;

impl<F: Float> ParamsT<F> {
    /// All zeros (the starting state of gradients and moments).
    pub fn zeros(cfg: &Config) -> Self {
        let layout = ParamLayout::new(cfg);
        ParamsT {
            data: vec![F::ZERO; layout.num_params()],
            layout,
        }
    }

    /// Wrap an existing flat buffer; `None` if its length does not match the config.
    pub fn from_vec(cfg: &Config, data: Vec<F>) -> Option<Self> {
        let layout = ParamLayout::new(cfg);
        (data.len() == layout.num_params()).then_some(ParamsT { data, layout })
    }

    pub fn config(&self) -> &Config {
        self.layout.config()
    }

    /// The tensor named `name`. Panics on an unknown name (a programming error); use
    /// [`ParamLayout::get`] to probe.
    pub fn tensor(&self, name: &str) -> &[F] {
        let r = self.info(name).range();
        &self.data[r]
    }

    /// Mutable view of the tensor named `name`. Panics on an unknown name.
    pub fn tensor_mut(&mut self, name: &str) -> &mut [F] {
        let r = self.info(name).range();
        &mut self.data[r]
    }

    /// Every tensor in canonical order (for the blob writer and checkpoints).
    pub fn views(&self) -> Vec<&[F]> {
        self.layout
            .tensors()
            .iter()
            .map(|t| &self.data[t.range()])
            .collect()
    }

    /// Convert element type (f32 ↔ f64 for the gradient-check tests).
    pub fn cast<G: Float>(&self) -> ParamsT<G> {
        ParamsT {
            data: self.data.iter().map(|&x| G::from_f64(x.to_f64())).collect(),
            layout: self.layout.clone(),
        }
    }

    fn info(&self, name: &str) -> &TensorInfo {
        self.layout
            .get(name)
            .unwrap_or_else(|| panic!("no parameter tensor named {name:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_model_has_1318372_parameters_in_canonical_order() {
        let layout = ParamLayout::new(&Config::TANG);
        assert_eq!(layout.num_params(), 1_318_372);
        let names: Vec<&str> = layout.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 2 + 13 * 4 + 4);
        assert_eq!(
            &names[..6],
            &[
                "tok_emb",
                "pos_emb",
                "blocks.0.ln1.weight",
                "blocks.0.ln1.bias",
                "blocks.0.attn.wq",
                "blocks.0.attn.wk"
            ]
        );
        assert_eq!(names[names.len() - 1], "head.bias");
        // Offsets are contiguous.
        let mut off = 0;
        for t in layout.tensors() {
            assert_eq!(t.offset, off);
            off += t.len;
        }
        let r = layout.ranges();
        assert_eq!(r.blocks[0].wqkv.len(), 3 * 64 * 64);
        assert_eq!(
            layout.get("blocks.3.ffn.fc2.weight").unwrap().shape,
            vec![64, 256]
        );
    }
}
