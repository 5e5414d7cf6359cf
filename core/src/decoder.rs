//! Incremental decoding with a KV cache, in a caller-provided buffer of fixed size.

use crate::config::{Config, Token};
use crate::kernels::{self, Backend};
use crate::model::{Mat, Model, Vec16};
use crate::sampler::{Rng, Sampler, SamplerSettings};
use crate::Error;

/// Precision of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvPrecision {
    /// f16, round to nearest even (default: 256 KiB for the Tang model at context 256).
    F16,
    /// f32 (512 KiB for the Tang model).
    F32,
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

/// The KV cache of every layer: key cache `[L][C][T]` (transposed, so that the scores are a
/// mat-vec over positions) and value cache `[L][T][C]`, both halves in one precision. Each
/// variant owns both halves, so a mismatch cannot be built; a new precision is a new variant
/// with its three operations below. Sizes are fixed by [`state_words`] at construction, so the
/// slicing here cannot go out of bounds for `l < L`, `pos < T`, `h < H`.
enum KvCache<'a> {
    /// f16 little-endian bytes, rounded to nearest even once when stored.
    F16 {
        key: &'a mut [u8],
        value: &'a mut [u8],
    },
    /// f32.
    F32 {
        key: &'a mut [f32],
        value: &'a mut [f32],
    },
}

/// Shapes the cache operations need.
#[derive(Clone, Copy)]
struct KvShape {
    /// C
    dim: usize,
    /// T
    context: usize,
    /// C / H
    head_dim: usize,
}

impl KvCache<'_> {
    /// Store `k` and `v` (`[C]`) of position `pos` in layer `l`: `k` into column `pos` of the
    /// key cache, `v` into row `pos` of the value cache. `tmp` (`[C]` f32) is scratch for the
    /// f16 rounding.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        be: Backend,
        s: KvShape,
        l: usize,
        pos: usize,
        k: &[f32],
        v: &[f32],
        tmp: &mut [f32],
    ) {
        let (c, t_max) = (s.dim, s.context);
        let kbase = l * c * t_max;
        let vbase = l * t_max * c + pos * c;
        match self {
            KvCache::F16 { key, value } => {
                // round k and v to f16 once, into tmp viewed as 2C u16, then scatter k into
                // its column and copy v into its row
                let (kh, vh) = bytemuck::cast_slice_mut::<f32, u16>(tmp).split_at_mut(c);
                kernels::f32_to_f16_slice(be, kh, k);
                kernels::f32_to_f16_slice(be, vh, v);
                for (i, &h) in kh.iter().enumerate() {
                    let at = 2 * (kbase + i * t_max + pos);
                    key[at..at + 2].copy_from_slice(&h.to_le_bytes());
                }
                let row = &mut value[2 * vbase..2 * (vbase + c)];
                for (d, &h) in row.chunks_exact_mut(2).zip(vh.iter()) {
                    d.copy_from_slice(&h.to_le_bytes());
                }
            }
            KvCache::F32 { key, value } => {
                for i in 0..c {
                    key[kbase + i * t_max + pos] = k[i];
                }
                value[vbase..vbase + c].copy_from_slice(v);
            }
        }
    }

    /// Scores of head `h` in layer `l`: `att[t] += sum_d qh[d] * K[l][h*hd + d][t]` for
    /// `t < att.len()` (the positions so far).
    fn scores(&self, be: Backend, s: KvShape, l: usize, h: usize, qh: &[f32], att: &mut [f32]) {
        let t_max = s.context;
        let krow = l * s.dim * t_max + h * s.head_dim * t_max;
        let rows = s.head_dim * t_max;
        match self {
            KvCache::F16 { key, .. } => {
                kernels::matvec_f16(be, att, qh, &key[2 * krow..2 * (krow + rows)], t_max)
            }
            KvCache::F32 { key, .. } => {
                kernels::matvec_f32(be, att, qh, &key[krow..krow + rows], t_max)
            }
        }
    }

    /// Attention outputs of every head in layer `l`:
    /// `out[h*hd + d] += sum_{t < n_ctx} att[h*T + t] * V[l][t][h*hd + d]`.
    fn mix_values(
        &self,
        be: Backend,
        s: KvShape,
        l: usize,
        n_ctx: usize,
        att: &[f32],
        out: &mut [f32],
    ) {
        let (c, t_max, hd) = (s.dim, s.context, s.head_dim);
        let vrow = l * t_max * c;
        match self {
            KvCache::F16 { value, .. } => {
                let v = &value[2 * vrow..2 * (vrow + t_max * c)];
                kernels::attn_values_f16(be, out, att, t_max, n_ctx, v, c, hd)
            }
            KvCache::F32 { value, .. } => {
                let v = &value[vrow..vrow + t_max * c];
                for (h, out) in out.chunks_exact_mut(hd).enumerate() {
                    let a = &att[h * t_max..h * t_max + n_ctx];
                    kernels::matvec_f32(be, out, a, &v[h * hd..], c);
                }
            }
        }
    }
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
    /// keys and values of every layer and position so far
    kv: KvCache<'a>,
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
    w: Vec16,
    b: Vec16,
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
    kernels::f16_to_f32_slice(be, wtmp, w.bytes());
    kernels::f16_to_f32_slice(be, out, b.bytes());
    for ((o, &v), &wi) in out.iter_mut().zip(x).zip(wtmp.iter()) {
        let norm = (v - mean) * rstd;
        let scaled = norm * wi;
        *o += scaled; // = scaled + b (IEEE addition is commutative)
    }
}

/// `dst` = row `row` of an embedding table (`[rows, C]`, `C = dst.len()`), f16 or int8.
/// `row < rows` (the caller checked the token and the position).
fn embed(be: Backend, dst: &mut [f32], table: &Mat, row: usize) {
    match table {
        Mat::F16(m) => {
            let c = dst.len();
            kernels::f16_to_f32_slice(be, dst, &m.bytes()[2 * row * c..2 * (row + 1) * c])
        }
        Mat::Q8(q) => kernels::dequantize_row_q8(be, dst, q, row),
    }
}

/// Quantize `x` into `xq` if any of `consumers` is int8 (once for q, k and v, which share it),
/// in the group size of the int8 matrices (one per model).
fn prepare_q8(be: Backend, xq: &mut [f32], x: &[f32], consumers: &[&Mat]) {
    if let Some(q) = consumers.iter().find_map(|m| m.as_q8()) {
        kernels::quantize_q8(be, xq, x, q.group());
    }
}

/// `y += x · Wᵀ` for a Linear weight: f16 (physical `[in, out]`) reads `x`; int8 (`[out, in]`)
/// reads `xq`, the quantized `x` from [`prepare_q8`].
fn linear(be: Backend, y: &mut [f32], x: &[f32], xq: &[f32], w: &Mat) {
    match w {
        Mat::F16(m) => kernels::matvec_f16(be, y, x, m.bytes(), y.len()),
        Mat::Q8(q) => kernels::matvec_q8(be, y, xq, q),
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
        let kv_cache = match kv {
            KvPrecision::F16 => {
                let w = take(&mut rest, words_f16(2 * half));
                let bytes = bytemuck::cast_slice_mut::<f32, u8>(w);
                let (key, value) = bytes.split_at_mut(2 * half);
                KvCache::F16 {
                    key,
                    value: &mut value[..2 * half],
                }
            }
            KvPrecision::F32 => {
                let w = take(&mut rest, 2 * half);
                let (key, value) = w.split_at_mut(half);
                KvCache::F32 { key, value }
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
            kv: kv_cache,
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
            let ly = logits[y as usize] as f64; // y < V: checked above
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
        kernels::f16_to_f32_slice(self.backend, self.logits, m.head_b.bytes());
        prepare_q8(self.backend, self.xq, self.xb, &[&m.head_w]);
        linear(self.backend, self.logits, self.xb, self.xq, &m.head_w);
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
        embed(be, self.x, &m.tok_emb, tok);
        embed(be, self.xb, &m.pos_emb, pos);
        for (xi, &p) in self.x.iter_mut().zip(self.xb.iter()) {
            *xi += p;
        }

        let kv_shape = KvShape {
            dim: c,
            context: t_max,
            head_dim: hd,
        };
        for (l, w) in m.layers.iter().enumerate() {
            // ---- attention: x = x + proj(MHA(LN1(x))) ----
            layernorm(be, self.xb, self.k, self.x, w.ln1_w, w.ln1_b, cfg.ln_eps);
            // q, k, v = xb · W{q,k,v}ᵀ (no bias)                           [C]
            self.q.fill(0.0);
            self.k.fill(0.0);
            self.v.fill(0.0);
            prepare_q8(be, self.xq, self.xb, &[&w.wq, &w.wk, &w.wv]);
            linear(be, self.q, self.xb, self.xq, &w.wq);
            linear(be, self.k, self.xb, self.xq, &w.wk);
            linear(be, self.v, self.xb, self.xq, &w.wv);
            // K[l][:][pos] = k, V[l][pos][:] = v (xb2 is scratch here: the heads write it later)
            self.kv
                .store(be, kv_shape, l, pos, self.k, self.v, self.xb2);
            let n_ctx = pos + 1;
            for h in 0..cfg.n_heads {
                let qh = &self.q[h * hd..(h + 1) * hd];
                let att = &mut self.att[h * t_max..h * t_max + n_ctx];
                // scores: att[t] = sum_d q[d] * K[l][h*hd+d][t], then * attn_scale   [n_ctx]
                att.fill(0.0);
                self.kv.scores(be, kv_shape, l, h, qh, att);
                for a in att.iter_mut() {
                    *a *= cfg.attn_scale;
                }
                kernels::softmax(be, att);
            }
            // out[h*hd+d] = sum_t att[h][t] * V[l][t][h*hd+d]  (all heads)          [C]
            self.xb2.fill(0.0);
            self.kv
                .mix_values(be, kv_shape, l, n_ctx, self.att, self.xb2);
            // xb = proj_b + xb2 · projᵀ; x += xb                              [C]
            kernels::f16_to_f32_slice(be, self.xb, w.proj_b.bytes());
            prepare_q8(be, self.xq, self.xb2, &[&w.proj_w]);
            linear(be, self.xb, self.xb2, self.xq, &w.proj_w);
            for (xi, &yi) in self.x.iter_mut().zip(self.xb.iter()) {
                *xi += yi;
            }

            // ---- feed-forward: x = x + fc2(relu(fc1(LN2(x)))) ----
            layernorm(be, self.xb, self.k, self.x, w.ln2_w, w.ln2_b, cfg.ln_eps);
            kernels::f16_to_f32_slice(be, self.hb, w.fc1_b.bytes()); //                    [F]
            prepare_q8(be, self.xq, self.xb, &[&w.fc1_w]);
            linear(be, self.hb, self.xb, self.xq, &w.fc1_w);
            for hv in self.hb.iter_mut() {
                if *hv < 0.0 {
                    *hv = 0.0;
                }
            }
            kernels::f16_to_f32_slice(be, self.xb, w.fc2_b.bytes()); //                    [C]
            prepare_q8(be, self.xq, self.hb, &[&w.fc2_w]);
            linear(be, self.xb, self.hb, self.xq, &w.fc2_w);
            for (xi, &yi) in self.x.iter_mut().zip(self.xb.iter()) {
                *xi += yi;
            }
        }

        self.tokens[pos] = token;
        self.pos = pos + 1;

        if want_logits {
            self.lm_head();
        }
    }
}
