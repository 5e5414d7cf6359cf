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
//! Tile sizes (`tinypoet bench head` sweeps them; 2 threads, 16×256 rows): 32/64/96/128-row
//! tiles and 256/512/1024-entry blocks all land within ~15% of each other, 64 × 512 among the
//! best; 128-row tiles (4.4 MB, two of them live) were consistently slower.

use rayon::prelude::*;

use super::gemm::{gemm, MatA, MatB, PackedB, Update};
use super::{num_chunks, Float};

/// Rows of one chunk (one parallel task, one partial `dW`).
pub const CHUNK_ROWS: usize = 1024;
/// Rows per tile: a tile of logits is `V × TILE_ROWS` floats (8548×64×4 B = 2.2 MB).
pub const TILE_ROWS: usize = 64;
/// Vocabulary entries per block of the online softmax and of the backward products.
pub const VOCAB_BLOCK: usize = 512;
/// Largest tile [`HeadScratch::with_tiles`] accepts (per-row statistics live on the stack).
pub const MAX_TILE_ROWS: usize = 256;
/// Vocabulary entries per partial sum of a block's exponentials (a two-level sum keeps the f32
/// rounding error of a block's 512 terms near that of ~50).
const SUM_BLOCK: usize = 32;

/// Preallocated scratch for [`head_ce_forward_backward`] and [`head_ce_forward`].
#[derive(Clone, Debug)]
pub struct HeadScratch<F> {
    /// Per chunk: one tile of transposed exponentials [V, TILE_ROWS].
    tiles: Vec<F>,
    /// Per chunk: one block of transposed dlogits [VOCAB_BLOCK, TILE_ROWS].
    dl: Vec<F>,
    /// Per chunk: per vocabulary block, the row maxima its exponentials were taken against
    /// [⌈V/VOCAB_BLOCK⌉, TILE_ROWS].
    block_max: Vec<F>,
    /// Per chunk: the current tile's `xᵀ` [C, TILE_ROWS], packed for the logits product.
    xts: Vec<PackedB<F>>,
    /// Per chunk: partial weight gradient [V, C].
    dw: Vec<F>,
    /// Per chunk: partial bias gradient \[V\].
    db: Vec<F>,
    v: usize,
    c: usize,
    max_rows: usize,
    tile_rows: usize,
    vocab_block: usize,
}

impl<F: Float> HeadScratch<F> {
    /// Scratch for up to `max_rows` rows, with the default tile sizes.
    pub fn new(max_rows: usize, v: usize, c: usize) -> Self {
        Self::with_tiles(max_rows, v, c, TILE_ROWS, VOCAB_BLOCK)
    }

    /// Scratch with `tile_rows` (≤ [`MAX_TILE_ROWS`]) rows per tile and vocabulary blocks of
    /// `vocab_block` entries (for benchmarks; the tile size does not change any result, the
    /// vocabulary block changes the rounding of the softmax sums).
    pub fn with_tiles(
        max_rows: usize,
        v: usize,
        c: usize,
        tile_rows: usize,
        vocab_block: usize,
    ) -> Self {
        assert!((1..=MAX_TILE_ROWS).contains(&tile_rows) && vocab_block >= 1);
        let chunks = num_chunks(max_rows, CHUNK_ROWS);
        HeadScratch {
            tiles: vec![F::ZERO; chunks * tile_rows * v],
            dl: vec![F::ZERO; chunks * vocab_block * tile_rows],
            block_max: vec![F::ZERO; chunks * v.div_ceil(vocab_block) * tile_rows],
            xts: (0..chunks).map(|_| PackedB::new(c, tile_rows)).collect(),
            tile_rows,
            vocab_block,
            dw: vec![F::ZERO; chunks * v * c],
            db: vec![F::ZERO; chunks * v],
            v,
            c,
            max_rows,
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
    let (v, c) = (scratch.v, scratch.c);
    let n = targets.len();
    assert!(
        n <= scratch.max_rows,
        "head scratch sized for {} rows, got {n}",
        scratch.max_rows
    );
    let inv_n = F::ONE / F::from_usize(n);
    let chunks = num_chunks(n, CHUNK_ROWS);
    let dw_parts = &mut scratch.dw[..chunks * v * c];
    let db_parts = &mut scratch.db[..chunks * v];
    let (tr, vb) = (scratch.tile_rows, scratch.vocab_block);
    let nblocks = v.div_ceil(vb);
    dx.par_chunks_mut(CHUNK_ROWS * c)
        .zip(losses.par_chunks_mut(CHUNK_ROWS))
        .zip(scratch.tiles.par_chunks_mut(tr * v))
        .zip(scratch.dl.par_chunks_mut(vb * tr))
        .zip(scratch.block_max.par_chunks_mut(nblocks * tr))
        .zip(scratch.xts.par_iter_mut())
        .zip(dw_parts.par_chunks_mut(v * c))
        .zip(db_parts.par_chunks_mut(v))
        .zip(x.par_chunks(CHUNK_ROWS * c))
        .zip(targets.par_chunks(CHUNK_ROWS))
        .for_each(
            |(((((((((dx, losses), tile), dl), bmax), xp), pdw), pdb), x), tg)| {
                let rows_in_chunk = tg.len();
                for (ti, r0) in (0..rows_in_chunk).step_by(tr).enumerate() {
                    let rows = tr.min(rows_in_chunk - r0);
                    let xt = &x[r0 * c..(r0 + rows) * c];
                    let lt = &mut tile[..v * rows];
                    let tl = &tg[r0..r0 + rows];
                    // xᵀ[C, rows]: element (p, j) = x[j·C + p].
                    xp.pack(xt, c, rows, 1, c);
                    let st = tile_forward(lt, bmax, xp, w, b, tl, rows, vb);
                    for r in 0..rows {
                        losses[r0 + r] = st.loss(r);
                    }
                    let first_tile = ti == 0;
                    // Last block first: the forward just left its exponentials and W rows in L2.
                    let nblk = v.div_ceil(vb);
                    for blk in (0..nblk).rev() {
                        let (v0, v1) = (blk * vb, ((blk + 1) * vb).min(v));
                        let dlb = &mut dl[..(v1 - v0) * rows];
                        // dlogitsᵀ of the block, and db_part[v0..v1] (+)= its row sums.
                        dlogits_block(
                            dlb,
                            &mut pdb[v0..v1],
                            &lt[v0 * rows..v1 * rows],
                            &bmax[blk * rows..(blk + 1) * rows],
                            &st,
                            tl,
                            v0,
                            inv_n,
                            first_tile,
                        );
                        // dx[rows, C] (+)= dlogits[rows, v0..v1] · W[v0..v1, C]: one fma chain per
                        // element over the vocabulary, blocks from the last, each in order.
                        gemm(
                            rows,
                            c,
                            v1 - v0,
                            MatA::transposed(dlb, rows),
                            MatB::Rows {
                                data: &w[v0 * c..v1 * c],
                                rs: c,
                            },
                            &mut dx[r0 * c..],
                            c,
                            if blk + 1 == nblk {
                                Update::Overwrite
                            } else {
                                Update::Accumulate
                            },
                        );
                        // dW_part[v0..v1, C] (+)= dlogitsᵀ[v0..v1, rows] · x[rows, C]: one fma chain
                        // per element over the chunk's rows in order.
                        gemm(
                            v1 - v0,
                            c,
                            rows,
                            MatA::rows(dlb, rows),
                            MatB::Rows { data: xt, rs: c },
                            &mut pdw[v0 * c..v1 * c],
                            c,
                            if first_tile {
                                Update::Overwrite
                            } else {
                                Update::Accumulate
                            },
                        );
                    }
                }
            },
        );
    // Fixed-order combine: dW = part₀ + part₁ + … (element-wise, so split freely over rows).
    dw.par_chunks_mut(64 * c).enumerate().for_each(|(k, out)| {
        let off = k * 64 * c;
        out.copy_from_slice(&dw_parts[off..off + out.len()]);
        for p in 1..chunks {
            add_assign(out, &dw_parts[p * v * c + off..p * v * c + off + out.len()]);
        }
    });
    db.copy_from_slice(&db_parts[..v]);
    for p in 1..chunks {
        add_assign(db, &db_parts[p * v..(p + 1) * v]);
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
    let (v, c) = (scratch.v, scratch.c);
    let n = targets.len();
    assert!(
        n <= scratch.max_rows,
        "head scratch sized for {} rows, got {n}",
        scratch.max_rows
    );
    let (tr, vb) = (scratch.tile_rows, scratch.vocab_block);
    let nblocks = v.div_ceil(vb);
    losses[..n]
        .par_chunks_mut(CHUNK_ROWS)
        .zip(scratch.tiles.par_chunks_mut(tr * v))
        .zip(scratch.block_max.par_chunks_mut(nblocks * tr))
        .zip(scratch.xts.par_iter_mut())
        .zip(x.par_chunks(CHUNK_ROWS * c))
        .zip(targets.par_chunks(CHUNK_ROWS))
        .for_each(|(((((losses, tile), bmax), xp), x), tg)| {
            for r0 in (0..tg.len()).step_by(tr) {
                let rows = tr.min(tg.len() - r0);
                xp.pack(&x[r0 * c..(r0 + rows) * c], c, rows, 1, c);
                let lt = &mut tile[..v * rows];
                let st = tile_forward(lt, bmax, xp, w, b, &tg[r0..r0 + rows], rows, vb);
                for r in 0..rows {
                    losses[r0 + r] = st.loss(r);
                }
            }
        });
    mean_in_order(&losses[..n])
}

/// Plain logits `out[N, V] = x[N, C]·Wᵀ + b` (tests and tools; not used in training).
pub fn head_logits<F: Float>(out: &mut [F], x: &[F], w: &[F], b: &[F], c: usize, v: usize) {
    let n = x.len() / c;
    let mut scratch = super::linear::LinearScratch::new(n, &[(c, v)]);
    use super::linear::{linear_forward, Epilogue};
    linear_forward(out, x, w, Some(b), Epilogue::Plain, &mut scratch, c, v);
}

/// Per-row softmax statistics of one tile, after its forward pass.
struct TileStats<F> {
    /// Row maxima of the biased logits.
    max: [F; MAX_TILE_ROWS],
    /// Σ e^(logit − max) per row.
    sum: [F; MAX_TILE_ROWS],
    /// Biased logit of each row's target.
    target_logit: [F; MAX_TILE_ROWS],
}

impl<F: Float> TileStats<F> {
    /// `−log softmax(row r)[target] = ln(sum) + max − logit[target]`.
    fn loss(&self, r: usize) -> F {
        self.sum[r].ln() + self.max[r] - self.target_logit[r]
    }
}

/// Forward pass over one tile (`lt` [V, rows] receives the exponentials, `bmax` the maxima of
/// each vocabulary block); returns the rows' softmax statistics.
#[allow(clippy::too_many_arguments)]
fn tile_forward<F: Float>(
    lt: &mut [F],
    bmax: &mut [F],
    xp: &PackedB<F>,
    w: &[F],
    b: &[F],
    targets: &[u16],
    rows: usize,
    vb: usize,
) -> TileStats<F> {
    let (v, c) = (b.len(), xp.k());
    let mut st = TileStats {
        max: [F::NEG_INFINITY; MAX_TILE_ROWS],
        sum: [F::ZERO; MAX_TILE_ROWS],
        target_logit: [F::ZERO; MAX_TILE_ROWS],
    };
    for (blk, v0) in (0..v).step_by(vb).enumerate() {
        let v1 = (v0 + vb).min(v);
        let lb = &mut lt[v0 * rows..v1 * rows];
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
        online_softmax_block(lb, bm, &mut st, &b[v0..v1], targets, v0);
    }
    st
}

/// One vocabulary block `lb` [v1−v0, rows] of raw logitsᵀ: add the bias, raise the running row
/// maxima, rescale the running sums, replace the logits by `e^(logit − max)` and add them to the
/// sums (two-level, in vocabulary order). Records the maxima used in `bm` \[rows\].
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
    let mut m = [F::NEG_INFINITY; W];
    for (col, &bv) in lb.chunks_exact_mut(rows).zip(bias) {
        let x = &mut col[r0..r0 + W];
        for k in 0..W {
            x[k] += bv;
            m[k] = m[k].max(x[k]);
        }
    }
    for (k, &t) in targets[r0..r0 + W].iter().enumerate() {
        let t = t as usize;
        if (v0..v0 + bias.len()).contains(&t) {
            st.target_logit[r0 + k] = lb[(t - v0) * rows + r0 + k];
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
    for part_block in lb.chunks_mut(SUM_BLOCK * rows) {
        let mut part = [F::ZERO; W];
        for col in part_block.chunks_exact_mut(rows) {
            let x = &mut col[r0..r0 + W];
            for k in 0..W {
                let e = (x[k] - m[k]).exp();
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
