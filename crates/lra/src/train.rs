//! The training loop: AdamW with warmup/decay, gradient clipping, periodic validation, best-model
//! selection by validation accuracy, checkpoints, resume, and a final test evaluation.
//!
//! Own loop rather than burn-train's `Learner`: LRA budgets are in steps, not epochs; resuming must
//! reproduce the uninterrupted run exactly (data order and dropout are functions of the step); and
//! the run folder layout is ours.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use lra_data::{Split, TaskData};
use lra_model::Classifier;

use crate::batches::{Batch, TrainOrder, make_batch};
use crate::checkpoint::{self, TrainState, Window};
use crate::config::{ExperimentConfig, TrainConfig};
use crate::results::{MetricsRow, RunDir, Summary, git_commit, temp_path};
use crate::schedule::learning_rate;

/// How to run, beyond the experiment config.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where to compute (the autodiff wrapper is added for training).
    pub device: Device,
    /// The `--device` text, recorded in the summary.
    pub device_name: String,
    /// Stop (after checkpointing) once this many steps are done, to resume later.
    pub stop_at_step: Option<usize>,
    /// No progress bar or log lines.
    pub quiet: bool,
}

/// How a call to [`train`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// All steps done, test split evaluated, `summary.json` written.
    Finished(Box<Summary>),
    /// Stopped at `--stop-at-step` with a checkpoint; resume to continue.
    Stopped { step: usize },
}

/// Loss and accuracy over a split.
#[derive(Clone, Copy, Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
}

/// Trains (or resumes) the run in `run` to completion or to `options.stop_at_step`.
pub fn train(
    config: &ExperimentConfig,
    data: &TaskData,
    run: &RunDir,
    options: &RunOptions,
) -> Result<Outcome> {
    let t = &config.train;
    let device = options.device.clone().autodiff();
    device.seed(config.seed);
    anyhow::ensure!(
        data.docs_per_example() == config.task.name.documents(),
        "task {} has {} document(s) per example, but the data has {}",
        config.task.name,
        config.task.name.documents(),
        data.docs_per_example()
    );
    let classifier = config.classifier(data.vocab_size, data.num_classes)?;
    let mut model = classifier.init(&device);
    let mut optim = optimizer(t);
    let mut state = TrainState::default();
    if let Some(found) = checkpoint::find(&run.last_checkpoint())? {
        model = found.restore_model(model)?;
        optim = found.restore_optimizer(optim)?;
        state = found.state;
    }
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut order = TrainOrder::new(config.seed, data.train.len());
    let progress = progress_bar(t.steps, state.step, options.quiet);

    while state.step < t.steps {
        if options.stop_at_step.is_some_and(|stop| state.step >= stop) {
            checkpoint::save(&run.last_checkpoint(), &model, &optim, &state)?;
            progress.abandon();
            return Ok(Outcome::Stopped { step: state.step });
        }
        let started = Instant::now();
        // Dropout draws from the device RNG: seeding it per step makes a resumed run identical.
        device.seed(step_seed(config.seed, state.step));
        let indices = order.batch(state.step, t.batch_size);
        let batch = make_batch(&data.train, &indices, config.task.max_len, &device);
        let labels = batch.labels.clone();
        let logits = logits(&model, batch);
        let loss = loss_fn.forward(logits.clone(), labels.clone());
        let correct = count_correct(logits, labels);
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = learning_rate(t, state.step);
        model = optim.step(lr, model, grads);
        let seconds = started.elapsed().as_secs_f64();

        state.step += 1;
        state.train_seconds += seconds;
        record_step(
            &mut state.window,
            loss_value,
            correct,
            t.batch_size,
            config.task.max_len * data.docs_per_example(),
            seconds,
        );
        progress.set_position(state.step as u64);
        progress.set_message(format!(
            "loss {:.3}  acc {:.3}  {:.0} tok/s",
            state.window.loss_sum / state.window.batches as f64,
            state.window.correct as f64 / state.window.examples as f64,
            state.window.tokens as f64 / state.window.seconds
        ));

        if state.step % t.eval_every == 0 || state.step == t.steps {
            let val = evaluate(&model, data, Split::Val, config, &device, t.eval_batches)?;
            let row = metrics_row(&state.window, lr, val, state.step);
            if state.history.is_empty() || val.accuracy > state.best_val_accuracy {
                state.best_val_accuracy = val.accuracy;
                state.best_step = state.step;
                save_model_atomically(&model, &run.best_model())?;
            }
            if !options.quiet {
                progress.suspend(|| {
                    eprintln!(
                        "step {:>6}  train loss {:.4} acc {:.4}  val loss {:.4} acc {:.4}  (best {:.4} @ {})",
                        row.step, row.train_loss, row.train_accuracy, row.val_loss,
                        row.val_accuracy, state.best_val_accuracy, state.best_step
                    )
                });
            }
            state.history.push(row);
            state.window = Window::default();
            run.write_metrics(&state.history)?;
            checkpoint::save(&run.last_checkpoint(), &model, &optim, &state)?;
        }
    }
    progress.finish_and_clear();

    let best = model
        .try_load_file(run.best_model())
        .map_err(|e| anyhow::anyhow!("cannot load best model: {e:?}"))?;
    let test = evaluate(&best, data, Split::Test, config, &device, 0)?;
    let summary = Summary {
        task: config.task.name.to_string(),
        attention: config.attention.clone(),
        preset: config.preset.clone(),
        seed: config.seed,
        steps: state.step,
        best_step: state.best_step,
        best_val_accuracy: state.best_val_accuracy,
        test_accuracy: test.accuracy,
        test_loss: test.loss,
        majority_class_accuracy: majority_class_accuracy(data),
        train_seconds: state.train_seconds,
        tokens_per_second: (state.step
            * t.batch_size
            * config.task.max_len
            * data.docs_per_example()) as f64
            / state.train_seconds,
        parameters: best.num_params(),
        device: options.device_name.clone(),
        git_commit: git_commit(),
        run_dir: run.path.clone(),
    };
    run.write_summary(&summary)?;
    Ok(Outcome::Finished(Box::new(summary)))
}

/// Loss and accuracy of `model` on a split (`max_batches` 0 = all of it), without dropout.
pub fn evaluate(
    model: &Classifier,
    data: &TaskData,
    split: Split,
    config: &ExperimentConfig,
    device: &Device,
    max_batches: usize,
) -> Result<Evaluation> {
    let examples = data.split(split);
    anyhow::ensure!(!examples.is_empty(), "the {} split is empty", split.name());
    let model = model.valid();
    let device = device.clone().inner();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let batch_size = config.train.batch_size;
    let all: Vec<usize> = (0..examples.len()).collect();
    let limit = if max_batches == 0 {
        usize::MAX
    } else {
        max_batches
    };
    let (mut loss_sum, mut correct, mut seen) = (0.0, 0, 0);
    for chunk in all.chunks(batch_size).take(limit) {
        let batch = make_batch(examples, chunk, config.task.max_len, &device);
        let labels = batch.labels.clone();
        let logits = logits(&model, batch);
        let loss = loss_fn.forward(logits.clone(), labels.clone());
        loss_sum += loss.into_scalar::<f32>() as f64 * chunk.len() as f64;
        correct += count_correct(logits, labels);
        seen += chunk.len();
    }
    Ok(Evaluation {
        loss: loss_sum / seen as f64,
        accuracy: correct as f64 / seen as f64,
    })
}

/// The model's logits for a batch: single documents, or pairs through the dual encoder.
pub fn logits(model: &Classifier, batch: Batch) -> Tensor<2> {
    match batch.second {
        Some(second) => model.forward_pair((batch.tokens, batch.pad_mask), second),
        None => model.forward(batch.tokens, batch.pad_mask),
    }
}

fn optimizer(t: &TrainConfig) -> ModuleOptimizer {
    let clipping = (t.grad_clip > 0.0).then_some(GradientClippingConfig::Norm(t.grad_clip as f32));
    AdamWConfig::new()
        .with_beta_1(t.beta1 as f32)
        .with_beta_2(t.beta2 as f32)
        .with_epsilon(t.eps as f32)
        .with_weight_decay(t.weight_decay as f32)
        .with_grad_clipping(clipping)
        .init()
}

fn count_correct(logits: Tensor<2>, labels: Tensor<1, burn::tensor::Int>) -> usize {
    let [batch, _] = logits.dims();
    let predicted = logits.argmax(1).reshape([batch]);
    predicted.equal(labels).int().sum().into_scalar::<i64>() as usize
}

fn record_step(
    window: &mut Window,
    loss: f64,
    correct: usize,
    batch: usize,
    len: usize,
    seconds: f64,
) {
    window.loss_sum += loss;
    window.correct += correct;
    window.examples += batch;
    window.batches += 1;
    window.tokens += batch * len;
    window.seconds += seconds;
}

fn metrics_row(window: &Window, lr: f64, val: Evaluation, step: usize) -> MetricsRow {
    MetricsRow {
        step,
        lr,
        train_loss: window.loss_sum / window.batches.max(1) as f64,
        train_accuracy: window.correct as f64 / window.examples.max(1) as f64,
        val_loss: val.loss,
        val_accuracy: val.accuracy,
        tokens_per_second: window.tokens as f64 / window.seconds.max(f64::MIN_POSITIVE),
    }
}

fn majority_class_accuracy(data: &TaskData) -> f64 {
    let mut counts = vec![0usize; data.num_classes];
    for &label in data.train.labels() {
        counts[label as usize] += 1;
    }
    let majority = (0..counts.len()).max_by_key(|&c| counts[c]).unwrap_or(0) as u32;
    let hits = data
        .test
        .labels()
        .iter()
        .filter(|&&l| l == majority)
        .count();
    hits as f64 / data.test.len().max(1) as f64
}

fn save_model_atomically(model: &Classifier, path: &std::path::Path) -> Result<()> {
    let tmp = temp_path(path);
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| anyhow::anyhow!("saving {}: {e:?}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

/// A distinct, reproducible RNG seed for each (run seed, step).
fn step_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

fn progress_bar(steps: usize, done: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64).with_position(done as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("valid progress template"),
    );
    bar
}
