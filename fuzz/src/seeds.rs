//! The fuzz seed corpus (`fuzz/seeds/`): small valid blobs and deterministic structure-aware
//! mutations of them, each re-sealed (length field and CRC-32), so that the parser's structural
//! checks and not the checksum meet the damage. Used by `make_seeds` (writes and `--check`s the
//! directory) and by the core's test `core/tests/fuzz_seeds.rs` (includes this file by path),
//! which runs every committed seed through `Model::load` and asserts the outcome stated here.
//!
//! Every [`Seed`] states its expected outcome by hand, from the format's rules (crate docs,
//! "Blob format v1"), not by running the parser: `"Ok"`, or a prefix of the `Debug` text of the
//! error `Model::load` must return (e.g. `"TensorName { index: 2 }"`, or just `"InvalidConfig"`).
//! The file name is `BASE.WHAT.OUTCOME.tpb`: which valid blob, what was changed, and the error
//! variant (or `Ok`).
#![allow(clippy::type_complexity)]

use super::blob_parts::{assemble, header_bytes, reseal, rhyme_section, split, Parts};
use tinypoet_core::blob::{self, BlobInput, Dtype, Layout, RhymeTable, ScaleDtype, WeightDtype};
use tinypoet_core::{tensor_specs, Config, Manifest, Shape};

/// One seed file.
pub struct Seed {
    /// File name: `BASE.WHAT.OUTCOME.tpb`.
    pub name: String,
    /// The blob (re-sealed).
    pub bytes: Vec<u8>,
    /// `"Ok"` or a prefix of the error's `Debug` text.
    pub expect: String,
}

/// The outcome of loading a blob as the seeds state it: `"Ok"` or the error's `Debug` text.
pub fn outcome<T>(r: &Result<T, tinypoet_core::Error>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => format!("{e:?}"),
    }
}

/// Whether `got` (from [`outcome`]) is what `expect` states.
pub fn matches(expect: &str, got: &str) -> bool {
    if expect == "Ok" {
        got == "Ok"
    } else {
        got.starts_with(expect)
    }
}

/// A valid base blob and its name.
pub struct Base {
    /// e.g. `f16_v6_l1`, `q8g4_v12_l2_rhyme`.
    pub name: &'static str,
    /// The blob.
    pub bytes: Vec<u8>,
}

/// Small valid blobs: each config as f16 and as int8 (groups of 4 with f16 scales, and of 8
/// with f32 scales where the rows allow it), and two with a rhyme section.
pub fn bases() -> Vec<Base> {
    let int8 = |g| WeightDtype::Q8 {
        group_size: g,
        scale: if g == 4 {
            ScaleDtype::F16
        } else {
            ScaleDtype::F32
        },
    };
    let mut out = vec![];
    for (i, (name, (v, c, h, l, t, f), dtype)) in [
        ("f16_v6_l1", (6, 4, 1, 1, 4, 4), WeightDtype::F16),
        ("f16_v9_l1", (9, 8, 2, 1, 8, 8), WeightDtype::F16),
        ("f16_v12_l2", (12, 8, 4, 2, 6, 16), WeightDtype::F16),
        ("q8g4_v6_l1", (6, 4, 1, 1, 4, 4), int8(4)),
        ("q8g8s32_v9_l1", (9, 8, 2, 1, 8, 8), int8(8)),
        ("q8g4_v12_l2", (12, 8, 4, 2, 6, 16), int8(4)),
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = Config {
            vocab_size: v,
            dim: c,
            n_heads: h,
            n_layers: l,
            context: t,
            ffn_dim: f,
            ln_eps: 1e-5,
            attn_scale: 0.5,
        };
        let mut vocab = vec!['\0', '\n'];
        vocab.extend(
            ['a', 'b', '春', '夜', '喜', '雨', '𠀀', '𠀁', '𠀂', '𠀃']
                .into_iter()
                .take(v - 2),
        );
        vocab.sort();
        // weights uniform in [-0.5, 0.5) from an LCG: no zero bytes to speak of, so a tensor
        // moved into padding shows
        let mut s = 1u32 + i as u32;
        let params: Vec<Vec<f32>> = tensor_specs(&cfg)
            .map(|sp| {
                (0..sp.shape.numel())
                    .map(|_| {
                        s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                        (s >> 8) as f32 / (1 << 24) as f32 - 0.5
                    })
                    .collect()
            })
            .collect();
        let tensors: Vec<&[f32]> = params.iter().map(|t| t.as_slice()).collect();
        let m = Manifest {
            steps: 7,
            eval_loss: 3.5,
            eval_loss_blob: f32::NAN,
            corpus_sha256: [1; 32],
            recipe: "seed",
        };
        let input = BlobInput {
            config: cfg,
            vocab: &vocab,
            manifest: m,
            dtype,
            tensors: &tensors,
        };
        let mut b = vec![0u8; blob::encoded_len(&input).unwrap()];
        blob::write(&input, &mut b).unwrap();
        out.push(Base { name, bytes: b });
    }
    for (from, name) in [
        ("f16_v6_l1", "f16_v6_l1_rhyme"),
        ("q8g4_v12_l2", "q8g4_v12_l2_rhyme"),
    ] {
        let b = &out.iter().find(|b| b.name == from).unwrap().bytes;
        let parsed = blob::parse(b).unwrap();
        let t = OwnedRhyme::small(parsed.config.vocab_size);
        let mut o = vec![0u8; blob::with_rhyme_table_len(&parsed, Some(&t.table())).unwrap()];
        blob::with_rhyme_table(&parsed, Some(&t.table()), &mut o).unwrap();
        out.push(Base { name, bytes: o });
    }
    out
}

/// A rhyme table by value, to mutate before encoding.
#[derive(Clone)]
pub struct OwnedRhyme {
    pub source: String,
    pub n_groups: u8,
    pub group_names: String,
    pub level_groups: u128,
    pub token_sets: Vec<u16>,
    pub sets: Vec<u128>,
    /// Bytes appended to `sets` (to make it not whole 16-byte masks).
    pub sets_tail: Vec<u8>,
    /// Bytes appended to `token_sets`.
    pub token_sets_tail: Vec<u8>,
}

impl OwnedRhyme {
    /// 3 groups (two level), sets {}, {0}, {1, 2}; tokens cycle through the sets.
    pub fn small(vocab_size: usize) -> Self {
        OwnedRhyme {
            source: "seed table".into(),
            n_groups: 3,
            group_names: "一東\n二冬\n三江".into(),
            level_groups: 0b011,
            token_sets: (0..vocab_size).map(|i| (i % 3) as u16).collect(),
            sets: vec![0, 1 << 0, (1 << 1) | (1 << 2)],
            sets_tail: vec![],
            token_sets_tail: vec![],
        }
    }

    fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let mut ts: Vec<u8> = self
            .token_sets
            .iter()
            .flat_map(|i| i.to_le_bytes())
            .collect();
        ts.extend(&self.token_sets_tail);
        let mut sets: Vec<u8> = self.sets.iter().flat_map(|s| s.to_le_bytes()).collect();
        sets.extend(&self.sets_tail);
        (ts, sets)
    }

    /// The encoded section (variant 0 and the table).
    pub fn section(&self) -> Vec<u8> {
        let (ts, sets) = self.bytes();
        rhyme_section(&RhymeTable {
            source: &self.source,
            n_groups: self.n_groups,
            group_names: &self.group_names,
            level_groups: self.level_groups.to_le_bytes(),
            token_sets: &ts,
            sets: &sets,
        })
    }

    /// The table, for the writer (leaks the byte arrays: a host tool, called a few times).
    pub fn table(&self) -> RhymeTable<'static> {
        let (ts, sets) = self.bytes();
        RhymeTable {
            source: Box::leak(self.source.clone().into_boxed_str()),
            n_groups: self.n_groups,
            group_names: Box::leak(self.group_names.clone().into_boxed_str()),
            level_groups: self.level_groups.to_le_bytes(),
            token_sets: Box::leak(ts.into_boxed_slice()),
            sets: Box::leak(sets.into_boxed_slice()),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}
fn u64_at(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// Collects seeds for one base.
struct Gen<'a> {
    base: &'a Base,
    out: &'a mut Vec<Seed>,
}

impl Gen<'_> {
    fn push(&mut self, what: &str, bytes: Vec<u8>, expect: &str) {
        let variant = expect.split([' ', '(']).next().unwrap();
        // two ways to the same bytes (e.g. two edges at one offset): keep the first
        if let Some(s) = self.out.iter().find(|s| s.bytes == bytes) {
            assert_eq!(s.expect, expect, "{} and {what}: same bytes", s.name);
            return;
        }
        self.out.push(Seed {
            name: format!("{}.{what}.{variant}.tpb", self.base.name),
            bytes,
            expect: expect.into(),
        });
    }
    /// Change the prefix or any byte in place, then re-seal.
    fn raw(&mut self, what: &str, expect: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut b = self.base.bytes.clone();
        f(&mut b);
        reseal(&mut b);
        self.push(what, b, expect);
    }
    /// Change a decoded field, then re-encode (header re-padded, re-sealed).
    fn parts(&mut self, what: &str, expect: &str, f: impl FnOnce(&mut Parts)) {
        let mut p = split(&self.base.bytes);
        f(&mut p);
        self.push(what, assemble(&p), expect);
    }
    /// Cut to `n` bytes, then re-seal (the last 4 bytes kept become the CRC).
    fn cut(&mut self, what: &str, n: usize, expect: &str) {
        let mut b = self.base.bytes[..n].to_vec();
        reseal(&mut b);
        self.push(&format!("cut{n}_{what}"), b, expect);
    }
}

/// Edges of a blob's sections: (name, offset in the blob).
fn header_edges(b: &[u8], all_entries: bool) -> Vec<(String, usize)> {
    let p = split(b);
    let hl = u32_at(b, 12);
    let head_len = {
        let q = Parts {
            entries: vec![],
            sections: vec![],
            ..p.clone()
        };
        header_bytes(&q).len()
    };
    let mut edges = vec![("head_end".to_string(), 32 + head_len)];
    let mut at = 32 + head_len;
    let last = p.entries.len() - 1;
    for (i, e) in p.entries.iter().enumerate() {
        let q = Parts {
            entries: vec![e.clone()],
            sections: vec![],
            ..p.clone()
        };
        at += header_bytes(&q).len() - head_len;
        if all_entries || i == 0 || i == last {
            edges.push((format!("entry{i}_end"), at));
        }
    }
    if !p.sections.is_empty() {
        edges.push(("sections_start".into(), at));
    }
    edges.push(("header_end".into(), 32 + hl));
    edges.push(("data_start".into(), u64_at(b, 24)));
    edges
}

/// All seeds, in a fixed order.
pub fn seeds() -> Vec<Seed> {
    let mut out = vec![];
    for base in bases() {
        // every family on the two smallest blobs; on the others what depends on their shape
        let full = matches!(base.name, "f16_v6_l1" | "q8g4_v6_l1");
        let mut g = Gen {
            base: &base,
            out: &mut out,
        };
        g.push("valid", base.bytes.clone(), "Ok");
        prefix(&mut g, full);
        if full {
            head(&mut g);
        }
        directory(&mut g, full);
        data(&mut g);
        truncations(&mut g, full);
        if base.name.starts_with("q8") {
            int8(&mut g);
        }
        if base.name.ends_with("_rhyme") {
            rhyme(&mut g);
        }
    }
    out
}

/// The fixed 32-byte prefix: magic, version, header_len, data_offset (total_len is re-sealed).
fn prefix(g: &mut Gen, full: bool) {
    let b = &g.base.bytes;
    let (hl, doff) = (u32_at(b, 12), u64_at(b, 24));
    let pad = doff - 32 - hl;
    g.raw("magic0", "BadMagic", |b| b[0] = b'X');
    g.raw("version2", "UnsupportedVersion(2)", |b| b[8] = 2);
    g.raw("header_len_minus1", "MalformedHeader", |b| {
        b[12..16].copy_from_slice(&(hl as u32 - 1).to_le_bytes())
    });
    // one more header byte: a zero from the padding, read as a section of variant 0 that ends
    // at once (or, without padding, a header running into the data region)
    let expect = if pad >= 1 {
        "MalformedHeader"
    } else {
        "BadLayout"
    };
    g.raw("header_len_plus1", expect, |b| {
        b[12..16].copy_from_slice(&(hl as u32 + 1).to_le_bytes())
    });
    g.raw("data_offset_plus1", "BadLayout", |b| {
        b[24..32].copy_from_slice(&(doff as u64 + 1).to_le_bytes())
    });
    if !full {
        return;
    }
    g.raw("magic7", "BadMagic", |b| b[7] ^= 0x20);
    g.raw("version0", "UnsupportedVersion(0)", |b| b[8] = 0);
    g.raw("version_max", "UnsupportedVersion(4294967295)", |b| {
        b[8..12].fill(0xFF)
    });
    g.raw("header_len0", "MalformedHeader", |b| b[12..16].fill(0));
    g.raw("header_len_max", "BadLayout", |b| b[12..16].fill(0xFF));
    // the header taking in all its padding: 22 zero bytes decode as an (empty, invalid) rhyme
    // section: variant 0, source "", n_groups 0, names "", 16 level bytes, no sets
    let expect = match pad {
        0 => "Ok",
        1..=21 => "MalformedHeader",
        _ => "InvalidRhymeTable",
    };
    g.raw("header_len_to_data", expect, |b| {
        b[12..16].copy_from_slice(&((doff - 32) as u32).to_le_bytes())
    });
    g.raw("data_offset_minus64", "BadLayout", |b| {
        b[24..32].copy_from_slice(&(doff as u64 - 64).to_le_bytes())
    });
    g.raw("data_offset0", "BadLayout", |b| b[24..32].fill(0));
    g.raw("data_offset_past_end", "BadLayout", |b| {
        let past = (b.len() as u64).div_ceil(64) * 64;
        b[24..32].copy_from_slice(&past.to_le_bytes())
    });
    g.raw("data_offset_max", "BadLayout", |b| {
        b[24..32].copy_from_slice(&(!63u64).to_le_bytes())
    });
}

/// The header head: config, vocabulary, manifest, tensor count.
fn head(g: &mut Gen) {
    let p0 = split(&g.base.bytes);
    let c = p0.config;
    let v = c.vocab_size;
    // config fields (Config::validate, then what the other fields imply)
    let cfg_cases: Vec<(&str, String, Box<dyn Fn(&mut Config)>)> = vec![
        (
            "vocab_size0",
            "InvalidConfig".into(),
            Box::new(|c| c.vocab_size = 0),
        ),
        (
            "vocab_size_65537",
            "InvalidConfig".into(),
            Box::new(|c| c.vocab_size = 65537),
        ),
        (
            "vocab_size_plus1",
            format!("VocabSize {{ expected: {}, got: {v} }}", v + 1),
            Box::new(|c| c.vocab_size += 1),
        ),
        (
            "vocab_size_minus1",
            format!("VocabSize {{ expected: {}, got: {v} }}", v - 1),
            Box::new(|c| c.vocab_size -= 1),
        ),
        ("dim0", "InvalidConfig".into(), Box::new(|c| c.dim = 0)),
        (
            "dim_16385",
            "InvalidConfig".into(),
            Box::new(|c| c.dim = 16385),
        ),
        // still divisible by n_heads: tok_emb's shape is the first to disagree
        (
            "dim_plus_heads",
            "TensorShape { index: 0 }".into(),
            Box::new(|c| c.dim += c.n_heads),
        ),
        (
            "n_heads0",
            "InvalidConfig".into(),
            Box::new(|c| c.n_heads = 0),
        ),
        (
            "n_heads_dim_plus1",
            "InvalidConfig".into(),
            Box::new(|c| c.n_heads = c.dim + 1),
        ),
        // head size 1: no tensor shape depends on the head count, so still a valid model
        (
            "n_heads_eq_dim",
            "Ok".into(),
            Box::new(|c| c.n_heads = c.dim),
        ),
        (
            "n_layers0",
            "InvalidConfig".into(),
            Box::new(|c| c.n_layers = 0),
        ),
        (
            "n_layers17",
            "InvalidConfig".into(),
            Box::new(|c| c.n_layers = 17),
        ),
        (
            "n_layers_plus1",
            format!(
                "TensorCount {{ expected: {}, got: {} }}",
                p0.n_tensors + 13,
                p0.n_tensors
            ),
            Box::new(|c| c.n_layers += 1),
        ),
        (
            "context0",
            "InvalidConfig".into(),
            Box::new(|c| c.context = 0),
        ),
        (
            "context_32769",
            "InvalidConfig".into(),
            Box::new(|c| c.context = 32769),
        ),
        (
            "context_plus1",
            "TensorShape { index: 1 }".into(),
            Box::new(|c| c.context += 1),
        ),
        (
            "ffn_dim0",
            "InvalidConfig".into(),
            Box::new(|c| c.ffn_dim = 0),
        ),
        (
            "ffn_dim_plus1",
            "TensorShape { index: 11 }".into(),
            Box::new(|c| c.ffn_dim += 1),
        ),
        (
            "ln_eps_nan",
            "InvalidConfig".into(),
            Box::new(|c| c.ln_eps = f32::NAN),
        ),
        (
            "ln_eps0",
            "InvalidConfig".into(),
            Box::new(|c| c.ln_eps = 0.0),
        ),
        (
            "ln_eps_neg",
            "InvalidConfig".into(),
            Box::new(|c| c.ln_eps = -1e-5),
        ),
        (
            "ln_eps_inf",
            "InvalidConfig".into(),
            Box::new(|c| c.ln_eps = f32::INFINITY),
        ),
        ("ln_eps_1e-3", "Ok".into(), Box::new(|c| c.ln_eps = 1e-3)),
        (
            "attn_scale_3.4e38",
            "InvalidConfig".into(),
            Box::new(|c| c.attn_scale = 3.4e38),
        ),
        (
            "attn_scale2",
            "InvalidConfig".into(),
            Box::new(|c| c.attn_scale = 2.0),
        ),
        (
            "attn_scale_above1",
            "InvalidConfig".into(),
            Box::new(|c| c.attn_scale = f32::from_bits(1f32.to_bits() + 1)),
        ),
        (
            "attn_scale_inf",
            "InvalidConfig".into(),
            Box::new(|c| c.attn_scale = f32::INFINITY),
        ),
        (
            "attn_scale_nan",
            "InvalidConfig".into(),
            Box::new(|c| c.attn_scale = f32::NAN),
        ),
        (
            "attn_scale0",
            "InvalidConfig".into(),
            Box::new(|c| c.attn_scale = 0.0),
        ),
        (
            "attn_scale_neg",
            "InvalidConfig".into(),
            Box::new(|c| c.attn_scale = -0.125),
        ),
        ("attn_scale1", "Ok".into(), Box::new(|c| c.attn_scale = 1.0)),
        (
            "attn_scale_min_positive",
            "Ok".into(),
            Box::new(|c| c.attn_scale = f32::MIN_POSITIVE),
        ),
    ];
    for (what, expect, f) in cfg_cases {
        g.parts(&format!("config.{what}"), &expect, |p| f(&mut p.config));
    }
    // vocabulary bytes (u32 LE code points)
    let set = |p: &mut Parts, i: usize, cp: u32| {
        p.vocab[4 * i..4 * i + 4].copy_from_slice(&cp.to_le_bytes())
    };
    let vocab_cases: Vec<(&str, String, Box<dyn Fn(&mut Parts)>)> = vec![
        (
            "drop_last",
            format!("VocabSize {{ expected: {v}, got: {} }}", v - 1),
            Box::new(|p| p.vocab.truncate(p.vocab.len() - 4)),
        ),
        (
            "append_entry",
            format!("VocabSize {{ expected: {v}, got: {} }}", v + 1),
            Box::new(|p| p.vocab.extend(0x10FFFFu32.to_le_bytes())),
        ),
        (
            "append_byte",
            format!("VocabBytes {{ len: {} }}", 4 * v + 1),
            Box::new(|p| p.vocab.push(0)),
        ),
        (
            "drop_byte",
            format!("VocabBytes {{ len: {} }}", 4 * v - 1),
            Box::new(|p| {
                p.vocab.pop();
            }),
        ),
        (
            "empty",
            format!("VocabSize {{ expected: {v}, got: 0 }}"),
            Box::new(|p| p.vocab.clear()),
        ),
        (
            "entry0_not_nul",
            "VocabNoEndOfText".into(),
            Box::new(move |p| set(p, 0, 1)),
        ),
        (
            "entry3_surrogate",
            "VocabInvalidChar { index: 3, value: 55296 }".into(),
            Box::new(move |p| set(p, 3, 0xD800)),
        ),
        (
            "last_above_max",
            format!("VocabInvalidChar {{ index: {}, value: 1114112 }}", v - 1),
            Box::new(move |p| set(p, v - 1, 0x110000)),
        ),
        (
            "swap2_3",
            "VocabNotSorted { index: 3 }".into(),
            Box::new(|p| {
                let (a, b) = (p.vocab[8..12].to_vec(), p.vocab[12..16].to_vec());
                p.vocab[8..12].copy_from_slice(&b);
                p.vocab[12..16].copy_from_slice(&a);
            }),
        ),
        (
            "entry1_nul",
            "VocabNotSorted { index: 1 }".into(),
            Box::new(move |p| set(p, 1, 0)),
        ),
        (
            "duplicate3",
            "VocabNotSorted { index: 3 }".into(),
            Box::new(|p| {
                let a = p.vocab[8..12].to_vec();
                p.vocab[12..16].copy_from_slice(&a);
            }),
        ),
        // a different but valid vocabulary
        (
            "last_max_char",
            "Ok".into(),
            Box::new(move |p| set(p, v - 1, 0x10FFFF)),
        ),
    ];
    for (what, expect, f) in vocab_cases {
        g.parts(&format!("vocab.{what}"), &expect, |p| f(p));
    }
    // manifest: losses NaN (unknown) or finite >= 0; the rest is free
    let man_cases: Vec<(&str, &str, Box<dyn Fn(&mut Parts)>)> = vec![
        (
            "eval_loss_neg_inf",
            "InvalidManifest",
            Box::new(|p| p.eval_loss = f32::NEG_INFINITY),
        ),
        (
            "eval_loss_inf",
            "InvalidManifest",
            Box::new(|p| p.eval_loss = f32::INFINITY),
        ),
        (
            "eval_loss_neg",
            "InvalidManifest",
            Box::new(|p| p.eval_loss = -1.0),
        ),
        (
            "eval_loss_blob_inf",
            "InvalidManifest",
            Box::new(|p| p.eval_loss_blob = f32::INFINITY),
        ),
        (
            "eval_loss_blob_neg",
            "InvalidManifest",
            Box::new(|p| p.eval_loss_blob = -0.5),
        ),
        ("eval_loss_nan", "Ok", Box::new(|p| p.eval_loss = f32::NAN)),
        ("eval_loss_neg_zero", "Ok", Box::new(|p| p.eval_loss = -0.0)),
        ("steps_max", "Ok", Box::new(|p| p.steps = u64::MAX)),
        ("recipe_empty", "Ok", Box::new(|p| p.recipe.clear())),
        (
            "recipe_300_chars",
            "Ok",
            Box::new(|p| p.recipe = "春".repeat(100)),
        ),
        ("sha_zero", "Ok", Box::new(|p| p.sha = [0; 32])),
    ];
    for (what, expect, f) in man_cases {
        g.parts(&format!("manifest.{what}"), expect, |p| f(p));
    }
    // the recipe's first byte made invalid UTF-8
    g.raw("manifest.recipe_not_utf8", "MalformedHeader", |b| {
        let at = b.windows(4).position(|w| w == b"seed").unwrap();
        b[at] = 0xFF;
    });
    let n = p0.n_tensors;
    for (what, count) in [
        ("n_tensors_minus1", n - 1),
        ("n_tensors_plus1", n + 1),
        ("n_tensors0", 0),
    ] {
        let expect = format!("TensorCount {{ expected: {n}, got: {count} }}");
        g.parts(&format!("head.{what}"), &expect, |p| p.n_tensors = count);
    }
}

/// Tensor directory entries: name, shape, dtype, layout, offset, size, count.
fn directory(g: &mut Gen, full: bool) {
    let p0 = split(&g.base.bytes);
    let (c, v) = (p0.config.dim, p0.config.vocab_size);
    let last = p0.entries.len() - 1;
    let q8 = matches!(p0.entries[0].dtype, Dtype::Q8 { .. });
    g.parts("entry2_3_swapped", "TensorName { index: 2 }", |p| {
        p.entries.swap(2, 3)
    });
    g.parts("entry4.name_changed", "TensorName { index: 4 }", |p| {
        p.entries[4].name = "blocks.0.attn.wx".into()
    });
    g.parts("entry0.shape_transposed", "TensorShape { index: 0 }", |p| {
        p.entries[0].shape = Shape::matrix(c, v)
    });
    g.parts(
        "entry3.offset_plus2",
        "TensorMisaligned { index: 3 }",
        |p| p.entries[3].offset += 2,
    );
    g.parts(
        "entry3.offset_eq_entry2",
        "TensorOverlap { index: 3 }",
        |p| p.entries[3].offset = p.entries[2].offset,
    );
    g.parts("entry6.nbytes_minus2", "TensorSize { index: 6 }", |p| {
        p.entries[6].nbytes -= 2
    });
    g.parts(
        "last.offset_far",
        &format!("TensorOutOfBounds {{ index: {last} }}"),
        |p| p.entries[last].offset += 64 * 1000,
    );
    if !full {
        return;
    }
    g.parts("entry0.name_empty", "TensorName { index: 0 }", |p| {
        p.entries[0].name.clear()
    });
    g.raw("entry0.name_not_utf8", "MalformedHeader", |b| {
        let at = b.windows(7).position(|w| w == b"tok_emb").unwrap();
        b[at] = 0xC0;
    });
    g.parts("entry3.shape_matrix", "TensorShape { index: 3 }", |p| {
        p.entries[3].shape = Shape::matrix(1, c)
    });
    g.parts(
        "last.shape_plus1",
        &format!("TensorShape {{ index: {last} }}"),
        |p| p.entries[last].shape = Shape::vector(v + 1),
    );
    g.parts("entry6.dtype_f32", "TensorSize { index: 6 }", |p| {
        p.entries[6].dtype = Dtype::F32
    });
    g.parts("entry6.nbytes_plus2", "TensorSize { index: 6 }", |p| {
        p.entries[6].nbytes += 2
    });
    g.parts("entry6.nbytes0", "TensorSize { index: 6 }", |p| {
        p.entries[6].nbytes = 0
    });
    g.parts("entry6.nbytes_max", "TensorSize { index: 6 }", |p| {
        p.entries[6].nbytes = u64::MAX
    });
    g.parts("entry4.dtype_q8_group7", "TensorSize { index: 4 }", |p| {
        p.entries[4].dtype = Dtype::Q8 {
            group_size: 7,
            scale: ScaleDtype::F16,
        }
    });
    g.parts(
        "entry0.layout_transposed",
        "TensorLayout { index: 0 }",
        |p| p.entries[0].layout = Layout::Transposed,
    );
    g.parts(
        "entry2.layout_transposed",
        "TensorLayout { index: 2 }",
        |p| p.entries[2].layout = Layout::Transposed,
    );
    if !q8 {
        // an f16 Linear weight must be stored transposed
        g.parts(
            "entry4.layout_row_major",
            "TensorLayout { index: 4 }",
            |p| p.entries[4].layout = Layout::RowMajor,
        );
    }
    g.parts(
        "last.offset_max",
        &format!("TensorOutOfBounds {{ index: {last} }}"),
        |p| p.entries[last].offset = !63u64,
    );
    g.parts("entry1.offset0", "TensorOverlap { index: 1 }", |p| {
        p.entries[1].offset = 0
    });
    if p0.sections.is_empty() {
        // one entry fewer than n_tensors says: the directory runs out
        g.parts("last_entry_removed", "MalformedHeader", |p| {
            p.entries.pop();
        });
    }
    // one entry more: read as a section whose variant is the name's length (9: unknown)
    g.parts("last_entry_duplicated", "MalformedHeader", |p| {
        let e = p.entries[last].clone();
        p.entries.push(e);
    });
    // f32 is reserved: ln1.bias as f32 zeros (room in its 64-byte slot) parses, does not load
    g.parts("entry3.dtype_f32_reserved", "Unsupported(", |p| {
        let e = &mut p.entries[3];
        e.dtype = Dtype::F32;
        e.nbytes = 4 * c as u64;
        let at = e.offset as usize;
        p.data[at..at + 4 * c].fill(0);
    });
}

/// The data region: non-finite values, padding bytes.
fn data(g: &mut Gen) {
    let p0 = split(&g.base.bytes);
    let b = &g.base.bytes;
    let (hl, doff) = (u32_at(b, 12), u64_at(b, 24));
    let hend = 32 + hl;
    let last = p0.entries.len() - 1;
    let q8 = matches!(p0.entries[0].dtype, Dtype::Q8 { .. });
    // proj.bias of layer 0 is f16 in every base: element 1 = +inf, element 0 = NaN
    g.parts(
        "entry8.elem1_inf",
        "NonFinite { index: 8, element: 1 }",
        |p| {
            let at = p.entries[8].offset as usize + 2;
            p.data[at..at + 2].copy_from_slice(&0x7C00u16.to_le_bytes());
        },
    );
    g.parts(
        "entry8.elem0_nan",
        "NonFinite { index: 8, element: 0 }",
        |p| {
            let at = p.entries[8].offset as usize;
            p.data[at..at + 2].copy_from_slice(&0x7E00u16.to_le_bytes());
        },
    );
    if !q8 {
        g.parts(
            "entry0.elem0_neg_inf",
            "NonFinite { index: 0, element: 0 }",
            |p| {
                let at = p.entries[0].offset as usize;
                p.data[at..at + 2].copy_from_slice(&0xFC00u16.to_le_bytes());
            },
        );
        // the largest finite f16 is a value like any other
        g.parts("entry0.elem0_f16_max", "Ok", |p| {
            let at = p.entries[0].offset as usize;
            p.data[at..at + 2].copy_from_slice(&0x7BFFu16.to_le_bytes());
        });
    }
    // header padding: its first and last byte
    if hend < doff {
        let e = format!("NonZeroPadding {{ offset: {hend} }}");
        g.raw("header_pad_first", &e, |b| b[hend] = 1);
        let e = format!("NonZeroPadding {{ offset: {} }}", doff - 1);
        g.raw("header_pad_last", &e, |b| b[doff - 1] = 0x20);
    }
    // the first gap between two tensors: its first and last byte
    if let Some(i) = (1..p0.entries.len())
        .find(|&i| p0.entries[i].offset > p0.entries[i - 1].offset + p0.entries[i - 1].nbytes)
    {
        let start = (p0.entries[i - 1].offset + p0.entries[i - 1].nbytes) as usize;
        let end = p0.entries[i].offset as usize;
        let e = format!("NonZeroPadding {{ offset: {} }}", doff + start);
        g.parts(&format!("gap_before_entry{i}_first"), &e, |p| {
            p.data[start] = 1
        });
        let e = format!("NonZeroPadding {{ offset: {} }}", doff + end - 1);
        g.parts(&format!("gap_before_entry{i}_last"), &e, |p| {
            p.data[end - 1] = 0x80
        });
    }
    // after the last tensor: zeros are padding, anything else is not
    let len = p0.data.len();
    g.parts("data_plus64_zeros", "Ok", |p| p.data.extend([0; 64]));
    let e = format!("NonZeroPadding {{ offset: {} }}", doff + len + 2);
    g.parts("data_plus3_last_ff", &e, |p| p.data.extend([0, 0, 0xFF]));
    let end_last = (p0.entries[last].offset + p0.entries[last].nbytes) as usize;
    if end_last < len {
        let e = format!("NonZeroPadding {{ offset: {} }}", doff + len - 1);
        g.parts("data_tail_pad_last", &e, |p| p.data[len - 1] = 1);
    }
    // head.bias [V] as int8 groups (valid v1, not run): V values, zero padding to a multiple
    // of 4, V/group f16 scales of 1.0
    let v = p0.config.vocab_size;
    if !v.is_multiple_of(4) {
        let group = (2..=v).find(|&d| v.is_multiple_of(d)).unwrap();
        let int8_bias = |pad_byte: u8| {
            move |p: &mut Parts| {
                let off = p.entries[last].offset as usize;
                p.entries[last].dtype = Dtype::Q8 {
                    group_size: group as u32,
                    scale: ScaleDtype::F16,
                };
                let pad = v.div_ceil(4) * 4 - v;
                p.entries[last].nbytes = (v + pad + 2 * (v / group)) as u64;
                p.data.truncate(off);
                p.data.extend((0..v).map(|i| i as u8 + 1));
                p.data.extend(std::iter::repeat_n(0, pad - 1));
                p.data.push(pad_byte);
                p.data.extend([0x00, 0x3C].repeat(v / group));
            }
        };
        g.parts(
            "last.int8_vector",
            &format!("UnsupportedTensor {{ index: {last},"),
            int8_bias(0),
        );
        let off = p0.entries[last].offset as usize;
        let pad = v.div_ceil(4) * 4 - v;
        let e = format!("NonZeroPadding {{ offset: {} }}", doff + off + v + pad - 1);
        g.parts("last.int8_vector_pad_nonzero", &e, int8_bias(7));
    }
}

/// Truncations at the section edges, re-sealed: the prefix fields, the header head, directory
/// entries, the sections, the header padding, the data region and tensor ends.
fn truncations(g: &mut Gen, full: bool) {
    let b = g.base.bytes.clone();
    let p0 = split(&b);
    let doff = u64_at(&b, 24);
    // inside the prefix: the CRC lands on the magic (8) or the version (12)
    g.cut("empty", 0, "Truncated { needed: 32, got: 0 }");
    g.cut("magic", 8, "BadMagic");
    g.cut("version", 12, "Truncated { needed: 32, got: 12 }");
    g.cut("header_len", 16, "Truncated { needed: 32, got: 16 }");
    g.cut("total_len", 24, "Truncated { needed: 32, got: 24 }");
    g.cut("prefix", 32, "BadLayout");
    // cut after edge `e` plus the 4 bytes that become the CRC: the body ends at the edge
    for (what, e) in header_edges(&b, full) {
        // the data offset lies past the body until the body reaches it
        let expect = if e < doff {
            "BadLayout"
        } else {
            "TensorOutOfBounds { index: 0 }"
        };
        g.cut(&what, e + 4, expect);
    }
    let n = p0.entries.len();
    let len = p0.data.len();
    for (i, t) in p0.entries.iter().enumerate() {
        if !(full || i == 0 || i == n / 2 || i == n - 1) {
            continue;
        }
        let end = (t.offset + t.nbytes) as usize;
        // tensor i + 1 no longer fits; after the last one only padding is cut
        let expect = if i + 1 < n {
            format!("TensorOutOfBounds {{ index: {} }}", i + 1)
        } else {
            "Ok".into()
        };
        if end < len {
            g.cut(&format!("entry{i}_end"), doff + end + 4, &expect);
        }
    }
    // the last data byte
    let end_last = (p0.entries[n - 1].offset + p0.entries[n - 1].nbytes) as usize;
    let expect = if end_last < len {
        "Ok".to_string()
    } else {
        format!("TensorOutOfBounds {{ index: {} }}", n - 1)
    };
    g.cut("data_last_byte", b.len() - 1, &expect);
}

/// int8 tensors: group sizes, scale precision and values, layouts.
fn int8(g: &mut Gen) {
    let p0 = split(&g.base.bytes);
    let wq = 4;
    let Dtype::Q8 { group_size, scale } = p0.entries[wq].dtype else {
        unreachable!("an int8 base")
    };
    let numel = p0.entries[wq].shape.numel();
    let n_scales = numel / group_size as usize;
    let sb = scale.bytes();
    let values = numel.div_ceil(4) * 4;
    let put_scale = |p: &mut Parts, t: usize, i: usize, bits: u32| {
        let at = p.entries[t].offset as usize + values + sb * i;
        match sb {
            2 => p.data[at..at + 2].copy_from_slice(&(bits as u16).to_le_bytes()),
            _ => p.data[at..at + 4].copy_from_slice(&bits.to_le_bytes()),
        }
    };
    let (nan, inf) = if sb == 2 {
        (0x7E00, 0x7C00)
    } else {
        (0x7FC0_0000, 0x7F80_0000)
    };
    let tok_numel = p0.entries[0].shape.numel();
    let e = format!("NonFinite {{ index: 0, element: {tok_numel} }}");
    g.parts("q8.tok_emb_scale0_nan", &e, |p| {
        let at = p.entries[0].offset as usize + tok_numel.div_ceil(4) * 4;
        match sb {
            2 => p.data[at..at + 2].copy_from_slice(&(nan as u16).to_le_bytes()),
            _ => p.data[at..at + 4].copy_from_slice(&(nan as u32).to_le_bytes()),
        }
    });
    let e = format!(
        "NonFinite {{ index: 4, element: {} }}",
        numel + n_scales - 1
    );
    g.parts("q8.wq_last_scale_inf", &e, |p| {
        put_scale(p, wq, n_scales - 1, inf)
    });
    // any i8 value is valid, -128 included; a zero scale too
    g.parts("q8.wq_values_minus128", "Ok", |p| {
        let at = p.entries[wq].offset as usize;
        p.data[at..at + numel].fill(0x80);
    });
    g.parts("q8.wq_scale0_zero", "Ok", |p| put_scale(p, wq, 0, 0));
    g.parts("q8.wq_group0", "TensorSize { index: 4 }", |p| {
        p.entries[wq].dtype = Dtype::Q8 {
            group_size: 0,
            scale,
        }
    });
    let other = match scale {
        ScaleDtype::F16 => ScaleDtype::F32,
        ScaleDtype::F32 => ScaleDtype::F16,
    };
    g.parts(
        "q8.wq_scale_dtype_flipped",
        "TensorSize { index: 4 }",
        |p| {
            p.entries[wq].dtype = Dtype::Q8 {
                group_size,
                scale: other,
            }
        },
    );
    g.parts("q8.wq_nbytes_minus2", "TensorSize { index: 4 }", |p| {
        p.entries[wq].nbytes -= 2
    });
    // an int8 Linear weight stored transposed: valid v1, not run
    g.parts("q8.wq_transposed", "UnsupportedTensor { index: 4,", |p| {
        p.entries[wq].layout = Layout::Transposed
    });
    // wq with twice the group size of the rest (half the scales; the old scales' tail becomes
    // padding, zeroed): valid v1, not run (one group size per blob)
    g.parts(
        "q8.wq_group_doubled",
        "UnsupportedTensor { index: 4,",
        |p| {
            let at = p.entries[wq].offset as usize;
            let old = p.entries[wq].nbytes as usize;
            p.entries[wq].dtype = Dtype::Q8 {
                group_size: 2 * group_size,
                scale,
            };
            let new = values + sb * n_scales / 2;
            p.entries[wq].nbytes = new as u64;
            p.data[at + new..at + old].fill(0);
        },
    );
    // the same without zeroing the old scales' tail: that is now non-zero padding (where
    // exactly depends on the scales' bytes)
    g.parts("q8.wq_group_doubled_tail_kept", "NonZeroPadding", |p| {
        p.entries[wq].dtype = Dtype::Q8 {
            group_size: 2 * group_size,
            scale,
        };
        p.entries[wq].nbytes = (values + sb * n_scales / 2) as u64;
    });
}

/// The optional rhyme section.
fn rhyme(g: &mut Gen) {
    let v = split(&g.base.bytes).config.vocab_size;
    let t0 = OwnedRhyme::small(v);
    let cases: Vec<(&str, &str, Box<dyn Fn(&mut OwnedRhyme)>)> = vec![
        (
            "n_groups0",
            "InvalidRhymeTable",
            Box::new(|t| t.n_groups = 0),
        ),
        (
            "n_groups129",
            "InvalidRhymeTable",
            Box::new(|t| t.n_groups = 129),
        ),
        (
            "n_groups_more_than_names",
            "InvalidRhymeTable",
            Box::new(|t| t.n_groups = 4),
        ),
        (
            "names_one_more",
            "InvalidRhymeTable",
            Box::new(|t| t.group_names.push_str("\n四支")),
        ),
        (
            "token_sets_short",
            "InvalidRhymeTable",
            Box::new(|t| {
                t.token_sets.pop();
            }),
        ),
        (
            "token_sets_one_more",
            "InvalidRhymeTable",
            Box::new(|t| t.token_sets.push(0)),
        ),
        (
            "token_sets_odd_byte",
            "InvalidRhymeTable",
            Box::new(|t| t.token_sets_tail.push(0)),
        ),
        (
            "token_set_index_out_of_range",
            "InvalidRhymeTable",
            Box::new(|t| t.token_sets[1] = 3),
        ),
        (
            "sets_empty",
            "InvalidRhymeTable",
            Box::new(|t| {
                t.sets.clear();
                t.token_sets.fill(0);
            }),
        ),
        (
            "sets_partial_mask",
            "InvalidRhymeTable",
            Box::new(|t| t.sets_tail.push(0)),
        ),
        (
            "set0_not_empty",
            "InvalidRhymeTable",
            Box::new(|t| t.sets[0] = 1),
        ),
        (
            "set_bit_past_groups",
            "InvalidRhymeTable",
            Box::new(|t| t.sets[2] |= 1 << 3),
        ),
        (
            "level_bit_past_groups",
            "InvalidRhymeTable",
            Box::new(|t| t.level_groups |= 1 << 5),
        ),
        // valid variations
        (
            "one_group_no_name",
            "Ok",
            Box::new(|t| {
                t.n_groups = 1;
                t.group_names.clear();
                t.level_groups = 0;
                t.sets = vec![0, 1];
                t.token_sets.iter_mut().for_each(|i| *i = (*i).min(1));
            }),
        ),
        (
            "128_groups",
            "Ok",
            Box::new(|t| {
                t.n_groups = 128;
                t.group_names = (0..128)
                    .map(|i| format!("g{i}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                t.sets[2] |= 1 << 127;
                t.level_groups = 1 << 127;
            }),
        ),
        (
            "token_sets_all_empty",
            "Ok",
            Box::new(|t| t.token_sets.fill(0)),
        ),
        ("source_empty", "Ok", Box::new(|t| t.source.clear())),
    ];
    for (what, expect, f) in cases {
        let mut t = t0.clone();
        f(&mut t);
        g.parts(&format!("rhyme.{what}"), expect, |p| {
            p.sections = t.section()
        });
    }
    g.parts("rhyme.twice", "InvalidRhymeTable", |p| {
        let s = p.sections.clone();
        p.sections.extend(s);
    });
    g.parts("rhyme.unknown_section", "MalformedHeader", |p| {
        p.sections = vec![1]
    });
    g.parts("rhyme.then_unknown", "MalformedHeader", |p| {
        p.sections.push(1)
    });
    g.parts("rhyme.last_byte_cut", "MalformedHeader", |p| {
        p.sections.pop();
    });
    g.parts("rhyme.removed", "Ok", |p| p.sections.clear());
    // the source's first byte made invalid UTF-8
    g.raw("rhyme.source_not_utf8", "MalformedHeader", |b| {
        let at = b.windows(10).position(|w| w == b"seed table").unwrap();
        b[at] = 0xFF;
    });
}
