//! Score tables: run summaries collected into rows (methods) × columns (tasks) with the mean
//! over seeds of each task's selection metric on the split the task reports (test for LRA, dev
//! for GLUE), next to published numbers (`experiments/published/lra.csv`, `glue.csv`) and the
//! difference; the average column is taken as the published table defines its own
//! (`experiments/published/averages.csv`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::metrics::Metric;
use crate::results::Summary;
use crate::task;

/// A published accuracy: a percentage, or a failure the paper reports (Path-X "FAIL").
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Published {
    Accuracy(f64),
    Fail,
}

/// The published-numbers files (`lra.csv`, `glue.csv`): one row per (source table, method).
#[derive(Clone, Debug, Default)]
pub struct PublishedNumbers {
    /// (source, method, task) → value.
    values: BTreeMap<(String, String, String), Published>,
}

/// Columns of a published-numbers file that are not tasks.
const NOT_TASKS: [&str; 4] = ["source", "method", "avg", "notes"];

impl PublishedNumbers {
    /// Reads every registered task's published-numbers file (`lra.csv`, `glue.csv`).
    pub fn load_all() -> Result<Self> {
        let mut files: Vec<&str> = task::TASKS
            .iter()
            .filter_map(|t| t.published().map(|p| p.file))
            .collect();
        files.dedup();
        let mut numbers = Self::default();
        for file in files {
            numbers
                .values
                .extend(Self::load(&published_file(file))?.values);
        }
        Ok(numbers)
    }

    /// Reads one published-numbers CSV (`source,method,<tasks…>,avg,notes`): every column other
    /// than those four is a task, named as the task registry names it.
    pub fn load(path: &Path) -> Result<Self> {
        let mut reader = csv::Reader::from_path(path)
            .with_context(|| format!("cannot read published numbers {}", path.display()))?;
        let headers = reader.headers()?.clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| anyhow!("{}: no `{name}` column", path.display()))
        };
        let (source_col, method_col) = (column("source")?, column("method")?);
        let task_cols: Vec<(&str, usize)> = headers
            .iter()
            .enumerate()
            .filter(|(_, name)| !NOT_TASKS.contains(name))
            .map(|(col, name)| (name, col))
            .collect();
        let mut values = BTreeMap::new();
        for (line, record) in reader.records().enumerate() {
            let record =
                record.with_context(|| format!("{}: line {}", path.display(), line + 2))?;
            for &(task, col) in &task_cols {
                let raw = record.get(col).unwrap_or("").trim();
                let value = match raw {
                    "" | "NA" => continue,
                    "FAIL" => Published::Fail,
                    number => Published::Accuracy(number.parse().with_context(|| {
                        format!(
                            "{}: line {}, column `{task}`: expected a percentage or FAIL, found `{number}`",
                            path.display(),
                            line + 2
                        )
                    })?),
                };
                let key = (
                    record[source_col].to_string(),
                    record[method_col].to_string(),
                    task.to_string(),
                );
                values.insert(key, value);
            }
        }
        Ok(Self { values })
    }

    /// The published number of `method` on `task` in table `source`.
    pub fn get(&self, source: &str, method: &str, task: &str) -> Option<Published> {
        self.values
            .get(&(source.to_string(), method.to_string(), task.to_string()))
            .copied()
    }

    /// Whether `source` names a table in the file.
    pub fn has_source(&self, source: &str) -> bool {
        self.values.keys().any(|(s, _, _)| s == source)
    }
}

/// A file under `experiments/published/`: in the working directory, else in the repository.
pub fn published_file(name: &str) -> PathBuf {
    let local = Path::new("experiments/published").join(name);
    if local.is_file() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../experiments/published")
            .join(name)
    }
}

/// How a table's average column is taken.
#[derive(Clone, Debug, PartialEq)]
pub struct AverageRule {
    /// Tasks averaged over; `None`: every task of the table.
    pub tasks: Option<Vec<String>>,
    /// The value a published FAIL counts as; `None`: a FAIL leaves the average undefined.
    pub fail_counts_as: Option<f64>,
    /// The definition in words, printed under the table.
    pub definition: String,
}

impl Default for AverageRule {
    fn default() -> Self {
        Self {
            tasks: None,
            fail_counts_as: None,
            definition: "mean over the table's tasks (MNLI: matched)".to_string(),
        }
    }
}

/// One line of `experiments/published/averages.csv`.
#[derive(Deserialize)]
struct AverageLine {
    source: String,
    tasks: String,
    fail_counts_as: Option<f64>,
    definition: String,
}

/// The average rule of the published table `source` (`averages.csv`), or the plain mean when the
/// file does not define one.
pub fn average_rule(path: &Path, source: &str) -> Result<AverageRule> {
    let mut reader = csv::Reader::from_path(path)
        .with_context(|| format!("cannot read average definitions {}", path.display()))?;
    for (line, record) in reader.deserialize::<AverageLine>().enumerate() {
        let record = record.with_context(|| format!("{}: line {}", path.display(), line + 2))?;
        if record.source == source {
            return Ok(AverageRule {
                tasks: Some(record.tasks.split_whitespace().map(String::from).collect()),
                fail_counts_as: record.fail_counts_as,
                definition: format!("{source}: {}", record.definition),
            });
        }
    }
    Ok(AverageRule::default())
}

/// Test accuracies (in %) of one cell's seeds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores(pub Vec<f64>);

impl Scores {
    fn mean(&self) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.iter().sum::<f64>() / self.0.len() as f64)
    }

    /// Sample standard deviation; `None` below two seeds.
    fn std(&self) -> Option<f64> {
        let mean = self.mean()?;
        let n = self.0.len();
        (n >= 2).then(|| {
            (self.0.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        })
    }
}

/// A table to render: rows in order, columns in order (one per task, two for MNLI: see
/// [`column_names`]), scores per (row, column).
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    pub scores: BTreeMap<(String, String), Scores>,
    /// Source column of the published numbers to compare with.
    pub published_source: Option<String>,
    /// How the average column is taken.
    pub average: AverageRule,
}

/// One line of `table.csv`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TableCsvRow {
    pub method: String,
    /// The column: a task, or a task's second column (`mnli-mm`).
    pub task: String,
    pub seeds: usize,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub published: Option<String>,
    pub delta: Option<f64>,
}

impl Table {
    /// Adds a finished run's scores (each column of its task: the selection metric on the split
    /// the task reports, in %; MNLI also its mismatched dev set) to `row`; a summary without a
    /// column's metric adds nothing there.
    pub fn add(&mut self, row: &str, task: &str, summary: &Summary) {
        for (column, split, metric) in columns_of(task) {
            if let Some(value) = summary.metric(split, metric.name()) {
                self.scores
                    .entry((row.to_string(), column))
                    .or_default()
                    .0
                    .push(value * 100.0);
            }
        }
    }

    /// The columns the average is taken over: the rule's, else one per task (MNLI matched).
    fn averaged_tasks(&self) -> Vec<String> {
        self.average.tasks.clone().unwrap_or_else(|| {
            self.columns
                .iter()
                .filter(|column| !is_second_column(column))
                .cloned()
                .collect()
        })
    }

    fn scores(&self, row: &str, task: &str) -> Option<&Scores> {
        self.scores.get(&(row.to_string(), task.to_string()))
    }

    fn published(&self, numbers: &PublishedNumbers, row: &str, task: &str) -> Option<Published> {
        numbers.get(self.published_source.as_deref()?, row, task)
    }

    /// Markdown: one row per method, one column per task and the average over tasks; each cell
    /// `ours ± std` and, with published numbers, `/ paper (Δ)`.
    pub fn markdown(&self, numbers: &PublishedNumbers) -> String {
        let mut out = String::new();
        if let Some(source) = &self.published_source {
            out.push_str(&format!(
                "Score (%, each task's selection metric on the split it reports: test for LRA, \
                 dev for GLUE), mean ± std over seeds; `ours / {source} (ours − published)`.\n\n"
            ));
        } else {
            out.push_str(
                "Score (%, each task's selection metric on the split it reports: test for LRA, \
                 dev for GLUE), mean ± std over seeds.\n\n",
            );
        }
        out.push_str(&format!(
            "| method | {} | avg |\n",
            self.columns.join(" | ")
        ));
        out.push_str(&format!("|---|{}---|\n", "---|".repeat(self.columns.len())));
        for row in &self.rows {
            let mut cells: Vec<String> = self
                .columns
                .iter()
                .map(|task| {
                    let ours = self.scores(row, task).cloned().unwrap_or_default();
                    format_cell(ours.mean(), ours.std(), self.published(numbers, row, task))
                })
                .collect();
            cells.push(self.average_cell(numbers, row));
            out.push_str(&format!("| {row} | {} |\n", cells.join(" | ")));
        }
        out.push_str(&format!("\navg: {}.\n", self.average.definition));
        out
    }

    /// Mean of our means over the averaged tasks, next to the published numbers averaged the
    /// same way (a FAIL counting as the rule says, or leaving the average undefined).
    fn average_cell(&self, numbers: &PublishedNumbers, row: &str) -> String {
        let tasks = self.averaged_tasks();
        let ours: Option<Vec<f64>> = tasks
            .iter()
            .map(|t| self.scores(row, t).and_then(Scores::mean))
            .collect();
        let theirs: Option<Vec<f64>> = tasks
            .iter()
            .map(|t| match self.published(numbers, row, t)? {
                Published::Accuracy(a) => Some(a),
                Published::Fail => self.average.fail_counts_as,
            })
            .collect();
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        format_cell(
            ours.map(mean),
            None,
            theirs.map(|v| Published::Accuracy(mean(v))),
        )
    }

    /// The table as CSV rows (method, task, seeds, mean, std, published, delta).
    pub fn csv_rows(&self, numbers: &PublishedNumbers) -> Vec<TableCsvRow> {
        let mut rows = Vec::new();
        for row in &self.rows {
            for task in &self.columns {
                let ours = self.scores(row, task).cloned().unwrap_or_default();
                let published = self.published(numbers, row, task);
                rows.push(TableCsvRow {
                    method: row.clone(),
                    task: task.clone(),
                    seeds: ours.0.len(),
                    mean: ours.mean(),
                    std: ours.std(),
                    published: published.map(|p| match p {
                        Published::Accuracy(a) => format!("{a:.2}"),
                        Published::Fail => "FAIL".into(),
                    }),
                    delta: match (ours.mean(), published) {
                        (Some(m), Some(Published::Accuracy(a))) => Some(m - a),
                        _ => None,
                    },
                });
            }
        }
        rows
    }
}

/// `(column, split, metric)` of each table column of `task`; a name the registry does not know
/// gets one column, its test accuracy.
fn columns_of(task: &str) -> Vec<(String, &'static str, Metric)> {
    match task::find(task) {
        Ok(found) => found
            .table_columns()
            .into_iter()
            .map(|column| (column.name.to_string(), column.split, column.metric))
            .collect(),
        Err(_) => vec![(task.to_string(), "test", Metric::Accuracy)],
    }
}

/// The table columns of `tasks`, in order (MNLI's `mnli-mm` right after `mnli`).
pub fn column_names(tasks: &[String]) -> Vec<String> {
    tasks
        .iter()
        .flat_map(|task| columns_of(task).into_iter().map(|(name, _, _)| name))
        .collect()
}

/// Whether `column` is a task's second column (`mnli-mm`), which plain averages leave out so
/// that each task counts once.
fn is_second_column(column: &str) -> bool {
    task::TASKS.iter().any(|task| {
        task.table_columns()
            .iter()
            .skip(1)
            .any(|c| c.name == column)
    })
}

fn format_cell(mean: Option<f64>, std: Option<f64>, published: Option<Published>) -> String {
    let ours = match (mean, std) {
        (Some(m), Some(s)) => format!("{m:.2} ± {s:.2}"),
        (Some(m), None) => format!("{m:.2}"),
        (None, _) => "—".to_string(),
    };
    match (mean, published) {
        (_, None) => ours,
        (Some(m), Some(Published::Accuracy(a))) => format!("{ours} / {a:.2} ({:+.2})", m - a),
        (None, Some(Published::Accuracy(a))) => format!("{ours} / {a:.2}"),
        (_, Some(Published::Fail)) => format!("{ours} / FAIL"),
    }
}

/// Every `summary.json` below `root` (recursively), with its path.
pub fn find_summaries(root: &Path) -> Result<Vec<(PathBuf, Summary)>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "summary.json") {
                found.push((path.clone(), read_summary(&path)?));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Reads one `summary.json`.
pub fn read_summary(path: &Path) -> Result<Summary> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not a run summary", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LRA_TASKS: [&str; 6] = [
        "listops",
        "text",
        "retrieval",
        "image",
        "pathfinder",
        "pathx",
    ];

    #[test]
    fn cells_show_mean_std_published_and_difference() {
        assert_eq!(
            format_cell(Some(37.0), Some(0.5), Some(Published::Accuracy(36.37))),
            "37.00 ± 0.50 / 36.37 (+0.63)"
        );
        assert_eq!(
            format_cell(Some(50.1), None, Some(Published::Fail)),
            "50.10 / FAIL"
        );
        assert_eq!(format_cell(None, None, None), "—");
    }

    /// An empty table of every LRA task, compared with `source` and averaged as it defines.
    fn published_table(source: &str) -> (Table, PublishedNumbers) {
        let table = Table {
            rows: vec!["Transformer".into(), "BigBird".into(), "S4".into()],
            columns: LRA_TASKS.iter().map(|t| t.to_string()).collect(),
            published_source: Some(source.into()),
            average: average_rule(&published_file("averages.csv"), source).unwrap(),
            ..Table::default()
        };
        (table, PublishedNumbers::load_all().unwrap())
    }

    #[test]
    fn averages_follow_each_papers_definition() {
        // LRA Table 1's Avg leaves Path-X out: Transformer 54.39, BigBird 55.01 as printed.
        let (table, numbers) = published_table("LRA-Table1");
        assert_eq!(table.average_cell(&numbers, "Transformer"), "— / 54.39");
        assert_eq!(table.average_cell(&numbers, "BigBird"), "— / 55.01");
        assert!(
            table
                .markdown(&numbers)
                .contains("Path-X (FAIL for every model) is left out")
        );
        // S4 Table 4 averages all six tasks, a FAIL counted as 50: 53.66 and 86.09 as printed.
        let (table, numbers) = published_table("S4-Table4");
        assert_eq!(table.average_cell(&numbers, "Transformer"), "— / 53.66");
        assert_eq!(table.average_cell(&numbers, "S4"), "— / 86.09");
    }

    #[test]
    fn our_average_covers_the_same_tasks_as_the_papers() {
        let (mut table, numbers) = published_table("LRA-Table1");
        for (task, score) in LRA_TASKS.iter().zip([40.0, 60.0, 60.0, 40.0, 70.0, 50.0]) {
            table.scores.insert(
                ("Transformer".into(), task.to_string()),
                Scores(vec![score]),
            );
        }
        // (40 + 60 + 60 + 40 + 70) / 5 = 54; the Path-X run does not enter the average.
        assert_eq!(
            table.average_cell(&numbers, "Transformer"),
            "54.00 / 54.39 (-0.39)"
        );
    }

    #[test]
    fn std_is_the_sample_standard_deviation() {
        let s = Scores(vec![1.0, 3.0]);
        assert_eq!(s.mean(), Some(2.0));
        assert!((s.std().unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(Scores(vec![1.0]).std(), None);
    }
}
