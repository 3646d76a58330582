//! Options of the `lra bench` subcommands and the benchmark-file format.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Mixer time and peak memory against sequence length.
    Mixers(MixerArgs),
    /// Exact attention operations alone (no projections) against sequence length.
    Attention(AttentionArgs),
    /// One training step of a preset's model (forward, backward, optimiser update).
    Step(StepArgs),
    /// One masked-LM pretraining step (`lra pretrain`'s) of a BERT/RoBERTa-shaped model, per
    /// attention and sequence length.
    Mlm(MlmArgs),
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
    pub(super) fn passes(self) -> &'static [Mode] {
        match self {
            Mode::Both => &[Mode::Train, Mode::Forward],
            Mode::Train => &[Mode::Train],
            Mode::Forward => &[Mode::Forward],
        }
    }

    pub(super) fn name(self) -> &'static str {
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
    /// Compute device, as for `lra run --device` (cpu, wgpu[:N], vulkan[:N], cuda[:N], tch).
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
    /// Compute device, as for `lra run --device` (cpu, wgpu[:N], vulkan[:N], cuda[:N], tch).
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
    /// `mixer::reference::softmax_attention`, composed from Burn ops (autodiff keeps the `[n, n]`
    /// scores): what the `flash` and `softmax` mixers run on devices without those kernels.
    Reference,
}

impl AttentionOp {
    pub(super) fn name(self) -> &'static str {
        match self {
            AttentionOp::Flash => "flash",
            AttentionOp::Softmax => "softmax",
            AttentionOp::Reference => "reference",
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
    /// A checkpoint folder whose `config.json` gives the model (as `lra run --init`); only the
    /// shape matters, so a folder with just `config.json` will do
    /// (`experiments/bench/bert-base/`).
    #[arg(long, value_name = "DIR")]
    pub init: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Compute device, as for `lra run --device` (cpu, wgpu[:N], vulkan[:N], cuda[:N], tch).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "results/bench/step.csv")]
    pub out: PathBuf,
}

/// Options of `lra bench mlm`.
#[derive(Debug, Args)]
pub struct MlmArgs {
    /// A BERT/RoBERTa checkpoint folder whose `config.json` gives the model's shape (weights are
    /// not read; the position table is sized to each length).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "experiments/bench/bert-base"
    )]
    pub init: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "softmax")]
    pub attention: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "512")]
    pub seq_len: Vec<usize>,
    /// Full-length sequences per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Compute device, as for `lra run --device` (cpu, wgpu[:N], vulkan[:N], cuda[:N], tch).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value = "results/bench/mlm.csv")]
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
    /// Compute device, as for `lra run --device` (cpu, wgpu[:N], vulkan[:N], cuda[:N], tch).
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
