//! ListOps (Nangia & Bowman 2018, LRA): nested MAX/MIN/MED/SM expressions, 10 classes. Reads
//! `basic_{train,val,test}.tsv`; generates them first when `[task.generate]` says how.

use std::path::Path;

use anyhow::{Context, Result};
use lra_data::layout::Layout;
use lra_data::listops::{self, GenerateConfig};
use lra_data::{OnProblem, TaskData};
use serde::{Deserialize, Serialize};

use super::{DataSet, InputLayout, PublishedColumn, Task, settings};
use crate::objective::Objective;

/// Where the ListOps files are looked for (the release keeps them in `listops-1000/`).
pub const LAYOUT: Layout = Layout {
    task: "listops",
    subdirs: &["", "listops-1000"],
    required: &["basic_train.tsv", "basic_val.tsv", "basic_test.tsv"],
    source: "the LRA release https://storage.googleapis.com/long-range-arena/lra_release.gz \
             (lra_release/listops-1000/), or generate them",
};

/// ListOps' own `[task]` keys.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// How to generate the data into `data_dir` when its files are missing. Its own seed, so runs
    /// with different training seeds share one data set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generate: Option<GenerateConfig>,
}

pub struct Listops;

impl Task for Listops {
    fn name(&self) -> &'static str {
        "listops"
    }
    fn summary(&self) -> &'static str {
        "ListOps: nested MAX/MIN/MED/SM expressions, 10 classes (generator built in)"
    }
    fn input(&self) -> InputLayout {
        InputLayout::Single
    }
    fn vocab_size(&self, _: &toml::Table) -> Result<usize> {
        Ok(listops::VOCAB.len())
    }
    fn objective(&self) -> Objective {
        Objective::Classification {
            classes: listops::NUM_CLASSES,
        }
    }
    fn published(&self) -> Option<PublishedColumn> {
        Some(PublishedColumn {
            file: "lra.csv",
            column: "listops",
        })
    }
    fn resolve_settings(&self, settings: &toml::Table) -> Result<toml::Table> {
        settings::resolve::<Settings>(self.name(), settings)
    }
    fn fetch_hint(&self, set: &DataSet) -> String {
        let root = set.root.display();
        format!(
            "Next: `lra data generate listops --out {root}` makes a set the size of the release \
             (96,000 / 2,000 / 2,000 expressions, about 15 s), or a [task.generate] section \
             makes one on first use; to try the harness first, `lra run --task listops --preset \
             tiny` trains on a small generated set in a few minutes"
        )
    }
    fn read(&self, set: &DataSet, _: OnProblem) -> Result<TaskData> {
        let root = &set.root;
        Ok(listops::load(&LAYOUT.locate(root)?)?)
    }
    fn generate_if_missing(&self, dir: &Path, settings: &toml::Table, quiet: bool) -> Result<()> {
        if LAYOUT.find(dir).is_some() {
            return Ok(());
        }
        let settings: Settings = settings::parse_settings(self.name(), settings)?;
        let Some(generate) = settings.generate else {
            return Ok(());
        };
        if !quiet {
            eprintln!(
                "generating ListOps data into {} ({} / {} / {} expressions, {}..{} tokens)",
                dir.display(),
                generate.train,
                generate.val,
                generate.test,
                generate.min_len,
                generate.max_len
            );
        }
        let splits = listops::generate(&generate).context("generating ListOps data")?;
        listops::write_dataset(dir, &splits)?;
        Ok(())
    }
}
