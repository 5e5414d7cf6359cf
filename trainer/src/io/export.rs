//! Export to the core's blob format (`tinypoet_core::blob`; f16, or int8 matrices), in memory.

use anyhow::anyhow;

use tinypoet_core::blob::{self, BlobInput, Manifest, WeightDtype};
use tinypoet_core::Model;

use crate::nn::params::Params;

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
