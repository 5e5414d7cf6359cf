//! An independent checker of verse forms (issue 15, item 5): plain string rules, written
//! without the core's masks (`tinypoet_core::constrain`), so that a bug there cannot hide
//! itself. It reads the rhyme table file (`models/rhyme-pingshui.tsv` format) with its own
//! parser.
//!
//! A poem of `n` verse lines of `w` characters is `n / 2` couplet lines joined by `\n`; a
//! couplet line is `w` Han characters, `，` or `？`, `w` Han characters, `。` or `？`.

use std::collections::{HashMap, HashSet};

/// The shapes the checker knows: (name, verse lines, characters per line).
pub const FORMS: [(&str, usize, usize); 4] = [
    ("五絕", 4, 5),
    ("七絕", 4, 7),
    ("五律", 8, 5),
    ("七律", 8, 7),
];

/// A character is Han if it is a CJK ideograph: Extension A, the URO, the compatibility block
/// or the supplementary ideographic planes.
fn han(c: char) -> bool {
    let v = u32::from(c);
    (0x3400..0x4DC0).contains(&v)
        || (0x4E00..0xA000).contains(&v)
        || (0xF900..0xFB00).contains(&v)
        || (0x20000..0x40000).contains(&v)
}

/// Rhyme groups per character, read from a table file (`C <char> <g>,<g>...` lines).
pub struct Rhymes(HashMap<char, HashSet<u32>>);

impl Rhymes {
    /// Parse the `C` lines of a table file; other lines are ignored.
    pub fn parse(text: &str) -> Rhymes {
        let mut m = HashMap::new();
        for line in text.lines() {
            let mut f = line.split('\t');
            if f.next() != Some("C") {
                continue;
            }
            let (Some(ch), Some(gs)) = (f.next(), f.next()) else {
                continue;
            };
            let Some(c) = ch.chars().next() else { continue };
            let set: HashSet<u32> = gs.split(',').filter_map(|g| g.parse().ok()).collect();
            m.insert(c, set);
        }
        Rhymes(m)
    }

    /// Whether all `chars` share at least one group.
    pub fn share(&self, chars: &[char]) -> bool {
        let mut common: Option<HashSet<u32>> = None;
        for c in chars {
            let g = self.0.get(c).cloned().unwrap_or_default();
            common = Some(match common {
                None => g,
                Some(s) => s.intersection(&g).copied().collect(),
            });
        }
        common.is_some_and(|s| !s.is_empty())
    }
}

/// Why `poem` is not a valid poem of `lines` × `width` with the given acrostic and rhyme;
/// `Ok(())` if it is. `poem` is the text after the prompt, without end-of-text.
pub fn check(
    poem: &str,
    lines: usize,
    width: usize,
    acrostic: &str,
    rhyme: Option<&Rhymes>,
) -> Result<(), String> {
    let couplets: Vec<&str> = poem.split('\n').collect();
    if couplets.len() != lines / 2 {
        return Err(format!(
            "{} couplet lines, want {}",
            couplets.len(),
            lines / 2
        ));
    }
    let mut verse: Vec<Vec<char>> = Vec::new();
    for (k, l) in couplets.iter().enumerate() {
        let c: Vec<char> = l.chars().collect();
        if c.len() != 2 * width + 2 {
            return Err(format!(
                "couplet {} has {} characters, want {}",
                k + 1,
                c.len(),
                2 * width + 2
            ));
        }
        if c[width] != '，' && c[width] != '？' {
            return Err(format!(
                "couplet {}: {:?} after the first half",
                k + 1,
                c[width]
            ));
        }
        if c[2 * width + 1] != '。' && c[2 * width + 1] != '？' {
            return Err(format!(
                "couplet {}: ends with {:?}",
                k + 1,
                c[2 * width + 1]
            ));
        }
        let a = &c[..width];
        let b = &c[width + 1..2 * width + 1];
        if let Some(x) = a.iter().chain(b).find(|&&x| !han(x)) {
            return Err(format!("couplet {}: {x:?} is not a Han character", k + 1));
        }
        verse.push(a.to_vec());
        verse.push(b.to_vec());
    }
    for (i, a) in acrostic.chars().enumerate() {
        match verse.get(i) {
            Some(v) if v[0] == a => {}
            Some(v) => {
                return Err(format!(
                    "verse line {} opens with {}, want {a}",
                    i + 1,
                    v[0]
                ))
            }
            None => return Err(format!("acrostic longer than the {lines} lines")),
        }
    }
    if let Some(r) = rhyme {
        let ends: Vec<char> = verse
            .iter()
            .skip(1)
            .step_by(2)
            .map(|v| v[width - 1])
            .collect();
        if !r.share(&ends) {
            return Err(format!("even-line endings {ends:?} share no rhyme group"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        let r = Rhymes::parse("G\t0\ta\t平\nC\t流\t0\nC\t樓\t0\nC\t州\t0,1\n");
        let p = "白日依山盡，黃河入海流。\n欲窮千里目，更上一層樓。";
        assert_eq!(check(p, 4, 5, "", Some(&r)), Ok(()));
        assert_eq!(check(p, 4, 5, "白黃欲更", None), Ok(()));
        assert!(check(p, 4, 5, "白黃欲春", None).is_err());
        assert!(check(p, 4, 7, "", None).is_err());
        assert!(check(p, 8, 5, "", None).is_err());
        assert!(check(
            "白日依山盡，黃河入海流。\n欲窮千里目，更上一層雲。",
            4,
            5,
            "",
            Some(&r)
        )
        .is_err());
        assert!(check(
            "白日依山盡。黃河入海流。\n欲窮千里目，更上一層樓。",
            4,
            5,
            "",
            None
        )
        .is_err());
        assert!(check(
            "白日依山A，黃河入海流。\n欲窮千里目，更上一層樓。",
            4,
            5,
            "",
            None
        )
        .is_err());
        assert!(check(
            "白日依山盡，黃河入海流。\n欲窮千里目，更上一層樓。\n",
            4,
            5,
            "",
            None
        )
        .is_err());
    }
}
