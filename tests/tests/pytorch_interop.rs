//! PyTorch interop golden test (issue 8, item 3): a TutorialLLM state_dict written by PyTorch
//! with safetensors (`tests/fixtures/golden/interop.safetensors`, made by
//! `tests/golden/make_golden.py interop`: the reference module for vocab 512, context 64, the
//! real dims, weights f16-representable, saved in f16 with its `tril` buffers) is imported with
//! `tinypoet_trainer::io::interop`, exported to a blob, and run by the core on the 64 tokens the
//! script ran PyTorch on. The logits must match PyTorch's within 1e-3 at every position, with
//! either KV-cache precision. The weights are exact in f16, so the difference measures the
//! computation only (summation order, expf, the f16 KV cache).
//!
//! The reverse direction (our exported safetensors loads into the PyTorch module, strictly, and
//! gives the same tensors and logits bit for bit) is asserted by the script itself: CI has no
//! torch.

use std::path::PathBuf;

use tinypoet_core::{state_words, Config, Decoder, KvPrecision, Model};
use tinypoet_tests::{round_to_f16, synthetic_vocab};
use tinypoet_trainer::io::export::{blob_bytes, ManifestInfo};
use tinypoet_trainer::io::interop::{read_state_dict, Imported};
use tinypoet_trainer::nn::model::TrainModel;

struct Golden {
    config: Config,
    state_dict: Vec<u8>,
    tokens: Vec<u16>,
    /// `[T, V]` PyTorch logits, f32.
    logits: Vec<f32>,
}

fn golden() -> Golden {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("interop.json")).unwrap()).unwrap();
    let bin = std::fs::read(dir.join("interop.bin")).unwrap();
    let array = |name: &str, width: usize| -> &[u8] {
        let a = &meta["arrays"][name];
        let off = a["offset"].as_u64().unwrap() as usize;
        let len = a["len"].as_u64().unwrap() as usize;
        &bin[off..off + len * width]
    };
    Golden {
        // The manifest's `config` object has the fields of `Config` under their names.
        config: serde_json::from_value(meta["config"].clone()).expect("fixture config"),
        state_dict: std::fs::read(dir.join("interop.safetensors")).unwrap(),
        tokens: array("tokens", 2)
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect(),
        logits: array("logits", 4)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
    }
}

fn import(g: &Golden) -> Imported {
    let imp = read_state_dict(&g.state_dict, &synthetic_vocab(g.config.vocab_size)).unwrap();
    assert_eq!(*imp.params.config(), g.config);
    assert_eq!(imp.dtypes, vec!["F16".to_string()]);
    assert_eq!(imp.tril_skipped, g.config.n_layers * g.config.n_heads);
    imp
}

/// Max |core − PyTorch| over every position and vocabulary entry.
fn core_vs_torch(g: &Golden, blob: &[u8], kv: KvPrecision) -> f32 {
    let model = Model::load(blob).unwrap();
    let mut state = vec![0f32; state_words(model.config(), kv)];
    let mut dec = Decoder::new(&model, &mut state, kv).unwrap();
    let v = g.config.vocab_size;
    assert_eq!(g.tokens.len(), g.config.context);
    assert_eq!(g.logits.len(), g.tokens.len() * v);
    let mut max = 0f32;
    for (pos, &tok) in g.tokens.iter().enumerate() {
        let got = dec.feed(tok).unwrap();
        for (a, b) in got.iter().zip(&g.logits[pos * v..(pos + 1) * v]) {
            assert!(a.is_finite());
            max = max.max((a - b).abs());
        }
    }
    max
}

#[test]
fn pytorch_logits_match_the_core_within_1e3_at_every_position() {
    let g = golden();
    let imp = import(&g);
    // The fixture's weights are f16-representable, so the f16 blob holds them exactly.
    assert!(round_to_f16(&imp.params).data == imp.params.data);
    let vocab = synthetic_vocab(g.config.vocab_size);
    let blob = blob_bytes(&imp.params, &vocab, &ManifestInfo::unknown()).unwrap();
    // The logits are not trivially small: a wrong tensor mapping would be far off.
    let spread = g.logits.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(spread > 1.0, "max |logit| {spread}");
    for kv in [KvPrecision::F32, KvPrecision::F16] {
        let d = core_vs_torch(&g, &blob, kv);
        println!("{kv:?} KV: max |core - PyTorch| = {d:.3e} over {} positions x {} logits (max |logit| {spread:.2})", g.tokens.len(), g.config.vocab_size);
        assert!(d <= 1e-3, "{kv:?} KV: max |core - PyTorch| = {d:e} > 1e-3");
    }
}

#[test]
fn pytorch_logits_match_the_trainer_forward() {
    // The same file through the trainer's f32 batched forward (what `eval --checkpoint` and
    // `train --resume` of an imported checkpoint run).
    let g = golden();
    let imp = import(&g);
    let t = g.tokens.len();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let logits = pool.install(|| {
        TrainModel::new(&g.config, 1, t)
            .unwrap()
            .forward_logits(&imp.params, &g.tokens, 1, t)
            .unwrap()
    });
    let d = logits
        .iter()
        .zip(&g.logits)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("trainer: max |trainer - PyTorch| = {d:.3e}");
    assert!(d <= 1e-3, "max |trainer - PyTorch| = {d:e}");
}
