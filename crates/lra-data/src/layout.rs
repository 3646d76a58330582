//! Finding a task's files under the folder `--data` names: the LRA release unpacks into a nested
//! `lra_release/lra_release/` layout, and raw sources into their own folders (`aclImdb/`,
//! `cifar-10-batches-bin/`), so each task looks in all of them.

use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Where the LRA release's folders may sit relative to the folder given: that folder itself, the
/// top of the unpacked tarball, or the second `lra_release/` inside it.
const RELEASE_PREFIXES: [&str; 3] = ["", "lra_release", "lra_release/lra_release"];

/// What a task needs to find its files: the folders they usually sit in and the files themselves.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Task name, for messages.
    pub task: &'static str,
    /// Folder names the files sit in, relative to a release prefix (`""` = directly there).
    pub subdirs: &'static [&'static str],
    /// Files or folders that must all exist, relative to the task folder.
    pub required: &'static [&'static str],
    /// Where the files come from, for the message when they are missing.
    pub source: &'static str,
}

impl Layout {
    /// Every folder searched under `root`, in order.
    pub fn candidates(&self, root: &Path) -> Vec<PathBuf> {
        RELEASE_PREFIXES
            .iter()
            .flat_map(|prefix| {
                self.subdirs
                    .iter()
                    .map(move |sub| root.join(prefix).join(sub))
            })
            .map(|path| clean(&path))
            .collect()
    }

    /// The first candidate folder holding every required file.
    pub fn find(&self, root: &Path) -> Option<PathBuf> {
        self.candidates(root)
            .into_iter()
            .find(|dir| self.required.iter().all(|file| dir.join(file).exists()))
    }

    /// [`Self::find`], or an error naming the files expected, the folders searched and where the
    /// files come from.
    pub fn locate(&self, root: &Path) -> Result<PathBuf, DataError> {
        self.find(root).ok_or_else(|| {
            missing_files(
                self.task,
                root,
                &self.required.join(", "),
                &self.candidates(root),
                self.source,
            )
        })
    }
}

/// The error for files of `task` found in none of the folders `searched` under `root`: it names the
/// files `expected`, every folder searched and the `source` the files come from.
pub fn missing_files(
    task: &str,
    root: &Path,
    expected: &str,
    searched: &[PathBuf],
    source: &str,
) -> DataError {
    let searched: Vec<String> = searched
        .iter()
        .map(|dir| format!("  {}", dir.display()))
        .collect();
    DataError::Missing(format!(
        "no {task} data under {}: expected {expected} in one of these folders:\n{}\nGet them from {source}",
        root.display(),
        searched.join("\n"),
    ))
}

/// `a/./b/` → `a/b`, so messages show tidy paths.
pub fn clean(path: &Path) -> PathBuf {
    path.components().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: Layout = Layout {
        task: "retrieval",
        subdirs: &["", "tsv_data"],
        required: &["a.tsv", "b.tsv"],
        source: "https://example.org/release.gz",
    };

    #[test]
    fn finds_files_in_the_nested_release_layout() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("lra_release/lra_release/tsv_data");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("a.tsv"), "").unwrap();
        assert!(LAYOUT.find(root.path()).is_none(), "b.tsv is still missing");
        std::fs::write(nested.join("b.tsv"), "").unwrap();
        assert_eq!(LAYOUT.locate(root.path()).unwrap(), nested);
        assert_eq!(LAYOUT.locate(&nested).unwrap(), nested);
    }

    #[test]
    fn missing_files_name_what_was_expected_where_and_the_source() {
        let root = tempfile::tempdir().unwrap();
        let message = LAYOUT.locate(root.path()).unwrap_err().to_string();
        for expected in [
            "a.tsv, b.tsv",
            "lra_release/lra_release/tsv_data",
            "https://example.org",
        ] {
            assert!(message.contains(expected), "{message}");
        }
    }
}
