//! Training checkpoints: the full state of a run, written atomically and sealed with a checksum.
//!
//! # File format (`.ckpt`, version 1)
//!
//! ```text
//! offset  size         what
//! 0       8            magic b"TPCKPT\r\n" (the CR LF catches text-mode mangling)
//! 8       4            format version, u32 LE (= 1)
//! 12      8            header length H, u64 LE
//! 20      H            header: postcard encoding of [`CheckpointMeta`]
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
//! checkpoint or the new one at the destination, never a mix; a stray temporary file is ignored
//! by [`load`] (and overwritten by the next save). Because the checksum covers the whole file,
//! a torn or corrupted checkpoint is reported as [`CheckpointError::ChecksumMismatch`] or
//! [`CheckpointError::Truncated`], never loaded.
//!
//! # Test hooks
//!
//! For the kill test (`tests/kill.rs`), two environment variables make the process SIGKILL
//! itself in the middle of a save, exactly as a power cut or `kill -9` would:
//! * `TINYPOET_TEST_KILL_AFTER_BYTES=N`: after N bytes of the temporary file are written
//!   (N = 0 kills right after creating it; N ≥ the file length kills after the last write);
//! * `TINYPOET_TEST_KILL_AT=before-fsync | before-rename | before-dir-fsync`: at that point.
//!
//! Both apply to the first save of the process only (unset: no effect).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use anyhow::Context;

use crate::io::export::ManifestInfo;
use crate::io::fsx::{self, unhex32, WritePoint};
use crate::nn::init::{init_params_torch, REFERENCE_DRAWS_BEFORE_INIT};
use crate::nn::mt19937::Mt19937;
use crate::nn::params::{Config, ConfigRecord, ModelShape, Params};
use crate::run::metrics::MetricRow;
use crate::run::options::TrainOptions;

/// First bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"TPCKPT\r\n";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
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
    /// Exact encoded size in bytes.
    pub fn encoded_len(&self) -> Result<usize, CheckpointError> {
        let header =
            postcard::to_stdvec(&self.meta).map_err(|e| CheckpointError::Header(e.to_string()))?;
        Ok(PREFIX_LEN + header.len() + 12 * self.params.len() + DIGEST_LEN)
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
        let header =
            postcard::to_stdvec(&self.meta).map_err(|e| CheckpointError::Header(e.to_string()))?;
        let mut out = Vec::with_capacity(PREFIX_LEN + header.len() + 12 * n + DIGEST_LEN);
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
        if version != FORMAT_VERSION {
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
        let meta: CheckpointMeta = postcard::from_bytes(&body[PREFIX_LEN..header_end])
            .map_err(|e| CheckpointError::Header(e.to_string()))?;
        let n = usize::try_from(meta.n_params)
            .map_err(|_| CheckpointError::Inconsistent("n_params too large".into()))?;
        let data = &body[header_end..];
        if data.len() as u64 != 12 * meta.n_params {
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
        })
    }
}

/// The total length a file with this prefix and header should have, if the header parses.
fn expected_len(bytes: &[u8]) -> Option<u64> {
    let header_len = u64::from_le_bytes(bytes.get(12..20)?.try_into().ok()?);
    let end = PREFIX_LEN.checked_add(usize::try_from(header_len).ok()?)?;
    let meta: CheckpointMeta = postcard::from_bytes(bytes.get(PREFIX_LEN..end)?).ok()?;
    Some(end as u64 + 12 * meta.n_params + DIGEST_LEN as u64)
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

static HOOK_USED: AtomicBool = AtomicBool::new(false);

/// The kill-test hook configuration, read once per save.
struct KillHook {
    after_bytes: Option<u64>,
    at: Option<String>,
}

impl KillHook {
    fn from_env() -> KillHook {
        // Only the first save of the process is affected.
        if HOOK_USED.swap(true, Ordering::SeqCst) {
            return KillHook {
                after_bytes: None,
                at: None,
            };
        }
        KillHook {
            after_bytes: std::env::var("TINYPOET_TEST_KILL_AFTER_BYTES")
                .ok()
                .and_then(|s| s.parse().ok()),
            at: std::env::var("TINYPOET_TEST_KILL_AT").ok(),
        }
    }

    fn observe(&self, point: WritePoint<'_>) {
        let name = match point {
            WritePoint::Created { file, bytes } => {
                if let Some(limit) = self.after_bytes {
                    // Write exactly `limit` bytes, push them to the OS, then die as a crash would.
                    let limit = limit.min(bytes.len() as u64) as usize;
                    let _ = file.write_all(&bytes[..limit]);
                    let _ = file.flush();
                    die();
                }
                return;
            }
            WritePoint::BeforeFsync => "before-fsync",
            WritePoint::BeforeRename => "before-rename",
            WritePoint::BeforeDirFsync => "before-dir-fsync",
        };
        if self.at.as_deref() == Some(name) {
            die();
        }
    }
}

/// SIGKILL ourselves: no destructors, no buffered output flushed, exactly like `kill -9`.
fn die() -> ! {
    #[cfg(unix)]
    // SAFETY: kill(2) on our own pid with a valid signal number has no memory-safety effects.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; this is only reached if kill(2) itself failed.
    std::process::abort()
}

/// Write `ckpt` to `path` atomically (see the module docs).
pub fn save_atomic(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let bytes = ckpt.to_bytes()?;
    let hook = KillHook::from_env();
    fsx::write_atomic_observed(path, &bytes, &mut |point| hook.observe(point)).map_err(|error| {
        CheckpointError::Io {
            path: path.to_path_buf(),
            error,
        }
    })
}

/// The manifest of a checkpoint: its step, the deterministic eval loss logged at that step (if
/// any), its dataset hash, and a recipe line from its options.
pub fn manifest_for(ckpt: &Checkpoint) -> ManifestInfo {
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
        model: ModelShape {
            dim: cfg.dim,
            n_heads: cfg.n_heads,
            n_layers: cfg.n_layers,
            context: cfg.context,
            ffn_dim: cfg.ffn_dim,
        },
        seq: cfg.context,
        ..TrainOptions::default()
    };
    let mut rng = Mt19937::init_genrand(options.seed);
    for _ in 0..REFERENCE_DRAWS_BEFORE_INIT {
        rng.next_u32();
    }
    // Advance past exactly the draws the torch init takes for this shape.
    let _ = init_params_torch(&cfg, &mut rng);
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
