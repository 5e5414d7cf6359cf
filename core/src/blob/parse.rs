//! The blob parser: borrows from `&'a [u8]`, never copies weights, never panics.

use super::{
    check_vocab_bytes, layout_of, q8_scales_offset, Dtype, HeaderHead, Layout, Manifest,
    RhymeTable, ScaleDtype, Section, TensorEntry, ALIGN, CRC_LEN, MAGIC, PREFIX_LEN, VERSION,
};
use crate::config::{tensor_spec, Config};
use crate::crc32::crc32;
use crate::Error;

/// A parsed, fully validated blob. Cheap to copy: it only holds borrowed slices.
#[derive(Debug, Clone, Copy)]
pub struct Blob<'a> {
    /// Model hyper-parameters.
    pub config: Config,
    /// Training manifest.
    pub manifest: Manifest<'a>,
    /// Vocabulary: `vocab_size` code points as u32 LE (validated).
    pub(crate) vocab: &'a [u8],
    /// Directory bytes (postcard entries, without the sections after them) and count.
    pub(crate) directory: &'a [u8],
    n_tensors: usize,
    /// The data region `[data_offset, total_len - 4)`.
    pub(crate) data: &'a [u8],
    /// Whole blob.
    bytes: &'a [u8],
}

/// One tensor: its directory entry and its bytes in the blob.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// Directory entry.
    pub entry: TensorEntry<'a>,
    /// Raw bytes (`entry.nbytes` long), borrowed from the blob.
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// An int8 tensor's values (`numel` i8, as bytes) and scales (little-endian, in the
    /// entry's scale precision); `None` for other dtypes.
    pub fn q8_parts(&self) -> Option<(&'a [u8], &'a [u8])> {
        let Dtype::Q8 { .. } = self.entry.dtype else {
            return None;
        };
        let numel = self.entry.shape.numel();
        let at = usize::try_from(q8_scales_offset(numel as u64)?).ok()?;
        Some((self.bytes.get(..numel)?, self.bytes.get(at..)?))
    }
}

fn rd_u32(b: &[u8], at: usize) -> Result<u32, Error> {
    let s = b.get(at..at + 4).ok_or(Error::Truncated {
        needed: (at + 4) as u64,
        got: b.len() as u64,
    })?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn rd_u64(b: &[u8], at: usize) -> Result<u64, Error> {
    let lo = rd_u32(b, at)? as u64;
    let hi = rd_u32(b, at + 4)? as u64;
    Ok(lo | hi << 32)
}

/// Parse and validate a blob. Checks, in order: prefix length, magic, version, declared length
/// (truncated / trailing bytes), CRC-32, layout of header and data region, header decoding,
/// config, manifest, vocabulary, and every directory entry (name, shape, dtype size, layout,
/// alignment, order, bounds) and that every f16/f32 value and int8 scale is finite, then the
/// optional sections (a rhyme table: [`RhymeTable::validate`]).
pub fn parse(bytes: &[u8]) -> Result<Blob<'_>, Error> {
    let got = bytes.len() as u64;
    if bytes.len() < PREFIX_LEN {
        // Report a bad magic first when the bytes we have already disagree with it.
        let n = bytes.len().min(MAGIC.len());
        if bytes[..n] != MAGIC[..n] {
            return Err(Error::BadMagic);
        }
        return Err(Error::Truncated {
            needed: PREFIX_LEN as u64,
            got,
        });
    }
    if bytes[..8] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = rd_u32(bytes, 8)?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let header_len = rd_u32(bytes, 12)? as u64;
    let total_len = rd_u64(bytes, 16)?;
    let data_offset = rd_u64(bytes, 24)?;
    if total_len > got {
        return Err(Error::Truncated {
            needed: total_len,
            got,
        });
    }
    if total_len < got {
        return Err(Error::TrailingBytes {
            declared: total_len,
            got,
        });
    }
    // From here total_len == bytes.len(), so it fits in usize.
    let total = bytes.len();
    if total < PREFIX_LEN + CRC_LEN {
        return Err(Error::BadLayout("blob shorter than prefix and checksum"));
    }
    let body = &bytes[..total - CRC_LEN];
    let stored = rd_u32(bytes, total - CRC_LEN)?;
    let computed = crc32(body);
    if stored != computed {
        return Err(Error::ChecksumMismatch { stored, computed });
    }
    let header_end = (PREFIX_LEN as u64)
        .checked_add(header_len)
        .ok_or(Error::BadLayout("header length"))?;
    if !data_offset.is_multiple_of(ALIGN as u64) {
        return Err(Error::BadLayout("data offset not aligned"));
    }
    if header_end > data_offset || data_offset > body.len() as u64 {
        return Err(Error::BadLayout(
            "header/data offsets out of order or out of bounds",
        ));
    }
    let header = &bytes[PREFIX_LEN..header_end as usize];
    let data = &body[data_offset as usize..];

    let (head, mut rest): (HeaderHead, &[u8]) =
        postcard::take_from_bytes(header).map_err(|_| Error::MalformedHeader)?;
    let cfg = head.config;
    cfg.validate()?;
    head.manifest.validate()?;
    check_vocab_bytes(&cfg, head.vocab)?;
    let n_tensors = head.n_tensors as usize;
    if n_tensors != cfg.n_tensors() {
        return Err(Error::TensorCount {
            expected: cfg.n_tensors(),
            got: n_tensors,
        });
    }
    let directory = rest;
    let data_start = data_offset as usize;
    let mut end_prev = 0u64;
    for index in 0..n_tensors {
        let (e, r): (TensorEntry, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|_| Error::MalformedHeader)?;
        rest = r;
        let view = check_entry(&cfg, index, &e, data, end_prev)?;
        // the gap before this tensor (end_prev <= offset <= data.len(): check_entry)
        check_zero(
            bytes,
            data_start + end_prev as usize,
            data_start + e.offset as usize,
        )?;
        end_prev = e.offset + e.nbytes; // no overflow: checked in check_entry
        check_finite(index, &view)?;
        check_q8_padding(data_start + e.offset as usize, bytes, &view)?;
    }
    // after the last tensor, up to the checksum
    check_zero(bytes, data_start + end_prev as usize, body.len())?;
    let directory = &directory[..directory.len() - rest.len()];
    // Optional sections: each at most once, in any order, then nothing else.
    let mut rhyme: Option<RhymeTable> = None;
    while !rest.is_empty() {
        let (section, r): (Section, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|_| Error::MalformedHeader)?;
        rest = r;
        match section {
            Section::Rhyme(t) => {
                if rhyme.is_some() {
                    return Err(Error::InvalidRhymeTable("two rhyme sections"));
                }
                t.validate(cfg.vocab_size)?;
                rhyme = Some(t);
            }
        }
    }
    // between the header (now known to decode exactly) and the data region
    check_zero(bytes, header_end as usize, data_start)?;
    Ok(Blob {
        config: cfg,
        manifest: head.manifest,
        vocab: head.vocab,
        directory,
        n_tensors,
        data,
        bytes,
    })
}

fn check_entry<'a>(
    cfg: &Config,
    index: usize,
    e: &TensorEntry<'a>,
    data: &'a [u8],
    end_prev: u64,
) -> Result<TensorView<'a>, Error> {
    let spec = tensor_spec(cfg, index).ok_or(Error::TensorCount {
        expected: cfg.n_tensors(),
        got: index + 1,
    })?;
    if e.name != spec.name.as_str() {
        return Err(Error::TensorName { index });
    }
    if e.shape != spec.shape {
        return Err(Error::TensorShape { index });
    }
    let expected_len = e.dtype.byte_len(spec.shape.numel() as u64);
    if expected_len != Some(e.nbytes) {
        return Err(Error::TensorSize { index });
    }
    // Float tensors must use the canonical layout; an int8 Linear weight may be stored either
    // way (valid v1, though the loader only runs row-major), other int8 tensors row-major.
    let layout_ok = match e.dtype {
        Dtype::F16 | Dtype::F32 => e.layout == layout_of(spec.kind),
        Dtype::Q8 { .. } => spec.kind.is_linear_weight() || e.layout == Layout::RowMajor,
    };
    if !layout_ok {
        return Err(Error::TensorLayout { index });
    }
    if !e.offset.is_multiple_of(ALIGN as u64) {
        return Err(Error::TensorMisaligned { index });
    }
    if e.offset < end_prev {
        return Err(Error::TensorOverlap { index });
    }
    let end = e
        .offset
        .checked_add(e.nbytes)
        .ok_or(Error::TensorOutOfBounds { index })?;
    if end > data.len() as u64 {
        return Err(Error::TensorOutOfBounds { index });
    }
    Ok(TensorView {
        entry: *e,
        bytes: &data[e.offset as usize..end as usize],
    })
}

/// The format's padding bytes `bytes[start..end]` must be zero (an empty or inverted range
/// has nothing to check).
fn check_zero(bytes: &[u8], start: usize, end: usize) -> Result<(), Error> {
    let pad = bytes.get(start..end).unwrap_or(&[]);
    match pad.iter().position(|&b| b != 0) {
        Some(i) => Err(Error::NonZeroPadding {
            offset: (start + i) as u64,
        }),
        None => Ok(()),
    }
}

/// An int8 tensor's values are padded with zeros to a multiple of 4 before its scales; `at`
/// is the tensor's offset in the blob.
fn check_q8_padding(at: usize, bytes: &[u8], v: &TensorView) -> Result<(), Error> {
    let Dtype::Q8 { .. } = v.entry.dtype else {
        return Ok(());
    };
    let numel = v.entry.shape.numel();
    // fits: the scales start inside the tensor (byte_len checked in check_entry)
    let scales = q8_scales_offset(numel as u64).unwrap_or(0) as usize;
    check_zero(bytes, at + numel, at + scales)
}

fn check_finite(index: usize, v: &TensorView) -> Result<(), Error> {
    match v.entry.dtype {
        Dtype::F16 => {
            for (element, h) in v.bytes.chunks_exact(2).enumerate() {
                // exponent all ones = inf or NaN
                if u16::from_le_bytes([h[0], h[1]]) & 0x7C00 == 0x7C00 {
                    return Err(Error::NonFinite { index, element });
                }
            }
        }
        Dtype::F32 => {
            for (element, h) in v.bytes.chunks_exact(4).enumerate() {
                if u32::from_le_bytes([h[0], h[1], h[2], h[3]]) & 0x7F80_0000 == 0x7F80_0000 {
                    return Err(Error::NonFinite { index, element });
                }
            }
        }
        Dtype::Q8 { scale, .. } => {
            // The values are any i8; the scales must be finite. Element numbers continue after
            // the values (scale i is element numel + i).
            let numel = v.entry.shape.numel();
            let Some((_, scales)) = v.q8_parts() else {
                return Err(Error::TensorSize { index });
            };
            let bad = match scale {
                ScaleDtype::F16 => scales
                    .chunks_exact(2)
                    .position(|h| u16::from_le_bytes([h[0], h[1]]) & 0x7C00 == 0x7C00),
                ScaleDtype::F32 => scales.chunks_exact(4).position(|h| {
                    u32::from_le_bytes([h[0], h[1], h[2], h[3]]) & 0x7F80_0000 == 0x7F80_0000
                }),
            };
            if let Some(i) = bad {
                return Err(Error::NonFinite {
                    index,
                    element: numel + i,
                });
            }
        }
    }
    Ok(())
}

impl<'a> Blob<'a> {
    /// The rhyme table, if the blob has that optional section (validated by [`parse`]).
    pub fn rhyme(&self) -> Option<RhymeTable<'a>> {
        // The sections are the header bytes after the directory (validated by `parse`; not kept
        // as a field so that a `Model` stays small on a device). Section 0 is the only kind so
        // far, so it is the first value, if any.
        let start = (self.directory.as_ptr() as usize)
            .checked_sub(self.bytes.as_ptr() as usize)?
            .checked_add(self.directory.len())?;
        let end = PREFIX_LEN.checked_add(rd_u32(self.bytes, 12).ok()? as usize)?;
        let sections = self.bytes.get(start..end)?;
        let (section, _): (Section<'a>, &'a [u8]) = postcard::take_from_bytes(sections).ok()?;
        let Section::Rhyme(t) = section;
        Some(t)
    }

    /// Number of tensors in the directory.
    pub fn n_tensors(&self) -> usize {
        self.n_tensors
    }

    /// The whole blob.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The tensors in directory (canonical) order.
    pub fn tensors(&self) -> TensorEntries<'a> {
        TensorEntries {
            rest: self.directory,
            left: self.n_tensors,
            data: self.data,
        }
    }

    /// The vocabulary as stored: `vocab_size` code points, u32 little-endian, strictly
    /// increasing, entry 0 = U+0000 (validated). [`crate::Model::tokenizer`] encodes with it.
    pub fn vocab_bytes(&self) -> &'a [u8] {
        self.vocab
    }

    /// The vocabulary's characters in id order.
    pub fn vocab_chars(&self) -> impl Iterator<Item = char> + 'a {
        self.vocab
            .chunks_exact(4)
            .filter_map(|b| char::from_u32(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }
}

/// Iterator over a validated blob's tensors.
#[derive(Debug, Clone)]
pub struct TensorEntries<'a> {
    rest: &'a [u8],
    left: usize,
    data: &'a [u8],
}

impl<'a> Iterator for TensorEntries<'a> {
    type Item = TensorView<'a>;
    fn next(&mut self) -> Option<TensorView<'a>> {
        if self.left == 0 {
            return None;
        }
        // Already validated by `parse`, so these cannot fail; `?` keeps it panic-free anyway.
        let (entry, r): (TensorEntry, &[u8]) = postcard::take_from_bytes(self.rest).ok()?;
        self.rest = r;
        self.left -= 1;
        let start = usize::try_from(entry.offset).ok()?;
        let end = start.checked_add(usize::try_from(entry.nbytes).ok()?)?;
        Some(TensorView {
            entry,
            bytes: self.data.get(start..end)?,
        })
    }
}
