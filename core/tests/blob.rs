//! Blob format: round trips through the core's writer and parser, one test per error variant,
//! every truncation, and >= 10,000 re-sealed random corruptions.
mod common;
use common::*;
use tinypoet_core::blob::{self, BlobInput, Dtype, Layout, ScaleDtype, WeightDtype};
use tinypoet_core::{
    state_words, tensor_specs, Config, Decoder, Error, KvPrecision, Manifest, Model, ModelSlot,
};

fn small() -> (Config, Vec<char>, Vec<Vec<f32>>, Vec<u8>) {
    let cfg = small_config();
    let vocab = make_vocab(cfg.vocab_size, 5);
    let params = random_params(&cfg, 3);
    let b = build_blob_with(&cfg, &vocab, &params, manifest());
    (cfg, vocab, params, b)
}

fn parse_err(b: &[u8]) -> Error {
    blob::parse(b).expect_err("blob must be rejected")
}

#[test]
fn param_count_is_the_sum_of_the_tensors_and_saturates() {
    for cfg in [
        small_config(),
        Config {
            n_layers: 3,
            ffn_dim: 40,
            ..small_config()
        },
    ] {
        let sum: usize = tensor_specs(&cfg).map(|s| s.shape.numel()).sum();
        assert_eq!(cfg.param_count(), sum, "{cfg:?}");
    }
    // an absurd config (never valid) gives usize::MAX instead of overflowing
    let huge = Config {
        vocab_size: usize::MAX / 2,
        dim: usize::MAX / 3,
        ..small_config()
    };
    assert_eq!(huge.param_count(), usize::MAX);
}

#[test]
fn tang_param_count_and_specs() {
    let cfg = Config::TANG;
    assert_eq!(cfg.param_count(), 1_318_372);
    let specs: Vec<_> = tensor_specs(&cfg).collect();
    assert_eq!(cfg.tensor_specs().collect::<Vec<_>>(), specs);
    assert_eq!(specs.len(), cfg.n_tensors());
    assert_eq!(specs.len(), 58);
    assert_eq!(
        specs.iter().map(|s| s.shape.numel()).sum::<usize>(),
        1_318_372
    );
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        &names[..4],
        &[
            "tok_emb",
            "pos_emb",
            "blocks.0.ln1.weight",
            "blocks.0.ln1.bias"
        ]
    );
    assert_eq!(names[4], "blocks.0.attn.wq");
    assert_eq!(names[7], "blocks.0.attn.proj.weight");
    assert_eq!(names[14], "blocks.0.ffn.fc2.bias");
    assert_eq!(names[15], "blocks.1.ln1.weight");
    assert_eq!(
        &names[54..],
        &["ln_f.weight", "ln_f.bias", "head.weight", "head.bias"]
    );
    assert_eq!(specs[11].shape.dims(), &[256, 64]); // fc1 [F, C]
    assert_eq!(specs[13].shape.dims(), &[64, 256]); // fc2 [C, F]
    assert_eq!(specs[56].shape.dims(), &[8548, 64]);
}

#[test]
fn round_trip_small_blob() {
    let (cfg, vocab, params, b) = small();
    let parsed = blob::parse(&b).unwrap();
    assert_eq!(parsed.config, cfg);
    assert_eq!(parsed.manifest.steps, 1234);
    assert_eq!(parsed.manifest.eval_loss, 4.25);
    assert!(parsed.manifest.eval_loss_blob.is_nan());
    assert_eq!(parsed.manifest.corpus_sha256, [7; 32]);
    assert_eq!(parsed.manifest.recipe, "test recipe");
    assert_eq!(parsed.vocab_chars().collect::<Vec<_>>(), vocab);
    assert_eq!(parsed.n_tensors(), cfg.n_tensors());
    for ((t, spec), p) in parsed.tensors().zip(tensor_specs(&cfg)).zip(&params) {
        assert_eq!(t.entry.name, spec.name.as_str());
        assert_eq!(t.entry.shape, spec.shape);
        assert_eq!(t.entry.dtype, Dtype::F16);
        assert_eq!(
            t.bytes.as_ptr() as usize % 64,
            b.as_ptr() as usize % 64,
            "64-byte aligned in the blob"
        );
        let vals: Vec<f32> = t
            .bytes
            .chunks(2)
            .map(|h| half::f16::from_le_bytes([h[0], h[1]]).to_f32())
            .collect();
        // undo the physical layout
        let logical: Vec<f32> = match (t.entry.layout, spec.shape.dims()) {
            (Layout::Transposed, &[rows, cols]) => {
                assert!(spec.kind.is_linear_weight());
                (0..rows * cols)
                    .map(|i| vals[(i % cols) * rows + i / cols])
                    .collect()
            }
            _ => vals,
        };
        let expect: Vec<f32> = p.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        assert_eq!(logical, expect, "{}", spec.name);
    }
    // the test helper's independent assembler reproduces the writer byte for byte
    assert_eq!(assemble(&split(&b)), b);
}

#[test]
fn round_trip_tang_sized_blob_with_astral_vocab() {
    let cfg = Config::TANG;
    let vocab = tang_like_vocab();
    let params = random_params(&cfg, 9);
    let b = build_blob_with(&cfg, &vocab, &params, Manifest::EMPTY);
    let m = Model::load(&b).unwrap();
    assert_eq!(m.tokenizer().len(), 8548);
    assert_eq!(
        m.tokenizer().chars().filter(|&c| c as u32 > 0xFFFF).count(),
        198
    );
    // f16 payload = 2 bytes per parameter
    let tensor_bytes: u64 = m.blob().tensors().map(|t| t.entry.nbytes).sum();
    assert_eq!(tensor_bytes, 2 * 1_318_372);
    eprintln!("Tang-size blob: {} bytes", b.len());
}

#[test]
fn encoded_len_is_exact_and_small_buffer_is_an_error() {
    let (cfg, vocab, params, b) = small();
    let tensors: Vec<&[f32]> = params.iter().map(|t| t.as_slice()).collect();
    let input = BlobInput {
        config: cfg,
        vocab: &vocab,
        manifest: manifest(),
        dtype: WeightDtype::F16,
        tensors: &tensors,
    };
    assert_eq!(blob::encoded_len(&input).unwrap(), b.len());
    let mut big = vec![0xAAu8; b.len() + 100];
    assert_eq!(blob::write(&input, &mut big).unwrap(), b.len());
    assert_eq!(&big[..b.len()], &b[..]);
    let mut small_buf = vec![0u8; b.len() - 1];
    assert_eq!(
        blob::write(&input, &mut small_buf),
        Err(Error::OutputTooSmall {
            needed: b.len(),
            got: b.len() - 1
        })
    );
}

// ---------------- writer input errors ----------------

fn write_err(
    f: impl FnOnce(
        &mut Config,
        &mut Vec<char>,
        &mut Vec<Vec<f32>>,
        &mut WeightDtype,
        &mut Manifest<'static>,
    ),
) -> Error {
    let cfg0 = small_config();
    let (mut cfg, mut vocab, mut params, mut dtype, mut m) = (
        cfg0,
        make_vocab(cfg0.vocab_size, 5),
        random_params(&cfg0, 3),
        WeightDtype::F16,
        manifest(),
    );
    f(&mut cfg, &mut vocab, &mut params, &mut dtype, &mut m);
    let tensors: Vec<&[f32]> = params.iter().map(|t| t.as_slice()).collect();
    let input = BlobInput {
        config: cfg,
        vocab: &vocab,
        manifest: m,
        dtype,
        tensors: &tensors,
    };
    let e = blob::encoded_len(&input).expect_err("writer must reject");
    let mut out = vec![0u8; 1 << 20];
    assert_eq!(blob::write(&input, &mut out), Err(e));
    e
}

#[test]
fn writer_input_tensor_count() {
    let e = write_err(|_, _, p, _, _| {
        p.pop();
    });
    assert_eq!(
        e,
        Error::InputTensorCount {
            expected: 32,
            got: 31
        }
    );
}

#[test]
fn writer_input_tensor_len() {
    let e = write_err(|_, _, p, _, _| {
        p[3].push(0.0);
    });
    assert!(matches!(e, Error::InputTensorLen { index: 3, .. }), "{e:?}");
}

#[test]
fn writer_not_representable() {
    assert_eq!(
        write_err(|_, _, p, _, _| p[5][7] = f32::NAN),
        Error::NotRepresentable {
            index: 5,
            element: 7
        }
    );
    assert_eq!(
        write_err(|_, _, p, _, _| p[0][1] = 70000.0),
        Error::NotRepresentable {
            index: 0,
            element: 1
        }
    );
}

#[test]
fn writer_int8_group_must_divide_every_row() {
    // small_config: dim 16, ffn 24; 32 divides neither
    let e = write_err(|_, _, _, d, _| *d = WeightDtype::INT8);
    assert_eq!(e, Error::InvalidGroupSize { group_size: 32 });
    // the int8 writer checks its input like the f16 one
    assert_eq!(
        write_err(|_, _, p, d, _| {
            *d = WeightDtype::Q8 {
                group_size: 8,
                scale: ScaleDtype::F16,
            };
            p[4][9] = f32::INFINITY;
        }),
        Error::NotRepresentable {
            index: 4,
            element: 9
        }
    );
}

#[test]
fn writer_rejects_bad_vocab_config_manifest() {
    assert!(matches!(
        write_err(|_, v, _, _, _| v.swap(3, 4)),
        Error::VocabNotSorted { index: 4 }
    ));
    assert!(matches!(
        write_err(|_, v, _, _, _| v[0] = '\u{1}'),
        Error::VocabNoEndOfText
    ));
    assert!(matches!(
        write_err(|_, v, _, _, _| {
            v.pop();
        }),
        Error::VocabSize { .. }
    ));
    assert!(matches!(
        write_err(|c, _, _, _, _| c.n_heads = 3),
        Error::InvalidConfig(_)
    ));
    assert!(matches!(
        write_err(|_, _, _, _, m| m.eval_loss = f32::INFINITY),
        Error::InvalidManifest(_)
    ));
}

// ---------------- parser: one test per error variant ----------------

#[test]
fn err_truncated() {
    let (_, _, _, b) = small();
    assert_eq!(
        parse_err(&b[..b.len() - 1]),
        Error::Truncated {
            needed: b.len() as u64,
            got: b.len() as u64 - 1
        }
    );
    assert_eq!(
        parse_err(&b[..20]),
        Error::Truncated {
            needed: 32,
            got: 20
        }
    );
}

#[test]
fn err_trailing_bytes() {
    let (_, _, _, mut b) = small();
    b.push(0);
    assert!(matches!(parse_err(&b), Error::TrailingBytes { .. }));
}

#[test]
fn err_bad_magic() {
    let (_, _, _, mut b) = small();
    b[0] = b'X';
    reseal(&mut b);
    assert_eq!(parse_err(&b), Error::BadMagic);
    assert_eq!(parse_err(b"GIF89a"), Error::BadMagic);
    assert_eq!(parse_err(b""), Error::Truncated { needed: 32, got: 0 });
}

#[test]
fn err_unsupported_version() {
    let (_, _, _, b) = small();
    let mut p = split(&b);
    p.version = 2;
    assert_eq!(parse_err(&assemble(&p)), Error::UnsupportedVersion(2));
}

#[test]
fn err_checksum_mismatch() {
    let (_, _, _, mut b) = small();
    let n = b.len();
    b[n - 10] ^= 1; // a weight bit
    assert!(matches!(parse_err(&b), Error::ChecksumMismatch { .. }));
}

#[test]
fn err_bad_layout() {
    let (_, _, _, mut b) = small();
    // data offset not aligned
    b[24] = b[24].wrapping_add(1);
    reseal(&mut b);
    assert!(matches!(parse_err(&b), Error::BadLayout(_)));
    // header longer than the data offset
    let (_, _, _, mut b) = small();
    b[12..16].copy_from_slice(&10_000u32.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(parse_err(&b), Error::BadLayout(_)));
}

#[test]
fn err_malformed_header() {
    let (_, _, _, mut b) = small();
    // header_len cut short: the directory does not decode
    let hl = u32::from_le_bytes(b[12..16].try_into().unwrap());
    b[12..16].copy_from_slice(&(hl - 3).to_le_bytes());
    reseal(&mut b);
    assert_eq!(parse_err(&b), Error::MalformedHeader);
    // extra bytes after the directory
    let (_, _, _, b) = small();
    let hl = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let doff = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
    if 32 + hl < doff {
        let mut b = b.clone();
        b[12..16].copy_from_slice(&((hl + 1) as u32).to_le_bytes());
        reseal(&mut b);
        assert_eq!(parse_err(&b), Error::MalformedHeader);
    }
}

fn mutate(f: impl FnOnce(&mut Parts)) -> Error {
    let (_, _, _, b) = small();
    let mut p = split(&b);
    f(&mut p);
    parse_err(&assemble(&p))
}

#[test]
fn err_invalid_config() {
    assert!(matches!(
        mutate(|p| p.config.n_heads = 5),
        Error::InvalidConfig(_)
    ));
    assert!(matches!(
        mutate(|p| p.config.ln_eps = f32::NAN),
        Error::InvalidConfig(_)
    ));
    assert!(matches!(
        mutate(|p| p.config.n_layers = 0),
        Error::InvalidConfig(_)
    ));
    assert!(matches!(
        mutate(|p| p.config.vocab_size = 1 << 20),
        Error::InvalidConfig(_)
    ));
    assert!(matches!(
        mutate(|p| p.config.n_layers = 17),
        Error::InvalidConfig(_)
    ));
}

#[test]
fn err_attn_scale_out_of_range() {
    // An attention scale of 3.4e38 would generate 0 characters and evaluate to NaN.
    for s in [3.4e38f32, 2.0, f32::INFINITY, 0.0, -0.125] {
        assert!(
            matches!(mutate(|p| p.config.attn_scale = s), Error::InvalidConfig(_)),
            "attn_scale {s}"
        );
    }
    // 1 (no scaling) is still a valid model
    let (_, _, _, b) = small();
    let mut p = split(&b);
    p.config.attn_scale = 1.0;
    assert!(blob::parse(&assemble(&p)).is_ok());
}

#[test]
fn err_invalid_manifest() {
    assert!(matches!(
        mutate(|p| p.eval_loss = f32::NEG_INFINITY),
        Error::InvalidManifest(_)
    ));
    assert!(matches!(
        mutate(|p| p.eval_loss_blob = -1.0),
        Error::InvalidManifest(_)
    ));
}

#[test]
fn err_vocab_size() {
    assert_eq!(
        mutate(|p| p.vocab.truncate(p.vocab.len() - 4)),
        Error::VocabSize {
            expected: 40,
            got: 39
        }
    );
    // 161 bytes: the message names the byte length (not "40 entries, config says 40")
    let e = mutate(|p| p.vocab.push(1));
    assert_eq!(e, Error::VocabBytes { len: 161 });
    assert_eq!(
        e.to_string(),
        "vocabulary is 161 bytes, not a multiple of 4 (one u32 code point per entry)"
    );
    assert_eq!(
        mutate(|p| p.vocab.truncate(p.vocab.len() - 4)).to_string(),
        "vocabulary has 39 entries, config says 40"
    );
}

#[test]
fn err_vocab_invalid_char() {
    let e = mutate(|p| p.vocab[4 * 7..4 * 8].copy_from_slice(&0xD800u32.to_le_bytes()));
    assert_eq!(
        e,
        Error::VocabInvalidChar {
            index: 7,
            value: 0xD800
        }
    );
    let e = mutate(|p| {
        let n = p.vocab.len();
        p.vocab[n - 4..].copy_from_slice(&0x110000u32.to_le_bytes())
    });
    assert!(matches!(e, Error::VocabInvalidChar { index: 39, .. }));
}

#[test]
fn err_vocab_not_sorted() {
    let e = mutate(|p| {
        let a = p.vocab[8..12].to_vec();
        let b = p.vocab[12..16].to_vec();
        p.vocab[8..12].copy_from_slice(&b);
        p.vocab[12..16].copy_from_slice(&a);
    });
    assert_eq!(e, Error::VocabNotSorted { index: 3 });
    // duplicates are not strictly sorted either
    let e = mutate(|p| {
        let a = p.vocab[8..12].to_vec();
        p.vocab[12..16].copy_from_slice(&a);
    });
    assert_eq!(e, Error::VocabNotSorted { index: 3 });
}

#[test]
fn err_vocab_no_end_of_text() {
    assert_eq!(mutate(|p| p.vocab[0] = 1), Error::VocabNoEndOfText);
}

#[test]
fn err_tensor_count() {
    assert_eq!(
        mutate(|p| p.n_tensors = 29),
        Error::TensorCount {
            expected: 32,
            got: 29
        }
    );
}

#[test]
fn err_tensor_name() {
    assert_eq!(
        mutate(|p| p.entries.swap(2, 3)),
        Error::TensorName { index: 2 }
    );
    assert_eq!(
        mutate(|p| p.entries[5].name = "blocks.0.attn.wx".into()),
        Error::TensorName { index: 5 }
    );
}

#[test]
fn err_tensor_shape() {
    // wq declared [C, 2C]: inconsistent with the config
    assert_eq!(
        mutate(|p| p.entries[4].shape = tinypoet_core::Shape::matrix(16, 32)),
        Error::TensorShape { index: 4 }
    );
    assert_eq!(
        mutate(|p| p.entries[2].shape = tinypoet_core::Shape::matrix(4, 4)),
        Error::TensorShape { index: 2 }
    );
}

#[test]
fn err_tensor_layout() {
    assert_eq!(
        mutate(|p| p.entries[4].layout = Layout::RowMajor),
        Error::TensorLayout { index: 4 }
    );
    assert_eq!(
        mutate(|p| p.entries[0].layout = Layout::Transposed),
        Error::TensorLayout { index: 0 }
    );
}

#[test]
fn err_tensor_size() {
    assert_eq!(
        mutate(|p| p.entries[6].nbytes -= 2),
        Error::TensorSize { index: 6 }
    );
    assert_eq!(
        mutate(|p| p.entries[6].dtype = Dtype::F32),
        Error::TensorSize { index: 6 }
    );
    // int8 group size must divide numel
    let e = mutate(|p| {
        p.entries[4].dtype = Dtype::Q8 {
            group_size: 7,
            scale: ScaleDtype::F16,
        }
    });
    assert_eq!(e, Error::TensorSize { index: 4 });
}

#[test]
fn err_tensor_misaligned() {
    assert_eq!(
        mutate(|p| p.entries[3].offset += 2),
        Error::TensorMisaligned { index: 3 }
    );
}

#[test]
fn err_tensor_overlap() {
    assert_eq!(
        mutate(|p| p.entries[3].offset = p.entries[2].offset),
        Error::TensorOverlap { index: 3 }
    );
}

#[test]
fn err_tensor_out_of_bounds() {
    let e = mutate(|p| {
        let last = p.entries.len() - 1;
        p.entries[last].offset += 64 * 1000;
    });
    assert_eq!(e, Error::TensorOutOfBounds { index: 31 });
    let e = mutate(|p| p.entries[31].offset = u64::MAX - 63);
    assert_eq!(e, Error::TensorOutOfBounds { index: 31 });
}

#[test]
fn err_non_finite() {
    let e = mutate(|p| {
        let off = p.entries[8].offset as usize;
        p.data[off + 2..off + 4].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
    });
    assert_eq!(
        e,
        Error::NonFinite {
            index: 8,
            element: 1
        }
    );
    let e = mutate(|p| {
        let off = p.entries[0].offset as usize;
        p.data[off..off + 2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    });
    assert_eq!(
        e,
        Error::NonFinite {
            index: 0,
            element: 0
        }
    );
}

fn small_int8() -> Vec<u8> {
    let cfg = small_config();
    let dtype = WeightDtype::Q8 {
        group_size: 8,
        scale: ScaleDtype::F16,
    };
    build_blob_dtype(
        &cfg,
        &make_vocab(cfg.vocab_size, 5),
        &random_params(&cfg, 3),
        manifest(),
        dtype,
    )
}

fn mutate_int8(f: impl FnOnce(&mut Parts)) -> Result<Model<'static>, Error> {
    let mut p = split(&small_int8());
    f(&mut p);
    let b: &'static [u8] = Box::leak(assemble(&p).into_boxed_slice());
    Model::load(b)
}

#[test]
fn err_int8_tensors() {
    assert!(mutate_int8(|_| {}).is_ok());
    // wq of layer 0: [16, 16], group 8 -> 256 values + 32 scales (f16) = 320 bytes
    let wq = 4;
    // a non-finite scale: the element number counts past the values
    let e = mutate_int8(|p| {
        let off = (p.entries[wq].offset + 256 + 2 * 3) as usize;
        p.data[off..off + 2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    });
    assert_eq!(
        e.err(),
        Some(Error::NonFinite {
            index: wq,
            element: 256 + 3
        })
    );
    let e = mutate_int8(|p| {
        let e = &mut p.entries[wq];
        e.dtype = Dtype::Q8 {
            group_size: 8,
            scale: ScaleDtype::F32,
        };
        e.nbytes = 256 + 4 * 32;
        let scales = e.offset as usize + 256;
        p.data.splice(scales..scales, [0u8; 64]);
        p.data[scales..scales + 128].fill(0);
        let off = scales + 4 * 31;
        p.data[off..off + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        for e in p.entries[wq + 1..].iter_mut() {
            e.offset += 64;
        }
    });
    assert_eq!(
        e.err(),
        Some(Error::NonFinite {
            index: wq,
            element: 256 + 31
        })
    );
    // any i8 value is valid, including -128
    assert!(mutate_int8(|p| {
        let off = p.entries[wq].offset as usize;
        p.data[off..off + 256].fill(0x80);
    })
    .is_ok());
    // group size that does not divide numel, or a wrong byte count
    let e = mutate_int8(|p| {
        p.entries[wq].dtype = Dtype::Q8 {
            group_size: 7,
            scale: ScaleDtype::F16,
        }
    });
    assert_eq!(e.err(), Some(Error::TensorSize { index: wq }));
    let e = mutate_int8(|p| p.entries[wq].nbytes -= 2);
    assert_eq!(e.err(), Some(Error::TensorSize { index: wq }));
    // an int8 vector may only be row-major (and the core does not run it at all)
    let e = mutate_int8(|p| p.entries[2].layout = Layout::Transposed);
    assert_eq!(e.err(), Some(Error::TensorLayout { index: 2 }));
}

#[test]
fn err_int8_tensors_that_parse_but_do_not_run() {
    let unsupported = |r: Result<Model, Error>, index| match r {
        Err(Error::UnsupportedTensor { index: i, reason }) => {
            assert_eq!(i, index, "{reason}");
            reason
        }
        other => panic!("expected UnsupportedTensor {{ index: {index} }}, got {other:?}"),
    };
    // int8 Linear weight stored transposed: valid v1, not runnable
    let r = unsupported(mutate_int8(|p| p.entries[4].layout = Layout::Transposed), 4);
    assert!(r.contains("row-major"));
    // group 16 for wq while the others use 8 (16 divides its rows; same byte count class)
    let r = unsupported(
        mutate_int8(|p| {
            p.entries[4].dtype = Dtype::Q8 {
                group_size: 16,
                scale: ScaleDtype::F16,
            };
            p.entries[4].nbytes = 256 + 16 * 2;
            // the old scales' tail is now padding: zero
            let at = p.entries[4].offset as usize;
            p.data[at + 256 + 32..at + 256 + 64].fill(0);
        }),
        4,
    );
    assert!(r.contains("one group size"));
    // group 2: divides numel (parses) but is not a multiple of 4
    let r = unsupported(
        mutate_int8(|p| {
            p.entries[4].dtype = Dtype::Q8 {
                group_size: 2,
                scale: ScaleDtype::F16,
            };
            p.entries[4].nbytes = 256 + 128 * 2;
            let at = (p.entries[4].offset + 320) as usize;
            p.data.splice(at..at, [0u8; 256]);
            for e in p.entries[5..].iter_mut() {
                e.offset += 256;
            }
        }),
        4,
    );
    assert!(r.contains("multiple of 4"));
    // an int8 bias: ln1.bias [16] as 16 values + 2 scales
    let r = unsupported(
        mutate_int8(|p| {
            p.entries[3].dtype = Dtype::Q8 {
                group_size: 8,
                scale: ScaleDtype::F16,
            };
            p.entries[3].nbytes = 16 + 4;
            let at = p.entries[3].offset as usize;
            p.data[at + 20..at + 32].fill(0);
        }),
        3,
    );
    assert!(r.contains("vectors"));
    // f32 stays reserved
    let (_, _, _, b) = small();
    let mut p = split(&b);
    p.entries[3].dtype = Dtype::F32;
    p.entries[3].nbytes = 64;
    let off = p.entries[3].offset as usize;
    p.data[off..off + 64].fill(0);
    let mut b = assemble(&p);
    assert!(blob::parse(&b).is_ok());
    reseal(&mut b);
    assert!(matches!(Model::load(&b), Err(Error::Unsupported(_))));
}

#[test]
fn err_buffer_size() {
    let (cfg, _, _, b) = small();
    let m = Model::load(&b).unwrap();
    let need = state_words(&cfg, KvPrecision::F16);
    for n in [0, need - 1, need + 1] {
        let mut buf = vec![0f32; n];
        assert_eq!(
            Decoder::new(&m, &mut buf, KvPrecision::F16).err(),
            Some(Error::BufferSize {
                expected: need,
                got: n
            })
        );
    }
    let mut buf = vec![0f32; need];
    assert!(Decoder::new(&m, &mut buf, KvPrecision::F32).is_err());
}

#[test]
fn err_token_out_of_range_and_empty_input() {
    let (cfg, _, _, b) = small();
    let m = Model::load(&b).unwrap();
    let mut buf = vec![0f32; state_words(&cfg, KvPrecision::F16)];
    let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    assert_eq!(
        d.feed(40).err(),
        Some(Error::TokenOutOfRange {
            token: 40,
            vocab_size: 40
        })
    );
    assert_eq!(d.position(), 0, "a rejected token changes nothing");
    assert_eq!(d.prefill(&[]).err(), Some(Error::EmptyInput));
    assert_eq!(
        d.prefill(&[1, 2, 99]).err(),
        Some(Error::TokenOutOfRange {
            token: 99,
            vocab_size: 40
        })
    );
}

// ---------------- truncations and random corruptions ----------------

#[test]
fn every_truncation_is_rejected() {
    let (_, _, _, b) = small();
    for n in 0..b.len() {
        let e = blob::parse(&b[..n]).expect_err("truncated blob accepted");
        assert!(matches!(e, Error::Truncated { .. }), "len {n}: {e:?}");
    }
    // ... and also when the length field and checksum are re-sealed after cutting: then the
    // error says which part the cut reached (the prefix, the header and padding up to the data,
    // or the tensors)
    let data_offset = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
    let mut kinds = std::collections::BTreeMap::new();
    for n in 0..b.len() {
        let mut c = b[..n].to_vec();
        reseal(&mut c);
        let e = blob::parse(&c).expect_err("re-sealed truncated blob accepted");
        let ok = match n {
            // the CRC of a blob shorter than the prefix lands on the magic
            _ if n < blob::PREFIX_LEN => matches!(e, Error::Truncated { .. } | Error::BadMagic),
            _ if n < data_offset + blob::CRC_LEN => matches!(e, Error::BadLayout(_)),
            _ => matches!(e, Error::TensorOutOfBounds { .. }),
        };
        assert!(ok, "re-sealed truncation to {n} bytes: {e:?}");
        *kinds
            .entry(
                format!("{e:?}")
                    .split([' ', '('])
                    .next()
                    .unwrap()
                    .to_string(),
            )
            .or_insert(0) += 1;
    }
    eprintln!(
        "re-sealed truncations of a {}-byte blob (data at {data_offset}): {kinds:?}",
        b.len()
    );
}

#[test]
fn a_model_slot_is_reused_and_an_error_leaves_no_model() {
    let (_, _, _, f16) = small();
    let int8 = small_int8();
    let mut cut = f16.clone();
    cut.truncate(f16.len() / 2);
    reseal(&mut cut);
    let mut slot = ModelSlot::new();
    for (b, want) in [(&f16, None), (&int8, Some(8)), (&cut, None), (&f16, None)] {
        match Model::load_in(&mut slot, b) {
            Ok(m) => assert_eq!(m.q8_group(), want),
            Err(e) => {
                assert!(std::ptr::eq(b, &cut), "{e:?}");
                assert_eq!(Some(e), Model::load(b).err());
            }
        }
    }
    // the slot's model is the one loaded last: the same as a model loaded by value
    let by_value = Model::load(&f16).unwrap();
    let in_place = Model::load_in(&mut slot, &f16).unwrap();
    assert_eq!(format!("{in_place:?}"), format!("{by_value:?}"));
}

#[test]
fn twelve_thousand_resealed_random_corruptions_never_panic() {
    let (cfg, _, _, b) = small();
    resealed_random_corruptions(&cfg, &b, 0xC0FFEE);
}

#[test]
fn twelve_thousand_resealed_random_corruptions_of_an_int8_blob_never_panic() {
    resealed_random_corruptions(&small_config(), &small_int8(), 0xBEEF);
}

fn resealed_random_corruptions(cfg: &Config, b: &[u8], seed: u64) {
    let hl = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let mut rng = TestRng::new(seed);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    let mut state = vec![0f32; 1 << 16];
    const N: usize = 12_000;
    for i in 0..N {
        let mut c = b.to_vec();
        let n_mut = 1 + rng.below(4);
        for _ in 0..n_mut {
            if c.is_empty() {
                break;
            }
            match rng.below(10) {
                // most mutations hit the prefix + header, where the structure lives
                0..=5 => {
                    let at = rng.below((32 + hl).min(c.len()));
                    c[at] = match rng.below(3) {
                        0 => c[at] ^ (1 << rng.below(8)),
                        1 => rng.below(256) as u8,
                        _ => [0u8, 0xFF, 0x7F, 0x80][rng.below(4)],
                    };
                }
                6..=7 => {
                    let at = rng.below(c.len());
                    c[at] ^= 1 << rng.below(8);
                }
                8 => {
                    let n = rng.below(c.len());
                    c.truncate(n);
                }
                _ => {
                    let at = rng.below(c.len());
                    let extra = rng.below(70);
                    for _ in 0..extra {
                        c.insert(at, rng.below(256) as u8);
                    }
                }
            }
        }
        reseal(&mut c);
        // Loading in place accepts and rejects exactly what loading by value does.
        let mut slot = ModelSlot::new();
        let in_place = Model::load_in(&mut slot, &c);
        let key = match Model::load(&c) {
            Ok(m) => {
                // Valid after all (e.g. a changed weight or recipe byte): it must run, and the
                // model loaded in place gives the same logits.
                let m_in = in_place.expect("load accepts the blob, load_in rejects it");
                let words = state_words(m.config(), KvPrecision::F16);
                if words <= state.len() {
                    let t = (i % m.config().vocab_size) as u16;
                    let mut feed = |m: &Model| {
                        let mut d = Decoder::new(m, &mut state[..words], KvPrecision::F16).unwrap();
                        d.feed(t).unwrap().to_vec()
                    };
                    let l = feed(&m);
                    assert_eq!(l.len(), m.config().vocab_size);
                    let same_bits = |a: &[f32], b: &[f32]| {
                        a.iter()
                            .map(|x| x.to_bits())
                            .eq(b.iter().map(|x| x.to_bits()))
                    };
                    assert!(same_bits(&l, &feed(m_in)), "load_in: other logits");
                }
                "Ok".to_string()
            }
            Err(e) => {
                assert_eq!(in_place.err(), Some(e), "load_in: another outcome");
                format!("{e:?}")
                    .split([' ', '('])
                    .next()
                    .unwrap()
                    .to_string()
            }
        };
        *outcomes.entry(key).or_insert(0) += 1;
    }
    eprintln!(
        "{N} re-sealed corruptions of a {}-byte blob (config {:?}): {outcomes:#?}",
        b.len(),
        cfg.n_layers
    );
    // some corruptions leave a valid blob (a changed weight or recipe byte): those must run,
    // so the feed above has to have been exercised
    assert!(
        outcomes.get("Ok").is_some_and(|&n| n > 0),
        "no corruption produced a loadable blob: the run path went untested"
    );
    assert!(
        !outcomes.contains_key("ChecksumMismatch"),
        "checksum was re-sealed"
    );
    assert!(
        outcomes.len() >= 8,
        "structural checks should see many kinds of damage"
    );
}

#[test]
fn err_non_zero_padding() {
    // The format specifies zero padding: a non-zero byte there is an error.
    let (_, _, _, b) = small();
    let doff = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
    let hl = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    assert!(32 + hl < doff, "the small blob has header padding");
    // between the header and the data region
    let mut c = b.clone();
    c[doff - 1] = 0x20;
    reseal(&mut c);
    assert_eq!(
        parse_err(&c),
        Error::NonZeroPadding {
            offset: doff as u64 - 1
        }
    );
    // between two tensors
    let p = split(&b);
    let i = (1..p.entries.len())
        .find(|&i| p.entries[i].offset > p.entries[i - 1].offset + p.entries[i - 1].nbytes)
        .expect("a gap between tensors");
    let gap = (p.entries[i].offset - 1) as usize;
    let mut q = split(&b);
    q.data[gap] = 1;
    assert_eq!(
        parse_err(&assemble(&q)),
        Error::NonZeroPadding {
            offset: (doff + gap) as u64
        }
    );
    // after the last tensor (zeros there are padding, as before)
    let mut q = split(&b);
    q.data.extend([0, 0, 0]);
    assert!(blob::parse(&assemble(&q)).is_ok());
    q.data[p.data.len() + 2] = 0xFF;
    assert_eq!(
        parse_err(&assemble(&q)),
        Error::NonZeroPadding {
            offset: (doff + p.data.len() + 2) as u64
        }
    );
    // between an int8 tensor's values and its scales: head.bias [42] as int8 groups of 2
    // (valid v1, not run by this core) has 42 values, 2 padding bytes, 21 f16 scales
    let cfg = Config {
        vocab_size: 42,
        ..small_config()
    };
    let b = build_blob_with(
        &cfg,
        &make_vocab(42, 5),
        &random_params(&cfg, 4),
        manifest(),
    );
    let with_pad = |pad: [u8; 2]| {
        let mut p = split(&b);
        let last = p.entries.len() - 1;
        let off = p.entries[last].offset as usize;
        p.entries[last].dtype = Dtype::Q8 {
            group_size: 2,
            scale: ScaleDtype::F16,
        };
        p.entries[last].nbytes = 42 + 2 + 21 * 2;
        p.data.truncate(off);
        p.data.extend((0..42).map(|i| i as u8));
        p.data.extend(pad);
        p.data.extend([0x00, 0x3C].repeat(21)); // scales 1.0
        (doff_of(&assemble(&p)) + off, assemble(&p))
    };
    let (_, ok) = with_pad([0, 0]);
    assert!(blob::parse(&ok).is_ok());
    let (at, bad) = with_pad([0, 7]);
    assert_eq!(
        parse_err(&bad),
        Error::NonZeroPadding {
            offset: (at + 43) as u64
        }
    );
}

fn doff_of(b: &[u8]) -> usize {
    u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize
}
