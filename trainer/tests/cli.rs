//! End-to-end tests of `tinypoet train / export / inspect / eval / generate` on a small
//! generated corpus (never the real one).

#![cfg(unix)]

mod loop_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loop_common::*;
use tinypoet_trainer::run::checkpoint;

fn train(
    data: &Path,
    out: &Path,
    steps: &str,
    every: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        steps,
        "--eval-interval",
        "10",
        "--checkpoint-every",
        every,
    ];
    args.extend(tiny_flags());
    args.extend(extra);
    run(&args)
}

#[test]
fn train_export_inspect_eval_generate() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let run_dir = dir.path().join("run");
    let o = train(&data, &run_dir, "30", "10", &["--lr", "1e-2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The log reads like the reference's.
    let log = stdout(&o);
    assert!(
        log.contains("Step 0, train loss 0.0000, evaluate loss "),
        "{log}"
    );
    assert!(log.contains("Step 10, train loss "), "{log}");
    assert!(log.contains("Generate first 8 characters of poems starting with 春夜喜雨:"));
    for f in ["checkpoint.ckpt", "metrics.jsonl", "loss.svg"] {
        assert!(run_dir.join(f).is_file(), "{f} missing");
    }
    let rows = tinypoet_trainer::run::metrics::read_jsonl(&run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.step).collect::<Vec<_>>(),
        vec![0, 10, 20, 30]
    );
    assert!(rows[3].eval_loss < rows[0].eval_loss - 0.2, "{rows:?}");
    assert!(rows.iter().all(|r| r.sample.starts_with("春夜喜雨")));
    let svg = std::fs::read_to_string(run_dir.join("loss.svg")).unwrap();
    assert!(svg.contains("<polyline") && svg.contains("TutorialLLM"));

    // A fresh run does not silently replace an existing run's checkpoint.
    assert_one_line_error(
        &train(&data, &run_dir, "30", "10", &[]),
        "already holds a checkpoint",
    );

    // export
    let blob = dir.path().join("model.tpb");
    let ckpt = run_dir.join("checkpoint.ckpt");
    let o = run(&[
        "export",
        ckpt.to_str().unwrap(),
        "-o",
        blob.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // inspect
    let o = run(&["inspect", blob.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("checksum:    ok"), "{text}");
    assert!(text.contains("steps:          30"), "{text}");
    assert!(text.contains("dim 16, heads 2"), "{text}");
    assert!(!text.contains("corpus sha256:  unknown"), "{text}");

    // eval: checkpoint (trainer kernels) vs blob (core, f16) agree closely, and the checkpoint's
    // number is the one logged at its last step.
    let o = run(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--window",
        "16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f32_loss: f64 = stdout(&o).trim().parse().unwrap();
    assert!(
        (f32_loss - rows[3].eval_loss).abs() < 1e-6,
        "{f32_loss} vs {}",
        rows[3].eval_loss
    );
    let o = run(&[
        "eval",
        "--model",
        blob.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--window",
        "16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f16_loss: f64 = stdout(&o).trim().parse().unwrap();
    assert!(
        (f16_loss - f32_loss).abs() < 0.01,
        "f16 {f16_loss} vs f32 {f32_loss}"
    );

    // int8: export (groups of 16 for this dim-16 model), inspect shows the dtypes and sizes,
    // eval through the core stays close to the f32 checkpoint, generate runs it.
    let blob8 = dir.path().join("model-int8.tpb");
    let o = run(&[
        "export",
        ckpt.to_str().unwrap(),
        "-o",
        blob8.to_str().unwrap(),
        "--dtype",
        "int8",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("blob (int8, core)"), "{}", stderr(&o));
    let o = run(&["inspect", blob8.to_str().unwrap(), "--tensors"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("dtype:       int8 (group 16, f16 scales)"),
        "{text}"
    );
    assert!(text.contains("blocks.0.attn.wq"), "{text}");
    assert!(std::fs::metadata(&blob8).unwrap().len() < std::fs::metadata(&blob).unwrap().len());
    let o = run(&[
        "eval",
        "--model",
        blob8.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--window",
        "16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("int8, group 16"), "{}", stderr(&o));
    let int8_loss: f64 = stdout(&o).trim().parse().unwrap();
    eprintln!("tiny model: f32 {f32_loss:.4}, f16 {f16_loss:.4}, int8 {int8_loss:.4}");
    assert!(
        (int8_loss - f32_loss).abs() < 0.05,
        "int8 {int8_loss} vs f32 {f32_loss}"
    );
    let o = run(&[
        "generate",
        "--model",
        blob8.to_str().unwrap(),
        "--seed",
        "3",
        "--max-len",
        "20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("春夜喜雨"));
    // --dtype is for blobs; safetensors stay f32
    assert_one_line_error(
        &run(&[
            "export",
            ckpt.to_str().unwrap(),
            "--format",
            "safetensors",
            "--dtype",
            "int8",
            "-o",
            dir.path().join("m.safetensors").to_str().unwrap(),
        ]),
        "safetensors are written in f32",
    );

    // generate: deterministic per seed, prompt first, nothing else on stdout.
    let gen = |seed: &str| {
        run(&[
            "generate",
            "--model",
            blob.to_str().unwrap(),
            "--seed",
            seed,
            "--max-len",
            "40",
        ])
    };
    let a = gen("7");
    assert!(a.status.success(), "{}", stderr(&a));
    let b = gen("7");
    assert_eq!(a.stdout, b.stdout);
    let text = stdout(&a);
    assert!(text.starts_with("春夜喜雨"), "{text}");
    assert!(text.ends_with('\n'));
    assert!(!text.contains("seed"));
    assert!(stderr(&a).contains("seed 7"));
    // The model can also come from $TINYPOET_MODEL (no --model).
    let via_env = Command::new(exe())
        .args(["generate", "--seed", "7", "--max-len", "40"])
        .env("TINYPOET_MODEL", &blob)
        .output()
        .unwrap();
    assert_eq!(via_env.stdout, a.stdout, "{}", stderr(&via_env));
    let other: Vec<String> = (0..5).map(|s| stdout(&gen(&s.to_string()))).collect();
    assert!(
        other.iter().any(|t| *t != text),
        "every seed gave the same text"
    );

    // bench decode: every available backend against scalar, same text on all (the command fails
    // if two backends disagree).
    let o = run(&[
        "bench",
        "decode",
        "--model",
        blob.to_str().unwrap(),
        "--runs",
        "1",
        "--chars",
        "20",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert!(lines[0].contains("\"backend\":\"Scalar\""), "{lines:?}");
    assert!(lines[0].contains("\"ratio_vs_scalar\":1.00"), "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("\"median_chars_per_s\":")
        && l.contains("\"best_chars_per_s\":")
        && l.contains("\"cpu_chars_per_s\":")));
    // --backend fastest: the one backend generate uses, no scalar baseline to compare with.
    let o = run(&[
        "bench",
        "decode",
        "--model",
        blob.to_str().unwrap(),
        "--runs",
        "1",
        "--chars",
        "20",
        "--backend",
        "fastest",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let fastest = stdout(&o);
    assert_eq!(fastest.lines().count(), 1, "{fastest}");
    // `all` lists scalar, then the others in order of preference: the fastest is the second.
    let expected = lines.get(1).unwrap_or(&lines[0]);
    let name = |l: &str| l.split(',').next().unwrap().to_owned();
    assert_eq!(name(&fastest), name(expected), "{fastest} vs {lines:?}");
    assert_eq!(
        fastest.contains("\"ratio_vs_scalar\":null"),
        lines.len() > 1,
        "{fastest}"
    );

    // User errors: one line, exit 1.
    assert_one_line_error(
        &run(&["generate", "--model", blob.to_str().unwrap(), "这"]),
        "traditional Chinese",
    );
    assert_one_line_error(
        &run(&["generate", "--model", blob.to_str().unwrap(), "春x"]),
        "'x'",
    );
    let missing = dir.path().join("missing.tpb");
    assert_one_line_error(
        &run(&["generate", "--model", missing.to_str().unwrap()]),
        "not found",
    );
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let corrupt = dir.path().join("corrupt.tpb");
    std::fs::write(&corrupt, &bytes).unwrap();
    assert_one_line_error(
        &run(&["generate", "--model", corrupt.to_str().unwrap()]),
        "corrupt",
    );
    assert_one_line_error(&run(&["inspect", corrupt.to_str().unwrap()]), "corrupt");
    let mut torn = std::fs::read(&ckpt).unwrap();
    torn.truncate(torn.len() / 3);
    let torn_path = dir.path().join("torn.ckpt");
    std::fs::write(&torn_path, &torn).unwrap();
    assert_one_line_error(
        &run(&["export", torn_path.to_str().unwrap(), "-o", "/dev/null"]),
        "truncated",
    );
    // Usage errors are clap's (exit 2).
    let o = run(&["generate", "--model", blob.to_str().unwrap(), "--top-k"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let run_dir = dir.path().join("run");
    // An absurd learning rate: the first update leaves huge weights; they are never saved (only
    // step 0's checkpoint, whose loss was checked, is kept).
    let o = train(&data, &run_dir, "50", "1", &["--lr", "1e30"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("training stopped at step "), "{err}");
    assert!(err.contains("is kept"), "{err}");
    // One error line (after the informational start line).
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{err}"
    );
    assert!(err
        .lines()
        .last()
        .unwrap()
        .starts_with("error: training stopped at step "));
    let step: u64 = err
        .split("training stopped at step ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The checkpoint named is the last one whose loss was checked (issue 20 #1: not the
    // unchecked state after the divergent update).
    let kept: u64 = err
        .split(" (step ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kept <= step, "{err}");
    let ck = checkpoint::load(&run_dir.join("checkpoint.ckpt")).unwrap();
    assert_eq!(ck.meta.step, kept, "the checkpoint is the last good step");
    assert!(ck.params.iter().all(|x| x.is_finite()));
    assert!(step < 50);
}

#[test]
fn ctrl_c_finishes_the_step_saves_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let run_dir = dir.path().join("run");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--steps",
        "100000000",
        "--eval-interval",
        "100000",
        "--checkpoint-every",
        "0",
    ];
    args.extend(tiny_flags());
    let child = Command::new(exe())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the step-0 evaluation to be logged, then let it train a little.
    let metrics = run_dir.join("metrics.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(true, |s| s.is_empty()) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sending SIGINT to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("continue with --resume"), "{err}");
    let ck = checkpoint::load(&run_dir.join("checkpoint.ckpt")).unwrap();
    assert!(ck.meta.step > 0 && ck.meta.step < 100_000_000);
    // Resume for a few more steps.
    let steps = (ck.meta.step + 3).to_string();
    let o = run(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--resume",
        run_dir.to_str().unwrap(),
        "--steps",
        &steps,
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        checkpoint::load(&run_dir.join("checkpoint.ckpt"))
            .unwrap()
            .meta
            .step,
        ck.meta.step + 3
    );
}

#[test]
fn help_has_examples() {
    for cmd in ["train", "eval", "export", "inspect", "generate"] {
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success());
        assert!(stdout(&o).contains("Examples:"), "{cmd}");
    }
}
