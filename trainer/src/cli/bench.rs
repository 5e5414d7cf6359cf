//! `tinypoet bench`: throughput benchmarks. `bench train` times full training steps of the
//! trainer's kernels; other subcommands (decoding speed) live beside it.
//!
//! A timed step is what the reference's loop does per iteration: fetch a batch of random
//! windows, forward, backward, AdamW. The token stream is synthetic (uniform ids drawn from the
//! torch-compatible generator), which changes nothing in the kernels' cost.

use std::time::Instant;

use anyhow::{ensure, Context};
use clap::{Args, Subcommand};

use crate::adamw::{AdamW, AdamWConfig};
use crate::init::{init_params, InitScheme};
use crate::model::TrainModel;
use crate::mt19937::Mt19937;
use crate::params::{Config, Params};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Median milliseconds per training step (batch + forward + backward + AdamW).
    Train(BenchTrainArgs),
    /// Decoding speed of tinypoet-core: every available backend vs the scalar one.
    Decode(super::bench_decode::BenchDecodeArgs),
}

#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// Sequences per batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Worker threads (the rayon pool the kernels run on).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// FLOPs of one step at 16×256 (spec §7: dense attention as the reference computes it).
pub const FLOPS_PER_STEP_16X256: f64 = 21_497_905_152.0;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Train(a) => bench_train(a),
        BenchCommand::Decode(a) => super::bench_decode::run(a),
    }
}

/// Result of [`time_train_steps`].
#[derive(Clone, Debug)]
pub struct TrainBench {
    pub step_ms: Vec<f64>,
    pub median_ms: f64,
    /// Process CPU time (all threads, user + system) per timed step, if the OS reports it. On a
    /// busy machine this moves much less than wall time: it is the number to compare then.
    pub cpu_ms_per_step: Option<f64>,
    pub final_loss: f32,
}

/// Time `steps` training steps after `warmup` untimed ones on the current rayon pool.
pub fn time_train_steps(
    cfg: &Config,
    batch: usize,
    seq: usize,
    warmup: usize,
    steps: usize,
) -> TrainBench {
    let mut params: Params = init_params(cfg, 2024, InitScheme::Fast);
    let mut grads = Params::zeros(cfg);
    let mut opt = AdamW::new(params.data.len(), AdamWConfig::default());
    let mut model = TrainModel::new(cfg, batch, seq);
    // A synthetic "train split" the size of the real one (1.55 M tokens).
    let mut rng = Mt19937::init_genrand(2024);
    let data: Vec<u16> = (0..1_552_553)
        .map(|_| rng.torch_randint(cfg.vocab_size as u32) as u16)
        .collect();
    let high = (data.len() - seq) as u32;
    let mut x = vec![0u16; batch * seq];
    let mut y = vec![0u16; batch * seq];
    let mut step_ms = Vec::with_capacity(steps);
    let mut final_loss = 0.0;
    let mut cpu0 = None;
    for i in 0..warmup + steps {
        if i == warmup {
            cpu0 = process_cpu_seconds();
        }
        let t0 = Instant::now();
        for b in 0..batch {
            let s = rng.torch_randint(high) as usize;
            x[b * seq..(b + 1) * seq].copy_from_slice(&data[s..s + seq]);
            y[b * seq..(b + 1) * seq].copy_from_slice(&data[s + 1..s + seq + 1]);
        }
        final_loss = model.forward_backward(&params, &mut grads, &x, &y, batch, seq);
        opt.step(&mut params.data, &grads.data, 1e-3);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            step_ms.push(ms);
        }
    }
    let cpu_ms_per_step = match (cpu0, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some((b - a) * 1e3 / steps as f64),
        _ => None,
    };
    let mut sorted = step_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median_ms = median(&sorted);
    TrainBench {
        step_ms,
        median_ms,
        cpu_ms_per_step,
        final_loss,
    }
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, 100 Hz ticks).
pub fn process_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// Peak resident set size of this process in bytes (`VmHWM`), if the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn bench_train(a: BenchTrainArgs) -> anyhow::Result<()> {
    ensure!(
        a.batch >= 1 && a.seq >= 1 && a.steps >= 1,
        "batch, seq and steps must be at least 1"
    );
    let cfg = Config::TANG;
    ensure!(
        a.seq <= cfg.context,
        "seq {} exceeds the model context {}",
        a.seq,
        cfg.context
    );
    ensure!(a.threads >= 1, "threads must be at least 1");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .context("building the thread pool")?;
    let r = pool.install(|| time_train_steps(&cfg, a.batch, a.seq, a.warmup, a.steps));
    let tokens = (a.batch * a.seq) as f64;
    let flops = FLOPS_PER_STEP_16X256 * tokens / 4096.0;
    let tok_s = tokens / (r.median_ms / 1e3);
    let gflops = flops / (r.median_ms / 1e3) / 1e9;
    let rss = peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let cpu = r.cpu_ms_per_step.unwrap_or(f64::NAN);
    let (min, max) = r
        .step_ms
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if a.json {
        println!(
            "{{\"median_ms\":{:.3},\"min_ms\":{:.3},\"max_ms\":{:.3},\"tokens_per_s\":{:.0},\"gflops\":{:.1},\"peak_rss_mib\":{:.1},\"cpu_ms_per_step\":{:.1},\"batch\":{},\"seq\":{},\"threads\":{},\"steps\":{},\"loss\":{:.4}}}",
            r.median_ms, min, max, tok_s, gflops, rss, cpu, a.batch, a.seq, a.threads, a.steps, r.final_loss
        );
    } else {
        println!(
            "bench train: batch {}x{}, {} threads, {} steps after {} warm-up",
            a.batch, a.seq, a.threads, a.steps, a.warmup
        );
        println!(
            "  median {:.2} ms/step (min {:.2}, max {:.2})",
            r.median_ms, min, max
        );
        println!(
            "  {:.0} tokens/s, {:.1} GFLOP/s ({:.4e} FLOPs/step)",
            tok_s, gflops, flops
        );
        println!("  CPU time {:.1} ms/step (all threads)", cpu);
        println!("  peak RSS {:.1} MiB", rss);
    }
    Ok(())
}
