//! The alignment stage's per-token preference loss (spec §4, "DPO-like") and its backward.
//!
//! Inputs are per-position cross-entropies of one batch, all laid out alike ([B, T′] row-major,
//! position t of a positive row paired with position t of the negative row of the same pair;
//! an ignored position holds 0, as PyTorch's `reduction="none"` with `ignore_index` gives):
//! ℓ⁺, ℓ⁻ from the policy, r⁺, r⁻ from the frozen reference. Per position
//!
//! ```text
//! reward⁺ = r⁺ − ℓ⁺            reward⁻ = ℓ⁻ − r⁻
//! margin  = w⁺·reward⁺ + w⁻·reward⁻                 (w⁺ = 0.8, w⁻ = 0.2)
//! L       = (1/M) Σ −log σ(β·margin)                (β = 0.1, M = B·256)
//! ```
//!
//! and the reported margin is `(1/M) Σ margin`. The mean runs over all `M = B·256` positions
//! of the reference's fixed-width batch, padding included. When the batch was cropped to its
//! longest item (T′ < 256; causal attention makes the kept positions exact), the cropped-away
//! positions are all padding: ℓ = r = 0, margin 0, so each adds `ln 2` to the sum, nothing to
//! the margin and has no gradient — they are added analytically (`padding` below).
//!
//! Backward, with s = σ(−β·margin): `∂L/∂margin = −β·s/M`, so
//! `∂L/∂ℓ⁺ = w⁺·β·s/M` and `∂L/∂ℓ⁻ = −w⁻·β·s/M`. These are the per-position weights the
//! weighted cross-entropy backward of the head takes (`RowWeights::Given`); at ignored
//! positions the head gives no gradient whatever the weight.

use super::Float;

/// The loss's constants (the reference: β = 0.1, weights 0.8 / 0.2).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlignLossConfig {
    pub beta: f64,
    pub pos_weight: f64,
    pub neg_weight: f64,
}

impl AlignLossConfig {
    /// The reference's constants.
    pub const REFERENCE: AlignLossConfig = AlignLossConfig {
        beta: 0.1,
        pos_weight: 0.8,
        neg_weight: 0.2,
    };
}

/// The loss and the mean margin of one batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlignLoss {
    pub loss: f64,
    pub margin: f64,
}

/// `−log σ(x)`, stable for any x (= softplus(−x)).
fn neg_log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        (-x).exp().ln_1p()
    } else {
        -x + x.exp().ln_1p()
    }
}

/// `σ(x)`, stable for any x.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Forward: the loss and mean margin over `lp.len() + padding` positions (`padding`: the
/// positions cropped away, each margin 0). Sums run in position order in f64.
///
/// # Panics
/// If the four inputs differ in length, or there are no positions at all.
pub fn align_loss_forward<F: Float>(
    lp: &[F],
    ln: &[F],
    rp: &[F],
    rn: &[F],
    padding: usize,
    cfg: &AlignLossConfig,
) -> AlignLoss {
    let n = lp.len();
    assert!(
        ln.len() == n && rp.len() == n && rn.len() == n,
        "equal lengths"
    );
    let m = n + padding;
    assert!(m > 0, "no positions");
    let (mut loss, mut margin) = (0.0f64, 0.0f64);
    for t in 0..n {
        let mg = margin_at(lp[t], ln[t], rp[t], rn[t], cfg);
        loss += neg_log_sigmoid(cfg.beta * mg);
        margin += mg;
    }
    loss += padding as f64 * std::f64::consts::LN_2;
    AlignLoss {
        loss: loss / m as f64,
        margin: margin / m as f64,
    }
}

/// Forward and backward: as [`align_loss_forward`], and `d_lp`, `d_ln` (same length as `lp`)
/// receive `∂L/∂ℓ⁺`, `∂L/∂ℓ⁻` (the reference's r⁺, r⁻ get none: it is frozen).
#[allow(clippy::too_many_arguments)]
pub fn align_loss_forward_backward<F: Float>(
    d_lp: &mut [F],
    d_ln: &mut [F],
    lp: &[F],
    ln: &[F],
    rp: &[F],
    rn: &[F],
    padding: usize,
    cfg: &AlignLossConfig,
) -> AlignLoss {
    let out = align_loss_forward(lp, ln, rp, rn, padding, cfg);
    let n = lp.len();
    assert!(d_lp.len() == n && d_ln.len() == n, "gradient lengths");
    let inv_m = 1.0 / (n + padding) as f64;
    for t in 0..n {
        let mg = margin_at(lp[t], ln[t], rp[t], rn[t], cfg);
        // ∂L/∂margin = −β·σ(−β·margin)/M.
        let dm = -cfg.beta * sigmoid(-cfg.beta * mg) * inv_m;
        // margin = w⁺(r⁺ − ℓ⁺) + w⁻(ℓ⁻ − r⁻).
        d_lp[t] = F::from_f64(-cfg.pos_weight * dm);
        d_ln[t] = F::from_f64(cfg.neg_weight * dm);
    }
    out
}

#[inline]
fn margin_at<F: Float>(lp: F, ln: F, rp: F, rn: F, cfg: &AlignLossConfig) -> f64 {
    let reward_pos = rp.to_f64() - lp.to_f64();
    let reward_neg = ln.to_f64() - rn.to_f64();
    cfg.pos_weight * reward_pos + cfg.neg_weight * reward_neg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_policy_and_reference_give_ln2_and_zero_margin() {
        let l = [1.5f32, 0.0, 2.25, 7.0];
        let out = align_loss_forward(&l, &l, &l, &l, 12, &AlignLossConfig::REFERENCE);
        assert!((out.loss - std::f64::consts::LN_2).abs() < 1e-15, "{out:?}");
        assert_eq!(out.margin, 0.0);
    }

    #[test]
    fn stable_at_extreme_margins() {
        for x in [-800.0, -40.0, 0.0, 40.0, 800.0] {
            let v = neg_log_sigmoid(x);
            assert!(v.is_finite() && v >= 0.0, "{x} → {v}");
            assert!((sigmoid(x) + sigmoid(-x) - 1.0).abs() < 1e-15);
        }
        assert!((neg_log_sigmoid(-800.0) - 800.0).abs() < 1e-9);
    }
}
