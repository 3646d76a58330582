//! `lra data`: generate synthetic data (`generate listops`), turn a task's official files into the
//! compact cache training reads (`prepare`), and check a task's files (`check`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, Subcommand};
use lra_data::listops::{self, GenerateConfig};
use lra_data::pathfinder;
use lra_data::{DataError, Labels, OnProblem, SplitData, TaskData, cache};

use crate::batches::{SeqLen, TrainOrder, make_batch};
use crate::config;
use crate::task::DataSet;

/// Data tools.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a synthetic task's data in its official release format.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Read a task's official files once and write the compact binary cache that `lra run
    /// --data DIR` then reads (memory-mapped) instead: DIR/lra-cache/TASK/{train,val,test}.lrac.
    Prepare(TaskArgs),
    /// Check a task's official files: examples per split, label balance, length statistics,
    /// loader speed, and every problem found (file and line/record).
    Check(CheckArgs),
}

/// Synthetic tasks that can be generated.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// ListOps (`basic_{train,val,test}.tsv`, header `Source<TAB>Target`), as the LRA generator.
    Listops(ListopsArgs),
    /// Pathfinder / Path-X images in the release layout
    /// (`pathfinder<side>/<difficulty>/{imgs,metadata}`), after Linsley et al. 2018.
    Pathfinder(PathfinderArgs),
}

/// Options of `lra data generate pathfinder`; defaults make LRA's Pathfinder (32×32, hard).
#[derive(Debug, Args)]
pub struct PathfinderArgs {
    /// Output folder; the set lands in OUT/pathfinder<side>/<difficulty>/.
    #[arg(long)]
    pub out: PathBuf,
    /// Image side in pixels: 32 Pathfinder, 128 Path-X, 256 Path-256 (any works).
    #[arg(long, default_value_t = 32)]
    pub resolution: u32,
    /// Paddles per target contour: 6 easy, 9 intermediate, 14 hard (the LRA paper's sets).
    #[arg(long, default_value_t = 14)]
    pub contour_length: u32,
    /// Number of images (split 80/10/10 into train/val/test when read).
    #[arg(long, default_value_t = 200_000)]
    pub images: usize,
    /// Images per metadata file and imgs/<k> folder.
    #[arg(long, default_value_t = 1_000)]
    pub images_per_batch: usize,
    /// Random seed; the output does not depend on the thread count.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A task and its data folder.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task (see `lra list`).
    pub task: String,
    /// Folder with the task's official files, or the top of the LRA release (its nested
    /// `lra_release/lra_release/…` folders are searched).
    #[arg(long)]
    pub data: PathBuf,
    /// Pathfinder tasks: the difficulty (contour length 6, 9 or 14); default 14, the paper's sets.
    #[arg(long)]
    pub contour_length: Option<u32>,
    /// GLUE tasks: the checkpoint folder whose tokenizer encodes the texts.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Sequence length: GLUE texts are truncated to it when tokenized; `check` counts longer
    /// documents and times the loader with it (default: the task's preset's `task.max_len`).
    #[arg(long)]
    pub max_len: Option<usize>,
}

impl TaskArgs {
    /// The data set these arguments name.
    pub fn data_set(&self) -> Result<DataSet> {
        let mut settings = toml::Table::new();
        if let Some(length) = self.contour_length {
            settings.insert("contour_length".into(), i64::from(length).into());
        }
        if let Some(tokenizer) = &self.tokenizer {
            settings.insert("tokenizer".into(), tokenizer.display().to_string().into());
        }
        DataSet::new(&self.task, &self.data, &settings, self.max_len())
            .with_context(|| format!("lra data … {} --data {}", self.task, self.data.display()))
    }

    /// `--max-len`, else the task's preset's, else 1024.
    fn max_len(&self) -> usize {
        self.max_len
            .or(self.preset().map(|p| p.task.max_len))
            .unwrap_or(1024)
    }

    /// The task's reference preset, when it has one.
    fn preset(&self) -> Option<config::ExperimentConfig> {
        let task = crate::task::find(&self.task).ok()?;
        config::load_preset(&task.default_preset()).ok()
    }
}

/// Options of `lra data check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: TaskArgs,
    /// Batch size the loader is timed with (default: the task's preset's).
    #[arg(long)]
    pub batch_size: Option<usize>,
}

/// Options of `lra data generate listops`; defaults are the LRA release's.
#[derive(Debug, Args)]
pub struct ListopsArgs {
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Training expressions.
    #[arg(long, default_value_t = 96_000)]
    pub train: usize,
    /// Validation expressions.
    #[arg(long, default_value_t = 2_000)]
    pub val: usize,
    /// Test expressions.
    #[arg(long, default_value_t = 2_000)]
    pub test: usize,
    /// Expressions have strictly more tokens than this.
    #[arg(long, default_value_t = 500)]
    pub min_len: usize,
    /// Expressions have strictly fewer tokens than this.
    #[arg(long, default_value_t = 2_000)]
    pub max_len: usize,
    /// Maximum nesting depth.
    #[arg(long, default_value_t = 10)]
    pub max_depth: usize,
    /// Maximum operator arity.
    #[arg(long, default_value_t = 10)]
    pub max_args: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs a data command.
pub fn execute(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Generate(GenerateCommand::Listops(args)) => generate(&args),
        DataCommand::Generate(GenerateCommand::Pathfinder(args)) => generate_pathfinder(&args),
        DataCommand::Prepare(args) => {
            let dir = prepare(&args.data_set()?)?;
            println!("wrote the {} cache to {}", args.task, dir.display());
            Ok(())
        }
        DataCommand::Check(args) => {
            let report = check(&args)?;
            print!("{report}");
            if !report.problems.is_empty() {
                bail!(
                    "{} problem(s) found in the {} data",
                    report.problems.len(),
                    args.target.task
                );
            }
            Ok(())
        }
    }
}

fn generate_pathfinder(args: &PathfinderArgs) -> Result<()> {
    let config = pathfinder::GeneratorConfig {
        resolution: args.resolution,
        contour_length: args.contour_length,
        images: args.images,
        images_per_batch: args.images_per_batch,
        seed: args.seed,
        shape: None,
    };
    let side = args.resolution;
    let message = format!("drawing {side}×{side} images");
    let bar = crate::progress::bar(args.images as u64, 0, &message, false);
    let stats = pathfinder::generate_with_progress(&config, &args.out, &|| bar.inc(1))
        .context("generating Pathfinder")?;
    bar.finish_and_clear();
    println!(
        "wrote {} images ({} positive) to {} in {:.1} s ({:.0} images/s)",
        stats.images,
        stats.positives,
        stats.dir.display(),
        stats.seconds,
        stats.images as f64 / stats.seconds.max(1e-9)
    );
    Ok(())
}

fn generate(args: &ListopsArgs) -> Result<()> {
    let config = GenerateConfig {
        train: args.train,
        val: args.val,
        test: args.test,
        min_len: args.min_len,
        max_len: args.max_len,
        max_depth: args.max_depth,
        max_args: args.max_args,
        seed: args.seed,
    };
    let splits = listops::generate(&config).context("generating ListOps")?;
    listops::write_dataset(&args.out, &splits)?;
    println!(
        "wrote {} / {} / {} ListOps expressions to {}",
        splits[0].len(),
        splits[1].len(),
        splits[2].len(),
        args.out.display()
    );
    Ok(())
}

/// Reads `task`'s official files under `data` (stopping at the first problem) and writes its
/// cache; returns the cache folder.
pub fn prepare(set: &DataSet) -> Result<PathBuf> {
    let parsed = set.read(OnProblem::Fail).with_context(|| {
        format!(
            "reading the {} files under {}",
            set.task.name(),
            set.root.display()
        )
    })?;
    let dir = set.cache_dir()?;
    cache::write(&dir, &set.cache_name()?, &parsed)?;
    Ok(dir)
}

/// What `lra data check` found.
#[derive(Debug)]
pub struct CheckReport {
    pub task: String,
    pub data: PathBuf,
    /// Statistics of each split that could be read.
    pub splits: Vec<(String, SplitStats)>,
    /// Every problem, as `file:line: message` / `file: record N: message`.
    pub problems: Vec<String>,
    /// Batches per second of the loader on the train split, with the batch shape.
    pub loader: Option<LoaderSpeed>,
}

/// Counts and lengths of one split.
#[derive(Debug)]
pub struct SplitStats {
    pub examples: usize,
    /// Examples per class (empty for scores and unlabelled splits).
    pub label_counts: Vec<usize>,
    /// Min, mean and max of the scores (regression tasks).
    pub score_range: Option<[f64; 3]>,
    /// Document lengths in tokens: min, mean, median, max.
    pub lengths: [f64; 4],
    /// Documents longer than `max_len` (truncated when training).
    pub truncated: usize,
}

/// Loader throughput.
#[derive(Debug)]
pub struct LoaderSpeed {
    pub batch_size: usize,
    pub max_len: usize,
    pub batches_per_second: f64,
}

/// Reads `args.target.task`'s files collecting every problem, then measures the loader.
pub fn check(args: &CheckArgs) -> Result<CheckReport> {
    let set = args.target.data_set()?;
    let (task, data) = (&args.target.task, &args.target.data);
    let max_len = set.max_len;
    let batch_size = args
        .batch_size
        .or(args.target.preset().map(|p| p.train.batch_size))
        .unwrap_or(32);
    let source_problems = set.check_sources()?;
    if !source_problems.is_empty() {
        return Ok(CheckReport {
            task: task.clone(),
            data: data.clone(),
            splits: Vec::new(),
            problems: source_problems,
            loader: None,
        });
    }
    let mut found: Vec<DataError> = Vec::new();
    let parsed = match set.read(OnProblem::Collect(&mut found)) {
        Ok(parsed) => Some(parsed),
        // ListOps stops at its first bad line: report it like the others.
        Err(error)
            if error
                .downcast_ref::<DataError>()
                .is_some_and(is_record_problem) =>
        {
            found.push(error.downcast::<DataError>().expect("checked above"));
            None
        }
        Err(error) => return Err(error),
    };
    let mut problems: Vec<String> = found.iter().map(ToString::to_string).collect();
    let cache_dir = set.cache_dir()?;
    if cache::exists(&cache_dir, set.task.extra_splits())
        && let Err(error) = cache::read(&cache_dir, &set.cache_name()?, set.task.extra_splits())
    {
        problems.push(error.to_string());
    }
    let splits = parsed
        .as_ref()
        .map(|d| {
            d.named_splits()
                .map(|(name, split)| (name.to_string(), split_stats(split, d.num_classes, max_len)))
                .collect()
        })
        .unwrap_or_default();
    let loader = parsed
        .as_ref()
        .filter(|d| !d.train.is_empty())
        .map(|d| loader_speed(d, batch_size, max_len));
    Ok(CheckReport {
        task: task.clone(),
        data: data.clone(),
        splits,
        problems,
        loader,
    })
}

fn is_record_problem(error: &DataError) -> bool {
    matches!(
        error,
        DataError::Parse { .. } | DataError::Record { .. } | DataError::File { .. }
    )
}

fn split_stats(split: &SplitData, num_classes: usize, max_len: usize) -> SplitStats {
    let mut label_counts = Vec::new();
    let mut score_range = None;
    match split.labels() {
        Labels::Classes(classes) => {
            label_counts = vec![0; num_classes];
            for &class in classes {
                label_counts[class as usize] += 1;
            }
        }
        Labels::Scores(scores) if !scores.is_empty() => {
            let values = scores.iter().map(|&s| f64::from(s));
            let mean = values.clone().sum::<f64>() / scores.len() as f64;
            let min = values.clone().fold(f64::INFINITY, f64::min);
            score_range = Some([min, mean, values.fold(f64::NEG_INFINITY, f64::max)]);
        }
        Labels::Scores(_) | Labels::Unlabelled => {}
    }
    let mut lengths: Vec<usize> = split.document_lengths().collect();
    lengths.sort_unstable();
    let truncated = lengths.iter().filter(|&&l| l > max_len).count();
    let stats = if lengths.is_empty() {
        [0.0; 4]
    } else {
        let mean = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
        [
            lengths[0] as f64,
            mean,
            lengths[lengths.len() / 2] as f64,
            lengths[lengths.len() - 1] as f64,
        ]
    };
    SplitStats {
        examples: split.len(),
        label_counts,
        score_range,
        lengths: stats,
        truncated,
    }
}

/// Times batch assembly (ids and masks into CPU tensors) in training order for about a second.
fn loader_speed(data: &TaskData, batch_size: usize, max_len: usize) -> LoaderSpeed {
    let device = Device::flex();
    let mut order = TrainOrder::new(0, data.train.len());
    let started = Instant::now();
    let mut batches = 0;
    while batches < 3 || (started.elapsed().as_secs_f64() < 1.0 && batches < 1000) {
        let indices = order.batch(batches, batch_size);
        std::hint::black_box(make_batch(
            &data.train,
            &indices,
            SeqLen::exactly(max_len),
            &device,
        ));
        batches += 1;
    }
    LoaderSpeed {
        batch_size,
        max_len,
        batches_per_second: batches as f64 / started.elapsed().as_secs_f64(),
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} data under {}", self.task, self.data.display())?;
        for (split, stats) in &self.splits {
            let total = stats.examples.max(1) as f64;
            let mut labels = String::new();
            for (class, count) in stats.label_counts.iter().enumerate() {
                let share = 100.0 * *count as f64 / total;
                let _ = write!(labels, " {class}:{count} ({share:.1}%)");
            }
            if let Some([min, mean, max]) = stats.score_range {
                let _ = write!(
                    labels,
                    " scores min {min:.2} / mean {mean:.2} / max {max:.2}"
                );
            }
            if labels.is_empty() {
                labels.push_str(" none");
            }
            let [min, mean, median, max] = stats.lengths;
            writeln!(
                f,
                "  {:<5} {:>7} examples; labels{labels}\n        length min {min:.0} / mean {mean:.1} / \
                 median {median:.0} / max {max:.0}; {} document(s) longer than the preset length",
                split, stats.examples, stats.truncated
            )?;
        }
        if let Some(speed) = &self.loader {
            writeln!(
                f,
                "  loader: {:.0} batches/s of {} × {} tokens ({:.2} ms per batch)",
                speed.batches_per_second,
                speed.batch_size,
                speed.max_len,
                1000.0 / speed.batches_per_second
            )?;
        }
        if self.problems.is_empty() {
            writeln!(f, "  no problems found")
        } else {
            writeln!(f, "  {} problem(s):", self.problems.len())?;
            self.problems
                .iter()
                .try_for_each(|p| writeln!(f, "    {p}"))
        }
    }
}
