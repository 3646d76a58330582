//! `lra submit`: the GLUE server's upload zip — for every GLUE task the best finished run's
//! submission files (by the task's dev selection metric, over seeds and any other runs of the
//! row), at the top level of one zip as the server wants them (`CoLA.tsv` … `AX.tsv`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use lra_data::glue::GlueTask;

use crate::results::{Summary, atomic_write};
use crate::sweep::SweepFile;
use crate::table::{find_summaries, read_summary};
use crate::task;

/// Options of `lra submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Sweep file whose finished cells are searched; without it, every run under --runs.
    pub sweep: Option<PathBuf>,
    /// Folder searched for finished runs when no sweep file is given.
    #[arg(long, default_value = "results/runs", conflicts_with = "sweep")]
    pub runs: PathBuf,
    /// Only the runs of this sweep row (with a sweep file) or attention (with --runs).
    #[arg(long)]
    pub row: Option<String>,
    /// The zip to write.
    #[arg(long, default_value = "glue-submission.zip")]
    pub out: PathBuf,
    /// Write the zip even when some of the benchmark's files are missing.
    #[arg(long)]
    pub partial: bool,
}

/// A finished run: its folder, its row and its summary.
struct FinishedRun {
    dir: PathBuf,
    row: String,
    summary: Summary,
}

/// Runs `lra submit`; returns the files put in the zip, by name.
pub fn execute(args: &SubmitArgs) -> Result<Vec<String>> {
    let runs: Vec<FinishedRun> = match &args.sweep {
        Some(file) => sweep_runs(file)?,
        None => folder_runs(&args.runs)?,
    };
    let runs: Vec<&FinishedRun> = runs
        .iter()
        .filter(|run| args.row.as_ref().is_none_or(|row| &run.row == row))
        .collect();
    let rows: Vec<&str> = runs.iter().map(|r| r.row.as_str()).collect();
    if rows.iter().any(|&row| row != rows[0]) && args.row.is_none() {
        bail!(
            "runs of several rows ({}): pick one with --row",
            distinct(&rows).join(", ")
        );
    }
    let files = best_files(&runs)?;
    let missing: Vec<&str> = GlueTask::ALL
        .iter()
        .flat_map(|task| task.submission_files())
        .filter(|file| !files.contains_key(*file))
        .collect();
    if !missing.is_empty() && !args.partial {
        bail!(
            "no finished run provides {} (AX.tsv comes from the MNLI run); finish those tasks or \
             pass --partial",
            missing.join(", ")
        );
    }
    write_zip(&args.out, &files)?;
    eprintln!("wrote {} ({} files)", args.out.display(), files.len());
    Ok(files.into_keys().collect())
}

fn distinct<'a>(names: &[&'a str]) -> Vec<&'a str> {
    let mut names = names.to_vec();
    names.sort_unstable();
    names.dedup();
    names
}

fn sweep_runs(file: &Path) -> Result<Vec<FinishedRun>> {
    let sweep = SweepFile::load(file)?;
    let mut runs = Vec::new();
    for cell in sweep.cells() {
        let run = cell.run_dir();
        if run.is_finished() {
            runs.push(FinishedRun {
                summary: read_summary(&run.summary())?,
                dir: run.path,
                row: cell.row,
            });
        }
    }
    Ok(runs)
}

fn folder_runs(root: &Path) -> Result<Vec<FinishedRun>> {
    Ok(find_summaries(root)?
        .into_iter()
        .map(|(path, summary)| FinishedRun {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            row: summary.attention.clone(),
            summary,
        })
        .collect())
}

/// For each task, the submission files of its run with the best dev selection metric.
fn best_files(runs: &[&FinishedRun]) -> Result<BTreeMap<String, PathBuf>> {
    let mut best: BTreeMap<&str, (f64, &FinishedRun)> = BTreeMap::new();
    for run in runs {
        let Ok(task) = task::find(&run.summary.task) else {
            continue;
        };
        let score = run
            .summary
            .metric(task.reported_split(), task.selection_metric().name())
            .unwrap_or(f64::NEG_INFINITY);
        let better = best.get(task.name()).is_none_or(|(s, _)| score > *s);
        if !run.summary.predictions.is_empty() && better {
            best.insert(task.name(), (score, run));
        }
    }
    let mut files = BTreeMap::new();
    for (_, run) in best.values() {
        for relative in run.summary.predictions.values() {
            let path = run.dir.join(relative);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{}: not a file name", path.display()))?
                .to_string();
            files.insert(name, path);
        }
    }
    Ok(files)
}

/// The files at the top level of a zip, written whole or not at all.
fn write_zip(out: &Path, files: &BTreeMap<String, PathBuf>) -> Result<()> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, path) in files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        zip.start_file(name.as_str(), options)?;
        zip.write_all(&bytes)?;
    }
    let bytes = zip.finish()?.into_inner();
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    atomic_write(out, &bytes)
}
