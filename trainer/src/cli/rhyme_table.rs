//! `tinypoet rhyme-table`: add (or replace, or remove) the optional rhyme section of a blob,
//! from a rhyme table file such as `models/rhyme-pingshui.tsv`. The weights, the vocabulary,
//! the manifest and the tensor directory are kept byte for byte
//! ([`tinypoet_core::blob::with_rhyme_table`]).
//!
//! Table file (UTF-8, tab-separated, `#` comment lines, written by `scripts/pingshui_table.py`):
//! `G <index> <name> <平|仄>` for every group, indices `0..n` in order, then
//! `C <char> <g>[,<g>...]` for every character with its groups. The `#` lines before the first
//! `G` line become the section's `source` text.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use sha2::{Digest, Sha256};
use tinypoet_core::blob::{self, RhymeTable, MAX_RHYME_GROUPS, RHYME_SET_BYTES};
use tinypoet_core::Tokenizer;

/// Add a rhyme table to a model blob (for `generate --rhyme`), keeping the weights byte-identical.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  tinypoet rhyme-table models/tinypoet-tang.tpb --table models/rhyme-pingshui.tsv -o models/tinypoet-tang.tpb
  tinypoet rhyme-table runs/tang/model.tpb --remove -o plain.tpb")]
pub struct RhymeTableArgs {
    /// The blob to read.
    #[arg(value_name = "BLOB")]
    pub blob: PathBuf,
    /// Rhyme table file (G and C lines, see `scripts/pingshui_table.py`).
    #[arg(long, value_name = "TSV", required_unless_present = "remove")]
    pub table: Option<PathBuf>,
    /// Remove the rhyme section instead.
    #[arg(long, conflicts_with = "table")]
    pub remove: bool,
    /// Output blob (may be the input; written atomically).
    #[arg(short, long, value_name = "OUT")]
    pub out: PathBuf,
}

/// A rhyme table built for one vocabulary, owning the bytes a [`RhymeTable`] borrows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRhymeTable {
    /// `source` text.
    pub source: String,
    /// Group names joined by `\n`.
    pub group_names: String,
    /// Number of groups.
    pub n_groups: u8,
    /// Level-tone (平) groups as a u128 LE mask.
    pub level_groups: [u8; RHYME_SET_BYTES],
    /// Per token the u16 LE set index.
    pub token_sets: Vec<u8>,
    /// The distinct sets, 16 bytes each; set 0 empty.
    pub sets: Vec<u8>,
    /// Table characters that are not in the vocabulary (skipped).
    pub skipped: usize,
    /// Vocabulary tokens that got a non-empty set.
    pub covered: usize,
}

impl OwnedRhymeTable {
    /// The borrowed view the core reads and writes.
    pub fn view(&self) -> RhymeTable<'_> {
        RhymeTable {
            source: &self.source,
            n_groups: self.n_groups,
            group_names: &self.group_names,
            level_groups: self.level_groups,
            token_sets: &self.token_sets,
            sets: &self.sets,
        }
    }
}

/// Parse a table file for `tok`'s vocabulary. Characters outside the vocabulary are skipped
/// (counted); malformed lines, unknown or out-of-order group indices and a character listed
/// twice are errors naming the line.
pub fn parse_table(text: &str, tok: &Tokenizer) -> anyhow::Result<OwnedRhymeTable> {
    let mut source = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut level: u128 = 0;
    let mut of: BTreeMap<u16, u128> = BTreeMap::new();
    let mut skipped = 0;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("rhyme table line {}", n + 1);
        if let Some(c) = line.strip_prefix('#') {
            if names.is_empty() {
                source.push(c.trim().to_string());
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["G", index, name, tone] => {
                let i: usize = index.parse().with_context(at)?;
                if i != names.len() || i >= MAX_RHYME_GROUPS {
                    bail!(
                        "{}: group {i} out of order or beyond {MAX_RHYME_GROUPS}",
                        at()
                    );
                }
                if name.is_empty() || name.contains('\n') {
                    bail!("{}: empty group name", at());
                }
                match *tone {
                    "平" => level |= 1 << i,
                    "仄" => {}
                    t => bail!("{}: tone {t:?} is not 平 or 仄", at()),
                }
                names.push(name.to_string());
            }
            ["C", ch, groups] => {
                let mut it = ch.chars();
                let (Some(c), None) = (it.next(), it.next()) else {
                    bail!("{}: {ch:?} is not one character", at());
                };
                let mut set = 0u128;
                for g in groups.split(',') {
                    let g: usize = g.parse().with_context(at)?;
                    if g >= names.len() {
                        bail!("{}: group {g} is not defined above", at());
                    }
                    set |= 1 << g;
                }
                match tok.id(c) {
                    Ok(id) => {
                        if of.insert(id, set).is_some() {
                            bail!("{}: {c} listed twice", at());
                        }
                    }
                    Err(_) => skipped += 1,
                }
            }
            _ => bail!("{}: expected `G index name tone` or `C char groups`", at()),
        }
    }
    if names.is_empty() {
        bail!("the rhyme table has no groups (G lines)");
    }
    // Distinct sets in order of first use by token id; set 0 = empty.
    let mut sets: Vec<u128> = vec![0];
    let mut index: BTreeMap<u128, u16> = BTreeMap::from([(0, 0)]);
    let mut token_sets = Vec::with_capacity(2 * tok.len());
    for id in 0..tok.len() {
        let set = of.get(&(id as u16)).copied().unwrap_or(0);
        let next = sets.len();
        let ix = *index.entry(set).or_insert_with(|| {
            sets.push(set);
            next as u16
        });
        token_sets.extend_from_slice(&ix.to_le_bytes());
    }
    let t = OwnedRhymeTable {
        source: source.join(" "),
        group_names: names.join("\n"),
        n_groups: names.len() as u8,
        level_groups: level.to_le_bytes(),
        token_sets,
        sets: sets.iter().flat_map(|s| s.to_le_bytes()).collect(),
        skipped,
        covered: of.len(),
    };
    t.view()
        .validate(tok.len())
        .map_err(|e| anyhow!("rhyme table: {e}"))?;
    Ok(t)
}

/// `blob` with its rhyme section replaced by `table` (or removed).
pub fn blob_with_table(bytes: &[u8], table: Option<&RhymeTable>) -> anyhow::Result<Vec<u8>> {
    let parsed = blob::parse(bytes).map_err(|e| anyhow!("not a valid blob: {e}"))?;
    let mut out = vec![0u8; blob::with_rhyme_table_len(&parsed, table)?];
    let n = blob::with_rhyme_table(&parsed, table, &mut out)?;
    out.truncate(n);
    Ok(out)
}

pub fn run(args: RhymeTableArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.blob)
        .with_context(|| format!("cannot read {}", args.blob.display()))?;
    let model = tinypoet_core::Model::load(&bytes)
        .map_err(|e| anyhow!("{}: not a valid model blob: {e}", args.blob.display()))?;
    let tok = model.tokenizer();
    let owned = match &args.table {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(parse_table(&text, &tok).with_context(|| p.display().to_string())?)
        }
        None => None,
    };
    let out = blob_with_table(&bytes, owned.as_ref().map(|t| t.view()).as_ref())?;
    crate::io::fsx::write_atomic(&args.out, &out)
        .map_err(|e| anyhow!("writing {}: {e}", args.out.display()))?;
    match &owned {
        Some(t) => crate::errln!(
            "{}: rhyme table with {} groups, {} of {} tokens in {} distinct sets ({} table characters not in the vocabulary); {} bytes",
            args.out.display(),
            t.n_groups,
            t.covered,
            tok.len(),
            t.sets.len() / RHYME_SET_BYTES,
            t.skipped,
            out.len()
        ),
        None => crate::errln!("{}: no rhyme table; {} bytes", args.out.display(), out.len()),
    }
    crate::outln!("{:x}  {}", Sha256::digest(&out), args.out.display());
    Ok(())
}
