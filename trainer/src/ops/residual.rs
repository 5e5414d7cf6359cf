//! Residual connections: `out = a + b` (the block's skip paths).

use rayon::prelude::*;

use super::Float;

/// Elements per parallel task (element-wise, so any partition gives the same result).
const CHUNK: usize = 1 << 14;

/// Forward: `out[i] = a[i] + b[i]`.
pub fn residual_forward<F: Float>(out: &mut [F], a: &[F], b: &[F]) {
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .zip(b.par_chunks(CHUNK))
        .for_each(|((out, a), b)| {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = x + y;
            }
        });
}

/// Backward of `out = a + b`: the gradient flows unchanged to both inputs. The skip input's
/// gradient `da` is accumulated (`da += dout`), since the same stream also feeds the branch.
pub fn residual_backward<F: Float>(da: &mut [F], dout: &[F]) {
    da.par_chunks_mut(CHUNK)
        .zip(dout.par_chunks(CHUNK))
        .for_each(|(da, dout)| {
            for (d, &g) in da.iter_mut().zip(dout) {
                *d += g;
            }
        });
}
