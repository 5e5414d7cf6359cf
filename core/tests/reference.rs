//! KV-cached decoding vs an f64 full-recompute reference, at every position 0..T-1.
mod common;
use common::*;
use tinypoet_core::kernels::Backend;
use tinypoet_core::{state_words, Config, Decoder, KvPrecision, Model};

fn max_diff_all_positions(kv: KvPrecision, backend: Backend) -> f64 {
    let cfg = Config::TANG;
    let params = random_params(&cfg, 11);
    let vocab = tang_like_vocab();
    let blob = build_blob_with(&cfg, &vocab, &params, manifest());
    let model = Model::load(&blob).unwrap();
    let mut r = TestRng::new(5);
    let tokens: Vec<u16> = (0..cfg.context)
        .map(|_| r.below(cfg.vocab_size) as u16)
        .collect();
    let reference = reference_logits(&cfg, &params, &tokens, kv == KvPrecision::F16);
    let mut buf = vec![0f32; state_words(&cfg, kv)];
    let mut dec = Decoder::with_backend(&model, &mut buf, kv, backend).unwrap();
    let mut worst = 0f64;
    for (pos, &t) in tokens.iter().enumerate() {
        assert_eq!(dec.position(), pos);
        let logits = dec.feed(t).unwrap();
        for (a, b) in logits.iter().zip(&reference[pos]) {
            worst = worst.max((*a as f64 - b).abs());
        }
    }
    worst
}

#[test]
fn f16_kv_matches_f64_reference_at_every_position() {
    let d = max_diff_all_positions(KvPrecision::F16, Backend::detect());
    eprintln!("f16 KV: max |logit - reference| over 256 positions = {d:.3e}");
    assert!(d <= 1e-4, "max diff {d}");
}

#[test]
fn f32_kv_matches_unrounded_f64_reference_at_every_position() {
    let d = max_diff_all_positions(KvPrecision::F32, Backend::detect());
    eprintln!("f32 KV: max |logit - reference| over 256 positions = {d:.3e}");
    assert!(d <= 1e-4, "max diff {d}");
}

#[test]
fn scalar_backend_matches_reference_too() {
    let d = max_diff_all_positions(KvPrecision::F16, Backend::Scalar);
    assert!(d <= 1e-4, "max diff {d}");
}

#[test]
fn window_nll_matches_the_f64_reference_loss() {
    let cfg = small_config();
    let params = random_params(&cfg, 12);
    let vocab = make_vocab(cfg.vocab_size, 3);
    let blob = build_blob_with(&cfg, &vocab, &params, manifest());
    let model = Model::load(&blob).unwrap();
    let mut r = TestRng::new(8);
    let seq: Vec<u16> = (0..=cfg.context)
        .map(|_| r.below(cfg.vocab_size) as u16)
        .collect();
    let (inputs, targets) = (&seq[..cfg.context], &seq[1..]);
    let reference = reference_logits(&cfg, &params, inputs, true);
    let want: f64 = reference
        .iter()
        .zip(targets)
        .map(|(l, &t)| {
            let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            m + l.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - l[t as usize]
        })
        .sum();
    let mut buf = vec![0f32; state_words(&cfg, KvPrecision::F16)];
    let mut dec = Decoder::new(&model, &mut buf, KvPrecision::F16).unwrap();
    let got = dec.window_nll(inputs, targets).unwrap();
    eprintln!("window NLL {got:.6} vs reference {want:.6}");
    assert!((got - want).abs() < 1e-4 * cfg.context as f64);
    assert_eq!(
        dec.window_nll(&[], &[]).err(),
        Some(tinypoet_core::Error::EmptyInput)
    );
    assert!(dec.window_nll(&[1], &[200]).is_err());
}
