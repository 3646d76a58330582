//! Pretraining text: plain-text files (documents separated by blank lines) and JSON-lines files
//! (one object per line with a string `text`), tokenized by a checkpoint's tokenizer and packed
//! across document boundaries into full-length sequences, RoBERTa's "full sentences" style
//! ([`pack`]): `[CLS] doc₁ [SEP] doc₂ … [SEP]`, each sequence `max_len` ids (one fewer where a
//! document's separator ends it) except the last; or, BERT style, into segment pairs within a
//! document, with sentence-order labels ([`segment_pairs`]).

pub mod segment_pairs;

use std::path::Path;

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::example::{LabelKind, SplitBuilder, SplitData, SplitFormat, TokenWidth};
use crate::lines::for_each_line;
use crate::tokenizer::PretrainedTokenizer;

/// The documents of `path`: `*.jsonl` / `*.json` files hold one `{"text": …}` object a line,
/// other files plain text with documents separated by blank lines. Errors name file and line.
pub fn read_documents(path: &Path) -> Result<Vec<String>> {
    let json_lines = path
        .extension()
        .is_some_and(|ext| ext == "jsonl" || ext == "json");
    let mut documents = Vec::new();
    let mut current = String::new();
    for_each_line(path, |line_number, bytes| {
        let line = std::str::from_utf8(bytes).map_err(|_| DataError::Parse {
            path: path.to_path_buf(),
            line: line_number,
            message: "not UTF-8 text".into(),
        })?;
        if json_lines {
            if !line.trim().is_empty() {
                documents.push(json_text(path, line_number, line)?);
            }
        } else if line.trim().is_empty() {
            if !current.is_empty() {
                documents.push(std::mem::take(&mut current));
            }
        } else {
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(line);
        }
        Ok(())
    })?;
    if !current.is_empty() {
        documents.push(current);
    }
    Ok(documents)
}

fn json_text(path: &Path, line: usize, text: &str) -> Result<String> {
    let parse_error = |message: String| DataError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| parse_error(format!("not a JSON object: {e}")))?;
    match value.get("text") {
        Some(serde_json::Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(parse_error("`text` is not a string".into())),
        None => Err(parse_error("no `text` field".into())),
    }
}

/// Tokenizes `documents` (in parallel) and packs them into sequences of at most `max_len` ids,
/// stored as an unlabelled split.
pub fn pack(
    documents: &[String],
    tokenizer: &PretrainedTokenizer,
    max_len: usize,
) -> Result<SplitData> {
    if max_len < 3 {
        return Err(DataError::Invalid(format!(
            "max_len {max_len} leaves no room for text between the two special tokens"
        )));
    }
    let tokenized: Vec<Vec<u32>> = documents
        .par_iter()
        .map(|text| tokenizer.text_ids(text))
        .collect::<Result<_>>()?;
    let special = tokenizer.special_tokens();
    let mut builder = SplitBuilder::with_format(SplitFormat {
        docs_per_example: 1,
        id_offset: 0,
        width: TokenWidth::for_vocab(tokenizer.vocab_size(), 0),
        labels: LabelKind::Unlabelled,
        token_types: false,
    });
    let mut sequence = vec![special.cls];
    let mut flush = |sequence: &mut Vec<u32>| -> Result<()> {
        if sequence.len() > 1 {
            if sequence.last() != Some(&special.sep) {
                sequence.push(special.sep);
            }
            builder
                .push_ids(&[sequence], None, None)
                .map_err(DataError::Invalid)?;
        }
        sequence.truncate(1);
        Ok(())
    };
    for ids in tokenized {
        // Each document is followed by a separator, as if it ended a sequence.
        for id in ids.into_iter().chain(std::iter::once(special.sep)) {
            if sequence.len() == max_len - 1 {
                flush(&mut sequence)?;
            }
            if !(id == special.sep && sequence.len() == 1) {
                sequence.push(id);
            }
        }
    }
    flush(&mut sequence)?;
    Ok(builder.finish())
}
