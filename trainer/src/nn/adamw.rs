//! AdamW exactly as PyTorch's `torch.optim.AdamW` (single-tensor path, amsgrad off), gradient
//! clipping by global norm, and learning-rate schedules.
//!
//! Per element, with step t (1-based) and PyTorch's operation order:
//! ```text
//! p ← p·(1 − lr·wd)                      decoupled weight decay, on every parameter
//! m ← m + (1 − β1)·(g − m)               exp_avg.lerp_(grad, 1 − β1)
//! v ← β2·v + (1 − β2)·g·g                exp_avg_sq.mul_(β2).addcmul_(grad, grad, 1 − β2)
//! p ← p − (lr/(1 − β1ᵗ))·m / (√v/√(1 − β2ᵗ) + eps)
//! ```
//! The scalar factors are computed in f64 and rounded to f32 once, as PyTorch does with its
//! Python-float scalars. (PyTorch's vectorised `lerp` uses a fused multiply-add, so the moment
//! can differ from it in the last bit.)

use rayon::prelude::*;

/// Elements per parallel task (fixed partition; the update is element-wise anyway).
const CHUNK: usize = 1 << 15;

/// Hyper-parameters; [`Default`] is PyTorch's AdamW default with the reference's lr 1e-3.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Optimizer state: first and second moments over the flat parameter buffer, and the step count.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Number of updates taken so far (PyTorch's `state['step']`).
    pub t: u64,
    pub cfg: AdamWConfig,
}

impl AdamW {
    /// Fresh state (zero moments, t = 0) for `n` parameters.
    pub fn new(n: usize, cfg: AdamWConfig) -> Self {
        AdamW {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            cfg,
        }
    }

    /// One update of `p` with gradient `g` at learning rate `lr` (the schedule's value for this
    /// step; `cfg.lr` is only the base rate). Increments `t` first, like PyTorch.
    pub fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32) {
        assert_eq!(
            p.len(),
            self.m.len(),
            "parameter count differs from the optimizer's"
        );
        assert_eq!(
            g.len(),
            self.m.len(),
            "gradient count differs from the optimizer's"
        );
        self.t += 1;
        let c = self.cfg;
        let t = self.t as f64;
        let lr64 = lr as f64;
        let decay = (1.0 - lr64 * c.weight_decay as f64) as f32;
        let bc1 = 1.0 - (c.beta1 as f64).powf(t);
        let bc2 = 1.0 - (c.beta2 as f64).powf(t);
        let step_size = (lr64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let one_minus_b1 = (1.0 - c.beta1 as f64) as f32;
        let one_minus_b2 = (1.0 - c.beta2 as f64) as f32;
        let (b2, eps) = (c.beta2, c.eps);
        p.par_chunks_mut(CHUNK)
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for i in 0..p.len() {
                    let gi = g[i];
                    let mut pi = p[i] * decay;
                    let mi = m[i] + one_minus_b1 * (gi - m[i]);
                    let vi = v[i] * b2 + one_minus_b2 * gi * gi;
                    let denom = vi.sqrt() / bc2_sqrt + eps;
                    pi += -step_size * mi / denom;
                    p[i] = pi;
                    m[i] = mi;
                    v[i] = vi;
                }
            });
    }
}

/// Euclidean norm of the whole gradient, summed in f64 over fixed chunks combined in order
/// (deterministic for any schedule).
pub fn global_norm(g: &[f32]) -> f32 {
    let mut parts = [0.0f64; 64];
    let chunk = g.len().div_ceil(parts.len()).max(1);
    parts
        .par_iter_mut()
        .zip(g.par_chunks(chunk))
        .for_each(|(s, c)| *s = c.iter().map(|&x| (x as f64) * (x as f64)).sum());
    parts.iter().sum::<f64>().sqrt() as f32
}

/// Scale `g` so its global norm is at most `max_norm` (PyTorch `clip_grad_norm_`: factor
/// `max_norm/(norm + 1e-6)` when that is below 1). Returns the norm before clipping.
pub fn clip_grad_norm(g: &mut [f32], max_norm: f32) -> f32 {
    let norm = global_norm(g);
    let coef = max_norm as f64 / (norm as f64 + 1e-6);
    if coef < 1.0 {
        let coef = coef as f32;
        g.par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|x| *x *= coef));
    }
    norm
}

/// Learning-rate schedule over 0-based update indices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// The reference: the base rate at every step.
    Constant,
    /// Linear warm-up from base/warmup to base over `warmup` steps, then cosine decay to
    /// `min_lr` at step `total` (and `min_lr` after).
    WarmupCosine {
        warmup: u64,
        total: u64,
        min_lr: f32,
    },
}

impl LrSchedule {
    /// Learning rate for update `step` (0-based) given the base rate.
    pub fn lr_at(&self, base: f32, step: u64) -> f32 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::WarmupCosine {
                warmup,
                total,
                min_lr,
            } => {
                if step < warmup {
                    return base * (step + 1) as f32 / warmup as f32;
                }
                let span = total.saturating_sub(warmup).max(1);
                let progress = ((step - warmup) as f64 / span as f64).min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                (min_lr as f64 + (base as f64 - min_lr as f64) * cos) as f32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The update written out in f64 for one element, for comparison.
    fn reference(p: f64, g: &[f64], lr: f64) -> f64 {
        let (mut p, mut m, mut v) = (p, 0.0, 0.0);
        for (t, &gi) in g.iter().enumerate() {
            let t = (t + 1) as f64;
            p *= 1.0 - lr * 0.01;
            m = 0.9 * m + 0.1 * gi;
            v = 0.999 * v + 0.001 * gi * gi;
            p -= lr / (1.0 - 0.9f64.powf(t)) * m
                / (v.sqrt() / (1.0 - 0.999f64.powf(t)).sqrt() + 1e-8);
        }
        p
    }

    #[test]
    fn matches_the_formula_over_several_steps() {
        let gs = [0.3, -1.2, 0.05, 2.0, -0.7];
        let mut opt = AdamW::new(1, AdamWConfig::default());
        let mut p = [0.5f32];
        for &g in &gs {
            opt.step(&mut p, &[g as f32], 1e-3);
        }
        let want = reference(0.5, &gs, 1e-3);
        assert!((p[0] as f64 - want).abs() < 1e-6, "{} vs {want}", p[0]);
        assert_eq!(opt.t, 5);
    }

    #[test]
    fn weight_decay_applies_even_with_zero_gradient() {
        let mut opt = AdamW::new(1, AdamWConfig::default());
        let mut p = [2.0f32];
        opt.step(&mut p, &[0.0], 0.1);
        assert!((p[0] - 2.0 * (1.0 - 0.1 * 0.01)).abs() < 1e-7);
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let mut g = vec![3.0f32, 4.0];
        let n = clip_grad_norm(&mut g, 1.0);
        assert!((n - 5.0).abs() < 1e-6);
        assert!((global_norm(&g) - 1.0).abs() < 1e-5);
        let mut h = vec![0.3f32, 0.4];
        clip_grad_norm(&mut h, 1.0);
        assert_eq!(h, vec![0.3, 0.4]);
    }

    #[test]
    fn schedules() {
        let s = LrSchedule::WarmupCosine {
            warmup: 10,
            total: 110,
            min_lr: 1e-4,
        };
        assert!((s.lr_at(1e-3, 0) - 1e-4).abs() < 1e-9);
        assert!((s.lr_at(1e-3, 9) - 1e-3).abs() < 1e-9);
        assert!((s.lr_at(1e-3, 10) - 1e-3).abs() < 1e-9);
        assert!((s.lr_at(1e-3, 60) - 5.5e-4).abs() < 1e-8);
        assert!((s.lr_at(1e-3, 110) - 1e-4).abs() < 1e-9);
        assert!((s.lr_at(1e-3, 500) - 1e-4).abs() < 1e-9);
        assert_eq!(LrSchedule::Constant.lr_at(1e-3, 7), 1e-3);
    }
}
