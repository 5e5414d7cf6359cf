//! Decoding speed of the full-size Tang model (random weights, f16 or int8 blob) on one thread.
//!
//! `cargo run --release -p tinypoet-core --features std --example bench_decode -- [--reps N] [--backend scalar|avx2|avx512] [--kv f16|f32] [--dtype f16|int8] [--json]`
//!
//! One run = reset, feed a 1-character prompt, then 255 × (sample with temperature 1 + feed):
//! 255 generated characters with the KV cache, like `bench/torch_decode.py`. Prints the best
//! and median chars/s over the repetitions and the machine load.
use std::time::Instant;

use tinypoet_core::blob::{self, BlobInput, Manifest, WeightDtype};
use tinypoet_core::kernels::Backend;
use tinypoet_core::{
    state_words, tensor_specs, Config, Decoder, KvPrecision, Model, Rng, SamplerSettings,
};

fn splitmix(s: &mut u64) -> f64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let reps: usize = get("--reps").map_or(Ok(20), |s| s.parse())?;
    let kv = match get("--kv").as_deref() {
        Some("f32") => KvPrecision::F32,
        _ => KvPrecision::F16,
    };
    let backend = match get("--backend").as_deref() {
        Some("scalar") => Backend::Scalar,
        Some("avx2") => Backend::X86Avx2F16c,
        Some("avx512") => Backend::X86Avx512,
        _ => Backend::detect(),
    };
    let json = args.iter().any(|a| a == "--json");
    let dtype = match get("--dtype").as_deref() {
        Some("int8") => WeightDtype::INT8,
        _ => WeightDtype::F16,
    };

    // Random weights with PyTorch's default init scales.
    let cfg = Config::TANG;
    let mut seed = 1u64;
    let params: Vec<Vec<f32>> = tensor_specs(&cfg)
        .map(|s| {
            let fan_in = *s.shape.dims().last().unwrap() as f64;
            (0..s.shape.numel())
                .map(|_| {
                    let u = splitmix(&mut seed);
                    (match s.shape.dims().len() {
                        2 => (2.0 * u - 1.0) / fan_in.sqrt(),
                        _ => 0.1 * (2.0 * u - 1.0),
                    }) as f32
                })
                .collect()
        })
        .collect();
    let tensors: Vec<&[f32]> = params.iter().map(|t| t.as_slice()).collect();
    let mut vocab: Vec<char> = vec!['\0', '\n'];
    vocab.extend(
        (0x4E00u32..)
            .filter_map(char::from_u32)
            .take(cfg.vocab_size - 2),
    );
    let input = BlobInput {
        config: cfg,
        vocab: &vocab,
        manifest: Manifest::EMPTY,
        dtype,
        tensors: &tensors,
    };
    let mut bytes = vec![0u8; blob::encoded_len(&input)?];
    blob::write(&input, &mut bytes)?;
    let t0 = Instant::now();
    let model = Model::load(&bytes)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;

    if args.iter().any(|a| a == "--parts") {
        if model.q8_group().is_some() {
            return Err("--parts times the f16 kernels: use it without --dtype int8".into());
        }
        parts(&model, backend);
    }
    let mut state = vec![0f32; state_words(&cfg, kv)];
    let mut dec = Decoder::with_backend(&model, &mut state, kv, backend)?;
    let n_new = cfg.context - 1;
    let mut rates = Vec::new();
    let mut checksum = 0u64;
    let mut cpu0 = 0.0;
    for rep in 0..reps + 2 {
        if rep == 2 {
            cpu0 = cpu_seconds();
        }
        let mut rng = Rng::new(rep as u64);
        let t = Instant::now();
        dec.reset();
        dec.feed(2)?;
        for _ in 0..n_new {
            let id = dec.sample(&SamplerSettings::DEFAULT, &mut rng)?;
            checksum = checksum.wrapping_mul(31).wrapping_add(id as u64);
            dec.feed(id)?;
        }
        let dt = t.elapsed().as_secs_f64();
        if rep >= 2 {
            rates.push(n_new as f64 / dt); // the first 2 runs warm the caches
        }
    }
    // chars per second of CPU time this process got: robust against other jobs on the machine
    let cpu_rate = (reps * n_new) as f64 / (cpu_seconds() - cpu0);
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let best = *rates.last().unwrap();
    let median = rates[rates.len() / 2];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1 = load.split_whitespace().next().unwrap_or("?");
    if json {
        println!(
            "{{\"backend\":\"{backend:?}\",\"dtype\":\"{dtype:?}\",\"kv\":\"{kv:?}\",\"reps\":{reps},\"best_chars_per_s\":{best:.0},\"median_chars_per_s\":{median:.0},\"cpu_chars_per_s\":{cpu_rate:.0},\"load1\":{load1},\"blob_bytes\":{},\"load_ms\":{load_ms:.2}}}",
            bytes.len()
        );
    } else {
        println!(
            "tinypoet-core decode: backend {backend:?}, weights {dtype:?}, KV {kv:?}, {n_new} chars/run, {reps} runs"
        );
        println!("  best   {best:>9.0} chars/s");
        println!("  median {median:>9.0} chars/s");
        println!("  per CPU second {cpu_rate:>9.0} chars/s (user+system time of this process)");
        println!("  blob {} bytes, parse+validate {load_ms:.2} ms, loadavg {load1}, checksum {checksum:x}", bytes.len());
    }
    Ok(())
}

/// Minimum time of each part over many repetitions (robust against a loaded machine).
fn parts(model: &Model, backend: Backend) {
    use tinypoet_core::kernels;
    let cfg = *model.config();
    let min_us = |f: &mut dyn FnMut()| {
        let mut best = f64::MAX;
        for _ in 0..300 {
            let t = Instant::now();
            f();
            best = best.min(t.elapsed().as_secs_f64() * 1e6);
        }
        best
    };
    let x: Vec<f32> = (0..cfg.dim).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut y = vec![0f32; cfg.vocab_size];
    let head = model
        .blob()
        .tensors()
        .last()
        .map(|_| ())
        .and(model.blob().tensors().nth(cfg.n_tensors() - 2))
        .unwrap();
    let t_head = min_us(&mut || {
        y.fill(0.0);
        kernels::matvec_f16(backend, &mut y, &x, head.bytes, cfg.vocab_size)
    });
    // experiment: the same head in 64-output tiles [V/64][C][64] (contiguous per tile)
    let (v, c) = (cfg.vocab_size, cfg.dim);
    let mut tiled = vec![0u8; head.bytes.len()];
    let mut at = 0;
    for o0 in (0..v).step_by(64) {
        let w = 64.min(v - o0);
        for k in 0..c {
            for o in o0..o0 + w {
                tiled[at..at + 2]
                    .copy_from_slice(&head.bytes[2 * (k * v + o)..2 * (k * v + o) + 2]);
                at += 2;
            }
        }
    }
    let t_tiled = min_us(&mut || {
        y.fill(0.0);
        let mut off = 0;
        for o0 in (0..v).step_by(64) {
            let w = 64.min(v - o0);
            kernels::matvec_f16(
                backend,
                &mut y[o0..o0 + w],
                &x,
                &tiled[off..off + 2 * w * c],
                w,
            );
            off += 2 * w * c;
        }
    });
    println!("head tiled {t_tiled:.1} us");
    // in-cache: 1024 outputs (128 KiB of weights) x 8 repetitions = same MACs as ~8192 outputs
    let t_cached = min_us(&mut || {
        for _ in 0..8 {
            kernels::matvec_f16(backend, &mut y[..1024], &x, head.bytes, cfg.vocab_size);
        }
    });
    println!(
        "head-sized MACs from L2: {:.1} us (scaled to V)",
        t_cached * v as f64 / 8192.0
    );
    let mut l = y.clone();
    let t_soft = min_us(&mut || {
        l.copy_from_slice(&y);
        kernels::softmax(backend, &mut l)
    });
    let mut state = vec![0f32; state_words(&cfg, KvPrecision::F16)];
    let mut dec = Decoder::with_backend(model, &mut state, KvPrecision::F16, backend).unwrap();
    let mut pos_t = |p: usize| {
        let mut best = f64::MAX;
        for _ in 0..100 {
            dec.reset();
            for i in 0..p {
                dec.feed((i % 100) as u16).unwrap();
            }
            let t = Instant::now();
            dec.feed(5).unwrap();
            best = best.min(t.elapsed().as_secs_f64() * 1e6);
        }
        best
    };
    let (f0, f128, f255) = (pos_t(0), pos_t(128), pos_t(255));
    println!("parts (min us): head matvec {t_head:.1}, softmax(V) {t_soft:.1}, feed@0 {f0:.1}, feed@128 {f128:.1}, feed@255 {f255:.1}");
}

/// User + system CPU seconds of this process (/proc/self/stat fields 14 and 15).
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields after the command: state is index 0, utime is field 14 overall -> index 11
    (ticks(11) + ticks(12)) / 100.0
}
