//! Training checkpoints: the full state of a run, written atomically and sealed with a checksum.
//!
//! # File format (`.ckpt`, version 2)
//!
//! ```text
//! offset  size         what
//! 0       8            magic b"TPCKPT\r\n" (the CR LF catches text-mode mangling)
//! 8       4            format version, u32 LE (= 2; version 1 is still read)
//! 12      8            header length H, u64 LE
//! 20      H            header: postcard encoding of [`CheckpointMeta`], then (version 2)
//!                      of `Option<StageState>` (the finetune/align stage; none = pretraining)
//! 20+H    4·n          parameters, f32 LE, canonical order (n = meta.n_params)
//! ...     4·n          AdamW first moments m
//! ...     4·n          AdamW second moments v
//! end-32  32           SHA-256 of every byte before it
//! ```
//!
//! The header is postcard (not JSON) so that every float in it (the train-loss accumulator, the
//! metrics) round-trips bit for bit, which `--resume` needs to print the same log.
//!
//! # Atomic writes
//!
//! [`save_atomic`] writes to a temporary file in the destination directory, fsyncs it, renames it
//! over the destination and fsyncs the directory. A crash at any moment leaves either the old
//! checkpoint or the new one at the destination, never a mix. A crash mid-save leaves its
//! temporary file `.<name>.tmp<pid>` beside the checkpoint; [`load`] never reads it, the next
//! successful save of the same checkpoint removes it (its writer is gone), and so does the next
//! run taking the run directory's lock (`run::lock`). Because the checksum covers the whole file,
//! a torn or corrupted checkpoint is reported as [`CheckpointError::ChecksumMismatch`] or
//! [`CheckpointError::Truncated`], never loaded.
//!
//! # Sizes from the file
//!
//! Every size read from a file (the header length, `n_params`) enters arithmetic checked: a
//! header whose `12 · n_params` would wrap around is [`CheckpointError::Inconsistent`], not a
//! checkpoint whose arrays are shorter than it says.
//!
//! [`save_atomic_observed`] lets a caller watch each point of the write; the kill test's crash
//! hook (`cli/crash_test.rs`, only in builds with the `crash-test` feature) uses it.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use anyhow::Context;

use crate::io::export::ManifestInfo;
use crate::io::fsx::{self, unhex32, WritePoint};
use crate::nn::init::reference_init;
use crate::nn::params::{Config, ConfigRecord, ModelShape, Params};
use crate::run::metrics::MetricRow;
use crate::run::options::TrainOptions;
use crate::run::stage_record::StageState;

/// First bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"TPCKPT\r\n";
/// The format version this code writes (it reads this one and version 1, which has no stage
/// record).
pub const FORMAT_VERSION: u32 = 2;
const PREFIX_LEN: usize = 8 + 4 + 8;
const DIGEST_LEN: usize = 32;

/// Everything in a checkpoint except the three big f32 arrays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Completed optimizer updates (the next iteration to run is `step`).
    pub step: u64,
    /// AdamW's step counter `t` (equals `step` for a single-stage run).
    pub adam_t: u64,
    /// Number of f32 parameters (length of each of the three arrays).
    pub n_params: u64,
    pub config: ConfigRecord,
    /// The vocabulary, characters in id order.
    pub vocab: Vec<char>,
    /// Hex SHA-256 content hash of the prepared dataset the run trains on.
    pub dataset_hash: String,
    /// The batch sampler's MT19937 state (2,500 bytes, `Mt19937::to_bytes`).
    pub rng_state: Vec<u8>,
    /// Sum of train losses since the last log line (the reference's `train_loss_sum`).
    pub train_loss_acc: f64,
    /// Number of train losses in `train_loss_acc`.
    pub train_loss_count: u64,
    /// Training wall time so far, seconds (informational; not part of the determinism).
    pub wall_time_s: f64,
    /// The run's options (resume uses them unless overridden where that is safe).
    pub options: TrainOptions,
    /// Every evaluation row so far.
    pub metrics: Vec<MetricRow>,
}

/// A checkpoint in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    /// The finetune/align stage this checkpoint is in (none: a pretraining checkpoint).
    pub stage: Option<StageState>,
    pub params: Vec<f32>,
    pub adam_m: Vec<f32>,
    pub adam_v: Vec<f32>,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    // The cause is part of the one-line message (not a `#[source]`), so that printing the
    // error chain does not repeat it.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("not a tinypoet checkpoint (bad magic)")]
    BadMagic,
    #[error("checkpoint format version {0} is not supported (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("checkpoint is truncated ({len} bytes, expected {expected})")]
    Truncated { len: u64, expected: u64 },
    #[error("checkpoint checksum mismatch: the file is corrupt or was torn by a crash")]
    ChecksumMismatch,
    #[error("checkpoint header is malformed: {0}")]
    Header(String),
    #[error("checkpoint is inconsistent: {0}")]
    Inconsistent(String),
}

impl Checkpoint {
    /// The header bytes: the meta, then the stage record.
    fn header(&self) -> Result<Vec<u8>, CheckpointError> {
        let err = |e: postcard::Error| CheckpointError::Header(e.to_string());
        let mut header = postcard::to_stdvec(&self.meta).map_err(err)?;
        header.extend(postcard::to_stdvec(&self.stage).map_err(err)?);
        Ok(header)
    }

    /// Exact encoded size in bytes.
    pub fn encoded_len(&self) -> Result<usize, CheckpointError> {
        total_len(self.header()?.len(), self.params.len())
    }

    /// Encode to the file format above.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let n = self.params.len();
        if self.adam_m.len() != n || self.adam_v.len() != n || self.meta.n_params != n as u64 {
            return Err(CheckpointError::Inconsistent(format!(
                "params {n}, m {}, v {}, header n_params {}",
                self.adam_m.len(),
                self.adam_v.len(),
                self.meta.n_params
            )));
        }
        let header = self.header()?;
        let mut out = Vec::with_capacity(total_len(header.len(), n)?);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for arr in [&self.params, &self.adam_m, &self.adam_v] {
            for x in arr.iter() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Decode and verify (magic, version, checksum, sizes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        if bytes.len() < 8 || bytes[..8] != MAGIC {
            return Err(CheckpointError::BadMagic);
        }
        let min = (PREFIX_LEN + DIGEST_LEN) as u64;
        if (bytes.len() as u64) < min {
            return Err(CheckpointError::Truncated {
                len: bytes.len() as u64,
                expected: min,
            });
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION && version != 1 {
            return Err(CheckpointError::UnsupportedVersion(version));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
        if Sha256::digest(body).as_slice() != digest {
            // Distinguish a short file (a torn write) from flipped bytes when the header says so.
            if let Some(expected) = expected_len(bytes) {
                if expected != bytes.len() as u64 {
                    return Err(CheckpointError::Truncated {
                        len: bytes.len() as u64,
                        expected,
                    });
                }
            }
            return Err(CheckpointError::ChecksumMismatch);
        }
        let header_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let header_end = (PREFIX_LEN as u64)
            .checked_add(header_len)
            .filter(|&e| e <= body.len() as u64)
            .ok_or_else(|| CheckpointError::Header("header length out of range".into()))?
            as usize;
        let header_err = |e: postcard::Error| CheckpointError::Header(e.to_string());
        let (meta, rest): (CheckpointMeta, &[u8]) =
            postcard::take_from_bytes(&body[PREFIX_LEN..header_end]).map_err(header_err)?;
        let stage: Option<StageState> = match version {
            1 if rest.is_empty() => None,
            1 => return Err(CheckpointError::Header("trailing header bytes".into())),
            _ => postcard::from_bytes(rest).map_err(header_err)?,
        };
        if let Some(st) = &stage {
            let n_ref = st.reference_params.len() as u64;
            if n_ref != 0 && n_ref != meta.n_params {
                return Err(CheckpointError::Inconsistent(format!(
                    "{n_ref} reference parameters for {} parameters",
                    meta.n_params
                )));
            }
        }
        let n = usize::try_from(meta.n_params).map_err(|_| too_many_params(meta.n_params))?;
        let data = &body[header_end..];
        let expected = data_len(meta.n_params).ok_or_else(|| too_many_params(meta.n_params))?;
        // (so 4·n·k ≤ 12·n = data.len() below cannot overflow either)
        if data.len() as u64 != expected {
            return Err(CheckpointError::Inconsistent(format!(
                "{} data bytes for {} parameters",
                data.len(),
                meta.n_params
            )));
        }
        if meta.vocab.len() != meta.config.vocab_size as usize {
            return Err(CheckpointError::Inconsistent(format!(
                "vocabulary has {} characters, config says {}",
                meta.vocab.len(),
                meta.config.vocab_size
            )));
        }
        let read = |k: usize| -> Vec<f32> {
            data[4 * n * k..4 * n * (k + 1)]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        Ok(Checkpoint {
            params: read(0),
            adam_m: read(1),
            adam_v: read(2),
            meta,
            stage,
        })
    }
}

/// The total length a file with this prefix and header should have, if the header parses.
fn expected_len(bytes: &[u8]) -> Option<u64> {
    let header_len = u64::from_le_bytes(bytes.get(12..20)?.try_into().ok()?);
    let end = PREFIX_LEN.checked_add(usize::try_from(header_len).ok()?)?;
    let (meta, _): (CheckpointMeta, _) =
        postcard::take_from_bytes::<CheckpointMeta>(bytes.get(PREFIX_LEN..end)?).ok()?;
    (end as u64)
        .checked_add(data_len(meta.n_params)?)?
        .checked_add(DIGEST_LEN as u64)
}

/// Bytes of the three f32 arrays of `n_params` parameters; `None` if that overflows a u64.
fn data_len(n_params: u64) -> Option<u64> {
    n_params.checked_mul(12)
}

/// The file length for a header of `header_len` bytes and `n` parameters.
fn total_len(header_len: usize, n: usize) -> Result<usize, CheckpointError> {
    data_len(n as u64)
        .and_then(|d| usize::try_from(d).ok())
        .and_then(|d| {
            d.checked_add(PREFIX_LEN + DIGEST_LEN)?
                .checked_add(header_len)
        })
        .ok_or_else(|| too_many_params(n as u64))
}

fn too_many_params(n_params: u64) -> CheckpointError {
    CheckpointError::Inconsistent(format!(
        "{n_params} parameters: three f32 arrays that long cannot be addressed"
    ))
}

/// Read and verify a checkpoint file.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes =
        fsx::read_input(path, fsx::limits::CHECKPOINT).map_err(|error| CheckpointError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    Checkpoint::from_bytes(&bytes)
}

/// Write `ckpt` to `path` atomically (see the module docs).
pub fn save_atomic(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    save_atomic_observed(path, ckpt, &|_| {})
}

/// [`save_atomic`], calling `observe` at each point of the write (the kill test's crash hook).
pub fn save_atomic_observed(
    path: &Path,
    ckpt: &Checkpoint,
    observe: &(dyn Fn(WritePoint<'_>) + Sync),
) -> Result<(), CheckpointError> {
    let bytes = ckpt.to_bytes()?;
    fsx::write_atomic_observed(path, &bytes, &mut |point| observe(point)).map_err(|error| {
        CheckpointError::Io {
            path: path.to_path_buf(),
            error,
        }
    })
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
    ManifestInfo {
        steps: m.step,
        eval_loss,
        eval_loss_blob: f32::NAN,
        corpus_sha256: unhex32(&m.dataset_hash).unwrap_or([0; 32]),
        recipe: o.recipe(m.step),
    }
}

/// Parameters of a checkpoint as the trainer's `Params`.
pub fn checkpoint_params(ckpt: &Checkpoint) -> anyhow::Result<Params> {
    let cfg = Config::from(&ckpt.meta.config);
    Params::from_vec(&cfg, ckpt.params.clone())
        .context("checkpoint parameter count does not match its config")
}

/// A training checkpoint holding imported parameters: step 0, fresh AdamW moments (t = 0), the
/// reference's options (`TrainOptions::default()` with this model shape and the sequence length
/// set to the context), no metrics, and the batch stream of a fresh `--init torch` run with the
/// default seed, positioned after its initialisation draws. `tinypoet train --resume` on it
/// therefore trains these weights exactly as a fresh default run would train its own initial
/// weights (a run from imported step-0 reference weights reproduces a fresh run).
pub fn imported_checkpoint(params: Params, vocab: &[char], dataset_hash: &str) -> Checkpoint {
    let cfg = *params.config();
    let options = TrainOptions {
        model: ModelShape::from(&cfg),
        seq: cfg.context,
        ..TrainOptions::default()
    };
    // The stream of a fresh torch-init run, past exactly the draws its init takes.
    let (_, rng) = reference_init(&cfg, options.seed);
    let n = params.data.len();
    Checkpoint {
        meta: CheckpointMeta {
            step: 0,
            adam_t: 0,
            n_params: n as u64,
            config: ConfigRecord::from(&cfg),
            vocab: vocab.to_vec(),
            dataset_hash: dataset_hash.to_string(),
            rng_state: rng.to_bytes().to_vec(),
            train_loss_acc: 0.0,
            train_loss_count: 0,
            wall_time_s: 0.0,
            options,
            metrics: Vec::new(),
        },
        stage: None,
        params: params.data,
        adam_m: vec![0.0; n],
        adam_v: vec![0.0; n],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sample() -> Checkpoint {
        let n = 37;
        Checkpoint {
            meta: CheckpointMeta {
                step: 12,
                adam_t: 12,
                n_params: n as u64,
                config: ConfigRecord {
                    vocab_size: 3,
                    dim: 4,
                    n_heads: 1,
                    n_layers: 1,
                    context: 8,
                    ffn_dim: 16,
                    ln_eps: 1e-5,
                    attn_scale: 0.5,
                },
                vocab: vec!['\0', 'a', '春'],
                dataset_hash: "ab".repeat(32),
                rng_state: vec![7; 2500],
                train_loss_acc: 1.0 / 3.0,
                train_loss_count: 2,
                wall_time_s: 1.5,
                options: TrainOptions::default(),
                metrics: vec![],
            },
            stage: None,
            params: (0..n).map(|i| i as f32 * 0.25 - 3.0).collect(),
            adam_m: (0..n).map(|i| (i as f32).sin()).collect(),
            adam_v: (0..n).map(|i| (i as f32).cos().abs()).collect(),
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let c = sample();
        let bytes = c.to_bytes().unwrap();
        assert_eq!(bytes.len(), c.encoded_len().unwrap());
        assert_eq!(Checkpoint::from_bytes(&bytes).unwrap(), c);
    }

    #[test]
    fn stage_record_round_trips_and_version_1_still_reads() {
        use crate::run::stage_record::{Parent, Stage, StageOptions};
        let mut c = sample();
        c.stage = Some(StageState {
            options: StageOptions::reference(Stage::Align),
            parent: Parent {
                kind: "blob".into(),
                path: "models/x.tpb".into(),
                sha256: "cd".repeat(32),
                recipe: "pretrain".into(),
                steps: 20_000,
            },
            epoch: 1,
            index: 7,
            loss_acc: 0.5,
            margin_acc: -0.25,
            acc_count: 3,
            rows: vec![],
            reference_params: (0..37).map(|i| i as f32).collect(),
        });
        let bytes = c.to_bytes().unwrap();
        assert_eq!(bytes.len(), c.encoded_len().unwrap());
        assert_eq!(Checkpoint::from_bytes(&bytes).unwrap(), c);

        // A version-1 file (meta only in the header) loads as a pretraining checkpoint.
        let p = sample();
        let header = postcard::to_stdvec(&p.meta).unwrap();
        let mut v1 = Vec::new();
        v1.extend_from_slice(&MAGIC);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&(header.len() as u64).to_le_bytes());
        v1.extend_from_slice(&header);
        for arr in [&p.params, &p.adam_m, &p.adam_v] {
            for x in arr.iter() {
                v1.extend_from_slice(&x.to_le_bytes());
            }
        }
        let digest = Sha256::digest(&v1);
        v1.extend_from_slice(&digest);
        assert_eq!(Checkpoint::from_bytes(&v1).unwrap(), p);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().to_bytes().unwrap();
        for len in 0..bytes.len() {
            assert!(Checkpoint::from_bytes(&bytes[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn every_single_byte_flip_is_an_error() {
        let bytes = sample().to_bytes().unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(Checkpoint::from_bytes(&b).is_err(), "byte {i}");
        }
    }

    #[test]
    fn typed_errors() {
        let bytes = sample().to_bytes().unwrap();
        assert!(matches!(
            Checkpoint::from_bytes(b"hello world, not a checkpoint at all......"),
            Err(CheckpointError::BadMagic)
        ));
        let mut v = bytes.clone();
        v[8] = 9;
        assert!(matches!(
            Checkpoint::from_bytes(&v),
            Err(CheckpointError::UnsupportedVersion(9))
        ));
        assert!(matches!(
            Checkpoint::from_bytes(&bytes[..bytes.len() - 100]),
            Err(CheckpointError::Truncated { .. })
        ));
        let mut v = bytes.clone();
        let last = v.len() - 40;
        v[last] ^= 1;
        assert!(matches!(
            Checkpoint::from_bytes(&v),
            Err(CheckpointError::ChecksumMismatch)
        ));
    }

    #[test]
    fn atomic_save_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ckpt");
        let mut c = sample();
        save_atomic(&path, &c).unwrap();
        c.meta.step = 13;
        save_atomic(&path, &c).unwrap();
        assert_eq!(load(&path).unwrap().meta.step, 13);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("run.ckpt")]);
    }
}
