//! `Model` rejects bad calls with a typed `ModelError` (one variant per case, carrying the
//! numbers) before doing any work: after a rejected call the gradient buffer is untouched and the
//! next good call gives bit-for-bit what a fresh model gives.

use tinypoet_trainer::nn::init::{golden_params, SplitMix64};
use tinypoet_trainer::nn::model::{Buffer, ModelError, Tokens, TrainModel};
use tinypoet_trainer::nn::params::ModelShape;
use tinypoet_trainer::nn::params::{Config, Params};

fn tiny() -> Config {
    let shape = ModelShape {
        dim: 8,
        n_heads: 2,
        n_layers: 2,
        context: 12,
        ffn_dim: 16,
    };
    shape.config(37)
}

const B: usize = 3;
const T: usize = 10;

fn tokens(cfg: &Config, n: usize, seed: u64) -> Vec<u16> {
    let mut sm = SplitMix64(seed);
    (0..n)
        .map(|_| (sm.next() % cfg.vocab_size as u64) as u16)
        .collect()
}

fn bits(p: &Params) -> Vec<u32> {
    p.data.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn new_rejects_a_bad_capacity_or_head_count() {
    let cfg = tiny();
    let cap = |max_batch, max_seq| ModelError::Capacity {
        max_batch,
        max_seq,
        context: 12,
    };
    assert_eq!(TrainModel::new(&cfg, 0, T).unwrap_err(), cap(0, T));
    assert_eq!(TrainModel::new(&cfg, B, 0).unwrap_err(), cap(B, 0));
    assert_eq!(TrainModel::new(&cfg, B, 13).unwrap_err(), cap(B, 13));
    assert!(TrainModel::new(&cfg, B, 12).is_ok());
    for n_heads in [0, 3] {
        let bad = Config { n_heads, ..cfg };
        assert_eq!(
            TrainModel::new(&bad, B, T).unwrap_err(),
            ModelError::HeadsDoNotDivideDim { dim: 8, n_heads }
        );
    }
}

#[test]
fn every_bad_call_is_a_typed_error_and_changes_nothing() {
    let cfg = tiny();
    let p = golden_params(&cfg, 7);
    let x = tokens(&cfg, B * T, 1);
    let y = tokens(&cfg, B * T, 2);

    // What a fresh model gives for the good call.
    let mut g_ref = Params::zeros(&cfg);
    let loss_ref = TrainModel::new(&cfg, B, T)
        .unwrap()
        .forward_backward(&p, &mut g_ref, &x, &y, B, T)
        .unwrap();
    let logits_ref = TrainModel::new(&cfg, B, T)
        .unwrap()
        .forward_logits(&p, &x, B, T)
        .unwrap();

    let mut model = TrainModel::new(&cfg, B, T).unwrap();
    // Leave other activations in the model first, so a half-done bad call would show.
    let mut g = Params::zeros(&cfg);
    let (x2, y2) = (tokens(&cfg, 2 * 7, 3), tokens(&cfg, 2 * 7, 4));
    model.forward_backward(&p, &mut g, &x2, &y2, 2, 7).unwrap();
    g.data.iter_mut().for_each(|v| *v = 0.25);
    let sentinel = bits(&g);

    // Another model shape (one more layer): both buffers are checked, and carry both configs.
    let other = Config { n_layers: 3, ..cfg };
    let p_other = golden_params(&other, 7);
    let mut g_other = Params::zeros(&other);
    let mismatch = |buffer| ModelError::ConfigMismatch {
        buffer,
        got: Box::new(other),
        expected: Box::new(cfg),
    };
    let mut short = p.clone();
    short.data.pop();
    let mut g_short = g.clone();
    g_short.data.pop();
    let n_params = p.data.len();

    let mut bad_x = x.clone();
    bad_x[B * T - 1] = 37;
    let mut bad_y = y.clone();
    // One past the vocabulary (u16::MAX is the masked-CE's IGNORE, a valid target).
    bad_y[4] = cfg.vocab_size as u16;

    let cases: Vec<(ModelError, Result<f32, ModelError>)> = vec![
        (
            mismatch(Buffer::Params),
            model.forward_backward(&p_other, &mut g, &x, &y, B, T),
        ),
        (
            mismatch(Buffer::Grads),
            model.forward_backward(&p, &mut g_other, &x, &y, B, T),
        ),
        (
            ModelError::BufferLength {
                buffer: Buffer::Params,
                got: n_params - 1,
                expected: n_params,
            },
            model.forward_backward(&short, &mut g, &x, &y, B, T),
        ),
        (
            ModelError::BufferLength {
                buffer: Buffer::Grads,
                got: n_params - 1,
                expected: n_params,
            },
            model.forward_backward(&p, &mut g_short, &x, &y, B, T),
        ),
        (
            ModelError::BatchOutOfRange { got: 0, max: B },
            model.forward_backward(&p, &mut g, &[], &[], 0, T),
        ),
        (
            ModelError::BatchOutOfRange { got: B + 1, max: B },
            model.forward_backward(&p, &mut g, &tokens(&cfg, 4 * T, 5), &y, B + 1, T),
        ),
        (
            ModelError::SeqOutOfRange { got: 0, max: T },
            model.forward_backward(&p, &mut g, &[], &[], B, 0),
        ),
        (
            ModelError::SeqOutOfRange { got: T + 1, max: T },
            model.forward_backward(&p, &mut g, &x, &y, 1, T + 1),
        ),
        (
            ModelError::TokensLength {
                which: Tokens::Inputs,
                got: B * T - 1,
                expected: B * T,
                b: B,
                t: T,
            },
            model.forward_backward(&p, &mut g, &x[1..], &y, B, T),
        ),
        (
            ModelError::TokensLength {
                which: Tokens::Targets,
                got: B * T + 1,
                expected: B * T,
                b: B,
                t: T,
            },
            model.forward_backward(&p, &mut g, &x, &[y.clone(), vec![0]].concat(), B, T),
        ),
        (
            ModelError::TokenOutOfVocab {
                which: Tokens::Inputs,
                id: 37,
                vocab: 37,
                position: B * T - 1,
            },
            model.forward_backward(&p, &mut g, &bad_x, &y, B, T),
        ),
        (
            ModelError::TokenOutOfVocab {
                which: Tokens::Targets,
                id: 37,
                vocab: 37,
                position: 4,
            },
            model.forward_backward(&p, &mut g, &x, &bad_y, B, T),
        ),
        // The forward-only entry points check the same things.
        (
            ModelError::TokenOutOfVocab {
                which: Tokens::Targets,
                id: 37,
                vocab: 37,
                position: 4,
            },
            model.forward_loss(&p, &x, &bad_y, B, T),
        ),
        (
            mismatch(Buffer::Params),
            model.forward_loss(&p_other, &x, &y, B, T),
        ),
        (
            ModelError::SeqOutOfRange { got: T + 1, max: T },
            model.forward_logits(&p, &x, 1, T + 1).map(|_| 0.0),
        ),
        (
            ModelError::TokenOutOfVocab {
                which: Tokens::Inputs,
                id: 37,
                vocab: 37,
                position: B * T - 1,
            },
            model.forward_logits(&p, &bad_x, B, T).map(|_| 0.0),
        ),
    ];
    for (i, (want, got)) in cases.into_iter().enumerate() {
        assert_eq!(got, Err(want), "case {i}");
        assert_eq!(
            bits(&g),
            sentinel,
            "case {i} wrote into the gradient buffer"
        );
    }

    // The same model and gradient buffer still give exactly the fresh model's results.
    let loss = model.forward_backward(&p, &mut g, &x, &y, B, T).unwrap();
    assert_eq!(loss.to_bits(), loss_ref.to_bits());
    assert_eq!(bits(&g), bits(&g_ref));
    let eval = model.forward_loss(&p, &x, &y, B, T).unwrap();
    assert_eq!(eval.to_bits(), loss_ref.to_bits());
    let logits = model.forward_logits(&p, &x, B, T).unwrap();
    assert!(logits
        .iter()
        .zip(&logits_ref)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn messages_name_the_numbers() {
    let e = ModelError::TokenOutOfVocab {
        which: Tokens::Targets,
        id: 9000,
        vocab: 8548,
        position: 17,
    };
    assert_eq!(
        e.to_string(),
        "targets: token id 9000 at position 17 is outside the vocabulary of 8548"
    );
    let e = ModelError::BatchOutOfRange { got: 20, max: 16 };
    assert_eq!(
        e.to_string(),
        "batch size 20 is outside 1..=16 (the model's capacity)"
    );
    let e = ModelError::TokensLength {
        which: Tokens::Inputs,
        got: 5,
        expected: 6,
        b: 2,
        t: 3,
    };
    assert_eq!(
        e.to_string(),
        "inputs hold 5 token ids; batch 2 × sequence 3 needs 6"
    );
}
