//! ReLU, the FFN's non-linearity.

use super::Float;

/// Forward: `out[i] = max(0, inp[i])`.
pub fn relu_forward<F: Float>(out: &mut [F], inp: &[F]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = if x > F::ZERO { x } else { F::ZERO };
    }
}

/// Backward: `dinp[i] = dout[i]` where the forward input was positive, else 0 (the subgradient
/// at exactly 0 is taken as 0, like PyTorch). Overwrites `dinp`.
pub fn relu_backward<F: Float>(dinp: &mut [F], inp: &[F], dout: &[F]) {
    for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
        *d = if x > F::ZERO { g } else { F::ZERO };
    }
}
