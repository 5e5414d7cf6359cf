//! LayerNorm over the feature dimension, with affine gain and shift (PyTorch `nn.LayerNorm`).

use rayon::prelude::*;

use super::{num_chunks, Affine, Float, LANES};

/// Rows per parallel task; also the partition of the gain/shift gradient reduction.
pub const CHUNK_ROWS: usize = 256;

/// Scratch floats [`layernorm_backward`] needs for `n` rows of width `c`.
pub fn backward_scratch_len(n: usize, c: usize) -> usize {
    num_chunks(n, CHUNK_ROWS) * 2 * c
}

/// A LayerNorm's per-row statistics \[N\]: the forward writes them (`S = &mut [F]`), the
/// backward reads them (`S = &[F]`).
#[derive(Debug)]
pub struct LnStats<S> {
    pub mean: S,
    /// `1/√(var + eps)`.
    pub rstd: S,
}

/// What the backward reads of its forward: the input `inp` [N, C] and its [`LnStats`].
#[derive(Clone, Copy, Debug)]
pub struct LnSaved<'a, F> {
    pub inp: &'a [F],
    pub stats: LnStats<&'a [F]>,
}

impl<F> Clone for LnStats<&[F]> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for LnStats<&[F]> {}

/// Forward: `out = (x − mean)·rstd·w + b` per row, with the biased variance and
/// `rstd = 1/√(var + eps)`. Saves `mean` and `rstd` \[N\] for the backward.
///
/// `out`, `inp` [N, C]; gain and shift `p.w`, `p.b` \[C\] (C is their length).
pub fn layernorm_forward<F: Float>(
    out: &mut [F],
    stats: LnStats<&mut [F]>,
    inp: &[F],
    p: Affine<&[F]>,
    eps: F,
) {
    let c = p.w.len();
    out.par_chunks_mut(CHUNK_ROWS * c)
        .zip(stats.mean.par_chunks_mut(CHUNK_ROWS))
        .zip(stats.rstd.par_chunks_mut(CHUNK_ROWS))
        .zip(inp.par_chunks(CHUNK_ROWS * c))
        .for_each(|(((out, mean), rstd), inp)| {
            forward_rows(out, LnStats { mean, rstd }, inp, p, eps)
        });
}

simd_fn! {
    fn forward_rows(out: &mut [F], stats: LnStats<&mut [F]>, inp: &[F], p: Affine<&[F]>, eps: F)
        = forward_rows_lanes;
}

#[inline(always)]
fn forward_rows_lanes<F: Float>(
    out: &mut [F],
    stats: LnStats<&mut [F]>,
    inp: &[F],
    p: Affine<&[F]>,
    eps: F,
) {
    let (c, w, b) = (p.w.len(), p.w, p.b);
    let (mean, rstd) = (stats.mean, stats.rstd);
    let inv_c = F::ONE / F::from_usize(c);
    for (((o, x), m), s) in out
        .chunks_exact_mut(c)
        .zip(inp.chunks_exact(c))
        .zip(mean.iter_mut())
        .zip(rstd.iter_mut())
    {
        let mu = lane_sum(x, |v| v) * inv_c;
        let var = lane_sum(x, |v| (v - mu) * (v - mu)) * inv_c;
        let r = F::ONE / (var + eps).sqrt();
        for (((o, &v), &wi), &bi) in o.iter_mut().zip(x).zip(w).zip(b) {
            *o = (v - mu) * r * wi + bi;
        }
        *m = mu;
        *s = r;
    }
}

/// `Σ f(x[i])` in [`LANES`] partial sums (lane k takes i ≡ k mod 16 in order), the lanes then
/// added in order and the tail after them: a fixed order that vectorises.
#[inline(always)]
fn lane_sum<F: Float>(x: &[F], f: impl Fn(F) -> F) -> F {
    let mut acc = [F::ZERO; LANES];
    let mut it = x.chunks_exact(LANES);
    for ch in &mut it {
        for k in 0..LANES {
            acc[k] += f(ch[k]);
        }
    }
    let mut s = F::ZERO;
    for &a in &acc {
        s += a;
    }
    for &v in it.remainder() {
        s += f(v);
    }
    s
}

/// Backward. With `x̂ = (x − mean)·rstd` and `g = dout·w`:
/// `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))`, `dw = Σ_rows dout·x̂`, `db = Σ_rows dout`.
///
/// Writes `dinp` [N, C] — overwritten, or with `accumulate` added to (`dinp +=`: the residual
/// stream's gradient, which the LayerNorm's input also feeds) — and overwrites `dp.w` and `dp.b`
/// \[C\]. The row sums for them are taken per fixed chunk of [`CHUNK_ROWS`] rows into `scratch`
/// ([`backward_scratch_len`] floats) and then added chunk by chunk in order, so they do not
/// depend on scheduling. `w` \[C\] is the forward's gain (C is its length).
pub fn layernorm_backward<F: Float>(
    dinp: &mut [F],
    dp: Affine<&mut [F]>,
    scratch: &mut [F],
    dout: &[F],
    saved: LnSaved<F>,
    w: &[F],
    accumulate: bool,
) {
    let c = w.len();
    let n = saved.stats.mean.len();
    let chunks = num_chunks(n, CHUNK_ROWS);
    let scratch = &mut scratch[..chunks * 2 * c];
    dinp.par_chunks_mut(CHUNK_ROWS * c)
        .zip(scratch.par_chunks_mut(2 * c))
        .zip(dout.par_chunks(CHUNK_ROWS * c))
        .zip(saved.inp.par_chunks(CHUNK_ROWS * c))
        .zip(saved.stats.mean.par_chunks(CHUNK_ROWS))
        .zip(saved.stats.rstd.par_chunks(CHUNK_ROWS))
        .for_each(|(((((dinp, part), dout), inp), mean), rstd)| {
            let saved = LnSaved {
                inp,
                stats: LnStats { mean, rstd },
            };
            backward_rows(dinp, part, dout, saved, w, accumulate)
        });
    // Fixed-order combine of the per-chunk partial sums.
    let (dw, db) = (dp.w, dp.b);
    dw.fill(F::ZERO);
    db.fill(F::ZERO);
    for part in scratch.chunks_exact(2 * c) {
        for i in 0..c {
            dw[i] += part[i];
            db[i] += part[c + i];
        }
    }
}

simd_fn! {
    /// One chunk of rows of [`layernorm_backward`]: `dinp` rows and the chunk's `[dw | db]`
    /// partial sums in `part` [2C] (rows in order).
    fn backward_rows(
        dinp: &mut [F],
        part: &mut [F],
        dout: &[F],
        saved: LnSaved<F>,
        w: &[F],
        accumulate: bool,
    ) = backward_rows_lanes;
}

#[inline(always)]
fn backward_rows_lanes<F: Float>(
    dinp: &mut [F],
    part: &mut [F],
    dout: &[F],
    saved: LnSaved<F>,
    w: &[F],
    accumulate: bool,
) {
    let c = w.len();
    let (inp, mean, rstd) = (saved.inp, saved.stats.mean, saved.stats.rstd);
    let inv_c = F::ONE / F::from_usize(c);
    let (pdw, pdb) = part.split_at_mut(c);
    pdw.fill(F::ZERO);
    pdb.fill(F::ZERO);
    for ((((dx, dy), x), &mu), &r) in dinp
        .chunks_exact_mut(c)
        .zip(dout.chunks_exact(c))
        .zip(inp.chunks_exact(c))
        .zip(mean)
        .zip(rstd)
    {
        // Two row reductions, mean(g) and mean(g·x̂) with g = dy·w and x̂ = (x − mean)·rstd, in
        // LANES partial sums.
        let (mut a1, mut a2) = ([F::ZERO; LANES], [F::ZERO; LANES]);
        let mut ity = dy.chunks_exact(LANES);
        let mut itw = w.chunks_exact(LANES);
        let mut itx = x.chunks_exact(LANES);
        for ((y, w), x) in (&mut ity).zip(&mut itw).zip(&mut itx) {
            for k in 0..LANES {
                let g = y[k] * w[k];
                a1[k] += g;
                a2[k] += g * ((x[k] - mu) * r);
            }
        }
        let (mut g_mean, mut gx_mean) = (F::ZERO, F::ZERO);
        for k in 0..LANES {
            g_mean += a1[k];
            gx_mean += a2[k];
        }
        for ((&y, &w), &x) in ity
            .remainder()
            .iter()
            .zip(itw.remainder())
            .zip(itx.remainder())
        {
            let g = y * w;
            g_mean += g;
            gx_mean += g * ((x - mu) * r);
        }
        g_mean *= inv_c;
        gx_mean *= inv_c;
        let rows = dx
            .iter_mut()
            .zip(dy)
            .zip(x)
            .zip(w)
            .zip(pdw.iter_mut())
            .zip(pdb.iter_mut());
        for (((((dx, &dy), &x), &w), pdw), pdb) in rows {
            let xh = (x - mu) * r;
            *pdw += dy * xh;
            *pdb += dy;
            let v = (dy * w - g_mean - xh * gx_mean) * r;
            *dx = if accumulate { *dx + v } else { v };
        }
    }
}
