//! What a pretraining run is asked to do: [`PretrainConfig`], resolved from its defaults, a
//! preset (`experiments/pretrain/<name>.toml`) and the command line (in that order of
//! precedence, the last winning), and written into the run folder as `pretrain.toml`, which
//! `--resume` reads back.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use lra_model::MixerConfig;
use lra_model::pretrained::{Checkpoint, PositionExtension};
use serde::{Deserialize, Serialize};

use crate::config::{
    ClipBy, Schedule, TrainConfig, mixer_kind, mixer_settings, parse_value, preset_dirs,
};
use crate::masking::Masking;
use crate::param_groups::ParamGroupConfig;
use crate::suggest::{explain_unknown, unknown_name};

/// The sub-folder of each preset folder (`experiments/`) that holds the pretraining presets.
pub const PRESET_FOLDER: &str = "pretrain";

/// The names of the pretraining presets, sorted.
pub fn list_presets() -> Vec<String> {
    let mut names: Vec<String> = preset_dirs()
        .into_iter()
        .filter_map(|dir| std::fs::read_dir(dir.join(PRESET_FOLDER)).ok())
        .flat_map(|entries| entries.flatten().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .filter_map(|path| Some(path.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The file of pretraining preset `name`, if there is one.
pub fn preset_file(name: &str) -> Option<PathBuf> {
    preset_dirs()
        .into_iter()
        .map(|dir| dir.join(PRESET_FOLDER).join(format!("{name}.toml")))
        .find(|path| path.is_file())
}

/// The settings table of preset `name` and its file (to name in errors); an unknown name is an
/// error listing the presets and suggesting the closest.
pub fn load_preset(name: &str) -> Result<(toml::Table, String)> {
    let path = preset_file(name).ok_or_else(|| {
        let presets = list_presets();
        unknown_name(
            "pretraining preset",
            name,
            presets.iter().map(String::as_str),
        )
    })?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    Ok((table, path.display().to_string()))
}

/// How the corpus becomes training sequences.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Packing {
    /// RoBERTa's "full sentences": documents one after another, across their boundaries, into
    /// sequences of `max_len` (RoBERTa, MRA, the released Nyströmformer code).
    #[default]
    FullSentences,
    /// BERT's segment pairs `[CLS] A [SEP] B [SEP]` from one document, cut at a sentence (line)
    /// boundary (BERT, ALBERT, the Nyströmformer paper); see `lra_data::corpus::segment_pairs`.
    SegmentPairs,
}

/// The settings of a pretraining run. Every field but `init` and `corpus` has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// The Hugging Face BERT/RoBERTa checkpoint folder to start from (with its MLM head).
    pub init: PathBuf,
    /// Corpus files: plain text (documents separated by blank lines) or `.jsonl` (`text` field).
    pub corpus: Vec<PathBuf>,
    /// The attention swapped into every layer (see `lra list`). Default softmax.
    pub attention: String,
    /// Tokens per packed sequence. Default 128.
    pub max_len: usize,
    /// How the corpus becomes sequences. Default full-sentences.
    pub packing: Packing,
    /// Segment pairs: chance a document's pairs aim at a random shorter length (BERT's
    /// `short_seq_prob`). Default 0.1.
    pub short_seq_prob: f64,
    /// Sentence-order prediction (ALBERT; the Nyströmformer paper's MLM + SOP): segment pairs
    /// swapped half the time, and a pooler + two-way head on the first token trained beside the
    /// MLM. Needs segment-pairs packing. Default false.
    pub sop: bool,
    /// How the checkpoint's learned position table is lengthened when `max_len` exceeds it
    /// (tile or interpolate); unset, a longer `max_len` is an error.
    pub extend_positions: Option<PositionExtension>,
    /// Sequences per optimisation step.
    pub batch_size: usize,
    /// Gradient accumulation: each step's batch goes through the model in this many equal
    /// micro-batches (also the evaluation's batch), their gradients summed before one update.
    pub accumulate: usize,
    pub steps: usize,
    /// Peak learning rate (AdamW), reached after the warmup and decayed linearly to 0.
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Parameters with their own weight decay (and peak lr), as `[[train.param_groups]]` of
    /// `lra run`; e.g. no decay on biases and LayerNorms (Hugging Face `Trainer`, MRA).
    pub param_groups: Vec<ParamGroupConfig>,
    /// AdamW β₂ (RoBERTa and MRA: 0.98; BERT: 0.999).
    pub beta2: f64,
    /// Gradients clipped to this global norm; 0: no clipping (MRA). Default 1.0 (Hugging Face
    /// `max_grad_norm`).
    pub grad_clip: f64,
    /// The schedule's step number for the first update: 1 (default) or 0 (Hugging Face
    /// `get_scheduler`, as MRA: the first update after a warmup has rate 0).
    pub first_schedule_step: usize,
    /// Share of the documents held out for validation (the last ones; at least one).
    pub held_out: f64,
    /// Validate every this many steps (and at the end).
    pub eval_every: usize,
    /// Save the training state (model, optimiser, step, history) every this many steps, for
    /// `--resume`; SIGTERM/SIGINT save it at the next step whatever this says.
    pub checkpoint_every: usize,
    /// Chance a token is chosen as a target (80/10/10 mask/random/keep).
    pub mask_probability: f64,
    /// At most this many targets per sequence; 0 = no cap.
    pub max_masked: usize,
    /// Exactly this many targets per sequence, chosen uniformly among its non-special tokens,
    /// instead of `mask_probability`'s draw (MRA: 77 of 512); 0 = draw by the probability.
    pub masked_per_example: usize,
    /// Choose whole words (all their word pieces) instead of single pieces.
    pub whole_word_masking: bool,
    pub seed: u64,
    /// The mixer's own settings (`[mixer]` in a preset, `--mixer key=value`).
    pub mixer: toml::Table,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            init: PathBuf::new(),
            corpus: Vec::new(),
            attention: "softmax".into(),
            max_len: 128,
            packing: Packing::FullSentences,
            short_seq_prob: 0.1,
            sop: false,
            extend_positions: None,
            batch_size: 32,
            accumulate: 1,
            steps: 1000,
            lr: 5e-5,
            warmup_steps: 0,
            weight_decay: 0.01,
            param_groups: Vec::new(),
            beta2: 0.999,
            grad_clip: 1.0,
            first_schedule_step: 1,
            held_out: 0.05,
            eval_every: 200,
            checkpoint_every: 500,
            mask_probability: 0.15,
            max_masked: 0,
            masked_per_example: 0,
            whole_word_masking: false,
            seed: 0,
            mixer: toml::Table::new(),
        }
    }
}

/// Settings given on the command line; those left out come from the preset or the defaults.
/// Field names are [`PretrainConfig`]'s, so the flags given serialise into the keys they set.
#[derive(Debug, Args, Clone, Default, Serialize)]
pub struct SettingFlags {
    /// The Hugging Face BERT/RoBERTa checkpoint folder to start from (with its MLM head).
    #[arg(long, value_name = "DIR")]
    pub init: Option<PathBuf>,
    /// Corpus files: plain text (documents separated by blank lines) or `.jsonl` (`text` field).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub corpus: Option<Vec<PathBuf>>,
    /// The attention swapped into every layer (see `lra list`) [default: softmax].
    #[arg(long, short)]
    pub attention: Option<String>,
    /// Tokens per packed sequence [default: 128].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// How the corpus becomes sequences: `full-sentences` packs documents one after another
    /// (RoBERTa, MRA); `segment-pairs` makes BERT's `[CLS] A [SEP] B [SEP]` pairs within a
    /// document, cut at a line [default: full-sentences].
    #[arg(long, value_name = "HOW", value_parser = ["full-sentences", "segment-pairs"])]
    pub packing: Option<String>,
    /// Segment pairs: chance a document's pairs aim at a random shorter length (BERT's
    /// short_seq_prob) [default: 0.1].
    #[arg(long)]
    pub short_seq_prob: Option<f64>,
    /// Sentence-order prediction (ALBERT, the Nyströmformer paper): segment pairs swapped half
    /// the time and a sentence-order head trained beside the MLM; needs --packing segment-pairs
    /// [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub sop: Option<bool>,
    /// Lengthen the checkpoint's learned position table when --max-len exceeds it: `tile`
    /// copies the learned rows one after another (Longformer, Nyströmformer), `interpolate`
    /// stretches them linearly [default: unset, a longer --max-len is an error].
    #[arg(long, value_name = "HOW", value_parser = ["tile", "interpolate"])]
    pub extend_positions: Option<String>,
    /// Sequences per optimisation step [default: 32].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Run each step's batch as this many micro-batches, gradients summed (a batch that does not
    /// fit the device at once) [default: 1].
    #[arg(long, value_name = "N")]
    pub accumulate: Option<usize>,
    /// [default: 1000]
    #[arg(long)]
    pub steps: Option<usize>,
    /// Peak learning rate (AdamW), reached after the warmup and decayed linearly to 0
    /// [default: 5e-5].
    #[arg(long)]
    pub lr: Option<f64>,
    /// [default: 0]
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// [default: 0.01]
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// AdamW β₂ (RoBERTa and MRA: 0.98) [default: 0.999].
    #[arg(long)]
    pub beta2: Option<f64>,
    /// Clip gradients to this global norm; 0 = no clipping [default: 1.0].
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// Share of the documents held out for validation (the last ones; at least one)
    /// [default: 0.05].
    #[arg(long)]
    pub held_out: Option<f64>,
    /// Validate every this many steps (and at the end) [default: 200].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Save the training state for `--resume` every this many steps (SIGTERM/SIGINT save it at
    /// the next step) [default: 500].
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Chance a token is chosen as a target (80/10/10 mask/random/keep) [default: 0.15].
    #[arg(long)]
    pub mask_probability: Option<f64>,
    /// At most this many targets per sequence; 0 = no cap [default: 0].
    #[arg(long)]
    pub max_masked: Option<usize>,
    /// Exactly this many targets per sequence instead of --mask-probability's draw (MRA: 77 of
    /// 512); 0 = draw by the probability [default: 0].
    #[arg(long, value_name = "N")]
    pub masked_per_example: Option<usize>,
    /// Choose 15 % of the words and mask all their pieces (BERT `##` continuations, RoBERTa
    /// pieces without a leading space) instead of 15 % of the pieces [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub whole_word_masking: Option<bool>,
    /// [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SettingFlags {
    /// The flags given, as `pretrain.toml` keys (TOML has no null: flags left out are absent).
    fn table(&self) -> Result<toml::Table> {
        toml::Table::try_from(self).context("the pretraining flags serialise to TOML")
    }
}

/// The config a new run gets: `base` (a preset's table, or empty), then the flags, then each
/// `--mixer key=value`, read strictly; `source` names where `base` came from in errors.
pub fn resolve(
    mut base: toml::Table,
    source: &str,
    flags: &SettingFlags,
    mixer: &[String],
) -> Result<PretrainConfig> {
    base.extend(flags.table()?);
    if !mixer.is_empty() {
        let table = base
            .entry("mixer")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| anyhow!("{source}: `mixer` must be a table of the mixer's settings"))?;
        for assignment in mixer {
            let (key, value) = assignment
                .split_once('=')
                .with_context(|| format!("--mixer {assignment}: expected key=value"))?;
            table.insert(key.trim().to_string(), parse_value(value.trim()));
        }
    }
    PretrainConfig::from_table(base, source)
}

/// Whether any setting was given on the command line (which `--resume` refuses: the run
/// continues with its own `pretrain.toml`).
pub fn any_given(flags: &SettingFlags, mixer: &[String]) -> Result<bool> {
    Ok(!flags.table()?.is_empty() || !mixer.is_empty())
}

impl PretrainConfig {
    /// Reads a settings table strictly: an unknown key is an error naming it (with the closest
    /// known one), and so is a value of the wrong type; `source` names the table's origin.
    pub fn from_table(table: toml::Table, source: &str) -> Result<Self> {
        let config: Self =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                anyhow!(
                    "{source}: `{}`: {}",
                    e.path(),
                    explain_unknown(e.inner().message())
                )
            })?;
        config.validate().with_context(|| source.to_string())?;
        Ok(config)
    }

    /// Reads a `pretrain.toml` (a preset or a run folder's).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
        Self::from_table(table, &path.display().to_string())
    }

    /// The TOML written into the run folder.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("the pretraining settings serialise to TOML")
    }

    /// Checks what serde cannot: counts, shares, the attention and its settings.
    fn validate(&self) -> Result<()> {
        if self.init.as_os_str().is_empty() {
            bail!(
                "no checkpoint to start from: pass --init DIR (a Hugging Face BERT/RoBERTa folder)"
            );
        }
        if self.corpus.is_empty() {
            bail!("no corpus: pass --corpus FILE…");
        }
        for (name, value) in [
            ("batch_size", self.batch_size),
            ("steps", self.steps),
            ("eval_every", self.eval_every),
            ("checkpoint_every", self.checkpoint_every),
            ("max_len", self.max_len),
            ("accumulate", self.accumulate),
        ] {
            if value == 0 {
                bail!("`{name}` must be at least 1");
            }
        }
        if !self.batch_size.is_multiple_of(self.accumulate) {
            bail!(
                "`batch_size` {} is not a multiple of `accumulate` {}: the micro-batches must be \
                 equal",
                self.batch_size,
                self.accumulate
            );
        }
        if self.first_schedule_step > 1 {
            bail!(
                "`first_schedule_step` = {}: expected 0 or 1",
                self.first_schedule_step
            );
        }
        if self.grad_clip.is_nan() || self.grad_clip < 0.0 {
            bail!(
                "`grad_clip` = {}: expected a norm ≥ 0 (0: no clipping)",
                self.grad_clip
            );
        }
        if !(0.0..1.0).contains(&self.held_out) {
            bail!("`held_out` = {}: expected a share in [0, 1)", self.held_out);
        }
        if !(0.0..=1.0).contains(&self.short_seq_prob) {
            bail!(
                "`short_seq_prob` = {}: expected a probability in [0, 1]",
                self.short_seq_prob
            );
        }
        if self.sop && self.packing != Packing::SegmentPairs {
            bail!(
                "`sop` = true needs `packing` = \"segment-pairs\" (--packing segment-pairs): \
                 sentence order is that of a pair's two segments"
            );
        }
        if self.masked_per_example > 0 && self.whole_word_masking {
            bail!(
                "`masked_per_example` = {} counts single pieces; it cannot be combined with \
                 `whole_word_masking`, which chooses words",
                self.masked_per_example
            );
        }
        self.masking().validate().map_err(anyhow::Error::msg)?;
        self.mixer_config()?;
        Ok(())
    }

    /// Sequences per micro-batch.
    pub fn micro_batch_size(&self) -> usize {
        self.batch_size / self.accumulate
    }

    /// How tokens are masked.
    pub fn masking(&self) -> Masking {
        Masking {
            probability: self.mask_probability,
            max_per_example: self.max_masked,
            exact_per_example: self.masked_per_example,
            ..Masking::default()
        }
    }

    /// Checks that the checkpoint has positions for `max_len` tokens, or that its table is to be
    /// lengthened.
    pub fn check_length(&self, checkpoint: &Checkpoint) -> Result<()> {
        let usable = checkpoint.max_len();
        if self.max_len <= usable || self.extend_positions.is_some() {
            return Ok(());
        }
        let offset = checkpoint.config.position_offset();
        let roberta_rows = if offset > 0 {
            format!(", of which RoBERTa's first {offset} belong to the padding id")
        } else {
            String::new()
        };
        bail!(
            "max_len {} is longer than the {usable} positions of {} (`max_position_embeddings` = \
             {}{roberta_rows}); pass --extend-positions tile|interpolate (`extend_positions` in \
             a preset) to lengthen the learned table, or a --max-len of at most {usable}",
            self.max_len,
            checkpoint.config.path.display(),
            checkpoint.config.max_position_embeddings,
        )
    }

    /// The attention's config with its defaults filled in.
    pub fn mixer_config(&self) -> Result<MixerConfig> {
        mixer_settings(mixer_kind(&self.attention)?, &self.mixer)
    }

    /// The optimiser and schedule: AdamW (β₁ 0.9, ε 1e-6, as RoBERTa), gradients clipped to
    /// the global norm `grad_clip`, warmup then linear decay to 0.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            epochs: None,
            batch_size: self.batch_size,
            lr: self.lr,
            warmup_steps: self.warmup_steps,
            schedule: Schedule::Linear,
            first_schedule_step: self.first_schedule_step,
            weight_decay: self.weight_decay,
            param_groups: self.param_groups.clone(),
            beta1: 0.9,
            cycle_momentum: false,
            beta2: self.beta2,
            eps: 1e-6,
            grad_clip: self.grad_clip,
            grad_clip_by: ClipBy::GlobalNorm,
            eval_every: self.eval_every,
            eval_batches: 0,
            skip_nonfinite: 0,
            test_with: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given() -> SettingFlags {
        SettingFlags {
            init: Some("ckpt".into()),
            corpus: Some(vec!["a.txt".into()]),
            ..SettingFlags::default()
        }
    }

    #[test]
    fn flags_override_the_base_and_the_rest_keeps_defaults() {
        let base: toml::Table =
            toml::from_str("steps = 7\nlr = 1e-4\n[mixer]\nlandmarks = 4").unwrap();
        let flags = SettingFlags {
            lr: Some(3e-4),
            attention: Some("nystrom".into()),
            packing: Some("segment-pairs".into()),
            sop: Some(true),
            ..given()
        };
        let config = resolve(base, "preset x", &flags, &["pinv_iters=3".into()]).unwrap();
        assert_eq!((config.steps, config.lr), (7, 3e-4));
        assert_eq!((config.packing, config.sop), (Packing::SegmentPairs, true));
        assert_eq!(config.batch_size, PretrainConfig::default().batch_size);
        assert_eq!(
            config.mixer.get("landmarks"),
            Some(&toml::Value::Integer(4))
        );
        assert_eq!(
            config.mixer.get("pinv_iters"),
            Some(&toml::Value::Integer(3))
        );
        // What is written into the run folder reads back as the same config.
        let table: toml::Table = toml::from_str(&config.to_toml().unwrap()).unwrap();
        assert_eq!(
            PretrainConfig::from_table(table, "round trip").unwrap(),
            config
        );
    }

    #[test]
    fn every_committed_preset_parses_and_flags_override_it() {
        let presets = list_presets();
        for expected in [
            "cpu-small",
            "mra-roberta-base",
            "mra2-roberta-base",
            "nystromformer-bert-base",
        ] {
            assert!(
                presets.iter().any(|p| p == expected),
                "{expected} in {presets:?}"
            );
        }
        for name in &presets {
            let (table, source) = load_preset(name).unwrap();
            let config = resolve(table, &source, &given(), &[])
                .unwrap_or_else(|e| panic!("preset {name}: {e:#}"));
            assert_eq!(
                config.init,
                PathBuf::from("ckpt"),
                "{name}: init comes from --init"
            );
        }
        let (table, source) = load_preset("mra-roberta-base").unwrap();
        let flags = SettingFlags {
            steps: Some(20),
            ..given()
        };
        let mra = resolve(table, &source, &flags, &[]).unwrap();
        assert_eq!(
            (mra.lr, mra.beta2, mra.masked_per_example, mra.max_len),
            (1e-5, 0.98, 77, 512)
        );
        assert_eq!((mra.grad_clip, mra.max_masked), (0.0, 0));
        assert_eq!(
            mra.param_groups,
            [ParamGroupConfig {
                params: crate::param_groups::BIASES_AND_NORMS.into(),
                weight_decay: 0.0,
                lr: None,
            }]
        );
        // Its settings, groups included, read back from the run folder's TOML.
        let table: toml::Table = toml::from_str(&mra.to_toml().unwrap()).unwrap();
        assert_eq!(
            PretrainConfig::from_table(table, "round trip").unwrap(),
            mra
        );
        assert_eq!(mra.steps, 20, "the flag wins over the preset");
        let (table, source) = load_preset("mra2-roberta-base").unwrap();
        let swapped = resolve(table, &source, &given(), &["block_per_row=4".into()]).unwrap();
        assert_eq!(swapped.attention, "mra");
        assert_eq!(
            swapped.mixer.get("block_per_row"),
            Some(&toml::Value::Integer(4))
        );
        assert_eq!(
            swapped.mixer.get("mode").and_then(|v| v.as_str()),
            Some("full")
        );
        let (table, source) = load_preset("nystromformer-bert-base").unwrap();
        let nystromformer = resolve(table, &source, &given(), &[]).unwrap();
        assert_eq!(
            (nystromformer.packing, nystromformer.sop),
            (Packing::SegmentPairs, true),
            "the paper's MLM + SOP"
        );
        let unknown = format!("{:#}", load_preset("mra-roberta").unwrap_err());
        assert!(
            unknown.contains("did you mean `mra-roberta-base`?"),
            "{unknown}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let error = |text: &str| {
            let base: toml::Table = toml::from_str(text).unwrap();
            format!("{:#}", resolve(base, "p.toml", &given(), &[]).unwrap_err())
        };
        let unknown = error("stepz = 3");
        assert!(
            unknown.contains("p.toml") && unknown.contains("stepz"),
            "{unknown}"
        );
        assert!(unknown.contains("did you mean `steps`?"), "{unknown}");
        let typed = error("lr = \"fast\"");
        assert!(typed.contains("`lr`"), "{typed}");
        assert!(error("held_out = 1.5").contains("held_out"));
        assert!(error("checkpoint_every = 0").contains("checkpoint_every"));
        let sop = error("sop = true");
        assert!(
            sop.contains("`sop`") && sop.contains("segment-pairs"),
            "{sop}"
        );
        assert!(error("short_seq_prob = 1.5").contains("short_seq_prob"));
        assert!(error("packing = \"pairs\"").contains("packing"));
        let uneven = error("batch_size = 8\naccumulate = 3");
        assert!(
            uneven.contains("batch_size` 8") && uneven.contains("accumulate` 3"),
            "{uneven}"
        );
        let no_init = format!(
            "{:#}",
            resolve(toml::Table::new(), "flags", &SettingFlags::default(), &[]).unwrap_err()
        );
        assert!(no_init.contains("--init"), "{no_init}");
    }
}
