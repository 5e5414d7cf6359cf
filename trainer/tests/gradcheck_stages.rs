//! Gradient checks of the two losses of the finetune and alignment stages (issue 14), in the
//! style of `gradcheck.rs`:
//!
//! * the masked cross-entropy (targets `IGNORE`d like PyTorch's −100, mean over the rest) and
//!   the alignment loss (per token, through the head's weighted cross-entropy backward), each by
//!   central five-point finite differences in f64 on sampled entries of every parameter tensor,
//!   |fd − g| ≤ 1e-5·max(|g|, 1e-3·max|G|), away from ReLU kinks;
//! * the alignment loss alone against finite differences in its four inputs;
//! * cropping a padded batch to its longest row changes neither loss nor gradient (causal
//!   attention), and the masked loss equals a direct f64 log-softmax over the kept positions.

use tinypoet_trainer::data::stage_batch::instruction_row;
use tinypoet_trainer::nn::init::{golden_params, SplitMix64};
use tinypoet_trainer::nn::model::Model;
use tinypoet_trainer::nn::ops::align_loss::{
    align_loss_forward, align_loss_forward_backward, AlignLossConfig,
};
use tinypoet_trainer::nn::ops::head_ce::IGNORE;
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

/// `rows` items of random lengths in 1..=2t (longer ones are cut, as the stages do), built
/// into `t`-wide rows with the stages' padding and label masking. Ids avoid 0 so that every
/// row's only trained `\0` is its end-of-text.
fn stage_rows(cfg: &Config, rows: usize, t: usize, seed: u64) -> (Vec<u16>, Vec<u16>) {
    let mut sm = SplitMix64(seed);
    let (mut x, mut y) = (vec![0u16; rows * t], vec![0u16; rows * t]);
    for r in 0..rows {
        let len = 1 + (sm.next() % (2 * t as u64)) as usize;
        let item: Vec<u16> = (0..len)
            .map(|_| 1 + (sm.next() % (cfg.vocab_size as u64 - 1)) as u16)
            .collect();
        instruction_row(
            &item,
            t,
            &mut x[r * t..(r + 1) * t],
            &mut y[r * t..(r + 1) * t],
        );
    }
    (x, y)
}

/// Central five-point finite differences of `loss` against the analytic gradient `g` on up to
/// `per_tensor` kink-free entries of every tensor. `loss` returns (loss, ReLU-pattern digest).
fn check_against_fd(
    cfg: &Config,
    p: &mut ParamsT<f64>,
    g: &ParamsT<f64>,
    base_pattern: u64,
    x: &[u16],
    per_tensor: usize,
    mut loss: impl FnMut(&ParamsT<f64>) -> (f64, u64),
) {
    let c = cfg.dim;
    let h = 1e-4;
    let mut sm = SplitMix64(99);
    let (mut checked, mut worst) = (0, 0.0f64);
    for info in p.layout.tensors().to_vec() {
        let gt = &g.data[info.range()];
        let gmax = gt.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(gmax > 0.0, "{}: gradient is identically zero", info.name);
        let used: Vec<usize> = match info.name.as_str() {
            "tok_emb" => x
                .iter()
                .flat_map(|&id| (0..c).map(move |j| id as usize * c + j))
                .collect(),
            _ => vec![],
        };
        let want = per_tensor.min(info.len);
        let mut done = 0;
        for _ in 0..4 * per_tensor {
            if done == want {
                break;
            }
            let idx = if !used.is_empty() && done % 2 == 0 {
                used[(sm.next() % used.len() as u64) as usize]
            } else {
                (sm.next() % info.len as u64) as usize
            };
            let at = info.offset + idx;
            let orig = p.data[at];
            let mut f = [0.0f64; 4];
            let mut kink = false;
            for (k, off) in [2.0, 1.0, -1.0, -2.0].into_iter().enumerate() {
                p.data[at] = orig + off * h;
                let (l, pattern) = loss(p);
                f[k] = l;
                kink |= pattern != base_pattern;
            }
            p.data[at] = orig;
            if kink {
                continue;
            }
            let fd = (-f[0] + 8.0 * f[1] - 8.0 * f[2] + f[3]) / (12.0 * h);
            let an = g.data[at];
            let tol = 1e-5 * an.abs().max(1e-3 * gmax);
            let err = (fd - an).abs();
            assert!(
                err <= tol,
                "{} [{idx}]: fd {fd:e} vs analytic {an:e} (err {err:e} > tol {tol:e})",
                info.name
            );
            worst = worst.max(err / tol);
            done += 1;
        }
        assert!(
            done * 2 >= want,
            "{}: only {done} kink-free entries",
            info.name
        );
        checked += done;
    }
    eprintln!("fd check: {checked} entries, worst err/tol {worst:.3}");
}

#[test]
fn masked_cross_entropy_finite_differences() {
    let cfg = tiny();
    let (b, t) = (4, 12);
    pool().install(|| {
        let mut p: ParamsT<f64> = golden_params(&cfg, 7).cast();
        let mut g = ParamsT::<f64>::zeros(&cfg);
        let mut model = Model::<f64>::new(&cfg, b, t).unwrap();
        let (x, y) = stage_rows(&cfg, b, t, 3);
        let ignored = y.iter().filter(|&&v| v == IGNORE).count();
        assert!(ignored > 0 && ignored < b * t, "{ignored} ignored");
        model.forward_backward(&p, &mut g, &x, &y, b, t).unwrap();
        let base = model.relu_pattern_digest(b * t);
        check_against_fd(&cfg, &mut p, &g, base, &x, 24, |p| {
            let l = model.forward_loss(p, &x, &y, b, t).unwrap();
            (l, model.relu_pattern_digest(b * t))
        });
    });
}

/// The policy's and the reference's per-position losses → the alignment loss; the policy's
/// gradient through `forward_backward_weighted`.
#[test]
fn alignment_loss_finite_differences() {
    let cfg = tiny();
    let (pairs, t) = (3, 12);
    let rows = 2 * pairs;
    let al = AlignLossConfig::REFERENCE;
    let padding = pairs * 5; // as if the rows had been cropped from t + 5
    pool().install(|| {
        let mut p: ParamsT<f64> = golden_params(&cfg, 7).cast();
        let reference: ParamsT<f64> = golden_params(&cfg, 8).cast();
        let mut g = ParamsT::<f64>::zeros(&cfg);
        let mut model = Model::<f64>::new(&cfg, rows, t).unwrap();
        let (x, y) = stage_rows(&cfg, rows, t, 5);
        let n = rows * t;
        model.forward_loss(&reference, &x, &y, rows, t).unwrap();
        let r = model.last_losses(n).to_vec();
        let half = n / 2;
        model
            .forward_backward_weighted(&p, &mut g, &x, &y, rows, t, |l, w| {
                let (wp, wn) = w.split_at_mut(half);
                align_loss_forward_backward(
                    wp,
                    wn,
                    &l[..half],
                    &l[half..],
                    &r[..half],
                    &r[half..],
                    padding,
                    &al,
                );
            })
            .unwrap();
        let base = model.relu_pattern_digest(n);
        check_against_fd(&cfg, &mut p, &g, base, &x, 24, |p| {
            model.forward_loss(p, &x, &y, rows, t).unwrap();
            let l = model.last_losses(n);
            let out =
                align_loss_forward(&l[..half], &l[half..], &r[..half], &r[half..], padding, &al);
            (out.loss, model.relu_pattern_digest(n))
        });
    });
}

#[test]
fn alignment_loss_op_finite_differences() {
    let al = AlignLossConfig::REFERENCE;
    let mut sm = SplitMix64(1);
    let mut draw = |n: usize| -> Vec<f64> {
        (0..n)
            .map(|_| (sm.next() % 10_000) as f64 / 1000.0)
            .collect()
    };
    let n = 40;
    let (mut lp, mut ln, rp, rn) = (draw(n), draw(n), draw(n), draw(n));
    // Some ignored positions (0 everywhere), as padding inside a cropped batch.
    for t in (0..n).step_by(7) {
        lp[t] = 0.0;
        ln[t] = 0.0;
    }
    let padding = 13;
    let (mut dp, mut dn) = (vec![0.0; n], vec![0.0; n]);
    align_loss_forward_backward(&mut dp, &mut dn, &lp, &ln, &rp, &rn, padding, &al);
    let h = 1e-4;
    for t in 0..n {
        for (side, d) in [(0, dp[t]), (1, dn[t])] {
            let mut f = [0.0; 4];
            for (k, off) in [2.0, 1.0, -1.0, -2.0].into_iter().enumerate() {
                let (mut a, mut b) = (lp.clone(), ln.clone());
                if side == 0 {
                    a[t] += off * h;
                } else {
                    b[t] += off * h;
                }
                f[k] = align_loss_forward(&a, &b, &rp, &rn, padding, &al).loss;
            }
            let fd = (-f[0] + 8.0 * f[1] - 8.0 * f[2] + f[3]) / (12.0 * h);
            assert!(
                (fd - d).abs() <= 1e-6 * d.abs(),
                "{t}/{side}: fd {fd:e} vs {d:e}"
            );
        }
    }
    // The signs: a worse positive (higher ℓ⁺) raises the loss, a worse negative lowers it.
    assert!(dp.iter().all(|&d| d > 0.0) && dn.iter().all(|&d| d < 0.0));
}

/// The stages crop rows to the batch's longest item: with causal attention and the padded
/// positions ignored, loss and gradient are those of the full-width batch (f64, to rounding).
/// The loss also equals a direct log-softmax over the kept positions of the full logits.
#[test]
fn cropping_and_masking_are_exact() {
    let cfg = tiny();
    let (b, t) = (3, 12);
    pool().install(|| {
        let p: ParamsT<f64> = golden_params(&cfg, 21).cast();
        let items: [&[u16]; 3] = [&[3, 4, 5, 6], &[7, 8, 9, 10, 11, 12, 13], &[14, 15]];
        let build = |w: usize| {
            let (mut x, mut y) = (vec![0u16; b * w], vec![0u16; b * w]);
            for (r, item) in items.iter().enumerate() {
                instruction_row(
                    item,
                    w,
                    &mut x[r * w..(r + 1) * w],
                    &mut y[r * w..(r + 1) * w],
                );
            }
            (x, y)
        };
        let (xf, yf) = build(t);
        let (xc, yc) = build(7);
        let mut gf = ParamsT::<f64>::zeros(&cfg);
        let mut gc = ParamsT::<f64>::zeros(&cfg);
        let lf = Model::<f64>::new(&cfg, b, t)
            .unwrap()
            .forward_backward(&p, &mut gf, &xf, &yf, b, t)
            .unwrap();
        let lc = Model::<f64>::new(&cfg, b, 7)
            .unwrap()
            .forward_backward(&p, &mut gc, &xc, &yc, b, 7)
            .unwrap();
        assert!((lf - lc).abs() <= 1e-13 * lf, "full {lf} vs cropped {lc}");
        let gmax = gf.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, c) in gf.data.iter().zip(&gc.data) {
            assert!((a - c).abs() <= 1e-12 * gmax, "gradient {a} vs {c}");
        }
        // Direct: −log softmax at the kept positions, averaged over them.
        let logits = Model::<f64>::new(&cfg, b, t)
            .unwrap()
            .forward_logits(&p, &xf, b, t)
            .unwrap();
        let v = cfg.vocab_size;
        let (mut sum, mut kept) = (0.0, 0);
        for (pos, &target) in yf.iter().enumerate() {
            if target == IGNORE {
                continue;
            }
            let row = &logits[pos * v..(pos + 1) * v];
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z));
            let lse = m + row.iter().map(|z| (z - m).exp()).sum::<f64>().ln();
            sum += lse - row[target as usize];
            kept += 1;
        }
        // 4 + 7 + 2 kept positions: every item's characters after the first, plus its `\0`.
        assert_eq!(kept, 13);
        assert!(
            (sum / kept as f64 - lf).abs() <= 1e-12,
            "direct {} vs {lf}",
            sum / kept as f64
        );
    });
}
