//! Training metrics: one row per evaluation, appended to `metrics.jsonl` in the run directory.
//!
//! Each line is a JSON object (see [`MetricRow`]). The same rows are stored inside every
//! checkpoint, so `--resume` rewrites the file from the checkpoint first: rows logged after the
//! checkpoint by a run that was then killed do not survive into the resumed run's history.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One evaluation of the model, taken at iteration `step` (after `step` updates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// Updates applied before this evaluation.
    pub step: u64,
    /// Mean train loss of the iterations since the previous evaluation (0 at step 0), as the
    /// reference prints it.
    pub train_loss: f64,
    /// Deterministic eval loss (every position of the eval split; `evaluate::deterministic_loss`).
    pub eval_loss: f64,
    /// The reference's estimator: mean of `eval_batches` random eval batches.
    pub eval_loss_reference: f64,
    /// Learning rate used for this step's update.
    pub lr: f64,
    /// Global gradient norm of this step's batch (before clipping); none for the final
    /// evaluation, which has no batch.
    pub grad_norm: Option<f64>,
    /// Training wall time so far, seconds (excluding evaluation).
    pub train_time_s: f64,
    /// Tokens trained on so far (`step · batch · seq`).
    pub tokens: u64,
    /// The sample generated at this evaluation.
    pub sample: String,
}

/// Appends rows to a JSONL file.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Start a log at `path`, replacing its content by `rows` (empty for a new run; the
    /// checkpoint's rows for a resumed one).
    pub fn create(path: &Path, rows: &[MetricRow]) -> anyhow::Result<MetricsLog> {
        let file = File::create(path).with_context(|| format!("{}", path.display()))?;
        let mut w = BufWriter::new(file);
        for row in rows {
            serde_json::to_writer(&mut w, row)?;
            w.write_all(b"\n")?;
        }
        w.flush().with_context(|| format!("{}", path.display()))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
        })
    }

    /// Append one row (opened, written and closed each time so a crash loses at most one line).
    pub fn append(&self, row: &MetricRow) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(row)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .with_context(|| format!("{}", self.path.display()))?;
        f.write_all(&line)
            .with_context(|| format!("{}", self.path.display()))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Read a metrics file back (skipping a torn last line).
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<MetricRow>> {
    let text = fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64) -> MetricRow {
        MetricRow {
            step,
            train_loss: 1.25,
            eval_loss: 2.5,
            eval_loss_reference: 2.4,
            lr: 1e-3,
            grad_norm: Some(0.5),
            train_time_s: 3.0,
            tokens: step * 4096,
            sample: "春夜喜雨\n好".into(),
        }
    }

    #[test]
    fn create_append_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.jsonl");
        let log = MetricsLog::create(&p, &[row(0)]).unwrap();
        log.append(&row(10)).unwrap();
        assert_eq!(read_jsonl(&p).unwrap(), vec![row(0), row(10)]);
        // Re-creating from a checkpoint's rows drops later lines.
        MetricsLog::create(&p, &[row(0)]).unwrap();
        assert_eq!(read_jsonl(&p).unwrap(), vec![row(0)]);
    }
}
