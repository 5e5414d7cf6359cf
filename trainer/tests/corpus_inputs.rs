//! `tinypoet prepare` on small generated inputs: a fake chinese-poetry package (tarball and
//! folder), JSON poem lists and plain text, and every kind of bad input. Each bad input must give
//! exit status 1, one error line naming the file, and leave no output (not even a temp file).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use tinypoet_trainer::data::corpus::{self, tang, Dataset, InputFormat};

/// Characters the generated poems are made of.
const POOL: &str =
    "春夜喜雨好知時節當乃發生隨風潛入物潤細無聲野徑雲俱黑江船火獨明曉看紅濕處花重錦官城";

fn pool() -> Vec<char> {
    POOL.chars().collect()
}

/// A line of `n` characters then a punctuation mark, deterministic in `seed`.
fn line(seed: usize, n: usize, punct: char) -> String {
    let p = pool();
    let mut s: String = (0..n).map(|i| p[(seed * 7 + i * 3) % p.len()]).collect();
    s.push(punct);
    s
}

/// A regular poem: `lines` paragraphs of `chars`+1+`chars`+1 code points.
fn poem(seed: usize, chars: usize, lines: usize) -> serde_json::Value {
    let paragraphs: Vec<String> = (0..lines)
        .map(|l| {
            let mut s = line(seed + l, chars, '，');
            s.push_str(&line(seed + l + 1, chars, '。'));
            s
        })
        .collect();
    json!({
        "author": "佚名",
        "paragraphs": paragraphs,
        "title": format!("{}{}", line(seed, 3, ' ').trim_end(), seed % 10),
        "id": format!("id-{seed}"),
    })
}

/// The package's Tang files: poems of five and seven characters, plus one poem for each filter
/// rule in file 1000, and a poem with a unique character (龘) in file 57000, which the recipe
/// excludes.
fn package_files() -> BTreeMap<u32, String> {
    let mut files = BTreeMap::new();
    for n in tang::PACKAGE_FILE_NUMBERS {
        let mut poems: Vec<serde_json::Value> = (0..6)
            .map(|j| {
                poem(
                    n as usize * 10 + j,
                    if j % 2 == 0 { 5 } else { 7 },
                    2 + j % 3,
                )
            })
            .collect();
        if n == 1 {
            let mut bad = poem(1, 5, 2);
            bad["title"] = json!("缺字□");
            poems.push(bad);
            let mut bad = poem(2, 5, 2);
            bad["paragraphs"] = json!(["春夜喜雨好，知時節當乃。", "發生。"]);
            poems.push(bad);
            poems.push(poem(3, 5, 1));
            let mut bad = poem(4, 5, 2);
            bad["title"] = json!("題（一）");
            poems.push(bad);
        }
        if n == 57 {
            let mut p = poem(5, 5, 2);
            p["title"] = json!("龘");
            poems.push(p);
        }
        files.insert(n, serde_json::to_string_pretty(&poems).unwrap());
    }
    files
}

/// Kept poems of the fake package: 57 files × 6 poems, minus the 2-paragraph... all 6 generated
/// poems per file pass the filters; the 4 bad ones and file 57000 do not count.
const FAKE_POEMS: u64 = 57 * 6;

struct Package {
    version: Option<String>,
    files: BTreeMap<String, Vec<u8>>,
}

impl Package {
    fn standard() -> Package {
        let mut files = BTreeMap::new();
        for (n, text) in package_files() {
            files.insert(Package::tang_member(n), text.into_bytes());
        }
        // Files the recipe must not read.
        files.insert(
            "package/dist/quantangshi/error/poet.tang.0.json".into(),
            b"not json at all".to_vec(),
        );
        files.insert(
            "package/dist/quantangshi/authors.tang.json".into(),
            b"[]".to_vec(),
        );
        files.insert("package/README.md".into(), b"# chinese-poetry".to_vec());
        Package {
            version: Some("2.0.1".into()),
            files,
        }
    }

    fn tang_member(n: u32) -> String {
        format!("package/dist/quantangshi/{}", tang::tang_file_name(n))
    }

    /// Every `poet.tang.*.json` member (the recipe's and the one under `error/`) becomes `bytes`.
    fn replace_tang_files(&mut self, bytes: &[u8]) {
        for (k, v) in self.files.iter_mut() {
            if k.contains("poet.tang.") {
                *v = bytes.to_vec();
            }
        }
    }

    fn entries(&self) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = self
            .files
            .iter()
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect();
        if let Some(ver) = &self.version {
            let manifest = json!({"name": "chinese-poetry", "version": ver});
            v.push((
                "package/package.json".into(),
                manifest.to_string().into_bytes(),
            ));
        }
        v
    }

    /// The entries as a tar archive written to `w`; returns `w`.
    fn tar_into<W: Write>(&self, w: W) -> W {
        let mut tar = tar::Builder::new(w);
        for (name, bytes) in self.entries() {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, &name, &bytes[..]).unwrap();
        }
        tar.into_inner().unwrap()
    }

    fn write_tgz(&self, path: &Path) {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        self.tar_into(gz).finish().unwrap();
    }

    /// An uncompressed tar.
    fn write_tar(&self, path: &Path) {
        self.tar_into(std::fs::File::create(path).unwrap());
    }

    fn write_dir(&self, root: &Path) {
        for (name, bytes) in self.entries() {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn prepare_cli(from: &Path, out: &Path, extra: &[&str]) -> Run {
    let o = Command::new(env!("CARGO_BIN_EXE_tinypoet"))
        .arg("prepare")
        .arg("--from")
        .arg(from)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    Run {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// All files under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Run prepare on `from` and check the failure contract: exit 1, a single `error:` line naming
/// `names_file` and containing each of `expect`, and nothing written to the output folder.
fn assert_prepare_fails(from: &Path, names_file: &str, expect: &[&str]) {
    let outdir = tempfile::tempdir().unwrap();
    let out = outdir.path().join("data").join("tang.tpd");
    let r = prepare_cli(from, &out, &[]);
    assert_eq!(r.code, Some(1), "stdout {} stderr {}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one error line expected, got {:?}",
        r.stderr
    );
    let l = lines[0];
    assert!(l.starts_with("error: "), "{l}");
    assert!(l.contains(names_file), "{l:?} does not name {names_file:?}");
    for e in expect {
        assert!(l.contains(e), "{l:?} does not contain {e:?}");
    }
    assert!(
        r.stdout.is_empty(),
        "nothing on stdout on error: {}",
        r.stdout
    );
    assert_eq!(
        files_under(outdir.path()),
        Vec::<PathBuf>::new(),
        "no output on error"
    );
}

/// The standard package changed by `edit`, written as the tarball `name`: prepare must fail on
/// it as [`assert_prepare_fails`] checks, naming `name` and saying each of `expect`.
fn assert_package_fails(name: &str, edit: impl FnOnce(&mut Package), expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    let mut pkg = Package::standard();
    edit(&mut pkg);
    pkg.write_tgz(&p);
    assert_prepare_fails(&p, name, expect);
}

#[test]
fn fake_package_tarball_prepares_with_the_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("chinese-poetry-2.0.1.tgz");
    Package::standard().write_tgz(&tgz);
    let out = dir.path().join("out").join("fake.tpd");
    let r = prepare_cli(&tgz, &out, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("poems: {FAKE_POEMS}")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("from 57 files"), "{}", r.stdout);
    assert!(r
        .stdout
        .contains("dropped 4 (□ 1, uneven lines 1, < 2 lines 1, parentheses 1)"));
    assert!(r
        .stdout
        .contains("differs from the published 2.0.1 tarball"));
    // Only the dataset is left in the output folder.
    assert_eq!(files_under(out.parent().unwrap()), vec![out.clone()]);

    let ds = Dataset::load(&out).unwrap();
    let h = ds.header();
    assert_eq!(h.poems, FAKE_POEMS);
    // poet.tang.57000.json is not part of the recipe: its unique character is absent.
    assert!(!ds.vocab().contains(&'龘'));
    assert_eq!(ds.vocab()[0], '\0');
    assert!(ds.vocab().windows(2).all(|w| w[0] < w[1]));
    // 5:3:2 split of the poems, 90/10 train/eval of each part.
    let n = FAKE_POEMS as usize;
    assert_eq!(ds.finetune().len(), (0.8 * n as f64) as usize - n / 2);
    let pt = ds.pretrain().len();
    assert_eq!(ds.pretrain_train().len(), (0.9 * pt as f64) as usize);
    assert_eq!(ds.pretrain_train().len() + ds.pretrain_eval().len(), pt);
    assert_eq!(
        ds.finetune_train().len() + ds.finetune_eval().len(),
        ds.finetune().len()
    );
    assert_eq!(
        ds.alignment_train().len() + ds.alignment_eval().len(),
        ds.alignment().len()
    );
    assert!(!ds.alignment().is_empty());
    // Each finetune item is the instruction template.
    for item in ds.finetune().iter() {
        let s = ds.decode(item).unwrap();
        assert!(s.starts_with("<INS>請用以下題目寫一首詩<INP>"), "{s}");
        assert!(s.contains("<RES>"));
    }
    // Every positive side is a five-character poem.
    for (pos, _) in ds.alignment().iter() {
        let s = ds.decode(pos).unwrap();
        let body = s.split("<RES>").nth(1).unwrap();
        assert!(body.split('\n').all(|l| l.chars().count() == 12), "{s}");
    }
    // The pretrain text: poems separated by one blank line, no trailing separator.
    let text = ds.decode(ds.pretrain()).unwrap();
    assert!(!text.ends_with('\n') && !text.contains("\n\n\n") && !text.contains('\0'));
    assert_eq!(text.split("\n\n").count(), n / 2);

    // Same input as an extracted folder (npm's `package/` layout): same data.
    let root = dir.path().join("extracted");
    Package::standard().write_dir(&root);
    let out2 = dir.path().join("out2.tpd");
    let r = prepare_cli(&root, &out2, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let ds2 = Dataset::load(&out2).unwrap();
    assert_eq!(ds2.content_hash(), ds.content_hash());
    assert_ne!(ds2.source_sha256(), ds.source_sha256());
    // And the package root itself.
    let r = prepare_cli(&root.join("package"), &out2, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        Dataset::load(&out2).unwrap().content_hash(),
        ds.content_hash()
    );

    // The kept poems written as the reference's data.json and prepared from JSON: same data
    // (the JSON path takes the list as already filtered, like the reference).
    let src = corpus::read_source(&tgz, InputFormat::Auto).unwrap();
    let corpus::Corpus::Package { poems, .. } = &src.corpus else {
        panic!("package expected")
    };
    let kept: Vec<_> = poems.iter().filter(|p| tang::keep(p)).cloned().collect();
    let json_path = dir.path().join("data.json");
    std::fs::write(&json_path, tang::reference_data_json(&kept)).unwrap();
    let (ds3, _) = corpus::prepare_path(&json_path, InputFormat::Auto).unwrap();
    assert_eq!(ds3.content_hash(), ds.content_hash());
    assert_eq!(ds3.header().source_kind, "poem-json");
}

#[test]
fn tarball_is_recognised_by_content_and_plain_tar_works() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("p.tgz");
    Package::standard().write_tgz(&tgz);
    let renamed = dir.path().join("download");
    std::fs::copy(&tgz, &renamed).unwrap();
    let tar = dir.path().join("p.tar");
    Package::standard().write_tar(&tar);
    let hashes: Vec<String> = [&tgz, &renamed, &tar]
        .iter()
        .map(|p| {
            let out = dir.path().join("o.tpd");
            let r = prepare_cli(p, &out, &[]);
            assert_eq!(r.code, Some(0), "{}: {}", p.display(), r.stderr);
            Dataset::load(&out).unwrap().content_hash().to_string()
        })
        .collect();
    assert_eq!(hashes[0], hashes[1]);
    assert_eq!(hashes[0], hashes[2]);
}

#[test]
fn prepare_is_deterministic_and_overwrites_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("p.tgz");
    Package::standard().write_tgz(&tgz);
    let out = dir.path().join("d.tpd");
    assert_eq!(prepare_cli(&tgz, &out, &[]).code, Some(0));
    let first = std::fs::read(&out).unwrap();
    assert_eq!(prepare_cli(&tgz, &out, &[]).code, Some(0));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        first,
        "same input, same bytes"
    );

    // A failing run leaves the existing dataset untouched.
    let bad = dir.path().join("bad.tgz");
    std::fs::write(&bad, b"plain text, not gzip").unwrap();
    let r = prepare_cli(&bad, &out, &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), first);
    let mut names: Vec<_> = files_under(dir.path())
        .into_iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["bad.tgz", "d.tpd", "p.tgz"]);
}

#[test]
fn output_path_that_cannot_be_written_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "床前明月光").unwrap();
    // The output path is an existing folder: the final rename fails.
    let target = dir.path().join("outdir");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    let r = prepare_cli(&text, &target, &[]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("outdir"), "{}", r.stderr);
    let mut names: Vec<_> = files_under(dir.path())
        .into_iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["keep", "t.txt"]);
}

#[test]
fn missing_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nowhere.tgz");
    assert_prepare_fails(&p, "nowhere.tgz", &["No such file"]);
}

#[test]
fn not_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fake.tgz");
    std::fs::write(&p, "this is not a tarball\n").unwrap();
    assert_prepare_fails(&p, "fake.tgz", &["not a gzip file"]);
}

#[test]
fn gzip_but_not_tar() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("text.tgz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&p).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&[b'x'; 2000]).unwrap();
    gz.finish().unwrap();
    assert_prepare_fails(&p, "text.tgz", &["tar archive"]);
}

#[test]
fn truncated_tarball() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.tgz");
    Package::standard().write_tgz(&full);
    let bytes = std::fs::read(&full).unwrap();
    let p = dir.path().join("cut.tgz");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert_prepare_fails(&p, "cut.tgz", &["tar archive"]);
}

#[test]
fn tarball_without_the_tang_folder() {
    assert_package_fails(
        "other.tgz",
        |pkg| pkg.files.retain(|k, _| !k.contains("quantangshi")),
        &["not the chinese-poetry npm package"],
    );
}

#[test]
fn other_package_version_extra_file() {
    // A later version with one more Tang file: a different file set.
    assert_package_fails(
        "chinese-poetry-9.9.9.tgz",
        |pkg| {
            pkg.files.insert(Package::tang_member(58), b"[]".to_vec());
        },
        &[
            "unsupported chinese-poetry package",
            "unexpected poet.tang.58000.json",
        ],
    );
}

#[test]
fn other_package_version_missing_file() {
    assert_package_fails(
        "old.tgz",
        |pkg| {
            pkg.files.remove(&Package::tang_member(57));
        },
        &[
            "unsupported chinese-poetry package",
            "found 57 files",
            "missing poet.tang.57000.json",
        ],
    );
}

#[test]
fn other_package_version_same_file_set() {
    assert_package_fails(
        "v2.tgz",
        |pkg| pkg.version = Some("2.0.0".into()),
        &["package.json", "version 2.0.0"],
    );
}

#[test]
fn empty_package() {
    assert_package_fails(
        "empty.tgz",
        |pkg| pkg.replace_tang_files(b"[]"),
        &["empty corpus"],
    );
}

#[test]
fn package_where_every_poem_is_filtered() {
    let one_line_poem = serde_json::to_vec(&vec![poem(1, 5, 1)]).unwrap();
    assert_package_fails(
        "filtered.tgz",
        |pkg| pkg.replace_tang_files(&one_line_poem),
        &["empty corpus", "filters"],
    );
}

#[test]
fn invalid_utf8_inside_the_package_names_the_member() {
    assert_package_fails(
        "utf8.tgz",
        |pkg| pkg.files.get_mut(&Package::tang_member(3)).unwrap()[20] = 0xFF,
        &[
            "package/dist/quantangshi/poet.tang.3000.json",
            "invalid UTF-8 at byte 20",
        ],
    );
}

#[test]
fn invalid_json_inside_the_package_names_the_member() {
    assert_package_fails(
        "json.tgz",
        |pkg| {
            pkg.files
                .insert(Package::tang_member(5), b"[{\"title\": \"x\", ".to_vec());
        },
        &[
            "package/dist/quantangshi/poet.tang.5000.json",
            "invalid JSON",
        ],
    );
}

#[test]
fn invalid_json_in_an_extracted_folder_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pkg");
    let mut pkg = Package::standard();
    pkg.files.insert(Package::tang_member(7), b"{}".to_vec());
    pkg.write_dir(&root);
    assert_prepare_fails(&root, "poet.tang.7000.json", &["invalid JSON"]);
}

#[test]
fn json_list_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("poems.json");
    std::fs::write(&p, "[]").unwrap();
    assert_prepare_fails(&p, "poems.json", &["empty corpus"]);
    std::fs::write(&p, "[{\"title\": \"春\", \"paragraphs\": [\"a\"]").unwrap();
    assert_prepare_fails(&p, "poems.json", &["invalid JSON", "line 1"]);
    std::fs::write(&p, "[{\"paragraphs\": [\"a\"]}]").unwrap();
    assert_prepare_fails(&p, "poems.json", &["invalid JSON", "missing field `title`"]);
    std::fs::write(&p, b"[{\"title\": \"\xE6\x98\", \"paragraphs\": []}]").unwrap();
    assert_prepare_fails(&p, "poems.json", &["invalid UTF-8 at byte 12"]);
}

#[test]
fn json_list_prepares_without_filtering() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mine.json");
    let poems: Vec<serde_json::Value> = (0..40).map(|i| poem(i, 5 + 2 * (i % 2), 2)).collect();
    std::fs::write(&p, serde_json::to_string(&poems).unwrap()).unwrap();
    let out = dir.path().join("mine.tpd");
    let r = prepare_cli(&p, &out, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("poems: 40"), "{}", r.stdout);
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.finetune().len(), 32 - 20);
    assert_eq!(ds.header().recipe, corpus::TANG_RECIPE);
}

#[test]
fn plain_text_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mine.txt");
    let text = "床前明月光，\n疑是地上霜。\n舉頭望明月，\n低頭思故鄉。\n".repeat(10);
    std::fs::write(&p, &text).unwrap();
    let out = dir.path().join("t.tpd");
    let r = prepare_cli(&p, &out, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let ds = Dataset::load(&out).unwrap();
    let mut chars: Vec<char> = text.chars().chain(['\0']).collect();
    chars.sort();
    chars.dedup();
    assert_eq!(ds.vocab(), &chars[..]);
    let n = text.chars().count();
    assert_eq!(ds.pretrain().len(), n);
    assert_eq!(ds.pretrain_train().len(), (0.9 * n as f64) as usize);
    assert_eq!(ds.decode(ds.pretrain()).unwrap(), text);
    assert!(ds.finetune().is_empty() && ds.alignment().is_empty());
    assert_eq!(ds.header().recipe, corpus::TEXT_RECIPE);
    assert_eq!(ds.header().dataset_length, n as u64 + 1);
    assert!(r.stdout.contains("vocabulary size: "), "{}", r.stdout);

    // --format text reads a .json file as text.
    let j = dir.path().join("odd.json");
    std::fs::write(&j, "not json").unwrap();
    let r = prepare_cli(&j, &out, &["--format", "text"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[test]
fn plain_text_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.txt");
    std::fs::write(&p, "").unwrap();
    assert_prepare_fails(&p, "empty.txt", &["empty corpus"]);
    let p = dir.path().join("latin1.txt");
    std::fs::write(&p, b"caf\xe9").unwrap();
    assert_prepare_fails(&p, "latin1.txt", &["invalid UTF-8 at byte 3"]);
    // More distinct characters than u16 token ids can number.
    let p = dir.path().join("huge.txt");
    let big: String = (0x20000u32..0x20000 + 65_536)
        .filter_map(char::from_u32)
        .collect();
    std::fs::write(&p, big).unwrap();
    assert_prepare_fails(&p, "huge.txt", &["65,535"]);
}
