//! Loads a task's data: from its prepared cache (`lra data prepare`) when there is one, otherwise
//! from the official-format files, generating synthetic data when the config says how and the
//! files are missing. Adding a task = one reader in `lra-data` + one arm in [`read_raw`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lra_data::layout::Layout;
use lra_data::{OnProblem, TaskData, cache, image, listops, pathfinder, retrieval, text};

use crate::config::{TaskConfig, TaskName};

/// Where the ListOps files are looked for (the release keeps them in `listops-1000/`).
pub const LISTOPS_LAYOUT: Layout = Layout {
    task: "listops",
    subdirs: &["", "listops-1000"],
    required: &["basic_train.tsv", "basic_val.tsv", "basic_test.tsv"],
    source: "the LRA release https://storage.googleapis.com/long-range-arena/lra_release.gz \
             (lra_release/listops-1000/), or generate them: `lra data generate listops --out DIR` \
             or a [task.generate] section",
};

/// Which data set of a task: the task and, for the Pathfinder tasks, the difficulty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataSet {
    pub task: TaskName,
    /// Pathfinder contour length; `None` = the paper's sets (14).
    pub contour_length: Option<u32>,
}

impl DataSet {
    /// The data set a task config names.
    pub fn of(task: &TaskConfig) -> Self {
        Self {
            task: task.name,
            contour_length: task.contour_length,
        }
    }

    /// The Pathfinder set, for the Pathfinder tasks.
    pub fn pathfinder_variant(self) -> Option<pathfinder::Variant> {
        let mut variant = self.task.pathfinder_variant()?;
        if let Some(length) = self.contour_length {
            variant.contour_length = length;
        }
        Some(variant)
    }

    /// Name of the prepared cache: the task, plus the difficulty for Pathfinder (`pathx-cl14`).
    pub fn cache_name(self) -> String {
        match self.pathfinder_variant() {
            Some(variant) => format!("{}-cl{}", self.task, variant.contour_length),
            None => self.task.name().to_string(),
        }
    }
}

/// Reads (or first generates) the task's train/val/test splits.
pub fn load(task: &TaskConfig, quiet: bool) -> Result<TaskData> {
    let set = DataSet::of(task);
    let cache_dir = cache_dir(set, &task.data_dir);
    if cache::exists(&cache_dir) {
        return cache::read(&cache_dir, &set.cache_name())
            .with_context(|| format!("loading the prepared {} cache", task.name));
    }
    if task.name == TaskName::Listops && LISTOPS_LAYOUT.find(&task.data_dir).is_none() {
        generate_listops(task, quiet)?;
    }
    read_raw(set, &task.data_dir, OnProblem::Fail).with_context(|| {
        format!(
            "loading {} data from {}",
            task.name,
            task.data_dir.display()
        )
    })
}

/// The cache folder `lra data prepare` writes for `set` under `data_dir`.
pub fn cache_dir(set: DataSet, data_dir: &Path) -> PathBuf {
    cache::cache_dir(data_dir, &set.cache_name())
}

/// Reads a task's official-format files under `root` (which may be the top of the LRA release).
pub fn read_raw(set: DataSet, root: &Path, on_problem: OnProblem) -> Result<TaskData> {
    Ok(match set.task {
        TaskName::Listops => listops::load(&LISTOPS_LAYOUT.locate(root)?)?,
        TaskName::Text => text::load(root, on_problem)?,
        TaskName::Retrieval => retrieval::load(root, on_problem)?,
        TaskName::Image => image::load(root, on_problem)?,
        TaskName::Pathfinder | TaskName::Pathx | TaskName::Path256 => {
            let variant = set.pathfinder_variant().expect("a Pathfinder task");
            pathfinder::load_task(root, variant)?
        }
    })
}

fn generate_listops(task: &TaskConfig, quiet: bool) -> Result<()> {
    let dir = &task.data_dir;
    let Some(generate) = &task.generate else {
        bail!(
            "{}\n(or add a [task.generate] section to generate them)",
            LISTOPS_LAYOUT
                .locate(dir)
                .expect_err("no ListOps files were found")
        );
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
    let splits = listops::generate(generate).context("generating ListOps data")?;
    listops::write_dataset(dir, &splits)?;
    Ok(())
}
