//! Reader of the official GLUE TSV files (`glue_data/<Task>/*.tsv`): tab-separated, UTF-8, no
//! quoting (MNLI, SST-2 and QQP texts hold `"` characters; the reference readers use
//! `csv.reader(f, delimiter="\t", quotechar=None)`), one record per `\n`-terminated line.

use std::path::Path;

use crate::error::{DataError, OnProblem, Result};
use crate::glue::data::{GlueExample, Target};
use crate::glue::task::{LabelColumn, ShortLines, SplitSpec, TargetSpec, TaskSpec, TsvFormat};
use crate::lines::for_each_line;

/// The examples of one TSV file and the short lines skipped (QQP only).
#[derive(Debug)]
pub struct TsvRecords {
    /// One per well-formed data line, in file order.
    pub examples: Vec<GlueExample>,
    /// Lines with too few fields that the format says to skip.
    pub skipped_short_lines: usize,
}

/// What one data line turned into.
enum Line {
    Example(GlueExample),
    Short,
}

/// Reads `path`, laid out as `split.tsv`, for `task`. A malformed line is a problem naming the file
/// and line; a short line of a format that skips them is counted instead.
pub fn read_tsv(
    path: &Path,
    task: &TaskSpec,
    split: &SplitSpec,
    on_problem: &mut OnProblem,
) -> Result<TsvRecords> {
    let format = split.tsv;
    let mut records = TsvRecords {
        examples: Vec::new(),
        skipped_short_lines: 0,
    };
    for_each_line(path, |line_number, line| {
        let parsed = if format.has_header && line_number == 1 {
            check_header(line, format).map(|()| None)
        } else {
            let row = line_number - 1 - usize::from(format.has_header);
            parse_line(line, row, format, task).map(Some)
        };
        match parsed {
            Ok(Some(Line::Example(example))) => records.examples.push(example),
            Ok(Some(Line::Short)) => records.skipped_short_lines += 1,
            Ok(None) => {}
            Err(message) => on_problem.report(DataError::Parse {
                path: path.to_path_buf(),
                line: line_number,
                message,
            })?,
        }
        Ok(())
    })?;
    Ok(records)
}

/// The header must start with the format's first column name (after a UTF-8 byte order mark,
/// which MRPC's files inherit from the MSR sources): a file without its header, or another
/// task's file, is caught here instead of losing its first example.
fn check_header(line: &[u8], format: &TsvFormat) -> std::result::Result<(), String> {
    let line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
    let first = line.split(|&b| b == b'\t').next().unwrap_or_default();
    if first == format.columns[0].as_bytes() {
        return Ok(());
    }
    Err(format!(
        "expected a header line starting with `{}` (columns {}), found `{}`",
        format.columns[0],
        format.columns.join(", "),
        String::from_utf8_lossy(first).escape_debug()
    ))
}

/// One data line (`row` = its position among the data lines, from 0) → an example.
fn parse_line(
    line: &[u8],
    row: usize,
    format: &TsvFormat,
    task: &TaskSpec,
) -> std::result::Result<Line, String> {
    let line =
        std::str::from_utf8(line).map_err(|error| format!("the line is not UTF-8: {error}"))?;
    let fields: Vec<&str> = line.split('\t').collect();
    if fields.len() < format.min_fields() {
        if format.short_lines == ShortLines::Skip {
            return Ok(Line::Short);
        }
        return Err(format!(
            "expected at least {} tab-separated fields ({}), found {}",
            format.min_fields(),
            format.columns.join(", "),
            fields.len()
        ));
    }
    let index = match format.index {
        Some(column) => parse_index(fields[column])?,
        None => u32::try_from(row).map_err(|_| format!("row {row} is past u32 indices"))?,
    };
    let target = match format.label {
        Some(LabelColumn::At(column)) => Some(parse_label(fields[column], task)?),
        Some(LabelColumn::Last) => Some(parse_label(fields[fields.len() - 1], task)?),
        None => None,
    };
    Ok(Line::Example(GlueExample {
        index,
        text_a: fields[format.text_a].to_owned(),
        text_b: format.text_b.map(|column| fields[column].to_owned()),
        target,
    }))
}

fn parse_index(field: &str) -> std::result::Result<u32, String> {
    field.parse().map_err(|_| {
        format!(
            "index `{}` is not a non-negative integer",
            field.escape_debug()
        )
    })
}

/// A label string → its canonical class id, or an STS-B score.
fn parse_label(field: &str, task: &TaskSpec) -> std::result::Result<Target, String> {
    match task.target {
        TargetSpec::Classes { labels, .. } => labels
            .iter()
            .position(|label| *label == field)
            .map(|class| Target::Class(class as u32))
            .ok_or_else(|| {
                format!(
                    "label `{}` is not one of {}",
                    field.escape_debug(),
                    labels.join(", ")
                )
            }),
        TargetSpec::Score => parse_score(field),
    }
}

/// An STS-B similarity in `[0, 5]` (written `3.800`).
fn parse_score(field: &str) -> std::result::Result<Target, String> {
    match field.parse::<f32>() {
        Ok(score) if (0.0..=5.0).contains(&score) => Ok(Target::Score(score)),
        _ => Err(format!(
            "score `{}` is not a number in [0, 5]",
            field.escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glue::GlueTask;

    fn parse(task: GlueTask, split: usize, line: &str) -> std::result::Result<Line, String> {
        let spec = task.spec();
        parse_line(line.as_bytes(), 7, spec.splits[split].tsv, spec)
    }

    fn example(line: std::result::Result<Line, String>) -> GlueExample {
        match line {
            Ok(Line::Example(example)) => example,
            Ok(Line::Short) => panic!("skipped as short"),
            Err(message) => panic!("{message}"),
        }
    }

    #[test]
    fn reads_columns_of_each_format() {
        let cola = example(parse(GlueTask::Cola, 0, "gj04\t0\t*\tThey drank the pub."));
        assert_eq!(
            (cola.index, cola.text_a.as_str(), cola.text_b, cola.target),
            (7, "They drank the pub.", None, Some(Target::Class(0)))
        );
        let line = "5\tg\tf\ty\to\ts1\ts2\tA plane.\tAn air plane.\t3.800";
        let stsb = example(parse(GlueTask::Stsb, 0, line));
        assert_eq!((stsb.index, stsb.target), (5, Some(Target::Score(3.8))));
        assert_eq!(stsb.text_b.as_deref(), Some("An air plane."));
        // MNLI's gold label is the last field whatever the number of annotator labels.
        let mut dev = vec!["3"; 10];
        dev.extend(["neutral", "neutral", "x", "x", "x", "contradiction"]);
        let mnli = example(parse(GlueTask::Mnli, 1, &dev.join("\t")));
        assert_eq!((mnli.index, mnli.target), (3, Some(Target::Class(2))));
    }

    #[test]
    fn keeps_trailing_spaces_and_quotes() {
        let sst = example(parse(GlueTask::Sst2, 0, "\"a film \" , really \t1"));
        assert_eq!(sst.text_a, "\"a film \" , really ");
    }

    #[test]
    fn names_what_was_expected() {
        let short = parse(GlueTask::Rte, 0, "0\tonly one text").err().unwrap();
        assert!(
            short.contains("at least 4") && short.contains("found 2"),
            "{short}"
        );
        let label = parse(GlueTask::Qnli, 0, "0\tq\ts\tneutral").err().unwrap();
        assert!(label.contains("entailment, not_entailment"), "{label}");
        let score = parse(GlueTask::Stsb, 0, &["1"; 9].join("\t"))
            .err()
            .unwrap();
        assert!(score.contains("at least 10"), "{score}");
        let out_of_range = format!("{}\t5.5", ["1"; 9].join("\t"));
        let score = parse(GlueTask::Stsb, 0, &out_of_range).err().unwrap();
        assert!(score.contains("score `5.5`"), "{score}");
        let index = parse(GlueTask::Wnli, 2, "x1\ta\tb").err().unwrap();
        assert!(index.contains("index `x1`"), "{index}");
        assert!(matches!(
            parse(GlueTask::Qqp, 0, "1\t2\t3\tq"),
            Ok(Line::Short)
        ));
    }
}
