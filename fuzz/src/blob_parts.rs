//! Taking a blob apart and putting it back together, for crafting malformed blobs: the fuzz
//! seed generator (`seeds.rs`) and the core's tests (`core/tests/common`, which includes this
//! file by path) both use it. Needs `tinypoet_core`, `serde` and `postcard` (with `alloc`).
//!
//! [`split`] decodes a valid blob into [`Parts`] (every header field as a value, the tensor
//! directory as owned entries, the optional sections and the data region as bytes);
//! [`assemble`] re-encodes them the way the format specifies (header padded with zeros to the
//! next multiple of 64, `total_len` and CRC-32 recomputed), without validating anything, so a
//! changed field reaches the parser's structural checks and not the checksum.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use tinypoet_core::blob::{Dtype, Layout, Manifest, RhymeTable, TensorEntry};
use tinypoet_core::{Config, Shape};

/// Make a (mutated) blob self-consistent in the two places a checksum-like check lives: the
/// declared total length (bytes 16..24) and the trailing CRC-32. So the parser's structural
/// checks, not the checksum, must catch the damage.
pub fn reseal(b: &mut [u8]) {
    if b.len() >= 24 {
        let n = b.len() as u64;
        b[16..24].copy_from_slice(&n.to_le_bytes());
    }
    if b.len() >= 4 {
        let n = b.len();
        let c = tinypoet_core::crc32::crc32(&b[..n - 4]);
        b[n - 4..].copy_from_slice(&c.to_le_bytes());
    }
}

/// Mirror of the documented header head (crate docs, "Blob format v1").
#[derive(Serialize, Deserialize)]
pub struct Head<'a> {
    pub config: Config,
    #[serde(borrow)]
    pub vocab: &'a [u8],
    #[serde(borrow)]
    pub manifest: Manifest<'a>,
    pub n_tensors: u32,
}

/// Mirror of the documented optional header section (crate docs, "Optional sections"):
/// variant 0 is the rhyme table.
#[derive(Serialize)]
pub enum SectionOut<'a> {
    Rhyme(#[serde(borrow)] RhymeTable<'a>),
}

/// The postcard bytes of a rhyme section, to put in [`Parts::sections`].
pub fn rhyme_section(t: &RhymeTable) -> Vec<u8> {
    postcard::to_allocvec(&SectionOut::Rhyme(*t)).unwrap()
}

/// One tensor directory entry, owned.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub layout: Layout,
    pub shape: Shape,
    pub offset: u64,
    pub nbytes: u64,
}

/// A blob as editable values.
#[derive(Clone, Debug)]
pub struct Parts {
    pub config: Config,
    pub vocab: Vec<u8>,
    pub steps: u64,
    pub eval_loss: f32,
    pub eval_loss_blob: f32,
    pub sha: [u8; 32],
    pub recipe: String,
    pub n_tensors: u32,
    pub entries: Vec<Entry>,
    /// The header bytes after the directory: the optional sections, as encoded.
    pub sections: Vec<u8>,
    /// The data region (`data_offset..total_len - 4`).
    pub data: Vec<u8>,
    pub version: u32,
    pub magic: [u8; 8],
}

/// Decode a valid blob (panics on one that does not decode: this is for test inputs).
pub fn split(b: &[u8]) -> Parts {
    let hl = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let doff = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
    let (h, mut rest): (Head, &[u8]) = postcard::take_from_bytes(&b[32..32 + hl]).unwrap();
    let mut entries = vec![];
    for _ in 0..h.n_tensors {
        let (e, r): (TensorEntry, &[u8]) = postcard::take_from_bytes(rest).unwrap();
        rest = r;
        entries.push(Entry {
            name: e.name.to_string(),
            dtype: e.dtype,
            layout: e.layout,
            shape: e.shape,
            offset: e.offset,
            nbytes: e.nbytes,
        });
    }
    Parts {
        config: h.config,
        vocab: h.vocab.to_vec(),
        steps: h.manifest.steps,
        eval_loss: h.manifest.eval_loss,
        eval_loss_blob: h.manifest.eval_loss_blob,
        sha: h.manifest.corpus_sha256,
        recipe: h.manifest.recipe.to_string(),
        n_tensors: h.n_tensors,
        entries,
        sections: rest.to_vec(),
        data: b[doff..b.len() - 4].to_vec(),
        version: 1,
        magic: *b"TINYPOET",
    }
}

/// The header bytes of `p`: head, directory, sections.
pub fn header_bytes(p: &Parts) -> Vec<u8> {
    let head = Head {
        config: p.config,
        vocab: &p.vocab,
        manifest: Manifest {
            steps: p.steps,
            eval_loss: p.eval_loss,
            eval_loss_blob: p.eval_loss_blob,
            corpus_sha256: p.sha,
            recipe: &p.recipe,
        },
        n_tensors: p.n_tensors,
    };
    let mut hdr = postcard::to_allocvec(&head).unwrap();
    for e in &p.entries {
        let te = TensorEntry {
            name: &e.name,
            dtype: e.dtype,
            layout: e.layout,
            shape: e.shape,
            offset: e.offset,
            nbytes: e.nbytes,
        };
        hdr.extend(postcard::to_allocvec(&te).unwrap());
    }
    hdr.extend(&p.sections);
    hdr
}

/// Encode `p` as the format lays it out, re-sealed.
pub fn assemble(p: &Parts) -> Vec<u8> {
    let hdr = header_bytes(p);
    let doff = (32 + hdr.len()).div_ceil(64) * 64;
    let total = doff + p.data.len() + 4;
    let mut out = vec![0u8; total];
    out[0..8].copy_from_slice(&p.magic);
    out[8..12].copy_from_slice(&p.version.to_le_bytes());
    out[12..16].copy_from_slice(&(hdr.len() as u32).to_le_bytes());
    out[16..24].copy_from_slice(&(total as u64).to_le_bytes());
    out[24..32].copy_from_slice(&(doff as u64).to_le_bytes());
    out[32..32 + hdr.len()].copy_from_slice(&hdr);
    out[doff..doff + p.data.len()].copy_from_slice(&p.data);
    reseal(&mut out);
    out
}
