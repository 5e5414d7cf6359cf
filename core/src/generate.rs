//! Text generation: a pull-style [`Generator`] (one character per [`Generator::next_char`]) with
//! stop sequences and an optional [`Constraint`], and the callback form [`Decoder::generate`]
//! on top of it.
//!
//! One loop serves every front end: the CLI and the firmware print each character, the web
//! page pulls one per animation frame, the verse-form constraints mask the logits inside it.
//! Per generated token: [`Constraint::finished`] → [`Constraint::mask`] →
//! [`Decoder::sample_with`] → [`Constraint::advance`] → end-of-text check → stop-sequence
//! buffer → the characters that can no longer start a stop sequence are returned, one per
//! call; the token is fed to the decoder right before the next token is sampled.

use core::ops::ControlFlow;

use crate::config::Token;
use crate::constrain::{Constraint, NoConstraint};
use crate::decoder::Decoder;
use crate::prompt::{instruction_prompt_iter, instruction_prompt_len, Prompt};
use crate::sampler::{Rng, Sampler, SamplerSettings};
use crate::{Error, Tokenizer};

/// Longest stop sequence, in characters.
pub const MAX_STOP_CHARS: usize = 32;

/// The default stop sequences: a blank line ends a poem.
pub const DEFAULT_STOP: &[&str] = &["\n\n"];

/// Settings of a [`Generator`] and of [`Decoder::generate`].
#[derive(Debug, Clone, Copy)]
pub struct GenerateSettings<'s> {
    /// Sampler.
    pub sampler: SamplerSettings,
    /// PRNG seed ([`Rng::new`]).
    pub seed: u64,
    /// Maximum number of generated characters (tokens), stop sequence included.
    pub max_new_chars: usize,
    /// Stop when the generated text ends with one of these (the stop sequence is not emitted).
    pub stop: &'s [&'s str],
    /// Stop when id 0 (`'\0'`, end-of-text) is sampled (not emitted).
    pub stop_at_end_of_text: bool,
}

impl Default for GenerateSettings<'_> {
    fn default() -> Self {
        GenerateSettings {
            sampler: SamplerSettings::DEFAULT,
            seed: 2024,
            max_new_chars: 256,
            stop: DEFAULT_STOP,
            stop_at_end_of_text: true,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Sampled id 0 (with `stop_at_end_of_text`), or the constraint reported
    /// [`Constraint::finished`].
    EndOfText,
    /// The generated text ended with `stop[i]`.
    StopSequence(usize),
    /// `max_new_chars` reached.
    MaxLength,
    /// The callback of [`Decoder::generate`] returned `ControlFlow::Break`.
    Callback,
}

/// Summary of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Tokens sampled (including a stop sequence or end-of-text).
    pub generated_tokens: usize,
    /// Characters emitted (returned by [`Generator::next_char`] / passed to the callback).
    pub emitted_chars: usize,
    /// Why it stopped ([`StopReason::MaxLength`] while still running).
    pub reason: StopReason,
}

/// Characters generated but not yet emitted because they may start a stop sequence.
struct Pending {
    buf: [char; MAX_STOP_CHARS],
    len: usize,
}

impl Pending {
    const EMPTY: Pending = Pending {
        buf: ['\0'; MAX_STOP_CHARS],
        len: 0,
    };
    fn as_slice(&self) -> &[char] {
        &self.buf[..self.len]
    }
    /// Never full when called: the generator drains it until it is a proper prefix of a stop
    /// sequence (at most `MAX_STOP_CHARS - 1` characters) before sampling again.
    fn push(&mut self, c: char) {
        if self.len < MAX_STOP_CHARS {
            self.buf[self.len] = c;
            self.len += 1;
        }
    }
    fn pop_front(&mut self) -> Option<char> {
        if self.len == 0 {
            return None;
        }
        let c = self.buf[0];
        self.buf.copy_within(1..self.len, 0);
        self.len -= 1;
        Some(c)
    }
}

fn eq(s: &str, p: &[char]) -> bool {
    s.chars().eq(p.iter().copied())
}

fn is_prefix(p: &[char], s: &str) -> bool {
    let mut it = s.chars();
    p.iter().all(|&c| it.next() == Some(c))
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Sampling.
    Running,
    /// Ended for this reason; the held-back characters (not a stop sequence) are emitted first.
    Flushing(StopReason),
    /// Ended; nothing more to emit.
    Done(StopReason),
    /// A call failed; every later call returns the same error.
    Failed(Error),
}

/// Pull-style generation: [`Generator::next_char`] returns the next character of the
/// continuation of a prompt, `None` once it has ended ([`Generator::stop_reason`]).
/// Deterministic for (blob, prompt, settings, constraint).
///
/// ```
/// # use tinypoet_core::{Decoder, GenerateSettings, Generator, Prompt};
/// # fn poem(dec: &mut Decoder<'_>) -> Result<(), tinypoet_core::Error> {
/// let settings = GenerateSettings::default();
/// let mut gen = Generator::new(dec, Prompt::Title("春夜喜雨"), &settings)?;
/// while let Some(c) = gen.next_char()? {
///     // show `c`; stopping early is just not calling again
/// #   let _ = c;
/// }
/// let summary = gen.summary();
/// # let _ = summary; Ok(()) }
/// ```
pub struct Generator<'g, 'm, C: Constraint = NoConstraint> {
    dec: &'g mut Decoder<'m>,
    tok: Tokenizer<'m>,
    sampler: Sampler,
    rng: Rng,
    stop: &'g [&'g str],
    max_new_chars: usize,
    stop_at_end_of_text: bool,
    constraint: C,
    pending: Pending,
    /// The last sampled token, fed to the decoder before the next one is sampled.
    unfed: Option<Token>,
    summary: Generation,
    state: State,
}

impl<'g, 'm> Generator<'g, 'm, NoConstraint> {
    /// Reset `dec`, prefill `prompt` and get ready to sample (nothing is sampled yet). Errors:
    /// invalid sampler settings or stop sequences, an empty prompt, a character not in the
    /// vocabulary ([`Error::UnknownChar`]), a title prompt that does not fit the context
    /// ([`Error::PromptTooLong`]).
    pub fn new(
        dec: &'g mut Decoder<'m>,
        prompt: Prompt<'_>,
        settings: &GenerateSettings<'g>,
    ) -> Result<Self, Error> {
        Self::with_constraint(dec, prompt, settings, NoConstraint)
    }
}

impl<'g, 'm, C: Constraint> Generator<'g, 'm, C> {
    /// [`Generator::new`] with a constraint on the generated text (not on the prompt).
    pub fn with_constraint(
        dec: &'g mut Decoder<'m>,
        prompt: Prompt<'_>,
        settings: &GenerateSettings<'g>,
        constraint: C,
    ) -> Result<Self, Error> {
        let sampler = Sampler::new(settings.sampler)?;
        for s in settings.stop {
            let n = s.chars().count();
            if n == 0 || n > MAX_STOP_CHARS {
                return Err(Error::InvalidStopSequence);
            }
        }
        let tok = dec.model().tokenizer();
        dec.reset();
        let prompt_tokens = match prompt {
            Prompt::Text(text) => dec.prefill_iter(tok.encode_iter(text))?,
            Prompt::Tokens(ids) => dec.prefill_iter(ids.iter().copied().map(Ok))?,
            Prompt::Title(title) => {
                let needed = instruction_prompt_len(title);
                let capacity = dec.config().context - 1;
                if needed > capacity {
                    return Err(Error::PromptTooLong { needed, capacity });
                }
                dec.prefill_iter(instruction_prompt_iter(&tok, title))?
            }
        };
        Ok(Generator {
            dec,
            tok,
            sampler,
            rng: Rng::new(settings.seed),
            stop: settings.stop,
            max_new_chars: settings.max_new_chars,
            stop_at_end_of_text: settings.stop_at_end_of_text,
            constraint,
            pending: Pending::EMPTY,
            unfed: None,
            summary: Generation {
                prompt_tokens,
                generated_tokens: 0,
                emitted_chars: 0,
                reason: StopReason::MaxLength,
            },
            state: State::Running,
        })
    }

    /// The next character, `Ok(None)` once generation has ended (then [`Generator::stop_reason`]
    /// says why; further calls keep returning `None`). A character is returned as soon as it
    /// cannot be part of a stop sequence. After an error every call returns that error.
    pub fn next_char(&mut self) -> Result<Option<char>, Error> {
        match self.step() {
            Ok(c) => Ok(c),
            Err(e) => {
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }

    fn step(&mut self) -> Result<Option<char>, Error> {
        loop {
            match self.state {
                State::Running => {}
                State::Flushing(reason) => match self.pending.pop_front() {
                    Some(c) => return Ok(Some(self.emitted(c))),
                    None => {
                        self.end(reason);
                        return Ok(None);
                    }
                },
                State::Done(_) => return Ok(None),
                State::Failed(e) => return Err(e),
            }
            // Emit what can no longer start a stop sequence; stop on a full match.
            let held = self.pending.as_slice();
            if let Some(i) = self.stop.iter().position(|s| eq(s, held)) {
                self.end(StopReason::StopSequence(i));
                return Ok(None);
            }
            if !held.is_empty() && !self.stop.iter().any(|s| is_prefix(held, s)) {
                if let Some(c) = self.pending.pop_front() {
                    return Ok(Some(self.emitted(c)));
                }
            }
            // Everything held may start a stop sequence: sample the next token.
            if self.constraint.finished() {
                self.state = State::Flushing(StopReason::EndOfText);
                continue;
            }
            if self.summary.generated_tokens >= self.max_new_chars {
                self.state = State::Flushing(StopReason::MaxLength);
                continue;
            }
            if let Some(id) = self.unfed.take() {
                self.dec.feed(id)?;
            }
            self.constraint.mask(self.dec.logits_mut(), &self.tok)?;
            let id = self.dec.sample_with(&self.sampler, &mut self.rng)?;
            self.summary.generated_tokens += 1;
            let c = self.tok.char(id)?;
            self.constraint.advance(id, c)?;
            if id == 0 && self.stop_at_end_of_text {
                self.state = State::Flushing(StopReason::EndOfText);
                continue;
            }
            self.pending.push(c);
            self.unfed = Some(id);
        }
    }

    fn emitted(&mut self, c: char) -> char {
        self.summary.emitted_chars += 1;
        c
    }

    fn end(&mut self, reason: StopReason) {
        self.summary.reason = reason;
        self.state = State::Done(reason);
    }

    /// Why generation ended; `None` while it is still running (or failed).
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.state {
            State::Done(r) => Some(r),
            _ => None,
        }
    }

    /// Counts so far; `reason` is final once [`Generator::next_char`] has returned `None`.
    pub fn summary(&self) -> Generation {
        self.summary
    }

    /// The tokenizer of the model.
    pub fn tokenizer(&self) -> &Tokenizer<'m> {
        &self.tok
    }

    /// The constraint (for example to read its line counter).
    pub fn constraint(&self) -> &C {
        &self.constraint
    }

    /// The decoder (its context: the prompt and the tokens fed so far).
    pub fn decoder(&self) -> &Decoder<'m> {
        self.dec
    }
}

impl Decoder<'_> {
    /// Reset, prefill `prompt`, then sample up to `max_new_chars` characters, calling
    /// `on_char` with each character as soon as it is certain not to belong to a stop
    /// sequence. The prompt is not echoed. Deterministic for (blob, prompt, settings).
    /// A loop over [`Generator::next_char`] (public API only).
    pub fn generate<F>(
        &mut self,
        prompt: &str,
        settings: &GenerateSettings,
        mut on_char: F,
    ) -> Result<Generation, Error>
    where
        F: FnMut(char) -> ControlFlow<()>,
    {
        let mut gen = Generator::new(self, Prompt::Text(prompt), settings)?;
        while let Some(c) = gen.next_char()? {
            if on_char(c).is_break() {
                return Ok(Generation {
                    reason: StopReason::Callback,
                    ..gen.summary()
                });
            }
        }
        Ok(gen.summary())
    }
}
