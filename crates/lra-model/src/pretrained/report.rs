//! What an import did with every checkpoint tensor and every parameter: nothing is left out
//! silently.

use std::fmt;
use std::path::PathBuf;

use super::keys::UnusedReason;
use super::positions::PositionExtension;

/// One checkpoint tensor loaded into one parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The key in the checkpoint file.
    pub key: String,
    /// The parameter's path in the model (Burn's module path, enum variants skipped).
    pub parameter: String,
    /// Why this tensor is a fitting start for the parameter, where that is not plain.
    pub note: Option<&'static str>,
}

/// A parameter of the model that kept its initial value, and why that is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftAtInit {
    pub parameter: String,
    pub reason: String,
}

/// A checkpoint tensor that no parameter took, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unused {
    pub key: String,
    pub reason: UnusedReason,
}

/// Which rows of the checkpoint's position table became the model's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionRows {
    /// First row taken (RoBERTa: `pad_token_id + 1`).
    pub first: usize,
    /// Rows the model has: its `max_len`.
    pub taken: usize,
    /// Rows in the checkpoint.
    pub of: usize,
    /// How the rows from `first` on were lengthened to `taken`, when the model is longer.
    pub extended: Option<PositionExtension>,
}

/// The outcome of importing a checkpoint into a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReport {
    /// The weights file read.
    pub weights: PathBuf,
    /// The mixer of every block.
    pub mixer: &'static str,
    pub loaded: Vec<Loaded>,
    pub positions: PositionRows,
    pub left_at_init: Vec<LeftAtInit>,
    pub unused: Vec<Unused>,
}

impl ImportReport {
    /// Whether the checkpoint tensor `key` was loaded into `parameter`.
    pub fn loaded_into(&self, key: &str, parameter: &str) -> bool {
        self.loaded
            .iter()
            .any(|l| l.key == key && l.parameter == parameter)
    }

    /// Why `parameter` kept its init, if it did.
    pub fn init_reason(&self, parameter: &str) -> Option<&str> {
        self.left_at_init
            .iter()
            .find(|p| p.parameter == parameter)
            .map(|p| p.reason.as_str())
    }

    /// Why the checkpoint tensor `key` was not used, if it was not.
    pub fn unused_reason(&self, key: &str) -> Option<&UnusedReason> {
        self.unused.iter().find(|u| u.key == key).map(|u| &u.reason)
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PositionRows {
            first,
            taken,
            of,
            extended,
        } = self.positions;
        writeln!(
            f,
            "imported {} with the `{}` mixer: {} tensors loaded, {} parameters left at init, {} \
             checkpoint tensors unused",
            self.weights.display(),
            self.mixer,
            self.loaded.len(),
            self.left_at_init.len(),
            self.unused.len()
        )?;
        match extended {
            None => writeln!(f, "position table: rows {first}..{} of {of}", first + taken)?,
            Some(how) => writeln!(
                f,
                "position table: rows {first}..{of} of {of}, extended to {taken} rows ({})",
                how.name()
            )?,
        }
        writeln!(f, "loaded:")?;
        for Loaded {
            key,
            parameter,
            note,
        } in &self.loaded
        {
            match note {
                Some(note) => writeln!(f, "  {key} -> {parameter} ({note})")?,
                None => writeln!(f, "  {key} -> {parameter}")?,
            }
        }
        if !self.left_at_init.is_empty() {
            writeln!(f, "left at init:")?;
            for LeftAtInit { parameter, reason } in &self.left_at_init {
                writeln!(f, "  {parameter}: {reason}")?;
            }
        }
        if !self.unused.is_empty() {
            writeln!(f, "unused checkpoint tensors:")?;
            for Unused { key, reason } in &self.unused {
                writeln!(f, "  {key}: {reason}")?;
            }
        }
        Ok(())
    }
}
