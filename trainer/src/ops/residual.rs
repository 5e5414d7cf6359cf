//! Residual connections: `out = a + b` (the block's skip paths).

use super::Float;

/// Forward: `out[i] = a[i] + b[i]`.
pub fn residual_forward<F: Float>(out: &mut [F], a: &[F], b: &[F]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// Backward of `out = a + b`: the gradient flows unchanged to both inputs. The skip input's
/// gradient `da` is accumulated (`da += dout`), since the same stream also feeds the branch.
pub fn residual_backward<F: Float>(da: &mut [F], dout: &[F]) {
    for (d, &g) in da.iter_mut().zip(dout) {
        *d += g;
    }
}
