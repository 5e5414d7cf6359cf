//! 200-step agreement (issue 5): the losses of the first 200 training steps of the current
//! (optimised) kernels match those recorded from the builds before optimisation within 1e-3
//! relative: commit 3ad5bf1 (the first version of the kernels: `matrixmultiply` GEMMs, no
//! tuning; `losses_200.txt`) and commit 1dc9fa3 (the `gemm` crate's GEMMs, the last build before
//! the trainer's own; `losses_200_1dc9fa3.txt`).
//!
//! Setup: the real model config, torch-exact init (seed 2024), batches of 4×256 random windows
//! (torch `randint` on MT19937) of a synthetic order-1 Markov token stream (so the loss actually
//! falls, from ≈9.2 to ≈3.7), AdamW at lr 1e-3, 2 threads.
//!
//! To (re)record the fixture with some build:
//! `TINYPOET_WRITE_AGREEMENT=tests/fixtures/agreement/losses_200.txt cargo test -p tinypoet-trainer --release --test agreement`

use tinypoet_trainer::nn::adamw::{AdamW, AdamWConfig};
use tinypoet_trainer::nn::init::{init_params, InitScheme, SplitMix64};
use tinypoet_trainer::nn::model::TrainModel;
use tinypoet_trainer::nn::mt19937::Mt19937;
use tinypoet_trainer::nn::params::{Config, Params};

const STEPS: usize = 200;
const B: usize = 4;
const T: usize = 256;

/// Order-1 Markov chain over 512 of the vocabulary's ids (spread over the whole range): each has
/// 4 successors drawn at random, and the next token is one of them, uniformly. Learnable within
/// 200 steps (the entropy floor is ln 4 ≈ 1.39).
fn markov_stream(v: usize, len: usize, seed: u64) -> Vec<u16> {
    const ACTIVE: usize = 512;
    let mut sm = SplitMix64(seed);
    let ids: Vec<u16> = (0..ACTIVE).map(|i| (i * v / ACTIVE) as u16).collect();
    let succ: Vec<[usize; 4]> = (0..ACTIVE)
        .map(|_| std::array::from_fn(|_| (sm.next() % ACTIVE as u64) as usize))
        .collect();
    let mut cur = 0usize;
    (0..len)
        .map(|_| {
            cur = succ[cur][(sm.next() % 4) as usize];
            ids[cur]
        })
        .collect()
}

fn train_losses() -> Vec<f32> {
    // The real model config (the fixtures were recorded with it).
    let cfg = Config::TANG;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let data = markov_stream(cfg.vocab_size, 200_000, 42);
        let mut p = init_params(&cfg, 2024, InitScheme::Torch);
        let mut g = Params::zeros(&cfg);
        let mut opt = AdamW::new(p.data.len(), AdamWConfig::default());
        let mut model = TrainModel::new(&cfg, B, T).unwrap();
        let mut rng = Mt19937::init_genrand(7);
        let (mut x, mut y) = (vec![0u16; B * T], vec![0u16; B * T]);
        let mut losses = Vec::with_capacity(STEPS);
        for _ in 0..STEPS {
            for b in 0..B {
                let s = rng.torch_randint((data.len() - T) as u32) as usize;
                x[b * T..(b + 1) * T].copy_from_slice(&data[s..s + T]);
                y[b * T..(b + 1) * T].copy_from_slice(&data[s + 1..s + T + 1]);
            }
            losses.push(model.forward_backward(&p, &mut g, &x, &y, B, T).unwrap());
            opt.step(&mut p.data, &g.data, 1e-3);
        }
        losses
    })
}

#[test]
fn first_200_losses_match_the_pre_optimisation_build() {
    let losses = train_losses();
    if let Ok(path) = std::env::var("TINYPOET_WRITE_AGREEMENT") {
        let mut s = String::from(
            "# step\tloss (tinypoet-trainer agreement run; see trainer/tests/agreement.rs)\n",
        );
        for (i, l) in losses.iter().enumerate() {
            s += &format!("{i}\t{l:.9e}\n");
        }
        std::fs::write(&path, s).unwrap();
        eprintln!("wrote {path}");
        return;
    }
    for (fixture, build) in [
        ("losses_200.txt", "3ad5bf1"),
        ("losses_200_1dc9fa3.txt", "1dc9fa3"),
    ] {
        let path = format!(
            "{}/../tests/fixtures/agreement/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("agreement fixture");
        let want: Vec<f32> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(want.len(), STEPS);
        assert!(
            want[STEPS - 1] < want[0] - 3.0,
            "the recorded run should learn"
        );
        let mut worst = (0.0f64, 0);
        for (i, (&a, &b)) in losses.iter().zip(&want).enumerate() {
            let rel = ((a - b) as f64 / b as f64).abs();
            if rel > worst.0 {
                worst = (rel, i);
            }
        }
        eprintln!(
            "200-step agreement with {build}: loss {:.4} -> {:.4}, worst relative difference \
             {:.2e} at step {}",
            losses[0],
            losses[STEPS - 1],
            worst.0,
            worst.1
        );
        assert!(
            worst.0 <= 1e-3,
            "vs {build}, step {}: relative difference {:e} > 1e-3",
            worst.1,
            worst.0
        );
    }
}
