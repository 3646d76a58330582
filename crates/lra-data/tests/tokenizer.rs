//! Checkpoint tokenizers against the reference library: `tests/fixtures/tokenizers/expected.json`
//! holds the ids and type ids Hugging Face `tokenizers`/transformers gave for each case (sentences
//! and pairs with accents, punctuation, unknown words, CJK, truncation), written by
//! `scripts/make_tokenizer_fixtures.py`. Each folder is loaded from its `tokenizer.json` and again
//! from the older vocabulary files alone; both must give exactly the recorded ids.

use std::fs;
use std::path::PathBuf;

use lra_data::DataError;
use lra_data::tokenizer::{Encoded, PretrainedTokenizer, SpecialTokens};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text_a: String,
    text_b: Option<String>,
    max_len: usize,
}

#[derive(Deserialize, PartialEq, Debug)]
struct Ids {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
}

fn folder(name: &str) -> PathBuf {
    lra_data::fixtures::committed_fixtures()
        .join("tokenizers")
        .join(name)
}

fn expected() -> serde_json::Value {
    let text = fs::read_to_string(folder("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A copy of `name` holding only `files` (plus `extra` files written as given).
fn copy_with(name: &str, files: &[&str], extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in files {
        fs::copy(folder(name).join(file), dir.path().join(file)).unwrap();
    }
    for (file, text) in extra {
        fs::write(dir.path().join(file), text).unwrap();
    }
    dir
}

/// Every recorded case of `reference` encoded by `tokenizer` equals the recorded ids.
fn assert_matches(tokenizer: &PretrainedTokenizer, reference: &str) {
    let expected = expected();
    let cases: Vec<Case> = serde_json::from_value(expected["cases"].clone()).unwrap();
    let results: Vec<Ids> = serde_json::from_value(expected[reference].clone()).unwrap();
    assert_eq!(cases.len(), results.len());
    for (case, want) in cases.iter().zip(results) {
        let Encoded { ids, type_ids } = tokenizer
            .encode(&case.text_a, case.text_b.as_deref(), case.max_len)
            .unwrap();
        assert_eq!(
            Ids { ids, type_ids },
            want,
            "{reference} from {}: {:?} / {:?} at max_len {}",
            tokenizer.source().display(),
            case.text_a,
            case.text_b,
            case.max_len
        );
    }
}

const BERT_VARIANTS: [&str; 3] = ["bert-uncased", "bert-cased", "bert-uncased-accents"];

#[test]
fn bert_from_tokenizer_json_matches_the_reference() {
    for name in BERT_VARIANTS {
        let tokenizer = PretrainedTokenizer::from_checkpoint(&folder(name)).unwrap();
        assert!(tokenizer.source().ends_with("tokenizer.json"));
        assert_matches(&tokenizer, name);
    }
}

#[test]
fn bert_from_vocab_txt_follows_the_tokenizer_config() {
    for name in BERT_VARIANTS {
        let dir = copy_with(name, &["vocab.txt", "tokenizer_config.json"], &[]);
        let tokenizer = PretrainedTokenizer::from_checkpoint(dir.path()).unwrap();
        assert!(tokenizer.source().ends_with("vocab.txt"));
        assert_matches(&tokenizer, name);
    }
    // Without a tokenizer config, BERT checkpoints are uncased.
    let dir = copy_with(
        "bert-uncased",
        &["vocab.txt"],
        &[("config.json", r#"{"model_type": "bert"}"#)],
    );
    let tokenizer = PretrainedTokenizer::from_checkpoint(dir.path()).unwrap();
    assert_matches(&tokenizer, "bert-uncased");
}

#[test]
fn roberta_from_tokenizer_json_and_from_vocab_and_merges_match_the_reference() {
    let tokenizer = PretrainedTokenizer::from_checkpoint(&folder("roberta")).unwrap();
    assert_matches(&tokenizer, "roberta");
    let dir = copy_with("roberta", &["vocab.json", "merges.txt"], &[]);
    let tokenizer = PretrainedTokenizer::from_checkpoint(dir.path()).unwrap();
    assert!(tokenizer.source().ends_with("vocab.json"));
    assert_matches(&tokenizer, "roberta");
}

/// The harness encodes splits from several threads with one tokenizer.
fn shareable_across_threads<T: Send + Sync>() {}

#[test]
fn special_ids_and_vocabulary_size() {
    shareable_across_threads::<PretrainedTokenizer>();
    let vocab_lines = fs::read_to_string(folder("bert-uncased/vocab.txt"))
        .unwrap()
        .lines()
        .count();
    let bert = PretrainedTokenizer::from_checkpoint(&folder("bert-uncased")).unwrap();
    let bert_special = SpecialTokens {
        pad: 0,
        unk: 1,
        cls: 2,
        sep: 3,
        mask: 4,
    };
    assert_eq!(bert.special_tokens(), bert_special);
    assert_eq!(bert.vocab_size(), vocab_lines);
    let roberta = PretrainedTokenizer::from_checkpoint(&folder("roberta")).unwrap();
    assert_eq!(
        (
            roberta.cls_id(),
            roberta.pad_id(),
            roberta.sep_id(),
            roberta.mask_id()
        ),
        (0, 1, 2, 4)
    );
    let vocab_json = fs::read_to_string(folder("roberta/vocab.json")).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&vocab_json).unwrap();
    assert_eq!(roberta.vocab_size(), vocab.len());
    let pair = roberta.encode("cat", Some("mat"), 64).unwrap();
    let sep = roberta.sep_id();
    let seps = pair.ids.iter().filter(|&&id| id == sep).count();
    assert_eq!((pair.ids[0], seps), (0, 3), "<s> a </s></s> b </s>");
}

#[test]
fn too_short_lengths_and_broken_folders_are_errors_naming_the_file() {
    let bert = PretrainedTokenizer::from_checkpoint(&folder("bert-uncased")).unwrap();
    let error = bert.encode("a", Some("b"), 3).unwrap_err().to_string();
    assert!(
        error.contains("max_len 3") && error.contains("3 special tokens"),
        "{error}"
    );
    assert_eq!(bert.encode("the cat", None, 3).unwrap().ids, [2, 5, 3]);

    let empty = tempfile::tempdir().unwrap();
    let error = PretrainedTokenizer::from_checkpoint(empty.path()).unwrap_err();
    assert!(matches!(error, DataError::Missing(_)));
    assert!(
        error.to_string().contains("vocab.json + merges.txt"),
        "{error}"
    );

    let broken = copy_with("bert-uncased", &[], &[("tokenizer.json", "{\"model\": 1}")]);
    let error = PretrainedTokenizer::from_checkpoint(broken.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("tokenizer.json:"), "{error}");

    let config = copy_with(
        "bert-uncased",
        &["vocab.txt"],
        &[("tokenizer_config.json", "{\"do_lower_case\": \"yes\"}")],
    );
    let error = PretrainedTokenizer::from_checkpoint(config.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tokenizer_config.json: not a tokenizer config"),
        "{error}"
    );

    let no_specials = copy_with("bert-uncased", &[], &[("vocab.txt", "the\ncat\n[UNK]\n")]);
    let error = PretrainedTokenizer::from_checkpoint(no_specials.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("vocab.txt: no special token [CLS]"),
        "{error}"
    );
}

#[test]
fn word_starts_mark_wordpiece_continuations_and_bpe_spaces() {
    let starts_of = |name: &str, text: &str| {
        let tokenizer = PretrainedTokenizer::from_checkpoint(&folder(name)).unwrap();
        let starts = tokenizer.word_starts().unwrap();
        assert_eq!(starts.len(), tokenizer.vocab_size());
        let special = tokenizer.special_tokens();
        assert!(starts[special.cls as usize] && starts[special.mask as usize]);
        let ids = tokenizer.text_ids(text).unwrap();
        ids.iter()
            .map(|&id| starts[id as usize])
            .collect::<Vec<_>>()
    };
    // un ##believ ##ably play ##ing
    assert_eq!(
        starts_of("bert-uncased", "unbelievably playing"),
        [true, false, false, true, false]
    );
    // "the" (no space before it: a word only after the special token it follows), Ġcat, Ġmat, "."
    assert_eq!(
        starts_of("roberta", "the cat mat."),
        [false, true, true, false]
    );
}
