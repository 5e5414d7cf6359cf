//! Linear layer `y = x·Wᵀ + b` with PyTorch's `[out, in]` weight layout.
//!
//! The forward and the input gradient are split over fixed blocks of rows, each block one
//! single-threaded [`gemm`] over the full reduction dimension. The weight gradient reduces over
//! the N rows: it is split into fixed chunks of [`WGRAD_ROWS`] rows, each chunk's partial
//! `dW`/`db` computed by one task, and the partials added in chunk order — every block of the
//! input is then read once, and the result depends only on N, never on the thread count.

use rayon::prelude::*;

use super::gemm::{gemm, MatA, MatB, PackedB, Update};
use super::{num_chunks, Float};

/// Rows of `x`/`y` per task in the forward and in the input-gradient product.
const ROW_CHUNK: usize = 256;
/// Rows per partial weight gradient.
pub const WGRAD_ROWS: usize = 1024;

/// Scratch of the linear layers (shared by all of them: they run one at a time), allocated once.
#[derive(Clone, Debug)]
pub struct LinearScratch<F> {
    /// `Wᵀ` (forward) or `W` (backward), packed once per call and shared by every row block.
    w_packed: PackedB<F>,
    /// Per chunk of [`WGRAD_ROWS`] rows: the partial weight gradient (`[O, I]` or `[I, O]`).
    wparts: Vec<F>,
    /// Per chunk: the partial bias gradient `[O]`.
    bparts: Vec<F>,
}

impl<F: Float> LinearScratch<F> {
    /// Room for up to `max_rows` rows through any of the layers `(i_dim, o_dim)` listed.
    pub fn new(max_rows: usize, layers: &[(usize, usize)]) -> Self {
        let chunks = num_chunks(max_rows, WGRAD_ROWS);
        // Packed Wᵀ [I, O] (forward) and W [O, I] (backward).
        let packed: Vec<(usize, usize)> =
            layers.iter().flat_map(|&(i, o)| [(i, o), (o, i)]).collect();
        let max_w = layers.iter().map(|&(i, o)| i * o).max().unwrap_or(0);
        let max_o = layers.iter().map(|&(_, o)| o).max().unwrap_or(0);
        LinearScratch {
            w_packed: PackedB::for_shapes(&packed),
            wparts: vec![F::ZERO; chunks * max_w],
            bparts: vec![F::ZERO; chunks * max_o],
        }
    }
}

/// What the forward does with `y = x·Wᵀ (+ b)` on the way out, fused so that the result is
/// written once.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a, F> {
    /// `out = y`.
    Plain,
    /// `out = max(0, y)`: the FFN's ReLU.
    Relu,
    /// `out = r + y` for a residual stream `r` [N, O]: the block's skip connection.
    Residual(&'a [F]),
}

/// Forward: `out[N, O] = epilogue(inp[N, I] · w[O, I]ᵀ (+ b[O]))`.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward<F: Float>(
    out: &mut [F],
    inp: &[F],
    w: &[F],
    b: Option<&[F]>,
    epilogue: Epilogue<F>,
    scratch: &mut LinearScratch<F>,
    i_dim: usize,
    o_dim: usize,
) {
    // Wᵀ[I, O]: element (p, j) = w[j·I + p].
    scratch.w_packed.pack(w, i_dim, o_dim, 1, i_dim);
    let wt = &scratch.w_packed;
    out.par_chunks_mut(ROW_CHUNK * o_dim)
        .zip(inp.par_chunks(ROW_CHUNK * i_dim))
        .enumerate()
        .for_each(|(chunk, (out, inp))| {
            let rows = inp.len() / i_dim;
            // C starts as residual + bias, or the bias, and the product is added to it.
            let res = match epilogue {
                Epilogue::Residual(res) => Some(&res[chunk * ROW_CHUNK * o_dim..][..out.len()]),
                _ => None,
            };
            let update = if res.is_some() || b.is_some() {
                init_rows(out, res, b, o_dim);
                Update::Accumulate
            } else {
                Update::Overwrite
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
            if let Epilogue::Relu = epilogue {
                relu(out);
            }
        });
}

/// Backward. Overwrites all three gradients:
/// `dinp[N, I] = dout[N, O] · w[O, I]`, `dw[O, I] = doutᵀ · inp`, `db[O] = Σ_rows dout`.
///
/// With `relu_out = Some(a)` (the input `inp` is `a = ReLU(z)` of the layer below), `dinp` is
/// the gradient with respect to `z` instead: zero where `a ≤ 0` (the ReLU backward, fused).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<F: Float>(
    dinp: &mut [F],
    dw: &mut [F],
    db: Option<&mut [F]>,
    dout: &[F],
    inp: &[F],
    w: &[F],
    relu_out: Option<&[F]>,
    scratch: &mut LinearScratch<F>,
    i_dim: usize,
    o_dim: usize,
) {
    let n = inp.len() / i_dim;
    let chunks = num_chunks(n, WGRAD_ROWS);
    let (oi, with_bias) = (o_dim * i_dim, db.is_some());
    // W[O, I] as the B operand of dinp = dout·W: element (p, j) = w[p·I + j].
    scratch.w_packed.pack(w, o_dim, i_dim, i_dim, 1);
    let wp = &scratch.w_packed;
    let wparts = &mut scratch.wparts[..chunks * oi];
    let bparts = &mut scratch.bparts[..chunks * o_dim];
    rayon::join(
        || {
            dinp.par_chunks_mut(ROW_CHUNK * i_dim)
                .zip(dout.par_chunks(ROW_CHUNK * o_dim))
                .enumerate()
                .for_each(|(chunk, (dinp, dout))| {
                    let rows = dout.len() / o_dim;
                    // dinp[rows, I] = dout[rows, O] · W[O, I]
                    gemm(
                        rows,
                        i_dim,
                        o_dim,
                        MatA::rows(dout, o_dim),
                        MatB::packed(wp),
                        dinp,
                        i_dim,
                        Update::Overwrite,
                    );
                    if let Some(a) = relu_out {
                        relu_backward(dinp, &a[chunk * ROW_CHUNK * i_dim..]);
                    }
                });
        },
        || {
            wparts
                .par_chunks_mut(oi)
                .zip(bparts.par_chunks_mut(o_dim))
                .zip(dout.par_chunks(WGRAD_ROWS * o_dim))
                .zip(inp.par_chunks(WGRAD_ROWS * i_dim))
                .for_each(|(((part, bpart), dout), inp)| {
                    weight_grad_part(part, bpart, dout, inp, i_dim, o_dim, with_bias)
                });
        },
    );
    // Fixed-order combine of the partials (transposing them back when stored as [I, O]).
    let transposed = i_dim > o_dim;
    dw.par_chunks_mut(i_dim).enumerate().for_each(|(o, row)| {
        for (i, d) in row.iter_mut().enumerate() {
            let at = if transposed {
                i * o_dim + o
            } else {
                o * i_dim + i
            };
            let mut s = wparts[at];
            for q in 1..chunks {
                s += wparts[q * oi + at];
            }
            *d = s;
        }
    });
    if let Some(db) = db {
        db.copy_from_slice(&bparts[..o_dim]);
        for q in 1..chunks {
            for (d, &p) in db.iter_mut().zip(&bparts[q * o_dim..(q + 1) * o_dim]) {
                *d += p;
            }
        }
    }
}

/// One chunk of rows: the partial weight gradient (one fma chain per element over the chunk's
/// rows in order) and, if `with_bias`, the column sums of `dout` (rows in order).
///
/// The product is laid out so that its B operand has the shorter row stride (a long one makes
/// the rows of a B panel collide in the same L1 sets): `part[O, I] = doutᵀ·inp` when I ≤ O,
/// else `part[I, O] = inpᵀ·dout`.
fn weight_grad_part<F: Float>(
    part: &mut [F],
    bpart: &mut [F],
    dout: &[F],
    inp: &[F],
    i_dim: usize,
    o_dim: usize,
    with_bias: bool,
) {
    let rows = inp.len() / i_dim;
    if i_dim <= o_dim {
        // part[O, I] = doutᵀ[O, rows] · inp[rows, I]
        gemm(
            o_dim,
            i_dim,
            rows,
            MatA::transposed(dout, o_dim),
            MatB::Rows {
                data: inp,
                rs: i_dim,
            },
            part,
            i_dim,
            Update::Overwrite,
        );
    } else {
        // part[I, O] = inpᵀ[I, rows] · dout[rows, O]
        gemm(
            i_dim,
            o_dim,
            rows,
            MatA::transposed(inp, i_dim),
            MatB::Rows {
                data: dout,
                rs: o_dim,
            },
            part,
            o_dim,
            Update::Overwrite,
        );
    }
    if with_bias {
        column_sums(bpart, dout);
    }
}

/// `out` [rows, O] = `res + b`, `res`, or `b` in every row (the start of C for the product).
fn init_rows<F: Float>(out: &mut [F], res: Option<&[F]>, b: Option<&[F]>, o_dim: usize) {
    dispatch_simd!(
        init_rows,
        fn(out: &mut [F], res: Option<&[F]>, b: Option<&[F]>, o_dim: usize) -> (),
        match (res, b) {
            (Some(res), Some(b)) => {
                for (row, r) in out.chunks_exact_mut(o_dim).zip(res.chunks_exact(o_dim)) {
                    for ((o, &r), &b) in row.iter_mut().zip(r).zip(b) {
                        *o = r + b;
                    }
                }
            }
            (Some(res), None) => out.copy_from_slice(res),
            (None, Some(b)) => {
                for row in out.chunks_exact_mut(o_dim) {
                    row.copy_from_slice(b);
                }
            }
            (None, None) => {}
        }
    )
}

/// `out = max(0, out)`.
fn relu<F: Float>(out: &mut [F]) {
    dispatch_simd!(
        relu,
        fn(out: &mut [F]) -> (),
        for o in out.iter_mut() {
            *o = if *o > F::ZERO { *o } else { F::ZERO };
        }
    )
}

/// The ReLU backward, given its output `a`: `d = 0` where `a ≤ 0`.
fn relu_backward<F: Float>(d: &mut [F], a: &[F]) {
    dispatch_simd!(
        relu_backward,
        fn(d: &mut [F], a: &[F]) -> (),
        // A select, not a branch: the signs are random, a branch mispredicts.
        for (d, &a) in d.iter_mut().zip(a) {
            *d = if a > F::ZERO { *d } else { F::ZERO };
        }
    )
}

/// `sums` \[O\] = column sums of `m` [rows, O], rows in order.
fn column_sums<F: Float>(sums: &mut [F], m: &[F]) {
    dispatch_simd!(column_sums, fn(sums: &mut [F], m: &[F]) -> (), {
        sums.fill(F::ZERO);
        for row in m.chunks_exact(sums.len()) {
            for (d, &g) in sums.iter_mut().zip(row) {
                *d += g;
            }
        }
    })
}
