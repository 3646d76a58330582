//! `lra approx`: how close a mixer's attention core comes to exact softmax attention.
//!
//! - Sweep mode: Gaussian Q, K, V; relative Frobenius error `‖A − S‖/‖S‖` and time against one
//!   swept config key, averaged over seeds; CSV + SVG plot.
//! - File mode: Q, K, V (and a mask) from `.npy` files in, the core's output to `.npy`, so an
//!   external implementation can be compared number for number.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail, ensure};
use burn::module::Module;
use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};
use clap::Args;
use lra_model::mixer::reference::softmax_attention;
use lra_model::{Mixer, MixerDims, MixerKind, TokenMixer};
use plotters::prelude::*;
use serde::Serialize;

use crate::config::parse_value;
use crate::device;
use crate::npy::{self, Array};
use crate::plot::plot_error;
use crate::results::atomic_write;

/// Options of `lra approx`.
#[derive(Debug, Args)]
pub struct ApproxArgs {
    /// Attention mixer to compare with exact softmax attention.
    #[arg(long, short)]
    pub attention: String,
    /// Mixer settings, e.g. `--set num_landmarks=32` (a `mixer.` prefix is accepted).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// The setting to sweep, e.g. `--sweep num_landmarks=16,32,64,128`.
    #[arg(long, value_name = "KEY=V1,V2,...")]
    pub sweep: Option<String>,
    /// Sequence length of the Gaussian inputs.
    #[arg(long, default_value_t = 1024)]
    pub seq_len: usize,
    /// Per-head width of the Gaussian inputs.
    #[arg(long, default_value_t = 64)]
    pub head_dim: usize,
    #[arg(long, default_value_t = 2)]
    pub heads: usize,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Seeds averaged per swept value (seed, seed+1, …).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// First seed; the only source of randomness (inputs, random features, samples, init).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sweep on the Q, K, V that a trained run's layer computes on validation inputs (its
    /// `best_model.bpk`), instead of Gaussian ones; `--batch` sets how many examples.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "q")]
    pub from_run: Option<PathBuf>,
    /// Layer of `--from-run` whose attention inputs are taken.
    #[arg(long, default_value_t = 0)]
    pub layer: usize,
    /// `[batch, heads, seq, head_dim]` float32 queries (file mode).
    #[arg(long, requires_all = ["k", "v", "out"])]
    pub q: Option<PathBuf>,
    #[arg(long)]
    pub k: Option<PathBuf>,
    #[arg(long)]
    pub v: Option<PathBuf>,
    /// `[batch, seq]` key mask, 1 for real tokens (file mode).
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// File mode: the output `.npy`. Sweep mode: the output folder
    /// (default `results/approx/<attention>-n<seq_len>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute device, as for `lra run --device` (cpu, wgpu[:N], vulkan[:N], cuda[:N], tch).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// One swept value, averaged over seeds.
#[derive(Debug, Serialize)]
pub struct ApproxRow {
    pub attention: String,
    pub key: String,
    pub value: String,
    pub seq_len: usize,
    pub head_dim: usize,
    pub seeds: u64,
    pub relative_error: f64,
    pub relative_error_std: f64,
    pub ms: f64,
    pub softmax_ms: f64,
}

/// Runs `lra approx`.
pub fn execute(args: &ApproxArgs) -> Result<()> {
    let kind: MixerKind = args.attention.parse()?;
    let device = device::parse(&args.device)?;
    match &args.q {
        Some(q) => run_files(args, kind, q, &device),
        None => {
            let rows = run_sweep(args, kind, &device)?;
            let dir = args.out.clone().unwrap_or_else(|| match &args.from_run {
                Some(run) => PathBuf::from(format!(
                    "results/approx/{}-{}-layer{}",
                    kind.name(),
                    run.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    args.layer
                )),
                None => PathBuf::from(format!("results/approx/{}-n{}", kind.name(), args.seq_len)),
            });
            write_sweep(&dir, &rows)
        }
    }
}

/// The mixer config table from `--set` pairs.
pub(crate) fn mixer_table(overrides: &[String]) -> Result<toml::Table> {
    let mut table = toml::Table::new();
    for assignment in overrides {
        let (key, value) = split_assignment(assignment)?;
        table.insert(key.to_string(), parse_value(value));
    }
    Ok(table)
}

fn split_assignment(assignment: &str) -> Result<(&str, &str)> {
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow!("`{assignment}`: expected key=value"))?;
    let key = key.trim();
    Ok((key.strip_prefix("mixer.").unwrap_or(key), value.trim()))
}

/// Builds the mixer for `dims` with parameters drawn under `seed`.
fn build(
    kind: MixerKind,
    table: &toml::Table,
    dims: &MixerDims,
    seed: u64,
    device: &Device,
) -> Result<Mixer> {
    let config = crate::config::mixer_settings(kind, table)?;
    config.validate(dims)?;
    ensure!(
        config.caps().attention_core,
        "`{kind}` has no attention core over Q, K, V (it mixes tokens another way); lra approx \
         compares attention mixers: {}",
        MixerKind::ALL
            .iter()
            .filter(|k| k.default_config().caps().attention_core)
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    device.seed(seed);
    Ok(config.init(dims, device))
}

fn run_sweep(args: &ApproxArgs, kind: MixerKind, device: &Device) -> Result<Vec<ApproxRow>> {
    ensure!(args.seeds > 0, "--seeds must be at least 1");
    let base = mixer_table(&args.overrides)?;
    let (key, values) = match &args.sweep {
        Some(sweep) => {
            let (key, list) = split_assignment(sweep).context("--sweep")?;
            (
                key.to_string(),
                list.split(',')
                    .map(|v| v.trim().to_string())
                    .collect::<Vec<_>>(),
            )
        }
        None => (String::new(), vec![String::new()]),
    };
    let trained = match &args.from_run {
        Some(run) => Some(trained_qkv(run, args.layer, args.batch, device)?),
        None => None,
    };
    let shape = match &trained {
        Some(t) => t.q.dims(),
        None => [args.batch, args.heads, args.seq_len, args.head_dim],
    };
    let [_, heads, seq_len, head_dim] = shape;
    let dims = MixerDims::new(heads * head_dim, heads, seq_len);
    let mut rows = Vec::new();
    for value in &values {
        let mut table = base.clone();
        if !key.is_empty() {
            table.insert(key.clone(), parse_value(value));
        }
        let (mut errors, mut ms, mut softmax_ms) = (Vec::new(), 0.0, 0.0);
        for seed in args.seed..args.seed + args.seeds {
            let mixer = build(kind, &table, &dims, seed, device)
                .with_context(|| format!("{key} = {value}"))?;
            let core = mixer.attention_core().expect("checked in build");
            let QkvInputs { q, k, v, pad_mask } = match &trained {
                Some(inputs) => inputs.clone(),
                None => QkvInputs::gaussian(shape, device),
            };
            let (exact, exact_ms) = timed(device, || {
                softmax_attention(q.clone(), k.clone(), v.clone(), pad_mask.clone())
            })?;
            let (approx, approx_ms) = timed(device, || {
                core.attend(q.clone(), k.clone(), v.clone(), pad_mask.clone())
            })?;
            // Padded queries' outputs are never used: compare real rows only.
            let real = query_weights(pad_mask.as_ref(), shape, device);
            errors.push(relative_error(approx * real.clone(), exact * real));
            ms += approx_ms / args.seeds as f64;
            softmax_ms += exact_ms / args.seeds as f64;
        }
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let var = errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / errors.len() as f64;
        eprintln!(
            "{:<10} {key}={value:<8} error {mean:.4} ± {:.4}  {ms:.1} ms (softmax {softmax_ms:.1} ms)",
            kind.name(),
            var.sqrt()
        );
        rows.push(ApproxRow {
            attention: kind.name().to_string(),
            key: key.clone(),
            value: value.clone(),
            seq_len,
            head_dim,
            seeds: args.seeds,
            relative_error: mean,
            relative_error_std: var.sqrt(),
            ms,
            softmax_ms,
        });
    }
    Ok(rows)
}

/// Q, K, V `[b, h, n, d]` and the key padding mask they come with.
#[derive(Clone)]
struct QkvInputs {
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    pad_mask: Option<Tensor<2, Bool>>,
}

impl QkvInputs {
    /// Independent N(0, 1) entries, no padding.
    fn gaussian(shape: [usize; 4], device: &Device) -> Self {
        let draw = || Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        Self {
            q: draw(),
            k: draw(),
            v: draw(),
            pad_mask: None,
        }
    }
}

/// `[b, 1, n, 1]`: 1 for real queries, 0 for padded ones.
fn query_weights(
    pad_mask: Option<&Tensor<2, Bool>>,
    shape: [usize; 4],
    device: &Device,
) -> Tensor<4> {
    let [batch, _, seq, _] = shape;
    match pad_mask {
        Some(mask) => mask.clone().bool_not().float().reshape([batch, 1, seq, 1]),
        None => Tensor::ones([batch, 1, seq, 1], device),
    }
}

/// The Q, K, V that layer `layer` of a trained run computes on its first validation examples.
fn trained_qkv(
    run_dir: &Path,
    layer: usize,
    examples: usize,
    device: &Device,
) -> Result<QkvInputs> {
    let config = crate::config::load_file(&run_dir.join("config.toml"))?;
    let data = crate::task::load(&config.task, true)?;
    device.seed(config.seed);
    let model = config
        .classifier(data.vocab_size, data.num_classes)?
        .init(device)
        .try_load_file(run_dir.join("best_model.bpk"))
        .map_err(|e| anyhow!("{}: cannot load best_model.bpk: {e:?}", run_dir.display()))?;
    let chosen: Vec<usize> = (0..examples.max(1).min(data.val.len())).collect();
    let batch = crate::batches::make_batch(&data.val, &chosen, config.task.seq_len(), device);
    let encoder = model.encoder();
    let pad_mask = model.padding_mask(&batch.tokens, batch.pad_mask);
    let (x, pad_mask, mixer) = encoder
        .mixer_input(batch.tokens, pad_mask, layer)
        .ok_or_else(|| anyhow!("--layer {layer}: the run has {} layers", encoder.n_layers()))?;
    let attention = mixer.attention().ok_or_else(|| {
        anyhow!(
            "layer {layer} of {} is `{}`, which has no Q/K/V projections",
            run_dir.display(),
            config.attention
        )
    })?;
    let [q, k, v] = attention.projection.project(x);
    Ok(QkvInputs {
        q,
        k,
        v,
        pad_mask: Some(pad_mask),
    })
}

/// `‖a − b‖_F / ‖b‖_F`.
pub fn relative_error(a: Tensor<4>, b: Tensor<4>) -> f64 {
    let diff = (a - b.clone()).powf_scalar(2.0).sum().into_scalar::<f32>() as f64;
    let norm = b.powf_scalar(2.0).sum().into_scalar::<f32>() as f64;
    (diff / norm).sqrt()
}

fn timed<T>(device: &Device, f: impl FnOnce() -> T) -> Result<(T, f64)> {
    let start = Instant::now();
    let out = f();
    device.sync()?;
    Ok((out, start.elapsed().as_secs_f64() * 1e3))
}

fn write_sweep(dir: &Path, rows: &[ApproxRow]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    atomic_write(&dir.join("approx.csv"), &writer.into_inner()?)?;
    let svg = plot(rows)?;
    atomic_write(&dir.join("approx.svg"), svg.as_bytes())?;
    eprintln!("wrote {0}/approx.csv and {0}/approx.svg", dir.display());
    Ok(())
}

/// Error (log scale) and time against the swept values, as an SVG document.
fn plot(rows: &[ApproxRow]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (top, bottom) = root.split_vertically(360);
        let labels: Vec<String> = rows.iter().map(|r| r.value.clone()).collect();
        let key = rows.first().map(|r| r.key.as_str()).unwrap_or_default();
        let title = format!("{} vs softmax, n = {}", rows[0].attention, rows[0].seq_len);
        let series = [
            (
                &top,
                "relative Frobenius error",
                rows.iter()
                    .map(|r| r.relative_error.max(1e-9))
                    .collect::<Vec<_>>(),
            ),
            (
                &bottom,
                "forward ms",
                rows.iter().map(|r| r.ms.max(1e-6)).collect::<Vec<_>>(),
            ),
        ];
        for (area, y_label, ys) in series {
            let (lo, hi) = ys
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &y| (lo.min(y), hi.max(y)));
            let mut chart = ChartBuilder::on(area)
                .caption(
                    if y_label.starts_with("relative") {
                        title.as_str()
                    } else {
                        ""
                    },
                    ("sans-serif", 18),
                )
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(
                    -0.5f64..(rows.len() as f64 - 0.5),
                    (lo / 2.0..hi * 2.0).log_scale(),
                )
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc(key)
                .y_desc(y_label)
                .x_labels(rows.len())
                .x_label_formatter(&|x| labels.get(x.round() as usize).cloned().unwrap_or_default())
                .draw()
                .map_err(plot_error)?;
            let points: Vec<(f64, f64)> =
                ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), &BLUE))
                .map_err(plot_error)?;
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 4, BLUE.filled())))
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn run_files(args: &ApproxArgs, kind: MixerKind, q_path: &Path, device: &Device) -> Result<()> {
    let (k_path, v_path, out) = match (&args.k, &args.v, &args.out) {
        (Some(k), Some(v), Some(out)) => (k, v, out),
        _ => bail!("file mode needs --q, --k, --v and --out"),
    };
    let q = read_qkv(q_path)?;
    let k = read_qkv(k_path)?;
    let v = read_qkv(v_path)?;
    let [batch, heads, queries, head_dim] = dims4(&q);
    let [kb, kh, keys, kd] = dims4(&k);
    ensure!(
        (kb, kh, kd) == (batch, heads, head_dim),
        "{}: shape {:?} does not fit q's {:?} (batch, heads and head_dim must agree)",
        k_path.display(),
        k.shape,
        q.shape
    );
    ensure!(
        v.shape == k.shape,
        "{}: shape {:?} must equal k's {:?}",
        v_path.display(),
        v.shape,
        k.shape
    );
    let pad_mask = match &args.mask {
        Some(path) => {
            let mask = npy::read(path)?;
            ensure!(
                mask.shape == [batch, keys],
                "{}: shape {:?}, expected [batch, seq] = [{batch}, {keys}] with 1 for real tokens",
                path.display(),
                mask.shape
            );
            let pad: Vec<bool> = mask.values.iter().map(|&m| m == 0.0).collect();
            Some(Tensor::<2, Bool>::from_data(
                TensorData::new(pad, [batch, keys]),
                device,
            ))
        }
        None => None,
    };
    let dims = MixerDims::new(heads * head_dim, heads, queries.max(keys));
    let mixer = build(
        kind,
        &mixer_table(&args.overrides)?,
        &dims,
        args.seed,
        device,
    )?;
    let tensor = |a: Array| Tensor::<4>::from_data(TensorData::new(a.values, a.shape), device);
    let output = mixer.attention_core().expect("checked in build").attend(
        tensor(q),
        tensor(k),
        tensor(v),
        pad_mask,
    );
    let data = output.into_data();
    let out_array = Array {
        shape: data.shape().to_vec(),
        values: data
            .try_to_vec::<f32>()
            .map_err(|e| anyhow!("reading the output: {e:?}"))?,
    };
    npy::write(out, &out_array)?;
    eprintln!("wrote {} {:?}", out.display(), out_array.shape);
    Ok(())
}

fn read_qkv(path: &Path) -> Result<Array> {
    let array = npy::read(path)?;
    ensure!(
        array.shape.len() == 4 && array.shape.iter().all(|&d| d > 0),
        "{}: shape {:?}, expected [batch, heads, seq, head_dim]",
        path.display(),
        array.shape
    );
    Ok(array)
}

fn dims4(array: &Array) -> [usize; 4] {
    [
        array.shape[0],
        array.shape[1],
        array.shape[2],
        array.shape[3],
    ]
}
