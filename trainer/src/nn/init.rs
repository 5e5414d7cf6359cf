//! Parameter initialisation: PyTorch's defaults (spec §3), seeded.
//!
//! * Embeddings ~ N(0, 1); every Linear weight ~ U(±bound) with PyTorch's
//!   `kaiming_uniform_(a = √5)` bound (= 1/√fan_in) and its bias ~ U(±1/√fan_in); LayerNorm
//!   gain 1, shift 0.
//! * [`InitScheme::Torch`] draws from a port of PyTorch's CPU generator (MT19937 seeded like
//!   `torch.manual_seed`), consuming it exactly as the reference run's model construction does,
//!   so the reference's weights are reproduced up to the last bit of its vectorised normal
//!   sampler. [`InitScheme::Fast`] draws the same distributions from SplitMix64.
//! * [`golden_params`] is a simple documented generator shared with `tests/golden/make_golden.py`
//!   for the full-config golden test (bit-identical in Python and Rust).

use crate::nn::mt19937::Mt19937;
use crate::nn::params::{Config, Params, TensorKind};

/// Which random stream initialises the parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitScheme {
    /// torch-CPU-generator exact: `torch.manual_seed(seed)`, then the reference run's
    /// [`REFERENCE_DRAWS_BEFORE_INIT`] draws (its demo batch), then construction order.
    Torch,
    /// Same distributions from SplitMix64 (not PyTorch's stream).
    Fast,
}

/// The tensors [`InitScheme::Torch`] fills from N(0, 1) (all others are uniform or constant).
pub const TORCH_INIT_NORMAL_TENSORS: [&str; 2] = ["tok_emb", "pos_emb"];

/// Raw draws the reference run takes from the torch generator before building the model (the
/// 16 window starts of the demo batch printed in stage 1).
pub const REFERENCE_DRAWS_BEFORE_INIT: usize = 16;

/// Initialise all parameters.
pub fn init_params(cfg: &Config, seed: u64, scheme: InitScheme) -> Params {
    match scheme {
        InitScheme::Torch => {
            // torch.manual_seed keeps the low 32 bits for MT19937.
            let mut rng = Mt19937::init_genrand(seed as u32);
            for _ in 0..REFERENCE_DRAWS_BEFORE_INIT {
                rng.next_u32();
            }
            init_params_torch(cfg, &mut rng)
        }
        InitScheme::Fast => {
            let mut sm = SplitMix64(seed);
            init_with(cfg, &mut || (sm.next() >> 32) as u32)
        }
    }
}

/// Initialise from an already-positioned torch generator, consuming exactly the draws the
/// reference's `TutorialLLM(...)` constructor consumes (1,317,220 for the reference model), so
/// the caller can continue the same stream for batches.
pub fn init_params_torch(cfg: &Config, rng: &mut Mt19937) -> Params {
    init_with(cfg, &mut || rng.next_u32())
}

/// PyTorch construction order: token and position embeddings, then per block the heads'
/// key/query/value weights (head by head), the output projection, the FFN; then the LM head.
/// LayerNorms take no draws.
fn init_with(cfg: &Config, next: &mut dyn FnMut() -> u32) -> Params {
    let mut p = Params::zeros(cfg);
    let (c, hd) = (cfg.dim, cfg.head_dim());
    // Fill every LayerNorm gain with 1 first (no draws).
    let layout = p.layout.clone();
    for (t, k) in layout.tensors().iter().zip(layout.kinds()) {
        if *k == TensorKind::NormWeight {
            p.data[t.range()].fill(1.0);
        }
    }
    let r = layout.ranges();
    normal_fill(&mut p.data[r.tok_emb.clone()], next);
    normal_fill(&mut p.data[r.pos_emb.clone()], next);
    for b in &r.blocks {
        // wqkv = [wq; wk; wv], each [C, C]; head h owns rows h·D..(h+1)·D of each.
        let (q0, k0, v0) = (b.wqkv.start, b.wqkv.start + c * c, b.wqkv.start + 2 * c * c);
        for h in 0..cfg.n_heads {
            let rows = h * hd * c..(h + 1) * hd * c;
            for base in [k0, q0, v0] {
                uniform_fill(
                    &mut p.data[base + rows.start..base + rows.end],
                    kaiming_bound(c),
                    next,
                );
            }
        }
        uniform_fill(&mut p.data[b.proj_w.clone()], kaiming_bound(c), next);
        uniform_fill(&mut p.data[b.proj_b.clone()], bias_bound(c), next);
        uniform_fill(&mut p.data[b.fc1_w.clone()], kaiming_bound(c), next);
        uniform_fill(&mut p.data[b.fc1_b.clone()], bias_bound(c), next);
        uniform_fill(
            &mut p.data[b.fc2_w.clone()],
            kaiming_bound(cfg.ffn_dim),
            next,
        );
        uniform_fill(&mut p.data[b.fc2_b.clone()], bias_bound(cfg.ffn_dim), next);
    }
    uniform_fill(&mut p.data[r.head_w.clone()], kaiming_bound(c), next);
    uniform_fill(&mut p.data[r.head_b.clone()], bias_bound(c), next);
    p
}

/// `kaiming_uniform_(w, a=√5)` bound, computed in f64 like PyTorch's Python code:
/// gain = √(2/(1+a²)), bound = √3·gain/√fan_in (= 1/√fan_in up to rounding).
fn kaiming_bound(fan_in: usize) -> f32 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    (3f64.sqrt() * (gain / (fan_in as f64).sqrt())) as f32
}

/// `nn.Linear` bias bound 1/√fan_in.
fn bias_bound(fan_in: usize) -> f32 {
    (1.0 / (fan_in as f64).sqrt()) as f32
}

/// torch `uniform_real_distribution<float>`: 24 random bits scaled to [0, 1).
#[inline]
fn unit24(x: u32) -> f32 {
    (x & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
}

/// `tensor.uniform_(-bound, bound)`: one raw draw per element, `x·(to − from) + from`.
fn uniform_fill(out: &mut [f32], bound: f32, next: &mut dyn FnMut() -> u32) {
    let (from, to) = (-bound, bound);
    let span = (to - from) as f64;
    for o in out {
        *o = (unit24(next()) as f64 * span + from as f64) as f32;
    }
}

/// `tensor.normal_(0, 1)` for tensors of ≥ 16 elements (torch's `normal_fill`): fill with
/// uniforms, then Box–Muller on each block of 16 (element j pairs with j+8); a tail that is not a
/// multiple of 16 redraws the last 16 elements and transforms them again.
fn normal_fill(out: &mut [f32], next: &mut dyn FnMut() -> u32) {
    assert!(
        out.len() >= 16,
        "torch's normal_fill path needs at least 16 elements"
    );
    for o in out.iter_mut() {
        *o = unit24(next());
    }
    let n = out.len();
    for i in (0..n - 15).step_by(16) {
        box_muller_16(&mut out[i..i + 16]);
    }
    if !n.is_multiple_of(16) {
        let tail = &mut out[n - 16..];
        for o in tail.iter_mut() {
            *o = unit24(next());
        }
        box_muller_16(tail);
    }
}

fn box_muller_16(d: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - d[j] as f64; // (0, 1]: safe for ln
        let u2 = d[j + 8] as f64;
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        d[j] = (radius * theta.cos()) as f32;
        d[j + 8] = (radius * theta.sin()) as f32;
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): the simple, documented generator of the Fast scheme
/// and of [`golden_params`].
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Weights for the full-config golden test, generated identically by
/// `tests/golden/make_golden.py`. One SplitMix64 stream seeded with `seed` runs over the tensors
/// in canonical order; each element takes one draw `z` and is
/// `((z >> 40)·2⁻²³ − 1)·bound` computed in f64 and rounded to f32 once, where `bound` is 1 for
/// embeddings, 1/√fan_in for Linear weights and biases, 0.2 for LayerNorm shifts, and LayerNorm
/// gains are `1 + 0.2·(…)` instead.
pub fn golden_params(cfg: &Config, seed: u64) -> Params {
    let mut p = Params::zeros(cfg);
    let mut sm = SplitMix64(seed);
    let layout = p.layout.clone();
    for (t, k) in layout.tensors().iter().zip(layout.kinds()) {
        let (bound, shift) = match *k {
            TensorKind::Embedding => (1.0, 0.0),
            TensorKind::LinearWeight { fan_in } | TensorKind::LinearBias { fan_in } => {
                (1.0 / (fan_in as f64).sqrt(), 0.0)
            }
            TensorKind::NormWeight => (0.2, 1.0),
            TensorKind::NormBias => (0.2, 0.0),
        };
        for o in &mut p.data[t.range()] {
            let u = (sm.next() >> 40) as f64 * (1.0 / 8_388_608.0) - 1.0; // [-1, 1)
            *o = (shift + u * bound) as f32;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_scheme_consumes_the_reference_draw_count() {
        let cfg = Config::TANG;
        let mut rng = Mt19937::init_genrand(2024);
        let mut counting = 0usize;
        let _ = init_with(&cfg, &mut || {
            counting += 1;
            rng.next_u32()
        });
        assert_eq!(counting, 1_317_220);
    }

    #[test]
    fn distributions_have_the_pytorch_bounds() {
        let cfg = Config::TANG;
        let p = init_params(&cfg, 2024, InitScheme::Torch);
        let max_abs = |name: &str| p.tensor(name).iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(max_abs("blocks.0.attn.wq") <= 0.125);
        assert!(max_abs("blocks.0.ffn.fc2.weight") <= 0.0625);
        assert!(max_abs("head.bias") <= 0.125);
        assert!(p.tensor("blocks.2.ln1.weight").iter().all(|&x| x == 1.0));
        assert!(p.tensor("ln_f.bias").iter().all(|&x| x == 0.0));
        let e = p.tensor("tok_emb");
        let mean = e.iter().map(|&x| x as f64).sum::<f64>() / e.len() as f64;
        let var = e.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / e.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.01,
            "mean {mean} var {var}"
        );
        assert_eq!(kaiming_bound(64), 0.125);
        assert_eq!(kaiming_bound(256), 0.0625);
    }
}
