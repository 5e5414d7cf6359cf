//! File-system and text helpers every layer uses: the one atomic file write and the one hex
//! encoding. A leaf: imports nothing from the crate.

use std::fs::{self, File};
use std::io::{self, Read, Write};
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
///
/// The temporary file is `.<name>.tmp<pid>` beside `path` (see [`temp_path`]). A process killed
/// mid-write leaves its one behind; after each successful write of `path`, the temporary files
/// of `path` whose writer is no longer running are removed (see [`remove_temp_files`]), so
/// crashes do not pile them up.
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
    let tmp = dir.join(temp_name(&file_name, std::process::id()));
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
    sync_dir(&dir)?;
    // Best effort: the write itself is done; a temporary file left here is only litter.
    let own = std::process::id();
    let _ = remove_temp_files(path, |pid| pid != own && !process_alive(pid));
    Ok(())
}

/// The name of [`write_atomic`]'s temporary file for `file_name` in process `pid`.
fn temp_name(file_name: &str, pid: u32) -> String {
    format!(".{file_name}.tmp{pid}")
}

/// The temporary file [`write_atomic`] writes `path` through in this process:
/// `.<name>.tmp<pid>` in the directory of `path` (hidden on Unix, recognisable by its name, one
/// per writing process).
pub fn temp_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy();
    Some(path.with_file_name(temp_name(&name, std::process::id())))
}

/// The pid in `candidate` if it is the name of a [`write_atomic`] temporary file of `file_name`
/// (`.<file_name>.tmp<decimal pid>`).
fn temp_pid(file_name: &str, candidate: &str) -> Option<u32> {
    let digits = candidate
        .strip_prefix('.')?
        .strip_prefix(file_name)?
        .strip_prefix(".tmp")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Remove the [`write_atomic`] temporary files of `path` (`.<name>.tmp<pid>` beside it) whose
/// writer `stale(pid)` says is gone; returns how many were removed. A missing directory has
/// none. Only regular files of exactly that name pattern are touched.
pub fn remove_temp_files(path: &Path, stale: impl Fn(u32) -> bool) -> io::Result<usize> {
    let Some(file_name) = path.file_name() else {
        return Ok(0);
    };
    let file_name = file_name.to_string_lossy();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| temp_pid(&file_name, n))
        else {
            continue;
        };
        if entry.file_type()?.is_file() && stale(pid) {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                // Its writer renamed or removed it meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// Whether a process `pid` is running on this machine (a pid that cannot be a process is not).
/// Where this cannot be asked, every process counts as running, so that no temporary file of a
/// live writer is ever removed.
pub fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // kill(pid, 0) sends nothing: it only checks that the process exists (EPERM: it does,
        // owned by someone else). pid 0 and negative pids name process groups: not a process.
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 only checks for existence; no signal is delivered.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
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

/// The largest file each input format can be: [`read_input`] refuses a larger file before
/// reading a byte of it.
pub mod limits {
    /// A weight blob: the core addresses one with `usize` on its 32-bit targets.
    pub const BLOB: u64 = u32::MAX as u64;
    /// A checkpoint: 12 bytes per parameter (weights and both AdamW moments) of a model whose f16
    /// blob fits [`BLOB`], plus a header (options, vocabulary, metrics; far below 1 GiB).
    pub const CHECKPOINT: u64 = 12 * (BLOB / 2) + (1 << 30);
    /// A safetensors file: the f32 weights of such a model plus the JSON header (at most 100 MB
    /// in the safetensors format) and its 8-byte length.
    pub const SAFETENSORS: u64 = 4 * (BLOB / 2) + 100_000_000 + 8;
    /// A prepared dataset: a u32-length header, up to 65,536 code points, and four u16 token
    /// streams with u32 offsets (at most 2^32 tokens each), plus its SHA-256.
    pub const DATASET: u64 = 16 + u32::MAX as u64 + 4 * 65_536 + 4 * 6 * (1 << 32) + 32;
    /// One corpus source file (a JSON or text file, the package tarball): token ids are u16 and
    /// offsets u32, so no corpus the dataset can hold needs more than 16 bytes per token.
    pub const CORPUS_FILE: u64 = 16 * (1 << 32);
}

/// Read the whole of an input file that its format bounds to `max` bytes (see [`limits`]).
/// Anything but a regular file is refused before it is read (a device or a FIFO would be read
/// for ever: `inspect /dev/zero`), and so is a file larger than `max`; a file that grows while
/// it is read is refused when it passes `max`.
pub fn read_input(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut f = open_input(path)?;
    let len = f.metadata()?.len();
    if len > max {
        return Err(too_large(len, max));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    (&mut f).take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64, max));
    }
    Ok(bytes)
}

/// Open an input file for reading, refusing anything but a regular file (checked before the
/// open, which would block on a FIFO, and again on the opened file).
pub fn open_input(path: &Path) -> io::Result<File> {
    check_regular(&fs::metadata(path)?)?;
    let mut opts = fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        // A FIFO swapped in after the check must not block the open.
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let f = opts.open(path)?;
    check_regular(&f.metadata()?)?;
    Ok(f)
}

fn check_regular(meta: &fs::Metadata) -> io::Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let ft = meta.file_type();
    let what = if ft.is_dir() {
        "a directory"
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_char_device() || ft.is_block_device() {
                "a device"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "not a file"
            }
        }
        #[cfg(not(unix))]
        "not a file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({what})"),
    ))
}

fn too_large(len: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{len} bytes, more than the {max} this format can hold"),
    )
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

    #[cfg(unix)]
    #[test]
    fn a_write_removes_its_targets_stale_temp_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        // A process that has exited: its pid is free (and will not be reused this soon).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::process::id();
        let stale = dir.path().join(format!(".f.bin.tmp{dead}"));
        let kept = [
            format!(".f.bin.tmp{live}x"), // not the pattern
            format!(".g.bin.tmp{dead}"),  // another target's
            format!("f.bin.tmp{dead}"),   // not hidden: not ours
            ".f.bin.tmp".to_string(),     // no pid
        ];
        fs::write(&stale, b"torn").unwrap();
        for k in &kept {
            fs::write(dir.path().join(k), b"x").unwrap();
        }
        assert!(!process_alive(dead));
        assert!(process_alive(live));
        write_atomic(&p, b"new").unwrap();
        assert!(!stale.exists());
        for k in &kept {
            assert!(dir.path().join(k).exists(), "{k}");
        }
        // A live writer's temporary file (another process writing the same target) stays.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let busy = dir.path().join(format!(".f.bin.tmp{}", sleeper.id()));
        fs::write(&busy, b"in flight").unwrap();
        write_atomic(&p, b"newer").unwrap();
        assert!(busy.exists());
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }
}
