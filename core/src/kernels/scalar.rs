//! Portable scalar kernels: the reference summation order for every backend.

use super::f16_to_f32;

/// `y[o] += sum_{k ascending} w[k*stride + o] * x[k]`; `w`: f16 LE bytes, `[n_in][stride]`.
/// Caller guarantees the bounds (see [`super::matvec_f16`]).
pub fn matvec_f16(y: &mut [f32], x: &[f32], w: &[u8], stride: usize) {
    let n_out = y.len();
    for (k, &xk) in x.iter().enumerate() {
        let start = 2 * k * stride;
        let Some(row) = w.get(start..start + 2 * n_out) else {
            return;
        };
        for (yo, h) in y.iter_mut().zip(row.chunks_exact(2)) {
            // separate multiply and add: no FMA
            let p = f16_to_f32(h[0], h[1]) * xk;
            *yo += p;
        }
    }
}

/// `y[o] += sum_{k ascending} w[k*stride + o] * x[k]` with f32 weights.
pub fn matvec_f32(y: &mut [f32], x: &[f32], w: &[f32], stride: usize) {
    let n_out = y.len();
    for (k, &xk) in x.iter().enumerate() {
        let start = k * stride;
        let Some(row) = w.get(start..start + n_out) else {
            return;
        };
        for (yo, &wk) in y.iter_mut().zip(row) {
            let p = wk * xk;
            *yo += p;
        }
    }
}
