//! LM head `logits = x·Wᵀ + b` (64 → V) fused with softmax cross-entropy and its backward.
//!
//! The head is about 63% of a training step's FLOPs, and the full logits (16×256×8548 f32 =
//! 140 MB) would be written once and read back several times. Here the rows are processed in
//! tiles of [`TILE_ROWS`]: each tile's logits are computed, turned into losses and, for training,
//! into `dlogits = (softmax − onehot)/N`, and immediately consumed by the two backward products
//! while they are still in cache. Nothing of size N×V ever exists.
//!
//! A tile is stored *transposed*, vocabulary-major: `lt` [V, rows], so that all three products
//! read and write it contiguously (shapes for a 64-row tile, C = 64):
//!
//! ```text
//! logitsᵀ [V, 64] = W [V, C] · xᵀ [C, 64]          xᵀ packed per tile (16 KiB, stays in L1)
//! dx      [64, C] = dlogits [64, V] · W [V, C]      dlogits read as (dlogitsᵀ)ᵀ
//! dW     [V, C] += dlogitsᵀ [V, 64] · x [64, C]
//! ```
//!
//! and the softmax runs down the columns, vectorised across the tile's 64 rows.
//!
//! A tile (2.2 MB) does not fit in L2, so each pass over it would cost an L3 round trip. Both
//! halves therefore work in vocabulary blocks of [`VOCAB_BLOCK`] (128 KiB of a tile, which stays
//! in L2 through all the passes on it):
//! * forward: a block's logits are computed, biased and exponentiated at once against the running
//!   row maxima (online softmax: when a block raises a row's maximum from m to m′, the row's sum
//!   so far is rescaled by e^(m−m′)); the block's exponentials and the maxima they used are kept;
//! * backward (training): a block's `dlogits = e·e^(m_block − m)/sum − onehot`, scaled by 1/N, are
//!   formed in an L2 scratch block and consumed at once by the dx and dW products.
//!
//! So every logit is exponentiated once, and the tile crosses L3 twice (written, read back).
//! The bias gradient is summed in the same pass that forms `dlogits`.
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

use rayon::prelude::*;

use super::gemm::{gemm, MatA, MatB, PackedB, Update};
use super::Float;

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
    /// One block of dlogitsᵀ [vocab_block, rows].
    dl: Vec<F>,
    /// The range's contribution to the tile's dx [rows, C].
    dx: Vec<F>,
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
                dl: vec![F::ZERO; vocab_block.min(part_len) * tr],
                dx: vec![F::ZERO; tr * c],
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

/// Forward + backward over `x` [N, C] with targets \[N\].
///
/// Writes per-row losses into `losses` \[N\] and overwrites `dx` [N, C], `dw` [V, C], `db` \[V\]
/// with the gradients of the *mean* loss. Returns the mean loss (summed in row order, in f64).
#[allow(clippy::too_many_arguments)]
pub fn head_ce_forward_backward<F: Float>(
    dx: &mut [F],
    dw: &mut [F],
    db: &mut [F],
    losses: &mut [F],
    scratch: &mut HeadScratch<F>,
    x: &[F],
    w: &[F],
    b: &[F],
    targets: &[u16],
) -> f64 {
    let (v, c, pl) = (scratch.v, scratch.c, scratch.part_len);
    let n = targets.len();
    assert!(
        n <= scratch.max_rows,
        "head scratch sized for {} rows, got {n}",
        scratch.max_rows
    );
    let inv_n = F::ONE / F::from_usize(n);
    let (tr, vb) = (scratch.tile_rows, scratch.vocab_block);
    for (ti, r0) in (0..n).step_by(tr).enumerate() {
        let rows = tr.min(n - r0);
        let xt = &x[r0 * c..(r0 + rows) * c];
        let tg = &targets[r0..r0 + rows];
        tile_stats(scratch, xt, w, b, tg, &mut losses[r0..r0 + rows]);
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
                // Last block first: the forward just left its exponentials in L2.
                for blk in (0..nv.div_ceil(vb)).rev() {
                    let (v0, v1) = (blk * vb, ((blk + 1) * vb).min(nv));
                    let dlb = &mut part.dl[..(v1 - v0) * rows];
                    // dlogitsᵀ of the block, and db[v0..v1] (+)= its row sums.
                    dlogits_block(
                        dlb,
                        &mut db[v0..v1],
                        &part.e[v0 * rows..v1 * rows],
                        &part.block_max[blk * rows..(blk + 1) * rows],
                        merged,
                        tg,
                        p * pl + v0,
                        inv_n,
                        first_tile,
                    );
                    // dx_part[rows, C] (+)= dlogits[rows, v0..v1] · W[v0..v1, C]: one fma chain
                    // per element over the part's vocabulary, blocks from the last.
                    gemm(
                        rows,
                        c,
                        v1 - v0,
                        MatA::transposed(dlb, rows),
                        MatB::Rows {
                            data: &w[v0 * c..v1 * c],
                            rs: c,
                        },
                        &mut part.dx,
                        c,
                        if v1 == nv {
                            Update::Overwrite
                        } else {
                            Update::Accumulate
                        },
                    );
                    // dW[v0..v1, C] (+)= dlogitsᵀ[v0..v1, rows] · x[rows, C]: one fma chain per
                    // element over all rows, tile after tile.
                    gemm(
                        v1 - v0,
                        c,
                        rows,
                        MatA::rows(dlb, rows),
                        MatB::Rows { data: xt, rs: c },
                        &mut dw[v0 * c..v1 * c],
                        c,
                        if first_tile {
                            Update::Overwrite
                        } else {
                            Update::Accumulate
                        },
                    );
                }
            });
        // dx of the tile = the parts' contributions, added in part order.
        let dxt = &mut dx[r0 * c..(r0 + rows) * c];
        dxt.copy_from_slice(&scratch.parts[0].dx[..rows * c]);
        for part in &scratch.parts[1..] {
            add_assign(dxt, &part.dx[..rows * c]);
        }
    }
    mean_in_order(&losses[..n])
}

/// Forward only (evaluation): per-row losses into `losses` \[N\]; returns the mean loss.
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
    mean_in_order(&losses[..n])
}

/// The forward pass of one tile of rows `x` [rows, C]: every part's exponentials and
/// statistics (the parts in parallel), merged in part order into `scratch.merged`; the rows'
/// losses into `losses` \[rows\].
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

/// One vocabulary block `lb` [v1−v0, rows] of raw logitsᵀ (bias not yet added): raise the
/// running row maxima of the biased logits, rescale the running sums, replace the logits by
/// `e^(logit + bias − max)` and add them to the sums (two-level, in vocabulary order). Records
/// the maxima used in `bm` \[rows\].
fn online_softmax_block<F: Float>(
    lb: &mut [F],
    bm: &mut [F],
    st: &mut TileStats<F>,
    bias: &[F],
    targets: &[u16],
    v0: usize,
) {
    dispatch_simd!(
        online_softmax,
        fn(
            lb: &mut [F],
            bm: &mut [F],
            st: &mut TileStats<F>,
            bias: &[F],
            targets: &[u16],
            v0: usize,
        ) -> (),
        online_softmax_block_lanes(lb, bm, st, bias, targets, v0)
    )
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

/// `dlb` [v1−v0, rows] = dlogitsᵀ of one vocabulary block starting at `v0`:
/// `(e·e^(m_block − m)/sum − onehot(target))·scale` from the block's exponentials `eb`, and
/// `db` \[v1−v0\] (=|+=) its row sums (16 lanes, then the lanes in order, then the one-hot
/// terms in row order).
#[allow(clippy::too_many_arguments)]
fn dlogits_block<F: Float>(
    dlb: &mut [F],
    db: &mut [F],
    eb: &[F],
    bm: &[F],
    st: &TileStats<F>,
    targets: &[u16],
    v0: usize,
    scale: F,
    first: bool,
) {
    dispatch_simd!(
        dlogits,
        fn(
            dlb: &mut [F],
            db: &mut [F],
            eb: &[F],
            bm: &[F],
            st: &TileStats<F>,
            targets: &[u16],
            v0: usize,
            scale: F,
            first: bool,
        ) -> (),
        dlogits_block_lanes(dlb, db, eb, bm, st, targets, v0, scale, first)
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dlogits_block_lanes<F: Float>(
    dlb: &mut [F],
    db: &mut [F],
    eb: &[F],
    bm: &[F],
    st: &TileStats<F>,
    targets: &[u16],
    v0: usize,
    scale: F,
    first: bool,
) {
    let rows = bm.len();
    let mut f = [F::ZERO; MAX_TILE_ROWS];
    for r in 0..rows {
        f[r] = (bm[r] - st.max[r]).exp() * (scale / st.sum[r]);
    }
    if rows == WIDE {
        // The common case, with the factors in registers.
        dlogits_rows::<F, WIDE>(dlb, db, eb, &f[..WIDE], first);
    } else {
        for ((d, e), db) in dlb
            .chunks_exact_mut(rows)
            .zip(eb.chunks_exact(rows))
            .zip(db.iter_mut())
        {
            dlogits_row(d, e, &f[..rows], db, first);
        }
    }
    let nv = eb.len() / rows;
    for (r, &t) in targets.iter().enumerate() {
        let t = t as usize;
        if (v0..v0 + nv).contains(&t) {
            dlb[(t - v0) * rows + r] -= scale;
            db[t - v0] -= scale;
        }
    }
}

/// [`dlogits_block_lanes`] for tiles of exactly `W` rows.
#[inline(always)]
fn dlogits_rows<F: Float, const W: usize>(
    dlb: &mut [F],
    db: &mut [F],
    eb: &[F],
    f: &[F],
    first: bool,
) {
    let f: [F; W] = std::array::from_fn(|k| f[k]);
    for ((d, e), db) in dlb
        .chunks_exact_mut(W)
        .zip(eb.chunks_exact(W))
        .zip(db.iter_mut())
    {
        dlogits_row(d, e, &f, db, first);
    }
}

/// One vocabulary entry: `d = e·f` over the tile's rows, and `db (=|+=) Σ d` (16 lanes, then
/// the lanes in order, then the rows past the last full lane group).
#[inline(always)]
fn dlogits_row<F: Float>(d: &mut [F], e: &[F], f: &[F], db: &mut F, first: bool) {
    let mut acc = [F::ZERO; LANES];
    let (mut dc, mut ec, mut fc) = (
        d.chunks_exact_mut(LANES),
        e.chunks_exact(LANES),
        f.chunks_exact(LANES),
    );
    for ((d, e), f) in (&mut dc).zip(&mut ec).zip(&mut fc) {
        for k in 0..LANES {
            let x = e[k] * f[k];
            d[k] = x;
            acc[k] += x;
        }
    }
    let mut lanes = F::ZERO;
    for &a in &acc {
        lanes += a;
    }
    for ((d, &e), &f) in dc
        .into_remainder()
        .iter_mut()
        .zip(ec.remainder())
        .zip(fc.remainder())
    {
        let x = e * f;
        *d = x;
        lanes += x;
    }
    *db = if first { lanes } else { *db + lanes };
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
