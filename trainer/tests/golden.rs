//! Golden tests against PyTorch (issue 4), llm.c style. Fixtures are made by
//! `tests/golden/make_golden.py` (see its docstring for the three cases) and committed under
//! `tests/fixtures/golden/`. Tolerance per tensor: |a − b| ≤ atol·max|b| + rtol·|b|.
//! The kernels run in a 2-thread pool, as `tinypoet train` runs them by default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use tinypoet_trainer::nn::adamw::{AdamW, AdamWConfig};
use tinypoet_trainer::nn::init::{
    golden_params, init_params, InitScheme, TORCH_INIT_NORMAL_TENSORS,
};
use tinypoet_trainer::nn::model::TrainModel;
use tinypoet_trainer::nn::params::{Config, Params};

struct Fixture {
    meta: Value,
    blob: Vec<u8>,
}

impl Fixture {
    fn load(case: &str) -> Fixture {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden");
        let meta =
            std::fs::read_to_string(dir.join(format!("{case}.json"))).expect("fixture manifest");
        let blob = std::fs::read(dir.join(format!("{case}.bin"))).expect("fixture data");
        Fixture {
            meta: serde_json::from_str(&meta).expect("fixture json"),
            blob,
        }
    }

    /// The manifest's `config` object has the fields of [`Config`] under their names.
    fn config(&self) -> Config {
        serde_json::from_value(self.meta["config"].clone()).expect("fixture config")
    }

    fn raw(&self, name: &str, dtype: &str, width: usize) -> &[u8] {
        let a = &self.meta["arrays"][name];
        assert_eq!(a["dtype"], dtype, "{name}: dtype");
        let off = a["offset"].as_u64().unwrap() as usize;
        let len = a["len"].as_u64().unwrap() as usize;
        &self.blob[off..off + len * width]
    }

    fn f32s(&self, name: &str) -> Vec<f32> {
        self.raw(name, "f32", 4)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn f64s(&self, name: &str) -> Vec<f64> {
        self.raw(name, "f64", 8)
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn u16s(&self, name: &str) -> Vec<u16> {
        self.raw(name, "u16", 2)
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn u32s(&self, name: &str) -> Vec<u32> {
        self.raw(name, "u32", 4)
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn usize(&self, key: &str) -> usize {
        self.meta[key].as_u64().unwrap() as usize
    }

    /// All canonical tensors stored with `prefix`.
    fn params(&self, cfg: &Config, prefix: &str) -> Params {
        let mut p = Params::zeros(cfg);
        for t in p.layout.tensors().to_vec() {
            let v = self.f32s(&format!("{prefix}{}", t.name));
            p.data[t.range()].copy_from_slice(&v);
        }
        p
    }
}

/// max over i of |a−b| / (atol·max|b| + rtol·|b|): ≤ 1 passes.
fn worst_ratio(a: &[f32], b: &[f32], atol: f64, rtol: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    let bmax = b.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
    a.iter()
        .zip(b)
        .map(|(&a, &b)| {
            (a as f64 - b as f64).abs()
                / (atol * bmax + rtol * (b as f64).abs()).max(f64::MIN_POSITIVE)
        })
        .fold(0.0, f64::max)
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

#[test]
fn reduced_config_matches_pytorch_logits_loss_grads_and_three_adamw_steps() {
    let fx = Fixture::load("reduced");
    let cfg = fx.config();
    let (b, t) = (fx.usize("batch"), fx.usize("seq"));
    let torch_losses: Vec<f64> = fx.meta["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    pool().install(|| {
        let mut p = fx.params(&cfg, "param.");
        let mut g = Params::zeros(&cfg);
        let mut model = TrainModel::new(&cfg, b, t).unwrap();
        let x0 = fx.u16s("x0");

        let logits = model.forward_logits(&p, &x0, b, t).unwrap();
        let r = worst_ratio(&logits, &fx.f32s("logits"), 1e-5, 1e-4);
        eprintln!("reduced logits: worst err/tol {r:.3}");
        assert!(r <= 1.0, "logits differ from PyTorch: worst err/tol {r}");

        let mut opt = AdamW::new(p.data.len(), AdamWConfig::default());
        let mut report = BTreeMap::new();
        for (step, &torch_loss) in torch_losses.iter().enumerate() {
            let (x, y) = (fx.u16s(&format!("x{step}")), fx.u16s(&format!("y{step}")));
            let loss = model.forward_backward(&p, &mut g, &x, &y, b, t).unwrap();
            let rel = (loss as f64 - torch_loss).abs() / torch_loss;
            eprintln!(
                "reduced loss step {step}: ours {loss} torch {} (rel {rel:.2e})",
                torch_loss
            );
            assert!(rel <= 1e-4, "loss at step {step}: {loss} vs {}", torch_loss);
            if step == 0 {
                for info in g.layout.tensors() {
                    let want = fx.f32s(&format!("grad.{}", info.name));
                    let r = worst_ratio(&g.data[info.range()], &want, 1e-4, 1e-3);
                    report.insert(info.name.clone(), r);
                    assert!(r <= 1.0, "grad {}: worst err/tol {r}", info.name);
                }
            }
            opt.step(&mut p.data, &g.data, 1e-3);
        }
        let (name, worst) = report
            .iter()
            .fold(("", 0.0f64), |m, (k, &v)| if v > m.1 { (k, v) } else { m });
        eprintln!("reduced grads: worst err/tol {worst:.3} ({name})");
        // Parameters after 3 steps: |a − b| ≤ atol·max|b| + rtol·|b| + s, where s is how far
        // the first AdamW update, lr·g/(|g| + eps), can move over the gradient tolerance the
        // step-0 check above allows (g ± tol_g). s is negligible unless |g| ≲ tol_g: there the
        // update is ill-conditioned (its slope is lr·eps/(|g| + eps)², 2.5e4 at |g| = eps), so
        // PyTorch's own f32 rounding of a near-zero gradient decides it and the parameter can
        // only be held to that spread (≤ 2·lr).
        let (lr, eps) = (1e-3f64, AdamWConfig::default().eps as f64);
        let update = |g: f64| lr * g / (g.abs() + eps);
        let (mut worst_p, mut worst_ill, mut ill_conditioned) = (0.0f64, 0.0f64, 0usize);
        for info in p.layout.tensors() {
            let want = fx.f32s(&format!("after3.{}", info.name));
            let g0 = fx.f32s(&format!("grad.{}", info.name));
            let bmax = want.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
            let gmax = g0.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
            for ((&a, &b), &g) in p.data[info.range()].iter().zip(&want).zip(&g0) {
                let (a, b, g) = (a as f64, b as f64, g as f64);
                let tol_g = 1e-4 * gmax + 1e-3 * g.abs();
                let spread = (update(g + tol_g) - update(g - tol_g)).abs();
                let tol = 1e-4 * bmax + 1e-3 * b.abs();
                let r = (a - b).abs() / (tol + spread);
                if spread > tol {
                    ill_conditioned += 1;
                    worst_ill = worst_ill.max(r);
                } else {
                    worst_p = worst_p.max(r);
                }
                assert!(
                    r <= 1.0,
                    "params after 3 AdamW steps, {}: {a} vs {b} (step-0 gradient {g}): err/tol {r}",
                    info.name
                );
            }
        }
        eprintln!(
            "reduced params after 3 AdamW steps: worst err/tol {worst_p:.3}; \
             {ill_conditioned} entries with a step-0 gradient within its tolerance of 0, held to \
             the first update's spread: worst {worst_ill:.3}"
        );
    });
}

#[test]
fn full_config_matches_pytorch_loss_logits_grad_norms_and_samples() {
    let fx = Fixture::load("full");
    let cfg = fx.config();
    assert_eq!(cfg, Config::TANG);
    let (b, t) = (fx.usize("batch"), fx.usize("seq"));
    let p = golden_params(&cfg, fx.meta["weights_seed"].as_u64().unwrap());
    let (x, y) = (fx.u16s("x"), fx.u16s("y"));
    pool().install(|| {
        let mut model = TrainModel::new(&cfg, b, t).unwrap();
        let mut g = Params::zeros(&cfg);
        let loss = model.forward_backward(&p, &mut g, &x, &y, b, t).unwrap() as f64;
        let want = fx.meta["loss"].as_f64().unwrap();
        eprintln!(
            "full loss: ours {loss} torch {want} (rel {:.2e})",
            (loss - want).abs() / want
        );
        assert!((loss - want).abs() <= 1e-4 * want);

        let logits = model.forward_logits(&p, &x, b, t).unwrap();
        let v = cfg.vocab_size;
        let pos = fx.u32s("logit_positions");
        let ours: Vec<f32> = pos
            .iter()
            .flat_map(|&i| logits[i as usize * v..(i as usize + 1) * v].to_vec())
            .collect();
        let r = worst_ratio(&ours, &fx.f32s("logits_at"), 1e-5, 1e-4);
        eprintln!(
            "full logits at {} positions: worst err/tol {r:.3}",
            pos.len()
        );
        assert!(r <= 1.0);

        let norms = fx.f64s("grad_norms");
        let idx = fx.u32s("grad_sample_index");
        let val = fx.f32s("grad_sample_value");
        let mut k = 0;
        let (mut worst_norm, mut worst_sample) = (0.0f64, 0.0f64);
        for (info, &want_norm) in g.layout.tensors().iter().zip(&norms) {
            let gt = &g.data[info.range()];
            let norm = gt
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                .sqrt();
            let rel = (norm - want_norm).abs() / want_norm;
            worst_norm = worst_norm.max(rel);
            assert!(
                rel <= 1e-3,
                "grad norm {}: {norm} vs {want_norm}",
                info.name
            );
            // Samples: atol relative to the tensor's RMS gradient (its max is not stored).
            let rms = want_norm / (info.len as f64).sqrt();
            let n = info.len.min(32);
            for j in 0..n {
                let (i, want) = (idx[k + j] as usize, val[k + j] as f64);
                let tol = 1e-3 * rms + 1e-3 * want.abs();
                let err = (gt[i] as f64 - want).abs();
                worst_sample = worst_sample.max(err / tol);
                assert!(err <= tol, "grad {}[{i}]: {} vs {want}", info.name, gt[i]);
            }
            k += n;
        }
        eprintln!(
            "full grads: worst norm rel {worst_norm:.2e}, worst sample err/tol {worst_sample:.3}"
        );
    });
}

#[test]
fn torch_init_reproduces_pytorch_construction() {
    let fx = Fixture::load("torch_init");
    let cfg = fx.config();
    let p = init_params(&cfg, fx.meta["seed"].as_u64().unwrap(), InitScheme::Torch);
    let idx = fx.u32s("sample_index");
    let val = fx.f32s("sample_value");
    let sums = fx.f64s("sums");
    let mut k = 0;
    let mut worst_normal = 0.0f64;
    for (info, &want_sum) in p.layout.tensors().iter().zip(&sums) {
        let t = &p.data[info.range()];
        let normal = TORCH_INIT_NORMAL_TENSORS.contains(&info.name.as_str());
        for j in 0..info.len.min(32) {
            let (i, want) = (idx[k + j] as usize, val[k + j]);
            if normal {
                // torch's vectorised log/sin/cos: last-bit differences only.
                let err = ((t[i] - want) / want.abs().max(1.0)).abs() as f64;
                worst_normal = worst_normal.max(err);
                assert!(err <= 1e-6, "{}[{i}]: {} vs torch {want}", info.name, t[i]);
            } else {
                assert_eq!(
                    t[i], want,
                    "{}[{i}] must be bit-identical to torch",
                    info.name
                );
            }
        }
        k += info.len.min(32);
        let sum: f64 = t.iter().map(|&x| x as f64).sum();
        assert!(
            (sum - want_sum).abs() <= 1e-4 * (info.len as f64).sqrt(),
            "{} sum {sum} vs torch {want_sum}",
            info.name
        );
    }
    eprintln!("torch init: uniforms bit-identical, normals within {worst_normal:.1e}");
}
