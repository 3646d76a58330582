//! `lra sweep FILE`: run a sweep file's grid (or one shard of it), skipping finished cells and
//! resuming interrupted ones; `--dry-run` lists the cells, `--slurm` writes a job-array script.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use lra_data::TaskData;

use crate::config::{self, ExperimentConfig};
use crate::results::{RunDir, atomic_write};
use crate::sweep::{Cell, CellStatus, Shard, SweepFile, cell_config};
use crate::train::{Outcome, RunOptions, train};
use crate::{device, task};

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
    /// Cells that continued from an earlier invocation's folder.
    pub resumed: Vec<usize>,
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
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            cell.index,
            cell.status(),
            cell.task,
            cell.row,
            cell.seed,
            cell.dir.display()
        );
    }
    let count = |status| cells.iter().filter(|c| c.status() == status).count();
    eprintln!(
        "{} cells: {} finished, {} interrupted, {} new",
        cells.len(),
        count(CellStatus::Finished),
        count(CellStatus::Interrupted),
        count(CellStatus::New)
    );
}

fn run_cells(
    args: &SweepArgs,
    cells: &[Cell],
    configs: &[ExperimentConfig],
) -> Result<SweepReport> {
    let compute = device::parse(&args.device)?;
    let mut report = SweepReport::default();
    let mut data_by_task: HashMap<String, TaskData> = HashMap::new();
    let mut failures = Vec::new();
    for (cell, config) in cells.iter().zip(configs) {
        let status = cell.status();
        if status == CellStatus::Finished {
            report.skipped.push(cell.index);
            continue;
        }
        let result = (|| -> Result<Outcome> {
            let data_key = toml::to_string(&config.task)?;
            if !data_by_task.contains_key(&data_key) {
                data_by_task.insert(data_key.clone(), task::load(&config.task, args.quiet)?);
            }
            let run = prepare_run_dir(cell, config, status)?;
            if !args.quiet {
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
                device: compute.clone(),
                device_name: args.device.clone(),
                stop_at_step: args.stop_at_step,
                quiet: args.quiet,
            };
            train(config, &data_by_task[&data_key], &run, &options)
        })();
        match result {
            Ok(outcome) => {
                if status == CellStatus::Interrupted {
                    report.resumed.push(cell.index);
                }
                match outcome {
                    Outcome::Finished(_) => report.finished.push(cell.index),
                    Outcome::Stopped { .. } => report.stopped.push(cell.index),
                }
            }
            Err(error) => {
                let message = format!(
                    "cell {} ({} / {}): {error:#}",
                    cell.index, cell.row, cell.task
                );
                eprintln!("failed: {message}");
                failures.push(message);
            }
        }
    }
    eprintln!(
        "sweep: {} finished, {} stopped, {} already finished (skipped), {} resumed, {} failed",
        report.finished.len(),
        report.stopped.len(),
        report.skipped.len(),
        report.resumed.len(),
        failures.len()
    );
    if !failures.is_empty() {
        bail!(
            "{} cell(s) failed (the other cells' results are kept):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(report)
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
