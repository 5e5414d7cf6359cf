//! Linear layer `y = x·Wᵀ + b` with PyTorch's `[out, in]` weight layout.
//!
//! Both products run through the GEMM crate. Parallelism is over fixed blocks of the *output*
//! matrix, each block computed by one single-threaded GEMM over the full reduction dimension,
//! so every output element is summed in the same order on every run.

use rayon::prelude::*;

use super::Float;

/// Rows of `x`/`y` per task in the forward and in the input-gradient product.
const ROW_CHUNK: usize = 256;
/// Rows of `W` (output features) per task in the weight-gradient product.
const OUT_CHUNK: usize = 16;

/// Forward: `out[N, O] = inp[N, I] · w[O, I]ᵀ (+ b[O])`.
pub fn linear_forward<F: Float>(
    out: &mut [F],
    inp: &[F],
    w: &[F],
    b: Option<&[F]>,
    i_dim: usize,
    o_dim: usize,
) {
    out.par_chunks_mut(ROW_CHUNK * o_dim)
        .zip(inp.par_chunks(ROW_CHUNK * i_dim))
        .for_each(|(out, inp)| {
            let rows = inp.len() / i_dim;
            let beta = match b {
                Some(b) => {
                    for row in out.chunks_exact_mut(o_dim) {
                        row.copy_from_slice(b);
                    }
                    F::ONE
                }
                None => F::ZERO,
            };
            // C[rows×O] = A[rows×I] · B[I×O], B = Wᵀ read through strides (no copy).
            F::gemm(
                rows,
                i_dim,
                o_dim,
                F::ONE,
                inp,
                i_dim as isize,
                1,
                w,
                1,
                i_dim as isize,
                beta,
                out,
                o_dim as isize,
                1,
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
                    F::gemm(
                        rows,
                        o_dim,
                        i_dim,
                        F::ONE,
                        dout,
                        o_dim as isize,
                        1,
                        w,
                        i_dim as isize,
                        1,
                        F::ZERO,
                        dinp,
                        i_dim as isize,
                        1,
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
    // A = doutᵀ restricted to columns o0..o0+rows: element (o, r) at dout[r·O + o0 + o].
    F::gemm(
        rows,
        n,
        i_dim,
        F::ONE,
        &dout[o0..],
        1,
        o_dim as isize,
        inp,
        i_dim as isize,
        1,
        F::ZERO,
        dw,
        i_dim as isize,
        1,
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
