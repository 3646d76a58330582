//! The tokenizer of a pretrained BERT or RoBERTa checkpoint folder, through Hugging Face's
//! `tokenizers` crate (pure-Rust build: `fancy-regex`, no Oniguruma).
//!
//! The folder's `tokenizer.json` is used when present. Otherwise the tokenizer is built the way
//! transformers builds it from the older files: BERT WordPiece from `vocab.txt` (lower-casing,
//! accent stripping and CJK splitting from `tokenizer_config.json`'s `do_lower_case`,
//! `strip_accents`, `tokenize_chinese_chars`; without that file `BertTokenizer`'s defaults, i.e.
//! uncased), or RoBERTa byte-level BPE from `vocab.json` + `merges.txt`. Pairs are encoded as the
//! checkpoint expects: `[CLS] a [SEP] b [SEP]` with type ids 0…0 1…1 for BERT, `<s> a </s></s>
//! b </s>` with type ids 0 for RoBERTa, cut "longest first" to the length asked for.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::ModelWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, Encoding, PostProcessor, Token, Tokenizer, TruncationParams, TruncationStrategy,
    truncate_encodings,
};

use crate::error::{DataError, Result};

/// The special tokens' names of one model family.
struct Family {
    pad: &'static str,
    unk: &'static str,
    cls: &'static str,
    sep: &'static str,
    mask: &'static str,
}

impl Family {
    fn names(&self) -> [&'static str; 5] {
        [self.pad, self.unk, self.cls, self.sep, self.mask]
    }
}

const BERT: Family = Family {
    pad: "[PAD]",
    unk: "[UNK]",
    cls: "[CLS]",
    sep: "[SEP]",
    mask: "[MASK]",
};
const ROBERTA: Family = Family {
    pad: "<pad>",
    unk: "<unk>",
    cls: "<s>",
    sep: "</s>",
    mask: "<mask>",
};

/// Ids of the special tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Padding (`[PAD]` / `<pad>`).
    pub pad: u32,
    /// Unknown word (`[UNK]` / `<unk>`).
    pub unk: u32,
    /// Sequence start / classification token (`[CLS]` / `<s>`).
    pub cls: u32,
    /// Separator and end (`[SEP]` / `</s>`).
    pub sep: u32,
    /// Masked-language-model mask (`[MASK]` / `<mask>`).
    pub mask: u32,
}

/// One encoded text or text pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment (token type) ids: 0 for the first text, 1 for the second (BERT); all 0 (RoBERTa).
    pub type_ids: Vec<u32>,
}

/// The settings of `tokenizer_config.json` that change how text is split (absent: model default).
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    do_lower_case: Option<bool>,
    strip_accents: Option<bool>,
    tokenize_chinese_chars: Option<bool>,
    add_prefix_space: Option<bool>,
}

/// The files of a checkpoint folder that make up its tokenizer (those present are used).
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
];

/// Copies the tokenizer files of checkpoint folder `from` into `to`, so that a checkpoint
/// written there encodes text as `from`'s does.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<()> {
    for file in TOKENIZER_FILES {
        let source = from.join(file);
        if source.is_file() {
            fs::copy(&source, to.join(file)).map_err(|e| DataError::io(&source, e))?;
        }
    }
    Ok(())
}

/// A checkpoint's tokenizer (see the module doc).
#[derive(Clone, Debug)]
pub struct PretrainedTokenizer {
    tokenizer: Tokenizer,
    special: SpecialTokens,
    source: PathBuf,
}

impl PretrainedTokenizer {
    /// Loads the tokenizer of the checkpoint in `folder`: `tokenizer.json`, else `vocab.txt`,
    /// else `vocab.json` + `merges.txt`. Errors name the file.
    pub fn from_checkpoint(folder: &Path) -> Result<Self> {
        let json = folder.join("tokenizer.json");
        let vocab_txt = folder.join("vocab.txt");
        let (vocab_json, merges) = (folder.join("vocab.json"), folder.join("merges.txt"));
        let (mut tokenizer, source) = if json.is_file() {
            (load_tokenizer_json(&json)?, json)
        } else if vocab_txt.is_file() {
            (bert_wordpiece(folder, &vocab_txt)?, vocab_txt)
        } else if vocab_json.is_file() && merges.is_file() {
            (roberta_bpe(folder, &vocab_json, &merges)?, vocab_json)
        } else {
            return Err(DataError::Missing(format!(
                "no tokenizer in {}: expected tokenizer.json, vocab.txt (BERT WordPiece) or \
                 vocab.json + merges.txt (RoBERTa BPE), as a Hugging Face checkpoint folder has",
                folder.display()
            )));
        };
        // `encode` truncates to the length of each call and never pads.
        tokenizer
            .with_truncation(None)
            .map_err(file_error(&source))?;
        tokenizer.with_padding(None);
        let special = special_tokens(&tokenizer, &source)?;
        Ok(Self {
            tokenizer,
            special,
            source,
        })
    }

    /// Encodes `text_a` (and `text_b`) with the checkpoint's special tokens, cutting the texts
    /// "longest first" (one token at a time from the longer text, as `tokenizers`' `LongestFirst`)
    /// so that the result has at most `max_len` ids. `max_len` must leave room for one text token.
    pub fn encode(&self, text_a: &str, text_b: Option<&str>, max_len: usize) -> Result<Encoded> {
        let added = self.special_token_count(text_b.is_some());
        if max_len <= added {
            return Err(DataError::Invalid(format!(
                "max_len {max_len} leaves no room for text next to the {added} special tokens"
            )));
        }
        let first = self.encode_text(text_a, 0)?;
        let second = text_b.map(|text| self.encode_text(text, 1)).transpose()?;
        // What `TokenizerImpl::post_process` does with a tokenizer-wide truncation, per call here.
        let params = TruncationParams {
            max_length: max_len - added,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            ..TruncationParams::default()
        };
        let (first, second) =
            truncate_encodings(first, second, &params).map_err(self.text_error(text_a))?;
        let encoding = self
            .tokenizer
            .post_process(first, second, true)
            .map_err(self.text_error(text_a))?;
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
        })
    }

    /// How many special tokens [`Self::encode`] adds to one text (`pair = false`) or a pair:
    /// 2 and 3 for BERT, 2 and 4 for RoBERTa.
    pub fn special_token_count(&self, pair: bool) -> usize {
        self.tokenizer
            .get_post_processor()
            .map_or(0, |processor| processor.added_tokens(pair))
    }

    /// Token ids `a` (and `b`) laid out as [`Self::encode`] lays out a text (pair): with the
    /// checkpoint's special tokens and type ids, not truncated. Pretraining builds its segment
    /// pairs from ids, so they get the layout fine-tuning will show the model.
    pub fn with_special_tokens(&self, a: &[u32], b: Option<&[u32]>) -> Result<Encoded> {
        let encoding = |ids: &[u32], type_id: u32| {
            let tokens = ids.iter().map(|&id| Token::new(id, String::new(), (0, 0)));
            Encoding::from_tokens(tokens.collect(), type_id)
        };
        let encoding = self
            .tokenizer
            .post_process(encoding(a, 0), b.map(|b| encoding(b, 1)), true)
            .map_err(|error| {
                DataError::Invalid(format!(
                    "{}: adding the special tokens: {error}",
                    self.source.display()
                ))
            })?;
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
        })
    }

    /// The ids of `text` alone, without special tokens or truncation (corpus text for
    /// pretraining, packed into sequences afterwards).
    pub fn text_ids(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_text(text, 0)?.get_ids().to_vec())
    }

    /// One text without special tokens, with the type id `encode((a, b))` gives its sequence.
    fn encode_text(&self, text: &str, type_id: u32) -> Result<Encoding> {
        // `encode_fast`: the same ids without tracking offsets, which nothing here needs.
        let mut encoding = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(self.text_error(text))?;
        encoding.set_type_ids(vec![type_id; encoding.len()]);
        Ok(encoding)
    }

    fn text_error(&self, text: &str) -> impl FnOnce(tokenizers::Error) -> DataError {
        let context = format!("{}: tokenizing {:?}", self.source.display(), text);
        move |error| DataError::Invalid(format!("{context}: {error}"))
    }

    /// Ids of the special tokens.
    pub fn special_tokens(&self) -> SpecialTokens {
        self.special
    }

    /// Padding id.
    pub fn pad_id(&self) -> u32 {
        self.special.pad
    }

    /// `[CLS]` / `<s>` id.
    pub fn cls_id(&self) -> u32 {
        self.special.cls
    }

    /// `[SEP]` / `</s>` id.
    pub fn sep_id(&self) -> u32 {
        self.special.sep
    }

    /// `[MASK]` / `<mask>` id.
    pub fn mask_id(&self) -> u32 {
        self.special.mask
    }

    /// Number of ids, added tokens included (the embedding table's rows).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// For each id, whether its piece begins a word, as whole-word masking groups pieces:
    /// WordPiece (BERT) continues a word with `##` pieces; byte-level BPE (RoBERTa) begins one
    /// with a piece whose first byte is a space (`Ġ`), as fairseq's `is_beginning_of_word`.
    /// Added and special tokens count as beginnings. Another kind of tokenizer is an error.
    pub fn word_starts(&self) -> Result<Vec<bool>> {
        let begins: fn(&str) -> bool = match self.tokenizer.get_model() {
            ModelWrapper::WordPiece(_) => |piece| !piece.starts_with("##"),
            ModelWrapper::BPE(_) => |piece| piece.starts_with('Ġ'),
            _ => {
                return Err(DataError::Invalid(format!(
                    "{}: whole-word masking needs a WordPiece (BERT) or byte-level BPE (RoBERTa) \
                     tokenizer to tell where words begin",
                    self.source.display()
                )));
            }
        };
        let added = self.tokenizer.get_added_tokens_decoder();
        Ok((0..self.vocab_size() as u32)
            .map(|id| {
                added.contains_key(&id)
                    || self
                        .tokenizer
                        .id_to_token(id)
                        .is_none_or(|piece| begins(&piece))
            })
            .collect())
    }

    /// The file the tokenizer was built from.
    pub fn source(&self) -> &Path {
        &self.source
    }
}

/// `Tokenizer::from_file`, whose deserialiser panics on some malformed files (an `unwrap` in
/// `tokenizers` 0.22's decoder parsing, found by the fuzz tests): the panic becomes an error.
fn load_tokenizer_json(path: &Path) -> Result<Tokenizer> {
    let loaded = std::panic::catch_unwind(|| Tokenizer::from_file(path));
    match loaded {
        Ok(result) => result.map_err(file_error(path)),
        Err(payload) => Err(DataError::File {
            path: path.to_path_buf(),
            message: format!(
                "not a valid tokenizer.json ({})",
                payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("the tokenizers library gave up on it")
            ),
        }),
    }
}

fn file_error(path: &Path) -> impl FnOnce(tokenizers::Error) -> DataError {
    let path = path.to_path_buf();
    move |error| DataError::File {
        path,
        message: error.to_string(),
    }
}

/// The special tokens of whichever family's `[CLS]`/`<s>` the vocabulary holds.
fn special_tokens(tokenizer: &Tokenizer, source: &Path) -> Result<SpecialTokens> {
    let family = if tokenizer.token_to_id(BERT.cls).is_some() {
        BERT
    } else {
        ROBERTA
    };
    let id = |name: &str| {
        tokenizer.token_to_id(name).ok_or_else(|| DataError::File {
            path: source.to_path_buf(),
            message: format!(
                "no special token {name} (expected BERT's {} or RoBERTa's {})",
                BERT.names().join(" "),
                ROBERTA.names().join(" ")
            ),
        })
    };
    Ok(SpecialTokens {
        pad: id(family.pad)?,
        unk: id(family.unk)?,
        cls: id(family.cls)?,
        sep: id(family.sep)?,
        mask: id(family.mask)?,
    })
}

/// `tokenizer_config.json` of `folder`, or the defaults when there is none.
fn tokenizer_config(folder: &Path) -> Result<TokenizerConfig> {
    let path = folder.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(TokenizerConfig::default());
    }
    let text = fs::read_to_string(&path).map_err(|source| DataError::io(&path, source))?;
    serde_json::from_str(&text).map_err(|error| DataError::File {
        path,
        message: format!("not a tokenizer config: {error}"),
    })
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| DataError::File {
        path: path.to_path_buf(),
        message: "the path is not UTF-8".into(),
    })
}

/// BERT's pipeline as `BertTokenizerFast` builds it from `vocab.txt`.
fn bert_wordpiece(folder: &Path, vocab: &Path) -> Result<Tokenizer> {
    let config = tokenizer_config(folder)?;
    let wordpiece = WordPiece::from_file(path_str(vocab)?)
        .unk_token(BERT.unk.into())
        .build()
        .map_err(file_error(vocab))?;
    let mut tokenizer = Tokenizer::new(wordpiece);
    let id = |name: &str| {
        tokenizer.token_to_id(name).ok_or_else(|| DataError::File {
            path: vocab.to_path_buf(),
            message: format!("no special token {name}"),
        })
    };
    let (cls, sep) = (id(BERT.cls)?, id(BERT.sep)?);
    // `strip_accents: None` follows `lowercase`, as in transformers.
    let normalizer = BertNormalizer::new(
        true,
        config.tokenize_chinese_chars.unwrap_or(true),
        config.strip_accents,
        config.do_lower_case.unwrap_or(true),
    );
    tokenizer
        .with_normalizer(Some(normalizer))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(BertProcessing::new(
            (BERT.sep.into(), sep),
            (BERT.cls.into(), cls),
        )))
        .with_decoder(Some(WordPieceDecoder::default()));
    let specials = BERT.names().map(|name| AddedToken::from(name, true));
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

/// RoBERTa's pipeline as `RobertaTokenizerFast` builds it from `vocab.json` + `merges.txt`.
fn roberta_bpe(folder: &Path, vocab: &Path, merges: &Path) -> Result<Tokenizer> {
    let config = tokenizer_config(folder)?;
    let add_prefix_space = config.add_prefix_space.unwrap_or(false);
    let bpe = BPE::from_file(path_str(vocab)?, path_str(merges)?)
        .build()
        .map_err(|error| DataError::File {
            path: vocab.to_path_buf(),
            message: format!("with {}: {error}", merges.display()),
        })?;
    let mut tokenizer = Tokenizer::new(bpe);
    let id = |name: &str| {
        tokenizer.token_to_id(name).ok_or_else(|| DataError::File {
            path: vocab.to_path_buf(),
            message: format!("no special token {name}"),
        })
    };
    let (cls, sep) = (id(ROBERTA.cls)?, id(ROBERTA.sep)?);
    tokenizer
        .with_pre_tokenizer(Some(ByteLevel::new(add_prefix_space, true, true)))
        .with_post_processor(Some(
            RobertaProcessing::new((ROBERTA.sep.into(), sep), (ROBERTA.cls.into(), cls))
                .trim_offsets(true)
                .add_prefix_space(add_prefix_space),
        ))
        .with_decoder(Some(ByteLevelDecoder::default()));
    // `<mask>` swallows the space before it, as RoBERTa's tokenizer declares it.
    let specials = ROBERTA
        .names()
        .map(|name| AddedToken::from(name, true).lstrip(name == ROBERTA.mask));
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}
