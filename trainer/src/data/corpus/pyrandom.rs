//! A port of the parts of CPython's `random.Random` that the reference's data pipeline uses:
//! `seed(int)`, `getrandbits`, `_randbelow`, `shuffle` and `choice` (CPython 3.2+ algorithms,
//! unchanged through 3.13).
//!
//! The reference shuffles the poem list with `random.shuffle` and then draws each alignment
//! negative with `random.choice` from the same stream, so the vocabulary itself depends on
//! reproducing this stream exactly (see `tang.rs`).

use crate::nn::mt19937::Mt19937;

/// CPython's `random.Random` restricted to integer seeding and the calls listed above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyRandom {
    mt: Mt19937,
}

impl PyRandom {
    /// `random.seed(seed)` / `random.Random(seed)` for a non-negative integer seed.
    pub fn new(seed: u64) -> Self {
        PyRandom {
            mt: Mt19937::python_seed(seed),
        }
    }

    /// The underlying generator (for example to save its state).
    pub fn generator(&self) -> &Mt19937 {
        &self.mt
    }

    /// `getrandbits(k)` for `k <= 64`. Like CPython, each 32-bit chunk takes one draw, low chunk
    /// first, and a partial chunk keeps the *top* bits of its draw. `getrandbits(0)` is 0 and
    /// draws nothing.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits supports k <= 64, got {k}");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.mt.next_u32() >> (32 - k));
        }
        let lo = u64::from(self.mt.next_u32());
        let hi = u64::from(self.mt.next_u32() >> (64 - k));
        lo | (hi << 32)
    }

    /// `_randbelow(n)`: uniform in `0..n` by rejection sampling on `getrandbits(n.bit_length())`.
    /// For `n == 0` CPython 3.11 raises (`getrandbits(0)` loop would never end in old versions);
    /// we return 0 without drawing.
    pub fn randbelow(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let k = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `shuffle(x)`: Fisher–Yates from the end, `j = _randbelow(i + 1)` for `i = len-1 .. 1`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.randbelow(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// `choice(seq)`: `seq[_randbelow(len(seq))]`; `None` for an empty slice (CPython raises
    /// IndexError without drawing).
    pub fn choice<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let i = self.randbelow(items.len() as u64) as usize;
        Some(&items[i])
    }

    /// Like [`PyRandom::choice`] but returns the index drawn.
    pub fn choice_index(&mut self, len: usize) -> Option<usize> {
        if len == 0 {
            return None;
        }
        Some(self.randbelow(len as u64) as usize)
    }
}
