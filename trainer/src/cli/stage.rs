//! `tinypoet finetune` and `tinypoet align`: the stages after pretraining (see `crate::stages::tune`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::run::checkpoint;
use crate::run::lock;
use crate::run::stage_record::{Stage, StageOptions};
use crate::run::train_loop::{self, RunIo};
use crate::stages::start::load_start;
use crate::stages::tune::{self as stages, StageStart};

/// Arguments shared by both stages (the defaults are the reference's recipe of each).
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  # Instruction finetuning from the bundled pretrained model (f16 weights upcast to f32):
  tinypoet finetune --from models/tinypoet-tang.tpb --data data/tang.tpd --out runs/finetune
  # Alignment from the finetuned checkpoint:
  tinypoet align --from runs/finetune/checkpoint.ckpt --data data/tang.tpd --out runs/align
  # Continue an interrupted stage (Ctrl-C saves a checkpoint first):
  tinypoet finetune --data data/tang.tpd --resume runs/finetune

Reference recipes: finetune 5 epochs x 801 batches of 16 instruction texts, AdamW lr 1e-3;
align 3 epochs x 301 batches of 16 pairs, lr 1e-5, frozen reference = the starting weights.
Both: a fresh optimizer, rows 256 wide with `\\0` padding (cropped to the batch's longest item,
exact under causal attention), evaluation every 50 batches over the whole eval split.
Writes into --out: checkpoint.ckpt (with the stage, its recipe and its parent), metrics.jsonl,
loss.svg (our curve beside the reference's); .lock holds the directory for the run (a second
run on the same --out fails at once). The log prints
`Epoch e, step i, train loss X, evaluate loss Y` like the reference (align adds the margins).")]
pub struct StageArgs {
    /// Starting weights: a checkpoint (.ckpt or run directory) or a blob (.tpb, f16).
    #[arg(long, value_name = "CKPT_OR_BLOB")]
    pub from: Option<PathBuf>,
    /// Prepared dataset (from `tinypoet prepare`).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output directory for the checkpoint, metrics and plot (default: `runs/<stage>`; with
    /// --resume: the resumed checkpoint's directory).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue a stage checkpoint (file or run directory); only --checkpoint-every,
    /// --stop-after, --threads and --out may change.
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,
    /// AdamW learning rate [default: finetune 1e-3, align 1e-5].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Epochs [default: finetune 5, align 3].
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Items (finetune) or pairs (align) per batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Evaluate and print a sample every K batches of an epoch (and at its step 0).
    #[arg(long, default_value_t = 50, value_name = "K")]
    pub eval_interval: u64,
    /// Title of the samples printed at each evaluation.
    #[arg(long, default_value = "春夜喜雨")]
    pub sample_title: String,
    /// New characters per sample at most.
    #[arg(long, default_value_t = 100)]
    pub sample_len: usize,
    /// Seed of the samples (nothing else in a stage is random).
    #[arg(long, default_value_t = 2024)]
    pub seed: u32,
    /// Worker threads for the kernels (results do not depend on it).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Write a checkpoint every N updates (0: only on Ctrl-C and at the end).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub checkpoint_every: u64,
    /// Stop (save a checkpoint, as on Ctrl-C) once the stage has done this many updates.
    #[arg(long, value_name = "UPDATES")]
    pub stop_after: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Start a new run even if --out already holds a checkpoint.
    #[arg(long)]
    pub overwrite: bool,
}

impl StageArgs {
    fn options(&self, stage: Stage) -> StageOptions {
        let r = StageOptions::reference(stage);
        StageOptions {
            lr: self.lr.unwrap_or(r.lr),
            epochs: self.epochs.unwrap_or(r.epochs),
            batch: self.batch,
            eval_interval: self.eval_interval,
            sample_title: self.sample_title.clone(),
            sample_len: self.sample_len,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            ..r
        }
    }
}

pub fn run(args: StageArgs, stage: Stage) -> anyhow::Result<()> {
    let name = stage.name();
    let ds = crate::data::corpus::Dataset::load(&args.data)
        .with_context(|| format!("loading {}", args.data.display()))?;
    let out = match (&args.out, &args.resume) {
        (Some(out), _) => out.clone(),
        (None, Some(resume)) => train_loop::run_dir_of(resume),
        (None, None) => PathBuf::from(format!("runs/{name}")),
    };
    // Locked before the directory is read (the existing checkpoint) and held until the run ends.
    let (_run_lock, start) = lock::lock_then(&out, || -> anyhow::Result<StageStart> {
        Ok(match (&args.resume, &args.from) {
            (Some(_), Some(_)) => bail!("give either --from (a new stage) or --resume, not both"),
            (None, None) => bail!("give --from CKPT_OR_BLOB (the starting weights) or --resume"),
            (Some(path), None) => {
                let path = train_loop::resolve_checkpoint(path);
                let ckpt = checkpoint::load(&path)
                    .with_context(|| format!("cannot resume from {}", path.display()))?;
                let Some(st) = &ckpt.stage else {
                    bail!(
                        "{} is a pretraining checkpoint; start a stage from it with --from",
                        path.display()
                    );
                };
                if st.options.stage != stage {
                    bail!(
                        "{} is a {} checkpoint; continue it with `tinypoet {}`",
                        path.display(),
                        st.options.stage.name(),
                        st.options.stage.name()
                    );
                }
                let mut given = args.options(stage);
                given.checkpoint_every = st.options.checkpoint_every;
                let defaults = StageOptions {
                    checkpoint_every: st.options.checkpoint_every,
                    ..StageOptions::reference(stage)
                };
                if given != defaults && given != st.options {
                    bail!(
                        "with --resume the stage's options come from the checkpoint; only \
                     --checkpoint-every, --stop-after, --threads and --out may be given"
                    );
                }
                StageStart::Resume {
                    checkpoint: Box::new(ckpt),
                    checkpoint_every: Some(args.checkpoint_every),
                }
            }
            (None, Some(from)) => {
                let existing = out.join(train_loop::CHECKPOINT_FILE);
                if existing.exists() && !args.overwrite {
                    bail!(
                        "{} already holds a checkpoint: continue it with --resume {}, or pass \
                     --overwrite to start a new run there",
                        out.display(),
                        existing.display()
                    );
                }
                let from = train_loop::resolve_checkpoint(from);
                let weights = load_start(&from)?;
                StageStart::Fresh {
                    options: args.options(stage),
                    from: Box::new(weights),
                }
            }
        })
    })?;
    let interrupt = super::train::install_ctrlc()?;
    let io = RunIo {
        out_dir: out.clone(),
        interrupt: Some(interrupt),
        threads: args.threads,
        progress: !args.no_progress,
        print: true,
        on_save: None,
    };
    let (items, eval_items) = match stage {
        Stage::Finetune => (ds.finetune_train().len(), ds.finetune_eval().len()),
        Stage::Align => (ds.alignment_train().len(), ds.alignment_eval().len()),
    };
    crate::errln!(
        "{name}: dataset {} ({items} train / {eval_items} eval {}); writing to {}",
        args.data.display(),
        if stage == Stage::Finetune {
            "items"
        } else {
            "pairs"
        },
        out.display()
    );
    let t0 = std::time::Instant::now();
    let outcome = stages::run_stage(&ds, start, &io, args.stop_after)?;
    let last = outcome.rows.last();
    crate::errln!(
        "{} after {} updates in {:.1} s; checkpoint {}{}",
        if outcome.interrupted {
            "stopped"
        } else {
            "finished"
        },
        outcome.updates,
        t0.elapsed().as_secs_f64(),
        outcome.checkpoint_path.display(),
        last.map(|r| if r.global_step == outcome.updates {
            format!("; eval loss {:.4}", r.eval_loss)
        } else {
            // A stop between evaluations: say which state the loss is of.
            format!(
                "; eval loss {:.4} at the last evaluation (after {} updates)",
                r.eval_loss, r.global_step
            )
        })
        .unwrap_or_default()
    );
    Ok(())
}
