//! The options of a training run: everything that determines it, stored in every checkpoint
//! (model shape, learning rate and schedule, batch, steps, eval cadence, seed, init, samples).

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::nn::adamw::LrSchedule;
use crate::nn::params::ModelShape;

/// Learning-rate schedule as stored in the options.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// The reference: the base learning rate throughout.
    Constant,
    /// Linear warmup over `warmup_steps` from 0 to the base rate, then cosine decay to
    /// `min_lr_ratio · base` at the last step.
    WarmupCosine {
        warmup_steps: u64,
        min_lr_ratio: f32,
    },
}

/// Parameter initialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Init {
    /// PyTorch's default init drawn from the torch-compatible stream exactly as the reference
    /// run consumes it: 16 draws (the demo batch the reference prints), then the parameters in
    /// construction order, then the training batches. With seed 2024 this reproduces the
    /// reference's step-0 eval loss.
    Torch,
    /// The same distributions from SplitMix64 seeded with the seed (faster; not PyTorch's
    /// stream). The batches still come from the torch-compatible stream.
    Fast,
}

/// Everything that determines a training run (stored in every checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub model: ModelShape,
    /// Base learning rate.
    pub lr: f32,
    pub schedule: Schedule,
    /// Clip the global gradient norm to this value (off by default, like the reference).
    pub grad_clip: Option<f32>,
    /// Batch size B.
    pub batch: usize,
    /// Sequence length T (≤ context).
    pub seq: usize,
    /// Total optimizer steps.
    pub steps: u64,
    /// Evaluate every K steps (and at step 0).
    pub eval_interval: u64,
    /// Batches of the reference estimator (the reference: 100).
    pub eval_batches: usize,
    /// Seed of the torch-compatible stream (`torch.manual_seed`).
    pub seed: u32,
    pub init: Init,
    /// Write a checkpoint every N steps (0: only on Ctrl-C and at the end).
    pub checkpoint_every: u64,
    /// Prompt of the samples printed at each evaluation.
    pub sample_prompt: String,
    /// New tokens per sample (the reference: 100).
    pub sample_len: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            model: ModelShape::default(),
            lr: 1e-3,
            schedule: Schedule::Constant,
            grad_clip: None,
            batch: 16,
            seq: 256,
            steps: 20_000,
            eval_interval: 100,
            eval_batches: 100,
            seed: 2024,
            init: Init::Torch,
            checkpoint_every: 1000,
            sample_prompt: "春夜喜雨".into(),
            sample_len: 100,
        }
    }
}

impl TrainOptions {
    /// The one-line recipe of a run that stopped after `steps` updates (the blob manifest's
    /// `recipe`).
    pub fn recipe(&self, steps: u64) -> String {
        let schedule = match self.schedule {
            Schedule::Constant => "constant".to_string(),
            Schedule::WarmupCosine {
                warmup_steps,
                min_lr_ratio,
            } => format!("warmup{warmup_steps}+cosine(min {min_lr_ratio})"),
        };
        format!(
            "tinypoet pretrain lr={} schedule={} clip={} batch={}x{} seed={} steps={}",
            self.lr,
            schedule,
            self.grad_clip.map_or("off".to_string(), |c| c.to_string()),
            self.batch,
            self.seq,
            self.seed,
            steps
        )
    }

    /// The learning-rate schedule of the numerics.
    pub fn lr_schedule(&self) -> LrSchedule {
        match self.schedule {
            Schedule::Constant => LrSchedule::Constant,
            Schedule::WarmupCosine {
                warmup_steps,
                min_lr_ratio,
            } => LrSchedule::WarmupCosine {
                warmup: warmup_steps,
                total: self.steps,
                min_lr: self.lr * min_lr_ratio,
            },
        }
    }

    /// Check the options against the data they will run on: the lengths of the train and eval
    /// token streams and the vocabulary size.
    pub fn validate(
        &self,
        train_len: usize,
        eval_len: usize,
        vocab_len: usize,
    ) -> anyhow::Result<()> {
        let m = &self.model;
        if m.dim == 0 || m.n_heads == 0 || !m.dim.is_multiple_of(m.n_heads) {
            bail!(
                "model dim {} must be a positive multiple of the head count {}",
                m.dim,
                m.n_heads
            );
        }
        if self.batch == 0 || self.seq == 0 {
            bail!("batch and sequence length must be positive");
        }
        if self.seq > m.context {
            bail!(
                "sequence length {} exceeds the model context {}",
                self.seq,
                m.context
            );
        }
        if self.eval_interval == 0 {
            bail!("eval interval must be positive");
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            bail!("learning rate must be a finite non-negative number");
        }
        if train_len <= self.seq + 1 {
            bail!(
                "the train split has {} tokens, too few for sequence length {}",
                train_len,
                self.seq
            );
        }
        if eval_len <= self.seq + 1 {
            bail!(
                "the eval split has {} tokens, too few for sequence length {}",
                eval_len,
                self.seq
            );
        }
        if vocab_len > u16::MAX as usize + 1 {
            bail!(
                "vocabulary of {} characters does not fit u16 ids",
                vocab_len
            );
        }
        Ok(())
    }
}
