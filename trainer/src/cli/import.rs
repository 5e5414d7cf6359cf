//! `tinypoet import`: read a TutorialLLM PyTorch state_dict saved with safetensors into a
//! trainer checkpoint or a blob (see `crate::io::interop` for the mapping and the checks).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::export::BlobDtype;
use crate::io::export::{self, ManifestInfo};
use crate::io::fsx::{self, hex, unhex32};
use crate::io::interop::{self, META_STEPS};
use crate::run::checkpoint;

/// What `import` writes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// A trainer checkpoint (.ckpt): for `eval --checkpoint`, `export` and `train --resume`.
    Ckpt,
    /// A blob (.tpb) for the core, f16 or int8 (`--dtype`): `generate --model`, `eval --model`,
    /// the firmware.
    Blob,
}

/// Import weights from a PyTorch safetensors file.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  # In PyTorch, save TutorialLLM's weights (not the pickled module) with safetensors:
  #   from safetensors.torch import save_file; save_file(model.state_dict(), 'model.safetensors')
  tinypoet import model.safetensors --data data/tang.tpd -o imported.ckpt
  tinypoet import model.safetensors --data data/tang.tpd -o imported.tpb
  # int8 matrices (groups of 32, f16 scales), as `tinypoet export --dtype int8`:
  tinypoet import model.safetensors --data data/tang.tpd -o imported-int8.tpb --dtype int8
  tinypoet eval --checkpoint imported.ckpt --data data/tang.tpd

The tensor names and shapes are TutorialLLM's state_dict (token_embedding_table.weight,
transformer_blocks.{l}.multi_head_attention.heads.{h}.project_to_query.weight, ...); the
model's shape is read off them. The `tril` mask buffers are checked and skipped (they may be
absent). F32, F16 and BF16 tensors are read, converted exactly to f32. The vocabulary is the
dataset's (the reference builds it from the same corpus): its size must match the model's.

A checkpoint starts at step 0 with fresh AdamW moments and the reference's options (lr 1e-3,
batch 16, sequence = the model's context, seed 2024); `tinypoet train --data D --resume
imported.ckpt` pretrains on from these weights as a fresh run would from its initial ones. A
blob is f16, or int8 with --dtype int8, quantized exactly as `tinypoet export --dtype int8`
quantizes a checkpoint. The output is written atomically (temporary file,
fsync, rename); on any error nothing is written.")]
pub struct ImportArgs {
    /// The safetensors file (a TutorialLLM state_dict, or one `tinypoet export --format
    /// safetensors` wrote).
    #[arg(value_name = "MODEL.safetensors")]
    pub input: PathBuf,
    /// Prepared dataset whose vocabulary the model uses (from `tinypoet prepare`).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output file: a checkpoint (.ckpt) or a blob (.tpb).
    #[arg(long, short = 'o', value_name = "OUT")]
    pub output: PathBuf,
    /// What to write [default: from the extension of --output: .tpb = blob, .ckpt = ckpt].
    #[arg(long, value_enum)]
    pub format: Option<ImportFormat>,
    /// Weight precision of the blob (a checkpoint is always f32).
    #[arg(long, value_enum, default_value_t = BlobDtype::F16)]
    pub dtype: BlobDtype,
}

fn format_of(args: &ImportArgs) -> anyhow::Result<ImportFormat> {
    if let Some(f) = args.format {
        return Ok(f);
    }
    match args.output.extension().and_then(|e| e.to_str()) {
        Some("ckpt") => Ok(ImportFormat::Ckpt),
        Some("tpb") => Ok(ImportFormat::Blob),
        _ => bail!(
            "{}: cannot tell the output format from its extension; name it .ckpt or .tpb, \
             or pass --format ckpt|blob",
            args.output.display()
        ),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let format = format_of(&args)?;
    if format == ImportFormat::Ckpt && args.dtype != BlobDtype::F16 {
        bail!("--dtype selects the blob's precision; a checkpoint holds f32 weights");
    }
    let ds = crate::data::corpus::Dataset::load(&args.data)?; // (the error names the file)
    let imported = interop::read_state_dict_file(&args.input, ds.vocab())
        .with_context(|| format!("cannot import {}", args.input.display()))?;
    let cfg = *imported.params.config();
    // Checked before anything is written (int8 needs group sizes that divide the widths).
    let dtype = args.dtype.weight_dtype(&cfg)?;
    crate::errln!(
        "read {}: {} parameters ({}), {} tril buffers skipped; model: vocabulary {}, dim {}, \
         {} heads, {} layers, context {}, ffn {}",
        args.input.display(),
        imported.params.data.len(),
        imported.dtypes.join("+"),
        imported.tril_skipped,
        cfg.vocab_size,
        cfg.dim,
        cfg.n_heads,
        cfg.n_layers,
        cfg.context,
        cfg.ffn_dim
    );
    let bytes = match format {
        ImportFormat::Ckpt => {
            let ckpt =
                checkpoint::imported_checkpoint(imported.params, ds.vocab(), ds.content_hash());
            ckpt.to_bytes()?
        }
        ImportFormat::Blob => {
            let info = ManifestInfo {
                // A file we exported records its checkpoint's steps; a PyTorch file does not.
                steps: imported
                    .metadata
                    .get(META_STEPS)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                eval_loss: f32::NAN,
                eval_loss_blob: f32::NAN,
                corpus_sha256: unhex32(ds.content_hash()).unwrap_or([0; 32]),
                recipe: format!(
                    "imported from PyTorch safetensors {} (sha256 {})",
                    file_name(&args.input),
                    &hex(&imported.sha256)[..16]
                ),
            };
            export::blob_bytes_as(&imported.params, ds.vocab(), &info, dtype)?
        }
    };
    fsx::write_atomic(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let what = match format {
        ImportFormat::Ckpt => "checkpoint at step 0, fresh optimizer state".to_string(),
        ImportFormat::Blob => format!("{} blob", args.dtype.label()),
    };
    crate::errln!(
        "wrote {} ({} bytes, {what})",
        args.output.display(),
        bytes.len()
    );
    Ok(())
}
