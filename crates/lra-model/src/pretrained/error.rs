//! What can go wrong importing a checkpoint folder; every error names the file, and the field or
//! tensor, it is about.

use std::path::PathBuf;

use thiserror::Error;

use crate::ConfigError;

/// A checkpoint folder that cannot be imported.
#[derive(Debug, Error)]
pub enum PretrainedError {
    /// A file the folder must have is absent.
    #[error("{}: {what}", path.display())]
    Missing { path: PathBuf, what: String },
    /// A file that cannot be read or parsed at all.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// A `config.json` field with a value this import does not support.
    #[error("{}: `{field}`: {message}", path.display())]
    Field {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
    /// A checkpoint tensor whose shape does not fit the parameter it maps to.
    #[error(
        "{}: tensor `{key}` has shape {checkpoint:?}, but `{parameter}` needs {expected:?} \
         (Burn's layout: a Linear weight is [in, out], the transpose of PyTorch's [out, in])",
        path.display()
    )]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        parameter: String,
        checkpoint: Vec<usize>,
        expected: Vec<usize>,
    },
    /// Encoder parameters the checkpoint has no tensor for.
    #[error(
        "{}: no tensor for {} parameter(s) of the encoder: {} (is config.json the one saved \
         with these weights?)",
        path.display(),
        parameters.len(),
        parameters.join(", ")
    )]
    MissingTensors {
        path: PathBuf,
        parameters: Vec<String>,
    },
    /// The model is longer than the checkpoint's position table.
    #[error(
        "{}: max_len {max_len} is longer than the checkpoint's position table, which has {usable} \
         usable positions (`max_position_embeddings` = {rows}{offset_note})",
        path.display()
    )]
    TooLong {
        path: PathBuf,
        max_len: usize,
        usable: usize,
        rows: usize,
        offset_note: String,
    },
    /// The model built from the checkpoint's sizes and the chosen mixer is inconsistent.
    #[error("{}: {source}", path.display())]
    Model {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
}

/// Result of the import functions.
pub type Result<T> = std::result::Result<T, PretrainedError>;
