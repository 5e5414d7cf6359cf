//! int8 weights: the writer's quantization, the Q8 blob round trip and sizes, the int8 kernels
//! (documented order, every backend bit for bit), and whole int8 models against an f64
//! reference and across backends.
mod common;
use common::*;
use tinypoet_core::blob::{self, Dtype, Layout, ScaleDtype, WeightDtype};
use tinypoet_core::kernels::{self, Backend, Q8Matrix};
use tinypoet_core::{
    state_words, tensor_specs, Config, Decoder, Error, KvPrecision, Manifest, Model,
};

fn backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|b| b.is_available())
        .collect()
}

fn scale_of(b: [u8; 4], scale: ScaleDtype) -> f32 {
    match scale {
        ScaleDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        ScaleDtype::F32 => f32::from_le_bytes(b),
    }
}

// ---------------- the writer's quantization ----------------

#[test]
fn quantize_group_error_is_at_most_half_a_step() {
    let mut r = TestRng::new(21);
    let mut worst = 0f64;
    for case in 0..4000 {
        let n = [4, 8, 32, 64, 1024][case % 5];
        let mag = [1e-3, 0.05, 1.0, 30.0, 2000.0][case / 5 % 5];
        let v: Vec<f32> = (0..n).map(|_| (r.normal() * mag) as f32).collect();
        for scale in [ScaleDtype::F16, ScaleDtype::F32] {
            let mut q = vec![0i8; n];
            let s = scale_of(blob::quantize_group(&v, scale, &mut q), scale) as f64;
            let amax = v.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
            // the scale is max|v| / 127, rounded to the stored precision: half an ulp, relative
            // 2^-11 for a normal f16, absolute 2^-25 for a subnormal one
            let exact = amax / 127.0;
            let tol = match scale {
                ScaleDtype::F16 => (exact * 2f64.powi(-11)).max(2f64.powi(-25)),
                ScaleDtype::F32 => exact * 2f64.powi(-23),
            };
            assert!((s - exact).abs() <= tol, "scale {s} vs {exact} ({scale:?})");
            for (&x, &qi) in v.iter().zip(&q) {
                assert!((-127..=127).contains(&qi));
                let err = (x as f64 - qi as f64 * s).abs();
                // round to nearest: half a step (plus the f32 rounding of x / s); only a clamp
                // at +-127 after a scale rounded down adds at most 127 * (exact - s)
                let clamp = 127.0 * (exact - s).max(0.0);
                // (x / s is rounded to f32 before rounding to an integer: <= 127 * 2^-24 steps)
                assert!(err <= (0.5 + 1e-5) * s + clamp, "{x} -> {qi} * {s}");
                if s >= 6.2e-5 {
                    worst = worst.max(err / s);
                }
            }
            // the largest magnitude lands on +-127 (with a normal scale)
            if s < 6.2e-5 {
                continue;
            }
            let imax = v
                .iter()
                .map(|x| x.abs())
                .enumerate()
                .fold(
                    (0, 0f32),
                    |(bi, bm), (i, a)| if a > bm { (i, a) } else { (bi, bm) },
                );
            assert_eq!(q[imax.0].unsigned_abs(), 127);
        }
    }
    eprintln!("worst |w - q s| / s with a normal scale = {worst:.4}");
    assert!(worst <= 0.5 + 1e-5);
    // all-zero group: scale 0, q 0
    let mut q = [5i8; 8];
    let b = blob::quantize_group(&[0.0; 8], ScaleDtype::F16, &mut q);
    assert_eq!(scale_of(b, ScaleDtype::F16), 0.0);
    assert_eq!(q, [0; 8]);
    // a scale that underflows f16: q = 0, no division by zero
    let b = blob::quantize_group(&[1e-9, -2e-9, 0.0, 0.0], ScaleDtype::F16, &mut q[..4]);
    assert_eq!(scale_of(b, ScaleDtype::F16), 0.0);
    assert_eq!(&q[..4], &[0; 4]);
}

// ---------------- the blob ----------------

fn int8_blob(cfg: &Config, seed: u64, dtype: WeightDtype) -> (Vec<char>, Vec<Vec<f32>>, Vec<u8>) {
    let vocab = make_vocab(cfg.vocab_size, cfg.vocab_size / 10);
    let params = random_params(cfg, seed);
    let b = build_blob_dtype(cfg, &vocab, &params, manifest(), dtype);
    (vocab, params, b)
}

#[test]
fn round_trip_int8_blob() {
    let cfg = small_config();
    for (group, scale) in [
        (8u32, ScaleDtype::F16),
        (8, ScaleDtype::F32),
        (4, ScaleDtype::F16),
    ] {
        let dtype = WeightDtype::Q8 {
            group_size: group,
            scale,
        };
        let (vocab, params, b) = int8_blob(&cfg, 3, dtype);
        let parsed = blob::parse(&b).unwrap();
        assert_eq!(parsed.vocab_chars().collect::<Vec<_>>(), vocab);
        for ((t, spec), p) in parsed.tensors().zip(tensor_specs(&cfg)).zip(&params) {
            assert_eq!(t.bytes.as_ptr() as usize % 64, b.as_ptr() as usize % 64);
            if spec.kind.is_matrix() {
                assert_eq!(
                    t.entry.dtype,
                    Dtype::Q8 {
                        group_size: group,
                        scale
                    }
                );
                assert_eq!(t.entry.layout, Layout::RowMajor, "{}", spec.name);
                let (values, scales) = t.q8_parts().unwrap();
                let width = if scale == ScaleDtype::F16 { 2 } else { 4 };
                assert_eq!(values.len(), p.len());
                assert_eq!(scales.len(), p.len() / group as usize * width);
                // logical order, groups of `group` along each row; the writer's quantization
                for (gi, chunk) in p.chunks(group as usize).enumerate() {
                    let mut q = vec![0i8; chunk.len()];
                    let sb = blob::quantize_group(chunk, scale, &mut q);
                    assert_eq!(&scales[gi * width..(gi + 1) * width], &sb[..width]);
                    let got: Vec<i8> = values[gi * group as usize..][..chunk.len()]
                        .iter()
                        .map(|&u| u as i8)
                        .collect();
                    assert_eq!(got, q, "{} group {gi}", spec.name);
                }
            } else {
                assert_eq!(t.entry.dtype, Dtype::F16, "{}", spec.name);
                assert_eq!(t.entry.layout, Layout::RowMajor);
                let vals: Vec<f32> = t
                    .bytes
                    .chunks(2)
                    .map(|h| half::f16::from_le_bytes([h[0], h[1]]).to_f32())
                    .collect();
                let want: Vec<f32> = p.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
                assert_eq!(vals, want);
            }
        }
        // the test helper's independent assembler reproduces the writer byte for byte
        assert_eq!(assemble(&split(&b)), b);
        let m = Model::load(&b).unwrap();
        assert_eq!(m.q8_group(), Some(group as usize));
    }
}

#[test]
fn tang_int8_blob_sizes_meet_the_size_bars() {
    let cfg = Config::TANG;
    let vocab = tang_like_vocab();
    let params = random_params(&cfg, 9);
    let b = build_blob_dtype(&cfg, &vocab, &params, Manifest::EMPTY, WeightDtype::INT8);
    let m = Model::load(&b).unwrap();
    let tensor_bytes: u64 = m.blob().tensors().map(|t| t.entry.nbytes).sum();
    // matrices: 1 byte + 2/32 bytes per value; vectors: 2 bytes per value
    let matrix: u64 = tensor_specs(&cfg)
        .filter(|s| s.kind.is_matrix())
        .map(|s| s.shape.numel() as u64)
        .sum();
    assert_eq!(matrix, 1_307_136);
    assert_eq!(
        tensor_bytes,
        matrix + matrix / 32 * 2 + 2 * (1_318_372 - matrix)
    );
    eprintln!(
        "Tang int8 blob: {} bytes, tensor bytes {tensor_bytes}",
        b.len()
    );
    // The size bars (tensors <= 1.45 MB, blob <= 1.5 MB); fixed by the shapes, whatever the
    // weights.
    assert!(tensor_bytes <= 1_450_000);
    assert!(b.len() <= 1_500_000);
}

#[test]
fn writer_rejects_unusable_group_sizes() {
    let cfg = small_config(); // dim 16, ffn 24
    let params = random_params(&cfg, 1);
    let vocab = make_vocab(cfg.vocab_size, 2);
    let tensors: Vec<&[f32]> = params.iter().map(|t| t.as_slice()).collect();
    for g in [0u32, 1, 2, 3, 6, 16, 32, 2048] {
        let input = blob::BlobInput {
            config: cfg,
            vocab: &vocab,
            manifest: Manifest::EMPTY,
            dtype: WeightDtype::Q8 {
                group_size: g,
                scale: ScaleDtype::F16,
            },
            tensors: &tensors,
        };
        assert_eq!(
            blob::encoded_len(&input).err(),
            Some(Error::InvalidGroupSize { group_size: g }),
            "group {g}"
        );
        let mut out = vec![0u8; 1 << 16];
        assert_eq!(
            blob::write(&input, &mut out).err(),
            Some(Error::InvalidGroupSize { group_size: g })
        );
    }
}

// ---------------- kernels ----------------

/// The documented quantization, written out independently.
fn quantize_reference(x: &[f32], g: usize) -> (Vec<i16>, Vec<f32>) {
    let mut q = vec![];
    let mut s = vec![];
    for xg in x.chunks(g) {
        let amax = xg
            .iter()
            .fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
        let scale = amax / 127.0;
        s.push(scale);
        for &v in xg {
            let r = (v / scale).round_ties_even();
            q.push(if r.is_nan() {
                0
            } else {
                r.clamp(-127.0, 127.0) as i16
            });
        }
    }
    (q, s)
}

fn random_q8(
    r: &mut TestRng,
    rows: usize,
    n_in: usize,
    g: usize,
    scale: ScaleDtype,
) -> (Vec<u8>, Vec<u8>) {
    let values: Vec<u8> = (0..rows * n_in).map(|_| r.below(256) as u8).collect();
    let scales: Vec<u8> = (0..rows * n_in / g)
        .flat_map(|_| {
            let s = (r.uniform() * 0.02) as f32;
            match scale {
                ScaleDtype::F16 => half::f16::from_f32(s).to_le_bytes().to_vec(),
                ScaleDtype::F32 => s.to_le_bytes().to_vec(),
            }
        })
        .collect();
    (values, scales)
}

#[test]
fn quantize_q8_matches_the_documented_rule_and_layout() {
    let mut r = TestRng::new(31);
    for case in 0..500 {
        let g = [4, 8, 32, 64, 1024][case % 5];
        let n = g * (1 + r.below(6));
        let mag = [1e-30, 1e-3, 1.0, 1e4][case / 5 % 4];
        let mut x: Vec<f32> = (0..n).map(|_| (r.normal() * mag) as f32).collect();
        if case % 7 == 0 {
            x[..g].fill(0.0); // a zero group
        }
        if case % 11 == 0 {
            // exact ties: scale = m (a power of two), so x / scale = 2.5 and -3.5
            let m = [0.25f32, 1.0, 64.0][case % 3];
            x[..4].copy_from_slice(&[127.0 * m, 2.5 * m, -3.5 * m, 0.5 * m]);
            x[4..g].fill(0.0);
        }
        let (want_q, want_s) = quantize_reference(&x, g);
        if case % 11 == 0 {
            assert_eq!(&want_q[..4], &[127, 2, -4, 0], "round half to even");
        }
        let mut out = vec![f32::NAN; kernels::q8_act_words(n, g)];
        kernels::quantize_q8(Backend::Scalar, &mut out, &x, g);
        let words = g / 2 + 1;
        for gi in 0..n / g {
            let w = &out[gi * words..(gi + 1) * words];
            let q: &[i16] = bytemuck_cast(&w[..g / 2]);
            for b in 0..g / 4 {
                // pair order 0, 2, 1, 3
                let k = gi * g + 4 * b;
                assert_eq!(
                    [q[4 * b], q[4 * b + 2], q[4 * b + 1], q[4 * b + 3]],
                    [want_q[k], want_q[k + 1], want_q[k + 2], want_q[k + 3]],
                    "case {case} group {gi}"
                );
            }
            assert_eq!(w[g / 2].to_bits(), want_s[gi].to_bits());
        }
        for be in backends() {
            let mut o2 = vec![f32::NAN; out.len()];
            kernels::quantize_q8(be, &mut o2, &x, g);
            assert!(o2.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
    // non-finite inputs never panic: NaN -> 0; an infinite maximum zeroes its group
    let x = [
        f32::NAN,
        1.0,
        -2.0,
        f32::INFINITY,
        0.5,
        0.25,
        f32::NEG_INFINITY,
        3.0,
    ];
    let mut out = vec![0f32; kernels::q8_act_words(8, 4)];
    kernels::quantize_q8(Backend::Scalar, &mut out, &x, 4);
}

fn bytemuck_cast(w: &[f32]) -> &[i16] {
    // little-endian: word i holds i16 2i (low half) and 2i+1 (high half)
    bytemuck::cast_slice(w)
}

#[test]
fn matvec_q8_follows_the_documented_order_on_every_backend() {
    let mut r = TestRng::new(41);
    for case in 0..720 {
        // groups that are and are not multiples of the SIMD chunks (16 and 32 values); row
        // counts that are and are not multiples of the SIMD blocks (8 and 16 rows)
        let g = [4, 8, 12, 16, 20, 32, 32, 36, 48, 64, 100, 1024][case % 12];
        let n_in = g * (1 + r.below(if g >= 64 { 3 } else { 9 }));
        let rows = 1 + r.below(if case % 5 == 0 { 700 } else { 70 });
        let n_out = rows - r.below(rows.min(3));
        let scale = if case / 12 % 3 == 0 {
            ScaleDtype::F32
        } else {
            ScaleDtype::F16
        };
        let (values, scales) = random_q8(&mut r, rows, n_in, g, scale);
        let w = Q8Matrix::new(&values, &scales, scale, g, rows, n_in).unwrap();
        let x: Vec<f32> = (0..n_in).map(|_| r.normal() as f32).collect();
        let mut xq = vec![0f32; kernels::q8_act_words(n_in, g)];
        kernels::quantize_q8(Backend::Scalar, &mut xq, &x, g);
        let (qx, sx) = quantize_reference(&x, g);
        let y0: Vec<f32> = (0..n_out).map(|_| r.normal() as f32).collect();
        // the documented order, written out
        let mut want = y0.clone();
        for (o, acc) in want.iter_mut().enumerate() {
            for (gi, &xs) in sx.iter().enumerate() {
                let isum: i64 = (0..g)
                    .map(|j| {
                        let k = gi * g + j;
                        values[o * n_in + k] as i8 as i64 * qx[k] as i64
                    })
                    .sum();
                let ws = w.scale(o * (n_in / g) + gi);
                let s = ws * xs;
                let p = isum as f32 * s;
                *acc += p;
            }
        }
        for be in backends() {
            let mut y = y0.clone();
            kernels::matvec_q8(be, &mut y, &xq, &w);
            assert!(
                y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{be:?} {n_out}/{rows}x{n_in} g{g} {scale:?}"
            );
        }
    }
}

/// The SIMD kernels against the scalar body on inputs `quantize_q8` never produces: any i16
/// activations (down to -32768, so a group's i32 sum can wrap) and any i8 weights, with f16
/// and f32 scales of every magnitude. The scalar body adds with wrapping arithmetic, and so
/// do the SIMD ones (in another order, which wrapping addition does not see): same bits.
#[test]
fn matvec_q8_simd_equals_scalar_on_any_activation_values() {
    let mut r = TestRng::new(43);
    let simd: Vec<Backend> = backends()
        .into_iter()
        .filter(|&b| b != Backend::Scalar)
        .collect();
    for case in 0..300 {
        let g = [4, 12, 16, 24, 32, 40, 64, 1024][case % 8];
        let n_in = g * (1 + r.below(if g >= 64 { 2 } else { 6 }));
        let rows = 1 + r.below(40);
        let n_out = rows - r.below(rows.min(2));
        let scale = if case / 8 % 2 == 0 {
            ScaleDtype::F16
        } else {
            ScaleDtype::F32
        };
        let extreme = case % 5 == 0; // every weight -128, every activation -32768
        let (mut values, scales) = random_q8(&mut r, rows, n_in, g, scale);
        if extreme {
            values.fill(0x80);
        }
        let words = g / 2 + 1;
        let mut xq = vec![0f32; kernels::q8_act_words(n_in, g)];
        for (i, v) in xq.iter_mut().enumerate() {
            *v = if i % words == g / 2 {
                // the group's activation scale: any magnitude, either sign
                ((r.normal() * 4.0).exp2() * r.normal()) as f32
            } else if extreme {
                f32::from_bits(0x8000_8000)
            } else {
                f32::from_bits(r.next_u64() as u32)
            };
        }
        let w = Q8Matrix::new(&values, &scales, scale, g, rows, n_in).unwrap();
        let y0: Vec<f32> = (0..n_out).map(|_| r.normal() as f32).collect();
        let mut want = y0.clone();
        kernels::matvec_q8(Backend::Scalar, &mut want, &xq, &w);
        if extreme && g == 1024 {
            // 1024 products of 2^22: the group sum wraps to 0, and the output stays y0
            assert_eq!(want, y0);
        }
        for &be in &simd {
            let mut y = y0.clone();
            kernels::matvec_q8(be, &mut y, &xq, &w);
            assert!(
                y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{be:?} case {case}: {n_out}/{rows}x{n_in} g{g} {scale:?}"
            );
        }
    }
}

#[test]
fn q8_matrix_rejects_inconsistent_sizes() {
    let v = vec![0u8; 64];
    let s = vec![0u8; 4];
    assert!(Q8Matrix::new(&v, &s, ScaleDtype::F16, 32, 2, 32).is_some());
    assert!(Q8Matrix::new(&v, &s, ScaleDtype::F16, 32, 1, 64).is_some());
    assert!(Q8Matrix::new(&v, &s, ScaleDtype::F32, 32, 2, 32).is_none());
    assert!(Q8Matrix::new(&v, &s, ScaleDtype::F16, 16, 2, 32).is_none());
    assert!(Q8Matrix::new(&v, &s, ScaleDtype::F16, 32, 4, 16).is_none());
    assert!(Q8Matrix::new(&v[..63], &s, ScaleDtype::F16, 32, 2, 32).is_none());
    assert!(Q8Matrix::new(&v, &s, ScaleDtype::F16, 0, 2, 32).is_none());
    // kernels given too little activation room do nothing rather than panic
    let w = Q8Matrix::new(&v, &s, ScaleDtype::F16, 32, 2, 32).unwrap();
    let mut y = [1.0f32; 2];
    if !cfg!(debug_assertions) {
        kernels::matvec_q8(Backend::Scalar, &mut y, &[0.0; 3], &w);
        assert_eq!(y, [1.0; 2]);
    }
}

// ---------------- whole models ----------------

#[test]
fn int8_model_matches_the_f64_reference_on_its_own_weights() {
    // The reference runs in f64 on exactly the weights the blob holds (q * scale); what is left
    // is the activations' quantization (half a step of max|x|/127 per group) and f32 rounding.
    let cfg = Config {
        vocab_size: 300,
        dim: 64,
        n_heads: 4,
        n_layers: 2,
        context: 64,
        ffn_dim: 256,
        ln_eps: 1e-5,
        attn_scale: 0.25,
    };
    let vocab = make_vocab(cfg.vocab_size, 10);
    let params = random_params(&cfg, 17);
    let b = build_blob_dtype(&cfg, &vocab, &params, manifest(), WeightDtype::INT8);
    let f16_blob = build_blob_with(&cfg, &vocab, &params, manifest());
    let m = Model::load(&b).unwrap();
    let m16 = Model::load(&f16_blob).unwrap();
    let mut r = TestRng::new(6);
    let tokens: Vec<u16> = (0..cfg.context)
        .map(|_| r.below(cfg.vocab_size) as u16)
        .collect();
    let reference = reference_logits_f64(&cfg, &int8_weights(&cfg, &params, 32), &tokens, true);
    let reference16 = reference_logits(&cfg, &params, &tokens, true);
    let mut buf = vec![0f32; state_words(&cfg, KvPrecision::F16)];
    let mut buf16 = buf.clone();
    let mut dec = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    let mut dec16 = Decoder::new(&m16, &mut buf16, KvPrecision::F16).unwrap();
    let (mut worst, mut spread, mut worst_vs_f16) = (0f64, 0f64, 0f64);
    for (pos, &t) in tokens.iter().enumerate() {
        let l = dec.feed(t).unwrap();
        let l16 = dec16.feed(t).unwrap();
        for ((a, b), c) in l.iter().zip(&reference[pos]).zip(&reference16[pos]) {
            worst = worst.max((*a as f64 - b).abs());
            spread = spread.max(b.abs());
            worst_vs_f16 = worst_vs_f16.max((*a as f64 - c).abs());
        }
        let d16 = l16
            .iter()
            .zip(&reference16[pos])
            .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
        assert!(d16 < 1e-4);
    }
    eprintln!(
        "int8 model: max |logit - f64 reference on the int8 weights| = {worst:.4} \
         (logits up to {spread:.2}); vs the unquantized f16 reference {worst_vs_f16:.4}"
    );
    // Activation quantization moves a logit by ~1e-2 here; a wrong scale, group or pairing
    // moves it by O(1).
    assert!(worst < 0.05, "{worst}");
    assert!(worst_vs_f16 < 0.25, "{worst_vs_f16}");
}

#[test]
fn int8_whole_model_logits_identical_on_every_backend_including_slides() {
    let cfg = Config::TANG;
    let b = build_blob_dtype(
        &cfg,
        &tang_like_vocab(),
        &random_params(&cfg, 4),
        Manifest::EMPTY,
        WeightDtype::INT8,
    );
    let m = Model::load(&b).unwrap();
    let mut r = TestRng::new(9);
    let tokens: Vec<u16> = (0..300).map(|_| r.below(8548) as u16).collect();
    for kv in [KvPrecision::F16, KvPrecision::Q8] {
        let mut all: Vec<Vec<u32>> = vec![];
        for be in backends() {
            let mut buf = vec![0f32; state_words(m.config(), kv)];
            let mut d = Decoder::with_backend(&m, &mut buf, kv, be).unwrap();
            let mut bits = vec![];
            for &t in &tokens {
                bits.extend(d.feed(t).unwrap().iter().map(|v| v.to_bits()));
            }
            all.push(bits);
        }
        eprintln!(
            "int8 Tang model, KV {kv:?}: {} backends over 300 positions",
            all.len()
        );
        assert!(
            all.windows(2).all(|w| w[0] == w[1]),
            "{kv:?}: backends disagree"
        );
    }
}

#[test]
fn mixed_f16_and_int8_matrices_run() {
    // Any mix of f16 and int8 matrices is runnable: here the head and embeddings stay f16.
    let cfg = small_config();
    let (_, params, b8) = int8_blob(
        &cfg,
        5,
        WeightDtype::Q8 {
            group_size: 8,
            scale: ScaleDtype::F16,
        },
    );
    let b16 = build_blob_with(&cfg, &make_vocab(cfg.vocab_size, 4), &params, manifest());
    let (p8, p16) = (split(&b8), split(&b16));
    let mut p = p8.clone();
    // rebuild the data region entry by entry, taking embeddings and head from the f16 blob
    let mut data = vec![];
    for (i, (e8, e16)) in p8.entries.iter().zip(&p16.entries).enumerate() {
        let (src, e) = if [0, 1, cfg.n_tensors() - 2].contains(&i) {
            (&p16.data, e16)
        } else {
            (&p8.data, e8)
        };
        let mut e = e.clone();
        let bytes = &src[e.offset as usize..(e.offset + e.nbytes) as usize];
        e.offset = data.len() as u64;
        data.extend_from_slice(bytes);
        data.resize(data.len().div_ceil(64) * 64, 0);
        p.entries[i] = e;
    }
    p.data = data;
    p.vocab = p16.vocab.clone();
    let mixed = assemble(&p);
    let m = Model::load(&mixed).unwrap();
    assert_eq!(m.q8_group(), Some(8));
    let mut buf = vec![0f32; state_words(&cfg, KvPrecision::F16)];
    let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    let l = d.prefill(&[1, 5, 9]).unwrap();
    assert!(l.iter().all(|v| v.is_finite()));
}
