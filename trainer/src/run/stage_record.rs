//! What a finetune or alignment checkpoint records besides the pretraining fields: the stage,
//! its recipe, where its starting weights came from, its position and its log.
//!
//! Kept apart from the loop (`stages`) so that the checkpoint format depends only on plain
//! records, never on the code that runs a stage.

use serde::{Deserialize, Serialize};

use crate::nn::ops::align_loss::AlignLossConfig;

/// The training stages after pretraining (spec §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Instruction finetuning: masked cross-entropy on the instruction texts.
    Finetune,
    /// Alignment: the per-token preference loss on (five-character, other) pairs against a
    /// frozen copy of the starting weights.
    Align,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Finetune => "finetune",
            Stage::Align => "align",
        }
    }
}

/// Everything that determines a stage run (the recipe; stored in every checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageOptions {
    pub stage: Stage,
    /// AdamW learning rate (constant; a fresh optimizer, as every reference stage).
    pub lr: f32,
    /// Passes over the train split.
    pub epochs: u32,
    /// Items (finetune) or pairs (align) per batch; the last batch of an epoch is partial.
    pub batch: usize,
    /// Evaluate when the batch index within the epoch is a multiple of this (and at 0).
    pub eval_interval: u64,
    /// The alignment loss's constants (unused by finetune).
    pub align: AlignLossConfig,
    /// Title of the sample printed at each evaluation (instruction prompt).
    pub sample_title: String,
    /// New characters per sample (the reference: 100).
    pub sample_len: usize,
    /// Seed of the samples' sampler (each sample has its own stream; nothing else is random).
    pub seed: u32,
    /// Write a checkpoint every N updates (0: only on Ctrl-C and at the end).
    pub checkpoint_every: u64,
}

impl StageOptions {
    /// The reference recipe of a stage: finetune 5 epochs at lr 1e-3, align 3 epochs at 1e-5;
    /// batches of 16, evaluation every 50 batches, samples for 春夜喜雨.
    pub fn reference(stage: Stage) -> StageOptions {
        let (lr, epochs) = match stage {
            Stage::Finetune => (1e-3, 5),
            Stage::Align => (1e-5, 3),
        };
        StageOptions {
            stage,
            lr,
            epochs,
            batch: 16,
            eval_interval: 50,
            align: AlignLossConfig::REFERENCE,
            sample_title: "春夜喜雨".into(),
            sample_len: 100,
            seed: 2024,
            checkpoint_every: 200,
        }
    }

    /// One line for manifests and logs.
    pub fn recipe_line(&self) -> String {
        let mut s = format!(
            "tinypoet {} lr={} epochs={} batch={}x256 (cropped to the longest item) eval_every={}",
            self.stage.name(),
            self.lr,
            self.epochs,
            self.batch,
            self.eval_interval
        );
        if self.stage == Stage::Align {
            let a = &self.align;
            s += &format!(
                " loss=-logsigmoid({}*({}*reward+ + {}*reward-)) per token over B*256",
                a.beta, a.pos_weight, a.neg_weight
            );
        }
        s
    }
}

/// Where a stage's starting weights came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parent {
    /// `"checkpoint"` or `"blob"` (f16 weights upcast to f32).
    pub kind: String,
    /// The path as given.
    pub path: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// The parent's own recipe line (a stage's, or the pretraining recipe / blob manifest).
    pub recipe: String,
    /// The parent's step count (its optimizer updates).
    pub steps: u64,
}

/// One evaluation of a stage, taken before update `global_step` (= epoch·batches + step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRow {
    pub stage: Stage,
    pub epoch: u32,
    /// Batch index within the epoch.
    pub step: u64,
    /// Updates applied before this evaluation.
    pub global_step: u64,
    /// Mean train loss of the iterations since the previous evaluation of this epoch (0 at an
    /// epoch's step 0), as the reference prints it.
    pub train_loss: f64,
    /// Mean over all eval batches of the batch loss (the reference's estimator).
    pub eval_loss: f64,
    /// Alignment: mean train margin since the previous evaluation (like `train_loss`).
    pub train_margin: Option<f64>,
    /// Alignment: mean over all eval batches of the batch's mean margin.
    pub eval_margin: Option<f64>,
    /// The final evaluation after the last update (not a row the reference logs).
    pub after_last_update: bool,
    /// Training wall time so far, seconds (excluding evaluation).
    pub train_time_s: f64,
    /// The sample for the title: the poem as generated, cut at the first `\0`.
    pub sample: String,
}

/// A stage run's state, everything a checkpoint holds beyond parameters and moments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    pub options: StageOptions,
    pub parent: Parent,
    /// The next iteration to run: `epoch`, batch `index` within it.
    pub epoch: u32,
    pub index: u64,
    /// Sums since the last evaluation (the reference's `loss_sum`) and their count.
    pub loss_acc: f64,
    pub margin_acc: f64,
    pub acc_count: u64,
    pub rows: Vec<StageRow>,
    /// Alignment: the frozen reference parameters (the starting weights), f32 in canonical
    /// order; empty for finetune.
    pub reference_params: Vec<f32>,
}
