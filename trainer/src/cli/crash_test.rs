//! The kill test's crash hook (`tests/kill.rs`), compiled only with the `crash-test` feature
//! (the trainer's tests turn it on; release builds never have it). Two environment variables make
//! `tinypoet train` SIGKILL itself in the middle of its first checkpoint save, exactly as a power
//! cut or `kill -9` would:
//! * `TINYPOET_TEST_KILL_AFTER_BYTES=N`: after N bytes of the temporary file are written
//!   (N = 0 kills right after creating it; N ≥ the file length kills after the last write);
//! * `TINYPOET_TEST_KILL_AT=before-fsync | before-rename | before-dir-fsync`: at that point.
//!
//! Unset: no hook.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::io::fsx::WritePoint;

/// Where to die, read from the environment once.
pub struct KillHook {
    after_bytes: Option<u64>,
    at: Option<String>,
    /// Saves started so far: only the first save of the process is affected.
    saves: AtomicU32,
}

impl KillHook {
    /// The hook the environment asks for, if any.
    pub fn from_env() -> Option<KillHook> {
        let after_bytes = std::env::var("TINYPOET_TEST_KILL_AFTER_BYTES")
            .ok()
            .and_then(|s| s.parse().ok());
        let at = std::env::var("TINYPOET_TEST_KILL_AT").ok();
        (after_bytes.is_some() || at.is_some()).then_some(KillHook {
            after_bytes,
            at,
            saves: AtomicU32::new(0),
        })
    }

    /// Called at each point of a checkpoint write.
    pub fn observe(&self, point: WritePoint<'_>) {
        let name = match point {
            WritePoint::Created { file, bytes } => {
                // A new save: only the first one of the process may die.
                if self.saves.fetch_add(1, Ordering::SeqCst) > 0 {
                    return;
                }
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
        if self.at.as_deref() == Some(name) && self.saves.load(Ordering::SeqCst) == 1 {
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
