//! Reader of the Hugging Face `nyu-mll/glue` parquet files: text columns (string), `label` (int64
//! ClassLabel id, or float32 score for STS-B; -1 on test splits) and `idx` (int32), read with the
//! `parquet` crate's row API (no Arrow).

use std::fs::File;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Row, RowAccessor};

use crate::error::{DataError, OnProblem, Result};
use crate::glue::data::{GlueExample, Target};
use crate::glue::task::{GlueSplit, TargetSpec, TaskSpec};

/// Positions of the columns read, in the file's schema.
struct Columns {
    text_a: usize,
    text_b: Option<usize>,
    label: usize,
    idx: usize,
}

/// Reads `path` (split `split` of `task`). File-level problems (not parquet, a missing column,
/// ClassLabel names in another order) are errors; a bad row is a problem naming its number.
pub fn read_parquet(
    path: &Path,
    task: &TaskSpec,
    split: GlueSplit,
    on_problem: &mut OnProblem,
) -> Result<Vec<GlueExample>> {
    let file_error = |message: String| DataError::File {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|source| DataError::io(path, source))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|error| file_error(format!("not a readable parquet file: {error}")))?;
    let columns = find_columns(&reader, task).map_err(file_error)?;
    check_label_names(&reader, task).map_err(file_error)?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|error| file_error(format!("cannot read rows: {error}")))?;
    let mut examples = Vec::new();
    for (record, row) in rows.enumerate() {
        let problem = |message| DataError::Record {
            path: path.to_path_buf(),
            record,
            message,
        };
        // A row the decoder cannot produce means broken pages: the iterator may return the same
        // error forever, so reading stops there.
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                on_problem.report(problem(format!("cannot decode the row: {error}")))?;
                break;
            }
        };
        match parse_row(&row, &columns, task, split) {
            Ok(example) => examples.push(example),
            Err(message) => on_problem.report(problem(message))?,
        }
    }
    Ok(examples)
}

/// The `huggingface` schema metadata that `datasets` writes names the ClassLabel ids; when it is
/// there it must agree with the table, since ids are mapped by position.
fn check_label_names(
    reader: &SerializedFileReader<File>,
    task: &TaskSpec,
) -> std::result::Result<(), String> {
    let TargetSpec::Classes { hf_names, .. } = task.target else {
        return Ok(());
    };
    let metadata = reader.metadata().file_metadata().key_value_metadata();
    let Some(json) = metadata
        .into_iter()
        .flatten()
        .find(|entry| entry.key == "huggingface")
        .and_then(|entry| entry.value.as_deref())
    else {
        return Ok(());
    };
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|error| format!("`huggingface` metadata is not JSON: {error}"))?;
    let Some(names) = value.pointer("/info/features/label/names") else {
        return Ok(());
    };
    if *names == serde_json::json!(hf_names) {
        return Ok(());
    }
    Err(format!(
        "ClassLabel names {names} differ from {hf_names:?}, the order {} ids are mapped with",
        task.name
    ))
}

fn find_columns(
    reader: &SerializedFileReader<File>,
    task: &TaskSpec,
) -> std::result::Result<Columns, String> {
    let fields = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields();
    let names: Vec<&str> = fields.iter().map(|field| field.name()).collect();
    let find = |name: &str| {
        names.iter().position(|n| *n == name).ok_or_else(|| {
            format!(
                "no column `{name}` (a {} file has {}); its columns are {}",
                task.name,
                expected_columns(task),
                names.join(", ")
            )
        })
    };
    let (text_a, text_b) = task.hf_text_columns;
    Ok(Columns {
        text_a: find(text_a)?,
        text_b: text_b.map(find).transpose()?,
        label: find("label")?,
        idx: find("idx")?,
    })
}

fn expected_columns(task: &TaskSpec) -> String {
    let (text_a, text_b) = task.hf_text_columns;
    let texts = text_b.map_or(text_a.to_owned(), |b| format!("{text_a}, {b}"));
    format!("{texts}, label, idx")
}

fn parse_row(
    row: &Row,
    columns: &Columns,
    task: &TaskSpec,
    split: GlueSplit,
) -> std::result::Result<GlueExample, String> {
    let (name_a, name_b) = task.hf_text_columns;
    let text = |column: usize, name: &str| {
        row.get_string(column)
            .cloned()
            .map_err(|error| format!("column `{name}`: expected a string: {error}"))
    };
    let index = row
        .get_int(columns.idx)
        .map_err(|error| format!("column `idx`: expected an int32: {error}"))?;
    let target = parse_label(row, columns.label, task)?;
    if target.is_none() && !split.is_test() {
        return Err(format!("label -1 (none) in the labelled split {split}"));
    }
    Ok(GlueExample {
        index: u32::try_from(index).map_err(|_| format!("`idx` {index} is negative"))?,
        text_a: text(columns.text_a, name_a)?,
        text_b: match (columns.text_b, name_b) {
            (Some(column), Some(name)) => Some(text(column, name)?),
            _ => None,
        },
        target,
    })
}

/// An HF label → the canonical target; -1 (test splits) → `None`.
fn parse_label(
    row: &Row,
    column: usize,
    task: &TaskSpec,
) -> std::result::Result<Option<Target>, String> {
    match task.target {
        TargetSpec::Classes {
            labels, hf_labels, ..
        } => {
            let id = row
                .get_long(column)
                .map_err(|error| format!("column `label`: expected an int64: {error}"))?;
            if id == -1 {
                return Ok(None);
            }
            let label = usize::try_from(id)
                .ok()
                .and_then(|id| hf_labels.get(id))
                .ok_or_else(|| {
                    format!(
                        "label {id} is not -1 or a class id 0..{}",
                        hf_labels.len() - 1
                    )
                })?;
            let class = labels
                .iter()
                .position(|l| l == label)
                .expect("every hf_labels entry is a canonical label (task table test)");
            Ok(Some(Target::Class(class as u32)))
        }
        TargetSpec::Score => {
            let score = row
                .get_float(column)
                .map_err(|error| format!("column `label`: expected a float32: {error}"))?;
            if score == -1.0 {
                Ok(None)
            } else if (0.0..=5.0).contains(&score) {
                Ok(Some(Target::Score(score)))
            } else {
                Err(format!("score {score} is not -1 or in [0, 5]"))
            }
        }
    }
}
