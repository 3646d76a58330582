//! Image (LRA): CIFAR-10 as 1,024 grayscale pixel tokens, 10 classes, from the binary release.

use anyhow::Result;
use lra_data::{OnProblem, TaskData, image};

use super::settings::{self, NoSettings};
use super::{DataSet, InputLayout, PublishedColumn, Task, download_hint};
use crate::objective::Objective;

pub struct Image;

impl Task for Image {
    fn name(&self) -> &'static str {
        "image"
    }
    fn summary(&self) -> &'static str {
        "Image: CIFAR-10 as 1,024 grayscale pixels, 10 classes (cifar-10-binary)"
    }
    fn input(&self) -> InputLayout {
        InputLayout::Single
    }
    fn vocab_size(&self, _: &toml::Table) -> Result<usize> {
        Ok(image::VOCAB_SIZE)
    }
    fn objective(&self) -> Objective {
        Objective::Classification {
            classes: image::NUM_CLASSES,
        }
    }
    fn published(&self) -> Option<PublishedColumn> {
        Some(PublishedColumn {
            file: "lra.csv",
            column: "image",
        })
    }
    fn resolve_settings(&self, settings: &toml::Table) -> Result<toml::Table> {
        settings::resolve::<NoSettings>(self.name(), settings)
    }
    fn fetch_hint(&self, set: &DataSet) -> String {
        download_hint(self.name(), image::DOWNLOAD_URL, "162 MB", &set.root)
    }
    fn read(&self, set: &DataSet, on_problem: OnProblem) -> Result<TaskData> {
        let root = &set.root;
        Ok(image::load(root, on_problem)?)
    }
}
