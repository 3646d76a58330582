//! `lra pretrain` on the tiny BERT fixture: a corpus with learnable structure drives the held-out
//! MLM loss down (and, packed as segment pairs, the sentence-order accuracy up), the run is a
//! function of its seed, a run stopped (at a step or by SIGTERM) and resumed ends exactly as an
//! uninterrupted one, the exported checkpoint fine-tunes with `lra run --init`, and corpus errors
//! name the file and line.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lra::checkpoint::find_with_state;
use lra::cmd::pretrain::{Ended, PretrainArgs, SettingFlags, execute};
use lra::cmd::run::RunArgs;
use lra::interrupt::EXIT_INTERRUPTED;
use lra::masking::{Masking, step_rng, words};
use lra::train::Outcome;
use lra_data::fixtures;
use lra_data::tokenizer::PretrainedTokenizer;
use lra_model::MixerKind;
use lra_model::pretrained::{Checkpoint, PositionExtension};

mod common;
use common::{lra, one_training_at_a_time, stderr, tiny_bert, tiny_roberta};

/// Documents of the fixture vocabulary where every "on the" is followed by "mat" and every
/// "the cat" by "sat": an MLM can learn to fill them in.
fn write_corpus(dir: &Path) -> PathBuf {
    let subjects = ["the cat sat", "a dog ran", "the dog sat", "a cat ran"];
    let mut text = String::new();
    for d in 0..48 {
        for s in 0..3 {
            let subject = subjects[(d + s) % subjects.len()];
            text.push_str(&format!("{subject} on the mat . hello world . "));
        }
        text.push_str("\n\n");
    }
    let path = dir.join("corpus.txt");
    fs::write(&path, text).unwrap();
    path
}

/// A short run of the tiny BERT on `corpus`: sequences of 32 tokens, batches of 8, evaluated
/// every 20 steps.
fn args(corpus: &Path, out: &Path, steps: usize) -> PretrainArgs {
    PretrainArgs {
        settings: SettingFlags {
            init: Some(tiny_bert()),
            corpus: Some(vec![corpus.to_path_buf()]),
            max_len: Some(32),
            batch_size: Some(8),
            steps: Some(steps),
            lr: Some(2e-3),
            warmup_steps: Some(5),
            held_out: Some(0.1),
            eval_every: Some(20),
            seed: Some(3),
            ..SettingFlags::default()
        },
        out: out.to_path_buf(),
        device: "cpu".into(),
        quiet: true,
        ..PretrainArgs::default()
    }
}

/// `--resume dir` with nothing else changed.
fn resume(dir: &Path, out: &Path) -> PretrainArgs {
    PretrainArgs {
        resume: Some(dir.to_path_buf()),
        out: out.to_path_buf(),
        device: "cpu".into(),
        quiet: true,
        ..PretrainArgs::default()
    }
}

/// Asserts that two runs of the same settings left the same evaluation history and exported
/// config byte for byte, and the same exported weights: the same tensors (names, shapes, offsets)
/// and the same data bytes. Only the order of the header's entries may differ (burn-store writes
/// its `__metadata__` from a hash map).
fn assert_same_outputs(run: &Path, reference: &Path) {
    let read = |dir: &Path, file: &str| {
        fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
    };
    let differs = |file: &str| {
        format!(
            "{file} differs: {} vs {}",
            run.display(),
            reference.display()
        )
    };
    for file in ["metrics.csv", "checkpoint/config.json"] {
        assert!(
            read(run, file) == read(reference, file),
            "{}",
            differs(file)
        );
    }
    let weights = "checkpoint/model.safetensors";
    let (ours, theirs) = (read(run, weights), read(reference, weights));
    let (ours, theirs) = (safetensors_parts(&ours), safetensors_parts(&theirs));
    assert_eq!(ours.0, theirs.0, "{}", differs(weights));
    assert!(ours.1 == theirs.1, "{}", differs(weights));
}

/// A safetensors file's header (as JSON) and its data bytes.
fn safetensors_parts(bytes: &[u8]) -> (serde_json::Value, &[u8]) {
    let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + length]).unwrap();
    (header, &bytes[8 + length..])
}

/// `lra pretrain` arguments of a run of the tiny BERT on `corpus` (seed 5, evaluated every 10
/// steps), its folder under `out`.
fn binary_run(corpus: &Path, out: &Path, steps: usize, checkpoint_every: usize) -> Vec<String> {
    let mut line: Vec<String> = ["pretrain", "--init"].map(String::from).to_vec();
    line.push(tiny_bert().display().to_string());
    line.extend(["--corpus".into(), corpus.display().to_string()]);
    for (flag, value) in [
        ("--max-len", "32".to_string()),
        ("--batch-size", "8".into()),
        ("--steps", steps.to_string()),
        ("--lr", "2e-3".into()),
        ("--eval-every", "10".into()),
        ("--checkpoint-every", checkpoint_every.to_string()),
        ("--seed", "5".into()),
    ] {
        line.extend([flag.to_string(), value]);
    }
    line.extend(["--out".into(), out.display().to_string()]);
    line
}

/// Runs the binary with `line` and `--quiet` to the end, which must succeed.
fn run_quietly(line: &[String], cwd: &Path) {
    let mut quiet = line.to_vec();
    quiet.push("--quiet".into());
    let done = lra(&as_strs(&quiet), cwd);
    assert!(done.status.success(), "{}", stderr(&done));
}

fn as_strs(line: &[String]) -> Vec<&str> {
    line.iter().map(String::as_str).collect()
}

/// The one run folder under `out`.
fn only_run(out: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

#[test]
fn pretraining_lowers_the_held_out_mlm_loss_and_exports_a_checkpoint_that_fine_tunes() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let run = execute(&args(&corpus, &root.path().join("pretrain"), 100)).unwrap();
    let checkpoint = run.checkpoint().expect("the run finished").to_path_buf();
    let (first, last) = (&run.rows[0], run.rows.last().unwrap());
    assert_eq!(
        run.rows.iter().map(|r| r.step).collect::<Vec<_>>(),
        [20, 40, 60, 80, 100]
    );
    assert!(last.val_loss < first.val_loss - 0.3, "{:?}", run.rows);
    assert!(last.val_accuracy > first.val_accuracy, "{:?}", run.rows);
    assert!((last.val_perplexity - last.val_loss.exp()).abs() < 1e-9);
    let metrics = fs::read_to_string(run.dir.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with(
        "step,lr,train_loss,val_loss,val_accuracy,val_perplexity,val_sop_loss,val_sop_accuracy\n"
    ));
    assert!(
        run.rows.iter().all(|r| r.val_sop_accuracy.is_none()),
        "no SOP asked for"
    );

    // The export is a checkpoint folder: `lra run --init` fine-tunes it.
    let glue = fixtures::write_keyword_sst2(root.path(), 40, 8, 4);
    let run_args = RunArgs {
        task: Some("sst2".into()),
        init: Some(checkpoint),
        data: Some(glue),
        steps: Some(2),
        overrides: vec!["task.max_len=32".into(), "train.batch_size=8".into()],
        out: root.path().join("runs"),
        device: "cpu".into(),
        quiet: true,
        ..RunArgs::default()
    };
    let (_, outcome) = lra::cmd::run::execute(&run_args).unwrap();
    assert!(matches!(outcome, Outcome::Finished(_)));
}

/// Documents of three lines (sentences) in a fixed order — a subject's line, then "hello world
/// .", then "it ' s paris ." — whose order a model can learn: a pair is in order exactly when
/// its first segment begins with the subject line.
fn write_ordered_corpus(dir: &Path) -> PathBuf {
    let subjects = ["the cat sat", "a dog ran", "the dog sat", "a cat ran"];
    let mut text = String::new();
    for d in 0..200 {
        let subject = subjects[d % subjects.len()];
        text.push_str(&format!(
            "{subject} on the mat .\nhello world .\nit ' s paris .\n\n"
        ));
    }
    let path = dir.join("ordered.txt");
    fs::write(&path, text).unwrap();
    path
}

/// [`args`] packing segment pairs with sentence-order prediction, a fifth of the documents
/// held out.
fn sop_args(corpus: &Path, out: &Path, steps: usize) -> PretrainArgs {
    let plain = args(corpus, out, steps);
    PretrainArgs {
        settings: SettingFlags {
            packing: Some("segment-pairs".into()),
            sop: Some(true),
            held_out: Some(0.2),
            ..plain.settings
        },
        ..plain
    }
}

#[test]
fn sentence_order_prediction_learns_a_learnable_order_and_the_export_fine_tunes() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_ordered_corpus(root.path());
    let run = execute(&sop_args(&corpus, &root.path().join("pretrain"), 100)).unwrap();
    let (first, last) = (&run.rows[0], run.rows.last().unwrap());
    let accuracy = |row: &lra::cmd::pretrain::PretrainRow| row.val_sop_accuracy.unwrap();
    assert!(accuracy(last) >= 0.9, "{:?}", run.rows);
    assert!(
        last.val_sop_loss.unwrap() < first.val_sop_loss.unwrap(),
        "{:?}",
        run.rows
    );
    assert!(last.val_loss < first.val_loss - 0.3, "{:?}", run.rows);
    let settings = fs::read_to_string(run.dir.join("pretrain.toml")).unwrap();
    for line in ["packing = \"segment-pairs\"", "sop = true"] {
        assert!(settings.lines().any(|l| l == line), "{line}: {settings}");
    }
    // The tiny BERT is a BertForPreTraining: its next-sentence head starts the SOP head.
    let report = fs::read_to_string(run.dir.join("import_report.txt")).unwrap();
    assert!(
        report.contains("cls.seq_relationship.weight -> sentence_order.classifier.weight"),
        "{report}"
    );

    // The export fine-tunes, its classifier starting from the sentence-order pooler.
    let glue = fixtures::write_keyword_sst2(root.path(), 40, 8, 4);
    let run_args = RunArgs {
        task: Some("sst2".into()),
        init: Some(run.checkpoint().expect("finished").to_path_buf()),
        data: Some(glue),
        steps: Some(2),
        overrides: vec!["task.max_len=32".into(), "train.batch_size=8".into()],
        out: root.path().join("runs"),
        device: "cpu".into(),
        quiet: true,
        ..RunArgs::default()
    };
    let (fine_tuned, outcome) = lra::cmd::run::execute(&run_args).unwrap();
    assert!(matches!(outcome, Outcome::Finished(_)));
    let report = fs::read_to_string(fine_tuned.path.join("import_report.txt")).unwrap();
    assert!(
        report.contains("bert.pooler.dense.weight -> head_in.weight"),
        "{report}"
    );
}

/// `base` evaluated every 10 steps, checkpointed every `checkpoint_every` and stopped after
/// `stop_at_step` (`None`: run to the end), for the resume tests.
fn stoppable(
    base: PretrainArgs,
    checkpoint_every: usize,
    stop_at_step: Option<usize>,
) -> PretrainArgs {
    PretrainArgs {
        settings: SettingFlags {
            eval_every: Some(10),
            checkpoint_every: Some(checkpoint_every),
            ..base.settings
        },
        stop_at_step,
        ..base
    }
}

#[test]
fn a_sop_run_stopped_and_resumed_ends_exactly_as_an_uninterrupted_one() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_ordered_corpus(root.path());
    let settings =
        |out: &str, stop_at| stoppable(sop_args(&corpus, &root.path().join(out), 30), 15, stop_at);
    let whole = execute(&settings("whole", None)).unwrap();
    assert!(whole.rows.iter().all(|r| r.val_sop_accuracy.is_some()));
    let stopped = execute(&settings("stopped", Some(17))).unwrap();
    assert_eq!(stopped.ended, Ended::Stopped { step: 17 });
    let resumed = execute(&resume(&stopped.dir, &root.path().join("stopped"))).unwrap();
    assert_eq!(resumed.started_at, 17);
    assert_eq!(resumed.rows, whole.rows);
    assert_same_outputs(&resumed.dir, &whole.dir);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let metrics = |out: &str| {
        let run = execute(&args(&corpus, &root.path().join(out), 20)).unwrap();
        run.rows
    };
    assert_eq!(metrics("a"), metrics("b"));
}

#[test]
fn corpus_errors_name_file_and_line() {
    let root = tempfile::tempdir().unwrap();
    let jsonl = root.path().join("corpus.jsonl");
    fs::write(
        &jsonl,
        "{\"text\": \"the cat\"}\n{\"title\": \"no text\"}\n",
    )
    .unwrap();
    let error = format!("{:#}", execute(&args(&jsonl, root.path(), 1)).unwrap_err());
    assert!(
        error.contains("corpus.jsonl:2") && error.contains("no `text` field"),
        "{error}"
    );
    let one = root.path().join("one.txt");
    fs::write(&one, "just one document\n").unwrap();
    let error = format!("{:#}", execute(&args(&one, root.path(), 1)).unwrap_err());
    assert!(error.contains("at least 2"), "{error}");
    let blank = root.path().join("blank.jsonl");
    fs::write(&blank, "{\"text\": \"the cat\"}\n{\"text\": \" \"}\n").unwrap();
    let error = format!("{:#}", execute(&args(&blank, root.path(), 1)).unwrap_err());
    assert!(error.contains("held-out documents"), "{error}");
}

#[test]
fn a_run_stopped_and_resumed_ends_exactly_as_an_uninterrupted_one() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let settings =
        |out: &str, stop_at| stoppable(args(&corpus, &root.path().join(out), 50), 20, stop_at);
    let whole = execute(&settings("whole", None)).unwrap();
    assert!(matches!(whole.ended, Ended::Finished { .. }));
    assert!(
        !whole.dir.join("training_state").exists(),
        "removed once finished"
    );

    let stopped = execute(&settings("stopped", Some(25))).unwrap();
    assert_eq!(stopped.ended, Ended::Stopped { step: 25 });
    assert_eq!(stopped.rows, whole.rows[..2]);
    assert!(stopped.dir.join("training_state/state.json").is_file());
    assert!(!stopped.dir.join("checkpoint").exists());
    let out = root.path().join("stopped");
    let changed = PretrainArgs {
        settings: SettingFlags {
            lr: Some(1.0),
            ..SettingFlags::default()
        },
        ..resume(&stopped.dir, &out)
    };
    let error = format!("{:#}", execute(&changed).unwrap_err());
    assert!(error.contains("drop the setting flags"), "{error}");

    let resumed = execute(&resume(&stopped.dir, &out)).unwrap();
    assert_eq!(resumed.started_at, 25, "continued from the saved state");
    assert!(matches!(resumed.ended, Ended::Finished { .. }));
    assert_eq!(resumed.rows, whole.rows);
    assert_same_outputs(&resumed.dir, &whole.dir);
    let error = format!("{:#}", execute(&resume(&stopped.dir, &out)).unwrap_err());
    assert!(error.contains("finished"), "{error}");
}

#[test]
fn sigterm_saves_the_state_exits_75_and_the_resumed_run_equals_an_uninterrupted_one() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let command = |out: &Path| binary_run(&corpus, out, 200, 1000);
    let whole_out = root.path().join("whole");
    run_quietly(&command(&whole_out), root.path());

    // Signalled as soon as the first evaluation is reported, long before step 200.
    let out = root.path().join("signalled");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lra"))
        .args(command(&out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.any(|line| line.unwrap().starts_with("step ")));
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let terminated = child.wait_with_output().unwrap();
    assert_eq!(terminated.status.code(), Some(EXIT_INTERRUPTED));
    let said = String::from_utf8_lossy(&terminated.stdout).into_owned();
    let step: usize = said
        .split("training state of step ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("no step in {said:?}"));
    assert!((10..200).contains(&step), "{said}");
    let run = only_run(&out);
    assert!(run.join("training_state/state.json").is_file());
    assert!(!run.join("checkpoint").exists());

    let resumed = lra(
        &["pretrain", "--resume", &run.display().to_string()],
        root.path(),
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let resumed_from = format!("resumed from the training state of step {step}\n");
    assert!(
        stderr(&resumed).starts_with(&resumed_from),
        "{}",
        stderr(&resumed)
    );
    assert_same_outputs(&run, &only_run(&whole_out));
}

/// The position table `[rows, width]` of the masked LM built from `checkpoint` for `max_len`
/// tokens, the table lengthened `how`.
fn position_table(
    checkpoint: &Path,
    max_len: usize,
    how: Option<PositionExtension>,
) -> (Vec<f32>, usize) {
    let device = burn::tensor::Device::flex();
    device.seed(0);
    let (model, _) = Checkpoint::open(checkpoint)
        .unwrap()
        .extending_positions(how)
        .masked_lm(MixerKind::Softmax.default_config(), max_len, false, &device)
        .unwrap();
    let table = model
        .encoder()
        .position_table()
        .expect("BERT has positions");
    let width = table.dims()[1];
    (table.into_data().try_to_vec::<f32>().unwrap(), width)
}

#[test]
fn a_lengthened_position_table_tiles_or_interpolates_the_checkpoints_rows() {
    // Both fixtures have 64 usable rows (RoBERTa's first 2 of 66 are the padding id's).
    for checkpoint in [tiny_bert(), tiny_roberta()] {
        let (learned, width) = position_table(&checkpoint, 64, None);
        let row = |i: usize| &learned[i * width..(i + 1) * width];
        let (tiled, _) = position_table(&checkpoint, 128, Some(PositionExtension::Tile));
        for i in 0..128 {
            assert_eq!(&tiled[i * width..(i + 1) * width], row(i % 64), "row {i}");
        }
        let (stretched, _) = position_table(&checkpoint, 128, Some(PositionExtension::Interpolate));
        for i in 0..128 {
            // Position i of 128 sits at i · 63/127 in the learned table.
            let x = i as f64 * 63.0 / 127.0;
            let (below, t) = (x.floor() as usize, (x - x.floor()) as f32);
            let above = (below + 1).min(63);
            for k in 0..width {
                let expected = row(below)[k] * (1.0 - t) + row(above)[k] * t;
                let got = stretched[i * width + k];
                assert!(
                    (got - expected).abs() < 1e-6,
                    "row {i}[{k}]: {got} vs {expected}"
                );
            }
        }
        assert_eq!(&stretched[127 * width..], row(63), "the last row is kept");
        // Shorter than the table, the option changes nothing.
        assert_eq!(
            position_table(&checkpoint, 40, Some(PositionExtension::Tile)).0,
            learned[..40 * width]
        );
    }
}

#[test]
fn pretraining_at_twice_the_position_table_exports_a_checkpoint_that_reimports() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let long = |extend: Option<&str>| PretrainArgs {
        settings: SettingFlags {
            max_len: Some(128),
            extend_positions: extend.map(String::from),
            eval_every: Some(3),
            ..args(&corpus, &root.path().join("long"), 3).settings
        },
        ..args(&corpus, &root.path().join("long"), 3)
    };
    let error = format!("{:#}", execute(&long(None)).unwrap_err());
    for needed in ["max_position_embeddings", "128", "64", "--extend-positions"] {
        assert!(error.contains(needed), "{needed}: {error}");
    }

    let run = execute(&long(Some("interpolate"))).unwrap();
    let exported = run.checkpoint().expect("finished");
    let settings = fs::read_to_string(run.dir.join("pretrain.toml")).unwrap();
    assert!(
        settings.contains("extend_positions = \"interpolate\""),
        "{settings}"
    );
    let report = fs::read_to_string(run.dir.join("import_report.txt")).unwrap();
    assert!(
        report.contains("extended to 128 rows (interpolate)"),
        "{report}"
    );
    let reopened = Checkpoint::open(exported).unwrap();
    assert_eq!(reopened.config.max_position_embeddings, 128);
    assert_eq!(reopened.max_len(), 128);
    // The export loads at its full length without any extension.
    let (table, width) = position_table(exported, 128, None);
    assert_eq!(table.len(), 128 * width);
}

#[test]
fn whole_word_masking_masks_each_word_of_the_checkpoints_tokenizer_whole() {
    let tokenizer = PretrainedTokenizer::from_checkpoint(&tiny_bert()).unwrap();
    let starts = tokenizer.word_starts().unwrap();
    let special = tokenizer.special_tokens();
    let is_special = |id: u32| [special.cls, special.sep, special.pad, special.mask].contains(&id);
    let starts_word = |id: u32| starts[id as usize];
    // [CLS] text [SEP], the text rich in multi-piece words (un ##believ ##ably, play ##ing, …).
    let mut ids = vec![special.cls];
    let text = "unbelievably the cat sat playing on the mat . a dog ran unbelievably fast cats \
                played . hello world";
    ids.extend(tokenizer.text_ids(text).unwrap());
    ids.push(special.sep);
    let spans = words(&ids, is_special, starts_word);
    assert_eq!(spans[0], 1..4, "un ##believ ##ably is one word");
    let masking = Masking::default();
    let (mut trials, mut chosen_words, mut pieces, mut masked) = (0, 0, 0, 0);
    for step in 0..400 {
        let mut rng = step_rng(1, step);
        let out = masking.apply_whole_words(
            &ids,
            is_special,
            starts_word,
            tokenizer.vocab_size(),
            special.mask,
            &mut rng,
        );
        for word in &spans {
            let targets = out.targets[word.clone()].iter().flatten().count();
            assert!(
                targets == 0 || targets == word.len(),
                "{word:?} cut at step {step}"
            );
            trials += 1;
            if targets > 0 {
                chosen_words += 1;
                pieces += targets;
                masked += word
                    .clone()
                    .filter(|&i| out.inputs[i] == special.mask)
                    .count();
            }
        }
        assert!(out.targets[0].is_none() && out.targets[ids.len() - 1].is_none());
    }
    let within = |count: usize, n: usize, p: f64| {
        let mean = n as f64 * p;
        (count as f64 - mean).abs() <= 5.0 * (mean * (1.0 - p)).sqrt()
    };
    assert!(
        within(chosen_words, trials, 0.15),
        "{chosen_words} of {trials} words"
    );
    assert!(
        within(masked, pieces, 0.8),
        "{masked} of {pieces} pieces masked"
    );
}

#[test]
fn a_whole_word_masking_run_records_the_choice_and_finishes() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let run = execute(&PretrainArgs {
        settings: SettingFlags {
            whole_word_masking: Some(true),
            ..args(&corpus, root.path(), 20).settings
        },
        ..args(&corpus, root.path(), 20)
    })
    .unwrap();
    assert!(run.checkpoint().is_some());
    let settings = fs::read_to_string(run.dir.join("pretrain.toml")).unwrap();
    assert!(settings.contains("whole_word_masking = true"), "{settings}");
    // The masks, hence the held-out scores, are not those of piece masking.
    let pieces = execute(&args(&corpus, root.path(), 20)).unwrap();
    assert_ne!(run.rows, pieces.rows);
}

#[test]
fn a_preset_run_takes_the_presets_settings_under_the_flags() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let out = root.path().join("runs");
    let line = [
        "pretrain",
        "--preset",
        "cpu-small",
        "--init",
        &tiny_bert().display().to_string(),
        "--corpus",
        &corpus.display().to_string(),
        "--max-len",
        "32",
        "--steps",
        "4",
        "--quiet",
        "--out",
        &out.display().to_string(),
    ]
    .map(String::from);
    let done = lra(&as_strs(&line), root.path());
    assert!(done.status.success(), "{}", stderr(&done));
    let settings = fs::read_to_string(only_run(&out).join("pretrain.toml")).unwrap();
    // batch_size and lr from the preset, steps and max_len from the flags.
    for line in [
        "batch_size = 8",
        "lr = 0.00005",
        "steps = 4",
        "max_len = 32",
    ] {
        assert!(settings.lines().any(|l| l == line), "{line}: {settings}");
    }
    let unknown = common::failure(&["pretrain", "--preset", "cpu-smal"], root.path());
    assert!(unknown.contains("did you mean `cpu-small`?"), "{unknown}");
}

#[test]
fn a_run_killed_after_a_periodic_save_resumes_from_it_to_the_uninterrupted_end() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let command = |out: &Path| binary_run(&corpus, out, 400, 20);
    let whole_out = root.path().join("whole");
    run_quietly(&command(&whole_out), root.path());

    // SIGKILL (no handler, no last save) soon after the first periodic save, mid-training.
    let out = root.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lra"))
        .args(command(&out))
        .arg("--quiet")
        .spawn()
        .unwrap();
    // The saved state as a resume finds it (the previous one if the kill fell mid-swap).
    let state = || {
        let run = fs::read_dir(&out).ok()?.next()?.ok()?.path();
        let saved = find_with_state::<serde_json::Value>(&run.join("training_state")).ok()??;
        Some((run, saved.state["step"].as_u64()? as usize))
    };
    let begun = std::time::Instant::now();
    while state().is_none() {
        assert!(begun.elapsed().as_secs() < 120, "no training state came");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::thread::sleep(std::time::Duration::from_millis(30));
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "killed before the end");
    let (run, step) = state().unwrap();
    assert!(step % 20 == 0 && step < 400, "saved at step {step}");
    assert!(!run.join("checkpoint").exists());

    let resumed = lra(
        &["pretrain", "--resume", &run.display().to_string()],
        root.path(),
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let resumed_from = format!("resumed from the training state of step {step}\n");
    assert!(
        stderr(&resumed).starts_with(&resumed_from),
        "{}",
        stderr(&resumed)
    );
    assert_same_outputs(&run, &only_run(&whole_out));
}

/// A copy of the tiny BERT without dropout (so runs differ only in how they compute).
fn tiny_bert_without_dropout(dir: &Path) -> PathBuf {
    let copy = dir.join("bert-no-dropout");
    fs::create_dir_all(&copy).unwrap();
    for entry in fs::read_dir(tiny_bert()).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    let text = fs::read_to_string(copy.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    fs::write(copy.join("config.json"), config.to_string()).unwrap();
    copy
}

/// Asserts that `run` (from the tiny BERT without dropout, 30 steps) has the same training losses
/// with each step's batch in 2 or 4 micro-batches as in one.
fn assert_accumulation_trains_as_the_whole_batch(run: PretrainArgs, init: &Path) {
    let losses = |accumulate: usize| {
        let mut run = run.clone();
        run.settings.init = Some(init.to_path_buf());
        run.settings.eval_every = Some(10);
        run.settings.accumulate = Some(accumulate);
        let rows = execute(&run).unwrap().rows;
        rows.iter().map(|row| row.train_loss).collect::<Vec<_>>()
    };
    let whole = losses(1);
    for accumulate in [2, 4] {
        let accumulated = losses(accumulate);
        for (a, b) in whole.iter().zip(&accumulated) {
            assert!(
                (a - b).abs() < 1e-4 * a,
                "accumulate {accumulate}: {whole:?} vs {accumulated:?}"
            );
        }
    }
}

#[test]
fn accumulated_micro_batches_train_as_the_whole_batch() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let init = tiny_bert_without_dropout(root.path());
    assert_accumulation_trains_as_the_whole_batch(args(&corpus, root.path(), 30), &init);
}

/// The sentence-order loss is weighted by each micro-batch's share of the step's sentence-order
/// targets, which differ from its share of the MLM targets (unpaired segments have none).
#[test]
fn accumulated_micro_batches_with_sop_train_as_the_whole_batch() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_ordered_corpus(root.path());
    let init = tiny_bert_without_dropout(root.path());
    assert_accumulation_trains_as_the_whole_batch(sop_args(&corpus, root.path(), 30), &init);
}

/// The MRA protocol's settings (exactly N targets per sequence, no weight decay on biases and
/// LayerNorms through a second optimiser group, no clipping) train, record the choice, and a
/// run stopped and resumed (the groups' optimiser states restored) ends exactly as an
/// uninterrupted one.
#[test]
fn an_mra_preset_run_with_its_parameter_groups_resumes_exactly() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let settings = |out: &str, stop_at| {
        let base = args(&corpus, &root.path().join(out), 30);
        let base = PretrainArgs {
            preset: Some("mra-roberta-base".into()),
            settings: SettingFlags {
                masked_per_example: Some(5),
                ..base.settings
            },
            ..base
        };
        stoppable(base, 10, stop_at)
    };
    let whole = execute(&settings("whole", None)).unwrap();
    assert!(matches!(whole.ended, Ended::Finished { .. }));
    let recorded = fs::read_to_string(whole.dir.join("pretrain.toml")).unwrap();
    for line in [
        "masked_per_example = 5",
        "grad_clip = 0.0",
        "[[param_groups]]",
        "weight_decay = 0.0",
    ] {
        assert!(recorded.lines().any(|l| l == line), "{line}: {recorded}");
    }
    let stopped = execute(&settings("stopped", Some(15))).unwrap();
    assert_eq!(stopped.ended, Ended::Stopped { step: 15 });
    let resumed = execute(&resume(&stopped.dir, &root.path().join("stopped"))).unwrap();
    assert_eq!(resumed.started_at, 15);
    assert_eq!(resumed.rows, whole.rows);
    assert_same_outputs(&resumed.dir, &whole.dir);
}
