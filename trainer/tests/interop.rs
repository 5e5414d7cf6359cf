//! PyTorch interop through safetensors: a round trip checkpoint →
//! safetensors → checkpoint is bit-exact; F16/BF16 files convert exactly; every kind of bad
//! file is a typed, one-line error; the CLI writes nothing on error; `import --dtype int8`
//! writes the exporter's int8 blob; an imported torch-init
//! model resumed with `train --resume` trains exactly like a fresh run.
//! (The comparison with PyTorch itself is `tests/tests/pytorch_interop.rs`, on fixtures from
//! `tests/golden/make_golden.py`.)

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use tinypoet_trainer::io::export::ManifestInfo;
use tinypoet_trainer::io::interop::{
    export_metadata, read_state_dict, state_dict_layout, write_state_dict, ImportError, Target,
    META_CONFIG, META_VOCAB,
};
use tinypoet_trainer::nn::init::{init_params, InitScheme};
use tinypoet_trainer::nn::params::ModelShape;
use tinypoet_trainer::nn::params::{Config, Params};
use tinypoet_trainer::run::checkpoint::{self, imported_checkpoint};
use tinypoet_trainer::run::options::TrainOptions;
use tinypoet_trainer::stages::pretrain::{self, Start};

mod loop_common;

fn shape() -> ModelShape {
    ModelShape {
        dim: 16,
        n_heads: 4,
        n_layers: 2,
        context: 8,
        ffn_dim: 32,
    }
}

fn cfg() -> Config {
    shape().config(40)
}

fn vocab(n: usize) -> Vec<char> {
    let mut v = vec!['\0'];
    v.extend((0x4E00u32..).take(n - 1).filter_map(char::from_u32));
    v
}

fn params(seed: u64) -> Params {
    init_params(&cfg(), seed, InitScheme::Fast)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A whole exported file (f32, tril included, our metadata).
fn exported(p: &Params) -> Vec<u8> {
    let ckpt = imported_checkpoint(p.clone(), &vocab(p.config().vocab_size), &"ab".repeat(32));
    write_state_dict(
        p,
        export_metadata(
            &ckpt.meta.config,
            &ckpt.meta.vocab,
            &ManifestInfo::unknown(),
        ),
    )
    .unwrap()
}

/// An editable state_dict: (name, dtype, shape, bytes), plus metadata.
#[derive(Clone)]
struct Sd {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    meta: Option<HashMap<String, String>>,
}

impl Sd {
    /// The file a PyTorch user gets from `save_file(model.state_dict(), path)`: f32, no
    /// metadata.
    fn torch(p: &Params) -> Sd {
        let mut sd = Sd::parse(&exported(p));
        sd.meta = None;
        sd
    }

    fn parse(bytes: &[u8]) -> Sd {
        let st = SafeTensors::deserialize(bytes).unwrap();
        let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
            .collect();
        Sd {
            tensors,
            meta: header.metadata().clone(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let views: Vec<(String, TensorView)> = self
            .tensors
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, self.meta.clone()).unwrap()
    }

    fn remove(&mut self, name: &str) {
        let before = self.tensors.len();
        self.tensors.retain(|t| t.0 != name);
        assert_eq!(self.tensors.len(), before - 1, "{name} not found");
    }

    fn get_mut(&mut self, name: &str) -> &mut (String, Dtype, Vec<usize>, Vec<u8>) {
        self.tensors.iter_mut().find(|t| t.0 == name).unwrap()
    }

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn import(&self) -> Result<Params, ImportError> {
        read_state_dict(&self.bytes(), &vocab(cfg().vocab_size)).map(|i| i.params)
    }
}

fn err(sd: &Sd) -> ImportError {
    match sd.import() {
        Ok(_) => panic!("imported a bad file"),
        Err(e) => e,
    }
}

const Q0: &str = "transformer_blocks.0.multi_head_attention.heads.0.project_to_query.weight";

#[test]
fn round_trip_through_safetensors_is_bit_exact() {
    let p = params(3);
    let bytes = exported(&p);
    let imp = read_state_dict(&bytes, &vocab(40)).unwrap();
    assert_eq!(imp.params.config(), p.config());
    assert!(bits(&imp.params.data) == bits(&p.data), "parameters differ");
    assert_eq!(imp.tril_skipped, 2 * 4);
    assert_eq!(imp.dtypes, vec!["F32".to_string()]);
    // The metadata carries the config and the vocabulary.
    assert_eq!(imp.metadata[META_VOCAB].chars().count(), 40);
    assert!(imp.metadata[META_CONFIG].contains("\"dim\":16"));
    assert_eq!(imp.metadata["format"], "pt");
    // And the file has exactly TutorialLLM's names and shapes, tril buffers included.
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let layout = state_dict_layout(&cfg());
    assert_eq!(st.len(), layout.len());
    for e in &layout {
        let t = st.tensor(&e.name).unwrap();
        assert_eq!(t.shape(), e.shape.as_slice(), "{}", e.name);
        assert_eq!(t.dtype(), Dtype::F32);
        if e.target == Target::Tril {
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            for i in 0..8 {
                for j in 0..8 {
                    assert_eq!(v[i * 8 + j], if j <= i { 1.0 } else { 0.0 });
                }
            }
        }
    }
    // A plain PyTorch file (no metadata) imports the same.
    assert!(bits(&Sd::torch(&p).import().unwrap().data) == bits(&p.data));
}

#[test]
fn head_rows_land_in_wq_wk_wv() {
    let p = params(4);
    let mut sd = Sd::torch(&p);
    // Head 2 of block 1: its query weight becomes rows 8..12 of blocks.1.attn.wq.
    let name = "transformer_blocks.1.multi_head_attention.heads.2.project_to_query.weight";
    let marker: Vec<f32> = (0..4 * 16).map(|i| i as f32).collect();
    sd.get_mut(name).3 = Sd::f32s(&marker);
    let q = sd.import().unwrap();
    assert_eq!(&q.tensor("blocks.1.attn.wq")[8 * 16..12 * 16], &marker[..]);
    assert_eq!(q.tensor("blocks.1.attn.wk"), p.tensor("blocks.1.attn.wk"));
}

#[test]
fn f16_and_bf16_files_convert_exactly() {
    let p = params(5);
    for (dtype, round, decode) in [
        (
            Dtype::F16,
            (|x: f32| half::f16::from_f32(x).to_bits()) as fn(f32) -> u16,
            (|b: u16| half::f16::from_bits(b).to_f32()) as fn(u16) -> f32,
        ),
        (
            Dtype::BF16,
            |x: f32| half::bf16::from_f32(x).to_bits(),
            |b: u16| half::bf16::from_bits(b).to_f32(),
        ),
    ] {
        let mut sd = Sd::torch(&p);
        let mut want = p.clone();
        for e in state_dict_layout(&cfg()) {
            let t = sd.get_mut(&e.name);
            let vals: Vec<f32> =
                t.3.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
            let half_bits: Vec<u16> = vals.iter().map(|&x| round(x)).collect();
            t.1 = dtype;
            t.3 = half_bits.iter().flat_map(|b| b.to_le_bytes()).collect();
            if let Target::Params(r) = &e.target {
                for (w, b) in want.data[r.clone()].iter_mut().zip(&half_bits) {
                    *w = decode(*b);
                }
            }
        }
        let got = sd.import().unwrap();
        assert!(bits(&got.data) == bits(&want.data), "{dtype:?}");
    }
}

#[test]
fn tril_buffers_are_optional() {
    let mut sd = Sd::torch(&params(6));
    sd.tensors.retain(|t| !t.0.ends_with(".tril"));
    let imp = read_state_dict(&sd.bytes(), &vocab(40)).unwrap();
    assert_eq!(imp.tril_skipped, 0);
}

#[test]
fn missing_tensors_are_named() {
    let mut sd = Sd::torch(&params(7));
    sd.remove("transformer_blocks.1.feed_forward.feed_forward.2.bias");
    sd.remove("layer_norm_final.weight");
    match err(&sd) {
        ImportError::Names {
            missing,
            unexpected,
        } => {
            assert_eq!(
                missing,
                vec![
                    "transformer_blocks.1.feed_forward.feed_forward.2.bias",
                    "layer_norm_final.weight"
                ]
            );
            assert!(unexpected.is_empty());
        }
        e => panic!("{e}"),
    }
    let msg = err(&sd).to_string();
    assert!(msg.starts_with("2 missing tensors: transformer_blocks.1.feed_forward.feed_forward.2.bias, layer_norm_final.weight"), "{msg}");

    // A whole head gone: the head count still comes from the head size, so its three weights
    // are reported missing (its tril is optional).
    let mut sd = Sd::torch(&params(7));
    sd.tensors.retain(|t| {
        !t.0.starts_with("transformer_blocks.0.multi_head_attention.heads.3.")
    });
    match err(&sd) {
        ImportError::Names { missing, .. } => assert_eq!(missing.len(), 3, "{missing:?}"),
        e => panic!("{e}"),
    }
}

#[test]
fn unexpected_tensors_are_named() {
    let mut sd = Sd::torch(&params(8));
    sd.tensors.push((
        "lm_head.extra".into(),
        Dtype::F32,
        vec![2],
        Sd::f32s(&[1.0, 2.0]),
    ));
    let e = err(&sd);
    assert!(
        matches!(&e, ImportError::Names { missing, unexpected } if missing.is_empty() && unexpected == &["lm_head.extra"]),
        "{e}"
    );
    assert!(e.to_string().contains("1 unexpected tensor"), "{e}");

    // A state_dict of some other model (here: everything under a "model." prefix): nothing to
    // size the model from; the message names what is missing and what is unknown.
    let mut sd = Sd::torch(&params(8));
    for t in &mut sd.tensors {
        t.0 = format!("model.{}", t.0);
    }
    let e = err(&sd);
    match &e {
        ImportError::Names {
            missing,
            unexpected,
        } => {
            assert!(missing.contains(&"token_embedding_table.weight".to_string()));
            assert_eq!(unexpected.len(), sd.tensors.len());
        }
        e => panic!("{e}"),
    }
    let msg = e.to_string();
    assert!(
        !msg.contains('\n') && msg.contains("and ") && msg.len() < 1000,
        "{msg}"
    );
}

#[test]
fn mis_shaped_tensors_name_expected_and_got() {
    let mut sd = Sd::torch(&params(9));
    let t = sd.get_mut(Q0);
    t.2 = vec![4, 15];
    t.3.truncate(4 * 15 * 4);
    match err(&sd) {
        ImportError::Shape {
            name,
            expected,
            got,
        } => {
            assert_eq!(name, Q0);
            assert_eq!(expected, vec![4, 16]);
            assert_eq!(got, vec![4, 15]);
        }
        e => panic!("{e}"),
    }
    assert!(err(&sd)
        .to_string()
        .ends_with("has shape [4, 15], expected [4, 16]"));

    // A token embedding one row short: the vocabulary size comes from the LM head too, so the
    // embedding is the tensor reported.
    let mut sd = Sd::torch(&params(9));
    let t = sd.get_mut("token_embedding_table.weight");
    t.2 = vec![39, 16];
    t.3.truncate(39 * 16 * 4);
    match err(&sd) {
        ImportError::Shape { name, expected, .. } => {
            assert_eq!(name, "token_embedding_table.weight");
            assert_eq!(expected, vec![40, 16]);
        }
        e => panic!("{e}"),
    }

    // A tril buffer of the wrong size.
    let mut sd = Sd::torch(&params(9));
    let t = sd.get_mut("transformer_blocks.1.multi_head_attention.heads.0.tril");
    t.2 = vec![4, 16];
    assert!(matches!(err(&sd), ImportError::Shape { name, .. } if name.ends_with("heads.0.tril")));
}

#[test]
fn unsupported_dtypes_are_named() {
    for (dtype, width) in [(Dtype::F64, 8), (Dtype::I32, 4), (Dtype::U8, 1)] {
        let mut sd = Sd::torch(&params(10));
        let t = sd.get_mut("layer_norm_final.bias");
        t.1 = dtype;
        t.3 = vec![0; 16 * width];
        let e = err(&sd);
        assert!(
            matches!(&e, ImportError::Dtype { name, .. } if name == "layer_norm_final.bias"),
            "{e}"
        );
        assert!(e.to_string().contains(&dtype.to_string()), "{e}");
    }
}

#[test]
fn vocabulary_must_match_the_dataset() {
    let bytes = Sd::torch(&params(11)).bytes();
    match read_state_dict(&bytes, &vocab(41)) {
        Err(ImportError::VocabSize { model, dataset }) => {
            assert_eq!((model, dataset), (40, 41))
        }
        r => panic!("{:?}", r.map(|_| ())),
    }
    // A file we wrote records its vocabulary: same size, other characters is an error too.
    let bytes = exported(&params(11));
    let mut other = vocab(40);
    other[5] = 'x';
    assert!(matches!(
        read_state_dict(&bytes, &other),
        Err(ImportError::VocabDiffers(40))
    ));
    // And a recorded config must agree with the tensors.
    let mut sd = Sd::parse(&bytes);
    let meta = sd.meta.as_mut().unwrap();
    let c = meta[META_CONFIG].replace("\"ffn_dim\":32", "\"ffn_dim\":64");
    meta.insert(META_CONFIG.into(), c);
    assert!(matches!(err(&sd), ImportError::Config(_)));
}

#[test]
fn non_finite_values_are_rejected() {
    let mut sd = Sd::torch(&params(12));
    let t = sd.get_mut("project.bias");
    t.3[4 * 7..4 * 8].copy_from_slice(&f32::NAN.to_le_bytes());
    match err(&sd) {
        ImportError::NonFinite { name, index, .. } => {
            assert_eq!((name.as_str(), index), ("project.bias", 7))
        }
        e => panic!("{e}"),
    }
}

#[test]
fn corrupt_files_are_errors_never_panics() {
    let bytes = exported(&params(13));
    let v = vocab(40);
    // Every truncation.
    for len in 0..bytes.len() {
        assert!(
            matches!(
                read_state_dict(&bytes[..len], &v),
                Err(ImportError::Corrupt(_))
            ),
            "len {len}"
        );
    }
    // A header that is not JSON, a header length past the end, garbage.
    let mut b = bytes.clone();
    b[8] = b'#';
    assert!(matches!(
        read_state_dict(&b, &v),
        Err(ImportError::Corrupt(_))
    ));
    let mut b = bytes.clone();
    b[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(matches!(
        read_state_dict(&b, &v),
        Err(ImportError::Corrupt(_))
    ));
    assert!(matches!(
        read_state_dict(b"PK\x03\x04 this is a zip, e.g. a torch.save pickle", &v),
        Err(ImportError::Corrupt(_))
    ));
    // Flipping any byte of the header never panics (errors or, for a digit inside a value
    // that stays valid, a successful import are both fine).
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for i in 8..8 + n {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        let _ = read_state_dict(&b, &v);
    }
}

// ---------------------------------------------------------------- through the CLI

#[cfg(unix)]
#[test]
fn cli_export_import_round_trip_and_errors() {
    use loop_common::*;
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let data = prepare(dir.path());
    let data = data.to_str().unwrap();
    // `tinypoet import FROM --data <the prepared data> -o OUT [--dtype int8]`
    let import_as = |from: &str, out: &str, int8: bool| {
        let mut args = vec!["import", from, "--data", data, "-o", out];
        if int8 {
            args.extend(["--dtype", "int8"]);
        }
        run(&args)
    };
    let import = |from: &str, out: &str| import_as(from, out, false);
    let mut args = vec![
        "train",
        "--data",
        data,
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.extend(
        [
            "--steps",
            "12",
            "--eval-interval",
            "6",
            "--checkpoint-every",
            "0",
        ]
        .map(String::from),
    );
    args.extend(tiny_flags().into_iter().map(String::from));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    let ckpt = d("run/checkpoint.ckpt");

    // checkpoint -> safetensors -> checkpoint: the parameters are bit-identical.
    let o = run(&[
        "export",
        &ckpt,
        "--format",
        "safetensors",
        "-o",
        &d("m.safetensors"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = import(&d("m.safetensors"), &d("back.ckpt"));
    assert!(o.status.success(), "{}", stderr(&o));
    let a = checkpoint::load(std::path::Path::new(&ckpt)).unwrap();
    let b = checkpoint::load(std::path::Path::new(&d("back.ckpt"))).unwrap();
    assert!(bits(&a.params) == bits(&b.params), "parameters differ");
    assert_eq!(a.meta.config, b.meta.config);
    assert_eq!(a.meta.vocab, b.meta.vocab);
    assert_eq!(a.meta.dataset_hash, b.meta.dataset_hash);
    assert_eq!(b.meta.step, 0);
    assert!(b.adam_m.iter().chain(&b.adam_v).all(|&x| x == 0.0));

    // The same eval loss, to the last printed digit.
    let eval = |c: &str| {
        let o = run(&["eval", "--checkpoint", c, "--data", data, "--threads", "1"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(eval(&ckpt), eval(&d("back.ckpt")));

    // Exporting the imported checkpoint again gives the same tensors.
    let o = run(&[
        "export",
        &d("back.ckpt"),
        "--format",
        "safetensors",
        "-o",
        &d("again.safetensors"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t1 = Sd::parse(&std::fs::read(d("m.safetensors")).unwrap()).tensors;
    let t2 = Sd::parse(&std::fs::read(d("again.safetensors")).unwrap()).tensors;
    let sorted = |mut t: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>| {
        t.sort_by(|x, y| x.0.cmp(&y.0));
        t
    };
    assert!(sorted(t1) == sorted(t2));

    // Into a blob: the core loads it, `inspect` reads its manifest.
    let o = import(&d("m.safetensors"), &d("m.tpb"));
    assert!(o.status.success(), "{}", stderr(&o));
    let blob = std::fs::read(d("m.tpb")).unwrap();
    let model = tinypoet_core::Model::load(&blob).unwrap();
    assert_eq!(
        model.config().vocab_size as u64,
        a.meta.config.vocab_size as u64
    );
    assert_eq!(model.manifest().steps, 12);
    assert!(model
        .manifest()
        .recipe
        .starts_with("imported from PyTorch safetensors m.safetensors"));
    assert_eq!(model.q8_group(), None);

    // Into an int8 blob (`--dtype int8`): the exporter's quantization, so the same weights as
    // `export --dtype int8` of the checkpoint (bit-identical logits), and logits and eval loss
    // within the int8 bars of the other tests (5e-2, 0.05) of the f16 import's.
    let o = import_as(&d("m.safetensors"), &d("m8.tpb"), true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("int8 blob"), "{}", stderr(&o));
    let blob8 = std::fs::read(d("m8.tpb")).unwrap();
    let model8 = tinypoet_core::Model::load(&blob8).unwrap();
    assert_eq!(model8.q8_group(), Some(16), "dim 16: groups of 16");
    assert_eq!(model8.config(), model.config());
    assert_eq!(model8.manifest().steps, 12);
    assert!(blob8.len() < blob.len());
    let o = run(&["export", &ckpt, "-o", &d("e8.tpb"), "--dtype", "int8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let exported8 = std::fs::read(d("e8.tpb")).unwrap();
    let tokens: Vec<u16> = (0..16u16).map(|i| (i * 7 + 3) % 40).collect();
    let logits8 = core_logits(&blob8, &tokens);
    let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(bits32(&logits8) == bits32(&core_logits(&exported8, &tokens)));
    let logits16 = core_logits(&blob, &tokens);
    let max_diff = logits8
        .iter()
        .zip(&logits16)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("int8 vs f16 import: max |logit diff| {max_diff:.3e}");
    // Measured 1.9e-2; 5e-2 is the int8 logit bar of `tests/tests/trainer_core_agreement.rs`.
    assert!(
        max_diff > 0.0,
        "int8 logits equal the f16 ones: not quantized?"
    );
    assert!(max_diff <= 5e-2, "max |int8 - f16| = {max_diff:e}");
    let eval_blob = |b: &str| -> f64 {
        let o = run(&["eval", "--model", b, "--data", data, "--threads", "1"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().parse().unwrap()
    };
    let (l16, l8) = (eval_blob(&d("m.tpb")), eval_blob(&d("m8.tpb")));
    eprintln!("eval loss of the imports: f16 {l16:.4}, int8 {l8:.4}");
    assert!((l8 - l16).abs() < 0.05, "int8 {l8} vs f16 {l16}");

    // Training continues from the imported checkpoint.
    let mut args = vec!["train", "--data", data, "--resume"];
    let back = d("back.ckpt");
    args.push(&back);
    let out = d("resumed");
    args.extend([
        "--out",
        &out,
        "--steps",
        "2",
        "--no-progress",
        "--threads",
        "1",
    ]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Step 0, train loss 0.0000, evaluate loss"));

    // Errors: one line, exit 1, nothing written.
    let bad_out = d("bad.ckpt");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("small.txt"), "春夜喜雨").unwrap();
    let o = run(&[
        "prepare",
        "--from",
        other.join("small.txt").to_str().unwrap(),
        "--format",
        "text",
        "-o",
        other.join("o.tpd").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "import",
        &d("m.safetensors"),
        "--data",
        other.join("o.tpd").to_str().unwrap(),
        "-o",
        &bad_out,
    ]);
    assert_one_line_error(&o, "vocabulary has");
    std::fs::write(d("junk.safetensors"), b"not a safetensors file at all").unwrap();
    let o = import(&d("junk.safetensors"), &bad_out);
    assert_one_line_error(&o, "not a readable safetensors file");
    let o = import(&d("missing.safetensors"), &bad_out);
    assert_one_line_error(&o, "missing.safetensors");
    let mut sd = Sd::parse(&std::fs::read(d("m.safetensors")).unwrap());
    sd.tensors.retain(|t| t.0 != "project.bias");
    std::fs::write(d("short.safetensors"), sd.bytes()).unwrap();
    let o = import(&d("short.safetensors"), &bad_out);
    assert_one_line_error(&o, "1 missing tensor: project.bias");
    let o = import(&d("m.safetensors"), &d("bad.bin"));
    assert_one_line_error(&o, "--format ckpt|blob");
    // --dtype is for blobs, as in `export`; a checkpoint holds f32.
    let o = import_as(&d("m.safetensors"), &bad_out, true);
    assert_one_line_error(&o, "a checkpoint holds f32 weights");
    assert!(!std::path::Path::new(&bad_out).exists());
    assert!(!std::path::Path::new(&d("bad.bin")).exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

/// The core's logits after each of `tokens`, fed one by one from position 0.
fn core_logits(blob: &[u8], tokens: &[u16]) -> Vec<f32> {
    use tinypoet_core::{state_words, Decoder, KvPrecision, Model};
    let model = Model::load(blob).unwrap();
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(&model, &mut state, KvPrecision::F16).unwrap();
    let mut out = Vec::new();
    for &t in tokens {
        out.extend_from_slice(dec.feed(t).unwrap());
    }
    out
}

// ---------------------------------------------------------------- resume from an import

#[test]
fn resuming_an_imported_torch_init_equals_a_fresh_run() {
    // The documented promise of `imported_checkpoint`: weights equal to a fresh default run's
    // torch init, imported from safetensors and resumed, train exactly like that fresh run.
    let (vocab, ids) = loop_common::corpus_ids();
    let data = loop_common::train_data(&vocab, &ids, &"cd".repeat(32));
    let shape = shape();
    let steps = 3;
    let fresh_opts = TrainOptions {
        model: shape,
        seq: shape.context,
        steps,
        ..TrainOptions::default()
    };
    let cfg = shape.config(vocab.len());
    let dir = tempfile::tempdir().unwrap();
    let io = |sub: &str| loop_common::run_io(&dir.path().join(sub), 1);
    let fresh = pretrain::train(&data, Start::Fresh(fresh_opts), &io("fresh"), None).unwrap();

    let init = init_params(&cfg, 2024, InitScheme::Torch);
    let ckpt = imported_checkpoint(init.clone(), &vocab, &data.dataset_hash);
    let bytes = write_state_dict(
        &init,
        export_metadata(
            &ckpt.meta.config,
            &ckpt.meta.vocab,
            &ManifestInfo::unknown(),
        ),
    )
    .unwrap();
    let imp = read_state_dict(&bytes, &vocab).unwrap();
    let start = Start::Resume {
        checkpoint: Box::new(imported_checkpoint(imp.params, &vocab, &data.dataset_hash)),
        steps: Some(steps),
        checkpoint_every: Some(TrainOptions::default().checkpoint_every),
    };
    let resumed = pretrain::train(&data, start, &io("resumed"), None).unwrap();

    let a = checkpoint::load(&fresh.checkpoint_path).unwrap();
    let b = checkpoint::load(&resumed.checkpoint_path).unwrap();
    assert_eq!(a.meta.step, steps);
    assert!(bits(&a.params) == bits(&b.params), "parameters differ");
    assert!(bits(&a.adam_m) == bits(&b.adam_m));
    assert_eq!(a.meta.rng_state, b.meta.rng_state);
    let losses = |c: &checkpoint::Checkpoint| {
        c.meta
            .metrics
            .iter()
            .map(|r| (r.step, r.eval_loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&a), losses(&b));
}
