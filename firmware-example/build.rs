//! Build script: picks the board's memory.x and the weight blob to embed.
//!
//! * Board: exactly one `board-*` feature; `boards/<board>.x` is copied to
//!   `$OUT_DIR/memory.x`, which cortex-m-rt's `link.x` includes. (There is
//!   deliberately no memory.x in the package root: the linker would prefer it,
//!   embedded.md §1 pitfall 2.)
//! * Blob: `TINYPOET_BLOB` (absolute, or relative to this directory), default
//!   `../models/tinypoet-tang-aligned.tpb` (the aligned model: a title in, a poem that ends by
//!   itself). The build fails with a clear message when
//!   neither exists (`./test-qemu.sh` makes a blob and passes it).
//! * Generation settings baked in at build time: `TINYPOET_PROMPT`,
//!   `TINYPOET_SEED`, `TINYPOET_MAX_CHARS`, `TINYPOET_NO_STOP`, `TINYPOET_FORM` (read by main.rs with
//!   option_env!).

use std::env;
use std::fs;
use std::path::PathBuf;

const BOARDS: &[(&str, &str)] = &[
    ("CARGO_FEATURE_BOARD_MPS2_AN386", "mps2-an386"),
    ("CARGO_FEATURE_BOARD_TEENSY41", "teensy41"),
    ("CARGO_FEATURE_BOARD_PICO2", "pico2"),
    ("CARGO_FEATURE_BOARD_MPS2_AN385", "mps2-an385"),
    ("CARGO_FEATURE_BOARD_PICO", "pico"),
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());

    // ---- board / memory.x -------------------------------------------------
    let chosen: Vec<&str> = BOARDS
        .iter()
        .filter(|(var, _)| env::var_os(var).is_some())
        .map(|(_, name)| *name)
        .collect();
    let board = match chosen.as_slice() {
        [one] => *one,
        [] => fail("no board selected: enable one of the board-* features"),
        many => fail(&format!(
            "several boards selected ({}): use --no-default-features --features board-...",
            many.join(", ")
        )),
    };
    let memory_x = manifest.join("boards").join(format!("{board}.x"));
    fs::copy(&memory_x, out.join("memory.x"))
        .unwrap_or_else(|e| fail(&format!("copy {}: {e}", memory_x.display())));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", memory_x.display());
    println!("cargo:rustc-env=TINYPOET_BOARD={board}");

    // ---- weight blob -------------------------------------------------------
    println!("cargo:rerun-if-env-changed=TINYPOET_BLOB");
    let blob = match env::var_os("TINYPOET_BLOB") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                manifest.join(p)
            }
        }
        _ => manifest.join("../models/tinypoet-tang-aligned.tpb"),
    };
    if !blob.is_file() {
        fail(&format!(
            "weight blob {} not found. Set TINYPOET_BLOB=/path/to/model.tpb \
             (./test-qemu.sh trains and exports one when the repository has no default model)",
            blob.display()
        ));
    }
    let blob = blob.canonicalize().unwrap();
    let len = fs::metadata(&blob).unwrap().len();
    println!("cargo:rerun-if-changed={}", blob.display());
    println!("cargo:rustc-env=TINYPOET_BLOB_FILE={}", blob.display());
    println!(
        "cargo:rustc-env=TINYPOET_BLOB_NAME={}",
        blob.file_name().unwrap().to_string_lossy()
    );
    println!("cargo:rustc-env=TINYPOET_BLOB_LEN={len}");

    for var in [
        "TINYPOET_PROMPT",
        "TINYPOET_SEED",
        "TINYPOET_MAX_CHARS",
        "TINYPOET_NO_STOP",
        "TINYPOET_FORM",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if let Ok(seed) = env::var("TINYPOET_SEED") {
        if seed.parse::<u64>().is_err() {
            fail(&format!("TINYPOET_SEED={seed:?} is not a u64"));
        }
    }
    if let Ok(n) = env::var("TINYPOET_MAX_CHARS") {
        if n.parse::<usize>().is_err() {
            fail(&format!("TINYPOET_MAX_CHARS={n:?} is not a number"));
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("tinypoet-firmware build: {msg}");
    std::process::exit(1);
}
