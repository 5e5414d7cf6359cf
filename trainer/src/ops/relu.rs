//! ReLU, the FFN's non-linearity.

use rayon::prelude::*;

use super::Float;

/// Elements per parallel task (element-wise, so any partition gives the same result).
const CHUNK: usize = 1 << 14;

/// Forward: `out[i] = max(0, inp[i])`.
pub fn relu_forward<F: Float>(out: &mut [F], inp: &[F]) {
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(out, inp)| {
            for (o, &x) in out.iter_mut().zip(inp) {
                *o = if x > F::ZERO { x } else { F::ZERO };
            }
        });
}

/// Backward: `dinp[i] = dout[i]` where the forward input was positive, else 0 (the subgradient
/// at exactly 0 is taken as 0, like PyTorch). Overwrites `dinp`.
pub fn relu_backward<F: Float>(dinp: &mut [F], inp: &[F], dout: &[F]) {
    dinp.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .zip(dout.par_chunks(CHUNK))
        .for_each(|((dinp, inp), dout)| {
            for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
                *d = if x > F::ZERO { g } else { F::ZERO };
            }
        });
}
