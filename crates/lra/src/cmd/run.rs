//! `lra run`: resolve the experiment config, create (or find) the run folder, train, report.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::config::{self, ExperimentConfig, Request};
use crate::results::{RunDir, atomic_write, new_run_folder};
use crate::train::{Outcome, RunOptions, train};
use crate::{device, task};

/// Options of `lra run`.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Token mixer (see `lra list`); overrides the preset's.
    #[arg(long, short)]
    pub attention: Option<String>,
    /// Task; must match the preset's task.
    #[arg(long, short)]
    pub task: Option<String>,
    /// Named config under experiments/ (e.g. `tiny`, `lra-pytorch/listops`, `glue/sst2`).
    /// Default: the task's (`lra-pytorch/<task>`, `glue/<task>`).
    #[arg(long, short, conflicts_with = "config")]
    pub preset: Option<String>,
    /// Experiment config file (TOML), instead of a preset.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Start from a pretrained Hugging Face BERT/RoBERTa checkpoint folder (`init`): its
    /// config.json replaces the preset's [model], its weights and tokenizer are used.
    #[arg(long, value_name = "DIR")]
    pub init: Option<PathBuf>,
    /// Override any config field, e.g. `--set model.d_model=128 --set mixer.block_size=64`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Training steps (`train.steps`).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed for init, data order and dropout (`seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Folder with the task's data in its official format (`task.data_dir`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Put the run folder under DIR/<task>/<attention>/ instead of results/runs/.
    #[arg(long, default_value = "results/runs")]
    pub out: PathBuf,
    /// Continue an unfinished run: the given run folder, or the latest unfinished one with the
    /// same config under --out.
    #[arg(long, value_name = "RUN_DIR", num_args = 0..=1)]
    pub resume: Option<Option<PathBuf>>,
    /// Compute device: cpu (default), wgpu[:N], vulkan[:N], cuda[:N] or tch[:cpu|cuda:N]; the GPU
    /// backends need the cargo feature of the same name (README, "GPU backends").
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Checkpoint and exit once this many steps are done (continue later with --resume).
    #[arg(long, value_name = "STEP")]
    pub stop_at_step: Option<usize>,
    /// No progress bar or per-evaluation lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `lra run`; returns the run folder and how training ended.
pub fn execute(args: &RunArgs) -> Result<(RunDir, Outcome)> {
    let compute = device::parse(&args.device)?;
    // Data first: a bad data folder fails before any run folder exists.
    let (config, run) = match &args.resume {
        Some(Some(dir)) => {
            let (config, run) = resume_dir(dir, args)?;
            (config, Some(run))
        }
        Some(None) => {
            let config = resolve(args)?;
            let run = find_unfinished(&args.out, &config)?;
            (config, Some(run))
        }
        None => (resolve(args)?, None),
    };
    let data = task::load(&config.task, args.quiet)?;
    let run = match run {
        Some(run) => run,
        None => create_run_dir(&args.out, &config)?,
    };
    if !args.quiet {
        eprintln!(
            "run {}: {} on {} ({} train / {} val / {} test)",
            run.path.display(),
            config.attention,
            config.task.name,
            data.train.len(),
            data.val.len(),
            data.test.len()
        );
    }
    let options = RunOptions {
        device: compute,
        device_name: args.device.clone(),
        stop_at_step: args.stop_at_step,
        quiet: args.quiet,
    };
    let outcome = train(&config, &data, &run, &options)?;
    Ok((run, outcome))
}

/// The config these arguments ask for (see [`config::resolve`]).
pub fn resolve(args: &RunArgs) -> Result<ExperimentConfig> {
    config::resolve(&Request {
        preset: args.preset.clone(),
        config_file: args.config.clone(),
        task: args.task.clone(),
        attention: args.attention.clone(),
        overrides: args.overrides.clone(),
        init: args.init.clone(),
        steps: args.steps,
        seed: args.seed,
        data: args.data.clone(),
    })
}

fn run_parent(out: &Path, config: &ExperimentConfig) -> PathBuf {
    out.join(&config.task.name).join(&config.attention)
}

fn create_run_dir(out: &Path, config: &ExperimentConfig) -> Result<RunDir> {
    let parent = run_parent(out, config);
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let preset = if config.preset.is_empty() {
        "custom"
    } else {
        &config.preset
    };
    let base = format!("{}-s{}", preset.replace('/', "-"), config.seed);
    let run = RunDir {
        path: new_run_folder(&parent, &base)?,
    };
    atomic_write(&run.config(), config.to_toml().as_bytes())?;
    Ok(run)
}

fn find_unfinished(out: &Path, config: &ExperimentConfig) -> Result<RunDir> {
    let parent = run_parent(out, config);
    let mut candidates: Vec<PathBuf> = fs::read_dir(&parent)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .map(|path| RunDir { path })
        .find(|run| {
            !run.is_finished()
                && config::load_file(&run.config()).is_ok_and(|saved| &saved == config)
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no unfinished run with this exact config under {} to resume; \
                 pass the run folder: --resume RUN_DIR",
                parent.display()
            )
        })
}

fn resume_dir(dir: &Path, args: &RunArgs) -> Result<(ExperimentConfig, RunDir)> {
    let changes_config = args.attention.is_some()
        || args.task.is_some()
        || args.preset.is_some()
        || args.config.is_some()
        || !args.overrides.is_empty()
        || args.init.is_some()
        || args.steps.is_some()
        || args.seed.is_some()
        || args.data.is_some();
    if changes_config {
        bail!(
            "--resume {} continues that run with its own config.toml; drop the config flags",
            dir.display()
        );
    }
    let run = RunDir {
        path: dir.to_path_buf(),
    };
    if run.is_finished() {
        bail!(
            "{} is a finished run (it has summary.json); start a new run instead",
            dir.display()
        );
    }
    let config = config::load_file(&run.config())?;
    Ok((config, run))
}
