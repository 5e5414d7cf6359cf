//! Weight kernels: the mat-vec behind every Linear layer, the LM head and attention.
//!
//! One operation, one summation order, several backends:
//!
//! ```text
//! matvec(y[n_out], x[n_in], w, stride):
//!     for o in 0..n_out:  for k in 0..n_in (ascending):  y[o] = y[o] + w[k*stride + o] * x[k]
//! ```
//!
//! `w` is row-major `[n_in][stride]` (rows may be longer than `n_out`; only the first `n_out`
//! columns are read), so Linear weights are stored transposed (`[in, out]`) in the blob. Every
//! output is a plain sequential sum over `k` starting from the caller's `y[o]` (a bias or 0),
//! with a separate multiply and add (never a fused multiply-add). SIMD backends run across
//! outputs (16 or 8 lanes hold 16 or 8 different `o`), so each lane performs exactly the scalar
//! operations in the scalar order: all backends agree bit for bit. f16 to f32 conversion is exact
//! on every backend.
//!
//! Backends: [`Backend::Scalar`] (portable reference), [`Backend::X86Avx512`] and
//! [`Backend::X86Avx2F16c`] (compile-time target features, or runtime detection with the
//! `std` feature), and [`Backend::CortexM`] (`cortex_m.rs`: `vcvtb`/`vcvtt` + `vmla` f16
//! tiles and an `SXTB16`/`SMLAD` int8 kernel in `global_asm!`, in the order above).
//!
//! # int8
//!
//! An int8 matrix ([`Q8Matrix`]) is row-major `[rows, n_in]` i8 with one scale per `group`
//! consecutive values of a row (Q8_0-like; the blob's `Dtype::Q8`). Its input vector is
//! quantized first, per group of the same size, as llama2.c's `quantize` does:
//!
//! ```text
//! quantize_q8(x[n]):  for each group g:  xs[g] = max|x| / 127
//!                     xq[k] = round_half_even(x[k] / xs[g]) clamped to -127..=127 (NaN -> 0)
//! matvec_q8(y, xq, w):
//!     for o in 0..n_out:  for g in 0..n_in/group (ascending):
//!         isum = sum_{k in g} w[o][k] * xq[k]             (i32, exact: any order is equal)
//!         y[o] = y[o] + (isum as f32) * (w_scale[o][g] * xs[g])   (three f32 roundings, no FMA)
//! ```
//!
//! The integer sum is exact (|isum| <= 1024 * 128 * 127 < 2^24, so also its conversion), so
//! a backend may add the products in any order and split them over lanes; only the float
//! steps have a fixed order, and they are per output. The quantized activations live in the
//! run state in one layout every backend shares ([`q8_act_words`]): per group, `group` i16
//! in the pair order `0, 2, 1, 3` of every 4 elements, then the group's scale as f32. That
//! is the order Arm's `SXTB16` produces from a word of 4 weights (bytes 0, 2 and, rotated,
//! 1, 3), so the Cortex-M4 kernel feeds `SMLAD` (two 16x16 multiply-adds per instruction)
//! straight from memory. Embedding rows are dequantized: `x[k] = q[k] as f32 * scale`.

#[cfg(all(target_arch = "arm", target_os = "none"))]
pub mod cortex_m;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::dtype::{q8_group_ok, ScaleDtype};

/// Which implementation of the kernels to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Portable scalar code: the reference order.
    Scalar,
    /// x86-64 AVX2 + F16C, 8 outputs per vector.
    X86Avx2F16c,
    /// x86-64 AVX-512 (F, BW, VL), 16 outputs per vector.
    X86Avx512,
    /// Cortex-M (thumbv7em/v8m with FPU) hook, `kernels/cortex_m.rs`.
    CortexM,
}

impl Backend {
    /// Every backend, in order of preference.
    pub const ALL: [Backend; 4] = [
        Backend::X86Avx512,
        Backend::X86Avx2F16c,
        Backend::CortexM,
        Backend::Scalar,
    ];

    /// Whether this backend can run on this machine (compile-time target features, plus
    /// runtime CPU detection when the `std` feature is on).
    pub fn is_available(self) -> bool {
        match self {
            Backend::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Backend::X86Avx512 => x86::has_avx512(),
            #[cfg(target_arch = "x86_64")]
            Backend::X86Avx2F16c => x86::has_avx2_f16c(),
            #[cfg(all(target_arch = "arm", target_os = "none"))]
            Backend::CortexM => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest available backend.
    pub fn detect() -> Backend {
        for b in Backend::ALL {
            if b.is_available() {
                return b;
            }
        }
        Backend::Scalar
    }
}

/// Whether `w` (of `w_len` elements) holds `n_in` rows of `stride` elements covering `n_out`.
#[inline]
fn fits(n_out: usize, n_in: usize, stride: usize, w_len: usize) -> bool {
    if n_out == 0 || n_in == 0 {
        return true;
    }
    if n_out > stride {
        return false;
    }
    match (n_in - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(n_out))
    {
        Some(need) => need <= w_len,
        None => false,
    }
}

/// `y[o] += sum_k w[k*stride + o] * x[k]` with f16 little-endian weights `w` (bytes).
///
/// If `w` is too short for `x.len()` rows the call does nothing (callers pass validated
/// shapes, so this never happens; it keeps the kernel panic-free).
#[inline]
pub fn matvec_f16(backend: Backend, y: &mut [f32], x: &[f32], w: &[u8], stride: usize) {
    if !fits(y.len(), x.len(), stride, w.len() / 2) {
        debug_assert!(false, "matvec_f16: weights too short");
        return;
    }
    match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::X86Avx512 if x86::has_avx512() => {
            // SAFETY: CPU support checked; bounds checked by `fits`.
            unsafe { x86::matvec_f16_avx512(y, x, w, stride) }
        }
        #[cfg(target_arch = "x86_64")]
        Backend::X86Avx2F16c if x86::has_avx2_f16c() => {
            // SAFETY: as above.
            unsafe { x86::matvec_f16_avx2(y, x, w, stride) }
        }
        #[cfg(all(target_arch = "arm", target_os = "none"))]
        Backend::CortexM => cortex_m::matvec_f16(y, x, w, stride),
        _ => scalar::matvec_f16(y, x, w, stride),
    }
}

/// `y[o] += sum_k w[k*stride + o] * x[k]` with f32 weights (used by the f32 KV cache).
#[inline]
pub fn matvec_f32(backend: Backend, y: &mut [f32], x: &[f32], w: &[f32], stride: usize) {
    if !fits(y.len(), x.len(), stride, w.len()) {
        debug_assert!(false, "matvec_f32: weights too short");
        return;
    }
    match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::X86Avx512 if x86::has_avx512() => {
            // SAFETY: CPU support checked; bounds checked by `fits`.
            unsafe { x86::matvec_f32_avx512(y, x, w, stride) }
        }
        _ => scalar::matvec_f32(y, x, w, stride),
    }
}

/// Attention outputs of all heads:
/// `out[h*hd + d] += sum_{t = 0..n ascending} att[h*att_stride + t] * v[t*stride + h*hd + d]`
/// with f16 `v` (the value cache rows). Equal, bit for bit, to one [`matvec_f16`] per head; the
/// AVX-512 path runs all heads in one pass so the position loop is not latency-bound.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn attn_values_f16(
    backend: Backend,
    out: &mut [f32],
    att: &[f32],
    att_stride: usize,
    n: usize,
    v: &[u8],
    stride: usize,
    hd: usize,
) {
    let c = out.len();
    if hd == 0 || n == 0 || !c.is_multiple_of(hd) || n > att_stride {
        return;
    }
    let heads = c / hd;
    let att_ok = att.len() >= (heads - 1) * att_stride + n;
    let v_ok = fits(c, n, stride, v.len() / 2);
    if !(att_ok && v_ok) {
        debug_assert!(false, "attn_values_f16: inputs too short");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if backend == Backend::X86Avx512
        && x86::has_avx512()
        && c.is_multiple_of(64)
        && hd.is_multiple_of(8)
    {
        // SAFETY: CPU support and every bound checked above.
        unsafe { x86::attn_values_f16_avx512(out, att, att_stride, n, v, stride, hd) };
        return;
    }
    for h in 0..heads {
        let a = &att[h * att_stride..h * att_stride + n];
        matvec_f16(
            backend,
            &mut out[h * hd..(h + 1) * hd],
            a,
            &v[2 * h * hd..],
            stride,
        );
    }
}

/// An int8 matrix: `rows x n_in` i8 row-major with one scale per `group` values of a row (the
/// blob's `Dtype::Q8` with `Layout::RowMajor`). Build it with [`Q8Matrix::new`], which checks
/// every size, so the kernels below cannot read out of bounds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Q8Matrix<'a> {
    values: &'a [u8],
    scales: &'a [u8],
    scale_f32: bool,
    group: usize,
    n_in: usize,
    rows: usize,
}

impl<'a> Q8Matrix<'a> {
    /// `values`: `rows * n_in` i8 (as bytes); `scales`: `rows * n_in / group` little-endian
    /// scales of precision `scale`. `None` unless `group` is a multiple of 4 in `4..=1024`
    /// dividing `n_in` and both slices have exactly the right length.
    pub fn new(
        values: &'a [u8],
        scales: &'a [u8],
        scale: ScaleDtype,
        group: usize,
        rows: usize,
        n_in: usize,
    ) -> Option<Self> {
        if !q8_group_ok(group, n_in) {
            return None;
        }
        let numel = rows.checked_mul(n_in)?;
        if values.len() != numel || scales.len() != (numel / group).checked_mul(scale.bytes())? {
            return None;
        }
        Some(Q8Matrix {
            values,
            scales,
            scale_f32: scale == ScaleDtype::F32,
            group,
            n_in,
            rows,
        })
    }

    /// Values per row (the dot-product length).
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per scale.
    pub fn group(&self) -> usize {
        self.group
    }

    /// The i8 values (as bytes), row-major.
    pub fn values(&self) -> &'a [u8] {
        self.values
    }

    /// The scales' bytes.
    pub fn scales(&self) -> &'a [u8] {
        self.scales
    }

    /// Precision of the scales.
    pub fn scale_dtype(&self) -> ScaleDtype {
        if self.scale_f32 {
            ScaleDtype::F32
        } else {
            ScaleDtype::F16
        }
    }

    /// Scale `i` (row-major over `[rows, n_in / group]`) as f32 (exact); 0 past the end.
    #[inline(always)]
    pub fn scale(&self, i: usize) -> f32 {
        if self.scale_f32 {
            match self.scales.get(4 * i..4 * i + 4) {
                Some(b) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                None => 0.0,
            }
        } else {
            match self.scales.get(2 * i..2 * i + 2) {
                Some(b) => f16_to_f32(b[0], b[1]),
                None => 0.0,
            }
        }
    }
}

/// f32 words of quantized activations for a vector of `n` values in groups of `group`
/// (`group` even): per group `group / 2` words of i16 pairs and 1 word of scale.
pub const fn q8_act_words(n: usize, group: usize) -> usize {
    if group == 0 {
        return 0;
    }
    (n / group).saturating_mul(group / 2 + 1)
}

/// Quantize `x` per group into `out` (layout and rounding in the module docs, "int8").
/// Does nothing unless `group` is a valid int8 group for `x.len()` and `out` holds
/// [`q8_act_words`]`(x.len(), group)` words. Identical on every backend (one portable body).
#[inline]
pub fn quantize_q8(backend: Backend, out: &mut [f32], x: &[f32], group: usize) {
    let _ = backend;
    if !q8_group_ok(group, x.len()) || out.len() < q8_act_words(x.len(), group) {
        debug_assert!(false, "quantize_q8: bad sizes");
        return;
    }
    scalar::quantize_q8(out, x, group)
}

/// `y[o] += sum_g isum(o, g) * (w_scale(o, g) * x_scale(g))` for `o < y.len()`: the int8
/// mat-vec of the module docs, with `xq` from [`quantize_q8`] on a vector of `w.n_in()` values.
/// Bit-identical on every backend. Does nothing if `y` is longer than `w.rows()` or `xq` is too
/// short (callers pass validated shapes; it keeps the kernel panic-free).
#[inline]
pub fn matvec_q8(backend: Backend, y: &mut [f32], xq: &[f32], w: &Q8Matrix) {
    if y.len() > w.rows || xq.len() < q8_act_words(w.n_in, w.group) {
        debug_assert!(false, "matvec_q8: bad sizes");
        return;
    }
    match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::X86Avx512 if x86::has_avx512() => {
            // SAFETY: CPU support checked; `y` and `xq` sizes checked above, `w`'s own sizes by
            // `Q8Matrix::new`.
            unsafe { x86::matvec_q8_avx512(y, xq, w) }
        }
        #[cfg(target_arch = "x86_64")]
        Backend::X86Avx2F16c if x86::has_avx2_f16c() => {
            // SAFETY: as above.
            unsafe { x86::matvec_q8_avx2(y, xq, w) }
        }
        #[cfg(all(target_arch = "arm", target_os = "none"))]
        Backend::CortexM => cortex_m::matvec_q8(y, xq, w),
        _ => scalar::matvec_q8(y, xq, w),
    }
}

/// Row `row` of an int8 matrix as f32 (`dst[j] = q[j] * scale`, exact products rounded once);
/// converts `min(dst.len(), w.n_in())` values, nothing if `row >= w.rows()`.
#[inline]
pub fn dequantize_row_q8(backend: Backend, dst: &mut [f32], w: &Q8Matrix, row: usize) {
    let _ = backend;
    scalar::dequantize_row_q8(dst, w, row)
}

/// In-place softmax with `libm::expf` and the summation order of [`scalar::softmax`]
/// (bit-identical on every backend).
#[inline]
pub fn softmax(backend: Backend, x: &mut [f32]) {
    match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::X86Avx512 if x86::has_avx512() => {
            // SAFETY: CPU support checked.
            unsafe { x86::softmax_avx512(x) }
        }
        _ => scalar::softmax(x),
    }
}

/// `dst[i] = f16 value i of src` (little-endian bytes; exact). Converts `min(dst.len(),
/// src.len() / 2)` values.
#[inline]
pub fn f16_to_f32_slice(backend: Backend, dst: &mut [f32], src: &[u8]) {
    let n = dst.len().min(src.len() / 2);
    let dst = &mut dst[..n];
    match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::X86Avx512 if x86::has_avx512() => {
            // SAFETY: CPU support checked; src holds 2n bytes.
            unsafe { x86::f16_to_f32_avx512(dst, src) }
        }
        #[cfg(all(target_arch = "arm", target_os = "none"))]
        Backend::CortexM => cortex_m::f16_to_f32_slice(dst, src),
        _ => scalar::f16_to_f32_slice(dst, src),
    }
}

/// `dst[i] = f16 bits of src[i]`, round to nearest even (exact same result on every backend).
/// Converts `min(dst.len(), src.len())` values.
#[inline]
pub fn f32_to_f16_slice(backend: Backend, dst: &mut [u16], src: &[f32]) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::X86Avx512 if x86::has_avx512() => {
            // SAFETY: CPU support checked; lengths equal.
            unsafe { x86::f32_to_f16_avx512(dst, src) }
        }
        _ => {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = f32_to_f16_bits(v);
            }
        }
    }
}

/// `libm::expf` on 16 values through the backend's code (exposed for the exactness tests;
/// equals `libm::expf` bit for bit): AVX-512's vector `expf`, else [`scalar::expf`].
pub fn expf16(backend: Backend, x: &[f32; 16], out: &mut [f32; 16]) {
    match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::X86Avx512 if x86::has_avx512() => {
            // SAFETY: CPU support checked.
            unsafe { x86::expf16_avx512(x, out) }
        }
        _ => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = scalar::expf(v);
            }
        }
    }
}

/// Exact f16 (little-endian bytes) to f32.
#[inline(always)]
pub fn f16_to_f32(lo: u8, hi: u8) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

/// f32 to f16 bits, round to nearest even (as `vcvtps2ph` imm 0 and `vcvtb.f16.f32`).
#[inline(always)]
pub fn f32_to_f16_bits(v: f32) -> u16 {
    half::f16::from_f32(v).to_bits()
}
