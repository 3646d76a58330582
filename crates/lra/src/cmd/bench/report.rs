//! Benchmark outputs: the CSV, a Markdown table with log-log slopes, the LRA efficiency layout,
//! and SVG charts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{BenchRow, EfficiencyFile};
use crate::plot::{Series, log_log_svg};
use crate::results::atomic_write;

/// `out` (CSV), `out.md` and, with more than one length, `out-time.svg` / `out-memory.svg`.
pub fn write_outputs(rows: &[BenchRow], out: &Path, extra_markdown: &str) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    atomic_write(out, &writer.into_inner()?)?;
    let markdown = format!("{extra_markdown}{}", markdown_table(rows));
    let md = out.with_extension("md");
    atomic_write(&md, markdown.as_bytes())?;
    let mut written = vec![out.to_path_buf(), md];
    let lengths = distinct(rows.iter().map(|r| r.seq_len));
    if lengths.len() > 1 {
        for (what, value, unit) in [
            (
                "time",
                (|r: &BenchRow| r.median_ms) as fn(&BenchRow) -> f64,
                "ms",
            ),
            ("memory", |r: &BenchRow| r.peak_mib, "peak MiB"),
        ] {
            let series = slope_series(rows, value);
            if series.iter().all(|s| s.points.iter().all(|p| p.1 <= 0.0)) {
                continue;
            }
            let title = format!("{} against sequence length ({} bench)", what, rows[0].bench);
            let svg = log_log_svg(&title, "sequence length n", unit, &series)?;
            let path = svg_path(out, what);
            atomic_write(&path, svg.as_bytes())?;
            written.push(path);
        }
    }
    eprint!("{markdown}");
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    eprintln!("wrote {}", names.join(", "));
    Ok(())
}

fn svg_path(out: &Path, what: &str) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}-{what}.svg"))
}

fn distinct<T: Ord>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = values.collect();
    v.sort();
    v.dedup();
    v
}

/// Row groups (method, mode) in first-seen order.
fn groups(rows: &[BenchRow]) -> Vec<Vec<&BenchRow>> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.attention.as_str(), r.mode)) {
            keys.push((r.attention.as_str(), r.mode));
        }
    }
    keys.into_iter()
        .map(|(a, m)| {
            rows.iter()
                .filter(|r| r.attention == a && r.mode == m)
                .collect()
        })
        .collect()
}

fn both_modes(rows: &[BenchRow]) -> bool {
    distinct(rows.iter().map(|r| r.mode)).len() > 1
}

/// Log-log slope of `value` against n over a group's rows; `None` with too few points.
fn slope(group: &[&BenchRow], value: fn(&BenchRow) -> f64) -> Option<f64> {
    let points: Vec<(f64, f64)> = group
        .iter()
        .filter(|r| value(r) > 0.0)
        .map(|r| ((r.seq_len as f64).ln(), value(r).ln()))
        .collect();
    fitted_slope(&points)
}

fn slope_series(rows: &[BenchRow], value: fn(&BenchRow) -> f64) -> Vec<Series> {
    let both = both_modes(rows);
    groups(rows)
        .into_iter()
        .map(|group| {
            let slope = slope(&group, value).map_or("—".into(), |s| format!("{s:.2}"));
            Series {
                label: format!("{}, slope {slope}", group[0].label(both)),
                points: group.iter().map(|r| (r.seq_len as f64, value(r))).collect(),
            }
        })
        .collect()
}

/// Time and memory per n for each method, with the log-log slopes (≈1 linear, ≈2 quadratic).
fn markdown_table(rows: &[BenchRow]) -> String {
    let lengths = distinct(rows.iter().map(|r| r.seq_len));
    let both = both_modes(rows);
    let header: Vec<String> = lengths.iter().map(|n| format!("n={n} ms / MiB")).collect();
    let mut out = format!(
        "| method | {} | time slope | memory slope |\n",
        header.join(" | ")
    );
    out.push_str(&format!("|---|{}---|---|\n", "---|".repeat(lengths.len())));
    for group in groups(rows) {
        let cells: Vec<String> = lengths
            .iter()
            .map(|&n| match group.iter().find(|r| r.seq_len == n) {
                Some(r) => format!("{:.1} / {:.1}", r.median_ms, r.peak_mib),
                None => "—".into(),
            })
            .collect();
        let show = |s: Option<f64>| s.map_or("—".into(), |s| format!("{s:.2}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            group[0].label(both),
            cells.join(" | "),
            show(slope(&group, |r| r.median_ms)),
            show(slope(&group, |r| r.peak_mib))
        ));
    }
    out
}

/// The LRA paper's efficiency layout, one table per mode: steps per second and peak memory at
/// each length, other methods with their ratio to the first (the baseline) in parentheses.
pub(super) fn efficiency_table(file: &EfficiencyFile, rows: &[BenchRow]) -> String {
    let lengths = distinct(rows.iter().map(|r| r.seq_len));
    let mut out = String::new();
    for mode in distinct(rows.iter().map(|r| r.mode)) {
        let what = if mode == "train" {
            "training steps (forward + backward + AdamW)"
        } else {
            "forward passes (inference)"
        };
        out.push_str(&format!(
            "### {what} per second and peak memory (MiB): preset {}, batch {}, device {}\n\n",
            file.preset, rows[0].batch, rows[0].device
        ));
        let n_labels: Vec<String> = lengths
            .iter()
            .map(|n| format!("{}K", *n as f64 / 1024.0))
            .collect();
        out.push_str(&format!(
            "| method | {} | {} |\n|---|{}\n",
            n_labels
                .iter()
                .map(|n| format!("steps/s {n}"))
                .collect::<Vec<_>>()
                .join(" | "),
            n_labels
                .iter()
                .map(|n| format!("MiB {n}"))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(2 * lengths.len())
        ));
        let find = |attention: &str, n: usize| {
            rows.iter()
                .find(|r| r.mode == mode && r.attention == attention && r.seq_len == n)
        };
        let baseline = &file.attention[0];
        for attention in &file.attention {
            let cell = |n: usize, value: fn(&BenchRow) -> f64, ratio_of: fn(f64, f64) -> f64| {
                let Some(row) = find(attention, n) else {
                    return "—".to_string();
                };
                let mine = value(row);
                match find(baseline, n) {
                    Some(base) if attention != baseline && value(base) > 0.0 => {
                        format!("{mine:.2} ({:.1}×)", ratio_of(mine, value(base)))
                    }
                    _ => format!("{mine:.2}"),
                }
            };
            let speed: Vec<String> = lengths
                .iter()
                .map(|&n| cell(n, |r| 1e3 / r.median_ms, |mine, base| mine / base))
                .collect();
            let memory: Vec<String> = lengths
                .iter()
                .map(|&n| cell(n, |r| r.peak_mib, |mine, base| mine / base))
                .collect();
            out.push_str(&format!(
                "| {attention} | {} | {} |\n",
                speed.join(" | "),
                memory.join(" | ")
            ));
        }
        out.push('\n');
    }
    out
}

/// Least-squares slope of y on x; `None` with fewer than two distinct x.
fn fitted_slope(points: &[(f64, f64)]) -> Option<f64> {
    let count = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / count;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_power_law_is_its_exponent() {
        let points: Vec<(f64, f64)> = [512.0f64, 1024.0, 4096.0]
            .iter()
            .map(|n| (n.ln(), (3.0 * n * n).ln()))
            .collect();
        assert!((fitted_slope(&points).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(fitted_slope(&points[..1]), None);
    }
}
