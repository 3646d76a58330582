//! The `lra` binary: listing, data generation, and clear errors (exit code 1, message naming the
//! bad input and the valid choices) without writing anything.

mod common;
use common::{failure, lra, stderr};

#[test]
fn list_shows_every_registered_mixer_with_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = lra(&["list"], dir.path());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for kind in lra_model::MixerKind::ALL {
        assert!(
            text.contains(kind.name()) && text.contains(kind.summary()),
            "{kind} missing:\n{text}"
        );
    }
    assert!(text.contains("mixer.block_size = 50"), "{text}");
}

#[test]
fn data_generate_listops_writes_the_official_files() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "data",
        "generate",
        "listops",
        "--out",
        "gen",
        "--train",
        "50",
        "--val",
        "10",
        "--test",
        "10",
        "--min-len",
        "5",
        "--max-len",
        "60",
        "--max-depth",
        "4",
        "--max-args",
        "4",
        "--seed",
        "3",
    ];
    let out = lra(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let splits = lra_data::listops::load(&dir.path().join("gen")).unwrap();
    assert_eq!(
        (splits.train.len(), splits.val.len(), splits.test.len()),
        (50, 10, 10)
    );
    let text = std::fs::read_to_string(dir.path().join("gen/basic_train.tsv")).unwrap();
    assert!(text.starts_with("Source\tTarget"));
    // Same seed, same files.
    assert!(
        lra(&[&args[..4], &["gen2"], &args[5..]].concat(), dir.path())
            .status
            .success()
    );
    assert_eq!(
        text,
        std::fs::read_to_string(dir.path().join("gen2/basic_train.tsv")).unwrap()
    );
}

#[test]
fn bad_input_fails_cleanly_and_writes_no_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["run", "--preset", "tiny", "--attention", "nystromm"],
            &["nystromm", "softmax, local"],
        ),
        (
            &["run", "--preset", "tinyy"],
            &["tinyy", "lra-pytorch/listops"],
        ),
        (
            &["run", "--preset", "tiny", "--set", "train.stepz=3"],
            &["stepz", "steps"],
        ),
        (
            &["run", "--preset", "tiny", "--device", "tpu"],
            &["tpu", "cpu"],
        ),
        (
            &[
                "run",
                "--preset",
                "tiny",
                "--data",
                "missing",
                "--set",
                "task.generate=false",
            ],
            &["task.generate"],
        ),
    ];
    for (args, expected) in cases {
        let message = failure(args, dir.path());
        for piece in expected {
            assert!(
                message.contains(piece),
                "{args:?}: `{piece}` not in: {message}"
            );
        }
    }
    assert!(
        !dir.path().join("results").exists(),
        "a failed run left a results folder"
    );
}

/// A GPU that is not there is an error naming the device, not a panic at the first tensor.
#[cfg(feature = "wgpu")]
fn assert_absent_gpu_is_a_clear_error(device: &str, driver: Option<&str>, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lra"));
    command.args(["run", "--preset", "tiny", "--device", device]);
    if let Some(driver) = driver {
        command
            .env("VK_ICD_FILENAMES", driver)
            .env("VK_DRIVER_FILES", driver);
    }
    let out = command.current_dir(dir.path()).output().unwrap();
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(message.contains(expected), "`{expected}` not in: {message}");
    assert!(!message.contains("panicked"), "{message}");
    assert!(!dir.path().join("results").exists());
}

/// No machine this runs on has eight discrete GPUs.
#[cfg(feature = "wgpu")]
#[test]
fn an_absent_gpu_is_a_clear_error() {
    assert_absent_gpu_is_a_clear_error("wgpu:7", None, "device `wgpu:7` cannot be opened");
}

/// `vulkan` is pinned to Vulkan: a loader pointed at no driver leaves nothing to fall back on.
#[cfg(feature = "vulkan")]
#[test]
fn an_absent_vulkan_driver_is_a_clear_error() {
    assert_absent_gpu_is_a_clear_error("vulkan", Some("/nonexistent/icd.json"), "libvulkan1");
}

#[test]
fn malformed_data_file_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let good = "Source\tTarget\n( ( [MAX 2 ) 9 ) ]\t9\n";
    std::fs::write(data.join("basic_train.tsv"), good).unwrap();
    std::fs::write(data.join("basic_val.tsv"), good).unwrap();
    std::fs::write(
        data.join("basic_test.tsv"),
        "Source\tTarget\n( ( [MAX 2 ) 9 ) ]\t9\n( [MIN 3 ]\n",
    )
    .unwrap();
    let out = lra(
        &["run", "--preset", "tiny", "--data", "data", "--out", "runs"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(message.contains("basic_test.tsv:3"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    assert!(
        !dir.path().join("runs").exists(),
        "a run folder was created for unusable data"
    );
}

#[test]
fn unknown_names_suggest_the_closest_and_task_settings_are_checked_by_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["run", "--task", "listop"],
            &["unknown task `listop`", "did you mean `listops`?"],
        ),
        (
            &["run", "--preset", "tiny", "--attention", "nystromm"],
            &["did you mean `nystrom`?"],
        ),
        (
            &["run", "--preset", "tinny"],
            &["unknown preset `tinny`", "did you mean `tiny`?"],
        ),
        (
            &[
                "run",
                "--preset",
                "lra-pytorch/pathfinder",
                "--set",
                "task.contour_lenght=9",
            ],
            &[
                "settings of task pathfinder",
                "contour_lenght",
                "contour_length",
            ],
        ),
        (
            &["run", "--preset", "tiny", "--set", "task.contour_length=9"],
            &["settings of task listops", "contour_length"],
        ),
    ];
    for (args, expected) in cases {
        let message = failure(args, dir.path());
        for piece in expected {
            assert!(
                message.contains(piece),
                "{args:?}: `{piece}` not in: {message}"
            );
        }
    }
    assert!(!dir.path().join("results").exists());
}

#[test]
fn list_shows_every_registered_task_with_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let out = lra(&["list"], dir.path());
    let text = String::from_utf8(out.stdout).unwrap();
    for task in lra::task::TASKS {
        assert!(
            text.contains(task.name()) && text.contains(task.summary()),
            "{} missing:\n{text}",
            task.name()
        );
    }
    assert!(
        text.contains("document pairs, dual encoder; 2-class classification; metrics: accuracy (selects the best checkpoint)"),
        "{text}"
    );
}

#[test]
fn list_as_json_has_every_mixer_task_and_preset_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let out = lra(&["list", "--format", "json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names = |key: &str| -> Vec<String> {
        listing[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mixers: Vec<String> = lra_model::MixerKind::ALL
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(names("mixers"), mixers);
    let tasks: Vec<String> = lra::task::TASKS
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    assert_eq!(names("tasks"), tasks);
    assert_eq!(names("presets"), lra::config::list_presets());
    // The pretraining presets, each with the first words of its file's comment.
    assert_eq!(
        names("pretraining_presets"),
        lra::cmd::pretrain::settings::list_presets()
    );
    let mra = listing["pretraining_presets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mra-roberta-base")
        .expect("the MRA preset is listed");
    assert!(
        mra["description"]
            .as_str()
            .unwrap()
            .starts_with("MRA step 1"),
        "{mra}"
    );
    let retrieval = &listing["tasks"][2];
    assert_eq!(retrieval["input"], "document pairs, dual encoder");
    assert_eq!(retrieval["selection_metric"], "accuracy");
    // Every generated task has a tiny preset, listed with its task and what it is for.
    let presets = listing["presets"].as_array().unwrap();
    for task in ["listops", "pathfinder", "pathx", "path256"] {
        let tiny = presets
            .iter()
            .find(|p| p["name"] == format!("tiny/{task}"))
            .unwrap_or_else(|| panic!("no tiny/{task} in {presets:?}"));
        assert_eq!(tiny["task"], task);
        let description = tiny["description"].as_str().unwrap();
        assert!(description.contains("2 CPU cores"), "{tiny}");
    }
    let local = &listing["mixers"][1];
    assert_eq!(local["settings"]["block_size"], 50, "{local}");
}
