//! Segment pairs packed through the committed BERT and RoBERTa tokenizer fixtures: the layout a
//! text pair gets from the tokenizer (`[CLS] A [SEP] B [SEP]`, types 0/1; RoBERTa
//! `<s> A </s></s> B </s>`, types 0), never longer than `max_len`, and a function of the seed.
//! Which text goes where (source order, swaps, truncation) is tested on token ids in
//! `corpus::segment_pairs`' own tests.

use std::path::PathBuf;

use lra_data::corpus::segment_pairs::{PairPacking, SentenceOrder, pack};
use lra_data::tokenizer::PretrainedTokenizer;
use lra_data::{Labels, SplitData};

fn tokenizer(name: &str) -> PretrainedTokenizer {
    let folder: PathBuf = lra_data::fixtures::committed_fixtures()
        .join("tokenizers")
        .join(name);
    PretrainedTokenizer::from_checkpoint(&folder).unwrap()
}

/// Documents of 1 to 5 lines (sentences) of the fixture vocabulary, some long.
fn documents() -> Vec<String> {
    let sentences = [
        "the cat sat on the mat.",
        "a dog ran!",
        "hello world, the dog played unbelievably.",
        "it's paris: cafe deja vu, naive zoe, the cat and the dog and the mat and the cat sat.",
        "don't play.",
    ];
    (0..60)
        .map(|d| {
            (0..1 + d % 5)
                .map(|s| sentences[(d + s) % sentences.len()])
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

fn packing(max_len: usize, seed: u64) -> PairPacking {
    PairPacking {
        max_len,
        short_seq_prob: 0.1,
        sentence_order: true,
        seed,
    }
}

/// Each example's ids, types and order.
fn examples(split: &SplitData) -> Vec<(Vec<u32>, Vec<u8>, SentenceOrder)> {
    let classes = split.class_ids().expect("sentence-order classes");
    (0..split.len())
        .map(|i| {
            let ids = split.token_ids(i, 0).collect();
            let types = split.token_types(i, 0).expect("token types").to_vec();
            let order = SentenceOrder::from_class(classes[i]).expect("a known class");
            (ids, types, order)
        })
        .collect()
}

#[test]
fn bert_pairs_are_cls_a_sep_b_sep_with_types_0_then_1() {
    let tokenizer = tokenizer("bert-uncased");
    let special = tokenizer.special_tokens();
    let split = pack(&documents(), &tokenizer, packing(16, 1)).unwrap();
    let mut seen = [0usize; 3];
    for (ids, types, order) in examples(&split) {
        assert!(ids.len() <= 16, "{ids:?}");
        assert_eq!((ids[0], *ids.last().unwrap()), (special.cls, special.sep));
        let separators: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == special.sep).collect();
        seen[order.class() as usize] += 1;
        if order == SentenceOrder::Unpaired {
            assert_eq!(separators, [ids.len() - 1], "[CLS] A [SEP]: {ids:?}");
            assert!(types.iter().all(|&t| t == 0), "{types:?}");
            continue;
        }
        assert_eq!(separators.len(), 2, "[CLS] A [SEP] B [SEP]: {ids:?}");
        let a_end = separators[0];
        assert!(
            a_end >= 2 && a_end + 2 < ids.len(),
            "both segments hold text: {ids:?}"
        );
        let expected: Vec<u8> = (0..ids.len()).map(|i| u8::from(i > a_end)).collect();
        assert_eq!(types, expected, "{ids:?}");
    }
    assert!(
        seen.iter().all(|&count| count > 0),
        "in order, swapped, unpaired: {seen:?}"
    );
}

#[test]
fn roberta_pairs_are_s_a_double_separator_b_with_types_0() {
    let tokenizer = tokenizer("roberta");
    let special = tokenizer.special_tokens();
    let split = pack(&documents(), &tokenizer, packing(20, 2)).unwrap();
    for (ids, types, order) in examples(&split) {
        assert!(ids.len() <= 20, "{ids:?}");
        assert_eq!((ids[0], *ids.last().unwrap()), (special.cls, special.sep));
        assert!(types.iter().all(|&t| t == 0), "{types:?}");
        let separators: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == special.sep).collect();
        match order {
            SentenceOrder::Unpaired => assert_eq!(separators, [ids.len() - 1]),
            _ => {
                assert_eq!(separators.len(), 3, "{ids:?}");
                assert_eq!(separators[1], separators[0] + 1, "</s></s>: {ids:?}");
            }
        }
    }
}

#[test]
fn ids_with_special_tokens_equal_the_tokenizers_pair_encoding() {
    for (name, pair_specials) in [("bert-uncased", 3), ("roberta", 4)] {
        let tokenizer = tokenizer(name);
        let (a, b) = ("the cat sat on the mat.", "hello world, a dog ran!");
        let laid_out = tokenizer
            .with_special_tokens(
                &tokenizer.text_ids(a).unwrap(),
                Some(&tokenizer.text_ids(b).unwrap()),
            )
            .unwrap();
        assert_eq!(
            laid_out,
            tokenizer.encode(a, Some(b), 512).unwrap(),
            "{name}"
        );
        let single = tokenizer
            .with_special_tokens(&tokenizer.text_ids(a).unwrap(), None)
            .unwrap();
        assert_eq!(single, tokenizer.encode(a, None, 512).unwrap(), "{name}");
        assert_eq!(tokenizer.special_token_count(true), pair_specials, "{name}");
        assert_eq!(tokenizer.special_token_count(false), 2, "{name}");
    }
}

#[test]
fn without_sentence_order_pairs_keep_their_types_and_carry_no_labels() {
    let tokenizer = tokenizer("bert-uncased");
    let packing = PairPacking {
        sentence_order: false,
        ..packing(16, 1)
    };
    let split = pack(&documents(), &tokenizer, packing).unwrap();
    assert_eq!(split.labels(), &Labels::Unlabelled);
    let paired = (0..split.len())
        .filter(|&i| split.token_types(i, 0).unwrap().contains(&1))
        .count();
    assert!(
        paired > split.len() / 2,
        "{paired} of {} paired",
        split.len()
    );
}

#[test]
fn the_same_seed_packs_the_same_split() {
    let tokenizer = tokenizer("bert-uncased");
    let packed = |seed| examples(&pack(&documents(), &tokenizer, packing(16, seed)).unwrap());
    assert_eq!(packed(3), packed(3));
    assert_ne!(packed(3), packed(4));
}

#[test]
fn a_length_without_room_for_two_segments_is_an_error() {
    let tokenizer = tokenizer("bert-uncased");
    let error = pack(&documents(), &tokenizer, packing(4, 0)).unwrap_err();
    assert!(error.to_string().contains("max_len 4"), "{error}");
    assert!(pack(&documents(), &tokenizer, packing(5, 0)).is_ok());
}
