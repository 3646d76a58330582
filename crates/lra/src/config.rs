//! Experiment configuration: TOML presets under `experiments/`, `--config FILE`, and validated
//! `--set key=value` overrides, resolved into one strict [`ExperimentConfig`].
//!
//! Every struct here rejects unknown keys, so a typo is an error naming the key and the valid ones.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use lra_model::{
    ClassifierConfig, MixerConfig, MixerDims, MixerKind, ModelConfig, Pooling, TaskShape,
};
use serde::{Deserialize, Serialize};

use crate::batches::SeqLen;
use crate::param_groups::ParamGroupConfig;
use crate::suggest::{explain_unknown, unknown_name};
use crate::task::{self, InputLayout, Task};

/// Everything one run needs; written to the run folder as `config.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The preset this config started from (informational, recorded in the summary).
    #[serde(default)]
    pub preset: String,
    /// Seed for parameter init, data order, dropout and generated data.
    pub seed: u64,
    /// Token mixer name (see `lra list`).
    pub attention: String,
    /// A pretrained checkpoint folder (Hugging Face BERT or RoBERTa, as `save_pretrained` writes
    /// it) the model starts from: its `config.json` gives `[model]`, its weights the encoder (the
    /// mixer's Q/K/V/output projections included), its tokenizer the task's texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Settings of the chosen mixer; missing keys take the mixer's defaults.
    #[serde(default)]
    pub mixer: toml::Table,
    pub task: TaskConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
}

/// Which task and where its data lives. Keys other than these belong to the task (ListOps'
/// `[task.generate]`, Pathfinder's `contour_length`, …) and are checked by it as strictly as
/// mixer settings are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// Task name (see `lra list`).
    pub name: String,
    /// Tokens per sequence; longer inputs are truncated, shorter ones padded.
    pub max_len: usize,
    /// Folder with the task's files in the official release format.
    pub data_dir: PathBuf,
    /// Length the sequences are padded to (and the model built for), past `max_len`, where
    /// sequences are still truncated. Default: `max_len`. Skyformer truncates at 2,000/4,000
    /// tokens and pads to 2,048/4,096 (`src/main.py:214`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_to: Option<usize>,
    /// The task's own settings, with its defaults filled in once parsed.
    #[serde(flatten)]
    pub settings: toml::Table,
}

impl TaskConfig {
    /// How batches truncate and pad.
    pub fn seq_len(&self) -> SeqLen {
        SeqLen {
            truncate: self.max_len,
            padded: self.padded_len(),
        }
    }

    /// The length batches are padded to and the model is built for.
    pub fn padded_len(&self) -> usize {
        self.pad_to.unwrap_or(self.max_len)
    }

    /// The registered task this config names.
    pub fn task(&self) -> Result<&'static dyn Task> {
        task::find(&self.name)
    }
}

/// Optimisation and evaluation schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimisation steps; 0 (the default) takes them from `epochs`.
    #[serde(default)]
    pub steps: usize,
    /// Passes over the training split, when `steps` is 0: `steps = ⌈epochs · examples / batch⌉`,
    /// fixed once the data is loaded (GLUE recipes are in epochs, LRA's in steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    pub warmup_steps: usize,
    pub schedule: Schedule,
    /// The schedule's step number for the first update: 1 (default; the first update already
    /// trains) or 0, as PyTorch schedulers stepped after the optimiser (Hugging Face
    /// `get_scheduler`) and the JAX LRA code count, whose first update after a warmup has rate 0.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub first_schedule_step: usize,
    pub weight_decay: f64,
    /// Parameters with their own weight decay (and peak learning rate), `[[train.param_groups]]`;
    /// the rest take `weight_decay` and `lr`. Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub param_groups: Vec<ParamGroupConfig>,
    pub beta1: f64,
    /// With `schedule = "one_cycle"`: cycle Adam's β1 as PyTorch `OneCycleLR(cycle_momentum =
    /// True)` does, against the learning rate: 0.95 → 0.85 over the warm-up, back to 0.95 at the
    /// last step (`beta1` is then unused). Default: false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cycle_momentum: bool,
    pub beta2: f64,
    pub eps: f64,
    /// Gradient clipping limit; 0 disables clipping. What it limits: `grad_clip_by`.
    pub grad_clip: f64,
    /// How `grad_clip` applies. Default: `global_norm` (PyTorch `clip_grad_norm_`, Hugging
    /// Face `max_grad_norm`, optax `clip_by_global_norm`).
    #[serde(default)]
    pub grad_clip_by: ClipBy,
    /// Validate (and checkpoint) every this many steps; 0: once per epoch.
    pub eval_every: usize,
    /// Validate on at most this many batches; 0 = the whole validation split.
    pub eval_batches: usize,
    /// Batches with a non-finite loss or gradient norm that may be skipped (their update not
    /// applied) before the run stops; 0 stops at the first.
    #[serde(default)]
    pub skip_nonfinite: usize,
    /// Which parameters score the test split (and every split after validation): `best` (the
    /// best validation step, the default, as the PyTorch-LRA and Hugging Face code) or `last`
    /// (the final step, as the LRA JAX code tests ListOps, Text and Image).
    #[serde(default)]
    pub test_with: TestWith,
}

/// Which parameters score the splits after validation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestWith {
    /// The step with the best validation score (`best_model.bpk`).
    #[default]
    Best,
    /// The final step.
    Last,
}

fn one() -> usize {
    1
}

fn is_one(value: &usize) -> bool {
    *value == 1
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl TrainConfig {
    /// The schedule for a training split of `examples` examples: `steps`, or when it is 0,
    /// `⌈epochs · examples / batch_size⌉`; `eval_every` 0 becomes one epoch's steps.
    pub fn for_examples(&self, examples: usize) -> TrainConfig {
        let mut resolved = self.clone();
        let epoch = examples.div_ceil(self.batch_size).max(1);
        if let (0, Some(epochs)) = (self.steps, self.epochs) {
            let steps = (epochs * examples as f64 / self.batch_size as f64).ceil();
            resolved.steps = (steps as usize).max(1);
        }
        if self.eval_every == 0 {
            resolved.eval_every = epoch;
        }
        resolved
    }
}

/// What gradient clipping limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipBy {
    /// The L2 norm of all gradients together.
    #[default]
    GlobalNorm,
    /// The L2 norm of each parameter tensor on its own (Burn's `GradientClipping::Norm`).
    TensorNorm,
    /// Each gradient value, to `[-grad_clip, grad_clip]` (PyTorch `clip_grad_value_`, as
    /// Skyformer's `main.py` does).
    Value,
}

/// Learning-rate schedule after linear warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warmup from 0 to `lr`, then linear decay to 0 at `steps`.
    Linear,
    /// `lr · min(1, s/w) / √max(s, w)` (JAX LRA `constant * linear_warmup * rsqrt_decay`).
    Rsqrt,
    /// Linear warmup, then cosine decay to 0.
    Cosine,
    /// The JAX LRA code's `constant * linear_warmup * cosine_decay` with `steps_per_cycle =
    /// steps` (its image and Pathfinder configs): `lr · min(1, s/w) · ½(1 + cos(π·p))`, `p =
    /// max(0, (s − w) / steps) mod 1`. The cycle counts from the end of the warmup but spans all
    /// `steps`, so the rate never reaches 0 (at the last step: `½(1 + cos(π·(1 − w/steps)))`).
    JaxCosine,
    /// Linear warmup, then constant.
    Constant,
    /// PyTorch `OneCycleLR(max_lr = lr, pct_start = warmup_steps / steps, anneal_strategy =
    /// 'linear')` with its defaults, as the PyTorch-LRA code (mlpen/Nystromformer
    /// `run_tasks.py`, Skyformer `main.py`) runs it: from `lr/25` up to `lr` over the warmup,
    /// then down to `lr/25/1e4` at the last step. (Its β1 cycling is not reproduced.)
    OneCycle,
}

impl ExperimentConfig {
    /// Parses a TOML document; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let value: toml::Table =
            toml::from_str(text).with_context(|| format!("{origin}: invalid TOML"))?;
        Self::from_table(value).with_context(|| format!("{origin}: invalid experiment config"))
    }

    fn from_table(mut table: toml::Table) -> Result<Self> {
        fill_from_checkpoint(&mut table)?;
        let mut config: Self = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| anyhow!("`{}`: {}", e.path(), explain_unknown(e.inner().message())))?;
        config.task.settings = config
            .task
            .task()?
            .resolve_settings(&config.task.settings)?;
        config.validate()?;
        Ok(config)
    }

    /// Applies `key=value` overrides (dotted keys, TOML values; bare words are strings).
    pub fn with_overrides(self, overrides: &[String]) -> Result<Self> {
        if overrides.is_empty() {
            return Ok(self);
        }
        let mut table = self.to_table();
        for assignment in overrides {
            let (key, raw) = assignment
                .split_once('=')
                .ok_or_else(|| anyhow!("--set {assignment}: expected key=value"))?;
            set_path(&mut table, key.trim(), parse_value(raw.trim()))
                .with_context(|| format!("--set {assignment}"))?;
        }
        Self::from_table(table).context("after applying --set overrides")
    }

    /// The config as a TOML table, with the mixer settings fully resolved.
    pub fn to_table(&self) -> toml::Table {
        match toml::Value::try_from(self).expect("experiment configs serialise to TOML") {
            toml::Value::Table(table) => table,
            other => unreachable!("config serialised to {other:?}"),
        }
    }

    /// Pretty TOML, as written to `config.toml`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("experiment configs serialise to TOML")
    }

    /// The config starting from the checkpoint in `init`: its `[model]` is the checkpoint's and
    /// a task that tokenizes uses the checkpoint's tokenizer (`--init`).
    pub fn from_checkpoint(mut self, init: &Path) -> Result<Self> {
        self.model = checkpoint_model(init)?;
        self.init = Some(init.to_path_buf());
        if self.task.task()?.input() == InputLayout::Tokenized {
            let tokenizer = init.display().to_string();
            self.task
                .settings
                .insert("tokenizer".into(), tokenizer.into());
        }
        Ok(self)
    }

    /// Replaces the `[mixer]` table by the parsed mixer config with every default filled in.
    pub fn resolved(mut self) -> Result<Self> {
        self.mixer = self.mixer_config()?.to_table();
        Ok(self)
    }

    /// The chosen mixer's typed config.
    pub fn mixer_config(&self) -> Result<MixerConfig> {
        let kind = mixer_kind(&self.attention)?;
        mixer_settings(kind, &self.mixer)
    }

    /// Checks values that serde cannot (ranges, sizes that must fit together).
    fn validate(&self) -> Result<()> {
        let positive = [
            ("task.max_len", self.task.max_len),
            ("model.d_model", self.model.d_model),
            ("model.n_layers", self.model.n_layers),
            ("model.n_heads", self.model.n_heads),
            ("model.d_ffn", self.model.d_ffn),
            ("model.head_hidden", self.model.head_hidden),
            ("train.batch_size", self.train.batch_size),
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!("{key} must be at least 1");
            }
        }
        for (key, p) in [
            ("model.dropout", self.model.dropout),
            ("model.attention_dropout", self.model.attention_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                bail!("{key} = {p}: expected a probability in [0, 1)");
            }
        }
        match (self.train.steps, self.train.epochs) {
            (0, None) => bail!("train.steps must be at least 1 (or give train.epochs)"),
            (0, Some(epochs)) if !(epochs.is_finite() && epochs > 0.0) => {
                bail!("train.epochs = {epochs}: expected a positive number of passes")
            }
            _ => {}
        }
        if self.train.cycle_momentum && self.train.schedule != Schedule::OneCycle {
            bail!(
                "train.cycle_momentum = true cycles β1 against OneCycleLR's rate: it needs \
                 train.schedule = \"one_cycle\""
            );
        }
        if let Some(pad_to) = self.task.pad_to
            && pad_to < self.task.max_len
        {
            bail!(
                "task.pad_to = {pad_to} is shorter than task.max_len = {}: expected at least \
                 the truncation length",
                self.task.max_len
            );
        }
        if self.train.first_schedule_step > 1 {
            bail!(
                "train.first_schedule_step = {}: expected 0 or 1",
                self.train.first_schedule_step
            );
        }
        if self.train.lr.is_nan() || self.train.lr <= 0.0 {
            bail!(
                "train.lr = {}: expected a positive learning rate",
                self.train.lr
            );
        }
        self.model.validate()?;
        if self.task.task()?.input() == InputLayout::Tokenized && self.model.token_types == 0 {
            bail!(
                "model.token_types = 0, but task {} feeds token types: set it to the checkpoint's \
                 type vocabulary (2 for BERT, 1 for RoBERTa), or start from one with --init",
                self.task.name
            );
        }
        let mixer = self.mixer_config()?;
        mixer.validate(&self.mixer_dims())?;
        Ok(())
    }

    fn mixer_dims(&self) -> MixerDims {
        MixerDims::new(
            self.model.d_model,
            self.model.n_heads,
            self.task.padded_len() + usize::from(self.model.pooling == Pooling::Cls),
        )
        .with_qkv_dim(self.model.qkv_dim())
        .with_dropout(self.model.attention_dropout)
        .with_projection_bias(self.model.attention_bias)
        .with_padded_queries(self.model.padded_queries)
    }

    /// The model for a task with `vocab_size` tokens whose head has `outputs` outputs.
    pub fn classifier(&self, vocab_size: usize, outputs: usize) -> Result<ClassifierConfig> {
        let shape = TaskShape {
            vocab_size,
            max_len: self.task.padded_len(),
            outputs,
            dual_encoder: self.task.task()?.input() == InputLayout::DualEncoder,
        };
        Ok(self.model.classifier(shape, self.mixer_config()?))
    }
}

/// With `init = DIR`: the `[model]` section, when absent, is the checkpoint's, and a task that
/// tokenizes (GLUE) takes the checkpoint's tokenizer unless `task.tokenizer` names another.
fn fill_from_checkpoint(table: &mut toml::Table) -> Result<()> {
    let Some(init) = table
        .get("init")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
    else {
        return Ok(());
    };
    if !table.contains_key("model") {
        let model = checkpoint_model(&init)?;
        let model = toml::Value::try_from(model).expect("model configs serialise to TOML");
        table.insert("model".into(), model);
    }
    let tokenizes = table
        .get("task")
        .and_then(|t| t.get("name"))
        .and_then(|n| n.as_str())
        .and_then(|name| task::find(name).ok())
        .is_some_and(|task| task.input() == InputLayout::Tokenized);
    if let Some(toml::Value::Table(task)) = table.get_mut("task")
        && tokenizes
        && !task.contains_key("tokenizer")
    {
        task.insert("tokenizer".into(), init.display().to_string().into());
    }
    Ok(())
}

/// The encoder configuration of the checkpoint in `dir` (its `config.json`).
pub fn checkpoint_model(dir: &Path) -> Result<ModelConfig> {
    let config = lra_model::pretrained::CheckpointConfig::read(dir)
        .with_context(|| format!("--init {}", dir.display()))?;
    Ok(config.model_config())
}

/// The `[mixer]` settings `table` of mixer `kind`, checked, with defaults filled in; a misspelt
/// key gets the closest valid one suggested.
pub fn mixer_settings(kind: MixerKind, table: &toml::Table) -> Result<MixerConfig> {
    kind.parse_config(table)
        .map_err(|error| anyhow!("{}", explain_unknown(&error.to_string())))
}

/// The registered mixer called `name`, or an error suggesting the closest name.
pub fn mixer_kind(name: &str) -> Result<MixerKind> {
    name.parse::<MixerKind>()
        .map_err(|_| unknown_name("attention", name, MixerKind::ALL.iter().map(|k| k.name())))
}

/// What a run asks for on the command line (`lra run`, `lra bench`), before resolution.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Named config under `experiments/`; default: the task's (`lra-pytorch/<task>`,
    /// `glue/<task>`).
    pub preset: Option<String>,
    /// Experiment config file instead of a preset.
    pub config_file: Option<PathBuf>,
    /// Task; must match the preset's.
    pub task: Option<String>,
    /// Token mixer, replacing the preset's.
    pub attention: Option<String>,
    /// `key=value` overrides.
    pub overrides: Vec<String>,
    /// A pretrained checkpoint to start from (`init`): it replaces the preset's `[model]`.
    pub init: Option<PathBuf>,
    /// Shorthands for `train.steps`, `seed` and `task.data_dir`.
    pub steps: Option<usize>,
    pub seed: Option<u64>,
    pub data: Option<PathBuf>,
}

/// Preset or config file, then `--set` and the shorthand flags, validated and with the mixer's
/// and task's defaults filled in.
pub fn resolve(request: &Request) -> Result<ExperimentConfig> {
    if let Some(task) = &request.task {
        task::find(task)?;
    }
    let base = match (&request.config_file, &request.preset) {
        (Some(file), _) => load_file(file)?,
        (None, Some(preset)) => load_preset_for(preset, request.task.as_deref())?,
        (None, None) => {
            let task = task::find(request.task.as_deref().unwrap_or(DEFAULT_TASK))?;
            load_preset(&task.default_preset())?
        }
    };
    if let Some(task) = &request.task
        && *task != base.task.name
    {
        bail!(
            "preset `{}` is for task {}, not {task}; pick a preset for {task} (available: {})",
            base.preset,
            base.task.name,
            list_presets().join(", ")
        );
    }
    let base = match &request.init {
        Some(init) => base.from_checkpoint(init)?,
        None => base,
    };
    let mut overrides = request.overrides.clone();
    if let Some(attention) = &request.attention {
        mixer_kind(attention)?;
        overrides.push(format!("attention=\"{attention}\""));
    }
    if let Some(steps) = request.steps {
        overrides.push(format!("train.steps={steps}"));
    }
    if let Some(seed) = request.seed {
        overrides.push(format!("seed={seed}"));
    }
    if let Some(data) = &request.data {
        let text = toml::Value::String(data.display().to_string());
        overrides.push(format!("task.data_dir={text}"));
    }
    base.with_overrides(&overrides)?.resolved()
}

/// `1e-3` → float, `true` → bool, `[1, 2]` → array, `"x"` → string; anything else is a bare string.
pub fn parse_value(raw: &str) -> toml::Value {
    let document = format!("value = {raw}");
    match toml::from_str::<toml::Table>(&document) {
        Ok(mut table) => table.remove("value").expect("parsed key is present"),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Sets `a.b.c` in `table`. Intermediate tables must exist, except under `mixer` (including
/// nested ones such as `mixer.host_config`), whose keys belong to the chosen mixer and are checked
/// when the mixer config is parsed.
fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().expect("split yields at least one part");
    let mut current = table;
    for part in parents {
        let known: Vec<String> = current.keys().cloned().collect();
        let entry = current.entry(part.to_string());
        let child = match entry {
            toml::map::Entry::Occupied(occupied) => occupied.into_mut(),
            toml::map::Entry::Vacant(vacant) if parts[0] == "mixer" => {
                vacant.insert(toml::Value::Table(toml::Table::new()))
            }
            toml::map::Entry::Vacant(_) => {
                bail!(
                    "unknown section `{part}`; expected one of: {}",
                    known.join(", ")
                )
            }
        };
        current = child
            .as_table_mut()
            .ok_or_else(|| anyhow!("`{part}` is a value, not a section"))?;
    }
    let coerced = coerce_like(current.get(*last), value);
    current.insert(last.to_string(), coerced);
    Ok(())
}

/// `--set train.lr=1` gives an integer where the field is a float: follow the existing type.
fn coerce_like(existing: Option<&toml::Value>, value: toml::Value) -> toml::Value {
    match (existing, value) {
        (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (Some(toml::Value::String(_)), toml::Value::Integer(i)) => {
            toml::Value::String(i.to_string())
        }
        (_, value) => value,
    }
}

/// Sub-folders of `experiments/` that hold other files than `lra run` presets: sweep grids,
/// benchmark definitions, published numbers and `lra pretrain`'s presets.
const NOT_PRESET_DIRS: [&str; 4] = ["sweeps", "bench", "published", "pretrain"];

/// Where named presets live: `./experiments`, then the repository's `experiments/`.
pub fn preset_dirs() -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    vec![PathBuf::from("experiments"), repo]
}

/// The task a run trains when neither `--task` nor a preset names one.
pub const DEFAULT_TASK: &str = "listops";

/// The file of preset `name` (`experiments/<name>.toml`), if there is one.
pub fn preset_path(name: &str) -> Option<PathBuf> {
    preset_dirs()
        .into_iter()
        .map(|dir| dir.join(format!("{name}.toml")))
        .find(|path| path.is_file())
}

/// Whether `name` is a preset family: a folder of per-task presets (`tiny`, `lra-pytorch`).
fn is_preset_family(name: &str) -> bool {
    !name.is_empty() && preset_dirs().iter().any(|dir| dir.join(name).is_dir())
}

/// The preset `name` names for `task`: `name` itself when it is a preset file, else, when
/// `name` is a family folder, its member for `task` (`tiny` + `pathx` → `tiny/pathx`; without a
/// task, the family's ListOps preset).
pub fn preset_for(name: &str, task: Option<&str>) -> String {
    if preset_path(name).is_none() && is_preset_family(name) {
        format!("{name}/{}", task.unwrap_or(DEFAULT_TASK))
    } else {
        name.to_string()
    }
}

/// Loads the preset `name` (`experiments/<name>.toml`; a family name such as `tiny` loads its
/// ListOps member).
pub fn load_preset(name: &str) -> Result<ExperimentConfig> {
    load_preset_for(name, None)
}

/// Loads the preset `name` for `task` (see [`preset_for`]).
pub fn load_preset_for(name: &str, task: Option<&str>) -> Result<ExperimentConfig> {
    let resolved = preset_for(name, task);
    let file = preset_path(&resolved).ok_or_else(|| missing_preset(name, &resolved))?;
    let mut config = load_file(&file)?;
    config.preset = resolved;
    Ok(config)
}

/// For a task whose data cannot be generated here: where its data comes from (the task's
/// default preset's "not found" hint); empty when that cannot be worked out.
fn data_source(task: &str) -> String {
    let hint = || -> Option<String> {
        let config = load_preset(&task::find(task).ok()?.default_preset()).ok()?;
        let set = task::DataSet::of(&config.task).ok()?;
        Some(set.task.fetch_hint(&set))
    };
    match hint() {
        Some(hint) => format!(".\n{task} needs its data downloaded. {hint}"),
        None => String::new(),
    }
}

/// The error for a preset that does not exist: for a family without this task's member, the
/// members it has; otherwise the closest preset or family name.
fn missing_preset(name: &str, resolved: &str) -> anyhow::Error {
    let presets = list_presets();
    if let Some((_, task)) = resolved.split_once('/').filter(|_| resolved != name) {
        let members: Vec<&str> = presets
            .iter()
            .filter(|p| p.starts_with(&format!("{name}/")))
            .map(String::as_str)
            .collect();
        return anyhow!(
            "preset family `{name}` has no preset for task {task} (no {resolved}); it has: {}{}",
            members.join(", "),
            data_source(task)
        );
    }
    let mut valid: Vec<&str> = presets.iter().map(String::as_str).collect();
    valid.extend(presets.iter().filter_map(|p| Some(p.split_once('/')?.0)));
    valid.sort_unstable();
    valid.dedup();
    unknown_name("preset", name, valid)
}

/// Loads an experiment config file.
pub fn load_file(path: &Path) -> Result<ExperimentConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    ExperimentConfig::from_toml(&text, &path.display().to_string())
}

/// Names of all presets found in [`preset_dirs`], sorted.
pub fn list_presets() -> Vec<String> {
    let mut names = Vec::new();
    for dir in preset_dirs() {
        collect_presets(&dir, &dir, &mut names);
    }
    names.sort();
    names.dedup();
    names
}

fn collect_presets(root: &Path, dir: &Path, names: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir()
            && !path
                .file_name()
                .is_some_and(|name| NOT_PRESET_DIRS.iter().any(|d| name == *d))
        {
            collect_presets(root, &path, names);
        } else if path.extension().is_some_and(|ext| ext == "toml") {
            let relative = path.strip_prefix(root).unwrap_or(&path).with_extension("");
            names.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}
