//! The pretraining stage (spec §2 pretrain stream, §4): batches of `B` random windows of
//! `T + 1` tokens of the train stream drawn from the torch-compatible stream, the mean
//! next-token cross-entropy, both eval-loss estimators of `run::evaluate` over the eval stream
//! every K steps, printed as `Step N, train loss X, evaluate loss Y`. [`train`] runs it on the
//! shared loop (`run::train_loop`).

use std::path::Path;

use anyhow::{bail, Context};

use crate::data::batch::random_batch;
use crate::nn::adamw::LrSchedule;
use crate::nn::init::{init_params, reference_init, InitScheme};
use crate::nn::model::{ModelError, TrainModel};
use crate::nn::mt19937::Mt19937;
use crate::nn::params::{ConfigRecord, Params};
use crate::run::checkpoint::Checkpoint;
use crate::run::evaluate::{self, EvalScratch};
use crate::run::metrics::MetricRow;
use crate::run::options::{Init, TrainOptions};
use crate::run::plot;
use crate::run::sample::sample_through_core;
use crate::run::train_loop::{
    self, CheckpointPart, EvalPoint, Plan, RunIo, RunState, StepLoss, TrainStage,
};

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

/// How a run starts.
pub enum Start {
    Fresh(TrainOptions),
    /// Continue a checkpoint; `steps`/`checkpoint_every` override the stored options when given
    /// (nothing else may change, or the run would not be the same run).
    Resume {
        checkpoint: Box<Checkpoint>,
        steps: Option<u64>,
        checkpoint_every: Option<u64>,
    },
}

/// What a run ended with.
#[derive(Debug)]
pub struct RunOutcome {
    /// Completed updates.
    pub step: u64,
    pub interrupted: bool,
    pub checkpoint_path: std::path::PathBuf,
    pub metrics: Vec<MetricRow>,
}

/// Run (or continue) a pretraining run; `stop_after`: stop as on Ctrl-C (save, return
/// `interrupted`) once the run has done this many updates.
pub fn train(
    data: &TrainData,
    start: Start,
    io: &RunIo,
    stop_after: Option<u64>,
) -> anyhow::Result<RunOutcome> {
    train_loop::with_threads(io.threads, || {
        let (st, mut stage) = Pretrain::start(data, start)?;
        let end = train_loop::run(&mut stage, st, io, stop_after)?;
        if end.interrupted && io.print {
            let path = end.checkpoint_path.display();
            crate::errln!(
                "interrupted: saved {path} at step {}; continue with --resume {path}",
                end.step
            );
        }
        Ok(RunOutcome {
            step: end.step,
            interrupted: end.interrupted,
            checkpoint_path: end.checkpoint_path,
            metrics: stage.metrics,
        })
    })
}

/// The pretraining stage: its options, data, batch buffers, eval scratch and logged rows.
struct Pretrain<'d> {
    data: &'d TrainData<'d>,
    opts: TrainOptions,
    schedule: LrSchedule,
    inputs: Vec<u16>,
    targets: Vec<u16>,
    scratch: EvalScratch,
    metrics: Vec<MetricRow>,
    plot_title: String,
}

impl<'d> Pretrain<'d> {
    /// The run's state and the stage: fresh (initialised from the seed) or from a checkpoint.
    fn start(data: &'d TrainData<'d>, start: Start) -> anyhow::Result<(RunState, Pretrain<'d>)> {
        let (st, opts, metrics) = match start {
            Start::Fresh(opts) => {
                opts.validate(data.train.len(), data.eval.len(), data.vocab.len())?;
                let cfg = opts.model.config(data.vocab.len());
                // The batches continue the torch-compatible stream: after the reference's init
                // draws (Torch), or from the seed (Fast, whose init draws from its own SplitMix64).
                let (params, rng) = match opts.init {
                    Init::Torch => reference_init(&cfg, opts.seed),
                    Init::Fast => (
                        init_params(&cfg, opts.seed as u64, InitScheme::Fast),
                        Mt19937::init_genrand(opts.seed),
                    ),
                };
                (RunState::fresh(params, rng), opts, Vec::new())
            }
            Start::Resume {
                checkpoint,
                steps,
                checkpoint_every,
            } => resume(data, *checkpoint, steps, checkpoint_every)?,
        };
        // Checked up front so a bad prompt fails before any training.
        encode(data.vocab, &opts.sample_prompt).context("sample prompt")?;
        let (b, t) = (opts.batch, opts.seq);
        let stage = Pretrain {
            data,
            schedule: opts.lr_schedule(),
            inputs: vec![0; b * t],
            targets: vec![0; b * t],
            scratch: EvalScratch::new(b, t),
            metrics,
            plot_title: format!(
                "tinypoet pretraining: B={b} T={t} lr={} seed={}",
                opts.lr, opts.seed
            ),
            opts,
        };
        Ok((st, stage))
    }
}

/// Continue a pretraining checkpoint (tied to the dataset and vocabulary it was trained on).
fn resume(
    data: &TrainData,
    ckpt: Checkpoint,
    steps: Option<u64>,
    every: Option<u64>,
) -> anyhow::Result<(RunState, TrainOptions, Vec<MetricRow>)> {
    if let Some(st) = &ckpt.stage {
        bail!(
            "this is a {} checkpoint: continue it with `tinypoet {} --resume`",
            st.options.stage.name(),
            st.options.stage.name()
        );
    }
    let meta = ckpt.meta;
    if meta.dataset_hash != data.dataset_hash {
        bail!(
            "the checkpoint was trained on dataset {} but this dataset is {}",
            short(&meta.dataset_hash),
            short(&data.dataset_hash)
        );
    }
    if meta.vocab.as_slice() != data.vocab {
        bail!("the checkpoint's vocabulary differs from the dataset's");
    }
    let mut opts = meta.options.clone();
    if let Some(s) = steps {
        opts.steps = s;
    }
    if let Some(e) = every {
        opts.checkpoint_every = e;
    }
    let cfg = opts.model.config(data.vocab.len());
    if ConfigRecord::from(&cfg) != meta.config {
        bail!("the checkpoint's model config does not match its options");
    }
    let params = Params::from_vec(&cfg, ckpt.params)
        .context("checkpoint parameter count does not match its config")?;
    let mut st = RunState::resumed(params, &meta, ckpt.adam_m, ckpt.adam_v);
    st.rng = Mt19937::from_bytes(&meta.rng_state).context("checkpoint RNG state")?;
    // Rows at or after the start step are recomputed by this run (see `run::train_loop`).
    let mut metrics = meta.metrics;
    metrics.retain(|r| r.step < meta.step);
    opts.validate(data.train.len(), data.eval.len(), data.vocab.len())?;
    Ok((st, opts, metrics))
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn encode(vocab: &[char], text: &str) -> anyhow::Result<Vec<u16>> {
    text.chars()
        .map(|c| {
            vocab
                .binary_search(&c)
                .map(|i| i as u16)
                .map_err(|_| anyhow::anyhow!("character {c:?} is not in the vocabulary"))
        })
        .collect()
}

impl TrainStage for Pretrain<'_> {
    type Row = MetricRow;

    fn plan(&self) -> Plan {
        let o = &self.opts;
        Plan {
            name: "training",
            unit: "step",
            kind: None,
            total_updates: o.steps,
            checkpoint_every: o.checkpoint_every,
            grad_clip: o.grad_clip,
            batch_rows: o.batch,
            batch_seq: o.seq,
            saves_start: true,
        }
    }

    fn lr_at(&self, step: u64) -> f32 {
        self.schedule.lr_at(step)
    }

    fn position(&self, step: u64) -> String {
        format!("step {step}")
    }

    fn eval_due(&self, step: u64) -> bool {
        step.is_multiple_of(self.opts.eval_interval)
    }

    fn loss_and_grad(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        grads: &mut Params,
        rng: &mut Mt19937,
    ) -> Result<StepLoss, ModelError> {
        let (b, t) = (self.opts.batch, self.opts.seq);
        random_batch(
            self.data.train,
            rng,
            b,
            t,
            &mut self.inputs,
            &mut self.targets,
        );
        let loss = model.forward_backward(params, grads, &self.inputs, &self.targets, b, t)?;
        Ok(StepLoss {
            loss: loss as f64,
            margin: 0.0,
        })
    }

    fn skip_batch(&self, rng: &mut Mt19937) {
        // `random_batch` draws one start per row.
        for _ in 0..self.opts.batch {
            rng.next_u32();
        }
    }

    fn advance(&mut self) -> bool {
        false
    }

    /// Both estimators (the reference's draws from `rng`; the bars use the deterministic one)
    /// and the sample.
    fn evaluate(
        &mut self,
        model: &mut TrainModel,
        params: &Params,
        rng: &mut Mt19937,
        at: &EvalPoint,
    ) -> anyhow::Result<MetricRow> {
        let o = &self.opts;
        let (b, t) = (o.batch, o.seq);
        let eval = self.data.eval;
        let s = &mut self.scratch;
        let eval_loss_reference =
            evaluate::reference_loss(model, params, eval, rng, o.eval_batches, b, t, s)?;
        let (eval_loss, _) = evaluate::deterministic_loss(model, params, eval, t, b, s)?;
        let seed = train_loop::sample_seed(o.seed, at.step);
        let sample = sample_through_core(
            params,
            self.data.vocab,
            &o.sample_prompt,
            o.sample_len,
            seed,
        )?;
        Ok(MetricRow {
            step: at.step,
            train_loss: at.train_loss,
            eval_loss,
            eval_loss_reference,
            lr: at.lr as f64,
            grad_norm: at.grad_norm.map(f64::from),
            train_time_s: at.train_time_s,
            tokens: at.step * (b * t) as u64,
            sample,
        })
    }

    fn eval_loss(row: &MetricRow) -> f64 {
        row.eval_loss
    }

    fn print(&self, row: &MetricRow) {
        crate::outln!(
            "Step {}, train loss {:.4}, evaluate loss {:.4} (reference estimator {:.4})",
            row.step,
            row.train_loss,
            row.eval_loss,
            row.eval_loss_reference
        );
        crate::outln!(
            "Generate first {} characters of poems starting with {}:",
            self.opts.sample_len,
            self.opts.sample_prompt
        );
        crate::outln!("{}", row.sample);
    }

    fn rows(&self) -> &[MetricRow] {
        &self.metrics
    }

    /// Keep `row` in place of any row at its step or later, and redraw the plot.
    fn keep(&mut self, row: MetricRow, plot_path: &Path) -> anyhow::Result<()> {
        self.metrics.retain(|r| r.step < row.step);
        self.metrics.push(row);
        plot::write_svg(plot_path, &self.metrics, &self.plot_title)
    }

    fn checkpoint(&self, st: &RunState, rng: &Mt19937) -> Checkpoint {
        st.checkpoint(CheckpointPart {
            vocab: self.data.vocab,
            dataset_hash: &self.data.dataset_hash,
            rng_state: rng.to_bytes().to_vec(),
            options: self.opts.clone(),
            metrics: self.metrics.clone(),
            stage: None,
        })
    }
}
