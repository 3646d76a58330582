//! `lra sweep` and `lra table`: an interrupted sweep continues where it stopped without redoing
//! finished runs, and a table rendered from fixture summaries matches the expected Markdown.

use std::path::Path;

use lra::cmd::sweep::{SweepArgs, execute as sweep};
use lra::cmd::table::{TableArgs, execute as table};
use lra::sweep::Shard;

/// Two rows × one task × one seed of a very small ListOps run, data and runs under `root`.
fn write_sweep_file(root: &Path) -> std::path::PathBuf {
    let quoted = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let text = format!(
        r#"
preset = "tiny"
tasks = ["listops"]
seeds = [3]
out = {out}
set = [
    "task.data_dir={data}",
    "task.generate.train=256",
    "task.generate.val=64",
    "task.generate.test=64",
    "task.max_len=32",
    "task.generate.max_len=32",
    "model.d_model=16",
    "model.d_ffn=32",
    "model.head_hidden=16",
    "train.steps=20",
    "train.eval_every=10",
]

[[row]]
name = "Transformer"
attention = "softmax"

[[row]]
name = "Linear Transformer"
attention = "linear"
"#,
        out = quoted(&root.join("out")),
        data = root.join("data").display(),
    );
    let path = root.join("sweep.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn args(file: &Path) -> SweepArgs {
    SweepArgs {
        file: file.to_path_buf(),
        shard: None,
        dry_run: false,
        slurm: false,
        device: "cpu".into(),
        stop_at_step: None,
        quiet: true,
    }
}

#[test]
fn an_interrupted_sweep_resumes_and_never_redoes_finished_runs() {
    let root = tempfile::tempdir().unwrap();
    let file = write_sweep_file(root.path());

    // Every cell stops at step 10, as if the job had been killed.
    let first = sweep(&SweepArgs {
        stop_at_step: Some(10),
        ..args(&file)
    })
    .unwrap();
    assert_eq!(first.stopped, [0, 1]);

    // Worker 0 of 2 finishes its cell only.
    let second = sweep(&SweepArgs {
        shard: Some(Shard { index: 0, count: 2 }),
        ..args(&file)
    })
    .unwrap();
    assert_eq!(
        (second.finished.as_slice(), second.resumed.as_slice()),
        (&[0][..], &[0][..])
    );
    let summary = root.path().join("out/listops/transformer/s3/summary.json");
    let before = (
        std::fs::read(&summary).unwrap(),
        std::fs::metadata(&summary).unwrap().modified().unwrap(),
    );

    // The whole grid again: cell 0 is skipped untouched, cell 1 resumes and finishes.
    let third = sweep(&args(&file)).unwrap();
    assert_eq!(third.skipped, [0]);
    assert_eq!(
        (third.finished.as_slice(), third.resumed.as_slice()),
        (&[1][..], &[1][..])
    );
    let after = (
        std::fs::read(&summary).unwrap(),
        std::fs::metadata(&summary).unwrap().modified().unwrap(),
    );
    assert_eq!(before, after, "a finished run was redone");

    // Both cells now have a score in the table.
    let markdown = table(&TableArgs {
        sweep: Some(file.clone()),
        runs: "unused".into(),
        published: None,
        out: Some(root.path().join("table.md")),
    })
    .unwrap();
    let lines: Vec<&str> = markdown.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(lines.len(), 3, "{markdown}");
    assert!(
        lines[1].starts_with("| Transformer | ") && !lines[1].contains('—'),
        "{markdown}"
    );
    assert!(
        lines[2].starts_with("| Linear Transformer | ") && !lines[2].contains('—'),
        "{markdown}"
    );
}

#[test]
fn a_changed_sweep_file_does_not_continue_a_different_run() {
    let root = tempfile::tempdir().unwrap();
    let file = write_sweep_file(root.path());
    sweep(&SweepArgs {
        stop_at_step: Some(10),
        shard: Some(Shard { index: 0, count: 2 }),
        ..args(&file)
    })
    .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("model.d_model=16", "model.d_model=32")).unwrap();
    let error = format!(
        "{:#}",
        sweep(&SweepArgs {
            shard: Some(Shard { index: 0, count: 2 }),
            ..args(&file)
        })
        .unwrap_err()
    );
    assert!(error.contains("another config"), "{error}");
    assert!(
        root.path()
            .join("out/listops/transformer/s3/checkpoint")
            .exists()
    );
}

#[test]
fn table_of_fixture_summaries_matches_the_expected_markdown() {
    let out = tempfile::tempdir().unwrap();
    let markdown = table(&TableArgs {
        sweep: Some("tests/fixtures/table/sweep.toml".into()),
        runs: "unused".into(),
        published: None,
        out: Some(out.path().join("table.md")),
    })
    .unwrap();
    let expected = std::fs::read_to_string("tests/fixtures/table/expected.md").unwrap();
    assert_eq!(markdown, expected);
    assert_eq!(
        std::fs::read_to_string(out.path().join("table.md")).unwrap(),
        expected
    );
    let csv = std::fs::read_to_string(out.path().join("table.csv")).unwrap();
    assert!(csv.contains("Transformer,listops,2,36.8"), "{csv}");
}
