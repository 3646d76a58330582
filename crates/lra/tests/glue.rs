//! GLUE end to end on the embedded CPU backend: fine-tuning the committed tiny BERT checkpoint
//! (made by transformers, `scripts/make_pretrained_fixtures.py`) on GLUE files in the official
//! `glue_data/` layout, scored with GLUE's metrics, with test predictions written as the GLUE
//! server's submission files.

use std::fs;
use std::path::Path;

use lra::cmd::run::{RunArgs, execute};
use lra::table::{PublishedNumbers, Table, column_names};
use lra_data::fixtures;

mod common;
use common::{finished, one_training_at_a_time, tiny_bert};

/// `lra run --task TASK --init <tiny BERT> --data DATA` with a short schedule (the fixture's
/// position table has 64 rows).
fn glue_args(task: &str, data: &Path, out: &Path, steps: usize, overrides: &[&str]) -> RunArgs {
    let mut all = vec!["task.max_len=32".to_string(), "train.batch_size=16".into()];
    all.extend(overrides.iter().map(|s| s.to_string()));
    RunArgs {
        task: Some(task.into()),
        init: Some(tiny_bert()),
        data: Some(data.to_path_buf()),
        steps: Some(steps),
        overrides: all,
        out: out.to_path_buf(),
        device: "cpu".into(),
        quiet: true,
        ..RunArgs::default()
    }
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn fine_tuning_the_tiny_bert_on_sst2_beats_the_majority_class_and_writes_the_submission_file() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let data = fixtures::write_keyword_sst2(root.path(), 480, 100, 20);
    let args = glue_args(
        "sst2",
        &data,
        &root.path().join("runs"),
        120,
        &[
            "train.lr=1e-3",
            "train.warmup_steps=10",
            "train.eval_every=40",
        ],
    );
    let (run, outcome) = execute(&args).unwrap();
    let summary = finished(outcome);

    let (val, majority) = (
        summary.metric("val", "accuracy").unwrap(),
        summary.metric("baseline", "accuracy").unwrap(),
    );
    // The dev set is 40 % positive: the constant predictor scores 0.6 on it.
    assert!((majority - 0.6).abs() < 1e-9, "{majority}");
    assert!(
        val > majority + 0.2,
        "dev accuracy {val} vs majority {majority}"
    );
    assert_eq!(summary.selection_metric, "accuracy");
    assert!(
        summary.test_loss.is_none(),
        "GLUE test answers are withheld"
    );

    // The pretrained weights went in, and the report says what did not.
    let report = fs::read_to_string(run.path.join("import_report.txt")).unwrap();
    assert!(
        report.contains("encoder.layer.0.attention.self.query.weight"),
        "{report}"
    );
    let config = fs::read_to_string(run.config()).unwrap();
    assert!(
        config.contains("init = ") && config.contains("d_model = 32"),
        "{config}"
    );

    let file = summary.predictions.get("test").expect("test predictions");
    assert_eq!(file, Path::new("predictions/SST-2.tsv"));
    let written = lines(&run.path.join(file));
    assert_eq!(written[0], "index\tprediction");
    assert_eq!(written.len(), 21);
    for (i, line) in written[1..].iter().enumerate() {
        let (index, label) = line.split_once('\t').unwrap();
        assert_eq!(index, i.to_string());
        assert!(label == "0" || label == "1", "{line}");
    }
    // The keyword sets the label: a model that learnt it predicts the test set's alternation.
    let right = written[1..]
        .iter()
        .enumerate()
        .filter(|(i, line)| line.ends_with(&format!("\t{}", i % 2)))
        .count();
    assert!(
        right >= 15,
        "{right} of 20 test predictions follow the keyword"
    );
}

#[test]
fn mnli_scores_both_dev_sets_and_writes_matched_mismatched_and_ax_submissions() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let data = fixtures::committed_fixtures().join("glue_data");
    let args = glue_args("mnli", &data, root.path(), 2, &[]);
    let (run, outcome) = execute(&args).unwrap();
    let summary = finished(outcome);
    for split in ["val", "validation_mismatched"] {
        let accuracy = summary.metric(split, "accuracy");
        assert!(
            accuracy.is_some_and(|a| (0.0..=1.0).contains(&a)),
            "{split}: {accuracy:?}"
        );
    }
    let expected = [
        ("ax", "AX.tsv", 2),
        ("test", "MNLI-m.tsv", 1),
        ("test_mismatched", "MNLI-mm.tsv", 1),
    ];
    for (split, file, examples) in expected {
        let path = summary
            .predictions
            .get(split)
            .unwrap_or_else(|| panic!("{split}"));
        assert_eq!(path, &Path::new("predictions").join(file));
        let written = lines(&run.path.join(path));
        assert_eq!(written.len(), examples + 1, "{written:?}");
        for line in &written[1..] {
            let label = line.split('\t').nth(1).unwrap();
            assert!(
                ["entailment", "neutral", "contradiction"].contains(&label),
                "{line}"
            );
        }
    }
    // Tables give the mismatched dev set a column of its own, next to the matched one.
    let columns = column_names(&["mnli".to_string()]);
    assert_eq!(columns, ["mnli", "mnli-mm"]);
    let mut table = Table {
        rows: vec!["softmax".into()],
        columns,
        ..Table::default()
    };
    table.add("softmax", "mnli", &summary);
    for (column, split) in [("mnli", "val"), ("mnli-mm", "validation_mismatched")] {
        let scores = &table.scores[&("softmax".to_string(), column.to_string())];
        let expected = summary.metric(split, "accuracy").unwrap() * 100.0;
        assert_eq!(scores.0, [expected], "{column}");
    }
    let markdown = table.markdown(&PublishedNumbers::default());
    assert!(
        markdown.contains("| method | mnli | mnli-mm | avg |"),
        "{markdown}"
    );
}

#[test]
fn stsb_trains_a_regression_head_and_submits_scores_between_0_and_5() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let data = fixtures::committed_fixtures().join("glue_data");
    let args = glue_args("stsb", &data, root.path(), 2, &[]);
    let (run, outcome) = execute(&args).unwrap();
    let summary = finished(outcome);
    assert_eq!(summary.selection_metric, "spearman");
    assert!(summary.metric("val", "loss").is_some_and(f64::is_finite));
    assert!(summary.test_accuracy.is_none() && summary.majority_class_accuracy.is_none());
    let written = lines(&run.path.join("predictions/STS-B.tsv"));
    assert_eq!(written.len(), 2);
    let score: f64 = written[1].split('\t').nth(1).unwrap().parse().unwrap();
    assert!((0.0..=5.0).contains(&score), "{score}");
}

#[test]
fn epochs_set_the_step_count_from_the_training_split() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let data = fixtures::write_keyword_sst2(root.path(), 40, 8, 4);
    let mut args = glue_args(
        "sst2",
        &data,
        &root.path().join("runs"),
        0,
        &["train.epochs=2"],
    );
    args.steps = None;
    let summary = finished(execute(&args).unwrap().1);
    // ⌈2 · 40 / 16⌉ = 5 steps, validated once per epoch (every 3 steps) and at the end.
    assert_eq!(summary.steps, 5);
}

#[test]
fn a_glue_task_without_a_checkpoint_says_how_to_give_one() {
    let root = tempfile::tempdir().unwrap();
    let data = fixtures::committed_fixtures().join("glue_data");
    let mut args = glue_args("rte", &data, root.path(), 1, &[]);
    args.init = None;
    let error = format!("{:#}", execute(&args).unwrap_err());
    assert!(
        error.contains("--init DIR") && error.contains("task.tokenizer"),
        "{error}"
    );
    let mut args = glue_args("sst", &data, root.path(), 1, &[]);
    args.init = Some(tiny_bert());
    let error = format!("{:#}", execute(&args).unwrap_err());
    assert!(error.contains("sst2"), "{error}");
}

#[test]
fn submit_zips_the_best_run_of_each_task_and_names_what_is_missing() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let runs = root.path().join("runs");
    let glue = fixtures::committed_fixtures().join("glue_data");
    for task in ["mnli", "rte"] {
        finished(execute(&glue_args(task, &glue, &runs, 1, &[])).unwrap().1);
    }
    let out = root.path().join("upload/glue.zip");
    let args = lra::cmd::submit::SubmitArgs {
        sweep: None,
        runs: runs.clone(),
        row: None,
        out: out.clone(),
        partial: false,
    };
    let error = format!("{:#}", lra::cmd::submit::execute(&args).unwrap_err());
    assert!(
        error.contains("CoLA.tsv") && error.contains("--partial"),
        "{error}"
    );
    assert!(!out.exists(), "no zip is written when files are missing");

    let args = lra::cmd::submit::SubmitArgs {
        partial: true,
        ..args
    };
    let files = lra::cmd::submit::execute(&args).unwrap();
    assert_eq!(files, ["AX.tsv", "MNLI-m.tsv", "MNLI-mm.tsv", "RTE.tsv"]);
    let mut zip = zip::ZipArchive::new(fs::File::open(&out).unwrap()).unwrap();
    let mut rte = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("RTE.tsv").unwrap(), &mut rte).unwrap();
    assert!(rte.starts_with("index\tprediction\n"), "{rte}");
}
