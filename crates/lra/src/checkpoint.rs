//! Training checkpoints: model, optimiser state and counters in one folder, replaced atomically
//! (written beside it, then swapped by renames) so an interrupted save keeps the previous one.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use lra_model::Classifier;
use serde::{Deserialize, Serialize};

use crate::results::MetricsRow;

/// Counters that, with the model and optimiser, fully determine how training continues.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimisation steps done.
    pub step: usize,
    /// Best validation value of the task's selection metric so far.
    #[serde(alias = "best_val_accuracy")]
    pub best_value: f64,
    pub best_step: usize,
    /// Evaluation history so far.
    pub history: Vec<MetricsRow>,
    /// Training loss/accuracy accumulated since the last evaluation.
    pub window: Window,
    /// Seconds spent in training steps (evaluation excluded).
    pub train_seconds: f64,
}

/// Running sums between two evaluations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub loss_sum: f64,
    /// Correct predictions (classification tasks).
    pub correct: usize,
    pub examples: usize,
    pub batches: usize,
    pub tokens: usize,
    pub seconds: f64,
}

const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const STATE: &str = "state.json";

/// Saves a checkpoint into `dir`, replacing any previous one only once the new one is complete.
pub fn save(
    dir: &Path,
    model: &Classifier,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> Result<()> {
    let staging = sibling(dir, "new");
    let previous = sibling(dir, "old");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    model
        .clone()
        .save_file(staging.join(MODEL))
        .map_err(|e| anyhow!("saving model checkpoint: {e:?}"))?;
    optim
        .save(staging.join(OPTIMIZER))
        .map_err(|e| anyhow!("saving optimizer checkpoint: {e:?}"))?;
    fs::write(staging.join(STATE), serde_json::to_vec_pretty(state)?)?;
    if dir.exists() {
        fs::rename(dir, &previous)?;
    }
    fs::rename(&staging, dir)?;
    if previous.exists() {
        fs::remove_dir_all(&previous)?;
    }
    Ok(())
}

/// A checkpoint found on disk.
pub struct Checkpoint {
    dir: PathBuf,
    pub state: TrainState,
}

impl Checkpoint {
    /// Loads the checkpoint's parameters into `model`.
    pub fn restore_model(&self, model: Classifier) -> Result<Classifier> {
        let path = self.dir.join(MODEL);
        model
            .try_load_file(&path)
            .map_err(|e| anyhow!("cannot load {}: {e:?}", path.display()))
    }

    /// Loads the checkpoint's optimiser state into `optim`.
    pub fn restore_optimizer(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let path = self.dir.join(OPTIMIZER);
        optim
            .load(&path)
            .map_err(|e| anyhow!("cannot load {}: {e:?}", path.display()))
    }
}

/// The checkpoint in `dir`, or the previous one if a save was interrupted mid-swap.
pub fn find(dir: &Path) -> Result<Option<Checkpoint>> {
    let previous = sibling(dir, "old");
    let dir = if dir.join(STATE).is_file() {
        dir.to_path_buf()
    } else if previous.join(STATE).is_file() {
        previous
    } else {
        return Ok(None);
    };
    let text =
        fs::read(dir.join(STATE)).with_context(|| format!("cannot read {}", dir.display()))?;
    let state = serde_json::from_slice(&text)
        .with_context(|| format!("corrupt checkpoint state {}", dir.join(STATE).display()))?;
    Ok(Some(Checkpoint { dir, state }))
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!(".{name}.{suffix}"))
}
