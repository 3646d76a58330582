//! GLUE readers on the committed fixtures (`tests/fixtures/glue_data/` and `glue-hf/`, written by
//! `scripts/make_glue_fixtures.py` in each official layout), malformed files written here, the
//! submission writer, and a seeded mutation test: bad input gives errors naming file and line,
//! never a panic.

use std::fs;
use std::path::{Path, PathBuf};

use lra_data::glue::{
    self, GlueExample, GlueLayout, GlueSplit, GlueTask, Prediction, Target, parquet,
    write_submission,
};
use lra_data::{DataError, OnProblem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn fixtures() -> PathBuf {
    lra_data::fixtures::committed_fixtures()
}

fn read(root: &Path, task: GlueTask, split: GlueSplit) -> glue::GlueSplitData {
    glue::read_split(root, task, split, &mut OnProblem::Fail)
        .unwrap_or_else(|error| panic!("{task} {split}: {error}"))
}

fn texts(example: &GlueExample) -> (&str, Option<&str>) {
    (&example.text_a, example.text_b.as_deref())
}

/// Writes `text` as `relative` under a fresh folder and returns the folder.
fn write_tree(relative: &str, text: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    root
}

#[test]
fn both_layouts_read_every_split_to_the_same_examples() {
    for task in GlueTask::ALL {
        for split in task.splits() {
            let tsv = read(&fixtures(), task, split.split);
            let hf = read(&fixtures().join("glue-hf"), task, split.split);
            assert_eq!(tsv.layout, GlueLayout::GlueData, "{}", tsv.path.display());
            assert!(tsv.path.ends_with(split.tsv_file));
            assert_eq!(hf.layout, GlueLayout::HuggingFace, "{}", hf.path.display());
            assert!(!tsv.examples.is_empty());
            assert_eq!(tsv.examples, hf.examples, "{task} {}", split.split);
            assert_eq!(tsv.skipped_short_lines, 0);
            for example in &tsv.examples {
                assert_eq!(example.target.is_none(), split.split.is_test());
                assert_eq!(
                    example.text_b.is_some(),
                    task.spec().hf_text_columns.1.is_some()
                );
            }
        }
    }
}

#[test]
fn labels_land_on_the_canonical_ids() {
    let class = |task, split, i: usize| read(&fixtures(), task, split).examples[i].target;
    // CoLA train has no header: its first line is the first example.
    let cola = read(&fixtures(), GlueTask::Cola, GlueSplit::Train);
    assert_eq!(cola.examples.len(), 3);
    assert!(cola.examples[0].text_a.starts_with("Our friends won't"));
    assert_eq!(
        cola.examples.iter().map(|e| e.target).collect::<Vec<_>>(),
        [1, 0, 1].map(|c| Some(Target::Class(c)))
    );
    // MNLI: neutral, entailment, entailment, contradiction in [entailment, neutral, contradiction].
    let mnli = read(&fixtures(), GlueTask::Mnli, GlueSplit::Train);
    let targets: Vec<_> = mnli.examples.iter().map(|e| e.target).collect();
    assert_eq!(targets, [1, 0, 0, 2].map(|c| Some(Target::Class(c))));
    assert_eq!(
        GlueTask::Mnli.labels(),
        ["entailment", "neutral", "contradiction"]
    );
    // WNLI's TSV 1 and HF id 1 both mean entailment (the fixture's last example is 0).
    assert_eq!(
        class(GlueTask::Wnli, GlueSplit::Train, 3),
        Some(Target::Class(0))
    );
    assert_eq!(
        class(GlueTask::Qnli, GlueSplit::Train, 2),
        Some(Target::Class(0))
    );
    assert_eq!(
        class(GlueTask::Stsb, GlueSplit::Train, 1),
        Some(Target::Score(3.8))
    );
    // Test indices come from the file (QQP: `id`), for the submission files.
    let qqp = read(&fixtures(), GlueTask::Qqp, GlueSplit::Train);
    assert_eq!(qqp.examples[1].index, 402555);
    // SST-2 keeps its sentences' trailing space.
    let sst2 = read(&fixtures(), GlueTask::Sst2, GlueSplit::Train);
    assert_eq!(
        texts(&sst2.examples[0]),
        ("hide new secretions from the parental units ", None)
    );
}

#[test]
fn a_stray_quote_does_not_swallow_the_next_line() {
    let dev = read(&fixtures(), GlueTask::Mnli, GlueSplit::ValidationMatched);
    assert_eq!(dev.examples.len(), 2);
    assert!(dev.examples[1].text_a.starts_with("\"This site"));
    assert_eq!(dev.examples[1].target, Some(Target::Class(2)));

    let header = fs::read_to_string(fixtures().join("glue_data/MNLI/dev_matched.tsv")).unwrap();
    let header = header.lines().next().unwrap();
    let line = |i: usize, a: &str, label: &str| {
        let mut fields = vec![i.to_string(); 8];
        fields.extend([a.into(), "b".into(), label.into()]);
        fields.extend(std::iter::repeat_n(label.to_owned(), 5));
        fields.join("\t")
    };
    let text = format!(
        "{header}\n{}\n{}\n{}\n",
        line(0, "\"opened, never closed", "neutral"),
        line(1, "plain \"quoted\" text", "entailment"),
        line(2, "x\"", "contradiction")
    );
    let root = write_tree("glue_data/MNLI/dev_mismatched.tsv", &text);
    let data = read(root.path(), GlueTask::Mnli, GlueSplit::ValidationMismatched);
    let read_texts: Vec<&str> = data.examples.iter().map(|e| e.text_a.as_str()).collect();
    assert_eq!(
        read_texts,
        ["\"opened, never closed", "plain \"quoted\" text", "x\""]
    );
}

#[test]
fn short_qqp_lines_are_skipped_and_counted_elsewhere_rejected() {
    let text = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n\
                1\t1\t2\tWhy?\tHow?\t0\n\
                2\t3\t4\tbroken question\n\
                \n\
                3\t5\t6\tWhat?\tWho?\t1\n";
    let root = write_tree("glue/QQP/dev.tsv", text);
    let data = read(root.path(), GlueTask::Qqp, GlueSplit::Validation);
    assert_eq!(data.skipped_short_lines, 2);
    let ids: Vec<u32> = data.examples.iter().map(|e| e.index).collect();
    assert_eq!(ids, [1, 3]);

    let root = write_tree(
        "RTE/train.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\tonly one\n",
    );
    let error = glue::read_split(
        root.path(),
        GlueTask::Rte,
        GlueSplit::Train,
        &mut OnProblem::Fail,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("RTE/train.tsv:2:"), "{error}");
    assert!(
        error.contains("index, sentence1, sentence2, label"),
        "{error}"
    );
}

#[test]
fn bad_records_name_file_line_and_expectation() {
    // CoLA test without its header, a CoLA train label that is no class, a bad STS-B score.
    let cases = [
        (
            GlueTask::Cola,
            GlueSplit::Test,
            "CoLA/test.tsv",
            "0\tFred ate.\n",
            "CoLA/test.tsv:1: expected a header line starting with `index`",
        ),
        (
            GlueTask::Cola,
            GlueSplit::Train,
            "CoLA/train.tsv",
            "gj04\t1\t\tFine.\ngj04\tyes\t\tBad.\n",
            "CoLA/train.tsv:2: label `yes` is not one of 0, 1",
        ),
        (
            GlueTask::Stsb,
            GlueSplit::Validation,
            "STS-B/dev.tsv",
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n\
             0\tg\tf\ty\to\ts\ts\tA.\tB.\tfive\n",
            "STS-B/dev.tsv:2: score `five` is not a number in [0, 5]",
        ),
    ];
    for (task, split, file, text, expected) in cases {
        let root = write_tree(&format!("glue_data/{file}"), text);
        let error = glue::read_split(root.path(), task, split, &mut OnProblem::Fail)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }

    // Collecting goes on past every bad line and keeps the good ones.
    let text = "index\tquestion\tsentence\tlabel\n0\tq\ts\tentailment\n1\tq\ts\tmaybe\nx\tq\ts\tentailment\n3\tq\ts\tnot_entailment\n";
    let root = write_tree("QNLI/dev.tsv", text);
    let mut found = Vec::new();
    let data = glue::read_split(
        root.path(),
        GlueTask::Qnli,
        GlueSplit::Validation,
        &mut OnProblem::Collect(&mut found),
    )
    .unwrap();
    assert_eq!(data.examples.len(), 2);
    let lines: Vec<usize> = found
        .iter()
        .map(|problem| match problem {
            DataError::Parse { line, .. } => *line,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(lines, [3, 4]);
}

#[test]
fn finds_either_layout_under_the_usual_folders_or_says_what_is_missing() {
    let root = write_tree("nyu-mll/glue/rte/test-00000-of-00001.parquet", "");
    let found = glue::locate(root.path(), GlueTask::Rte, GlueSplit::Test).unwrap();
    assert_eq!(found.layout, GlueLayout::HuggingFace);
    assert!(
        found
            .path
            .ends_with("nyu-mll/glue/rte/test-00000-of-00001.parquet")
    );
    let root = write_tree("glue_data/diagnostic/diagnostic.tsv", "");
    let found = glue::locate(root.path(), GlueTask::Ax, GlueSplit::Test).unwrap();
    assert_eq!(found.layout, GlueLayout::GlueData);
    assert!(found.path.ends_with("glue_data/diagnostic/diagnostic.tsv"));

    let empty = tempfile::tempdir().unwrap();
    let error = glue::read_split(
        empty.path(),
        GlueTask::Mnli,
        GlueSplit::ValidationMismatched,
        &mut OnProblem::Fail,
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "MNLI/dev_mismatched.tsv",
        "mnli/validation_mismatched-00000-of-00001.parquet",
        "glue_data",
        "download_glue_data.py",
        "nyu-mll/glue",
    ] {
        assert!(error.contains(expected), "{expected} not in: {error}");
    }
    let error = glue::locate(empty.path(), GlueTask::Cola, GlueSplit::ValidationMatched)
        .unwrap_err()
        .to_string();
    assert!(error.contains("train, validation, test"), "{error}");
}

#[test]
fn parquet_files_of_another_task_or_format_are_rejected() {
    let hf = fixtures().join("glue-hf");
    let cola = hf.join("cola/train-00000-of-00001.parquet");
    let error = parquet::read_parquet(
        &cola,
        GlueTask::Mnli.spec(),
        GlueSplit::Train,
        &mut OnProblem::Fail,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("no column `premise`") && error.contains("sentence, label, idx"),
        "{error}"
    );
    // WNLI and RTE share columns but not the order of their ClassLabel names.
    let wnli = hf.join("wnli/train-00000-of-00001.parquet");
    let error = parquet::read_parquet(
        &wnli,
        GlueTask::Rte.spec(),
        GlueSplit::Train,
        &mut OnProblem::Fail,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("ClassLabel names"), "{error}");
    // A test split read as a labelled one: its -1 labels are errors naming the row.
    let test = hf.join("qnli/test-00000-of-00001.parquet");
    let error = parquet::read_parquet(
        &test,
        GlueTask::Qnli.spec(),
        GlueSplit::Train,
        &mut OnProblem::Fail,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("record 0: label -1"), "{error}");

    let root = write_tree("sst2/train-00000-of-00001.parquet", "PAR1 not really");
    let error = glue::read_split(
        root.path(),
        GlueTask::Sst2,
        GlueSplit::Train,
        &mut OnProblem::Fail,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("sst2/train-00000-of-00001.parquet: not a readable parquet file"),
        "{error}"
    );
}

#[test]
fn registry_lists_names_labels_splits_and_submission_files() {
    let names: Vec<&str> = GlueTask::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        [
            "cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax"
        ]
    );
    let files: Vec<&str> = GlueTask::ALL
        .iter()
        .flat_map(|t| t.submission_files())
        .collect();
    assert_eq!(
        files,
        [
            "CoLA.tsv",
            "SST-2.tsv",
            "MRPC.tsv",
            "STS-B.tsv",
            "QQP.tsv",
            "MNLI-m.tsv",
            "MNLI-mm.tsv",
            "QNLI.tsv",
            "RTE.tsv",
            "WNLI.tsv",
            "AX.tsv"
        ]
    );
    assert_eq!(GlueTask::Rte.labels(), ["entailment", "not_entailment"]);
    assert_eq!(GlueTask::Wnli.labels(), ["0", "1"]);
    assert!(GlueTask::Stsb.is_regression() && GlueTask::Stsb.labels().is_empty());
    let mnli: Vec<&str> = GlueTask::Mnli
        .splits()
        .iter()
        .map(|s| s.split.name())
        .collect();
    assert_eq!(
        mnli,
        [
            "train",
            "validation_matched",
            "validation_mismatched",
            "test_matched",
            "test_mismatched"
        ]
    );
    let ax: Vec<GlueSplit> = GlueTask::Ax.splits().iter().map(|s| s.split).collect();
    assert_eq!(ax, [GlueSplit::Test]);
}

#[test]
fn submissions_use_the_server_labels_and_replace_files_whole() {
    let dir = tempfile::tempdir().unwrap();
    let class = |index, class| Prediction {
        index,
        value: Target::Class(class),
    };
    let path = write_submission(
        dir.path(),
        GlueTask::Mnli,
        GlueSplit::TestMismatched,
        &[class(0, 2), class(1, 0)],
    )
    .unwrap();
    assert_eq!(path, dir.path().join("MNLI-mm.tsv"));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "index\tprediction\n0\tcontradiction\n1\tentailment\n"
    );
    let scores = [1.23456, 7.0, -0.5].map(Target::Score);
    let rows: Vec<Prediction> = scores
        .iter()
        .enumerate()
        .map(|(i, &value)| Prediction {
            index: i as u32,
            value,
        })
        .collect();
    let path = write_submission(dir.path(), GlueTask::Stsb, GlueSplit::Test, &rows).unwrap();
    assert_eq!(
        fs::read_to_string(path).unwrap(),
        "index\tprediction\n0\t1.235\n1\t5.000\n2\t0.000\n"
    );
    // A second write replaces the file; no temporary file stays behind.
    write_submission(
        dir.path(),
        GlueTask::Mnli,
        GlueSplit::TestMismatched,
        &[class(0, 1)],
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("MNLI-mm.tsv")).unwrap(),
        "index\tprediction\n0\tneutral\n"
    );
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["MNLI-mm.tsv", "STS-B.tsv"]);

    for (task, split, predictions, expected) in [
        (
            GlueTask::Cola,
            GlueSplit::Test,
            vec![class(0, 2)],
            "class 2 is not a cola class id (0..1)",
        ),
        (
            GlueTask::Cola,
            GlueSplit::Test,
            vec![Prediction {
                index: 0,
                value: Target::Score(1.0),
            }],
            "not a cola prediction",
        ),
        (
            GlueTask::Stsb,
            GlueSplit::Test,
            vec![Prediction {
                index: 0,
                value: Target::Score(f32::NAN),
            }],
            "finite score",
        ),
        (
            GlueTask::Cola,
            GlueSplit::Validation,
            vec![],
            "not a test split",
        ),
    ] {
        let error = write_submission(dir.path(), task, split, &predictions)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
}

/// Truncates, cuts, duplicates tabs, drops bytes and splices quotes and newlines into real GLUE
/// lines: the reader must return examples or errors naming a line of the file, never panic.
#[test]
fn mutated_tsv_lines_give_errors_not_panics() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let sources = [
        (GlueTask::Mnli, GlueSplit::ValidationMatched),
        (GlueTask::Qqp, GlueSplit::Train),
        (GlueTask::Stsb, GlueSplit::Train),
        (GlueTask::Cola, GlueSplit::Train),
        (GlueTask::Mrpc, GlueSplit::Test),
    ];
    let mut errors = 0;
    for round in 0..200 {
        let (task, split) = sources[round % sources.len()];
        let file = task.split(split).unwrap().tsv_file;
        let mut bytes = fs::read(fixtures().join("glue_data").join(file)).unwrap();
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut bytes, &mut rng);
        }
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &bytes).unwrap();
        let lines = bytes.split(|&b| b == b'\n').count();
        let mut found = Vec::new();
        glue::read_split(
            root.path(),
            task,
            split,
            &mut OnProblem::Collect(&mut found),
        )
        .unwrap();
        for problem in &found {
            match problem {
                DataError::Parse { path: p, line, .. } => {
                    assert!(p == &path && (1..=lines).contains(line), "{problem}");
                }
                other => panic!("unexpected problem kind: {other}"),
            }
        }
        errors += found.len();
        let fail_fast = glue::read_split(root.path(), task, split, &mut OnProblem::Fail);
        assert_eq!(fail_fast.is_err(), !found.is_empty());
    }
    assert!(
        errors > 50,
        "the mutations should break many lines, broke {errors}"
    );
}

fn mutate(bytes: &mut Vec<u8>, rng: &mut ChaCha8Rng) {
    if bytes.is_empty() {
        return;
    }
    let at = rng.random_range(0..bytes.len());
    match rng.random_range(0..6) {
        0 => bytes.truncate(at),
        1 => {
            let end = (at + rng.random_range(1..40)).min(bytes.len());
            bytes.drain(at..end);
        }
        2 => bytes.insert(at, b'\t'),
        3 => bytes.insert(at, b'"'),
        4 => bytes.insert(at, b'\n'),
        _ => bytes[at] = rng.random(),
    }
}

/// Corrupted bytes of a real parquet file: errors naming the file, never a panic.
#[test]
fn corrupted_parquet_files_give_errors_not_panics() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let relative = "mnli/validation_matched-00000-of-00001.parquet";
    let original = fs::read(fixtures().join("glue-hf").join(relative)).unwrap();
    let mut failures = 0;
    for _ in 0..300 {
        let mut bytes = original.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bytes.len());
            bytes[at] = rng.random();
        }
        if rng.random_bool(0.2) {
            bytes.truncate(rng.random_range(0..bytes.len()));
        }
        let root = write_tree(relative, "");
        let path = root.path().join(relative);
        fs::write(&path, &bytes).unwrap();
        let mut found = Vec::new();
        let split = GlueSplit::ValidationMatched;
        match glue::read_split(
            root.path(),
            GlueTask::Mnli,
            split,
            &mut OnProblem::Collect(&mut found),
        ) {
            Ok(_) => failures += usize::from(!found.is_empty()),
            Err(error) => {
                failures += 1;
                assert!(
                    error.to_string().contains(&path.display().to_string()),
                    "{error}"
                );
            }
        }
    }
    assert!(
        failures > 100,
        "most corruptions should be caught, caught {failures}"
    );
}
