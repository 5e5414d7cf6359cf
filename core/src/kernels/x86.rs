//! x86-64 SIMD kernels. Each vector lane is one output `o`; the loop over `k` is sequential, so
//! every lane does exactly the scalar operations in the scalar order (bit-identical).

use core::arch::x86_64::*;

#[inline]
pub fn has_avx512() -> bool {
    #[cfg(all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512vl"
    ))]
    {
        true
    }
    #[cfg(not(all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512vl"
    )))]
    {
        #[cfg(feature = "std")]
        {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
        }
        #[cfg(not(feature = "std"))]
        {
            false
        }
    }
}

#[inline]
pub fn has_avx2_f16c() -> bool {
    #[cfg(all(target_feature = "avx2", target_feature = "f16c"))]
    {
        true
    }
    #[cfg(not(all(target_feature = "avx2", target_feature = "f16c")))]
    {
        #[cfg(feature = "std")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c")
        }
        #[cfg(not(feature = "std"))]
        {
            false
        }
    }
}

/// Mask of the first `min(left, 16)` lanes of a 16-lane vector (the tail of a loop over 16 at
/// a time; `left >= 1`).
#[inline(always)]
const fn lanes16(left: usize) -> u16 {
    if left >= 16 {
        0xFFFF
    } else {
        (1u16 << left) - 1
    }
}

/// Mask of the first `min(left, 8)` lanes of an 8-lane vector (`left >= 1`).
#[inline(always)]
const fn lanes8(left: usize) -> u8 {
    if left >= 8 {
        0xFF
    } else {
        (1u8 << left) - 1
    }
}

/// AVX-512 (VL/BW) f16 mat-vec on 256-bit vectors: tiles of 64 outputs in 8 accumulators,
/// then 8 at a time, then one masked tile. (On Zen 4, 256-bit `vcvtph2ps` streams faster than
/// the 512-bit form; the per-output order is the same either way.)
///
/// # Safety
/// CPU has avx512f/bw/vl; `(x.len()-1)*stride + y.len() <= w.len()/2`, `y.len() <= stride`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn matvec_f16_avx512(y: &mut [f32], x: &[f32], w: &[u8], stride: usize) {
    let n_out = y.len();
    let wp = w.as_ptr() as *const u16;
    let yp = y.as_mut_ptr();
    let mut o = 0;
    while o + 64 <= n_out {
        let mut a = [_mm256_setzero_ps(); 8];
        for (j, aj) in a.iter_mut().enumerate() {
            *aj = _mm256_loadu_ps(yp.add(o + 8 * j));
        }
        let mut p = wp.add(o);
        let prefetch = o + 64 + 128 <= n_out;
        for &xk in x {
            if prefetch {
                // the same row, two tiles ahead (2 cache lines per tile)
                _mm_prefetch::<_MM_HINT_T0>(p.add(128) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(p.add(160) as *const i8);
            }
            let xv = _mm256_set1_ps(xk);
            for (j, aj) in a.iter_mut().enumerate() {
                let wv = _mm256_cvtph_ps(_mm_loadu_si128(p.add(8 * j) as *const __m128i));
                *aj = _mm256_add_ps(*aj, _mm256_mul_ps(wv, xv));
            }
            p = p.add(stride);
        }
        for (j, aj) in a.iter().enumerate() {
            _mm256_storeu_ps(yp.add(o + 8 * j), *aj);
        }
        o += 64;
    }
    while o < n_out {
        let m = lanes8(n_out - o);
        let mut acc = _mm256_maskz_loadu_ps(m, yp.add(o));
        let mut p = wp.add(o);
        for &xk in x {
            let xv = _mm256_set1_ps(xk);
            let wv = _mm256_cvtph_ps(_mm_maskz_loadu_epi16(m, p as *const i16));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(wv, xv));
            p = p.add(stride);
        }
        _mm256_mask_storeu_ps(yp.add(o), m, acc);
        o += 8;
    }
}

/// AVX-512 f32-weight kernel (f32 KV cache).
///
/// # Safety
/// CPU has avx512f; `(x.len()-1)*stride + y.len() <= w.len()`, `y.len() <= stride`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn matvec_f32_avx512(y: &mut [f32], x: &[f32], w: &[f32], stride: usize) {
    let n_out = y.len();
    let wp = w.as_ptr();
    let yp = y.as_mut_ptr();
    let mut o = 0;
    while o < n_out {
        let m = lanes16(n_out - o);
        let mut a = _mm512_maskz_loadu_ps(m, yp.add(o));
        let mut p = wp.add(o);
        for &xk in x {
            let xv = _mm512_set1_ps(xk);
            let wv = _mm512_maskz_loadu_ps(m, p);
            a = _mm512_add_ps(a, _mm512_mul_ps(wv, xv));
            p = p.add(stride);
        }
        _mm512_mask_storeu_ps(yp.add(o), m, a);
        o += 16;
    }
}

/// AVX2 + F16C: tiles of 32 outputs (4 accumulators), then 8, then a scalar tail with the
/// hardware scalar conversion.
///
/// # Safety
/// CPU has avx2 and f16c; bounds as for [`matvec_f16_avx512`].
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn matvec_f16_avx2(y: &mut [f32], x: &[f32], w: &[u8], stride: usize) {
    let n_out = y.len();
    let wp = w.as_ptr() as *const u16;
    let yp = y.as_mut_ptr();
    let mut o = 0;
    while o + 32 <= n_out {
        let mut a0 = _mm256_loadu_ps(yp.add(o));
        let mut a1 = _mm256_loadu_ps(yp.add(o + 8));
        let mut a2 = _mm256_loadu_ps(yp.add(o + 16));
        let mut a3 = _mm256_loadu_ps(yp.add(o + 24));
        let mut p = wp.add(o);
        for &xk in x {
            let xv = _mm256_set1_ps(xk);
            let w0 = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let w1 = _mm256_cvtph_ps(_mm_loadu_si128(p.add(8) as *const __m128i));
            let w2 = _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i));
            let w3 = _mm256_cvtph_ps(_mm_loadu_si128(p.add(24) as *const __m128i));
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(w0, xv));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(w1, xv));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(w2, xv));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(w3, xv));
            p = p.add(stride);
        }
        _mm256_storeu_ps(yp.add(o), a0);
        _mm256_storeu_ps(yp.add(o + 8), a1);
        _mm256_storeu_ps(yp.add(o + 16), a2);
        _mm256_storeu_ps(yp.add(o + 24), a3);
        o += 32;
    }
    while o + 8 <= n_out {
        let mut a = _mm256_loadu_ps(yp.add(o));
        let mut p = wp.add(o);
        for &xk in x {
            let xv = _mm256_set1_ps(xk);
            let wv = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            a = _mm256_add_ps(a, _mm256_mul_ps(wv, xv));
            p = p.add(stride);
        }
        _mm256_storeu_ps(yp.add(o), a);
        o += 8;
    }
    while o < n_out {
        let mut acc = *yp.add(o);
        let mut p = wp.add(o);
        for &xk in x {
            let wv = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(p.read_unaligned() as i32)));
            let prod = wv * xk;
            acc += prod;
            p = p.add(stride);
        }
        *yp.add(o) = acc;
        o += 1;
    }
}

// ---- exact vector expf (bit-identical to `libm::expf`) ----
//
// `libm::expf` is FreeBSD's e_expf.c: argument reduction k = round(x / ln2), hi = x - k*ln2hi,
// lo = k*ln2lo, a rational approximation, then scaling by 2^k, all in f32 with separate
// multiplies and adds. The vector code below performs the same operations in the same order
// per lane. It is used for lanes with |x| < 86 (|k| <= 124, so the final scaling is one exact
// multiply); other lanes (and NaN) go through scalar `libm::expf`.

// The exact bit patterns of libm's constants (decimal literals can round differently).
const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
const P1: f32 = f32::from_bits(0x3e2a_aa8f);
const P2: f32 = f32::from_bits(0xbb35_5215);

/// `libm::expf` of the 16 lanes of `x`, for the lanes it can do exactly (the returned mask);
/// the others are to be redone by scalar `libm::expf`.
///
/// # Safety
/// CPU has avx512f/bw/vl (no memory is touched).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn expf_avx512(x: __m512) -> (__m512, __mmask16) {
    let bits = _mm512_castps_si512(x);
    let hx = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fff_ffff));
    let neg = _mm512_cmplt_epi32_mask(bits, _mm512_setzero_si512());
    // lanes handled here: |x| < 86 (0x42ac0000)
    let ok = _mm512_cmplt_epi32_mask(hx, _mm512_set1_epi32(0x42ac_0000));
    // x <= -103.972084 (hx >= 0x42cff1b5, negative, not NaN): libm returns +0
    let zero = neg
        & _mm512_cmpge_epi32_mask(hx, _mm512_set1_epi32(0x42cf_f1b5))
        & _mm512_cmple_epi32_mask(hx, _mm512_set1_epi32(0x7f80_0000));
    // case A: |x| > 1.5 ln2: k = (int)(INV_LN2 * x + (x < 0 ? -0.5 : 0.5))
    let half = _mm512_mask_blend_ps(neg, _mm512_set1_ps(0.5), _mm512_set1_ps(-0.5));
    let ka = _mm512_cvttps_epi32(_mm512_add_ps(
        _mm512_mul_ps(_mm512_set1_ps(INV_LN2), x),
        half,
    ));
    // case B: 0.5 ln2 < |x| <= 1.5 ln2: k = 1 - 2*sign
    let kb = _mm512_mask_blend_epi32(neg, _mm512_set1_epi32(1), _mm512_set1_epi32(-1));
    let is_a = _mm512_cmpgt_epi32_mask(hx, _mm512_set1_epi32(0x3f85_1592));
    let is_ab = _mm512_cmpgt_epi32_mask(hx, _mm512_set1_epi32(0x3eb1_7218));
    let k = _mm512_maskz_mov_epi32(is_ab, _mm512_mask_blend_epi32(is_a, kb, ka));
    let kf = _mm512_cvtepi32_ps(k);
    // hi = x - kf*LN2_HI; lo = kf*LN2_LO; r = hi - lo   (k = 0: hi = x, lo = 0, r = x)
    let hi = _mm512_sub_ps(x, _mm512_mul_ps(kf, _mm512_set1_ps(LN2_HI)));
    let lo = _mm512_mul_ps(kf, _mm512_set1_ps(LN2_LO));
    let r = _mm512_sub_ps(hi, lo);
    // xx = r*r; c = r - xx*(P1 + xx*P2); y = 1 + ((r*c/(2-c) - lo) + hi)
    let xx = _mm512_mul_ps(r, r);
    let inner = _mm512_add_ps(_mm512_set1_ps(P1), _mm512_mul_ps(xx, _mm512_set1_ps(P2)));
    let c = _mm512_sub_ps(r, _mm512_mul_ps(xx, inner));
    let q = _mm512_div_ps(_mm512_mul_ps(r, c), _mm512_sub_ps(_mm512_set1_ps(2.0), c));
    let y = _mm512_add_ps(_mm512_set1_ps(1.0), _mm512_add_ps(_mm512_sub_ps(q, lo), hi));
    // y * 2^k (exact: y in [0.5, 2], |k| <= 124)
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_add_epi32(k, _mm512_set1_epi32(127)),
        23,
    ));
    let y = _mm512_mul_ps(y, scale);
    // case D: |x| <= 2^-14: 1 + x
    let tiny = _mm512_cmple_epi32_mask(hx, _mm512_set1_epi32(0x3900_0000));
    let y = _mm512_mask_blend_ps(tiny, y, _mm512_add_ps(_mm512_set1_ps(1.0), x));
    let y = _mm512_mask_blend_ps(zero, y, _mm512_setzero_ps());
    (y, ok | zero)
}

/// `out[i] = libm::expf(x[i])` for 16 lanes (test hook for the exactness check).
///
/// # Safety
/// CPU has avx512f/bw/vl.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn expf16_avx512(x: &[f32; 16], out: &mut [f32; 16]) {
    let (y, ok) = expf_avx512(_mm512_loadu_ps(x.as_ptr()));
    _mm512_storeu_ps(out.as_mut_ptr(), y);
    for (i, o) in out.iter_mut().enumerate() {
        if ok & (1 << i) == 0 {
            *o = libm::expf(x[i]);
        }
    }
}

/// `expf(p[i..i+16] - m)` for the lanes in `mask` (others 0); lanes outside the vector path's
/// range go through scalar `libm::expf`.
///
/// # Safety
/// CPU has avx512f/bw/vl; `p.add(i + j)` is valid to read for every lane `j` set in `mask`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn exp_at(p: *const f32, i: usize, mask: u16, m: f32) -> __m512 {
    let v = _mm512_maskz_loadu_ps(mask, p.add(i));
    let (mut e, ok) = expf_avx512(_mm512_sub_ps(v, _mm512_set1_ps(m)));
    let slow = mask & !ok;
    if slow != 0 {
        let mut tmp = [0f32; 16];
        _mm512_storeu_ps(tmp.as_mut_ptr(), e);
        for (j, t) in tmp.iter_mut().enumerate() {
            if slow & (1 << j) != 0 {
                *t = libm::expf(*p.add(i + j) - m);
            }
        }
        e = _mm512_loadu_ps(tmp.as_ptr());
    }
    e
}

/// Softmax in the order of [`super::scalar::softmax`] (16 lane partial sums).
///
/// # Safety
/// CPU has avx512f/bw/vl.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn softmax_avx512(x: &mut [f32]) {
    let n = x.len();
    if n == 0 {
        return;
    }
    let p = x.as_mut_ptr();
    // max (any order gives the same value; NaN lanes are ignored like the scalar `v > m`)
    let mut mvec = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i < n {
        let mask = lanes16(n - i);
        let v = _mm512_mask_loadu_ps(mvec, mask, p.add(i));
        mvec = _mm512_max_ps(v, mvec);
        i += 16;
    }
    let m = _mm512_reduce_max_ps(mvec);
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    // two independent vectors per iteration (the expf chain is long); the sum still adds
    // element i to lane i % 16 in ascending i
    while i + 32 <= n {
        let e0 = exp_at(p, i, 0xFFFF, m);
        let e1 = exp_at(p, i + 16, 0xFFFF, m);
        _mm512_storeu_ps(p.add(i), e0);
        _mm512_storeu_ps(p.add(i + 16), e1);
        acc = _mm512_add_ps(acc, e0);
        acc = _mm512_add_ps(acc, e1);
        i += 32;
    }
    while i < n {
        let mask = lanes16(n - i);
        let e = exp_at(p, i, mask, m);
        _mm512_mask_storeu_ps(p.add(i), mask, e);
        acc = _mm512_mask_add_ps(acc, mask, acc, e);
        i += 16;
    }
    let mut lanes = [0f32; 16];
    _mm512_storeu_ps(lanes.as_mut_ptr(), acc);
    let mut s = 0.0f32;
    for l in lanes {
        s += l;
    }
    let sv = _mm512_set1_ps(s);
    let mut i = 0;
    while i < n {
        let mask = lanes16(n - i);
        let v = _mm512_maskz_loadu_ps(mask, p.add(i));
        _mm512_mask_storeu_ps(p.add(i), mask, _mm512_div_ps(v, sv));
        i += 16;
    }
}

/// f16 LE bytes to f32 (exact).
///
/// # Safety
/// CPU has avx512f/bw/vl; `src.len() >= 2 * dst.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn f16_to_f32_avx512(dst: &mut [f32], src: &[u8]) {
    let n = dst.len();
    let s = src.as_ptr() as *const i16;
    let d = dst.as_mut_ptr();
    let mut i = 0;
    while i < n {
        let mask = lanes16(n - i);
        let h = _mm256_maskz_loadu_epi16(mask, s.add(i));
        _mm512_mask_storeu_ps(d.add(i), mask, _mm512_cvtph_ps(h));
        i += 16;
    }
}

/// f32 to f16 bits, round to nearest even (`vcvtps2ph` with imm 0 = `half::f16::from_f32`).
///
/// # Safety
/// CPU has avx512f/bw/vl; `dst.len() >= src.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn f32_to_f16_avx512(dst: &mut [u16], src: &[f32]) {
    let n = src.len();
    let s = src.as_ptr();
    let d = dst.as_mut_ptr() as *mut i16;
    let mut i = 0;
    while i < n {
        let mask = lanes16(n - i);
        let v = _mm512_maskz_loadu_ps(mask, s.add(i));
        let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
        _mm256_mask_storeu_epi16(d.add(i), mask, h);
        i += 16;
    }
}

/// All heads' attention outputs at once, 64 outputs (8 accumulators) per tile; see
/// [`super::attn_values_f16`]. Accumulator `j` covers outputs `o+8j..o+8j+8` of head
/// `(o+8j) / hd`, so each output still sums over positions in order.
///
/// # Safety
/// CPU has avx512f/bw/vl; `out.len() % 64 == 0`, `hd % 8 == 0`, and the bounds checked by
/// the dispatcher: `att[h*att_stride + t]` and `v[t*stride + c]` exist for all h, t < n, c.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn attn_values_f16_avx512(
    out: &mut [f32],
    att: &[f32],
    att_stride: usize,
    n: usize,
    v: &[u8],
    stride: usize,
    hd: usize,
) {
    let c = out.len();
    let vp = v.as_ptr() as *const u16;
    let ap = att.as_ptr();
    let op = out.as_mut_ptr();
    let mut o = 0;
    while o + 64 <= c {
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut arow = [ap; 8];
        for j in 0..8 {
            acc[j] = _mm256_loadu_ps(op.add(o + 8 * j));
            arow[j] = ap.add((o + 8 * j) / hd * att_stride);
        }
        for t in 0..n {
            let p = vp.add(t * stride + o);
            for j in 0..8 {
                let a = _mm256_set1_ps(*arow[j].add(t));
                let wv = _mm256_cvtph_ps(_mm_loadu_si128(p.add(8 * j) as *const __m128i));
                acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(wv, a));
            }
        }
        for (j, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(op.add(o + 8 * j), *a);
        }
        o += 64;
    }
}

// ---- int8 (see the module docs of `kernels`, "int8") ----
//
// A block of R rows (16 for AVX-512, 8 for AVX2) runs one group at a time. For each chunk of
// the group (32 or 16 values) the activations are loaded once, put back in natural order (the
// shared layout stores every 4 as 0, 2, 1, 3) and multiplied with each row's weights, sign
// extended to i16, by `pmaddwd` (two i16 x i16 products summed into each i32 lane), one i32
// accumulator vector per row. The R accumulators are then summed across their lanes in one
// transposing tree, so lane r holds row r's exact group sum `isum`. Integer adds wrap modulo
// 2^32 like the scalar body's `wrapping_add`, and wrapping addition does not depend on the
// order, so `isum` equals the scalar one for any input. The float steps then run with lane r
// = row r, in the scalar order: `s = w_scale * x_scale`, `p = isum as f32 * s`, `acc += p`
// (separate roundings, no FMA), groups ascending, `acc` starting from `y[o]`. The last
// `n_out % R` rows run the same block with the missing rows masked off. The tail of a group
// that is not a multiple of the chunk (groups are multiples of 4) is read with masked loads,
// so the padding lanes are 0 and no byte past the group (or the matrix) is touched.

/// `vpermw` indices (and `pshufb` bytes below) that swap elements 1 and 2 of every 4 i16: the
/// activation layout's order `0, 2, 1, 3` back to `0, 1, 2, 3` (the swap is its own inverse).
const Q8_UNPAIR16: [i16; 32] = {
    let mut t = [0i16; 32];
    let mut i = 0;
    while i < 32 {
        let q = (i / 4) * 4;
        t[i] = (q + [0, 2, 1, 3][i % 4]) as i16;
        i += 1;
    }
    t
};

/// The same swap as bytes of each 128-bit lane (for `pshufb`).
const Q8_UNPAIR8: [i8; 32] = {
    let mut t = [0i8; 32];
    let mut i = 0;
    while i < 32 {
        let e = Q8_UNPAIR16[(i % 16) / 2] as usize; // element within the lane (0..8)
        t[i] = (2 * e + i % 2) as i8;
        i += 1;
    }
    t
};

/// Mask of the first `min(left, 32)` lanes of a 32-lane vector (`left >= 1`).
#[inline(always)]
const fn lanes32(left: usize) -> u32 {
    if left >= 32 {
        u32::MAX
    } else {
        (1u32 << left) - 1
    }
}

/// Scale `i` of `w` as raw bits: the f16 bits zero-extended, or the f32 bits; 0 past the end
/// (never, for indices below `rows * n_in / group`).
#[inline(always)]
fn q8_scale_bits(w: &super::Q8Matrix, i: usize) -> u32 {
    let s = w.scales();
    if w.scale_dtype() == super::ScaleDtype::F32 {
        match s.get(4 * i..4 * i + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    } else {
        match s.get(2 * i..2 * i + 2) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]) as u32,
            None => 0,
        }
    }
}

/// Scales `idx[r]` of `w` as f32 for the lanes in `rmask` (others 0), by one gather.
///
/// # Safety
/// CPU has avx512f/bw/vl; every `idx[r]` in `rmask` is below `w.rows() * w.n_in() / w.group()`
/// (the number of scales), which is at most `i32::MAX`.
#[inline(always)]
unsafe fn q8_scales16(w: &super::Q8Matrix, idx: __m512i, rmask: u16) -> __m512 {
    let p = w.scales().as_ptr();
    let zero = _mm512_setzero_si512();
    if w.scale_dtype() == super::ScaleDtype::F32 {
        return _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), rmask, idx, p as *const _);
    }
    // f16: a dword at byte 2 * idx (the scale in its low half); the dword of the very last
    // scale would end 2 bytes past the slice, so that lane is read on its own
    let last = (w.scales().len() / 2).saturating_sub(1);
    let tail = rmask & _mm512_cmpeq_epi32_mask(idx, _mm512_set1_epi32(last as i32));
    let mut v = _mm512_mask_i32gather_epi32::<2>(zero, rmask & !tail, idx, p as *const _);
    if tail != 0 {
        v = _mm512_mask_set1_epi32(v, tail, q8_scale_bits(w, last) as i32);
    }
    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v))
}

/// Sums across lanes of 16 vectors at once: lane r of the result = the sum of the 16 i32
/// lanes of `s[r]` (wrapping). 15 adds and 30 shuffles.
///
/// # Safety
/// CPU has avx512f/bw/vl (registers only); called from functions that enable them.
#[inline(always)]
unsafe fn transpose_sum16(s: &[__m512i; 16]) -> __m512i {
    // per 128-bit lane of t[i]: [a0+a2, b0+b2, a1+a3, b1+b3] for a = s[2i], b = s[2i+1]
    let mut t = [_mm512_setzero_si512(); 8];
    for (i, ti) in t.iter_mut().enumerate() {
        let (a, b) = (s[2 * i], s[2 * i + 1]);
        *ti = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    }
    // per 128-bit lane of u[j]: the lane's partial sums of rows 4j, 4j+1, 4j+2, 4j+3
    let mut u = [_mm512_setzero_si512(); 4];
    for (j, uj) in u.iter_mut().enumerate() {
        let (a, b) = (t[2 * j], t[2 * j + 1]);
        *uj = _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    }
    // 128-bit lanes of v[k]: rows 8k..8k+4 (lanes 0+1, 2+3), rows 8k+4..8k+8 (0+1, 2+3)
    let mut v = [_mm512_setzero_si512(); 2];
    for (k, vk) in v.iter_mut().enumerate() {
        let (a, b) = (u[2 * k], u[2 * k + 1]);
        *vk = _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_i32x4::<0b11_01_11_01>(a, b),
        );
    }
    // 128-bit lane q: rows 4q..4q+4, complete
    _mm512_add_epi32(
        _mm512_shuffle_i32x4::<0b10_00_10_00>(v[0], v[1]),
        _mm512_shuffle_i32x4::<0b11_01_11_01>(v[0], v[1]),
    )
}

/// Rows `o..o + nr` (`1 <= nr <= 16`) of the int8 mat-vec, lane r = row `o + r`.
///
/// # Safety
/// CPU has avx512f/bw/vl; `w` is a valid [`super::Q8Matrix`] with `o + nr <= w.rows()`,
/// group `g >= 4`; `xq` holds `q8_act_words(w.n_in(), g)` words; `y` holds `o + nr` values.
#[inline(always)]
unsafe fn q8_block16(y: &mut [f32], xq: &[f32], w: &super::Q8Matrix, o: usize, nr: usize) {
    let (n_in, g) = (w.n_in(), w.group());
    let (ng, words) = (n_in / g, g / 2 + 1);
    let rmask = lanes16(nr);
    let unpair = _mm512_loadu_si512(Q8_UNPAIR16.as_ptr() as *const _);
    let xi = xq.as_ptr() as *const i16;
    let vp = w.values().as_ptr() as *const i8;
    let yp = y.as_mut_ptr().add(o);
    let mut acc = _mm512_maskz_loadu_ps(rmask, yp);
    // index of row r's first scale, (o + r) * ng (< rows * ng <= i32::MAX)
    let row_idx = _mm512_mullo_epi32(
        _mm512_add_epi32(
            _mm512_set1_epi32(o as i32),
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        ),
        _mm512_set1_epi32(ng as i32),
    );
    for gi in 0..ng {
        // group gi: activations at i16 2*gi*words, weights of row r at (o+r)*n_in + gi*g
        let xg = xi.add(2 * gi * words);
        let wg = vp.add(o * n_in + gi * g);
        let mut s = [_mm512_setzero_si512(); 16];
        let mut k = 0;
        while k < g {
            let m = lanes32(g - k);
            let xv = _mm512_permutexvar_epi16(unpair, _mm512_maskz_loadu_epi16(m, xg.add(k)));
            for (r, sr) in s.iter_mut().enumerate().take(nr) {
                let wv = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, wg.add(r * n_in + k)));
                *sr = _mm512_add_epi32(*sr, _mm512_madd_epi16(wv, xv));
            }
            k += 32;
        }
        let isum = _mm512_cvtepi32_ps(transpose_sum16(&s));
        let ws = q8_scales16(
            w,
            _mm512_add_epi32(row_idx, _mm512_set1_epi32(gi as i32)),
            rmask,
        );
        let xs = _mm512_set1_ps(*xq.as_ptr().add(gi * words + g / 2));
        // the scalar order: the group's scale, then the product, then the add
        let sc = _mm512_mul_ps(ws, xs);
        let p = _mm512_mul_ps(isum, sc);
        acc = _mm512_add_ps(acc, p);
    }
    _mm512_mask_storeu_ps(yp, rmask, acc);
}

/// The int8 mat-vec ([`super::matvec_q8`]), 16 rows per block.
///
/// # Safety
/// CPU has avx512f/bw/vl; `y.len() <= w.rows()` and `xq.len() >= q8_act_words(w.n_in(),
/// w.group())` (checked by the dispatcher; `w`'s own sizes are checked by `Q8Matrix::new`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn matvec_q8_avx512(y: &mut [f32], xq: &[f32], w: &super::Q8Matrix) {
    if w.group() < 4 || y.is_empty() {
        return; // only the empty default matrix; nothing to do
    }
    if w.scales().len() / 2 > i32::MAX as usize {
        // scale indices would not fit the gathers' i32 offsets
        return super::scalar::matvec_q8_body(y, xq, w);
    }
    let n_out = y.len();
    let mut o = 0;
    while o + 16 <= n_out {
        q8_block16(y, xq, w, o, 16);
        o += 16;
    }
    if o < n_out {
        q8_block16(y, xq, w, o, n_out - o);
    }
}

/// AVX2 version of [`transpose_sum16`] for 8 vectors of 8 lanes.
///
/// # Safety
/// CPU has avx2 (registers only); called from functions that enable it.
#[inline(always)]
unsafe fn transpose_sum8(s: &[__m256i; 8]) -> __m256i {
    let mut t = [_mm256_setzero_si256(); 4];
    for (i, ti) in t.iter_mut().enumerate() {
        let (a, b) = (s[2 * i], s[2 * i + 1]);
        *ti = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    }
    let mut u = [_mm256_setzero_si256(); 2];
    for (j, uj) in u.iter_mut().enumerate() {
        let (a, b) = (t[2 * j], t[2 * j + 1]);
        *uj = _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
    }
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(u[0], u[1]),
        _mm256_permute2x128_si256::<0x31>(u[0], u[1]),
    )
}

/// AVX2 version of [`q8_scales16`]; `rmask` is a dword mask (all ones = lane used).
///
/// # Safety
/// CPU has avx2 and f16c; indices as for [`q8_scales16`].
#[inline(always)]
unsafe fn q8_scales8(w: &super::Q8Matrix, idx: __m256i, rmask: __m256i) -> __m256 {
    let p = w.scales().as_ptr();
    if w.scale_dtype() == super::ScaleDtype::F32 {
        let m = _mm256_castsi256_ps(rmask);
        return _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), p as *const _, idx, m);
    }
    let last = (w.scales().len() / 2).saturating_sub(1);
    let tail = _mm256_and_si256(
        rmask,
        _mm256_cmpeq_epi32(idx, _mm256_set1_epi32(last as i32)),
    );
    let safe = _mm256_andnot_si256(tail, rmask);
    let zero = _mm256_setzero_si256();
    let mut v = _mm256_mask_i32gather_epi32::<2>(zero, p as *const _, idx, safe);
    if _mm256_testz_si256(tail, tail) == 0 {
        let b = _mm256_set1_epi32(q8_scale_bits(w, last) as i32);
        v = _mm256_blendv_epi8(v, b, tail);
    }
    // the low halves of the 8 dwords, in order, then f16 -> f32
    let lo = _mm256_shuffle_epi8(
        v,
        _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9, 12, 13, -1,
            -1, -1, -1, -1, -1, -1, -1,
        ),
    );
    let lo = _mm256_permute4x64_epi64::<0b11_01_10_00>(lo);
    _mm256_cvtph_ps(_mm256_castsi256_si128(lo))
}

/// Dword mask (sign bit set = load) of the first `min(left, 8)` dwords.
///
/// # Safety
/// CPU has avx2 (registers only); called from functions that enable it.
#[inline(always)]
unsafe fn dwords8(left: usize) -> __m256i {
    let n = left.min(8) as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// Rows `o..o + nr` (`1 <= nr <= 8`) of the int8 mat-vec, lane r = row `o + r`.
///
/// # Safety
/// CPU has avx2 and f16c; otherwise as for [`q8_block16`].
#[inline(always)]
unsafe fn q8_block8(y: &mut [f32], xq: &[f32], w: &super::Q8Matrix, o: usize, nr: usize) {
    let (n_in, g) = (w.n_in(), w.group());
    let (ng, words) = (n_in / g, g / 2 + 1);
    let rmask = dwords8(nr);
    let unpair = _mm256_loadu_si256(Q8_UNPAIR8.as_ptr() as *const __m256i);
    let xi = xq.as_ptr() as *const i16;
    let vp = w.values().as_ptr() as *const i8;
    let yp = y.as_mut_ptr().add(o);
    let mut acc = _mm256_maskload_ps(yp, rmask);
    let row_idx = _mm256_mullo_epi32(
        _mm256_add_epi32(
            _mm256_set1_epi32(o as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        ),
        _mm256_set1_epi32(ng as i32),
    );
    for gi in 0..ng {
        let xg = xi.add(2 * gi * words);
        let wg = vp.add(o * n_in + gi * g);
        let mut s = [_mm256_setzero_si256(); 8];
        let mut k = 0;
        while k + 16 <= g {
            let xv = _mm256_shuffle_epi8(_mm256_loadu_si256(xg.add(k) as *const __m256i), unpair);
            for (r, sr) in s.iter_mut().enumerate().take(nr) {
                let wb = _mm_loadu_si128(wg.add(r * n_in + k) as *const __m128i);
                let wv = _mm256_cvtepi8_epi16(wb);
                *sr = _mm256_add_epi32(*sr, _mm256_madd_epi16(wv, xv));
            }
            k += 16;
        }
        if k < g {
            // 4, 8 or 12 values left: 2-6 dwords of activations, 1-3 dwords of weights
            let left = g - k;
            let xv = _mm256_shuffle_epi8(
                _mm256_maskload_epi32(xg.add(k) as *const i32, dwords8(left / 2)),
                unpair,
            );
            let wm = _mm256_castsi256_si128(dwords8(left / 4));
            for (r, sr) in s.iter_mut().enumerate().take(nr) {
                let wb = _mm_maskload_epi32(wg.add(r * n_in + k) as *const i32, wm);
                let wv = _mm256_cvtepi8_epi16(wb);
                *sr = _mm256_add_epi32(*sr, _mm256_madd_epi16(wv, xv));
            }
        }
        let isum = _mm256_cvtepi32_ps(transpose_sum8(&s));
        let ws = q8_scales8(
            w,
            _mm256_add_epi32(row_idx, _mm256_set1_epi32(gi as i32)),
            rmask,
        );
        let xs = _mm256_set1_ps(*xq.as_ptr().add(gi * words + g / 2));
        let sc = _mm256_mul_ps(ws, xs);
        let p = _mm256_mul_ps(isum, sc);
        acc = _mm256_add_ps(acc, p);
    }
    _mm256_maskstore_ps(yp, rmask, acc);
}

/// The int8 mat-vec ([`super::matvec_q8`]), 8 rows per block.
///
/// # Safety
/// CPU has avx2 and f16c; bounds as for [`matvec_q8_avx512`].
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn matvec_q8_avx2(y: &mut [f32], xq: &[f32], w: &super::Q8Matrix) {
    if w.group() < 4 || y.is_empty() {
        return;
    }
    if w.scales().len() / 2 > i32::MAX as usize {
        // scale indices would not fit the gathers' i32 offsets
        return super::scalar::matvec_q8_body(y, xq, w);
    }
    let n_out = y.len();
    let mut o = 0;
    while o + 8 <= n_out {
        q8_block8(y, xq, w, o, 8);
        o += 8;
    }
    if o < n_out {
        q8_block8(y, xq, w, o, n_out - o);
    }
}
