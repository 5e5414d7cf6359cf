//! The Tang-poem corpus as the reference builds it (spec §1): which files of the
//! `chinese-poetry@2.0.1` package are read, the four filter rules, and the reference's
//! `data.json` serialisation (used to prove byte-identity with the reference's file).

use serde::Deserialize;

/// One poem as it appears in the package's `poet.tang.N.json` files and in the reference's
/// `data.json`. Other keys (`id`, `tags`) are ignored; `author` is kept only so that
/// [`reference_data_json`] can reproduce the reference's file (the pipeline never uses it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Poem {
    pub title: String,
    #[serde(default)]
    pub author: String,
    pub paragraphs: Vec<String>,
}

/// npm package version whose Tang files this recipe was verified against.
pub const PACKAGE_VERSION: &str = "2.0.1";

/// sha256 of `npm pack chinese-poetry@2.0.1` (the tarball as published).
pub const PACKAGE_TGZ_SHA256: &str =
    "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86";

/// Folder of the package holding the Tang files (the chinese-poetry repository's `全唐诗/`).
pub const TANG_DIR: [&str; 2] = ["dist", "quantangshi"];

/// The package ships `poet.tang.0.json` … `poet.tang.57000.json` (58 files, step 1000).
/// Any other set means a different package version, whose content the recipe was not
/// verified against.
pub const PACKAGE_FILE_NUMBERS: std::ops::RangeInclusive<u32> = 0..=57;

/// The reference reads `poet.tang.N.json` for N = 0, 1000, …, 56000 only: its preparation loop
/// stops one file short of the last, so **`poet.tang.57000.json` is excluded**. Including it
/// would give 47,699 poems and a vocabulary of 8,580 instead of 47,457 / 8,548.
pub const RECIPE_FILE_NUMBERS: std::ops::RangeInclusive<u32> = 0..=56;

/// File name of the n-th Tang file (`n` counts thousands: 3 → `poet.tang.3000.json`).
pub fn tang_file_name(n: u32) -> String {
    format!("poet.tang.{}.json", n * 1000)
}

/// Parse `poet.tang.N.json` back to N/1000; `None` for any other name (including N not a
/// multiple of 1000).
pub fn tang_file_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("poet.tang.")?.strip_suffix(".json")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    if !n.is_multiple_of(1000) || n / 1000 > u64::from(u32::MAX) {
        return None;
    }
    Some((n / 1000) as u32)
}

/// Why the reference drops a poem (spec §1 step 2). A poem is kept only if no rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterRule {
    /// Title or a paragraph contains `□` (U+25A1), the package's mark for an illegible character.
    MissingCharacter,
    /// Paragraphs differ in length (counted in code points, i.e. Python `len`).
    UnevenParagraphs,
    /// Fewer than two paragraphs.
    TooShort,
    /// Title or a paragraph contains `(` or `（` (U+FF08): editorial notes and variant readings.
    Parenthesis,
}

/// The first rule (in the order above) that drops `poem`, or `None` if the reference keeps it.
/// The order only matters for statistics: the reference keeps a poem iff no rule applies.
pub fn filter_reason(poem: &Poem) -> Option<FilterRule> {
    let texts = || std::iter::once(&poem.title).chain(poem.paragraphs.iter());
    if texts().any(|t| t.contains('□')) {
        return Some(FilterRule::MissingCharacter);
    }
    let mut lens = poem.paragraphs.iter().map(|p| p.chars().count());
    if let Some(first) = lens.next() {
        if lens.any(|l| l != first) {
            return Some(FilterRule::UnevenParagraphs);
        }
    }
    if poem.paragraphs.len() < 2 {
        return Some(FilterRule::TooShort);
    }
    if texts().any(|t| t.contains('(') || t.contains('（')) {
        return Some(FilterRule::Parenthesis);
    }
    None
}

/// `true` if the reference keeps `poem`.
pub fn keep(poem: &Poem) -> bool {
    filter_reason(poem).is_none()
}

/// The reference's `data.json`: the kept poems with keys `title`, `author`, `paragraphs` (in
/// that order), serialised like Python's `json.dumps(poems, ensure_ascii=False, indent=2)`
/// (UTF-8, LF, no trailing newline). For the real corpus its sha256 is
/// `9dbb1437ad9f0b70894f5f264712573113a8c338b212d1c37bd0f562663d6292`, the reference's file.
pub fn reference_data_json(poems: &[Poem]) -> String {
    if poems.is_empty() {
        return "[]".to_string();
    }
    let mut out = String::with_capacity(poems.len() * 320);
    out.push('[');
    for (i, p) in poems.iter().enumerate() {
        out.push_str(if i == 0 { "\n  {\n" } else { ",\n  {\n" });
        out.push_str("    \"title\": ");
        push_py_json_str(&mut out, &p.title);
        out.push_str(",\n    \"author\": ");
        push_py_json_str(&mut out, &p.author);
        out.push_str(",\n    \"paragraphs\": ");
        if p.paragraphs.is_empty() {
            out.push_str("[]");
        } else {
            out.push('[');
            for (j, para) in p.paragraphs.iter().enumerate() {
                out.push_str(if j == 0 { "\n      " } else { ",\n      " });
                push_py_json_str(&mut out, para);
            }
            out.push_str("\n    ]");
        }
        out.push_str("\n  }");
    }
    out.push_str("\n]");
    out
}

/// A JSON string the way Python's encoder writes it with `ensure_ascii=False`: only `"`, `\`
/// and control characters below U+0020 are escaped (the usual short escapes where they exist,
/// otherwise `\u00XX`); everything else, including U+007F and non-BMP characters, is raw UTF-8.
fn push_py_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poem(title: &str, paragraphs: &[&str]) -> Poem {
        Poem {
            title: title.into(),
            author: "佚名".into(),
            paragraphs: paragraphs.iter().map(|s| s.to_string()).collect(),
        }
    }

    const A: &str = "秦川雄帝宅，函谷壯皇居。";
    const B: &str = "綺殿千尋起，離宮百雉餘。";

    #[test]
    fn a_regular_poem_is_kept() {
        assert_eq!(filter_reason(&poem("帝京篇", &[A, B])), None);
    }

    #[test]
    fn rule_missing_character_in_title_or_paragraph() {
        let r = Some(FilterRule::MissingCharacter);
        assert_eq!(filter_reason(&poem("帝□篇", &[A, B])), r);
        assert_eq!(
            filter_reason(&poem("帝京篇", &[A, "綺殿千尋起，離□百雉餘。"])),
            r
        );
        // A look-alike (U+25A0 black square) is not the marker.
        assert_eq!(filter_reason(&poem("帝■篇", &[A, B])), None);
    }

    #[test]
    fn rule_uneven_paragraphs_counts_code_points() {
        assert_eq!(
            filter_reason(&poem("t", &[A, "綺殿千尋起。"])),
            Some(FilterRule::UnevenParagraphs)
        );
        // Same number of code points but different UTF-8 byte lengths (an astral character
        // is 4 bytes, a URO character 3): equal in Python's len, so kept.
        assert_eq!(filter_reason(&poem("t", &["𠀋殿，", "綺殿，"])), None);
    }

    #[test]
    fn rule_fewer_than_two_paragraphs() {
        assert_eq!(filter_reason(&poem("t", &[A])), Some(FilterRule::TooShort));
        assert_eq!(filter_reason(&poem("t", &[])), Some(FilterRule::TooShort));
    }

    #[test]
    fn rule_parentheses_ascii_and_fullwidth() {
        let r = Some(FilterRule::Parenthesis);
        assert_eq!(filter_reason(&poem("帝京篇(一)", &[A, B])), r);
        assert_eq!(filter_reason(&poem("帝京篇（一）", &[A, B])), r);
        assert_eq!(
            filter_reason(&poem("t", &[A, "綺殿千尋起（離宮百雉餘。"])),
            r
        );
        // Only the opening brackets are rules; a lone closing one is not.
        assert_eq!(filter_reason(&poem("帝京篇）", &[A, B])), None);
        // Other brackets are fine.
        assert_eq!(filter_reason(&poem("帝京篇《一》", &[A, B])), None);
    }

    #[test]
    fn file_names_roundtrip() {
        assert_eq!(tang_file_name(0), "poet.tang.0.json");
        assert_eq!(tang_file_name(57), "poet.tang.57000.json");
        assert_eq!(tang_file_number("poet.tang.56000.json"), Some(56));
        assert_eq!(tang_file_number("poet.tang.0.json"), Some(0));
        assert_eq!(tang_file_number("poet.tang.500.json"), None);
        assert_eq!(tang_file_number("poet.tang.01000.json"), None);
        assert_eq!(tang_file_number("poet.song.0.json"), None);
        assert_eq!(tang_file_number("poet.tang..json"), None);
    }

    #[test]
    fn data_json_matches_python_formatting() {
        // Expected text produced by:
        // python3 -c 'import json; print(json.dumps([{"title":"a\"b","author":"x\\y",
        //   "paragraphs":["春\n\t\u0001","𠀋"]},{"title":"","author":"","paragraphs":[]}],
        //   ensure_ascii=False, indent=2), end="")'
        let poems = vec![
            Poem {
                title: "a\"b".into(),
                author: "x\\y".into(),
                paragraphs: vec!["春\n\t\u{1}".into(), "𠀋".into()],
            },
            Poem {
                title: String::new(),
                author: String::new(),
                paragraphs: vec![],
            },
        ];
        let expected = "[\n  {\n    \"title\": \"a\\\"b\",\n    \"author\": \"x\\\\y\",\n    \"paragraphs\": [\n      \"春\\n\\t\\u0001\",\n      \"𠀋\"\n    ]\n  },\n  {\n    \"title\": \"\",\n    \"author\": \"\",\n    \"paragraphs\": []\n  }\n]";
        assert_eq!(reference_data_json(&poems), expected);
        assert_eq!(reference_data_json(&[]), "[]");
    }
}
