//! `lra list`: every registered mixer with its summary and settings (with defaults), every
//! registered task with its input layout, objective and metrics, every preset and pretraining
//! preset with what it is for; as text or, for scripts, as JSON (`--format json`).

use clap::{Args, ValueEnum};
use lra_model::MixerKind;
use serde::Serialize;
use std::path::Path;

use crate::cmd::pretrain::settings as pretrain;
use crate::config::{list_presets, preset_path};
use crate::objective::Objective;
use crate::task::{InputLayout, TASKS};

/// Options of `lra list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// `text` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Output format of `lra list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Everything `lra list` shows.
#[derive(Debug, Serialize)]
pub struct Listing {
    pub mixers: Vec<MixerEntry>,
    pub tasks: Vec<TaskEntry>,
    pub presets: Vec<PresetEntry>,
    /// `lra pretrain --preset` names (`experiments/pretrain/`).
    pub pretraining_presets: Vec<PresetEntry>,
}

#[derive(Debug, Serialize)]
pub struct MixerEntry {
    pub name: &'static str,
    pub summary: &'static str,
    pub exact_softmax: bool,
    /// `[mixer]` keys with their defaults.
    pub settings: toml::Table,
}

#[derive(Debug, Serialize)]
pub struct TaskEntry {
    pub name: &'static str,
    pub summary: &'static str,
    pub input: &'static str,
    pub objective: String,
    pub metrics: Vec<&'static str>,
    pub selection_metric: &'static str,
}

#[derive(Debug, Serialize)]
pub struct PresetEntry {
    pub name: String,
    /// The task the preset trains, when its file parses.
    pub task: Option<String>,
    /// The preset file's leading comment.
    pub description: String,
}

/// Collects the listing from the registries and the preset folders.
pub fn listing() -> Listing {
    Listing {
        mixers: MixerKind::ALL
            .iter()
            .map(|&kind| mixer_entry(kind))
            .collect(),
        tasks: TASKS.iter().map(|task| task_entry(*task)).collect(),
        presets: list_presets()
            .into_iter()
            .map(|name| {
                let path = preset_path(&name);
                preset_entry(name, path.as_deref())
            })
            .collect(),
        pretraining_presets: pretrain::list_presets()
            .into_iter()
            .map(|name| {
                let path = pretrain::preset_file(&name);
                preset_entry(name, path.as_deref())
            })
            .collect(),
    }
}

fn mixer_entry(kind: MixerKind) -> MixerEntry {
    let config = kind.default_config();
    MixerEntry {
        name: kind.name(),
        summary: kind.summary(),
        exact_softmax: config.caps().exact_softmax,
        settings: config.to_table(),
    }
}

fn task_entry(task: &dyn crate::task::Task) -> TaskEntry {
    TaskEntry {
        name: task.name(),
        summary: task.summary(),
        input: match task.input() {
            InputLayout::Single => "one sequence",
            InputLayout::DualEncoder => "document pairs, dual encoder",
            InputLayout::Tokenized => "tokenized text (pairs joined), token types",
        },
        objective: match task.objective() {
            Objective::Classification { classes } => format!("{classes}-class classification"),
            Objective::Regression => "regression (MSE)".to_string(),
        },
        metrics: task.metrics().iter().map(|m| m.name()).collect(),
        selection_metric: task.selection_metric().name(),
    }
}

/// A preset's name, task and leading comment, read from `path` (`None`: nothing to read).
fn preset_entry(name: String, path: Option<&Path>) -> PresetEntry {
    let text = path
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let description: Vec<&str> = text
        .lines()
        .map_while(|line| line.strip_prefix('#'))
        .map(str::trim)
        .collect();
    let task = toml::from_str::<toml::Table>(&text).ok().and_then(|table| {
        let name = table.get("task")?.get("name")?.as_str()?;
        Some(name.to_string())
    });
    PresetEntry {
        name,
        task,
        description: description.join(" "),
    }
}

/// The listing in `format`.
pub fn render(format: Format) -> String {
    let listing = listing();
    match format {
        Format::Json => {
            serde_json::to_string_pretty(&listing).expect("the listing serialises") + "\n"
        }
        Format::Text => render_text(&listing),
    }
}

fn render_text(listing: &Listing) -> String {
    let mut out = String::from("Mixers (--attention):\n");
    for mixer in &listing.mixers {
        let exact = if mixer.exact_softmax { "  [exact]" } else { "" };
        out.push_str(&format!("{:<12} {}{exact}\n", mixer.name, mixer.summary));
        if mixer.settings.is_empty() {
            out.push_str(&format!("{:<12}   (no settings)\n", ""));
        }
        for (key, value) in &mixer.settings {
            out.push_str(&format!("{:<12}   mixer.{key} = {value}\n", ""));
        }
    }
    out.push_str("\nTasks (--task):\n");
    for task in &listing.tasks {
        out.push_str(&format!("{:<12} {}\n", task.name, task.summary));
        let metrics: Vec<String> = task
            .metrics
            .iter()
            .map(|&m| {
                if m == task.selection_metric {
                    format!("{m} (selects the best checkpoint)")
                } else {
                    m.to_string()
                }
            })
            .collect();
        out.push_str(&format!(
            "{:<12}   {}; {}; metrics: {}\n",
            "",
            task.input,
            task.objective,
            metrics.join(", ")
        ));
    }
    out.push_str("\nPresets (--preset):\n");
    for preset in &listing.presets {
        let task = preset.task.as_deref().unwrap_or("?");
        let gist = headline(&preset.description);
        out.push_str(&format!("{:<24} [{task}] {gist}\n", preset.name));
    }
    out.push_str("\nPretraining presets (lra pretrain --preset):\n");
    for preset in &listing.pretraining_presets {
        let gist = headline(&preset.description);
        out.push_str(&format!("{:<24} {gist}\n", preset.name));
    }
    out
}

/// A description's first clause (up to its first `: ` or `. `), at most 100 characters; the
/// whole text is in `--format json`.
fn headline(description: &str) -> String {
    let end = [": ", ". "]
        .iter()
        .filter_map(|stop| description.find(stop))
        .min()
        .unwrap_or(description.len());
    let clause = &description[..end];
    match clause.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &clause[..cut]),
        None => clause.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_listing_shows_a_presets_first_clause() {
        assert_eq!(
            headline("ListOps in the PyTorch LRA regime: dim 64, 2 layers. More."),
            "ListOps in the PyTorch LRA regime"
        );
        assert_eq!(headline("Small run. Learns fast."), "Small run");
        let long = "x".repeat(150);
        assert_eq!(headline(&long), format!("{}…", "x".repeat(100)));
    }
}
