//! Shared helpers for the cross-crate tests in `tests/tests/`: trainer <-> core agreement and
//! the export path from the trainer's parameters to the core's blob.

use tinypoet_trainer::nn::params::Params;

/// A sorted synthetic vocabulary of `n` characters: `\0` then consecutive CJK code points
/// (the core requires strictly increasing code points with `\0` at id 0).
pub fn synthetic_vocab(n: usize) -> Vec<char> {
    let mut v = vec!['\0'];
    v.extend((0x4E00u32..).take(n - 1).filter_map(char::from_u32));
    v
}

/// Round every parameter to the nearest f16 (ties to even), as the f16 blob stores it.
pub fn round_to_f16(p: &Params) -> Params {
    let mut q = p.clone();
    for x in q.data.iter_mut() {
        *x = half::f16::from_f32(*x).to_f32();
    }
    q
}

/// Deterministic token ids in `1..vocab` (a 64-bit LCG; the text's content does not matter,
/// only that every position sees a different context).
pub fn pseudo_text(len: usize, vocab: usize, seed: u64) -> Vec<u16> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (1 + (s >> 33) as usize % (vocab - 1)) as u16
        })
        .collect()
}

/// The weights an int8 blob ([`tinypoet_core::blob::WeightDtype::INT8`]) holds: every matrix
/// quantized per group of 32 by the core's writer and dequantized (`q * scale`, exact in f32),
/// every vector rounded to f16. Exporting these again gives the same blob.
pub fn int8_weights(p: &Params) -> Params {
    use tinypoet_core::blob::{quantize_group, ScaleDtype};
    let mut q = p.clone();
    let specs: Vec<_> = tinypoet_core::tensor_specs(p.config()).collect();
    let ranges: Vec<_> = p.layout.tensors().iter().map(|t| t.range()).collect();
    for (spec, r) in specs.iter().zip(ranges) {
        let t = &mut q.data[r];
        if spec.kind.is_matrix() {
            let mut qi = [0i8; 32];
            for g in t.chunks_mut(32) {
                let b = quantize_group(g, ScaleDtype::F16, &mut qi[..g.len()]);
                let s = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                for (x, &v) in g.iter_mut().zip(qi.iter()) {
                    *x = v as f32 * s;
                }
            }
        } else {
            for x in t.iter_mut() {
                *x = half::f16::from_f32(*x).to_f32();
            }
        }
    }
    q
}
