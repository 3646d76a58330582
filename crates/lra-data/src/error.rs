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
    /// A record of a binary file (counted from 0) does not fit its format, or the file ends
    /// inside a record.
    #[error("{path}: record {record}: {message}")]
    Record {
        /// The offending file.
        path: PathBuf,
        /// 0-based record index.
        record: usize,
        /// What was expected and what was found instead.
        message: String,
    },
    /// A file that should hold one whole record (e.g. one IMDB review) is malformed.
    #[error("{path}: {message}")]
    File {
        /// The offending file.
        path: PathBuf,
        /// What was expected and what was found instead.
        message: String,
    },
    /// A prepared cache file is corrupt, truncated, or written by another format version.
    #[error("{path}: {message}; delete it or run `lra data prepare` again")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A task's files are not where they were looked for; the message lists the files expected,
    /// the places searched and where to get them.
    #[error("{0}")]
    Missing(String),
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

/// What a reader does with a bad record: stop at the first (loading data for training), or
/// collect every one and skip the record (`lra data check`).
#[derive(Debug)]
pub enum OnProblem<'a> {
    /// Return the first problem as the error.
    Fail,
    /// Add each problem here and go on with the next record.
    Collect(&'a mut Vec<DataError>),
}

impl OnProblem<'_> {
    /// Hands `problem` over: `Err` when failing fast, `Ok` (skip the record) when collecting.
    pub fn report(&mut self, problem: DataError) -> Result<()> {
        match self {
            OnProblem::Fail => Err(problem),
            OnProblem::Collect(found) => {
                found.push(problem);
                Ok(())
            }
        }
    }
}
