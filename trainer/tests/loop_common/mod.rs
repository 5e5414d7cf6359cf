//! Helpers shared by the CLI, kill, resume and interop tests: a small generated corpus prepared
//! with `tinypoet prepare --format text` (or tokenized here for `stages::pretrain::train`), and a tiny
//! training configuration.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tinypoet_trainer::run::train_loop::RunIo;
use tinypoet_trainer::stages::pretrain::TrainData;

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_tinypoet")
}

/// 150 pseudo-poems of four 5-character lines over a 40-character alphabet, separated by blank
/// lines (about 4,500 characters). Deterministic.
pub fn corpus_text() -> String {
    let alphabet: Vec<char> =
        "春夜喜雨好知時節當乃發生隨風潛入細無聲野徑雲俱黑江船火獨明曉看紅濕處花重錦官城山水"
            .chars()
            .collect();
    let mut text = String::new();
    let mut x: u32 = 12345;
    for poem in 0..150 {
        if poem > 0 {
            text.push_str("\n\n");
        }
        for line in 0..4 {
            for _ in 0..5 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                text.push(alphabet[(x >> 16) as usize % alphabet.len()]);
            }
            text.push(if line % 2 == 0 { '，' } else { '。' });
        }
    }
    text
}

/// The generated corpus as a sorted vocabulary (`'\0'` and `'\n'` included) and token ids, for
/// runs through the library (`stages::pretrain::train`) rather than the CLI.
pub fn corpus_ids() -> (Vec<char>, Vec<u16>) {
    let text = corpus_text();
    let mut vocab: Vec<char> = text.chars().chain(['\0', '\n']).collect();
    vocab.sort_unstable();
    vocab.dedup();
    let ids = text
        .chars()
        .map(|c| vocab.binary_search(&c).unwrap() as u16)
        .collect();
    (vocab, ids)
}

/// `ids` split 90/10 into train and eval tokens.
pub fn train_data<'a>(vocab: &'a [char], ids: &'a [u16], dataset_hash: &str) -> TrainData<'a> {
    let split = ids.len() * 9 / 10;
    TrainData {
        vocab,
        train: &ids[..split],
        eval: &ids[split..],
        dataset_hash: dataset_hash.to_string(),
    }
}

/// Quiet run output into `out_dir` with `threads` kernel threads, no interrupt flag.
pub fn run_io(out_dir: &Path, threads: usize) -> RunIo<'static> {
    RunIo {
        out_dir: out_dir.to_path_buf(),
        interrupt: None,
        threads,
        progress: false,
        print: false,
    }
}

/// Prepare the generated corpus into `dir/small.tpd` with the real `prepare` command.
pub fn prepare(dir: &Path) -> PathBuf {
    let txt = dir.join("small.txt");
    std::fs::write(&txt, corpus_text()).unwrap();
    let out = dir.join("small.tpd");
    let o = run(&[
        "prepare",
        "--from",
        txt.to_str().unwrap(),
        "--format",
        "text",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "prepare failed: {}", stderr(&o));
    out
}

/// Flags of a tiny model and run (seconds per hundred steps).
pub fn tiny_flags() -> Vec<&'static str> {
    vec![
        "--dim",
        "16",
        "--heads",
        "2",
        "--layers",
        "1",
        "--context",
        "16",
        "--ffn",
        "32",
        "--batch",
        "2",
        "--seq",
        "16",
        "--eval-batches",
        "2",
        "--sample-len",
        "8",
        "--no-progress",
        "--threads",
        "1",
    ]
}

pub fn run(args: &[&str]) -> Output {
    Command::new(exe())
        .args(args)
        .output()
        .expect("spawn tinypoet")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A user error: exit code 1 and exactly one line on stderr starting with `error:`.
pub fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}
