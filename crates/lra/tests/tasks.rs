//! `lra run` on the text, retrieval and image tasks from fixtures in their official formats (the
//! real loaders, the dual encoder for retrieval), `lra data prepare` (training then reads the
//! cache alone) and `lra data check` (every problem, with file and line/record).

use std::path::Path;

use lra::cmd::data::{CheckArgs, TaskArgs, check, prepare};
use lra::cmd::run::{RunArgs, execute};
use lra::task::DataSet;
use lra::train::Outcome;
use lra_data::fixtures;

mod common;
use common::one_training_at_a_time;

/// `preset` shrunk to a few seconds of CPU: tiny model, short sequences, 4 steps.
fn small_run(preset: &str, data: &Path, out: &Path) -> RunArgs {
    let overrides = [
        "model.d_model=16",
        "model.n_layers=1",
        "model.n_heads=2",
        "model.d_ffn=32",
        "model.head_hidden=16",
        "task.max_len=48",
        "train.batch_size=3",
        "train.warmup_steps=1",
        "train.eval_every=2",
    ];
    RunArgs {
        preset: Some(preset.into()),
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        steps: Some(4),
        data: Some(data.to_path_buf()),
        out: out.to_path_buf(),
        device: "cpu".into(),
        quiet: true,
        ..RunArgs::default()
    }
}

fn finishes(args: &RunArgs) -> lra::results::Summary {
    let (_, outcome) = execute(args).unwrap();
    match outcome {
        Outcome::Finished(summary) => *summary,
        Outcome::Stopped { step } | Outcome::Interrupted { step } => {
            panic!("stopped at step {step}")
        }
    }
}

#[test]
fn every_new_task_trains_from_its_official_files_under_both_presets() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    fixtures::write_imdb(root.path());
    fixtures::write_aan(root.path());
    fixtures::write_cifar(root.path(), 2, 4);
    for task in ["text", "retrieval", "image"] {
        for family in ["lra-pytorch", "lra-jax"] {
            let preset = format!("{family}/{task}");
            let summary = finishes(&small_run(&preset, root.path(), &root.path().join("runs")));
            assert_eq!(summary.task, task, "{preset}");
            assert_eq!(summary.steps, 4, "{preset}");
            assert!(
                summary
                    .test_accuracy
                    .is_some_and(|a| (0.0..=1.0).contains(&a)),
                "{preset}: {summary:?}"
            );
        }
    }
}

#[test]
fn a_prepared_cache_is_all_training_needs() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let tsv = fixtures::write_aan(root.path());
    let data = root.path().join("lra_release");
    let cache =
        prepare(&DataSet::new("retrieval", &data, &toml::Table::new(), 4000).unwrap()).unwrap();
    assert!(cache.starts_with(&data));
    std::fs::remove_dir_all(tsv).unwrap();
    let summary = finishes(&small_run(
        "lra-pytorch/retrieval",
        &data,
        &root.path().join("runs"),
    ));
    assert_eq!(summary.task, "retrieval");
}

#[test]
fn missing_data_names_the_files_expected_and_where_to_get_them() {
    let root = tempfile::tempdir().unwrap();
    let args = small_run(
        "lra-pytorch/retrieval",
        root.path(),
        &root.path().join("runs"),
    );
    let message = format!("{:#}", execute(&args).unwrap_err());
    for expected in [
        "new_aan_pairs.train.tsv",
        "lra_release/lra_release/tsv_data",
        "https://storage.googleapis.com/long-range-arena/lra_release.gz",
    ] {
        assert!(message.contains(expected), "{message}");
    }
    assert!(
        !root.path().join("runs").exists(),
        "no run folder for missing data"
    );
}

#[test]
fn check_reports_counts_labels_lengths_and_every_problem() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixtures::write_aan(root.path());
    let args = CheckArgs {
        target: TaskArgs {
            task: "retrieval".into(),
            data: root.path().to_path_buf(),
            contour_length: None,
            tokenizer: None,
            max_len: Some(30),
        },
        batch_size: Some(2),
    };
    let clean = check(&args).unwrap();
    assert!(clean.problems.is_empty(), "{clean}");
    let (split, train) = &clean.splits[0];
    assert_eq!((split.as_str(), train.examples), ("train", 6));
    assert_eq!(train.label_counts, [3, 3]);
    assert!(clean.loader.as_ref().unwrap().batches_per_second > 0.0);
    let text = clean.to_string();
    assert!(
        text.contains("no problems found") && text.contains("loader:"),
        "{text}"
    );

    std::fs::write(
        dir.join("new_aan_pairs.test.tsv"),
        "1\ta\tb\tc\n0\ta\tb\tc\td\n5\ta\tb\tc\td\n",
    )
    .unwrap();
    let report = check(&args).unwrap();
    assert_eq!(report.problems.len(), 2, "{report}");
    assert!(
        report.problems[0].contains("new_aan_pairs.test.tsv:1:"),
        "{report}"
    );
    assert!(
        report.problems[1].contains("new_aan_pairs.test.tsv:3: label 5"),
        "{report}"
    );
    assert_eq!(report.splits[2].1.examples, 1);
}

#[test]
fn generated_pathfinder_sets_check_clean_and_train_under_every_preset() {
    use lra::cmd::data::{DataCommand, GenerateCommand, PathfinderArgs, execute as data};
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    for (resolution, contour_length, images) in [(32, 14, 60), (128, 14, 20), (32, 9, 40)] {
        data(DataCommand::Generate(GenerateCommand::Pathfinder(
            PathfinderArgs {
                out: root.path().to_path_buf(),
                resolution,
                contour_length,
                images,
                images_per_batch: 25,
                seed: 1,
            },
        )))
        .unwrap();
    }
    let report = check(&CheckArgs {
        target: TaskArgs {
            task: "pathfinder".into(),
            data: root.path().to_path_buf(),
            contour_length: None,
            tokenizer: None,
            max_len: None,
        },
        batch_size: Some(4),
    })
    .unwrap();
    assert!(report.problems.is_empty(), "{report}");
    let counts: Vec<usize> = report.splits.iter().map(|(_, s)| s.examples).collect();
    assert_eq!(counts, [48, 6, 6], "80/10/10 of 60 images");
    for task in ["pathfinder", "pathx"] {
        for family in ["lra-pytorch", "lra-jax"] {
            let preset = format!("{family}/{task}");
            let summary = finishes(&small_run(&preset, root.path(), &root.path().join("runs")));
            assert_eq!(
                (summary.task.as_str(), summary.steps),
                (task, 4),
                "{preset}"
            );
        }
    }
    // Another difficulty is a config key away, and is checked as its own set.
    let mut easier = small_run(
        "lra-pytorch/pathfinder",
        root.path(),
        &root.path().join("runs"),
    );
    easier.overrides.push("task.contour_length=9".into());
    assert_eq!(finishes(&easier).task, "pathfinder");
    let report = check(&CheckArgs {
        target: TaskArgs {
            task: "pathfinder".into(),
            data: root.path().to_path_buf(),
            contour_length: Some(9),
            tokenizer: None,
            max_len: None,
        },
        batch_size: Some(4),
    })
    .unwrap();
    let counts: Vec<usize> = report.splits.iter().map(|(_, s)| s.examples).collect();
    assert_eq!(
        counts,
        [32, 4, 4],
        "80/10/10 of the 40 contour-length-9 images"
    );
    // After `prepare`, training reads the cache alone: the PNGs can go.
    prepare(&DataSet::new("pathx", root.path(), &toml::Table::new(), 16384).unwrap()).unwrap();
    std::fs::remove_dir_all(
        root.path()
            .join("pathfinder128/curv_contour_length_14/imgs"),
    )
    .unwrap();
    let summary = finishes(&small_run(
        "lra-pytorch/pathx",
        root.path(),
        &root.path().join("runs"),
    ));
    assert_eq!(summary.task, "pathx");
}
