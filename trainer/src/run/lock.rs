//! One writer per run directory: the exclusive advisory lock a training run (train, finetune,
//! align, and their `--resume`) holds on its output directory for as long as it runs.
//!
//! Without it two runs on one `--out` both succeed: the last checkpoint written wins and
//! `metrics.jsonl` interleaves the two runs' rows. With it the second run fails before it writes
//! anything, naming the directory and the pid of the run that holds it.
//!
//! The lock is `flock`-style (std's [`File::try_lock`]) on [`LOCK_FILE`] inside the directory,
//! which holds the holder's pid as text (for the message; the lock itself is what counts). The
//! operating system releases it when the holder exits however it exits (Ctrl-C, a panic,
//! SIGKILL), so a stale lock cannot outlive its run. The file stays in the directory: removing
//! it on exit would let a run waiting on the old file and a run creating a new one both hold "the"
//! lock.
//!
//! While the lock is held no other run can be writing the directory's checkpoint or plot, so a
//! temporary file of theirs (`.checkpoint.ckpt.tmp<pid>`, `.loss.svg.tmp<pid>`, see
//! [`fsx::write_atomic`]) is the litter of a run that was killed mid-save: taking the lock
//! removes them.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::io::fsx;
use crate::run::train_loop::{CHECKPOINT_FILE, PLOT_FILE};

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// The files a run writes atomically into its directory (their temporary files are its own).
const ATOMIC_RUN_FILES: [&str; 2] = [CHECKPOINT_FILE, PLOT_FILE];

/// Why a run directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{} is in use by another run{}: wait for it to finish (or stop it), or give another --out",
        dir.display(),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy { dir: PathBuf, pid: Option<u32> },
    #[error("locking {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
}

/// The held lock on a run directory; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct RunLock {
    /// The open, locked [`LOCK_FILE`] (the lock lives as long as this handle).
    _file: Option<File>,
    dir: PathBuf,
}

impl RunLock {
    /// Lock `dir` (created if missing) for this process, or fail at once with
    /// [`LockError::Busy`] if another run holds it. Removes the stale temporary files of the
    /// run's own atomic writes (see the module docs). On a file system that cannot lock, a
    /// warning says so and the run goes ahead unlocked.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        // Neither truncated nor written before the lock is ours: a refused run changes nothing.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Busy {
                    dir: dir.to_path_buf(),
                    pid: holder_pid(&mut file),
                })
            }
            Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
                crate::errln!(
                    "warning: {} cannot be locked ({e}); a second run writing there at the same \
                     time would not be noticed",
                    dir.display()
                );
                return Ok(RunLock {
                    _file: None,
                    dir: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())
        })()
        .map_err(io_err)?;
        for name in ATOMIC_RUN_FILES {
            let target = dir.join(name);
            fsx::remove_temp_files(&target, |_| true).map_err(|error| LockError::Io {
                path: target,
                error,
            })?;
        }
        Ok(RunLock {
            _file: Some(file),
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The pid the holder wrote into the lock file, if it is there yet (and readable: on Windows
/// the holder's lock keeps others from reading it).
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Run `prepare` (the checks and reads a run makes before it writes: the existing checkpoint,
/// the `--resume` checkpoint) under the lock on `dir`, and return the lock with its result.
///
/// When `dir` already exists it is locked first, so that what `prepare` reads of it is what
/// the run then continues. When it does not exist, `prepare` runs first (there is nothing in
/// it to read) and the directory is created only if `prepare` succeeds: a refused run leaves no
/// directory behind.
pub fn lock_then<T, E: From<LockError>>(
    dir: &Path,
    prepare: impl FnOnce() -> Result<T, E>,
) -> Result<(RunLock, T), E> {
    if dir.is_dir() {
        let lock = RunLock::acquire(dir)?;
        let value = prepare()?;
        Ok((lock, value))
    } else {
        let value = prepare()?;
        Ok((RunLock::acquire(dir)?, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let first = RunLock::acquire(&run).unwrap();
        assert_eq!(first.dir(), run);
        let lock_text = std::fs::read_to_string(run.join(LOCK_FILE)).unwrap();
        assert_eq!(lock_text, format!("{}\n", std::process::id()));
        // (flock locks belong to the open file, so a second open in this process conflicts)
        match RunLock::acquire(&run) {
            Err(LockError::Busy { dir, pid }) => {
                assert_eq!(dir, run);
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        let err = RunLock::acquire(&run).unwrap_err().to_string();
        assert!(err.contains(&run.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        drop(first);
        RunLock::acquire(&run).unwrap();
    }

    #[test]
    fn taking_the_lock_removes_the_runs_temporary_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let own = std::process::id();
        let stale = [
            format!(".{CHECKPOINT_FILE}.tmp{own}"),
            format!(".{CHECKPOINT_FILE}.tmp1"),
            format!(".{PLOT_FILE}.tmp4194304"),
        ];
        let kept = [".model.tpb.tmp1".to_string(), CHECKPOINT_FILE.to_string()];
        for n in stale.iter().chain(&kept) {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let _lock = RunLock::acquire(dir.path()).unwrap();
        for n in &stale {
            assert!(!dir.path().join(n).exists(), "{n}");
        }
        for n in &kept {
            assert!(dir.path().join(n).exists(), "{n}");
        }
    }

    #[test]
    fn lock_then_creates_no_directory_for_a_refused_run() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("new");
        let r: Result<(RunLock, ()), anyhow::Error> =
            lock_then(&run, || Err(anyhow::anyhow!("bad input")));
        assert!(r.is_err());
        assert!(!run.exists());
        let (lock, v) = lock_then(&run, || Ok::<_, anyhow::Error>(7)).unwrap();
        assert_eq!(v, 7);
        assert!(run.join(LOCK_FILE).is_file());
        // An existing directory is locked before `prepare` runs.
        let r = lock_then(&run, || -> anyhow::Result<()> { panic!("ran unlocked") });
        assert!(matches!(
            r.unwrap_err().downcast_ref::<LockError>(),
            Some(LockError::Busy { .. })
        ));
        drop(lock);
    }
}
