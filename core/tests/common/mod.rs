//! Test helpers: deterministic random weights, vocabularies, blob building (through the core's
//! writer) and an f64 full-recompute reference forward pass.
#![allow(dead_code)]

use tinypoet_core::blob::{self, BlobInput, Manifest, WeightDtype};
use tinypoet_core::{tensor_specs, Config, Rng, TensorKind};

/// Test data from the core's own generator ([`tinypoet_core::Rng`], PCG32): one documented
/// generator for the sampler and the test data.
pub struct TestRng(Rng);
impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng(Rng::new(seed))
    }
    /// 64 random bits: two draws, the first one high.
    pub fn next_u64(&mut self) -> u64 {
        (u64::from(self.0.next_u32()) << 32) | u64::from(self.0.next_u32())
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A small config for fast tests.
pub fn small_config() -> Config {
    Config {
        vocab_size: 40,
        dim: 16,
        n_heads: 4,
        n_layers: 2,
        context: 12,
        ffn_dim: 24,
        ln_eps: 1e-5,
        attn_scale: 0.25,
    }
}

/// `n` chars: '\0', '\n', then ASCII and CJK, the last `astral` above U+FFFF; sorted.
pub fn make_vocab(n: usize, astral: usize) -> Vec<char> {
    let mut v = vec!['\0', '\n'];
    let bmp = n - astral;
    let mut cp = 0x20u32;
    while v.len() < bmp {
        if let Some(c) = char::from_u32(cp) {
            v.push(c);
        }
        cp = if cp == 0x7E { 0x4E00 } else { cp + 1 };
    }
    for i in 0..astral as u32 {
        v.push(char::from_u32(0x20000 + 3 * i).unwrap());
    }
    assert_eq!(v.len(), n);
    v
}

/// The vocabulary shape of the Tang corpus: 8548 entries, 198 above U+FFFF.
pub fn tang_like_vocab() -> Vec<char> {
    make_vocab(8548, 198)
}

/// PyTorch-like initialisation (embeddings N(0,1), Linear U(±1/sqrt(fan_in))), with LayerNorm
/// weights 1 + 0.1 N and biases 0.1 N so that every parameter matters.
pub fn random_params(cfg: &Config, seed: u64) -> Vec<Vec<f32>> {
    let mut r = TestRng::new(seed);
    tensor_specs(cfg)
        .map(|s| {
            let n = s.shape.numel();
            let fan_in = *s.shape.dims().last().unwrap() as f64;
            (0..n)
                .map(|_| match s.kind {
                    TensorKind::TokEmb | TensorKind::PosEmb => r.normal(),
                    TensorKind::Ln1Weight | TensorKind::Ln2Weight | TensorKind::LnFWeight => {
                        1.0 + 0.1 * r.normal()
                    }
                    TensorKind::Ln1Bias | TensorKind::Ln2Bias | TensorKind::LnFBias => {
                        0.1 * r.normal()
                    }
                    TensorKind::ProjBias | TensorKind::Fc2Bias => {
                        (2.0 * r.uniform() - 1.0) / (cfg.dim as f64).sqrt()
                    }
                    TensorKind::Fc1Bias => (2.0 * r.uniform() - 1.0) / (cfg.dim as f64).sqrt(),
                    TensorKind::HeadBias => (2.0 * r.uniform() - 1.0) / (cfg.dim as f64).sqrt(),
                    _ => (2.0 * r.uniform() - 1.0) / fan_in.sqrt(),
                } as f32)
                .collect()
        })
        .collect()
}

pub fn manifest() -> Manifest<'static> {
    Manifest {
        steps: 1234,
        eval_loss: 4.25,
        eval_loss_blob: f32::NAN,
        corpus_sha256: [7; 32],
        recipe: "test recipe",
    }
}

/// Encode through the core's writer (f16).
pub fn build_blob_with(cfg: &Config, vocab: &[char], params: &[Vec<f32>], m: Manifest) -> Vec<u8> {
    build_blob_dtype(cfg, vocab, params, m, WeightDtype::F16)
}

/// Encode through the core's writer with the given weight dtype.
pub fn build_blob_dtype(
    cfg: &Config,
    vocab: &[char],
    params: &[Vec<f32>],
    m: Manifest,
    dtype: WeightDtype,
) -> Vec<u8> {
    let tensors: Vec<&[f32]> = params.iter().map(|t| t.as_slice()).collect();
    let input = BlobInput {
        config: *cfg,
        vocab,
        manifest: m,
        dtype,
        tensors: &tensors,
    };
    let n = blob::encoded_len(&input).expect("valid input");
    let mut out = vec![0u8; n];
    assert_eq!(blob::write(&input, &mut out).expect("write"), n);
    out
}

pub fn build_blob(cfg: &Config, seed: u64) -> Vec<u8> {
    let vocab = make_vocab(cfg.vocab_size, cfg.vocab_size / 10);
    build_blob_with(cfg, &vocab, &random_params(cfg, seed), manifest())
}

pub fn f16_round(v: f32) -> f64 {
    half::f16::from_f32(v).to_f64()
}

/// f64 reference: full recompute over `tokens` (positions 0..n), causal, logits at every
/// position. Weights are the blob's f16 values; K and V are rounded like the cache
/// (f64 -> f32 -> f16 when `kv_f16`, else f64 -> f32).
pub fn reference_logits(
    cfg: &Config,
    params: &[Vec<f32>],
    tokens: &[u16],
    kv_f16: bool,
) -> Vec<Vec<f64>> {
    let p: Vec<Vec<f64>> = params
        .iter()
        .map(|t| t.iter().map(|&v| f16_round(v)).collect())
        .collect();
    reference_logits_f64(cfg, &p, tokens, kv_f16)
}

/// The weights an int8 blob of `params` holds, in the logical (PyTorch) layout: matrices
/// `q * scale` per the writer's quantization (exact in f64), vectors rounded to f16.
pub fn int8_weights(cfg: &Config, params: &[Vec<f32>], group: usize) -> Vec<Vec<f64>> {
    tensor_specs(cfg)
        .zip(params)
        .map(|(s, t)| {
            if s.kind.is_matrix() {
                let mut out = vec![];
                let mut q = vec![0i8; group];
                for g in t.chunks(group) {
                    let b = blob::quantize_group(g, blob::ScaleDtype::F16, &mut q);
                    let sc = half::f16::from_le_bytes([b[0], b[1]]).to_f64();
                    out.extend(q.iter().map(|&v| v as f64 * sc));
                }
                out
            } else {
                t.iter().map(|&v| f16_round(v)).collect()
            }
        })
        .collect()
}

/// The f64 reference on weights given in f64 (logical layout).
pub fn reference_logits_f64(
    cfg: &Config,
    p: &[Vec<f64>],
    tokens: &[u16],
    kv_f16: bool,
) -> Vec<Vec<f64>> {
    let (c, f, v, hd) = (cfg.dim, cfg.ffn_dim, cfg.vocab_size, cfg.head_dim());
    let n = tokens.len();
    let eps = cfg.ln_eps as f64;
    let ln = |x: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / x.len() as f64;
        let rstd = 1.0 / (var + eps as f32 as f64).sqrt();
        x.iter()
            .zip(w)
            .zip(b)
            .map(|((a, w), b)| (a - mean) * rstd * w + b)
            .collect()
    };
    // y = W x + b with W logical [out, in]
    let lin = |w: &[f64], b: Option<&[f64]>, x: &[f64], out: usize| -> Vec<f64> {
        (0..out)
            .map(|o| {
                let s: f64 = (0..x.len()).map(|k| w[o * x.len() + k] * x[k]).sum();
                s + b.map_or(0.0, |b| b[o])
            })
            .collect()
    };
    let round_kv = |a: f64| -> f64 {
        if kv_f16 {
            f16_round(a as f32)
        } else {
            a as f32 as f64
        }
    };
    let mut h: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..c)
                .map(|j| p[0][tokens[i] as usize * c + j] + p[1][i * c + j])
                .collect()
        })
        .collect();
    for l in 0..cfg.n_layers {
        let t = |k: usize| &p[2 + 13 * l + k];
        let a: Vec<Vec<f64>> = h.iter().map(|x| ln(x, t(0), t(1))).collect();
        let q: Vec<Vec<f64>> = a.iter().map(|x| lin(t(2), None, x, c)).collect();
        let k: Vec<Vec<f64>> = a
            .iter()
            .map(|x| lin(t(3), None, x, c).into_iter().map(round_kv).collect())
            .collect();
        let vv: Vec<Vec<f64>> = a
            .iter()
            .map(|x| lin(t(4), None, x, c).into_iter().map(round_kv).collect())
            .collect();
        for i in 0..n {
            let mut cat = vec![0.0; c];
            for hh in 0..cfg.n_heads {
                let r = hh * hd..(hh + 1) * hd;
                let s: Vec<f64> = (0..=i)
                    .map(|j| {
                        q[i][r.clone()]
                            .iter()
                            .zip(&k[j][r.clone()])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            * cfg.attn_scale as f64
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in r.clone() {
                    cat[d] = (0..=i).map(|j| e[j] / z * vv[j][d]).sum();
                }
            }
            let y = lin(t(5), Some(t(6)), &cat, c);
            for d in 0..c {
                h[i][d] += y[d];
            }
        }
        for x in h.iter_mut() {
            let a = ln(x, t(7), t(8));
            let hid: Vec<f64> = lin(t(9), Some(t(10)), &a, f)
                .into_iter()
                .map(|z| z.max(0.0))
                .collect();
            let y = lin(t(11), Some(t(12)), &hid, c);
            for d in 0..c {
                x[d] += y[d];
            }
        }
    }
    let base = 2 + 13 * cfg.n_layers;
    h.iter()
        .map(|x| {
            let a = ln(x, &p[base], &p[base + 1]);
            lin(&p[base + 2], Some(&p[base + 3]), &a, v)
        })
        .collect()
}

// ---- taking a blob apart and putting it back together (for crafting malformed blobs) ----
// Shared with the fuzz seed generator: one copy, in the fuzz crate.
#[path = "../../../fuzz/src/blob_parts.rs"]
mod blob_parts;
#[allow(unused_imports)] // not every test uses them
pub use blob_parts::*;
