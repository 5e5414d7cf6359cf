//! Causal multi-head self-attention (the part between the QKV projection and the output
//! projection).
//!
//! Layout: `qkv` [N, 3C] holds each row's query, key and value vectors side by side (the fused
//! QKV projection's output); head `h` uses features `h·D..(h+1)·D` of each. Scores are
//! `S = scale·Q·Kᵀ` with `scale` from the config (0.125 = 64^−½ in the reference: it scales by the
//! model dim, not the head size), keys after the query are masked, softmax over keys, and head
//! `h`'s output goes to features `h·D..(h+1)·D` of `out` [N, C].
//!
//! Work is split over sequences (`B` independent tasks). Inside a sequence the T×T products run
//! in blocks of [`BLOCK`] query rows that only cover keys `0..block_end`, so the masked upper
//! triangle is (mostly) never computed: about half the dense FLOPs.

use rayon::prelude::*;

use super::Float;

/// Query/key rows per block of the causal products.
pub const BLOCK: usize = 64;

/// Dimensions of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    /// Sequences.
    pub b: usize,
    /// Positions per sequence.
    pub t: usize,
    /// Model dim C (= heads · head size).
    pub c: usize,
    /// Heads H.
    pub h: usize,
}

/// Forward. `out` [B·T, C], `att` [B, H, T, T] (the softmax probabilities, saved for the
/// backward; entries above the diagonal are written as 0), `qkv` [B·T, 3C].
pub fn attention_forward<F: Float>(out: &mut [F], att: &mut [F], qkv: &[F], d: AttnDims, scale: F) {
    let AttnDims { t, c, h: nh, .. } = d;
    let hd = c / nh;
    let c3 = 3 * c;
    out.par_chunks_mut(t * c)
        .zip(att.par_chunks_mut(nh * t * t))
        .zip(qkv.par_chunks(t * c3))
        .for_each(|((out, att), qkv)| {
            for (h, att) in att.chunks_exact_mut(t * t).enumerate() {
                let (qo, ko, vo) = (h * hd, c + h * hd, 2 * c + h * hd);
                for i0 in (0..t).step_by(BLOCK) {
                    let i1 = (i0 + BLOCK).min(t);
                    // S[i0..i1, 0..i1] = scale · Q[i0..i1] · Kᵀ[:, 0..i1]      ([m×D]·[D×i1])
                    F::gemm(
                        i1 - i0,
                        hd,
                        i1,
                        scale,
                        &qkv[i0 * c3 + qo..],
                        c3 as isize,
                        1,
                        &qkv[ko..],
                        1,
                        c3 as isize,
                        F::ZERO,
                        &mut att[i0 * t..],
                        t as isize,
                        1,
                    );
                    for i in i0..i1 {
                        softmax_causal_row(&mut att[i * t..(i + 1) * t], i);
                    }
                    // out[i0..i1, head] = P[i0..i1, 0..i1] · V[0..i1]            ([m×i1]·[i1×D])
                    F::gemm(
                        i1 - i0,
                        i1,
                        hd,
                        F::ONE,
                        &att[i0 * t..],
                        t as isize,
                        1,
                        &qkv[vo..],
                        c3 as isize,
                        1,
                        F::ZERO,
                        &mut out[i0 * c + h * hd..],
                        c as isize,
                        1,
                    );
                }
            }
        });
}

/// In place on one score row: softmax over keys `0..=i`, zeros after.
#[inline]
fn softmax_causal_row<F: Float>(row: &mut [F], i: usize) {
    let (live, masked) = row.split_at_mut(i + 1);
    super::softmax_in_place(live);
    masked.fill(F::ZERO);
}

/// Backward. Overwrites `dqkv` [B·T, 3C] from `dout` [B·T, C], the saved `qkv` and `att`.
/// `scratch` holds [B, T, T] floats (dP, then dS in place).
///
/// With P = softmax(S): `dP = dO·Vᵀ`, `dV = Pᵀ·dO`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`,
/// `dQ = scale·dS·K`, `dK = scale·dSᵀ·Q` (the scale is folded into dS).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<F: Float>(
    dqkv: &mut [F],
    scratch: &mut [F],
    dout: &[F],
    qkv: &[F],
    att: &[F],
    d: AttnDims,
    scale: F,
) {
    let AttnDims { t, c, h: nh, .. } = d;
    let hd = c / nh;
    let c3 = 3 * c;
    dqkv.par_chunks_mut(t * c3)
        .zip(scratch.par_chunks_mut(t * t))
        .zip(dout.par_chunks(t * c))
        .zip(qkv.par_chunks(t * c3))
        .zip(att.par_chunks(nh * t * t))
        .for_each(|((((dqkv, dp), dout), qkv), att)| {
            for (h, p) in att.chunks_exact(t * t).enumerate() {
                let (qo, ko, vo) = (h * hd, c + h * hd, 2 * c + h * hd);
                for i0 in (0..t).step_by(BLOCK) {
                    let i1 = (i0 + BLOCK).min(t);
                    // dP[i0..i1, 0..i1] = dO[i0..i1] · Vᵀ                        ([m×D]·[D×i1])
                    F::gemm(
                        i1 - i0,
                        hd,
                        i1,
                        F::ONE,
                        &dout[i0 * c + h * hd..],
                        c as isize,
                        1,
                        &qkv[vo..],
                        1,
                        c3 as isize,
                        F::ZERO,
                        &mut dp[i0 * t..],
                        t as isize,
                        1,
                    );
                    for i in i0..i1 {
                        let prow = &p[i * t..i * t + i1];
                        let drow = &mut dp[i * t..i * t + i1];
                        super::softmax_backward_in_place(&mut drow[..=i], &prow[..=i], scale);
                        // Keys after the query inside this block: read by the dK product below.
                        drow[i + 1..].fill(F::ZERO);
                    }
                    // dQ[i0..i1] = dS[i0..i1, 0..i1] · K[0..i1]                  ([m×i1]·[i1×D])
                    F::gemm(
                        i1 - i0,
                        i1,
                        hd,
                        F::ONE,
                        &dp[i0 * t..],
                        t as isize,
                        1,
                        &qkv[ko..],
                        c3 as isize,
                        1,
                        F::ZERO,
                        &mut dqkv[i0 * c3 + qo..],
                        c3 as isize,
                        1,
                    );
                }
                for j0 in (0..t).step_by(BLOCK) {
                    let j1 = (j0 + BLOCK).min(t);
                    // Only queries i ≥ j0 attend to keys j0..j1.
                    // dK[j0..j1] = dS[j0.., j0..j1]ᵀ · Q[j0..]                   ([m×(T−j0)]·[(T−j0)×D])
                    F::gemm(
                        j1 - j0,
                        t - j0,
                        hd,
                        F::ONE,
                        &dp[j0 * t + j0..],
                        1,
                        t as isize,
                        &qkv[j0 * c3 + qo..],
                        c3 as isize,
                        1,
                        F::ZERO,
                        &mut dqkv[j0 * c3 + ko..],
                        c3 as isize,
                        1,
                    );
                    // dV[j0..j1] = P[j0.., j0..j1]ᵀ · dO[j0..]
                    F::gemm(
                        j1 - j0,
                        t - j0,
                        hd,
                        F::ONE,
                        &p[j0 * t + j0..],
                        1,
                        t as isize,
                        &dout[j0 * c + h * hd..],
                        c as isize,
                        1,
                        F::ZERO,
                        &mut dqkv[j0 * c3 + vo..],
                        c3 as isize,
                        1,
                    );
                }
            }
        });
}
