//! Causal multi-head self-attention (the part between the QKV projection and the output
//! projection).
//!
//! Layout: `qkv` [N, 3C] holds each row's query, key and value vectors side by side (the fused
//! QKV projection's output); head `h` uses features `h·D..(h+1)·D` of each. Scores are
//! `S = scale·Q·Kᵀ` with `scale` from the config (0.125 = 64^−½ in the reference: it scales by the
//! model dim, not the head size; it is applied in the softmax row pass), keys after the query are
//! masked, softmax over keys, and head `h`'s output goes to features `h·D..(h+1)·D` of `out`
//! [N, C].
//!
//! The score products read `Kᵀ` (and `Vᵀ` in the backward) packed per head into a buffer each
//! sequence task owns ([`pack_scratch`]), so nothing is allocated per call.
//!
//! Work is split over sequences (`B` independent tasks). Inside a sequence the T×T products run
//! in blocks of [`BLOCK`] query rows that only cover keys `0..block_end`, so the masked upper
//! triangle is (mostly) never computed: about half the dense FLOPs.

use rayon::prelude::*;

use super::gemm::{gemm, MatA, MatB, PackedB, Update};
use super::{Float, LANES};

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

/// One packing buffer per sequence for `Kᵀ`/`Vᵀ` of one head ([`attention_forward`] and
/// [`attention_backward`] take `b` of them).
pub fn pack_scratch<F: Float>(b: usize, t: usize, c: usize, h: usize) -> Vec<PackedB<F>> {
    (0..b).map(|_| PackedB::new(c / h, t)).collect()
}

/// Forward. `out` [B·T, C] from `qkv` [B·T, 3C]. `p_scratch` holds [B, T, T] floats (one head's
/// probabilities per sequence at a time) and `packs` ≥ B buffers from [`pack_scratch`].
///
/// Nothing is saved for the backward: it recomputes the probabilities (bit-identically, with
/// the same code), which costs one more score product but keeps [B, H, T, T] floats per layer
/// (16 MB at 16×256) out of memory.
pub fn attention_forward<F: Float>(
    out: &mut [F],
    p_scratch: &mut [F],
    packs: &mut [PackedB<F>],
    qkv: &[F],
    d: AttnDims,
    scale: F,
) {
    let AttnDims { t, c, h: nh, .. } = d;
    let hd = c / nh;
    let c3 = 3 * c;
    out.par_chunks_mut(t * c)
        .zip(p_scratch.par_chunks_mut(t * t))
        .zip(packs.par_iter_mut())
        .zip(qkv.par_chunks(t * c3))
        .for_each(|(((out, p), kt), qkv)| {
            for h in 0..nh {
                let vo = 2 * c + h * hd;
                for i0 in (0..t).step_by(BLOCK) {
                    let i1 = (i0 + BLOCK).min(t);
                    probabilities_block(p, kt, qkv, d, h, i0, scale);
                    // out[i0..i1, head] = P[i0..i1, 0..i1] · V[0..i1]            ([m×i1]·[i1×D])
                    gemm(
                        i1 - i0,
                        hd,
                        i1,
                        MatA::rows(&p[i0 * t..], t),
                        MatB::Rows {
                            data: &qkv[vo..],
                            rs: c3,
                        },
                        &mut out[i0 * c + h * hd..],
                        c,
                        Update::Overwrite,
                    );
                }
            }
        });
}

/// Rows `i0..i0+BLOCK` of head `h`'s probabilities into `p` [T, T] (row i: keys `0..=i`, then
/// zeros up to the block's end; keys past the block are not touched). At `i0 = 0` it also packs
/// the head's `Kᵀ` into `kt`, which the later blocks reuse.
fn probabilities_block<F: Float>(
    p: &mut [F],
    kt: &mut PackedB<F>,
    qkv: &[F],
    d: AttnDims,
    h: usize,
    i0: usize,
    scale: F,
) {
    let AttnDims { t, c, h: nh, .. } = d;
    let hd = c / nh;
    let c3 = 3 * c;
    let (qo, ko) = (h * hd, c + h * hd);
    let i1 = (i0 + BLOCK).min(t);
    if i0 == 0 {
        // Kᵀ[D, T] of this head: element (d, j) = qkv[j·3C + C + h·D + d].
        kt.pack(&qkv[ko..], hd, t, 1, c3);
    }
    // S[i0..i1, 0..i1] = Q[i0..i1] · Kᵀ[:, 0..i1]                       ([m×D]·[D×i1])
    gemm(
        i1 - i0,
        i1,
        hd,
        MatA::rows(&qkv[i0 * c3 + qo..], c3),
        MatB::Packed(kt),
        &mut p[i0 * t..],
        t,
        Update::Overwrite,
    );
    for i in i0..i1 {
        let row = &mut p[i * t..i * t + i1];
        // Keys after the query are masked: −∞ up to the next multiple of the row kernels' lane
        // count (so the softmax runs on whole lanes; they add nothing to the sum), then every
        // masked key set to exactly the 0 the products need.
        let live = (i + 1).next_multiple_of(LANES).min(i1);
        row[i + 1..live].fill(F::NEG_INFINITY);
        super::softmax_in_place(&mut row[..live], scale);
        row[i + 1..].fill(F::ZERO);
    }
}

/// Backward. Overwrites `dqkv` [B·T, 3C] from `dout` [B·T, C] and the saved `qkv`.
/// `p_scratch` and `dp_scratch` hold [B, T, T] floats each (the recomputed P; dP, then dS in
/// place); `packs` as in the forward.
///
/// With P = softmax(S): `dP = dO·Vᵀ`, `dV = Pᵀ·dO`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`,
/// `dQ = scale·dS·K`, `dK = scale·dSᵀ·Q` (the scale is folded into dS).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<F: Float>(
    dqkv: &mut [F],
    p_scratch: &mut [F],
    dp_scratch: &mut [F],
    packs: &mut [PackedB<F>],
    dout: &[F],
    qkv: &[F],
    d: AttnDims,
    scale: F,
) {
    let AttnDims { t, c, h: nh, .. } = d;
    let hd = c / nh;
    let c3 = 3 * c;
    dqkv.par_chunks_mut(t * c3)
        .zip(p_scratch.par_chunks_mut(t * t))
        .zip(dp_scratch.par_chunks_mut(t * t))
        .zip(packs.par_iter_mut())
        .zip(dout.par_chunks(t * c))
        .zip(qkv.par_chunks(t * c3))
        .for_each(|(((((dqkv, p), dp), pack), dout), qkv)| {
            for h in 0..nh {
                let (qo, ko, vo) = (h * hd, c + h * hd, 2 * c + h * hd);
                for i0 in (0..t).step_by(BLOCK) {
                    probabilities_block(p, pack, qkv, d, h, i0, scale);
                }
                // Vᵀ[D, T] of this head (Kᵀ is no longer needed).
                pack.pack(&qkv[vo..], hd, t, 1, c3);
                for i0 in (0..t).step_by(BLOCK) {
                    let i1 = (i0 + BLOCK).min(t);
                    // dP[i0..i1, 0..i1] = dO[i0..i1] · Vᵀ[:, 0..i1]              ([m×D]·[D×i1])
                    gemm(
                        i1 - i0,
                        i1,
                        hd,
                        MatA::rows(&dout[i0 * c + h * hd..], c),
                        MatB::Packed(pack),
                        &mut dp[i0 * t..],
                        t,
                        Update::Overwrite,
                    );
                    for i in i0..i1 {
                        let prow = &p[i * t..i * t + i1];
                        let drow = &mut dp[i * t..i * t + i1];
                        super::softmax_backward_in_place(&mut drow[..=i], &prow[..=i], scale);
                        // Keys after the query inside this block: read by the dK product below.
                        drow[i + 1..].fill(F::ZERO);
                    }
                    // dQ[i0..i1] = dS[i0..i1, 0..i1] · K[0..i1]                  ([m×i1]·[i1×D])
                    gemm(
                        i1 - i0,
                        hd,
                        i1,
                        MatA::rows(&dp[i0 * t..], t),
                        MatB::Rows {
                            data: &qkv[ko..],
                            rs: c3,
                        },
                        &mut dqkv[i0 * c3 + qo..],
                        c3,
                        Update::Overwrite,
                    );
                }
                for j0 in (0..t).step_by(BLOCK) {
                    let j1 = (j0 + BLOCK).min(t);
                    // Only queries i ≥ j0 attend to keys j0..j1.
                    // dK[j0..j1] = dS[j0.., j0..j1]ᵀ · Q[j0..]                   ([m×(T−j0)]·[(T−j0)×D])
                    gemm(
                        j1 - j0,
                        hd,
                        t - j0,
                        MatA::transposed(&dp[j0 * t + j0..], t),
                        MatB::Rows {
                            data: &qkv[j0 * c3 + qo..],
                            rs: c3,
                        },
                        &mut dqkv[j0 * c3 + ko..],
                        c3,
                        Update::Overwrite,
                    );
                    // dV[j0..j1] = P[j0.., j0..j1]ᵀ · dO[j0..]
                    gemm(
                        j1 - j0,
                        hd,
                        t - j0,
                        MatA::transposed(&p[j0 * t + j0..], t),
                        MatB::Rows {
                            data: &dout[j0 * c + h * hd..],
                            rs: c,
                        },
                        &mut dqkv[j0 * c3 + vo..],
                        c3,
                        Update::Overwrite,
                    );
                }
            }
        });
}
