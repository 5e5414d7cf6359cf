//! Text generation with streaming output and stop sequences.

use core::ops::ControlFlow;

use crate::config::Token;
use crate::decoder::Decoder;
use crate::sampler::{sample_with, Rng, SamplerSettings};
use crate::Error;

/// Longest stop sequence, in characters.
pub const MAX_STOP_CHARS: usize = 32;

/// The default stop sequences: a blank line ends a poem.
pub const DEFAULT_STOP: &[&str] = &["\n\n"];

/// Settings of [`Decoder::generate`].
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
    /// Sampled id 0.
    EndOfText,
    /// The generated text ended with `stop[i]`.
    StopSequence(usize),
    /// `max_new_chars` reached.
    MaxLength,
    /// The callback returned `ControlFlow::Break`.
    Callback,
}

/// Summary of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Tokens sampled (including a stop sequence or end-of-text).
    pub generated_tokens: usize,
    /// Characters passed to the callback.
    pub emitted_chars: usize,
    /// Why it stopped.
    pub reason: StopReason,
}

/// Characters generated but not yet emitted because they may start a stop sequence.
struct Pending {
    buf: [char; MAX_STOP_CHARS],
    len: usize,
}

impl Pending {
    fn as_slice(&self) -> &[char] {
        &self.buf[..self.len]
    }
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

impl Decoder<'_> {
    /// Sample the next token from the current logits (which become probabilities) with the
    /// context as repetition history.
    pub fn sample(&mut self, s: &SamplerSettings, rng: &mut Rng) -> Result<Token, Error> {
        let pos = self.position();
        let backend = self.backend();
        let (logits, scratch, tokens) = self.sampler_parts();
        sample_with(backend, logits, scratch, &tokens[..pos], s, rng)
    }

    /// Reset, prefill `prompt`, then sample up to `max_new_chars` characters, calling
    /// `on_char` with each character as soon as it is certain not to belong to a stop
    /// sequence. The prompt is not echoed. Deterministic for (blob, prompt, settings).
    pub fn generate<F>(
        &mut self,
        prompt: &str,
        settings: &GenerateSettings,
        mut on_char: F,
    ) -> Result<Generation, Error>
    where
        F: FnMut(char) -> ControlFlow<()>,
    {
        settings.sampler.validate()?;
        for s in settings.stop {
            let n = s.chars().count();
            if n == 0 || n > MAX_STOP_CHARS {
                return Err(Error::InvalidStopSequence);
            }
        }
        let tok = self.model().tokenizer();
        self.reset();
        let mut prompt_tokens = 0;
        for id in tok.encode_iter(prompt) {
            let id = id?;
            // the LM head only runs for the last prompt token (below)
            self.step_no_logits(id)?;
            prompt_tokens += 1;
        }
        if prompt_tokens == 0 {
            return Err(Error::EmptyInput);
        }
        self.recompute_logits();

        let mut rng = Rng::new(settings.seed);
        let mut pending = Pending {
            buf: ['\0'; MAX_STOP_CHARS],
            len: 0,
        };
        let mut g = Generation {
            prompt_tokens,
            generated_tokens: 0,
            emitted_chars: 0,
            reason: StopReason::MaxLength,
        };
        let mut emit = |c: char, g: &mut Generation| -> bool {
            g.emitted_chars += 1;
            on_char(c).is_break()
        };
        while g.generated_tokens < settings.max_new_chars {
            let id = self.sample(&settings.sampler, &mut rng)?;
            g.generated_tokens += 1;
            if id == 0 && settings.stop_at_end_of_text {
                g.reason = StopReason::EndOfText;
                break;
            }
            let c = tok.char(id)?;
            pending.push(c);
            // Emit what can no longer start a stop sequence; stop on a full match.
            loop {
                if let Some(i) = settings.stop.iter().position(|s| eq(s, pending.as_slice())) {
                    g.reason = StopReason::StopSequence(i);
                    return Ok(g);
                }
                if pending.len == 0
                    || settings
                        .stop
                        .iter()
                        .any(|s| is_prefix(pending.as_slice(), s))
                {
                    break;
                }
                if let Some(c) = pending.pop_front() {
                    if emit(c, &mut g) {
                        g.reason = StopReason::Callback;
                        return Ok(g);
                    }
                }
            }
            if g.generated_tokens < settings.max_new_chars {
                self.feed(id)?;
            }
        }
        // Flush what was held back (it did not complete a stop sequence).
        while let Some(c) = pending.pop_front() {
            if emit(c, &mut g) {
                g.reason = StopReason::Callback;
                break;
            }
        }
        Ok(g)
    }
}
