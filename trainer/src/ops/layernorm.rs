//! LayerNorm over the feature dimension, with affine gain and shift (PyTorch `nn.LayerNorm`).

use rayon::prelude::*;

use super::{num_chunks, Float};

/// Rows per parallel task; also the partition of the gain/shift gradient reduction.
pub const CHUNK_ROWS: usize = 256;

/// Scratch floats [`layernorm_backward`] needs for `n` rows of width `c`.
pub fn backward_scratch_len(n: usize, c: usize) -> usize {
    num_chunks(n, CHUNK_ROWS) * 2 * c
}

/// Forward: `out = (x − mean)·rstd·w + b` per row, with the biased variance and
/// `rstd = 1/√(var + eps)`. Saves `mean` and `rstd` \[N\] for the backward.
///
/// `out`, `inp` [N, C]; `w`, `b` \[C\].
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward<F: Float>(
    out: &mut [F],
    mean: &mut [F],
    rstd: &mut [F],
    inp: &[F],
    w: &[F],
    b: &[F],
    c: usize,
    eps: F,
) {
    let inv_c = F::ONE / F::from_usize(c);
    out.par_chunks_mut(CHUNK_ROWS * c)
        .zip(mean.par_chunks_mut(CHUNK_ROWS))
        .zip(rstd.par_chunks_mut(CHUNK_ROWS))
        .zip(inp.par_chunks(CHUNK_ROWS * c))
        .for_each(|(((out, mean), rstd), inp)| {
            for (((o, x), m), s) in out
                .chunks_exact_mut(c)
                .zip(inp.chunks_exact(c))
                .zip(mean.iter_mut())
                .zip(rstd.iter_mut())
            {
                let mut sum = F::ZERO;
                for &v in x {
                    sum += v;
                }
                let mu = sum * inv_c;
                let mut var = F::ZERO;
                for &v in x {
                    let d = v - mu;
                    var += d * d;
                }
                let r = F::ONE / (var * inv_c + eps).sqrt();
                for (((o, &v), &wi), &bi) in o.iter_mut().zip(x).zip(w).zip(b) {
                    *o = (v - mu) * r * wi + bi;
                }
                *m = mu;
                *s = r;
            }
        });
}

/// Backward. With `x̂ = (x − mean)·rstd` and `g = dout·w`:
/// `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))`, `dw = Σ_rows dout·x̂`, `db = Σ_rows dout`.
///
/// Overwrites `dinp` [N, C], `dw` and `db` \[C\]. The row sums for `dw`/`db` are taken per fixed
/// chunk of [`CHUNK_ROWS`] rows into `scratch` ([`backward_scratch_len`] floats) and then added
/// chunk by chunk in order, so they do not depend on scheduling.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward<F: Float>(
    dinp: &mut [F],
    dw: &mut [F],
    db: &mut [F],
    scratch: &mut [F],
    dout: &[F],
    inp: &[F],
    mean: &[F],
    rstd: &[F],
    w: &[F],
    c: usize,
) {
    let n = mean.len();
    let chunks = num_chunks(n, CHUNK_ROWS);
    let inv_c = F::ONE / F::from_usize(c);
    let scratch = &mut scratch[..chunks * 2 * c];
    dinp.par_chunks_mut(CHUNK_ROWS * c)
        .zip(scratch.par_chunks_mut(2 * c))
        .zip(dout.par_chunks(CHUNK_ROWS * c))
        .zip(inp.par_chunks(CHUNK_ROWS * c))
        .zip(mean.par_chunks(CHUNK_ROWS))
        .zip(rstd.par_chunks(CHUNK_ROWS))
        .for_each(|(((((dinp, part), dout), inp), mean), rstd)| {
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
                // Two row reductions: mean(g) and mean(g·x̂).
                let mut g_mean = F::ZERO;
                let mut gx_mean = F::ZERO;
                for i in 0..c {
                    let xh = (x[i] - mu) * r;
                    let g = dy[i] * w[i];
                    g_mean += g;
                    gx_mean += g * xh;
                    pdw[i] += dy[i] * xh;
                    pdb[i] += dy[i];
                }
                g_mean *= inv_c;
                gx_mean *= inv_c;
                for i in 0..c {
                    let xh = (x[i] - mu) * r;
                    let g = dy[i] * w[i];
                    dx[i] = (g - g_mean - xh * gx_mean) * r;
                }
            }
        });
    // Fixed-order combine of the per-chunk partial sums.
    dw.fill(F::ZERO);
    db.fill(F::ZERO);
    for part in scratch.chunks_exact(2 * c) {
        for i in 0..c {
            dw[i] += part[i];
            db[i] += part[c + i];
        }
    }
}
