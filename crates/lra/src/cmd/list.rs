//! `lra list`: every registered mixer with its summary and config keys (with defaults), and
//! every registered task with its input layout, objective and metrics.

use lra_model::MixerKind;

use crate::objective::Objective;
use crate::task::{InputLayout, TASKS};

/// The listing as text: mixers, then tasks.
pub fn render() -> String {
    let mut out = String::from("Mixers (--attention):\n");
    for kind in MixerKind::ALL {
        let caps = kind.default_config().caps();
        let exact = if caps.exact_softmax { "  [exact]" } else { "" };
        out.push_str(&format!("{:<12} {}{exact}\n", kind.name(), kind.summary()));
        let table = kind.default_config().to_table();
        if table.is_empty() {
            out.push_str(&format!("{:<12}   (no settings)\n", ""));
        }
        for (key, value) in &table {
            out.push_str(&format!("{:<12}   mixer.{key} = {value}\n", ""));
        }
    }
    out.push_str("\nTasks (--task):\n");
    for task in TASKS {
        out.push_str(&format!("{:<12} {}\n", task.name(), task.summary()));
        let input = match task.input() {
            InputLayout::Single => "one sequence",
            InputLayout::DualEncoder => "document pairs, dual encoder",
        };
        let objective = match task.objective() {
            Objective::Classification { classes } => format!("{classes}-class classification"),
            Objective::Regression => "regression (MSE)".to_string(),
        };
        let metrics: Vec<String> = task
            .metrics()
            .iter()
            .map(|m| {
                if *m == task.selection_metric() {
                    format!("{m} (selects the best checkpoint)")
                } else {
                    m.to_string()
                }
            })
            .collect();
        out.push_str(&format!(
            "{:<12}   {input}; {objective}; metrics: {}\n",
            "",
            metrics.join(", ")
        ));
    }
    out
}
