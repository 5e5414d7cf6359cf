//! Kill test: a SIGKILL at any point of a checkpoint write leaves the last good checkpoint
//! loadable. The hook (`TINYPOET_TEST_KILL_AFTER_BYTES` / `TINYPOET_TEST_KILL_AT`, see
//! `tinypoet_trainer::run::checkpoint`) makes the real `tinypoet train` process kill itself during
//! its first save, exactly as `kill -9` or a power cut would.

#![cfg(unix)]

mod loop_common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use loop_common::*;
use tinypoet_trainer::run::checkpoint;

#[test]
fn sigkill_during_a_checkpoint_write_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let good_dir = dir.path().join("good");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        good_dir.to_str().unwrap(),
        "--steps",
        "4",
        "--eval-interval",
        "2",
        "--checkpoint-every",
        "2",
    ];
    args.extend(tiny_flags());
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let good_path = good_dir.join("checkpoint.ckpt");
    let good = std::fs::read(&good_path).unwrap();
    assert_eq!(checkpoint::load(&good_path).unwrap().meta.step, 4);
    let len = good.len() as u64;

    // Byte counts through the whole file (the next checkpoint is a little longer than this one:
    // one more metrics row), then the named points after the last byte.
    let mut points: Vec<(String, String)> = [
        0,
        1,
        8,
        20,
        100,
        len / 4,
        len / 2,
        len - 33,
        len - 1,
        1 << 40,
    ]
    .iter()
    .map(|n| ("TINYPOET_TEST_KILL_AFTER_BYTES".to_string(), n.to_string()))
    .collect();
    for at in ["before-fsync", "before-rename", "before-dir-fsync"] {
        points.push(("TINYPOET_TEST_KILL_AT".to_string(), at.to_string()));
    }
    assert!(points.len() >= 10);

    for (var, value) in &points {
        let run_dir = dir.path().join(format!("kill-{value}"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let ckpt = run_dir.join("checkpoint.ckpt");
        std::fs::write(&ckpt, &good).unwrap();
        let mut args = vec![
            "train".to_string(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--out".into(),
            run_dir.to_str().unwrap().into(),
            "--resume".into(),
            ckpt.to_str().unwrap().into(),
            "--steps".into(),
            "8".into(),
            "--checkpoint-every".into(),
            "2".into(),
            "--no-progress".into(),
        ];
        args.extend(["--threads".to_string(), "1".to_string()]);
        let o = Command::new(exe())
            .args(&args)
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(
            o.status.signal(),
            Some(9),
            "{var}={value}: expected SIGKILL, got {:?}; stderr {}",
            o.status,
            stderr(&o)
        );
        let loaded = checkpoint::load(&ckpt)
            .unwrap_or_else(|e| panic!("{var}={value}: checkpoint does not load: {e}"));
        if value == "before-dir-fsync" {
            // The rename happened: the new checkpoint (step 6) is complete and in place.
            assert_eq!(loaded.meta.step, 6, "{var}={value}");
        } else {
            assert_eq!(loaded.meta.step, 4, "{var}={value}");
            assert!(
                std::fs::read(&ckpt).unwrap() == good,
                "{var}={value}: bytes changed"
            );
        }
        // The survivor is usable: resuming from it (no hook) finishes the run.
        if value == "before-rename" || value == "1" {
            let o = Command::new(exe()).args(&args).output().unwrap();
            assert!(
                o.status.success(),
                "{var}={value}: resume failed: {}",
                stderr(&o)
            );
            assert_eq!(checkpoint::load(&ckpt).unwrap().meta.step, 8);
        }
    }
}
