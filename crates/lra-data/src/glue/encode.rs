//! GLUE examples → a compact split of word-piece ids with token types, through a checkpoint's
//! tokenizer: `[CLS] a [SEP] b [SEP]` (BERT) or `<s> a </s></s> b </s>` (RoBERTa), pairs cut
//! "longest first" to the model's length, ids stored in the narrowest width that holds the
//! tokenizer's vocabulary.

use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::example::{LabelKind, SplitBuilder, SplitData, SplitFormat, TokenWidth};
use crate::glue::data::GlueSplitData;
use crate::tokenizer::{Encoded, PretrainedTokenizer};

/// Encodes every example of `split` to at most `max_len` ids (in parallel: tokenizing MNLI's
/// 393k pairs is the slow part of loading it). Test splits become unlabelled splits; a labelled
/// split with an example missing its label is an error naming the file and record.
pub fn encode_split(
    split: &GlueSplitData,
    tokenizer: &PretrainedTokenizer,
    max_len: usize,
) -> Result<SplitData> {
    let encoded: Vec<Encoded> = split
        .examples
        .par_iter()
        .map(|example| tokenizer.encode(&example.text_a, example.text_b.as_deref(), max_len))
        .collect::<Result<_>>()?;
    let labels = if split.split.is_test() {
        LabelKind::Unlabelled
    } else if split.task.is_regression() {
        LabelKind::Scores
    } else {
        LabelKind::Classes
    };
    let mut builder = SplitBuilder::with_format(SplitFormat {
        docs_per_example: 1,
        id_offset: 0,
        width: TokenWidth::for_vocab(tokenizer.vocab_size(), 0),
        labels,
        token_types: true,
    });
    for (record, (example, encoding)) in split.examples.iter().zip(&encoded).enumerate() {
        let target = match labels {
            LabelKind::Unlabelled => None,
            _ => Some(example.target.ok_or_else(|| DataError::Record {
                path: split.path.clone(),
                record,
                message: "no label in a labelled split".into(),
            })?),
        };
        builder
            .push_ids(&[&encoding.ids], Some(&encoding.type_ids), target)
            .map_err(|message| DataError::Record {
                path: split.path.clone(),
                record,
                message,
            })?;
    }
    Ok(builder.finish())
}
