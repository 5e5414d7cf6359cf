//! Cortex-M backend hook (thumbv7em-none-eabihf, thumbv8m.main-none-eabihf).
//!
//! OWNED BY THE FIRMWARE: replace the body with a fast kernel (e.g. `#![feature(f16)]`
//! `f16::from_bits(b) as f32` = `vcvtb`, or a `global_asm!` routine that loads two halves per
//! word, converts with `vcvtb`/`vcvtt`, keeps a tile of 8 outputs in s-registers while `k`
//! advances, and accumulates with `vmul` + `vadd` or the unfused `vmla.f32`).
//!
//! Contract (stable signature; must hold bit for bit, the host tests check the scalar order):
//! - `w` is f16 little-endian, row-major `[n_in][stride]`, `n_in = x.len()`, `n_out = y.len()`,
//!   already bounds-checked by [`super::matvec_f16`]: `(n_in-1)*stride + n_out <= w.len()/2`.
//!   `w` is 2-byte aligned when the blob is (tensors sit at 64-byte offsets in the blob).
//! - For each `o`: `y[o] = y[o] + w[k*stride+o]*x[k]` for `k = 0, 1, ..., n_in-1` in this order,
//!   each product rounded to f32 before the add (no fused multiply-add: `vfma` is forbidden,
//!   `vmla.f32` is fine because it rounds the product).
/// `y[o] += sum_{k ascending} w[k*stride + o] * x[k]` (see the module docs for the contract).
pub fn matvec_f16(y: &mut [f32], x: &[f32], w: &[u8], stride: usize) {
    super::scalar::matvec_f16(y, x, w, stride)
}
