//! `tinypoet export`: write a checkpoint's parameters as a blob of the core's format (f16, or
//! int8 matrices with `--dtype int8`), or as TutorialLLM's state_dict in safetensors.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use tinypoet_core::blob::WeightDtype;

use crate::io::export;
use crate::io::fsx;
use crate::nn::model::TrainModel;
use crate::run::checkpoint;
use crate::run::checkpoint::{checkpoint_params, manifest_for};
use crate::run::evaluate::{self, EvalScratch};

/// What `export` writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The core's blob (f16, with its manifest).
    Blob,
    /// TutorialLLM's PyTorch state_dict in safetensors (f32, `tril` buffers included).
    Safetensors,
}

/// Weight precision of the exported blob.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobDtype {
    /// Every tensor f16 (~2.67 MB for the Tang model).
    F16,
    /// Matrices int8 in groups of 32 with f16 scales, vectors f16 (~1.45 MB); smaller models
    /// whose dim or ffn_dim 32 does not divide use groups of 16, 8 or 4.
    Int8,
}

impl BlobDtype {
    pub fn label(self) -> &'static str {
        match self {
            BlobDtype::F16 => "f16",
            BlobDtype::Int8 => "int8",
        }
    }

    pub fn weight_dtype(self, cfg: &tinypoet_core::Config) -> anyhow::Result<WeightDtype> {
        match self {
            BlobDtype::F16 => Ok(WeightDtype::F16),
            BlobDtype::Int8 => export::int8_dtype_for(cfg),
        }
    }
}

/// Export a checkpoint to a weight blob (f16 or int8, with its manifest) or to safetensors.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  tinypoet export runs/tang/checkpoint.ckpt -o model.tpb
  # also measure the deterministic eval loss of the f32 checkpoint and of the blob
  # (through the core) and record both in the manifest:
  tinypoet export runs/tang/checkpoint.ckpt -o model.tpb --data data/tang.tpd
  # int8 matrices (groups of 32, f16 scales), for 2 MB-flash microcontrollers:
  tinypoet export runs/tang/checkpoint.ckpt -o model-int8.tpb --dtype int8 --data data/tang.tpd
  # PyTorch: TutorialLLM's state_dict in safetensors, for
  #   model.load_state_dict(safetensors.torch.load_file('model.safetensors'))
  tinypoet export runs/tang/checkpoint.ckpt --format safetensors -o model.safetensors

The manifest holds the steps, the eval loss of the checkpoint (the one logged at its last
step, or measured with --data), the eval loss of the blob (with --data), the corpus hash and
a recipe line. A safetensors file holds the same provenance, the config and the vocabulary
in its __metadata__ (tinypoet.* keys). The file is written atomically (temporary file,
fsync, rename).")]
pub struct ExportArgs {
    /// Checkpoint file (or run directory) to export.
    #[arg(value_name = "CKPT")]
    pub checkpoint: PathBuf,
    /// Output file [default: model.tpb, or model.safetensors with --format safetensors].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// What to write.
    #[arg(long, value_enum, default_value_t = ExportFormat::Blob)]
    pub format: ExportFormat,
    /// Weight precision of the blob (safetensors are always f32).
    #[arg(long, value_enum, default_value_t = BlobDtype::F16)]
    pub dtype: BlobDtype,
    /// Prepared dataset: measure both eval losses on its eval split.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Recipe text for the manifest (default: derived from the checkpoint's options).
    #[arg(long)]
    pub recipe: Option<String>,
    /// Worker threads for --data.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let path = crate::run::train_loop::resolve_checkpoint(&args.checkpoint);
    // (the error names the file)
    let ckpt = checkpoint::load(&path)?;
    let params = checkpoint_params(&ckpt)?;
    let mut info = manifest_for(&ckpt);
    if let Some(r) = args.recipe {
        info.recipe = r;
    }
    if args.format == ExportFormat::Safetensors {
        if args.data.is_some() {
            bail!(
                "--data measures the blob's eval loss; it does not apply to --format safetensors"
            );
        }
        if args.dtype != BlobDtype::F16 {
            bail!("--dtype selects the blob's precision; safetensors are written in f32");
        }
        let output = args.output.unwrap_or_else(|| "model.safetensors".into());
        let meta = crate::io::interop::export_metadata(&ckpt.meta.config, &ckpt.meta.vocab, &info);
        let bytes = crate::io::interop::write_state_dict(&params, meta)
            .map_err(|e| anyhow!("cannot encode the safetensors file: {e}"))?;
        fsx::write_atomic(&output, &bytes)
            .with_context(|| format!("writing {}", output.display()))?;
        crate::errln!(
            "wrote {} ({} bytes): TutorialLLM state_dict, f32, step {}",
            output.display(),
            bytes.len(),
            info.steps
        );
        return Ok(());
    }
    let output = args.output.unwrap_or_else(|| "model.tpb".into());
    let dtype = args.dtype.weight_dtype(params.config())?;
    let mut bytes = export::blob_bytes_as(&params, &ckpt.meta.vocab, &info, dtype)?;
    if let Some(data_path) = &args.data {
        let ds = crate::data::corpus::Dataset::load(data_path)?; // (the error names the file)
        if ds.vocab() != ckpt.meta.vocab.as_slice() {
            bail!(
                "{}: its vocabulary differs from the checkpoint's",
                data_path.display()
            );
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads.max(1))
            .build()?;
        let window = ckpt.meta.options.seq;
        let batch = ckpt.meta.options.batch;
        let (f32_loss, blob_loss) = pool.install(|| -> anyhow::Result<(f64, f64)> {
            let mut model = TrainModel::new(params.config(), batch, window)
                .context("the checkpoint's batch/sequence options")?;
            let mut scratch = EvalScratch::new(batch, window);
            let (l32, _) = evaluate::deterministic_loss(
                &mut model,
                &params,
                ds.pretrain_eval(),
                window,
                batch,
                &mut scratch,
            )?;
            let core_model = tinypoet_core::Model::load(&bytes)
                .map_err(|e| anyhow!("the exported blob does not load: {e}"))?;
            let (l16, _) = evaluate::core_loss(
                &core_model,
                ds.pretrain_eval(),
                window,
                tinypoet_core::KvPrecision::F16,
            )?;
            Ok((l32, l16))
        })?;
        crate::errln!(
            "eval loss: checkpoint (f32) {f32_loss:.4}, blob ({}, core) {blob_loss:.4}",
            args.dtype.label()
        );
        info.eval_loss = f32_loss as f32;
        info.eval_loss_blob = blob_loss as f32;
        bytes = export::blob_bytes_as(&params, &ckpt.meta.vocab, &info, dtype)?;
    }
    fsx::write_atomic(&output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    crate::errln!(
        "wrote {} ({} bytes, {}): step {}, eval loss {}, blob eval loss {}",
        output.display(),
        bytes.len(),
        args.dtype.label(),
        info.steps,
        fmt_loss(info.eval_loss),
        fmt_loss(info.eval_loss_blob)
    );
    Ok(())
}

pub(crate) fn fmt_loss(l: f32) -> String {
    if l.is_nan() {
        "not measured".into()
    } else {
        format!("{l:.4}")
    }
}
