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

// The exact bit patterns of libm's expf constants (decimal literals can round differently).
const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
const P1: f32 = f32::from_bits(0x3e2a_aa8f);
const P2: f32 = f32::from_bits(0xbb35_5215);

/// `libm::expf(x)`, bit for bit. `libm::expf` is FreeBSD's e_expf.c: argument reduction
/// `k = round(x / ln2)`, `hi = x - k ln2_hi`, `lo = k ln2_lo`, a rational approximation, then
/// `scalbnf(y, k)`. For `|x| < 86` this performs the same f32 operations in the same order and
/// does the final scaling as one multiply by `2^k`: then `|k| <= 124` and `y` is in
/// `[0.5, 2]`, so `y * 2^k` is a normal number and the product is exact, as is `scalbnf`'s
/// result. Other inputs (and NaN) call `libm::expf`. It exists because libm's generic
/// `scalbnf` and call overhead cost ~20 instructions a value on a Cortex-M4, a third of the
/// sampler's softmax over 8548 logits; the vector version is `x86::expf_avx512`.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let bits = x.to_bits();
    let hx = bits & 0x7fff_ffff;
    if hx >= 0x42ac_0000 {
        return libm::expf(x); // |x| >= 86, inf, NaN
    }
    let neg = bits >> 31 != 0;
    let (k, hi, lo, r);
    if hx > 0x3eb1_7218 {
        // |x| > 0.5 ln2
        k = if hx > 0x3f85_1592 {
            // |x| > 1.5 ln2: k = (int)(x / ln2 +- 0.5), truncating like C
            (INV_LN2 * x + if neg { -0.5 } else { 0.5 }) as i32
        } else if neg {
            -1
        } else {
            1
        };
        let kf = k as f32;
        hi = x - kf * LN2_HI;
        lo = kf * LN2_LO;
        r = hi - lo;
    } else if hx > 0x3900_0000 {
        // |x| > 2^-14
        k = 0;
        hi = x;
        lo = 0.0;
        r = x;
    } else {
        return 1.0 + x;
    }
    let xx = r * r;
    let c = r - xx * (P1 + xx * P2);
    let y = 1.0 + (r * c / (2.0 - c) - lo + hi);
    if k == 0 {
        y
    } else {
        y * f32::from_bits(((0x7f + k) as u32) << 23)
    }
}

/// Lanes of the softmax partial sums (shared by every backend).
pub const SOFTMAX_LANES: usize = 16;

/// In-place softmax in the order every backend uses:
/// `m = max(x)`; `e_i = libm::expf(x_i - m)` (through [`expf`]); lane sums `s_j = sum of e_i over i = j (mod 16)`,
/// ascending `i`, each from +0; `s = (((s_0 + s_1) + s_2) + ... + s_15)`; `x_i = e_i / s`.
pub fn softmax(x: &mut [f32]) {
    let mut m = f32::NEG_INFINITY;
    for &v in x.iter() {
        if v > m {
            m = v;
        }
    }
    // Blocks of 16: exponentiate the block, then add element j to lane j. Lane j still sums
    // elements j, j + 16, j + 32, ... in ascending order; the lanes sit at fixed offsets, so
    // no index arithmetic per element.
    let mut lanes = [0.0f32; SOFTMAX_LANES];
    let mut blocks = x.chunks_exact_mut(SOFTMAX_LANES);
    for b in &mut blocks {
        for v in b.iter_mut() {
            *v = expf(*v - m);
        }
        for (l, &v) in lanes.iter_mut().zip(b.iter()) {
            *l += v;
        }
    }
    for (l, v) in lanes.iter_mut().zip(blocks.into_remainder()) {
        *v = expf(*v - m);
        *l += *v;
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

// ---- int8 (see the module docs of `kernels`, "int8") ----

/// 1.5 * 2^23: `(r + M) - M` rounds `r` to an integer, half to even, for `|r| < 2^22`.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Quantize `x` (`n = x.len()`, a multiple of `group`, `group` a multiple of 4) into the
/// activation layout `out` ([`super::q8_act_words`]`(n, group)` words): per group,
/// `scale = max|x| / 127`, `q = round_half_even(x / scale)` clamped to `-127..=127` (0 when the
/// scale is 0 or the quotient NaN), stored as i16 in the pair order `0, 2, 1, 3` of every 4,
/// then the scale as f32. Caller guarantees the sizes (see [`super::quantize_q8`]).
pub fn quantize_q8(out: &mut [f32], x: &[f32], group: usize) {
    let words = group / 2 + 1;
    for (xg, og) in x.chunks_exact(group).zip(out.chunks_exact_mut(words)) {
        let mut amax = 0.0f32;
        for &v in xg {
            let a = f32::from_bits(v.to_bits() & 0x7FFF_FFFF);
            if a > amax {
                amax = a;
            }
        }
        let scale = amax / 127.0;
        let (vals, s) = og.split_at_mut(group / 2);
        let q: &mut [i16] = bytemuck::cast_slice_mut(vals);
        let quant = |v: f32| -> i16 {
            let r = v / scale;
            let r = (r + ROUND_MAGIC) - ROUND_MAGIC;
            // `as` saturates and maps NaN to 0
            (r as i32).clamp(-127, 127) as i16
        };
        for (q4, x4) in q.chunks_exact_mut(4).zip(xg.chunks_exact(4)) {
            q4[0] = quant(x4[0]);
            q4[1] = quant(x4[2]);
            q4[2] = quant(x4[1]);
            q4[3] = quant(x4[3]);
        }
        if let Some(s0) = s.first_mut() {
            *s0 = scale;
        }
    }
}

/// Exact integer dot product of one group: `w` i8 (as bytes) in natural order, `x` i16 in the
/// activation pair order (`x[4b+1]` holds element `4b+2` and `x[4b+2]` element `4b+1`).
/// Wrapping arithmetic: never overflows for quantized inputs (|sum| <= 1024 * 128 * 127),
/// and never panics on others.
#[inline(always)]
pub(super) fn dot_q8_group(w: &[u8], x: &[i16]) -> i32 {
    let mut s = 0i32;
    for (w4, x4) in w.chunks_exact(4).zip(x.chunks_exact(4)) {
        let p0 = (w4[0] as i8 as i32) * (x4[0] as i32);
        let p1 = (w4[1] as i8 as i32) * (x4[2] as i32);
        let p2 = (w4[2] as i8 as i32) * (x4[1] as i32);
        let p3 = (w4[3] as i8 as i32) * (x4[3] as i32);
        s = s
            .wrapping_add(p0)
            .wrapping_add(p1)
            .wrapping_add(p2)
            .wrapping_add(p3);
    }
    s
}

/// The int8 mat-vec in the reference order (see [`super::matvec_q8`]); every backend runs this
/// body or an equivalent one. Caller guarantees the bounds; out-of-range slices end the call.
#[inline(always)]
pub(super) fn matvec_q8_body(y: &mut [f32], xq: &[f32], w: &super::Q8Matrix) {
    let (n_in, g) = (w.n_in(), w.group());
    let ng = n_in / g;
    let words = g / 2 + 1;
    let xi: &[i16] = bytemuck::cast_slice(xq);
    for (o, yo) in y.iter_mut().enumerate() {
        let Some(row) = w.values().get(o * n_in..(o + 1) * n_in) else {
            return;
        };
        let mut acc = *yo;
        for (gi, wg) in row.chunks_exact(g).enumerate() {
            let Some(xg) = xi.get(2 * gi * words..2 * gi * words + g) else {
                return;
            };
            let xs = xq.get(gi * words + g / 2).copied().unwrap_or(0.0);
            let isum = dot_q8_group(wg, xg);
            let ws = w.scale(o * ng + gi);
            // the group's scale, then the product, then the add: three roundings, no FMA
            let s = ws * xs;
            let p = isum as f32 * s;
            acc += p;
        }
        *yo = acc;
    }
}

/// `y[o] += sum_g isum(o, g) * (w_scale(o, g) * x_scale(g))` (see [`super::matvec_q8`]).
pub fn matvec_q8(y: &mut [f32], xq: &[f32], w: &super::Q8Matrix) {
    matvec_q8_body(y, xq, w)
}

/// Row `row` of an int8 matrix to f32: `dst[j] = q[j] as f32 * scale(group of j)`.
pub fn dequantize_row_q8(dst: &mut [f32], w: &super::Q8Matrix, row: usize) {
    let (n, g) = (w.n_in(), w.group());
    let Some(q) = w.values().get(row * n..(row + 1) * n) else {
        return;
    };
    for (j, (d, &qj)) in dst.iter_mut().zip(q).enumerate() {
        *d = (qj as i8 as f32) * w.scale(row * (n / g) + j / g);
    }
}
