//! `lra pretrain`: masked-language-model (continued) pretraining of a BERT/RoBERTa checkpoint with
//! any attention swapped in — the Nyströmformer / YOSO / MRA protocol of starting from pretrained
//! weights — on a plain-text or JSON-lines corpus. Sequences are packed across documents
//! (RoBERTa) or as segment pairs within one (BERT), optionally with sentence-order prediction
//! (ALBERT's SOP, the Nyströmformer paper's second objective); 15 % of tokens (or of whole words)
//! are masked per step from the seed (80/10/10), and the held-out documents scored (MLM loss,
//! accuracy, perplexity; SOP loss and accuracy). The training state is saved every
//! `checkpoint_every` steps and on SIGTERM/SIGINT, and `--resume` continues it exactly: the
//! packing is a function of the seed, and batches, masks and dropout of (seed, step). The result is written as a checkpoint folder `checkpoint/` that
//! `lra run --init` fine-tunes directly.

pub(crate) mod batches;
pub mod settings;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use clap::Args;
use lra_data::SplitData;
use lra_data::corpus;
use lra_data::corpus::segment_pairs::{self, PairPacking};
use lra_data::tokenizer::PretrainedTokenizer;
use lra_model::MaskedLm;
use lra_model::pretrained::Checkpoint;
use serde::{Deserialize, Serialize};

use crate::batches::TrainOrder;
use crate::checkpoint;
use crate::config::TrainConfig;
use crate::masking::step_rng;
use crate::results::{RunDir, atomic_write, new_run_folder};
use crate::schedule::learning_rate;
use crate::train::{optimizer, step_seed};
use crate::{device, grad_clip, interrupt, param_groups};
use batches::{HeldOutScores, MaskedBatch, MaskingPlan, batch_losses, evaluate, masked_batches};
pub use settings::{Packing, PretrainConfig, SettingFlags};

/// Options of `lra pretrain`.
#[derive(Debug, Args, Clone, Default)]
pub struct PretrainArgs {
    /// Settings of experiments/pretrain/NAME.toml (the papers' protocols: mra-roberta-base,
    /// mra2-roberta-base, nystromformer-bert-base; cpu-small); flags override them.
    #[arg(long, value_name = "NAME", conflicts_with = "resume")]
    pub preset: Option<String>,
    /// Continue the unfinished run in RUN_DIR from its last saved state, with its own
    /// pretrain.toml (no setting flags).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingFlags,
    /// The mixer's settings, e.g. `--mixer landmarks=64`.
    #[arg(long = "mixer", value_name = "KEY=VALUE")]
    pub mixer: Vec<String>,
    /// Folder the run folder is created in.
    #[arg(long, default_value = "results/pretrain")]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Save the training state and exit once this many steps are done (continue with --resume).
    #[arg(long, value_name = "STEP")]
    pub stop_at_step: Option<usize>,
    #[arg(long, short)]
    pub quiet: bool,
}

/// One evaluation of the held-out sequences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainRow {
    pub step: usize,
    pub lr: f64,
    /// Mean loss of the training steps since the last row: the MLM's, plus the SOP's with
    /// sentence-order prediction on.
    pub train_loss: f64,
    /// Held-out MLM loss, accuracy of the masked tokens and perplexity.
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_perplexity: f64,
    /// Held-out sentence-order loss and accuracy (empty without SOP).
    pub val_sop_loss: Option<f64>,
    pub val_sop_accuracy: Option<f64>,
}

/// How a call to [`execute`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Ended {
    /// All steps done; the checkpoint folder `lra run --init` takes.
    Finished { checkpoint: PathBuf },
    /// Stopped at `--stop-at-step` with the training state saved.
    Stopped { step: usize },
    /// Stopped by SIGTERM/SIGINT at a step boundary with the training state saved.
    Interrupted { step: usize },
}

/// What a pretraining run leaves: its folder, every evaluation so far, how it ended.
#[derive(Debug)]
pub struct PretrainRun {
    pub dir: PathBuf,
    /// The step this call started from: 0, or that of the training state it resumed.
    pub started_at: usize,
    pub rows: Vec<PretrainRow>,
    pub ended: Ended,
}

impl PretrainRun {
    /// The exported checkpoint of a finished run.
    pub fn checkpoint(&self) -> Option<&Path> {
        match &self.ended {
            Ended::Finished { checkpoint } => Some(checkpoint),
            _ => None,
        }
    }
}

/// Everything besides the model and the optimiser that the rest of a run depends on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct PretrainState {
    /// Optimisation steps done.
    step: usize,
    /// Every evaluation so far (`metrics.csv`).
    rows: Vec<PretrainRow>,
    /// Sum and count of the training losses since the last evaluation.
    loss_sum: f64,
    losses: usize,
}

/// The folder of the training state, beside the run's other files.
const TRAINING_STATE: &str = "training_state";
/// The exported Hugging Face checkpoint folder; its presence marks a finished run.
const EXPORT: &str = "checkpoint";
const SETTINGS: &str = "pretrain.toml";

/// Runs `lra pretrain`: a new run, or the one `--resume` names.
pub fn execute(args: &PretrainArgs) -> Result<PretrainRun> {
    let (config, dir) = match &args.resume {
        Some(dir) => (resumed_config(dir, args)?, Some(dir.clone())),
        None => {
            let (base, source) = match &args.preset {
                Some(name) => settings::load_preset(name)?,
                None => (toml::Table::new(), "the command line".to_string()),
            };
            let config = settings::resolve(base, &source, &args.settings, &args.mixer)?;
            (config, None)
        }
    };
    pretrain(&config, dir, args)
}

/// The settings of the unfinished run in `dir`.
fn resumed_config(dir: &Path, args: &PretrainArgs) -> Result<PretrainConfig> {
    if args.preset.is_some() || settings::any_given(&args.settings, &args.mixer)? {
        bail!(
            "--resume {} continues that run with its own {SETTINGS}; drop the setting flags",
            dir.display()
        );
    }
    if dir.join(EXPORT).is_dir() {
        bail!(
            "{} is a finished pretraining run (it has {EXPORT}/); start a new run instead",
            dir.display()
        );
    }
    PretrainConfig::load(&dir.join(SETTINGS))
}

/// Trains `config` in the run folder `dir` (a new one under `--out` when `None`), from its saved
/// state if it has one.
fn pretrain(
    config: &PretrainConfig,
    dir: Option<PathBuf>,
    args: &PretrainArgs,
) -> Result<PretrainRun> {
    let mixer = config.mixer_config()?;
    let checkpoint = Checkpoint::open(&config.init)?.extending_positions(config.extend_positions);
    config.check_length(&checkpoint)?;
    let tokenizer = PretrainedTokenizer::from_checkpoint(&config.init)?;
    let (train, val) = corpus_splits(config, &tokenizer)?;

    let device = device::parse(&args.device)?.autodiff();
    device.seed(config.seed);
    let (model, report) = checkpoint.masked_lm(mixer, config.max_len, config.sop, &device)?;
    param_groups::check(&config.param_groups, &model)?;
    let dir = match dir {
        Some(dir) => dir,
        None => create_run_dir(&args.out, config)?,
    };
    RunDir { path: dir.clone() }.remove_leftovers()?;
    atomic_write(
        &dir.join("import_report.txt"),
        report.to_string().as_bytes(),
    )?;
    let schedule = config.train_config();
    let state_dir = dir.join(TRAINING_STATE);
    let (mut model, mut optim, mut state) = restore(
        &state_dir,
        model,
        optimizer(&schedule, &device)?,
        args.quiet,
    )?;
    let started_at = state.step;
    // The saved history is the truth: rows a killed process wrote after its last save are redone.
    write_rows(&dir.join("metrics.csv"), &state.rows)?;

    let masking = config.masking();
    let word_starts = match config.whole_word_masking {
        true => Some(tokenizer.word_starts()?),
        false => None,
    };
    let plan = MaskingPlan {
        masking: &masking,
        special: tokenizer.special_tokens(),
        vocab: tokenizer.vocab_size(),
        max_len: config.max_len,
        word_starts: word_starts.as_deref(),
    };
    let mut order = TrainOrder::new(config.seed, train.len());
    let ended = loop {
        if state.step == config.steps {
            break Ended::Finished {
                checkpoint: export(&checkpoint, &model, config, &dir)?,
            };
        }
        let interrupted = interrupt::requested();
        if interrupted || args.stop_at_step.is_some_and(|stop| state.step >= stop) {
            checkpoint::save(&state_dir, &model, &optim, &state)?;
            let step = state.step;
            break match interrupted {
                true => Ended::Interrupted { step },
                false => Ended::Stopped { step },
            };
        }
        // Batch, masks and dropout are functions of (seed, step), so a resumed run is exact.
        let step = state.step;
        device.seed(step_seed(config.seed, step));
        let indices = order.batch(step, config.batch_size);
        // Masked as one batch: the same masks whatever `accumulate` is.
        let mut rng = step_rng(config.seed, step);
        let micro_batch = config.micro_batch_size();
        let micro_batches = masked_batches(&train, &indices, micro_batch, plan, &mut rng, &device);
        let lr = learning_rate(&schedule, step);
        model = train_step(model, &mut optim, &micro_batches, &mut state, &schedule, lr)?;
        if state.step % config.eval_every == 0 || state.step == config.steps {
            let inference = device.clone().inner();
            let scores = evaluate(
                &model.valid(),
                &val,
                plan,
                config.micro_batch_size(),
                config.seed,
                &inference,
            );
            record_evaluation(&mut state, lr, scores, args.quiet);
            write_rows(&dir.join("metrics.csv"), &state.rows)?;
        }
        if state.step % config.checkpoint_every == 0 && state.step < config.steps {
            checkpoint::save(&state_dir, &model, &optim, &state)?;
        }
    };
    if let Ended::Finished { checkpoint } = &ended {
        finish(&state_dir, checkpoint, args.quiet)?;
    }
    Ok(PretrainRun {
        dir,
        started_at,
        rows: state.rows,
        ended,
    })
}

/// The model, optimiser and state saved in `state_dir` (what a killed save left beside it tidied
/// first), or the fresh ones given when nothing was saved yet.
fn restore(
    state_dir: &Path,
    model: MaskedLm,
    optim: ModuleOptimizer,
    quiet: bool,
) -> Result<(MaskedLm, ModuleOptimizer, PretrainState)> {
    checkpoint::remove_leftovers(state_dir)?;
    let Some(found) = checkpoint::find_with_state::<PretrainState>(state_dir)? else {
        return Ok((model, optim, PretrainState::default()));
    };
    if !quiet {
        eprintln!(
            "resumed from the training state of step {}",
            found.state.step
        );
    }
    let model = found.restore_model(model)?;
    let optim = found.restore_optimizer(optim)?;
    Ok((model, optim, found.state))
}

/// One optimisation step on the step's micro-batches, counted in `state`; a non-finite loss
/// stops the run before anything is updated.
fn train_step(
    model: MaskedLm,
    optim: &mut ModuleOptimizer,
    micro_batches: &[MaskedBatch],
    state: &mut PretrainState,
    schedule: &TrainConfig,
    lr: f64,
) -> Result<MaskedLm> {
    let rates = param_groups::rates(schedule, lr)?;
    let (model, loss) = mlm_step(model, optim, micro_batches, schedule, rates);
    if !loss.is_finite() {
        bail!(
            "step {}: the MLM loss is {loss}; lower --lr (nothing was updated)",
            state.step + 1
        );
    }
    state.step += 1;
    state.loss_sum += loss;
    state.losses += 1;
    Ok(model)
}

/// The pretraining step (what `lra bench mlm` times): the MLM loss of each micro-batch,
/// weighted by its share of the step's targets, plus its sentence-order loss weighted by its
/// share of the step's sentence-order targets (a micro-batch may have neither), backward, the
/// gradients summed (so they are those of the whole batch's mean MLM loss + mean SOP loss),
/// clipped to the global norm, AdamW at `lr`. Returns the model and the step's loss; a
/// non-finite loss leaves the model as it was.
pub(crate) fn mlm_step(
    model: MaskedLm,
    optim: &mut ModuleOptimizer,
    micro_batches: &[MaskedBatch],
    schedule: &TrainConfig,
    lr: ModuleLearningRate,
) -> (MaskedLm, f64) {
    let targets: usize = micro_batches.iter().map(MaskedBatch::targets).sum();
    let order_targets: usize = micro_batches.iter().map(MaskedBatch::order_targets).sum();
    let mut accumulated = GradientsAccumulator::new();
    let mut step_loss = 0.0;
    for batch in micro_batches {
        let losses = batch_losses(&model, batch);
        let mlm = (losses.mlm).map(|mlm| mlm.mul_scalar(batch.targets() as f64 / targets as f64));
        let sentence_order = (losses.sentence_order).map(|sentence_order| {
            sentence_order.mul_scalar(batch.order_targets() as f64 / order_targets as f64)
        });
        // A micro-batch without targets of either kind adds nothing to the step's loss.
        let Some(loss) = [mlm, sentence_order]
            .into_iter()
            .flatten()
            .reduce(|a, b| a + b)
        else {
            continue;
        };
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            return (model, value);
        }
        step_loss += value;
        accumulated.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
    }
    (
        update(model, optim, accumulated.grads(), schedule, lr),
        step_loss,
    )
}

/// A finished run's training state is no longer needed once its export is in place.
fn finish(state_dir: &Path, exported: &Path, quiet: bool) -> Result<()> {
    if state_dir.exists() {
        std::fs::remove_dir_all(state_dir)
            .with_context(|| format!("cannot remove {}", state_dir.display()))?;
    }
    if !quiet {
        eprintln!(
            "wrote {}: fine-tune it with `lra run --task <glue task> --init {}`",
            exported.display(),
            exported.display()
        );
    }
    Ok(())
}

/// Gradients clipped to the global norm, AdamW step at rates `lr`.
fn update(
    model: MaskedLm,
    optim: &mut ModuleOptimizer,
    grads: GradientsParams,
    schedule: &TrainConfig,
    lr: ModuleLearningRate,
) -> MaskedLm {
    let grads = match grad_clip::global_limit(schedule) {
        Some(limit) => {
            let norm = grad_clip::global_norm(&model, &grads);
            grad_clip::clip_to_global_norm(&model, grads, norm, limit)
        }
        None => grads,
    };
    optim.step(lr, model, grads)
}

/// Appends the evaluation row (the training loss averaged since the previous one) and reports it.
fn record_evaluation(state: &mut PretrainState, lr: f64, scores: HeldOutScores, quiet: bool) {
    let row = PretrainRow {
        step: state.step,
        lr,
        train_loss: state.loss_sum / state.losses as f64,
        val_loss: scores.mlm.loss,
        val_accuracy: scores.mlm.accuracy,
        val_perplexity: scores.mlm.loss.exp(),
        val_sop_loss: scores.sentence_order.map(|sop| sop.loss),
        val_sop_accuracy: scores.sentence_order.map(|sop| sop.accuracy),
    };
    if !quiet {
        let sop = match scores.sentence_order {
            Some(sop) => format!("  sop loss {:.4}  acc {:.4}", sop.loss, sop.accuracy),
            None => String::new(),
        };
        eprintln!(
            "step {:>6}  train loss {:.4}  val loss {:.4}  acc {:.4}  ppl {:.2}{sop}",
            row.step, row.train_loss, row.val_loss, row.val_accuracy, row.val_perplexity
        );
    }
    state.rows.push(row);
    (state.loss_sum, state.losses) = (0.0, 0);
}

/// Writes the model as a Hugging Face checkpoint folder `dir/checkpoint` (config.json, weights,
/// tokenizer), put in place whole once complete.
fn export(
    checkpoint: &Checkpoint,
    model: &MaskedLm,
    config: &PretrainConfig,
    dir: &Path,
) -> Result<PathBuf> {
    let exported = dir.join(EXPORT);
    checkpoint::replace_folder(&exported, |staging| {
        checkpoint.export(&model.valid(), config.max_len, staging)?;
        lra_data::tokenizer::copy_tokenizer_files(&config.init, staging)?;
        checkpoint::sync_folder_files(staging)
    })?;
    Ok(exported)
}

/// Seeds the held-out documents' segment pairs apart from the training documents'.
const HELD_OUT_PAIRS: u64 = 0x6865_6c64_6f75_7421;

/// The corpus read, split into training and held-out documents, tokenized and packed as
/// `packing` says; each part must give at least one sequence.
fn corpus_splits(
    config: &PretrainConfig,
    tokenizer: &PretrainedTokenizer,
) -> Result<(SplitData, SplitData)> {
    let mut documents = Vec::new();
    for path in &config.corpus {
        documents.extend(corpus::read_documents(path)?);
    }
    if documents.len() < 2 {
        bail!(
            "the corpus has {} document(s); pretraining needs at least 2 (one held out)",
            documents.len()
        );
    }
    let held_out =
        ((documents.len() as f64 * config.held_out).round() as usize).clamp(1, documents.len() - 1);
    let (train, val) = documents.split_at(documents.len() - held_out);
    let pack = |documents: &[String], seed: u64| match config.packing {
        Packing::FullSentences => corpus::pack(documents, tokenizer, config.max_len),
        Packing::SegmentPairs => {
            let packing = PairPacking {
                max_len: config.max_len,
                short_seq_prob: config.short_seq_prob,
                sentence_order: config.sop,
                seed,
            };
            segment_pairs::pack(documents, tokenizer, packing)
        }
    };
    let (train, val) = (
        pack(train, config.seed)?,
        pack(val, config.seed ^ HELD_OUT_PAIRS)?,
    );
    for (split, what) in [(&train, "training"), (&val, "held-out")] {
        if split.is_empty() {
            bail!("the {what} documents of the corpus give no sequence: they hold no text");
        }
    }
    Ok((train, val))
}

fn create_run_dir(out: &Path, config: &PretrainConfig) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let dir = new_run_folder(out, &format!("{}-s{}", config.attention, config.seed))?;
    atomic_write(&dir.join(SETTINGS), config.to_toml()?.as_bytes())?;
    Ok(dir)
}

fn write_rows(path: &Path, rows: &[PretrainRow]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    atomic_write(path, &writer.into_inner()?)
}
