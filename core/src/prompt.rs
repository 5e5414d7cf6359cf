//! Prompts: raw text, token ids, or a title in the finetune stage's instruction template.
//!
//! The finetuned and aligned models were trained on
//! `<INS>請用以下題目寫一首詩<INP>{title}<RES>{poem}` followed by end-of-text (id 0), so a poem
//! for a title is the continuation of `<INS>請用以下題目寫一首詩<INP>{title}<RES>` up to the
//! first id 0. The template is written in characters of the Tang vocabulary (each character is
//! one token); 春夜喜雨 gives the 29 ids of `tutorialllm.md` §2.

use crate::config::Token;
use crate::{Error, Tokenizer};

/// Before the title: the instruction ("write a poem with the following title") between the
/// `<INS>` and `<INP>` markers.
pub const INSTRUCTION_HEAD: &str = "<INS>請用以下題目寫一首詩<INP>";
/// After the title: the response marker; the poem follows it.
pub const INSTRUCTION_TAIL: &str = "<RES>";
/// Tokens of the template without the title (20 + 5).
pub const INSTRUCTION_TEMPLATE_TOKENS: usize = 25;

const _: () = assert!(
    INSTRUCTION_HEAD.len() == 5 + 10 * 3 + 5 && INSTRUCTION_TAIL.len() == 5,
    "template = 20 + 5 characters (10 CJK of 3 UTF-8 bytes)"
);

/// What a generation starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt<'p> {
    /// Raw text to continue (the pretrained model's use); each character must be in the
    /// vocabulary.
    Text(&'p str),
    /// Token ids to continue.
    Tokens(&'p [Token]),
    /// A title: the instruction template around it ([`instruction_prompt_tokens`]); must fit the
    /// context with at least one position left.
    Title(&'p str),
}

impl<'p> From<&'p str> for Prompt<'p> {
    fn from(text: &'p str) -> Self {
        Prompt::Text(text)
    }
}

impl<'p> From<&'p [Token]> for Prompt<'p> {
    fn from(tokens: &'p [Token]) -> Self {
        Prompt::Tokens(tokens)
    }
}

/// Number of tokens of the instruction prompt for `title` (template + one per character).
pub fn instruction_prompt_len(title: &str) -> usize {
    INSTRUCTION_TEMPLATE_TOKENS.saturating_add(title.chars().count())
}

/// The ids of `<INS>請用以下題目寫一首詩<INP>{title}<RES>`, in order. An empty title is
/// [`Error::EmptyInput`]; a character missing from the vocabulary (in the title or, for a
/// vocabulary other than the Tang one, in the template) is [`Error::UnknownChar`] naming it.
pub fn instruction_prompt_iter<'t>(
    tok: &Tokenizer<'t>,
    title: &'t str,
) -> impl Iterator<Item = Result<Token, Error>> + 't {
    let empty = title.is_empty().then_some(Err(Error::EmptyInput));
    let t = *tok;
    empty.into_iter().chain(
        INSTRUCTION_HEAD
            .chars()
            .chain(title.chars())
            .chain(INSTRUCTION_TAIL.chars())
            .map(move |c| t.id(c)),
    )
}

/// Write the ids of the instruction prompt for `title` into `out` (no allocation); returns
/// how many. Give `out` the room the model leaves for a prompt (at most `context - 1`, so
/// that at least one token can be generated before the window slides). Errors:
/// [`Error::EmptyInput`] for an empty title, [`Error::UnknownChar`] naming a character that is
/// not in the vocabulary, [`Error::PromptTooLong`] if the prompt needs more than `out.len()`
/// tokens (`out` is then unchanged).
pub fn instruction_prompt_tokens(
    tok: &Tokenizer<'_>,
    title: &str,
    out: &mut [Token],
) -> Result<usize, Error> {
    let needed = instruction_prompt_len(title);
    if needed > out.len() {
        return Err(Error::PromptTooLong {
            needed,
            capacity: out.len(),
        });
    }
    let mut n = 0;
    for (slot, id) in out.iter_mut().zip(instruction_prompt_iter(tok, title)) {
        *slot = id?;
        n += 1;
    }
    Ok(n)
}
