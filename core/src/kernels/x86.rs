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

/// AVX-512: tiles of 64 outputs (4 accumulators), then 16, then one masked tile.
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
        let mut a0 = _mm512_loadu_ps(yp.add(o));
        let mut a1 = _mm512_loadu_ps(yp.add(o + 16));
        let mut a2 = _mm512_loadu_ps(yp.add(o + 32));
        let mut a3 = _mm512_loadu_ps(yp.add(o + 48));
        let mut p = wp.add(o);
        for &xk in x {
            let xv = _mm512_set1_ps(xk);
            let w0 = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
            let w1 = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(16) as *const __m256i));
            let w2 = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32) as *const __m256i));
            let w3 = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(48) as *const __m256i));
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(w0, xv));
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(w1, xv));
            a2 = _mm512_add_ps(a2, _mm512_mul_ps(w2, xv));
            a3 = _mm512_add_ps(a3, _mm512_mul_ps(w3, xv));
            p = p.add(stride);
        }
        _mm512_storeu_ps(yp.add(o), a0);
        _mm512_storeu_ps(yp.add(o + 16), a1);
        _mm512_storeu_ps(yp.add(o + 32), a2);
        _mm512_storeu_ps(yp.add(o + 48), a3);
        o += 64;
    }
    while o < n_out {
        let left = n_out - o;
        let m: u16 = if left >= 16 {
            0xFFFF
        } else {
            (1u16 << left) - 1
        };
        let mut a = _mm512_maskz_loadu_ps(m, yp.add(o));
        let mut p = wp.add(o);
        for &xk in x {
            let xv = _mm512_set1_ps(xk);
            let wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p as *const i16));
            a = _mm512_add_ps(a, _mm512_mul_ps(wv, xv));
            p = p.add(stride);
        }
        _mm512_mask_storeu_ps(yp.add(o), m, a);
        o += 16;
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
        let left = n_out - o;
        let m: u16 = if left >= 16 {
            0xFFFF
        } else {
            (1u16 << left) - 1
        };
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
