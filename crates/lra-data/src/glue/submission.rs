//! GLUE test-server submission files: `index<TAB>prediction` per test example, labels written as
//! the server expects them (`0`/`1`, `entailment`, …; STS-B scores clipped to `[0, 5]`, `%.3f`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::glue::data::Target;
use crate::glue::task::{GlueSplit, GlueTask};

/// The prediction for one test example.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// The example's [`crate::glue::GlueExample::index`].
    pub index: u32,
    /// Predicted class (canonical id) or score.
    pub value: Target,
}

/// Writes the submission file of `split` of `task` (e.g. `MNLI-mm.tsv`) into `dir`, atomically:
/// a temporary file in `dir` renamed over the target, so a crash never leaves half a file.
/// Returns the file's path. A class id outside the task's labels, a score for a classification
/// task (or the reverse) or a split without a submission file is an error.
pub fn write_submission(
    dir: &Path,
    task: GlueTask,
    split: GlueSplit,
    predictions: &[Prediction],
) -> Result<PathBuf> {
    let file_name = task.split(split)?.submission_file.ok_or_else(|| {
        DataError::Invalid(format!(
            "GLUE {task} {split} is not a test split; only test splits are submitted"
        ))
    })?;
    let mut text = String::from("index\tprediction\n");
    for prediction in predictions {
        let value = format_prediction(task, prediction.value)?;
        text.push_str(&format!("{}\t{value}\n", prediction.index));
    }
    let path = dir.join(file_name);
    let temporary = dir.join(format!(".{file_name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|source| DataError::io(&temporary, source))?;
    fs::rename(&temporary, &path).map_err(|source| DataError::io(&path, source))?;
    Ok(path)
}

/// One prediction as the server wants it.
fn format_prediction(task: GlueTask, value: Target) -> Result<String> {
    match (task.is_regression(), value) {
        (false, Target::Class(class)) => task
            .labels()
            .get(class as usize)
            .map(|label| (*label).to_owned())
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "class {class} is not a {task} class id (0..{})",
                    task.labels().len() - 1
                ))
            }),
        (true, Target::Score(score)) if score.is_finite() => {
            Ok(format!("{:.3}", score.clamp(0.0, 5.0)))
        }
        _ => Err(DataError::Invalid(format!(
            "{value:?} is not a {task} prediction (expected {})",
            if task.is_regression() {
                "a finite score"
            } else {
                "a class id"
            }
        ))),
    }
}
