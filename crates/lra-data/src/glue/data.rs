//! A GLUE split in memory, and reading one from whichever layout holds it.

use std::path::{Path, PathBuf};

use crate::error::{OnProblem, Result};
use crate::glue::locate::{GlueFile, GlueLayout, locate};
use crate::glue::task::{GlueSplit, GlueTask};
use crate::glue::{parquet, tsv};

pub use crate::example::Target;

/// One sentence or sentence pair.
#[derive(Clone, Debug, PartialEq)]
pub struct GlueExample {
    /// The example's `index`/`idx` in its source file, which submission files refer to.
    pub index: u32,
    /// The (first) sentence.
    pub text_a: String,
    /// The second sentence of pair tasks.
    pub text_b: Option<String>,
    /// The label; `None` on test splits.
    pub target: Option<Target>,
}

/// The examples of one split and where they came from.
#[derive(Clone, Debug)]
pub struct GlueSplitData {
    /// Which task.
    pub task: GlueTask,
    /// Which split.
    pub split: GlueSplit,
    /// The file read.
    pub path: PathBuf,
    /// Its layout.
    pub layout: GlueLayout,
    /// The examples, in file order.
    pub examples: Vec<GlueExample>,
    /// Lines skipped for having too few fields (QQP's malformed lines); 0 elsewhere.
    pub skipped_short_lines: usize,
}

/// Finds `split` of `task` under `root` in either layout (see [`locate`]) and reads it; bad
/// records go to `on_problem`.
pub fn read_split(
    root: &Path,
    task: GlueTask,
    split: GlueSplit,
    on_problem: &mut OnProblem,
) -> Result<GlueSplitData> {
    let split_spec = task.split(split)?;
    let GlueFile { path, layout } = locate(root, task, split)?;
    let (examples, skipped_short_lines) = match layout {
        GlueLayout::GlueData => {
            let records = tsv::read_tsv(&path, task.spec(), split_spec, on_problem)?;
            (records.examples, records.skipped_short_lines)
        }
        GlueLayout::HuggingFace => (
            parquet::read_parquet(&path, task.spec(), split, on_problem)?,
            0,
        ),
    };
    Ok(GlueSplitData {
        task,
        split,
        path,
        layout,
        examples,
        skipped_short_lines,
    })
}
