//! `tinypoet eval`: the deterministic eval loss (see `crate::run::evaluate`) of a checkpoint (trainer
//! kernels, f32) or of a blob (through the core, f16 or int8 weights).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Args;

use super::kv_arg::KvArg;
use crate::nn::model::TrainModel;
use crate::run::checkpoint;
use crate::run::checkpoint::checkpoint_params;
use crate::run::evaluate::{self, EvalScratch};

/// Compute the deterministic eval loss of a checkpoint or of a blob.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  tinypoet eval --checkpoint runs/tang/checkpoint.ckpt --data data/tang.tpd
  tinypoet eval --model models/tinypoet-tang.tpb --data data/tang.tpd --threads 4

The loss is the mean cross-entropy over every position of the eval split, cut into
non-overlapping windows of --window tokens (the last one partial), each window an
independent context. A checkpoint runs on the trainer's f32 kernels; a blob runs through
tinypoet-core token by token, so its number is the loss of the model as the core runs it
(f16 weights, or int8 weights with int8 activations for an int8 blob).")]
pub struct EvalArgs {
    /// Checkpoint file (or run directory) to evaluate with the trainer's kernels.
    #[arg(
        long,
        value_name = "CKPT",
        conflicts_with = "model",
        required_unless_present = "model"
    )]
    pub checkpoint: Option<PathBuf>,
    /// Blob to evaluate through the core.
    #[arg(long, value_name = "BLOB")]
    pub model: Option<PathBuf>,
    /// Prepared dataset whose pretrain eval split is used.
    #[arg(long, value_name = "FILE", default_value = "data/tang.tpd")]
    pub data: PathBuf,
    /// Window length (default: the model's context).
    #[arg(long)]
    pub window: Option<usize>,
    /// Windows per forward pass (checkpoint only).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// KV cache precision of the core (blob only).
    #[arg(long, value_enum, default_value_t = KvArg::F16, conflicts_with = "checkpoint")]
    pub kv: KvArg,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let ds = crate::data::corpus::Dataset::load(&args.data)?; // (the error names the file)
    let eval = ds.pretrain_eval();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.max(1))
        .build()?;
    let t0 = std::time::Instant::now();
    let (what, loss, n, window) = if let Some(path) = &args.checkpoint {
        let path = crate::run::train_loop::resolve_checkpoint(path);
        // (the error names the file)
        let ckpt = checkpoint::load(&path)?;
        if ds.vocab() != ckpt.meta.vocab.as_slice() {
            bail!(
                "{}: its vocabulary differs from the checkpoint's",
                args.data.display()
            );
        }
        let params = checkpoint_params(&ckpt)?;
        let window = args.window.unwrap_or(params.config().context);
        if window == 0 || window > params.config().context {
            bail!(
                "--window must be between 1 and the model context {}",
                params.config().context
            );
        }
        let batch = args.batch.max(1);
        let (loss, n) = pool.install(|| -> anyhow::Result<(f64, usize)> {
            let mut model = TrainModel::new(params.config(), batch, window)?;
            let mut scratch = EvalScratch::new(batch, window);
            Ok(evaluate::deterministic_loss(
                &mut model,
                &params,
                eval,
                window,
                batch,
                &mut scratch,
            )?)
        })?;
        (
            format!(
                "checkpoint {} (f32, step {})",
                path.display(),
                ckpt.meta.step
            ),
            loss,
            n,
            window,
        )
    } else {
        let path = args
            .model
            .as_ref()
            .expect("clap requires --checkpoint or --model");
        let bytes = crate::io::fsx::read_input(path, crate::io::fsx::limits::BLOB)
            .with_context(|| format!("{}", path.display()))?;
        let model = tinypoet_core::Model::load(&bytes)
            .map_err(|e| anyhow!("{}: corrupt or not a tinypoet blob: {e}", path.display()))?;
        let tok = model.tokenizer();
        if tok.len() != ds.vocab().len() || !tok.chars().eq(ds.vocab().iter().copied()) {
            bail!(
                "{}: its vocabulary differs from the model's",
                args.data.display()
            );
        }
        let window = args.window.unwrap_or(model.config().context);
        let (loss, n) =
            pool.install(|| evaluate::core_loss(&model, eval, window, args.kv.into()))?;
        (
            format!(
                "blob {} ({}, KV {:?}, through the core)",
                path.display(),
                crate::io::export::dtype_label(&model),
                args.kv
            ),
            loss,
            n,
            window,
        )
    };
    crate::outln!("{loss:.6}");
    crate::errln!(
        "deterministic eval loss of {what}: {loss:.6} over {n} positions ({} windows of {window}) in {:.1} s",
        evaluate::windows(eval.len(), window).len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
