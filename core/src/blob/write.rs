//! The blob writer: the only implementation of the encoder (the trainer's `export` and every
//! test helper call it). Writes into a caller buffer; no allocation. It does every re-layout and
//! rounding itself: f16 round-to-nearest-even, Linear weights transposed for f16, and for int8
//! the per-group quantization ([`quantize_group`]).

use half::f16;
use postcard::ser_flavors::Flavor;

#[allow(unused_imports)]
use super::HeaderHead;
use super::{
    align_up, q8_group_ok, q8_scales_offset, Dtype, Layout, Manifest, ScaleDtype, TensorEntry,
    WeightDtype, CRC_LEN, MAGIC, PREFIX_LEN, VERSION,
};
use crate::config::{tensor_spec, tensor_specs, Config};
use crate::crc32::Crc32;
use crate::Error;

/// Everything the writer needs. Tensors are in the canonical order and PyTorch convention
/// (`tensor_specs(&config)`; Linear weights `[out, in]`, row-major f32); the writer re-lays out,
/// rounds to f16 and quantizes to int8 itself.
#[derive(Debug, Clone, Copy)]
pub struct BlobInput<'x> {
    /// Model hyper-parameters.
    pub config: Config,
    /// Vocabulary, strictly increasing by code point; id = index; `'\0'` at index 0.
    pub vocab: &'x [char],
    /// Training manifest.
    pub manifest: Manifest<'x>,
    /// Weight precision.
    pub dtype: WeightDtype,
    /// One slice per canonical tensor.
    pub tensors: &'x [&'x [f32]],
}

/// postcard flavor that only counts bytes.
struct Counter(usize);
impl Flavor for Counter {
    type Output = usize;
    fn try_push(&mut self, _: u8) -> postcard::Result<()> {
        self.0 += 1;
        Ok(())
    }
    fn try_extend(&mut self, d: &[u8]) -> postcard::Result<()> {
        self.0 += d.len();
        Ok(())
    }
    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.0)
    }
}

/// postcard flavor writing into a slice at a cursor.
struct Cursor<'b> {
    buf: &'b mut [u8],
    pos: usize,
}
impl Flavor for Cursor<'_> {
    type Output = usize;
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        let slot = self
            .buf
            .get_mut(self.pos)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = b;
        self.pos += 1;
        Ok(())
    }
    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.pos)
    }
}

/// Sizes of the encoded blob: (header_len, data_offset, data_len, total_len).
struct Plan {
    header_len: usize,
    data_offset: u64,
    total_len: u64,
}

fn validate(input: &BlobInput) -> Result<(), Error> {
    let cfg = &input.config;
    cfg.validate()?;
    input.manifest.validate()?;
    if let WeightDtype::Q8 { group_size, .. } = input.dtype {
        let g = group_size as usize;
        if !q8_group_ok(g, cfg.dim) || !q8_group_ok(g, cfg.ffn_dim) {
            return Err(Error::InvalidGroupSize { group_size });
        }
    }
    if input.vocab.len() != cfg.vocab_size {
        return Err(Error::VocabSize {
            expected: cfg.vocab_size,
            got: input.vocab.len(),
        });
    }
    if input.vocab.first() != Some(&'\0') {
        return Err(Error::VocabNoEndOfText);
    }
    for (index, w) in input.vocab.windows(2).enumerate() {
        if w[1] <= w[0] {
            return Err(Error::VocabNotSorted { index: index + 1 });
        }
    }
    if input.tensors.len() != cfg.n_tensors() {
        return Err(Error::InputTensorCount {
            expected: cfg.n_tensors(),
            got: input.tensors.len(),
        });
    }
    for (spec, t) in tensor_specs(cfg).zip(input.tensors) {
        if t.len() != spec.shape.numel() {
            return Err(Error::InputTensorLen {
                index: spec.index,
                expected: spec.shape.numel(),
                got: t.len(),
            });
        }
        for (element, &v) in t.iter().enumerate() {
            if !v.is_finite() || !f16::from_f32(v).is_finite() {
                return Err(Error::NotRepresentable {
                    index: spec.index,
                    element,
                });
            }
        }
    }
    Ok(())
}

/// Directory entries in order, with offsets relative to the data region.
fn entries<'n>(
    cfg: &Config,
    dtype: WeightDtype,
    names: &'n [crate::config::TensorName],
) -> impl Iterator<Item = TensorEntry<'n>> + 'n {
    let cfg = *cfg;
    let mut offset = 0u64;
    names.iter().enumerate().filter_map(move |(i, name)| {
        let spec = tensor_spec(&cfg, i)?;
        let (dtype, layout) = dtype.storage(spec.kind);
        let nbytes = dtype.byte_len(spec.shape.numel() as u64)?;
        let e = TensorEntry {
            name: name.as_str(),
            dtype,
            layout,
            shape: spec.shape,
            offset,
            nbytes,
        };
        offset = align_up(offset + nbytes)?;
        Some(e)
    })
}

/// Quantize one group: `scale = max|v| / 127` stored in `scale` precision (f16 round to
/// nearest even), then `q_i = round(v_i / s)` with `s` the *stored* scale (so that `q * s` is
/// what the core computes), rounded half away from zero and clamped to `-127..=127` (a clamp
/// only bites when an f16 scale rounded down or is subnormal); an all-zero group (or a scale
/// that underflows to 0) gives `q = 0`. Returns the stored scale's bytes (2 or 4 used).
pub fn quantize_group(v: &[f32], scale: ScaleDtype, q: &mut [i8]) -> [u8; 4] {
    let mut amax = 0.0f32;
    for &x in v {
        let a = f32::from_bits(x.to_bits() & 0x7FFF_FFFF);
        if a > amax {
            amax = a;
        }
    }
    let exact = amax / 127.0;
    let (s, bytes) = match scale {
        ScaleDtype::F16 => {
            let h = f16::from_f32(exact);
            let b = h.to_le_bytes();
            (h.to_f32(), [b[0], b[1], 0, 0])
        }
        ScaleDtype::F32 => (exact, exact.to_le_bytes()),
    };
    for (qi, &x) in q.iter_mut().zip(v) {
        *qi = if s > 0.0 {
            libm::roundf(x / s).clamp(-127.0, 127.0) as i8
        } else {
            0
        };
    }
    bytes
}

/// Write one int8 tensor: `t` is its logical row-major `[rows, cols]` data, groups of `g` run
/// along the rows (the writer only uses group sizes dividing the row length, so a group never
/// straddles two rows; it would not matter for the format).
fn write_q8(dst: &mut [u8], t: &[f32], g: usize, scale: ScaleDtype) {
    let numel = t.len();
    let Some(at) = q8_scales_offset(numel as u64) else {
        return;
    };
    let (values, scales) = dst.split_at_mut(at as usize);
    let width = match scale {
        ScaleDtype::F16 => 2,
        ScaleDtype::F32 => 4,
    };
    let mut q = [0i8; 1024];
    for ((src, dv), ds) in t
        .chunks(g)
        .zip(values.chunks_mut(g))
        .zip(scales.chunks_exact_mut(width))
    {
        let q = &mut q[..src.len()];
        let b = quantize_group(src, scale, q);
        for (d, &qi) in dv.iter_mut().zip(q.iter()) {
            *d = qi as u8;
        }
        ds.copy_from_slice(&b[..width]);
    }
}

fn with_names<R>(cfg: &Config, f: impl FnOnce(&[crate::config::TensorName]) -> R) -> R {
    // At most 2 + 13 * MAX_LAYERS + 4 = 214 names of 32 bytes: on the stack.
    let mut names: heapless::Vec<
        crate::config::TensorName,
        { 6 + 13 * crate::config::MAX_LAYERS },
    > = heapless::Vec::new();
    for s in tensor_specs(cfg) {
        let _ = names.push(s.name);
    }
    f(&names)
}

/// Serialize the header into `flavor`: the fields of [`HeaderHead`] in order (the vocabulary
/// bytes produced on the fly), then the directory entries.
fn header_into<F: Flavor>(input: &BlobInput, mut flavor: F) -> Result<F::Output, Error> {
    // The vocabulary goes in as a postcard byte string: varint length, then 4 bytes per entry.
    // Serialize the fields one by one so that the u32 LE bytes never need a buffer.
    let err = |_| Error::OutputTooSmall { needed: 0, got: 0 };
    let cfg = &input.config;
    // HeaderHead field 1: config.
    let f = postcard::serialize_with_flavor::<Config, _, _>(cfg, Passthrough(&mut flavor));
    f.map_err(err)?;
    // Field 2: vocab as bytes (same encoding as a postcard `&[u8]`).
    let nbytes = input.vocab.len() * 4;
    let f = postcard::serialize_with_flavor::<usize, _, _>(&nbytes, Passthrough(&mut flavor));
    f.map_err(err)?;
    for &c in input.vocab {
        flavor.try_extend(&(c as u32).to_le_bytes()).map_err(err)?;
    }
    // Field 3 and 4: manifest, tensor count.
    let f = postcard::serialize_with_flavor::<Manifest, _, _>(
        &input.manifest,
        Passthrough(&mut flavor),
    );
    f.map_err(err)?;
    let n = cfg.n_tensors() as u32;
    postcard::serialize_with_flavor::<u32, _, _>(&n, Passthrough(&mut flavor)).map_err(err)?;
    // Directory.
    with_names(cfg, |names| -> Result<(), Error> {
        for e in entries(cfg, input.dtype, names) {
            postcard::serialize_with_flavor::<TensorEntry, _, _>(&e, Passthrough(&mut flavor))
                .map_err(err)?;
        }
        Ok(())
    })?;
    flavor.finalize().map_err(err)
}

/// Lets several `serialize_with_flavor` calls append to one flavor.
struct Passthrough<'f, F: Flavor>(&'f mut F);
impl<F: Flavor> Flavor for Passthrough<'_, F> {
    type Output = ();
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.0.try_push(b)
    }
    fn try_extend(&mut self, d: &[u8]) -> postcard::Result<()> {
        self.0.try_extend(d)
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

fn plan(input: &BlobInput) -> Result<Plan, Error> {
    validate(input)?;
    let header_len = header_into(input, Counter(0))?;
    let data_offset = align_up((PREFIX_LEN + header_len) as u64).ok_or(Error::BadLayout("size"))?;
    let data_len = with_names(&input.config, |names| {
        entries(&input.config, input.dtype, names)
            .last()
            .map(|e| e.offset + e.nbytes)
            .unwrap_or(0)
    });
    let total_len = data_offset + data_len + CRC_LEN as u64;
    Ok(Plan {
        header_len,
        data_offset,
        total_len,
    })
}

/// Exact length in bytes of the blob [`write()`] produces for `input` (validates `input`).
pub fn encoded_len(input: &BlobInput) -> Result<usize, Error> {
    let p = plan(input)?;
    usize::try_from(p.total_len).map_err(|_| Error::OutputTooSmall {
        needed: usize::MAX,
        got: 0,
    })
}

/// Encode `input` into `out[..n]` and return `n` (= [`encoded_len`]). Fails without writing
/// a partial blob's checksum if `out` is too small or the input is invalid.
pub fn write(input: &BlobInput, out: &mut [u8]) -> Result<usize, Error> {
    let p = plan(input)?;
    let total = usize::try_from(p.total_len).map_err(|_| Error::OutputTooSmall {
        needed: usize::MAX,
        got: out.len(),
    })?;
    if out.len() < total {
        return Err(Error::OutputTooSmall {
            needed: total,
            got: out.len(),
        });
    }
    let out = &mut out[..total];
    out.fill(0);
    // Fixed prefix.
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(p.header_len as u32).to_le_bytes());
    out[16..24].copy_from_slice(&p.total_len.to_le_bytes());
    out[24..32].copy_from_slice(&p.data_offset.to_le_bytes());
    // Header.
    let hdr = &mut out[PREFIX_LEN..PREFIX_LEN + p.header_len];
    let n = header_into(input, Cursor { buf: hdr, pos: 0 })?;
    debug_assert_eq!(n, p.header_len);
    // Tensors: f16 little-endian, Linear weights transposed to [in, out]; int8 row-major.
    let data = &mut out[p.data_offset as usize..total - CRC_LEN];
    let cfg = input.config;
    with_names(&cfg, |names| {
        let all = entries(&cfg, input.dtype, names).zip(tensor_specs(&cfg).zip(input.tensors));
        for (e, (spec, t)) in all {
            let dst = &mut data[e.offset as usize..(e.offset + e.nbytes) as usize];
            if let Dtype::Q8 { group_size, scale } = e.dtype {
                write_q8(dst, t, group_size as usize, scale);
                continue;
            }
            let put = |dst: &mut [u8], j: usize, v: f32| {
                dst[2 * j..2 * j + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
            };
            match (e.layout, spec.shape.dims()) {
                (Layout::Transposed, &[rows, cols]) => {
                    // logical [out=rows, in=cols] -> physical [in, out]
                    for r in 0..rows {
                        for c in 0..cols {
                            put(dst, c * rows + r, t[r * cols + c]);
                        }
                    }
                }
                _ => {
                    for (j, &v) in t.iter().enumerate() {
                        put(dst, j, v);
                    }
                }
            }
        }
    });
    // Trailer: CRC-32 over everything before it.
    let mut crc = Crc32::new();
    crc.update(&out[..total - CRC_LEN]);
    out[total - CRC_LEN..].copy_from_slice(&crc.finish().to_le_bytes());
    Ok(total)
}

/// Header of `blob` re-encoded with `rhyme` as its only section: the head and the tensor
/// directory as they are (the offsets are relative to the data region, so they stay valid
/// wherever the data region moves), then `Section::Rhyme`.
fn header_with_rhyme<F: Flavor>(
    blob: &super::Blob,
    rhyme: Option<&super::RhymeTable>,
    mut flavor: F,
) -> Result<F::Output, Error> {
    let err = |_| Error::OutputTooSmall { needed: 0, got: 0 };
    let head = HeaderHead {
        config: blob.config,
        vocab: blob.vocab,
        manifest: blob.manifest,
        n_tensors: blob.n_tensors() as u32,
    };
    postcard::serialize_with_flavor::<HeaderHead, _, _>(&head, Passthrough(&mut flavor))
        .map_err(err)?;
    flavor.try_extend(blob.directory).map_err(err)?;
    if let Some(t) = rhyme {
        let s = super::Section::Rhyme(*t);
        postcard::serialize_with_flavor::<super::Section, _, _>(&s, Passthrough(&mut flavor))
            .map_err(err)?;
    }
    flavor.finalize().map_err(err)
}

fn rhyme_plan(blob: &super::Blob, rhyme: Option<&super::RhymeTable>) -> Result<Plan, Error> {
    if let Some(t) = rhyme {
        t.validate(blob.config.vocab_size)?;
    }
    let header_len = header_with_rhyme(blob, rhyme, Counter(0))?;
    let data_offset = align_up((PREFIX_LEN + header_len) as u64).ok_or(Error::BadLayout("size"))?;
    let total_len = data_offset + blob.data.len() as u64 + CRC_LEN as u64;
    Ok(Plan {
        header_len,
        data_offset,
        total_len,
    })
}

/// Exact length of the blob [`with_rhyme_table`] writes.
pub fn with_rhyme_table_len(
    blob: &super::Blob,
    rhyme: Option<&super::RhymeTable>,
) -> Result<usize, Error> {
    let p = rhyme_plan(blob, rhyme)?;
    usize::try_from(p.total_len).map_err(|_| Error::OutputTooSmall {
        needed: usize::MAX,
        got: 0,
    })
}

/// Write `blob` with its rhyme section replaced by `rhyme` (`None` removes it) into
/// `out[..n]` and return `n` (= [`with_rhyme_table_len`]). Everything else is kept as it
/// is: config, vocabulary, manifest, the tensor directory and the data region byte for byte
/// (the data region moves to the next multiple of [`super::ALIGN`] after the new header); the
/// checksum is recomputed. `rhyme` is validated against the vocabulary size first.
pub fn with_rhyme_table(
    blob: &super::Blob,
    rhyme: Option<&super::RhymeTable>,
    out: &mut [u8],
) -> Result<usize, Error> {
    let p = rhyme_plan(blob, rhyme)?;
    let total = usize::try_from(p.total_len).map_err(|_| Error::OutputTooSmall {
        needed: usize::MAX,
        got: out.len(),
    })?;
    if out.len() < total {
        return Err(Error::OutputTooSmall {
            needed: total,
            got: out.len(),
        });
    }
    let out = &mut out[..total];
    out.fill(0);
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(p.header_len as u32).to_le_bytes());
    out[16..24].copy_from_slice(&p.total_len.to_le_bytes());
    out[24..32].copy_from_slice(&p.data_offset.to_le_bytes());
    let hdr = &mut out[PREFIX_LEN..PREFIX_LEN + p.header_len];
    header_with_rhyme(blob, rhyme, Cursor { buf: hdr, pos: 0 })?;
    out[p.data_offset as usize..total - CRC_LEN].copy_from_slice(blob.data);
    let mut crc = Crc32::new();
    crc.update(&out[..total - CRC_LEN]);
    out[total - CRC_LEN..].copy_from_slice(&crc.finish().to_le_bytes());
    Ok(total)
}
