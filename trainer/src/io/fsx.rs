//! File-system and text helpers every layer uses: the one atomic file write and the one hex
//! encoding. A leaf: imports nothing from the crate.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A moment inside [`write_atomic_observed`] that an observer sees (the crash tests use it to
/// die at each point, exactly as a power cut would).
pub enum WritePoint<'a> {
    /// The temporary file was just created, nothing written yet. An observer may write a prefix
    /// of `bytes` to `file` itself (a torn write) before dying.
    Created { file: &'a mut File, bytes: &'a [u8] },
    /// Everything written, not yet fsynced.
    BeforeFsync,
    /// Fsynced, not yet renamed over the destination.
    BeforeRename,
    /// Renamed, the directory not yet fsynced.
    BeforeDirFsync,
}

/// Atomically replace `path` by `bytes`: a temporary file in the same directory (so the rename
/// cannot cross file systems; the directory is created if missing), write, fsync, rename, fsync
/// the directory. A crash at any moment leaves the old file or the new one, never a mix; the
/// temporary file is removed on any error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_observed(path, bytes, &mut |_| {})
}

/// [`write_atomic`], calling `observe` at each [`WritePoint`].
pub fn write_atomic_observed(
    path: &Path,
    bytes: &[u8],
    observe: &mut dyn FnMut(WritePoint<'_>),
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        observe(WritePoint::Created {
            file: &mut f,
            bytes,
        });
        f.write_all(bytes)?;
        observe(WritePoint::BeforeFsync);
        f.sync_all()?;
        drop(f);
        observe(WritePoint::BeforeRename);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    observe(WritePoint::BeforeDirFsync);
    sync_dir(&dir)
}

/// Make a rename inside `dir` durable. Unix can fsync a directory; elsewhere a directory cannot
/// be opened as a file, and the rename is as durable as the platform makes it.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse exactly 64 hex digits (a SHA-256) into bytes; `None` for anything else.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let h = hex(&bytes);
        assert_eq!(h.len(), 64);
        assert_eq!(unhex32(&h), Some(bytes));
        assert_eq!(unhex32(&h[..62]), None);
        assert_eq!(unhex32(&"zz".repeat(32)), None);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("f.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
