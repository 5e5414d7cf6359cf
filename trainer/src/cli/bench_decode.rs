//! `tinypoet bench decode`: decoding speed of `tinypoet-core` on this machine, every available
//! backend against the portable scalar backend measured in the same process.
//!
//! One run = load nothing (the blob is parsed once), reset the decoder, prefill the prompt, then
//! `--chars` × (sample + feed) with the default sampler and a per-run seed — what `tinypoet
//! generate --no-stop` does, minus the terminal. Reported per backend: the median over the runs of
//! the time to the first generated character (prefill + first sample), of the time to 100
//! characters, and of the decoding rate in characters per second; and the ratio of the rate to the
//! scalar backend's. All backends produce bit-identical logits, so every run generates the same
//! text on every backend (checked).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context};
use clap::Args;
use tinypoet_core::kernels::Backend;
use tinypoet_core::{state_words, Decoder, KvPrecision, Model, Rng, SamplerSettings, Token};

use super::generate::resolve_model;
use super::kv_arg::KvArg;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  tinypoet bench decode                     # bundled model, every backend vs scalar
  tinypoet bench decode --model runs/tang/model.tpb --runs 20 --json")]
pub struct BenchDecodeArgs {
    /// Model blob (default: the bundled models/tinypoet-tang.tpb).
    #[arg(long, value_name = "BLOB")]
    pub model: Option<PathBuf>,
    /// Prompt prefilled before generating.
    #[arg(long, default_value = "春夜喜雨")]
    pub prompt: String,
    /// Characters generated per run (the context slides past the model's context length).
    #[arg(long, default_value_t = 200)]
    pub chars: usize,
    /// Timed runs per backend (medians are reported); one untimed warm-up run precedes them.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// KV cache precision.
    #[arg(long, value_enum, default_value_t = KvArg::F16)]
    pub kv: KvArg,
    /// Print one JSON object per backend instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Medians of one backend's runs.
struct DecodeBench {
    backend: Backend,
    first_char_ms: f64,
    hundred_chars_ms: Option<f64>,
    chars_per_s: f64,
    /// Hash of every generated token of every run: equal across backends.
    checksum: u64,
}

pub fn run(a: BenchDecodeArgs) -> anyhow::Result<()> {
    ensure!(
        a.runs >= 1 && a.chars >= 1,
        "--runs and --chars must be at least 1"
    );
    let path = resolve_model(a.model.as_deref())?;
    let bytes = crate::io::fsx::read_input(&path, crate::io::fsx::limits::BLOB)
        .with_context(|| format!("cannot read model {}", path.display()))?;
    let t_load = Instant::now();
    let model = Model::load(&bytes)
        .map_err(|e| anyhow!("{}: corrupt or not a tinypoet model: {e}", path.display()))?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    let tok = model.tokenizer();
    let prompt: Vec<Token> = a
        .prompt
        .chars()
        .map(|c| {
            tok.id(c)
                .map_err(|_| anyhow!("the prompt character {c:?} is not in the model's vocabulary"))
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(!prompt.is_empty(), "the prompt is empty");
    let kv = KvPrecision::from(a.kv);
    let mut state = vec![0f32; state_words(model.config(), kv)];

    // Scalar first: it is the baseline every other backend is compared with.
    let mut backends = vec![Backend::Scalar];
    backends.extend(
        Backend::ALL
            .into_iter()
            .filter(|b| *b != Backend::Scalar && b.is_available()),
    );
    let mut results = Vec::new();
    for &backend in &backends {
        let mut dec = Decoder::with_backend(&model, &mut state, kv, backend)
            .map_err(|e| anyhow!("cannot set up the decoder: {e}"))?;
        results.push(time_backend(&mut dec, backend, &prompt, a.chars, a.runs)?);
    }
    let base = results[0].chars_per_s;
    if results.iter().any(|r| r.checksum != results[0].checksum) {
        bail!("backends generated different text: a kernel bug (they must be bit-identical)");
    }
    let load1 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    if !a.json {
        crate::outln!(
            "bench decode: {} ({} bytes, parsed in {load_ms:.2} ms), prompt {} chars + {} generated, KV {kv:?}, {} runs, 1 thread, load {load1}",
            path.display(),
            bytes.len(),
            prompt.len(),
            a.chars,
            a.runs
        );
        crate::outln!(
            "  {:<12} {:>14} {:>15} {:>10} {:>9}",
            "backend",
            "first char ms",
            "100 chars ms",
            "chars/s",
            "vs scalar"
        );
    }
    for r in &results {
        let hundred = r
            .hundred_chars_ms
            .map_or("-".to_string(), |v| format!("{v:.2}"));
        if a.json {
            crate::outln!(
                "{{\"backend\":\"{:?}\",\"kv\":\"{kv:?}\",\"runs\":{},\"chars\":{},\"first_char_ms\":{:.3},\"hundred_chars_ms\":{},\"chars_per_s\":{:.0},\"ratio_vs_scalar\":{:.2},\"load_ms\":{load_ms:.3},\"load1\":{load1}}}",
                r.backend,
                a.runs,
                a.chars,
                r.first_char_ms,
                r.hundred_chars_ms.map_or("null".to_string(), |v| format!("{v:.3}")),
                r.chars_per_s,
                r.chars_per_s / base
            );
        } else {
            crate::outln!(
                "  {:<12} {:>14.2} {:>15} {:>10.0} {:>8.1}x",
                format!("{:?}", r.backend),
                r.first_char_ms,
                hundred,
                r.chars_per_s,
                r.chars_per_s / base
            );
        }
    }
    Ok(())
}

fn time_backend(
    dec: &mut Decoder<'_>,
    backend: Backend,
    prompt: &[Token],
    chars: usize,
    runs: usize,
) -> anyhow::Result<DecodeBench> {
    let settings = SamplerSettings::DEFAULT;
    let (mut first, mut hundred, mut rate) = (Vec::new(), Vec::new(), Vec::new());
    let mut checksum = 0u64;
    for run in 0..=runs {
        let mut rng = Rng::new(run as u64);
        let t0 = Instant::now();
        dec.reset();
        dec.prefill(prompt).map_err(|e| anyhow!("prefill: {e}"))?;
        let mut t_first = 0.0;
        let mut t_hundred = None;
        for i in 0..chars {
            let id = dec
                .sample(&settings, &mut rng)
                .map_err(|e| anyhow!("sample: {e}"))?;
            dec.feed(id).map_err(|e| anyhow!("feed: {e}"))?;
            checksum = checksum.wrapping_mul(31).wrapping_add(u64::from(id));
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if i == 0 {
                t_first = ms;
            }
            if i == 99 {
                t_hundred = Some(ms);
            }
        }
        let total = t0.elapsed().as_secs_f64();
        if run == 0 {
            continue; // warm-up: caches, page faults of the weights
        }
        first.push(t_first);
        if let Some(h) = t_hundred {
            hundred.push(h);
        }
        rate.push(chars as f64 / total);
    }
    Ok(DecodeBench {
        backend,
        first_char_ms: median(&mut first),
        hundred_chars_ms: (!hundred.is_empty()).then(|| median(&mut hundred)),
        chars_per_s: median(&mut rate),
        checksum,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
