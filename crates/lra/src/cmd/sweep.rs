//! `lra sweep FILE`: run a sweep file's grid (or one shard of it), skipping finished cells and
//! resuming interrupted ones; any number of workers may run one file at once (cells are claimed
//! by lock files). `--dry-run` lists the cells, `--slurm` writes a job-array script.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;
use lra_data::TaskData;

use crate::config::{self, ExperimentConfig};
use crate::results::{RunDir, atomic_write};
use crate::sweep::{Cell, CellStatus, Shard, SweepFile, cell_config};
use crate::train::{Outcome, RunOptions, train};
use crate::{device, interrupt, task};

/// Options of `lra sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Sweep file (e.g. experiments/sweeps/lra-table1.toml).
    pub file: PathBuf,
    /// Run only the cells whose grid index is I modulo N (0-based), e.g. `--shard 2/8`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// List the cells (with their status and run folder) without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Write an sbatch job-array script (one array task per shard) instead of running.
    #[arg(long, conflicts_with = "dry_run")]
    pub slurm: bool,
    /// Compute device for every run.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Run the cells whose last run failed again (failures recorded before this sweep started;
    /// without it they are skipped, their error kept in the cell's `failed.txt`).
    #[arg(long)]
    pub retry_failed: bool,
    /// Checkpoint and leave each run once it reaches this step (continue with a later sweep).
    #[arg(long, value_name = "STEP")]
    pub stop_at_step: Option<usize>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// What a sweep invocation did, per cell index.
#[derive(Debug, Default, PartialEq)]
pub struct SweepReport {
    /// Cells trained to the end by this invocation.
    pub finished: Vec<usize>,
    /// Cells left at `--stop-at-step`.
    pub stopped: Vec<usize>,
    /// Cells that were finished already.
    pub skipped: Vec<usize>,
    /// Cells that continued from an earlier invocation's folder (or a killed worker's).
    pub resumed: Vec<usize>,
    /// Cells whose run failed in this invocation (marked failed, the error in `failed.txt`).
    pub failed: Vec<usize>,
    /// Cells that had failed before and were not retried.
    pub skipped_failed: Vec<usize>,
    /// The cell checkpointed and left on SIGTERM/SIGINT; the worker took no further cell.
    pub interrupted: Vec<usize>,
}

/// Runs `lra sweep`.
pub fn execute(args: &SweepArgs) -> Result<SweepReport> {
    let sweep = SweepFile::load(&args.file)?;
    if args.slurm {
        write_slurm_script(args, &sweep)?;
        return Ok(SweepReport::default());
    }
    let cells: Vec<Cell> = sweep
        .cells()
        .into_iter()
        .filter(|cell| args.shard.is_none_or(|shard| shard.contains(cell.index)))
        .collect();
    // Every cell's config first: a typo anywhere fails before any training starts.
    let configs = cells
        .iter()
        .map(|cell| {
            cell_config(cell)
                .with_context(|| format!("cell {} ({} / {})", cell.index, cell.row, cell.task))
        })
        .collect::<Result<Vec<_>>>()?;
    if args.dry_run {
        print_cells(&cells);
        return Ok(SweepReport::default());
    }
    run_cells(args, &cells, &configs)
}

fn write_slurm_script(args: &SweepArgs, sweep: &SweepFile) -> Result<()> {
    // The array tasks run this binary: a device it was not built for would fail every task.
    device::parse(&sweep.slurm.device).with_context(|| {
        format!(
            "{}: `slurm.device = \"{}\"` is not available in this build of lra",
            args.file.display(),
            sweep.slurm.device
        )
    })?;
    let lra = std::env::current_exe().context("cannot locate the lra binary")?;
    let workdir = std::env::current_dir().context("cannot read the current folder")?;
    let script = sweep.slurm_script(&args.file, &lra, &workdir);
    let logs = sweep.out().join("slurm");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let path = logs.join("sweep.sbatch");
    atomic_write(&path, script.as_bytes())?;
    println!("{}", path.display());
    eprintln!(
        "wrote a {}-task job array; submit it with: sbatch {}",
        sweep.slurm_shards(),
        path.display()
    );
    Ok(())
}

fn print_cells(cells: &[Cell]) {
    println!("| cell | status | task | row | seed | run folder |");
    println!("|---|---|---|---|---|---|");
    for cell in cells {
        let status = match cell.status() {
            CellStatus::Failed => format!(
                "failed: {}",
                fs::read_to_string(cell.failure_file())
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .replace('|', "\\|")
            ),
            status if status != CellStatus::Finished && cell.is_claimed() => "running".into(),
            status => status.to_string(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            cell.index,
            status,
            cell.task,
            cell.row,
            cell.seed,
            cell.dir.display()
        );
    }
    let count = |status| cells.iter().filter(|c| c.status() == status).count();
    eprintln!(
        "{} cells: {} finished, {} interrupted, {} failed, {} new",
        cells.len(),
        count(CellStatus::Finished),
        count(CellStatus::Interrupted),
        count(CellStatus::Failed),
        count(CellStatus::New)
    );
}

/// How long a worker waits before looking again at cells other workers hold.
const CLAIM_POLL: Duration = Duration::from_millis(500);

/// Runs every cell not finished yet. Each cell is claimed first (see [`Cell::try_claim`]); cells
/// other workers hold are visited again until they are finished, failed, or free because their
/// worker died, in which case this worker takes them over and resumes them.
fn run_cells(
    args: &SweepArgs,
    cells: &[Cell],
    configs: &[ExperimentConfig],
) -> Result<SweepReport> {
    let mut worker = Worker {
        args,
        compute: device::parse(&args.device)?,
        started: SystemTime::now(),
        data_by_task: HashMap::new(),
        report: SweepReport::default(),
        failures: Vec::new(),
    };
    let mut pending: Vec<usize> = (0..cells.len()).collect();
    while !pending.is_empty() {
        let mut held_elsewhere = Vec::new();
        for &i in &pending {
            if interrupt::requested() {
                return worker.finish();
            }
            if !worker.visit(&cells[i], &configs[i])? {
                held_elsewhere.push(i);
            }
        }
        if held_elsewhere.len() == pending.len() {
            if !args.quiet {
                eprintln!(
                    "waiting for {} cell(s) other workers are running",
                    held_elsewhere.len()
                );
            }
            std::thread::sleep(CLAIM_POLL);
        }
        pending = held_elsewhere;
    }
    worker.finish()
}

/// One sweep process: what it loaded, did and saw go wrong.
struct Worker<'a> {
    args: &'a SweepArgs,
    compute: burn::tensor::Device,
    /// Failures recorded before this moment may be retried (`--retry-failed`); later ones were
    /// retried already by a concurrent worker.
    started: SystemTime,
    data_by_task: HashMap<String, TaskData>,
    report: SweepReport,
    failures: Vec<String>,
}

impl Worker<'_> {
    /// Settles `cell` if it can: skips it (finished, or failed and not to be retried), or claims
    /// and runs it. `Ok(false)` when another live worker holds it.
    fn visit(&mut self, cell: &Cell, config: &ExperimentConfig) -> Result<bool> {
        if self.skip(cell) {
            return Ok(true);
        }
        let Some(_claim) = cell.try_claim()? else {
            return Ok(false);
        };
        // Another worker may have settled the cell between the first look and the claim.
        if self.skip(cell) {
            return Ok(true);
        }
        if cell.status() == CellStatus::Failed {
            fs::remove_file(cell.failure_file()).with_context(|| {
                format!("cannot clear {} to retry", cell.failure_file().display())
            })?;
        }
        let status = cell.status();
        match self.run(cell, config, status) {
            Ok(outcome) => {
                if status == CellStatus::Interrupted {
                    self.report.resumed.push(cell.index);
                }
                match outcome {
                    Outcome::Finished(_) => self.report.finished.push(cell.index),
                    Outcome::Stopped { .. } => self.report.stopped.push(cell.index),
                    Outcome::Interrupted { .. } => self.report.interrupted.push(cell.index),
                }
            }
            Err(error) => self.record_failure(cell, &error),
        }
        Ok(true)
    }

    /// Whether the cell needs nothing from this worker; notes why in the report.
    fn skip(&mut self, cell: &Cell) -> bool {
        match cell.status() {
            CellStatus::Finished => {
                self.report.skipped.push(cell.index);
                true
            }
            CellStatus::Failed
                if !self.args.retry_failed
                    || cell.failed_at().is_some_and(|at| at >= self.started) =>
            {
                self.report.skipped_failed.push(cell.index);
                true
            }
            _ => false,
        }
    }

    /// Trains a claimed cell that is new or interrupted (`status`).
    fn run(
        &mut self,
        cell: &Cell,
        config: &ExperimentConfig,
        status: CellStatus,
    ) -> Result<Outcome> {
        let data_key = toml::to_string(&config.task)?;
        if !self.data_by_task.contains_key(&data_key) {
            let data = task::load(&config.task, self.args.quiet)?;
            self.data_by_task.insert(data_key.clone(), data);
        }
        let run = prepare_run_dir(cell, config, status)?;
        if !self.args.quiet {
            eprintln!(
                "cell {} ({status}): {} on {} seed {} → {}",
                cell.index,
                cell.row,
                cell.task,
                cell.seed,
                cell.dir.display()
            );
        }
        let options = RunOptions {
            device: self.compute.clone(),
            device_name: self.args.device.clone(),
            stop_at_step: self.args.stop_at_step,
            quiet: self.args.quiet,
        };
        train(config, &self.data_by_task[&data_key], &run, &options)
    }

    /// Marks the cell failed with its error (so no worker retries it before `--retry-failed`).
    fn record_failure(&mut self, cell: &Cell, error: &anyhow::Error) {
        let mut message = format!(
            "cell {} ({} / {}): {error:#}",
            cell.index, cell.row, cell.task
        );
        eprintln!("failed: {message}");
        if let Err(not_recorded) =
            atomic_write(&cell.failure_file(), format!("{error:#}\n").as_bytes())
        {
            message.push_str(&format!(
                " (and the failure was not recorded: {not_recorded:#})"
            ));
        }
        self.report.failed.push(cell.index);
        self.failures.push(message);
    }

    fn finish(self) -> Result<SweepReport> {
        let report = self.report;
        eprintln!(
            "sweep: {} finished, {} stopped, {} already finished (skipped), {} resumed, {} failed, \
             {} failed earlier (skipped){}",
            report.finished.len(),
            report.stopped.len(),
            report.skipped.len(),
            report.resumed.len(),
            self.failures.len(),
            report.skipped_failed.len(),
            if interrupt::requested() {
                "; interrupted by a signal (checkpoints written; run the sweep again to continue)"
            } else {
                ""
            }
        );
        if !report.skipped_failed.is_empty() && !self.args.quiet {
            eprintln!(
                "cells that failed before are listed by `lra sweep {} --dry-run`; \
                 `--retry-failed` runs them again",
                self.args.file.display()
            );
        }
        if !self.failures.is_empty() {
            bail!(
                "{} cell(s) failed (each error is kept in its failed.txt; the other cells' \
                 results are kept; `--retry-failed` runs them again):\n{}",
                self.failures.len(),
                self.failures.join("\n")
            );
        }
        Ok(report)
    }
}

/// The cell's folder with its config.toml: created for a new cell; for an interrupted one the
/// saved config must equal the sweep's, so a changed sweep file never continues a different run.
fn prepare_run_dir(cell: &Cell, config: &ExperimentConfig, status: CellStatus) -> Result<RunDir> {
    let run = cell.run_dir();
    if status == CellStatus::Interrupted {
        let saved = config::load_file(&run.config())?;
        if &saved != config {
            bail!(
                "{} holds a run with another config than the sweep file now gives this cell; \
                 move that folder away (or restore the sweep file) to continue",
                run.config().display()
            );
        }
    } else {
        std::fs::create_dir_all(&run.path)
            .with_context(|| format!("cannot create {}", run.path.display()))?;
        atomic_write(&run.config(), config.to_toml().as_bytes())?;
    }
    Ok(run)
}
