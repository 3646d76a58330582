//! Retrieval (LRA): byte-level AAN citation matching of document pairs through a dual encoder,
//! 2 classes.

use anyhow::Result;
use lra_data::{OnProblem, RELEASE_URL, TaskData, retrieval};

use super::settings::{self, NoSettings};
use super::{DataSet, InputLayout, PublishedColumn, Task, download_hint};
use crate::objective::Objective;

pub struct Retrieval;

impl Task for Retrieval {
    fn name(&self) -> &'static str {
        "retrieval"
    }
    fn summary(&self) -> &'static str {
        "Retrieval: byte-level AAN citation matching of document pairs (dual encoder), 2 classes"
    }
    fn input(&self) -> InputLayout {
        InputLayout::DualEncoder
    }
    fn vocab_size(&self, _: &toml::Table) -> Result<usize> {
        Ok(retrieval::VOCAB_SIZE)
    }
    fn objective(&self) -> Objective {
        Objective::Classification {
            classes: retrieval::NUM_CLASSES,
        }
    }
    fn published(&self) -> Option<PublishedColumn> {
        Some(PublishedColumn {
            file: "lra.csv",
            column: "retrieval",
        })
    }
    fn resolve_settings(&self, settings: &toml::Table) -> Result<toml::Table> {
        settings::resolve::<NoSettings>(self.name(), settings)
    }
    fn fetch_hint(&self, set: &DataSet) -> String {
        download_hint(
            self.name(),
            RELEASE_URL,
            "the whole LRA release, several GB",
            &set.root,
        )
    }
    fn read(&self, set: &DataSet, on_problem: OnProblem) -> Result<TaskData> {
        let root = &set.root;
        Ok(retrieval::load(root, on_problem)?)
    }
}
