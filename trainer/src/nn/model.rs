//! The whole model's forward and backward over preallocated activations (llm.c's
//! `gpt2_forward` / `gpt2_backward`): backward is forward read upwards.
//!
//! Everything a step touches — activations, gradients of activations, every kernel's packing
//! buffers and partial sums — is allocated once in [`Model::new`] for up to `max_batch ×
//! max_seq` positions; [`Model::forward_backward`] and [`Model::forward_loss`] allocate nothing
//! (`tests/step_no_alloc.rs` counts every thread's allocations).
//! Kernels run on the current rayon pool (the caller fixes its thread count); results do not
//! depend on the thread count or schedule (see [`crate::nn::ops`]).

use std::time::Instant;

use crate::nn::ops::attention::{
    self, attention_backward, attention_forward, AttnDims, AttnScratch,
};
use crate::nn::ops::embedding::{embedding_backward, embedding_forward};
use crate::nn::ops::head_ce::{
    head_ce_forward, head_ce_forward_backward, head_logits, HeadScratch, RowWeights, IGNORE,
};
use crate::nn::ops::layernorm::{self, layernorm_backward, layernorm_forward};
use crate::nn::ops::linear::{linear_backward, linear_forward, Epilogue, LinearScratch};
use crate::nn::ops::Float;
use crate::nn::params::{Config, ParamsT};

/// Saved activations of one transformer block (all `[N, ·]` with N = batch·time).
#[derive(Clone, Debug)]
struct BlockActs<F> {
    /// LN1 output [N, C], its per-row mean and 1/std \[N\].
    ln1: Vec<F>,
    ln1_mean: Vec<F>,
    ln1_rstd: Vec<F>,
    /// Fused Q|K|V projections [N, 3C].
    qkv: Vec<F>,
    /// Attention output before the output projection [N, C].
    atty: Vec<F>,
    /// Residual stream after the attention branch [N, C].
    resid_mid: Vec<F>,
    /// LN2 output [N, C], mean and 1/std \[N\].
    ln2: Vec<F>,
    ln2_mean: Vec<F>,
    ln2_rstd: Vec<F>,
    /// ReLU(fc1) [N, F] (also tells the ReLU backward where the input was positive).
    act: Vec<F>,
}

/// The model's forward/backward state for up to `max_batch × max_seq` positions.
#[derive(Clone, Debug)]
pub struct Model<F> {
    cfg: Config,
    max_batch: usize,
    max_seq: usize,
    /// Residual stream entering block l, l = 0..=L (entry L feeds the final LN) [N, C].
    resid: Vec<Vec<F>>,
    blocks: Vec<BlockActs<F>>,
    /// Final LN output [N, C], mean and 1/std \[N\].
    lnf: Vec<F>,
    lnf_mean: Vec<F>,
    lnf_rstd: Vec<F>,
    /// Per-position losses \[N\].
    losses: Vec<F>,
    /// Per-position loss weights \[N\] of [`Model::forward_backward_weighted`].
    row_weights: Vec<F>,
    head: HeadScratch<F>,
    // Backward scratch, reused by every block.
    /// Gradient of the residual stream [N, C].
    d_res: Vec<F>,
    /// Gradient of a LayerNorm output / branch output [N, C].
    d_c: Vec<F>,
    /// Gradient of the fc1 pre-activation [N, F].
    d_f: Vec<F>,
    /// Gradient of qkv [N, 3C].
    d_qkv: Vec<F>,
    /// Attention scratch, per sequence (probabilities are recomputed in the backward, never
    /// saved).
    attn: Vec<AttnScratch<F>>,
    /// LayerNorm gain/shift gradient partials.
    ln_scratch: Vec<F>,
    /// Scratch of the linear layers (room for the largest of them).
    lin: LinearScratch<F>,
    /// Wall time per operation, when enabled (`bench train --ops`).
    pub times: OpTimes,
}

/// The operations [`OpTimes`] tells apart (forward and backward separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Embedding,
    LayerNorm,
    QkvLinear,
    Attention,
    ProjLinear,
    Fc1Linear,
    Fc2Linear,
    /// LM head + cross-entropy, forward and backward fused.
    HeadCe,
    LayerNormBwd,
    QkvLinearBwd,
    AttentionBwd,
    ProjLinearBwd,
    Fc1LinearBwd,
    Fc2LinearBwd,
    EmbeddingBwd,
}

impl Op {
    pub const ALL: [Op; 15] = [
        Op::Embedding,
        Op::LayerNorm,
        Op::QkvLinear,
        Op::Attention,
        Op::ProjLinear,
        Op::Fc1Linear,
        Op::Fc2Linear,
        Op::HeadCe,
        Op::LayerNormBwd,
        Op::QkvLinearBwd,
        Op::AttentionBwd,
        Op::ProjLinearBwd,
        Op::Fc1LinearBwd,
        Op::Fc2LinearBwd,
        Op::EmbeddingBwd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Embedding => "embedding",
            Op::LayerNorm => "layernorm",
            Op::QkvLinear => "qkv linear",
            Op::Attention => "attention",
            Op::ProjLinear => "proj linear",
            Op::Fc1Linear => "fc1 linear",
            Op::Fc2Linear => "fc2 linear",
            Op::HeadCe => "head+CE fwd+bwd",
            Op::LayerNormBwd => "layernorm bwd",
            Op::QkvLinearBwd => "qkv linear bwd",
            Op::AttentionBwd => "attention bwd",
            Op::ProjLinearBwd => "proj linear bwd",
            Op::Fc1LinearBwd => "fc1 linear bwd",
            Op::Fc2LinearBwd => "fc2 linear bwd",
            Op::EmbeddingBwd => "embedding bwd",
        }
    }
}

/// Accumulated wall time per [`Op`] over the forward/backward calls since the last reset. Off by
/// default (then it costs one branch per operation); it never allocates.
#[derive(Clone, Debug, Default)]
pub struct OpTimes {
    pub enabled: bool,
    pub ns: [u64; Op::ALL.len()],
}

impl OpTimes {
    #[inline]
    fn start(&self) -> Option<Instant> {
        self.enabled.then(Instant::now)
    }

    #[inline]
    fn stop(&mut self, op: Op, t0: Option<Instant>) {
        if let Some(t0) = t0 {
            self.ns[op as usize] += t0.elapsed().as_nanos() as u64;
        }
    }

    pub fn reset(&mut self) {
        self.ns = [0; Op::ALL.len()];
    }
}

/// Time `$body` as `$op` in `$times` (an [`OpTimes`] field, borrowed apart from the body's).
macro_rules! timed {
    ($times:expr, $op:expr, $body:expr) => {{
        let t0 = $times.start();
        let r = $body;
        $times.stop($op, t0);
        r
    }};
}

/// Which parameter-shaped buffer a [`ModelError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffer {
    /// The parameters the model runs with.
    Params,
    /// The gradient buffer [`Model::forward_backward`] writes.
    Grads,
}

impl std::fmt::Display for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Buffer::Params => "parameter buffer",
            Buffer::Grads => "gradient buffer",
        })
    }
}

/// Which token-id slice a [`ModelError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokens {
    Inputs,
    Targets,
}

impl std::fmt::Display for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tokens::Inputs => "inputs",
            Tokens::Targets => "targets",
        })
    }
}

/// Why a [`Model`] rejected a call. Every check runs before any work, so after an error the
/// model, the parameters and the gradient buffer are exactly as they were, and the next good
/// call gives the same result as if the bad one had never been made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// [`Model::new`]: an empty capacity, or sequences longer than the model's context.
    #[error(
        "cannot allocate a model for {max_batch} sequences of {max_seq} tokens: both must be \
         positive and the sequence length at most the context {context}"
    )]
    Capacity {
        max_batch: usize,
        max_seq: usize,
        context: usize,
    },
    /// [`Model::new`]: the model width does not split into the attention heads.
    #[error("model width {dim} is not a positive multiple of the head count {n_heads}")]
    HeadsDoNotDivideDim { dim: usize, n_heads: usize },
    /// The parameter or gradient buffer was made for another model shape.
    #[error("the {buffer} was made for another config ({got:?}); the model has {expected:?}")]
    ConfigMismatch {
        buffer: Buffer,
        got: Box<Config>,
        expected: Box<Config>,
    },
    /// The parameter or gradient buffer's flat data does not hold its layout's element count.
    #[error("the {buffer} holds {got} values; its config needs {expected}")]
    BufferLength {
        buffer: Buffer,
        got: usize,
        expected: usize,
    },
    /// The batch size `b` is 0 or more than the model was allocated for.
    #[error("batch size {got} is outside 1..={max} (the model's capacity)")]
    BatchOutOfRange { got: usize, max: usize },
    /// The sequence length `t` is 0 or more than the model was allocated for.
    #[error("sequence length {got} is outside 1..={max} (the model's capacity)")]
    SeqOutOfRange { got: usize, max: usize },
    /// `inputs` or `targets` does not hold `b·t` token ids.
    #[error("{which} hold {got} token ids; batch {b} × sequence {t} needs {expected}")]
    TokensLength {
        which: Tokens,
        got: usize,
        expected: usize,
        b: usize,
        t: usize,
    },
    /// A token id at `position` (flat index into the `b·t` ids) of `inputs` or `targets` is not
    /// below the vocabulary size (the first such id; a target may also be
    /// [`IGNORE`]).
    #[error("{which}: token id {id} at position {position} is outside the vocabulary of {vocab}")]
    TokenOutOfVocab {
        which: Tokens,
        id: u16,
        vocab: usize,
        position: usize,
    },
}

/// The training model (f32).
pub type TrainModel = Model<f32>;

impl<F: Float> Model<F> {
    /// Allocate every buffer for batches of up to `max_batch` sequences of up to `max_seq`
    /// (≤ `cfg.context`) tokens.
    ///
    /// # Errors
    /// [`ModelError::Capacity`] when `max_batch` or `max_seq` is 0 or `max_seq` exceeds the
    /// context; [`ModelError::HeadsDoNotDivideDim`] when the heads do not split the width.
    pub fn new(cfg: &Config, max_batch: usize, max_seq: usize) -> Result<Self, ModelError> {
        if max_batch == 0 || max_seq == 0 || max_seq > cfg.context {
            return Err(ModelError::Capacity {
                max_batch,
                max_seq,
                context: cfg.context,
            });
        }
        if cfg.n_heads == 0 || !cfg.dim.is_multiple_of(cfg.n_heads) {
            return Err(ModelError::HeadsDoNotDivideDim {
                dim: cfg.dim,
                n_heads: cfg.n_heads,
            });
        }
        let (c, f, v) = (cfg.dim, cfg.ffn_dim, cfg.vocab_size);
        let n = max_batch * max_seq;
        let z = |len: usize| vec![F::ZERO; len];
        let blocks = (0..cfg.n_layers)
            .map(|_| BlockActs {
                ln1: z(n * c),
                ln1_mean: z(n),
                ln1_rstd: z(n),
                qkv: z(n * 3 * c),
                atty: z(n * c),
                resid_mid: z(n * c),
                ln2: z(n * c),
                ln2_mean: z(n),
                ln2_rstd: z(n),
                act: z(n * f),
            })
            .collect();
        Ok(Model {
            cfg: *cfg,
            max_batch,
            max_seq,
            resid: (0..=cfg.n_layers).map(|_| z(n * c)).collect(),
            blocks,
            lnf: z(n * c),
            lnf_mean: z(n),
            lnf_rstd: z(n),
            losses: z(n),
            row_weights: z(n),
            head: HeadScratch::new(n, v, c),
            d_res: z(n * c),
            d_c: z(n * c),
            d_f: z(n * f),
            d_qkv: z(n * 3 * c),
            attn: attention::scratch(max_batch, max_seq, c),
            ln_scratch: z(layernorm::backward_scratch_len(n, c)),
            // qkv [3C, C], proj [C, C], fc1 [F, C], fc2 [C, F] as (in, out).
            lin: LinearScratch::new(n, &[(c, 3 * c), (c, c), (c, f), (f, c)]),
            times: OpTimes::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The largest batch (sequences per call) this model was allocated for.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The longest sequence this model was allocated for.
    pub fn max_seq(&self) -> usize {
        self.max_seq
    }

    /// Check that `buf` (parameters or gradients) was made for this model's config and still
    /// holds every element. O(1).
    fn check_buffer(&self, buf: &ParamsT<F>, buffer: Buffer) -> Result<(), ModelError> {
        if buf.config() != &self.cfg {
            return Err(ModelError::ConfigMismatch {
                buffer,
                got: Box::new(*buf.config()),
                expected: Box::new(self.cfg),
            });
        }
        let expected = buf.layout.num_params();
        if buf.data.len() != expected {
            return Err(ModelError::BufferLength {
                buffer,
                got: buf.data.len(),
                expected,
            });
        }
        Ok(())
    }

    /// Every check of a call's arguments, done once before any work, so that a rejected call
    /// leaves the model (and the caller's buffers) exactly as they were. One pass over the
    /// token ids; everything else is O(1).
    fn check_batch(
        &self,
        p: &ParamsT<F>,
        inputs: &[u16],
        targets: Option<&[u16]>,
        b: usize,
        t: usize,
    ) -> Result<(), ModelError> {
        self.check_buffer(p, Buffer::Params)?;
        if b == 0 || b > self.max_batch {
            return Err(ModelError::BatchOutOfRange {
                got: b,
                max: self.max_batch,
            });
        }
        if t == 0 || t > self.max_seq {
            return Err(ModelError::SeqOutOfRange {
                got: t,
                max: self.max_seq,
            });
        }
        let vocab = self.cfg.vocab_size;
        let check = |ids: &[u16], which: Tokens| {
            // An ignored target (PyTorch's −100) is allowed, an ignored input is not.
            let ignore_ok = which == Tokens::Targets;
            if ids.len() != b * t {
                return Err(ModelError::TokensLength {
                    which,
                    got: ids.len(),
                    expected: b * t,
                    b,
                    t,
                });
            }
            match ids
                .iter()
                .position(|&id| id as usize >= vocab && !(ignore_ok && id == IGNORE))
            {
                Some(position) => Err(ModelError::TokenOutOfVocab {
                    which,
                    id: ids[position],
                    vocab,
                    position,
                }),
                None => Ok(()),
            }
        };
        check(inputs, Tokens::Inputs)?;
        if let Some(targets) = targets {
            check(targets, Tokens::Targets)?;
        }
        Ok(())
    }

    /// Forward through the blocks and the final LayerNorm, leaving `lnf` [N, C] ready for the
    /// head.
    fn forward_trunk(&mut self, p: &ParamsT<F>, inputs: &[u16], b: usize, t: usize) {
        let cfg = self.cfg;
        let (c, f) = (cfg.dim, cfg.ffn_dim);
        let n = b * t;
        let (nc, nf) = (n * c, n * f);
        let eps = F::from_f64(cfg.ln_eps as f64);
        let scale = F::from_f64(cfg.attn_scale as f64);
        let r = p.layout.ranges();
        let w = &p.data;
        let dims = AttnDims {
            b,
            t,
            c,
            h: cfg.n_heads,
        };
        timed!(
            self.times,
            Op::Embedding,
            embedding_forward(
                &mut self.resid[0][..nc],
                inputs,
                &w[r.tok_emb.clone()],
                &w[r.pos_emb.clone()],
                t,
                c,
            )
        );
        for l in 0..cfg.n_layers {
            let br = &r.blocks[l];
            let (done, rest) = self.resid.split_at_mut(l + 1);
            let (x, x_next) = (&done[l][..nc], &mut rest[0][..nc]);
            let a = &mut self.blocks[l];
            // Attention branch: resid_mid = x + proj(attn(LN1(x))).
            timed!(
                self.times,
                Op::LayerNorm,
                layernorm_forward(
                    &mut a.ln1[..nc],
                    &mut a.ln1_mean[..n],
                    &mut a.ln1_rstd[..n],
                    x,
                    &w[br.ln1_w.clone()],
                    &w[br.ln1_b.clone()],
                    c,
                    eps,
                )
            );
            timed!(
                self.times,
                Op::QkvLinear,
                linear_forward(
                    &mut a.qkv[..3 * nc],
                    &a.ln1[..nc],
                    &w[br.wqkv.clone()],
                    None,
                    Epilogue::Plain,
                    &mut self.lin,
                    c,
                    3 * c,
                )
            );
            timed!(
                self.times,
                Op::Attention,
                attention_forward(
                    &mut a.atty[..nc],
                    &mut self.attn,
                    &a.qkv[..3 * nc],
                    dims,
                    scale,
                )
            );
            timed!(
                self.times,
                Op::ProjLinear,
                linear_forward(
                    &mut a.resid_mid[..nc],
                    &a.atty[..nc],
                    &w[br.proj_w.clone()],
                    Some(&w[br.proj_b.clone()]),
                    Epilogue::Residual(x),
                    &mut self.lin,
                    c,
                    c,
                )
            );
            // FFN branch: x_next = resid_mid + fc2(ReLU(fc1(LN2(resid_mid)))).
            timed!(
                self.times,
                Op::LayerNorm,
                layernorm_forward(
                    &mut a.ln2[..nc],
                    &mut a.ln2_mean[..n],
                    &mut a.ln2_rstd[..n],
                    &a.resid_mid[..nc],
                    &w[br.ln2_w.clone()],
                    &w[br.ln2_b.clone()],
                    c,
                    eps,
                )
            );
            timed!(
                self.times,
                Op::Fc1Linear,
                linear_forward(
                    &mut a.act[..nf],
                    &a.ln2[..nc],
                    &w[br.fc1_w.clone()],
                    Some(&w[br.fc1_b.clone()]),
                    Epilogue::Relu,
                    &mut self.lin,
                    c,
                    f,
                )
            );
            timed!(
                self.times,
                Op::Fc2Linear,
                linear_forward(
                    x_next,
                    &a.act[..nf],
                    &w[br.fc2_w.clone()],
                    Some(&w[br.fc2_b.clone()]),
                    Epilogue::Residual(&a.resid_mid[..nc]),
                    &mut self.lin,
                    f,
                    c,
                )
            );
        }
        let x = &self.resid[cfg.n_layers][..nc];
        timed!(
            self.times,
            Op::LayerNorm,
            layernorm_forward(
                &mut self.lnf[..nc],
                &mut self.lnf_mean[..n],
                &mut self.lnf_rstd[..n],
                x,
                &w[r.lnf_w.clone()],
                &w[r.lnf_b.clone()],
                c,
                eps,
            )
        );
    }

    /// Mean cross-entropy over the `b·t` positions whose target is not
    /// [`IGNORE`] (PyTorch's `ignore_index = −100` mean), and its
    /// gradient with respect to every parameter written into `g` (overwritten, not
    /// accumulated). `inputs`/`targets`: [b·t].
    ///
    /// # Errors
    /// A [`ModelError`] when `p` or `g` was made for another config, `b` or `t` is outside this
    /// model's capacity, or `inputs`/`targets` have the wrong length or hold an id outside the
    /// vocabulary. Everything is checked before any work: on an error `g` and the model are
    /// untouched.
    pub fn forward_backward(
        &mut self,
        p: &ParamsT<F>,
        g: &mut ParamsT<F>,
        inputs: &[u16],
        targets: &[u16],
        b: usize,
        t: usize,
    ) -> Result<F, ModelError> {
        self.check_batch(p, inputs, Some(targets), b, t)?;
        self.check_buffer(g, Buffer::Grads)?;
        self.forward_trunk(p, inputs, b, t);
        let loss = self.head_and_backward(p, g, inputs, targets, b, t, None);
        Ok(F::from_f64(loss))
    }

    /// A loss built by the caller from the per-position cross-entropies: the forward computes
    /// ℓ [b·t] (0 at ignored positions), `weights(ℓ, w)` fills `w` [b·t] with ∂L/∂ℓ (and
    /// typically computes L itself from ℓ), and the backward writes into `g` the gradient of
    /// `Σ w·ℓ` — i.e. of L, by the chain rule. Ignored positions get no gradient whatever their
    /// weight. Returns `Σ w·ℓ` (f64). The head's forward runs twice (once for ℓ, once fused with
    /// its backward); the trunk once.
    ///
    /// # Errors
    /// As [`Self::forward_backward`], checked before any work (`weights` is not called then).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward_weighted(
        &mut self,
        p: &ParamsT<F>,
        g: &mut ParamsT<F>,
        inputs: &[u16],
        targets: &[u16],
        b: usize,
        t: usize,
        weights: impl FnOnce(&[F], &mut [F]),
    ) -> Result<f64, ModelError> {
        self.check_batch(p, inputs, Some(targets), b, t)?;
        self.check_buffer(g, Buffer::Grads)?;
        self.forward_trunk(p, inputs, b, t);
        let n = b * t;
        self.head_forward(p, targets, n);
        weights(&self.losses[..n], &mut self.row_weights[..n]);
        let w = std::mem::take(&mut self.row_weights);
        let loss = self.head_and_backward(p, g, inputs, targets, b, t, Some(&w[..n]));
        self.row_weights = w;
        Ok(loss)
    }

    /// The head's loss forward over the trunk's last output: per-position losses into
    /// `self.losses`, returns their masked mean.
    fn head_forward(&mut self, p: &ParamsT<F>, targets: &[u16], n: usize) -> f64 {
        let r = p.layout.ranges();
        let nc = n * self.cfg.dim;
        head_ce_forward(
            &mut self.losses[..n],
            &mut self.head,
            &self.lnf[..nc],
            &p.data[r.head_w.clone()],
            &p.data[r.head_b.clone()],
            targets,
        )
    }

    /// Head (fused loss forward + backward, masked mean or the given per-position weights) and
    /// the backward of the whole trunk after a [`Self::forward_trunk`] on the same inputs.
    #[allow(clippy::too_many_arguments)]
    fn head_and_backward(
        &mut self,
        p: &ParamsT<F>,
        g: &mut ParamsT<F>,
        inputs: &[u16],
        targets: &[u16],
        b: usize,
        t: usize,
        weights: Option<&[F]>,
    ) -> f64 {
        let cfg = self.cfg;
        let (c, f) = (cfg.dim, cfg.ffn_dim);
        let n = b * t;
        let (nc, nf) = (n * c, n * f);
        let scale = F::from_f64(cfg.attn_scale as f64);
        let r = p.layout.ranges();
        let w = &p.data;
        let gd = &mut g.data[..];
        let dims = AttnDims {
            b,
            t,
            c,
            h: cfg.n_heads,
        };

        // Head + cross-entropy: d(lnf) into d_c, head grads written directly.
        let (g_lo, g_hi) = gd.split_at_mut(r.head_w.start);
        let (g_hw, g_hb) = g_hi.split_at_mut(r.head_w.len());
        let loss = timed!(
            self.times,
            Op::HeadCe,
            head_ce_forward_backward(
                &mut self.d_c[..nc],
                g_hw,
                &mut g_hb[..r.head_b.len()],
                &mut self.losses[..n],
                &mut self.head,
                &self.lnf[..nc],
                &w[r.head_w.clone()],
                &w[r.head_b.clone()],
                targets,
                match weights {
                    Some(wr) => RowWeights::Given(wr),
                    None => RowWeights::Mean,
                },
            )
        );
        // Final LayerNorm: d_res = dLN_f(d_c).
        {
            let (gw, gb) = split2(g_lo, r.lnf_w.clone(), r.lnf_b.clone());
            timed!(
                self.times,
                Op::LayerNormBwd,
                layernorm_backward(
                    &mut self.d_res[..nc],
                    gw,
                    gb,
                    &mut self.ln_scratch,
                    &self.d_c[..nc],
                    &self.resid[cfg.n_layers][..nc],
                    &self.lnf_mean[..n],
                    &self.lnf_rstd[..n],
                    &w[r.lnf_w.clone()],
                    c,
                    false,
                )
            );
        }
        for l in (0..cfg.n_layers).rev() {
            let br = &r.blocks[l];
            let a = &self.blocks[l];
            // x_next = resid_mid + fc2(act): d(fc2 out) = d_res, which also flows to resid_mid.
            {
                let (gw, gb) = split2(gd, br.fc2_w.clone(), br.fc2_b.clone());
                timed!(
                    self.times,
                    Op::Fc2LinearBwd,
                    // d_f = dL/d(fc1 pre-activation): the ReLU backward is fused.
                    linear_backward(
                        &mut self.d_f[..nf],
                        gw,
                        Some(gb),
                        &self.d_res[..nc],
                        &a.act[..nf],
                        &w[br.fc2_w.clone()],
                        Some(&a.act[..nf]),
                        &mut self.lin,
                        f,
                        c,
                    )
                );
            }
            {
                let (gw, gb) = split2(gd, br.fc1_w.clone(), br.fc1_b.clone());
                timed!(
                    self.times,
                    Op::Fc1LinearBwd,
                    linear_backward(
                        &mut self.d_c[..nc],
                        gw,
                        Some(gb),
                        &self.d_f[..nf],
                        &a.ln2[..nc],
                        &w[br.fc1_w.clone()],
                        None,
                        &mut self.lin,
                        c,
                        f,
                    )
                );
            }
            {
                let (gw, gb) = split2(gd, br.ln2_w.clone(), br.ln2_b.clone());
                timed!(
                    self.times,
                    Op::LayerNormBwd,
                    // d_res += dLN2(d_c): the residual stream also feeds LN2.
                    layernorm_backward(
                        &mut self.d_res[..nc],
                        gw,
                        gb,
                        &mut self.ln_scratch,
                        &self.d_c[..nc],
                        &a.resid_mid[..nc],
                        &a.ln2_mean[..n],
                        &a.ln2_rstd[..n],
                        &w[br.ln2_w.clone()],
                        c,
                        true,
                    )
                );
            }
            // resid_mid = x + proj(atty): d(proj out) = d_res, which also flows to x.
            {
                let (gw, gb) = split2(gd, br.proj_w.clone(), br.proj_b.clone());
                timed!(
                    self.times,
                    Op::ProjLinearBwd,
                    linear_backward(
                        &mut self.d_c[..nc],
                        gw,
                        Some(gb),
                        &self.d_res[..nc],
                        &a.atty[..nc],
                        &w[br.proj_w.clone()],
                        None,
                        &mut self.lin,
                        c,
                        c,
                    )
                );
            }
            timed!(
                self.times,
                Op::AttentionBwd,
                attention_backward(
                    &mut self.d_qkv[..3 * nc],
                    &mut self.attn,
                    &self.d_c[..nc],
                    &a.qkv[..3 * nc],
                    dims,
                    scale,
                )
            );
            timed!(
                self.times,
                Op::QkvLinearBwd,
                linear_backward(
                    &mut self.d_c[..nc],
                    &mut gd[br.wqkv.clone()],
                    None,
                    &self.d_qkv[..3 * nc],
                    &a.ln1[..nc],
                    &w[br.wqkv.clone()],
                    None,
                    &mut self.lin,
                    c,
                    3 * c,
                )
            );
            {
                let (gw, gb) = split2(gd, br.ln1_w.clone(), br.ln1_b.clone());
                timed!(
                    self.times,
                    Op::LayerNormBwd,
                    // d_res += dLN1(d_c).
                    layernorm_backward(
                        &mut self.d_res[..nc],
                        gw,
                        gb,
                        &mut self.ln_scratch,
                        &self.d_c[..nc],
                        &self.resid[l][..nc],
                        &a.ln1_mean[..n],
                        &a.ln1_rstd[..n],
                        &w[br.ln1_w.clone()],
                        c,
                        true,
                    )
                );
            }
        }
        let (gt, gp) = split2(gd, r.tok_emb.clone(), r.pos_emb.clone());
        timed!(
            self.times,
            Op::EmbeddingBwd,
            embedding_backward(gt, gp, &self.d_res[..nc], inputs, t, c)
        );
        loss
    }

    /// Mean cross-entropy over the `b·t` positions that are not ignored, forward only
    /// (evaluation); the per-position losses stay in [`Self::last_losses`].
    ///
    /// # Errors
    /// As [`Self::forward_backward`] (without the gradient buffer), checked before any work.
    pub fn forward_loss(
        &mut self,
        p: &ParamsT<F>,
        inputs: &[u16],
        targets: &[u16],
        b: usize,
        t: usize,
    ) -> Result<F, ModelError> {
        self.check_batch(p, inputs, Some(targets), b, t)?;
        self.forward_trunk(p, inputs, b, t);
        let loss = self.head_forward(p, targets, b * t);
        Ok(F::from_f64(loss))
    }

    /// Per-position losses [b·t] of the last [`Self::forward_loss`] / [`Self::forward_backward`]
    /// (0 at ignored positions): the alignment stage's per-token cross-entropies.
    pub fn last_losses(&self, n: usize) -> &[F] {
        &self.losses[..n]
    }

    /// A digest of which FFN units were active (ReLU input > 0) in the last forward over `n`
    /// positions. Gradient checks compare it across perturbations to stay away from ReLU kinks.
    pub fn relu_pattern_digest(&self, n: usize) -> u64 {
        let f = self.cfg.ffn_dim;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for a in &self.blocks {
            for &x in &a.act[..n * f] {
                h = (h ^ u64::from(x > F::ZERO)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }

    /// Logits [b·t, V] (allocates its output; for tests and tools, not the training loop).
    ///
    /// # Errors
    /// As [`Self::forward_loss`] (without the targets), checked before any work.
    pub fn forward_logits(
        &mut self,
        p: &ParamsT<F>,
        inputs: &[u16],
        b: usize,
        t: usize,
    ) -> Result<Vec<F>, ModelError> {
        self.check_batch(p, inputs, None, b, t)?;
        self.forward_trunk(p, inputs, b, t);
        let (n, c, v) = (b * t, self.cfg.dim, self.cfg.vocab_size);
        let r = p.layout.ranges();
        let mut out = vec![F::ZERO; n * v];
        head_logits(
            &mut out,
            &self.lnf[..n * c],
            &p.data[r.head_w.clone()],
            &p.data[r.head_b.clone()],
            c,
            v,
        );
        Ok(out)
    }
}

/// Two disjoint mutable sub-slices of one buffer (`a` must lie before `b`).
fn split2<F>(
    d: &mut [F],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) -> (&mut [F], &mut [F]) {
    assert!(
        a.end <= b.start,
        "split2 ranges must be ordered and disjoint"
    );
    let (lo, hi) = d.split_at_mut(b.start);
    (&mut lo[a], &mut hi[..b.len()])
}
