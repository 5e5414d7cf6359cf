//! Token + position embedding: the first op of the model.

use rayon::prelude::*;

use super::Float;

/// Rows per parallel task.
const CHUNK_ROWS: usize = 256;

/// Forward: `out[b,t,:] = tok[inp[b,t],:] + pos[t,:]`.
///
/// `out` [B·T, C], `inp` [B·T] token ids (already checked `< V` by the caller),
/// `tok` [V, C], `pos` [≥T, C].
pub fn embedding_forward<F: Float>(
    out: &mut [F],
    inp: &[u16],
    tok: &[F],
    pos: &[F],
    t: usize,
    c: usize,
) {
    out.par_chunks_mut(CHUNK_ROWS * c)
        .enumerate()
        .for_each(|(chunk, out)| {
            for (r, row) in out.chunks_exact_mut(c).enumerate() {
                let n = chunk * CHUNK_ROWS + r;
                let id = inp[n] as usize;
                let tr = &tok[id * c..(id + 1) * c];
                let pr = &pos[(n % t) * c..(n % t + 1) * c];
                for ((o, &a), &p) in row.iter_mut().zip(tr).zip(pr) {
                    *o = a + p;
                }
            }
        });
}

/// Backward: scatter-add `dout` into the token rows that were read, and sum it over the batch
/// into the position rows. Overwrites `dtok` [V, C] and `dpos` [context, C] entirely (rows that
/// were not used get 0).
///
/// Sequential on purpose: 4,096×64 adds cost well under a millisecond, and a fixed row order
/// makes the repeated-token sums deterministic without per-thread copies of the 8,548×64 table.
pub fn embedding_backward<F: Float>(
    dtok: &mut [F],
    dpos: &mut [F],
    dout: &[F],
    inp: &[u16],
    t: usize,
    c: usize,
) {
    dtok.fill(F::ZERO);
    dpos.fill(F::ZERO);
    for (n, g) in dout.chunks_exact(c).enumerate() {
        let id = inp[n] as usize;
        for (d, &x) in dtok[id * c..(id + 1) * c].iter_mut().zip(g) {
            *d += x;
        }
        let tt = n % t;
        for (d, &x) in dpos[tt * c..(tt + 1) * c].iter_mut().zip(g) {
            *d += x;
        }
    }
}
