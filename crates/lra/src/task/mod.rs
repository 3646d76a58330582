//! The task registry: one [`Task`] per benchmark task, listed once in [`TASKS`]. A task says how
//! its data is read (or generated), how examples enter the model ([`InputLayout`]), what the model
//! predicts ([`Objective`]), which metrics it reports and which one selects the best checkpoint,
//! and where its published numbers live. Everything else (training, evaluation, results, tables)
//! reads these answers instead of matching on task names.
//!
//! Add a task: a module here implementing [`Task`] (a reader in `lra-data`, a settings struct for
//! its own `[task]` keys) and one line in [`TASKS`].

mod glue;
mod image;
mod listops;
mod pathfinder;
mod retrieval;
mod settings;
mod text;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use lra_data::{DataError, OnProblem, TaskData, cache};

use crate::config::TaskConfig;
use crate::metrics::Metric;
use crate::objective::{Objective, Predictions};
use crate::results::atomic_write;
use crate::suggest::unknown_name;

pub use settings::parse_settings;

/// Every registered task: LRA in its paper's table order, then GLUE in the benchmark's.
pub static TASKS: &[&dyn Task] = &[
    &listops::Listops,
    &text::Text,
    &retrieval::Retrieval,
    &image::Image,
    &pathfinder::PATHFINDER,
    &pathfinder::PATH_X,
    &pathfinder::PATH_256,
    &glue::COLA,
    &glue::SST2,
    &glue::MRPC,
    &glue::STSB,
    &glue::QQP,
    &glue::MNLI,
    &glue::QNLI,
    &glue::RTE,
    &glue::WNLI,
];

/// How a task's examples enter the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputLayout {
    /// One token sequence per example.
    Single,
    /// Two documents encoded separately by one shared encoder, classified from
    /// `[a, b, a·b, a − b]` (LRA retrieval).
    DualEncoder,
    /// Texts encoded by a pretrained tokenizer into one sequence with token types (one sentence,
    /// or a pair joined by separator tokens: GLUE).
    Tokenized,
}

impl InputLayout {
    /// Documents stored per example.
    pub fn documents(self) -> usize {
        match self {
            InputLayout::Single | InputLayout::Tokenized => 1,
            InputLayout::DualEncoder => 2,
        }
    }
}

/// A score-table column: `metric` on `split` of a run's summary, under `name` (also the column of
/// the published-numbers file that it is compared with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableColumn {
    pub name: &'static str,
    pub split: &'static str,
    pub metric: Metric,
}

/// Where a task's published numbers are: a column of a file under `experiments/published/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishedColumn {
    pub file: &'static str,
    pub column: &'static str,
}

/// What the harness needs to know about one task.
pub trait Task: Sync {
    /// Name on the command line, in configs and in run folders.
    fn name(&self) -> &'static str;
    /// One line for `lra list`.
    fn summary(&self) -> &'static str;
    /// How examples enter the model.
    fn input(&self) -> InputLayout;
    /// Token ids of the task's vocabulary, padding included (the embedding's rows).
    /// (With these settings: GLUE's vocabulary is its tokenizer's.)
    fn vocab_size(&self, settings: &toml::Table) -> Result<usize>;
    /// What the model predicts and the loss it trains with.
    fn objective(&self) -> Objective;
    /// Metrics reported on every evaluated split (the loss is always reported too).
    fn metrics(&self) -> &'static [Metric] {
        &[Metric::Accuracy]
    }
    /// The metric that picks the best checkpoint (higher is better).
    fn selection_metric(&self) -> Metric {
        self.metrics()[0]
    }
    /// Where the task's published numbers are.
    fn published(&self) -> Option<PublishedColumn>;
    /// The split whose scores tables report: `test`, or `val` where the benchmark withholds test
    /// answers and papers report the dev set (GLUE).
    fn reported_split(&self) -> &'static str {
        "test"
    }
    /// The score-table columns this task's runs fill, the first named as the task: its selection
    /// metric on the reported split. MNLI adds its mismatched dev set (`mnli-mm`), which the
    /// papers print beside the matched one.
    fn table_columns(&self) -> Vec<TableColumn> {
        vec![TableColumn {
            name: self.name(),
            split: self.reported_split(),
            metric: self.selection_metric(),
        }]
    }
    /// The preset `lra run --task NAME` starts from.
    fn default_preset(&self) -> String {
        format!("lra-pytorch/{}", self.name())
    }
    /// Checks the task's own `[task]` keys and returns them with every default filled in.
    fn resolve_settings(&self, settings: &toml::Table) -> Result<toml::Table>;
    /// Name of the prepared cache folder of the data set `set` selects (at most 16 bytes).
    fn cache_name(&self, set: &DataSet) -> Result<String> {
        let _ = set;
        Ok(self.name().to_string())
    }
    /// Names of the evaluation splits beyond validation and test (MNLI's mismatched sets, AX).
    fn extra_splits(&self) -> &'static [&'static str] {
        &[]
    }
    /// The commands that make the data `set` names when its files are missing: the download or
    /// generator (with its expected time), then the check to run. Ends the "not found" error.
    fn fetch_hint(&self, set: &DataSet) -> String;
    /// Reads the official-format files under `root` (which may be the top of the release).
    /// `set.root` may be the top of the release; `set.max_len` is the model's sequence length,
    /// which tasks that tokenize while reading (GLUE) truncate to.
    fn read(&self, set: &DataSet, on_problem: OnProblem) -> Result<TaskData>;
    /// Problems found by a check of the source files that reading alone would not find (e.g.
    /// corrupt or duplicate Pathfinder images); empty when there is none.
    fn check_sources(&self, root: &Path, settings: &toml::Table) -> Result<Vec<String>> {
        let _ = (root, settings);
        Ok(Vec::new())
    }
    /// Writes a model's answers on the unlabelled split `split` in the form the task's benchmark
    /// takes them, inside the run folder `run_dir`, and returns the file's path relative to it.
    /// Default: `predictions/<split>.tsv` with the lines `index<TAB>prediction`.
    fn write_predictions(
        &self,
        config: &TaskConfig,
        run_dir: &Path,
        split: &str,
        predictions: &Predictions,
    ) -> Result<PathBuf> {
        let _ = config;
        let relative = Path::new("predictions").join(format!("{split}.tsv"));
        let mut text = String::from("index\tprediction\n");
        for index in 0..predictions.len() {
            text.push_str(&format!("{index}\t{}\n", predictions.text(index)));
        }
        let path = run_dir.join(&relative);
        std::fs::create_dir_all(run_dir.join("predictions"))
            .with_context(|| format!("cannot create {}", run_dir.join("predictions").display()))?;
        atomic_write(&path, text.as_bytes())?;
        Ok(relative)
    }
    /// Makes the data in `data_dir` when it is missing and the settings say how (synthetic tasks).
    fn generate_if_missing(
        &self,
        data_dir: &Path,
        settings: &toml::Table,
        quiet: bool,
    ) -> Result<()> {
        let _ = (data_dir, settings, quiet);
        Ok(())
    }
}

/// The end of a "not found" error for data that comes as one archive: where to download it
/// (`size`), how to unpack it into `root` (where `lra run --data` and the presets look) and the
/// check to run next.
pub fn download_hint(task: &str, url: &str, size: &str, root: &Path) -> String {
    let archive = url.rsplit('/').next().unwrap_or(url);
    let root = root.display();
    format!(
        "Next: download {url} ({size}), unpack it with \
         `mkdir -p {root} && tar xzf {archive} -C {root}`, then check it (a minute or two): \
         `lra data check {task} --data {root}`"
    )
}

/// The task called `name`, or an error listing the tasks (and the closest name).
pub fn find(name: &str) -> Result<&'static dyn Task> {
    TASKS
        .iter()
        .copied()
        .find(|task| task.name() == name)
        .ok_or_else(|| unknown_name("task", name, TASKS.iter().map(|t| t.name())))
}

/// One task's data: the task, the folder its files are under, the task's settings (which
/// select e.g. the Pathfinder difficulty or GLUE's tokenizer) and the model's sequence length.
#[derive(Clone)]
pub struct DataSet {
    pub task: &'static dyn Task,
    pub root: PathBuf,
    /// The task's settings, checked and with defaults filled in.
    pub settings: toml::Table,
    /// Tokens per sequence the model takes (`task.max_len`).
    pub max_len: usize,
}

impl DataSet {
    /// The data of task `name` under `root` with `settings` (checked by the task), for a model
    /// of `max_len` tokens.
    pub fn new(name: &str, root: &Path, settings: &toml::Table, max_len: usize) -> Result<Self> {
        let task = find(name)?;
        Ok(Self {
            task,
            root: root.to_path_buf(),
            settings: task.resolve_settings(settings)?,
            max_len,
        })
    }

    /// The data a task config names.
    pub fn of(config: &TaskConfig) -> Result<Self> {
        Self::new(
            &config.name,
            &config.data_dir,
            &config.settings,
            config.max_len,
        )
    }

    /// Name of the prepared cache: the task, plus what the settings select (`pathx-cl14`).
    pub fn cache_name(&self) -> Result<String> {
        self.task.cache_name(self)
    }

    /// The folder `lra data prepare` writes the cache into.
    pub fn cache_dir(&self) -> Result<PathBuf> {
        Ok(cache::cache_dir(&self.root, &self.cache_name()?))
    }

    /// Reads the official-format files; when they are missing, the error ends with the commands
    /// that fetch or make them.
    pub fn read(&self, on_problem: OnProblem) -> Result<TaskData> {
        self.task
            .read(self, on_problem)
            .map_err(|error| self.hint_if_missing(error))
    }

    /// Problems of the source files that reading alone would not find (see
    /// [`Task::check_sources`]); missing files end with the commands that fetch them.
    pub fn check_sources(&self) -> Result<Vec<String>> {
        self.task
            .check_sources(&self.root, &self.settings)
            .map_err(|error| self.hint_if_missing(error))
    }

    /// `error`, ending with the task's fetch hint when its cause is missing files.
    fn hint_if_missing(&self, error: anyhow::Error) -> anyhow::Error {
        let missing = error
            .chain()
            .any(|cause| matches!(cause.downcast_ref(), Some(DataError::Missing(_))));
        if missing {
            anyhow!("{error:#}\n{}", self.task.fetch_hint(self))
        } else {
            error
        }
    }

    /// Reads (or first generates) the train/val/test splits: from the prepared cache when
    /// `lra data prepare` wrote one, otherwise from the official files.
    pub fn load(&self, quiet: bool) -> Result<TaskData> {
        let name = self.task.name();
        let dir = self.cache_dir()?;
        let extra = self.task.extra_splits();
        if cache::exists(&dir, extra) {
            return cache::read(&dir, &self.cache_name()?, extra)
                .with_context(|| format!("loading the prepared {name} cache"));
        }
        self.task
            .generate_if_missing(&self.root, &self.settings, quiet)?;
        self.read(OnProblem::Fail)
            .with_context(|| format!("loading {name} data from {}", self.root.display()))
    }
}

/// Reads (or first generates) the data a task config names.
pub fn load(config: &TaskConfig, quiet: bool) -> Result<TaskData> {
    DataSet::of(config)?.load(quiet)
}
