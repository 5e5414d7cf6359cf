//! The finetune objective (spec §4): the mean cross-entropy over the positions of the
//! instruction texts that are not ignored, on batches of `B` items in order, cropped to the
//! longest ([`crate::data::stage_batch`]). Runs as a [`crate::stages::tune`] stage.

use crate::data::corpus::Dataset;
use crate::data::stage_batch::{finetune_batch, RowBatch};
use crate::nn::model::{ModelError, TrainModel};
use crate::nn::params::Params;
use crate::run::train_loop::StepLoss;

/// The finetune batches of a dataset and their buffer (allocated once).
pub struct Finetune<'d> {
    ds: &'d Dataset,
    batch: usize,
    rows: RowBatch,
}

impl<'d> Finetune<'d> {
    pub fn new(ds: &'d Dataset, batch: usize) -> Finetune<'d> {
        Finetune {
            ds,
            batch,
            rows: RowBatch::with_capacity(batch),
        }
    }

    /// Rows of the model's batch buffers.
    pub fn model_rows(&self) -> usize {
        self.batch
    }

    /// Forward and backward of train batch `i` into `grads`.
    pub fn train_batch(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        grads: &mut Params,
        i: usize,
    ) -> Result<StepLoss, ModelError> {
        finetune_batch(&mut self.rows, &self.ds.finetune_train(), self.batch, i);
        let b = &self.rows;
        let loss = model.forward_backward(params, grads, &b.inputs, &b.targets, b.rows, b.seq)?;
        Ok(StepLoss {
            loss: loss as f64,
            margin: 0.0,
        })
    }

    /// The loss of eval batch `i`.
    pub fn eval_batch(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        i: usize,
    ) -> Result<StepLoss, ModelError> {
        finetune_batch(&mut self.rows, &self.ds.finetune_eval(), self.batch, i);
        let b = &self.rows;
        let loss = model.forward_loss(params, &b.inputs, &b.targets, b.rows, b.seq)?;
        Ok(StepLoss {
            loss: loss as f64,
            margin: 0.0,
        })
    }
}
