//! The whole model's forward and backward over preallocated activations (llm.c's
//! `gpt2_forward` / `gpt2_backward`): backward is forward read upwards, one
//! `block_forward` / `block_backward` pair per transformer block.
//!
//! Everything a step touches — activations, gradients of activations, every kernel's packing
//! buffers and partial sums — is allocated once in [`Model::new`] for up to `max_batch ×
//! max_seq` positions; [`Model::forward_backward`] and [`Model::forward_loss`] allocate nothing
//! (`tests/step_no_alloc.rs` counts every thread's allocations).
//! Kernels run on the current rayon pool (the caller fixes its thread count); results do not
//! depend on the thread count or schedule (see [`crate::nn::ops`]).
//!
//! Shapes: N = b·t positions, C the width, F the FFN width, V the vocabulary.

use std::ops::Range;

#[cfg(feature = "op-times")]
use crate::nn::op_times::{Op, OpTimes};
use crate::nn::ops::attention::{
    self, attention_backward, attention_forward, AttnDims, AttnScratch,
};
use crate::nn::ops::embedding::{embedding_backward, embedding_forward};
use crate::nn::ops::head_ce::{
    head_ce_forward, head_ce_forward_backward, head_logits, HeadGrads, HeadScratch, RowWeights,
    IGNORE,
};
use crate::nn::ops::layernorm::{self, layernorm_backward, layernorm_forward, LnSaved, LnStats};
use crate::nn::ops::linear::{linear_backward, linear_forward, Epilogue, LinearScratch};
use crate::nn::ops::{Affine, Float};
use crate::nn::params::{BlockRanges, Config, ParamsT, Ranges};

/// `$body`, timed as `Op::$op` into `$times` (an [`OpTimes`] borrowed apart from the body's
/// operands) when the `op-times` feature is on; without it, just `$body`.
#[cfg(feature = "op-times")]
macro_rules! timed {
    ($times:expr, $op:ident, $body:expr) => {{
        let t0 = $times.start();
        let r = $body;
        $times.stop(Op::$op, t0);
        r
    }};
}

#[cfg(not(feature = "op-times"))]
macro_rules! timed {
    ($times:expr, $op:ident, $body:expr) => {
        $body
    };
}

/// A LayerNorm's saved output [N, C] and per-row statistics \[N\].
#[derive(Clone, Debug)]
struct LnActs<F> {
    out: Vec<F>,
    mean: Vec<F>,
    rstd: Vec<F>,
}

impl<F: Float> LnActs<F> {
    fn new(n: usize, c: usize) -> Self {
        LnActs {
            out: vec![F::ZERO; n * c],
            mean: vec![F::ZERO; n],
            rstd: vec![F::ZERO; n],
        }
    }

    /// The first `n` rows as the forward writes them: output [n, C] and statistics \[n\].
    fn forward_out(&mut self, n: usize, c: usize) -> (&mut [F], LnStats<&mut [F]>) {
        let stats = LnStats {
            mean: &mut self.mean[..n],
            rstd: &mut self.rstd[..n],
        };
        (&mut self.out[..n * c], stats)
    }

    /// What the backward reads for the first `n` rows, with the forward's input `inp` [n, C].
    fn saved<'a>(&'a self, inp: &'a [F], n: usize) -> LnSaved<'a, F> {
        LnSaved {
            inp,
            stats: LnStats {
                mean: &self.mean[..n],
                rstd: &self.rstd[..n],
            },
        }
    }
}

/// Saved activations of one transformer block (all `[N, ·]` with N = batch·time).
#[derive(Clone, Debug)]
struct BlockActs<F> {
    /// LN1 of the block's input [N, C].
    ln1: LnActs<F>,
    /// Fused Q|K|V projections [N, 3C].
    qkv: Vec<F>,
    /// Attention output before the output projection [N, C].
    atty: Vec<F>,
    /// Residual stream after the attention branch [N, C].
    resid_mid: Vec<F>,
    /// LN2 of `resid_mid` [N, C].
    ln2: LnActs<F>,
    /// ReLU(fc1) [N, F] (also tells the ReLU backward where the input was positive).
    act: Vec<F>,
}

impl<F: Float> BlockActs<F> {
    fn new(n: usize, c: usize, f: usize) -> Self {
        BlockActs {
            ln1: LnActs::new(n, c),
            qkv: vec![F::ZERO; n * 3 * c],
            atty: vec![F::ZERO; n * c],
            resid_mid: vec![F::ZERO; n * c],
            ln2: LnActs::new(n, c),
            act: vec![F::ZERO; n * f],
        }
    }
}

/// Gradients of the activations, reused by every block.
#[derive(Clone, Debug)]
struct ActGrads<F> {
    /// Of the residual stream [N, C].
    d_res: Vec<F>,
    /// Of a LayerNorm output or a branch output [N, C].
    d_c: Vec<F>,
    /// Of the fc1 pre-activation [N, F].
    d_f: Vec<F>,
    /// Of qkv [N, 3C].
    d_qkv: Vec<F>,
}

/// The kernels' scratch, shared by the forward and the backward of every block.
#[derive(Clone, Debug)]
struct Kernels<F> {
    /// Attention scratch, per sequence (probabilities are recomputed in the backward, never
    /// saved).
    attn: Vec<AttnScratch<F>>,
    /// LayerNorm gain/shift gradient partials.
    ln: Vec<F>,
    /// Scratch of the linear layers (room for the largest of them).
    lin: LinearScratch<F>,
    /// Wall time per operation, when enabled (`bench train --ops`).
    #[cfg(feature = "op-times")]
    times: OpTimes,
}

/// The sizes and constants of one call: N = b·t rows, width C, FFN width F, the attention's
/// dimensions, and the config's LayerNorm epsilon and attention scale.
#[derive(Clone, Copy, Debug)]
struct Dims<F> {
    n: usize,
    c: usize,
    f: usize,
    attn: AttnDims,
    eps: F,
    scale: F,
}

/// One block's parameters (`S = &[F]`) or parameter gradients (`S = &mut [F]`) as named slices
/// of the flat buffer. Linear weights are `[out, in]`.
struct BlockTensors<S> {
    /// LN1 gain and shift \[C\].
    ln1: Affine<S>,
    /// Q, K, V projections stacked [3C, C] (no bias).
    wqkv: S,
    /// Output projection [C, C], \[C\].
    proj_w: S,
    proj_b: S,
    /// LN2 gain and shift \[C\].
    ln2: Affine<S>,
    /// FFN up [F, C], \[F\].
    fc1_w: S,
    fc1_b: S,
    /// FFN down [C, F], \[C\].
    fc2_w: S,
    fc2_b: S,
}

impl<'a, F> BlockTensors<&'a [F]> {
    fn of(buf: &'a [F], r: &BlockRanges) -> Self {
        let at = |r: &Range<usize>| &buf[r.clone()];
        BlockTensors {
            ln1: Affine {
                w: at(&r.ln1_w),
                b: at(&r.ln1_b),
            },
            wqkv: at(&r.wqkv),
            proj_w: at(&r.proj_w),
            proj_b: at(&r.proj_b),
            ln2: Affine {
                w: at(&r.ln2_w),
                b: at(&r.ln2_b),
            },
            fc1_w: at(&r.fc1_w),
            fc1_b: at(&r.fc1_b),
            fc2_w: at(&r.fc2_w),
            fc2_b: at(&r.fc2_b),
        }
    }
}

impl<'a, F> BlockTensors<&'a mut [F]> {
    /// The block's tensors in `buf`, which holds the flat buffer's elements from `base` on.
    fn of_mut(buf: &'a mut [F], base: usize, r: &BlockRanges) -> Self {
        let [ln1_w, ln1_b, wqkv, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b] = carve(
            buf,
            base,
            [
                &r.ln1_w, &r.ln1_b, &r.wqkv, &r.proj_w, &r.proj_b, &r.ln2_w, &r.ln2_b, &r.fc1_w,
                &r.fc1_b, &r.fc2_w, &r.fc2_b,
            ],
        );
        BlockTensors {
            ln1: Affine { w: ln1_w, b: ln1_b },
            wqkv,
            proj_w,
            proj_b,
            ln2: Affine { w: ln2_w, b: ln2_b },
            fc1_w,
            fc1_b,
            fc2_w,
            fc2_b,
        }
    }
}

/// The tensors outside the blocks, as named slices of the flat buffer.
struct OuterTensors<S> {
    /// Token embeddings [V, C].
    tok_emb: S,
    /// Position embeddings [context, C].
    pos_emb: S,
    /// Final LayerNorm gain and shift \[C\].
    lnf: Affine<S>,
    /// LM head [V, C], \[V\].
    head: Affine<S>,
}

impl<'a, F> OuterTensors<&'a [F]> {
    fn of(buf: &'a [F], r: &Ranges) -> Self {
        let at = |r: &Range<usize>| &buf[r.clone()];
        OuterTensors {
            tok_emb: at(&r.tok_emb),
            pos_emb: at(&r.pos_emb),
            lnf: Affine {
                w: at(&r.lnf_w),
                b: at(&r.lnf_b),
            },
            head: Affine {
                w: at(&r.head_w),
                b: at(&r.head_b),
            },
        }
    }
}

impl<'a, F> OuterTensors<&'a mut [F]> {
    /// The outer tensors of `buf` (the whole flat buffer), and the span between the embeddings
    /// and the final LayerNorm that holds every block's tensors, with its offset in `buf`.
    fn of_mut(buf: &'a mut [F], r: &Ranges) -> (Self, &'a mut [F], usize) {
        let blocks = r.pos_emb.end..r.lnf_w.start;
        let [tok_emb, pos_emb, blocks_span, lnf_w, lnf_b, head_w, head_b] = carve(
            buf,
            0,
            [
                &r.tok_emb, &r.pos_emb, &blocks, &r.lnf_w, &r.lnf_b, &r.head_w, &r.head_b,
            ],
        );
        let outer = OuterTensors {
            tok_emb,
            pos_emb,
            lnf: Affine { w: lnf_w, b: lnf_b },
            head: Affine {
                w: head_w,
                b: head_b,
            },
        };
        (outer, blocks_span, blocks.start)
    }
}

/// Disjoint mutable slices `buf[r − base]` for `ranges` (in ascending order, not overlapping) of
/// a buffer whose first element is element `base` of the flat buffer.
fn carve<'a, F, const K: usize>(
    buf: &'a mut [F],
    base: usize,
    ranges: [&Range<usize>; K],
) -> [&'a mut [F]; K] {
    let (mut rest, mut at) = (buf, base);
    ranges.map(|r| {
        assert!(
            at <= r.start && r.start <= r.end,
            "tensor ranges must ascend without overlap"
        );
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
        let (tensor, tail) = tail.split_at_mut(r.len());
        (rest, at) = (tail, r.end);
        tensor
    })
}

/// One transformer block forward (pre-LN): from its input `x` [N, C],
/// `resid_mid = x + proj(attn(LN1(x)))` and `x_next = resid_mid + fc2(ReLU(fc1(LN2(resid_mid))))`
/// [N, C], saving what the backward needs in `a`.
fn block_forward<F: Float>(
    a: &mut BlockActs<F>,
    x: &[F],
    x_next: &mut [F],
    w: &BlockTensors<&[F]>,
    k: &mut Kernels<F>,
    d: Dims<F>,
) {
    let (n, c, f) = (d.n, d.c, d.f);
    let (nc, nf) = (n * c, n * f);
    // Attention branch.
    let (ln1, ln1_stats) = a.ln1.forward_out(n, c);
    timed!(
        k.times,
        LayerNorm,
        layernorm_forward(ln1, ln1_stats, x, w.ln1, d.eps)
    );
    // qkv [N, 3C] = LN1(x) [N, C] · Wqkvᵀ [C, 3C]
    timed!(
        k.times,
        QkvLinear,
        linear_forward(
            &mut a.qkv[..3 * nc],
            &a.ln1.out[..nc],
            w.wqkv,
            None,
            Epilogue::Plain,
            &mut k.lin,
            c,
            3 * c,
        )
    );
    timed!(
        k.times,
        Attention,
        attention_forward(
            &mut a.atty[..nc],
            &mut k.attn,
            &a.qkv[..3 * nc],
            d.attn,
            d.scale
        )
    );
    timed!(
        k.times,
        ProjLinear,
        linear_forward(
            &mut a.resid_mid[..nc],
            &a.atty[..nc],
            w.proj_w,
            Some(w.proj_b),
            Epilogue::Residual(x),
            &mut k.lin,
            c,
            c,
        )
    );
    // FFN branch.
    let (ln2, ln2_stats) = a.ln2.forward_out(n, c);
    timed!(
        k.times,
        LayerNorm,
        layernorm_forward(ln2, ln2_stats, &a.resid_mid[..nc], w.ln2, d.eps)
    );
    // act [N, F] = ReLU(LN2 [N, C] · W1ᵀ [C, F] + b1)
    timed!(
        k.times,
        Fc1Linear,
        linear_forward(
            &mut a.act[..nf],
            &a.ln2.out[..nc],
            w.fc1_w,
            Some(w.fc1_b),
            Epilogue::Relu,
            &mut k.lin,
            c,
            f,
        )
    );
    // x_next [N, C] = resid_mid + act [N, F] · W2ᵀ [F, C] + b2
    timed!(
        k.times,
        Fc2Linear,
        linear_forward(
            x_next,
            &a.act[..nf],
            w.fc2_w,
            Some(w.fc2_b),
            Epilogue::Residual(&a.resid_mid[..nc]),
            &mut k.lin,
            f,
            c,
        )
    );
}

/// One transformer block backward, [`block_forward`] read upwards. On entry `g.d_res` [N, C]
/// holds dL/d(x_next); on return dL/dx, for the block's input `x` [N, C]. Overwrites the block's
/// parameter gradients `gw`; `w` are its parameters.
fn block_backward<F: Float>(
    a: &BlockActs<F>,
    x: &[F],
    w: &BlockTensors<&[F]>,
    gw: BlockTensors<&mut [F]>,
    g: &mut ActGrads<F>,
    k: &mut Kernels<F>,
    d: Dims<F>,
) {
    let (n, c, f) = (d.n, d.c, d.f);
    let (nc, nf) = (n * c, n * f);
    // x_next = resid_mid + fc2(act): d(fc2 out) = d_res, which also flows to resid_mid.
    // d_f [N, F] = d_res [N, C] · W2 [C, F], zeroed where act ≤ 0 (the ReLU backward, fused):
    // dL/d(fc1 pre-activation). dW2 [C, F] = d_resᵀ · act, db2 = Σ_rows d_res.
    timed!(
        k.times,
        Fc2LinearBwd,
        linear_backward(
            &mut g.d_f[..nf],
            gw.fc2_w,
            Some(gw.fc2_b),
            &g.d_res[..nc],
            &a.act[..nf],
            w.fc2_w,
            Some(&a.act[..nf]),
            &mut k.lin,
            f,
            c,
        )
    );
    // d_c [N, C] = d_f [N, F] · W1 [F, C]; dW1 [F, C] = d_fᵀ · LN2, db1 = Σ_rows d_f.
    timed!(
        k.times,
        Fc1LinearBwd,
        linear_backward(
            &mut g.d_c[..nc],
            gw.fc1_w,
            Some(gw.fc1_b),
            &g.d_f[..nf],
            &a.ln2.out[..nc],
            w.fc1_w,
            None,
            &mut k.lin,
            c,
            f,
        )
    );
    // The residual stream also feeds LN2.
    residual_layernorm_backward(g, k, &a.ln2, &a.resid_mid[..nc], w.ln2.w, gw.ln2, true);
    // resid_mid = x + proj(atty): d(proj out) = d_res, which also flows to x.
    // d_c [N, C] = d_res · Wproj [C, C]: dL/d(atty).
    timed!(
        k.times,
        ProjLinearBwd,
        linear_backward(
            &mut g.d_c[..nc],
            gw.proj_w,
            Some(gw.proj_b),
            &g.d_res[..nc],
            &a.atty[..nc],
            w.proj_w,
            None,
            &mut k.lin,
            c,
            c,
        )
    );
    // d_qkv [N, 3C] from d_c = dL/d(atty) (probabilities recomputed).
    timed!(
        k.times,
        AttentionBwd,
        attention_backward(
            &mut g.d_qkv[..3 * nc],
            &mut k.attn,
            &g.d_c[..nc],
            &a.qkv[..3 * nc],
            d.attn,
            d.scale,
        )
    );
    // d_c [N, C] = d_qkv [N, 3C] · Wqkv [3C, C]: dL/d(LN1 out); dWqkv [3C, C] = d_qkvᵀ · LN1.
    timed!(
        k.times,
        QkvLinearBwd,
        linear_backward(
            &mut g.d_c[..nc],
            gw.wqkv,
            None,
            &g.d_qkv[..3 * nc],
            &a.ln1.out[..nc],
            w.wqkv,
            None,
            &mut k.lin,
            c,
            3 * c,
        )
    );
    residual_layernorm_backward(g, k, &a.ln1, x, w.ln1.w, gw.ln1, true);
}

/// The backward of a LayerNorm of the residual stream `inp` [N, C] whose output gradient is in
/// `g.d_c`: `g.d_res += dLN(d_c)` with `accumulate` (a residual stream that also flows on), else
/// `g.d_res = dLN(d_c)`; the gain/shift gradients overwrite `dp`. `w` is the gain \[C\].
fn residual_layernorm_backward<F: Float>(
    g: &mut ActGrads<F>,
    k: &mut Kernels<F>,
    ln: &LnActs<F>,
    inp: &[F],
    w: &[F],
    dp: Affine<&mut [F]>,
    accumulate: bool,
) {
    let nc = inp.len();
    let saved = ln.saved(inp, nc / w.len());
    timed!(
        k.times,
        LayerNormBwd,
        layernorm_backward(
            &mut g.d_res[..nc],
            dp,
            &mut k.ln,
            &g.d_c[..nc],
            saved,
            w,
            accumulate,
        )
    );
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
    /// Final LN of `resid[L]` [N, C].
    lnf: LnActs<F>,
    /// Per-position losses \[N\].
    losses: Vec<F>,
    /// Per-position loss weights \[N\] of [`Model::forward_backward_weighted`].
    row_weights: Vec<F>,
    head: HeadScratch<F>,
    grads: ActGrads<F>,
    kernels: Kernels<F>,
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
        Ok(Model {
            cfg: *cfg,
            max_batch,
            max_seq,
            resid: (0..=cfg.n_layers).map(|_| z(n * c)).collect(),
            blocks: (0..cfg.n_layers).map(|_| BlockActs::new(n, c, f)).collect(),
            lnf: LnActs::new(n, c),
            losses: z(n),
            row_weights: z(n),
            head: HeadScratch::new(n, v, c),
            grads: ActGrads {
                d_res: z(n * c),
                d_c: z(n * c),
                d_f: z(n * f),
                d_qkv: z(n * 3 * c),
            },
            kernels: Kernels {
                attn: attention::scratch(max_batch, max_seq, c),
                ln: z(layernorm::backward_scratch_len(n, c)),
                // qkv [3C, C], proj [C, C], fc1 [F, C], fc2 [C, F] as (in, out).
                lin: LinearScratch::new(n, &[(c, 3 * c), (c, c), (c, f), (f, c)]),
                #[cfg(feature = "op-times")]
                times: OpTimes::default(),
            },
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

    /// Wall time per operation (`bench train --ops`): set `enabled` to collect it.
    #[cfg(feature = "op-times")]
    pub fn op_times(&mut self) -> &mut OpTimes {
        &mut self.kernels.times
    }

    fn dims(&self, b: usize, t: usize) -> Dims<F> {
        let cfg = &self.cfg;
        Dims {
            n: b * t,
            c: cfg.dim,
            f: cfg.ffn_dim,
            attn: AttnDims {
                b,
                t,
                c: cfg.dim,
                h: cfg.n_heads,
            },
            eps: F::from_f64(cfg.ln_eps as f64),
            scale: F::from_f64(cfg.attn_scale as f64),
        }
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

    /// Forward through the embeddings, the blocks and the final LayerNorm, leaving `lnf` [N, C]
    /// ready for the head.
    fn forward_trunk(&mut self, p: &ParamsT<F>, inputs: &[u16], b: usize, t: usize) {
        let d = self.dims(b, t);
        let nc = d.n * d.c;
        let r = p.layout.ranges();
        let w = OuterTensors::of(&p.data, r);
        timed!(
            self.kernels.times,
            Embedding,
            embedding_forward(
                &mut self.resid[0][..nc],
                inputs,
                w.tok_emb,
                w.pos_emb,
                t,
                d.c
            )
        );
        for (l, (a, br)) in self.blocks.iter_mut().zip(&r.blocks).enumerate() {
            let (done, rest) = self.resid.split_at_mut(l + 1);
            let wb = BlockTensors::of(&p.data, br);
            block_forward(
                a,
                &done[l][..nc],
                &mut rest[0][..nc],
                &wb,
                &mut self.kernels,
                d,
            );
        }
        let (lnf, lnf_stats) = self.lnf.forward_out(d.n, d.c);
        timed!(
            self.kernels.times,
            LayerNorm,
            layernorm_forward(
                lnf,
                lnf_stats,
                &self.resid[self.cfg.n_layers][..nc],
                w.lnf,
                d.eps
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
        let loss = self.backward(p, g, inputs, targets, self.dims(b, t), RowWeights::Mean);
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
        let loss = self.backward(
            p,
            g,
            inputs,
            targets,
            self.dims(b, t),
            RowWeights::Given(&w[..n]),
        );
        self.row_weights = w;
        Ok(loss)
    }

    /// The head's loss forward over the trunk's last output: per-position losses into
    /// `self.losses`, returns their masked mean.
    fn head_forward(&mut self, p: &ParamsT<F>, targets: &[u16], n: usize) -> f64 {
        let w = OuterTensors::of(&p.data, p.layout.ranges());
        let nc = n * self.cfg.dim;
        head_ce_forward(
            &mut self.losses[..n],
            &mut self.head,
            &self.lnf.out[..nc],
            w.head.w,
            w.head.b,
            targets,
        )
    }

    /// The head (fused loss forward and backward, with the row weights `weights`) and the
    /// backward of the whole trunk after a [`Self::forward_trunk`] on the same inputs: every
    /// parameter gradient into `g`. Returns the loss.
    fn backward(
        &mut self,
        p: &ParamsT<F>,
        g: &mut ParamsT<F>,
        inputs: &[u16],
        targets: &[u16],
        d: Dims<F>,
        weights: RowWeights<'_, F>,
    ) -> f64 {
        let (n, nc) = (d.n, d.n * d.c);
        let r = p.layout.ranges();
        let w = OuterTensors::of(&p.data, r);
        let (gw, g_blocks, blocks_base) = OuterTensors::of_mut(&mut g.data, r);
        let ag = &mut self.grads;
        let k = &mut self.kernels;
        // Head + cross-entropy: d(lnf) [N, C] into d_c, head gradients written directly.
        let head_grads = HeadGrads {
            dx: &mut ag.d_c[..nc],
            head: gw.head,
        };
        let loss = timed!(
            k.times,
            HeadCe,
            head_ce_forward_backward(
                head_grads,
                &mut self.losses[..n],
                &mut self.head,
                &self.lnf.out[..nc],
                w.head,
                targets,
                weights,
            )
        );
        // Final LayerNorm: d_res = dLN_f(d_c).
        let x_last = &self.resid[self.cfg.n_layers][..nc];
        residual_layernorm_backward(ag, k, &self.lnf, x_last, w.lnf.w, gw.lnf, false);
        for (l, br) in r.blocks.iter().enumerate().rev() {
            let wb = BlockTensors::of(&p.data, br);
            let gb = BlockTensors::of_mut(g_blocks, blocks_base, br);
            block_backward(&self.blocks[l], &self.resid[l][..nc], &wb, gb, ag, k, d);
        }
        timed!(
            k.times,
            EmbeddingBwd,
            embedding_backward(
                gw.tok_emb,
                gw.pos_emb,
                &ag.d_res[..nc],
                inputs,
                d.attn.t,
                d.c
            )
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
        let w = OuterTensors::of(&p.data, p.layout.ranges());
        let mut out = vec![F::ZERO; n * v];
        head_logits(&mut out, &self.lnf.out[..n * c], w.head.w, w.head.b, c, v);
        Ok(out)
    }
}
