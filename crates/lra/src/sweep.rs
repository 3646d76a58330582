//! Sweep files: a grid of rows (attention + settings) × tasks × seeds, each cell one run of a
//! preset, with a fixed run folder so that a re-run skips finished cells and resumes interrupted
//! ones, a lock file per cell so that any number of workers share one grid without running a cell
//! twice, shards that split the grid between workers, and the Slurm job-array script that runs
//! those shards on a cluster.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::config::{self, ExperimentConfig};
use crate::results::RunDir;
use crate::suggest::explain_unknown;

/// A sweep file (`experiments/sweeps/*.toml`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Preset of each cell; `{task}` is replaced by the cell's task (e.g. `lra-jax/{task}`).
    pub preset: String,
    /// Task names (columns of the table).
    pub tasks: Vec<String>,
    /// Training seeds; each cell runs once per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Overrides applied to every cell (`--set` syntax), before the row's own.
    #[serde(default)]
    pub set: Vec<String>,
    /// A pretrained checkpoint every cell starts from, as `lra run --init` (GLUE sweeps).
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Overrides for every row on one task only (`task_set.text = ["train.batch_size=16"]`).
    #[serde(default)]
    pub task_set: std::collections::BTreeMap<String, Vec<String>>,
    /// Folder of the sweep's runs; default `results/sweeps/<file stem>`.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// `source` column of `experiments/published/lra.csv` to compare with in `lra table`.
    #[serde(default)]
    pub published: Option<String>,
    /// Rows of the table, in order.
    #[serde(rename = "row")]
    pub rows: Vec<Row>,
    /// Cluster resources for `lra sweep --slurm`.
    #[serde(default)]
    pub slurm: SlurmConfig,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// One row: a method name (as printed in the paper's table) and how to run it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Row label; matches the `method` column of the published numbers.
    pub name: String,
    /// Registered mixer name.
    pub attention: String,
    /// The mixer's settings (`[mixer]` keys).
    #[serde(default)]
    pub mixer: toml::Table,
    /// Further overrides for this row (`--set` syntax).
    #[serde(default)]
    pub set: Vec<String>,
    /// Overrides for this row on one task only (`task_set.text = ["mixer.kernel=relu"]`), applied
    /// last: settings the official code changes per task.
    #[serde(default)]
    pub task_set: std::collections::BTreeMap<String, Vec<String>>,
}

/// `#SBATCH` resources of the job array.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    /// Array tasks; each runs shard `i/shards` of the grid. 0 = one per cell.
    pub shards: usize,
    /// At most this many array tasks at once (`%N`); 0 = no limit.
    pub max_parallel: usize,
    pub cpus_per_task: usize,
    /// Memory per task, e.g. `16G`.
    pub mem: String,
    /// Wall-clock limit per task, e.g. `24:00:00`.
    pub time: String,
    /// Partition; empty = the cluster's default.
    pub partition: String,
    /// GPUs per task (`--gres=gpu:N`); 0 = none.
    pub gpus: usize,
    /// `--device` passed to each cell's run.
    pub device: String,
    /// Extra `#SBATCH` lines' arguments, e.g. `["--account=myproject"]`.
    pub extra: Vec<String>,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        Self {
            shards: 0,
            max_parallel: 0,
            cpus_per_task: 2,
            mem: "8G".into(),
            time: "24:00:00".into(),
            partition: String::new(),
            gpus: 0,
            device: "cpu".into(),
            extra: Vec::new(),
        }
    }
}

/// One run of the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Position in the grid (row-major: rows, then tasks, then seeds).
    pub index: usize,
    pub row: String,
    pub attention: String,
    pub task: String,
    pub seed: u64,
    pub preset: String,
    /// The pretrained checkpoint the cell starts from, if any.
    pub init: Option<PathBuf>,
    /// Everything applied on top of the preset, in order.
    pub overrides: Vec<String>,
    /// Fixed run folder: `<out>/<task>/<row slug>/s<seed>`.
    pub dir: PathBuf,
}

/// What a cell's folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellStatus {
    /// No folder yet.
    New,
    /// Started and not finished: the next sweep resumes it from its checkpoint.
    Interrupted,
    /// Its run failed (`failed.txt` holds the error): skipped until `lra sweep --retry-failed`.
    Failed,
    /// Has `summary.json`: skipped.
    Finished,
}

impl fmt::Display for CellStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CellStatus::New => "new",
            CellStatus::Interrupted => "interrupted",
            CellStatus::Failed => "failed",
            CellStatus::Finished => "finished",
        })
    }
}

impl Cell {
    /// The cell's run folder.
    pub fn run_dir(&self) -> RunDir {
        RunDir {
            path: self.dir.clone(),
        }
    }

    /// The error of the cell's last failed run; present only while the cell counts as failed.
    pub fn failure_file(&self) -> PathBuf {
        self.dir.join("failed.txt")
    }

    /// The file whose advisory lock a worker holds while it runs the cell.
    fn lock_file(&self) -> PathBuf {
        self.dir.join(".claim.lock")
    }

    /// Whether the cell is new, interrupted, failed or finished.
    pub fn status(&self) -> CellStatus {
        let run = self.run_dir();
        if run.is_finished() {
            CellStatus::Finished
        } else if self.failure_file().is_file() {
            CellStatus::Failed
        } else if run.config().is_file() {
            CellStatus::Interrupted
        } else {
            CellStatus::New
        }
    }

    /// When the cell's current failure was recorded (`None` when it has none).
    pub fn failed_at(&self) -> Option<SystemTime> {
        fs::metadata(self.failure_file()).ok()?.modified().ok()
    }

    /// Claims the cell for this process, or `None` while another live process holds it.
    ///
    /// The claim is an exclusive advisory lock on a file in the cell's folder. The operating
    /// system drops it when the [`Claim`] is dropped or the process ends in any way (a killed
    /// worker included), so a cell is never held by a dead worker and never run by two live ones.
    pub fn try_claim(&self) -> Result<Option<Claim>> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.lock_file();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the cell lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Claim { _lock: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(error)) => {
                Err(error).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// Whether a live worker holds the cell now (for listings; never creates anything).
    pub fn is_claimed(&self) -> bool {
        // A shared lock taken on a free cell is released when `file` is dropped here.
        File::open(self.lock_file())
            .is_ok_and(|file| matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock)))
    }

    /// The equivalent `lra run` command line (for `--dry-run` listings).
    pub fn command_line(&self) -> String {
        let mut line = format!(
            "lra run --preset {} --attention {} --seed {}",
            self.preset, self.attention, self.seed
        );
        for o in &self.overrides {
            line.push_str(&format!(" --set '{o}'"));
        }
        line
    }
}

/// A cell claimed by this process (see [`Cell::try_claim`]); dropping it releases the cell.
#[derive(Debug)]
pub struct Claim {
    _lock: File,
}

/// `i/N`: the cells whose grid index is `i` modulo `N` (0-based `i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if count > 0 && index < count => Ok(Shard { index, count }),
            _ => bail!("--shard {s}: expected I/N with 0 <= I < N, e.g. 0/4"),
        }
    }
}

impl Shard {
    /// Whether grid cell `index` belongs to this shard.
    pub fn contains(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

impl SweepFile {
    /// Reads and checks a sweep file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read sweep file {}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| anyhow!("{}: invalid TOML: {e}", path.display()))?;
        let mut sweep: SweepFile = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                anyhow!(
                    "{}: `{}`: {}",
                    path.display(),
                    e.path(),
                    explain_unknown(e.inner().message())
                )
            })?;
        if sweep.out.is_none() {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            sweep.out = Some(PathBuf::from("results/sweeps").join(stem.as_ref()));
        }
        sweep
            .check()
            .with_context(|| format!("invalid sweep file {}", path.display()))?;
        Ok(sweep)
    }

    fn check(&self) -> Result<()> {
        if self.rows.is_empty() || self.tasks.is_empty() || self.seeds.is_empty() {
            bail!("`row`, `tasks` and `seeds` must each have at least one entry");
        }
        if !self.preset.contains("{task}") && self.tasks.len() > 1 {
            bail!(
                "`preset = \"{}\"` has no {{task}} placeholder but the sweep has {} tasks",
                self.preset,
                self.tasks.len()
            );
        }
        let mut slugs = HashSet::new();
        for row in &self.rows {
            if !slugs.insert(slug(&row.name)) {
                bail!(
                    "row `{}`: another row has the same folder name `{}`",
                    row.name,
                    slug(&row.name)
                );
            }
            row.attention
                .parse::<lra_model::MixerKind>()
                .with_context(|| format!("row `{}`", row.name))?;
            if let Some(task) = row
                .task_set
                .keys()
                .chain(self.task_set.keys())
                .find(|t| !self.tasks.contains(t))
            {
                bail!(
                    "row `{}`: `task_set.{task}` names a task the sweep does not run (tasks: {})",
                    row.name,
                    self.tasks.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The sweep's output folder.
    pub fn out(&self) -> &Path {
        self.out.as_deref().expect("set by load")
    }

    /// Every cell, in grid order (rows, then tasks, then seeds).
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for row in &self.rows {
            for task in &self.tasks {
                for &seed in &self.seeds {
                    let mut overrides = self.set.clone();
                    overrides.extend(self.task_set.get(task).into_iter().flatten().cloned());
                    overrides.extend(row.set.iter().cloned());
                    overrides.extend(
                        row.mixer
                            .iter()
                            .map(|(key, value)| format!("mixer.{key}={value}")),
                    );
                    overrides.extend(row.task_set.get(task).into_iter().flatten().cloned());
                    cells.push(Cell {
                        index: cells.len(),
                        row: row.name.clone(),
                        attention: row.attention.clone(),
                        task: task.clone(),
                        seed,
                        preset: self.preset.replace("{task}", task),
                        init: self.init.clone(),
                        overrides,
                        dir: self
                            .out()
                            .join(task)
                            .join(slug(&row.name))
                            .join(format!("s{seed}")),
                    });
                }
            }
        }
        cells
    }

    /// Array tasks of the Slurm job: `slurm.shards`, or one per cell.
    pub fn slurm_shards(&self) -> usize {
        match self.slurm.shards {
            0 => self.cells().len(),
            n => n,
        }
    }

    /// An sbatch job-array script whose task `i` runs `lra sweep FILE --shard i/N`.
    pub fn slurm_script(&self, sweep_file: &Path, lra: &Path, workdir: &Path) -> String {
        let s = &self.slurm;
        let shards = self.slurm_shards();
        let name = sweep_file.file_stem().unwrap_or_default().to_string_lossy();
        let limit = match s.max_parallel {
            0 => String::new(),
            n => format!("%{n}"),
        };
        let logs = workdir.join(self.out()).join("slurm");
        let mut lines = vec![
            "#!/bin/bash".to_string(),
            format!("#SBATCH --job-name=lra-{name}"),
            format!("#SBATCH --array=0-{}{limit}", shards - 1),
            format!("#SBATCH --cpus-per-task={}", s.cpus_per_task),
            format!("#SBATCH --mem={}", s.mem),
            format!("#SBATCH --time={}", s.time),
            format!("#SBATCH --output={}/%A_%a.out", logs.display()),
            "#SBATCH --requeue".to_string(),
        ];
        if !s.partition.is_empty() {
            lines.push(format!("#SBATCH --partition={}", s.partition));
        }
        if s.gpus > 0 {
            lines.push(format!("#SBATCH --gres=gpu:{}", s.gpus));
        }
        lines.extend(s.extra.iter().map(|e| format!("#SBATCH {e}")));
        lines.push(String::new());
        lines.push("set -euo pipefail".into());
        lines.push(format!(
            "cd {}",
            shell_quote(&workdir.display().to_string())
        ));
        lines.push(format!(
            "{} sweep {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{shards}\" --device {} --quiet &",
            shell_quote(&lra.display().to_string()),
            shell_quote(&sweep_file.display().to_string()),
            shell_quote(&s.device)
        ));
        lines.extend(REQUEUE_ON_INTERRUPT.lines().map(String::from));
        lines.join("\n") + "\n"
    }
}

/// The job script's tail: on SIGTERM (preemption, the time limit) or SIGINT, the shell passes the
/// signal on to `lra`, which checkpoints at the next step boundary and exits with
/// [`EXIT_INTERRUPTED`](crate::interrupt::EXIT_INTERRUPTED); the array task is then re-queued, and
/// its next start resumes the interrupted cell.
const REQUEUE_ON_INTERRUPT: &str = r#"worker=$!
trap 'kill -TERM "$worker" 2>/dev/null || true' TERM INT
# A trapped signal ends the first wait early; the second one returns lra's own exit status.
wait "$worker" || true
status=0
wait "$worker" || status=$?
if [[ $status -eq 75 ]]; then
    echo "lra checkpointed on a signal; re-queueing job $SLURM_JOB_ID" >&2
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status""#;

/// Resolves a cell's experiment config (preset, row settings, seed).
pub fn cell_config(cell: &Cell) -> Result<ExperimentConfig> {
    let mut overrides = cell.overrides.clone();
    overrides.push(format!("attention=\"{}\"", cell.attention));
    overrides.push(format!("seed={}", cell.seed));
    let mut base = config::load_preset_for(&cell.preset, Some(&cell.task))?;
    if let Some(init) = &cell.init {
        base = base.from_checkpoint(init)?;
    }
    if base.task.name != cell.task {
        bail!(
            "preset `{}` is for task {}, not {}",
            cell.preset,
            base.task.name,
            cell.task
        );
    }
    base.with_overrides(&overrides)?.resolved()
}

/// Folder name for a row label: lower-case letters and digits, other runs of characters → `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(text: &str) -> SweepFile {
        let mut s: SweepFile = toml::from_str(text).unwrap();
        s.out = Some(PathBuf::from("out"));
        s.check().unwrap();
        s
    }

    const GRID: &str = r#"
        preset = "lra-jax/{task}"
        tasks = ["listops"]
        seeds = [0, 1, 2]
        [[row]]
        name = "Transformer"
        attention = "softmax"
        [[row]]
        name = "Linformer (k=16)"
        attention = "linformer"
        mixer = { k = 16 }
        task_set.listops = ["mixer.sharing=\"none\""]
    "#;

    #[test]
    fn cells_cover_rows_tasks_and_seeds_in_order() {
        let cells = sweep(GRID).cells();
        assert_eq!(cells.len(), 6);
        assert_eq!(cells[4].row, "Linformer (k=16)");
        assert_eq!(cells[4].seed, 1);
        assert_eq!(cells[4].overrides, ["mixer.k=16", "mixer.sharing=\"none\""]);
        assert_eq!(cells[1].overrides, Vec::<String>::new());
        assert_eq!(cells[4].dir, Path::new("out/listops/linformer-k-16/s1"));
    }

    #[test]
    fn a_cell_is_claimed_by_one_holder_at_a_time() {
        let root = tempfile::tempdir().unwrap();
        let mut s = sweep(GRID);
        s.out = Some(root.path().join("out"));
        let cell = &s.cells()[1];
        assert!(!cell.is_claimed());
        let claim = cell.try_claim().unwrap().expect("a free cell");
        assert!(cell.is_claimed());
        // A second open file, as another worker has, cannot take it.
        assert!(cell.try_claim().unwrap().is_none());
        assert_eq!(cell.status(), CellStatus::New, "claiming is not starting");
        drop(claim);
        assert!(!cell.is_claimed());
        assert!(cell.try_claim().unwrap().is_some());
    }

    #[test]
    fn shards_partition_the_grid() {
        let cells = sweep(GRID).cells();
        for count in 1..=7 {
            let mut seen = vec![0; cells.len()];
            for index in 0..count {
                let shard: Shard = format!("{index}/{count}").parse().unwrap();
                for cell in cells.iter().filter(|c| shard.contains(c.index)) {
                    seen[cell.index] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count} shards: {seen:?}");
        }
    }

    #[test]
    fn bad_shards_and_duplicate_rows_are_rejected() {
        for bad in ["3/3", "1", "a/2", "0/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let mut s: SweepFile = toml::from_str(&format!(
            "{GRID}\n[[row]]\nname = \"transformer\"\nattention = \"softmax\""
        ))
        .unwrap();
        s.out = Some("out".into());
        let error = s.check().unwrap_err().to_string();
        assert!(error.contains("same folder name `transformer`"), "{error}");
    }

    #[test]
    fn slurm_script_runs_one_shard_per_array_task() {
        let mut s = sweep(GRID);
        s.slurm.shards = 3;
        s.slurm.max_parallel = 2;
        s.slurm.partition = "gpu".into();
        let script = s.slurm_script(
            Path::new("experiments/sweeps/x.toml"),
            Path::new("/opt/lra"),
            Path::new("/work"),
        );
        assert!(script.contains("#SBATCH --array=0-2%2\n"), "{script}");
        assert!(script.contains("#SBATCH --partition=gpu\n"));
        assert!(script.contains(
            "/opt/lra sweep experiments/sweeps/x.toml --shard \"${SLURM_ARRAY_TASK_ID}/3\""
        ));
        // Preempted: lra exits with 75 after its checkpoint, and the task goes back in the queue.
        assert!(script.contains("#SBATCH --requeue\n"));
        assert!(script.contains(&format!(
            "if [[ $status -eq {} ]]",
            crate::interrupt::EXIT_INTERRUPTED
        )));
        assert!(script.contains("scontrol requeue \"$SLURM_JOB_ID\""));
    }
}
