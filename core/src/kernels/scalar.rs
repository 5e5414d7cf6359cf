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

/// Lanes of the softmax partial sums (shared by every backend).
pub const SOFTMAX_LANES: usize = 16;

/// In-place softmax in the order every backend uses:
/// `m = max(x)`; `e_i = libm::expf(x_i - m)`; lane sums `s_j = sum of e_i over i = j (mod 16)`,
/// ascending `i`, each from +0; `s = (((s_0 + s_1) + s_2) + ... + s_15)`; `x_i = e_i / s`.
pub fn softmax(x: &mut [f32]) {
    let mut m = f32::NEG_INFINITY;
    for &v in x.iter() {
        if v > m {
            m = v;
        }
    }
    let mut lanes = [0.0f32; SOFTMAX_LANES];
    for (i, v) in x.iter_mut().enumerate() {
        *v = libm::expf(*v - m);
        lanes[i % SOFTMAX_LANES] += *v;
    }
    let mut s = 0.0f32;
    for l in lanes {
        s += l;
    }
    for v in x.iter_mut() {
        *v /= s;
    }
}

/// f16 LE bytes to f32 (exact).
pub fn f16_to_f32_slice(dst: &mut [f32], src: &[u8]) {
    for (d, h) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16_to_f32(h[0], h[1]);
    }
}
