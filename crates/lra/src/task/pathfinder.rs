//! The Pathfinder tasks (Linsley et al. 2018, LRA): are the two dots connected by one contour?
//! 2 classes, one pixel per token. One task per image side: Pathfinder (32×32), Path-X
//! (128×128) and Path-256; the difficulty (contour length) is a setting.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use lra_data::pathfinder::{self, GeneratorConfig, Variant};
use lra_data::{OnProblem, TaskData};
use serde::{Deserialize, Serialize};

use super::{DataSet, InputLayout, PublishedColumn, Task, settings};
use crate::objective::Objective;
use crate::progress;

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
    /// How to generate the set into `data_dir` when it is missing (`[task.generate]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generate: Option<GenerateSettings>,
}

/// `[task.generate]` of a Pathfinder task: the image side and difficulty are the task's.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct GenerateSettings {
    /// Images to draw (read as 80 / 10 / 10 % train / val / test).
    images: usize,
    /// The generator's own seed, so runs with different training seeds share one data set.
    #[serde(default)]
    seed: u64,
}

/// About how long drawing 200,000 images of side `side` takes on 2 cores (measured: 2,600
/// images/s at 32, 340 at 128, 850 at 256, whose preset draws fewer distractors).
fn generation_time(side: u32) -> &'static str {
    match side {
        ..=64 => "about 1–2 minutes",
        65..=192 => "about 10–20 minutes",
        _ => "about 5–10 minutes",
    }
}

/// Where a set is drawn before it is moved into place, so an interrupted generation never
/// leaves a set that looks complete.
const PARTIAL_DIR: &str = ".generating";

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
    fn fetch_hint(&self, set: &DataSet) -> String {
        let root = set.root.display();
        let variant = self.variant(&set.settings).unwrap_or(self.variant);
        let side = variant.resolution;
        format!(
            "Next: `lra data generate pathfinder --resolution {side} --contour-length {} --out \
             {root}` draws 200,000 images like the release ({} on 2 cores), then check them \
             with `lra data check {} --data {root}`; to try the harness first, `lra run --task {} \
             --preset tiny` draws a small set and trains on it in a few minutes",
            variant.contour_length,
            generation_time(side),
            self.name,
            self.name,
        )
    }
    fn read(&self, set: &DataSet, _: OnProblem) -> Result<TaskData> {
        let root = &set.root;
        let settings = &set.settings;
        Ok(pathfinder::load_task(root, self.variant(settings)?)?)
    }
    fn generate_if_missing(&self, dir: &Path, settings: &toml::Table, quiet: bool) -> Result<()> {
        let variant = self.variant(settings)?;
        if pathfinder::find(dir, variant).is_ok() {
            return Ok(());
        }
        let settings: Settings = settings::parse_settings(self.name, settings)?;
        let Some(generate) = settings.generate else {
            return Ok(());
        };
        let config = GeneratorConfig {
            resolution: variant.resolution,
            contour_length: variant.contour_length,
            images: generate.images,
            seed: generate.seed,
            ..GeneratorConfig::default()
        };
        let partial = dir.join(PARTIAL_DIR);
        if partial.exists() {
            fs::remove_dir_all(&partial).with_context(|| {
                format!("cannot remove the unfinished set {}", partial.display())
            })?;
        }
        let side = variant.resolution;
        let message = format!(
            "drawing {side}×{side} {} images into {}",
            self.name,
            dir.display()
        );
        let bar = progress::bar(generate.images as u64, 0, &message, quiet);
        let stats = pathfinder::generate_with_progress(&config, &partial, &|| bar.inc(1))
            .with_context(|| format!("generating {} data", self.name))?;
        bar.finish_and_clear();
        let relative = variant.relative_dir();
        let target = dir.join(&relative);
        fs::create_dir_all(target.parent().unwrap_or(dir))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        fs::rename(&stats.dir, &target)
            .with_context(|| format!("cannot move the generated set to {}", target.display()))?;
        fs::remove_dir_all(&partial).ok();
        if !quiet {
            eprintln!(
                "generated {} {} images ({} positive) in {:.0} s into {}",
                stats.images,
                self.name,
                stats.positives,
                stats.seconds,
                target.display()
            );
        }
        Ok(())
    }
}
