//! Linear layer `y = x·Wᵀ + b` with PyTorch's `[out, in]` weight layout.
//!
//! Parallelism is over fixed blocks of the *output* matrix, each block computed by one
//! single-threaded [`gemm`] over the full reduction dimension, so every output element is summed
//! in the same order on every run.

use rayon::prelude::*;

use super::gemm::{gemm, MatA, MatB, PackedB, Update};
use super::Float;

/// Rows of `x`/`y` per task in the forward and in the input-gradient product.
const ROW_CHUNK: usize = 256;
/// Rows of `W` (output features) per task in the weight-gradient product.
const OUT_CHUNK: usize = 32;

/// Forward: `out[N, O] = inp[N, I] · w[O, I]ᵀ (+ b[O])`.
///
/// `wt` is the caller's packing buffer (room for `I × O`, see [`PackedB::new`]): `Wᵀ` is packed
/// into it once per call and shared by every row block.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward<F: Float>(
    out: &mut [F],
    inp: &[F],
    w: &[F],
    b: Option<&[F]>,
    wt: &mut PackedB<F>,
    i_dim: usize,
    o_dim: usize,
) {
    // Wᵀ[I, O]: element (p, j) = w[j·I + p].
    wt.pack(w, i_dim, o_dim, 1, i_dim);
    let wt = &*wt;
    out.par_chunks_mut(ROW_CHUNK * o_dim)
        .zip(inp.par_chunks(ROW_CHUNK * i_dim))
        .for_each(|(out, inp)| {
            let rows = inp.len() / i_dim;
            // With a bias, C starts as the bias rows and the product is added to it.
            let update = match b {
                Some(b) => {
                    for row in out.chunks_exact_mut(o_dim) {
                        row.copy_from_slice(b);
                    }
                    Update::Accumulate
                }
                None => Update::Overwrite,
            };
            // out[rows, O] (+)= inp[rows, I] · Wᵀ[I, O]
            gemm(
                rows,
                o_dim,
                i_dim,
                MatA::rows(inp, i_dim),
                MatB::packed(wt),
                out,
                o_dim,
                update,
            );
        });
}

/// Backward. Overwrites all three gradients:
/// `dinp[N, I] = dout[N, O] · w[O, I]`, `dw[O, I] = doutᵀ · inp`, `db[O] = Σ_rows dout`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<F: Float>(
    dinp: &mut [F],
    dw: &mut [F],
    db: Option<&mut [F]>,
    dout: &[F],
    inp: &[F],
    w: &[F],
    i_dim: usize,
    o_dim: usize,
) {
    let n = inp.len() / i_dim;
    rayon::join(
        || {
            dinp.par_chunks_mut(ROW_CHUNK * i_dim)
                .zip(dout.par_chunks(ROW_CHUNK * o_dim))
                .for_each(|(dinp, dout)| {
                    let rows = dout.len() / o_dim;
                    // dinp[rows, I] = dout[rows, O] · W[O, I]
                    gemm(
                        rows,
                        i_dim,
                        o_dim,
                        MatA::rows(dout, o_dim),
                        MatB::Rows { data: w, rs: i_dim },
                        dinp,
                        i_dim,
                        Update::Overwrite,
                    );
                });
        },
        || match db {
            Some(db) => dw
                .par_chunks_mut(OUT_CHUNK * i_dim)
                .zip(db.par_chunks_mut(OUT_CHUNK))
                .enumerate()
                .for_each(|(k, (dw, db))| {
                    weight_grad_block(dw, Some(db), k * OUT_CHUNK, dout, inp, n, i_dim, o_dim)
                }),
            None => dw
                .par_chunks_mut(OUT_CHUNK * i_dim)
                .enumerate()
                .for_each(|(k, dw)| {
                    weight_grad_block(dw, None, k * OUT_CHUNK, dout, inp, n, i_dim, o_dim)
                }),
        },
    );
}

/// One block of output features `o0..o0+rows`: `dw[rows, I] = dout[:, o0..]ᵀ · inp` and the
/// matching bias sums, each over all `n` rows in order.
#[allow(clippy::too_many_arguments)]
fn weight_grad_block<F: Float>(
    dw: &mut [F],
    db: Option<&mut [F]>,
    o0: usize,
    dout: &[F],
    inp: &[F],
    n: usize,
    i_dim: usize,
    o_dim: usize,
) {
    let rows = dw.len() / i_dim;
    // dw[rows, I] = doutᵀ[rows, N] · inp[N, I], doutᵀ restricted to features o0..o0+rows.
    gemm(
        rows,
        i_dim,
        n,
        MatA::transposed(&dout[o0..], o_dim),
        MatB::Rows {
            data: inp,
            rs: i_dim,
        },
        dw,
        i_dim,
        Update::Overwrite,
    );
    if let Some(db) = db {
        db.fill(F::ZERO);
        for row in dout.chunks_exact(o_dim) {
            for (d, &g) in db.iter_mut().zip(&row[o0..o0 + rows]) {
                *d += g;
            }
        }
    }
}
