//! `tinypoet prepare`: build the prepared dataset (`.tpd`) from the chinese-poetry package, a
//! JSON poem list or plain text.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use crate::data::corpus::{self, InputFormat};
use crate::io::fsx::hex;

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Input: chinese-poetry-2.0.1.tgz (from `npm pack chinese-poetry@2.0.1`), its extracted
    /// folder, a JSON list of {title, paragraphs}, or a plain UTF-8 text file.
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// Output dataset file (written atomically).
    #[arg(short, long, value_name = "PATH", default_value = "data/tang.tpd")]
    pub output: PathBuf,
    /// How to read the input (auto: a folder, a gzip/tar file or a .tgz/.tar name = package,
    /// .json = poem list, anything else = text).
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub format: InputFormat,
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn run(args: PrepareArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let src = corpus::read_source(&args.from, args.format)?;
    let (ds, stats) = corpus::prepare(&src)?;
    ds.save(&args.output)?;
    let elapsed = start.elapsed();

    let h = ds.header();
    let n = thousands;
    crate::outln!(
        "source: {} ({}, sha256 {})",
        args.from.display(),
        h.source_kind,
        h.source_sha256
    );
    if src.kind == corpus::SourceKind::PackageTarball {
        if h.source_sha256 == corpus::tang::PACKAGE_TGZ_SHA256 {
            crate::outln!("        = the published chinese-poetry 2.0.1 tarball");
        } else {
            crate::outln!(
                "        differs from the published 2.0.1 tarball (file set and version checked)"
            );
        }
    }
    if stats.files_read > 0 {
        crate::outln!(
            "read {} poems from {} files (poet.tang.0 … 56000.json); dropped {} (□ {}, uneven lines {}, < 2 lines {}, parentheses {})",
            n(stats.poems_read as u64),
            stats.files_read,
            n((stats.poems_read - stats.poems) as u64),
            n(stats.dropped[0] as u64),
            n(stats.dropped[1] as u64),
            n(stats.dropped[2] as u64),
            n(stats.dropped[3] as u64),
        );
    }
    if let Some(sum) = stats.data_json_sha256 {
        crate::outln!("data.json sha256: {}", hex(&sum));
    }
    if h.recipe == corpus::TANG_RECIPE {
        crate::outln!("poems: {}", n(h.poems));
    }
    crate::outln!("dataset length: {}", n(h.dataset_length));
    crate::outln!("vocabulary size: {}", n(h.vocab_size));
    crate::outln!("vocabulary sha256: {}", h.vocab_sha256);
    crate::outln!(
        "pretrain tokens: {} (train {} / eval {})",
        n(h.pretrain_tokens),
        n(h.pretrain_train_tokens),
        n(h.pretrain_tokens - h.pretrain_train_tokens)
    );
    if h.recipe == corpus::TANG_RECIPE {
        crate::outln!(
            "finetune items: {} (train {} / eval {}), {} tokens",
            n(h.finetune_items),
            n(h.finetune_train_items),
            n(h.finetune_items - h.finetune_train_items),
            n(h.finetune_tokens)
        );
        crate::outln!(
            "alignment pairs: {} (train {} / eval {}), {} tokens",
            n(h.alignment_pairs),
            n(h.alignment_train_pairs),
            n(h.alignment_pairs - h.alignment_train_pairs),
            n(h.alignment_positive_tokens + h.alignment_negative_tokens)
        );
    }
    let size = std::fs::metadata(&args.output)
        .with_context(|| format!("{}", args.output.display()))?
        .len();
    crate::outln!(
        "wrote {} ({} bytes, content hash {}) in {:.2} s",
        args.output.display(),
        n(size),
        ds.content_hash(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(4052248), "4,052,248");
    }
}
