//! Training kernels: one module per operation, each with its forward and backward side by side
//! (llm.c style). Kernels take plain slices plus their dimensions and nothing else.
//!
//! Every kernel is generic over [`Float`] so that the very same code runs in `f32` (training) and
//! in `f64` (the finite-difference tests). Dimension letters used throughout:
//! `N` = rows = batch·time, `B` batch, `T` time, `C` model dim, `H` heads, `D` = C/H head size,
//! `F` FFN hidden dim, `V` vocabulary.
//!
//! Determinism: every parallel loop splits its work with a partition that depends only on the
//! problem's dimensions (never on the number of threads), and every reduction across partitions is
//! combined in a fixed order. Results are therefore bit-identical for any rayon schedule.

/// Run `$body` (an expression using only its arguments) compiled for AVX-512, else AVX2+FMA,
/// else the baseline target, chosen at run time. The arithmetic is the same in every variant (the
/// compiler introduces no fused multiply-add; explicit `mul_add`s are correctly rounded in all of
/// them), so results do not depend on the variant.
macro_rules! dispatch_simd {
    ($name:ident, fn($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty, $body:expr $(,)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            unsafe fn avx512<F: Float>($($arg: $ty),*) -> $ret { $body }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<F: Float>($($arg: $ty),*) -> $ret { $body }
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports the features the variant was compiled for.
                return unsafe { avx512::<F>($($arg),*) };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: as above.
                return unsafe { avx2::<F>($($arg),*) };
            }
        }
        $body
    }};
}

/// `fn $name<F: Float>(args)`: the kernel written in `$lanes` (an `#[inline(always)]` fn with the
/// same arguments), run through [`dispatch_simd!`]. The arguments are listed once here instead of
/// twice more in a hand-written wrapper and its dispatch.
macro_rules! simd_fn {
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) = $lanes:ident;) => {
        $(#[$attr])*
        fn $name<F: Float>($($arg: $ty),*) {
            dispatch_simd!($name, fn($($arg: $ty),*) -> (), $lanes($($arg),*))
        }
    };
}

pub mod align_loss;
pub mod attention;
pub mod embedding;
pub mod gemm;
pub mod head_ce;
pub mod layernorm;
pub mod linear;

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A layer's weight and bias — a LayerNorm's gain and shift, the LM head's `[V, C]` matrix and
/// `[V]` bias — as the forward reads them (`S = &[F]`) or as the backward writes their gradients
/// (`S = &mut [F]`).
#[derive(Debug)]
pub struct Affine<S> {
    pub w: S,
    pub b: S,
}

impl<F> Clone for Affine<&[F]> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for Affine<&[F]> {}

/// The float types the kernels run in: `f32` for training, `f64` for gradient checks.
pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f64(x: f64) -> Self;
    fn from_usize(x: usize) -> Self;
    fn to_f64(self) -> f64;
    fn sqrt(self) -> Self;
    fn ln(self) -> Self;
    /// `exp` as used by the softmaxes. For `f32` this is a vectorisable polynomial accurate to
    /// about 2 ulp (see [`exp_f32`]); for `f64` it is the libm `exp`.
    fn exp(self) -> Self;
    fn max(self, other: Self) -> Self;
    /// `self·a + b` with a single rounding (IEEE fused multiply-add): the GEMM's only
    /// arithmetic, so that every kernel variant gives the same bits.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Run one checked product (see [`gemm::gemm`]) with the best kernel for this type.
    ///
    /// # Safety
    /// The product's operands must cover its extents, as [`gemm::gemm`] checks before calling.
    #[doc(hidden)]
    unsafe fn gemm_product(p: &gemm::Product<Self>);
    /// `dst[p·ds + j] = src[j·ss + p]` for p, j < 16 with a vector kernel where this type and
    /// CPU have one (then `true`); `false` leaves `dst` alone for the caller's plain loop.
    #[doc(hidden)]
    fn transpose16(_dst: &mut [Self], _ds: usize, _src: &[Self], _ss: usize) -> bool {
        false
    }
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn from_usize(x: usize) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f32::ln(self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
    unsafe fn gemm_product(p: &gemm::Product<Self>) {
        // SAFETY: forwarded contract.
        unsafe { gemm::product_f32(p) }
    }
    fn transpose16(dst: &mut [Self], ds: usize, src: &[Self], ss: usize) -> bool {
        gemm::transpose16_f32(dst, ds, src, ss)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn from_usize(x: usize) -> Self {
        x as f64
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
    unsafe fn gemm_product(p: &gemm::Product<Self>) {
        // SAFETY: forwarded contract.
        unsafe { gemm::product_portable(p) }
    }
}

/// `e^x` in f32 without a libm call, so that loops over a row of logits vectorise.
///
/// Cody–Waite range reduction `x = n·ln2 + r`, |r| ≤ ln2/2, then a degree-6 Taylor/minimax
/// polynomial for `e^r` and `2^n` built in the exponent bits. Max relative error ≈ 2e-7 over the
/// range that matters here (inputs ≤ 0 after max-subtraction); exactly 0 below −87 (and for −∞).
///
/// The reduction and the Horner steps are fused multiply-adds (`mul_add`: one instruction in
/// the AVX-512 and AVX2+FMA variants the callers are compiled for, and correctly rounded, so the
/// same bits, everywhere).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln2 split in a high part exact in few bits and a low correction.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to the nearest integer in plain float arithmetic (no `round` call,
    // which would not vectorise), and leaves that integer in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x0 = x;
    let x = x.clamp(-87.0, 88.0);
    let t = x.mul_add(LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    // e^r ≈ 1 + r + r²/2! + … + r⁶/6!, Horner form; |r| ≤ ln2/2 so the error is ≈ 1e-7.
    let p = (1.0f32 / 720.0).mul_add(r, 1.0 / 120.0);
    let p = p.mul_add(r, 1.0 / 24.0);
    let p = p.mul_add(r, 1.0 / 6.0);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r, 1.0);
    let p = p.mul_add(r, 1.0);
    // 2^n from the integer in t's mantissa: n ∈ [-126, 127] after the clamp.
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let pow2n = f32::from_bits(((ni + 127) as u32) << 23);
    // Below −87 the true result is near or below the smallest normal f32: return exactly 0
    // (a select, so it vectorises). Denormal results would be slow to compute with, and masked
    // scores (−∞) must give exact zeros.
    if x0 < -87.0 {
        0.0
    } else {
        p * pow2n
    }
}

/// Lanes of the explicit partial sums in the row kernels below: a fixed summation order that
/// still vectorises, identical in every instruction-set variant.
pub const LANES: usize = 16;

/// Split `0..n` into fixed-size chunks of `chunk` items: the partition depends only on the
/// problem size, so parallel results never depend on the thread count.
#[inline]
pub fn num_chunks(n: usize, chunk: usize) -> usize {
    n.div_ceil(chunk.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_matches_std_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            let rel = ((got - want) / want).abs();
            worst = worst.max(rel);
            x += 0.001_37;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!(exp_f32(-1000.0) < 1e-37);
        assert_eq!(exp_f32(0.0), 1.0);
    }
}
