//! End-to-end runs of `lra run` on the embedded CPU backend: the tiny ListOps preset learns, the
//! run folder holds what it promises, and a stopped-and-resumed run ends exactly like an
//! uninterrupted one.

use std::path::Path;

use lra::cmd::run::{RunArgs, execute};
use lra::config::ExperimentConfig;
use lra::results::{MetricsRow, Summary};
use lra::train::Outcome;

mod common;
use common::{finished, one_training_at_a_time};

/// The tiny preset with its data generated into `root/data` and runs written under `root/runs`.
fn tiny_args(root: &Path, steps: usize, overrides: &[&str]) -> RunArgs {
    let mut all: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    all.push(format!(
        "task.data_dir={}",
        toml::Value::String(root.join("data").display().to_string())
    ));
    RunArgs {
        preset: Some("tiny".into()),
        overrides: all,
        steps: Some(steps),
        out: root.join("runs"),
        device: "cpu".into(),
        quiet: true,
        ..RunArgs::default()
    }
}

fn metrics(run_dir: &Path) -> Vec<MetricsRow> {
    lra::results::read_metrics(&run_dir.join("metrics.csv")).unwrap()
}

#[test]
fn tiny_listops_run_learns_and_writes_its_run_folder() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let args = tiny_args(root.path(), 300, &["train.eval_every=100"]);
    let (run, outcome) = execute(&args).unwrap();
    let summary = finished(outcome);

    let history = metrics(&run.path);
    assert_eq!(
        history.iter().map(|r| r.step).collect::<Vec<_>>(),
        [100, 200, 300]
    );
    let (first, last) = (&history[0], &history[2]);
    assert!(
        last.train_loss < first.train_loss - 0.1,
        "loss did not fall: {history:?}"
    );
    let (test, majority) = (
        summary.test_accuracy.unwrap(),
        summary.majority_class_accuracy.unwrap(),
    );
    assert!(
        test > majority + 0.08,
        "test accuracy {test} does not clearly beat the majority class {majority}"
    );

    let saved: Summary = serde_json::from_slice(&std::fs::read(run.summary()).unwrap()).unwrap();
    assert_eq!(saved, summary);
    assert_eq!(
        (
            saved.task.as_str(),
            saved.attention.as_str(),
            saved.preset.as_str()
        ),
        ("listops", "softmax", "tiny/listops")
    );
    assert_eq!((saved.steps, saved.seed), (300, 0));
    let best_val_accuracy = saved.best_val_accuracy.unwrap();
    assert!((0.0..=1.0).contains(&best_val_accuracy) && saved.tokens_per_second > 0.0);
    assert!(saved.parameters > 10_000);
    let best_row = history.iter().find(|r| r.step == saved.best_step).unwrap();
    assert_eq!(best_row.val("accuracy"), Some(best_val_accuracy));

    let config = lra::config::load_file(&run.config()).unwrap();
    assert_eq!(config, lra::cmd::run::resolve(&args).unwrap());
    assert!(
        run.path
            .starts_with(root.path().join("runs/listops/softmax"))
    );
    assert!(run.best_model().is_file());

    // A finished run cannot be resumed, and a new run never reuses its folder.
    let mut resume = RunArgs {
        resume: Some(Some(run.path.clone())),
        ..tiny_args(root.path(), 1, &[])
    };
    resume.preset = None;
    resume.overrides.clear();
    resume.steps = None;
    let error = format!("{:#}", execute(&resume).unwrap_err());
    assert!(error.contains("finished run"), "{error}");
    let (second, _) = execute(&tiny_args(root.path(), 2, &["train.eval_every=1"])).unwrap();
    assert_ne!(second.path, run.path);
    let still: Summary = serde_json::from_slice(&std::fs::read(run.summary()).unwrap()).unwrap();
    assert_eq!(still, summary);
}

#[test]
fn stopped_and_resumed_run_matches_an_uninterrupted_one() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let overrides = [
        "train.eval_every=20",
        "task.generate.train=2000",
        "task.generate.val=200",
        "task.generate.test=200",
    ];
    assert_resume_is_exact(&|| tiny_args(root.path(), 50, &overrides));
}

/// The S4 presets' options together (BatchNorm with its running statistics, the softplus step,
/// ids read as values, id 0 masked anywhere, the zeroed-padding mean): the run learns, and a run
/// stopped between evaluations and resumed ends exactly as the uninterrupted one, so the running
/// statistics travel through the checkpoint.
#[test]
fn an_s4_run_with_batch_norm_and_value_inputs_learns_and_resumes_exactly() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let overrides = [
        "train.eval_every=20",
        "task.generate.train=2000",
        "task.generate.val=200",
        "task.generate.test=200",
        "model.ffn=false",
        r#"model.normalization="batch""#,
        "model.input_values={center=8.0,scale=4.0}",
        "model.zero_ids_are_padding=true",
        r#"model.pooling="mean_with_zeroed_padding""#,
        "mixer.d_state=4",
        r#"mixer.dt_transform="softplus""#,
    ];
    let reference = assert_resume_is_exact(&|| RunArgs {
        attention: Some("s4".into()),
        ..tiny_args(root.path(), 60, &overrides)
    });
    let history = metrics(&reference.run_dir);
    assert!(
        history[2].train_loss < history[0].train_loss,
        "loss did not fall: {history:?}"
    );
}

/// Runs `args()` to its end, then again stopped at step 30 (between two evaluations, so the
/// partial training window must survive the restart) and resumed, and asserts that both end
/// alike, metrics history included. Returns the uninterrupted run's summary.
fn assert_resume_is_exact(args: &dyn Fn() -> RunArgs) -> Summary {
    let reference = finished(execute(&args()).unwrap().1);
    let mut first_half = args();
    first_half.stop_at_step = Some(30);
    let (run, outcome) = execute(&first_half).unwrap();
    assert!(
        matches!(outcome, Outcome::Stopped { step: 30 }),
        "{outcome:?}"
    );
    assert!(!run.is_finished());

    // `--resume` without a folder finds the unfinished run with the same config.
    let mut second_half = args();
    second_half.resume = Some(None);
    let (resumed_run, outcome) = execute(&second_half).unwrap();
    assert_eq!(resumed_run.path, run.path);
    let resumed = finished(outcome);

    assert_eq!(resumed.best_val_accuracy, reference.best_val_accuracy);
    assert_eq!(resumed.best_step, reference.best_step);
    assert_eq!(resumed.test_accuracy, reference.test_accuracy);
    assert_eq!(resumed.test_loss, reference.test_loss);
    assert_eq!(resumed.metrics, reference.metrics);
    let strip = |rows: Vec<MetricsRow>| -> Vec<_> {
        rows.into_iter()
            .map(|r| (r.step, r.lr, r.train_loss, r.train_accuracy, r.val))
            .collect()
    };
    assert_eq!(
        strip(metrics(&run.path)),
        strip(metrics(&reference.run_dir))
    );
    reference
}

#[test]
fn config_written_to_the_run_folder_reloads() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let mut args = tiny_args(
        root.path(),
        1,
        &[
            "train.eval_every=1",
            "task.generate.train=64",
            "task.generate.val=32",
            "task.generate.test=32",
        ],
    );
    args.attention = Some("local".into());
    let (run, _) = execute(&args).unwrap();
    let text = std::fs::read_to_string(run.config()).unwrap();
    let config = ExperimentConfig::from_toml(&text, "config.toml").unwrap();
    assert_eq!(config.attention, "local");
    assert_eq!(
        config.mixer.get("block_size").and_then(|v| v.as_integer()),
        Some(50)
    );
}

/// `train.test_with = "last"` scores the test split with the final parameters: the same scores as
/// a run whose only (hence best) validation is at the final step. `val` and `tested_step` name
/// the step tested; the default tests the best validation step.
#[test]
fn test_with_last_tests_the_final_parameters_and_best_the_best_step() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let run = |overrides: &[&str]| {
        let small = [
            "task.generate.train=512",
            "task.generate.val=128",
            "task.generate.test=128",
            "task.max_len=64",
            "task.generate.max_len=64",
        ];
        let all: Vec<&str> = small.iter().chain(overrides).copied().collect();
        let (run, outcome) = execute(&tiny_args(root.path(), 40, &all)).unwrap();
        (finished(outcome), metrics(&run.path))
    };
    let (last, last_history) = run(&["train.eval_every=10", "train.test_with=\"last\""]);
    let (best, best_history) = run(&["train.eval_every=10"]);
    let (only_final, _) = run(&["train.eval_every=40"]);

    let untimed = |history: &[MetricsRow]| -> Vec<_> {
        history
            .iter()
            .map(|r| (r.step, r.train_loss, r.val.clone()))
            .collect()
    };
    assert_eq!(
        untimed(&last_history),
        untimed(&best_history),
        "the option changes only the final scoring"
    );
    assert_eq!(
        (last.tested_step, best.tested_step),
        (Some(40), Some(best.best_step))
    );
    assert_eq!(only_final.best_step, 40);
    assert_eq!(last.metrics["test"], only_final.metrics["test"]);
    assert_eq!(last.metrics["val"], last_history.last().unwrap().val);
    let best_row = best_history
        .iter()
        .find(|r| r.step == best.best_step)
        .unwrap();
    assert_eq!(best.metrics["val"], best_row.val);
}
