//! LM head `logits = x·Wᵀ + b` (64 → V) fused with softmax cross-entropy and its backward.
//!
//! The head is about 63% of a training step's FLOPs, and the full logits (16×256×8548 f32 =
//! 140 MB) would be written once and read back several times. Here the rows are processed in
//! tiles of [`TILE_ROWS`]: each tile's logits are computed, turned into losses and, for training,
//! into `dlogits = (softmax − onehot)/N`, and immediately consumed by the two backward products
//! while they are still in cache. Nothing of size N×V ever exists.
//!
//! A tile is stored *transposed*, vocabulary-major: `e` [V, rows], so that all three products
//! read and write it contiguously (shapes for a 128-row tile, C = 64):
//!
//! ```text
//! logitsᵀ [V, 128] = W [V, C] · xᵀ [C, 128]        xᵀ packed per tile (32 KiB, stays in L1)
//! dx      [128, C] = dlogits [128, V] · W [V, C]
//! dW     [V, C]   += dlogitsᵀ [V, 128] · x [128, C]
//! ```
//!
//! and the softmax runs down the columns, vectorised across the tile's rows.
//!
//! A tile (4.4 MB) does not fit in L2, so each pass over it would cost an L3 round trip. Both
//! halves therefore work in vocabulary blocks of [`VOCAB_BLOCK`] (128 KiB of a tile, which stays
//! in L2 through all the passes on it):
//! * forward: a block's logits are computed, then exponentiated at once against the running row
//!   maxima (online softmax: when a block raises a row's maximum from m to m′, the row's sum so
//!   far is rescaled by e^(m−m′)); the block's exponentials `e` and the maxima they used are kept;
//! * backward (training): `dlogits = e·f − onehot/N` with one factor per row and block,
//!   `f = e^(m_block − m)/(sum·N)`. It is never written out: the products take `e` as it is and
//!   apply `f` on their short side — `dx += diag(f)·(eᵀ·W)`, `dW += e·(diag(f)·x)` — and the
//!   one-hot terms are a row of `W` (or of `x`) per row of the tile, subtracted after.
//!
//! So every logit is exponentiated once, the tile crosses L3 twice (written, read back), and no
//! pass writes over it again. The bias gradient `db = e·f` is summed in the backward's first
//! read of a block.
//!
//! Parallelism: the rows go through in tiles, one after the other, and all threads work on the
//! same tile: the vocabulary is split into [`VOCAB_PARTS`] fixed, equal ranges, each a task that
//! owns its rows of `W`, `dW`, `db` and of the tile. So `W` crosses L3 twice per tile (not twice
//! per thread's tile), `dW` is accumulated in place — one fma chain per element over all N rows
//! in order, no per-thread partials to add up — and the working set stays near one tile. The
//! parts' softmax statistics are merged, and their `dx` contributions added, in part order; the
//! partition depends only on V, so the result is the same for any thread count or schedule.
//!
//! Tile sizes: `tinypoet bench head` sweeps them (see docs/results-training-numerics.md).
//!
//! Masking and weights (finetune and alignment): a row whose target is [`IGNORE`] (PyTorch's
//! `ignore_index = −100`) has loss 0 and no gradient, and the loss whose gradient is taken is
//! either the mean over the other rows ([`RowWeights::Mean`], PyTorch's `reduction="mean"`) or
//! a weighted sum `Σ w[r]·ℓ[r]` ([`RowWeights::Given`]; the alignment loss's chain rule supplies
//! `w = ∂L/∂ℓ`). Both only change the per-row factor that turns a row of exponentials into its
//! `dlogits` (`w[r]·(softmax − onehot)`), so they cost nothing: with no ignored row, `Mean`
//! gives every row `1/N` exactly as before, bit for bit.

use rayon::prelude::*;

use super::gemm::{gemm, MatA, MatB, PackedB, Update};
use super::{Affine, Float};

/// The target id of an ignored row (the trainer's spelling of PyTorch's `ignore_index = −100`):
/// its loss is 0 and it contributes no gradient. Any id ≥ V would do; this one is reserved.
pub const IGNORE: u16 = u16::MAX;

/// How the rows' losses combine into the loss whose gradient [`head_ce_forward_backward`]
/// computes. Rows whose target is [`IGNORE`] contribute nothing in both cases.
#[derive(Clone, Copy, Debug)]
pub enum RowWeights<'a, F> {
    /// The mean over the rows that are not ignored (0 and no gradient if every row is).
    Mean,
    /// `Σ_r w[r]·ℓ[r]` with these weights \[N\] (the loss of a caller who applies its own chain
    /// rule to the per-row losses, e.g. the alignment loss).
    Given(&'a [F]),
}

/// Rows per tile: a tile of exponentials is `V × TILE_ROWS` floats (8548×128×4 B = 4.4 MB).
pub const TILE_ROWS: usize = 128;
/// Vocabulary entries per block of the online softmax and of the backward products (a block of
/// a tile, 256×128×4 B = 128 KiB, stays in L2 through its passes).
pub const VOCAB_BLOCK: usize = 256;
/// Fixed vocabulary ranges processed in parallel (a multiple of the 2 threads `train` uses).
pub const VOCAB_PARTS: usize = 4;
/// Largest tile [`HeadScratch::with_tiles`] accepts (per-row statistics live on the stack).
pub const MAX_TILE_ROWS: usize = 256;
/// Vocabulary entries per partial sum of a block's exponentials (a two-level sum keeps the f32
/// rounding error of a block's terms near that of ~40).
const SUM_BLOCK: usize = 32;

/// One vocabulary part's share of a tile, preallocated.
#[derive(Clone, Debug)]
struct HeadPart<F> {
    /// Exponentials of the part's range for the tile's rows, vocabulary-major [len, rows].
    e: Vec<F>,
    /// Per block of the range: the row maxima its exponentials were taken against.
    block_max: Vec<F>,
    /// The range's contribution to the tile's dx [rows, C].
    dx: Vec<F>,
    /// One block's `eᵀ·W` [rows, C], before its rows are scaled into `dx`.
    dx_block: Vec<F>,
    /// The tile's `x` [rows, C] with each row scaled by the block's softmax factor.
    xs: Vec<F>,
    /// Softmax statistics of the range for the tile's rows.
    st: TileStats<F>,
}

/// Preallocated scratch for [`head_ce_forward_backward`] and [`head_ce_forward`].
#[derive(Clone, Debug)]
pub struct HeadScratch<F> {
    parts: Vec<HeadPart<F>>,
    /// Statistics of the current tile merged over the parts.
    merged: TileStats<F>,
    /// The current tile's `xᵀ` [C, rows], packed for the logits products.
    xt: PackedB<F>,
    v: usize,
    c: usize,
    max_rows: usize,
    tile_rows: usize,
    vocab_block: usize,
    /// Vocabulary entries per part (the last part may have fewer).
    part_len: usize,
}

impl<F: Float> HeadScratch<F> {
    /// Scratch for up to `max_rows` rows, with the default tile sizes.
    pub fn new(max_rows: usize, v: usize, c: usize) -> Self {
        Self::with_tiles(max_rows, v, c, TILE_ROWS, VOCAB_BLOCK, VOCAB_PARTS)
    }

    /// Scratch with `tile_rows` (≤ [`MAX_TILE_ROWS`]) rows per tile, vocabulary blocks of
    /// `vocab_block` entries and `parts` vocabulary parts (for benchmarks; they change the
    /// results only through the order of the terms in the softmax sums and in `dx`).
    pub fn with_tiles(
        max_rows: usize,
        v: usize,
        c: usize,
        tile_rows: usize,
        vocab_block: usize,
        parts: usize,
    ) -> Self {
        assert!((1..=MAX_TILE_ROWS).contains(&tile_rows) && vocab_block >= 1 && v >= 1);
        assert!(parts >= 1, "at least one vocabulary part");
        let tr = tile_rows.min(max_rows.max(1));
        let part_len = v.div_ceil(parts);
        let parts = (0..v.div_ceil(part_len))
            .map(|_| HeadPart {
                e: vec![F::ZERO; part_len * tr],
                block_max: vec![F::ZERO; part_len.div_ceil(vocab_block) * tr],
                dx: vec![F::ZERO; tr * c],
                dx_block: vec![F::ZERO; tr * c],
                xs: vec![F::ZERO; tr * c],
                st: TileStats::new(),
            })
            .collect();
        HeadScratch {
            parts,
            merged: TileStats::new(),
            xt: PackedB::new(c, tr),
            v,
            c,
            max_rows,
            tile_rows: tr,
            vocab_block,
            part_len,
        }
    }
}

/// What [`head_ce_forward_backward`] overwrites with gradients: `dx` [N, C] of the head's input,
/// and `head.w` [V, C], `head.b` \[V\] of its parameters.
#[derive(Debug)]
pub struct HeadGrads<'a, F> {
    pub dx: &'a mut [F],
    pub head: Affine<&'a mut [F]>,
}

/// Forward + backward over `x` [N, C] with targets \[N\] ([`IGNORE`] for an ignored row), head
/// weight `head.w` [V, C] and bias `head.b` \[V\].
///
/// Writes per-row losses into `losses` \[N\] (0 for ignored rows) and overwrites `grads` with
/// the gradients of the loss `weights` defines. Returns that loss (summed in row order, in f64).
///
/// # Panics
/// If `N` exceeds the scratch's rows, or `Given` weights do not hold N values.
pub fn head_ce_forward_backward<F: Float>(
    grads: HeadGrads<F>,
    losses: &mut [F],
    scratch: &mut HeadScratch<F>,
    x: &[F],
    head: Affine<&[F]>,
    targets: &[u16],
    weights: RowWeights<'_, F>,
) -> f64 {
    let (dx, dw, db) = (grads.dx, grads.head.w, grads.head.b);
    let (w, b) = (head.w, head.b);
    let (v, c, pl) = (scratch.v, scratch.c, scratch.part_len);
    let n = targets.len();
    assert!(
        n <= scratch.max_rows,
        "head scratch sized for {} rows, got {n}",
        scratch.max_rows
    );
    if let RowWeights::Given(wr) = weights {
        assert_eq!(wr.len(), n, "one weight per row");
    }
    let kept = targets.iter().filter(|&&t| t != IGNORE).count();
    // Mean: 1/kept per kept row (1/N when nothing is ignored, as the unmasked mean).
    let inv_kept = F::ONE / F::from_usize(kept.max(1));
    let (tr, vb) = (scratch.tile_rows, scratch.vocab_block);
    for (ti, r0) in (0..n).step_by(tr).enumerate() {
        let rows = tr.min(n - r0);
        let xt = &x[r0 * c..(r0 + rows) * c];
        let tg = &targets[r0..r0 + rows];
        tile_stats(scratch, xt, w, b, tg, &mut losses[r0..r0 + rows]);
        // The tile's per-row factors ∂L/∂ℓ[r] (0 for ignored rows).
        let mut wt = [F::ZERO; MAX_TILE_ROWS];
        for (r, (wt, &t)) in wt.iter_mut().zip(tg).enumerate() {
            *wt = match (t == IGNORE, weights) {
                (true, _) => F::ZERO,
                (false, RowWeights::Mean) => inv_kept,
                (false, RowWeights::Given(wr)) => wr[r0 + r],
            };
        }
        let wt = &wt[..rows];
        let (merged, first_tile) = (&scratch.merged, ti == 0);
        scratch
            .parts
            .par_iter_mut()
            .zip(dw[..v * c].par_chunks_mut(pl * c))
            .zip(db[..v].par_chunks_mut(pl))
            .zip(w[..v * c].par_chunks(pl * c))
            .enumerate()
            .for_each(|(p, (((part, dw), db), w))| {
                let nv = db.len();
                let HeadPart {
                    e,
                    block_max,
                    dx,
                    dx_block,
                    xs,
                    ..
                } = part;
                let (dx, dx_block, xs) = (
                    &mut dx[..rows * c],
                    &mut dx_block[..rows * c],
                    &mut xs[..rows * c],
                );
                // Last block first: the forward just left its exponentials in L2.
                for blk in (0..nv.div_ceil(vb)).rev() {
                    let (v0, v1) = (blk * vb, ((blk + 1) * vb).min(nv));
                    let eb = &e[v0 * rows..v1 * rows];
                    // dlogits[r, v] = e[v, r]·f[r] − w[r]·onehot with f[r] = e^(m_block − m)·w[r]/sum:
                    // the products below take e as it is and apply f on the short side.
                    let mut f = [F::ZERO; MAX_TILE_ROWS];
                    let f = &mut f[..rows];
                    let bm = &block_max[blk * rows..(blk + 1) * rows];
                    // f, db[v0..v1] (=|+=) e·f, and xs = diag(f)·x.
                    bias_grad_block(&mut db[v0..v1], xs, f, eb, bm, merged, xt, wt, first_tile);
                    // dx_block[rows, C] = eᵀ[rows, v0..v1] · W[v0..v1, C]; dx (=|+=) diag(f)·dx_block.
                    gemm(
                        rows,
                        c,
                        v1 - v0,
                        MatA::transposed(eb, rows),
                        MatB::Rows {
                            data: &w[v0 * c..v1 * c],
                            rs: c,
                        },
                        dx_block,
                        c,
                        Update::Overwrite,
                    );
                    scale_rows_into(dx, dx_block, f, c, v1 == nv);
                    // dW[v0..v1, C] (=|+=) e[v0..v1, rows] · xs[rows, C]: one fma chain per element
                    // over all rows, tile after tile.
                    gemm(
                        v1 - v0,
                        c,
                        rows,
                        MatA::rows(eb, rows),
                        MatB::Rows { data: xs, rs: c },
                        &mut dw[v0 * c..v1 * c],
                        c,
                        if first_tile {
                            Update::Overwrite
                        } else {
                            Update::Accumulate
                        },
                    );
                    // The one-hot terms, rows in order: −w[r] at each row's target (an ignored
                    // row's target lies past every range).
                    for (r, (&t, &wr)) in tg.iter().zip(wt).enumerate() {
                        let Some(j) = (t as usize).checked_sub(p * pl + v0) else {
                            continue;
                        };
                        if j < v1 - v0 {
                            let j = v0 + j;
                            db[j] -= wr;
                            for (d, &wv) in dx[r * c..(r + 1) * c].iter_mut().zip(&w[j * c..]) {
                                *d -= wr * wv;
                            }
                            for (d, &xv) in dw[j * c..(j + 1) * c].iter_mut().zip(&xt[r * c..]) {
                                *d -= wr * xv;
                            }
                        }
                    }
                }
            });
        // dx of the tile = the parts' contributions, added in part order.
        let dxt = &mut dx[r0 * c..(r0 + rows) * c];
        dxt.copy_from_slice(&scratch.parts[0].dx[..rows * c]);
        for part in &scratch.parts[1..] {
            add_assign(dxt, &part.dx[..rows * c]);
        }
    }
    match weights {
        RowWeights::Mean => masked_mean(&losses[..n], kept),
        RowWeights::Given(wr) => losses[..n]
            .iter()
            .zip(wr)
            .map(|(l, w)| l.to_f64() * w.to_f64())
            .sum(),
    }
}

/// Forward only (evaluation): per-row losses into `losses` \[N\] (0 for [`IGNORE`]d rows);
/// returns the mean over the rows that are not ignored (0 if every row is).
pub fn head_ce_forward<F: Float>(
    losses: &mut [F],
    scratch: &mut HeadScratch<F>,
    x: &[F],
    w: &[F],
    b: &[F],
    targets: &[u16],
) -> f64 {
    let c = scratch.c;
    let n = targets.len();
    assert!(
        n <= scratch.max_rows,
        "head scratch sized for {} rows, got {n}",
        scratch.max_rows
    );
    let tr = scratch.tile_rows;
    for r0 in (0..n).step_by(tr) {
        let rows = tr.min(n - r0);
        let (xt, tg) = (&x[r0 * c..(r0 + rows) * c], &targets[r0..r0 + rows]);
        tile_stats(scratch, xt, w, b, tg, &mut losses[r0..r0 + rows]);
    }
    let kept = targets.iter().filter(|&&t| t != IGNORE).count();
    masked_mean(&losses[..n], kept)
}

/// The forward pass of one tile of rows `x` [rows, C]: every part's exponentials and
/// statistics (the parts in parallel), merged in part order into `scratch.merged`; the rows'
/// losses into `losses` \[rows\] (0 for an ignored row).
fn tile_stats<F: Float>(
    scratch: &mut HeadScratch<F>,
    x: &[F],
    w: &[F],
    b: &[F],
    targets: &[u16],
    losses: &mut [F],
) {
    let (v, c, pl, vb) = (scratch.v, scratch.c, scratch.part_len, scratch.vocab_block);
    let rows = targets.len();
    // xᵀ[C, rows]: element (p, j) = x[j·C + p].
    scratch.xt.pack(x, c, rows, 1, c);
    let xt = &scratch.xt;
    scratch
        .parts
        .par_iter_mut()
        .zip(w[..v * c].par_chunks(pl * c))
        .zip(b[..v].par_chunks(pl))
        .enumerate()
        .for_each(|(p, ((part, w), b))| {
            let e = &mut part.e[..b.len() * rows];
            tile_forward(
                &mut part.st,
                e,
                &mut part.block_max,
                xt,
                w,
                b,
                targets,
                p * pl,
                vb,
            );
        });
    // The row maximum over the parts, each part's sum rescaled to it and added in part order;
    // the target's logit from the part that holds it.
    let (parts, st) = (&scratch.parts, &mut scratch.merged);
    for r in 0..rows {
        let m = parts
            .iter()
            .fold(F::NEG_INFINITY, |m, part| m.max(part.st.max[r]));
        let mut s = F::ZERO;
        for part in parts {
            s += part.st.sum[r] * (part.st.max[r] - m).exp();
        }
        st.max[r] = m;
        st.sum[r] = s;
        if targets[r] == IGNORE {
            losses[r] = F::ZERO;
            continue;
        }
        st.target_logit[r] = parts[targets[r] as usize / pl].st.target_logit[r];
        losses[r] = st.loss(r);
    }
}

/// Plain logits `out[N, V] = x[N, C]·Wᵀ + b` (tests and tools; not used in training).
pub fn head_logits<F: Float>(out: &mut [F], x: &[F], w: &[F], b: &[F], c: usize, v: usize) {
    let n = x.len() / c;
    let mut scratch = super::linear::LinearScratch::new(n, &[(c, v)]);
    use super::linear::{linear_forward, Epilogue};
    linear_forward(out, x, w, Some(b), Epilogue::Plain, &mut scratch, c, v);
}

/// Per-row softmax statistics of one tile (of one vocabulary part, or merged).
#[derive(Clone, Debug)]
struct TileStats<F> {
    /// Row maxima of the biased logits.
    max: [F; MAX_TILE_ROWS],
    /// Σ e^(logit − max) per row.
    sum: [F; MAX_TILE_ROWS],
    /// Biased logit of each row's target (set by the part that holds the target).
    target_logit: [F; MAX_TILE_ROWS],
}

impl<F: Float> TileStats<F> {
    fn new() -> Self {
        TileStats {
            max: [F::NEG_INFINITY; MAX_TILE_ROWS],
            sum: [F::ZERO; MAX_TILE_ROWS],
            target_logit: [F::ZERO; MAX_TILE_ROWS],
        }
    }

    /// `−log softmax(row r)[target] = ln(sum) + max − logit[target]`.
    fn loss(&self, r: usize) -> F {
        self.sum[r].ln() + self.max[r] - self.target_logit[r]
    }
}

/// Forward pass of one vocabulary range (entries `v_base..v_base + b.len()`, weights `w`, bias
/// `b`) over one tile: `e` [len, rows] receives the exponentials, `bmax` the maxima of each
/// vocabulary block, `st` the range's statistics for the tile's rows.
#[allow(clippy::too_many_arguments)]
fn tile_forward<F: Float>(
    st: &mut TileStats<F>,
    e: &mut [F],
    bmax: &mut [F],
    xp: &PackedB<F>,
    w: &[F],
    b: &[F],
    targets: &[u16],
    v_base: usize,
    vb: usize,
) {
    let (v, c, rows) = (b.len(), xp.k(), targets.len());
    st.max[..rows].fill(F::NEG_INFINITY);
    st.sum[..rows].fill(F::ZERO);
    for (blk, v0) in (0..v).step_by(vb).enumerate() {
        let v1 = (v0 + vb).min(v);
        let lb = &mut e[v0 * rows..v1 * rows];
        // logitsᵀ[v0..v1, rows] = W[v0..v1, C] · xᵀ[C, rows]
        gemm(
            v1 - v0,
            rows,
            c,
            MatA::rows(&w[v0 * c..v1 * c], c),
            MatB::packed(xp),
            lb,
            rows,
            Update::Overwrite,
        );
        let bm = &mut bmax[blk * rows..(blk + 1) * rows];
        online_softmax_block(lb, bm, st, &b[v0..v1], targets, v_base + v0);
    }
}

simd_fn! {
    /// One vocabulary block `lb` [v1−v0, rows] of raw logitsᵀ (bias not yet added): raise the
    /// running row maxima of the biased logits, rescale the running sums, replace the logits by
    /// `e^(logit + bias − max)` and add them to the sums (two-level, in vocabulary order).
    /// Records the maxima used in `bm` \[rows\].
    fn online_softmax_block(
        lb: &mut [F],
        bm: &mut [F],
        st: &mut TileStats<F>,
        bias: &[F],
        targets: &[u16],
        v0: usize,
    ) = online_softmax_block_lanes;
}

/// Lanes of the explicit vector loops below: the tile's rows are processed in groups of 64 (four
/// AVX-512 registers of f32), then 16, then one by one, each group's per-row state held in a
/// local array (registers) while the loop runs down the vocabulary.
const LANES: usize = 16;
const WIDE: usize = 64;

#[inline(always)]
fn online_softmax_block_lanes<F: Float>(
    lb: &mut [F],
    bm: &mut [F],
    st: &mut TileStats<F>,
    bias: &[F],
    targets: &[u16],
    v0: usize,
) {
    let rows = bm.len();
    let mut r0 = 0;
    while rows - r0 >= WIDE {
        online_softmax_lanes::<F, WIDE>(lb, bm, st, bias, targets, v0, r0);
        r0 += WIDE;
    }
    while rows - r0 >= LANES {
        online_softmax_lanes::<F, LANES>(lb, bm, st, bias, targets, v0, r0);
        r0 += LANES;
    }
    for r in r0..rows {
        online_softmax_lanes::<F, 1>(lb, bm, st, bias, targets, v0, r);
    }
}

/// Rows `r0..r0+W` of one vocabulary block: bias, block maxima, new running maxima (rescaling
/// the running sums), exponentials and their sums (per SUM_BLOCK entries, then added up).
#[inline(always)]
fn online_softmax_lanes<F: Float, const W: usize>(
    lb: &mut [F],
    bm: &mut [F],
    st: &mut TileStats<F>,
    bias: &[F],
    targets: &[u16],
    v0: usize,
    r0: usize,
) {
    let rows = bm.len();
    // Maxima of the biased logits (the bias is added again in the exponential pass rather than
    // stored: one write pass less over the block).
    let mut m = [F::NEG_INFINITY; W];
    for (col, &bv) in lb.chunks_exact(rows).zip(bias) {
        let x = &col[r0..r0 + W];
        for k in 0..W {
            m[k] = m[k].max(x[k] + bv);
        }
    }
    for (k, &t) in targets[r0..r0 + W].iter().enumerate() {
        let t = t as usize;
        if (v0..v0 + bias.len()).contains(&t) {
            st.target_logit[r0 + k] = lb[(t - v0) * rows + r0 + k] + bias[t - v0];
        }
    }
    for k in 0..W {
        let (m_run, s) = (&mut st.max[r0 + k], &mut st.sum[r0 + k]);
        let m_new = m_run.max(m[k]);
        if *s != F::ZERO {
            *s *= (*m_run - m_new).exp();
        }
        *m_run = m_new;
        m[k] = m_new;
        bm[r0 + k] = m_new;
    }
    let mut total = [F::ZERO; W];
    for (part_block, bias) in lb.chunks_mut(SUM_BLOCK * rows).zip(bias.chunks(SUM_BLOCK)) {
        let mut part = [F::ZERO; W];
        for (col, &bv) in part_block.chunks_exact_mut(rows).zip(bias) {
            let x = &mut col[r0..r0 + W];
            for k in 0..W {
                let e = (x[k] + bv - m[k]).exp();
                x[k] = e;
                part[k] += e;
            }
        }
        for k in 0..W {
            total[k] += part[k];
        }
    }
    for (s, &t) in st.sum[r0..r0 + W].iter_mut().zip(&total) {
        *s += t;
    }
}

simd_fn! {
    /// The short-side work of one vocabulary block's backward, `eb` [v1−v0, rows] its
    /// exponentials taken against the maxima `bm` \[rows\]: the factors `f` \[rows\] that turn them
    /// into `dlogits` (without the one-hot terms), `f = e^(bm − max)·w/sum` with the rows' loss
    /// weights `w` \[rows\]; `db` \[v1−v0\]
    /// (=|+=) `eb·f` (16 lanes, then the lanes in order, then the rows past the last full lane
    /// group); and `xs` [rows, C] = `diag(f)·x`.
    #[allow(clippy::too_many_arguments)]
    fn bias_grad_block(
        db: &mut [F],
        xs: &mut [F],
        f: &mut [F],
        eb: &[F],
        bm: &[F],
        st: &TileStats<F>,
        x: &[F],
        wt: &[F],
        first: bool,
    ) = bias_grad_block_lanes;
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bias_grad_block_lanes<F: Float>(
    db: &mut [F],
    xs: &mut [F],
    f: &mut [F],
    eb: &[F],
    bm: &[F],
    st: &TileStats<F>,
    x: &[F],
    wt: &[F],
    first: bool,
) {
    let rows = f.len();
    for (r, f) in f.iter_mut().enumerate() {
        *f = (bm[r] - st.max[r]).exp() * (wt[r] / st.sum[r]);
    }
    for (e, db) in eb.chunks_exact(rows).zip(db.iter_mut()) {
        bias_grad_entry(e, f, db, first);
    }
    let c = x.len() / rows.max(1);
    for ((xs, x), &f) in xs.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(&*f) {
        for (xs, &x) in xs.iter_mut().zip(x) {
            *xs = x * f;
        }
    }
}

/// One vocabulary entry: `db (=|+=) Σ_rows e·f`.
#[inline(always)]
fn bias_grad_entry<F: Float>(e: &[F], f: &[F], db: &mut F, first: bool) {
    let mut acc = [F::ZERO; LANES];
    let (mut ec, mut fc) = (e.chunks_exact(LANES), f.chunks_exact(LANES));
    for (e, f) in (&mut ec).zip(&mut fc) {
        for k in 0..LANES {
            acc[k] += e[k] * f[k];
        }
    }
    let mut lanes = F::ZERO;
    for &a in &acc {
        lanes += a;
    }
    for (&e, &f) in ec.remainder().iter().zip(fc.remainder()) {
        lanes += e * f;
    }
    *db = if first { lanes } else { *db + lanes };
}

/// `dst` [rows, C] (= | +=) `diag(f)·src`: overwrite for the first block a part processes.
fn scale_rows_into<F: Float>(dst: &mut [F], src: &[F], f: &[F], c: usize, overwrite: bool) {
    dispatch_simd!(
        scale_rows,
        fn(dst: &mut [F], src: &[F], f: &[F], c: usize, overwrite: bool) -> (),
        for ((d, s), &f) in dst.chunks_exact_mut(c).zip(src.chunks_exact(c)).zip(f) {
            if overwrite {
                for (d, &s) in d.iter_mut().zip(s) {
                    *d = s * f;
                }
            } else {
                for (d, &s) in d.iter_mut().zip(s) {
                    *d += s * f;
                }
            }
        }
    )
}

#[inline]
fn add_assign<F: Float>(dst: &mut [F], src: &[F]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// Mean of per-row losses, summed in row order in f64.
pub fn mean_in_order<F: Float>(losses: &[F]) -> f64 {
    let s: f64 = losses.iter().map(|l| l.to_f64()).sum();
    s / losses.len() as f64
}

/// Sum of per-row losses (ignored rows hold 0) in row order in f64, over the `kept` rows that
/// are not ignored; 0 when none is (PyTorch would give NaN: an all-padding batch has no loss).
fn masked_mean<F: Float>(losses: &[F], kept: usize) -> f64 {
    if kept == 0 {
        return 0.0;
    }
    let s: f64 = losses.iter().map(|l| l.to_f64()).sum();
    s / kept as f64
}
