//! `lra bench`: wall-clock benchmarks on the chosen device, written as CSV.
//!
//! - `mixers`: one mixer forward+backward on random `[batch, n, d_model]` input, per n;
//! - `step`: one full training step (forward, backward, AdamW update) of a preset's model.
//!
//! Time on an otherwise idle machine and compare ratios taken in the same session.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use clap::{Args, Subcommand};
use lra_model::{MixerDims, MixerInput, MixerKind, TokenMixer};
use serde::Serialize;

use super::run::{RunArgs, resolve};
use crate::results::atomic_write;
use crate::{device, memory};

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Mixer forward+backward time against sequence length.
    Mixers(MixerArgs),
    /// One training step of a preset's model (forward, backward, optimiser update).
    Step(StepArgs),
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
    /// Timed repetitions after one warm-up; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CSV output.
    #[arg(long, default_value = "results/bench/mixers.csv")]
    pub out: PathBuf,
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

/// One timed configuration.
#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub bench: &'static str,
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

/// Runs a benchmark, prints its rows and writes them as CSV.
pub fn execute(command: BenchCommand) -> Result<()> {
    let (rows, out) = match command {
        BenchCommand::Mixers(args) => (bench_mixers(&args)?, args.out),
        BenchCommand::Step(args) => (vec![bench_step(&args)?], args.out),
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in &rows {
        writer.serialize(row)?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    atomic_write(&out, &writer.into_inner()?)?;
    let markdown = markdown_table(&rows);
    atomic_write(&out.with_extension("md"), markdown.as_bytes())?;
    eprint!("{markdown}");
    eprintln!(
        "wrote {} and {}",
        out.display(),
        out.with_extension("md").display()
    );
    Ok(())
}

/// Time and memory per n for each method, with the log-log slopes (≈1 linear, ≈2 quadratic).
fn markdown_table(rows: &[BenchRow]) -> String {
    let mut lengths: Vec<usize> = rows.iter().map(|r| r.seq_len).collect();
    lengths.sort();
    lengths.dedup();
    let mut methods: Vec<&str> = rows.iter().map(|r| r.attention.as_str()).collect();
    methods.dedup();
    let header: Vec<String> = lengths.iter().map(|n| format!("n={n} ms / MiB")).collect();
    let mut out = format!(
        "| method | {} | time slope | memory slope |\n",
        header.join(" | ")
    );
    out.push_str(&format!("|---|{}---|---|\n", "---|".repeat(lengths.len())));
    for method in methods {
        let mine: Vec<&BenchRow> = rows.iter().filter(|r| r.attention == method).collect();
        let cells: Vec<String> = lengths
            .iter()
            .map(|&n| match mine.iter().find(|r| r.seq_len == n) {
                Some(r) => format!("{:.1} / {:.1}", r.median_ms, r.peak_mib),
                None => "—".into(),
            })
            .collect();
        let slope = |value: fn(&BenchRow) -> f64| {
            let points: Vec<(f64, f64)> = mine
                .iter()
                .filter(|r| value(r) > 0.0)
                .map(|r| ((r.seq_len as f64).ln(), value(r).ln()))
                .collect();
            fitted_slope(&points).map_or("—".into(), |s| format!("{s:.2}"))
        };
        out.push_str(&format!(
            "| {method} | {} | {} | {} |\n",
            cells.join(" | "),
            slope(|r| r.median_ms),
            slope(|r| r.peak_mib)
        ));
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

fn bench_mixers(args: &MixerArgs) -> Result<Vec<BenchRow>> {
    let kinds: Vec<MixerKind> = if args.attention.is_empty() {
        MixerKind::ALL.to_vec()
    } else {
        args.attention
            .iter()
            .map(|name| name.parse())
            .collect::<Result<_, _>>()?
    };
    let device = device::parse(&args.device)?.autodiff();
    let mut rows = Vec::new();
    for kind in kinds {
        for &n in &args.seq_len {
            let dims = MixerDims {
                d_model: args.d_model,
                n_heads: args.heads,
                max_len: n,
                dropout: 0.0,
            };
            let config = kind.default_config();
            config.validate(&dims)?;
            device.seed(0);
            let mixer = config.init(&dims, &device);
            let x = Tensor::<3>::random(
                [args.batch, n, args.d_model],
                Distribution::Default,
                &device,
            )
            .require_grad();
            let timing = time_repeats(args.repeats, &device, || {
                let out = mixer.forward(MixerInput::new(x.clone())).x;
                let _ = out.sum().backward();
            })?;
            let row = row(
                "mixer_fwd_bwd",
                kind.name(),
                n,
                args.batch,
                args.d_model,
                &args.device,
                &timing,
            );
            eprintln!(
                "{:<12} n={:<6} {:>10.2} ms {:>10.1} MiB",
                kind.name(),
                n,
                row.median_ms,
                row.peak_mib
            );
            rows.push(row);
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
    let device = device::parse(&args.device)?.autodiff();
    device.seed(config.seed);
    let (vocab, classes) = (
        lra_data::listops::VOCAB.len(),
        lra_data::listops::NUM_CLASSES,
    );
    let mut model = config.classifier(vocab, classes)?.init(&device);
    let mut optim = AdamWConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let (batch, len) = (config.train.batch_size, config.task.max_len);
    let tokens = Tensor::<2, Int>::random(
        [batch, len],
        Distribution::Uniform(1.0, vocab as f64),
        &device,
    );
    // Realistic padding: each sequence has a random real length between len/4 and len.
    let lengths = Tensor::<2, Int>::random(
        [batch, 1],
        Distribution::Uniform((len / 4) as f64, len as f64),
        &device,
    );
    let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
    let pad_mask = positions.greater_equal(lengths);
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(
            (0..batch as i64).map(|i| i % classes as i64).collect(),
            [batch],
        ),
        &device,
    );
    let timing = time_repeats(args.repeats, &device, || {
        let logits = model.forward(tokens.clone(), pad_mask.clone());
        let loss = loss_fn.forward(logits, labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-4, model.clone(), grads);
    })?;
    let row = row(
        "train_step",
        &config.attention,
        len,
        batch,
        config.model.d_model,
        &args.device,
        &timing,
    );
    eprintln!(
        "{} step ({} × {}, {} params): {:.1} ms median, {:.1} ms min, {:.0} MiB peak",
        args.preset,
        batch,
        len,
        model.num_params(),
        row.median_ms,
        row.min_ms,
        row.peak_mib
    );
    Ok(row)
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

fn row(
    bench: &'static str,
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
