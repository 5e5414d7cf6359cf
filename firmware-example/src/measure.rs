//! Measurement build (`--features measure`): instruction counts under QEMU `-icount`.
//!
//! Definitions (issue 6, item 4):
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
use tinypoet_core::kernels::{self, Backend};
use tinypoet_core::{Decoder, KvPrecision, Model, Rng, Token};

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
    let mut dec =
        Decoder::with_backend(model, state_for(model.config())?, KvPrecision::F16, backend)?;
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

    // ---- 2. 256 characters, every sample and feed timed -------------------------------------
    let mut ids = [0 as Token; N];
    let mut feed_i = [0u32; N]; // instructions of each feed (fits: < 4.3 G)
    let mut sample_i = [0u32; N]; // instructions of each sample
    let mut pos_before = [0u16; N];
    let (prefill, sample_total, slide_index);
    {
        let mut dec = Decoder::new(model, state_for(&cfg)?, KvPrecision::F16)?;
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
        let mut dec = Decoder::new(model, state_for(&cfg)?, KvPrecision::F16)?;
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
    let (y, _) = rest.split_at_mut(v);
    for (i, xi) in x.iter_mut().enumerate() {
        *xi = (i % 7) as f32 * 0.25 - 0.75;
    }
    let be = Backend::detect();
    let tensor = |name: &str| -> &[u8] {
        model
            .blob()
            .tensors()
            .find(|t| t.entry.name == name)
            .map_or(&[][..], |t| t.bytes)
    };
    let mut time = |w: &[u8], bias: Option<&[u8]>, n_in: usize, n_out: usize| -> u64 {
        let t0 = clock::now();
        if let Some(b) = bias {
            kernels::f16_to_f32_slice(be, &mut y[..n_out], b);
        }
        kernels::matvec_f16(be, &mut y[..n_out], &x[..n_in], w, n_out);
        clock::instructions(t0, clock::now())
    };
    let head_matvec = time(tensor("head.weight"), None, c, v);
    let head = time(tensor("head.weight"), Some(tensor("head.bias")), c, v);
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
                Some(tensor(&bias_name))
            };
            linear += time(tensor(&name), bias, n_in, n_out);
        }
    }
    // the LM head's bias through the Cortex-M conversion kernel, for comparison
    let head_bias = tensor("head.bias");
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
    println!("== figures: Cortex-M4 (QEMU mps2-an386, -icount shift=0: 1 SysTick tick = 40 instructions) ==");
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
        "  LM head              {:>9} ({:.1}%)  (mat-vec {}, f16 bias load {})",
        head,
        pct(head as f64),
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
    Ok(())
}
