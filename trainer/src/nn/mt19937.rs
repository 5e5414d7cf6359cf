//! MT19937, the 32-bit Mersenne Twister (Matsumoto & Nishimura 1998), with both of the seedings
//! the reference run depends on.
//!
//! * [`Mt19937::init_genrand`] is the original single-word seeding. `torch.manual_seed(s)` seeds
//!   PyTorch's CPU generator exactly this way, and every element of a CPU `torch.randint(0, high,
//!   ..)` consumes one raw output: `value = next_u32() % high` (see [`Mt19937::torch_randint`]).
//!   The trainer uses this for batch sampling and parameter initialisation.
//! * [`Mt19937::init_by_array`] is the array seeding that CPython's `random.seed(int)` uses (via
//!   [`Mt19937::python_seed`]). The corpus shuffle and the alignment `choice` calls run on it;
//!   `crate::data::corpus::pyrandom` builds `randbelow`/`shuffle`/`choice` on top.
//!
//! The generator state (624 words + position) can be saved and restored exactly with
//! [`Mt19937::state`] / [`Mt19937::from_state`] (serde) or [`Mt19937::to_bytes`] /
//! [`Mt19937::from_bytes`] (fixed 2,500-byte little-endian layout), so a resumed training run
//! continues the very same random stream.

use serde::{Deserialize, Serialize};

/// Number of 32-bit words in the state vector.
pub const N: usize = 624;
/// Middle word offset of the recurrence.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// Size in bytes of [`Mt19937::to_bytes`]: 624 state words then the position, all u32 LE.
pub const STATE_BYTES: usize = (N + 1) * 4;

/// A 32-bit Mersenne Twister generator.
///
/// Equality compares the full state, so two generators are equal exactly when they will produce
/// the same stream from now on.
#[derive(Clone, PartialEq, Eq)]
pub struct Mt19937 {
    mt: [u32; N],
    /// Position of the next word to temper; `N` means "twist before the next draw".
    index: usize,
}

/// The serialisable state of a [`Mt19937`]: exactly what a checkpoint needs to continue the
/// stream bit-identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtState {
    /// The 624 state words.
    pub words: Vec<u32>,
    /// Position of the next word to use, 0..=624 (624 = a twist happens before the next draw).
    pub index: u32,
}

/// A saved state that cannot be a Mersenne Twister state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMtState {
    #[error("MT19937 state has {0} words, expected 624")]
    WordCount(usize),
    #[error("MT19937 state index {0} is out of range 0..=624")]
    Index(u32),
    #[error("MT19937 state is {0} bytes, expected 2500")]
    ByteLength(usize),
    #[error("MT19937 state is all zero in its significant bits (the generator would be stuck)")]
    AllZero,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 624 words are noise in a debug print; the position and first words identify the state.
        f.debug_struct("Mt19937")
            .field("index", &self.index)
            .field("mt[0..4]", &&self.mt[..4])
            .finish_non_exhaustive()
    }
}

impl Mt19937 {
    /// Single-word seeding (`init_genrand` of the reference C code, and what
    /// `torch.manual_seed(seed)` does to PyTorch's CPU generator).
    pub fn init_genrand(seed: u32) -> Self {
        let mut mt = [0u32; N];
        mt[0] = seed;
        for i in 1..N {
            let prev = mt[i - 1];
            mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { mt, index: N }
    }

    /// Array seeding (`init_by_array` of the reference C code): `init_genrand(19650218)` and then
    /// the key mixed in. CPython's `random.seed(int)` uses this; see [`Mt19937::python_seed`].
    /// An empty key is treated as `[0]`, as CPython does.
    pub fn init_by_array(key: &[u32]) -> Self {
        let key: &[u32] = if key.is_empty() { &[0] } else { key };
        let mut g = Self::init_genrand(19_650_218);
        let mt = &mut g.mt;
        let mut i = 1usize;
        let mut j = 0usize;
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1];
            mt[i] = (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1];
            mt[i] =
                (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        // MSB is 1, assuring a non-zero initial state.
        mt[0] = 0x8000_0000;
        g.index = N;
        g
    }

    /// CPython's `random.seed(seed)` for a non-negative integer seed: the key is the integer's
    /// 32-bit words, least significant first (`[0]` for zero). CPython seeds with `abs(seed)`,
    /// so a negative Python seed `-s` is `python_seed(s)`.
    pub fn python_seed(seed: u64) -> Self {
        let lo = seed as u32;
        let hi = (seed >> 32) as u32;
        if hi == 0 {
            Self::init_by_array(&[lo])
        } else {
            Self::init_by_array(&[lo, hi])
        }
    }

    /// The next raw 32-bit output (`genrand_uint32` / `genrand_int32`).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        // Tempering.
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// One element of PyTorch's CPU `torch.randint(0, high, ..)`: `next_u32() % high`.
    ///
    /// Verified against torch 2.15 for `high` up to 2^28 − 1; from 2^28 on PyTorch draws
    /// differently (not modelled here; the trainer's ranges are below 2^21). Returns 0 for `high == 0`
    /// instead of dividing by zero (still consuming one draw).
    #[inline]
    pub fn torch_randint(&mut self, high: u32) -> u32 {
        let r = self.next_u32();
        r.checked_rem(high).unwrap_or(0)
    }

    /// Regenerate the 624 words (the "twist").
    fn twist(&mut self) {
        let mt = &mut self.mt;
        for k in 0..N {
            let y = (mt[k] & UPPER_MASK) | (mt[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            mt[k] = mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The generator's full state, for a checkpoint.
    pub fn state(&self) -> MtState {
        MtState {
            words: self.mt.to_vec(),
            index: self.index as u32,
        }
    }

    /// Restore a generator from [`Mt19937::state`]; the stream continues exactly where it was.
    pub fn from_state(state: &MtState) -> Result<Self, InvalidMtState> {
        let mt: [u32; N] = state
            .words
            .as_slice()
            .try_into()
            .map_err(|_| InvalidMtState::WordCount(state.words.len()))?;
        Self::from_parts(mt, state.index)
    }

    /// The state as 2,500 bytes: the 624 words then the index, each u32 little-endian.
    pub fn to_bytes(&self) -> [u8; STATE_BYTES] {
        let mut out = [0u8; STATE_BYTES];
        for (dst, w) in out.chunks_exact_mut(4).zip(self.mt.iter()) {
            dst.copy_from_slice(&w.to_le_bytes());
        }
        out[N * 4..].copy_from_slice(&(self.index as u32).to_le_bytes());
        out
    }

    /// Inverse of [`Mt19937::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidMtState> {
        if bytes.len() != STATE_BYTES {
            return Err(InvalidMtState::ByteLength(bytes.len()));
        }
        let mut mt = [0u32; N];
        for (w, src) in mt.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
        }
        let idx = &bytes[N * 4..];
        let index = u32::from_le_bytes([idx[0], idx[1], idx[2], idx[3]]);
        Self::from_parts(mt, index)
    }

    fn from_parts(mt: [u32; N], index: u32) -> Result<Self, InvalidMtState> {
        if index as usize > N {
            return Err(InvalidMtState::Index(index));
        }
        // Only the top bit of word 0 and all of words 1..N enter the recurrence; if all of those
        // are zero the generator emits zeros forever, which no seeding can produce.
        if mt[0] & UPPER_MASK == 0 && mt[1..].iter().all(|&w| w == 0) {
            return Err(InvalidMtState::AllZero);
        }
        Ok(Mt19937 {
            mt,
            index: index as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference outputs of the original mt19937ar.c: init_genrand(5489) starts 3499211612,
    // 581869302, 3890346734, 3586334585 (the std::mt19937 default seed; its 10000th output is
    // 4123659995, the value the C++ standard requires).
    #[test]
    fn init_genrand_matches_reference_c() {
        let mut g = Mt19937::init_genrand(5489);
        let first: Vec<u32> = (0..4).map(|_| g.next_u32()).collect();
        assert_eq!(first, [3499211612, 581869302, 3890346734, 3586334585]);
        let mut g = Mt19937::init_genrand(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = g.next_u32();
        }
        assert_eq!(last, 4123659995);
    }

    // mt19937ar.c's own test: init_by_array({0x123, 0x234, 0x345, 0x456}) starts 1067595299,
    // 955945823, 477289528, 4107218783, 4228976476.
    #[test]
    fn init_by_array_matches_reference_c() {
        let mut g = Mt19937::init_by_array(&[0x123, 0x234, 0x345, 0x456]);
        let first: Vec<u32> = (0..5).map(|_| g.next_u32()).collect();
        assert_eq!(
            first,
            [1067595299, 955945823, 477289528, 4107218783, 4228976476]
        );
    }

    #[test]
    fn state_roundtrip_mid_stream() {
        let mut g = Mt19937::init_genrand(2024);
        for _ in 0..700 {
            g.next_u32();
        }
        let saved = g.state();
        let bytes = g.to_bytes();
        let mut a = Mt19937::from_state(&saved).unwrap();
        let mut b = Mt19937::from_bytes(&bytes).unwrap();
        for _ in 0..2000 {
            let x = g.next_u32();
            assert_eq!(a.next_u32(), x);
            assert_eq!(b.next_u32(), x);
        }
    }

    #[test]
    fn bad_states_are_rejected() {
        let g = Mt19937::init_genrand(1);
        let mut s = g.state();
        s.index = 625;
        assert_eq!(Mt19937::from_state(&s), Err(InvalidMtState::Index(625)));
        s.index = 0;
        s.words.pop();
        assert_eq!(Mt19937::from_state(&s), Err(InvalidMtState::WordCount(623)));
        assert_eq!(
            Mt19937::from_bytes(&[0u8; 10]),
            Err(InvalidMtState::ByteLength(10))
        );
        assert_eq!(
            Mt19937::from_bytes(&[0u8; STATE_BYTES]),
            Err(InvalidMtState::AllZero)
        );
    }
}
