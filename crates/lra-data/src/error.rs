//! The error type shared by every reader and writer in this crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing or generating task data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file system refused an operation on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A data file has content that does not fit its format.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The offending file.
        path: PathBuf,
        /// 1-based line number, as an editor shows it.
        line: usize,
        /// What was expected and what was found instead.
        message: String,
    },
    /// A request that cannot be carried out, such as generator limits no expression can meet.
    #[error("{0}")]
    Invalid(String),
}

/// Result with [`DataError`] as its error.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// Wraps an I/O error together with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
