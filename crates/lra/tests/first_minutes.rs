//! What a new user meets first: a `tiny` preset for every task with a generator that draws its
//! data on first use and trains, and errors for missing data or unknown names that end with
//! the command that fixes them.

use std::fs;
use std::path::Path;

mod common;
use common::{failure, lra, stderr};

/// The single metadata file of a generated set and its number of records.
fn metadata(set: &Path) -> (std::path::PathBuf, usize) {
    let file = set.join("metadata/0.npy");
    let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    (file, text.lines().count())
}

#[test]
fn every_generated_tiny_preset_draws_its_data_once_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    for (task, side) in [("pathfinder", 32), ("pathx", 128), ("path256", 256)] {
        let data = format!("gen/{task}");
        let args = [
            "run",
            "--task",
            task,
            "--preset",
            "tiny",
            "--data",
            &data,
            "--steps",
            "2",
            "--set",
            "task.generate.images=40",
            "--set",
            "train.batch_size=2",
            "--set",
            "train.eval_every=2",
            "--out",
            "runs",
            "--quiet",
        ];
        let out = lra(&args, dir.path());
        assert!(out.status.success(), "{task}: {}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["preset"], format!("tiny/{task}"));
        assert_eq!(summary["steps"], 2);
        let accuracy = summary["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{summary}");

        let root = dir.path().join(&data);
        let set = root.join(format!("pathfinder{side}/curv_baseline"));
        let (file, records) = metadata(&set);
        assert_eq!(records, 40, "{task}: every image drawn is listed");
        assert!(
            !root.join(".generating").exists(),
            "{task}: the scratch folder is gone"
        );
        let png = fs::read(set.join("imgs/0/sample_0.png")).unwrap();
        let (width, height, _) = lra_data::pathfinder::decode_gray(&png).unwrap();
        assert_eq!((width, height), (side, side));

        // A second run reads the same set instead of drawing it again.
        let written = fs::metadata(&file).unwrap().modified().unwrap();
        let again = lra(&args, dir.path());
        assert!(again.status.success(), "{task}: {}", stderr(&again));
        assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), written);
    }
}

#[test]
fn missing_data_errors_end_with_the_command_that_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pretrained/bert");
    let tokenizer = tokenizer.to_str().unwrap();
    let check = |task: &'static str| vec!["data", "check", task, "--data", "missing"];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            check("listops"),
            vec!["lra data generate listops --out missing", "--preset tiny"],
        ),
        (
            check("text"),
            vec!["aclImdb_v1.tar.gz", "lra data check text --data missing"],
        ),
        (
            check("image"),
            vec![
                "cifar-10-binary.tar.gz",
                "lra data check image --data missing",
            ],
        ),
        (
            check("retrieval"),
            vec!["lra_release.gz", "lra data check retrieval --data missing"],
        ),
        (
            check("pathfinder"),
            vec![
                "lra data generate pathfinder --resolution 32",
                "--out missing",
            ],
        ),
        (
            check("path256"),
            vec![
                "--resolution 256 --contour-length 14",
                "lra data check path256",
            ],
        ),
        (
            [check("sst2"), vec!["--tokenizer", tokenizer]].concat(),
            vec![
                "huggingface-cli download nyu-mll/glue",
                "lra data check sst2 --data missing",
            ],
        ),
        // The headline command on a fresh machine.
        (
            vec![
                "run",
                "--attention",
                "nystrom",
                "--task",
                "pathx",
                "--data",
                "missing",
            ],
            vec![
                "lra data generate pathfinder --resolution 128 --contour-length 14 --out missing",
                "minutes",
                "lra run --task pathx --preset tiny",
            ],
        ),
    ];
    for (args, expected) in cases {
        let message = failure(&args, dir.path());
        let last = message.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("Next: "),
            "{args:?}: the error ends with: {last}"
        );
        for piece in expected {
            assert!(last.contains(piece), "{args:?}: `{piece}` not in: {last}");
        }
    }
    assert!(!dir.path().join("missing").exists(), "nothing was created");
    assert!(
        !dir.path().join("results").exists(),
        "no run folder was left"
    );
}

#[test]
fn unknown_names_suggest_the_closest_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&'static str]| [&["run", "--preset", "tiny"], extra].concat();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (run(&["--attention", "nystromm"]), "did you mean `nystrom`?"),
        (run(&["--task", "pathX"]), "did you mean `pathx`?"),
        (vec!["run", "--preset", "tinyy"], "did you mean `tiny`?"),
        (run(&["--set", "train.stepz=3"]), "did you mean `steps`?"),
        (
            run(&["--set", "train.schedule=cosin"]),
            "did you mean `cosine`?",
        ),
        (
            run(&["--attention", "nystrom", "--set", "mixer.landmark=8"]),
            "did you mean `landmarks`?",
        ),
        (
            vec![
                "run",
                "--preset",
                "tiny",
                "--task",
                "pathx",
                "--set",
                "task.contour_lenght=9",
            ],
            "did you mean `contour_length`?",
        ),
    ];
    for (args, expected) in cases {
        let message = failure(&args, dir.path());
        assert!(
            message.contains(expected),
            "{args:?}: `{expected}` not in: {message}"
        );
    }
    assert!(
        !dir.path().join("results").exists(),
        "no run folder was left"
    );
}
