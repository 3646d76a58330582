//! Finding a GLUE split on disk: the GLUE download script's `glue_data/<Task>/<file>.tsv`, or the
//! Hugging Face hub dataset `nyu-mll/glue` (`<config>/<split>-00000-of-00001.parquet`), under the
//! folder given or the usual folder names inside it.

use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::glue::task::{GlueSplit, GlueTask};
use crate::layout::{clean, missing_files};

/// Folders searched under the folder given, in order.
const PREFIXES: [&str; 4] = ["", "glue_data", "glue", "nyu-mll/glue"];

/// Where the files come from, for the message when they are missing.
const SOURCE: &str = "the GLUE download script (download_glue_data.py, \
     https://gist.github.com/W4ngatang/60c2bdb54d156a41194446737ce03e2e, writes glue_data/) \
     or the Hugging Face dataset nyu-mll/glue (https://huggingface.co/datasets/nyu-mll/glue, \
     e.g. `huggingface-cli download nyu-mll/glue --repo-type dataset --local-dir glue`)";

/// The two on-disk layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlueLayout {
    /// `glue_data/<Task>/*.tsv` from the GLUE download script.
    GlueData,
    /// `<config>/<split>-00000-of-00001.parquet` from the Hugging Face hub.
    HuggingFace,
}

/// A split's file and its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlueFile {
    /// The TSV or parquet file.
    pub path: PathBuf,
    /// Which layout it belongs to.
    pub layout: GlueLayout,
}

/// The file of `split` of `task` under `root` and its layout: the first folder of
/// `root`, `root/glue_data`, `root/glue`, `root/nyu-mll/glue` holding the TSV or the parquet file
/// (TSV first). Missing: an error naming both files, the folders searched and their sources.
pub fn locate(root: &Path, task: GlueTask, split: GlueSplit) -> Result<GlueFile, DataError> {
    let tsv = task.split(split)?.tsv_file;
    let parquet = task.spec().parquet_file(split);
    let folders: Vec<PathBuf> = PREFIXES
        .iter()
        .map(|prefix| clean(&root.join(prefix)))
        .collect();
    for folder in &folders {
        for (file, layout) in [
            (tsv, GlueLayout::GlueData),
            (parquet.as_str(), GlueLayout::HuggingFace),
        ] {
            let path = folder.join(file);
            if path.is_file() {
                return Ok(GlueFile { path, layout });
            }
        }
    }
    Err(missing_files(
        &format!("GLUE {task} {split}"),
        root,
        &format!("{tsv} (glue_data/ layout) or {parquet} (Hugging Face layout)"),
        &folders,
        SOURCE,
    ))
}
