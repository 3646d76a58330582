//! Helpers shared by the `lra` integration tests. Each test crate compiles this module and uses
//! a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use lra::results::Summary;
use lra::train::Outcome;

/// Burn's CPU backend has one RNG per process (dropout draws from it), so two trainings in
/// parallel test threads would interleave their draws: each test trains alone.
pub fn one_training_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The summary of a run that finished; a stopped or interrupted run fails the test.
pub fn finished(outcome: Outcome) -> Summary {
    match outcome {
        Outcome::Finished(summary) => *summary,
        Outcome::Stopped { step } | Outcome::Interrupted { step } => {
            panic!("run stopped at {step} instead of finishing")
        }
    }
}

/// A process's standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `lra` binary run with `args` in `cwd`.
pub fn lra(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lra"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the lra binary runs")
}

/// The message of `lra args` run in `cwd`, which must fail cleanly: exit code 1, an `error: `
/// line, no panic.
pub fn failure(args: &[&str], cwd: &Path) -> String {
    let out = lra(args, cwd);
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {message}");
    assert!(message.starts_with("error: "), "{args:?}: {message}");
    assert!(!message.contains("panicked"), "{args:?}: {message}");
    message
}

/// The tiny BERT checkpoint made with `transformers` (`scripts/make_pretrained_fixtures.py`).
pub fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pretrained/bert")
}

/// The tiny RoBERTa checkpoint (`scripts/make_pretrained_fixtures.py`): 66 position rows, the
/// first 2 the padding id's.
pub fn tiny_roberta() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pretrained/roberta")
}

/// `lra run` arguments of a very small ListOps run: `steps` steps of 16 expressions of at most
/// 32 tokens, evaluated and checkpointed every `eval_every` steps, its data generated into
/// `data` on first use, its folder under `out`.
pub fn tiny_listops_run(data: &Path, out: &Path, steps: usize, eval_every: usize) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--preset", "tiny", "--steps"]
        .map(String::from)
        .to_vec();
    args.push(steps.to_string());
    let eval_every = format!("train.eval_every={eval_every}");
    for set in [
        "task.generate.train=256",
        "task.generate.val=64",
        "task.generate.test=64",
        "task.max_len=32",
        "task.generate.max_len=32",
        "model.d_model=16",
        "model.d_ffn=32",
        "model.head_hidden=16",
        "train.batch_size=16",
        &eval_every,
    ] {
        args.extend(["--set".into(), set.into()]);
    }
    args.extend([
        "--data".into(),
        data.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ]);
    args
}
