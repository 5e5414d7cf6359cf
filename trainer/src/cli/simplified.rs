//! Simplified Chinese input for the command line (not a subcommand: `generate` uses it).
//!
//! The corpus, and so the vocabulary, is traditional Chinese. A prompt typed in simplified
//! Chinese is converted one character at a time with the core's table
//! ([`tinypoet_core::simplified`], generated from OpenCC's `STCharacters.txt`): the same
//! conversion as the web page and the firmware console, so the same typed title writes the same
//! poem on every platform. A phrase does not change a character's reading (皇后 becomes 皇後,
//! 头发 becomes 頭發); stderr says what was converted, and `--no-convert` keeps the text as typed.

use tinypoet_core::simplified::to_traditional as table;

/// A prompt after conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// The text given to the model.
    pub text: String,
    /// `(typed, used)` for each distinct character that was replaced, in order of appearance.
    pub changed: Vec<(char, char)>,
}

impl Converted {
    /// `text` as it is (`--no-convert`).
    pub fn unchanged(text: &str) -> Converted {
        Converted {
            text: text.to_string(),
            changed: vec![],
        }
    }

    /// What the user typed for the character `c` of the converted text, when `c` came from a
    /// conversion.
    pub fn typed_as(&self, c: char) -> Option<char> {
        self.changed.iter().find(|&&(_, t)| t == c).map(|&(s, _)| s)
    }

    /// "静→靜 远→遠", or `None` when nothing was converted.
    pub fn report(&self) -> Option<String> {
        if self.changed.is_empty() {
            return None;
        }
        let pairs: Vec<String> = self
            .changed
            .iter()
            .map(|(s, t)| format!("{s}→{t}"))
            .collect();
        Some(pairs.join(" "))
    }
}

/// Convert `text` from simplified to traditional Chinese with the core's per-character table.
pub fn to_traditional(text: &str) -> Converted {
    let mut changed: Vec<(char, char)> = Vec::new();
    let text = text
        .chars()
        .map(|s| match table(s) {
            Some(t) => {
                if !changed.contains(&(s, t)) {
                    changed.push((s, t));
                }
                t
            }
            None => s,
        })
        .collect();
    Converted { text, changed }
}

/// Whether `c` is a CJK ideograph (the blocks the corpus draws from).
fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3134F)
}

/// The one-line error for a prompt character (after conversion) missing from the vocabulary;
/// `typed` is the simplified character it was converted from, if any.
pub fn unknown_char_message(c: char, typed: Option<char>) -> String {
    let from = match typed {
        Some(s) => format!(", the traditional form of the simplified '{s}'"),
        None => String::new(),
    };
    let head = format!(
        "the prompt character '{c}' (U+{:04X}{from}) is not in the model's vocabulary",
        c as u32
    );
    if is_cjk_ideograph(c) {
        return format!(
            "{head} (the corpus is traditional Chinese Tang poetry: modern and very rare \
             characters are not in it)"
        );
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplified_titles_become_traditional() {
        let c = to_traditional("静夜思");
        assert_eq!(c.text, "靜夜思");
        assert_eq!(c.report().as_deref(), Some("静→靜"));
        let c = to_traditional("黄河远上白云间");
        assert_eq!(c.text, "黃河遠上白雲間");
        // One character at a time, as on the page and the board: no phrase decides.
        assert_eq!(to_traditional("皇后").text, "皇後");
        assert_eq!(to_traditional("头发").text, "頭發");
    }

    #[test]
    fn traditional_text_is_left_alone() {
        let c = to_traditional("春夜喜雨，白日依山盡");
        assert_eq!(c.text, "春夜喜雨，白日依山盡");
        assert_eq!(c.report(), None);
    }

    /// The core's per-character table (CLI, web page, console) agrees with OpenCC character by
    /// character over every CJK ideograph (ferrous-opencc is a dev-dependency for this check): where OpenCC converts a single character to one in
    /// the vocabulary, the table has that conversion, and every table entry is OpenCC's.
    #[test]
    fn the_cores_table_agrees_with_opencc() {
        use ferrous_opencc::config::BuiltinConfig;
        use ferrous_opencc::OpenCC;
        use tinypoet_core::simplified::{to_traditional as table, TABLE};
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/tinypoet-tang-int8.tpb"
        );
        let bytes = std::fs::read(path).unwrap();
        let model = tinypoet_core::Model::load(&bytes).unwrap();
        let tok = model.tokenizer();
        let cc = OpenCC::from_config(BuiltinConfig::S2t).unwrap();
        let single = |c: char| -> Option<char> {
            let out = cc.convert(&c.to_string());
            let mut it = out.chars();
            match (it.next(), it.next()) {
                (Some(t), None) => Some(t),
                _ => None,
            }
        };
        let mut checked = 0;
        for cp in (0x3400..=0x4DBF)
            .chain(0x4E00..=0x9FFF)
            .chain(0x20000..=0x3134F)
        {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let Some(t) = single(c) else { continue };
            if t != c && tok.id(t).is_ok() {
                assert_eq!(table(c), Some(t), "{c}: OpenCC gives {t}");
                checked += 1;
            }
        }
        assert!(checked > 2000, "{checked}");
        // The rest of the table: OpenCC's first candidate is not in the vocabulary (卤 -> 滷,
        // where the table takes the next candidate, 鹵).
        let rest: Vec<_> = TABLE
            .iter()
            .filter(|&&(s, t)| single(s) != Some(t))
            .collect();
        assert!(rest.len() < 20, "{rest:?}");
        for &&(s, _) in &rest {
            let first = single(s).unwrap();
            assert!(tok.id(first).is_err() || first == s, "{s} -> {first}");
        }
    }

    #[test]
    fn unknown_characters_get_one_clear_line() {
        let m = unknown_char_message('x', None);
        assert!(m.contains("'x'") && !m.contains("traditional"), "{m}");
        let m = unknown_char_message('𠀀', None);
        assert!(m.contains("traditional Chinese"), "{m}");
        assert!(!m.contains('\n'));
        let c = to_traditional("这");
        let m = unknown_char_message('這', c.typed_as('這'));
        assert!(m.contains("'這'") && m.contains("simplified '这'"), "{m}");
    }
}
