//! Incremental decoding with a KV cache, in a caller-provided buffer of fixed size.

use crate::config::{Config, Token};
use crate::kernels::{self, Backend};
use crate::kv_cache::{q8_kv_words, Q8Kv};
use crate::model::{Mat, Model};
use crate::sampler::{Rng, Sampler, SamplerSettings};
use crate::Error;

/// Precision of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvPrecision {
    /// f16, round to nearest even (default: 256 KiB for the Tang model at context 256).
    F16,
    /// f32 (512 KiB for the Tang model).
    F32,
    /// int8 rows with one f32 scale per (layer, position) key or value vector (`kv_cache.rs`:
    /// 136 KiB for the Tang model); scores and weighted values are integer dot products.
    Q8,
}

const fn words_f16(n: usize) -> usize {
    n.saturating_add(1) / 2
}

/// Words of the int8 activation scratch: the quantized input of an int8 mat-vec (at most
/// `max(C, F)` values; the smallest group, 4, needs the most room: 3 words per 4 values).
const fn q8_scratch_words(cfg: &Config) -> usize {
    let n = if cfg.dim > cfg.ffn_dim {
        cfg.dim
    } else {
        cfg.ffn_dim
    };
    kernels::q8_act_words(n, 4)
}

/// Size in f32 words of the run state for `cfg` (activations, KV cache, logits, int8
/// activation scratch, token history, sampler scratch); the same for f16 and int8 blobs.
/// Saturates for absurd configs (no buffer can then match).
pub const fn state_words(cfg: &Config, kv: KvPrecision) -> usize {
    let (c, t, v, f, l) = (
        cfg.dim,
        cfg.context,
        cfg.vocab_size,
        cfg.ffn_dim,
        cfg.n_layers,
    );
    // x, xb, xb2, q, k, v: [C] each; hb: [F]; att: [H][T]; logits: [V]
    let acts = c
        .saturating_mul(6)
        .saturating_add(f)
        .saturating_add(t.saturating_mul(cfg.n_heads))
        .saturating_add(v);
    // key cache [L][C][T] + value cache [L][T][C]
    let kv_elems = l.saturating_mul(c).saturating_mul(t).saturating_mul(2);
    let kv_words = match kv {
        KvPrecision::F16 => words_f16(kv_elems),
        KvPrecision::F32 => kv_elems,
        KvPrecision::Q8 => q8_kv_words(cfg),
    };
    // token history [T] u16 + sampler index scratch [V] u16
    let u16_words = words_f16(t).saturating_add(words_f16(v));
    acts.saturating_add(q8_scratch_words(cfg))
        .saturating_add(kv_words)
        .saturating_add(u16_words)
}

/// Size in bytes of the run state (4 × [`state_words`]).
pub const fn state_bytes(cfg: &Config, kv: KvPrecision) -> usize {
    state_words(cfg, kv).saturating_mul(4)
}

/// Run state of the default Tang model with an f16 KV cache, in bytes (313.8 KiB).
pub const TANG_STATE_BYTES: usize = state_bytes(&Config::TANG, KvPrecision::F16);
const _: () = assert!(
    TANG_STATE_BYTES <= 320 * 1024,
    "Tang run state must fit 320 KiB"
);

enum Kv<'a> {
    F16(&'a mut [u8]),
    F32(&'a mut [f32]),
    /// keys and values together (`value_cache` is then `Kv::None`)
    Q8(Q8Kv<'a>),
    None,
}

/// The decoder: model weights (borrowed) + run state (borrowed caller buffer).
///
/// Positions run from 0 to `context - 1`. Feeding a token when the context is full slides the
/// window: the last [`Decoder::slide_keep`] tokens (default `context / 2`) are re-prefilled at
/// positions `0..keep`, then the new token goes to position `keep`.
pub struct Decoder<'a> {
    model: &'a Model<'a>,
    backend: Backend,
    kv_precision: KvPrecision,
    pos: usize,
    slide_keep: usize,
    /// residual stream [C]
    x: &'a mut [f32],
    /// normalised input of a sub-block / output of a Linear [C]
    xb: &'a mut [f32],
    /// concatenated head outputs [C]
    xb2: &'a mut [f32],
    q: &'a mut [f32],
    k: &'a mut [f32],
    v: &'a mut [f32],
    /// FFN hidden [F]
    hb: &'a mut [f32],
    /// attention scores / probabilities of every head [H][T]
    att: &'a mut [f32],
    /// `[V]`
    logits: &'a mut [f32],
    /// quantized input of the int8 mat-vecs (`kernels::q8_act_words` layout)
    xq: &'a mut [f32],
    /// key cache [L][C][T] (transposed so scores are a mat-vec over positions)
    key_cache: Kv<'a>,
    /// value cache [L][T][C]
    value_cache: Kv<'a>,
    /// token at each position [T]
    tokens: &'a mut [u16],
    /// sampler index scratch [V]
    scratch: &'a mut [u16],
}

fn take<'a>(rest: &mut &'a mut [f32], n: usize) -> &'a mut [f32] {
    let (a, b) = core::mem::take(rest).split_at_mut(n);
    *rest = b;
    a
}

fn take_u16<'a>(rest: &mut &'a mut [f32], n: usize) -> &'a mut [u16] {
    let w = take(rest, words_f16(n));
    &mut bytemuck::cast_slice_mut::<f32, u16>(w)[..n]
}

/// out = ((x - mean) * rstd) * w + b, mean and biased variance summed in index order,
/// rstd = 1 / sqrtf(var + eps). `wtmp` ([C]) receives the f32 copy of `w`.
fn layernorm(
    be: Backend,
    out: &mut [f32],
    wtmp: &mut [f32],
    x: &[f32],
    w: &[u8],
    b: &[u8],
    eps: f32,
) {
    let n = x.len() as f32;
    let mut sum = 0.0f32;
    for &v in x {
        sum += v;
    }
    let mean = sum / n;
    let mut var = 0.0f32;
    for &v in x {
        let d = v - mean;
        let d2 = d * d;
        var += d2;
    }
    let var = var / n;
    let rstd = 1.0 / libm::sqrtf(var + eps);
    kernels::f16_to_f32_slice(be, wtmp, w);
    kernels::f16_to_f32_slice(be, out, b);
    for ((o, &v), &wi) in out.iter_mut().zip(x).zip(wtmp.iter()) {
        let norm = (v - mean) * rstd;
        let scaled = norm * wi;
        *o += scaled; // = scaled + b (IEEE addition is commutative)
    }
}

/// `dst = row `row` of an embedding table` (`[rows, C]`, `C = dst.len()`), f16 or int8.
fn embed(be: Backend, dst: &mut [f32], table: &Mat, group: usize, rows: usize, row: usize) {
    match table {
        Mat::F16(b) => {
            let c = dst.len();
            let src = b.get(2 * row * c..2 * (row + 1) * c).unwrap_or(&[]);
            kernels::f16_to_f32_slice(be, dst, src);
        }
        Mat::Q8 { .. } => {
            if let Some(q) = table.q8(group, rows, dst.len()) {
                kernels::dequantize_row_q8(be, dst, &q, row);
            }
        }
    }
}

/// Quantize `x` into `xq` (groups of `group`) if any of `consumers` is int8 (once for q, k, v).
fn prepare_q8(be: Backend, xq: &mut [f32], x: &[f32], group: usize, consumers: &[&Mat]) {
    if consumers.iter().any(|m| m.is_q8()) {
        kernels::quantize_q8(be, xq, x, group);
    }
}

/// `y += x · Wᵀ` for a Linear weight: f16 (physical `[in, out]`) reads `x`; int8 (`[out, in]`,
/// groups of `group`) reads `xq`, the quantized `x` from [`prepare_q8`].
fn linear(be: Backend, y: &mut [f32], x: &[f32], xq: &[f32], w: &Mat, group: usize) {
    match w {
        Mat::F16(b) => kernels::matvec_f16(be, y, x, b, y.len()),
        Mat::Q8 { .. } => {
            if let Some(q) = w.q8(group, y.len(), x.len()) {
                kernels::matvec_q8(be, y, xq, &q);
            }
        }
    }
}

impl<'a> Decoder<'a> {
    /// A decoder over `model` using `buf` (exactly [`state_words`] f32 words) with the fastest
    /// available kernel backend.
    pub fn new(model: &'a Model<'a>, buf: &'a mut [f32], kv: KvPrecision) -> Result<Self, Error> {
        Self::with_backend(model, buf, kv, Backend::detect())
    }

    /// As [`Decoder::new`] with an explicit backend ([`Error::Unsupported`] if unavailable).
    pub fn with_backend(
        model: &'a Model<'a>,
        buf: &'a mut [f32],
        kv: KvPrecision,
        backend: Backend,
    ) -> Result<Self, Error> {
        if !backend.is_available() {
            return Err(Error::Unsupported(
                "kernel backend not available on this CPU",
            ));
        }
        let cfg = *model.config();
        let expected = state_words(&cfg, kv);
        if buf.len() != expected {
            return Err(Error::BufferSize {
                expected,
                got: buf.len(),
            });
        }
        let (c, t, v, f, l) = (
            cfg.dim,
            cfg.context,
            cfg.vocab_size,
            cfg.ffn_dim,
            cfg.n_layers,
        );
        let mut rest: &'a mut [f32] = buf;
        let x = take(&mut rest, c);
        let xb = take(&mut rest, c);
        let xb2 = take(&mut rest, c);
        let q = take(&mut rest, c);
        let k = take(&mut rest, c);
        let vv = take(&mut rest, c);
        let hb = take(&mut rest, f);
        let att = take(&mut rest, cfg.n_heads * t);
        let logits = take(&mut rest, v);
        let xq = take(&mut rest, q8_scratch_words(&cfg));
        let half = l * c * t;
        let (key_cache, value_cache) = match kv {
            KvPrecision::F16 => {
                let w = take(&mut rest, words_f16(2 * half));
                let bytes = bytemuck::cast_slice_mut::<f32, u8>(w);
                let (a, b) = bytes.split_at_mut(2 * half);
                (Kv::F16(a), Kv::F16(&mut b[..2 * half]))
            }
            KvPrecision::F32 => {
                let w = take(&mut rest, 2 * half);
                let (a, b) = w.split_at_mut(half);
                (Kv::F32(a), Kv::F32(b))
            }
            KvPrecision::Q8 => {
                let w = take(&mut rest, q8_kv_words(&cfg));
                (Kv::Q8(Q8Kv::new(&cfg, w)?), Kv::None)
            }
        };
        let tokens = take_u16(&mut rest, t);
        let scratch = take_u16(&mut rest, v);
        let mut d = Decoder {
            model,
            backend,
            kv_precision: kv,
            pos: 0,
            slide_keep: t / 2,
            x,
            xb,
            xb2,
            q,
            k,
            v: vv,
            hb,
            att,
            logits,
            xq,
            key_cache,
            value_cache,
            tokens,
            scratch,
        };
        d.reset();
        Ok(d)
    }

    /// Forget the context (position 0). The KV cache is not cleared: positions are rewritten
    /// before they are read.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.logits.fill(0.0);
    }

    /// Number of tokens in the context (the position the next token will take, before sliding).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The tokens in the context, oldest first.
    pub fn context_tokens(&self) -> &[Token] {
        &self.tokens[..self.pos]
    }

    /// The model.
    pub fn model(&self) -> &'a Model<'a> {
        self.model
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &Config {
        self.model.config()
    }

    /// The kernel backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// KV cache precision.
    pub fn kv_precision(&self) -> KvPrecision {
        self.kv_precision
    }

    /// How many tokens are kept when the context is full (see the type docs).
    pub fn slide_keep(&self) -> usize {
        self.slide_keep
    }

    /// Set the slide policy; clamped to `0..=context-1`.
    pub fn set_slide_keep(&mut self, keep: usize) {
        self.slide_keep = keep.min(self.config().context - 1);
    }

    /// Logits of the last fed token (`[V]`); zeros after `reset`.
    pub fn logits(&self) -> &[f32] {
        self.logits
    }

    /// Feed one token at the next position and return the logits for the token after it.
    pub fn feed(&mut self, token: Token) -> Result<&[f32], Error> {
        self.step(token, true)?;
        Ok(self.logits)
    }

    /// Feed `tokens` in order; return the logits after the last one. The LM head only runs for
    /// the last token. Empty input is [`Error::EmptyInput`].
    pub fn prefill(&mut self, tokens: &[Token]) -> Result<&[f32], Error> {
        self.prefill_iter(tokens.iter().copied().map(Ok))?;
        Ok(self.logits)
    }

    /// [`Decoder::prefill`] from an iterator of ids (for example
    /// [`crate::Tokenizer::encode_iter`], so a text prompt needs no token buffer); returns the
    /// number fed. The first error of the iterator is returned as is, with the tokens before it
    /// already fed (start again with [`Decoder::reset`]).
    pub fn prefill_iter<I>(&mut self, tokens: I) -> Result<usize, Error>
    where
        I: IntoIterator<Item = Result<Token, Error>>,
    {
        // one token of lookahead: the LM head only runs for the last
        let mut it = tokens.into_iter();
        let mut held = match it.next() {
            Some(t) => t?,
            None => return Err(Error::EmptyInput),
        };
        let mut n = 1;
        for t in it {
            let t = t?;
            self.step(held, false)?;
            held = t;
            n += 1;
        }
        self.step(held, true)?;
        Ok(n)
    }

    /// The logits of the last fed token, writable: a constraint masks ids (sets them to
    /// `-inf`) here before [`Decoder::sample`] turns them into probabilities.
    pub fn logits_mut(&mut self) -> &mut [f32] {
        self.logits
    }

    /// Sample the next token from the current logits (which become probabilities) with the
    /// context as repetition history. Validates `s` at each call; a loop uses
    /// [`Decoder::sample_with`] with a [`Sampler`] validated once.
    pub fn sample(&mut self, s: &SamplerSettings, rng: &mut Rng) -> Result<Token, Error> {
        self.sample_with(&Sampler::new(*s)?, rng)
    }

    /// [`Decoder::sample`] with settings validated beforehand.
    pub fn sample_with(&mut self, sampler: &Sampler, rng: &mut Rng) -> Result<Token, Error> {
        let history = &self.tokens[..self.pos];
        sampler.sample(self.backend, self.logits, self.scratch, history, rng)
    }

    /// Evaluation fast path: reset, feed `inputs` one by one and return the summed negative
    /// log-likelihood (nats, f64) of `targets[i]` under the logits after `inputs[i]`:
    /// `sum_i logsumexp(l_i) - l_i[targets[i]]`, with the log-sum-exp taken in f64
    /// (`libm::exp`/`libm::log`, max-shifted, summed in id order). Divide by `inputs.len()` for
    /// the mean loss. `inputs` and `targets` must have the same non-zero length; windows longer
    /// than the context slide as usual.
    pub fn window_nll(&mut self, inputs: &[Token], targets: &[Token]) -> Result<f64, Error> {
        if inputs.is_empty() || inputs.len() != targets.len() {
            return Err(Error::EmptyInput);
        }
        let v = self.config().vocab_size;
        if let Some(&t) = targets.iter().find(|&&t| t as usize >= v) {
            return Err(Error::TokenOutOfRange {
                token: t as u32,
                vocab_size: v,
            });
        }
        self.reset();
        let mut total = 0.0f64;
        for (&x, &y) in inputs.iter().zip(targets) {
            let logits = self.feed(x)?;
            let mut m = f64::NEG_INFINITY;
            for &l in logits.iter() {
                if (l as f64) > m {
                    m = l as f64;
                }
            }
            let mut z = 0.0f64;
            for &l in logits.iter() {
                z += libm::exp(l as f64 - m);
            }
            let ly = logits.get(y as usize).copied().unwrap_or(0.0) as f64;
            total += m + libm::log(z) - ly;
        }
        Ok(total)
    }

    /// logits = head_b + LN_f(x) · headᵀ                                        [V]
    fn lm_head(&mut self) {
        let m = self.model;
        let cfg = *m.config();
        layernorm(
            self.backend,
            self.xb,
            self.k,
            self.x,
            m.ln_f_w,
            m.ln_f_b,
            cfg.ln_eps,
        );
        let g = m.q8_group().unwrap_or(0);
        kernels::f16_to_f32_slice(self.backend, self.logits, m.head_b);
        prepare_q8(self.backend, self.xq, self.xb, g, &[&m.head_w]);
        linear(self.backend, self.logits, self.xb, self.xq, &m.head_w, g);
    }

    fn check(&self, token: Token) -> Result<(), Error> {
        let vocab_size = self.config().vocab_size;
        if token as usize >= vocab_size {
            return Err(Error::TokenOutOfRange {
                token: token as u32,
                vocab_size,
            });
        }
        Ok(())
    }

    fn step(&mut self, token: Token, want_logits: bool) -> Result<(), Error> {
        self.check(token)?;
        let t = self.config().context;
        if self.pos >= t {
            // Slide: re-prefill the last `keep` tokens at positions 0..keep.
            let keep = self.slide_keep.min(t - 1);
            self.tokens.copy_within(t - keep..t, 0);
            self.pos = 0;
            for i in 0..keep {
                let tok = self.tokens[i];
                self.forward(tok, false);
            }
        }
        self.forward(token, want_logits);
        Ok(())
    }

    /// One position of the transformer. `token < V` and `pos < T` are guaranteed by `step`.
    fn forward(&mut self, token: Token, want_logits: bool) {
        let m = self.model;
        let cfg = *m.config();
        let be = self.backend;
        let (c, t_max, hd) = (cfg.dim, cfg.context, cfg.head_dim());
        let pos = self.pos;
        let tok = token as usize;

        // x = tok_emb[token] + pos_emb[pos]                                  [C]
        let g = m.q8_group().unwrap_or(0);
        embed(be, self.x, &m.tok_emb, g, cfg.vocab_size, tok);
        embed(be, self.xb, &m.pos_emb, g, t_max, pos);
        for (xi, &p) in self.x.iter_mut().zip(self.xb.iter()) {
            *xi += p;
        }

        for (l, w) in m.layers.iter().enumerate() {
            // ---- attention: x = x + proj(MHA(LN1(x))) ----
            layernorm(be, self.xb, self.k, self.x, w.ln1_w, w.ln1_b, cfg.ln_eps);
            // q, k, v = xb · W{q,k,v}ᵀ (no bias)                           [C]
            self.q.fill(0.0);
            self.k.fill(0.0);
            self.v.fill(0.0);
            prepare_q8(be, self.xq, self.xb, g, &[&w.wq, &w.wk, &w.wv]);
            linear(be, self.q, self.xb, self.xq, &w.wq, g);
            linear(be, self.k, self.xb, self.xq, &w.wk, g);
            linear(be, self.v, self.xb, self.xq, &w.wv, g);
            // store k at key_cache[l][:][pos], v at value_cache[l][pos][:]
            let kbase = l * c * t_max;
            let vbase = l * t_max * c + pos * c;
            match (&mut self.key_cache, &mut self.value_cache) {
                (Kv::F16(kc), Kv::F16(vc)) => {
                    // round k and v to f16 once, into xb2 viewed as 2C u16 (xb2 is only
                    // written later, by the attention heads), then scatter k into its
                    // column and copy v into its row
                    let (kh, vh) = bytemuck::cast_slice_mut::<f32, u16>(self.xb2).split_at_mut(c);
                    kernels::f32_to_f16_slice(be, kh, self.k);
                    kernels::f32_to_f16_slice(be, vh, self.v);
                    for (i, &h) in kh.iter().enumerate() {
                        let at = 2 * (kbase + i * t_max + pos);
                        if let Some(d) = kc.get_mut(at..at + 2) {
                            d.copy_from_slice(&h.to_le_bytes());
                        }
                    }
                    if let Some(d) = vc.get_mut(2 * vbase..2 * (vbase + vh.len())) {
                        for (d, &h) in d.chunks_exact_mut(2).zip(vh.iter()) {
                            d.copy_from_slice(&h.to_le_bytes());
                        }
                    }
                }
                (Kv::F32(kc), Kv::F32(vc)) => {
                    for i in 0..c {
                        if let Some(d) = kc.get_mut(kbase + i * t_max + pos) {
                            *d = self.k[i];
                        }
                        if let Some(d) = vc.get_mut(vbase + i) {
                            *d = self.v[i];
                        }
                    }
                }
                (Kv::Q8(kv), _) => kv.write(l, pos, self.k, self.v),
                _ => {}
            }
            let n_ctx = pos + 1;
            for h in 0..cfg.n_heads {
                let qh = &self.q[h * hd..(h + 1) * hd];
                let att = &mut self.att[h * t_max..h * t_max + n_ctx];
                // scores: att[t] = sum_d q[d] * K[l][h*hd+d][t], then * attn_scale   [n_ctx]
                att.fill(0.0);
                let krow = kbase + h * hd * t_max;
                match &mut self.key_cache {
                    Kv::F16(kc) => {
                        kernels::matvec_f16(be, att, qh, kc.get(2 * krow..).unwrap_or(&[]), t_max)
                    }
                    Kv::F32(kc) => {
                        kernels::matvec_f32(be, att, qh, kc.get(krow..).unwrap_or(&[]), t_max)
                    }
                    Kv::Q8(kv) => kv.scores(att, qh, l, h),
                    Kv::None => {}
                }
                for a in att.iter_mut() {
                    *a *= cfg.attn_scale;
                }
                kernels::softmax(be, att);
            }
            // out[h*hd+d] = sum_t att[h][t] * V[l][t][h*hd+d]  (all heads)          [C]
            self.xb2.fill(0.0);
            let vrow = l * t_max * c;
            match (&self.value_cache, &mut self.key_cache) {
                (_, Kv::Q8(kv)) => {
                    for h in 0..cfg.n_heads {
                        let out = &mut self.xb2[h * hd..(h + 1) * hd];
                        kv.values(out, &self.att[h * t_max..h * t_max + n_ctx], l, h);
                    }
                }
                (Kv::F16(vc), _) => kernels::attn_values_f16(
                    be,
                    self.xb2,
                    self.att,
                    t_max,
                    n_ctx,
                    vc.get(2 * vrow..).unwrap_or(&[]),
                    c,
                    hd,
                ),
                (Kv::F32(vc), _) => {
                    for h in 0..cfg.n_heads {
                        let out = &mut self.xb2[h * hd..(h + 1) * hd];
                        let att = &self.att[h * t_max..h * t_max + n_ctx];
                        let v = vc.get(vrow + h * hd..).unwrap_or(&[]);
                        kernels::matvec_f32(be, out, att, v, c);
                    }
                }
                _ => {}
            }
            // xb = proj_b + xb2 · projᵀ; x += xb                              [C]
            kernels::f16_to_f32_slice(be, self.xb, w.proj_b);
            prepare_q8(be, self.xq, self.xb2, g, &[&w.proj_w]);
            linear(be, self.xb, self.xb2, self.xq, &w.proj_w, g);
            for (xi, &yi) in self.x.iter_mut().zip(self.xb.iter()) {
                *xi += yi;
            }

            // ---- feed-forward: x = x + fc2(relu(fc1(LN2(x)))) ----
            layernorm(be, self.xb, self.k, self.x, w.ln2_w, w.ln2_b, cfg.ln_eps);
            kernels::f16_to_f32_slice(be, self.hb, w.fc1_b); //                                      [F]
            prepare_q8(be, self.xq, self.xb, g, &[&w.fc1_w]);
            linear(be, self.hb, self.xb, self.xq, &w.fc1_w, g);
            for hv in self.hb.iter_mut() {
                if *hv < 0.0 {
                    *hv = 0.0;
                }
            }
            kernels::f16_to_f32_slice(be, self.xb, w.fc2_b); //                                      [C]
            prepare_q8(be, self.xq, self.hb, g, &[&w.fc2_w]);
            linear(be, self.xb, self.hb, self.xq, &w.fc2_w, g);
            for (xi, &yi) in self.x.iter_mut().zip(self.xb.iter()) {
                *xi += yi;
            }
        }

        if let Some(slot) = self.tokens.get_mut(pos) {
            *slot = token;
        }
        self.pos = pos + 1;

        if want_logits {
            self.lm_head();
        }
    }
}
