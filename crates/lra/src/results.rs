//! The run folder: resolved config, per-evaluation metrics, checkpoints and the final summary,
//! every file written atomically and durably (temp file, flush, rename) so a crash or a full disk
//! never leaves half a file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Version of the `summary.json` / `metrics.csv` layout. 1: accuracy only (no `schema_version`
/// field); 2: named metrics per split.
pub const SCHEMA_VERSION: u32 = 2;

/// Named values of one evaluated split, in the task's order (`loss` first, then its metrics);
/// a JSON object in that order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricValues(pub Vec<(String, f64)>);

impl MetricValues {
    /// The value called `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Appends a named value.
    pub fn push(&mut self, name: &str, value: f64) {
        self.0.push((name.to_string(), value));
    }
}

impl Serialize for MetricValues {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for MetricValues {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> serde::de::Visitor<'de> for InOrder {
            type Value = MetricValues;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of metric names to numbers")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MetricValues, A::Error> {
                let mut values = Vec::new();
                // JSON has no NaN: serde_json writes a non-finite value (the loss of a diverged
                // model) as null, which reads back as NaN.
                while let Some((name, value)) = map.next_entry::<String, Option<f64>>()? {
                    values.push((name, value.unwrap_or(f64::NAN)));
                }
                Ok(MetricValues(values))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

/// One row of `metrics.csv`, written at every evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredRow")]
pub struct MetricsRow {
    pub step: usize,
    pub lr: f64,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    /// Training accuracy since the previous evaluation (classification tasks).
    pub train_accuracy: Option<f64>,
    /// Validation loss and metrics.
    pub val: MetricValues,
    pub tokens_per_second: f64,
    /// Batches skipped so far for a non-finite loss or gradient (`train.skip_nonfinite`).
    pub skipped_steps: usize,
}

impl MetricsRow {
    /// A validation value by name (`loss`, `accuracy`, …).
    pub fn val(&self, name: &str) -> Option<f64> {
        self.val.get(name)
    }

    /// Column names and cells of this row in `metrics.csv`.
    fn columns(&self) -> (Vec<String>, Vec<Cell>) {
        let mut names = vec!["step".to_string(), "lr".into(), "train_loss".into()];
        let mut cells = vec![
            Cell::Count(self.step),
            Cell::Value(self.lr),
            Cell::Value(self.train_loss),
        ];
        if let Some(accuracy) = self.train_accuracy {
            names.push("train_accuracy".into());
            cells.push(Cell::Value(accuracy));
        }
        for (name, value) in &self.val.0 {
            names.push(format!("val_{name}"));
            cells.push(Cell::Value(*value));
        }
        names.push("tokens_per_second".into());
        cells.push(Cell::Value(self.tokens_per_second));
        names.push("skipped_steps".into());
        cells.push(Cell::Count(self.skipped_steps));
        (names, cells)
    }
}

/// How rows are stored in checkpoints: this layout, or the schema-1 layout of older runs (which
/// then still resume).
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredRow {
    Named {
        step: usize,
        lr: f64,
        train_loss: f64,
        train_accuracy: Option<f64>,
        val: MetricValues,
        tokens_per_second: f64,
        #[serde(default)]
        skipped_steps: usize,
    },
    AccuracyOnly {
        step: usize,
        lr: f64,
        train_loss: f64,
        train_accuracy: f64,
        val_loss: f64,
        val_accuracy: f64,
        tokens_per_second: f64,
    },
}

impl From<StoredRow> for MetricsRow {
    fn from(row: StoredRow) -> Self {
        match row {
            StoredRow::Named {
                step,
                lr,
                train_loss,
                train_accuracy,
                val,
                tokens_per_second,
                skipped_steps,
            } => Self {
                step,
                lr,
                train_loss,
                train_accuracy,
                val,
                tokens_per_second,
                skipped_steps,
            },
            StoredRow::AccuracyOnly {
                step,
                lr,
                train_loss,
                train_accuracy,
                val_loss,
                val_accuracy,
                tokens_per_second,
            } => Self {
                step,
                lr,
                train_loss,
                train_accuracy: Some(train_accuracy),
                val: MetricValues(vec![
                    ("loss".into(), val_loss),
                    ("accuracy".into(), val_accuracy),
                ]),
                tokens_per_second,
                skipped_steps: 0,
            },
        }
    }
}

/// A CSV cell: counts print as integers, values with the shortest exact decimal form.
#[derive(Serialize)]
#[serde(untagged)]
enum Cell {
    Count(usize),
    Value(f64),
}

/// Reads a `metrics.csv` written by [`RunDir::write_metrics`] (any schema version).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let mut rows = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: line {}", path.display(), line + 2))?;
        let mut row = MetricsRow {
            step: 0,
            lr: 0.0,
            train_loss: 0.0,
            train_accuracy: None,
            val: MetricValues::default(),
            tokens_per_second: 0.0,
            skipped_steps: 0,
        };
        for (name, cell) in headers.iter().zip(record.iter()) {
            let value: f64 = cell.parse().with_context(|| {
                format!(
                    "{}: line {}, column `{name}`: expected a number, found `{cell}`",
                    path.display(),
                    line + 2
                )
            })?;
            match name {
                "step" => row.step = value as usize,
                "lr" => row.lr = value,
                "train_loss" => row.train_loss = value,
                "train_accuracy" => row.train_accuracy = Some(value),
                "tokens_per_second" => row.tokens_per_second = value,
                "skipped_steps" => row.skipped_steps = value as usize,
                other => match other.strip_prefix("val_") {
                    Some(metric) => row.val.push(metric, value),
                    None => anyhow::bail!("{}: unknown column `{other}`", path.display()),
                },
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// `summary.json`: the outcome of a finished run. Accuracies and other metrics are fractions
/// (correlations in [−1, 1]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Layout version ([`SCHEMA_VERSION`]); 1 for files written before it existed.
    #[serde(default = "first_schema")]
    pub schema_version: u32,
    pub task: String,
    pub attention: String,
    pub preset: String,
    pub seed: u64,
    pub steps: usize,
    pub best_step: usize,
    /// The step whose parameters were tested (`train.test_with`): `best_step` or the last.
    /// Summaries written before the option existed tested the best step.
    #[serde(default)]
    pub tested_step: Option<usize>,
    /// The metric that chose the best checkpoint.
    #[serde(default = "accuracy_name")]
    pub selection_metric: String,
    /// Named values per split: `val` and `test` (at the tested step, `tested_step`) and
    /// `baseline` (a constant predictor on the test split: the majority training class).
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricValues>,
    /// Classification tasks: validation accuracy at the best step (kept for older tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_val_accuracy: Option<f64>,
    /// Classification tasks: test accuracy of the best checkpoint (kept for older tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Mean test loss of the best checkpoint; absent when the test answers are withheld (GLUE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// Unlabelled splits (GLUE test sets) and the files the best model's predictions on them
    /// were written to, relative to the run folder.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub predictions: BTreeMap<String, PathBuf>,
    /// Test accuracy of always predicting the most frequent training label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub majority_class_accuracy: Option<f64>,
    pub train_seconds: f64,
    /// Batches skipped for a non-finite loss or gradient (`train.skip_nonfinite`).
    #[serde(default)]
    pub skipped_steps: usize,
    /// Token positions (padding included) processed per second of training.
    pub tokens_per_second: f64,
    pub parameters: usize,
    pub device: String,
    pub git_commit: String,
    pub run_dir: PathBuf,
}

fn first_schema() -> u32 {
    1
}

fn accuracy_name() -> String {
    "accuracy".to_string()
}

impl Summary {
    /// The value of `metric` on `split` (`val`, `test`, `baseline`); schema-1 summaries know
    /// `accuracy` only.
    pub fn metric(&self, split: &str, metric: &str) -> Option<f64> {
        if let Some(value) = self.metrics.get(split).and_then(|v| v.get(metric)) {
            return Some(value);
        }
        match (split, metric) {
            ("test", "accuracy") => self.test_accuracy,
            ("val", "accuracy") => self.best_val_accuracy,
            ("baseline", "accuracy") => self.majority_class_accuracy,
            ("test", "loss") => self.test_loss,
            _ => None,
        }
    }
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

    /// Removes what a killed process left half-written in the run folder: temporary files of
    /// [`atomic_write`] (any process id) and of checkpoint saves. Only one process works in a
    /// run folder at a time (a sweep cell is claimed first), so none of them is in use.
    pub fn remove_leftovers(&self) -> Result<()> {
        let entries = fs::read_dir(&self.path)
            .with_context(|| format!("cannot list {}", self.path.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                let path = entry.path();
                fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        crate::checkpoint::remove_leftovers(&self.last_checkpoint())
    }

    /// Rewrites `metrics.csv` from the full history: `step, lr, train_loss, [train_accuracy,]
    /// val_loss, val_<metric>…, tokens_per_second, skipped_steps`; no history, no file.
    pub fn write_metrics(&self, rows: &[MetricsRow]) -> Result<()> {
        let Some(first) = rows.first() else {
            return match fs::remove_file(self.metrics()) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error)
                    .with_context(|| format!("cannot remove {}", self.metrics().display())),
                _ => Ok(()),
            };
        };
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(first.columns().0)?;
        for row in rows {
            writer.serialize(row.columns().1)?;
        }
        atomic_write(&self.metrics(), &writer.into_inner()?)
    }

    /// Writes `summary.json`, which marks the run finished.
    pub fn write_summary(&self, summary: &Summary) -> Result<()> {
        let json = serde_json::to_vec_pretty(summary)?;
        atomic_write(&self.summary(), &json)
    }
}

/// Creates a new, empty folder `<parent>/<base>-<UTC time stamp>` (a `-N` suffix when that
/// exists) and returns it. A folder is never reused, so a finished run is never overwritten;
/// only an existing name moves on to the next suffix, any other failure is the error.
pub fn new_run_folder(parent: &Path, base: &str) -> Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let base = format!("{base}-{stamp}");
    let mut path = parent.join(&base);
    for suffix in 1.. {
        match fs::create_dir(&path) {
            Ok(()) => break,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                path = parent.join(format!("{base}-{suffix}"));
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot create {}", path.display()));
            }
        }
    }
    Ok(path)
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
    sync_folder_of(path)
}

/// Flushes the folder holding `path` to disk, so a rename into it survives a crash.
pub fn sync_folder_of(path: &Path) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> MetricsRow {
        MetricsRow {
            step: 250,
            lr: 0.001,
            train_loss: 1.25,
            train_accuracy: Some(0.5),
            val: MetricValues(vec![("loss".into(), 0.75), ("accuracy".into(), 0.625)]),
            tokens_per_second: 1e-7,
            skipped_steps: 0,
        }
    }

    #[test]
    fn metrics_csv_keeps_the_accuracy_columns_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir {
            path: dir.path().to_path_buf(),
        };
        run.write_metrics(&[row()]).unwrap();
        let text = fs::read_to_string(run.metrics()).unwrap();
        assert_eq!(
            text,
            "step,lr,train_loss,train_accuracy,val_loss,val_accuracy,tokens_per_second,skipped_steps\n\
             250,0.001,1.25,0.5,0.75,0.625,1e-7,0\n"
        );
        assert_eq!(read_metrics(&run.metrics()).unwrap(), vec![row()]);
    }

    #[test]
    fn checkpoint_rows_of_schema_1_still_load() {
        let old = r#"{"step":250,"lr":0.001,"train_loss":1.25,"train_accuracy":0.5,
                      "val_loss":0.75,"val_accuracy":0.625,"tokens_per_second":1e-7}"#;
        let parsed: MetricsRow = serde_json::from_str(old).unwrap();
        assert_eq!(parsed, row());
        let new = serde_json::to_string(&row()).unwrap();
        assert_eq!(serde_json::from_str::<MetricsRow>(&new).unwrap(), row());
    }

    #[test]
    fn metric_values_are_a_json_object_in_the_tasks_order() {
        let values = row().val;
        let json = serde_json::to_string(&values).unwrap();
        assert_eq!(json, r#"{"loss":0.75,"accuracy":0.625}"#);
        assert_eq!(serde_json::from_str::<MetricValues>(&json).unwrap(), values);
    }

    #[test]
    fn a_nan_metric_survives_json_as_null() {
        let values = MetricValues(vec![("loss".into(), f64::NAN), ("accuracy".into(), 0.5)]);
        let json = serde_json::to_string(&values).unwrap();
        assert_eq!(json, r#"{"loss":null,"accuracy":0.5}"#);
        let read = serde_json::from_str::<MetricValues>(&json).unwrap();
        assert!(read.get("loss").unwrap().is_nan());
        assert_eq!(read.get("accuracy"), Some(0.5));
    }

    #[test]
    fn schema_1_summaries_answer_accuracy_queries() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/table/runs/text/performer/s0/summary.json");
        let summary: Summary = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
        assert_eq!(summary.schema_version, 1);
        assert_eq!(summary.selection_metric, "accuracy");
        assert_eq!(summary.metric("test", "accuracy"), Some(0.655));
        assert_eq!(summary.metric("val", "accuracy"), Some(0.665));
        assert_eq!(summary.metric("baseline", "accuracy"), Some(0.1));
        assert_eq!(summary.metric("test", "mcc"), None);
    }
}
