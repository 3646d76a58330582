//! `lra pretrain` on the tiny BERT fixture: a corpus with learnable structure drives the held-out
//! MLM loss down, the run is a function of its seed, the exported checkpoint fine-tunes with
//! `lra run --init`, and corpus errors name the file and line.

use std::fs;
use std::path::{Path, PathBuf};

use lra::cmd::pretrain::{PretrainArgs, execute};
use lra::cmd::run::RunArgs;
use lra::train::Outcome;
use lra_data::fixtures;

mod common;
use common::{one_training_at_a_time, tiny_bert};

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

fn args(corpus: &Path, out: &Path, steps: usize) -> PretrainArgs {
    PretrainArgs {
        init: tiny_bert(),
        corpus: vec![corpus.to_path_buf()],
        attention: "softmax".into(),
        mixer: Vec::new(),
        max_len: 32,
        batch_size: 8,
        steps,
        lr: 2e-3,
        warmup_steps: 5,
        weight_decay: 0.01,
        beta2: 0.999,
        held_out: 0.1,
        eval_every: 20,
        mask_probability: 0.15,
        max_masked: 0,
        seed: 3,
        out: out.to_path_buf(),
        device: "cpu".into(),
        quiet: true,
    }
}

#[test]
fn pretraining_lowers_the_held_out_mlm_loss_and_exports_a_checkpoint_that_fine_tunes() {
    let _guard = one_training_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let corpus = write_corpus(root.path());
    let run = execute(&args(&corpus, &root.path().join("pretrain"), 100)).unwrap();
    let (first, last) = (&run.rows[0], run.rows.last().unwrap());
    assert_eq!(
        run.rows.iter().map(|r| r.step).collect::<Vec<_>>(),
        [20, 40, 60, 80, 100]
    );
    assert!(last.val_loss < first.val_loss - 0.3, "{:?}", run.rows);
    assert!(last.val_accuracy > first.val_accuracy, "{:?}", run.rows);
    assert!((last.val_perplexity - last.val_loss.exp()).abs() < 1e-9);
    let metrics = fs::read_to_string(run.dir.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with("step,lr,train_loss,val_loss,val_accuracy,val_perplexity\n"));

    // The export is a checkpoint folder: `lra run --init` fine-tunes it.
    let glue = fixtures::write_keyword_sst2(root.path(), 40, 8, 4);
    let run_args = RunArgs {
        task: Some("sst2".into()),
        init: Some(run.checkpoint.clone()),
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
}
