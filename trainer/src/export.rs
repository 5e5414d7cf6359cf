//! Export to the core's blob format (`tinypoet_core::blob`; f16, or int8 matrices), in memory
//! or to a file, and sampling through the core from in-memory parameters (the trainer's
//! eval-time samples).

use anyhow::{anyhow, Context};
use std::ops::ControlFlow;

use tinypoet_core::blob::{self, BlobInput, Manifest, WeightDtype};
use tinypoet_core::{state_words, Decoder, GenerateSettings, KvPrecision, Model, SamplerSettings};

use crate::checkpoint::Checkpoint;
use crate::params::{Config, Params};

/// What goes into a blob's manifest.
#[derive(Clone, Debug)]
pub struct ManifestInfo {
    pub steps: u64,
    /// Deterministic eval loss of the f32 parameters (NaN = not measured).
    pub eval_loss: f32,
    /// Deterministic eval loss of the blob through the core (NaN = not measured).
    pub eval_loss_blob: f32,
    /// SHA-256 of the prepared dataset (zeros = unknown).
    pub corpus_sha256: [u8; 32],
    pub recipe: String,
}

impl ManifestInfo {
    pub fn unknown() -> Self {
        ManifestInfo {
            steps: 0,
            eval_loss: f32::NAN,
            eval_loss_blob: f32::NAN,
            corpus_sha256: [0; 32],
            recipe: String::new(),
        }
    }
}

/// Encode parameters as an f16 blob (in memory).
pub fn blob_bytes(params: &Params, vocab: &[char], info: &ManifestInfo) -> anyhow::Result<Vec<u8>> {
    blob_bytes_as(params, vocab, info, WeightDtype::F16)
}

/// Encode parameters as a blob of the given weight precision (in memory). For int8 the core's
/// writer quantizes the f32 parameters itself ([`WeightDtype::INT8`]: groups of 32, f16 scales).
pub fn blob_bytes_as(
    params: &Params,
    vocab: &[char],
    info: &ManifestInfo,
    dtype: WeightDtype,
) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    write_blob_into(params, vocab, info, dtype, &mut buf)?;
    Ok(buf)
}

/// The int8 format for a model of `cfg`: [`WeightDtype::INT8`] (groups of 32, f16 scales) when
/// 32 divides `dim` and `ffn_dim` (the Tang model), else the largest of 16, 8, 4 that does (small
/// test models); an error if none does.
pub fn int8_dtype_for(cfg: &tinypoet_core::Config) -> anyhow::Result<WeightDtype> {
    for g in [32usize, 16, 8, 4] {
        if tinypoet_core::blob::q8_group_ok(g, cfg.dim)
            && tinypoet_core::blob::q8_group_ok(g, cfg.ffn_dim)
        {
            return Ok(WeightDtype::Q8 {
                group_size: g as u32,
                scale: tinypoet_core::blob::ScaleDtype::F16,
            });
        }
    }
    anyhow::bail!(
        "int8 needs dim ({}) and ffn_dim ({}) to be multiples of 4",
        cfg.dim,
        cfg.ffn_dim
    )
}

/// A short description of a model's weight precision: "f16" or "int8 (group 32)".
pub fn dtype_label(model: &Model) -> String {
    match model.q8_group() {
        None => "f16".into(),
        Some(g) => format!("int8, group {g}"),
    }
}

/// Encode into `buf`, resizing it to the blob's exact length (reuses its allocation).
pub fn write_blob_into(
    params: &Params,
    vocab: &[char],
    info: &ManifestInfo,
    dtype: WeightDtype,
    buf: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let views = params.views();
    let input = BlobInput {
        config: *params.config(),
        vocab,
        manifest: Manifest {
            steps: info.steps,
            eval_loss: info.eval_loss,
            eval_loss_blob: info.eval_loss_blob,
            corpus_sha256: info.corpus_sha256,
            recipe: &info.recipe,
        },
        dtype,
        tensors: &views,
    };
    let len = blob::encoded_len(&input).map_err(|e| anyhow!("cannot encode the blob: {e}"))?;
    buf.resize(len, 0);
    let n = blob::write(&input, buf).map_err(|e| anyhow!("cannot encode the blob: {e}"))?;
    buf.truncate(n);
    Ok(())
}

/// The manifest of a checkpoint: its step, the deterministic eval loss logged at that step (if
/// any), its dataset hash, and a recipe line from its options.
///
/// For a finetune or alignment checkpoint: the stage's update count, the eval loss of its last
/// evaluation (the stage's own estimator: masked CE, or the alignment loss; `export --data`
/// replaces it by the pretraining-split loss, which the recipe line then does not contradict:
/// it states the stage's loss itself), and a recipe line naming the stage, its recipe and its
/// parent (file, hash, steps and the parent's recipe).
pub fn manifest_for(ckpt: &Checkpoint) -> ManifestInfo {
    if let Some(st) = &ckpt.stage {
        let last = st.rows.last();
        let p = &st.parent;
        let stage_loss = match last {
            Some(r) => format!(
                "; stage eval loss {:.4}{} after {} updates",
                r.eval_loss,
                r.eval_margin
                    .map(|m| format!(", margin {m:.4}"))
                    .unwrap_or_default(),
                r.global_step
            ),
            None => String::new(),
        };
        return ManifestInfo {
            steps: ckpt.meta.step,
            eval_loss: last.map_or(f32::NAN, |r| r.eval_loss as f32),
            eval_loss_blob: f32::NAN,
            corpus_sha256: unhex32(&ckpt.meta.dataset_hash).unwrap_or([0; 32]),
            recipe: format!(
                "{}{stage_loss}; from {} {} (sha256 {}, {} steps: {})",
                st.options.recipe_line(),
                p.kind,
                p.path,
                &p.sha256[..p.sha256.len().min(16)],
                p.steps,
                p.recipe
            ),
        };
    }
    let m = &ckpt.meta;
    let o = &m.options;
    let eval_loss = m
        .metrics
        .iter()
        .rev()
        .find(|r| r.step == m.step)
        .map(|r| r.eval_loss as f32)
        .unwrap_or(f32::NAN);
    let schedule = match o.schedule {
        crate::train::Schedule::Constant => "constant".to_string(),
        crate::train::Schedule::WarmupCosine {
            warmup_steps,
            min_lr_ratio,
        } => format!("warmup{warmup_steps}+cosine(min {min_lr_ratio})"),
    };
    ManifestInfo {
        steps: m.step,
        eval_loss,
        eval_loss_blob: f32::NAN,
        corpus_sha256: unhex32(&m.dataset_hash).unwrap_or([0; 32]),
        recipe: format!(
            "tinypoet pretrain lr={} schedule={} clip={} batch={}x{} seed={} steps={}",
            o.lr,
            schedule,
            o.grad_clip.map_or("off".to_string(), |c| c.to_string()),
            o.batch,
            o.seq,
            o.seed,
            m.step
        ),
    }
}

/// Parameters of a checkpoint as the trainer's `Params`.
pub fn checkpoint_params(ckpt: &Checkpoint) -> anyhow::Result<Params> {
    let cfg = Config::from(&ckpt.meta.config);
    Params::from_vec(&cfg, ckpt.params.clone())
        .context("checkpoint parameter count does not match its config")
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse 64 hex digits.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Generate up to `max_new` characters after `prompt` through the core: export `params` to a
/// blob in memory, parse it from that buffer, and run the core's decoder and sampler with the
/// reference's settings (temperature 1, no top-k/top-p/penalty, no stop sequence; stops early
/// only when it samples id 0). Returns prompt + continuation.
pub fn sample_through_core(
    params: &Params,
    vocab: &[char],
    prompt: &str,
    max_new: usize,
    seed: u64,
) -> anyhow::Result<String> {
    let bytes = blob_bytes(params, vocab, &ManifestInfo::unknown())?;
    let model = Model::load(&bytes).map_err(|e| anyhow!("the exported blob does not load: {e}"))?;
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(&model, &mut state, KvPrecision::F16)
        .map_err(|e| anyhow!("core decoder: {e}"))?;
    let settings = GenerateSettings {
        sampler: SamplerSettings::DEFAULT,
        seed,
        max_new_chars: max_new,
        stop: &[],
        stop_at_end_of_text: true,
    };
    let mut out = String::from(prompt);
    dec.generate(prompt, &settings, |c| {
        out.push(c);
        ControlFlow::Continue(())
    })
    .map_err(|e| anyhow!("sampling through the core: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_group_is_32_for_tang_and_smaller_for_small_models() {
        let tang = tinypoet_core::Config::TANG;
        assert_eq!(int8_dtype_for(&tang).unwrap(), WeightDtype::INT8);
        let small = |dim, ffn_dim| tinypoet_core::Config {
            dim,
            ffn_dim,
            ..tang
        };
        let group = |c| match int8_dtype_for(&c).unwrap() {
            WeightDtype::Q8 { group_size, .. } => group_size,
            WeightDtype::F16 => unreachable!(),
        };
        assert_eq!(group(small(16, 32)), 16);
        assert_eq!(group(small(64, 24)), 8);
        assert_eq!(group(small(12, 36)), 4);
        let e = int8_dtype_for(&small(6, 24)).unwrap_err().to_string();
        assert!(e.contains("multiples of 4"), "{e}");
    }
}
