//! The pretraining stage (spec §2 pretrain stream, §4): batches of `B` random windows of
//! `T + 1` tokens of the train stream, the mean next-token cross-entropy, and both eval-loss
//! estimators of `run::evaluate` over the eval stream. [`train`] runs it on the shared loop.

use crate::data::batch::random_batch;
use crate::nn::model::{ModelError, TrainModel};
use crate::nn::mt19937::Mt19937;
use crate::nn::params::Params;
use crate::run::evaluate::{self, EvalScratch};
use crate::run::options::TrainOptions;
use crate::run::train_loop::{self, EvalLosses, Objective, RunData, RunIo, RunOutcome, Start};

/// The data a pretraining run trains on (borrowed from a prepared dataset or built in memory by
/// tests).
pub struct TrainData<'a> {
    /// Characters in id order.
    pub vocab: &'a [char],
    pub train: &'a [u16],
    pub eval: &'a [u16],
    /// Hex content hash of the dataset (stored in checkpoints, checked on resume).
    pub dataset_hash: String,
}

/// Run (or continue) a pretraining run. See `run::train_loop` for the loop.
pub fn train(data: &TrainData, start: Start, io: &RunIo) -> anyhow::Result<RunOutcome> {
    let run_data = RunData {
        vocab: data.vocab,
        dataset_hash: &data.dataset_hash,
    };
    let mut objective = Pretrain::new(data);
    train_loop::run(&run_data, &mut objective, start, io)
}

/// The pretraining objective: the batch buffers and eval scratch, sized by [`Objective::begin`].
struct Pretrain<'d> {
    train: &'d [u16],
    eval: &'d [u16],
    vocab_len: usize,
    batch: usize,
    seq: usize,
    eval_batches: usize,
    inputs: Vec<u16>,
    targets: Vec<u16>,
    scratch: EvalScratch,
}

impl<'d> Pretrain<'d> {
    fn new(data: &TrainData<'d>) -> Self {
        Pretrain {
            train: data.train,
            eval: data.eval,
            vocab_len: data.vocab.len(),
            batch: 0,
            seq: 0,
            eval_batches: 0,
            inputs: Vec::new(),
            targets: Vec::new(),
            scratch: EvalScratch::new(0, 0),
        }
    }
}

impl Objective for Pretrain<'_> {
    fn name(&self) -> &'static str {
        "pretraining"
    }

    fn begin(&mut self, opts: &TrainOptions) -> anyhow::Result<()> {
        opts.validate(self.train.len(), self.eval.len(), self.vocab_len)?;
        let (b, t) = (opts.batch, opts.seq);
        self.batch = b;
        self.seq = t;
        self.eval_batches = opts.eval_batches;
        self.inputs = vec![0; b * t];
        self.targets = vec![0; b * t];
        self.scratch = EvalScratch::new(b, t);
        Ok(())
    }

    fn loss_and_grad(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        grads: &mut Params,
        rng: &mut Mt19937,
    ) -> Result<f32, ModelError> {
        let (b, t) = (self.batch, self.seq);
        random_batch(self.train, rng, b, t, &mut self.inputs, &mut self.targets);
        model.forward_backward(params, grads, &self.inputs, &self.targets, b, t)
    }

    fn skip_batch(&self, rng: &mut Mt19937) {
        // `random_batch` draws one start per row.
        for _ in 0..self.batch {
            rng.next_u32();
        }
    }

    fn evaluate(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        rng: &mut Mt19937,
    ) -> Result<EvalLosses, ModelError> {
        let (b, t) = (self.batch, self.seq);
        let eval_loss_reference = evaluate::reference_loss(
            model,
            params,
            self.eval,
            rng,
            self.eval_batches,
            b,
            t,
            &mut self.scratch,
        )?;
        let (eval_loss, _) =
            evaluate::deterministic_loss(model, params, self.eval, t, b, &mut self.scratch)?;
        Ok(EvalLosses {
            eval_loss,
            eval_loss_reference,
        })
    }
}
