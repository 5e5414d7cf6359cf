//! Gradient checks of the hand-written backward passes (issue 4):
//!
//! * central finite differences (five-point stencil) in f64 on ≥ 32 sampled entries of every parameter tensor, on a
//!   tiny config and on the real 64-dim config at short context, with
//!   |fd − g| ≤ 1e-5·max(|g|, 1e-3·max|G|) (G = that tensor's analytic gradient), sampling
//!   away from ReLU kinks;
//! * the f32 kernels against the f64 ones: every tensor's gradient within 1e-4 relative.
//!
//! The kernels run in a 2-thread rayon pool, as `tinypoet train` runs them by default.

use tinypoet_trainer::nn::init::{golden_params, SplitMix64};
use tinypoet_trainer::nn::model::Model;
use tinypoet_trainer::nn::params::{Config, ParamsT};

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

fn tiny() -> Config {
    Config {
        vocab_size: 37,
        dim: 8,
        n_heads: 2,
        n_layers: 2,
        context: 12,
        ffn_dim: 16,
        ln_eps: 1e-5,
        attn_scale: 8f32.powf(-0.5),
    }
}

/// The real model's dims at a short context.
fn real_short() -> Config {
    Config {
        context: 16,
        ..Config::TANG
    }
}

fn batch(cfg: &Config, b: usize, t: usize, seed: u64) -> (Vec<u16>, Vec<u16>) {
    let mut sm = SplitMix64(seed);
    let mut draw = || (sm.next() % cfg.vocab_size as u64) as u16;
    let x: Vec<u16> = (0..b * t).map(|_| draw()).collect();
    let y: Vec<u16> = (0..b * t).map(|_| draw()).collect();
    (x, y)
}

/// Sample `k` distinct entries of a tensor; for embeddings, half of them from rows that the batch
/// actually uses (the others have zero gradient and would check nothing).
fn sample_entries(len: usize, k: usize, used: &[usize], sm: &mut SplitMix64) -> Vec<usize> {
    if len <= k {
        return (0..len).collect();
    }
    let mut out = Vec::new();
    while out.len() < k {
        let i = if !used.is_empty() && out.len() % 2 == 0 {
            used[(sm.next() % used.len() as u64) as usize]
        } else {
            (sm.next() % len as u64) as usize
        };
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

fn check_fd(cfg: Config, b: usize, t: usize, per_tensor: usize) {
    pool().install(|| {
        let p32 = golden_params(&cfg, 7);
        let mut p: ParamsT<f64> = p32.cast();
        let mut g = ParamsT::<f64>::zeros(&cfg);
        let mut model = Model::<f64>::new(&cfg, b, t).unwrap();
        let (x, y) = batch(&cfg, b, t, 11);
        model.forward_backward(&p, &mut g, &x, &y, b, t).unwrap();
        let base_pattern = model.relu_pattern_digest(b * t);
        let c = cfg.dim;
        let h = 1e-4;
        let mut sm = SplitMix64(99);
        let mut checked = 0;
        let mut worst = 0.0f64;
        for info in p.layout.tensors().to_vec() {
            let gt = &g.data[info.range()];
            let gmax = gt.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let used: Vec<usize> = match info.name.as_str() {
                "tok_emb" => x.iter().flat_map(|&id| (0..c).map(move |j| id as usize * c + j)).collect(),
                "pos_emb" => (0..t * c).collect(),
                _ => vec![],
            };
            let want = per_tensor.min(info.len);
            let mut done = 0;
            let mut tries = 0;
            for idx in sample_entries(info.len, info.len.min(4 * per_tensor), &used, &mut sm) {
                if done == want {
                    break;
                }
                tries += 1;
                let at = info.offset + idx;
                let orig = p.data[at];
                // Five-point central difference (error O(h⁴)); the loss is evaluated at ±h, ±2h.
                let mut f = [0.0f64; 4];
                let mut kink = false;
                for (k, off) in [2.0, 1.0, -1.0, -2.0].into_iter().enumerate() {
                    p.data[at] = orig + off * h;
                    f[k] = model.forward_loss(&p, &x, &y, b, t).unwrap();
                    kink |= model.relu_pattern_digest(b * t) != base_pattern;
                }
                p.data[at] = orig;
                if kink {
                    continue; // a ReLU input crosses 0 within ±2h: not differentiable here
                }
                let fd = (-f[0] + 8.0 * f[1] - 8.0 * f[2] + f[3]) / (12.0 * h);
                let an = g.data[at];
                let tol = 1e-5 * an.abs().max(1e-3 * gmax);
                let err = (fd - an).abs();
                assert!(
                    err <= tol,
                    "{} [{idx}]: fd {fd:e} vs analytic {an:e} (err {err:e} > tol {tol:e}, max|G| {gmax:e})",
                    info.name
                );
                worst = worst.max(err / tol);
                done += 1;
            }
            assert_eq!(done, want, "{}: only {done} kink-free entries in {tries} tries", info.name);
            assert!(gmax > 0.0, "{}: gradient is identically zero", info.name);
            checked += done;
        }
        eprintln!("fd check: {checked} entries over {} tensors, worst err/tol {worst:.3}", p.layout.tensors().len());
    });
}

#[test]
fn finite_differences_tiny_config() {
    check_fd(tiny(), 3, 12, 32);
}

#[test]
fn finite_differences_real_dims_short_context() {
    check_fd(real_short(), 2, 16, 32);
}

/// f32 kernels vs the same kernels in f64, same weights and batch.
fn check_f32_vs_f64(cfg: Config, b: usize, t: usize) {
    pool().install(|| {
        let p32 = golden_params(&cfg, 3);
        let p64: ParamsT<f64> = p32.cast();
        let (x, y) = batch(&cfg, b, t, 5);
        let mut g32 = ParamsT::<f32>::zeros(&cfg);
        let mut g64 = ParamsT::<f64>::zeros(&cfg);
        let l32 = Model::<f32>::new(&cfg, b, t)
            .unwrap()
            .forward_backward(&p32, &mut g32, &x, &y, b, t)
            .unwrap();
        let l64 = Model::<f64>::new(&cfg, b, t)
            .unwrap()
            .forward_backward(&p64, &mut g64, &x, &y, b, t)
            .unwrap();
        let lrel = ((l32 as f64 - l64) / l64).abs();
        assert!(lrel <= 1e-6, "loss f32 {l32} vs f64 {l64}");
        let mut worst = (0.0, String::new());
        for info in g64.layout.tensors() {
            let a = &g32.data[info.range()];
            let e = &g64.data[info.range()];
            let emax = e.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let dmax = a
                .iter()
                .zip(e)
                .fold(0.0f64, |m, (&a, &e)| m.max((a as f64 - e).abs()));
            let rel = dmax / emax;
            assert!(
                rel <= 1e-4,
                "{}: f32 vs f64 max diff {dmax:e} = {rel:e} of max|g|",
                info.name
            );
            if rel > worst.0 {
                worst = (rel, info.name.clone());
            }
        }
        eprintln!(
            "f32 vs f64: loss rel {lrel:e}, worst tensor {} at {:e}",
            worst.1, worst.0
        );
    });
}

#[test]
fn f32_kernels_match_f64_tiny() {
    check_f32_vs_f64(tiny(), 3, 12);
}

#[test]
fn f32_kernels_match_f64_full_config() {
    // The real model near its full context. 5×250 = 1,250 rows: LM-head tiles of 128 rows (the
    // last one partial) over four vocabulary parts, weight-gradient partials of 1,024 rows (the
    // second partial), LayerNorm partials, and attention blocks of 64 queries (the last 58).
    check_f32_vs_f64(Config::TANG, 5, 250);
}

/// The loss and every gradient of one full-model `forward_backward`, as bits (for the
/// bit-identity tests below), on the current rayon pool.
fn loss_and_grad_bits(
    cfg: &Config,
    p: &ParamsT<f32>,
    x: &[u16],
    y: &[u16],
    b: usize,
    t: usize,
) -> (u32, Vec<u32>) {
    let mut g = ParamsT::<f32>::zeros(cfg);
    let loss = Model::<f32>::new(cfg, b, t)
        .unwrap()
        .forward_backward(p, &mut g, x, y, b, t)
        .unwrap();
    (loss.to_bits(), g.data.iter().map(|v| v.to_bits()).collect())
}

/// Fixed partitions and fixed-order reductions: loss and every gradient are bit-identical with
/// 1, 2 and 3 worker threads (the full config at 5×250, see above).
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let cfg = Config::TANG;
    let (b, t) = (5, 250);
    let p = golden_params(&cfg, 13);
    let (x, y) = batch(&cfg, b, t, 17);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| loss_and_grad_bits(&cfg, &p, &x, &y, b, t))
    };
    let one = run(1);
    assert!(run(2) == one, "2 threads differ from 1");
    assert!(run(3) == one, "3 threads differ from 1");
}

/// The GEMM's AVX-512 kernel and its portable fallback compute the same fused-multiply-add
/// chains: loss and every gradient of the whole model are bit-identical with either (the full
/// config at 5×250). On a CPU without AVX-512 both runs take the portable path.
#[test]
fn results_do_not_depend_on_the_gemm_kernel() {
    use tinypoet_trainer::nn::ops::gemm::set_portable_only;
    let cfg = Config::TANG;
    let (b, t) = (5, 250);
    let p = golden_params(&cfg, 19);
    let (x, y) = batch(&cfg, b, t, 23);
    let run = |portable: bool| {
        set_portable_only(portable);
        let out = pool().install(|| loss_and_grad_bits(&cfg, &p, &x, &y, b, t));
        set_portable_only(false);
        out
    };
    let (fast, portable) = (run(false), run(true));
    assert!(fast.0 == portable.0, "losses differ");
    let differing = fast
        .1
        .iter()
        .zip(&portable.1)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing, 0,
        "gradient entries that differ between the kernels"
    );
}
