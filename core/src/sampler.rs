//! Sampling: greedy, temperature, top-k, top-p, repetition penalty; seeded PCG32.
//!
//! Pipeline for one token (all in place, no allocation):
//! 0. a NaN or `+inf` logit is [`Error::NonFiniteLogits`] (the model overflowed; `-inf` is a
//!    masked id);
//! 1. repetition penalty: each distinct id among the last `repetition_window` context tokens
//!    gets `l / penalty` if `l > 0`, else `l * penalty` (CTRL-style);
//! 2. greedy (`temperature == 0` or `top_k == 1`): the lowest id with the maximal logit;
//!    no random number is drawn;
//! 3. `z_i = l_i / temperature` (an overflow to `+inf` is an [`Error::InvalidSampler`]);
//!    softmax ([`crate::kernels::scalar::softmax`]: max, `libm::expf`, 16 lane partial sums,
//!    divide);
//! 4. candidates: all ids in id order; with `top_k` the `k` most probable, with `top_p < 1` the
//!    smallest prefix of the candidates sorted by (probability desc, id asc) whose mass reaches
//!    `top_p` (ids whose probability is below `(1 - top_p) / (V - 1)` cannot be in it and are
//!    skipped before sorting);
//! 5. exactly one draw `u = rng.next_f32()`. With top-k/top-p: `r = u * mass` (mass = running
//!    sum over the kept candidates in sorted order) and the first candidate whose running sum
//!    exceeds `r`. Without them, `r = u` and ids are walked in blocks of 16: `b` = the block's
//!    probabilities summed in id order; if `r < cum + b` the block is walked id by id from
//!    `cum` (first id whose running sum exceeds `r`, else the block's last id with p > 0),
//!    otherwise `cum = cum + b`. If rounding leaves `r` beyond the end, the last id with
//!    p > 0 is returned.

use crate::config::Token;
use crate::kernels::{self, Backend};
use crate::Error;

/// PCG32 (O'Neill's PCG-XSH-RR 64/32), seeded like `pcg32_srandom_r(seed, 0xda3e39cb94b95bdb)`:
///
/// ```text
/// inc = (0xda3e39cb94b95bdb << 1) | 1;  state = 0;  next();  state += seed;  next()
/// next(): old = state; state = old * 6364136223846793005 + inc   (wrapping u64)
///         xorshifted = (((old >> 18) ^ old) >> 27) as u32;  rot = (old >> 59) as u32
///         return xorshifted.rotate_right(rot)
/// next_f32() = (next() >> 8) as f32 * 2^-24            (uniform in [0, 1))
/// ```
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
    inc: u64,
}

impl Rng {
    /// Seeded generator.
    pub const fn new(seed: u64) -> Self {
        let inc = (0xda3e_39cb_94b9_5bdbu64 << 1) | 1;
        let mut r = Rng { state: 0, inc };
        r.state = r
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(r.inc);
        r.state = r.state.wrapping_add(seed);
        r.state = r
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(r.inc);
        r
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(6364136223846793005).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform in [0, 1) with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }
}

/// Sampler settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerSettings {
    /// 0 = greedy; otherwise > 0 (1 = the model's distribution).
    pub temperature: f32,
    /// 0 = off; 1 = greedy; k = keep the k most probable.
    pub top_k: usize,
    /// Nucleus mass in (0, 1]; 1 = off.
    pub top_p: f32,
    /// >= 1; 1 = off.
    pub repetition_penalty: f32,
    /// How many of the most recent context tokens the penalty looks at.
    pub repetition_window: usize,
}

impl SamplerSettings {
    /// Temperature 1, nothing else: the reference's multinomial sampling.
    pub const DEFAULT: SamplerSettings = SamplerSettings {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        repetition_penalty: 1.0,
        repetition_window: 64,
    };

    /// Argmax.
    pub const GREEDY: SamplerSettings = SamplerSettings {
        temperature: 0.0,
        ..Self::DEFAULT
    };

    /// Check ranges.
    pub fn validate(&self) -> Result<(), Error> {
        // A subnormal temperature turns every logit into +-inf (1e-45 gave NaN at once).
        if !(self.temperature == 0.0 || self.temperature.is_normal() && self.temperature > 0.0) {
            return Err(Error::InvalidSampler(
                "temperature must be 0 (greedy) or a finite number >= 1.2e-38",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::InvalidSampler("top_p must be in (0, 1]"));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty >= 1.0) {
            return Err(Error::InvalidSampler(
                "repetition_penalty must be finite and >= 1",
            ));
        }
        Ok(())
    }
}

impl Default for SamplerSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Index of the maximum (lowest index on ties; NaN never wins).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    best
}

/// Sample one token from `logits` (overwritten with probabilities). `scratch` needs
/// `logits.len()` entries; `history` is the context (oldest first) for the repetition penalty.
/// Uses the fastest kernel backend (the result does not depend on it).
pub fn sample(
    logits: &mut [f32],
    scratch: &mut [u16],
    history: &[Token],
    s: &SamplerSettings,
    rng: &mut Rng,
) -> Result<Token, Error> {
    sample_with(Backend::detect(), logits, scratch, history, s, rng)
}

/// [`sample`] with an explicit kernel backend for the softmax.
pub fn sample_with(
    backend: Backend,
    logits: &mut [f32],
    scratch: &mut [u16],
    history: &[Token],
    s: &SamplerSettings,
    rng: &mut Rng,
) -> Result<Token, Error> {
    Sampler::new(*s)?.sample(backend, logits, scratch, history, rng)
}

/// Settings checked once ([`SamplerSettings::validate`]), so a generation loop validates them
/// before its first token instead of at every token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    s: SamplerSettings,
}

impl Sampler {
    /// Validate `settings`.
    pub fn new(settings: SamplerSettings) -> Result<Self, Error> {
        settings.validate()?;
        Ok(Sampler { s: settings })
    }

    /// The settings.
    pub fn settings(&self) -> &SamplerSettings {
        &self.s
    }

    /// Sample one token from `logits` (overwritten with probabilities): the pipeline of the
    /// module docs. Ids whose logit is `-inf` (masked by a constraint) are never drawn; if
    /// every id is masked the result is [`Error::NothingToSample`].
    pub fn sample(
        &self,
        backend: Backend,
        logits: &mut [f32],
        scratch: &mut [u16],
        history: &[Token],
        rng: &mut Rng,
    ) -> Result<Token, Error> {
        let s = &self.s;
        let v = logits.len();
        if v == 0 || v > scratch.len() || v > 1 << 16 {
            return Err(Error::InvalidSampler("logits empty or scratch too small"));
        }
        let scratch = &mut scratch[..v];

        // 0. NaN or +inf: the model overflowed (-inf is a masked id, and fine)
        if has_overflow(logits) {
            return Err(Error::NonFiniteLogits);
        }
        // 1. repetition penalty
        let penalised = s.repetition_penalty != 1.0 && s.repetition_window > 0;
        if penalised {
            let recent = &history[history.len().saturating_sub(s.repetition_window)..];
            apply_repetition_penalty(logits, scratch, recent, s.repetition_penalty);
        }
        // 2. greedy
        if s.temperature == 0.0 || s.top_k == 1 {
            return sample_argmax(logits);
        }
        // 3. temperature + softmax
        apply_temperature(logits, s.temperature);
        // a tiny temperature (or the penalty before it) can push a logit past f32::MAX
        if (penalised || s.temperature != 1.0) && has_overflow(logits) {
            return Err(Error::InvalidSampler(
                "logits / temperature overflow f32: raise the temperature",
            ));
        }
        kernels::softmax(backend, logits);
        // every logit -inf (all masked) or NaN: softmax's max is -inf and every p is NaN
        if logits[0].is_nan() {
            return Err(Error::NothingToSample);
        }
        let p: &[f32] = logits;

        // 4. candidates, 5. one draw
        let top_k = if s.top_k == 0 { v } else { s.top_k.min(v) };
        let n = if top_k < v {
            top_k_candidates(p, scratch, top_k)
        } else if s.top_p < 1.0 {
            match top_p_prefilter(p, scratch, s.top_p) {
                0 => return Ok(argmax(p) as Token),
                n => n,
            }
        } else {
            return Ok(sample_mult(p, rng.next_f32()));
        };
        let n = if s.top_p < 1.0 {
            nucleus_len(p, &scratch[..n], s.top_p)
        } else {
            n
        };
        Ok(sample_candidates(p, &scratch[..n], rng.next_f32()))
    }
}

/// CTRL-style penalty, once per distinct id of `recent`: `l / penalty` if `l > 0`, else
/// `l * penalty`. `seen` (`[V]`) marks the ids already penalised.
fn apply_repetition_penalty(logits: &mut [f32], seen: &mut [u16], recent: &[Token], penalty: f32) {
    for &t in recent {
        if let Some(m) = seen.get_mut(t as usize) {
            *m = 0;
        }
    }
    for &t in recent {
        if let (Some(m), Some(l)) = (seen.get_mut(t as usize), logits.get_mut(t as usize)) {
            if *m == 0 {
                *m = 1;
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
}

/// The lowest id with the maximal logit; [`Error::NothingToSample`] if every logit is `-inf`
/// or NaN (argmax would fall back to id 0, which is no candidate).
fn sample_argmax(logits: &[f32]) -> Result<Token, Error> {
    let best = argmax(logits);
    if logits[best].is_nan() || logits[best] == f32::NEG_INFINITY {
        return Err(Error::NothingToSample);
    }
    Ok(best as Token)
}

/// Whether a logit is NaN or `+inf` (no distribution to sample; `-inf` only masks an id).
/// Branch-free, so that it vectorizes: it runs over all V logits for every character, and an
/// early-exit scan cost ~5% of a character on the AVX-512 path (`|`, not `||`: no branch).
fn has_overflow(logits: &[f32]) -> bool {
    logits
        .iter()
        .fold(false, |bad, &l| bad | l.is_nan() | (l == f32::INFINITY))
}

/// `l = l / temperature` (skipped for 1, which would change nothing).
fn apply_temperature(logits: &mut [f32], temperature: f32) {
    if temperature != 1.0 {
        for l in logits.iter_mut() {
            *l /= temperature;
        }
    }
}

/// Multinomial draw over all ids in id order, walked in blocks of 16 (module docs, step 5):
/// the first id whose running sum exceeds `r`, else the last id with `p > 0`.
fn sample_mult(p: &[f32], r: f32) -> Token {
    let mut cum = 0.0f32;
    let mut last = 0;
    for (bi, block) in p.chunks(16).enumerate() {
        let mut b = 0.0f32;
        for &pi in block {
            b += pi;
        }
        if r < cum + b {
            let mut c = cum;
            let mut last_in = None;
            for (j, &pi) in block.iter().enumerate() {
                c += pi;
                if pi > 0.0 {
                    last_in = Some(j);
                }
                if r < c {
                    return (16 * bi + j) as Token;
                }
            }
            if let Some(j) = last_in {
                return (16 * bi + j) as Token;
            }
        }
        cum += b;
        if let Some(j) = block.iter().rposition(|&pi| pi > 0.0) {
            last = 16 * bi + j;
        }
    }
    last as Token
}

/// (probability desc, id asc): a total order, so any sort gives the same result.
fn by_prob(p: &[f32]) -> impl Fn(&u16, &u16) -> core::cmp::Ordering + '_ {
    move |&a, &b| {
        let (pa, pb) = (
            p.get(a as usize).copied().unwrap_or(0.0),
            p.get(b as usize).copied().unwrap_or(0.0),
        );
        pb.total_cmp(&pa).then(a.cmp(&b))
    }
}

/// The `k` most probable ids (`0 < k < V`) into `idx[..k]`, sorted by [`by_prob`]; returns `k`.
fn top_k_candidates(p: &[f32], idx: &mut [u16], k: usize) -> usize {
    for (i, c) in idx.iter_mut().enumerate() {
        *c = i as u16;
    }
    idx.select_nth_unstable_by(k - 1, by_prob(p));
    idx[..k].sort_unstable_by(by_prob(p));
    k
}

/// The ids that can be in the nucleus of mass `top_p < 1` into `idx`, sorted by [`by_prob`];
/// returns how many. An id below `(1 - top_p) / (V - 1)` cannot be: even with it, the ids above
/// it would already hold more than `top_p`.
fn top_p_prefilter(p: &[f32], idx: &mut [u16], top_p: f32) -> usize {
    let cutoff = (1.0 - top_p) / (p.len().max(2) - 1) as f32;
    let mut n = 0;
    for (i, &pi) in p.iter().enumerate() {
        if pi >= cutoff {
            idx[n] = i as u16;
            n += 1;
        }
    }
    idx[..n].sort_unstable_by(by_prob(p));
    n
}

/// Length of the smallest prefix of `cands` (sorted) whose mass reaches `top_p`.
fn nucleus_len(p: &[f32], cands: &[u16], top_p: f32) -> usize {
    let mut cum = 0.0f32;
    for (j, &id) in cands.iter().enumerate() {
        cum += p[id as usize];
        if cum >= top_p {
            return j + 1;
        }
    }
    cands.len()
}

/// Draw over `cands` in their order: `r = u * mass` (mass = their sum, in order) and the first
/// candidate whose running sum exceeds `r`. The running sum ends at exactly `mass` and
/// `u * mass < mass`, so a candidate of probability 0 (a masked id) is never returned; the
/// last candidate is only a guard.
fn sample_candidates(p: &[f32], cands: &[u16], u: f32) -> Token {
    let mut mass = 0.0f32;
    for &id in cands {
        mass += p[id as usize];
    }
    let r = u * mass;
    let mut cdf = 0.0f32;
    for &id in cands {
        cdf += p[id as usize];
        if r < cdf {
            return id;
        }
    }
    cands.last().copied().unwrap_or(0)
}
