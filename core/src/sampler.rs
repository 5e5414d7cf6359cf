//! Sampling: greedy, temperature, top-k, top-p, repetition penalty; seeded PCG32.
//!
//! Pipeline for one token (all in place, no allocation):
//! 0. a non-finite logit is [`Error::NonFiniteLogits`] (there is no distribution to sample);
//! 1. repetition penalty: each distinct id among the last `repetition_window` context tokens
//!    gets `l / penalty` if `l > 0`, else `l * penalty` (CTRL-style);
//! 2. greedy (`temperature == 0` or `top_k == 1`): the lowest id with the maximal logit;
//!    no random number is drawn;
//! 3. `z_i = l_i / temperature` (an overflow to inf is an [`Error::InvalidSampler`]);
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
    s.validate()?;
    let v = logits.len();
    if v == 0 || v > scratch.len() || v > 1 << 16 {
        return Err(Error::InvalidSampler("logits empty or scratch too small"));
    }
    let scratch = &mut scratch[..v];
    // 0. a NaN or inf logit means the model overflowed: refuse rather than emit end-of-text
    if logits.iter().any(|l| !l.is_finite()) {
        return Err(Error::NonFiniteLogits);
    }

    // 1. repetition penalty, once per distinct id (scratch marks ids already penalised)
    if s.repetition_penalty != 1.0 && s.repetition_window > 0 {
        let recent = &history[history.len().saturating_sub(s.repetition_window)..];
        for &t in recent {
            if let Some(m) = scratch.get_mut(t as usize) {
                *m = 0;
            }
        }
        for &t in recent {
            if let (Some(m), Some(l)) = (scratch.get_mut(t as usize), logits.get_mut(t as usize)) {
                if *m == 0 {
                    *m = 1;
                    *l = if *l > 0.0 {
                        *l / s.repetition_penalty
                    } else {
                        *l * s.repetition_penalty
                    };
                }
            }
        }
    }

    // 2. greedy
    if s.temperature == 0.0 || s.top_k == 1 {
        return Ok(argmax(logits) as Token);
    }

    // 3. temperature + softmax
    if s.temperature != 1.0 {
        for l in logits.iter_mut() {
            *l /= s.temperature;
        }
    }
    // the penalty (a multiplier) and a small temperature can push a logit past f32::MAX
    if logits.iter().any(|l| !l.is_finite()) {
        return Err(Error::InvalidSampler(
            "logits / temperature (after the repetition penalty) overflow f32: raise the temperature",
        ));
    }
    kernels::softmax(backend, logits);
    let p: &[f32] = logits;

    // 4. candidates
    let top_k = if s.top_k == 0 || s.top_k >= v {
        v
    } else {
        s.top_k
    };
    let n = if top_k < v {
        for (i, c) in scratch.iter_mut().enumerate() {
            *c = i as u16;
        }
        scratch.select_nth_unstable_by(top_k - 1, by_prob(p));
        scratch[..top_k].sort_unstable_by(by_prob(p));
        top_k
    } else if s.top_p < 1.0 {
        let cutoff = (1.0 - s.top_p) / (v.max(2) - 1) as f32;
        let mut n = 0;
        for (i, &pi) in p.iter().enumerate() {
            if pi >= cutoff {
                scratch[n] = i as u16;
                n += 1;
            }
        }
        if n == 0 {
            return Ok(argmax(p) as Token);
        }
        scratch[..n].sort_unstable_by(by_prob(p));
        n
    } else {
        // all ids in id order, walked in blocks of 16 (see the module docs)
        let r = rng.next_f32();
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
                        return Ok((16 * bi + j) as Token);
                    }
                }
                if let Some(j) = last_in {
                    return Ok((16 * bi + j) as Token);
                }
            }
            cum += b;
            if let Some(j) = block.iter().rposition(|&pi| pi > 0.0) {
                last = 16 * bi + j;
            }
        }
        return Ok(last as Token);
    };
    let mut n = n;
    if s.top_p < 1.0 {
        let mut cum = 0.0f32;
        for (j, &id) in scratch[..n].iter().enumerate() {
            cum += p[id as usize];
            if cum >= s.top_p {
                n = j + 1;
                break;
            }
        }
    }
    // 5. draw over the candidates in sorted order
    let cands = &scratch[..n];
    let mut mass = 0.0f32;
    for &id in cands {
        mass += p[id as usize];
    }
    let r = rng.next_f32() * mass;
    let mut cdf = 0.0f32;
    for &id in cands {
        cdf += p[id as usize];
        if r < cdf {
            return Ok(id);
        }
    }
    Ok(cands.last().copied().unwrap_or(0))
}
