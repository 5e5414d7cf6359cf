//! Sampler, PRNG, generation (streaming, stop sequences, sliding context) and determinism.
mod common;
use common::*;
use std::ops::ControlFlow;
use tinypoet_core::sampler::{argmax, sample, sample_with};
use tinypoet_core::{
    state_words, tensor_specs, Config, Decoder, Error, GenerateSettings, KvPrecision, Manifest,
    Model, Rng, SamplerSettings, StopReason, TensorKind,
};

#[test]
fn pcg32_matches_the_documented_algorithm() {
    // values computed from the doc comment's pseudo-code in Python
    let mut r = Rng::new(42);
    let got: Vec<u32> = (0..5).map(|_| r.next_u32()).collect();
    assert_eq!(
        got,
        [0x713066ea, 0x3c7a0d56, 0xf424216a, 0x25c89145, 0x43e7ef3e]
    );
    let mut r = Rng::new(42);
    assert_eq!(r.next_f32(), (0x713066ea_u32 >> 8) as f32 / 16_777_216.0);
}

fn random_logits(n: usize, seed: u64, scale: f64) -> Vec<f32> {
    let mut r = TestRng::new(seed);
    (0..n).map(|_| (r.normal() * scale) as f32).collect()
}

#[test]
fn greedy_is_argmax_and_top_k_1_is_greedy() {
    for seed in 0..50 {
        let l = random_logits(300, seed, 2.0);
        let best = argmax(&l);
        assert!(l.iter().all(|&v| v <= l[best]));
        let mut scratch = vec![0u16; 300];
        let mut rng = Rng::new(seed);
        let g = sample(
            &mut l.clone(),
            &mut scratch,
            &[],
            &SamplerSettings::GREEDY,
            &mut rng,
        )
        .unwrap();
        assert_eq!(g as usize, best);
        let k1 = SamplerSettings {
            top_k: 1,
            temperature: 0.7,
            ..SamplerSettings::DEFAULT
        };
        let t = sample(&mut l.clone(), &mut scratch, &[], &k1, &mut rng).unwrap();
        assert_eq!(t as usize, best);
    }
    // ties: lowest id
    assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
}

#[test]
fn same_seed_same_sequence_different_seed_different_sequence() {
    let l = random_logits(500, 1, 1.0);
    let run = |seed: u64, s: &SamplerSettings| -> Vec<u16> {
        let mut rng = Rng::new(seed);
        let mut scratch = vec![0u16; 500];
        (0..200)
            .map(|_| sample(&mut l.clone(), &mut scratch, &[], s, &mut rng).unwrap())
            .collect()
    };
    for s in [
        SamplerSettings::DEFAULT,
        SamplerSettings {
            top_k: 20,
            temperature: 0.8,
            ..SamplerSettings::DEFAULT
        },
        SamplerSettings {
            top_p: 0.9,
            ..SamplerSettings::DEFAULT
        },
        SamplerSettings {
            top_p: 0.5,
            top_k: 50,
            ..SamplerSettings::DEFAULT
        },
    ] {
        assert_eq!(run(7, &s), run(7, &s));
        assert_ne!(run(7, &s), run(8, &s));
    }
}

/// Pearson chi-square statistic and degrees of freedom.
fn chi_square(counts: &[u64], probs: &[f64]) -> (f64, usize) {
    let n: u64 = counts.iter().sum();
    let stat = counts.iter().zip(probs).map(|(&c, &p)| {
        let e = p * n as f64;
        (c as f64 - e).powi(2) / e
    });
    (stat.sum(), counts.len() - 1)
}

#[test]
fn temperature_1_frequencies_match_softmax_chi_square() {
    let logits = [0.5f32, -1.0, 2.0, 0.0, 1.2, -0.3, 0.9, -2.0];
    let m = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let z: f64 = logits.iter().map(|&l| (l as f64 - m).exp()).sum();
    let probs: Vec<f64> = logits.iter().map(|&l| (l as f64 - m).exp() / z).collect();
    let mut counts = [0u64; 8];
    let mut rng = Rng::new(2024);
    let mut scratch = [0u16; 8];
    for _ in 0..200_000 {
        let t = sample(
            &mut logits.clone(),
            &mut scratch,
            &[],
            &SamplerSettings::DEFAULT,
            &mut rng,
        )
        .unwrap();
        counts[t as usize] += 1;
    }
    let (x2, dof) = chi_square(&counts, &probs);
    eprintln!("chi-square {x2:.2} with {dof} dof; counts {counts:?}");
    // 7 dof: P(X2 > 24.32) = 0.001
    assert!(x2 < 24.32, "chi-square {x2}");

    // and at temperature 2 against softmax(l / 2), over a larger vocabulary (block walk)
    let logits = random_logits(100, 3, 1.0);
    let s = SamplerSettings {
        temperature: 2.0,
        ..SamplerSettings::DEFAULT
    };
    let z: f64 = logits.iter().map(|&l| (l as f64 / 2.0).exp()).sum();
    let probs: Vec<f64> = logits.iter().map(|&l| (l as f64 / 2.0).exp() / z).collect();
    let mut counts = vec![0u64; 100];
    let mut scratch = [0u16; 100];
    for _ in 0..300_000 {
        counts[sample(&mut logits.clone(), &mut scratch, &[], &s, &mut rng).unwrap() as usize] += 1;
    }
    let (x2, dof) = chi_square(&counts, &probs);
    eprintln!("T=2, V=100: chi-square {x2:.2} with {dof} dof");
    assert!(x2 < 148.2, "99 dof: P(X2 > 148.2) = 0.001; got {x2}");
}

#[test]
fn top_k_and_top_p_restrict_the_support() {
    let logits = random_logits(1000, 5, 3.0);
    let mut order: Vec<usize> = (0..1000).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let top10: std::collections::HashSet<u16> = order[..10].iter().map(|&i| i as u16).collect();
    let mut rng = Rng::new(1);
    let mut scratch = vec![0u16; 1000];
    let s = SamplerSettings {
        top_k: 10,
        ..SamplerSettings::DEFAULT
    };
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5000 {
        let t = sample(&mut logits.clone(), &mut scratch, &[], &s, &mut rng).unwrap();
        assert!(top10.contains(&t));
        seen.insert(t);
    }
    assert!(seen.len() > 5);
    // top-p: the nucleus is the smallest prefix (by probability) with mass >= p
    let mut p = logits.clone();
    tinypoet_core::kernels::softmax(tinypoet_core::kernels::Backend::Scalar, &mut p);
    let mut cum = 0.0;
    let mut nucleus = std::collections::HashSet::new();
    for &i in &order {
        cum += p[i];
        nucleus.insert(i as u16);
        if cum >= 0.6 {
            break;
        }
    }
    let s = SamplerSettings {
        top_p: 0.6,
        ..SamplerSettings::DEFAULT
    };
    for _ in 0..5000 {
        let t = sample(&mut logits.clone(), &mut scratch, &[], &s, &mut rng).unwrap();
        assert!(
            nucleus.contains(&t),
            "{t} outside the nucleus of {}",
            nucleus.len()
        );
    }
}

#[test]
fn repetition_penalty_lowers_repeated_tokens_once() {
    let logits = vec![2.0f32, 2.0, -1.0, -1.0];
    let s = SamplerSettings {
        repetition_penalty: 2.0,
        temperature: 0.0,
        ..SamplerSettings::DEFAULT
    };
    let mut l = logits.clone();
    let mut scratch = [0u16; 4];
    // token 0 appears three times: penalised once (2.0 -> 1.0), so greedy picks 1
    let t = sample(&mut l, &mut scratch, &[0, 0, 2, 0], &s, &mut Rng::new(0)).unwrap();
    assert_eq!(t, 1);
    assert_eq!(l, [1.0, 2.0, -2.0, -1.0]);
    // outside the window: no effect
    let s = SamplerSettings {
        repetition_window: 1,
        ..s
    };
    let mut l = logits.clone();
    sample(&mut l, &mut scratch, &[0, 0, 2], &s, &mut Rng::new(0)).unwrap();
    assert_eq!(l, [2.0, 2.0, -2.0, -1.0]);
}

#[test]
fn invalid_sampler_settings_are_errors() {
    let mut l = [0.0f32; 4];
    let mut sc = [0u16; 4];
    for s in [
        SamplerSettings {
            temperature: -1.0,
            ..SamplerSettings::DEFAULT
        },
        SamplerSettings {
            temperature: f32::NAN,
            ..SamplerSettings::DEFAULT
        },
        SamplerSettings {
            top_p: 0.0,
            ..SamplerSettings::DEFAULT
        },
        SamplerSettings {
            top_p: 1.5,
            ..SamplerSettings::DEFAULT
        },
        SamplerSettings {
            repetition_penalty: 0.5,
            ..SamplerSettings::DEFAULT
        },
    ] {
        assert!(matches!(
            sample(&mut l, &mut sc, &[], &s, &mut Rng::new(0)),
            Err(Error::InvalidSampler(_))
        ));
    }
    let mut small = [0u16; 3];
    assert!(matches!(
        sample(
            &mut l,
            &mut small,
            &[],
            &SamplerSettings::DEFAULT,
            &mut Rng::new(0)
        ),
        Err(Error::InvalidSampler(_))
    ));
}

#[test]
fn sampler_backends_agree() {
    use tinypoet_core::kernels::Backend;
    let logits = random_logits(8548, 77, 2.0);
    for s in [
        SamplerSettings::DEFAULT,
        SamplerSettings {
            top_k: 40,
            top_p: 0.9,
            temperature: 0.8,
            ..SamplerSettings::DEFAULT
        },
    ] {
        let mut seqs = vec![];
        for b in Backend::ALL.into_iter().filter(|b| b.is_available()) {
            let mut rng = Rng::new(3);
            let mut scratch = vec![0u16; 8548];
            let seq: Vec<u16> = (0..300)
                .map(|_| {
                    sample_with(b, &mut logits.clone(), &mut scratch, &[], &s, &mut rng).unwrap()
                })
                .collect();
            seqs.push(seq);
        }
        assert!(seqs.windows(2).all(|w| w[0] == w[1]));
    }
}

// ---------------- generation with a scripted model ----------------

const SCRIPT_VOCAB: [char; 8] = ['\0', '\n', 'a', 'b', 'c', 'd', 'e', 'f'];

/// A model whose greedy output at position p is `script[p]`: blocks are zero (identity),
/// pos_emb[p] = one-hot(p), and the head maps feature p to the scripted character.
fn scripted_blob(script: &str) -> Vec<u8> {
    let cfg = Config {
        vocab_size: 8,
        dim: 16,
        n_heads: 4,
        n_layers: 1,
        context: 16,
        ffn_dim: 8,
        ln_eps: 1e-5,
        attn_scale: 0.5,
    };
    let targets: Vec<usize> = script
        .chars()
        .map(|c| SCRIPT_VOCAB.iter().position(|&v| v == c).unwrap())
        .collect();
    assert!(targets.len() <= 16);
    let params: Vec<Vec<f32>> = tensor_specs(&cfg)
        .map(|s| {
            let n = s.shape.numel();
            match s.kind {
                TensorKind::PosEmb => (0..n)
                    .map(|i| if i / 16 == i % 16 { 1.0 } else { 0.0 })
                    .collect(),
                TensorKind::Ln1Weight | TensorKind::Ln2Weight | TensorKind::LnFWeight => {
                    vec![1.0; n]
                }
                TensorKind::HeadWeight => (0..n)
                    .map(|i| {
                        let (v, c) = (i / 16, i % 16);
                        if targets.get(c) == Some(&v) {
                            10.0
                        } else {
                            0.0
                        }
                    })
                    .collect(),
                _ => vec![0.0; n],
            }
        })
        .collect();
    build_blob_with(&cfg, &SCRIPT_VOCAB, &params, Manifest::EMPTY)
}

fn run_script(script: &str, settings: &GenerateSettings) -> (String, tinypoet_core::Generation) {
    let b = scripted_blob(script);
    let m = Model::load(&b).unwrap();
    let mut buf = vec![0f32; state_words(m.config(), KvPrecision::F16)];
    let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    let mut out = String::new();
    // prompt 'e' sits at position 0, so generated character i is script[i]
    let g = d
        .generate("e", settings, |c| {
            out.push(c);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(g.emitted_chars, out.chars().count());
    (out, g)
}

fn greedy() -> GenerateSettings<'static> {
    GenerateSettings {
        sampler: SamplerSettings::GREEDY,
        max_new_chars: 16,
        ..GenerateSettings::default()
    }
}

#[test]
fn default_stop_is_blank_line_and_not_emitted() {
    let (out, g) = run_script("ab\n\ncd", &greedy());
    assert_eq!(out, "ab");
    assert_eq!(g.reason, StopReason::StopSequence(0));
    assert_eq!(g.generated_tokens, 4);
    // a single newline is emitted once the next character shows it is not "\n\n"
    let (out, g) = run_script("a\nb\n\nc", &greedy());
    assert_eq!(out, "a\nb");
    assert_eq!(g.reason, StopReason::StopSequence(0));
}

#[test]
fn overlapping_stop_sequences_hold_back_and_release() {
    let stops = ["abc", "bd"];
    let s = GenerateSettings {
        stop: &stops,
        ..greedy()
    };
    let (out, g) = run_script("aabdef", &s);
    assert_eq!(out, "aa");
    assert_eq!(g.reason, StopReason::StopSequence(1));
    let (out, g) = run_script("abababc", &s);
    assert_eq!(out, "abab");
    assert_eq!(g.reason, StopReason::StopSequence(0));
}

#[test]
fn end_of_text_and_max_length_and_callback_stop() {
    let (out, g) = run_script("ab\0cd", &greedy());
    assert_eq!((out.as_str(), g.reason), ("ab", StopReason::EndOfText));
    let s = GenerateSettings {
        max_new_chars: 3,
        ..greedy()
    };
    let (out, g) = run_script("abcdef", &s);
    assert_eq!((out.as_str(), g.reason), ("abc", StopReason::MaxLength));
    // held-back characters are flushed at the length limit
    let (out, _) = run_script(
        "ab\ncdef",
        &GenerateSettings {
            max_new_chars: 3,
            ..greedy()
        },
    );
    assert_eq!(out, "ab\n");
    // callback break
    let b = scripted_blob("abcdef");
    let m = Model::load(&b).unwrap();
    let mut buf = vec![0f32; state_words(m.config(), KvPrecision::F16)];
    let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    let mut n = 0;
    let g = d
        .generate("e", &greedy(), |_| {
            n += 1;
            if n == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((g.reason, g.emitted_chars), (StopReason::Callback, 2));
}

#[test]
fn generate_rejects_bad_input() {
    let b = scripted_blob("abc");
    let m = Model::load(&b).unwrap();
    let mut buf = vec![0f32; state_words(m.config(), KvPrecision::F16)];
    let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    let ok = |_| ControlFlow::Continue(());
    assert_eq!(d.generate("", &greedy(), ok).err(), Some(Error::EmptyInput));
    assert_eq!(
        d.generate("ax", &greedy(), ok).err(),
        Some(Error::UnknownChar('x'))
    );
    let long = ["abcdefabcdefabcdefabcdefabcdefabcdef"];
    assert_eq!(
        d.generate(
            "a",
            &GenerateSettings {
                stop: &long,
                ..greedy()
            },
            ok
        )
        .err(),
        Some(Error::InvalidStopSequence)
    );
    assert_eq!(
        d.generate(
            "a",
            &GenerateSettings {
                stop: &[""],
                ..greedy()
            },
            ok
        )
        .err(),
        Some(Error::InvalidStopSequence)
    );
}

#[test]
fn generation_is_deterministic_and_runs_past_the_context() {
    let cfg = Config {
        context: 32,
        ..small_config()
    };
    let vocab = make_vocab(cfg.vocab_size, 5);
    let b = build_blob_with(&cfg, &vocab, &random_params(&cfg, 21), Manifest::EMPTY);
    let m = Model::load(&b).unwrap();
    let gen = |seed: u64, kv: KvPrecision| -> String {
        let mut buf = vec![0f32; state_words(&cfg, kv)];
        let mut d = Decoder::new(&m, &mut buf, kv).unwrap();
        let mut out = String::new();
        let s = GenerateSettings {
            seed,
            max_new_chars: 200,
            stop: &[],
            stop_at_end_of_text: false,
            ..GenerateSettings::default()
        };
        let g = d.generate("\n", &s, |c| {
            out.push(c);
            ControlFlow::Continue(())
        });
        assert_eq!(g.unwrap().reason, StopReason::MaxLength);
        out
    };
    let a = gen(5, KvPrecision::F16);
    assert_eq!(
        a.chars().count(),
        200,
        "200 chars through a 32-position context"
    );
    assert_eq!(a, gen(5, KvPrecision::F16));
    assert_ne!(a, gen(6, KvPrecision::F16));
}

#[test]
fn tiny_temperature_and_non_finite_logits_are_errors_not_empty_poems() {
    // A subnormal temperature (1e-45) turns every logit into inf and the softmax into NaN: it
    // must be an error, not an empty poem.
    let mut sc = [0u16; 4];
    let at = |t: f32| SamplerSettings {
        temperature: t,
        ..SamplerSettings::DEFAULT
    };
    let mut l = [10.0f32, 1.0, -3.0, 0.5];
    assert!(matches!(
        sample(&mut l, &mut sc, &[], &at(1e-45), &mut Rng::new(0)),
        Err(Error::InvalidSampler(_))
    ));
    // normal but so small that 10 / t overflows f32
    let mut l = [10.0f32, 1.0, -3.0, 0.5];
    assert!(matches!(
        sample(&mut l, &mut sc, &[], &at(1.2e-38), &mut Rng::new(0)),
        Err(Error::InvalidSampler(_))
    ));
    // small but representable: the most probable token, as greedy would
    let mut l = [10.0f32, 1.0, -3.0, 0.5];
    assert_eq!(
        sample(&mut l, &mut sc, &[], &at(1e-30), &mut Rng::new(0)),
        Ok(0)
    );
    // a model that overflowed: NaN or inf logits, greedy or sampled
    for bad in [f32::NAN, f32::INFINITY] {
        for t in [0.0, 1.0] {
            let mut l = [0.5f32, bad, 0.0, 1.0];
            assert_eq!(
                sample(&mut l, &mut sc, &[], &at(t), &mut Rng::new(0)),
                Err(Error::NonFiniteLogits),
                "logit {bad}, temperature {t}"
            );
        }
    }
}
