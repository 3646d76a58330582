//! Reading and writing ListOps data in the official LRA release's TSV format.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Expr, NUM_CLASSES, VOCAB, expr, tokenize};
use crate::error::{DataError, Result};
use crate::example::{Example, Split, SplitData, TaskData};
use crate::lines::for_each_line;

/// First line of every split file.
pub const HEADER: &str = "Source\tTarget";

/// Line ending of the release files, which Python's `csv.writer` wrote with its default `\r\n`.
const LINE_END: &str = "\r\n";

/// Path of `split`'s file in a ListOps data directory: `basic_train.tsv`, `basic_val.tsv` or
/// `basic_test.tsv`, the names of the official release.
pub fn split_file(dir: &Path, split: Split) -> PathBuf {
    dir.join(format!("basic_{}.tsv", split.name()))
}

/// Whether all three split files are present in `dir`.
pub fn files_exist(dir: &Path) -> bool {
    Split::ALL
        .iter()
        .all(|&split| split_file(dir, split).is_file())
}

/// Writes `exprs` as one split file in the release format: the header [`HEADER`], then one
/// `source<TAB>value` line per expression, lines ending in `\r\n` as in the release.
///
/// The file is written under a temporary name in the same directory and renamed into place, so
/// `path` never holds a partial file.
pub fn write_split(path: &Path, exprs: &[Expr]) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| DataError::Invalid(format!("{}: not a file path", path.display())))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp_path = path.with_file_name(temp_name);

    let written = write_lines(&temp_path, exprs)
        .and_then(|()| fs::rename(&temp_path, path).map_err(|source| DataError::io(path, source)));
    if written.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&temp_path);
    }
    written
}

fn write_lines(path: &Path, exprs: &[Expr]) -> Result<()> {
    let io_error = |source| DataError::io(path, source);
    let file = File::create(path).map_err(io_error)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write!(out, "{HEADER}{LINE_END}").map_err(io_error)?;
    let mut line = String::new();
    for tree in exprs {
        line.clear();
        tree.push_lra(&mut line);
        line.push('\t');
        line.push_str(&tree.value().to_string());
        line.push_str(LINE_END);
        out.write_all(line.as_bytes()).map_err(io_error)?;
    }
    let file = out
        .into_inner()
        .map_err(|error| io_error(error.into_error()))?;
    file.sync_all().map_err(io_error)
}

/// Writes `[train, val, test]` as the three split files (see [`split_file`]) into `dir`,
/// creating it if needed.
pub fn write_dataset(dir: &Path, exprs: &[Vec<Expr>; 3]) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| DataError::io(dir, source))?;
    for (split, split_exprs) in Split::ALL.into_iter().zip(exprs) {
        write_split(&split_file(dir, split), split_exprs)?;
    }
    Ok(())
}

/// Reads one split file of the release format, tokenizing each source with [`tokenize`].
///
/// Checks everything: the header, two tab-separated fields per line, known tokens, a well-formed
/// expression, a target 0-9 and that the target is the expression's value. Lines may end in
/// `\n` or `\r\n`. Any problem is a [`DataError::Parse`] naming the file and the 1-based line; a
/// file that cannot be opened or read is a [`DataError::Io`].
pub fn read_split(path: &Path) -> Result<Vec<Example>> {
    let parse_error = |line: usize, message: String| DataError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut examples = Vec::new();
    let lines = for_each_line(path, |line_number, bytes| {
        let line = std::str::from_utf8(bytes)
            .map_err(|error| parse_error(line_number, format!("not valid UTF-8: {error}")))?;
        if line_number == 1 && line != HEADER {
            return Err(parse_error(
                1,
                format!(
                    "expected the header `{}`, found `{}`",
                    HEADER.escape_debug(),
                    line.escape_debug()
                ),
            ));
        }
        if line_number == 1 {
            return Ok(());
        }
        let example = parse_line(line).map_err(|message| parse_error(line_number, message))?;
        examples.push(example);
        Ok(())
    })?;
    if lines == 0 {
        return Err(parse_error(
            1,
            format!(
                "expected the header `{}`, found an empty file",
                HEADER.escape_debug()
            ),
        ));
    }
    Ok(examples)
}

/// One `source<TAB>target` line, checked and tokenized.
fn parse_line(line: &str) -> std::result::Result<Example, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [source, target] = fields[..] else {
        return Err(format!(
            "expected 2 tab-separated fields (Source, Target), found {}",
            fields.len()
        ));
    };
    let label = match target.as_bytes() {
        [digit @ b'0'..=b'9'] => u32::from(digit - b'0'),
        _ => {
            return Err(format!(
                "target `{}` is not an integer 0-9",
                target.escape_debug()
            ));
        }
    };
    let tokens = tokenize(source)?;
    let value =
        expr::value_of_ids(tokens.iter().copied()).map_err(|error| error.describe(source))?;
    let value = u32::from(value);
    if value != label {
        return Err(format!(
            "label {label} does not match the expression's value {value}"
        ));
    }
    Ok(Example { tokens, label })
}

/// Reads the three split files of a ListOps data directory (see [`split_file`]).
pub fn load(dir: &Path) -> Result<TaskData> {
    let compact = |split| -> Result<SplitData> {
        let examples = read_split(&split_file(dir, split))?;
        SplitData::from_examples(&examples).map_err(DataError::Invalid)
    };
    Ok(TaskData {
        train: compact(Split::Train)?,
        val: compact(Split::Val)?,
        test: compact(Split::Test)?,
        vocab_size: VOCAB.len(),
        num_classes: NUM_CLASSES,
        extra: Vec::new(),
    })
}
