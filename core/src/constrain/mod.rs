//! Constraints on generated text (verse forms, acrostics, rhyme): a [`Constraint`] sits between
//! the decoder's logits and the sampler in the [`crate::generate::Generator`] loop.
//!
//! For every generated token the generator calls, in this order:
//! 1. [`Constraint::finished`]: if true, generation ends like end-of-text
//!    ([`crate::StopReason::EndOfText`]; nothing more is sampled or emitted);
//! 2. [`Constraint::mask`] on the logits of the next token: set every id that must not come
//!    next to `f32::NEG_INFINITY`. The sampler gives those ids probability exactly 0 whatever
//!    its settings (greedy, temperature, top-k, top-p, repetition penalty), so a constrained
//!    generation is as deterministic as an unconstrained one. Masking every id is
//!    [`crate::Error::NothingToSample`];
//! 3. the sampler draws one id;
//! 4. [`Constraint::advance`] with that id and its character, including id 0 (`'\0'`,
//!    end-of-text) and characters that later turn out to be part of a stop sequence.
//!
//! A form ends either by masking everything except id 0 after its last character (the model
//! "chooses" end-of-text; needs [`crate::GenerateSettings::stop_at_end_of_text`]) or by
//! returning `true` from `finished` (no extra forward pass, no random draw).
//!
//! State lives in the constraint (line and character counters, the rhyme class of line 1, …)
//! in fixed-size fields: the core has no allocator. `mask` runs once per generated token over
//! `V` logits, so precompute what it needs (for example a table of the ids of punctuation)
//! when the constraint is built.

use crate::config::Token;
use crate::{Error, Tokenizer};

/// A rule on the generated text, applied as mask → sample → advance (see the module docs).
pub trait Constraint {
    /// Set the logits of ids that must not come next to `f32::NEG_INFINITY` (leave the others
    /// unchanged). `logits` has `V` entries, indexed by token id; `tok` maps ids to characters.
    fn mask(&mut self, logits: &mut [f32], tok: &Tokenizer<'_>) -> Result<(), Error>;

    /// Record the token just sampled (`c` is its character; `'\0'` for id 0).
    fn advance(&mut self, id: Token, c: char) -> Result<(), Error>;

    /// True once the text is complete: the generator stops before sampling another token.
    fn finished(&self) -> bool {
        false
    }
}

/// No constraint: every token allowed, never finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoConstraint;

impl Constraint for NoConstraint {
    #[inline]
    fn mask(&mut self, _logits: &mut [f32], _tok: &Tokenizer<'_>) -> Result<(), Error> {
        Ok(())
    }

    #[inline]
    fn advance(&mut self, _id: Token, _c: char) -> Result<(), Error> {
        Ok(())
    }
}

/// A borrowed constraint works too, so the caller can inspect it after the generation.
impl<C: Constraint + ?Sized> Constraint for &mut C {
    fn mask(&mut self, logits: &mut [f32], tok: &Tokenizer<'_>) -> Result<(), Error> {
        (**self).mask(logits, tok)
    }

    fn advance(&mut self, id: Token, c: char) -> Result<(), Error> {
        (**self).advance(id, c)
    }

    fn finished(&self) -> bool {
        (**self).finished()
    }
}
