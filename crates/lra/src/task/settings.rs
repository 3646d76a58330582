//! Strict parsing of a task's own `[task]` keys, as strict as mixer configs: an unknown or
//! misspelt key is an error naming it and the valid ones.

use anyhow::{Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::suggest::explain_unknown;

/// Parses `settings` into the task's typed settings `T` (`deny_unknown_fields`).
pub fn parse_settings<T: DeserializeOwned>(task: &str, settings: &toml::Table) -> Result<T> {
    serde_path_to_error::deserialize(toml::Value::Table(settings.clone())).map_err(|e| {
        let path = e.path().to_string();
        let place = if path == "." {
            "task".to_string()
        } else {
            format!("task.{path}")
        };
        let message = explain_unknown(e.inner().message());
        anyhow!("{place} (settings of task {task}): {message}")
    })
}

/// The typed settings back as a table, defaults included.
pub fn to_table<T: Serialize>(settings: &T) -> toml::Table {
    match toml::Value::try_from(settings).expect("task settings serialise to TOML") {
        toml::Value::Table(table) => table,
        other => unreachable!("settings serialised to {other:?}"),
    }
}

/// Parses and re-serialises: the settings with every default filled in.
pub fn resolve<T: DeserializeOwned + Serialize>(
    task: &str,
    settings: &toml::Table,
) -> Result<toml::Table> {
    Ok(to_table(&parse_settings::<T>(task, settings)?))
}

/// Settings of tasks that have none: any key is an error.
#[derive(Debug, Default, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}
