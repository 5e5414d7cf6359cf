//! The pull generator: same text as a plain sample/feed loop with the stop rules applied,
//! constraints (mask → sample → advance), the instruction prompt for a title.
mod common;
use common::*;
use std::ops::ControlFlow;
use tinypoet_core::sampler::sample;
use tinypoet_core::{
    instruction_prompt_tokens, state_words, Config, Constraint, Decoder, Error, GenerateSettings,
    Generator, KvPrecision, Manifest, Model, Prompt, Rng, SamplerSettings, StopReason, Token,
    Tokenizer,
};

fn small_model() -> (Config, Vec<u8>) {
    let cfg = Config {
        context: 32,
        ..small_config()
    };
    let vocab = make_vocab(cfg.vocab_size, 5);
    let b = build_blob_with(&cfg, &vocab, &random_params(&cfg, 21), Manifest::EMPTY);
    (cfg, b)
}

const SAMPLERS: [SamplerSettings; 6] = [
    SamplerSettings::DEFAULT,
    SamplerSettings::GREEDY,
    SamplerSettings {
        temperature: 0.7,
        ..SamplerSettings::DEFAULT
    },
    SamplerSettings {
        top_k: 5,
        ..SamplerSettings::DEFAULT
    },
    SamplerSettings {
        top_p: 0.6,
        temperature: 1.3,
        ..SamplerSettings::DEFAULT
    },
    SamplerSettings {
        repetition_penalty: 1.4,
        repetition_window: 8,
        top_k: 12,
        top_p: 0.9,
        ..SamplerSettings::DEFAULT
    },
];

/// The oracle: prefill, then `n` × (sample, feed) with the public decoder API; no stop rules.
fn raw_tokens(m: &Model, prompt: &str, s: &SamplerSettings, seed: u64, n: usize) -> Vec<Token> {
    let mut buf = vec![0f32; state_words(m.config(), KvPrecision::F16)];
    let mut d = Decoder::new(m, &mut buf, KvPrecision::F16).unwrap();
    let tok = m.tokenizer();
    let ids: Vec<Token> = prompt.chars().map(|c| tok.id(c).unwrap()).collect();
    d.prefill(&ids).unwrap();
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for _ in 0..n {
        let id = d.sample(s, &mut rng).unwrap();
        out.push(id);
        d.feed(id).unwrap();
    }
    out
}

/// The stop rules applied to a finished token sequence: cut at the first id 0, or before the
/// earliest stop sequence the text ends with.
fn expected_text(tok: &Tokenizer, ids: &[Token], stop: &[&str]) -> (String, StopReason) {
    let mut text = String::new();
    for &id in ids {
        if id == 0 {
            return (text, StopReason::EndOfText);
        }
        text.push(tok.char(id).unwrap());
        if let Some(i) = stop.iter().position(|s| text.ends_with(s)) {
            text.truncate(text.len() - stop[i].len());
            return (text, StopReason::StopSequence(i));
        }
    }
    (text, StopReason::MaxLength)
}

fn pull_all<C: Constraint>(g: &mut Generator<'_, '_, C>) -> Result<String, Error> {
    let mut s = String::new();
    while let Some(c) = g.next_char()? {
        s.push(c);
    }
    Ok(s)
}

#[test]
fn pull_text_equals_sample_feed_loop_with_stop_rules() {
    let (cfg, b) = small_model();
    let m = Model::load(&b).unwrap();
    let tok = m.tokenizer();
    let stops: [&[&str]; 3] = [&[], &["\n\n"], &["a", "\n", "bc"]];
    let mut ended = [0usize; 3];
    for (si, s) in SAMPLERS.iter().enumerate() {
        for seed in 0..12u64 {
            let n = 70; // over two context windows of 32: slides included
            let raw = raw_tokens(&m, "\n", s, seed, n);
            for stop in stops {
                let (want, why) = expected_text(&tok, &raw, stop);
                let settings = GenerateSettings {
                    sampler: *s,
                    seed,
                    max_new_chars: n,
                    stop,
                    stop_at_end_of_text: true,
                };
                let mut buf = vec![0f32; state_words(&cfg, KvPrecision::F16)];
                let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
                let mut g = Generator::new(&mut d, Prompt::Text("\n"), &settings).unwrap();
                let got = pull_all(&mut g).unwrap();
                assert_eq!(
                    (&got, g.stop_reason()),
                    (&want, Some(why)),
                    "sampler {si} seed {seed}"
                );
                let sum = g.summary();
                assert_eq!(sum.emitted_chars, got.chars().count());
                assert_eq!(sum.prompt_tokens, 1);
                assert_eq!(g.next_char(), Ok(None), "stays finished");
                ended[match why {
                    StopReason::EndOfText => 0,
                    StopReason::StopSequence(_) => 1,
                    _ => 2,
                }] += 1;
                // the callback form is the same loop
                let mut cb = String::new();
                let g2 = d
                    .generate("\n", &settings, |c| {
                        cb.push(c);
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                assert_eq!((cb, g2), (got, sum));
            }
        }
    }
    eprintln!(
        "endings: end-of-text {}, stop sequence {}, max length {}",
        ended[0], ended[1], ended[2]
    );
    assert!(
        ended.iter().all(|&n| n > 0),
        "every ending exercised: {ended:?}"
    );
}

#[test]
fn token_prompt_equals_text_prompt() {
    let (cfg, b) = small_model();
    let m = Model::load(&b).unwrap();
    let tok = m.tokenizer();
    let text = "\n春x";
    let text: String = text.chars().filter(|&c| tok.id(c).is_ok()).collect();
    let ids: Vec<Token> = text.chars().map(|c| tok.id(c).unwrap()).collect();
    let settings = GenerateSettings {
        max_new_chars: 40,
        stop: &[],
        ..GenerateSettings::default()
    };
    let mut buf = vec![0f32; state_words(&cfg, KvPrecision::F16)];
    let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    let a = pull_all(&mut Generator::new(&mut d, Prompt::Text(&text), &settings).unwrap()).unwrap();
    // the decoder borrow comes back out of a generator, for the next generation
    let mut g = Generator::new(&mut d, Prompt::Text(&text), &settings).unwrap();
    assert_eq!(g.next_char().unwrap(), a.chars().next());
    let (d2, _) = g.into_parts();
    let again = pull_all(&mut Generator::new(d2, Prompt::Text(&text), &settings).unwrap()).unwrap();
    assert_eq!(again, a);
    let b2 =
        pull_all(&mut Generator::new(&mut d, Prompt::Tokens(&ids), &settings).unwrap()).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b2);
    assert_eq!(
        Generator::new(&mut d, Prompt::Tokens(&[]), &settings).err(),
        Some(Error::EmptyInput)
    );
    assert_eq!(
        Generator::new(
            &mut d,
            Prompt::Tokens(&[cfg.vocab_size as Token]),
            &settings
        )
        .err(),
        Some(Error::TokenOutOfRange {
            token: cfg.vocab_size as u32,
            vocab_size: cfg.vocab_size
        })
    );
}

/// Allows only the ids in `allowed`; counts what it saw; optionally ends after `finish_after`
/// characters, or forces end-of-text after `eot_after` characters.
struct Only {
    allowed: Vec<bool>,
    seen: Vec<(Token, char)>,
    finish_after: Option<usize>,
    eot_after: Option<usize>,
}

impl Only {
    fn new(v: usize, allow: impl Fn(usize) -> bool) -> Self {
        Only {
            allowed: (0..v).map(allow).collect(),
            seen: Vec::new(),
            finish_after: None,
            eot_after: None,
        }
    }
}

impl Constraint for Only {
    fn mask(&mut self, logits: &mut [f32], tok: &Tokenizer<'_>) -> Result<(), Error> {
        assert_eq!(logits.len(), tok.len());
        let force_eot = self.eot_after == Some(self.seen.len());
        for (i, l) in logits.iter_mut().enumerate() {
            if (force_eot && i != 0) || (!force_eot && !self.allowed[i]) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }
    fn advance(&mut self, id: Token, c: char) -> Result<(), Error> {
        self.seen.push((id, c));
        Ok(())
    }
    fn finished(&self) -> bool {
        self.finish_after == Some(self.seen.len())
    }
}

#[test]
fn constraint_masked_ids_are_never_sampled_under_any_sampler() {
    let (cfg, b) = small_model();
    let m = Model::load(&b).unwrap();
    let v = cfg.vocab_size;
    let mut buf = vec![0f32; state_words(&cfg, KvPrecision::F16)];
    let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    let mut total = 0;
    for (si, s) in SAMPLERS.iter().enumerate() {
        for seed in 0..8u64 {
            let settings = GenerateSettings {
                sampler: *s,
                seed,
                max_new_chars: 60,
                stop: &[],
                stop_at_end_of_text: false,
            };
            // ids 3, 7, 11, ...: never id 0, so every run goes to the length limit
            let mut c = Only::new(v, |i| i % 4 == 3);
            let text = pull_all(
                &mut Generator::with_constraint(&mut d, "\n".into(), &settings, &mut c).unwrap(),
            )
            .unwrap();
            assert_eq!(c.seen.len(), 60);
            assert!(
                c.seen.iter().all(|&(id, _)| id % 4 == 3),
                "sampler {si} seed {seed}: {:?}",
                c.seen
            );
            assert_eq!(text, c.seen.iter().map(|&(_, ch)| ch).collect::<String>());
            // deterministic
            let mut c2 = Only::new(v, |i| i % 4 == 3);
            let again = pull_all(
                &mut Generator::with_constraint(&mut d, "\n".into(), &settings, &mut c2).unwrap(),
            )
            .unwrap();
            assert_eq!(again, text);
            // a constraint that masks nothing changes nothing
            let mut all = Only::new(v, |_| true);
            let free = pull_all(
                &mut Generator::with_constraint(&mut d, "\n".into(), &settings, &mut all).unwrap(),
            )
            .unwrap();
            let plain =
                pull_all(&mut Generator::new(&mut d, "\n".into(), &settings).unwrap()).unwrap();
            assert_eq!(free, plain);
            total += c.seen.len();
        }
    }
    eprintln!("{total} constrained tokens, none masked");
}

#[test]
fn masked_sampling_matches_the_renormalised_distribution() {
    // 40 ids, every third masked: temperature-1 frequencies over 60,000 draws follow
    // softmax over the unmasked ids (chi-square), masked ids never appear
    let mut r = TestRng::new(5);
    let logits: Vec<f32> = (0..40).map(|_| (r.normal() * 1.5) as f32).collect();
    let masked = |i: usize| i % 3 == 1;
    let z: f64 = (0..40)
        .filter(|&i| !masked(i))
        .map(|i| (logits[i] as f64).exp())
        .sum();
    let probs: Vec<f64> = (0..40)
        .map(|i| {
            if masked(i) {
                0.0
            } else {
                (logits[i] as f64).exp() / z
            }
        })
        .collect();
    for s in [
        SamplerSettings::DEFAULT,
        SamplerSettings {
            top_p: 0.999_999,
            ..SamplerSettings::DEFAULT
        },
    ] {
        let mut rng = Rng::new(11);
        let mut counts = [0u64; 40];
        let mut scratch = [0u16; 40];
        for _ in 0..60_000 {
            let mut l = logits.clone();
            for (i, x) in l.iter_mut().enumerate() {
                if masked(i) {
                    *x = f32::NEG_INFINITY;
                }
            }
            counts[sample(&mut l, &mut scratch, &[], &s, &mut rng).unwrap() as usize] += 1;
        }
        assert!(
            (0..40).filter(|&i| masked(i)).all(|i| counts[i] == 0),
            "{counts:?}"
        );
        let n: u64 = counts.iter().sum();
        let (mut chi, mut dof) = (0.0, 0usize);
        for i in (0..40).filter(|&i| !masked(i)) {
            let e = probs[i] * n as f64;
            chi += (counts[i] as f64 - e).powi(2) / e;
            dof += 1;
        }
        let dof = dof - 1;
        eprintln!(
            "masked chi-square {chi:.1} for {dof} degrees of freedom (bar < {})",
            2 * dof + 20
        );
        assert!(chi < (2 * dof + 20) as f64);
    }
}

#[test]
fn constraint_ends_the_text_by_finishing_or_by_forcing_end_of_text() {
    let (cfg, b) = small_model();
    let m = Model::load(&b).unwrap();
    let v = cfg.vocab_size;
    let mut buf = vec![0f32; state_words(&cfg, KvPrecision::F16)];
    let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    let settings = GenerateSettings {
        max_new_chars: 100,
        stop: &[],
        ..GenerateSettings::default()
    };
    // finished after 7: nothing more sampled
    let mut c = Only::new(v, |i| i >= 2);
    c.finish_after = Some(7);
    let mut g = Generator::with_constraint(&mut d, "\n".into(), &settings, &mut c).unwrap();
    let text = pull_all(&mut g).unwrap();
    let sum = g.summary();
    assert_eq!((text.chars().count(), sum.generated_tokens), (7, 7));
    assert_eq!(sum.reason, StopReason::EndOfText);
    // forced end-of-text after 9: id 0 is the 10th sample, through the end-of-text path
    let mut c = Only::new(v, |i| i >= 2);
    c.eot_after = Some(9);
    let mut g = Generator::with_constraint(&mut d, "\n".into(), &settings, &mut c).unwrap();
    let text = pull_all(&mut g).unwrap();
    let sum = g.summary();
    assert_eq!((text.chars().count(), sum.generated_tokens), (9, 10));
    assert_eq!(sum.reason, StopReason::EndOfText);
    assert_eq!(
        c.seen.last(),
        Some(&(0, '\0')),
        "advance sees the end-of-text token"
    );
    // masking everything is an error, not a silent id 0; it sticks
    for s in [
        SamplerSettings::DEFAULT,
        SamplerSettings::GREEDY,
        SamplerSettings {
            top_k: 3,
            ..SamplerSettings::DEFAULT
        },
    ] {
        let gs = GenerateSettings {
            sampler: s,
            ..settings
        };
        let mut none = Only::new(v, |_| false);
        let mut g = Generator::with_constraint(&mut d, "\n".into(), &gs, &mut none).unwrap();
        assert_eq!(g.next_char(), Err(Error::NothingToSample), "{s:?}");
        assert_eq!(g.next_char(), Err(Error::NothingToSample));
    }
}

fn tang_blob() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tinypoet-tang.tpb");
    std::fs::read(path).expect("the bundled model models/tinypoet-tang.tpb")
}

/// tutorialllm.md §2: `<INS>請用以下題目寫一首詩<INP>春夜喜雨<RES>` in the Tang vocabulary.
const SPRING_NIGHT: [Token; 29] = [
    5, 8, 9, 12, 6, 6515, 4281, 275, 184, 7737, 4458, 1579, 178, 7856, 6471, 5, 8, 9, 10, 6, 2732,
    1306, 988, 7571, 5, 11, 7, 12, 6,
];

#[test]
fn instruction_prompt_for_a_title_matches_the_reference_ids() {
    let b = tang_blob();
    let m = Model::load(&b).unwrap();
    let tok = m.tokenizer();
    let mut out = [0 as Token; 256];
    let n = instruction_prompt_tokens(&tok, "春夜喜雨", &mut out).unwrap();
    assert_eq!(&out[..n], &SPRING_NIGHT);
    // exactly enough room
    let mut out = [0 as Token; 29];
    assert_eq!(
        instruction_prompt_tokens(&tok, "春夜喜雨", &mut out),
        Ok(29)
    );
    let mut short = [0 as Token; 28];
    assert_eq!(
        instruction_prompt_tokens(&tok, "春夜喜雨", &mut short),
        Err(Error::PromptTooLong {
            needed: 29,
            capacity: 28
        })
    );
    // simplified 这 is not in the traditional-Chinese vocabulary
    assert_eq!(
        instruction_prompt_tokens(&tok, "这夜", &mut [0; 256]),
        Err(Error::UnknownChar('这'))
    );
    assert_eq!(
        instruction_prompt_tokens(&tok, "", &mut [0; 256]),
        Err(Error::EmptyInput)
    );

    // the generator prefills the same ids
    let mut buf = vec![0f32; state_words(m.config(), KvPrecision::F16)];
    let mut d = Decoder::new(&m, &mut buf, KvPrecision::F16).unwrap();
    let settings = GenerateSettings {
        max_new_chars: 4,
        ..GenerateSettings::default()
    };
    let mut g = Generator::new(&mut d, Prompt::Title("春夜喜雨"), &settings).unwrap();
    assert_eq!(g.summary().prompt_tokens, 29);
    assert_eq!(g.decoder().context_tokens(), &SPRING_NIGHT);
    let by_title = pull_all(&mut g).unwrap();
    let by_ids =
        pull_all(&mut Generator::new(&mut d, Prompt::Tokens(&SPRING_NIGHT), &settings).unwrap())
            .unwrap();
    assert_eq!(by_title, by_ids);
    // a title too long for the context (256 - 1 positions)
    let long = "春".repeat(231);
    assert_eq!(
        Generator::new(&mut d, Prompt::Title(&long), &settings).err(),
        Some(Error::PromptTooLong {
            needed: 256,
            capacity: 255
        })
    );
    assert!(Generator::new(&mut d, Prompt::Title(&long[3..]), &settings).is_ok());
    assert_eq!(
        Generator::new(&mut d, Prompt::Title("这"), &settings).err(),
        Some(Error::UnknownChar('这'))
    );
}
