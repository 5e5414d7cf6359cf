//! The committed seed corpus `fuzz/seeds` (fuzz/README.md):
//!
//! - `make_seeds DIR`: write every seed of [`tinypoet_core_fuzz::seeds::seeds`] into `DIR`
//!   and remove the other `*.tpb` files there (regenerate: `make_seeds seeds` in `fuzz/`);
//! - `make_seeds --check DIR`: fail unless `DIR` holds exactly those seeds, byte for byte.
//!
//! Both first load every seed and fail if the outcome differs from the one the seed states,
//! and run the valid ones through the fuzz target's [`tinypoet_core_fuzz::exercise`].
use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use tinypoet_core_fuzz::seeds::{matches, outcome, seeds};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (check, dir) = match args.as_slice() {
        [d] if d != "--check" => (false, d.clone()),
        [c, d] if c == "--check" => (true, d.clone()),
        _ => {
            eprintln!("usage: make_seeds [--check] DIR");
            return ExitCode::from(2);
        }
    };
    let seeds = seeds();
    let mut bad = 0;
    for s in &seeds {
        let got = outcome(&tinypoet_core::Model::load(&s.bytes));
        if !matches(&s.expect, &got) {
            eprintln!("{}: expected {}, got {got}", s.name, s.expect);
            bad += 1;
        }
        tinypoet_core_fuzz::exercise(&s.bytes);
    }
    if bad > 0 {
        eprintln!("{bad} seeds do not load as they state");
        return ExitCode::FAILURE;
    }
    let dir = Path::new(&dir);
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".tpb"))
                .collect()
        })
        .unwrap_or_default();
    let names: BTreeSet<String> = seeds.iter().map(|s| s.name.clone()).collect();
    let bytes: usize = seeds.iter().map(|s| s.bytes.len()).sum();
    if check {
        let mut differ = 0;
        for n in on_disk.difference(&names) {
            eprintln!("{}: not a generated seed", dir.join(n).display());
            differ += 1;
        }
        for s in &seeds {
            match std::fs::read(dir.join(&s.name)) {
                Ok(b) if b == s.bytes => {}
                Ok(_) => {
                    eprintln!("{}: differs from the generated seed", s.name);
                    differ += 1;
                }
                Err(e) => {
                    eprintln!("{}: {e}", dir.join(&s.name).display());
                    differ += 1;
                }
            }
        }
        if differ > 0 {
            eprintln!(
                "{differ} differences: regenerate with `make_seeds {}`",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
        println!(
            "{}: {} seeds, {bytes} bytes, as generated",
            dir.display(),
            seeds.len()
        );
    } else {
        std::fs::create_dir_all(dir).expect("create the seed directory");
        for n in on_disk.difference(&names) {
            std::fs::remove_file(dir.join(n)).expect("remove a stale seed");
        }
        for s in &seeds {
            std::fs::write(dir.join(&s.name), &s.bytes).expect("write a seed");
        }
        println!(
            "{}: wrote {} seeds, {bytes} bytes",
            dir.display(),
            seeds.len()
        );
    }
    ExitCode::SUCCESS
}
