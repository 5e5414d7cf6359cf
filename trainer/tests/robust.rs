//! Issue 20: tinypoet handled like a careful tool. Each test reproduces one finding through the
//! real binary (or the library where the finding lives there) and fails without its fix.

#![cfg(unix)]

mod loop_common;

use std::io::Read;
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
    let vocab = ['\0', '\n', '春', '夜', '喜', '雨'];
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
fn generate_help_names_simplified_characters_that_are_really_rejected() {
    let help = stdout(&run(&["generate", "--help"]));
    let examples = help
        .split("simplified characters it lacks (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("no simplified examples in the help: {help}"));
    let model = bundled_model();
    for ex in examples.split(", ") {
        let o = run(&["generate", ex, "--model", model.to_str().unwrap()]);
        assert_one_line_error(&o, "simplified");
    }
}

#[test]
fn generate_with_an_empty_stop_sequence_prints_nothing() {
    let model = bundled_model();
    let o = run(&["generate", "--model", model.to_str().unwrap(), "--stop", ""]);
    assert_one_line_error(&o, "stop sequence");
    assert!(stdout(&o).is_empty(), "stdout: {:?}", stdout(&o));
}
