//! The real corpus: `tinypoet prepare` on chinese-poetry@2.0.1 reproduces every number of the
//! reference (spec §1–2). One prepare run; all checks on its output and the written file.
//!
//! The tarball comes from `$TINYPOET_CORPUS_TGZ` if set, else from `scripts/fetch-corpus.sh`
//! (`npm pack`, cached under target/corpus). Without npm the test is skipped with a message,
//! except under `CI=true`, where a skip is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tinypoet_trainer::data::corpus::Dataset;

fn corpus_tgz() -> Option<PathBuf> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if let Ok(p) = std::env::var("TINYPOET_CORPUS_TGZ") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "TINYPOET_CORPUS_TGZ={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-corpus.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run scripts/fetch-corpus.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Some(PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())),
        Some(3) if !ci => {
            eprintln!(
                "SKIPPED real-corpus test: npm is not installed, so chinese-poetry@2.0.1 cannot be \
                 fetched ({}). Set TINYPOET_CORPUS_TGZ or install npm to run it.",
                stderr.trim()
            );
            None
        }
        _ => panic!(
            "fetching the corpus failed (CI={ci}): {} {}",
            out.status,
            stderr.trim()
        ),
    }
}

#[test]
fn real_corpus_matches_the_reference() {
    let Some(tgz) = corpus_tgz() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("tang.tpd");

    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tinypoet"))
        .args(["prepare", "--from"])
        .arg(&tgz)
        .arg("-o")
        .arg(&out_path)
        .output()
        .unwrap();
    let prepare_secs = t.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "prepare failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    eprintln!("prepare took {prepare_secs:.2} s (wall, including process start)");
    for line in [
        "poems: 47,457",
        "dataset length: 4,052,248",
        "vocabulary size: 8,548",
        "vocabulary sha256: 542183b772b6aebf661b0b1b8357833539ba147df32904cad14c50038efd6592",
        "(train 1,552,553 / eval 172,506)",
        "read 57,016 poems from 57 files",
        // The kept poems serialised like the reference's data.json are byte-identical to it.
        "data.json sha256: 9dbb1437ad9f0b70894f5f264712573113a8c338b212d1c37bd0f562663d6292",
        "finetune items: 14,237 (train 12,813 / eval 1,424), 1,333,418 tokens",
        "alignment pairs: 5,342 (train 4,807 / eval 535), 993,770 tokens",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }

    let t = Instant::now();
    let ds = Dataset::load(&out_path).unwrap();
    eprintln!("Dataset::load took {:.3} s", t.elapsed().as_secs_f64());

    let h = ds.header();
    assert_eq!(h.poems, 47_457);
    assert_eq!(h.dataset_length, 4_052_248);
    assert_eq!(ds.vocab().len(), 8_548);
    assert_eq!(
        ds.vocab_sha256(),
        "542183b772b6aebf661b0b1b8357833539ba147df32904cad14c50038efd6592"
    );
    assert_eq!(
        ds.source_sha256(),
        "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86"
    );
    assert_eq!(ds.pretrain().len(), 1_725_059);
    assert_eq!(ds.pretrain_train().len(), 1_552_553);
    assert_eq!(ds.pretrain_eval().len(), 172_506);
    assert_eq!(ds.finetune_train().len(), 12_813);
    assert_eq!(ds.finetune_eval().len(), 1_424);
    assert_eq!(ds.alignment_train().len(), 4_807);
    assert_eq!(ds.alignment_eval().len(), 535);

    // Vocabulary landmarks (spec §2): code-point order, astral characters last, no NFC.
    let v = ds.vocab();
    assert_eq!(
        v[..13],
        ['\0', '\t', '\n', ' ', '/', '<', '>', 'E', 'I', 'N', 'P', 'R', 'S']
    );
    assert_eq!(v[20], '。');
    assert_eq!(v[8343], '\u{E829}');
    assert_eq!(v[8345], '\u{F92C}');
    assert_eq!(v[8347], '，');
    assert_eq!(v[8547], '\u{2E73F}');
    assert_eq!(v.iter().filter(|&&c| c as u32 > 0xFFFF).count(), 198);

    // Encoding anchors.
    assert_eq!(ds.encode("春夜喜雨").unwrap(), [2732, 1306, 988, 7571]);
    assert_eq!(
        ds.encode("白日依山盡，黃河入海流").unwrap(),
        [4403, 2704, 345, 1642, 4450, 8347, 8252, 3407, 536, 3503, 3486]
    );
    let prompt = ds
        .encode("<INS>請用以下題目寫一首詩<INP>春夜喜雨<RES>")
        .unwrap();
    assert_eq!(
        prompt,
        [
            5, 8, 9, 12, 6, 6515, 4281, 275, 184, 7737, 4458, 1579, 178, 7856, 6471, 5, 8, 9, 10,
            6, 2732, 1306, 988, 7571, 5, 11, 7, 12, 6
        ]
    );

    // Split order anchors: first pretrain poem, first finetune poem, first alignment pair.
    let first_line = |ids: &[u16]| {
        let s = ds.decode(ids).unwrap();
        s.split('\n').next().unwrap().to_string()
    };
    assert_eq!(first_line(&ds.pretrain()[..40]), "東歸留辭沈侍郎");
    let ft0 = ds.decode(ds.finetune().get(0).unwrap()).unwrap();
    assert!(ft0.starts_with("<INS>請用以下題目寫一首詩<INP>端午三殿侍宴應制探得魚字<RES>"));
    let (pos, neg) = ds.alignment().get(0).unwrap();
    assert!(ds
        .decode(pos)
        .unwrap()
        .contains("<INP>宿壽安甘棠館 二<RES>"));
    assert!(ds.decode(neg).unwrap().contains("<INP>遣懷<RES>"));
    assert_eq!(
        ds.finetune().iter().map(|i| i.len()).sum::<usize>(),
        1_333_418
    );
}
