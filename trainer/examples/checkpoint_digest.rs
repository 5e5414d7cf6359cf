//! Print the SHA-256 of each checkpoint given, with its wall-clock fields zeroed (the run's
//! training time, every logged row's, and a stage's parent file hash, which covers the parent's),
//! beside the file's own SHA-256: two runs of the same training give the same first digest,
//! whatever the machine's speed.
//! (`scripts/loop-replay.sh` uses it to compare two builds' runs.)
//!
//! Usage: cargo run --release -p tinypoet-trainer --example checkpoint_digest -- CKPT...

use anyhow::Context;
use sha2::{Digest, Sha256};
use tinypoet_trainer::io::fsx::hex;
use tinypoet_trainer::run::checkpoint::Checkpoint;

fn main() -> anyhow::Result<()> {
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).with_context(|| path.clone())?;
        let mut ckpt = Checkpoint::from_bytes(&bytes).with_context(|| path.clone())?;
        ckpt.meta.wall_time_s = 0.0;
        for row in &mut ckpt.meta.metrics {
            row.train_time_s = 0.0;
        }
        if let Some(stage) = &mut ckpt.stage {
            stage.parent.sha256.clear();
            for row in &mut stage.rows {
                row.train_time_s = 0.0;
            }
        }
        let timeless = ckpt.to_bytes()?;
        println!(
            "{}  {path}  (file sha256 {})",
            hex(&Sha256::digest(&timeless)),
            hex(&Sha256::digest(&bytes))
        );
    }
    Ok(())
}
