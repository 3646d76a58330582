//! Training checkpoints: model, optimiser state and counters in one folder with their CRC-32
//! checksums, replaced atomically (written beside it, flushed, then swapped by renames) so an
//! interrupted or failed save keeps the previous one, and a damaged file is an error on load.
//! The model and the counters are generic: `lra run` keeps a classifier and [`TrainState`],
//! `lra pretrain` a masked LM and its own state; any folder of results can be replaced the same
//! way ([`replace_folder`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::results::MetricsRow;

/// Counters that, with the model and optimiser, fully determine how training continues.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimisation steps done.
    pub step: usize,
    /// Best validation value of the task's selection metric so far (NaN, written as null, when
    /// the first evaluation's was).
    #[serde(alias = "best_val_accuracy", deserialize_with = "nan_if_null")]
    pub best_value: f64,
    pub best_step: usize,
    /// Evaluation history so far.
    pub history: Vec<MetricsRow>,
    /// Training loss/accuracy accumulated since the last evaluation.
    pub window: Window,
    /// Seconds spent in training steps (evaluation excluded).
    pub train_seconds: f64,
    /// Batches skipped for a non-finite loss or gradient (`train.skip_nonfinite`).
    #[serde(default)]
    pub skipped_steps: usize,
}

/// JSON has no NaN: serde_json writes it as null.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
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
/// CRC-32 of each of the three files above, checked before any of them is trusted.
const CHECKSUMS: &str = "checksums.json";
const CHECKED_FILES: [&str; 3] = [MODEL, OPTIMIZER, STATE];

/// Saves a checkpoint into `dir`, replacing any previous one only once the new one is complete
/// and on disk. On failure (a full disk, say) the previous checkpoint is left as it was and the
/// half-written new one is removed.
pub fn save<M: Module, S: Serialize>(
    dir: &Path,
    model: &M,
    optim: &ModuleOptimizer,
    state: &S,
) -> Result<()> {
    replace_folder(dir, |staging| write_files(staging, model, optim, state))
}

/// Replaces the folder `dir` by what `write` puts into a new folder beside it, once `write`
/// succeeded: a process killed (or a disk filling up) midway leaves the previous `dir` in place,
/// and what it left beside it is tidied by [`remove_leftovers`].
pub fn replace_folder(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let staging = sibling(dir, "new");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    let written = write(&staging).and_then(|()| swap_in(&staging, dir));
    if written.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_dir_all(&staging);
    }
    written
}

/// Writes the checkpoint files and their checksums into the new folder `staging`, each flushed
/// to disk.
fn write_files<M: Module, S: Serialize>(
    staging: &Path,
    model: &M,
    optim: &ModuleOptimizer,
    state: &S,
) -> Result<()> {
    fs::create_dir_all(staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let path = staging.join(MODEL);
    model
        .clone()
        .save_file(&path)
        .map_err(|e| anyhow!("cannot write {}: {e:?}", path.display()))?;
    let path = staging.join(OPTIMIZER);
    optim
        .save(&path)
        .map_err(|e| anyhow!("cannot write {}: {e:?}", path.display()))?;
    let path = staging.join(STATE);
    fs::write(&path, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut checksums = BTreeMap::new();
    for name in CHECKED_FILES {
        let path = staging.join(name);
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        sync_file(&path)?;
        checksums.insert(name.to_string(), crc32fast::hash(&bytes));
    }
    let path = staging.join(CHECKSUMS);
    fs::write(&path, serde_json::to_vec_pretty(&checksums)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    sync_file(&path)?;
    sync_file(staging)
}

/// Replaces `dir` by the complete folder `staging`: `dir` moves aside to `.<dir>.old` (which
/// [`find`] falls back on if the process dies right here), `staging` takes its place.
fn swap_in(staging: &Path, dir: &Path) -> Result<()> {
    let previous = sibling(dir, "old");
    let move_to = |from: &Path, to: &Path| {
        fs::rename(from, to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
    };
    if dir.exists() {
        if previous.exists() {
            fs::remove_dir_all(&previous)
                .with_context(|| format!("cannot remove {}", previous.display()))?;
        }
        move_to(dir, &previous)?;
    }
    move_to(staging, dir)?;
    if let Some(parent) = dir.parent() {
        sync_file(parent)?;
    }
    if previous.exists() {
        fs::remove_dir_all(&previous)
            .with_context(|| format!("cannot remove {}", previous.display()))?;
    }
    Ok(())
}

/// Tidies what a save killed midway left beside the checkpoint `dir`: the unfinished new folder
/// goes; the previous one, moved aside just before the process died, moves back into place, or
/// goes if the new one made it into place.
pub fn remove_leftovers(dir: &Path) -> Result<()> {
    let staging = sibling(dir, "new");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    let previous = sibling(dir, "old");
    if previous.exists() {
        if dir.exists() {
            fs::remove_dir_all(&previous)
                .with_context(|| format!("cannot remove {}", previous.display()))?;
        } else {
            fs::rename(&previous, dir).with_context(|| {
                format!("cannot move {} to {}", previous.display(), dir.display())
            })?;
        }
    }
    Ok(())
}

/// Flushes every file of the folder `dir`, and the folder's entries, to disk.
pub fn sync_folder_files(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.is_file() {
            sync_file(&path)?;
        }
    }
    sync_file(dir)
}

/// Flushes a file (or a folder's entries) to disk.
fn sync_file(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot flush {} to disk", path.display()))
}

/// A checkpoint found on disk, its files checked against their checksums; `S` is the state
/// saved with it.
pub struct Checkpoint<S = TrainState> {
    dir: PathBuf,
    pub state: S,
}

impl<S> Checkpoint<S> {
    /// Loads the checkpoint's parameters into `model`.
    pub fn restore_model<M: Module>(&self, model: M) -> Result<M> {
        let path = self.dir.join(MODEL);
        load_guarded(&path, || model.try_load_file(&path))
    }

    /// Loads the checkpoint's optimiser state into `optim`.
    pub fn restore_optimizer(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let path = self.dir.join(OPTIMIZER);
        load_guarded(&path, || optim.load(&path))
    }
}

/// Runs one of Burn's loaders on `path`. Burn panics on some malformed records (a tensor of
/// another dtype, found by fuzzing); that only happens behind a valid checksum (a writer bug or a
/// foreign file), and is an error naming the file like any other.
fn load_guarded<T, E: std::fmt::Debug>(
    path: &Path,
    load: impl FnOnce() -> std::result::Result<T, E>,
) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(anyhow!("cannot load {}: {error:?}", path.display())),
        Err(payload) => {
            let reason = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(anyhow!(
                "cannot load {}: it does not fit the model ({reason})",
                path.display()
            ))
        }
    }
}

/// The checkpoint in `dir`, or the previous one if a save was interrupted mid-swap. A checkpoint
/// whose files do not match their checksums is an error naming the file, never a silently
/// different run.
pub fn find(dir: &Path) -> Result<Option<Checkpoint>> {
    find_with_state(dir)
}

/// [`find`] for a checkpoint saved with state `S`.
pub fn find_with_state<S: DeserializeOwned>(dir: &Path) -> Result<Option<Checkpoint<S>>> {
    let previous = sibling(dir, "old");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else if previous.is_dir() {
        previous
    } else {
        return Ok(None);
    };
    verify(&dir)?;
    let path = dir.join(STATE);
    let text = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let state = serde_json::from_slice(&text)
        .with_context(|| format!("corrupt checkpoint state {}", path.display()))?;
    Ok(Some(Checkpoint { dir, state }))
}

/// Checks every file of the checkpoint in `dir` against `checksums.json`.
fn verify(dir: &Path) -> Result<()> {
    let remedy = || {
        format!(
            "the checkpoint is damaged; delete {} to restart the run from its beginning",
            dir.display()
        )
    };
    let path = dir.join(CHECKSUMS);
    if !path.exists() && dir.join(STATE).is_file() {
        bail!(
            "{} is a checkpoint of format 1 (written before checkpoints carried checksums and \
             before the mixers' parameters were reorganised), which this version cannot resume; \
             delete it to restart the run, or resume with the lra version that wrote it",
            dir.display()
        );
    }
    let text =
        fs::read(&path).with_context(|| format!("cannot read {}; {}", path.display(), remedy()))?;
    let checksums: BTreeMap<String, u32> = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a checksum list; {}", path.display(), remedy()))?;
    for name in CHECKED_FILES {
        let path = dir.join(name);
        let Some(&stored) = checksums.get(name) else {
            bail!(
                "{}: no checksum for {name}; {}",
                dir.join(CHECKSUMS).display(),
                remedy()
            );
        };
        let bytes = fs::read(&path)
            .with_context(|| format!("cannot read {}; {}", path.display(), remedy()))?;
        let computed = crc32fast::hash(&bytes);
        if computed != stored {
            bail!(
                "{}: checksum mismatch (stored CRC-32 {stored:08x}, contents give {computed:08x}); {}",
                path.display(),
                remedy()
            );
        }
    }
    Ok(())
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!(".{name}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_best_value_survives_the_state_file() {
        let state = TrainState {
            best_value: f64::NAN,
            ..TrainState::default()
        };
        let json = serde_json::to_vec(&state).unwrap();
        let read: TrainState = serde_json::from_slice(&json).unwrap();
        assert!(read.best_value.is_nan());
    }

    #[test]
    fn a_checkpoint_from_before_checksums_is_refused_naming_its_format() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("checkpoint");
        fs::create_dir(&dir).unwrap();
        let old_state = r#"{"step": 30, "best_val_accuracy": 0.3, "best_step": 20,
                            "history": [], "window": {"loss_sum": 0.0, "correct": 0,
                            "examples": 0, "batches": 0, "tokens": 0, "seconds": 0.0},
                            "train_seconds": 1.0}"#;
        fs::write(dir.join(STATE), old_state).unwrap();
        let error = find(&dir)
            .err()
            .expect("a format-1 checkpoint is refused")
            .to_string();
        assert!(error.contains("format 1"), "{error}");
        assert!(error.contains(&dir.display().to_string()), "{error}");
    }
}
