//! The run folder: resolved config, per-evaluation metrics, checkpoints and the final summary,
//! every file written atomically and durably (temp file, flush, rename) so a crash or a full disk
//! never leaves half a file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One row of `metrics.csv`, written at every evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub step: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub tokens_per_second: f64,
}

/// `summary.json`: the outcome of a finished run. Accuracies are fractions in [0, 1].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub task: String,
    pub attention: String,
    pub preset: String,
    pub seed: u64,
    pub steps: usize,
    pub best_step: usize,
    pub best_val_accuracy: f64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    /// Test accuracy of always predicting the most frequent training label.
    pub majority_class_accuracy: f64,
    pub train_seconds: f64,
    /// Token positions (padding included) processed per second of training.
    pub tokens_per_second: f64,
    pub parameters: usize,
    pub device: String,
    pub git_commit: String,
    pub run_dir: PathBuf,
}

/// Files of one run.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Resolved config.
    pub fn config(&self) -> PathBuf {
        self.path.join("config.toml")
    }
    /// Evaluation history.
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.csv")
    }
    /// Final summary; present only for finished runs.
    pub fn summary(&self) -> PathBuf {
        self.path.join("summary.json")
    }
    /// Latest training state (model, optimiser, counters).
    pub fn last_checkpoint(&self) -> PathBuf {
        self.path.join("checkpoint")
    }
    /// Parameters with the best validation accuracy so far.
    pub fn best_model(&self) -> PathBuf {
        self.path.join("best_model.bpk")
    }

    /// Whether the run finished (has a summary).
    pub fn is_finished(&self) -> bool {
        self.summary().is_file()
    }

    /// Rewrites `metrics.csv` from the full history.
    pub fn write_metrics(&self, rows: &[MetricsRow]) -> Result<()> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        for row in rows {
            writer.serialize(row)?;
        }
        if rows.is_empty() {
            return Ok(());
        }
        atomic_write(&self.metrics(), &writer.into_inner()?)
    }

    /// Writes `summary.json`, which marks the run finished.
    pub fn write_summary(&self, summary: &Summary) -> Result<()> {
        let json = serde_json::to_vec_pretty(summary)?;
        atomic_write(&self.summary(), &json)
    }
}

/// Writes `bytes` to a temp file beside `path`, flushes it to disk, then renames it over `path`
/// (and flushes the folder, so the rename survives a crash). On any failure (a read-only folder,
/// a full disk) `path` keeps its previous content, the temp file is removed, and the error names
/// the file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let written = write_synced(&tmp, bytes)
        .with_context(|| format!("cannot write {} (as {})", path.display(), tmp.display()))
        .and_then(|()| {
            fs::rename(&tmp, path)
                .with_context(|| format!("cannot move {} into place", path.display()))
        });
    if written.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    fs::File::open(folder.unwrap_or(Path::new(".")))
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot flush the folder of {} to disk", path.display()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A sibling of `path` for writing before an atomic rename.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The commit the binary runs from, `-dirty` when the work tree has changes, `unknown` outside git.
pub fn git_commit() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => match run(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{commit}-dirty"),
            _ => commit,
        },
        None => "unknown".to_string(),
    }
}
