//! The trainer's modules point one way (`docs/ARCHITECTURE.md`, "Layers"):
//! `cli` → `stages` → `run` → {`io`, `data`} → `nn` → `tinypoet_core`, with `io/fsx.rs` a leaf
//! below everything. This test reads every `crate::` path in the trainer's source (code lines,
//! not comments), resolves it to the file it names, and checks that
//! 1. no file imports a layer above its own (and `io` and `data` do not import each other), and
//! 2. the file-level import graph has no cycle (no file imports one that imports it back).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Rank of a file (relative to `src/`, `/`-separated): higher may import lower.
fn rank(file: &str) -> u32 {
    if file == "io/fsx.rs" {
        return 0;
    }
    match file.split('/').next().unwrap() {
        "nn" => 1,
        "io" | "data" => 2,
        "run" => 3,
        "stages" => 4,
        "cli" | "main.rs" | "lib.rs" => 5,
        other => panic!("{file}: top-level module {other:?} has no layer; add it here and to docs/ARCHITECTURE.md"),
    }
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file a `crate::a::b::c` path names: the longest prefix that is a module file.
fn resolve(segments: &[&str]) -> Option<String> {
    let root = Path::new(SRC);
    let mut found = None;
    let mut dir = PathBuf::new();
    for s in segments {
        let file = root.join(&dir).join(format!("{s}.rs"));
        let module = root.join(&dir).join(s).join("mod.rs");
        if file.is_file() {
            found = Some(dir.join(format!("{s}.rs")));
        } else if module.is_file() {
            found = Some(dir.join(s).join("mod.rs"));
        } else {
            break;
        }
        dir.push(s);
    }
    found.map(|p| p.to_string_lossy().replace('\\', "/"))
}

/// Every `crate::` path in the code lines of `text`, as its segments. A `use crate::x::{a, b}`
/// group names module `x` (and possibly submodules `a`, `b`).
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let path: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segs: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            // `crate::a::{b, c}`: also try each group member as a submodule of `a`.
            let tail = &after[path.len()..];
            if let Some(group) = tail.strip_prefix('{') {
                let group: String = group.chars().take_while(|c| *c != '}').collect();
                for member in group.split(',') {
                    let m = member.trim().split("::").next().unwrap_or("").trim();
                    if !m.is_empty() && m != "self" {
                        let mut s = segs.clone();
                        s.push(m.to_string());
                        out.push(s);
                    }
                }
            }
            if !segs.is_empty() {
                out.push(std::mem::take(&mut segs));
            }
            rest = &after[path.len()..];
        }
    }
    out
}

#[test]
fn trainer_modules_point_one_way_without_cycles() {
    let mut files = Vec::new();
    rs_files(Path::new(SRC), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut violations = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(SRC)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(path).unwrap();
        let mut deps = BTreeSet::new();
        for segs in crate_paths(&text) {
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let Some(target) = resolve(&segs) else {
                continue;
            };
            if target == rel || target == "lib.rs" {
                continue;
            }
            let (from, to) = (rank(&rel), rank(&target));
            let top = |f: &str| f.split('/').next().unwrap().to_string();
            let sideways = from == to && from == 2 && top(&rel) != top(&target);
            if to > from || sideways {
                violations.push(format!(
                    "{rel} (layer {from}) imports {target} (layer {to})"
                ));
            }
            deps.insert(target);
        }
        graph.insert(rel, deps);
    }
    assert!(
        graph.len() > 40,
        "found only {} source files under {SRC}",
        graph.len()
    );
    assert!(
        violations.is_empty(),
        "imports against the layer order:\n{}",
        violations.join("\n")
    );

    // Cycle check: depth-first search with colours.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let i = stack.iter().position(|s| s == n).unwrap();
                let mut cycle = stack[i..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if let Some(cycle) = visit(n, &graph, &mut state, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_paths_and_groups() {
    let p = crate_paths(
        "use crate::run::{checkpoint, options::TrainOptions};\n// crate::cli::x\nlet a = crate::io::fsx::hex(&b);",
    );
    let joined: Vec<String> = p.iter().map(|s| s.join("::")).collect();
    assert!(
        joined.contains(&"run::checkpoint".to_string()),
        "{joined:?}"
    );
    assert!(joined.contains(&"run::options".to_string()), "{joined:?}");
    assert!(joined.contains(&"io::fsx::hex".to_string()), "{joined:?}");
    assert!(!joined.iter().any(|s| s.starts_with("cli")), "{joined:?}");
    assert_eq!(
        resolve(&["run", "checkpoint", "Checkpoint"]).as_deref(),
        Some("run/checkpoint.rs")
    );
    assert_eq!(
        resolve(&["nn", "ops", "gemm", "gemm"]).as_deref(),
        Some("nn/ops/gemm.rs")
    );
    assert_eq!(resolve(&["stages"]).as_deref(), Some("stages/mod.rs"));
}
