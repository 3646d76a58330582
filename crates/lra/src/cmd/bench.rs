//! `lra bench`: wall-clock and peak-memory benchmarks on the chosen device, written as CSV, a
//! Markdown table and log-log SVG charts with the fitted slope per method.
//!
//! - `mixers`: one mixer on random `[batch, n, d_model]` input, per n (forward, or forward+backward);
//! - `attention`: the exact attention operations alone (`flash`, the materialised `softmax` op) on
//!   random `[batch, heads, n, head_dim]` q, k, v — the counterpart of PyTorch's
//!   `scaled_dot_product_attention` in `scripts/bench_pytorch.py sdpa`;
//! - `step`: one training step (forward, backward, AdamW update) of a preset's model;
//! - `efficiency`: the LRA paper's efficiency table — a preset's whole model at n = 1K…4K (or
//!   beyond) for several attentions, steps/s and peak memory relative to softmax.
//!
//! Time on an otherwise idle machine and compare ratios taken in the same session.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use clap::{Args, Subcommand, ValueEnum};
use lra_model::ops::{flash_attention, softmax_attention};
use lra_model::{MixerDims, MixerInput, MixerKind, TokenMixer};
use serde::{Deserialize, Serialize};

use super::run::{RunArgs, resolve};
use crate::batches::Batch;
use crate::config::ExperimentConfig;
use crate::plot::{Series, log_log_svg};
use crate::results::atomic_write;
use crate::train::logits;
use crate::{device, memory};

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Mixer time and peak memory against sequence length.
    Mixers(MixerArgs),
    /// Exact attention operations alone (no projections) against sequence length.
    Attention(AttentionArgs),
    /// One training step of a preset's model (forward, backward, optimiser update).
    Step(StepArgs),
    /// The LRA efficiency table: a preset's model at several lengths and attentions.
    Efficiency(EfficiencyArgs),
}

/// Which passes are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Forward + backward (+ the optimiser update for whole-model steps).
    Train,
    /// Forward only, without autodiff (inference).
    Forward,
    /// Both, as separate rows.
    Both,
}

impl Mode {
    fn passes(self) -> &'static [Mode] {
        match self {
            Mode::Both => &[Mode::Train, Mode::Forward],
            Mode::Train => &[Mode::Train],
            Mode::Forward => &[Mode::Forward],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Forward => "forward",
            Mode::Both => "both",
        }
    }
}

/// Options of `lra bench mixers`.
#[derive(Debug, Args)]
pub struct MixerArgs {
    /// Mixers to time (comma-separated); default: all registered.
    #[arg(long, value_delimiter = ',')]
    pub attention: Vec<String>,
    /// Sequence lengths (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "512,1024,2048,4096")]
    pub seq_len: Vec<usize>,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub d_model: usize,
    #[arg(long, default_value_t = 2)]
    pub heads: usize,
    /// Forward+backward (`train`), forward only, or both.
    #[arg(long, value_enum, default_value_t = Mode::Train)]
    pub mode: Mode,
    /// Timed repetitions after one warm-up; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CSV output (Markdown and SVG charts are written next to it).
    #[arg(long, default_value = "results/bench/mixers.csv")]
    pub out: PathBuf,
}

/// Options of `lra bench attention`.
#[derive(Debug, Args)]
pub struct AttentionArgs {
    /// Operations to time (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "flash,softmax"
    )]
    pub op: Vec<AttentionOp>,
    /// Sequence lengths (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1024,2048,4096,8192,16384"
    )]
    pub seq_len: Vec<usize>,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 64)]
    pub head_dim: usize,
    /// Forward+backward (`train`), forward only, or both.
    #[arg(long, value_enum, default_value_t = Mode::Train)]
    pub mode: Mode,
    /// Timed repetitions after one warm-up; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CSV output (Markdown and SVG charts are written next to it).
    #[arg(long, default_value = "results/bench/attention.csv")]
    pub out: PathBuf,
}

/// An exact attention operation of `lra_model::ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttentionOp {
    /// `ops::flash_attention`: tiled, O(n) memory, handwritten backward.
    Flash,
    /// `ops::softmax_attention`: the `[n, n]` weights materialised.
    Softmax,
}

impl AttentionOp {
    fn name(self) -> &'static str {
        match self {
            AttentionOp::Flash => "flash",
            AttentionOp::Softmax => "softmax",
        }
    }

    /// `softmax(q kᵀ + key_bias) v` without dropout; a zero `key_bias` is SDPA without a mask.
    fn apply(self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, key_bias: Tensor<2>) -> Tensor<4> {
        match self {
            AttentionOp::Flash => flash_attention::flash_attention(q, k, v, key_bias, 0.0, 0),
            AttentionOp::Softmax => softmax_attention::softmax_attention(q, k, v, key_bias, 0.0, 0),
        }
    }
}

/// Options of `lra bench step`.
#[derive(Debug, Args)]
pub struct StepArgs {
    /// Preset whose model, sequence length and batch size are timed.
    #[arg(long, default_value = "lra-pytorch/listops")]
    pub preset: String,
    #[arg(long)]
    pub attention: Option<String>,
    /// Config overrides, as for `lra run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "results/bench/step.csv")]
    pub out: PathBuf,
}

/// Options of `lra bench efficiency`; flags override the file's values.
#[derive(Debug, Args)]
pub struct EfficiencyArgs {
    /// Benchmark file (preset, attentions, lengths, batch).
    #[arg(default_value = "experiments/bench/lra-efficiency.toml")]
    pub file: PathBuf,
    #[arg(long, value_delimiter = ',')]
    pub attention: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    pub seq_len: Vec<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    #[arg(long)]
    pub repeats: Option<usize>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "results/bench/efficiency.csv")]
    pub out: PathBuf,
}

/// `experiments/bench/*.toml`: what `lra bench efficiency` measures.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficiencyFile {
    /// Preset whose model is timed; `task.max_len` is set to each length.
    pub preset: String,
    /// Attentions, the first being the baseline of the relative columns.
    pub attention: Vec<String>,
    pub seq_len: Vec<usize>,
    pub batch: usize,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "default_repeats")]
    pub repeats: usize,
    /// Further config overrides (`--set` syntax).
    #[serde(default)]
    pub set: Vec<String>,
}

fn default_mode() -> Mode {
    Mode::Both
}

fn default_repeats() -> usize {
    3
}

/// One timed configuration.
#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub bench: &'static str,
    /// `train` (forward + backward [+ update]) or `forward`.
    pub mode: &'static str,
    pub attention: String,
    pub seq_len: usize,
    pub batch: usize,
    pub d_model: usize,
    pub device: String,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Peak heap growth during the timed calls (CPU backend; 0 where not measurable).
    pub peak_mib: f64,
}

impl BenchRow {
    /// Legend / table label: the method, with the mode when a benchmark has both.
    fn label(&self, both_modes: bool) -> String {
        if both_modes {
            format!("{} ({})", self.attention, self.mode)
        } else {
            self.attention.clone()
        }
    }
}

/// Runs a benchmark and writes its CSV, Markdown table and SVG charts.
pub fn execute(command: BenchCommand) -> Result<()> {
    let (rows, out, extra_markdown) = match command {
        BenchCommand::Mixers(args) => (bench_mixers(&args)?, args.out, String::new()),
        BenchCommand::Attention(args) => (bench_attention(&args)?, args.out, String::new()),
        BenchCommand::Step(args) => (vec![bench_step(&args)?], args.out, String::new()),
        BenchCommand::Efficiency(args) => {
            let (file, rows) = bench_efficiency(&args)?;
            let table = efficiency_table(&file, &rows);
            (rows, args.out, table)
        }
    };
    write_outputs(&rows, &out, &extra_markdown)
}

/// `out` (CSV), `out.md` and, with more than one length, `out-time.svg` / `out-memory.svg`.
pub fn write_outputs(rows: &[BenchRow], out: &Path, extra_markdown: &str) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    atomic_write(out, &writer.into_inner()?)?;
    let markdown = format!("{extra_markdown}{}", markdown_table(rows));
    let md = out.with_extension("md");
    atomic_write(&md, markdown.as_bytes())?;
    let mut written = vec![out.to_path_buf(), md];
    let lengths = distinct(rows.iter().map(|r| r.seq_len));
    if lengths.len() > 1 {
        for (what, value, unit) in [
            (
                "time",
                (|r: &BenchRow| r.median_ms) as fn(&BenchRow) -> f64,
                "ms",
            ),
            ("memory", |r: &BenchRow| r.peak_mib, "peak MiB"),
        ] {
            let series = slope_series(rows, value);
            if series.iter().all(|s| s.points.iter().all(|p| p.1 <= 0.0)) {
                continue;
            }
            let title = format!("{} against sequence length ({} bench)", what, rows[0].bench);
            let svg = log_log_svg(&title, "sequence length n", unit, &series)?;
            let path = svg_path(out, what);
            atomic_write(&path, svg.as_bytes())?;
            written.push(path);
        }
    }
    eprint!("{markdown}");
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    eprintln!("wrote {}", names.join(", "));
    Ok(())
}

fn svg_path(out: &Path, what: &str) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}-{what}.svg"))
}

fn distinct<T: Ord>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = values.collect();
    v.sort();
    v.dedup();
    v
}

/// Row groups (method, mode) in first-seen order.
fn groups(rows: &[BenchRow]) -> Vec<Vec<&BenchRow>> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.attention.as_str(), r.mode)) {
            keys.push((r.attention.as_str(), r.mode));
        }
    }
    keys.into_iter()
        .map(|(a, m)| {
            rows.iter()
                .filter(|r| r.attention == a && r.mode == m)
                .collect()
        })
        .collect()
}

fn both_modes(rows: &[BenchRow]) -> bool {
    distinct(rows.iter().map(|r| r.mode)).len() > 1
}

/// Log-log slope of `value` against n over a group's rows; `None` with too few points.
fn slope(group: &[&BenchRow], value: fn(&BenchRow) -> f64) -> Option<f64> {
    let points: Vec<(f64, f64)> = group
        .iter()
        .filter(|r| value(r) > 0.0)
        .map(|r| ((r.seq_len as f64).ln(), value(r).ln()))
        .collect();
    fitted_slope(&points)
}

fn slope_series(rows: &[BenchRow], value: fn(&BenchRow) -> f64) -> Vec<Series> {
    let both = both_modes(rows);
    groups(rows)
        .into_iter()
        .map(|group| {
            let slope = slope(&group, value).map_or("—".into(), |s| format!("{s:.2}"));
            Series {
                label: format!("{}, slope {slope}", group[0].label(both)),
                points: group.iter().map(|r| (r.seq_len as f64, value(r))).collect(),
            }
        })
        .collect()
}

/// Time and memory per n for each method, with the log-log slopes (≈1 linear, ≈2 quadratic).
fn markdown_table(rows: &[BenchRow]) -> String {
    let lengths = distinct(rows.iter().map(|r| r.seq_len));
    let both = both_modes(rows);
    let header: Vec<String> = lengths.iter().map(|n| format!("n={n} ms / MiB")).collect();
    let mut out = format!(
        "| method | {} | time slope | memory slope |\n",
        header.join(" | ")
    );
    out.push_str(&format!("|---|{}---|---|\n", "---|".repeat(lengths.len())));
    for group in groups(rows) {
        let cells: Vec<String> = lengths
            .iter()
            .map(|&n| match group.iter().find(|r| r.seq_len == n) {
                Some(r) => format!("{:.1} / {:.1}", r.median_ms, r.peak_mib),
                None => "—".into(),
            })
            .collect();
        let show = |s: Option<f64>| s.map_or("—".into(), |s| format!("{s:.2}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            group[0].label(both),
            cells.join(" | "),
            show(slope(&group, |r| r.median_ms)),
            show(slope(&group, |r| r.peak_mib))
        ));
    }
    out
}

/// The LRA paper's efficiency layout, one table per mode: steps per second and peak memory at
/// each length, other methods with their ratio to the first (the baseline) in parentheses.
fn efficiency_table(file: &EfficiencyFile, rows: &[BenchRow]) -> String {
    let lengths = distinct(rows.iter().map(|r| r.seq_len));
    let mut out = String::new();
    for mode in distinct(rows.iter().map(|r| r.mode)) {
        let what = if mode == "train" {
            "training steps (forward + backward + AdamW)"
        } else {
            "forward passes (inference)"
        };
        out.push_str(&format!(
            "### {what} per second and peak memory (MiB): preset {}, batch {}, device {}\n\n",
            file.preset, rows[0].batch, rows[0].device
        ));
        let n_labels: Vec<String> = lengths
            .iter()
            .map(|n| format!("{}K", *n as f64 / 1024.0))
            .collect();
        out.push_str(&format!(
            "| method | {} | {} |\n|---|{}\n",
            n_labels
                .iter()
                .map(|n| format!("steps/s {n}"))
                .collect::<Vec<_>>()
                .join(" | "),
            n_labels
                .iter()
                .map(|n| format!("MiB {n}"))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(2 * lengths.len())
        ));
        let find = |attention: &str, n: usize| {
            rows.iter()
                .find(|r| r.mode == mode && r.attention == attention && r.seq_len == n)
        };
        let baseline = &file.attention[0];
        for attention in &file.attention {
            let cell = |n: usize, value: fn(&BenchRow) -> f64, ratio_of: fn(f64, f64) -> f64| {
                let Some(row) = find(attention, n) else {
                    return "—".to_string();
                };
                let mine = value(row);
                match find(baseline, n) {
                    Some(base) if attention != baseline && value(base) > 0.0 => {
                        format!("{mine:.2} ({:.1}×)", ratio_of(mine, value(base)))
                    }
                    _ => format!("{mine:.2}"),
                }
            };
            let speed: Vec<String> = lengths
                .iter()
                .map(|&n| cell(n, |r| 1e3 / r.median_ms, |mine, base| mine / base))
                .collect();
            let memory: Vec<String> = lengths
                .iter()
                .map(|&n| cell(n, |r| r.peak_mib, |mine, base| mine / base))
                .collect();
            out.push_str(&format!(
                "| {attention} | {} | {} |\n",
                speed.join(" | "),
                memory.join(" | ")
            ));
        }
        out.push('\n');
    }
    out
}

/// Least-squares slope of y on x; `None` with fewer than two distinct x.
fn fitted_slope(points: &[(f64, f64)]) -> Option<f64> {
    let count = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / count;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

fn mixer_kinds(names: &[String]) -> Result<Vec<MixerKind>> {
    if names.is_empty() {
        return Ok(MixerKind::ALL.to_vec());
    }
    names.iter().map(|name| Ok(name.parse()?)).collect()
}

fn bench_mixers(args: &MixerArgs) -> Result<Vec<BenchRow>> {
    let kinds = mixer_kinds(&args.attention)?;
    let base = device::parse(&args.device)?;
    let mut rows = Vec::new();
    for kind in kinds {
        for &mode in args.mode.passes() {
            for &n in &args.seq_len {
                let dims = MixerDims::new(args.d_model, args.heads, n);
                let config = kind.default_config();
                config.validate(&dims)?;
                let timing = match mode {
                    Mode::Forward => {
                        base.seed(0);
                        let mixer = config.init(&dims, &base);
                        let x = Tensor::<3>::random(
                            [args.batch, n, args.d_model],
                            Distribution::Default,
                            &base,
                        );
                        time_repeats(args.repeats, &base, || {
                            let _ = mixer
                                .forward(MixerInput::new(x.clone()))
                                .x
                                .sum()
                                .into_scalar::<f32>();
                        })?
                    }
                    _ => {
                        let device = base.clone().autodiff();
                        device.seed(0);
                        let mixer = config.init(&dims, &device);
                        let x = Tensor::<3>::random(
                            [args.batch, n, args.d_model],
                            Distribution::Default,
                            &device,
                        )
                        .require_grad();
                        time_repeats(args.repeats, &device, || {
                            let out = mixer.forward(MixerInput::new(x.clone())).x;
                            let _ = out.sum().backward();
                        })?
                    }
                };
                let row = row(
                    "mixer",
                    mode,
                    kind.name(),
                    n,
                    args.batch,
                    args.d_model,
                    &args.device,
                    &timing,
                );
                eprintln!(
                    "{:<12} {:<7} n={:<6} {:>10.2} ms {:>10.1} MiB",
                    kind.name(),
                    mode.name(),
                    n,
                    row.median_ms,
                    row.peak_mib
                );
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

fn bench_attention(args: &AttentionArgs) -> Result<Vec<BenchRow>> {
    let base = device::parse(&args.device)?;
    if !flash_attention::is_supported(&base) || !softmax_attention::is_supported(&base) {
        bail!(
            "`lra bench attention` times the fused CPU kernels; device `{}` has none (time the mixers with `lra bench mixers`)",
            args.device
        );
    }
    let mut rows = Vec::new();
    for &op in &args.op {
        for &mode in args.mode.passes() {
            for &n in &args.seq_len {
                let shape = [args.batch, args.heads, n, args.head_dim];
                let device = match mode {
                    Mode::Forward => base.clone(),
                    _ => base.clone().autodiff(),
                };
                device.seed(0);
                let [q, k, v] = [(); 3].map(|_| {
                    let x = Tensor::<4>::random(shape, Distribution::Default, &device);
                    if mode == Mode::Forward {
                        x
                    } else {
                        x.require_grad()
                    }
                });
                let no_padding = Tensor::<2>::zeros([args.batch, n], &device);
                let timing = time_repeats(args.repeats, &device, || {
                    let (q, k, v) = (q.clone(), k.clone(), v.clone());
                    let out = op.apply(q, k, v, no_padding.clone()).sum();
                    match mode {
                        Mode::Forward => drop(out.into_scalar::<f32>()),
                        _ => drop(out.backward()),
                    }
                })?;
                let d_model = args.heads * args.head_dim;
                let row = row(
                    "attention",
                    mode,
                    op.name(),
                    n,
                    args.batch,
                    d_model,
                    &args.device,
                    &timing,
                );
                eprintln!(
                    "{:<8} {:<7} n={:<6} {:>10.2} ms {:>10.1} MiB",
                    op.name(),
                    mode.name(),
                    n,
                    row.median_ms,
                    row.peak_mib
                );
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

fn bench_step(args: &StepArgs) -> Result<BenchRow> {
    let config = resolve(&RunArgs {
        preset: Some(args.preset.clone()),
        attention: args.attention.clone(),
        overrides: args.overrides.clone(),
        ..RunArgs::default()
    })?;
    let row = time_model(&config, &args.device, args.repeats, Mode::Train)?;
    eprintln!(
        "{} step ({} × {}): {:.1} ms median, {:.1} ms min, {:.0} MiB peak",
        args.preset, row.batch, row.seq_len, row.median_ms, row.min_ms, row.peak_mib
    );
    Ok(row)
}

fn bench_efficiency(args: &EfficiencyArgs) -> Result<(EfficiencyFile, Vec<BenchRow>)> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read benchmark file {}", args.file.display()))?;
    let mut file: EfficiencyFile = toml::from_str(&text)
        .with_context(|| format!("{}: invalid benchmark file", args.file.display()))?;
    if !args.attention.is_empty() {
        file.attention = args.attention.clone();
    }
    if !args.seq_len.is_empty() {
        file.seq_len = args.seq_len.clone();
    }
    file.batch = args.batch.unwrap_or(file.batch);
    file.mode = args.mode.unwrap_or(file.mode);
    file.repeats = args.repeats.unwrap_or(file.repeats);
    if file.attention.is_empty() || file.seq_len.is_empty() {
        bail!(
            "{}: `attention` and `seq_len` need at least one entry",
            args.file.display()
        );
    }
    mixer_kinds(&file.attention)?;
    let mut rows = Vec::new();
    for &mode in file.mode.passes() {
        for attention in &file.attention {
            for &n in &file.seq_len {
                let mut overrides = file.set.clone();
                overrides.push(format!("task.max_len={n}"));
                overrides.push(format!("train.batch_size={}", file.batch));
                let config = resolve(&RunArgs {
                    preset: Some(file.preset.clone()),
                    attention: Some(attention.clone()),
                    overrides,
                    ..RunArgs::default()
                })?;
                let row = time_model(&config, &args.device, file.repeats, mode)?;
                eprintln!(
                    "{attention:<12} {:<7} n={n:<6} {:>9.1} ms {:>9.0} MiB",
                    mode.name(),
                    row.median_ms,
                    row.peak_mib
                );
                rows.push(row);
            }
        }
    }
    Ok((file, rows))
}

/// Random documents with realistic padding (each sequence's real length between n/4 and n),
/// two per example for pair tasks, and labels cycling through the classes.
fn random_batch(config: &ExperimentConfig, device: &Device) -> Batch {
    let task = config.task.name;
    let (batch, len) = (config.train.batch_size, config.task.max_len);
    let document = || {
        let tokens = Tensor::<2, Int>::random(
            [batch, len],
            Distribution::Uniform(1.0, task.vocab_size() as f64),
            device,
        );
        let lengths = Tensor::<2, Int>::random(
            [batch, 1],
            Distribution::Uniform((len / 4) as f64, len as f64),
            device,
        );
        let positions = Tensor::<1, Int>::arange(0..len as i64, device).reshape([1, len]);
        (tokens, positions.greater_equal(lengths))
    };
    let (tokens, pad_mask) = document();
    let classes = task.num_classes() as i64;
    Batch {
        tokens,
        pad_mask,
        second: (task.documents() == 2).then(document),
        labels: Tensor::<1, Int>::from_data(
            TensorData::new((0..batch as i64).map(|i| i % classes).collect(), [batch]),
            device,
        ),
    }
}

/// Times the config's whole model: a training step (forward, backward, AdamW) or a forward pass.
fn time_model(
    config: &ExperimentConfig,
    device_name: &str,
    repeats: usize,
    mode: Mode,
) -> Result<BenchRow> {
    let base = device::parse(device_name)?;
    let task = config.task.name;
    let model_config = config.classifier(task.vocab_size(), task.num_classes())?;
    let timing = if mode == Mode::Forward {
        base.seed(config.seed);
        let model = model_config.init(&base);
        let batch = random_batch(config, &base);
        time_repeats(repeats, &base, || {
            let _ = logits(&model, batch.clone()).sum().into_scalar::<f32>();
        })?
    } else {
        let device = base.autodiff();
        device.seed(config.seed);
        let mut model = model_config.init(&device);
        let mut optim = AdamWConfig::new().init();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let batch = random_batch(config, &device);
        time_repeats(repeats, &device, || {
            let loss = loss_fn.forward(logits(&model, batch.clone()), batch.labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-4, model.clone(), grads);
        })?
    };
    Ok(row(
        "model_step",
        mode,
        &config.attention,
        config.task.max_len,
        config.train.batch_size,
        config.model.d_model,
        device_name,
        &timing,
    ))
}

/// Milliseconds of each timed call and the peak memory growth over them.
struct Timing {
    times: Vec<f64>,
    peak_mib: f64,
}

/// One warm-up call, then `repeats` timed calls (synchronising the device after each).
fn time_repeats(repeats: usize, device: &Device, mut f: impl FnMut()) -> Result<Timing> {
    f();
    device.sync()?;
    let baseline = memory::current_bytes();
    memory::reset_peak();
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f();
        device.sync()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let peak = memory::peak_bytes().saturating_sub(baseline);
    Ok(Timing {
        times,
        peak_mib: peak as f64 / (1024.0 * 1024.0),
    })
}

#[allow(clippy::too_many_arguments)]
fn row(
    bench: &'static str,
    mode: Mode,
    attention: &str,
    seq_len: usize,
    batch: usize,
    d_model: usize,
    device: &str,
    timing: &Timing,
) -> BenchRow {
    let mut sorted = timing.times.clone();
    sorted.sort_by(f64::total_cmp);
    BenchRow {
        bench,
        mode: mode.name(),
        attention: attention.to_string(),
        seq_len,
        batch,
        d_model,
        device: device.to_string(),
        median_ms: sorted[sorted.len() / 2],
        min_ms: sorted[0],
        peak_mib: timing.peak_mib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_power_law_is_its_exponent() {
        let points: Vec<(f64, f64)> = [512.0f64, 1024.0, 4096.0]
            .iter()
            .map(|n| (n.ln(), (3.0 * n * n).ln()))
            .collect();
        assert!((fitted_slope(&points).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(fitted_slope(&points[..1]), None);
    }
}
