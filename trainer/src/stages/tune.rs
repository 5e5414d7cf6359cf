//! The finetune and alignment stages (spec §2, §4): sequential epochs of fixed batches over the
//! shared loop (`run::train_loop`), with the finetune or the align objective
//! ([`super::finetune`], [`super::align`]).
//!
//! Both start from trained weights ([`super::start`]: a checkpoint, or a blob whose f16 weights
//! are upcast to f32), with a fresh AdamW (moments and t reset) at a constant learning rate, and
//! go through the train split in order, in the same batches every epoch. Iteration `i` of an
//! epoch trains on batch `i` ([`crate::data::stage_batch`]: fixed 256-wide rows cropped to the
//! longest); if `i % K == 0` it first evaluates over every eval batch (the mean of the batch
//! losses, and for align of the batch margins) and samples for the title through
//! `tinypoet-core`, printed as the reference does: `Epoch e, step i, train loss X, evaluate
//! loss Y` (align adds `train reward margin`, `evaluate reward margin`), X the mean of the
//! epoch's iterations since the previous evaluation (0 at step 0: the sums restart every epoch).
//!
//! After the last update a final evaluation is logged (`after_last_update`; the reference's
//! last row is the one before its last update). Checkpoints hold the stage, its recipe, its
//! parent, its position and (align) the frozen reference weights, so a resumed stage is
//! bit-identical to one that never stopped: nothing in a stage is random except the samples,
//! whose seeds derive from the seed and the update count.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

use crate::data::corpus::text::instruction_prompt;
use crate::data::corpus::Dataset;
use crate::data::stage_batch::{batch_count, WIDTH};
use crate::nn::model::{ModelError, TrainModel};
use crate::nn::mt19937::Mt19937;
use crate::nn::params::{Config, ModelShape, Params};
use crate::run::checkpoint::Checkpoint;
use crate::run::options::TrainOptions;
use crate::run::plot;
use crate::run::stage_record::{Stage, StageOptions, StageRow, StageState};
use crate::run::train_loop::{
    self, CheckpointPart, EvalPoint, Plan, RunIo, RunState, StepLoss, TrainStage, TrainSums,
};
use crate::stages::align::Align;
use crate::stages::finetune::Finetune;
use crate::stages::start::StartWeights;

/// How a stage run starts.
pub enum StageStart {
    Fresh {
        options: StageOptions,
        from: Box<StartWeights>,
    },
    /// Continue a stage checkpoint; `checkpoint_every` may change (nothing else may).
    Resume {
        checkpoint: Box<Checkpoint>,
        checkpoint_every: Option<u64>,
    },
}

/// What a stage run ended with.
#[derive(Debug)]
pub struct StageOutcome {
    /// Updates done in the stage.
    pub updates: u64,
    pub interrupted: bool,
    pub checkpoint_path: PathBuf,
    pub rows: Vec<StageRow>,
}

/// Run (or continue) a stage. `stop_after`: stop as on Ctrl-C (save, return `interrupted`) once
/// the stage has done this many updates in total.
pub fn run_stage(
    ds: &Dataset,
    start: StageStart,
    io: &RunIo,
    stop_after: Option<u64>,
) -> anyhow::Result<StageOutcome> {
    train_loop::with_threads(io.threads, || {
        let (st, record, pretrain_options, reference) = match start {
            StageStart::Fresh { options, from } => fresh(ds, options, *from)?,
            StageStart::Resume {
                checkpoint,
                checkpoint_every,
            } => resume(ds, *checkpoint, checkpoint_every)?,
        };
        let o = &record.options;
        validate(o, st.params.config())?;
        let objective = match (o.stage, reference) {
            (Stage::Finetune, _) => Objective::Finetune(Finetune::new(ds, o.batch)),
            (Stage::Align, Some(r)) => {
                Objective::Align(Box::new(Align::new(ds, o.batch, o.align, r)))
            }
            (Stage::Align, None) => bail!("an align stage needs its reference weights"),
        };
        let mut stage = Tune::new(ds, record, pretrain_options, objective)?;
        let end = train_loop::run(&mut stage, st, io, stop_after)?;
        if end.interrupted && io.print {
            let path = end.checkpoint_path.display();
            crate::errln!(
                "interrupted: saved {path} after {} updates; continue with --resume {path}",
                end.step
            );
        }
        Ok(StageOutcome {
            updates: end.step,
            interrupted: end.interrupted,
            checkpoint_path: end.checkpoint_path,
            rows: stage.record.rows,
        })
    })
}

/// A stage's state: the loop's, its record, its parent's pretraining options and (align) the
/// frozen reference.
type Started = (RunState, StageState, TrainOptions, Option<Params>);

fn fresh(ds: &Dataset, options: StageOptions, from: StartWeights) -> anyhow::Result<Started> {
    if from.vocab.as_slice() != ds.vocab() {
        bail!(
            "the starting weights' vocabulary ({} characters) differs from the dataset's ({})",
            from.vocab.len(),
            ds.vocab().len()
        );
    }
    let cfg = *from.params.config();
    let pretrain_options = from.pretrain_options.unwrap_or_else(|| TrainOptions {
        model: ModelShape::from(&cfg),
        ..TrainOptions::default()
    });
    let reference = (options.stage == Stage::Align).then(|| from.params.clone());
    let record = StageState {
        options,
        parent: from.parent,
        epoch: 0,
        index: 0,
        loss_acc: 0.0,
        margin_acc: 0.0,
        acc_count: 0,
        rows: Vec::new(),
        reference_params: Vec::new(),
    };
    // (Nothing in a stage draws from the batch stream.)
    let st = RunState::fresh(from.params, Mt19937::init_genrand(0));
    Ok((st, record, pretrain_options, reference))
}

fn resume(ds: &Dataset, ckpt: Checkpoint, every: Option<u64>) -> anyhow::Result<Started> {
    let Some(mut record) = ckpt.stage else {
        bail!(
            "this is a pretraining checkpoint: continue it with `tinypoet train --resume`, \
             or start a stage from it with --from"
        );
    };
    let meta = ckpt.meta;
    if meta.dataset_hash != ds.content_hash() {
        bail!("the checkpoint was trained on another dataset");
    }
    if meta.vocab.as_slice() != ds.vocab() {
        bail!("the checkpoint's vocabulary differs from the dataset's");
    }
    if let Some(e) = every {
        record.options.checkpoint_every = e;
    }
    let cfg = Config::from(&meta.config);
    let params = Params::from_vec(&cfg, ckpt.params)
        .context("checkpoint parameter count does not match its config")?;
    let reference = match record.options.stage {
        Stage::Align => Some(
            Params::from_vec(&cfg, std::mem::take(&mut record.reference_params))
                .context("the checkpoint's reference weights")?,
        ),
        Stage::Finetune => None,
    };
    // The final row (after the last update) is recomputed if the run is finished again.
    record.rows.retain(|r| !r.after_last_update);
    let mut st = RunState::resumed(params, &meta, ckpt.adam_m, ckpt.adam_v);
    st.sums = TrainSums {
        loss: record.loss_acc,
        margin: record.margin_acc,
        count: record.acc_count,
    };
    Ok((st, record, meta.options, reference))
}

fn validate(o: &StageOptions, cfg: &Config) -> anyhow::Result<()> {
    if o.batch == 0 || o.eval_interval == 0 || o.epochs == 0 {
        bail!("batch, eval interval and epochs must be positive");
    }
    if !(o.lr.is_finite() && o.lr >= 0.0) {
        bail!("learning rate must be a finite non-negative number");
    }
    if cfg.context < WIDTH {
        bail!(
            "the model's context {} is shorter than the stage's rows ({WIDTH})",
            cfg.context
        );
    }
    Ok(())
}

/// The stage's objective: its batches and their loss.
enum Objective<'d> {
    Finetune(Finetune<'d>),
    Align(Box<Align<'d>>),
}

impl Objective<'_> {
    fn model_rows(&self) -> usize {
        match self {
            Objective::Finetune(f) => f.model_rows(),
            Objective::Align(a) => a.model_rows(),
        }
    }

    fn train_batch(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        grads: &mut Params,
        i: usize,
    ) -> Result<StepLoss, ModelError> {
        match self {
            Objective::Finetune(f) => f.train_batch(model, params, grads, i),
            Objective::Align(a) => a.train_batch(model, params, grads, i),
        }
    }

    fn eval_batch(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        i: usize,
    ) -> Result<StepLoss, ModelError> {
        match self {
            Objective::Finetune(f) => f.eval_batch(model, params, i),
            Objective::Align(a) => a.eval_batch(model, params, i),
        }
    }
}

/// A finetune or align stage over the shared loop.
struct Tune<'d> {
    ds: &'d Dataset,
    objective: Objective<'d>,
    /// Options, parent, position and rows (the train sums live in the loop's state).
    record: StageState,
    /// The parent's pretraining options (kept in every checkpoint).
    pretrain_options: TrainOptions,
    train_batches: usize,
    eval_batches: usize,
    plot_title: String,
}

impl<'d> Tune<'d> {
    fn new(
        ds: &'d Dataset,
        record: StageState,
        pretrain_options: TrainOptions,
        objective: Objective<'d>,
    ) -> anyhow::Result<Tune<'d>> {
        let o = &record.options;
        let (train, eval) = match o.stage {
            Stage::Finetune => (ds.finetune_train().len(), ds.finetune_eval().len()),
            Stage::Align => (ds.alignment_train().len(), ds.alignment_eval().len()),
        };
        if train == 0 || eval == 0 {
            bail!(
                "the dataset has {train} train and {eval} eval items for the {} stage; both \
                 must be non-empty",
                o.stage.name()
            );
        }
        let train_batches = batch_count(train, o.batch);
        // Checked up front so a bad title fails before any training.
        ds.encode(&instruction_prompt(&o.sample_title))
            .map_err(|e| anyhow!("sample title: {e}"))?;
        let plot_title = format!(
            "tinypoet {}: {} epochs x {train_batches} batches of {}, lr={} (from {})",
            o.stage.name(),
            o.epochs,
            o.batch,
            o.lr,
            record.parent.path
        );
        Ok(Tune {
            ds,
            objective,
            train_batches,
            eval_batches: batch_count(eval, o.batch),
            plot_title,
            pretrain_options,
            record,
        })
    }
}

impl TrainStage for Tune<'_> {
    type Row = StageRow;

    fn plan(&self) -> Plan {
        let o = &self.record.options;
        Plan {
            name: o.stage.name(),
            unit: "update",
            kind: Some(o.stage),
            total_updates: o.epochs as u64 * self.train_batches as u64,
            checkpoint_every: o.checkpoint_every,
            grad_clip: None,
            batch_rows: self.objective.model_rows(),
            batch_seq: WIDTH,
            saves_start: false,
        }
    }

    fn lr_at(&self, _step: u64) -> f32 {
        self.record.options.lr
    }

    fn position(&self, _step: u64) -> String {
        format!("epoch {} step {}", self.record.epoch, self.record.index)
    }

    fn eval_due(&self, _step: u64) -> bool {
        self.record
            .index
            .is_multiple_of(self.record.options.eval_interval)
    }

    fn loss_and_grad(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        grads: &mut Params,
        _rng: &mut Mt19937,
    ) -> Result<StepLoss, ModelError> {
        let i = self.record.index as usize;
        self.objective.train_batch(model, params, grads, i)
    }

    fn skip_batch(&self, _rng: &mut Mt19937) {}

    fn advance(&mut self) -> bool {
        let r = &mut self.record;
        r.index += 1;
        // The reference's sums restart with every epoch.
        let new_epoch = r.index as usize == self.train_batches;
        if new_epoch {
            r.epoch += 1;
            r.index = 0;
        }
        new_epoch
    }

    /// The reference estimator (the mean over every eval batch of the batch loss, and margin)
    /// and the sample for the title.
    fn evaluate(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        _rng: &mut Mt19937,
        at: &EvalPoint,
    ) -> anyhow::Result<StageRow> {
        let (mut loss, mut margin) = (0.0f64, 0.0f64);
        for i in 0..self.eval_batches {
            let b = self.objective.eval_batch(model, params, i)?;
            loss += b.loss;
            margin += b.margin;
        }
        let k = self.eval_batches as f64;
        let o = &self.record.options;
        let seed = train_loop::sample_seed(o.seed, at.step);
        let sample = sample_poem(params, self.ds.vocab(), &o.sample_title, o.sample_len, seed)?;
        let (align, last) = (o.stage == Stage::Align, at.after_last_update);
        Ok(StageRow {
            stage: o.stage,
            epoch: if last { o.epochs } else { self.record.epoch },
            step: if last { 0 } else { self.record.index },
            global_step: at.step,
            // (The final row has no train interval: 0, the reference's value for none.)
            train_loss: if last { 0.0 } else { at.train_loss },
            eval_loss: loss / k,
            train_margin: (align && !last).then_some(at.train_margin),
            eval_margin: align.then_some(margin / k),
            after_last_update: last,
            train_time_s: at.train_time_s,
            sample,
        })
    }

    fn eval_loss(row: &StageRow) -> f64 {
        row.eval_loss
    }

    fn print(&self, row: &StageRow) {
        let head = if row.after_last_update {
            format!("Final (after {} updates)", row.global_step)
        } else {
            format!(
                "Epoch {}, step {}, train loss {:.4}",
                row.epoch, row.step, row.train_loss
            )
        };
        match (row.train_margin, row.eval_margin) {
            (tm, Some(em)) => crate::outln!(
                "{head}, evaluate loss {:.4}{}, evaluate reward margin {em:.4}",
                row.eval_loss,
                tm.map(|m| format!(", train reward margin {m:.4}"))
                    .unwrap_or_default()
            ),
            _ => crate::outln!("{head}, evaluate loss {:.4}", row.eval_loss),
        }
        let title = &self.record.options.sample_title;
        crate::outln!("Generate a complete poem for title {title}:");
        crate::outln!("{}", row.sample);
    }

    fn rows(&self) -> &[StageRow] {
        &self.record.rows
    }

    fn keep(&mut self, row: StageRow, plot_path: &Path) -> anyhow::Result<()> {
        self.record.rows.push(row);
        let (rows, stage) = (&self.record.rows, self.record.options.stage);
        let batches = self.train_batches as u64;
        plot::write_stage_svg(plot_path, rows, stage, batches, &self.plot_title)
    }

    fn checkpoint(&self, st: &RunState, _rng: &Mt19937) -> Checkpoint {
        let mut record = StageState {
            loss_acc: st.sums.loss,
            margin_acc: st.sums.margin,
            acc_count: st.sums.count,
            ..self.record.clone()
        };
        if let Objective::Align(a) = &self.objective {
            record.reference_params = a.reference().data.clone();
        }
        st.checkpoint(CheckpointPart {
            vocab: self.ds.vocab(),
            dataset_hash: self.ds.content_hash(),
            // Nothing in a stage draws from the batch stream.
            rng_state: Vec::new(),
            options: self.pretrain_options.clone(),
            metrics: Vec::new(),
            stage: Some(record),
        })
    }
}

/// The sample for a title through the core: the generated poem, cut at the first `\0` (the
/// core stops there and does not emit it), the prompt stripped.
pub fn sample_poem(
    params: &Params,
    vocab: &[char],
    title: &str,
    max_new: usize,
    seed: u64,
) -> anyhow::Result<String> {
    let prompt = instruction_prompt(title);
    let out = crate::run::sample::sample_through_core(params, vocab, &prompt, max_new, seed)?;
    let poem = out.strip_prefix(prompt.as_str()).unwrap_or(&out);
    Ok(poem.split('\0').next().unwrap_or("").to_string())
}
