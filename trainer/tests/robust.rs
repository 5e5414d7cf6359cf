//! Issue 20: tinypoet handled like a careful tool. Each test reproduces one finding through the
//! real binary (or the library where the finding lives there) and fails without its fix.

#![cfg(unix)]

mod loop_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use loop_common::*;
use tinypoet_core::blob::{self, BlobInput, Manifest, WeightDtype};
use tinypoet_core::{tensor_specs, Config};

/// A tiny valid f16 blob with `recipe` in its manifest.
fn tiny_blob(recipe: &str) -> Vec<u8> {
    let cfg = Config {
        vocab_size: 6,
        dim: 8,
        n_heads: 2,
        n_layers: 1,
        context: 8,
        ffn_dim: 8,
        ln_eps: 1e-5,
        attn_scale: 0.5,
    };
    let mut vocab = ['\0', '\n', '春', '夜', '喜', '雨'];
    vocab.sort();
    let params: Vec<Vec<f32>> = tensor_specs(&cfg)
        .map(|s| {
            (0..s.shape.numel())
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0)
                .collect()
        })
        .collect();
    let tensors: Vec<&[f32]> = params.iter().map(|t| t.as_slice()).collect();
    let input = BlobInput {
        config: cfg,
        vocab: &vocab,
        manifest: Manifest {
            recipe,
            ..Manifest::EMPTY
        },
        dtype: WeightDtype::F16,
        tensors: &tensors,
    };
    let mut b = vec![0u8; blob::encoded_len(&input).unwrap()];
    blob::write(&input, &mut b).unwrap();
    b
}

/// Run `tinypoet args`; kill it and fail if it has not finished within `limit`.
fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(exe())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tinypoet {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bundled_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tinypoet-tang.tpb")
}

// ---- #6 terminal escapes ----

#[test]
fn inspect_escapes_the_manifest_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escape.tpb");
    // an OSC title change, a colour, a bell and a line feed, next to ordinary CJK text
    std::fs::write(&path, tiny_blob("春\x1b]0;owned\x07\x1b[31mred\nline2")).unwrap();
    let o = run(&["inspect", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(
        out.contains(r"recipe:         春\u{1b}]0;owned\u{7}\u{1b}[31mred\nline2"),
        "{out}"
    );
}

// ---- #7 settings that produce nothing ----

#[test]
fn generate_refuses_a_subnormal_temperature() {
    let model = bundled_model();
    let o = run(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--temperature",
        "1e-45",
        "--seed",
        "1",
    ]);
    assert_one_line_error(&o, "temperature");
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}

// ---- #9 messages ----

#[test]
fn generate_help_names_simplified_input_that_is_really_converted() {
    // The help's examples: "(静夜思, 黄河) is converted (靜夜思, 黃河; ...": each simplified
    // prompt must come out on stdout as the traditional text the help promises.
    let help = stdout(&run(&["generate", "--help"]));
    let after = |key: &str| -> Vec<String> {
        help.split(key)
            .nth(1)
            .and_then(|s| s.split([')', ';']).next())
            .unwrap_or_else(|| panic!("no {key:?} examples in the help: {help}"))
            .split(", ")
            .map(str::to_string)
            .collect()
    };
    let simplified = after("Chinese\n(");
    let traditional = after("is converted (");
    assert_eq!(simplified.len(), traditional.len(), "{help}");
    let model = bundled_model();
    for (s, t) in simplified.iter().zip(&traditional) {
        let o = run(&[
            "generate",
            s,
            "--model",
            model.to_str().unwrap(),
            "--seed",
            "1",
            "--max-len",
            "4",
        ]);
        assert!(
            o.status.success(),
            "generate {s}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            stdout(&o).starts_with(t.as_str()),
            "generate {s}: stdout {:?}",
            stdout(&o)
        );
    }
}

/// The CLI converts simplified input exactly as the core's per-character table does (the web
/// page's and the board console's conversion), titles and acrostics alike, phrases such as 皇后
/// and 头发 included, and stderr names every replaced character.
#[test]
fn generate_converts_simplified_input_as_the_core_table_does() {
    let core = |s: &str| -> String {
        s.chars()
            .map(|c| tinypoet_core::simplified::to_traditional(c).unwrap_or(c))
            .collect()
    };
    let model = bundled_model();
    let titles = [
        "静夜思",
        "皇后",
        "头发",
        "黄河远上白云间",
        "后宫词",
        "送元二使安西",
        "干将",
        "钟表",
        "春夜喜雨",
    ];
    for title in titles {
        let o = run(&[
            "generate",
            "--title",
            title,
            "--model",
            model.to_str().unwrap(),
            "--seed",
            "1",
            "--max-len",
            "1",
        ]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "generate --title {title}: {err}");
        let expected = core(title);
        assert_eq!(
            stdout(&o).lines().next(),
            Some(expected.as_str()),
            "--title {title}"
        );
        for (s, t) in title.chars().zip(expected.chars()) {
            if s != t {
                assert!(err.contains(&format!("{s}→{t}")), "--title {title}: {err}");
            }
        }
        if expected == title {
            assert!(!err.contains("simplified ->"), "--title {title}: {err}");
        }
    }
    // The acrostic goes through the same table: 东南西北 opens the lines with 東南西北.
    let o = run(&[
        "generate",
        "江",
        "--form",
        "五絕",
        "--acrostic",
        "东后",
        "--model",
        model.to_str().unwrap(),
        "--seed",
        "3",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let lines: Vec<String> = stdout(&o)
        .lines()
        .skip(1)
        .flat_map(|l| {
            l.split(['，', '。'])
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let opens: String = lines
        .iter()
        .take(2)
        .filter_map(|l| l.chars().next())
        .collect();
    assert_eq!(opens, core("东后"), "{}", stdout(&o));
    assert!(err.contains("东→東") && err.contains("后→後"), "{err}");
}

#[test]
fn generate_with_an_empty_stop_sequence_prints_nothing() {
    let model = bundled_model();
    let o = run(&["generate", "--model", model.to_str().unwrap(), "--stop", ""]);
    assert_one_line_error(&o, "stop sequence");
    assert!(stdout(&o).is_empty(), "stdout: {:?}", stdout(&o));
}

// ---- #1 divergence keeps the last good checkpoint ----

/// `train` into `run_dir` with the tiny model, evaluating every step.
fn train_args<'a>(data: &'a Path, run_dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--eval-interval",
        "1",
    ];
    args.extend(tiny_flags());
    args.extend(extra);
    args
}

/// "the last good checkpoint PATH (step N) is kept" → (PATH, N).
fn named_checkpoint(err: &str) -> (PathBuf, u64) {
    let rest = err
        .split("the last good checkpoint ")
        .nth(1)
        .unwrap_or_else(|| panic!("no checkpoint named: {err}"));
    let (path, rest) = rest.split_once(" (step ").unwrap();
    let step = rest.split(')').next().unwrap().parse().unwrap();
    (PathBuf::from(path), step)
}

#[test]
fn divergence_names_a_checkpoint_that_exports_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    for lr in ["3e38", "1e30", "1e6"] {
        let run_dir = dir.path().join(format!("run-{lr}"));
        let o = run(&train_args(
            &data,
            &run_dir,
            &["--steps", "30", "--checkpoint-every", "1", "--lr", lr],
        ));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "lr {lr}: {err}");
        assert!(err.contains("training stopped at step "), "lr {lr}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let (ckpt, step) = named_checkpoint(&err);
        assert_eq!(ckpt, run_dir.join("checkpoint.ckpt"));
        // the checkpoint on disk is the one named, and it is sound
        let ck = tinypoet_trainer::run::checkpoint::load(&ckpt).unwrap();
        assert_eq!(ck.meta.step, step, "lr {lr}");
        assert!(ck.params.iter().all(|w| w.is_finite() && w.abs() < 65504.0));
        // it exports (f16 and int8) and the blob inspects
        for dtype in ["f16", "int8"] {
            let blob = dir.path().join(format!("m-{lr}-{dtype}.tpb"));
            let o = run(&[
                "export",
                ckpt.to_str().unwrap(),
                "-o",
                blob.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--dtype",
                dtype,
            ]);
            assert!(o.status.success(), "lr {lr} export {dtype}: {}", stderr(&o));
            assert!(run(&["inspect", blob.to_str().unwrap()]).status.success());
        }
        // it resumes: its evaluation is finite and the run finishes at its step
        let step_s = step.to_string();
        let o = run(&train_args(
            &data,
            &run_dir,
            &[
                "--resume",
                ckpt.to_str().unwrap(),
                "--steps",
                &step_s,
                "--checkpoint-every",
                "1",
                "--lr",
                lr,
            ],
        ));
        assert!(o.status.success(), "lr {lr} resume: {}", stderr(&o));
        let log = stdout(&o);
        let line = log
            .lines()
            .find(|l| l.starts_with(&format!("Step {step}, ")))
            .unwrap_or_else(|| panic!("{log}"));
        let eval: f64 = line
            .split("evaluate loss ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(eval.is_finite() && eval > 0.0, "{line}");
    }
}

// ---- #2 a closed stdout ----

/// Run `tinypoet args` with stdout a pipe whose reading end is already closed: every write to
/// stdout fails with EPIPE (what `| head -1` does once head has its line).
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = Command::new(exe())
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn every_command_treats_a_closed_stdout_as_the_end_of_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let model = bundled_model();
    let model = model.to_str().unwrap();
    let blob = dir.path().join("tiny.tpb");
    std::fs::write(&blob, tiny_blob("pipe")).unwrap();
    let txt = dir.path().join("small.txt");
    let prepared = dir.path().join("again.tpd");
    let cases: Vec<Vec<&str>> = vec![
        vec!["inspect", blob.to_str().unwrap(), "--tensors"],
        vec!["generate", "--model", model, "--seed", "3"],
        vec![
            "prepare",
            "--from",
            txt.to_str().unwrap(),
            "--format",
            "text",
            "-o",
            prepared.to_str().unwrap(),
        ],
    ];
    for args in &cases {
        let o = run_into_closed_pipe(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(prepared.is_file(), "prepare finished its work");

    // Training keeps training: every evaluation is in metrics.jsonl, the final checkpoint saved.
    let run_dir = dir.path().join("run");
    let o = run_into_closed_pipe(&train_args(
        &data,
        &run_dir,
        &["--steps", "12", "--checkpoint-every", "5", "--lr", "1e-2"],
    ));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let ck = tinypoet_trainer::run::checkpoint::load(&run_dir.join("checkpoint.ckpt")).unwrap();
    assert_eq!(ck.meta.step, 12);
    let rows = tinypoet_trainer::run::metrics::read_jsonl(&run_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(rows.len(), 13, "steps 0..=12");
}

// ---- #5 bounded reads ----

#[test]
fn reading_commands_refuse_fifos_devices_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let d = data.to_str().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let out_tpb = dir.path().join("out.tpb");
    let out_ckpt = dir.path().join("out.ckpt");
    let out_tpd = dir.path().join("out.tpd");
    // Without the check, opening the FIFO blocks for ever (no writer), and /dev/zero is read
    // until memory runs out; a directory gives an OS error that does not say what is wrong.
    for (bad, says) in [
        (fifo.to_str().unwrap(), "not a regular file (a FIFO)"),
        ("/dev/zero", "not a regular file (a device)"),
        ("/dev/null", "not a regular file (a device)"),
        (
            dir.path().to_str().unwrap(),
            "not a regular file (a directory)",
        ),
    ] {
        let mut cases: Vec<Vec<&str>> = vec![
            vec!["inspect", bad],
            vec!["eval", "--model", bad, "--data", d],
            vec!["generate", "--model", bad],
            vec!["import", bad, "--data", d, "-o", out_ckpt.to_str().unwrap()],
            vec!["train", "--data", bad, "--out", o],
            vec![
                "prepare",
                "--from",
                bad,
                "--format",
                "text",
                "-o",
                out_tpd.to_str().unwrap(),
            ],
        ];
        if bad != dir.path().to_str().unwrap() {
            // (a directory given to --resume means the checkpoint inside it)
            cases.push(vec!["train", "--data", d, "--resume", bad, "--out", o]);
            cases.push(vec!["eval", "--checkpoint", bad, "--data", d]);
            cases.push(vec!["export", bad, "-o", out_tpb.to_str().unwrap()]);
        }
        for args in cases {
            let o = run_within(&args, Duration::from_secs(60));
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    for p in [&out, &out_tpb, &out_ckpt, &out_tpd] {
        assert!(!p.exists(), "{} was written", p.display());
    }
}

// ---- #9 messages ----

#[test]
fn io_errors_name_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.ckpt");
    let m = missing.to_str().unwrap();
    let blob = dir.path().join("m.tpb");
    let b = blob.to_str().unwrap();
    for (args, file) in [
        (vec!["export", m, "-o", b], m),
        (vec!["eval", "--checkpoint", m, "--data", m], m),
        (vec!["train", "--data", m, "--out", b], m),
        (vec!["inspect", b], b),
        (vec!["import", m, "--data", m, "-o", b], m),
    ] {
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.matches("(os error 2)").count(), 1, "{args:?}: {err}");
        assert_eq!(err.matches(file).count(), 1, "{args:?}: {err}");
    }
}

// ---- #3 temporary files of killed writes ----

/// The pid of a process that has exited (free, and not reused this soon).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Names in `dir` that look like a temporary file of an atomic write (`.NAME.tmpPID`).
fn temp_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains(".tmp"))
        .collect();
    names.sort();
    names
}

#[test]
fn temporary_files_of_killed_writes_do_not_pile_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let run_dir = dir.path().join("run");
    let ckpt = run_dir.join("checkpoint.ckpt");
    let o = run(&train_args(
        &data,
        &run_dir,
        &["--steps", "2", "--checkpoint-every", "2"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let resume = |steps: &'static str| {
        let mut args = train_args(
            &data,
            &run_dir,
            &["--steps", steps, "--checkpoint-every", "2"],
        );
        args.extend(["--resume", ckpt.to_str().unwrap()]);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    // A real save SIGKILLed after 1000 bytes (the crash hook) leaves its temporary file.
    let o = Command::new(exe())
        .args(resume("4"))
        .env("TINYPOET_TEST_KILL_AFTER_BYTES", "1000")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "{}", stderr(&o));
    let left = temp_files(&run_dir);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".checkpoint.ckpt.tmp"), "{left:?}");
    // ... and earlier crashes left theirs (a megabyte each).
    let dead = dead_pid();
    for name in [
        format!(".checkpoint.ckpt.tmp{dead}"),
        format!(".loss.svg.tmp{dead}"),
    ] {
        std::fs::write(run_dir.join(name), vec![0x5a; 1 << 20]).unwrap();
    }
    let o = Command::new(exe()).args(resume("4")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(temp_files(&run_dir), Vec::<String>::new());
    let ck = tinypoet_trainer::run::checkpoint::load(&ckpt).unwrap();
    assert_eq!(ck.meta.step, 4);

    // An export and a prepare remove the stale temporary files of the file they write, and
    // leave a running writer's (this test process stands in for one).
    let blob = dir.path().join("m.tpb");
    let stale = dir.path().join(format!(".m.tpb.tmp{dead}"));
    let live = dir.path().join(format!(".m.tpb.tmp{}", std::process::id()));
    std::fs::write(&stale, b"torn blob").unwrap();
    std::fs::write(&live, b"blob in flight").unwrap();
    let o = run(&[
        "export",
        ckpt.to_str().unwrap(),
        "-o",
        blob.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run(&["inspect", blob.to_str().unwrap()]).status.success());
    assert!(!stale.exists(), "{} is still there", stale.display());
    assert!(live.exists(), "a live writer's temporary file was removed");
    let stale = dir.path().join(format!(".small.tpd.tmp{dead}"));
    std::fs::write(&stale, b"torn dataset").unwrap();
    prepare(dir.path());
    assert!(!stale.exists(), "{} is still there", stale.display());
}

// ---- #4 one run per directory ----

/// Flags of the small model the concurrency test trains.
fn small_model_flags() -> Vec<&'static str> {
    vec![
        "--dim",
        "32",
        "--heads",
        "2",
        "--layers",
        "2",
        "--context",
        "64",
        "--ffn",
        "64",
        "--batch",
        "8",
        "--seq",
        "64",
        "--eval-interval",
        "1000",
        "--eval-batches",
        "2",
        "--sample-len",
        "16",
        "--no-progress",
        "--threads",
        "1",
    ]
}

#[test]
fn a_second_run_on_a_directory_in_use_fails_at_once_and_the_first_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let d = data.to_str().unwrap();
    let run_dir = dir.path().join("run");
    let r = run_dir.to_str().unwrap();
    let mut args = vec!["train", "--data", d, "--out", r, "--steps", "100000000"];
    args.extend(small_model_flags());
    let first = Command::new(exe())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first run is training once its step-0 evaluation is logged.
    let metrics = run_dir.join("metrics.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(true, |s| s.is_empty()) {
        assert!(t0.elapsed() < Duration::from_secs(120), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let says = format!("{r} is in use by another run (pid {})", first.id());
    let mut fresh = vec![
        "train",
        "--data",
        d,
        "--out",
        r,
        "--overwrite",
        "--steps",
        "3",
    ];
    fresh.extend(small_model_flags());
    let resume = vec![
        "train",
        "--data",
        d,
        "--out",
        r,
        "--resume",
        r,
        "--steps",
        "5",
        "--no-progress",
    ];
    for second in [fresh, resume] {
        let t = Instant::now();
        let o = run_within(&second, Duration::from_secs(60));
        assert_one_line_error(&o, &says);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
    // SAFETY: sending SIGINT to our own child process (it saves a checkpoint and stops).
    unsafe {
        libc::kill(first.id() as i32, libc::SIGINT);
    }
    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = tinypoet_trainer::run::checkpoint::load(&run_dir.join("checkpoint.ckpt")).unwrap();
    assert_eq!(
        ck.meta.options.steps, 100_000_000,
        "the first run's checkpoint"
    );
    assert!(ck.meta.step > 0);
    // Its rows only, in order: step 0 and every 1000th step up to where it stopped (an
    // interrupted run does not evaluate again). A second run's rows (steps 0 and 3) would be
    // interleaved, or the first run's rows truncated away.
    let rows = tinypoet_trainer::run::metrics::read_jsonl(&metrics).unwrap();
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    let upto: Vec<u64> = (0..ck.meta.step).step_by(1000).collect();
    let through: Vec<u64> = (0..=ck.meta.step).step_by(1000).collect();
    assert!(steps == upto || steps == through, "{steps:?}");
    let in_ckpt: Vec<u64> = ck.meta.metrics.iter().map(|r| r.step).collect();
    assert_eq!(in_ckpt, steps);
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_training_command_refuses_a_locked_directory_and_changes_nothing_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let d = data.to_str().unwrap();
    let run_dir = dir.path().join("run");
    let r = run_dir.to_str().unwrap();
    let ckpt = run_dir.join("checkpoint.ckpt");
    let c = ckpt.to_str().unwrap();
    let o = run(&train_args(
        &data,
        &run_dir,
        &["--steps", "2", "--checkpoint-every", "2"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    // Hold the directory's lock as a running trainer does (its pid in the lock file).
    let mut lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(run_dir.join(".lock"))
        .unwrap();
    lock.try_lock().unwrap();
    lock.set_len(0).unwrap();
    std::io::Write::write_all(&mut lock, format!("{}\n", std::process::id()).as_bytes()).unwrap();
    let before = snapshot(&run_dir);
    let says = format!("{r} is in use by another run (pid {})", std::process::id());
    let cases: Vec<Vec<&str>> = vec![
        train_args(&data, &run_dir, &["--steps", "3", "--overwrite"]),
        vec![
            "train", "--data", d, "--out", r, "--resume", r, "--steps", "4",
        ],
        vec![
            "train",
            "--data",
            d,
            "--out",
            r,
            "--resume",
            c,
            "--no-progress",
        ],
        vec![
            "finetune",
            "--data",
            d,
            "--out",
            r,
            "--from",
            c,
            "--overwrite",
        ],
        vec!["align", "--data", d, "--out", r, "--from", c, "--overwrite"],
        vec!["finetune", "--data", d, "--out", r, "--resume", r],
        vec!["align", "--data", d, "--out", r, "--resume", c],
    ];
    for args in &cases {
        let o = run_within(args, Duration::from_secs(60));
        assert_one_line_error(&o, &says);
        assert!(snapshot(&run_dir) == before, "{args:?} changed {r}");
    }
    // Released (the holder exited): the directory trains again.
    drop(lock);
    let o = run(&[
        "train", "--data", d, "--out", r, "--resume", r, "--steps", "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        tinypoet_trainer::run::checkpoint::load(&ckpt)
            .unwrap()
            .meta
            .step,
        4
    );
}

// ---- #8 sizes from a file ----

#[test]
fn a_checkpoint_whose_parameter_count_wraps_around_is_refused() {
    use sha2::{Digest, Sha256};
    use tinypoet_trainer::run::checkpoint::{self, Checkpoint, CheckpointError};
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let run_dir = dir.path().join("run");
    let o = run(&train_args(&data, &run_dir, &["--steps", "1"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = checkpoint::load(&run_dir.join("checkpoint.ckpt")).unwrap();
    // n_params = 2^62 + n: 12 · n_params wraps around a u64 to exactly the 12 · n data bytes.
    let n = ck.params.len() as u64;
    let mut meta = ck.meta.clone();
    meta.n_params = (1 << 62) + n;
    assert_eq!(meta.n_params.wrapping_mul(12), 12 * n);
    let mut header = postcard::to_stdvec(&meta).unwrap();
    header.extend(postcard::to_stdvec(&ck.stage).unwrap());
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&checkpoint::MAGIC);
    bytes.extend_from_slice(&checkpoint::FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for arr in [&ck.params, &ck.adam_m, &ck.adam_v] {
        for x in arr.iter() {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    match Checkpoint::from_bytes(&bytes) {
        Err(CheckpointError::Inconsistent(why)) => assert!(why.contains("parameters"), "{why}"),
        Err(e) => panic!("another error: {e}"),
        Ok(c) => panic!("loaded with n_params {}", c.meta.n_params),
    }
    // The same through the commands that read a checkpoint.
    let bad = dir.path().join("wrapped.ckpt");
    std::fs::write(&bad, &bytes).unwrap();
    let b = bad.to_str().unwrap();
    let out = dir.path().join("out.tpb");
    let resumed = dir.path().join("resumed");
    for args in [
        vec!["export", b, "-o", out.to_str().unwrap()],
        vec!["eval", "--checkpoint", b, "--data", data.to_str().unwrap()],
        vec![
            "train",
            "--data",
            data.to_str().unwrap(),
            "--resume",
            b,
            "--out",
            resumed.to_str().unwrap(),
        ],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("checkpoint is inconsistent"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    assert!(!out.exists() && !resumed.exists());
}

#[test]
fn a_resume_without_out_continues_in_the_checkpoints_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepare(dir.path());
    let run_dir = dir.path().join("my-run");
    let o = run(&train_args(&data, &run_dir, &["--steps", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    // No --out: the run goes on in my-run (both the file and the directory form), not in the
    // default runs/tang of the working directory.
    let ckpt = run_dir.join("checkpoint.ckpt");
    for (resume, steps) in [(&ckpt, "3"), (&run_dir, "4")] {
        let mut args = vec![
            "train",
            "--data",
            data.to_str().unwrap(),
            "--eval-interval",
            "1",
        ];
        args.extend(tiny_flags());
        args.extend(["--steps", steps, "--resume", resume.to_str().unwrap()]);
        let o = Command::new(exe())
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let step = tinypoet_trainer::run::checkpoint::load(&ckpt)
            .unwrap()
            .meta
            .step;
        assert_eq!(step.to_string(), steps, "the resumed run saved elsewhere");
        assert!(!dir.path().join("runs").exists(), "wrote into ./runs");
    }
}
