//! LRA "Retrieval": do two ACL Anthology Network papers cite each other? Byte-level document
//! pairs from the LRA release's `tsv_data/new_aan_pairs.{train,eval,test}.tsv`.
//!
//! Format (`lra_benchmarks/matching/input_pipeline.py`): tab-separated, no header, no quoting,
//! five columns `label, id1, id2, text1, text2`; the label is parsed as a float and cast to an
//! integer (0 or 1). Each text is cut to its first 10,000 bytes before byte-encoding (id = byte +
//! 1, as the text task), then each preset truncates every document to its `max_len` (4,000).

use std::path::Path;

use crate::error::{DataError, OnProblem, Result};
use crate::example::{Split, SplitBuilder, SplitData, TaskData};
use crate::layout::Layout;
use crate::lines::for_each_line;

/// Byte ids 1..=256 plus padding.
pub const VOCAB_SIZE: usize = 257;
/// Token id = byte + this.
pub const ID_OFFSET: u32 = 1;
/// Not linked / linked.
pub const NUM_CLASSES: usize = 2;
/// The LRA pipeline keeps this many bytes of each text (`s.numpy()[:10000]`).
pub const MAX_TEXT_BYTES: usize = 10_000;
/// Columns per line.
const FIELDS: usize = 5;

/// Where the TSV files are looked for.
pub const LAYOUT: Layout = Layout {
    task: "retrieval (AAN)",
    subdirs: &["", "tsv_data"],
    required: &[
        "new_aan_pairs.train.tsv",
        "new_aan_pairs.eval.tsv",
        "new_aan_pairs.test.tsv",
    ],
    source: "the LRA release https://storage.googleapis.com/long-range-arena/lra_release.gz \
             (lra_release/lra_release/tsv_data/)",
};

/// The file name of `split` (the release calls validation `eval`).
pub fn split_file(split: Split) -> &'static str {
    match split {
        Split::Train => "new_aan_pairs.train.tsv",
        Split::Val => "new_aan_pairs.eval.tsv",
        Split::Test => "new_aan_pairs.test.tsv",
    }
}

/// Reads the three splits under `root` (see [`LAYOUT`]).
pub fn load(root: &Path, mut on_problem: OnProblem) -> Result<TaskData> {
    let dir = LAYOUT.locate(root)?;
    let mut read = |split| read_split(&dir.join(split_file(split)), &mut on_problem);
    Ok(TaskData {
        train: read(Split::Train)?,
        val: read(Split::Val)?,
        test: read(Split::Test)?,
        vocab_size: VOCAB_SIZE,
        num_classes: NUM_CLASSES,
        extra: Vec::new(),
    })
}

/// Reads one TSV file into pairs; a malformed line is a problem naming the file and line.
pub fn read_split(path: &Path, on_problem: &mut OnProblem) -> Result<SplitData> {
    let mut builder = SplitBuilder::new(2, ID_OFFSET);
    for_each_line(path, |line_number, line| match parse_line(line) {
        Ok((label, [first, second])) => {
            builder.push(&[first, second], label);
            Ok(())
        }
        Err(message) => on_problem.report(DataError::Parse {
            path: path.to_path_buf(),
            line: line_number,
            message,
        }),
    })?;
    Ok(builder.finish())
}

/// `label<TAB>id1<TAB>id2<TAB>text1<TAB>text2` → the label and the two texts (cut to
/// [`MAX_TEXT_BYTES`]).
fn parse_line(line: &[u8]) -> std::result::Result<(u32, [&[u8]; 2]), String> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
    let [label, _id1, _id2, first, second] = fields[..] else {
        return Err(format!(
            "expected {FIELDS} tab-separated fields (label, id1, id2, text1, text2), found {}",
            fields.len()
        ));
    };
    let label_text = String::from_utf8_lossy(label);
    let value: f64 = label_text
        .trim()
        .parse()
        .map_err(|_| format!("label `{}` is not a number", label_text.escape_debug()))?;
    // TF casts the float label to int32 (truncation); anything but 0 or 1 is out of range.
    let label = match value.trunc() {
        0.0 if value >= 0.0 => 0,
        1.0 => 1,
        _ => return Err(format!("label {value} is not a class 0 or 1")),
    };
    let first = &first[..first.len().min(MAX_TEXT_BYTES)];
    let second = &second[..second.len().min(MAX_TEXT_BYTES)];
    Ok((label, [first, second]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_as_floats_and_cuts_texts() {
        let long = vec![b'x'; MAX_TEXT_BYTES + 5];
        let mut line = b"1.0\tid-a\tid-b\t".to_vec();
        line.extend_from_slice(&long);
        line.extend_from_slice(b"\tshort");
        let (label, [first, second]) = parse_line(&line).unwrap();
        assert_eq!(label, 1);
        assert_eq!(first.len(), MAX_TEXT_BYTES);
        assert_eq!(second, b"short");
        assert_eq!(parse_line(b"0\ta\tb\tc\td").unwrap().0, 0);
    }

    #[test]
    fn rejects_bad_labels_and_field_counts() {
        assert!(
            parse_line(b"2\ta\tb\tc\td")
                .unwrap_err()
                .contains("label 2")
        );
        assert!(
            parse_line(b"-1\ta\tb\tc\td")
                .unwrap_err()
                .contains("label -1")
        );
        assert!(
            parse_line(b"yes\ta\tb\tc\td")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(parse_line(b"1\ta\tb\tc").unwrap_err().contains("found 4"));
    }
}
