//! `tinypoet inspect`: print a blob's config, sizes, manifest and checksum status.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use tinypoet_core::blob::{self, Dtype, ScaleDtype};

use super::export::fmt_loss;

/// Print a blob's config, sizes, manifest and checksum status.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  tinypoet inspect models/tinypoet-tang.tpb
  tinypoet inspect model.tpb --tensors     # also list every tensor

A blob that fails any check (truncated, bad magic, wrong checksum, inconsistent sizes, ...)
gives one error line and exit code 1.")]
pub struct InspectArgs {
    /// Blob file.
    #[arg(value_name = "BLOB")]
    pub blob: PathBuf,
    /// List every tensor (name, dtype, layout, shape, offset, bytes).
    #[arg(long)]
    pub tensors: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let bytes = crate::io::fsx::read_input(&args.blob, crate::io::fsx::limits::BLOB)
        .with_context(|| format!("{}", args.blob.display()))?;
    let b = blob::parse(&bytes).map_err(|e| {
        anyhow!(
            "{}: corrupt or not a tinypoet blob: {e}",
            args.blob.display()
        )
    })?;
    let c = b.config;
    let m = b.manifest;
    let crc = bytes
        .get(bytes.len().saturating_sub(4)..)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0);
    let (mut weight_bytes, mut n_params) = (0u64, 0u64);
    // per storage type: (tensors, values, bytes), in order of first appearance
    let mut by_dtype: Vec<(Dtype, usize, u64, u64)> = vec![];
    for t in b.tensors() {
        let numel = t.entry.shape.numel() as u64;
        weight_bytes += t.entry.nbytes;
        n_params += numel;
        match by_dtype.iter_mut().find(|d| d.0 == t.entry.dtype) {
            Some(d) => {
                d.1 += 1;
                d.2 += numel;
                d.3 += t.entry.nbytes;
            }
            None => by_dtype.push((t.entry.dtype, 1, numel, t.entry.nbytes)),
        }
    }
    crate::outln!("file:        {}", args.blob.display());
    crate::outln!(
        "size:        {} bytes ({:.2} MiB)",
        bytes.len(),
        bytes.len() as f64 / 1048576.0
    );
    crate::outln!("checksum:    ok (CRC-32 {crc:08x})");
    crate::outln!(
        "config:      vocab {}, dim {}, heads {} (head size {}), layers {}, context {}, ffn {}, ln_eps {:e}, attn_scale {}",
        c.vocab_size,
        c.dim,
        c.n_heads,
        c.head_dim(),
        c.n_layers,
        c.context,
        c.ffn_dim,
        c.ln_eps,
        c.attn_scale
    );
    crate::outln!(
        "parameters:  {} in {} tensors, {} bytes of weights",
        n_params,
        b.n_tensors(),
        weight_bytes
    );
    for (i, (dtype, tensors, values, nbytes)) in by_dtype.iter().enumerate() {
        crate::outln!(
            "{}{:<28} {tensors:>3} tensors, {values:>9} values, {nbytes:>9} bytes",
            if i == 0 {
                "dtype:       "
            } else {
                "             "
            },
            dtype_name(dtype),
        );
    }
    crate::outln!(
        "run state:   {} bytes (f16 KV cache), {} bytes (int8 KV cache)",
        tinypoet_core::state_bytes(&c, tinypoet_core::KvPrecision::F16),
        tinypoet_core::state_bytes(&c, tinypoet_core::KvPrecision::Q8)
    );
    crate::outln!("manifest:");
    crate::outln!("  steps:          {}", m.steps);
    crate::outln!(
        "  eval loss:      {} (f32 checkpoint)",
        fmt_loss(m.eval_loss)
    );
    crate::outln!(
        "  eval loss blob: {} (this blob, through the core)",
        fmt_loss(m.eval_loss_blob)
    );
    crate::outln!(
        "  corpus sha256:  {}",
        if m.corpus_sha256 == [0; 32] {
            "unknown".to_string()
        } else {
            crate::io::fsx::hex(&m.corpus_sha256)
        }
    );
    // The recipe is the blob's free text: escape control characters (a crafted blob must not
    // send terminal escape sequences); printable text, CJK included, stays as it is.
    crate::outln!("  recipe:         {}", m.recipe.escape_debug());
    if args.tensors {
        crate::outln!("tensors:");
        for t in b.tensors() {
            let e = t.entry;
            crate::outln!(
                "  {:<28} {} {:?} {:?} offset {} bytes {}",
                e.name,
                dtype_name(&e.dtype),
                e.layout,
                e.shape.dims(),
                e.offset,
                e.nbytes
            );
        }
    }
    Ok(())
}

/// "f16", "int8 (group 32, f16 scales)", ...
fn dtype_name(d: &Dtype) -> String {
    match d {
        Dtype::F16 => "f16".into(),
        Dtype::F32 => "f32".into(),
        Dtype::Q8 { group_size, scale } => format!(
            "int8 (group {group_size}, {} scales)",
            match scale {
                ScaleDtype::F16 => "f16",
                ScaleDtype::F32 => "f32",
            }
        ),
    }
}
