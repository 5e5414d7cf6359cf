//! `tinypoet train`: pretrain on a prepared dataset (see `crate::run::train_loop` for the loop).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

#[cfg(feature = "crash-test")]
use crate::io::fsx::WritePoint;
use crate::nn::adamw::Schedule;
use crate::nn::params::ModelShape;
use crate::run::checkpoint;
use crate::run::lock;
use crate::run::options::{Init, TrainOptions};
use crate::run::train_loop::{self, RunIo};
use crate::stages::pretrain::{self, Start, TrainData};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// The reference: constant learning rate.
    Constant,
    /// Linear warmup (--warmup-steps), then cosine decay to --min-lr-ratio × lr.
    Cosine,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitArg {
    /// PyTorch's default init from the torch-compatible stream (reproduces the reference).
    Torch,
    /// Same distributions from SplitMix64 (faster, not PyTorch's stream).
    Fast,
}

/// Pretrain the model on a prepared dataset.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  # The reference recipe (16x256 batches, lr 1e-3 constant, eval every 100 steps):
  tinypoet train --data data/tang.tpd --out runs/tang --steps 20000

  # Warmup + cosine schedule with gradient clipping, 4 threads:
  tinypoet train --data data/tang.tpd --out runs/cos --steps 10000 --schedule cosine \\
      --warmup-steps 500 --lr 2e-3 --grad-clip 1.0 --threads 4

  # Continue an interrupted run (Ctrl-C saves a checkpoint first):
  tinypoet train --data data/tang.tpd --resume runs/tang/checkpoint.ckpt

Writes into --out: checkpoint.ckpt (full state), metrics.jsonl (one row per evaluation),
loss.svg (our curve beside the reference's); .lock holds the directory for the run (a second
run on the same --out fails at once). The log on stdout prints
`Step N, train loss X, evaluate loss Y` like the reference, Y being the deterministic eval loss.")]
pub struct TrainArgs {
    /// Prepared dataset (from `tinypoet prepare`).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output directory for the checkpoint, metrics and plot (default: `runs/tang`; with
    /// --resume: the resumed checkpoint's directory).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue from a checkpoint (file or run directory); only --steps, --checkpoint-every,
    /// --stop-after, --threads and --out may change.
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// Total optimizer steps [default: 20000; with --resume: the checkpoint's].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Base learning rate.
    #[arg(long, default_value_t = TrainOptions::default().lr)]
    pub lr: f32,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleArg::Constant)]
    pub schedule: ScheduleArg,
    /// Warmup steps of the cosine schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: u64,
    /// Final learning rate of the cosine schedule, as a fraction of --lr.
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_ratio: f32,
    /// Clip the global gradient norm to this value (off by default).
    #[arg(long, value_name = "NORM")]
    pub grad_clip: Option<f32>,
    /// Batch size.
    #[arg(long, default_value_t = TrainOptions::default().batch)]
    pub batch: usize,
    /// Sequence length (≤ --context).
    #[arg(long, default_value_t = TrainOptions::default().seq)]
    pub seq: usize,
    /// Evaluate (both estimators) and print a sample every K steps.
    #[arg(long, default_value_t = TrainOptions::default().eval_interval, value_name = "K")]
    pub eval_interval: u64,
    /// Batches of the reference's random-batch eval estimator.
    #[arg(long, default_value_t = TrainOptions::default().eval_batches)]
    pub eval_batches: usize,
    /// Seed of the torch-compatible random stream (init and batches).
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub seed: u32,
    /// Parameter initialisation.
    #[arg(long, value_enum, default_value_t = InitArg::Torch)]
    pub init: InitArg,
    /// Worker threads for the kernels (results do not depend on it).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Write a checkpoint every N steps (0: only on Ctrl-C and at the end).
    #[arg(long, default_value_t = TrainOptions::default().checkpoint_every, value_name = "N")]
    pub checkpoint_every: u64,
    /// Prompt of the samples printed at each evaluation.
    #[arg(long, default_value_t = TrainOptions::default().sample_prompt)]
    pub sample_prompt: String,
    /// New characters per sample.
    #[arg(long, default_value_t = TrainOptions::default().sample_len)]
    pub sample_len: usize,
    /// Model width.
    #[arg(long, default_value_t = ModelShape::default().dim)]
    pub dim: usize,
    /// Attention heads.
    #[arg(long, default_value_t = ModelShape::default().n_heads)]
    pub heads: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = ModelShape::default().n_layers)]
    pub layers: usize,
    /// Maximum context of the model.
    #[arg(long, default_value_t = ModelShape::default().context)]
    pub context: usize,
    /// Feed-forward hidden width.
    #[arg(long, default_value_t = ModelShape::default().ffn_dim)]
    pub ffn: usize,
    /// Stop (save a checkpoint, as on Ctrl-C) once the run has done this many steps.
    #[arg(long, value_name = "STEPS")]
    pub stop_after: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Start a new run even if --out already holds a checkpoint (it is replaced at the first
    /// save).
    #[arg(long)]
    pub overwrite: bool,
}

impl TrainArgs {
    fn options(&self) -> TrainOptions {
        TrainOptions {
            model: ModelShape {
                dim: self.dim,
                n_heads: self.heads,
                n_layers: self.layers,
                context: self.context,
                ffn_dim: self.ffn,
            },
            lr: self.lr,
            schedule: match self.schedule {
                ScheduleArg::Constant => Schedule::Constant,
                ScheduleArg::Cosine => Schedule::WarmupCosine {
                    warmup_steps: self.warmup_steps,
                    min_lr_ratio: self.min_lr_ratio,
                },
            },
            grad_clip: self.grad_clip,
            batch: self.batch,
            seq: self.seq,
            steps: self.steps.unwrap_or(TrainOptions::default().steps),
            eval_interval: self.eval_interval,
            eval_batches: self.eval_batches,
            seed: self.seed,
            init: match self.init {
                InitArg::Torch => Init::Torch,
                InitArg::Fast => Init::Fast,
            },
            checkpoint_every: self.checkpoint_every,
            sample_prompt: self.sample_prompt.clone(),
            sample_len: self.sample_len,
        }
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();

/// Install the Ctrl-C handler once: the first Ctrl-C asks the loop to finish its step, save and
/// stop; a second one exits at once (the last checkpoint on disk is intact either way).
pub(crate) fn install_ctrlc() -> anyhow::Result<&'static AtomicBool> {
    let r = HANDLER.get_or_init(|| {
        ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                crate::errln!("\nsecond interrupt: exiting without saving");
                std::process::exit(130);
            }
            crate::errln!("\ninterrupt: finishing this step, then saving a checkpoint (Ctrl-C again to quit now)");
        })
        .map_err(|e| e.to_string())
    });
    match r {
        Ok(()) => Ok(&INTERRUPTED),
        Err(e) => bail!("cannot install the Ctrl-C handler: {e}"),
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let ds = crate::data::corpus::Dataset::load(&args.data)?; // (the error names the file)
    let data = TrainData {
        vocab: ds.vocab(),
        train: ds.pretrain_train(),
        eval: ds.pretrain_eval(),
        dataset_hash: ds.content_hash().to_string(),
    };
    // Locked before the directory is read (the existing checkpoint) and held until the run ends.
    let out = match (&args.out, &args.resume) {
        (Some(out), _) => out.clone(),
        (None, Some(resume)) => train_loop::run_dir_of(resume),
        (None, None) => PathBuf::from("runs/tang"),
    };
    let (_run_lock, start) = lock::lock_then(&out, || -> anyhow::Result<Start> {
        Ok(match &args.resume {
            Some(path) => {
                let path = train_loop::resolve_checkpoint(path);
                let ckpt = checkpoint::load(&path)
                    .with_context(|| format!("cannot resume from {}", path.display()))?;
                // The run's options come from the checkpoint; refuse silently ignoring a changed one.
                let mut given = args.options();
                let stored = &ckpt.meta.options;
                given.steps = stored.steps;
                given.checkpoint_every = stored.checkpoint_every;
                let defaults = TrainOptions {
                    steps: stored.steps,
                    checkpoint_every: stored.checkpoint_every,
                    ..TrainOptions::default()
                };
                if given != defaults && given != *stored {
                    bail!(
                    "with --resume the training options come from the checkpoint; only --steps, \
                     --checkpoint-every, --stop-after, --threads and --out may be given"
                );
                }
                if let (Schedule::WarmupCosine { .. }, Some(s)) = (stored.schedule, args.steps) {
                    if s != stored.steps {
                        crate::errln!(
                        "warning: --steps {s} differs from the run's {}: the cosine schedule is \
                         stretched to the new total from here on",
                        stored.steps
                    );
                    }
                }
                Start::Resume {
                    checkpoint: Box::new(ckpt),
                    steps: args.steps,
                    checkpoint_every: Some(args.checkpoint_every),
                }
            }
            None => {
                let existing = out.join(train_loop::CHECKPOINT_FILE);
                if existing.exists() && !args.overwrite {
                    bail!(
                        "{} already holds a checkpoint: continue it with --resume {}, or pass \
                     --overwrite to start a new run there",
                        out.display(),
                        existing.display()
                    );
                }
                Start::Fresh(args.options())
            }
        })
    })?;
    let interrupt = install_ctrlc()?;
    #[cfg(feature = "crash-test")]
    let kill_hook = super::crash_test::KillHook::from_env();
    #[cfg(feature = "crash-test")]
    let observe = |point: WritePoint<'_>| {
        if let Some(h) = &kill_hook {
            h.observe(point)
        }
    };
    #[cfg(feature = "crash-test")]
    let on_save: Option<&(dyn Fn(WritePoint<'_>) + Sync)> = Some(&observe);
    #[cfg(not(feature = "crash-test"))]
    let on_save = None;
    let io = RunIo {
        out_dir: out.clone(),
        interrupt: Some(interrupt),
        threads: args.threads,
        progress: !args.no_progress,
        print: true,
        on_save,
    };
    let shape = match &start {
        Start::Fresh(o) => o.model,
        Start::Resume { checkpoint, .. } => checkpoint.meta.options.model,
    };
    let cfg = shape.config(data.vocab.len());
    crate::errln!(
        "dataset {}: vocabulary {}, train {} tokens, eval {} tokens; model {:.6} M parameters; \
         writing to {}",
        args.data.display(),
        data.vocab.len(),
        data.train.len(),
        data.eval.len(),
        crate::nn::params::ParamLayout::new(&cfg).num_params() as f64 / 1e6,
        out.display()
    );
    let t0 = std::time::Instant::now();
    let outcome = pretrain::train(&data, start, &io, args.stop_after)?;
    let last = outcome.metrics.last();
    crate::errln!(
        "{} at step {} in {:.1} s; checkpoint {}{}",
        if outcome.interrupted {
            "stopped"
        } else {
            "finished"
        },
        outcome.step,
        t0.elapsed().as_secs_f64(),
        outcome.checkpoint_path.display(),
        last.map(|r| if r.step == outcome.step {
            format!("; deterministic eval loss {:.4}", r.eval_loss)
        } else {
            // A stop between evaluations: say which state the loss is of.
            format!(
                "; deterministic eval loss {:.4} at the last evaluation (step {})",
                r.eval_loss, r.step
            )
        })
        .unwrap_or_default()
    );
    Ok(())
}
