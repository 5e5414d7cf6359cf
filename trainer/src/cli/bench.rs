//! `tinypoet bench`: throughput benchmarks. `bench train` times full training steps of the
//! trainer's kernels; other subcommands (decoding speed) live beside it.
//!
//! A timed step is what the reference's loop does per iteration: fetch a batch of random
//! windows, forward, backward, AdamW. The token stream is synthetic (uniform ids drawn from the
//! torch-compatible generator), which changes nothing in the kernels' cost.

use std::time::Instant;

use anyhow::{ensure, Context};
use clap::{Args, Subcommand};

use crate::data::batch::random_batch;
use crate::nn::adamw::{AdamW, AdamWConfig};
use crate::nn::init::{init_params, InitScheme};
use crate::nn::model::{ModelError, TrainModel};
use crate::nn::mt19937::Mt19937;
#[cfg(feature = "op-times")]
use crate::nn::op_times::Op;
use crate::nn::params::{Config, Params};
use crate::run::options::TrainOptions;

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
    /// GFLOP/s of the trainer's GEMM on the products one training step runs (one thread).
    Gemm(BenchGemmArgs),
    /// The fused LM head + cross-entropy (forward and backward) at candidate tile sizes.
    Head(BenchHeadArgs),
}

#[derive(Args, Debug)]
pub struct BenchHeadArgs {
    /// Rows N (batch·time).
    #[arg(long, default_value_t = 4096)]
    pub rows: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Rows per tile, comma-separated candidates.
    #[arg(long, value_delimiter = ',', default_value = "128")]
    pub tile_rows: Vec<usize>,
    /// Vocabulary entries per block, comma-separated candidates.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub vocab_block: Vec<usize>,
    /// Vocabulary parts (processed in parallel), comma-separated candidates.
    #[arg(long, value_delimiter = ',', default_value = "4")]
    pub parts: Vec<usize>,
    /// Timed calls per candidate (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
}

#[derive(Args, Debug)]
pub struct BenchGemmArgs {
    /// Repetitions per shape (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Rows per LM-head tile (the `64` of the head's shapes).
    #[arg(long, default_value_t = crate::nn::ops::head_ce::TILE_ROWS)]
    pub tile: usize,
    /// Use the portable kernel instead of the AVX-512 one (builds with the `portable-switch`
    /// feature).
    #[arg(long)]
    pub portable: bool,
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
    /// Also print the wall time per operation (forward/backward kernels, batch, AdamW; builds
    /// with the `op-times` feature).
    #[arg(long)]
    pub ops: bool,
}

/// FLOPs of one step at 16×256 (spec §7: dense attention as the reference computes it).
pub const FLOPS_PER_STEP_16X256: f64 = 21_497_905_152.0;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Train(a) => bench_train(a),
        BenchCommand::Decode(a) => super::bench_decode::run(a),
        BenchCommand::Gemm(a) => bench_gemm(a),
        BenchCommand::Head(a) => bench_head(a),
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
    /// Per-operation milliseconds (`ops`), the median over the timed steps of each: the
    /// model's operations (`nn::op_times::Op`), then the batch fetch and the AdamW update. (Medians, so a step slowed
    /// by another process on the machine does not skew them.)
    pub op_ms: Option<Vec<(&'static str, f64)>>,
}

/// Time `steps` training steps after `warmup` untimed ones on the current rayon pool; with
/// `ops` (builds with the `op-times` feature only) also each operation.
///
/// # Errors
/// [`ModelError`] when `batch`/`seq` do not fit `cfg` (the synthetic batches themselves are
/// always valid).
pub fn time_train_steps(
    cfg: &Config,
    batch: usize,
    seq: usize,
    warmup: usize,
    steps: usize,
    ops: bool,
) -> Result<TrainBench, ModelError> {
    let mut params: Params = init_params(cfg, 2024, InitScheme::Fast);
    let mut grads = Params::zeros(cfg);
    let mut opt = AdamW::new(params.data.len(), AdamWConfig::default());
    let mut model = TrainModel::new(cfg, batch, seq)?;
    // A synthetic "train split" the size of the real one (1.55 M tokens).
    let mut rng = Mt19937::init_genrand(2024);
    let data: Vec<u16> = (0..1_552_553)
        .map(|_| rng.torch_randint(cfg.vocab_size as u32) as u16)
        .collect();
    let lr = TrainOptions::default().lr;
    let mut x = vec![0u16; batch * seq];
    let mut y = vec![0u16; batch * seq];
    let mut step_ms = Vec::with_capacity(steps);
    let mut final_loss = 0.0;
    let mut cpu0 = None;
    // Per timed step: nanoseconds of each Op, then batch fetch and AdamW.
    #[cfg(feature = "op-times")]
    let mut per_step: Vec<[u64; Op::ALL.len() + 2]> = Vec::with_capacity(steps);
    #[cfg(feature = "op-times")]
    {
        model.op_times().enabled = ops;
    }
    for i in 0..warmup + steps {
        if i == warmup {
            cpu0 = process_cpu_seconds();
        }
        #[cfg(feature = "op-times")]
        model.op_times().reset();
        let t0 = Instant::now();
        random_batch(&data, &mut rng, batch, seq, &mut x, &mut y);
        let t1 = Instant::now();
        final_loss = model.forward_backward(&params, &mut grads, &x, &y, batch, seq)?;
        let t2 = Instant::now();
        opt.step(&mut params.data, &grads.data, lr);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            step_ms.push(ms);
            #[cfg(feature = "op-times")]
            {
                let mut row = [0u64; Op::ALL.len() + 2];
                row[..Op::ALL.len()].copy_from_slice(&model.op_times().ns);
                row[Op::ALL.len()] = (t1 - t0).as_nanos() as u64;
                row[Op::ALL.len() + 1] = t2.elapsed().as_nanos() as u64;
                per_step.push(row);
            }
        }
        // The batch and AdamW times are only reported with the operations'.
        #[cfg(not(feature = "op-times"))]
        let _ = (t1, t2);
    }
    // Without the feature nothing was timed (`bench_train` refuses `--ops` then).
    #[cfg(not(feature = "op-times"))]
    let op_ms = {
        let _ = ops;
        None
    };
    #[cfg(feature = "op-times")]
    let op_ms = ops.then(|| {
        model.op_times().enabled = false;
        let names = Op::ALL
            .iter()
            .map(|op| op.name())
            .chain(["batch fetch", "AdamW"]);
        names
            .enumerate()
            .map(|(k, name)| {
                let mut v: Vec<f64> = per_step.iter().map(|r| r[k] as f64 * 1e-6).collect();
                v.sort_by(f64::total_cmp);
                (name, median(&v))
            })
            .collect()
    });
    let cpu_ms_per_step = match (cpu0, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some((b - a) * 1e3 / steps as f64),
        _ => None,
    };
    let mut sorted = step_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median_ms = median(&sorted);
    Ok(TrainBench {
        step_ms,
        median_ms,
        cpu_ms_per_step,
        final_loss,
        op_ms,
    })
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
    ensure!(
        !a.ops || cfg!(feature = "op-times"),
        "--ops needs a build with the op-times feature (cargo build --release --features op-times)"
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .context("building the thread pool")?;
    let r = pool.install(|| time_train_steps(&cfg, a.batch, a.seq, a.warmup, a.steps, a.ops))?;
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
        crate::outln!(
            "{{\"median_ms\":{:.3},\"min_ms\":{:.3},\"max_ms\":{:.3},\"tokens_per_s\":{:.0},\"gflops\":{:.1},\"peak_rss_mib\":{:.1},\"cpu_ms_per_step\":{:.1},\"batch\":{},\"seq\":{},\"threads\":{},\"steps\":{},\"loss\":{:.4}}}",
            r.median_ms, min, max, tok_s, gflops, rss, cpu, a.batch, a.seq, a.threads, a.steps, r.final_loss
        );
    } else {
        crate::outln!(
            "bench train: batch {}x{}, {} threads, {} steps after {} warm-up",
            a.batch,
            a.seq,
            a.threads,
            a.steps,
            a.warmup
        );
        crate::outln!(
            "  median {:.2} ms/step (min {:.2}, max {:.2})",
            r.median_ms,
            min,
            max
        );
        crate::outln!(
            "  {:.0} tokens/s, {:.1} GFLOP/s ({:.4e} FLOPs/step)",
            tok_s,
            gflops,
            flops
        );
        crate::outln!("  CPU time {:.1} ms/step (all threads)", cpu);
        crate::outln!("  peak RSS {:.1} MiB", rss);
        crate::outln!("  GEMM kernel: {}", crate::nn::ops::gemm::f32_kernel_name());
    }
    if let Some(ops) = &r.op_ms {
        let total: f64 = ops.iter().map(|o| o.1).sum();
        crate::outln!(
            "  wall time per operation (median ms over the timed steps; sum {total:.1}):"
        );
        for (name, ms) in ops {
            crate::outln!("    {name:<20} {ms:8.2}  {:5.1}%", 100.0 * ms / total);
        }
    }
    Ok(())
}

/// One product of the benchmark: `C[m×n] (=|+=) A[m×k]·B[k×n]` in the operand forms a kernel
/// uses.
struct GemmShape {
    what: &'static str,
    m: usize,
    n: usize,
    k: usize,
    /// A read transposed (`dWᵀ`-style products).
    a_t: bool,
    /// B from a [`PackedB`] (transposed weights, `Kᵀ`).
    packed: bool,
    /// Times this product runs per 16×256 step (for the step-share column).
    per_step: usize,
}

fn bench_gemm(a: BenchGemmArgs) -> anyhow::Result<()> {
    #[cfg(feature = "portable-switch")]
    use crate::nn::ops::gemm::set_portable_only;
    use crate::nn::ops::gemm::{gemm, MatA, MatB, PackedB, Update};
    ensure!(
        a.reps >= 1 && a.tile >= 1,
        "reps and tile must be at least 1"
    );
    ensure!(
        !a.portable || cfg!(feature = "portable-switch"),
        "--portable needs a build with the portable-switch feature \
         (cargo build --release --features portable-switch)"
    );
    #[cfg(feature = "portable-switch")]
    set_portable_only(a.portable);
    let (v, c, f, d, r) = (8548, 64, 256, 16, a.tile);
    let n = 4096;
    let tiles = n / r;
    let g = |what, m, n, k, a_t, packed, per_step| GemmShape {
        what,
        m,
        n,
        k,
        a_t,
        packed,
        per_step,
    };
    // The products of one 16×256 step as the kernels call them (attention: the average block,
    // 160 keys; per step: fwd + recompute + dP for the score-shaped ones).
    let (nq, kk) = (64, 160);
    let attn = 16 * 4 * 4 * 4; // sequences × heads × blocks × layers
    let shapes = [
        g("head logitsᵀ = W·xᵀ", v, r, c, false, true, tiles),
        g("head dx = dl·W", r, c, v, true, false, tiles),
        g("head dW += dlᵀ·x", v, c, r, false, false, tiles),
        g("qkv fwd (256 rows)", 256, 3 * c, c, false, true, 64),
        g("fc1 fwd (256 rows)", 256, f, c, false, true, 64),
        g("fc2 fwd (256 rows)", 256, c, f, false, true, 64),
        g("fc1 dinp (256 rows)", 256, c, f, false, true, 64),
        g("fc2 dinp (256 rows)", 256, f, c, false, true, 64),
        g("fc1 dW part (1024 r.)", f, c, 1024, true, false, 16),
        g("fc2 dWᵀ part (1024 r.)", f, c, 1024, true, false, 16),
        g("attn Sᵀ, dPᵀ (k=D)", kk, nq, d, false, true, 3 * attn),
        g("attn O, dQ (n=D)", nq, d, kk, true, false, 2 * attn),
        g("attn dK, dV (n=D)", kk, d, nq, false, false, 2 * attn),
    ];
    crate::outln!(
        "bench gemm: one thread, {} kernel, median of {} runs, head tile {r} rows",
        crate::nn::ops::gemm::f32_kernel_name(),
        a.reps
    );
    crate::outln!(
        "  {:<22} {:>5} {:>5} {:>5} {:>9} {:>8} {:>10}",
        "product",
        "m",
        "n",
        "k",
        "µs",
        "GFLOP/s",
        "ms/step*"
    );
    let mut sum = 0.0;
    for s in &shapes {
        let fill = |len: usize, seed: u32| -> Vec<f32> {
            (0..len)
                .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32)
                .collect()
        };
        let a_data = fill(s.m * s.k, 1);
        let b_data = fill(s.k * s.n, 2);
        let mut c_data = fill(s.m * s.n, 3);
        let mut pb = PackedB::new(s.k, s.n);
        if s.packed {
            pb.pack(&b_data, s.k, s.n, s.n, 1);
        }
        let mut times = Vec::with_capacity(a.reps);
        for _ in 0..a.reps + 2 {
            let am = if s.a_t {
                MatA::transposed(&a_data, s.m)
            } else {
                MatA::rows(&a_data, s.k)
            };
            let bm = if s.packed {
                MatB::packed(&pb)
            } else {
                MatB::Rows {
                    data: &b_data,
                    rs: s.n,
                }
            };
            let t0 = Instant::now();
            gemm(s.m, s.n, s.k, am, bm, &mut c_data, s.n, Update::Accumulate);
            times.push(t0.elapsed().as_secs_f64());
        }
        let mut sorted = times[2..].to_vec();
        sorted.sort_by(f64::total_cmp);
        let sec = median(&sorted);
        let flops = 2.0 * (s.m * s.n * s.k) as f64;
        let step_ms = sec * 1e3 * s.per_step as f64;
        sum += step_ms;
        crate::outln!(
            "  {:<22} {:>5} {:>5} {:>5} {:>9.1} {:>8.1} {:>10.2}",
            s.what,
            s.m,
            s.n,
            s.k,
            sec * 1e6,
            flops / sec / 1e9,
            step_ms
        );
        std::hint::black_box(&c_data);
    }
    crate::outln!("  * single-thread ms per 16×256 step for that product's count (listed shapes only; sum {sum:.1})");
    #[cfg(feature = "portable-switch")]
    set_portable_only(false);
    Ok(())
}

fn bench_head(a: BenchHeadArgs) -> anyhow::Result<()> {
    use crate::nn::ops::head_ce::{
        head_ce_forward_backward, HeadGrads, HeadScratch, RowWeights, MAX_TILE_ROWS,
    };
    use crate::nn::ops::Affine;
    ensure!(
        a.rows >= 1 && a.reps >= 1 && a.threads >= 1,
        "rows, reps, threads must be ≥ 1"
    );
    ensure!(
        a.tile_rows
            .iter()
            .all(|&t| (1..=MAX_TILE_ROWS).contains(&t))
            && a.vocab_block.iter().all(|&b| b >= 1)
            && a.parts.iter().all(|&p| p >= 1),
        "tile rows must be in 1..={MAX_TILE_ROWS}, vocabulary blocks and parts ≥ 1"
    );
    let cfg = Config::TANG;
    let (n, v, c) = (a.rows, cfg.vocab_size, cfg.dim);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .context("building the thread pool")?;
    let mut rng = Mt19937::init_genrand(5);
    let mut unif = |scale: f32| (rng.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale;
    let x: Vec<f32> = (0..n * c).map(|_| unif(1.7)).collect();
    let w: Vec<f32> = (0..v * c).map(|_| unif(0.125)).collect();
    let b: Vec<f32> = (0..v).map(|_| unif(0.125)).collect();
    let targets: Vec<u16> = (0..n)
        .map(|_| (unif(0.5) + 0.5).abs().min(0.999) as u16)
        .collect();
    let targets: Vec<u16> = targets
        .iter()
        .enumerate()
        .map(|(i, &t)| ((i * 7919 + t as usize) % v) as u16)
        .collect();
    let (mut dx, mut dw, mut db, mut losses) = (
        vec![0.0; n * c],
        vec![0.0; v * c],
        vec![0.0; v],
        vec![0.0; n],
    );
    let flops = 6.0 * (n * v * c) as f64;
    crate::outln!(
        "bench head: {n} rows, V {v}, C {c}, {} threads, {} kernel, median of {} calls",
        a.threads,
        crate::nn::ops::gemm::f32_kernel_name(),
        a.reps
    );
    for (&tr, &vb, &np) in a
        .tile_rows
        .iter()
        .flat_map(|t| a.vocab_block.iter().map(move |b| (t, b)))
        .flat_map(|(t, b)| a.parts.iter().map(move |p| (t, b, p)))
    {
        {
            let mut scratch = HeadScratch::with_tiles(n, v, c, tr, vb, np);
            let mut ms = Vec::new();
            let mut loss = 0.0;
            pool.install(|| {
                for i in 0..a.reps + 1 {
                    let t0 = Instant::now();
                    let grads = HeadGrads {
                        dx: &mut dx,
                        head: Affine {
                            w: &mut dw,
                            b: &mut db,
                        },
                    };
                    let head = Affine {
                        w: &w[..],
                        b: &b[..],
                    };
                    loss = head_ce_forward_backward(
                        grads,
                        &mut losses,
                        &mut scratch,
                        &x,
                        head,
                        &targets,
                        RowWeights::Mean,
                    );
                    if i > 0 {
                        ms.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                }
            });
            ms.sort_by(f64::total_cmp);
            let m = median(&ms);
            crate::outln!(
                "  tile {tr:>4} rows, vocab block {vb:>5}, {np:>2} parts: {m:8.2} ms  {:6.1} GFLOP/s  (loss {loss:.5})",
                flops / m / 1e6
            );
        }
    }
    Ok(())
}
