//! Numerical faults, on the real binary: a step whose loss or gradient norm is not finite stops
//! the run with an error naming the step and what was not finite, leaving the last checkpoint as
//! it was (finite weights), from which `--resume` with a lower learning rate ends exactly like a
//! run that never diverged; with `train.skip_nonfinite = N` up to N such batches are skipped
//! (their update not applied) and counted in `metrics.csv` and `summary.json`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use lra::config::ExperimentConfig;
use lra::results::{MetricsRow, Summary};

mod common;
use common::stderr;

const STEPS: usize = 30;
/// A learning rate that makes the first update blow the weights up, and the next loss NaN.
const DIVERGING_LR: f64 = 1e30;

fn lra(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lra"))
        .args(args)
        .output()
        .unwrap()
}

/// `lra run` of a very small ListOps model evaluated every 5 steps, data in `data`, runs under
/// `out`, plus `extra` flags.
fn run_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = common::tiny_listops_run(data, out, STEPS, 5);
    args.push("--quiet".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn only_run(out: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = fs::read_dir(out.join("listops/softmax"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn resume_args(run: &Path) -> Vec<String> {
    ["run", "--resume", &run.display().to_string(), "--quiet"]
        .map(String::from)
        .to_vec()
}

/// Changes the run's config.toml as a user would before resuming.
fn edit_config(run: &Path, edit: impl FnOnce(&mut ExperimentConfig)) {
    let path = run.join("config.toml");
    let mut config = lra::config::load_file(&path).unwrap();
    edit(&mut config);
    fs::write(&path, config.to_toml()).unwrap();
}

/// Every file below `dir` (relative path → bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        files.insert(path.clone(), fs::read(&path).unwrap());
    }
    files
}

/// Whether every parameter of the run's checkpointed model is finite.
fn checkpoint_weights_are_finite(run: &Path) -> bool {
    struct AllFinite(bool);
    impl ModuleVisitor for AllFinite {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param.val().into_data().try_to_vec::<f32>().unwrap();
            self.0 &= values.iter().all(|v| v.is_finite());
        }
    }
    let config = lra::config::load_file(&run.join("config.toml")).unwrap();
    let data = lra::task::load(&config.task, true).unwrap();
    let outputs = config.task.task().unwrap().objective().outputs();
    let device = lra::device::parse("cpu").unwrap().autodiff();
    let model = config
        .classifier(data.vocab_size, outputs)
        .unwrap()
        .init(&device);
    let checkpoint = lra::checkpoint::find(&run.join("checkpoint"))
        .unwrap()
        .unwrap();
    let model = checkpoint.restore_model(model).unwrap();
    let mut visitor = AllFinite(true);
    model.visit(&mut visitor);
    visitor.0
}

fn summary(run: &Path) -> Summary {
    serde_json::from_slice(&fs::read(run.join("summary.json")).unwrap()).unwrap()
}

fn metrics(run: &Path) -> Vec<MetricsRow> {
    let mut rows = lra::results::read_metrics(&run.join("metrics.csv")).unwrap();
    for row in &mut rows {
        row.tokens_per_second = 0.0;
    }
    rows
}

/// The step a non-finite error names (`step N: …`).
fn failed_step(message: &str) -> usize {
    let after = message
        .split("step ")
        .nth(1)
        .expect("the error names a step");
    after[..after.find(':').unwrap()].parse().unwrap()
}

#[test]
fn a_nan_loss_stops_the_run_keeps_the_last_checkpoint_and_resume_with_a_lower_lr_continues() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let reference_out = root.path().join("reference");
    let reference = lra(&run_args(&data, &reference_out, &[]));
    assert!(reference.status.success(), "{}", stderr(&reference));
    let reference = only_run(&reference_out);

    let out = root.path().join("diverged");
    let first = lra(&run_args(&data, &out, &["--stop-at-step", "10"]));
    assert!(first.status.success(), "{}", stderr(&first));
    let run = only_run(&out);
    let lr = lra::config::load_file(&run.join("config.toml"))
        .unwrap()
        .train
        .lr;
    edit_config(&run, |config| config.train.lr = DIVERGING_LR);
    let checkpoint_before = snapshot(&run.join("checkpoint"));
    let best_before = fs::read(run.join("best_model.bpk")).unwrap();

    let diverged = lra(&resume_args(&run));
    assert!(!diverged.status.success());
    let message = stderr(&diverged);
    let step = failed_step(&message);
    assert!((11..=STEPS).contains(&step), "{message}");
    assert!(
        message.contains("the training loss is NaN") || message.contains("the gradient norm is"),
        "{message}"
    );
    assert!(
        message.contains("the checkpoint of step 10 is the last good state")
            && message.contains(&format!("lra run --resume {}", run.display())),
        "{message}"
    );
    assert_eq!(snapshot(&run.join("checkpoint")), checkpoint_before);
    assert_eq!(fs::read(run.join("best_model.bpk")).unwrap(), best_before);
    assert!(!run.join("summary.json").exists());
    assert!(checkpoint_weights_are_finite(&run));

    // Back to the learning rate that worked: the run continues from step 10 and ends exactly
    // like the one that never diverged.
    edit_config(&run, |config| config.train.lr = lr);
    let resumed = lra(&resume_args(&run));
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(metrics(&run), metrics(&reference));
    let (resumed, reference) = (summary(&run), summary(&reference));
    assert_eq!(
        (resumed.metrics, resumed.best_step, resumed.skipped_steps),
        (reference.metrics, reference.best_step, 0)
    );
}

#[test]
fn skip_nonfinite_skips_and_counts_such_batches_up_to_its_limit() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let out = root.path().join("runs");
    let first = lra(&run_args(&data, &out, &["--stop-at-step", "10"]));
    assert!(first.status.success(), "{}", stderr(&first));
    let run = only_run(&out);
    let checkpoint = run.join("checkpoint");
    let saved = root.path().join("checkpoint-at-10");
    fs::rename(&checkpoint, &saved).unwrap();
    let restore_step_10 = || {
        let _ = fs::remove_dir_all(&checkpoint);
        let status = Command::new("cp")
            .arg("-a")
            .arg(&saved)
            .arg(&checkpoint)
            .status()
            .unwrap();
        assert!(status.success());
    };

    // More non-finite batches than allowed: the error says how many were skipped.
    restore_step_10();
    edit_config(&run, |config| {
        config.train.lr = DIVERGING_LR;
        config.train.skip_nonfinite = 2;
    });
    let stopped = lra(&resume_args(&run));
    assert!(!stopped.status.success());
    let message = stderr(&stopped);
    assert!(
        message.contains("after 2 such batch(es) skipped (train.skip_nonfinite = 2)"),
        "{message}"
    );

    // Enough allowed: every diverged step is skipped, the run finishes and counts them.
    restore_step_10();
    edit_config(&run, |config| config.train.skip_nonfinite = STEPS);
    let finished = lra(&resume_args(&run));
    assert!(finished.status.success(), "{}", stderr(&finished));
    let skipped = summary(&run).skipped_steps;
    let rows = metrics(&run);
    assert!((2..=STEPS - 10).contains(&skipped), "{skipped} skipped");
    assert_eq!(rows.last().unwrap().skipped_steps, skipped);
    assert_eq!(
        rows[1].skipped_steps, 0,
        "step 10 came before the divergence"
    );
    assert!(
        rows.windows(2)
            .all(|w| w[0].skipped_steps <= w[1].skipped_steps)
    );
}
