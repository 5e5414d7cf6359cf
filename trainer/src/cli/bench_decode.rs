//! `tinypoet bench decode`: decoding speed of `tinypoet-core` on this machine, one thread.
//!
//! One run = reset the decoder (the blob is parsed once), prefill the prompt, then `--chars` ×
//! (sample + feed) with the default sampler and a per-run seed — what `tinypoet generate
//! --no-stop` does, minus the terminal. One untimed warm-up run precedes `--runs` timed ones.
//! Reported per backend: the medians over the runs of the time to the first generated character
//! (prefill + first sample) and to 100 characters; the median and the best decoding rate in
//! characters per second of wall time; the rate per CPU second of this process (robust against
//! other jobs on the machine); and the ratio of the median rate to the scalar backend's when the
//! scalar backend is timed too. All backends produce bit-identical logits, so every run generates
//! the same text on every backend (checked).
//!
//! `bench/decode_vs_torch.sh` runs `--backend fastest --prompt 春 --chars 255 --json`: 1 + 255
//! positions, the whole context, as `bench/torch_decode.py` does with PyTorch.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context};
use clap::{Args, ValueEnum};
use tinypoet_core::kernels::Backend;
use tinypoet_core::{state_words, Decoder, KvPrecision, Model, Rng, SamplerSettings, Token};

use super::bench::process_cpu_seconds;
use super::generate::resolve_model;
use super::kv_arg::KvArg;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  tinypoet bench decode                     # bundled model, every backend vs scalar
  tinypoet bench decode --model models/tinypoet-tang-int8.tpb --backend fastest
  tinypoet bench decode --backend fastest --prompt 春 --chars 255 --runs 20 --json")]
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
    /// Kernels to time: every available backend (scalar first, the baseline), the fastest
    /// available one, or one by name.
    #[arg(long, value_enum, default_value_t = BackendArg::All)]
    pub backend: BackendArg,
    /// Print one JSON object per backend instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--backend`: which of the core's kernel backends to time.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendArg {
    /// Scalar first, then every other backend this machine runs.
    All,
    /// The one `tinypoet generate` uses: the fastest available.
    Fastest,
    /// The portable scalar kernels.
    Scalar,
    /// x86-64 AVX2 + F16C.
    Avx2,
    /// x86-64 AVX-512.
    Avx512,
}

impl BackendArg {
    /// The backends to time, in order; an unavailable named backend is an error.
    fn backends(self) -> anyhow::Result<Vec<Backend>> {
        let named = match self {
            BackendArg::All => {
                let mut v = vec![Backend::Scalar];
                v.extend(
                    Backend::ALL
                        .into_iter()
                        .filter(|b| *b != Backend::Scalar && b.is_available()),
                );
                return Ok(v);
            }
            BackendArg::Fastest => Backend::detect(),
            BackendArg::Scalar => Backend::Scalar,
            BackendArg::Avx2 => Backend::X86Avx2F16c,
            BackendArg::Avx512 => Backend::X86Avx512,
        };
        ensure!(
            named.is_available(),
            "the {named:?} backend is not available on this machine"
        );
        Ok(vec![named])
    }
}

/// One backend's runs.
struct DecodeBench {
    backend: Backend,
    /// Median time to the first generated character (prefill + first sample).
    first_char_ms: f64,
    /// Median time to 100 generated characters (`None` for runs of fewer).
    hundred_chars_ms: Option<f64>,
    median_chars_per_s: f64,
    best_chars_per_s: f64,
    /// Generated characters per CPU second of this process over the timed runs (`None` if the
    /// OS does not report CPU time).
    cpu_chars_per_s: Option<f64>,
    /// Hash of every generated token of every run: equal across backends.
    checksum: u64,
}

pub fn run(a: BenchDecodeArgs) -> anyhow::Result<()> {
    ensure!(
        a.runs >= 1 && a.chars >= 1,
        "--runs and --chars must be at least 1"
    );
    let backends = a.backend.backends()?;
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

    let mut results = Vec::new();
    for &backend in &backends {
        let mut dec = Decoder::with_backend(&model, &mut state, kv, backend)
            .map_err(|e| anyhow!("cannot set up the decoder: {e}"))?;
        results.push(time_backend(&mut dec, backend, &prompt, a.chars, a.runs)?);
    }
    if results.iter().any(|r| r.checksum != results[0].checksum) {
        bail!("backends generated different text: a kernel bug (they must be bit-identical)");
    }
    let scalar = results
        .iter()
        .find(|r| r.backend == Backend::Scalar)
        .map(|r| r.median_chars_per_s);
    let load1 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "null".into());
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
            "  {:<12} {:>14} {:>13} {:>15} {:>13} {:>15} {:>9}",
            "backend",
            "first char ms",
            "100 chars ms",
            "median chars/s",
            "best chars/s",
            "chars/CPU s",
            "vs scalar"
        );
    }
    let num = |v: Option<f64>, digits: usize, none: &str| {
        v.map_or(none.to_string(), |v| format!("{v:.digits$}"))
    };
    for r in &results {
        let ratio = scalar.map(|s| r.median_chars_per_s / s);
        if a.json {
            crate::outln!(
                "{{\"backend\":\"{:?}\",\"kv\":\"{kv:?}\",\"blob_bytes\":{},\"runs\":{},\"prompt_chars\":{},\"chars\":{},\"first_char_ms\":{:.3},\"hundred_chars_ms\":{},\"median_chars_per_s\":{:.0},\"best_chars_per_s\":{:.0},\"cpu_chars_per_s\":{},\"ratio_vs_scalar\":{},\"load_ms\":{load_ms:.3},\"load1\":{load1}}}",
                r.backend,
                bytes.len(),
                a.runs,
                prompt.len(),
                a.chars,
                r.first_char_ms,
                num(r.hundred_chars_ms, 3, "null"),
                r.median_chars_per_s,
                r.best_chars_per_s,
                num(r.cpu_chars_per_s, 0, "null"),
                num(ratio, 2, "null"),
            );
        } else {
            crate::outln!(
                "  {:<12} {:>14.2} {:>13} {:>15.0} {:>13.0} {:>15} {:>9}",
                format!("{:?}", r.backend),
                r.first_char_ms,
                num(r.hundred_chars_ms, 2, "-"),
                r.median_chars_per_s,
                r.best_chars_per_s,
                num(r.cpu_chars_per_s, 0, "-"),
                ratio.map_or("-".to_string(), |v| format!("{v:.1}x")),
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
    let mut cpu0 = None;
    for run in 0..=runs {
        if run == 1 {
            cpu0 = process_cpu_seconds();
        }
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
    let cpu_chars_per_s = match (cpu0, process_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => Some((runs * chars) as f64 / (b - a)),
        _ => None,
    };
    Ok(DecodeBench {
        backend,
        first_char_ms: median(&mut first),
        hundred_chars_ms: (!hundred.is_empty()).then(|| median(&mut hundred)),
        median_chars_per_s: median(&mut rate),
        best_chars_per_s: rate.iter().copied().fold(0.0, f64::max),
        cpu_chars_per_s,
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
