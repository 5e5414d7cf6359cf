//! Corpus stage: from the `chinese-poetry` package (or a JSON poem list, or plain text) to the
//! prepared dataset file that training loads.
//!
//! * [`source`] reads the input (`.tgz` directly, an extracted folder, JSON, text);
//! * [`tang`] is the reference's file set and filters (spec §1);
//! * [`text`] the shuffle, splits, text formats and vocabulary (spec §2), on top of
//!   [`pyrandom`], a port of CPython's `random`;
//! * [`dataset`] the `.tpd` file: [`Dataset::load`] is what the trainer calls.
//!
//! ```no_run
//! use tinypoet_trainer::data::corpus::Dataset;
//! let ds = Dataset::load("data/tang.tpd")?;
//! let train: &[u16] = ds.pretrain_train();
//! let ids = ds.encode("春夜喜雨")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod dataset;
pub mod pyrandom;
pub mod source;
pub mod tang;
pub mod text;

use std::path::Path;

pub use dataset::{Dataset, DatasetError, FormatError, Header, Items, ItemsView, PairsView};
pub use source::{read_source, Corpus, CorpusError, InputFormat, Source, SourceKind};
pub use tang::{FilterRule, Poem};
pub use text::{UnknownChar, UnknownId, Vocab};

use text::py_int_fraction;

/// Recipe name of the reference's Tang pipeline (spec §1–2), for the package and JSON inputs.
pub const TANG_RECIPE: &str = "tutorialllm-tang";
/// Recipe name for plain text input.
pub const TEXT_RECIPE: &str = "plain-text";
/// Bump when the prepared data would change for the same input.
pub const RECIPE_VERSION: u32 = 1;

/// Fraction of each split used for training (the rest is eval), as in the reference.
pub const TRAIN_FRACTION: f64 = 0.9;

/// What `prepare` did, for the report the CLI prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrepareStats {
    /// Package files read (57 for the Tang recipe; 0 otherwise).
    pub files_read: usize,
    /// Poems read before filtering.
    pub poems_read: usize,
    /// Poems dropped, per rule (first matching rule): missing character, uneven paragraphs,
    /// too short, parenthesis.
    pub dropped: [usize; 4],
    /// Poems used.
    pub poems: usize,
    pub pretrain_poems: usize,
    pub finetune_poems: usize,
    pub alignment_poems: usize,
    /// The reference's `data.json` content for the kept poems (only for the package input), so
    /// it can be compared with the reference's file.
    pub data_json_sha256: Option<[u8; 32]>,
}

/// Build the dataset from a source read by [`read_source`].
pub fn prepare(src: &Source) -> Result<(Dataset, PrepareStats), CorpusError> {
    let loc = || source::Location {
        path: src.path.clone(),
        member: None,
    };
    let mut stats = PrepareStats::default();
    let source_name = src
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let poems: Vec<Poem> = match &src.corpus {
        Corpus::Text(text) => return prepare_text(src, text, source_name),
        Corpus::Package { poems, files_read } => {
            stats.files_read = *files_read;
            stats.poems_read = poems.len();
            let mut kept = Vec::with_capacity(poems.len());
            for p in poems {
                match tang::filter_reason(p) {
                    None => kept.push(p.clone()),
                    Some(rule) => stats.dropped[rule as usize] += 1,
                }
            }
            use sha2::Digest;
            stats.data_json_sha256 =
                Some(sha2::Sha256::digest(tang::reference_data_json(&kept).as_bytes()).into());
            kept
        }
        // A poem list is taken as the reference takes its data.json: already filtered.
        Corpus::Poems(poems) => {
            stats.poems_read = poems.len();
            poems.clone()
        }
    };
    if poems.is_empty() {
        return Err(CorpusError::Empty {
            at: loc(),
            what: "no poem passes the filters".into(),
        });
    }
    stats.poems = poems.len();

    let splits = text::split_poems(poems);
    stats.pretrain_poems = splits.pretrain.len();
    stats.finetune_poems = splits.finetune.len();
    stats.alignment_poems = splits.alignment.len();

    let pretrain_text = text::pretrain_text(&splits.pretrain);
    let finetune_texts: Vec<String> = splits.finetune.iter().map(text::instruction_text).collect();
    let pair_texts: Vec<(String, String)> = splits
        .pairs
        .iter()
        .map(|(p, n)| (text::instruction_text(p), text::instruction_text(n)))
        .collect();

    // The vocabulary is built from exactly the texts that are used (pretrain + finetune + both
    // sides of every pair) plus `\0`, like the reference's `all_text`. Alignment poems never
    // drawn into a pair do not contribute, which is why the vocabulary depends on `choice`.
    let all_texts = std::iter::once(pretrain_text.as_str())
        .chain(finetune_texts.iter().map(String::as_str))
        .chain(
            pair_texts
                .iter()
                .flat_map(|(p, n)| [p.as_str(), n.as_str()]),
        );
    let dataset_length: usize = 1 + all_texts.clone().map(|t| t.chars().count()).sum::<usize>();
    let vocab = text::Vocab::from_texts(all_texts)
        .map_err(|error| CorpusError::VocabTooLarge { at: loc(), error })?;

    // Every character of these texts is in the vocabulary by construction.
    let encode = |t: &str| vocab.encode(t).expect("vocabulary covers its own texts");
    let pretrain = encode(&pretrain_text);
    let mut finetune = Items::new();
    for t in &finetune_texts {
        finetune.push(&encode(t));
    }
    let (mut pos, mut neg) = (Items::new(), Items::new());
    for (p, n) in &pair_texts {
        pos.push(&encode(p));
        neg.push(&encode(n));
    }
    let dataset = Dataset::from_parts(dataset::DatasetParts {
        recipe: TANG_RECIPE.into(),
        recipe_version: RECIPE_VERSION,
        source_kind: src.kind.as_str().into(),
        source_name,
        source_sha256: src.sha256,
        poems: stats.poems as u64,
        dataset_length: dataset_length as u64,
        pretrain_train_tokens: py_int_fraction(TRAIN_FRACTION, pretrain.len()),
        pretrain,
        finetune_train_items: py_int_fraction(TRAIN_FRACTION, finetune.len()),
        finetune,
        alignment_train_pairs: py_int_fraction(TRAIN_FRACTION, pos.len()),
        align_pos: pos,
        align_neg: neg,
        vocab,
    });
    Ok((dataset, stats))
}

/// Plain text: the whole file is the pretraining text; vocabulary = its characters + `\0`;
/// no finetune or alignment data.
fn prepare_text(
    src: &Source,
    text: &str,
    source_name: String,
) -> Result<(Dataset, PrepareStats), CorpusError> {
    let vocab = text::Vocab::from_texts([text]).map_err(|error| CorpusError::VocabTooLarge {
        at: source::Location {
            path: src.path.clone(),
            member: None,
        },
        error,
    })?;
    let pretrain = vocab.encode(text).expect("vocabulary covers its own text");
    let dataset = Dataset::from_parts(dataset::DatasetParts {
        recipe: TEXT_RECIPE.into(),
        recipe_version: RECIPE_VERSION,
        source_kind: src.kind.as_str().into(),
        source_name,
        source_sha256: src.sha256,
        poems: 0,
        dataset_length: pretrain.len() as u64 + 1,
        pretrain_train_tokens: py_int_fraction(TRAIN_FRACTION, pretrain.len()),
        pretrain,
        finetune: Items::new(),
        finetune_train_items: 0,
        align_pos: Items::new(),
        align_neg: Items::new(),
        alignment_train_pairs: 0,
        vocab,
    });
    Ok((dataset, PrepareStats::default()))
}

/// Read `from` and build its dataset (the library side of `tinypoet prepare`).
pub fn prepare_path(
    from: &Path,
    format: InputFormat,
) -> Result<(Dataset, PrepareStats), CorpusError> {
    let src = read_source(from, format)?;
    prepare(&src)
}
