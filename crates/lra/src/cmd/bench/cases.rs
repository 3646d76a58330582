//! What each benchmark builds and times: mixers on random input, the attention ops alone, and a
//! preset's whole training step (the very step `lra run` takes).

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use lra_data::tokenizer::SpecialTokens;
use lra_data::{LabelKind, SplitBuilder, SplitFormat, TokenWidth};
use lra_model::mixer::reference::attention_probs;
use lra_model::ops::{flash_attention, softmax_attention};
use lra_model::pretrained::CheckpointConfig;
use lra_model::{MaskedLmConfig, MixerDims, MixerInput, MixerKind, TaskShape, TokenMixer};
use rand::Rng;

use super::measure::{row, time_repeats};
use super::{
    AttentionArgs, AttentionOp, BenchRow, EfficiencyArgs, EfficiencyFile, MixerArgs, MlmArgs, Mode,
    StepArgs,
};
use crate::batches::Batch;
use crate::cmd::pretrain::batches::{MaskedBatch, MaskingPlan, masked_batch};
use crate::cmd::pretrain::{PretrainConfig, mlm_step};
use crate::config::{self, ExperimentConfig, Request};
use crate::masking::step_rng;
use crate::objective::{Objective, Targets};
use crate::schedule::learning_rate;
use crate::train::{logits, optimizer, train_step};
use crate::{device, param_groups};

impl AttentionOp {
    /// `softmax(q kᵀ + key_bias) v` without dropout; a zero `key_bias` is SDPA without a mask.
    fn apply(self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, key_bias: Tensor<2>) -> Tensor<4> {
        match self {
            AttentionOp::Flash => flash_attention::flash_attention(q, k, v, key_bias, 0.0, 0),
            AttentionOp::Softmax => softmax_attention::softmax_attention(q, k, v, key_bias, 0.0, 0),
            // Also scales the scores by 1/√d (the fused ops leave that to the caller): one more
            // elementwise pass, the mixers' cost on those devices.
            AttentionOp::Reference => {
                let [batch, keys] = key_bias.dims();
                let probs = attention_probs(q, k, Some(key_bias.reshape([batch, 1, 1, keys])));
                probs.matmul(v)
            }
        }
    }

    /// Whether the op runs on `device` (the fused ops have CPU kernels only).
    fn runs_on(self, device: &Device) -> bool {
        match self {
            AttentionOp::Flash => flash_attention::is_supported(device),
            AttentionOp::Softmax => softmax_attention::is_supported(device),
            AttentionOp::Reference => true,
        }
    }
}

fn mixer_kinds(names: &[String]) -> Result<Vec<MixerKind>> {
    if names.is_empty() {
        return Ok(MixerKind::ALL.to_vec());
    }
    names.iter().map(|name| config::mixer_kind(name)).collect()
}

pub(super) fn bench_mixers(args: &MixerArgs) -> Result<Vec<BenchRow>> {
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

pub(super) fn bench_attention(args: &AttentionArgs) -> Result<Vec<BenchRow>> {
    let base = device::parse(&args.device)?;
    if let Some(op) = args.op.iter().find(|op| !op.runs_on(&base)) {
        bail!(
            "`--op {}` is a fused CPU kernel, which device `{}` lacks; the mixers run the composed \
             reference there, which `--op reference` times",
            op.name(),
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

pub(super) fn bench_step(args: &StepArgs) -> Result<BenchRow> {
    let config = config::resolve(&Request {
        preset: Some(args.preset.clone()),
        attention: args.attention.clone(),
        overrides: args.overrides.clone(),
        init: args.init.clone(),
        ..Request::default()
    })?;
    let row = time_model(&config, &args.device, args.repeats, Mode::Train)?;
    eprintln!(
        "{} step ({} × {}): {:.1} ms median, {:.1} ms min, {:.0} MiB peak",
        args.preset, row.batch, row.seq_len, row.median_ms, row.min_ms, row.peak_mib
    );
    Ok(row)
}

/// Times `lra pretrain`'s step for each attention and length: batches of full-length sequences
/// of random ids (`[CLS] … [SEP]`), 15 % of them masked as pretraining masks them, AdamW with the
/// pretraining defaults at its peak rate.
pub(super) fn bench_mlm(args: &MlmArgs) -> Result<Vec<BenchRow>> {
    let checkpoint = CheckpointConfig::read(&args.init)?;
    let base = device::parse(&args.device)?;
    let mut rows = Vec::new();
    for attention in &args.attention {
        let mixer = config::mixer_settings(config::mixer_kind(attention)?, &toml::Table::new())?;
        for &n in &args.seq_len {
            let shape = TaskShape {
                vocab_size: checkpoint.vocab_size,
                max_len: n,
                outputs: 1,
                dual_encoder: false,
            };
            let encoder = checkpoint
                .model_config()
                .classifier(shape, mixer.clone())
                .encoder;
            let device = base.clone().autodiff();
            device.seed(0);
            let mut model = Some(
                MaskedLmConfig {
                    encoder,
                    sentence_order: false,
                }
                .init(&device),
            );
            let schedule = PretrainConfig::default().train_config();
            let mut optim = optimizer(&schedule, &device)?;
            let rates = param_groups::rates(&schedule, schedule.lr)?;
            let batch = random_masked_batch(args.batch, n, checkpoint.vocab_size, &device);
            let timing = time_repeats(args.repeats, &device, || {
                let current = model.take().expect("the model is put back after each step");
                let batch = std::slice::from_ref(&batch);
                model = Some(mlm_step(current, &mut optim, batch, &schedule, rates.clone()).0);
            })?;
            let row = row(
                "mlm_step",
                Mode::Train,
                attention,
                n,
                args.batch,
                checkpoint.hidden_size,
                &args.device,
                &timing,
            );
            eprintln!(
                "{attention:<12} n={n:<6} {:>9.1} ms {:>9.0} MiB {:>9.0} tokens/s",
                row.median_ms,
                row.peak_mib,
                (args.batch * n) as f64 / (row.median_ms / 1e3)
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// `batch` packed sequences of `n` random ids, masked by the pretraining's default masking (ids
/// 0–4 stand for the special tokens: only the shape matters here).
fn random_masked_batch(batch: usize, n: usize, vocab: usize, device: &Device) -> MaskedBatch {
    let special = SpecialTokens {
        pad: 0,
        unk: 1,
        cls: 2,
        sep: 3,
        mask: 4,
    };
    let mut rng = step_rng(0, 0);
    let mut builder = SplitBuilder::with_format(SplitFormat {
        docs_per_example: 1,
        id_offset: 0,
        width: TokenWidth::for_vocab(vocab, 0),
        labels: LabelKind::Unlabelled,
        token_types: false,
    });
    for _ in 0..batch {
        let mut ids = vec![special.cls];
        ids.extend((2..n).map(|_| rng.random_range(5..vocab as u32)));
        ids.push(special.sep);
        builder
            .push_ids(&[&ids], None, None)
            .expect("ids fit the width chosen for the vocabulary");
    }
    let split = builder.finish();
    let masking = PretrainConfig::default().masking();
    let plan = MaskingPlan {
        masking: &masking,
        special,
        vocab,
        max_len: n,
        word_starts: None,
    };
    let indices: Vec<usize> = (0..batch).collect();
    masked_batch(&split, &indices, plan, &mut rng, device)
}

pub(super) fn bench_efficiency(args: &EfficiencyArgs) -> Result<(EfficiencyFile, Vec<BenchRow>)> {
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
                let config = config::resolve(&Request {
                    preset: Some(file.preset.clone()),
                    attention: Some(attention.clone()),
                    overrides,
                    ..Request::default()
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
/// two per example for pair tasks, and targets cycling through the classes.
fn random_batch(
    config: &ExperimentConfig,
    vocab_size: usize,
    objective: Objective,
    documents: usize,
    device: &Device,
) -> Batch {
    let (batch, len) = (config.train.batch_size, config.task.padded_len());
    let document = || {
        let tokens = Tensor::<2, Int>::random(
            [batch, len],
            Distribution::Uniform(1.0, vocab_size as f64),
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
    let targets = match objective {
        Objective::Classification { classes } => Targets::Classes(Tensor::from_data(
            TensorData::new(
                (0..batch as i64).map(|i| i % classes as i64).collect(),
                [batch],
            ),
            device,
        )),
        Objective::Regression => {
            Targets::Scores(Tensor::random([batch], Distribution::Default, device))
        }
    };
    Batch {
        tokens,
        pad_mask,
        types: None,
        second: (documents == 2).then(document),
        targets: Some(targets),
    }
}

/// Times the config's whole model: the training step `lra run` takes (forward, backward, AdamW
/// with the config's settings and clipping, at the schedule's peak rate) or a forward pass.
fn time_model(
    config: &ExperimentConfig,
    device_name: &str,
    repeats: usize,
    mode: Mode,
) -> Result<BenchRow> {
    let base = device::parse(device_name)?;
    let task = config.task.task()?;
    let objective = task.objective();
    // A checkpoint's vocabulary where the model comes from one (its tokenizer need not be there).
    let vocab_size = match &config.init {
        Some(init) => lra_model::pretrained::CheckpointConfig::read(init)?.vocab_size,
        None => task.vocab_size(&config.task.settings)?,
    };
    let documents = task.input().documents();
    let model_config = config.classifier(vocab_size, objective.outputs())?;
    let timing = if mode == Mode::Forward {
        base.seed(config.seed);
        let model = model_config.init(&base);
        let batch = random_batch(config, vocab_size, objective, documents, &base);
        time_repeats(repeats, &base, || {
            let _ = logits(&model, batch.clone()).sum().into_scalar::<f32>();
        })?
    } else {
        let device = base.autodiff();
        device.seed(config.seed);
        let mut model = Some(model_config.init(&device));
        let mut optim = optimizer(&config.train, &device)?;
        let lr = learning_rate(&config.train, config.train.warmup_steps);
        let rates = param_groups::rates(&config.train, lr)?;
        let batch = random_batch(config, vocab_size, objective, documents, &device);
        time_repeats(repeats, &device, || {
            let current = model.take().expect("the model is put back after each step");
            let limit = crate::grad_clip::global_limit(&config.train);
            let (next, _) = train_step(
                current,
                &mut optim,
                batch.clone(),
                objective,
                rates.clone(),
                limit,
            );
            model = Some(next);
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
