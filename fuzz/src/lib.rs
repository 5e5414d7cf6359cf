//! Shared by the fuzz target and the seed generator.
use std::ops::ControlFlow;

use tinypoet_core::blob::{self, BlobInput, Manifest, ScaleDtype, WeightDtype};
use tinypoet_core::{
    state_words, tensor_specs, Config, Decoder, GenerateSettings, KvPrecision, Model,
};

/// Make a (mutated) blob self-consistent in the two places a checksum-like check lives: the
/// declared total length (bytes 16..24) and the trailing CRC-32. So the parser's structural
/// checks, not the checksum, must catch the damage.
pub fn reseal(b: &mut [u8]) {
    if b.len() >= 24 {
        let n = b.len() as u64;
        b[16..24].copy_from_slice(&n.to_le_bytes());
    }
    if b.len() >= 4 {
        let n = b.len();
        let c = tinypoet_core::crc32::crc32(&b[..n - 4]);
        b[n - 4..].copy_from_slice(&c.to_le_bytes());
    }
}

/// Parse; if the blob is valid, run it a little (the decoder must not panic either).
pub fn exercise(data: &[u8]) {
    let mut buf = data.to_vec();
    reseal(&mut buf);
    let Ok(model) = Model::load(&buf) else { return };
    let words = state_words(model.config(), KvPrecision::F16);
    if words > 1 << 20 {
        return;
    }
    let mut state = vec![0f32; words];
    let Ok(mut dec) = Decoder::new(&model, &mut state, KvPrecision::F16) else {
        panic!("valid blob but Decoder::new failed")
    };
    let tok = model.tokenizer();
    let prompt: String = tok.chars().skip(1).take(2).collect();
    let settings = GenerateSettings {
        max_new_chars: 4,
        ..GenerateSettings::default()
    };
    if !prompt.is_empty() {
        // Valid weights can still overflow f32 in the activations (f16 values near 65504): that
        // is a typed error (issue 20 #7), anything else is a bug.
        match dec.generate(&prompt, &settings, |_| ControlFlow::Continue(())) {
            Ok(_) | Err(tinypoet_core::Error::NonFiniteLogits) => {}
            Err(e) => panic!("generate on a valid blob: {e:?}"),
        }
    }
}

/// Small valid blobs for the seed corpus: each config as f16 and as int8 (groups of 4 with f16
/// scales, and of 8 with f32 scales where the rows allow it), so the fuzzer mutates int8
/// directories, values and scales too.
pub fn seed_blobs() -> Vec<Vec<u8>> {
    let mut out = vec![];
    let int8 = |g| WeightDtype::Q8 {
        group_size: g,
        scale: if g == 4 {
            ScaleDtype::F16
        } else {
            ScaleDtype::F32
        },
    };
    for (i, ((v, c, h, l, t, f), dtype)) in [
        ((6, 4, 1, 1, 4, 4), WeightDtype::F16),
        ((9, 8, 2, 1, 8, 8), WeightDtype::F16),
        ((12, 8, 4, 2, 6, 16), WeightDtype::F16),
        ((6, 4, 1, 1, 4, 4), int8(4)),
        ((9, 8, 2, 1, 8, 8), int8(8)),
        ((12, 8, 4, 2, 6, 16), int8(4)),
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = Config {
            vocab_size: v,
            dim: c,
            n_heads: h,
            n_layers: l,
            context: t,
            ffn_dim: f,
            ln_eps: 1e-5,
            attn_scale: 0.5,
        };
        let mut vocab = vec!['\0', '\n'];
        vocab.extend(
            ['a', 'b', '春', '夜', '喜', '雨', '𠀀', '𠀁', '𠀂', '𠀃']
                .into_iter()
                .take(v - 2),
        );
        vocab.sort();
        let mut s = 1u32 + i as u32;
        let params: Vec<Vec<f32>> = tensor_specs(&cfg)
            .map(|sp| {
                (0..sp.shape.numel())
                    .map(|_| {
                        s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                        (s >> 8) as f32 / (1 << 24) as f32 - 0.5
                    })
                    .collect()
            })
            .collect();
        let tensors: Vec<&[f32]> = params.iter().map(|t| t.as_slice()).collect();
        let m = Manifest {
            steps: 7,
            eval_loss: 3.5,
            eval_loss_blob: f32::NAN,
            corpus_sha256: [1; 32],
            recipe: "seed",
        };
        let input = BlobInput {
            config: cfg,
            vocab: &vocab,
            manifest: m,
            dtype,
            tensors: &tensors,
        };
        let mut b = vec![0u8; blob::encoded_len(&input).unwrap()];
        blob::write(&input, &mut b).unwrap();
        out.push(b);
    }
    out
}
