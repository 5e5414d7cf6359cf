//! The int8 KV cache: one key row and one value row of `C` int8 values per (layer, position),
//! each row with one f32 scale (a "per-vector" scale: the whole `C`-vector of one position of
//! one layer, all heads together).
//!
//! Why this layout: at context 256 the Tang model's f16 cache is 256 KiB, more than a 264 KiB
//! RP2040 can spare; int8 rows with one f32 scale per row are 128 KiB + 8 KiB. Rows are
//! position-major (`[L][T][C]` for keys too, unlike the f16 cache's transposed keys) so a head's
//! slice of a position is `hd` consecutive bytes: the attention scores and the weighted sum of
//! values become integer dot products (no float multiply per element, which matters on a core
//! without an FPU), with a few float steps per position.
//!
//! Every operation below is defined by exact integer arithmetic plus f32 operations in a fixed
//! order (no FMA), so every backend (host scalar, x86, Cortex-M4, Cortex-M0+ soft float)
//! computes the same bits. It is one portable body; there are no SIMD variants.
//!
//! ```text
//! quantize_row(x[n]):   amax = max|x_i| (i ascending);  scale = amax / 127;  inv = 127 / amax
//!                       q_i = round_half_even(x_i * inv) clamped to -127..=127 (NaN -> 0)
//! write(l, pos, x[C]):  K or V row (l, pos) = quantize_row(x), its scale stored as f32
//! scores (head h, q[C]): qq, qs = quantize_row(q[h*hd .. (h+1)*hd])
//!     for t < n:  isum = sum_d qq[d] * K[l][t][h*hd + d]      (i32, exact)
//!                 att[t] = (isum as f32) * (qs * ks[l][t])     (two f32 roundings)
//! values (head h, att[n]):
//!     w_t = att[t] * vs[l][t];  wmax = max w_t;  wsc = wmax / 32767;  winv = 32767 / wmax
//!     wq_t = round_half_even(w_t * winv) clamped to -32767..=32767 (i16; NaN -> 0)
//!     out[h*hd + d] += (sum_t wq_t * V[l][t][h*hd + d]) as f32 * wsc       (i32 sum, exact)
//! ```
//!
//! The i32 sums cannot overflow: `|isum| <= hd * 127 * 127` for the scores and
//! `<= T * 32767 * 127 < 2^31` for the values at `T <= 512` ([`Q8Kv::new`] refuses longer
//! contexts). Their conversion to f32 rounds to nearest even (exact below 2^24).

use crate::config::Config;
use crate::Error;

/// 1.5 * 2^23: `(r + M) - M` rounds `r` to an integer, half to even, for `|r| < 2^22`
/// (the same trick as the int8 activation quantization, `kernels::scalar::quantize_q8`).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Largest context the int8 cache supports (the value sums stay below 2^31).
pub const MAX_Q8_CONTEXT: usize = 512;

/// `round_half_even(r)` clamped to `-lim..=lim`; NaN gives 0.
#[inline(always)]
fn round_clamp(r: f32, lim: i32) -> i32 {
    let r = (r + ROUND_MAGIC) - ROUND_MAGIC;
    // `as` saturates and maps NaN to 0; |r| beyond 2^22 only happens for out-of-range
    // inputs, which the clamp then pins to the limit.
    (r as i32).clamp(-lim, lim)
}

/// `max |x_i|` in ascending order (sign bit cleared, so -0.0 and NaN compare as usual).
#[inline(always)]
fn abs_max(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    for &v in x {
        let a = f32::from_bits(v.to_bits() & 0x7FFF_FFFF);
        if a > amax {
            amax = a;
        }
    }
    amax
}

/// Quantize `x` into `q` (`min(q.len(), x.len())` values) with one scale (module docs); returns
/// the scale `amax / 127`. An all-zero `x` gives zeros and scale 0.
pub fn quantize_row(q: &mut [i8], x: &[f32]) -> f32 {
    let amax = abs_max(x);
    let inv = 127.0 / amax;
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = round_clamp(v * inv, 127) as i8;
    }
    amax / 127.0
}

/// Exact dot product of int8 vectors (`min` of the lengths).
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut s = 0i32;
    for (&x, &y) in a.iter().zip(b) {
        s = s.wrapping_add(x as i32 * y as i32);
    }
    s
}

/// f32 words of the int8 KV cache for `cfg`: keys and values (`2 * L * T * C` bytes), their
/// scales (`2 * L * T` f32), and the scratch of the attention (`C` int8 query values and `T`
/// i16 attention weights). Saturates for absurd configs.
pub const fn q8_kv_words(cfg: &Config) -> usize {
    let rows = cfg.n_layers.saturating_mul(cfg.context);
    let bytes = rows.saturating_mul(cfg.dim);
    let one = bytes.saturating_add(3) / 4 + rows; // values + scales of K (or V)
    let scratch = cfg.dim.saturating_add(3) / 4 + cfg.context.saturating_add(1) / 2;
    one.saturating_mul(2).saturating_add(scratch)
}

/// The int8 KV cache of one decoder, carved from the run state.
pub struct Q8Kv<'a> {
    /// `C`: values per row.
    dim: usize,
    /// `T`: rows per layer.
    context: usize,
    /// key rows `[L][T][C]`
    k: &'a mut [i8],
    /// value rows `[L][T][C]`
    v: &'a mut [i8],
    /// key scales `[L][T]`
    ks: &'a mut [f32],
    /// value scales `[L][T]`
    vs: &'a mut [f32],
    /// the quantized query `[C]`
    qq: &'a mut [i8],
    /// the quantized attention weights of one head `[T]`
    wq: &'a mut [i16],
}

fn take<'a>(rest: &mut &'a mut [f32], n: usize) -> &'a mut [f32] {
    let (a, b) = core::mem::take(rest).split_at_mut(n);
    *rest = b;
    a
}

fn take_i8<'a>(rest: &mut &'a mut [f32], n: usize) -> &'a mut [i8] {
    let w = take(rest, n.div_ceil(4));
    &mut bytemuck::cast_slice_mut::<f32, i8>(w)[..n]
}

impl<'a> Q8Kv<'a> {
    /// The cache over `buf`, exactly [`q8_kv_words`]`(cfg)` words. [`Error::BufferSize`] if it
    /// is not; [`Error::Unsupported`] for a context above [`MAX_Q8_CONTEXT`].
    pub fn new(cfg: &Config, buf: &'a mut [f32]) -> Result<Self, Error> {
        if cfg.context > MAX_Q8_CONTEXT {
            return Err(Error::Unsupported(
                "int8 KV cache: context above 512 (the value sums could overflow)",
            ));
        }
        let expected = q8_kv_words(cfg);
        if buf.len() != expected {
            return Err(Error::BufferSize {
                expected,
                got: buf.len(),
            });
        }
        let rows = cfg.n_layers * cfg.context;
        let mut rest = buf;
        let k = take_i8(&mut rest, rows * cfg.dim);
        let ks = take(&mut rest, rows);
        let v = take_i8(&mut rest, rows * cfg.dim);
        let vs = take(&mut rest, rows);
        let qq = take_i8(&mut rest, cfg.dim);
        let w = take(&mut rest, cfg.context.div_ceil(2));
        let wq = &mut bytemuck::cast_slice_mut::<f32, i16>(w)[..cfg.context];
        Ok(Q8Kv {
            dim: cfg.dim,
            context: cfg.context,
            k,
            v,
            ks,
            vs,
            qq,
            wq,
        })
    }

    /// Store `k` and `v` (`[C]` each) as the rows of layer `l`, position `pos` (`l < L`,
    /// `pos < T`: the cache was sized for them in [`Q8Kv::new`], so the slices below are in
    /// bounds).
    pub(crate) fn write(&mut self, l: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (c, row) = (self.dim, l * self.context + pos);
        self.ks[row] = quantize_row(&mut self.k[row * c..(row + 1) * c], k);
        self.vs[row] = quantize_row(&mut self.v[row * c..(row + 1) * c], v);
    }

    /// Attention scores of head `h` (values `h*hd .. (h+1)*hd`) for positions `0..att.len()` of
    /// layer `l`: `att[t] = isum * (qs * ks[t])` (module docs), unscaled. `q` is the head's
    /// `[hd]` slice of the query; `att.len() <= T`, `l < L`, `(h+1)*hd <= C`.
    pub(crate) fn scores(&mut self, att: &mut [f32], q: &[f32], l: usize, h: usize) {
        let (c, hd) = (self.dim, q.len());
        let qq = &mut self.qq[..hd];
        let qs = quantize_row(qq, q);
        let base = l * self.context;
        let ks = &self.ks[base..base + att.len()];
        for (t, (a, &ks)) in att.iter_mut().zip(ks).enumerate() {
            let row = (base + t) * c + h * hd;
            let isum = dot_i8(qq, &self.k[row..row + hd]);
            let s = qs * ks;
            *a = isum as f32 * s;
        }
    }

    /// `out[d] += sum_t att[t] * V[l][t][h*hd + d]` for head `h` (`out` = the head's `[hd]`
    /// slice), through i16 attention weights as in the module docs; `att` = positions
    /// `0..n` (the softmax probabilities), `n <= T`.
    pub(crate) fn values(&mut self, out: &mut [f32], att: &[f32], l: usize, h: usize) {
        let (c, hd, n) = (self.dim, out.len(), att.len());
        let base = l * self.context;
        let vs = &self.vs[base..base + n];
        // w_t = att[t] * vs[t], kept in `wq` as f32 bits would need room: compute the max
        // first, then quantize (the products are recomputed; both passes give the same bits).
        let mut wmax = 0.0f32;
        for (&a, &vs) in att.iter().zip(vs) {
            let w = a * vs;
            let w = f32::from_bits(w.to_bits() & 0x7FFF_FFFF);
            if w > wmax {
                wmax = w;
            }
        }
        let wsc = wmax / 32767.0;
        let winv = 32767.0 / wmax;
        let wq = &mut self.wq[..n];
        for ((wq, &a), &vs) in wq.iter_mut().zip(att).zip(vs) {
            let w = a * vs;
            *wq = round_clamp(w * winv, 32767) as i16;
        }
        for (d, o) in out.iter_mut().enumerate() {
            let mut s = 0i32;
            for (t, &w) in wq.iter().enumerate() {
                let vv = self.v[(base + t) * c + h * hd + d];
                s = s.wrapping_add(w as i32 * vv as i32);
            }
            let p = s as f32 * wsc;
            *o += p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{vec, vec::Vec};

    #[test]
    fn quantize_row_rounds_half_even_and_clamps() {
        let mut q = [0i8; 6];
        // amax 127: inv = 1, so the values themselves are rounded
        let s = quantize_row(&mut q, &[127.0, -127.0, 0.5, 1.5, -2.5, 3.49]);
        assert_eq!(s, 1.0);
        assert_eq!(q, [127, -127, 0, 2, -2, 3]);
        let s = quantize_row(&mut q, &[0.0; 6]);
        assert_eq!((s, q), (0.0, [0; 6]));
        // NaN quantizes to 0; the scale follows the finite max
        let s = quantize_row(&mut q[..2], &[f32::NAN, 2.0]);
        assert_eq!((s, q[0], q[1]), (2.0 / 127.0, 0, 127));
    }

    #[test]
    fn words_of_the_tang_cache() {
        // 2 × (64 KiB of rows + 4 KiB of scales) + 16 + 128 words of scratch
        assert_eq!(q8_kv_words(&Config::TANG), 2 * (16384 + 1024) + 16 + 128);
    }

    /// Scores and values against the float definition on the dequantized rows: the integer
    /// sums are exact, so the only differences are the documented roundings.
    #[test]
    fn scores_and_values_match_the_dequantized_definition() {
        let cfg = Config {
            vocab_size: 8,
            dim: 8,
            n_heads: 2,
            n_layers: 2,
            context: 5,
            ffn_dim: 8,
            ln_eps: 1e-5,
            attn_scale: 0.5,
        };
        let mut buf = vec![0f32; q8_kv_words(&cfg)];
        let mut kv = Q8Kv::new(&cfg, &mut buf).unwrap();
        let val = |i: usize| ((i * 7919 % 97) as f32 - 48.0) / 13.0;
        for pos in 0..5 {
            let k: Vec<f32> = (0..8).map(|i| val(pos * 8 + i)).collect();
            let v: Vec<f32> = (0..8).map(|i| val(100 + pos * 8 + i)).collect();
            kv.write(1, pos, &k, &v);
        }
        let q: Vec<f32> = (0..4).map(|i| val(300 + i)).collect();
        let mut att = [0f32; 4];
        kv.scores(&mut att, &q, 1, 1);
        let mut qq = [0i8; 4];
        let qs = quantize_row(&mut qq, &q);
        for (t, &a) in att.iter().enumerate() {
            let row = (5 + t) * 8 + 4;
            let isum: i32 = (0..4).map(|d| qq[d] as i32 * kv.k[row + d] as i32).sum();
            assert_eq!(a.to_bits(), (isum as f32 * (qs * kv.ks[5 + t])).to_bits());
            // and close to the float dot product of the original vectors
            let exact: f32 = (0..4).map(|d| q[d] * val(t * 8 + 4 + d)).sum();
            assert!(
                (a - exact).abs() < 0.05 * (1.0 + exact.abs()),
                "{a} vs {exact}"
            );
        }
        let p = [0.1f32, 0.2, 0.3, 0.4];
        let mut out = [0f32; 4];
        kv.values(&mut out, &p, 1, 1);
        for (d, &o) in out.iter().enumerate() {
            let exact: f32 = (0..4).map(|t| p[t] * val(100 + t * 8 + 4 + d)).sum();
            assert!(
                (o - exact).abs() < 0.05 * (1.0 + exact.abs()),
                "{o} vs {exact}"
            );
        }
    }

    #[test]
    fn wrong_buffer_or_context_is_an_error() {
        let mut buf = vec![0f32; q8_kv_words(&Config::TANG) - 1];
        assert!(matches!(
            Q8Kv::new(&Config::TANG, &mut buf),
            Err(Error::BufferSize { .. })
        ));
        let cfg = Config {
            context: 1024,
            ..Config::TANG
        };
        let mut buf = vec![0f32; q8_kv_words(&cfg)];
        assert!(matches!(
            Q8Kv::new(&cfg, &mut buf),
            Err(Error::Unsupported(_))
        ));
    }
}
