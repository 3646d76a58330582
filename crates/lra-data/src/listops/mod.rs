//! ListOps (LRA): nested list operations on digits, classified by their value 0-9.
//!
//! Reproduces the official generator and file format of google-research/long-range-arena
//! (`lra_benchmarks/data/listops.py`) and its tokenizer, which drops the parentheses.

mod expr;
mod generate;
mod io;

pub use expr::{Expr, MAX_NESTING, Op};
pub use generate::{GenerateConfig, VALUE_P, generate};
pub use io::{HEADER, files_exist, load, read_split, split_file, write_dataset, write_split};

/// The token vocabulary; a token's id is its index. Id 0 is padding and never appears in a source.
pub const VOCAB: [&str; 16] = [
    "<pad>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "[MIN", "[MAX", "[MED", "[SM", "]",
];

/// Number of classes: the value of an expression is a digit.
pub const NUM_CLASSES: usize = 10;

/// Id of the digit `0`; digit `d` has id `DIGIT_ZERO_ID + d`.
const DIGIT_ZERO_ID: u32 = 1;
/// Id of the first operator token; the operators follow in the order of [`Op::ALL`].
const FIRST_OP_ID: u32 = 11;
/// Id of `]`, which closes an operator's argument list.
const END_ID: u32 = 15;

/// What a token id stands for.
enum Token {
    Digit(u8),
    Op(Op),
    End,
}

/// What `id` stands for; `None` for padding and ids outside the vocabulary.
fn token_of_id(id: u32) -> Option<Token> {
    match id {
        DIGIT_ZERO_ID..FIRST_OP_ID => Some(Token::Digit((id - DIGIT_ZERO_ID) as u8)),
        FIRST_OP_ID..END_ID => Some(Token::Op(Op::ALL[(id - FIRST_OP_ID) as usize])),
        END_ID => Some(Token::End),
        _ => None,
    }
}

/// The source's tokens with the byte offset each starts at. Parentheses separate tokens like
/// whitespace and are dropped, since the operators and `]` alone give the tree structure.
fn words(source: &str) -> impl Iterator<Item = (usize, &str)> {
    // Splitting the bytes at ASCII separators keeps every piece on a character boundary.
    let is_separator = |byte: &u8| byte.is_ascii_whitespace() || *byte == b'(' || *byte == b')';
    source
        .as_bytes()
        .split(is_separator)
        .filter(|word| !word.is_empty())
        .map(move |word| {
            let offset = word.as_ptr() as usize - source.as_ptr() as usize;
            (offset, &source[offset..offset + word.len()])
        })
}

/// 1-based character column of the token with 0-based index `token_index`, for error messages.
fn column_of_token(source: &str, token_index: usize) -> usize {
    let offset = words(source)
        .nth(token_index)
        .map_or(source.len(), |(offset, _)| offset);
    source[..offset].chars().count() + 1
}

/// The LRA ListOps tokenizer: drops `(` and `)`, splits on ASCII whitespace and maps each token
/// to its index in [`VOCAB`].
///
/// Fails on a token outside the vocabulary (including `<pad>`, which is no source token), naming
/// the token and its 1-based column.
pub fn tokenize(source: &str) -> std::result::Result<Vec<u32>, String> {
    words(source)
        .map(|(offset, word)| {
            id_of_token(word).ok_or_else(|| {
                let column = source[..offset].chars().count() + 1;
                format!("unknown token `{word}` at column {column}")
            })
        })
        .collect()
}

/// The id of a source token: its index in [`VOCAB`], spelled out as a match for speed.
fn id_of_token(word: &str) -> Option<u32> {
    match word.as_bytes() {
        [digit @ b'0'..=b'9'] => Some(DIGIT_ZERO_ID + u32::from(digit - b'0')),
        b"[MIN" => Some(FIRST_OP_ID),
        b"[MAX" => Some(FIRST_OP_ID + 1),
        b"[MED" => Some(FIRST_OP_ID + 2),
        b"[SM" => Some(FIRST_OP_ID + 3),
        b"]" => Some(END_ID),
        _ => None,
    }
}

/// Parses an LRA ListOps source string, such as a line's `Source` field, into an [`Expr`].
///
/// Parentheses are ignored, as the tokenizer drops them; the remaining tokens are read in prefix
/// order: an operator, its arguments, then `]`. Errors name the unexpected token and its 1-based
/// column, e.g. "unexpected `]` at column 17: no operator is open".
pub fn parse(source: &str) -> std::result::Result<Expr, String> {
    let ids = tokenize(source)?;
    expr::from_ids(ids).map_err(|error| error.describe(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_vocab_indices() {
        for (id, token) in VOCAB.iter().enumerate().skip(1) {
            assert_eq!(id_of_token(token), Some(id as u32), "{token}");
        }
        assert_eq!(id_of_token(VOCAB[0]), None);
        for (index, op) in Op::ALL.into_iter().enumerate() {
            assert_eq!(VOCAB[FIRST_OP_ID as usize + index], op.token());
        }
        assert_eq!(VOCAB[END_ID as usize], "]");
    }
}
