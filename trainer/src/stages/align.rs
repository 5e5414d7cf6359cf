//! The alignment objective (spec §4, "DPO-like", per token): for a batch of `B` (positive,
//! negative) pairs in order, the frozen reference's per-position cross-entropies r⁺, r⁻
//! (forward only), then the policy's ℓ⁺, ℓ⁻ on the positive and negative rows as one batch of
//! 2B rows; the per-token loss ([`crate::nn::ops::align_loss`]) turns them into the loss, the
//! margin and per-position weights ∂L/∂ℓ that the head's weighted cross-entropy backward takes.
//! Runs as a [`crate::stages::tune`] stage.

use crate::data::corpus::Dataset;
use crate::data::stage_batch::{align_batch, AlignBatch, WIDTH};
use crate::nn::model::{ModelError, TrainModel};
use crate::nn::ops::align_loss::{
    align_loss_forward, align_loss_forward_backward, AlignLoss, AlignLossConfig,
};
use crate::nn::params::Params;
use crate::run::train_loop::StepLoss;

/// The alignment pairs of a dataset, the frozen reference and their buffers (allocated once).
pub struct Align<'d> {
    ds: &'d Dataset,
    batch: usize,
    loss: AlignLossConfig,
    /// The frozen reference weights (the stage's starting weights).
    reference: Params,
    pairs: AlignBatch,
    /// The reference's per-position losses of the current batch [2B·T′].
    ref_losses: Vec<f32>,
    /// The reference's per-position losses of every eval batch (it is frozen, so they are
    /// computed once).
    ref_eval: Vec<Vec<f32>>,
}

impl<'d> Align<'d> {
    pub fn new(ds: &'d Dataset, batch: usize, loss: AlignLossConfig, reference: Params) -> Self {
        Align {
            ds,
            batch,
            loss,
            reference,
            pairs: AlignBatch::with_capacity(batch),
            ref_losses: vec![0.0; 2 * batch * WIDTH],
            ref_eval: Vec::new(),
        }
    }

    /// Rows of the model's batch buffers (both sides of each pair).
    pub fn model_rows(&self) -> usize {
        2 * self.batch
    }

    pub fn reference(&self) -> &Params {
        &self.reference
    }

    /// Forward and backward of train batch `i` into `grads`: the loss and the mean margin.
    pub fn train_batch(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        grads: &mut Params,
        i: usize,
    ) -> Result<StepLoss, ModelError> {
        align_batch(&mut self.pairs, &self.ds.alignment_train(), self.batch, i);
        let (b, padding, cfg) = (&self.pairs.rows, self.pairs.padding(), self.loss);
        let n = b.rows * b.seq;
        model.forward_loss(&self.reference, &b.inputs, &b.targets, b.rows, b.seq)?;
        self.ref_losses[..n].copy_from_slice(model.last_losses(n));
        let half = n / 2;
        let (rp, rn) = self.ref_losses[..n].split_at(half);
        let mut out = None;
        model.forward_backward_weighted(
            params,
            grads,
            &b.inputs,
            &b.targets,
            b.rows,
            b.seq,
            |l, w| {
                let (lp, ln) = l.split_at(half);
                let (wp, wn) = w.split_at_mut(half);
                out = Some(align_loss_forward_backward(
                    wp, wn, lp, ln, rp, rn, padding, &cfg,
                ));
            },
        )?;
        let AlignLoss { loss, margin } = out.expect("the weights closure ran");
        Ok(StepLoss { loss, margin })
    }

    /// The loss and mean margin of eval batch `i`.
    pub fn eval_batch(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        i: usize,
    ) -> Result<StepLoss, ModelError> {
        align_batch(&mut self.pairs, &self.ds.alignment_eval(), self.batch, i);
        let b = &self.pairs.rows;
        let n = b.rows * b.seq;
        if self.ref_eval.len() == i {
            model.forward_loss(&self.reference, &b.inputs, &b.targets, b.rows, b.seq)?;
            self.ref_eval.push(model.last_losses(n).to_vec());
        }
        model.forward_loss(params, &b.inputs, &b.targets, b.rows, b.seq)?;
        let l = model.last_losses(n);
        let r = &self.ref_eval[i];
        let half = n / 2;
        let out = align_loss_forward(
            &l[..half],
            &l[half..],
            &r[..half],
            &r[half..],
            self.pairs.padding(),
            &self.loss,
        );
        Ok(StepLoss {
            loss: out.loss,
            margin: out.margin,
        })
    }
}
