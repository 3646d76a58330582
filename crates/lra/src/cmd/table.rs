//! `lra table`: collect run summaries into an accuracy table (methods × tasks, average), next to
//! the published numbers; writes Markdown and CSV.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::results::atomic_write;
use crate::sweep::SweepFile;
use crate::table::{
    PublishedNumbers, Table, average_rule, column_names, find_summaries, published_file,
    read_summary,
};

/// Options of `lra table`.
#[derive(Debug, Args)]
pub struct TableArgs {
    /// Sweep file whose cells make the table (rows and tasks in its order). Without it, every
    /// run summary under --runs is used, one row per attention.
    pub sweep: Option<PathBuf>,
    /// Folder searched for `summary.json` files when no sweep file is given.
    #[arg(long, default_value = "results/runs", conflicts_with = "sweep")]
    pub runs: PathBuf,
    /// Published table to compare with (`source` column of experiments/published/lra.csv or
    /// glue.csv, e.g. `LRA-Table1`); default: the sweep file's `published`.
    #[arg(long)]
    pub published: Option<String>,
    /// Markdown output (the CSV goes next to it); default: table.md in the sweep's or runs' folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `lra table`; returns the Markdown it wrote.
pub fn execute(args: &TableArgs) -> Result<String> {
    let numbers = PublishedNumbers::load_all()?;
    let (mut table, default_out) = match &args.sweep {
        Some(file) => from_sweep(file)?,
        None => (from_runs(&args.runs)?, args.runs.join("table.md")),
    };
    if args.published.is_some() {
        table.published_source = args.published.clone();
    }
    if let Some(source) = &table.published_source
        && !numbers.has_source(source)
    {
        bail!(
            "no published table `{source}` in experiments/published/ (lra.csv, glue.csv); see \
             their `source` column"
        );
    }
    if let Some(source) = &table.published_source {
        table.average = average_rule(&published_file("averages.csv"), source)?;
    }
    let out = args.out.clone().unwrap_or(default_out);
    let markdown = table.markdown(&numbers);
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in table.csv_rows(&numbers) {
        writer.serialize(row)?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    atomic_write(&out.with_extension("csv"), &writer.into_inner()?)?;
    atomic_write(&out, markdown.as_bytes())?;
    eprintln!(
        "wrote {} and {}",
        out.display(),
        out.with_extension("csv").display()
    );
    Ok(markdown)
}

fn from_sweep(file: &Path) -> Result<(Table, PathBuf)> {
    let sweep = SweepFile::load(file)?;
    let mut table = Table {
        rows: sweep.rows.iter().map(|r| r.name.clone()).collect(),
        columns: column_names(&sweep.tasks),
        published_source: sweep.published.clone(),
        ..Table::default()
    };
    for cell in sweep.cells() {
        let run = cell.run_dir();
        if run.is_finished() {
            table.add(&cell.row, &cell.task, &read_summary(&run.summary())?);
        }
    }
    Ok((table, sweep.out().join("table.md")))
}

fn from_runs(root: &Path) -> Result<Table> {
    let summaries = find_summaries(root)?;
    if summaries.is_empty() {
        bail!("no finished runs (summary.json) under {}", root.display());
    }
    let mut table = Table::default();
    let mut tasks: Vec<String> = Vec::new();
    for (_, summary) in &summaries {
        if !table.rows.contains(&summary.attention) {
            table.rows.push(summary.attention.clone());
        }
        if !tasks.contains(&summary.task) {
            tasks.push(summary.task.clone());
        }
        table.add(&summary.attention, &summary.task, summary);
    }
    // The registry's order: LRA as in its paper, then GLUE.
    let order = |t: &String| {
        crate::task::TASKS
            .iter()
            .position(|task| task.name() == t)
            .unwrap_or(usize::MAX)
    };
    tasks.sort_by_key(order);
    table.columns = column_names(&tasks);
    Ok(table)
}
