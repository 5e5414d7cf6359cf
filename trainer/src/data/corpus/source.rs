//! Reading a corpus: the `chinese-poetry` npm tarball (read directly with flate2 + tar) or its
//! extracted folder, a JSON list of poems, or plain UTF-8 text.
//!
//! Every error names the file (and, inside a tarball, the member) it is about, so the CLI can
//! print it as one line.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::tang::{self, Poem};
use crate::io::fsx;

/// How to interpret `--from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InputFormat {
    /// A directory is the extracted package; a gzip or tar file (by content) or a
    /// `.tgz`/`.tar.gz`/`.tar` name is the package tarball; `.json` is a poem list; anything
    /// else is plain text.
    #[default]
    Auto,
    /// The chinese-poetry 2.0.1 package, as a tarball or an extracted folder.
    Package,
    /// A JSON list of `{"title": .., "paragraphs": [..]}` (the reference's `data.json` format).
    Json,
    /// Plain UTF-8 text: pretraining text only.
    Text,
}

/// What was read.
#[derive(Clone, Debug)]
pub enum Corpus {
    /// All poems of the recipe's 57 package files, in file order, before filtering.
    Package { poems: Vec<Poem>, files_read: usize },
    /// A JSON poem list, used as is (like the reference's `data.json`, which is already filtered).
    Poems(Vec<Poem>),
    /// Plain text.
    Text(String),
}

/// The kind of source a dataset was prepared from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    PackageTarball,
    PackageDir,
    PoemJson,
    PlainText,
}

impl SourceKind {
    /// Stable name stored in the dataset file.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::PackageTarball => "chinese-poetry-tgz",
            SourceKind::PackageDir => "chinese-poetry-dir",
            SourceKind::PoemJson => "poem-json",
            SourceKind::PlainText => "plain-text",
        }
    }

    pub fn parse(s: &str) -> Option<SourceKind> {
        [
            SourceKind::PackageTarball,
            SourceKind::PackageDir,
            SourceKind::PoemJson,
            SourceKind::PlainText,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A corpus read from disk, with the sha256 identifying its source.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub kind: SourceKind,
    /// sha256 of the input file; for an extracted package folder, of the recipe's 57 Tang files
    /// concatenated in recipe order.
    pub sha256: [u8; 32],
    pub corpus: Corpus,
}

/// Where in the input an error is: the file, and the member inside a tarball or folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub member: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(m) = &self.member {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl Location {
    fn file(path: &Path) -> Location {
        Location {
            path: path.to_path_buf(),
            member: None,
        }
    }

    fn member(path: &Path, member: impl Into<String>) -> Location {
        Location {
            path: path.to_path_buf(),
            member: Some(member.into()),
        }
    }
}

/// Why a corpus could not be read or prepared. The `Display` form is one line starting with the
/// file it is about.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    // Causes are part of the one-line message (not `#[source]`), so that printing the error
    // chain does not repeat them.
    #[error("{at}: {error}")]
    Io { at: Location, error: std::io::Error },
    #[error("{at}: not a gzip file (expected the chinese-poetry .tgz from `npm pack`)")]
    NotGzip { at: Location },
    #[error("{at}: not a valid (or a truncated) tar archive: {detail}")]
    NotTar { at: Location, detail: String },
    #[error(
        "{at}: no dist/quantangshi/poet.tang.*.json files: not the chinese-poetry npm package"
    )]
    NotPackage { at: Location },
    #[error(
        "{at}: unsupported chinese-poetry package: expected dist/quantangshi/poet.tang.0.json … \
         poet.tang.57000.json (58 files, version {expected}), found {found} files{details}",
        expected = tang::PACKAGE_VERSION
    )]
    WrongFileSet {
        at: Location,
        found: usize,
        /// ", missing …, unexpected …" (possibly empty).
        details: String,
    },
    #[error(
        "{at}: chinese-poetry version {found}, but this recipe is verified for version {expected} only",
        expected = tang::PACKAGE_VERSION
    )]
    WrongVersion { at: Location, found: String },
    #[error("{at}: invalid UTF-8 at byte {offset}")]
    InvalidUtf8 { at: Location, offset: usize },
    #[error("{at}: invalid JSON: {message}")]
    InvalidJson { at: Location, message: String },
    #[error("{at}: empty corpus: {what}")]
    Empty { at: Location, what: String },
    #[error("{at}: {error}")]
    VocabTooLarge {
        at: Location,
        error: super::text::VocabTooLarge,
    },
}

impl CorpusError {
    fn io(at: Location, error: std::io::Error) -> Self {
        CorpusError::Io { at, error }
    }
}

/// Read the corpus at `path`.
pub fn read_source(path: &Path, format: InputFormat) -> Result<Source, CorpusError> {
    let meta = std::fs::metadata(path).map_err(|e| CorpusError::io(Location::file(path), e))?;
    let format = match format {
        InputFormat::Auto => auto_format(path, meta.is_dir()),
        f => f,
    };
    match format {
        InputFormat::Package if meta.is_dir() => read_package_dir(path),
        InputFormat::Package => read_package_tarball(path),
        InputFormat::Json => {
            let bytes = read_file(path)?;
            let sha256 = Sha256::digest(&bytes).into();
            let text = utf8(&bytes, Location::file(path))?;
            let poems = parse_poems(text, Location::file(path))?;
            if poems.is_empty() {
                return Err(CorpusError::Empty {
                    at: Location::file(path),
                    what: "the JSON list has no poems".into(),
                });
            }
            Ok(Source {
                path: path.to_path_buf(),
                kind: SourceKind::PoemJson,
                sha256,
                corpus: Corpus::Poems(poems),
            })
        }
        InputFormat::Text | InputFormat::Auto => {
            let bytes = read_file(path)?;
            let sha256 = Sha256::digest(&bytes).into();
            let text = String::from_utf8(bytes).map_err(|e| CorpusError::InvalidUtf8 {
                at: Location::file(path),
                offset: e.utf8_error().valid_up_to(),
            })?;
            if text.is_empty() {
                return Err(CorpusError::Empty {
                    at: Location::file(path),
                    what: "the text file is empty".into(),
                });
            }
            Ok(Source {
                path: path.to_path_buf(),
                kind: SourceKind::PlainText,
                sha256,
                corpus: Corpus::Text(text),
            })
        }
    }
}

fn auto_format(path: &Path, is_dir: bool) -> InputFormat {
    if is_dir {
        return InputFormat::Package;
    }
    // Content first: a gzip or tar file is the package whatever its name (a tarball saved without
    // its extension should not be read as text).
    let mut head = [0u8; 262];
    let n = fsx::open_input(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .unwrap_or(0);
    if head[..n].starts_with(&[0x1f, 0x8b]) || (n == 262 && &head[257..262] == b"ustar") {
        return InputFormat::Package;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.ends_with(".tgz") || name.ends_with(".tar.gz") || name.ends_with(".tar") {
        InputFormat::Package
    } else if name.ends_with(".json") {
        InputFormat::Json
    } else {
        InputFormat::Text
    }
}

/// Read until `buf` is full or the file ends.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_file(path: &Path) -> Result<Vec<u8>, CorpusError> {
    fsx::read_input(path, fsx::limits::CORPUS_FILE)
        .map_err(|e| CorpusError::io(Location::file(path), e))
}

fn utf8(bytes: &[u8], at: Location) -> Result<&str, CorpusError> {
    std::str::from_utf8(bytes).map_err(|e| CorpusError::InvalidUtf8 {
        at,
        offset: e.valid_up_to(),
    })
}

fn parse_poems(text: &str, at: Location) -> Result<Vec<Poem>, CorpusError> {
    serde_json::from_str::<Vec<Poem>>(text).map_err(|e| CorpusError::InvalidJson {
        at,
        message: e.to_string(),
    })
}

/// The package files this module cares about, collected from a tarball or folder.
#[derive(Default)]
struct PackageFiles {
    /// File number (N / 1000) → (member name for messages, bytes). Only the recipe's files are
    /// kept in memory; the others are only counted for the file-set check.
    tang: BTreeMap<u32, (String, Option<Vec<u8>>)>,
    /// `poet.tang.*.json`-like names that are not part of any known layout (e.g. 500).
    odd_names: Vec<String>,
    /// `package.json` bytes, if present.
    package_json: Option<(String, Vec<u8>)>,
}

impl PackageFiles {
    /// What a member is, from its path split on `/`.
    fn classify(components: &[&str]) -> Member {
        // Accept the package at the archive root or under one top folder (`package/` for npm).
        let rest = match components {
            [_, rest @ ..] if components.len() == 4 || components.len() == 2 => rest,
            _ => components,
        };
        match rest {
            ["package.json"] => Member::Manifest,
            [d, q, name] if [*d, *q] == tang::TANG_DIR && name.starts_with("poet.tang.") => {
                match tang::tang_file_number(name) {
                    Some(n) => Member::Tang(n),
                    None => Member::OddTang,
                }
            }
            _ => Member::Other,
        }
    }
}

enum Member {
    Manifest,
    Tang(u32),
    OddTang,
    Other,
}

fn read_package_tarball(path: &Path) -> Result<Source, CorpusError> {
    let bytes = read_file(path)?;
    let at = || Location::file(path);
    let is_gzip = bytes.starts_with(&[0x1f, 0x8b]);
    let is_tar = bytes.len() >= 262 && &bytes[257..262] == b"ustar";
    if !is_gzip && !is_tar {
        return Err(CorpusError::NotGzip { at: at() });
    }
    // Hashing the 85 MB tarball and inflating it are independent: do them side by side.
    let (sha256, files) = rayon::join(
        || -> [u8; 32] { Sha256::digest(&bytes).into() },
        || {
            if is_gzip {
                read_tar(flate2::read::GzDecoder::new(&bytes[..]), path)
            } else {
                read_tar(&bytes[..], path)
            }
        },
    );
    let files = files?;
    let poems = parse_package(path, files)?;
    Ok(Source {
        path: path.to_path_buf(),
        kind: SourceKind::PackageTarball,
        sha256,
        corpus: poems,
    })
}

fn read_tar<R: Read>(reader: R, path: &Path) -> Result<PackageFiles, CorpusError> {
    let tar_err = |e: std::io::Error| CorpusError::NotTar {
        at: Location::file(path),
        detail: e.to_string(),
    };
    let mut archive = tar::Archive::new(reader);
    let mut files = PackageFiles::default();
    let mut entries_seen = 0usize;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        entries_seen += 1;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = entry
            .path()
            .map_err(tar_err)?
            .to_string_lossy()
            .into_owned();
        let components: Vec<&str> = member.split('/').filter(|c| !c.is_empty()).collect();
        let read_member = |entry: &mut tar::Entry<'_, R>| -> Result<Vec<u8>, CorpusError> {
            // The header's size is only a hint: a damaged header must not make us reserve
            // gigabytes (the real files are under 1 MB).
            let mut buf = Vec::with_capacity(entry.size().min(1 << 24) as usize);
            entry.read_to_end(&mut buf).map_err(tar_err)?;
            Ok(buf)
        };
        match PackageFiles::classify(&components) {
            Member::Manifest => {
                let buf = read_member(&mut entry)?;
                files.package_json = Some((member, buf));
            }
            Member::Tang(n) => {
                let data = if tang::RECIPE_FILE_NUMBERS.contains(&n) {
                    Some(read_member(&mut entry)?)
                } else {
                    None
                };
                files.tang.insert(n, (member, data));
            }
            Member::OddTang => files.odd_names.push(member),
            Member::Other => {}
        }
    }
    if entries_seen == 0 {
        // A gzip of something that is not a tar (or an empty archive) ends up here or in the
        // header-checksum error above.
        return Err(CorpusError::NotTar {
            at: Location::file(path),
            detail: "no entries".into(),
        });
    }
    Ok(files)
}

fn read_package_dir(path: &Path) -> Result<Source, CorpusError> {
    // Accept the package root (with package.json and dist/) or the folder `npm pack` output was
    // extracted into (with package/ inside).
    let root = if path.join("dist").is_dir() {
        path.to_path_buf()
    } else if path.join("package").join("dist").is_dir() {
        path.join("package")
    } else {
        return Err(CorpusError::NotPackage {
            at: Location::file(path),
        });
    };
    let tang_dir = root.join(tang::TANG_DIR[0]).join(tang::TANG_DIR[1]);
    let mut files = PackageFiles::default();
    let rd =
        std::fs::read_dir(&tang_dir).map_err(|e| CorpusError::io(Location::file(&tang_dir), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| CorpusError::io(Location::file(&tang_dir), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("poet.tang.") {
            continue;
        }
        let member = format!("dist/quantangshi/{name}");
        match tang::tang_file_number(&name) {
            Some(n) => {
                let data = if tang::RECIPE_FILE_NUMBERS.contains(&n) {
                    Some(
                        fsx::read_input(&entry.path(), fsx::limits::CORPUS_FILE)
                            .map_err(|e| CorpusError::io(Location::file(&entry.path()), e))?,
                    )
                } else {
                    None
                };
                files.tang.insert(n, (member, data));
            }
            None => files.odd_names.push(member),
        }
    }
    let manifest = root.join("package.json");
    if manifest.is_file() {
        let bytes = fsx::read_input(&manifest, fsx::limits::CORPUS_FILE)
            .map_err(|e| CorpusError::io(Location::file(&manifest), e))?;
        files.package_json = Some(("package.json".into(), bytes));
    }
    // Hash what the recipe reads (a folder has no single file to hash).
    let mut h = Sha256::new();
    for n in tang::RECIPE_FILE_NUMBERS {
        if let Some((_, Some(b))) = files.tang.get(&n) {
            h.update(b);
        }
    }
    let sha256 = h.finalize().into();
    let corpus = parse_package(path, files)?;
    Ok(Source {
        path: path.to_path_buf(),
        kind: SourceKind::PackageDir,
        sha256,
        corpus,
    })
}

/// Check the file set and version, then parse the recipe's 57 files in numeric order.
fn parse_package(path: &Path, files: PackageFiles) -> Result<Corpus, CorpusError> {
    if files.tang.is_empty() && files.odd_names.is_empty() {
        return Err(CorpusError::NotPackage {
            at: Location::file(path),
        });
    }
    let expected: Vec<u32> = tang::PACKAGE_FILE_NUMBERS.collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|n| !files.tang.contains_key(n))
        .map(|&n| tang::tang_file_name(n))
        .collect();
    let mut unexpected: Vec<String> = files
        .tang
        .keys()
        .filter(|n| !tang::PACKAGE_FILE_NUMBERS.contains(n))
        .map(|&n| tang::tang_file_name(n))
        .collect();
    unexpected.extend(files.odd_names.iter().cloned());
    if !missing.is_empty() || !unexpected.is_empty() {
        let list = |v: &[String]| {
            let mut s = v.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 4 {
                s.push_str(&format!(" and {} more", v.len() - 4));
            }
            s
        };
        let mut details = String::new();
        if !missing.is_empty() {
            details.push_str(&format!("; missing {}", list(&missing)));
        }
        if !unexpected.is_empty() {
            details.push_str(&format!("; unexpected {}", list(&unexpected)));
        }
        return Err(CorpusError::WrongFileSet {
            at: Location::file(path),
            found: files.tang.len() + files.odd_names.len(),
            details,
        });
    }
    if let Some((member, bytes)) = &files.package_json {
        #[derive(serde::Deserialize)]
        struct Manifest {
            version: Option<String>,
        }
        let at = Location::member(path, member.clone());
        let text = utf8(bytes, at.clone())?;
        let m: Manifest = serde_json::from_str(text).map_err(|e| CorpusError::InvalidJson {
            at,
            message: e.to_string(),
        })?;
        let version = m.version.unwrap_or_default();
        if version != tang::PACKAGE_VERSION {
            return Err(CorpusError::WrongVersion {
                at: Location::member(path, member.clone()),
                found: version,
            });
        }
    }

    // Parse the 57 files on both cores; results are concatenated in file order.
    use rayon::prelude::*;
    let wanted: Vec<(&String, &[u8])> = tang::RECIPE_FILE_NUMBERS
        .map(|n| {
            let (member, data) = &files.tang[&n];
            (member, data.as_deref().unwrap_or_default())
        })
        .collect();
    let parsed: Vec<Result<Vec<Poem>, CorpusError>> = wanted
        .par_iter()
        .map(|(member, bytes)| {
            let at = Location::member(path, (*member).clone());
            let text = utf8(bytes, at.clone())?;
            parse_poems(text, at)
        })
        .collect();
    let mut poems = Vec::with_capacity(60_000);
    for p in parsed {
        poems.extend(p?);
    }
    if poems.is_empty() {
        return Err(CorpusError::Empty {
            at: Location::file(path),
            what: "the Tang files hold no poems".into(),
        });
    }
    Ok(Corpus::Package {
        poems,
        files_read: wanted.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(path: &str) -> &'static str {
        let c: Vec<&str> = path.split('/').collect();
        match PackageFiles::classify(&c) {
            Member::Manifest => "manifest",
            Member::Tang(3) => "tang3",
            Member::Tang(_) => "tang",
            Member::OddTang => "odd",
            Member::Other => "other",
        }
    }

    #[test]
    fn members_under_npm_folder_or_at_the_root() {
        assert_eq!(classify("package/package.json"), "manifest");
        assert_eq!(classify("package.json"), "manifest");
        assert_eq!(
            classify("package/dist/quantangshi/poet.tang.3000.json"),
            "tang3"
        );
        assert_eq!(classify("dist/quantangshi/poet.tang.3000.json"), "tang3");
        assert_eq!(
            classify("package/dist/quantangshi/poet.tang.3500.json"),
            "odd"
        );
        // The package's error/ subfolder, other collections and nested manifests are ignored.
        assert_eq!(
            classify("package/dist/quantangshi/error/poet.tang.0.json"),
            "other"
        );
        assert_eq!(
            classify("package/dist/quantangshi/poet.song.0.json"),
            "other"
        );
        assert_eq!(classify("package/node_modules/x/package.json"), "other");
        assert_eq!(classify("a/b/dist/quantangshi/poet.tang.0.json"), "other");
    }

    #[test]
    fn source_kind_names_round_trip() {
        for k in [
            SourceKind::PackageTarball,
            SourceKind::PackageDir,
            SourceKind::PoemJson,
            SourceKind::PlainText,
        ] {
            assert_eq!(SourceKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(SourceKind::parse("zip"), None);
    }
}
