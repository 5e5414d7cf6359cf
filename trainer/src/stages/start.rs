//! The trained weights a finetune or align stage starts from: a checkpoint (any stage) or a
//! blob whose f16 weights are upcast to f32, and where they came from (the stage's parent).

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use sha2::{Digest, Sha256};

use crate::nn::params::{Config, Params};
use crate::run::checkpoint::{self, Checkpoint};
use crate::run::options::TrainOptions;
use crate::run::stage_record::Parent;

/// Trained weights to start a stage from, and where they came from.
pub struct StartWeights {
    pub params: Params,
    pub vocab: Vec<char>,
    pub parent: Parent,
    /// The pretraining options recorded with the parent, if it is a checkpoint.
    pub pretrain_options: Option<TrainOptions>,
}

/// Load the starting weights: a checkpoint (`.ckpt`, any stage) or a blob (`.tpb`, f16 weights
/// upcast to f32; an int8 blob is refused, its weights are not the trained ones).
pub fn load_start(path: &Path) -> anyhow::Result<StartWeights> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let sha256 = crate::io::fsx::hex(&Sha256::digest(&bytes));
    if bytes.starts_with(&checkpoint::MAGIC) {
        let ckpt = Checkpoint::from_bytes(&bytes)
            .with_context(|| format!("{} is not a readable checkpoint", path.display()))?;
        let params = checkpoint::checkpoint_params(&ckpt)?;
        let recipe = match &ckpt.stage {
            Some(s) => s.options.recipe_line(),
            None => checkpoint::manifest_for(&ckpt).recipe,
        };
        return Ok(StartWeights {
            params,
            vocab: ckpt.meta.vocab.clone(),
            parent: Parent {
                kind: "checkpoint".into(),
                path: path.display().to_string(),
                sha256,
                recipe,
                steps: ckpt.meta.step,
            },
            pretrain_options: Some(ckpt.meta.options),
        });
    }
    let blob = tinypoet_core::blob::parse(&bytes).map_err(|e| {
        anyhow!(
            "{} is neither a checkpoint nor a valid blob: {e}",
            path.display()
        )
    })?;
    let cfg: Config = blob.config;
    let layout = crate::nn::params::ParamLayout::new(&cfg);
    let mut params = Params::zeros(&cfg);
    let mut seen = 0;
    for (t, info) in blob.tensors().zip(layout.tensors()) {
        let e = &t.entry;
        if e.name != info.name || e.shape.dims() != info.shape.as_slice() {
            bail!(
                "{}: tensor {} {:?} where the model has {} {:?}",
                path.display(),
                e.name,
                e.shape.dims(),
                info.name,
                info.shape
            );
        }
        if e.dtype != tinypoet_core::blob::Dtype::F16 {
            bail!(
                "{}: tensor {} is stored as {:?}; a stage starts only from f16 weights (export \
                 the f16 blob or use the checkpoint)",
                path.display(),
                e.name,
                e.dtype
            );
        }
        let out = &mut params.data[info.range()];
        let value =
            |j: usize| tinypoet_core::kernels::f16_to_f32(t.bytes[2 * j], t.bytes[2 * j + 1]);
        match (e.layout, e.shape.dims()) {
            // Stored [in, out] for the core's mat-vecs; the trainer keeps PyTorch's [out, in].
            (tinypoet_core::blob::Layout::Transposed, &[rows, cols]) => {
                for r in 0..rows {
                    for c in 0..cols {
                        out[r * cols + c] = value(c * rows + r);
                    }
                }
            }
            _ => {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = value(j);
                }
            }
        }
        seen += 1;
    }
    if seen != layout.tensors().len() || blob.n_tensors() != seen {
        bail!(
            "{}: {} tensors where the model has {}",
            path.display(),
            blob.n_tensors(),
            layout.tensors().len()
        );
    }
    let m = blob.manifest;
    Ok(StartWeights {
        params,
        vocab: blob.vocab_chars().collect(),
        parent: Parent {
            kind: "blob".into(),
            path: path.display().to_string(),
            sha256,
            recipe: format!("{} (f16 blob, upcast to f32)", m.recipe),
            steps: m.steps,
        },
        pretrain_options: None,
    })
}
