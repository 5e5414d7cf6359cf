//! The committed fuzz seeds (`fuzz/seeds`, fuzz/README.md): structure-aware, re-sealed
//! mutations of small valid blobs. Every one must load (or be rejected) exactly as its
//! generator (`fuzz/src/seeds.rs`) states, without a panic, and the directory must hold
//! exactly what the generator makes (`make_seeds --check` from the fuzz side).
#[path = "../../fuzz/src/blob_parts.rs"]
mod blob_parts;
#[path = "../../fuzz/src/seeds.rs"]
mod seeds;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tinypoet_core::{blob, state_words, Decoder, KvPrecision, Model};

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

fn committed() -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(seed_dir())
        .expect("fuzz/seeds")
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tpb"))
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    let on_disk = committed();
    let generated = seeds::seeds();
    let regen = "regenerate: cd fuzz && cargo run --release --bin make_seeds -- seeds";
    for s in &generated {
        let b = on_disk
            .get(&s.name)
            .unwrap_or_else(|| panic!("{} is not committed ({regen})", s.name));
        assert!(
            *b == s.bytes,
            "{} differs from the generated seed ({regen})",
            s.name
        );
    }
    assert_eq!(
        on_disk.len(),
        generated.len(),
        "files that are not generated seeds"
    );
    let total: usize = on_disk.values().map(Vec::len).sum();
    eprintln!("{} seeds, {total} bytes", on_disk.len());
    assert!(on_disk.len() >= 300 && total <= 2_000_000);
}

#[test]
fn every_committed_seed_loads_as_it_states() {
    let expect: BTreeMap<String, String> = seeds::seeds()
        .into_iter()
        .map(|s| (s.name, s.expect))
        .collect();
    let mut counts = BTreeMap::<String, usize>::new();
    let mut state = vec![0f32; 1 << 16];
    for (name, bytes) in committed() {
        // BASE.WHAT.OUTCOME.tpb
        let variant = name.rsplit('.').nth(1).unwrap();
        let parsed = blob::parse(&bytes);
        let loaded = Model::load(&bytes);
        let got = seeds::outcome(&loaded);
        let want = expect.get(&name).map_or(variant, |e| e.as_str());
        assert!(
            seeds::matches(want, &got),
            "{name}: expected {want}, got {got}"
        );
        assert!(got.starts_with(variant), "{name}: got {got}");
        // the loader adds checks to the parser's, never removes one
        if let Err(e) = parsed {
            assert_eq!(loaded.as_ref().err(), Some(&e), "{name}");
        }
        if let Ok(m) = loaded {
            // valid: it must run
            let words = state_words(m.config(), KvPrecision::F16);
            let mut d = Decoder::new(&m, &mut state[..words], KvPrecision::F16).unwrap();
            for t in 0..m.config().vocab_size.min(3) {
                let logits = d.feed(t as u16).unwrap();
                assert_eq!(logits.len(), m.config().vocab_size, "{name}");
            }
        }
        *counts.entry(variant.to_string()).or_insert(0) += 1;
    }
    eprintln!("outcomes of the committed seeds: {counts:?}");
    // the seeds reach most of the parser's error variants, and valid blobs
    assert!(counts.len() >= 20, "{counts:?}");
    assert!(counts.get("Ok").is_some_and(|&n| n >= 20), "{counts:?}");
}
