//! Issue 15, item 6: validity of constrained and unconstrained poems under the independent
//! checker, and the cost of the constraint in mean log-probability per character.
//!
//!     cargo run --release -p tinypoet-tests --example verse_rates -- models/tinypoet-tang.tpb [N] [--title]
//!
//! For each form (五絕 七絕 五律 七律) and each of {form only, + acrostic, + rhyme, + both},
//! N poems (default 200: 20 seeds × 10 titles, default sampler). The prompt is `TITLE\n`
//! (the pretrained model's layout) or, with `--title`, the instruction prompt. Unconstrained
//! poems from the same prompts and seeds are checked against every form. The log-probability
//! of a character is taken from the model's unmasked distribution (temperature 1) at the step
//! it was sampled: over every sampled token including the final end-of-text (or the second
//! newline of the unconstrained poem's stop), and without that last token ("body"), because the
//! pretrained model never saw end-of-text after a poem (its corpus separates poems by a blank
//! line), so the forced id 0 costs it a lot.

use std::collections::BTreeMap;

use tinypoet_core::constrain::{Form, FormSpec, Verse};
use tinypoet_core::{
    state_words, Constraint, Decoder, Error, GenerateSettings, Generator, KvPrecision, Model,
    NoConstraint, Prompt, Token, Tokenizer,
};
use tinypoet_tests::verse_check::{check, Rhymes, FORMS};

const TITLES: [&str; 10] = [
    "春夜喜雨",
    "秋夕",
    "送友人",
    "山中",
    "江上",
    "夜泊",
    "登高",
    "月夜",
    "聞笛",
    "春望",
];

/// Records the unmasked log-probability of each sampled token, then delegates.
struct Recorder<C> {
    inner: C,
    lse: f64,
    raw: Vec<f32>,
    sum: f64,
    n: usize,
    last: f64,
}

impl<C: Constraint> Constraint for Recorder<C> {
    fn mask(&mut self, logits: &mut [f32], tok: &Tokenizer<'_>) -> Result<(), Error> {
        let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        self.lse = m + logits
            .iter()
            .map(|&l| (l as f64 - m).exp())
            .sum::<f64>()
            .ln();
        self.raw.clear();
        self.raw.extend_from_slice(logits);
        self.inner.mask(logits, tok)
    }
    fn advance(&mut self, id: Token, c: char) -> Result<(), Error> {
        self.last = self.raw[id as usize] as f64 - self.lse;
        self.sum += self.last;
        self.n += 1;
        self.inner.advance(id, c)
    }
    fn finished(&self) -> bool {
        self.inner.finished()
    }
}

fn run<C: Constraint>(model: &Model, prompt: Prompt, seed: u64, c: C) -> (String, f64, usize, f64) {
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let mut dec = Decoder::new(model, &mut state, KvPrecision::F16).unwrap();
    let s = GenerateSettings {
        seed,
        ..GenerateSettings::default()
    };
    let rec = Recorder {
        inner: c,
        lse: 0.0,
        raw: Vec::new(),
        sum: 0.0,
        n: 0,
        last: 0.0,
    };
    let mut g = Generator::with_constraint(&mut dec, prompt, &s, rec).unwrap();
    let mut text = String::new();
    while let Some(ch) = g.next_char().unwrap() {
        text.push(ch);
    }
    let r = g.constraint();
    (text, r.sum, r.n, r.last)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let title_prompt = args.iter().any(|a| a == "--title");
    let bytes = std::fs::read(path).unwrap();
    let model = Model::load(&bytes).unwrap();
    let table = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/rhyme-pingshui.tsv"),
    )
    .unwrap();
    let rhymes = Rhymes::parse(&table);
    let prompts: Vec<(String, u64)> = (0..n)
        .map(|i| {
            (
                TITLES[i % TITLES.len()].to_string(),
                1 + (i / TITLES.len()) as u64,
            )
        })
        .collect();
    let prompt_of = |t: &str| -> (String, bool) { (format!("{t}\n"), title_prompt) };
    println!(
        "model {path}, {n} poems per row, prompt {}",
        if title_prompt {
            "instruction(TITLE)"
        } else {
            "TITLE\\n"
        }
    );

    // Unconstrained.
    let mut free_valid: BTreeMap<&str, usize> = BTreeMap::new();
    let mut free_rhyme: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut fsum, mut fn_, mut flast) = (0.0, 0usize, 0.0);
    for (t, seed) in &prompts {
        let (p, ttl) = prompt_of(t);
        let prompt = if ttl {
            Prompt::Title(t)
        } else {
            Prompt::Text(&p)
        };
        let (text, s, k, l) = run(&model, prompt, *seed, NoConstraint);
        fsum += s;
        fn_ += k;
        flast += l;
        for (name, lines, width) in FORMS {
            if check(&text, lines, width, "", None).is_ok() {
                *free_valid.entry(name).or_default() += 1;
                if check(&text, lines, width, "", Some(&rhymes)).is_ok() {
                    *free_rhyme.entry(name).or_default() += 1;
                }
            }
        }
    }
    let any: usize = free_valid.values().sum();
    println!(
        "unconstrained: mean log-prob/char {:.4} (body {:.4}) over {fn_} tokens; valid 五絕/七絕/五律/七律 {}/{}/{}/{} (any {any}) of {n}; of those also rhyming {}/{}/{}/{}",
        fsum / fn_ as f64,
        (fsum - flast) / (fn_ - n) as f64,
        free_valid.get("五絕").unwrap_or(&0), free_valid.get("七絕").unwrap_or(&0),
        free_valid.get("五律").unwrap_or(&0), free_valid.get("七律").unwrap_or(&0),
        free_rhyme.get("五絕").unwrap_or(&0), free_rhyme.get("七絕").unwrap_or(&0),
        free_rhyme.get("五律").unwrap_or(&0), free_rhyme.get("七律").unwrap_or(&0),
    );
    println!("| form | acrostic | rhyme | valid (checker) | of which rhyme (checker) | mean log-prob/char | body (without the end token) |");
    println!("|---|---|---|---|---|---|---|");
    for (name, lines, width) in FORMS {
        let form = Form::parse(name).unwrap();
        let acro = if lines == 4 {
            "春夜喜雨"
        } else {
            "春夜喜雨秋風明月"
        };
        for (acrostic, rhyme) in [("", false), (acro, false), ("", true), (acro, true)] {
            let spec = FormSpec {
                form,
                acrostic,
                rhyme,
            };
            let (mut ok, mut rh, mut sum, mut k, mut last) = (0, 0, 0.0, 0usize, 0.0);
            for (t, seed) in &prompts {
                let (p, ttl) = prompt_of(t);
                let prompt = if ttl {
                    Prompt::Title(t)
                } else {
                    Prompt::Text(&p)
                };
                let v: Verse = model.verse(&spec).unwrap();
                let (text, s, kk, l) = run(&model, prompt, *seed, v);
                sum += s;
                k += kk;
                last += l;
                let r = rhyme.then_some(&rhymes);
                match check(&text, lines, width, acrostic, r) {
                    Ok(()) => ok += 1,
                    Err(e) => eprintln!("INVALID {name} {acrostic} {rhyme}: {e}: {text:?}"),
                }
                if check(&text, lines, width, "", Some(&rhymes)).is_ok() {
                    rh += 1;
                }
            }
            println!(
                "| {name} | {} | {} | {ok}/{n} | {rh}/{n} | {:.4} | {:.4} |",
                if acrostic.is_empty() { "-" } else { acrostic },
                if rhyme { "yes" } else { "-" },
                sum / k as f64,
                (sum - last) / (k - n) as f64
            );
        }
    }
}
