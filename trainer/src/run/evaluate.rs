//! Eval-loss estimators.
//!
//! # The reference estimator ([`reference_loss`])
//!
//! What TutorialLLM prints as "evaluate loss": the mean, over `n_batches` (100) batches, of the
//! batch-mean cross-entropy, each batch made of `B` windows of `T` tokens whose starts are drawn
//! from the run's torch-compatible MT19937 stream exactly like the train batches
//! (`start = next_u32() % (len − T)`, B draws per batch). It is cheap and noisy (±0.02 at the
//! reference's settings), and it consumes `n_batches·B` draws of the training stream, as the
//! reference does, so runs with it stay comparable draw for draw.
//!
//! # The deterministic estimator ([`deterministic_loss`]) — the one the bars use
//!
//! Let the eval split be tokens `x[0..L)`. Every token `x[1..L)` is predicted exactly once:
//! cut the `L − 1` predictions into consecutive, non-overlapping windows of `W` positions
//! (`W` = the training sequence length, 256 by default = the model's context). Window `k` starts
//! at `s = k·W`; its inputs are `x[s..s+n)` and its targets `x[s+1..s+n+1)` with
//! `n = min(W, L − 1 − s)`; the last window is partial when `(L − 1) mod W ≠ 0`. Each window is
//! an independent context (positions restart at 0; no state carries over). The loss is
//! `Σ CE / (L − 1)` over all positions, summed in f64 in window order. For the Tang eval split
//! (L = 172,506) that is 673 full windows and one window of 217 positions.
//!
//! The same definition is computed through the core ([`core_loss`]) for a blob, feeding each
//! window's tokens one by one into a fresh decoder state, so the f16 model's loss is directly
//! comparable with the f32 checkpoint's.

use crate::data::batch::random_batch;
use crate::nn::model::{ModelError, TrainModel};
use crate::nn::mt19937::Mt19937;
use crate::nn::params::Params;

/// One window of the deterministic estimator: predictions for targets `start+1 ..= start+len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub len: usize,
}

/// The windows of the deterministic estimator over an eval split of `n_tokens` tokens.
pub fn windows(n_tokens: usize, window: usize) -> Vec<Window> {
    assert!(window > 0, "window length must be positive");
    let predictions = n_tokens.saturating_sub(1);
    (0..predictions)
        .step_by(window)
        .map(|start| Window {
            start,
            len: window.min(predictions - start),
        })
        .collect()
}

/// Reusable input/target buffers for the trainer-kernel estimators (no allocation per batch).
pub struct EvalScratch {
    inputs: Vec<u16>,
    targets: Vec<u16>,
}

impl EvalScratch {
    pub fn new(batch: usize, seq: usize) -> Self {
        EvalScratch {
            inputs: vec![0; batch * seq],
            targets: vec![0; batch * seq],
        }
    }
}

/// The reference estimator (module docs). Consumes `n_batches · b` draws of `rng`.
///
/// # Errors
/// The model's [`ModelError`] when `b`/`t` exceed its capacity, `params` do not fit it or `eval`
/// holds an id outside the vocabulary.
#[allow(clippy::too_many_arguments)]
pub fn reference_loss(
    model: &mut TrainModel,
    params: &Params,
    eval: &[u16],
    rng: &mut Mt19937,
    n_batches: usize,
    b: usize,
    t: usize,
    scratch: &mut EvalScratch,
) -> Result<f64, ModelError> {
    let mut sum = 0.0f64;
    for _ in 0..n_batches {
        random_batch(
            eval,
            rng,
            b,
            t,
            &mut scratch.inputs[..b * t],
            &mut scratch.targets[..b * t],
        );
        let loss = model.forward_loss(
            params,
            &scratch.inputs[..b * t],
            &scratch.targets[..b * t],
            b,
            t,
        )?;
        sum += loss as f64;
    }
    Ok(sum / n_batches.max(1) as f64)
}

/// The deterministic estimator (module docs) with the trainer's kernels, `batch` full windows per
/// forward pass. Returns `(mean CE, number of predictions)`.
///
/// # Errors
/// The model's [`ModelError`] when `window` (or `batch` windows) exceed its capacity, `params`
/// do not fit it or `eval` holds an id outside the vocabulary (evaluation writes nothing but the
/// model's scratch, so an error loses nothing).
pub fn deterministic_loss(
    model: &mut TrainModel,
    params: &Params,
    eval: &[u16],
    window: usize,
    batch: usize,
    scratch: &mut EvalScratch,
) -> Result<(f64, usize), ModelError> {
    // `windows` needs a positive length; the model gives the typed error for the rest.
    if window == 0 || window > model.max_seq() {
        return Err(ModelError::SeqOutOfRange {
            got: window,
            max: model.max_seq(),
        });
    }
    let ws = windows(eval.len(), window);
    let predictions = eval.len().saturating_sub(1);
    let mut sum = 0.0f64;
    let full: Vec<&Window> = ws.iter().filter(|w| w.len == window).collect();
    for group in full.chunks(batch.max(1)) {
        let b = group.len();
        for (row, w) in group.iter().enumerate() {
            scratch.inputs[row * window..(row + 1) * window]
                .copy_from_slice(&eval[w.start..w.start + window]);
            scratch.targets[row * window..(row + 1) * window]
                .copy_from_slice(&eval[w.start + 1..w.start + window + 1]);
        }
        let n = b * window;
        let mean = model.forward_loss(
            params,
            &scratch.inputs[..n],
            &scratch.targets[..n],
            b,
            window,
        )?;
        sum += mean as f64 * n as f64;
    }
    if let Some(last) = ws.iter().find(|w| w.len < window) {
        let n = last.len;
        scratch.inputs[..n].copy_from_slice(&eval[last.start..last.start + n]);
        scratch.targets[..n].copy_from_slice(&eval[last.start + 1..last.start + n + 1]);
        let mean = model.forward_loss(params, &scratch.inputs[..n], &scratch.targets[..n], 1, n)?;
        sum += mean as f64 * n as f64;
    }
    Ok((sum / predictions.max(1) as f64, predictions))
}

/// The deterministic estimator through the core (module docs): each window is fed token by
/// token into a fresh decoder and the cross-entropy of every next token is taken from the core's
/// logits (`Decoder::window_nll`). Windows run in parallel on the current rayon pool, each worker with its own
/// run-state buffer; per-window sums are combined in window order, so the result does not depend
/// on the thread count. Returns `(mean CE, number of predictions)`.
pub fn core_loss(
    model: &tinypoet_core::Model,
    eval: &[u16],
    window: usize,
) -> Result<(f64, usize), CoreEvalError> {
    use rayon::prelude::*;
    use tinypoet_core::{state_words, Decoder, KvPrecision};

    let cfg = *model.config();
    if window == 0 || window > cfg.context {
        return Err(CoreEvalError::Window {
            window,
            context: cfg.context,
        });
    }
    if let Some(&bad) = eval.iter().find(|&&id| id as usize >= cfg.vocab_size) {
        return Err(CoreEvalError::TokenOutOfRange {
            id: bad,
            vocab_size: cfg.vocab_size,
        });
    }
    let ws = windows(eval.len(), window);
    let words = state_words(&cfg, KvPrecision::F16);
    let sums: Vec<Result<f64, tinypoet_core::Error>> = ws
        .par_iter()
        .map_init(
            || vec![0f32; words],
            |state, w| {
                // A fresh decoder (positions from 0) per window; the core sums
                // `logsumexp(l) − l[target]` in f64 over the window's positions.
                let mut dec = Decoder::new(model, state, KvPrecision::F16)?;
                dec.window_nll(
                    &eval[w.start..w.start + w.len],
                    &eval[w.start + 1..w.start + w.len + 1],
                )
            },
        )
        .collect();
    let mut total = 0.0f64;
    for s in sums {
        total += s.map_err(CoreEvalError::Core)?;
    }
    let predictions = eval.len().saturating_sub(1);
    Ok((total / predictions.max(1) as f64, predictions))
}

/// `−log softmax(logits)[target]`, in f64 (the same formula as the core's `window_nll`).
pub fn cross_entropy(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln() - logits[target] as f64
}

/// Why [`core_loss`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CoreEvalError {
    #[error("window length {window} must be between 1 and the model context {context}")]
    Window { window: usize, context: usize },
    #[error("token id {id} of the eval data is outside the model's vocabulary of {vocab_size}")]
    TokenOutOfRange { id: u16, vocab_size: usize },
    #[error("core: {0}")]
    Core(tinypoet_core::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_prediction_once() {
        for (len, w) in [
            (0, 4),
            (1, 4),
            (2, 4),
            (9, 4),
            (10, 4),
            (11, 4),
            (172_506, 256),
        ] {
            let ws = windows(len, w);
            let mut next = 0;
            for win in &ws {
                assert_eq!(win.start, next);
                assert!(win.len >= 1 && win.len <= w);
                next += win.len;
            }
            assert_eq!(next, len.saturating_sub(1), "len {len}");
            // Only the last window may be partial.
            assert!(ws.iter().rev().skip(1).all(|x| x.len == w));
        }
        let tang = windows(172_506, 256);
        assert_eq!(tang.len(), 674);
        assert_eq!(tang.last().unwrap().len, 217);
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_v() {
        let l = vec![0.5f32; 10];
        assert!((cross_entropy(&l, 3) - 10f64.ln()).abs() < 1e-12);
        let l = [0.0f32, 1000.0, 0.0];
        assert!(cross_entropy(&l, 1).abs() < 1e-12);
    }
}
