//! `lra pretrain`: masked-language-model (continued) pretraining of a BERT/RoBERTa checkpoint with
//! any attention swapped in — the Nyströmformer / YOSO / MRA protocol of starting from pretrained
//! weights — on a plain-text or JSON-lines corpus. Sequences are packed across documents, 15 % of
//! tokens masked per step from the seed (80/10/10), and the held-out documents scored (MLM loss,
//! accuracy, perplexity). The result is written as a checkpoint folder `checkpoint/` that
//! `lra run --init` fine-tunes directly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use clap::Args;
use lra_data::SplitData;
use lra_data::corpus;
use lra_data::tokenizer::{PretrainedTokenizer, SpecialTokens};
use lra_model::MaskedLm;
use lra_model::pretrained::Checkpoint;
use rand::Rng;
use serde::Serialize;

use crate::batches::TrainOrder;
use crate::config::{ClipBy, Schedule, TrainConfig, mixer_kind, parse_value};
use crate::masking::{Masking, step_rng};
use crate::results::{atomic_write, new_run_folder};
use crate::schedule::learning_rate;
use crate::train::{optimizer, step_seed};
use crate::{device, grad_clip};

/// Options of `lra pretrain`.
#[derive(Debug, Args, Clone, Serialize)]
pub struct PretrainArgs {
    /// The Hugging Face BERT/RoBERTa checkpoint folder to start from (with its MLM head).
    #[arg(long, value_name = "DIR")]
    pub init: PathBuf,
    /// Corpus files: plain text (documents separated by blank lines) or `.jsonl` (`text` field).
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    pub corpus: Vec<PathBuf>,
    /// The attention swapped into every layer (see `lra list`).
    #[arg(long, short, default_value = "softmax")]
    pub attention: String,
    /// The mixer's settings, e.g. `--mixer landmarks=64`.
    #[arg(long = "mixer", value_name = "KEY=VALUE")]
    pub mixer: Vec<String>,
    /// Tokens per packed sequence (at most the checkpoint's positions).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Peak learning rate (AdamW), reached after the warmup and decayed linearly to 0.
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: usize,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// AdamW β₂ (RoBERTa and MRA: 0.98).
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    /// Share of the documents held out for validation (the last ones; at least one).
    #[arg(long, default_value_t = 0.05)]
    pub held_out: f64,
    /// Validate every this many steps (and at the end).
    #[arg(long, default_value_t = 200)]
    pub eval_every: usize,
    /// Chance a token is chosen as a target (80/10/10 mask/random/keep).
    #[arg(long, default_value_t = 0.15)]
    pub mask_probability: f64,
    /// At most this many targets per sequence (MRA: 77 of 512); 0 = no cap.
    #[arg(long, default_value_t = 0)]
    pub max_masked: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder the run folder is created in.
    #[arg(long, default_value = "results/pretrain")]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, short)]
    pub quiet: bool,
}

/// One evaluation of the held-out sequences.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct PretrainRow {
    pub step: usize,
    pub lr: f64,
    /// Mean MLM loss of the training steps since the last row.
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_perplexity: f64,
}

/// What a pretraining run leaves: its folder, every evaluation, the exported checkpoint.
#[derive(Debug)]
pub struct PretrainRun {
    pub dir: PathBuf,
    pub rows: Vec<PretrainRow>,
    pub checkpoint: PathBuf,
}

/// A batch of masked sequences on a device.
struct MaskedBatch {
    tokens: Tensor<2, Int>,
    pad_mask: Tensor<2, Bool>,
    /// Flat positions (`example · len + i`) of the targets, and their original ids.
    positions: Tensor<1, Int>,
    targets: Tensor<1, Int>,
}

/// Runs `lra pretrain`.
pub fn execute(args: &PretrainArgs) -> Result<PretrainRun> {
    let masking = Masking {
        probability: args.mask_probability,
        max_per_example: args.max_masked,
        ..Masking::default()
    };
    masking.validate().map_err(anyhow::Error::msg)?;
    if args.batch_size == 0 || args.steps == 0 || args.eval_every == 0 {
        bail!("--batch-size, --steps and --eval-every must be at least 1");
    }
    let kind = mixer_kind(&args.attention)?;
    let mut settings = toml::Table::new();
    for assignment in &args.mixer {
        let (key, value) = assignment
            .split_once('=')
            .with_context(|| format!("--mixer {assignment}: expected key=value"))?;
        settings.insert(key.trim().to_string(), parse_value(value.trim()));
    }
    let mixer = crate::config::mixer_settings(kind, &settings)?;
    let tokenizer = PretrainedTokenizer::from_checkpoint(&args.init)?;
    let (train, val) = corpus_splits(args, &tokenizer)?;

    let device = device::parse(&args.device)?.autodiff();
    device.seed(args.seed);
    let checkpoint = Checkpoint::open(&args.init)?;
    let (mut model, report) = checkpoint.masked_lm(mixer, args.max_len, &device)?;
    let dir = create_run_dir(args)?;
    atomic_write(
        &dir.join("import_report.txt"),
        report.to_string().as_bytes(),
    )?;

    let schedule = TrainConfig {
        steps: args.steps,
        epochs: None,
        batch_size: args.batch_size,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        schedule: Schedule::Linear,
        weight_decay: args.weight_decay,
        beta1: 0.9,
        beta2: args.beta2,
        eps: 1e-6,
        grad_clip: 1.0,
        grad_clip_by: ClipBy::GlobalNorm,
        eval_every: args.eval_every,
        eval_batches: 0,
        skip_nonfinite: 0,
    };
    let mut optim = optimizer(&schedule);
    let special = tokenizer.special_tokens();
    let vocab = tokenizer.vocab_size();
    let mut order = TrainOrder::new(args.seed, train.len());
    let (mut rows, mut loss_sum, mut losses) = (Vec::new(), 0.0, 0);
    for step in 0..args.steps {
        device.seed(step_seed(args.seed, step));
        let indices = order.batch(step, args.batch_size);
        let mut rng = step_rng(args.seed, step);
        let batch = masked_batch(
            &train,
            &indices,
            args.max_len,
            &masking,
            special,
            vocab,
            &mut rng,
            &device,
        );
        let loss = mlm_loss(&model, &batch);
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            bail!("step {step}: the MLM loss is {value}; lower --lr (nothing was updated)");
        }
        loss_sum += value;
        losses += 1;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let grads = match grad_clip::global_limit(&schedule) {
            Some(limit) => {
                let norm = grad_clip::global_norm(&model, &grads);
                grad_clip::clip_to_global_norm(&model, grads, norm, limit)
            }
            None => grads,
        };
        let lr = learning_rate(&schedule, step);
        model = optim.step(lr, model, grads);
        let done = step + 1;
        if done % args.eval_every == 0 || done == args.steps {
            let (val_loss, val_accuracy) = evaluate(
                &model.valid(),
                &val,
                args,
                &masking,
                special,
                vocab,
                &device.clone().inner(),
            );
            rows.push(PretrainRow {
                step: done,
                lr,
                train_loss: loss_sum / losses as f64,
                val_loss,
                val_accuracy,
                val_perplexity: val_loss.exp(),
            });
            (loss_sum, losses) = (0.0, 0);
            write_rows(&dir.join("metrics.csv"), &rows)?;
            if !args.quiet {
                let row = rows.last().expect("just pushed");
                eprintln!(
                    "step {done:>6}  train loss {:.4}  val loss {:.4}  acc {:.4}  ppl {:.2}",
                    row.train_loss, row.val_loss, row.val_accuracy, row.val_perplexity
                );
            }
        }
    }
    let exported = dir.join("checkpoint");
    checkpoint.export(&model.valid(), args.max_len, &exported)?;
    lra_data::tokenizer::copy_tokenizer_files(&args.init, &exported)?;
    if !args.quiet {
        eprintln!(
            "wrote {}: fine-tune it with `lra run --task <glue task> --init {}`",
            exported.display(),
            exported.display()
        );
    }
    Ok(PretrainRun {
        dir,
        rows,
        checkpoint: exported,
    })
}

/// The corpus read, split into training and held-out documents, tokenized and packed.
fn corpus_splits(
    args: &PretrainArgs,
    tokenizer: &PretrainedTokenizer,
) -> Result<(SplitData, SplitData)> {
    let mut documents = Vec::new();
    for path in &args.corpus {
        documents.extend(corpus::read_documents(path)?);
    }
    if documents.len() < 2 {
        bail!(
            "the corpus has {} document(s); pretraining needs at least 2 (one held out)",
            documents.len()
        );
    }
    if !(0.0..1.0).contains(&args.held_out) {
        bail!("--held-out {}: expected a share in [0, 1)", args.held_out);
    }
    let held_out =
        ((documents.len() as f64 * args.held_out).round() as usize).clamp(1, documents.len() - 1);
    let (train, val) = documents.split_at(documents.len() - held_out);
    Ok((
        corpus::pack(train, tokenizer, args.max_len)?,
        corpus::pack(val, tokenizer, args.max_len)?,
    ))
}

fn create_run_dir(args: &PretrainArgs) -> Result<PathBuf> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let dir = new_run_folder(&args.out, &format!("{}-s{}", args.attention, args.seed))?;
    let settings = toml::to_string_pretty(args).context("pretrain settings serialise")?;
    atomic_write(&dir.join("pretrain.toml"), settings.as_bytes())?;
    Ok(dir)
}

/// The sequences `indices`, masked, padded to `max_len`. A batch whose draw chose no target gets
/// one (its first ordinary token), so the loss is defined.
#[allow(clippy::too_many_arguments)]
fn masked_batch(
    split: &SplitData,
    indices: &[usize],
    max_len: usize,
    masking: &Masking,
    special: SpecialTokens,
    vocab: usize,
    rng: &mut impl Rng,
    device: &Device,
) -> MaskedBatch {
    let is_special = |id: u32| {
        [
            special.pad,
            special.cls,
            special.sep,
            special.mask,
            special.unk,
        ]
        .contains(&id)
    };
    let (mut tokens, mut pad, mut positions, mut targets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (row, &index) in indices.iter().enumerate() {
        let ids: Vec<u32> = split.token_ids(index, 0).take(max_len).collect();
        let masked = masking.apply(&ids, is_special, vocab, special.mask, rng);
        for (i, target) in masked.targets.iter().enumerate() {
            if let Some(id) = target {
                positions.push((row * max_len + i) as i64);
                targets.push(i64::from(*id));
            }
        }
        tokens.extend(masked.inputs.iter().map(|&id| i64::from(id)));
        tokens.resize((row + 1) * max_len, i64::from(special.pad));
        pad.extend((0..max_len).map(|i| i >= ids.len()));
    }
    if positions.is_empty() {
        let first = split
            .token_ids(indices[0], 0)
            .position(|id| !is_special(id))
            .unwrap_or(0);
        positions.push(first as i64);
        targets.push(tokens[first]);
    }
    let batch = indices.len();
    let targets_len = targets.len();
    MaskedBatch {
        tokens: Tensor::from_data(TensorData::new(tokens, [batch, max_len]), device),
        pad_mask: Tensor::from_data(TensorData::new(pad, [batch, max_len]), device),
        positions: Tensor::from_data(TensorData::new(positions, [targets_len]), device),
        targets: Tensor::from_data(TensorData::new(targets, [targets_len]), device),
    }
}

/// Logits of the targets `[targets, vocab]`.
fn target_logits(model: &MaskedLm, batch: &MaskedBatch) -> Tensor<2> {
    let logits = model.forward(batch.tokens.clone(), None, batch.pad_mask.clone());
    let [b, n, vocab] = logits.dims();
    logits
        .reshape([b * n, vocab])
        .select(0, batch.positions.clone())
}

/// Mean cross-entropy over the batch's targets.
fn mlm_loss(model: &MaskedLm, batch: &MaskedBatch) -> Tensor<1> {
    let logits = target_logits(model, batch);
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, batch.targets.clone())
}

/// Mean loss and accuracy over the held-out targets, masked the same way at every evaluation.
fn evaluate(
    model: &MaskedLm,
    val: &SplitData,
    args: &PretrainArgs,
    masking: &Masking,
    special: SpecialTokens,
    vocab: usize,
    device: &Device,
) -> (f64, f64) {
    let (mut loss_sum, mut correct, mut count) = (0.0, 0usize, 0usize);
    let all: Vec<usize> = (0..val.len()).collect();
    for (number, chunk) in all.chunks(args.batch_size).enumerate() {
        let mut rng = step_rng(args.seed ^ 0x7661_6c69_6461_7465, number);
        let batch = masked_batch(
            val,
            chunk,
            args.max_len,
            masking,
            special,
            vocab,
            &mut rng,
            device,
        );
        let logits = target_logits(model, &batch);
        let n = batch.targets.dims()[0];
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits.clone(), batch.targets.clone());
        loss_sum += loss.into_scalar::<f32>() as f64 * n as f64;
        let hits = logits
            .argmax(1)
            .reshape([n])
            .equal(batch.targets.clone())
            .int()
            .sum();
        correct += hits.into_scalar::<i64>() as usize;
        count += n;
    }
    (loss_sum / count as f64, correct as f64 / count as f64)
}

fn write_rows(path: &Path, rows: &[PretrainRow]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    atomic_write(path, &writer.into_inner()?)
}
