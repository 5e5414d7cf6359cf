//! Verse constraints end to end on a tiny random model: whatever the seed and sampler
//! settings, the constrained output passes the independent checker (`verse_check`), ends at
//! end-of-text, and requests that cannot be met fail with typed errors. Also the rhyme
//! section's round trip through a blob.

use tinypoet_core::blob::{self, BlobInput, Manifest, WeightDtype};
use tinypoet_core::constrain::{Form, FormSpec};
use tinypoet_core::{
    state_words, tensor_specs, Config, Decoder, Error, GenerateSettings, Generator, KvPrecision,
    Model, Prompt, SamplerSettings, StopReason,
};
use tinypoet_tests::verse_check::{check, Rhymes, FORMS};
use tinypoet_trainer::cli::rhyme_table::{blob_with_table, parse_table};

const HAN: &str = "一山天月水風花春秋雨雲夜江樓";
/// 4 groups; 月 is in two (a polyphone), 一 and 樓 in none.
const TABLE: &str = "# test table\nG\t0\ta\t平\nG\t1\tb\t平\nG\t2\tc\t仄\nG\t3\td\t仄\n\
C\t山\t0\nC\t天\t0\nC\t月\t1,2\nC\t水\t2\nC\t風\t1\nC\t花\t3\nC\t春\t1\nC\t秋\t3\n\
C\t雨\t2\nC\t雲\t1\nC\t夜\t3\nC\t江\t0\n";

fn vocab() -> Vec<char> {
    let mut v: Vec<char> = "\0\nA<>。，？！；".chars().chain(HAN.chars()).collect();
    v.sort();
    v
}

/// A tiny model with pseudo-random weights (seeded LCG), no rhyme table.
fn tiny_blob(seed: u64) -> Vec<u8> {
    let vocab = vocab();
    let cfg = Config {
        vocab_size: vocab.len(),
        dim: 16,
        n_heads: 2,
        n_layers: 1,
        context: 32,
        ffn_dim: 32,
        ln_eps: 1e-5,
        attn_scale: 0.25,
    };
    let mut s = seed;
    let data: Vec<Vec<f32>> = tensor_specs(&cfg)
        .map(|t| {
            (0..t.shape.numel())
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
                })
                .collect()
        })
        .collect();
    let tensors: Vec<&[f32]> = data.iter().map(|t| t.as_slice()).collect();
    let input = BlobInput {
        config: cfg,
        vocab: &vocab,
        manifest: Manifest::EMPTY,
        dtype: WeightDtype::F16,
        tensors: &tensors,
    };
    let mut bytes = vec![0u8; blob::encoded_len(&input).unwrap()];
    blob::write(&input, &mut bytes).unwrap();
    bytes
}

fn with_table(bytes: &[u8]) -> Vec<u8> {
    let model = Model::load(bytes).unwrap();
    let t = parse_table(TABLE, &model.tokenizer()).unwrap();
    blob_with_table(bytes, Some(&t.view())).unwrap()
}

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn generate(model: &Model, spec: &FormSpec, s: &GenerateSettings) -> (String, StopReason) {
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(model, &mut state, KvPrecision::F16).unwrap();
    let verse = model.verse(spec).unwrap();
    let mut g = Generator::with_constraint(&mut dec, Prompt::Text("春\n"), s, verse).unwrap();
    let mut text = String::new();
    while let Some(c) = g.next_char().unwrap() {
        text.push(c);
    }
    (text, g.stop_reason().unwrap())
}

#[test]
fn constrained_output_always_passes_the_checker() {
    let rhymes = Rhymes::parse(TABLE);
    let han: Vec<char> = HAN.chars().collect();
    let mut rng = Lcg(7);
    let mut checked = 0;
    for model_seed in 0..3 {
        let bytes = with_table(&tiny_blob(model_seed));
        let model = Model::load(&bytes).unwrap();
        for seed in 0..40u64 {
            let (name, lines, width) = FORMS[rng.below(4)];
            let acrostic: String = (0..rng.below(lines + 1))
                .map(|_| han[rng.below(han.len())])
                .collect();
            let rhyme = rng.below(2) == 1;
            let spec = FormSpec {
                form: Form::parse(name).unwrap(),
                acrostic: &acrostic,
                rhyme,
            };
            let sampler = SamplerSettings {
                temperature: [0.0, 0.7, 1.0, 1.6][rng.below(4)],
                top_k: [0, 3][rng.below(2)],
                top_p: [1.0, 0.9][rng.below(2)],
                repetition_penalty: [1.0, 1.3][rng.below(2)],
                ..SamplerSettings::DEFAULT
            };
            let s = GenerateSettings {
                sampler,
                seed,
                ..GenerateSettings::default()
            };
            let (text, reason) = generate(&model, &spec, &s);
            assert_eq!(
                reason,
                StopReason::EndOfText,
                "{spec:?} seed {seed}: {text}"
            );
            let r = rhyme.then_some(&rhymes);
            if let Err(e) = check(&text, lines, width, &acrostic, r) {
                panic!("{spec:?} seed {seed} {sampler:?}: {e}\n{text}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 120);
}

#[test]
fn unmeetable_requests_are_typed_errors() {
    let plain = tiny_blob(1);
    let model = Model::load(&plain).unwrap();
    let spec = |form, acrostic, rhyme| FormSpec {
        form,
        acrostic,
        rhyme,
    };
    assert_eq!(model.rhyme_table(), None);
    assert_eq!(
        model.verse(&spec(Form::QiJue, "", true)).unwrap_err(),
        Error::NoRhymeTable
    );
    assert_eq!(
        model.verse(&spec(Form::QiJue, "春夏", false)).unwrap_err(),
        Error::UnknownChar('夏')
    );
    assert_eq!(
        model
            .verse(&spec(Form::QiJue, "春秋雨雲夜", false))
            .unwrap_err(),
        Error::AcrosticTooLong { chars: 5, lines: 4 }
    );
    assert_eq!(
        model.verse(&spec(Form::WuLu, "A", false)).unwrap_err(),
        Error::AcrosticNotHan('A')
    );
    assert_eq!(
        FormSpec::parse("五絕 acrostic=春 rhyme").map(|s| model.verse(&s).map(|_| ())),
        Ok(Err(Error::NoRhymeTable))
    );
}

#[test]
fn rhyme_section_round_trip_keeps_everything_else() {
    let plain = tiny_blob(2);
    let ruled = with_table(&plain);
    let a = blob::parse(&plain).unwrap();
    let b = blob::parse(&ruled).unwrap();
    assert!(a.rhyme().is_none());
    let t = b.rhyme().expect("section");
    assert_eq!(t.n_groups, 4);
    assert_eq!(t.group_name(3), Some("d"));
    // tensors byte-identical
    for (x, y) in a.tensors().zip(b.tensors()) {
        assert_eq!(x.entry, y.entry);
        assert_eq!(x.bytes, y.bytes);
    }
    // removing the section gives the original bytes back; adding it twice replaces it
    assert_eq!(blob_with_table(&ruled, None).unwrap(), plain);
    assert_eq!(with_table(&ruled), ruled);
    let model = Model::load(&ruled).unwrap();
    let tok = model.tokenizer();
    let yue = t.groups(tok.id('月').unwrap());
    assert_eq!(yue, 0b0110);
    assert_eq!(t.groups(tok.id('樓').unwrap()), 0);
    assert_eq!(t.level() & 0b1111, 0b0011);
    // a corrupted section is an error, not a panic (the CRC is fixed so only the section is bad)
    let mut bad = ruled.clone();
    let hdr_end = 32 + u32::from_le_bytes(bad[12..16].try_into().unwrap()) as usize;
    bad[hdr_end - 3] ^= 0x55;
    let n = bad.len();
    let crc = crc32(&bad[..n - 4]);
    bad[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert!(blob::parse(&bad).is_err());
}

fn crc32(b: &[u8]) -> u32 {
    tinypoet_core::crc32::crc32(b)
}
