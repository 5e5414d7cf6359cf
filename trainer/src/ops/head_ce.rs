//! LM head `logits = x·Wᵀ + b` (64 → V) fused with softmax cross-entropy and its backward.
//!
//! The head is about 63% of a training step's FLOPs, and the full logits (16×256×8548 f32 =
//! 140 MB) would be written once and read back several times. Here the rows are processed in
//! tiles of [`TILE_ROWS`]: each tile's logits are computed, turned into losses and, for training,
//! into `dlogits = (softmax − onehot)/N` in place, and immediately consumed by the two backward
//! products while they are still in cache. Nothing of size N×V ever exists.
//!
//! Parallelism: rows are split into fixed chunks of [`CHUNK_ROWS`]. Each chunk accumulates its
//! own partial `dW`/`db`; the partials are then added in chunk order. The partition depends only
//! on N, so the result is the same for any thread count or schedule.

use rayon::prelude::*;

use super::{num_chunks, Float};

/// Rows of one chunk (one parallel task, one partial `dW`).
pub const CHUNK_ROWS: usize = 1024;
/// Rows per tile: tile logits are `TILE_ROWS × V` floats (64×8548×4 B = 2.2 MB).
pub const TILE_ROWS: usize = 64;

/// Preallocated scratch for [`head_ce_forward_backward`] and [`head_ce_forward`].
#[derive(Clone, Debug)]
pub struct HeadScratch<F> {
    /// Per chunk: one tile of logits [TILE_ROWS, V].
    tiles: Vec<F>,
    /// Per chunk: partial weight gradient [V, C].
    dw: Vec<F>,
    /// Per chunk: partial bias gradient \[V\].
    db: Vec<F>,
    v: usize,
    c: usize,
    max_rows: usize,
}

impl<F: Float> HeadScratch<F> {
    /// Scratch for up to `max_rows` rows.
    pub fn new(max_rows: usize, v: usize, c: usize) -> Self {
        let chunks = num_chunks(max_rows, CHUNK_ROWS);
        HeadScratch {
            tiles: vec![F::ZERO; chunks * TILE_ROWS * v],
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
    dx.par_chunks_mut(CHUNK_ROWS * c)
        .zip(losses.par_chunks_mut(CHUNK_ROWS))
        .zip(scratch.tiles.par_chunks_mut(TILE_ROWS * v))
        .zip(dw_parts.par_chunks_mut(v * c))
        .zip(db_parts.par_chunks_mut(v))
        .zip(x.par_chunks(CHUNK_ROWS * c))
        .zip(targets.par_chunks(CHUNK_ROWS))
        .for_each(|((((((dx, losses), tile), pdw), pdb), x), tg)| {
            let rows_in_chunk = tg.len();
            for (ti, r0) in (0..rows_in_chunk).step_by(TILE_ROWS).enumerate() {
                let rows = TILE_ROWS.min(rows_in_chunk - r0);
                let xt = &x[r0 * c..(r0 + rows) * c];
                let lt = &mut tile[..rows * v];
                // logits[rows, V] = x[rows, C] · Wᵀ[C, V]   (bias added in the row pass)
                F::gemm(
                    rows,
                    c,
                    v,
                    F::ONE,
                    xt,
                    c as isize,
                    1,
                    w,
                    1,
                    c as isize,
                    F::ZERO,
                    lt,
                    v as isize,
                    1,
                );
                for (r, row) in lt.chunks_exact_mut(v).enumerate() {
                    losses[r0 + r] = rows_softmax_ce(row, b, tg[r0 + r] as usize, Some(inv_n));
                }
                // dx[rows, C] = dlogits[rows, V] · W[V, C]
                F::gemm(
                    rows,
                    v,
                    c,
                    F::ONE,
                    lt,
                    v as isize,
                    1,
                    w,
                    c as isize,
                    1,
                    F::ZERO,
                    &mut dx[r0 * c..],
                    c as isize,
                    1,
                );
                // dW_part[V, C] (+)= dlogitsᵀ[V, rows] · x[rows, C]
                let beta = if ti == 0 { F::ZERO } else { F::ONE };
                F::gemm(
                    v,
                    rows,
                    c,
                    F::ONE,
                    lt,
                    1,
                    v as isize,
                    xt,
                    c as isize,
                    1,
                    beta,
                    pdw,
                    c as isize,
                    1,
                );
                // db_part[V] (+)= column sums of dlogits, rows in order.
                if ti == 0 {
                    pdb.fill(F::ZERO);
                }
                for row in lt.chunks_exact(v) {
                    add_assign(pdb, row);
                }
            }
        });
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
    losses[..n]
        .par_chunks_mut(CHUNK_ROWS)
        .zip(scratch.tiles.par_chunks_mut(TILE_ROWS * v))
        .zip(x.par_chunks(CHUNK_ROWS * c))
        .zip(targets.par_chunks(CHUNK_ROWS))
        .for_each(|(((losses, tile), x), tg)| {
            for r0 in (0..tg.len()).step_by(TILE_ROWS) {
                let rows = TILE_ROWS.min(tg.len() - r0);
                let lt = &mut tile[..rows * v];
                F::gemm(
                    rows,
                    c,
                    v,
                    F::ONE,
                    &x[r0 * c..],
                    c as isize,
                    1,
                    w,
                    1,
                    c as isize,
                    F::ZERO,
                    lt,
                    v as isize,
                    1,
                );
                for (r, row) in lt.chunks_exact_mut(v).enumerate() {
                    losses[r0 + r] = rows_softmax_ce(row, b, tg[r0 + r] as usize, None);
                }
            }
        });
    mean_in_order(&losses[..n])
}

/// Plain logits `out[N, V] = x[N, C]·Wᵀ + b` (tests and tools; not used in training).
pub fn head_logits<F: Float>(out: &mut [F], x: &[F], w: &[F], b: &[F], c: usize, v: usize) {
    super::linear::linear_forward(out, x, w, Some(b), c, v);
}

/// One row: adds the bias to `row` (raw logits), returns `−log softmax(row)[target]`, and if
/// `grad_scale` is given overwrites `row` with `(softmax(row) − onehot(target))·grad_scale`.
#[inline]
fn rows_softmax_ce<F: Float>(row: &mut [F], b: &[F], target: usize, grad_scale: Option<F>) -> F {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function was compiled for.
            return unsafe { softmax_ce_avx512(row, b, target, grad_scale) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { softmax_ce_avx2(row, b, target, grad_scale) };
        }
    }
    softmax_ce_row(row, b, target, grad_scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2")]
unsafe fn softmax_ce_avx512<F: Float>(row: &mut [F], b: &[F], target: usize, gs: Option<F>) -> F {
    softmax_ce_row(row, b, target, gs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_ce_avx2<F: Float>(row: &mut [F], b: &[F], target: usize, gs: Option<F>) -> F {
    softmax_ce_row(row, b, target, gs)
}

/// Lanes of the explicit partial sums: a fixed summation order that still vectorises, identical
/// in every instruction-set variant above.
const LANES: usize = 16;

#[inline(always)]
fn softmax_ce_row<F: Float>(row: &mut [F], b: &[F], target: usize, grad_scale: Option<F>) -> F {
    // Pass 1: add bias, find the max (max is exact in any order).
    let mut mx = [F::NEG_INFINITY; LANES];
    let mut rc = row.chunks_exact_mut(LANES);
    let mut bc = b.chunks_exact(LANES);
    for (r, bb) in (&mut rc).zip(&mut bc) {
        for k in 0..LANES {
            r[k] += bb[k];
            mx[k] = mx[k].max(r[k]);
        }
    }
    let mut m = F::NEG_INFINITY;
    for (r, &bb) in rc.into_remainder().iter_mut().zip(bc.remainder()) {
        *r += bb;
        m = m.max(*r);
    }
    for &x in &mx {
        m = m.max(x);
    }
    let target_logit = row[target];
    // Pass 2: exponentials and their sum, 16 running sums then combined in lane order.
    let mut acc = [F::ZERO; LANES];
    let mut rc = row.chunks_exact_mut(LANES);
    for r in &mut rc {
        for k in 0..LANES {
            let e = (r[k] - m).exp();
            r[k] = e;
            acc[k] += e;
        }
    }
    let mut sum = F::ZERO;
    for &a in &acc {
        sum += a;
    }
    for r in rc.into_remainder() {
        let e = (*r - m).exp();
        *r = e;
        sum += e;
    }
    let loss = sum.ln() + m - target_logit;
    // Pass 3: dlogits = (e/sum − onehot)·scale.
    if let Some(scale) = grad_scale {
        let f = scale / sum;
        for r in row.iter_mut() {
            *r *= f;
        }
        row[target] -= scale;
    }
    loss
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
