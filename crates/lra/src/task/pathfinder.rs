//! The Pathfinder tasks (Linsley et al. 2018, LRA): are the two dots connected by one contour?
//! 2 classes, one pixel per token. One task per image side: Pathfinder (32×32), Path-X
//! (128×128) and Path-256; the difficulty (contour length) is a setting.

use std::path::Path;

use anyhow::Result;
use lra_data::pathfinder::{self, Variant};
use lra_data::{OnProblem, TaskData};
use serde::{Deserialize, Serialize};

use super::{DataSet, InputLayout, PublishedColumn, Task, settings};
use crate::objective::Objective;

/// One Pathfinder task: its name and the release set it reads by default.
pub struct Pathfinder {
    name: &'static str,
    summary: &'static str,
    published_column: Option<&'static str>,
    variant: Variant,
}

pub static PATHFINDER: Pathfinder = Pathfinder {
    name: "pathfinder",
    summary: "Pathfinder 32×32 (1,024 pixels, contour length 14): are the dots connected? 2 classes",
    published_column: Some("pathfinder"),
    variant: Variant::PATHFINDER,
};

pub static PATH_X: Pathfinder = Pathfinder {
    name: "pathx",
    summary: "Path-X: Pathfinder at 128×128 (16,384 pixels), contour length 14, 2 classes",
    published_column: Some("pathx"),
    variant: Variant::PATH_X,
};

pub static PATH_256: Pathfinder = Pathfinder {
    name: "path256",
    summary: "Path-256: Pathfinder at 256×256 (65,536 pixels), contour length 14, 2 classes",
    published_column: None,
    variant: Variant::PATH_256,
};

/// The Pathfinder tasks' own `[task]` keys.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The difficulty: paddles per target contour (the release has 6, 9 and 14). Default: 14,
    /// the sets the LRA paper reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contour_length: Option<u32>,
}

impl Pathfinder {
    /// The release set these settings select.
    fn variant(&self, settings: &toml::Table) -> Result<Variant> {
        let settings: Settings = settings::parse_settings(self.name, settings)?;
        let mut variant = self.variant;
        if let Some(length) = settings.contour_length {
            variant.contour_length = length;
        }
        Ok(variant)
    }
}

impl Task for Pathfinder {
    fn name(&self) -> &'static str {
        self.name
    }
    fn summary(&self) -> &'static str {
        self.summary
    }
    fn input(&self) -> InputLayout {
        InputLayout::Single
    }
    fn vocab_size(&self, _: &toml::Table) -> Result<usize> {
        Ok(pathfinder::PIXEL_VALUES)
    }
    fn objective(&self) -> Objective {
        Objective::Classification {
            classes: pathfinder::NUM_CLASSES,
        }
    }
    fn published(&self) -> Option<PublishedColumn> {
        self.published_column.map(|column| PublishedColumn {
            file: "lra.csv",
            column,
        })
    }
    fn resolve_settings(&self, settings: &toml::Table) -> Result<toml::Table> {
        settings::resolve::<Settings>(self.name, settings)
    }
    /// The task plus the difficulty (`pathx-cl14`): one cache per set.
    fn cache_name(&self, set: &DataSet) -> Result<String> {
        let variant = self.variant(&set.settings)?;
        Ok(format!("{}-cl{}", self.name, variant.contour_length))
    }
    /// The set check reads every image once: empty, duplicate, corrupt or wrong-size images.
    fn check_sources(&self, root: &Path, settings: &toml::Table) -> Result<Vec<String>> {
        let report = pathfinder::check(&pathfinder::find(root, self.variant(settings)?)?);
        Ok(report.problems.iter().map(ToString::to_string).collect())
    }
    fn read(&self, set: &DataSet, _: OnProblem) -> Result<TaskData> {
        let root = &set.root;
        let settings = &set.settings;
        Ok(pathfinder::load_task(root, self.variant(settings)?)?)
    }
}
