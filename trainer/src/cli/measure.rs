//! `tinypoet measure-titles`: how a model writes for a title, over titles × seeds, through
//! `tinypoet-core` (issue 14's measurement of the finetune and alignment stages).
//!
//! For each title (by default the first N titles of the finetune eval split, which no stage
//! trains on) and each seed, the instruction prompt `<INS>請用以下題目寫一首詩<INP>{title}<RES>`
//! is fed to the core's decoder and characters are sampled with the reference's settings
//! (temperature 1, no top-k/top-p) until it samples end-of-text (`\0`) or the context is full
//! (prompt + poem = 256 positions, the row width the stages train; the decoder never slides).
//! Reported: the share of poems that ended by themselves, and the share of five-character poems
//! (the alignment stage's positive class: at least two lines, every line 12 characters —
//! 5 + punctuation + 5 + punctuation — the dataset's definition), over all generations and
//! among the ended ones.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use tinypoet_core::{state_words, Decoder, GenerateSettings, KvPrecision, Model, SamplerSettings};

use crate::data::corpus::text::instruction_prompt;

/// Measure end-of-text and five-character shares for titles × seeds.
#[derive(Args, Debug)]
#[command(after_help = "\
Example:
  tinypoet measure-titles --model models/tinypoet-tang-aligned.tpb --data data/tang.tpd \\
      --titles 20 --seeds 10

Prints one line per generation with --verbose, then the shares.")]
pub struct MeasureArgs {
    /// Model blob.
    #[arg(long, value_name = "BLOB")]
    pub model: PathBuf,
    /// Prepared dataset: the titles are taken from its finetune eval split.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Number of titles (the first ones of the finetune eval split with a non-empty title).
    #[arg(long, default_value_t = 20)]
    pub titles: usize,
    /// Seeds per title (1..=N).
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// Print every poem.
    #[arg(long)]
    pub verbose: bool,
}

/// The five-character test of the dataset (spec §2), on a generated poem: at least two lines
/// and every line exactly 12 code points.
pub fn is_five_character(poem: &str) -> bool {
    let lines: Vec<&str> = poem.split('\n').collect();
    lines.len() >= 2 && lines.iter().all(|l| l.chars().count() == 12)
}

/// The first `n` non-empty titles of the finetune eval split.
fn eval_titles(ds: &crate::data::corpus::Dataset, n: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for item in ds.finetune_eval().iter() {
        let s = ds.decode(item).map_err(|e| anyhow!("{e}"))?;
        let title = s
            .split_once("<INP>")
            .and_then(|(_, r)| r.split_once("<RES>"))
            .map(|(t, _)| t.to_string())
            .ok_or_else(|| anyhow!("a finetune item is not an instruction text"))?;
        if !title.is_empty() {
            out.push(title);
        }
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

pub fn run(args: MeasureArgs) -> anyhow::Result<()> {
    let ds = crate::data::corpus::Dataset::load(&args.data)
        .with_context(|| format!("loading {}", args.data.display()))?;
    let bytes =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let model = Model::load(&bytes).map_err(|e| anyhow!("{}: {e}", args.model.display()))?;
    let titles = eval_titles(&ds, args.titles)?;
    let mut state = vec![0f32; state_words(model.config(), KvPrecision::F16)];
    let (mut total, mut ended, mut five, mut five_ended) = (0usize, 0usize, 0usize, 0usize);
    for title in &titles {
        let prompt = instruction_prompt(title);
        for seed in 1..=args.seeds {
            let mut dec = Decoder::new(&model, &mut state, KvPrecision::F16)
                .map_err(|e| anyhow!("core decoder: {e}"))?;
            let prompt_tokens = prompt.chars().count();
            let settings = GenerateSettings {
                sampler: SamplerSettings::DEFAULT,
                seed,
                max_new_chars: model.config().context.saturating_sub(prompt_tokens),
                stop: &[],
                stop_at_end_of_text: true,
            };
            let mut poem = String::new();
            let g = dec
                .generate(&prompt, &settings, |c| {
                    poem.push(c);
                    ControlFlow::Continue(())
                })
                .map_err(|e| anyhow!("generating for {title}: {e}"))?;
            let end = g.reason == tinypoet_core::StopReason::EndOfText;
            let is_five = is_five_character(&poem);
            total += 1;
            ended += usize::from(end);
            five += usize::from(is_five);
            five_ended += usize::from(is_five && end);
            if args.verbose {
                crate::outln!(
                    "[{title} seed {seed}] {} {}{}",
                    if end { "ended" } else { "cut" },
                    if is_five { "five-char " } else { "" },
                    poem.replace('\n', " / ")
                );
            }
        }
    }
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    crate::outln!(
        "model {}: {} titles x {} seeds = {total} poems",
        args.model.display(),
        titles.len(),
        args.seeds
    );
    crate::outln!(
        "ended by themselves at end-of-text within the 256-position context: {ended}/{total} = {:.1}%",
        pct(ended, total)
    );
    crate::outln!(
        "five-character poems: {five}/{total} = {:.1}% of all, {five_ended}/{ended} = {:.1}% of the ended ones",
        pct(five, total),
        pct(five_ended, ended)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_character_test() {
        assert!(is_five_character(
            "白日依山盡，黃河入海流。\n欲窮千里目，更上一層樓。"
        ));
        assert!(!is_five_character("白日依山盡，黃河入海流。"));
        assert!(!is_five_character(
            "春眠不覺曉，處處聞啼鳥。\n夜來風雨聲，花落知多少"
        ));
        assert!(!is_five_character(
            "朝辭白帝彩雲間，千里江陵一日還。\n兩岸猿聲啼不住，輕舟已過萬重山。"
        ));
    }
}
