//! Causal multi-head self-attention (the part between the QKV projection and the output
//! projection).
//!
//! Layout: `qkv` [N, 3C] holds each row's query, key and value vectors side by side (the fused
//! QKV projection's output); head `h` uses features `h·D..(h+1)·D` of each. Scores are
//! `S = scale·Q·Kᵀ` with `scale` from the config (0.125 = 64^−½ in the reference: it scales by the
//! model dim, not the head size), keys after the query are masked, softmax over keys, and head
//! `h`'s output goes to features `h·D..(h+1)·D` of `out` [N, C].
//!
//! Work is split over sequences (`B` independent tasks). Inside a sequence each head runs over
//! blocks of [`BLOCK`] queries, and a block only looks at keys `0..block_end`; inside the block's
//! diagonal square, the products also skip the masked corner in steps of 16 queries (a group of
//! queries meets the keys up to its own last one). So the masked upper triangle is mostly never
//! computed: at T = 256 the products for `Sᵀ`, `dPᵀ`, `O` and `dQ` do 53% of the dense work (the
//! exact triangle is 50%); `dK` and `dV` keep the whole diagonal square (62.5%), where the
//! skipped corner is exact zeros by then. A block's scores are
//! held *transposed*, key-major — `Sᵀ` [keys, queries], computed as `K·Qᵀ` — so that the softmax
//! over keys runs down the columns, vectorised across the block's queries with no per-row
//! reductions, and the products read `Sᵀ`/`Pᵀ` either way without copies (shapes for a block of
//! 64 queries against `k ≤ T` keys, D = 16):
//!
//! ```text
//! forward                                    backward (P recomputed, never stored)
//! Sᵀ [k, 64] = K [k, D] · Qᵀ [D, 64]         dPᵀ [k, 64] = V [k, D] · dOᵀ [D, 64]
//! Pᵀ = column softmax of scale·Sᵀ            dSᵀ = scale·Pᵀ ⊙ (dPᵀ − colsum(Pᵀ ⊙ dPᵀ))
//! O [64, D] = (Pᵀ)ᵀ · V [k, D]               dQ [64, D] = (dSᵀ)ᵀ · K [k, D]
//!                                            dK [k, D] += dSᵀ · Q [64, D]
//!                                            dV [k, D] += Pᵀ · dO [64, D]
//! ```
//!
//! `Qᵀ`/`dOᵀ` of a block are packed for all heads at once (reading whole rows: C × 64 floats)
//! into buffers each sequence task owns, and a block's `Pᵀ`/`dPᵀ` (≤ 64 KiB each) stay in cache;
//! nothing of size T×T per head is kept, so the backward recomputes `Pᵀ` with the very same code
//! (bit-identical) instead of reading it back.

use rayon::prelude::*;

use super::gemm::{gemm, MatA, MatB, PackedB, Update};
use super::{Float, LANES};

/// Queries per block.
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

/// Per-sequence scratch of [`attention_forward`] and [`attention_backward`], allocated once.
#[derive(Clone, Debug)]
pub struct AttnScratch<F> {
    /// `Qᵀ` of one block, all heads [C, BLOCK], packed.
    qt: PackedB<F>,
    /// `dOᵀ` of one block, all heads [C, BLOCK], packed (backward only).
    dot: PackedB<F>,
    /// `Pᵀ` of one block [T, BLOCK].
    pt: Vec<F>,
    /// `dPᵀ`, then `dSᵀ`, of one block [T, BLOCK] (backward only).
    dpt: Vec<F>,
}

/// Scratch for `b` sequences of up to `t` positions with model dim `c`.
pub fn scratch<F: Float>(b: usize, t: usize, c: usize) -> Vec<AttnScratch<F>> {
    (0..b)
        .map(|_| AttnScratch {
            qt: PackedB::new(c, BLOCK),
            dot: PackedB::new(c, BLOCK),
            pt: vec![F::ZERO; t * BLOCK],
            dpt: vec![F::ZERO; t * BLOCK],
        })
        .collect()
}

/// Forward. `out` [B·T, C] from `qkv` [B·T, 3C]; `scratch` holds ≥ B entries of [`scratch`].
pub fn attention_forward<F: Float>(
    out: &mut [F],
    scratch: &mut [AttnScratch<F>],
    qkv: &[F],
    d: AttnDims,
    scale: F,
) {
    let AttnDims { t, c, h: nh, .. } = d;
    let hd = c / nh;
    let c3 = 3 * c;
    out.par_chunks_mut(t * c)
        .zip(scratch.par_iter_mut())
        .zip(qkv.par_chunks(t * c3))
        .for_each(|((out, s), qkv)| {
            for i0 in (0..t).step_by(BLOCK) {
                let i1 = (i0 + BLOCK).min(t);
                let nq = i1 - i0;
                // Qᵀ[C, nq] of all heads: element (p, q) = qkv[(i0+q)·3C + p].
                s.qt.pack(&qkv[i0 * c3..], c, nq, 1, c3);
                for h in 0..nh {
                    let vo = 2 * c + h * hd;
                    let pt = &mut s.pt[..i1 * nq];
                    probabilities_block(pt, &s.qt, qkv, d, h, i0, scale);
                    for QueryGroup { q0, nqg, keys } in query_groups(i0, nq) {
                        // O[group, head] = (Pᵀ)ᵀ · V[0..keys]             ([nqg×keys]·[keys×D])
                        gemm(
                            nqg,
                            hd,
                            keys,
                            MatA::transposed(&pt[q0..], nq),
                            MatB::Rows {
                                data: &qkv[vo..],
                                rs: c3,
                            },
                            &mut out[(i0 + q0) * c + h * hd..],
                            c,
                            Update::Overwrite,
                        );
                    }
                }
            }
        });
}

/// `Pᵀ` [i1, nq] of head `h` for the queries `i0..i1` (i1 = min(i0 + BLOCK, T), nq = i1 − i0),
/// from the block's packed `Qᵀ` of all heads: column q holds query i0+q's probabilities over
/// keys `0..=i0+q`, then exact zeros.
fn probabilities_block<F: Float>(
    pt: &mut [F],
    qt: &PackedB<F>,
    qkv: &[F],
    d: AttnDims,
    h: usize,
    i0: usize,
    scale: F,
) {
    let AttnDims { t, c, h: nh, .. } = d;
    let hd = c / nh;
    let ko = c + h * hd;
    let i1 = (i0 + BLOCK).min(t);
    let nq = i1 - i0;
    // Sᵀ[0..i1, nq] = K[0..i1] · Qᵀ (this head's D rows of it)             ([i1×D]·[D×nq]),
    // without the masked corner: the keys before the block against all its queries, then each
    // diagonal group of keys against the queries from that group on.
    scores_block(
        pt,
        qkv,
        ko,
        MatB::packed_rows(qt, h * hd),
        |q0| MatB::packed_from(qt, h * hd, q0),
        d,
        i0,
    );
    softmax_columns_causal(pt, nq, i0, scale);
}

/// `Sᵀ`-shaped product `out` [i1, nq] = `A[0..i1] · B` with `A` the rows of `qkv` at feature
/// offset `ao` (keys' `K` or `V` of one head) and `B` [D, nq] (`Qᵀ` or `dOᵀ`), skipping the
/// entries that the causal mask removes at the granularity of [`LANES`] queries: diagonal key
/// group `j` (keys `i0 + 16j .. i0 + 16j + 16`) only meets the queries from `16j` on. The
/// skipped entries of `out` are left as they were; the callers make them exact: the causal mask
/// sets them to −∞ in `Sᵀ` (so `Pᵀ` is exactly 0 there), and the backward zeroes them in `dPᵀ`
/// (so `dSᵀ` is exactly 0), which is what `dK`/`dV` read over the whole diagonal square.
fn scores_block<'b, F: Float>(
    out: &mut [F],
    qkv: &[F],
    ao: usize,
    b_all: MatB<'b, F>,
    b_from: impl Fn(usize) -> MatB<'b, F>,
    d: AttnDims,
    i0: usize,
) {
    let AttnDims { t, c, h: nh, .. } = d;
    let hd = c / nh;
    let c3 = 3 * c;
    let i1 = (i0 + BLOCK).min(t);
    let nq = i1 - i0;
    gemm(
        i0,
        nq,
        hd,
        MatA::rows(&qkv[ao..], c3),
        b_all,
        out,
        nq,
        Update::Overwrite,
    );
    for QueryGroup { q0, nqg, .. } in query_groups(i0, nq) {
        let k0 = i0 + q0;
        gemm(
            nqg,
            nq - q0,
            hd,
            MatA::rows(&qkv[k0 * c3 + ao..], c3),
            b_from(q0),
            &mut out[k0 * nq + q0..],
            nq,
            Update::Overwrite,
        );
    }
}

/// One group of up to [`LANES`] queries of a block: columns `q0..q0 + nqg` of the block's
/// `Sᵀ`/`Pᵀ`, which see keys `0..keys` (= up to the group's last query).
#[derive(Clone, Copy, Debug)]
struct QueryGroup {
    q0: usize,
    nqg: usize,
    keys: usize,
}

/// The query groups of the block starting at query `i0` with `nq` queries.
fn query_groups(i0: usize, nq: usize) -> impl Iterator<Item = QueryGroup> {
    (0..nq).step_by(LANES).map(move |q0| {
        let nqg = LANES.min(nq - q0);
        QueryGroup {
            q0,
            nqg,
            keys: i0 + q0 + nqg,
        }
    })
}

simd_fn! {
    /// Column softmax of `scale·Sᵀ` in place, `st` [i1, nq]: column q over keys `0..=i0+q` (the
    /// keys after it — in the block's diagonal rows `i0..i1` — masked and set to exactly 0).
    fn softmax_columns_causal(st: &mut [F], nq: usize, i0: usize, scale: F)
        = softmax_columns_causal_lanes;
}

#[inline(always)]
fn softmax_columns_causal_lanes<F: Float>(st: &mut [F], nq: usize, i0: usize, scale: F) {
    // Mask first: key j > query i0+q, i.e. in diagonal row j = i0+r, the columns q < r (this
    // also covers the corner [`scores_block`] skipped).
    for (r, row) in st[i0 * nq..].chunks_exact_mut(nq).enumerate() {
        row[..r].fill(F::NEG_INFINITY);
    }
    let mut q0 = 0;
    while nq - q0 >= BLOCK {
        softmax_columns::<F, BLOCK>(st, nq, q0, scale);
        q0 += BLOCK;
    }
    while nq - q0 >= LANES {
        softmax_columns::<F, LANES>(st, nq, q0, scale);
        q0 += LANES;
    }
    for q in q0..nq {
        softmax_columns::<F, 1>(st, nq, q, scale);
    }
    // The masked keys came out as exact zeros (e^−∞ = 0, also in the f32 `exp`): the products
    // read them.
}

/// Columns `q0..q0+W` of [`softmax_columns_causal_lanes`] (maxima, exponentials and sums held
/// in registers while the loops run down the keys; sums in key order).
#[inline(always)]
fn softmax_columns<F: Float, const W: usize>(st: &mut [F], nq: usize, q0: usize, scale: F) {
    let mut m = [F::NEG_INFINITY; W];
    for row in st.chunks_exact(nq) {
        // (Slicing first lets the compiler drop the bounds checks and vectorise.)
        let x = &row[q0..q0 + W];
        for k in 0..W {
            m[k] = m[k].max(x[k]);
        }
    }
    let mut sum = [F::ZERO; W];
    for row in st.chunks_exact_mut(nq) {
        let x = &mut row[q0..q0 + W];
        for k in 0..W {
            let e = ((x[k] - m[k]) * scale).exp();
            x[k] = e;
            sum[k] += e;
        }
    }
    let inv: [F; W] = std::array::from_fn(|k| F::ONE / sum[k]);
    for row in st.chunks_exact_mut(nq) {
        let x = &mut row[q0..q0 + W];
        for k in 0..W {
            x[k] *= inv[k];
        }
    }
}

/// Backward. Overwrites `dqkv` [B·T, 3C] from `dout` [B·T, C] and the saved `qkv`; `scratch` as
/// in the forward.
///
/// With P = softmax(S): `dP = dO·Vᵀ`, `dV = Pᵀ·dO`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`,
/// `dQ = scale·dS·K`, `dK = scale·dSᵀ·Q` (the scale is folded into dS). Each key's dK and dV are
/// summed over the query blocks in order.
pub fn attention_backward<F: Float>(
    dqkv: &mut [F],
    scratch: &mut [AttnScratch<F>],
    dout: &[F],
    qkv: &[F],
    d: AttnDims,
    scale: F,
) {
    let AttnDims { t, c, h: nh, .. } = d;
    let hd = c / nh;
    let c3 = 3 * c;
    dqkv.par_chunks_mut(t * c3)
        .zip(scratch.par_iter_mut())
        .zip(dout.par_chunks(t * c))
        .zip(qkv.par_chunks(t * c3))
        .for_each(|(((dqkv, s), dout), qkv)| {
            // dK and dV are sums over the query blocks: start from 0.
            for row in dqkv.chunks_exact_mut(c3) {
                row[c..].fill(F::ZERO);
            }
            for i0 in (0..t).step_by(BLOCK) {
                let i1 = (i0 + BLOCK).min(t);
                let nq = i1 - i0;
                // Qᵀ and dOᵀ [C, nq] of all heads.
                s.qt.pack(&qkv[i0 * c3..], c, nq, 1, c3);
                s.dot.pack(&dout[i0 * c..], c, nq, 1, c);
                for h in 0..nh {
                    let (qo, ko, vo) = (h * hd, c + h * hd, 2 * c + h * hd);
                    let pt = &mut s.pt[..i1 * nq];
                    let dpt = &mut s.dpt[..i1 * nq];
                    probabilities_block(pt, &s.qt, qkv, d, h, i0, scale);
                    // dPᵀ[0..i1, nq] = V[0..i1] · dOᵀ (this head's rows), trimmed like Sᵀ
                    let dot = &s.dot;
                    scores_block(
                        dpt,
                        qkv,
                        vo,
                        MatB::packed_rows(dot, h * hd),
                        |q0| MatB::packed_from(dot, h * hd, q0),
                        d,
                        i0,
                    );
                    // The corner scores_block skipped: zeros (finite, so that P = 0 there
                    // gives dS = 0).
                    for QueryGroup { q0, nqg, .. } in query_groups(i0, nq) {
                        for row in dpt[(i0 + q0) * nq..(i0 + q0 + nqg) * nq].chunks_exact_mut(nq) {
                            row[..q0].fill(F::ZERO);
                        }
                    }
                    softmax_backward_columns(dpt, pt, nq, scale);
                    for QueryGroup { q0, nqg, keys } in query_groups(i0, nq) {
                        // dQ[group] = (dSᵀ)ᵀ · K[0..keys]              ([nqg×keys]·[keys×D])
                        gemm(
                            nqg,
                            hd,
                            keys,
                            MatA::transposed(&dpt[q0..], nq),
                            MatB::Rows {
                                data: &qkv[ko..],
                                rs: c3,
                            },
                            &mut dqkv[(i0 + q0) * c3 + qo..],
                            c3,
                            Update::Overwrite,
                        );
                    }
                    // dK[0..i1] += dSᵀ · Q[i0..i1]                              ([i1×nq]·[nq×D])
                    // (the skipped corner holds exact zeros in dSᵀ and Pᵀ by now).
                    gemm(
                        i1,
                        hd,
                        nq,
                        MatA::rows(dpt, nq),
                        MatB::Rows {
                            data: &qkv[i0 * c3 + qo..],
                            rs: c3,
                        },
                        &mut dqkv[ko..],
                        c3,
                        Update::Accumulate,
                    );
                    // dV[0..i1] += Pᵀ · dO[i0..i1]
                    gemm(
                        i1,
                        hd,
                        nq,
                        MatA::rows(pt, nq),
                        MatB::Rows {
                            data: &dout[i0 * c + h * hd..],
                            rs: c,
                        },
                        &mut dqkv[vo..],
                        c3,
                        Update::Accumulate,
                    );
                }
            }
        });
}

simd_fn! {
    /// `dpt ← scale·pt ⊙ (dpt − colsum(pt ⊙ dpt))` column-wise over `[rows, nq]` (the columns'
    /// dot products summed in key order). Masked entries have `pt = 0` (and a finite `dpt`) and
    /// come out 0.
    fn softmax_backward_columns(dpt: &mut [F], pt: &[F], nq: usize, scale: F)
        = softmax_backward_columns_lanes;
}

#[inline(always)]
fn softmax_backward_columns_lanes<F: Float>(dpt: &mut [F], pt: &[F], nq: usize, scale: F) {
    let mut q0 = 0;
    while nq - q0 >= BLOCK {
        softmax_backward_cols::<F, BLOCK>(dpt, pt, nq, q0, scale);
        q0 += BLOCK;
    }
    while nq - q0 >= LANES {
        softmax_backward_cols::<F, LANES>(dpt, pt, nq, q0, scale);
        q0 += LANES;
    }
    for q in q0..nq {
        softmax_backward_cols::<F, 1>(dpt, pt, nq, q, scale);
    }
}

#[inline(always)]
fn softmax_backward_cols<F: Float, const W: usize>(
    dpt: &mut [F],
    pt: &[F],
    nq: usize,
    q0: usize,
    scale: F,
) {
    let mut dot = [F::ZERO; W];
    for (d, p) in dpt.chunks_exact(nq).zip(pt.chunks_exact(nq)) {
        let (d, p) = (&d[q0..q0 + W], &p[q0..q0 + W]);
        for k in 0..W {
            dot[k] += p[k] * d[k];
        }
    }
    for (d, p) in dpt.chunks_exact_mut(nq).zip(pt.chunks_exact(nq)) {
        let (d, p) = (&mut d[q0..q0 + W], &p[q0..q0 + W]);
        for k in 0..W {
            d[k] = scale * p[k] * (d[k] - dot[k]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) (a 64-bit LCG's top bits).
    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// Plain causal attention and its backward, written out from the definitions, in f64:
    /// returns `(out [B·T, C], dqkv [B·T, 3C])`.
    fn reference(qkv: &[f64], dout: &[f64], d: AttnDims, scale: f64) -> (Vec<f64>, Vec<f64>) {
        let AttnDims { b, t, c, h: nh } = d;
        let (hd, c3) = (c / nh, 3 * c);
        let mut out = vec![0.0; b * t * c];
        let mut dqkv = vec![0.0; b * t * c3];
        for s in 0..b {
            let row = |i: usize| s * t + i;
            for h in 0..nh {
                let (qo, ko, vo) = (h * hd, c + h * hd, 2 * c + h * hd);
                for i in 0..t {
                    let sc: Vec<f64> = (0..=i)
                        .map(|j| {
                            scale
                                * (0..hd)
                                    .map(|p| qkv[row(i) * c3 + qo + p] * qkv[row(j) * c3 + ko + p])
                                    .sum::<f64>()
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    let p: Vec<f64> = e.iter().map(|x| x / z).collect();
                    for (j, &pj) in p.iter().enumerate() {
                        for k in 0..hd {
                            out[row(i) * c + h * hd + k] += pj * qkv[row(j) * c3 + vo + k];
                        }
                    }
                    // dP_j = dO_i·V_j, dS_j = P_j (dP_j − Σ P dP), dQ_i = scale Σ dS_j K_j, …
                    let dp: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..hd)
                                .map(|k| dout[row(i) * c + h * hd + k] * qkv[row(j) * c3 + vo + k])
                                .sum::<f64>()
                        })
                        .collect();
                    let dot: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                    for j in 0..=i {
                        let ds = p[j] * (dp[j] - dot) * scale;
                        for k in 0..hd {
                            dqkv[row(i) * c3 + qo + k] += ds * qkv[row(j) * c3 + ko + k];
                            dqkv[row(j) * c3 + ko + k] += ds * qkv[row(i) * c3 + qo + k];
                            dqkv[row(j) * c3 + vo + k] += p[j] * dout[row(i) * c + h * hd + k];
                        }
                    }
                }
            }
        }
        (out, dqkv)
    }

    /// The blocked, key-major, corner-skipping kernels against the definition, at sequence
    /// lengths that leave partial query groups and blocks (and at exact multiples).
    #[test]
    fn matches_the_definition_at_every_block_shape() {
        for &t in &[1usize, 5, 16, 17, 63, 64, 65, 100, 130, 256] {
            let d = AttnDims {
                b: 2,
                t,
                c: 32,
                h: 2,
            };
            let qkv = values(d.b * t * 3 * d.c, t as u64);
            let dout = values(d.b * t * d.c, 1000 + t as u64);
            let scale = 0.3;
            let (want_out, want_dqkv) = reference(&qkv, &dout, d, scale);
            let mut s = scratch::<f64>(d.b, t, d.c);
            let mut out = vec![f64::NAN; d.b * t * d.c];
            attention_forward(&mut out, &mut s, &qkv, d, scale);
            let mut dqkv = vec![f64::NAN; d.b * t * 3 * d.c];
            attention_backward(&mut dqkv, &mut s, &dout, &qkv, d, scale);
            for (name, got, want) in [("out", &out, &want_out), ("dqkv", &dqkv, &want_dqkv)] {
                let worst = got
                    .iter()
                    .zip(want.iter())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f64, f64::max);
                assert!(worst < 1e-12, "T {t}: {name} differs by {worst}");
            }
        }
    }
}
