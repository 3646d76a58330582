//! The training loop: AdamW with warmup/decay, gradient clipping, periodic validation, best-model
//! selection by the task's selection metric, checkpoints, resume, and a final test evaluation.
//!
//! Own loop rather than burn-train's `Learner`: LRA budgets are in steps, not epochs; resuming must
//! reproduce the uninterrupted run exactly (data order and dropout are functions of the step); and
//! the run folder layout is ours.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

use burn::module::Module;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use lra_data::{LabelKind, SplitData, TaskData};
use lra_model::Classifier;

use crate::adamw::FusedAdamW;
use crate::batches::{Batch, TrainOrder, make_batch};
use crate::checkpoint::{self, TrainState, Window};
use crate::config::{ExperimentConfig, TestWith, TrainConfig};
use crate::metrics::{Metric, Outcomes};
use crate::objective::{Objective, Predictions, Targets};
use crate::results::{
    MetricValues, MetricsRow, RunDir, SCHEMA_VERSION, Summary, atomic_write, git_commit,
    sync_folder_of, temp_path,
};
use crate::schedule::learning_rate;
use crate::task::Task;
use crate::{grad_clip, interrupt, param_groups};

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
    /// Stopped by SIGTERM/SIGINT at a step boundary with a checkpoint; resume to continue.
    Interrupted { step: usize },
}

/// A split's mean loss and every prediction next to its gold answer.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub outcomes: Outcomes,
}

impl Evaluation {
    /// `loss`, then each of the task's metrics, by name.
    pub fn values(&self, task: &dyn Task) -> MetricValues {
        let mut values = MetricValues::default();
        values.push("loss", self.loss);
        self.push_metrics(task, &mut values);
        values
    }

    /// The task's metrics alone (no loss), e.g. of a constant predictor.
    pub fn metric_values(&self, task: &dyn Task) -> MetricValues {
        let mut values = MetricValues::default();
        self.push_metrics(task, &mut values);
        values
    }

    /// Values that are not finite (the correlation of a constant predictor) are left out, as
    /// JSON has no NaN.
    fn push_metrics(&self, task: &dyn Task, values: &mut MetricValues) {
        for &metric in task.metrics() {
            if let Some(value) = metric.compute(&self.outcomes).filter(|v| v.is_finite()) {
                values.push(metric.name(), value);
            }
        }
    }

    /// The value of one metric (NaN where it does not apply).
    pub fn value(&self, metric: Metric) -> f64 {
        metric.compute(&self.outcomes).unwrap_or(f64::NAN)
    }
}

/// What one training step reports.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// The batch's mean loss.
    pub loss: f64,
    /// Correct predictions in the batch (classification).
    pub correct: usize,
    /// What was not finite, when the update was therefore not applied.
    pub non_finite: Option<NonFinite>,
}

/// A training step's value that is NaN or infinite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NonFinite {
    Loss(f64),
    GradientNorm(f64),
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NonFinite::Loss(value) => write!(f, "the training loss is {value}"),
            NonFinite::GradientNorm(value) => write!(f, "the gradient norm is {value}"),
        }
    }
}

/// Trains (or resumes) the run in `run` to completion or to `options.stop_at_step`.
pub fn train(
    config: &ExperimentConfig,
    data: &TaskData,
    run: &RunDir,
    options: &RunOptions,
) -> Result<Outcome> {
    // Epochs become steps once the data is known; config.toml keeps what was asked for.
    let config = &ExperimentConfig {
        train: config.train.for_examples(data.train.len()),
        ..config.clone()
    };
    let t = &config.train;
    let device = options.device.clone().autodiff();
    device.seed(config.seed);
    let task = config.task.task()?;
    let objective = task.objective();
    for (name, split) in data.named_splits() {
        let kind = split.labels().kind();
        let needed = matches!(name, "train" | "val") || kind != LabelKind::Unlabelled;
        anyhow::ensure!(
            !needed || kind == objective.label_kind(),
            "the {name} split of {} has {kind:?} labels, but its objective needs {:?}",
            task.name(),
            objective.label_kind()
        );
    }
    anyhow::ensure!(
        data.docs_per_example() == task.input().documents(),
        "task {} has {} document(s) per example, but the data has {}",
        task.name(),
        task.input().documents(),
        data.docs_per_example()
    );
    let classifier = config.classifier(data.vocab_size, objective.outputs())?;
    let mut model = classifier.init(&device);
    param_groups::check(&t.param_groups, &model)?;
    let mut optim = optimizer(t, &device)?;
    let global_limit = grad_clip::global_limit(t);
    let mut state = TrainState::default();
    run.remove_leftovers()?;
    // The step of the last checkpoint on disk, named when a non-finite step stops the run.
    let mut checkpointed = None;
    if let Some(found) = checkpoint::find(&run.last_checkpoint())? {
        model = found.restore_model(model)?;
        optim = found.restore_optimizer(optim)?;
        state = found.state;
        checkpointed = Some(state.step);
    } else if let Some(init) = &config.init {
        import_pretrained(&mut model, init, config, run, options.quiet, &device)?;
    }
    // The checkpoint's history is the truth: a process killed between writing metrics.csv and
    // the checkpoint left rows of steps that this one redoes.
    run.write_metrics(&state.history)?;
    let selection = task.selection_metric();
    let mut order = TrainOrder::new(config.seed, data.train.len());
    let progress = crate::progress::bar(t.steps as u64, state.step as u64, "", options.quiet);

    while state.step < t.steps {
        let interrupted = interrupt::requested();
        if interrupted || options.stop_at_step.is_some_and(|stop| state.step >= stop) {
            checkpoint::save(&run.last_checkpoint(), &model, &optim, &state)?;
            progress.abandon();
            return Ok(if interrupted {
                Outcome::Interrupted { step: state.step }
            } else {
                Outcome::Stopped { step: state.step }
            });
        }
        let started = Instant::now();
        // Dropout draws from the device RNG: seeding it per step makes a resumed run identical.
        device.seed(step_seed(config.seed, state.step));
        let indices = order.batch(state.step, t.batch_size);
        let batch = make_batch(&data.train, &indices, config.task.seq_len(), &device);
        let lr = learning_rate(t, state.step);
        let rates = param_groups::rates(t, lr)?;
        let report;
        (model, report) = train_step(model, &mut optim, batch, objective, rates, global_limit);
        let seconds = started.elapsed().as_secs_f64();

        if let Some(fault) = report.non_finite {
            if state.skipped_steps >= t.skip_nonfinite {
                progress.abandon();
                bail!(non_finite_error(
                    fault,
                    state.step + 1,
                    checkpointed,
                    t,
                    run
                ));
            }
            state.skipped_steps += 1;
            if !options.quiet {
                progress.suspend(|| {
                    eprintln!(
                        "step {:>6}: {fault}; update skipped ({} of train.skip_nonfinite = {})",
                        state.step + 1,
                        state.skipped_steps,
                        t.skip_nonfinite
                    )
                });
            }
        }
        state.step += 1;
        state.train_seconds += seconds;
        if report.non_finite.is_none() {
            record_step(
                &mut state.window,
                report.loss,
                report.correct,
                t.batch_size,
                config.task.padded_len() * data.docs_per_example(),
                seconds,
            );
        }
        progress.set_position(state.step as u64);
        progress.set_message(window_message(&state.window, objective));

        if state.step % t.eval_every == 0 || state.step == t.steps {
            let val = evaluate(&model, &data.val, "val", config, &device, t.eval_batches)?;
            let row = metrics_row(&state, objective, lr, val.values(task));
            let value = val.value(selection);
            if state.history.is_empty() || value > state.best_value {
                state.best_value = value;
                state.best_step = state.step;
                save_model_atomically(&model, &run.best_model())?;
            }
            if !options.quiet {
                progress.suspend(|| {
                    eprintln!(
                        "step {:>6}  train loss {:.4}  val {}  (best {selection} {:.4} @ {})",
                        row.step,
                        row.train_loss,
                        format_values(&row.val),
                        state.best_value,
                        state.best_step
                    )
                });
            }
            state.history.push(row);
            state.window = Window::default();
            run.write_metrics(&state.history)?;
            checkpoint::save(&run.last_checkpoint(), &model, &optim, &state)?;
            checkpointed = Some(state.step);
        }
    }
    progress.finish_and_clear();
    if interrupt::requested() {
        // The last step's checkpoint is on disk; the final evaluation is redone on resume.
        return Ok(Outcome::Interrupted { step: state.step });
    }

    let (tested, tested_step) = match t.test_with {
        TestWith::Best => (
            model
                .try_load_file(run.best_model())
                .map_err(|e| anyhow::anyhow!("cannot load best model: {e:?}"))?,
            state.best_step,
        ),
        TestWith::Last => (model, state.step),
    };
    // The last step is always validated, so either step has its row.
    let tested_val = state
        .history
        .iter()
        .find(|row| row.step == tested_step)
        .map(|row| row.val.clone())
        .unwrap_or_default();
    let finals = evaluate_final(&tested, data, config, run, &device)?;
    let classification = matches!(objective, Objective::Classification { .. });
    let mut metrics = BTreeMap::from([("val".to_string(), tested_val.clone())]);
    for (name, evaluation) in &finals.scored {
        metrics.insert(name.clone(), evaluation.values(task));
    }
    let test = finals.scored.iter().find(|(name, _)| name == "test");
    // The constant predictor on the split that reports the score: test, or validation when
    // the test answers are withheld (GLUE).
    let reported = if test.is_some() {
        &data.test
    } else {
        &data.val
    };
    let baseline = objective
        .baseline(&data.train)
        .and_then(|constant| Outcomes::of_constant(reported.labels(), constant))
        .map(|outcomes| Evaluation {
            loss: f64::NAN,
            outcomes,
        });
    if let Some(values) = baseline.as_ref().map(|b| b.metric_values(task))
        && !values.0.is_empty()
    {
        metrics.insert("baseline".to_string(), values);
    }
    let summary = Summary {
        schema_version: SCHEMA_VERSION,
        task: task.name().to_string(),
        attention: config.attention.clone(),
        preset: config.preset.clone(),
        seed: config.seed,
        steps: state.step,
        best_step: state.best_step,
        selection_metric: selection.name().to_string(),
        tested_step: Some(tested_step),
        best_val_accuracy: tested_val.get("accuracy").filter(|_| classification),
        test_accuracy: test
            .filter(|_| classification)
            .map(|(_, test)| test.value(Metric::Accuracy)),
        test_loss: test.map(|(_, test)| test.loss),
        majority_class_accuracy: baseline
            .filter(|_| classification)
            .map(|b| b.value(Metric::Accuracy)),
        metrics,
        predictions: finals.predicted,
        train_seconds: state.train_seconds,
        skipped_steps: state.skipped_steps,
        tokens_per_second: (state.step
            * t.batch_size
            * config.task.padded_len()
            * data.docs_per_example()) as f64
            / state.train_seconds,
        parameters: tested.num_params(),
        device: options.device_name.clone(),
        git_commit: git_commit(),
        run_dir: run.path.clone(),
    };
    run.write_summary(&summary)?;
    Ok(Outcome::Finished(Box::new(summary)))
}

/// Loads the checkpoint `init` into a freshly built model and writes what was loaded, left at
/// its init and left unused to `import_report.txt` in the run folder.
fn import_pretrained(
    model: &mut Classifier,
    init: &std::path::Path,
    config: &ExperimentConfig,
    run: &RunDir,
    quiet: bool,
    device: &Device,
) -> Result<()> {
    let checkpoint = lra_model::pretrained::Checkpoint::open(init)?;
    let report = checkpoint.load_into(
        model,
        &config.mixer_config()?,
        config.task.padded_len(),
        device,
    )?;
    atomic_write(
        &run.path.join("import_report.txt"),
        report.to_string().as_bytes(),
    )?;
    if !quiet {
        eprintln!(
            "loaded {} tensors of {} ({} parameters left at init, {} checkpoint tensors unused: \
             see import_report.txt)",
            report.loaded.len(),
            init.display(),
            report.left_at_init.len(),
            report.unused.len()
        );
    }
    Ok(())
}

/// What the best model did on the splits after validation.
struct FinalEvaluation {
    /// Labelled splits (test, and e.g. MNLI's mismatched validation set) with their scores.
    scored: Vec<(String, Evaluation)>,
    /// Unlabelled splits and the files their predictions were written to.
    predicted: BTreeMap<String, PathBuf>,
}

/// Scores the best model on every labelled split after validation, and writes its predictions
/// on the unlabelled ones (as the task wants them submitted).
fn evaluate_final(
    best: &Classifier,
    data: &TaskData,
    config: &ExperimentConfig,
    run: &RunDir,
    device: &Device,
) -> Result<FinalEvaluation> {
    let task = config.task.task()?;
    let mut finals = FinalEvaluation {
        scored: Vec::new(),
        predicted: BTreeMap::new(),
    };
    let splits = data
        .named_splits()
        .filter(|(name, _)| !matches!(*name, "train" | "val"));
    for (name, split) in splits {
        if split.labels().kind() == LabelKind::Unlabelled {
            let predictions = predict(best, split, config, device)?;
            let path = task.write_predictions(&config.task, &run.path, name, &predictions)?;
            finals.predicted.insert(name.to_string(), path);
        } else {
            let evaluation = evaluate(best, split, name, config, device, 0)?;
            finals.scored.push((name.to_string(), evaluation));
        }
    }
    Ok(finals)
}

/// Loss and every prediction of `model` on a labelled split (`max_batches` 0 = all of it),
/// without dropout. The loss is the mean over examples; metrics are computed over all
/// predictions. `name` names the split in errors.
pub fn evaluate(
    model: &Classifier,
    examples: &SplitData,
    name: &str,
    config: &ExperimentConfig,
    device: &Device,
    max_batches: usize,
) -> Result<Evaluation> {
    anyhow::ensure!(!examples.is_empty(), "the {name} split is empty");
    anyhow::ensure!(
        examples.labels().kind() != LabelKind::Unlabelled,
        "the {name} split has no labels to evaluate against"
    );
    let objective = config.task.task()?.objective();
    let (mut loss_sum, mut seen) = (0.0, 0);
    let mut outcomes: Option<Outcomes> = None;
    for_each_batch(
        model,
        examples,
        config,
        device,
        max_batches,
        |output, targets| {
            let targets = targets.expect("a labelled split gives targets");
            let loss = objective.loss(output.clone(), &targets);
            let batch = output.dims()[0];
            loss_sum += loss.into_scalar::<f32>() as f64 * batch as f64;
            seen += batch;
            let batch_outcomes = objective.outcomes(output, targets);
            match &mut outcomes {
                Some(all) => all.extend(batch_outcomes),
                None => outcomes = Some(batch_outcomes),
            }
        },
    );
    Ok(Evaluation {
        loss: loss_sum / seen as f64,
        outcomes: outcomes.expect("a non-empty split has a batch"),
    })
}

/// The model's prediction for every example of a split, in order, without dropout.
pub fn predict(
    model: &Classifier,
    examples: &SplitData,
    config: &ExperimentConfig,
    device: &Device,
) -> Result<Predictions> {
    let objective = config.task.task()?.objective();
    let mut predictions = Predictions::empty(objective);
    for_each_batch(model, examples, config, device, 0, |output, _| {
        predictions.extend(objective.predictions(output));
    });
    Ok(predictions)
}

/// Runs the model (in inference mode) over a split batch by batch, handing each batch's output
/// and targets to `consume`.
fn for_each_batch(
    model: &Classifier,
    examples: &SplitData,
    config: &ExperimentConfig,
    device: &Device,
    max_batches: usize,
    mut consume: impl FnMut(Tensor<2>, Option<Targets>),
) {
    let model = model.valid();
    let device = device.clone().inner();
    let all: Vec<usize> = (0..examples.len()).collect();
    let limit = if max_batches == 0 {
        usize::MAX
    } else {
        max_batches
    };
    for chunk in all.chunks(config.train.batch_size).take(limit) {
        let batch = make_batch(examples, chunk, config.task.seq_len(), &device);
        let targets = batch.targets.clone();
        consume(logits(&model, batch), targets);
    }
}

/// One optimisation step, exactly as `lra run` takes it (and `lra bench step` times it):
/// forward, the objective's loss, backward, gradients scaled to global norm `max_norm` (when
/// given), AdamW update (with its own clipping, if any) at rates `lr` (see
/// [`param_groups::rates`]).
pub fn train_step(
    model: Classifier,
    optim: &mut ModuleOptimizer,
    batch: Batch,
    objective: Objective,
    lr: ModuleLearningRate,
    max_norm: Option<f64>,
) -> (Classifier, StepReport) {
    let targets = batch
        .targets
        .clone()
        .expect("training batches come from a labelled split");
    let output = logits(&model, batch);
    let loss = objective.loss(output.clone(), &targets);
    let correct = match objective.outcomes(output, targets) {
        Outcomes::Classes { predicted, gold } => {
            predicted.iter().zip(&gold).filter(|(p, g)| p == g).count()
        }
        Outcomes::Scores { .. } => 0,
    };
    let loss_value = loss.clone().into_scalar::<f32>() as f64;
    let mut report = StepReport {
        loss: loss_value,
        correct,
        non_finite: None,
    };
    // A non-finite step leaves the model and the optimiser's moments as they were.
    if !loss_value.is_finite() {
        report.non_finite = Some(NonFinite::Loss(loss_value));
        return (model, report);
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let norm = grad_clip::global_norm(&model, &grads);
    if !norm.is_finite() {
        report.non_finite = Some(NonFinite::GradientNorm(norm));
        return (model, report);
    }
    let grads = match max_norm {
        Some(max_norm) => grad_clip::clip_to_global_norm(&model, grads, norm, max_norm),
        None => grads,
    };
    (optim.step(lr, model, grads), report)
}

/// The error that stops a run at a non-finite step: the step, what was not finite, and how to
/// continue from the last good checkpoint (left as it was).
fn non_finite_error(
    fault: NonFinite,
    step: usize,
    checkpointed: Option<usize>,
    t: &TrainConfig,
    run: &RunDir,
) -> String {
    let skipped = match t.skip_nonfinite {
        0 => String::new(),
        n => format!(" after {n} such batch(es) skipped (train.skip_nonfinite = {n})"),
    };
    let good = match checkpointed {
        Some(at) => format!(
            "the checkpoint of step {at} is the last good state and was left as it was; lower \
             train.lr in {} and continue with `lra run --resume {}`",
            run.config().display(),
            run.path.display()
        ),
        None => "no checkpoint was written yet; lower train.lr and start again".to_string(),
    };
    format!(
        "step {step}: {fault}{skipped}; the run stopped without saving it: {good}, or set \
         train.skip_nonfinite = N to skip up to N such batches"
    )
}

/// The model's logits for a batch: single documents (with token types when the split has
/// them), or pairs through the dual encoder.
pub fn logits(model: &Classifier, batch: Batch) -> Tensor<2> {
    match (batch.second, batch.types) {
        (Some(second), _) => model.forward_pair((batch.tokens, batch.pad_mask), second),
        (None, Some(types)) => model.forward_typed(batch.tokens, types, batch.pad_mask),
        (None, None) => model.forward(batch.tokens, batch.pad_mask),
    }
}

/// AdamW with the config's betas, epsilon, weight decay and its per-tensor or per-value
/// clipping (global-norm clipping happens in [`train_step`]), and one more AdamW per parameter
/// group with that group's weight decay.
pub fn optimizer(t: &TrainConfig, device: &Device) -> Result<ModuleOptimizer> {
    if t.cycle_momentum && !lra_model::ops::adamw::is_supported(device) {
        bail!(
            "train.cycle_momentum = true runs on the CPU's fused AdamW only; on {device:?} use a \
             fixed train.beta1"
        );
    }
    let adamw = |weight_decay: f64| {
        let adamw = FusedAdamW::new(
            t.beta1 as f32,
            t.beta2 as f32,
            t.eps as f32,
            weight_decay as f32,
        );
        if t.cycle_momentum {
            adamw.with_cycled_momentum(t)
        } else {
            adamw
        }
    };
    let clipping = || grad_clip::optimizer_clipping(t).map(|c| c.init());
    let mut optim = ModuleOptimizer::from(adamw(t.weight_decay));
    if let Some(clipping) = clipping() {
        optim = optim.with_grad_clipping(clipping);
    }
    for group in &t.param_groups {
        optim = optim.with_group(group.group()?, adamw(group.weight_decay), clipping());
    }
    Ok(optim)
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

fn metrics_row(state: &TrainState, objective: Objective, lr: f64, val: MetricValues) -> MetricsRow {
    let window = &state.window;
    MetricsRow {
        step: state.step,
        lr,
        train_loss: window.loss_sum / window.batches.max(1) as f64,
        train_accuracy: matches!(objective, Objective::Classification { .. })
            .then(|| window.correct as f64 / window.examples.max(1) as f64),
        val,
        tokens_per_second: window.tokens as f64 / window.seconds.max(f64::MIN_POSITIVE),
        skipped_steps: state.skipped_steps,
    }
}

/// Progress-bar text: running training loss (and accuracy) and speed.
fn window_message(window: &Window, objective: Objective) -> String {
    let loss = window.loss_sum / window.batches.max(1) as f64;
    let speed = window.tokens as f64 / window.seconds.max(f64::MIN_POSITIVE);
    match objective {
        Objective::Classification { .. } => {
            let accuracy = window.correct as f64 / window.examples.max(1) as f64;
            format!("loss {loss:.3}  acc {accuracy:.3}  {speed:.0} tok/s")
        }
        Objective::Regression => format!("loss {loss:.3}  {speed:.0} tok/s"),
    }
}

/// `loss 0.9876 accuracy 0.5432 …`.
fn format_values(values: &MetricValues) -> String {
    let parts: Vec<String> = values
        .0
        .iter()
        .map(|(name, value)| format!("{name} {value:.4}"))
        .collect();
    parts.join(" ")
}

/// Saves beside `path`, flushes, renames into place; on failure the previous file stays and the
/// temporary one is removed.
fn save_model_atomically(model: &Classifier, path: &std::path::Path) -> Result<()> {
    let tmp = temp_path(path);
    let saved = model
        .clone()
        .save_file(&tmp)
        .map_err(|e| anyhow::anyhow!("saving {}: {e:?}", tmp.display()))
        .and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|file| file.sync_all())
                .with_context(|| format!("cannot flush {} to disk", tmp.display()))
        })
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move {} into place", path.display()))
        });
    if saved.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = std::fs::remove_file(&tmp);
    }
    saved?;
    sync_folder_of(path)
}

/// A distinct, reproducible RNG seed for each (run seed, step).
pub fn step_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}
