//! LRA "Text": byte-level IMDB sentiment classification, read from the raw IMDB release.
//!
//! The LRA code (`lra_benchmarks/text_classification/input_pipeline.py`) loads TFDS
//! `imdb_reviews`, which is built from the same `aclImdb_v1.tar.gz`: each review is one file
//! `<id>_<rating>.txt` under `train/{neg,pos}` and `test/{neg,pos}`. Tokens are the review's UTF-8
//! bytes, id = byte + 1 (TFDS `ByteTextEncoder`: 0 is padding, vocabulary 257). Labels follow
//! TFDS: `neg` = 0, `pos` = 1. IMDB has no validation split: LRA validates on the test split.
//! Reviews are stored whole; each preset truncates them to its `max_len`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{DataError, OnProblem, Result};
use crate::example::{SplitBuilder, SplitData, TaskData};
use crate::layout::Layout;

/// Byte ids 1..=256 plus padding.
pub const VOCAB_SIZE: usize = 257;
/// Token id = byte + this.
pub const ID_OFFSET: u32 = 1;
/// Negative and positive.
pub const NUM_CLASSES: usize = 2;
/// Class folders in label order.
pub const CLASSES: [&str; NUM_CLASSES] = ["neg", "pos"];

/// Where the raw IMDB files are looked for.
/// The raw IMDB archive (unpacks to `aclImdb/`).
pub const DOWNLOAD_URL: &str = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz";

pub const LAYOUT: Layout = Layout {
    task: "text (IMDB)",
    subdirs: &["", "aclImdb"],
    required: &["train/neg", "train/pos", "test/neg", "test/pos"],
    source: "the raw IMDB release https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz \
             (unpacks to aclImdb/)",
};

/// Reads the train and test reviews under `root` (see [`LAYOUT`]); validation is the test split.
pub fn load(root: &Path, mut on_problem: OnProblem) -> Result<TaskData> {
    let dir = LAYOUT.locate(root)?;
    let train = read_part(&dir.join("train"), &mut on_problem)?;
    let test = read_part(&dir.join("test"), &mut on_problem)?;
    Ok(TaskData {
        train,
        val: test.clone(),
        test,
        vocab_size: VOCAB_SIZE,
        num_classes: NUM_CLASSES,
        extra: Vec::new(),
    })
}

/// The reviews of one part (`train/` or `test/`): `neg/` then `pos/`, each in review-id order.
pub fn read_part(dir: &Path, on_problem: &mut OnProblem) -> Result<SplitData> {
    let mut builder = SplitBuilder::new(1, ID_OFFSET);
    for (label, class) in CLASSES.iter().enumerate() {
        let class_dir = dir.join(class);
        for path in reviews(&class_dir, class, on_problem)? {
            match fs::read(&path) {
                Ok(bytes) if bytes.is_empty() => on_problem.report(DataError::File {
                    path,
                    message: "empty review".into(),
                })?,
                Ok(bytes) => builder.push(&[&bytes], label as u32),
                Err(source) => on_problem.report(DataError::io(path, source))?,
            }
        }
    }
    Ok(builder.finish())
}

/// The `<id>_<rating>.txt` files of a class folder, sorted by id; a name that does not fit, or a
/// rating that contradicts the class (IMDB: neg ≤ 4, pos ≥ 7), is a problem.
fn reviews(class_dir: &Path, class: &str, on_problem: &mut OnProblem) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(class_dir).map_err(|source| DataError::io(class_dir, source))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| DataError::io(class_dir, source))?
            .path();
        if path.extension().is_none_or(|ext| ext != "txt") {
            continue;
        }
        match review_id(&path, class) {
            Ok(id) => found.push((id, path)),
            Err(message) => on_problem.report(DataError::File { path, message })?,
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

fn review_id(path: &Path, class: &str) -> std::result::Result<u64, String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let parsed = stem
        .split_once('_')
        .and_then(|(id, rating)| Some((id.parse::<u64>().ok()?, rating.parse::<u8>().ok()?)));
    let Some((id, rating)) = parsed else {
        return Err("expected a review file named <id>_<rating>.txt".into());
    };
    let fits = match class {
        "neg" => (1..=4).contains(&rating),
        _ => (7..=10).contains(&rating),
    };
    if !fits {
        return Err(format!(
            "rating {rating} does not belong in `{class}` (IMDB: neg 1-4, pos 7-10)"
        ));
    }
    Ok(id)
}
