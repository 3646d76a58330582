//! Disk faults, on the real binary: a full disk (a file-size limit, `ulimit -f`, which root cannot
//! bypass either) and an unwritable results folder give an error naming the file at the first
//! write that fails, keep the earlier checkpoint, cache and results as they were, and leave no
//! half-written file behind that a later run would trust.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::stderr;

/// Largest file the limited process may write, in KiB (`ulimit -f` counts 1,024-byte blocks in
/// bash): more than `metrics.csv` or `config.toml` ever get here, less than the model files.
const SMALL_FILE_LIMIT_KIB: u64 = 4;

/// Runs `lra` with `args`; with `limit_kib`, under that file-size limit, with SIGXFSZ ignored so
/// that an oversized write fails with EFBIG ("File too large") instead of killing the process.
fn lra(args: &[String], limit_kib: Option<u64>) -> Output {
    let binary = env!("CARGO_BIN_EXE_lra");
    let output = match limit_kib {
        None => Command::new(binary).args(args).output(),
        Some(kib) => Command::new("bash")
            .arg("-c")
            .arg(format!("ulimit -f {kib}; trap '' XFSZ; exec \"$0\" \"$@\""))
            .arg(binary)
            .args(args)
            .output(),
    };
    output.unwrap()
}

/// `lra run` of `steps` steps of a very small ListOps model (data generated into `root/data` on
/// first use), runs under `root/runs`, plus `extra` flags.
fn run_args(root: &Path, steps: usize, extra: &[&str]) -> Vec<String> {
    let mut args = common::tiny_listops_run(&root.join("data"), &root.join("runs"), steps, 10);
    args.push("--quiet".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The one run folder under `root/runs`.
fn only_run(root: &Path) -> PathBuf {
    let parent = root.join("runs/listops/softmax");
    let runs: Vec<PathBuf> = fs::read_dir(&parent)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// Every file below `dir` (relative path → bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    files
}

/// A `.<name>.tmp-<pid>` file: written before a rename, never read by a run.
fn is_temp_file(file: &Path) -> bool {
    let name = file.file_name().unwrap().to_string_lossy();
    name.starts_with('.') && name.contains(".tmp-")
}

/// The `step` column of a run's `metrics.csv`.
fn metric_steps(run: &Path) -> Vec<usize> {
    lra::results::read_metrics(&run.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|row| row.step)
        .collect()
}

#[test]
fn a_full_disk_keeps_the_last_checkpoint_and_the_run_resumes_from_it() {
    let root = tempfile::tempdir().unwrap();
    let first = lra(&run_args(root.path(), 30, &["--stop-at-step", "10"]), None);
    assert!(first.status.success(), "{}", stderr(&first));
    let run = only_run(root.path());
    let before = snapshot(&run);
    assert!(before.contains_key(Path::new("checkpoint/checksums.json")));

    let resume: Vec<String> = ["run", "--resume", &run.display().to_string(), "--quiet"]
        .map(String::from)
        .to_vec();
    let full = lra(&resume, Some(SMALL_FILE_LIMIT_KIB));
    assert!(!full.status.success(), "the run went through a full disk");
    let message = stderr(&full);
    assert!(
        message.contains("File too large") && message.contains(&run.display().to_string()),
        "{message}"
    );

    // The step-10 checkpoint is as it was; nothing half-written is left beside it.
    let after = snapshot(&run);
    for (file, bytes) in &before {
        if file.starts_with("checkpoint") || file == Path::new("config.toml") {
            assert_eq!(after.get(file), Some(bytes), "{} changed", file.display());
        }
    }
    let leftovers: Vec<&PathBuf> = after
        .keys()
        .filter(|file| !before.contains_key(*file) && !is_temp_file(file))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert!(!run.join(".checkpoint.new").exists());
    assert!(!run.join("summary.json").exists());

    // With room again the run resumes from step 10 and ends like an uninterrupted one.
    let resumed = lra(&resume, None);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(metric_steps(&run), [10, 20, 30]);
    let reference_root = tempfile::tempdir().unwrap();
    let mut reference_args = run_args(reference_root.path(), 30, &[]);
    let data_flag = reference_args.iter().position(|a| a == "--data").unwrap();
    reference_args[data_flag + 1] = root.path().join("data").display().to_string();
    let reference = lra(&reference_args, None);
    assert!(reference.status.success(), "{}", stderr(&reference));
    let summary = |run: &Path| -> lra::results::Summary {
        serde_json::from_slice(&fs::read(run.join("summary.json")).unwrap()).unwrap()
    };
    let (resumed, reference) = (summary(&run), summary(&only_run(reference_root.path())));
    assert_eq!(
        (
            resumed.best_step,
            resumed.best_val_accuracy,
            resumed.test_accuracy,
            resumed.test_loss,
            &resumed.metrics
        ),
        (
            reference.best_step,
            reference.best_val_accuracy,
            reference.test_accuracy,
            reference.test_loss,
            &reference.metrics
        )
    );
}

#[test]
fn an_unwritable_results_folder_fails_at_the_first_write_and_keeps_earlier_runs() {
    let root = tempfile::tempdir().unwrap();
    let earlier = lra(&run_args(root.path(), 10, &[]), None);
    assert!(earlier.status.success(), "{}", stderr(&earlier));
    let earlier_run = only_run(root.path());
    let before = snapshot(&root.path().join("runs"));
    assert!(before.keys().any(|file| file.ends_with("summary.json")));

    // Read-only for ordinary users; root ignores permissions, so there no file may grow at all.
    let runs = root.path().join("runs");
    let set_mode = |mode| {
        use std::os::unix::fs::PermissionsExt;
        for dir in [&runs, &runs.join("listops"), &runs.join("listops/softmax")] {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    set_mode(0o555);
    let ignores_permissions = fs::write(runs.join("probe"), b"x").is_ok();
    let _ = fs::remove_file(runs.join("probe"));
    let limit = ignores_permissions.then_some(0);
    let failed = lra(&run_args(root.path(), 10, &[]), limit);
    set_mode(0o755);

    assert!(
        !failed.status.success(),
        "the run wrote into an unwritable folder"
    );
    let message = stderr(&failed);
    let names_the_folder = message.contains(&runs.join("listops/softmax").display().to_string());
    assert!(names_the_folder, "{message}");
    if ignores_permissions {
        assert!(
            message.contains("config.toml") && message.contains("File too large"),
            "{message}"
        );
    } else {
        assert!(message.contains("ermission denied"), "{message}");
    }
    // The earlier run is untouched, and the failed one left no file at all.
    assert_eq!(snapshot(&runs), before);
    assert!(earlier_run.join("summary.json").is_file());
}

#[test]
fn a_full_disk_while_preparing_the_cache_keeps_the_previous_cache() {
    let root = tempfile::tempdir().unwrap();
    // Generate the data (one short run), then prepare its cache.
    let generated = lra(&run_args(root.path(), 1, &[]), None);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let data = root.path().join("data");
    let prepare: Vec<String> = ["data", "prepare", "listops", "--data"]
        .map(String::from)
        .into_iter()
        .chain([data.display().to_string()])
        .collect();
    let prepared = lra(&prepare, None);
    assert!(prepared.status.success(), "{}", stderr(&prepared));
    let cache = data.join("lra-cache/listops");
    let before = snapshot(&cache);
    assert_eq!(before.len(), 3, "{:?}", before.keys());

    let full = lra(&prepare, Some(SMALL_FILE_LIMIT_KIB));
    assert!(!full.status.success(), "prepare went through a full disk");
    let message = stderr(&full);
    assert!(
        message.contains(&cache.display().to_string()) && message.contains("File too large"),
        "{message}"
    );
    assert_eq!(
        snapshot(&cache),
        before,
        "the cache changed or temp files were left"
    );

    // Without a cache, a failed prepare leaves no file at all.
    fs::remove_dir_all(&cache).unwrap();
    let full = lra(&prepare, Some(SMALL_FILE_LIMIT_KIB));
    assert!(!full.status.success());
    assert!(snapshot(&cache).is_empty(), "{:?}", snapshot(&cache).keys());
}
