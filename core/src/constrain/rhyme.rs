//! The rhyme table of a blob (crate docs, "Rhyme table"): each token's set of rhyme groups as
//! a `u128` bit mask. A character with several readings (看, 思, 重, 行) is in several groups
//! and rhymes with a group if any of its readings is in it.

use crate::blob::{RhymeTable, MAX_RHYME_GROUPS, RHYME_SET_BYTES};
use crate::config::Token;
use crate::Error;

/// A bit mask of rhyme groups (bit `g` = group `g`).
pub type GroupSet = u128;

impl RhymeTable<'_> {
    /// Check the table against a vocabulary of `vocab_size` tokens: `n_groups` in `1..=128`
    /// with as many names, `2 V` bytes of set indices each below the number of sets, whole
    /// 16-byte sets using only bits below `n_groups`, set 0 empty, the level mask within the
    /// groups.
    pub fn validate(&self, vocab_size: usize) -> Result<(), Error> {
        let n = self.n_groups as usize;
        if n == 0 || n > MAX_RHYME_GROUPS {
            return Err(Error::InvalidRhymeTable("number of groups not in 1..=128"));
        }
        if self.group_names.split('\n').count() != n {
            return Err(Error::InvalidRhymeTable(
                "number of group names differs from n_groups",
            ));
        }
        if self.token_sets.len() != 2 * vocab_size {
            return Err(Error::InvalidRhymeTable(
                "token_sets is not 2 bytes per vocabulary entry",
            ));
        }
        if self.sets.is_empty() || !self.sets.len().is_multiple_of(RHYME_SET_BYTES) {
            return Err(Error::InvalidRhymeTable("sets is not whole 16-byte masks"));
        }
        let outside: GroupSet = if n == MAX_RHYME_GROUPS {
            0
        } else {
            !0u128 << n
        };
        if self.set(0) != Some(0) {
            return Err(Error::InvalidRhymeTable("set 0 is not empty"));
        }
        for s in self.sets.chunks_exact(RHYME_SET_BYTES) {
            if mask_of(s) & outside != 0 {
                return Err(Error::InvalidRhymeTable("a set names a group >= n_groups"));
            }
        }
        if GroupSet::from_le_bytes(self.level_groups) & outside != 0 {
            return Err(Error::InvalidRhymeTable(
                "level_groups names a group >= n_groups",
            ));
        }
        let n_sets = self.n_sets();
        for ix in self.token_sets.chunks_exact(2) {
            if u16::from_le_bytes([ix[0], ix[1]]) as usize >= n_sets {
                return Err(Error::InvalidRhymeTable(
                    "a token's set index is out of range",
                ));
            }
        }
        Ok(())
    }

    /// Number of distinct sets.
    pub fn n_sets(&self) -> usize {
        self.sets.len() / RHYME_SET_BYTES
    }

    /// Set number `i`, if it exists.
    pub fn set(&self, i: usize) -> Option<GroupSet> {
        self.sets
            .get(i * RHYME_SET_BYTES..(i + 1) * RHYME_SET_BYTES)
            .map(mask_of)
    }

    /// The rhyme groups of token `id` (empty for a token outside the table or without
    /// groups).
    pub fn groups(&self, id: Token) -> GroupSet {
        let i = id as usize;
        match self.token_sets.get(2 * i..2 * i + 2) {
            Some(b) => self
                .set(u16::from_le_bytes([b[0], b[1]]) as usize)
                .unwrap_or(0),
            None => 0,
        }
    }

    /// All groups: bits `0..n_groups`.
    pub fn all_groups(&self) -> GroupSet {
        match self.n_groups as usize {
            n if n >= MAX_RHYME_GROUPS => !0,
            n => (1u128 << n) - 1,
        }
    }

    /// The level-tone (平聲) groups.
    pub fn level(&self) -> GroupSet {
        GroupSet::from_le_bytes(self.level_groups)
    }

    /// The name of group `g`.
    pub fn group_name(&self, g: usize) -> Option<&str> {
        self.group_names.split('\n').nth(g)
    }
}

fn mask_of(s: &[u8]) -> GroupSet {
    let mut b = [0u8; RHYME_SET_BYTES];
    for (d, &x) in b.iter_mut().zip(s) {
        *d = x;
    }
    GroupSet::from_le_bytes(b)
}
