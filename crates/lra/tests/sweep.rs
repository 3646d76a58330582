//! `lra sweep` and `lra table`: an interrupted sweep continues where it stopped without redoing
//! finished runs; concurrent workers share one grid, never run a cell twice and take over a
//! killed worker's cell; a failed cell is marked and rerun only on request; a table rendered from
//! fixture summaries matches the expected Markdown.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lra::cmd::sweep::{SweepArgs, execute as sweep};
use lra::cmd::table::{TableArgs, execute as table};
use lra::sweep::{CellStatus, Shard, SweepFile};

/// Two rows × one task × one seed of a very small ListOps run, data and runs under `root`.
fn write_sweep_file(root: &Path) -> PathBuf {
    write_grid(root, &[3], 20, "")
}

/// Rows Transformer and Linear Transformer (plus `more_rows`) × ListOps × `seeds` of a very small
/// run of `steps` steps evaluated every 10, data and runs under `root`.
fn write_grid(root: &Path, seeds: &[u64], steps: usize, more_rows: &str) -> PathBuf {
    let quoted = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let text = format!(
        r#"
preset = "tiny"
tasks = ["listops"]
seeds = {seeds:?}
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
    "train.steps={steps}",
    "train.eval_every=10",
]

[[row]]
name = "Transformer"
attention = "softmax"

[[row]]
name = "Linear Transformer"
attention = "linear"
{more_rows}
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
        retry_failed: false,
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

#[test]
fn a_failed_cell_is_marked_with_its_error_and_rerun_only_with_retry_failed() {
    let root = tempfile::tempdir().unwrap();
    // The third row's data folder is a plain file, so generating its data fails.
    let blocked = root.path().join("blocked");
    std::fs::write(&blocked, "not a folder").unwrap();
    let broken_row = format!(
        "[[row]]\nname = \"Broken\"\nattention = \"softmax\"\nset = [\"task.data_dir={}\"]\n",
        blocked.display()
    );
    let file = write_grid(root.path(), &[3], 10, &broken_row);
    let cells = SweepFile::load(&file).unwrap().cells();
    let broken = &cells[2];

    let error = format!("{:#}", sweep(&args(&file)).unwrap_err());
    assert!(
        error.contains("1 cell(s) failed") && error.contains("Broken"),
        "{error}"
    );
    assert_eq!(broken.status(), CellStatus::Failed);
    let recorded = std::fs::read_to_string(broken.failure_file()).unwrap();
    assert!(recorded.contains("blocked"), "{recorded}");
    assert_eq!(cells[0].status(), CellStatus::Finished);

    // Fixed, but not retried without the flag: the sweep skips it and succeeds.
    std::fs::remove_file(&blocked).unwrap();
    let again = sweep(&args(&file)).unwrap();
    assert_eq!(
        (again.skipped.as_slice(), again.skipped_failed.as_slice()),
        (&[0, 1][..], &[2][..])
    );
    assert_eq!(broken.status(), CellStatus::Failed);

    let retried = sweep(&SweepArgs {
        retry_failed: true,
        ..args(&file)
    })
    .unwrap();
    assert_eq!(retried.finished, [2]);
    assert_eq!(broken.status(), CellStatus::Finished);
    assert!(!broken.failure_file().exists());
}

/// An `lra sweep` process whose stderr lines are collected as they come.
struct Worker {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    fn start(file: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lra"))
            .args(["sweep", &file.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// `(cell, status)` of every cell this worker claimed and started, in order.
    fn claims(&self) -> Vec<(usize, String)> {
        self.lines()
            .iter()
            .filter_map(|line| {
                let rest = line.strip_prefix("cell ")?;
                let (index, rest) = rest.split_once(" (")?;
                let (status, _) = rest.split_once("): ")?;
                Some((index.parse().ok()?, status.to_string()))
            })
            .collect()
    }

    /// Waits (at most `limit`) for the worker to exit and returns whether it succeeded.
    fn wait(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("worker still running after {limit:?}: {:#?}", self.lines());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn concurrent_workers_run_every_cell_once_and_take_over_a_killed_workers_cell() {
    let root = tempfile::tempdir().unwrap();
    // 2 rows × 3 seeds = 6 cells of 40 steps, checkpointed every 10.
    let file = write_grid(root.path(), &[1, 2, 3], 40, "");
    let cells = SweepFile::load(&file).unwrap().cells();
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::start(&file)).collect();

    // Worker 0 is killed (SIGKILL: no chance to clean up) in the middle of a cell: after a
    // checkpoint, before the summary.
    let deadline = Instant::now() + Duration::from_secs(120);
    let victim = loop {
        let midway = workers[0]
            .claims()
            .last()
            .map(|&(index, _)| index)
            .filter(|&index| {
                let dir = &cells[index].dir;
                dir.join("checkpoint/checksums.json").is_file()
                    && !dir.join("summary.json").is_file()
            });
        if let Some(index) = midway {
            workers[0].child.kill().unwrap();
            workers[0].child.wait().unwrap();
            break index;
        }
        assert!(
            Instant::now() < deadline,
            "worker 0 never got midway through a cell: {:#?}",
            workers[0].lines()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        !cells[victim].dir.join("summary.json").exists(),
        "cell {victim} finished before worker 0 was killed"
    );
    for (number, worker) in workers.iter_mut().enumerate().skip(1) {
        assert!(
            worker.wait(Duration::from_secs(300)),
            "worker {number} failed: {:#?}",
            worker.lines()
        );
    }

    // Every cell finished, and was started exactly once, except the killed worker's cell, which
    // one other worker resumed from its checkpoint.
    for cell in &cells {
        assert_eq!(cell.status(), CellStatus::Finished, "cell {}", cell.index);
        let starts: Vec<(usize, String)> = workers
            .iter()
            .enumerate()
            .flat_map(|(number, worker)| {
                worker
                    .claims()
                    .into_iter()
                    .filter(|&(index, _)| index == cell.index)
                    .map(move |(_, status)| (number, status))
            })
            .collect();
        if cell.index == victim {
            assert_eq!(starts.len(), 2, "cell {victim}: {starts:?}");
            assert_eq!(
                starts[0],
                (0, "new".to_string()),
                "cell {victim}: {starts:?}"
            );
            assert_ne!(starts[1].0, 0);
            assert_eq!(starts[1].1, "interrupted", "cell {victim}: {starts:?}");
        } else {
            assert_eq!(starts.len(), 1, "cell {} started {starts:?}", cell.index);
        }
        let steps: Vec<usize> = lra::results::read_metrics(&cell.dir.join("metrics.csv"))
            .unwrap()
            .iter()
            .map(|row| row.step)
            .collect();
        assert_eq!(steps, [10, 20, 30, 40], "cell {}", cell.index);
    }
}
