//! PyTorch interop through safetensors: TutorialLLM's `state_dict` (spec §3) ↔ the trainer's
//! canonical parameters (docs/ARCHITECTURE.md).
//!
//! [`state_dict_layout`] is the one mapping table, used in both directions. Each TutorialLLM
//! entry maps to a range of the flat parameter buffer: most are a whole canonical tensor under
//! another name; the per-head `project_to_{query,key,value}.weight` (`[hs, C]`, no bias) are
//! rows `hs·h .. hs·(h+1)` of our `attn.w{q,k,v}` (`[C, C]`), which is one contiguous run of
//! the row-major buffer. The causal-mask buffers `heads.{h}.tril` (`[T, T]` lower-triangular
//! ones, persistent in TutorialLLM, so `load_state_dict` expects them) hold no parameters:
//! [`write_state_dict`] writes them, [`read_state_dict`] checks their shape if present and
//! skips them (a file saved without them imports too).
//!
//! # Reading
//!
//! The model's shape is read off the tensors (vocabulary and width from the token embedding,
//! context from the position embedding, layers and heads from the largest indices in the names,
//! FFN width from the first FFN weight; each with fallbacks to other tensors), then every name
//! and shape of the file is checked against the layout of that shape. The checks, in order, each
//! a typed [`ImportError`]: the file parses as safetensors; no tensor is missing and none is
//! unexpected (both lists named); every shape and dtype is right (F32, F16 and BF16 are read,
//! converted exactly to f32); the vocabulary size is the dataset's (and, for a file this crate
//! wrote, its recorded vocabulary is the dataset's); every value is finite.
//!
//! # Writing
//!
//! f32 little-endian tensors with exactly TutorialLLM's names and shapes, so that
//! `model.load_state_dict(safetensors.torch.load_file(path))` works on the reference module, and
//! a `__metadata__` with the config, the vocabulary and the provenance (steps, eval loss, dataset
//! hash, recipe, producer) under `tinypoet.*` keys.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::io::export::ManifestInfo;
use crate::io::fsx::hex;
use crate::nn::params::{Config, ConfigRecord, ModelShape, Params};

/// Metadata key: the model config as JSON (a [`ConfigRecord`]).
pub const META_CONFIG: &str = "tinypoet.config";
/// Metadata key: the vocabulary, its characters in id order concatenated into one string.
pub const META_VOCAB: &str = "tinypoet.vocab";
/// Metadata key: optimizer steps of the exported checkpoint.
pub const META_STEPS: &str = "tinypoet.steps";
/// Metadata key: deterministic eval loss of the exported checkpoint (absent if not measured).
pub const META_EVAL_LOSS: &str = "tinypoet.eval_loss";
/// Metadata key: hex SHA-256 content hash of the prepared dataset.
pub const META_DATASET: &str = "tinypoet.dataset_sha256";
/// Metadata key: the training recipe line.
pub const META_RECIPE: &str = "tinypoet.recipe";
/// Metadata key: the program that wrote the file.
pub const META_PRODUCER: &str = "tinypoet.producer";

/// Where one state_dict entry's values live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This range of the flat parameter buffer (row-major, same element order as the entry).
    Params(Range<usize>),
    /// A causal-mask buffer `[T, T]` of lower-triangular ones: no parameters.
    Tril,
}

/// One entry of TutorialLLM's `state_dict`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDictEntry {
    /// The PyTorch name, e.g. `transformer_blocks.0.multi_head_attention.heads.1.project_to_key.weight`.
    pub name: String,
    /// The PyTorch shape (Linear weights `[out, in]`).
    pub shape: Vec<usize>,
    pub target: Target,
}

/// TutorialLLM's `state_dict` for `cfg`, in its order (spec §3): embeddings; per block, per head
/// `tril`, key, query, value; the attention projection; the FFN; the two LayerNorms; then the
/// final LayerNorm and the LM head.
pub fn state_dict_layout(cfg: &Config) -> Vec<StateDictEntry> {
    let layout = crate::nn::params::ParamLayout::new(cfg);
    let whole = |canonical: &str| -> Range<usize> {
        layout
            .get(canonical)
            .unwrap_or_else(|| panic!("canonical tensor {canonical} missing from the layout"))
            .range()
    };
    let (c, hs, t) = (cfg.dim, cfg.head_dim(), cfg.context);
    let mut out = Vec::with_capacity(cfg.n_layers * (4 * cfg.n_heads + 10) + 6);
    let mut push = |name: String, shape: Vec<usize>, target: Target| {
        out.push(StateDictEntry {
            name,
            shape,
            target,
        })
    };
    push(
        "token_embedding_table.weight".into(),
        vec![cfg.vocab_size, c],
        Target::Params(whole("tok_emb")),
    );
    push(
        "position_embedding_table.weight".into(),
        vec![t, c],
        Target::Params(whole("pos_emb")),
    );
    for l in 0..cfg.n_layers {
        let ours = |s: &str| whole(&format!("blocks.{l}.{s}"));
        let theirs = |s: &str| format!("transformer_blocks.{l}.{s}");
        for h in 0..cfg.n_heads {
            let head = |s: &str| theirs(&format!("multi_head_attention.heads.{h}.{s}"));
            // Head h's rows of a [C, C] matrix: hs rows of C, contiguous.
            let rows = |canonical: &str| {
                let r = ours(canonical);
                r.start + h * hs * c..r.start + (h + 1) * hs * c
            };
            push(head("tril"), vec![t, t], Target::Tril);
            push(
                head("project_to_key.weight"),
                vec![hs, c],
                Target::Params(rows("attn.wk")),
            );
            push(
                head("project_to_query.weight"),
                vec![hs, c],
                Target::Params(rows("attn.wq")),
            );
            push(
                head("project_to_value.weight"),
                vec![hs, c],
                Target::Params(rows("attn.wv")),
            );
        }
        let f = cfg.ffn_dim;
        let pairs: [(&str, &str, Vec<usize>); 10] = [
            (
                "multi_head_attention.project.weight",
                "attn.proj.weight",
                vec![c, c],
            ),
            (
                "multi_head_attention.project.bias",
                "attn.proj.bias",
                vec![c],
            ),
            (
                "feed_forward.feed_forward.0.weight",
                "ffn.fc1.weight",
                vec![f, c],
            ),
            ("feed_forward.feed_forward.0.bias", "ffn.fc1.bias", vec![f]),
            (
                "feed_forward.feed_forward.2.weight",
                "ffn.fc2.weight",
                vec![c, f],
            ),
            ("feed_forward.feed_forward.2.bias", "ffn.fc2.bias", vec![c]),
            ("layer_norm1.weight", "ln1.weight", vec![c]),
            ("layer_norm1.bias", "ln1.bias", vec![c]),
            ("layer_norm2.weight", "ln2.weight", vec![c]),
            ("layer_norm2.bias", "ln2.bias", vec![c]),
        ];
        for (t_name, o_name, shape) in pairs {
            push(theirs(t_name), shape, Target::Params(ours(o_name)));
        }
    }
    push(
        "layer_norm_final.weight".into(),
        vec![c],
        Target::Params(whole("ln_f.weight")),
    );
    push(
        "layer_norm_final.bias".into(),
        vec![c],
        Target::Params(whole("ln_f.bias")),
    );
    push(
        "project.weight".into(),
        vec![cfg.vocab_size, c],
        Target::Params(whole("head.weight")),
    );
    push(
        "project.bias".into(),
        vec![cfg.vocab_size],
        Target::Params(whole("head.bias")),
    );
    out
}

/// Why a safetensors file could not be imported. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read (the caller names it).
    // The cause is part of the one-line message (not a `#[source]`), so that printing the
    // error chain does not repeat it.
    #[error("cannot read the file: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The bytes are not a valid safetensors file (truncated, bad header, bad offsets).
    #[error("not a readable safetensors file: {0}")]
    Corrupt(String),
    /// Names that TutorialLLM's state_dict has and the file lacks, and names it should not have.
    #[error("{}", names_message(.missing, .unexpected))]
    Names {
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
    #[error("tensor {name} has shape {}, expected {}", fmt_shape(.got), fmt_shape(.expected))]
    Shape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("tensor {name} has dtype {dtype}; only F32, F16 and BF16 are read (convert with .float() before saving)")]
    Dtype { name: String, dtype: String },
    #[error("tensor {name} holds a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        name: String,
        index: usize,
        value: f32,
    },
    /// The shape read off the tensors is not a model this crate supports, or disagrees with the
    /// file's own `tinypoet.config` metadata.
    #[error("unsupported model: {0}")]
    Config(String),
    #[error("the model's vocabulary has {model} entries but the dataset's has {dataset}: import with the prepared dataset the model was trained on")]
    VocabSize { model: usize, dataset: usize },
    #[error("the file's recorded vocabulary (tinypoet.vocab) differs from the dataset's, though both have {0} entries: token ids would mean other characters")]
    VocabDiffers(usize),
}

/// At most this many names are listed in an error; the rest are counted.
const LISTED: usize = 6;

fn list_names(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        let _ = write!(s, " and {} more", names.len() - LISTED);
    }
    s
}

fn names_message(missing: &[String], unexpected: &[String]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "{} missing tensor{}: {}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            list_names(missing)
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "{} unexpected tensor{} (not in a TutorialLLM state_dict): {}",
            unexpected.len(),
            if unexpected.len() == 1 { "" } else { "s" },
            list_names(unexpected)
        ));
    }
    parts.join("; ")
}

fn fmt_shape(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// A state_dict read into the trainer's parameters.
#[derive(Clone, Debug)]
pub struct Imported {
    pub params: Params,
    /// The file's `__metadata__` (empty if it has none).
    pub metadata: HashMap<String, String>,
    /// The distinct dtypes of the parameter tensors, e.g. `["F32"]`.
    pub dtypes: Vec<String>,
    /// `tril` buffers present in the file (checked for shape, skipped).
    pub tril_skipped: usize,
    /// SHA-256 of the file's bytes.
    pub sha256: [u8; 32],
}

/// The model shape as read off the tensors (see the module docs), before any name check.
/// Where each dimension can be read: `(tensor name, rank, axis)` candidates.
type Candidates = Vec<(String, usize, usize)>;

/// Read the model config off the tensor names and shapes (see [`vote`] for how each dimension
/// is chosen).
fn infer_config(st: &SafeTensors) -> Result<Config, ImportError> {
    let (n_layers, named_heads) = count_layers_and_heads(st);
    let [vocab_c, width_c, context_c, ffn_c, head_c] = dimension_sources(n_layers, named_heads);
    let (vocab, width, context, ffn) = (
        vote(st, &vocab_c),
        vote(st, &width_c),
        vote(st, &context_c),
        vote(st, &ffn_c),
    );
    // The head count from the head size when it divides the width (so that an absent last
    // head is reported as missing tensors), else from the names.
    let n_heads = match (width, vote(st, &head_c)) {
        (Some(c), Some(hs)) if hs > 0 && c % hs == 0 => c / hs,
        _ => named_heads,
    };

    let (Some(vocab_size), Some(dim), Some(context), Some(ffn_dim)) = (vocab, width, context, ffn)
    else {
        // Too little to even size the model: name the primary source of each unknown dimension,
        // and every name that fits no TutorialLLM pattern.
        let mut missing = Vec::new();
        if vocab.is_none() || width.is_none() {
            missing.push("token_embedding_table.weight".to_string());
        }
        if context.is_none() {
            missing.push("position_embedding_table.weight".to_string());
        }
        if ffn.is_none() {
            missing.push("transformer_blocks.0.feed_forward.feed_forward.0.weight".to_string());
        }
        return Err(ImportError::Names {
            missing,
            unexpected: unknown_patterns(st),
        });
    };
    let cfg = ModelShape {
        dim,
        n_heads,
        n_layers,
        context,
        ffn_dim,
    }
    .config(vocab_size);
    cfg.validate().map_err(|e| {
        ImportError::Config(format!(
            "{e} (read off the tensors: vocabulary {vocab_size}, dim {dim}, {n_heads} heads, \
             {n_layers} layers, context {context}, ffn {ffn_dim})"
        ))
    })?;
    Ok(cfg)
}

/// Layers and heads: one more than the largest index in the names (bounded, so that a nonsense
/// index is reported as an unexpected name rather than as a huge model); at least 1 each.
fn count_layers_and_heads(st: &SafeTensors) -> (usize, usize) {
    let mut n_layers = 0usize;
    let mut n_heads = 0usize;
    for name in st.names() {
        let Some(rest) = name.strip_prefix("transformer_blocks.") else {
            continue;
        };
        let Some((l, rest)) = split_index(rest, tinypoet_core::config::MAX_LAYERS) else {
            continue;
        };
        n_layers = n_layers.max(l + 1);
        if let Some(rest) = rest.strip_prefix("multi_head_attention.heads.") {
            if let Some((h, _)) = split_index(rest, tinypoet_core::config::MAX_WIDTH) {
                n_heads = n_heads.max(h + 1);
            }
        }
    }
    (n_layers.max(1), n_heads.max(1))
}

/// The tensors that carry each dimension, for `n_layers` blocks of `n_heads` named heads:
/// `[vocabulary, width, context, ffn width, head size]`.
fn dimension_sources(n_layers: usize, named_heads: usize) -> [Candidates; 5] {
    let c = |n: &str, r: usize, a: usize| (n.to_string(), r, a);
    let block = |l: usize, s: &str| format!("transformer_blocks.{l}.{s}");
    let vocab_c = vec![
        c("token_embedding_table.weight", 2, 0),
        c("project.weight", 2, 0),
        c("project.bias", 1, 0),
    ];
    let mut width_c = vec![
        c("token_embedding_table.weight", 2, 1),
        c("position_embedding_table.weight", 2, 1),
        c("layer_norm_final.weight", 1, 0),
        c("layer_norm_final.bias", 1, 0),
        c("project.weight", 2, 1),
    ];
    let mut context_c = vec![c("position_embedding_table.weight", 2, 0)];
    let mut ffn_c = Vec::new();
    let mut head_c = Vec::new();
    for l in 0..n_layers {
        for s in ["layer_norm1", "layer_norm2"] {
            width_c.push(c(&block(l, &format!("{s}.weight")), 1, 0));
            width_c.push(c(&block(l, &format!("{s}.bias")), 1, 0));
        }
        width_c.push(c(&block(l, "multi_head_attention.project.weight"), 2, 0));
        width_c.push(c(&block(l, "multi_head_attention.project.weight"), 2, 1));
        width_c.push(c(&block(l, "multi_head_attention.project.bias"), 1, 0));
        let ff = |s: &str| block(l, &format!("feed_forward.feed_forward.{s}"));
        width_c.push(c(&ff("0.weight"), 2, 1));
        width_c.push(c(&ff("2.weight"), 2, 0));
        width_c.push(c(&ff("2.bias"), 1, 0));
        ffn_c.push(c(&ff("0.weight"), 2, 0));
        ffn_c.push(c(&ff("0.bias"), 1, 0));
        ffn_c.push(c(&ff("2.weight"), 2, 1));
        for h in 0..named_heads {
            let head = |s: &str| block(l, &format!("multi_head_attention.heads.{h}.{s}"));
            context_c.push(c(&head("tril"), 2, 0));
            context_c.push(c(&head("tril"), 2, 1));
            for w in ["key", "query", "value"] {
                let name = head(&format!("project_to_{w}.weight"));
                width_c.push(c(&name, 2, 1));
                head_c.push(c(&name, 2, 0));
            }
        }
    }
    [vocab_c, width_c, context_c, ffn_c, head_c]
}

/// A dimension read off several tensors: the most common value among the candidates present
/// with the expected rank (ties: the earliest candidate), so that one mis-shaped tensor is
/// reported as such instead of shifting the whole expected layout.
fn vote(st: &SafeTensors, cands: &[(String, usize, usize)]) -> Option<usize> {
    // A dimension `axis` of tensor `name`, if present with rank `rank`.
    let dim = |name: &str, rank: usize, axis: usize| -> Option<usize> {
        let t = st.tensor(name).ok()?;
        (t.shape().len() == rank).then(|| t.shape()[axis])
    };
    let mut counts: Vec<(usize, usize)> = Vec::new();
    for (n, r, a) in cands {
        if let Some(v) = dim(n, *r, *a) {
            match counts.iter_mut().find(|(x, _)| *x == v) {
                Some((_, c)) => *c += 1,
                None => counts.push((v, 1)),
            }
        }
    }
    let best = counts.iter().map(|&(_, c)| c).max()?;
    counts.iter().find(|&&(_, c)| c == best).map(|&(v, _)| v)
}

/// `"12.rest"` → `(12, "rest")` when the index is a plain decimal below `limit`.
fn split_index(s: &str, limit: usize) -> Option<(usize, &str)> {
    let (digits, rest) = s.split_once('.')?;
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    let i: usize = digits.parse().ok()?;
    (i < limit).then_some((i, rest))
}

/// A name with every run of digits replaced by `#`.
fn pattern(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_digits = false;
    for ch in name.chars() {
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(ch);
            in_digits = false;
        }
    }
    out
}

/// Names of the file whose pattern matches no TutorialLLM name, sorted.
fn unknown_patterns(st: &SafeTensors) -> Vec<String> {
    let tiny = ModelShape {
        dim: 1,
        n_heads: 1,
        n_layers: 1,
        context: 1,
        ffn_dim: 1,
    }
    .config(1);
    let known: BTreeSet<String> = state_dict_layout(&tiny)
        .iter()
        .map(|e| pattern(&e.name))
        .collect();
    let mut out: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| !known.contains(&pattern(n)))
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

/// Decode `data` (little-endian `dtype`) into `out`, exactly.
fn decode(dtype: Dtype, data: &[u8], out: &mut [f32]) {
    match dtype {
        Dtype::F32 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        Dtype::BF16 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        _ => unreachable!("dtype checked by the caller"),
    }
}

/// Read a TutorialLLM state_dict saved with safetensors into the trainer's parameters, for a
/// model whose vocabulary is `vocab` (the dataset's, characters in id order). See the module
/// docs for the checks.
pub fn read_state_dict(bytes: &[u8], vocab: &[char]) -> Result<Imported, ImportError> {
    // The header is parsed twice (once for `__metadata__`, which `SafeTensors` does not expose,
    // once for the views): a few kilobytes of JSON.
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| ImportError::Corrupt(e.to_string()))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| ImportError::Corrupt(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();

    let cfg = infer_config(&st)?;
    let layout = state_dict_layout(&cfg);

    // Names first: everything missing and everything unexpected, in one message.
    let expected: BTreeSet<&str> = layout.iter().map(|e| e.name.as_str()).collect();
    let present: BTreeSet<&str> = st.names().into_iter().collect();
    let missing: Vec<String> = layout
        .iter()
        .filter(|e| e.target != Target::Tril && !present.contains(e.name.as_str()))
        .map(|e| e.name.clone())
        .collect();
    let mut unexpected: Vec<String> = present
        .iter()
        .filter(|n| !expected.contains(*n))
        .map(|n| n.to_string())
        .collect();
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(ImportError::Names {
            missing,
            unexpected,
        });
    }

    // Shapes and dtypes, in state_dict order.
    let mut dtypes = BTreeSet::new();
    let mut tril_skipped = 0;
    for e in &layout {
        let Ok(t) = st.tensor(&e.name) else {
            continue; // an absent tril (names were checked above)
        };
        if t.shape() != e.shape.as_slice() {
            return Err(ImportError::Shape {
                name: e.name.clone(),
                expected: e.shape.clone(),
                got: t.shape().to_vec(),
            });
        }
        match e.target {
            Target::Tril => tril_skipped += 1,
            Target::Params(_) => {
                if !matches!(t.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                    return Err(ImportError::Dtype {
                        name: e.name.clone(),
                        dtype: t.dtype().to_string(),
                    });
                }
                dtypes.insert(t.dtype().to_string());
            }
        }
    }

    // The vocabulary: its size must be the dataset's; a file we wrote also records the
    // characters, which must be the dataset's too.
    if cfg.vocab_size != vocab.len() {
        return Err(ImportError::VocabSize {
            model: cfg.vocab_size,
            dataset: vocab.len(),
        });
    }
    if let Some(v) = metadata.get(META_VOCAB) {
        if !v.chars().eq(vocab.iter().copied()) {
            return Err(ImportError::VocabDiffers(vocab.len()));
        }
    }
    if let Some(c) = metadata.get(META_CONFIG) {
        let recorded: ConfigRecord = serde_json::from_str(c).map_err(|e| {
            ImportError::Config(format!("its {META_CONFIG} metadata does not parse: {e}"))
        })?;
        if recorded != ConfigRecord::from(&cfg) {
            return Err(ImportError::Config(format!(
                "its {META_CONFIG} metadata ({c}) differs from the shape of its tensors"
            )));
        }
    }

    // Values.
    let mut params = Params::zeros(&cfg);
    for e in &layout {
        let Target::Params(range) = &e.target else {
            continue;
        };
        let t = st
            .tensor(&e.name)
            .map_err(|err| ImportError::Corrupt(err.to_string()))?;
        let out = &mut params.data[range.clone()];
        decode(t.dtype(), t.data(), out);
        if let Some(index) = out.iter().position(|x| !x.is_finite()) {
            return Err(ImportError::NonFinite {
                name: e.name.clone(),
                index,
                value: out[index],
            });
        }
    }
    Ok(Imported {
        params,
        metadata,
        dtypes: dtypes.into_iter().collect(),
        tril_skipped,
        sha256: Sha256::digest(bytes).into(),
    })
}

/// [`read_state_dict`] of a file.
pub fn read_state_dict_file(path: &Path, vocab: &[char]) -> Result<Imported, ImportError> {
    let bytes =
        crate::io::fsx::read_input(path, crate::io::fsx::limits::SAFETENSORS).map_err(|error| {
            ImportError::Io {
                path: path.to_path_buf(),
                error,
            }
        })?;
    read_state_dict(&bytes, vocab)
}

/// The `__metadata__` of an exported model: config, vocabulary and provenance.
pub fn export_metadata(
    config: &ConfigRecord,
    vocab: &[char],
    info: &ManifestInfo,
) -> HashMap<String, String> {
    let mut m = HashMap::new();
    // The key other PyTorch tools look for to know the tensors are PyTorch's.
    m.insert("format".into(), "pt".into());
    m.insert(
        META_PRODUCER.into(),
        format!("tinypoet {}", env!("CARGO_PKG_VERSION")),
    );
    m.insert(
        META_CONFIG.into(),
        serde_json::to_string(config).expect("a ConfigRecord serializes"),
    );
    m.insert(META_VOCAB.into(), vocab.iter().collect());
    m.insert(META_STEPS.into(), info.steps.to_string());
    if info.eval_loss.is_finite() {
        m.insert(META_EVAL_LOSS.into(), format!("{}", info.eval_loss));
    }
    if info.corpus_sha256 != [0; 32] {
        m.insert(META_DATASET.into(), hex(&info.corpus_sha256));
    }
    m.insert(META_RECIPE.into(), info.recipe.clone());
    m
}

/// Encode parameters as TutorialLLM's state_dict in safetensors: f32 tensors (exact), the
/// `tril` buffers included, with `metadata` as the `__metadata__`.
pub fn write_state_dict(
    params: &Params,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let cfg = params.config();
    let t = cfg.context;
    let layout = state_dict_layout(cfg);
    let mut tril = Vec::with_capacity(4 * t * t);
    for i in 0..t {
        for j in 0..t {
            tril.extend_from_slice(&(if j <= i { 1f32 } else { 0.0 }).to_le_bytes());
        }
    }
    let bytes: Vec<Vec<u8>> = layout
        .iter()
        .map(|e| match &e.target {
            Target::Params(r) => params.data[r.clone()]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            Target::Tril => Vec::new(),
        })
        .collect();
    let mut views = Vec::with_capacity(layout.len());
    for (e, b) in layout.iter().zip(&bytes) {
        let data = match e.target {
            Target::Params(_) => b.as_slice(),
            Target::Tril => tril.as_slice(),
        };
        views.push((
            e.name.as_str(),
            safetensors::tensor::TensorView::new(Dtype::F32, e.shape.clone(), data)?,
        ));
    }
    safetensors::serialize(views, Some(metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_layout_has_110_entries_and_1318372_parameters() {
        let cfg = Config::TANG;
        let l = state_dict_layout(&cfg);
        assert_eq!(l.len(), 110);
        assert_eq!(l.iter().filter(|e| e.target == Target::Tril).count(), 16);
        let n: usize = l
            .iter()
            .filter_map(|e| match &e.target {
                Target::Params(r) => Some(r.len()),
                Target::Tril => None,
            })
            .sum();
        assert_eq!(n, 1_318_372);
        // Every parameter is covered exactly once.
        let mut covered = vec![0u8; n];
        for e in &l {
            if let Target::Params(r) = &e.target {
                assert_eq!(r.len(), e.shape.iter().product::<usize>(), "{}", e.name);
                for i in r.clone() {
                    covered[i] += 1;
                }
            }
        }
        assert!(covered.iter().all(|&c| c == 1));
        // The order of spec §3.
        let names: Vec<&str> = l.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            &names[..6],
            &[
                "token_embedding_table.weight",
                "position_embedding_table.weight",
                "transformer_blocks.0.multi_head_attention.heads.0.tril",
                "transformer_blocks.0.multi_head_attention.heads.0.project_to_key.weight",
                "transformer_blocks.0.multi_head_attention.heads.0.project_to_query.weight",
                "transformer_blocks.0.multi_head_attention.heads.0.project_to_value.weight",
            ]
        );
        assert_eq!(names[109], "project.bias");
    }

    #[test]
    fn head_rows_map_into_wq() {
        let cfg = Config::TANG;
        let p = crate::nn::params::ParamLayout::new(&cfg);
        let wq = p.get("blocks.2.attn.wq").unwrap().range();
        let l = state_dict_layout(&cfg);
        let e = l
            .iter()
            .find(|e| {
                e.name
                    == "transformer_blocks.2.multi_head_attention.heads.3.project_to_query.weight"
            })
            .unwrap();
        assert_eq!(e.target, Target::Params(wq.start + 48 * 64..wq.end));
    }

    #[test]
    fn patterns_and_indices() {
        assert_eq!(
            pattern("transformer_blocks.12.multi_head_attention.heads.3.tril"),
            "transformer_blocks.#.multi_head_attention.heads.#.tril"
        );
        assert_eq!(split_index("3.x", 16), Some((3, "x")));
        assert_eq!(split_index("16.x", 16), None);
        assert_eq!(split_index("03.x", 16), None);
        assert_eq!(split_index("a.x", 16), None);
    }
}
