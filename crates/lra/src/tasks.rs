//! Loads a task's data from its official-format files, generating synthetic data when the config
//! says how and the files are missing.

use anyhow::{Context, Result, bail};
use lra_data::{TaskData, listops};

use crate::config::{TaskConfig, TaskName};

/// Reads (or first generates) the task's train/val/test splits.
pub fn load(task: &TaskConfig, quiet: bool) -> Result<TaskData> {
    match task.name {
        TaskName::Listops => load_listops(task, quiet),
    }
}

fn load_listops(task: &TaskConfig, quiet: bool) -> Result<TaskData> {
    let dir = &task.data_dir;
    if !listops::files_exist(dir) {
        let Some(generate) = &task.generate else {
            bail!(
                "no ListOps data in {}: expected basic_train.tsv, basic_val.tsv and basic_test.tsv \
                 (the LRA release's listops-1000 folder); point --data at them or add a \
                 [task.generate] section to generate them",
                dir.display()
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
    }
    listops::load(dir).with_context(|| format!("loading ListOps data from {}", dir.display()))
}
