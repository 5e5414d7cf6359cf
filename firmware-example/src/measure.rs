//! Measurement build (`--features measure`): instruction counts under QEMU `-icount`.
//!
//! Definitions:
//! * **per generated character** = one `sample` (the core's default sampler over the logits)
//!   plus one `feed` (the forward pass of that character, which yields the next logits); the
//!   figure is the mean over 256 characters generated from the default prompt with the default
//!   sampler and seed, with the end-of-poem stop ignored so that all 256 are generated;
//! * **prefill** = `Decoder::prefill` of the prompt (all positions, LM head for the last only);
//! * **worst character** = the largest single sample + feed; the one whose feed fills the
//!   context triggers the core's slide (re-prefill of the last T/2 tokens) and is reported
//!   apart from the worst ordinary character, which comes at full context;
//! * **where the instructions go**: sampling is timed directly; the LM head and the blocks'
//!   Linear layers (f16 bias load + mat-vec) are timed as standalone kernel calls on the real
//!   weights with the decoder's shapes (their instruction counts do not depend on the data),
//!   as is the sampler's softmax over V; attention is the part of
//!   `feed` that grows with the context (least-squares slope over positions × context length);
//!   "other" is the rest of `feed` (LayerNorms, embeddings, residuals, KV-cache writes, the
//!   context-independent part of attention).
//!
//! It also checks on the device that the Cortex-M kernel and the portable scalar kernel give
//! bit-identical logits, and reports the speed ratio between them.

use core::ops::ControlFlow;
use tinypoet_core::blob::{Dtype, ScaleDtype};
use tinypoet_core::kernels::{self, Backend, Q8Matrix};
use tinypoet_core::{Decoder, Model, Rng, Token};

use crate::{clock, print, print_char, println, settings, state_for, FwError, BEGIN, END, PROMPT};

/// Characters generated for the figures.
const N: usize = 256;
/// Positions compared between the two kernel backends.
const CHECK_POSITIONS: usize = 24;

/// FNV-1a over the bit patterns of a logits vector.
fn hash_logits(h: &mut u64, logits: &[f32]) {
    for &l in logits {
        for b in l.to_bits().to_le_bytes() {
            *h ^= b as u64;
            *h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Prefill the prompt then feed greedy tokens; returns (logits hash, instructions of the fed
/// positions).
fn backend_run(model: &Model, backend: Backend, prompt: &[Token]) -> Result<(u64, u64), FwError> {
    let mut dec = Decoder::with_backend(model, state_for(model.config())?, crate::KV, backend)?;
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let logits = dec.prefill(prompt)?;
    hash_logits(&mut h, logits);
    let mut next = tinypoet_core::sampler::argmax(logits) as Token;
    let mut instr = 0;
    for _ in 0..CHECK_POSITIONS {
        let t0 = clock::now();
        let logits = dec.feed(next)?;
        instr += clock::instructions(t0, clock::now());
        hash_logits(&mut h, logits);
        next = tinypoet_core::sampler::argmax(logits) as Token;
    }
    Ok((h, instr))
}

/// The int8 kernel against the portable body on synthetic matrices covering every path of
/// `kernels/cortex_m.rs`: the two-row kernel for 64 inputs (even and odd row counts), the
/// paired-group kernel, the single-group kernel (odd group counts, misaligned scales).
/// Returns the number of cases, or the first one that differs.
fn q8_kernel_check(buf: &mut [f32]) -> Result<usize, (usize, usize)> {
    let mut seed = 0x2545_f491u32;
    let mut next = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        seed
    };
    let cases: [(usize, usize, usize); 12] = [
        // (n_in, n_out, byte offset of the scales)
        (64, 1, 0),
        (64, 2, 0),
        (64, 7, 0),
        (64, 64, 0),
        (64, 5, 2),
        (32, 1, 0),
        (32, 3, 0),
        (96, 5, 0),
        (128, 3, 2),
        (256, 64, 0),
        (256, 3, 0),
        (256, 9, 2),
    ];
    let (vw, rest) = buf.split_at_mut(4096); // 16 KiB of weights
    let (sw, rest) = rest.split_at_mut(272); // 1088 bytes of scales
    let (x, rest) = rest.split_at_mut(256);
    let (xq, rest) = rest.split_at_mut(kernels::q8_act_words(256, 32));
    let (y1, rest) = rest.split_at_mut(64);
    let (y2, _) = rest.split_at_mut(64);
    for (i, &(n_in, n_out, off)) in cases.iter().enumerate() {
        let values: &mut [u8] = bytemuck::cast_slice_mut(&mut vw[..]);
        for v in values[..n_in * n_out].iter_mut() {
            *v = (next() >> 24) as u8;
        }
        let scales: &mut [u8] = bytemuck::cast_slice_mut(&mut sw[..]);
        let n_scales = n_in * n_out / 32;
        for k in 0..n_scales {
            // f16 in [2^-10, 2^-6): exponents 5..8, random mantissa
            let h = (((next() >> 16) as u16) & 0x0fff) | 0x1400;
            scales[off + 2 * k..off + 2 * k + 2].copy_from_slice(&h.to_le_bytes());
        }
        for v in x[..n_in].iter_mut() {
            *v = (next() >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0;
        }
        kernels::quantize_q8(Backend::Scalar, xq, &x[..n_in], 32);
        let values: &[u8] = bytemuck::cast_slice(&vw[..]);
        let scales: &[u8] = bytemuck::cast_slice(&sw[..]);
        let Some(w) = Q8Matrix::new(
            &values[..n_in * n_out],
            &scales[off..off + 2 * n_scales],
            ScaleDtype::F16,
            32,
            n_out,
            n_in,
        ) else {
            return Err((i, 0));
        };
        for (a, b) in y1[..n_out].iter_mut().zip(y2[..n_out].iter_mut()) {
            *a = (next() >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            *b = *a;
        }
        kernels::matvec_q8(Backend::CortexM, &mut y1[..n_out], xq, &w);
        kernels::matvec_q8(Backend::Scalar, &mut y2[..n_out], xq, &w);
        if let Some(o) = (0..n_out).find(|&o| y1[o].to_bits() != y2[o].to_bits()) {
            return Err((i, o));
        }
    }
    Ok(cases.len())
}

pub fn run(model: &Model) -> Result<(), FwError> {
    let cfg = *model.config();
    let settings = settings();
    let tok = model.tokenizer();
    let mut prompt = [0 as Token; 64];
    let n_prompt = tok.encode(PROMPT, &mut prompt)?;
    let prompt = &prompt[..n_prompt];

    // ---- 1. kernel backends agree bit for bit on the device --------------------------------
    let (h_fast, i_fast) = backend_run(model, Backend::CortexM, prompt)?;
    let (h_ref, i_ref) = backend_run(model, Backend::Scalar, prompt)?;
    println!(
        "kernel check: logits over {} positions {} (hash {:016x} vs {:016x}); feed: scalar {} vs cortex-m {} instructions/char ({:.2}x)",
        CHECK_POSITIONS + 1,
        if h_fast == h_ref { "bit-identical" } else { "DIFFER" },
        h_fast,
        h_ref,
        i_ref / CHECK_POSITIONS as u64,
        i_fast / CHECK_POSITIONS as u64,
        i_ref as f32 / i_fast.max(1) as f32
    );
    if h_fast != h_ref {
        return Err(FwError::Core(tinypoet_core::Error::Unsupported(
            "Cortex-M kernel differs from the scalar reference",
        )));
    }
    match q8_kernel_check(state_for(&cfg)?) {
        Ok(n) => println!(
            "int8 kernel check: cortex-m == scalar bit for bit on {n} synthetic matrices (rows of 32..256 inputs, odd row and group counts, misaligned scales)"
        ),
        Err((case, row)) => {
            println!("int8 kernel check: case {case} differs at row {row}");
            return Err(FwError::Core(tinypoet_core::Error::Unsupported(
                "Cortex-M int8 kernel differs from the scalar reference",
            )));
        }
    }

    // ---- 2. 256 characters, every sample and feed timed -------------------------------------
    let mut ids = [0 as Token; N];
    let mut feed_i = [0u32; N]; // instructions of each feed (fits: < 4.3 G)
    let mut sample_i = [0u32; N]; // instructions of each sample
    let mut pos_before = [0u16; N];
    let (prefill, sample_total, slide_index);
    {
        let mut dec = Decoder::new(model, state_for(&cfg)?, crate::KV)?;
        let t0 = clock::now();
        dec.prefill(prompt)?;
        prefill = clock::instructions(t0, clock::now());
        let mut rng = Rng::new(settings.seed);
        let mut s_total = 0u64;
        let mut slide = None;
        println!("{BEGIN}");
        print!("{PROMPT}");
        for i in 0..N {
            let t0 = clock::now();
            let id = dec.sample(&settings.sampler, &mut rng)?;
            let t1 = clock::now();
            s_total += clock::instructions(t0, t1);
            sample_i[i] = clock::instructions(t0, t1) as u32;
            print_char(tok.char(id)?);
            ids[i] = id;
            pos_before[i] = dec.position() as u16;
            if dec.position() >= cfg.context {
                slide = Some(i);
            }
            let t2 = clock::now();
            dec.feed(id)?;
            feed_i[i] = clock::instructions(t2, clock::now()) as u32;
        }
        println!();
        println!("{END}");
        sample_total = s_total;
        slide_index = slide;
    }

    // ---- 3. the same characters through the streaming API -----------------------------------
    {
        let mut dec = Decoder::new(model, state_for(&cfg)?, crate::KV)?;
        let mut s = settings;
        s.max_new_chars = N;
        s.stop = &[];
        s.stop_at_end_of_text = false;
        let mut i = 0;
        let mut same = true;
        dec.generate(PROMPT, &s, |c| {
            same &= i < N && tok.id(c).ok() == Some(ids[i]);
            i += 1;
            ControlFlow::Continue(())
        })?;
        println!(
            "streaming API (Decoder::generate, stop ignored): {} characters, {}",
            i,
            if same && i == N {
                "same text"
            } else {
                "DIFFERENT text"
            }
        );
        if !(same && i == N) {
            return Err(FwError::Core(tinypoet_core::Error::Unsupported(
                "measurement loop and Decoder::generate disagree",
            )));
        }
    }

    // ---- 4. figures ------------------------------------------------------------------------
    let feed_total: u64 = feed_i.iter().map(|&x| x as u64).sum();
    let total = feed_total + sample_total;
    let mean = total / N as u64;
    let mean_sample = sample_total / N as u64;
    // worst ordinary character (no slide), and the slide
    let (mut worst, mut worst_at) = (0u32, 0usize);
    for i in 0..N {
        let both = feed_i[i].saturating_add(sample_i[i]);
        if Some(i) != slide_index && both > worst {
            worst = both;
            worst_at = i;
        }
    }
    // least-squares fit feed = a + b * n_ctx over ordinary characters (n_ctx = pos + 1)
    let (mut sn, mut sx, mut sy, mut sxx, mut sxy) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for i in 0..N {
        if Some(i) == slide_index {
            continue;
        }
        let x = pos_before[i] as f64 + 1.0;
        let y = feed_i[i] as f64;
        sn += 1.0;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    let slope = (sn * sxy - sx * sy) / (sn * sxx - sx * sx);
    let intercept = (sy - slope * sx) / sn;
    let mean_ctx = sx / sn;

    // standalone kernel timings on the real weights, in the (now free) state buffer
    let state = state_for(&cfg)?;
    let (c, f, v, t) = (cfg.dim, cfg.ffn_dim, cfg.vocab_size, cfg.context);
    let (x, rest) = state.split_at_mut(f.max(c).max(t));
    let (y, rest) = rest.split_at_mut(v);
    let (xq, _) = rest.split_at_mut(kernels::q8_act_words(f.max(c), 4));
    for (i, xi) in x.iter_mut().enumerate() {
        *xi = (i % 7) as f32 * 0.25 - 0.75;
    }
    let be = Backend::detect();
    let tensor = |name: &str| model.blob().tensors().find(|t| t.entry.name == name);
    let bytes = |name: &str| tensor(name).map_or(&[][..], |t| t.bytes);
    // One Linear layer as the decoder runs it: bias load, then the mat-vec (f16), or the
    // quantization of its input and the int8 mat-vec (int8; q, k and v share one quantization
    // in the decoder, here each call quantizes its own).
    let mut time = |name: &str, bias: Option<&[u8]>, n_in: usize, n_out: usize| -> u64 {
        let w = tensor(name);
        let q8 = w.and_then(|t| match t.entry.dtype {
            Dtype::Q8 { group_size, scale } => {
                let (values, scales) = t.q8_parts()?;
                let g = group_size as usize;
                Q8Matrix::new(values, scales, scale, g, n_out, n_in)
            }
            _ => None,
        });
        let t0 = clock::now();
        if let Some(b) = bias {
            kernels::f16_to_f32_slice(be, &mut y[..n_out], b);
        }
        match q8 {
            Some(q) => {
                kernels::quantize_q8(be, xq, &x[..n_in], q.group());
                kernels::matvec_q8(be, &mut y[..n_out], xq, &q);
            }
            None => {
                let w = w.map_or(&[][..], |t| t.bytes);
                kernels::matvec_f16(be, &mut y[..n_out], &x[..n_in], w, n_out);
            }
        }
        clock::instructions(t0, clock::now())
    };
    let head_matvec = time("head.weight", None, c, v);
    let head = time("head.weight", Some(bytes("head.bias")), c, v);
    let mut linear = 0;
    let mut name = heapless::String::<40>::new();
    let mut bias_name = heapless::String::<40>::new();
    for l in 0..cfg.n_layers {
        for (m, b, n_in, n_out) in [
            ("attn.wq", "", c, c),
            ("attn.wk", "", c, c),
            ("attn.wv", "", c, c),
            ("attn.proj.weight", "attn.proj.bias", c, c),
            ("ffn.fc1.weight", "ffn.fc1.bias", c, f),
            ("ffn.fc2.weight", "ffn.fc2.bias", f, c),
        ] {
            name.clear();
            bias_name.clear();
            let _ = core::fmt::write(&mut name, format_args!("blocks.{l}.{m}"));
            let _ = core::fmt::write(&mut bias_name, format_args!("blocks.{l}.{b}"));
            let bias = if b.is_empty() {
                None
            } else {
                Some(bytes(&bias_name))
            };
            linear += time(&name, bias, n_in, n_out);
        }
    }
    // the LM head's bias through the Cortex-M conversion kernel, for comparison
    let head_bias = bytes("head.bias");
    let t0 = clock::now();
    kernels::cortex_m::f16_to_f32_slice(&mut y[..v], head_bias);
    let head_bias_vcvt = clock::instructions(t0, clock::now());
    // the sampler's softmax over V (the rest of sampling: the cumulative walk and the draw)
    for (i, yi) in y.iter_mut().enumerate() {
        *yi = (i % 13) as f32 * 0.5 - 3.0;
    }
    let t0 = clock::now();
    kernels::softmax(be, y);
    let softmax_v = clock::instructions(t0, clock::now());

    let attn_mean = slope * mean_ctx;
    let attn_full = slope * t as f64;
    let other = intercept - (head + linear) as f64;
    let pct = |x: f64| 100.0 * x / mean as f64;

    println!();
    println!(
        "== figures: {} (QEMU {}, -icount shift=0: 1 SysTick tick = 40 instructions) ==",
        if cfg!(target_abi = "eabihf") {
            "Cortex-M4"
        } else {
            "ARMv6-M (Cortex-M0+ code)"
        },
        crate::boards::NAME
    );
    match model.q8_group() {
        Some(g) => println!(
            "weights: int8 matrices (groups of {g}), f16 vectors; KV cache {}",
            crate::KV_NAME
        ),
        None => println!("weights: f16; KV cache {}", crate::KV_NAME),
    }
    println!("prompt {PROMPT} ({} tokens), seed {}, default sampler, {N} characters generated, stop ignored", n_prompt, settings.seed);
    println!("instructions per generated character (mean of {N}): {mean}  (feed {} + sample {mean_sample})", feed_total / N as u64);
    if let Some(i) = slide_index {
        let ordinary = (total - feed_i[i] as u64) / (N as u64 - 1);
        println!("  the same without the one character that slid the window: {ordinary}");
    }
    println!("prefill ({} tokens): {prefill} instructions", n_prompt);
    println!(
        "worst character without slide: {worst} (sample {} + feed {}) at context {} (char {})",
        sample_i[worst_at],
        feed_i[worst_at],
        pos_before[worst_at] as usize + 1,
        worst_at + 1
    );
    match slide_index {
        Some(i) => println!(
            "character {} filled the context (T={t}): its feed slid the window, re-prefilling {} tokens: {} instructions",
            i + 1,
            t / 2,
            feed_i[i]
        ),
        None => println!("no slide within {N} characters"),
    }
    println!(
        "feed fit over positions: {:.0} + {:.0} x n_ctx instructions",
        intercept, slope
    );
    println!(
        "where a mean character goes (mean context {:.0}):",
        mean_ctx
    );
    println!(
        "  LM head              {:>9} ({:.1}%)  ({} {}, f16 bias load {})",
        head,
        pct(head as f64),
        if model.q8_group().is_some() {
            "input quantization + int8 mat-vec"
        } else {
            "mat-vec"
        },
        head_matvec,
        head - head_matvec
    );
    println!("    (the bias load through kernels::cortex_m::f16_to_f32_slice: {head_bias_vcvt})");
    println!(
        "  blocks' Linear       {:>9} ({:.1}%)  (q, k, v, proj, fc1, fc2 + bias loads, x {} layers)",
        linear,
        pct(linear as f64),
        cfg.n_layers
    );
    println!(
        "  attention            {:>9.0} ({:.1}%)  ({:.0} at full context)",
        attn_mean,
        pct(attn_mean),
        attn_full
    );
    println!(
        "  other                {:>9.0} ({:.1}%)  (LayerNorm, embeddings, residuals, KV writes)",
        other,
        pct(other)
    );
    println!(
        "  sampling             {:>9} ({:.1}%)  (softmax over V={v}: {softmax_v}; cumulative walk + draw)",
        mean_sample,
        pct(mean_sample as f64)
    );
    if let Some(i) = slide_index {
        let s = feed_i[i] as f64 / N as f64;
        println!(
            "  slide, amortised     {:>9.0} ({:.1}%)  (one re-prefill of {} tokens / {N})",
            s,
            pct(s),
            t / 2
        );
    }
    float_op_costs();
    Ok(())
}

/// Instructions per f32 operation: 1000 dependent operations on ordinary values, minus the
/// same loop with an operation that compiles to nothing. On ARMv6-M these are the compiler's
/// soft-float routines (`__aeabi_fadd`, ...), on the M4 single FPU instructions.
fn float_op_costs() {
    use core::hint::black_box;
    const K: u64 = 1000;
    let time = |f: &dyn Fn(f32, f32) -> f32| -> u64 {
        let (mut x, y) = (black_box(1.2345f32), black_box(0.987_654f32));
        let t0 = clock::now();
        for _ in 0..K {
            x = black_box(f(black_box(x), y));
        }
        black_box(x);
        clock::instructions(t0, clock::now())
    };
    let empty = time(&|a, _| a);
    let mut line = heapless::String::<200>::new();
    let mut run = |name: &str, f: &dyn Fn(f32, f32) -> f32| {
        let n = time(f).saturating_sub(empty) / K;
        let _ = core::fmt::write(&mut line, format_args!(" {name} {n},"));
    };
    run("add", &|a, b| a + b);
    run("mul", &|a, b| a * b);
    run("div", &|a, b| a / b);
    run("expf", &|a, _| tinypoet_core::kernels::scalar::expf(-a));
    run("i32->f32", &|a, _| (a.to_bits() as i32 >> 8) as f32);
    run("f16->f32", &|a, _| {
        let h = (a.to_bits() >> 13) as u16 & 0x3bff;
        tinypoet_core::kernels::f16_to_f32(h as u8, (h >> 8) as u8)
    });
    println!(
        "instructions per f32 operation (loop overhead subtracted):{}",
        line.trim_end_matches(',')
    );
}
