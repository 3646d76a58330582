//! Text (LRA): byte-level IMDB sentiment from the raw `aclImdb/` reviews, 2 classes.

use anyhow::Result;
use lra_data::{OnProblem, TaskData, text};

use super::settings::{self, NoSettings};
use super::{DataSet, InputLayout, PublishedColumn, Task, download_hint};
use crate::objective::Objective;

pub struct Text;

impl Task for Text {
    fn name(&self) -> &'static str {
        "text"
    }
    fn summary(&self) -> &'static str {
        "Text: byte-level IMDB sentiment, 2 classes (aclImdb_v1)"
    }
    fn input(&self) -> InputLayout {
        InputLayout::Single
    }
    fn vocab_size(&self, _: &toml::Table) -> Result<usize> {
        Ok(text::VOCAB_SIZE)
    }
    fn objective(&self) -> Objective {
        Objective::Classification {
            classes: text::NUM_CLASSES,
        }
    }
    fn published(&self) -> Option<PublishedColumn> {
        Some(PublishedColumn {
            file: "lra.csv",
            column: "text",
        })
    }
    fn resolve_settings(&self, settings: &toml::Table) -> Result<toml::Table> {
        settings::resolve::<NoSettings>(self.name(), settings)
    }
    fn fetch_hint(&self, set: &DataSet) -> String {
        download_hint(self.name(), text::DOWNLOAD_URL, "84 MB", &set.root)
    }
    fn read(&self, set: &DataSet, on_problem: OnProblem) -> Result<TaskData> {
        let root = &set.root;
        Ok(text::load(root, on_problem)?)
    }
}
