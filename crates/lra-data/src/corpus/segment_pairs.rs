//! BERT-style segment pairs for pretraining, optionally with ALBERT's sentence-order prediction
//! (SOP, [Lan et al. 2020](https://arxiv.org/abs/1909.11942)), as the Nyströmformer paper
//! pretrained ([Xiong et al. 2021](https://arxiv.org/abs/2102.03902): MLM + SOP).
//!
//! A document's sentences are its lines (blank ones and those without tokens dropped). As
//! BERT's `create_pretraining_data.py` (`create_instances_from_document`) does, sentences are
//! gathered into a chunk until it holds a target number of tokens — the room left by the pair's
//! special tokens, or, with probability `short_seq_prob` (per document, as BERT draws it), a
//! uniform length in `2..=room` — or the document ends; the chunk is cut at a random sentence
//! boundary into A (the first `1..len` sentences) and B (the rest). With sentence order on, A and
//! B are swapped with probability ½ (ALBERT's `create_pretraining_data.py`: label 1 = swapped,
//! 0 = in order, HF `AlbertForPreTraining`'s `sentence_order_label`). The pair is then cut to the
//! room "longest first", one token at a time from the longer segment, at its front or back at
//! random (BERT's `truncate_seq_pair`), and laid out by the checkpoint's tokenizer as a text pair
//! is: `[CLS] A [SEP] B [SEP]`, token types 0…0 1…1 (RoBERTa: `<s> A </s></s> B </s>`, types 0).
//!
//! Where this differs from BERT/ALBERT: a chunk of one sentence (a one-line document, a last
//! line left alone, or one line longer than the target) gets no random B from another document
//! (their next-sentence negative, which ALBERT keeps even with SOP): it becomes `[CLS] A [SEP]`,
//! [`SentenceOrder::Unpaired`], trained by the MLM only. Documents are not shuffled and not
//! paired again with other draws (`dupe_factor`): each is split once. The released
//! Nyströmformer code (`mlpen/Nystromformer`, `code/run_pretrain.py`) packs plain sequences for
//! HF's `DataCollatorForLanguageModeling` and has no SOP; the paper's text is followed here.
//!
//! Every draw comes from a generator seeded by (seed, document index), so a split is a function
//! of its documents and seed: a resumed run packs the same pairs.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::example::{LabelKind, SplitBuilder, SplitData, SplitFormat, Target, TokenWidth};
use crate::tokenizer::PretrainedTokenizer;

/// Which way round an example's segments are; stored as the split's class label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SentenceOrder {
    /// B follows A in the document (class 0, ALBERT's label 0).
    InOrder,
    /// A and B swapped: the text after comes first (class 1, ALBERT's label 1).
    Swapped,
    /// One segment only (class 2): no sentence-order target.
    Unpaired,
}

impl SentenceOrder {
    /// The class id stored in the split.
    pub fn class(self) -> u32 {
        match self {
            SentenceOrder::InOrder => 0,
            SentenceOrder::Swapped => 1,
            SentenceOrder::Unpaired => 2,
        }
    }

    /// The order a stored class id stands for.
    pub fn from_class(class: u32) -> Option<Self> {
        match class {
            0 => Some(SentenceOrder::InOrder),
            1 => Some(SentenceOrder::Swapped),
            2 => Some(SentenceOrder::Unpaired),
            _ => None,
        }
    }

    /// The sentence-order target (0 in order, 1 swapped), `None` for a single segment.
    pub fn target(self) -> Option<u32> {
        match self {
            SentenceOrder::Unpaired => None,
            order => Some(order.class()),
        }
    }
}

/// How pairs are drawn from a document's sentences.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairSettings {
    /// Text tokens an example may hold: the sequence length less the pair's special tokens.
    pub room: usize,
    /// Chance that a document's target length is drawn shorter than `room` (BERT: 0.1).
    pub short_seq_prob: f64,
    /// Swap A and B with probability ½ (sentence-order prediction); otherwise never.
    pub sentence_order: bool,
}

/// One example before its special tokens: segment A, segment B (empty when unpaired) and their
/// order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentPair {
    pub a: Vec<u32>,
    pub b: Vec<u32>,
    pub order: SentenceOrder,
}

/// What [`pack`] is asked for besides the documents and the tokenizer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairPacking {
    /// Sequence length, special tokens included.
    pub max_len: usize,
    /// See [`PairSettings::short_seq_prob`].
    pub short_seq_prob: f64,
    /// See [`PairSettings::sentence_order`].
    pub sentence_order: bool,
    /// Seeds every draw, with the document's index.
    pub seed: u64,
}

/// Tokenizes `documents` (in parallel), splits each into segment pairs and stores them with
/// their token types, at most `max_len` ids each; with sentence order, each example's
/// [`SentenceOrder`] class is its label (the split is unlabelled otherwise).
pub fn pack(
    documents: &[String],
    tokenizer: &PretrainedTokenizer,
    packing: PairPacking,
) -> Result<SplitData> {
    let settings = pair_settings(tokenizer, packing)?;
    let sentences: Vec<Vec<Vec<u32>>> = documents
        .par_iter()
        .map(|text| document_sentences(text, tokenizer))
        .collect::<Result<_>>()?;
    let pairs: Vec<Vec<SegmentPair>> = sentences
        .par_iter()
        .enumerate()
        .map(|(index, sentences)| {
            document_pairs(sentences, &settings, &mut document_rng(packing.seed, index))
        })
        .collect();
    let mut builder = SplitBuilder::with_format(SplitFormat {
        docs_per_example: 1,
        id_offset: 0,
        width: TokenWidth::for_vocab(tokenizer.vocab_size(), 0),
        labels: match packing.sentence_order {
            true => LabelKind::Classes,
            false => LabelKind::Unlabelled,
        },
        token_types: true,
    });
    for pair in pairs.iter().flatten() {
        let b = (pair.order != SentenceOrder::Unpaired).then_some(pair.b.as_slice());
        let encoded = tokenizer.with_special_tokens(&pair.a, b)?;
        let label = packing
            .sentence_order
            .then(|| Target::Class(pair.order.class()));
        builder
            .push_ids(&[&encoded.ids], Some(&encoded.type_ids), label)
            .map_err(DataError::Invalid)?;
    }
    Ok(builder.finish())
}

/// The room a pair has beside the tokenizer's special tokens; at least one token per segment.
fn pair_settings(tokenizer: &PretrainedTokenizer, packing: PairPacking) -> Result<PairSettings> {
    let special = tokenizer.special_token_count(true);
    if packing.max_len < special + 2 {
        return Err(DataError::Invalid(format!(
            "max_len {} leaves no room for two segments beside a pair's {special} special tokens",
            packing.max_len
        )));
    }
    if !(0.0..=1.0).contains(&packing.short_seq_prob) {
        return Err(DataError::Invalid(format!(
            "short_seq_prob {} is not a probability",
            packing.short_seq_prob
        )));
    }
    Ok(PairSettings {
        room: packing.max_len - special,
        short_seq_prob: packing.short_seq_prob,
        sentence_order: packing.sentence_order,
    })
}

/// The token ids of each line of `text` that has any.
fn document_sentences(text: &str, tokenizer: &PretrainedTokenizer) -> Result<Vec<Vec<u32>>> {
    let mut sentences = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let ids = tokenizer.text_ids(line)?;
        if !ids.is_empty() {
            sentences.push(ids);
        }
    }
    Ok(sentences)
}

/// The generator of document `index`'s draws.
fn document_rng(seed: u64, index: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        (seed ^ 0x7061_6972_7061_6972)
            .wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    )
}

/// The examples of one document, given as its sentences' token ids (none empty), in document
/// order (see the module doc).
pub fn document_pairs(
    sentences: &[Vec<u32>],
    settings: &PairSettings,
    rng: &mut impl Rng,
) -> Vec<SegmentPair> {
    let target = match rng.random_bool(settings.short_seq_prob) {
        true => rng.random_range(2.min(settings.room)..=settings.room),
        false => settings.room,
    };
    let mut pairs = Vec::new();
    let mut chunk: Vec<&[u32]> = Vec::new();
    let mut length = 0;
    for (i, sentence) in sentences.iter().enumerate() {
        chunk.push(sentence);
        length += sentence.len();
        if i + 1 == sentences.len() || length >= target {
            pairs.push(split_chunk(&chunk, settings, rng));
            chunk.clear();
            length = 0;
        }
    }
    pairs
}

/// A chunk of sentences cut at a random boundary into A and B (swapped half the time with
/// sentence order on), cut to the room; one sentence alone is an unpaired A.
fn split_chunk(chunk: &[&[u32]], settings: &PairSettings, rng: &mut impl Rng) -> SegmentPair {
    if chunk.len() == 1 {
        let mut a = 0..chunk[0].len();
        let mut nothing = 0..0;
        truncate_longest_first(&mut a, &mut nothing, settings.room, rng);
        return SegmentPair {
            a: chunk[0][a].to_vec(),
            b: Vec::new(),
            order: SentenceOrder::Unpaired,
        };
    }
    let a_end = rng.random_range(1..chunk.len());
    let (first, second) = (chunk[..a_end].concat(), chunk[a_end..].concat());
    let swap = settings.sentence_order && rng.random_bool(0.5);
    let (a, b, order) = match swap {
        true => (second, first, SentenceOrder::Swapped),
        false => (first, second, SentenceOrder::InOrder),
    };
    let (mut kept_a, mut kept_b) = (0..a.len(), 0..b.len());
    truncate_longest_first(&mut kept_a, &mut kept_b, settings.room, rng);
    SegmentPair {
        a: a[kept_a].to_vec(),
        b: b[kept_b].to_vec(),
        order,
    }
}

/// Shrinks the kept ranges of two segments until together they hold at most `room` tokens:
/// one token at a time from the longer one (B on a tie, as BERT), at its front or back at random.
fn truncate_longest_first(
    a: &mut Range<usize>,
    b: &mut Range<usize>,
    room: usize,
    rng: &mut impl Rng,
) {
    while a.len() + b.len() > room {
        let longer = if a.len() > b.len() { &mut *a } else { &mut *b };
        if rng.random_bool(0.5) {
            longer.start += 1;
        } else {
            longer.end -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `documents` documents of `sentences` sentences, every token id unique (so a token's place
    /// in the corpus is known), sentence `s` of document `d` 1 + (d + s) % 7 tokens long.
    fn corpus(documents: usize, sentences: usize) -> Vec<Vec<Vec<u32>>> {
        let mut next = 0u32;
        (0..documents)
            .map(|d| {
                (0..sentences)
                    .map(|s| {
                        let len = 1 + (d + s) % 7;
                        let ids = (next..next + len as u32).collect();
                        next += len as u32;
                        ids
                    })
                    .collect()
            })
            .collect()
    }

    fn settings(room: usize, sentence_order: bool) -> PairSettings {
        PairSettings {
            room,
            short_seq_prob: 0.1,
            sentence_order,
        }
    }

    fn pairs_of(corpus: &[Vec<Vec<u32>>], settings: &PairSettings, seed: u64) -> Vec<SegmentPair> {
        corpus
            .iter()
            .enumerate()
            .flat_map(|(i, doc)| document_pairs(doc, settings, &mut document_rng(seed, i)))
            .collect()
    }

    /// Asserts that `segment` is a contiguous run of one document's tokens and returns its
    /// first and last id (ids are consecutive within a document).
    fn span(segment: &[u32]) -> (u32, u32) {
        assert!(!segment.is_empty(), "an empty segment");
        for pair in segment.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "{segment:?} is not contiguous");
        }
        (segment[0], *segment.last().unwrap())
    }

    #[test]
    fn b_follows_a_in_order_and_precedes_it_when_swapped() {
        let corpus = corpus(400, 6);
        let settings = settings(12, true);
        let pairs = pairs_of(&corpus, &settings, 7);
        let (mut in_order, mut swapped) = (0, 0);
        for pair in &pairs {
            let (a_first, a_last) = span(&pair.a);
            match pair.order {
                SentenceOrder::InOrder => {
                    let (b_first, _) = span(&pair.b);
                    assert!(a_last < b_first, "{pair:?}");
                    in_order += 1;
                }
                SentenceOrder::Swapped => {
                    let (_, b_last) = span(&pair.b);
                    assert!(b_last < a_first, "{pair:?}");
                    swapped += 1;
                }
                SentenceOrder::Unpaired => assert!(pair.b.is_empty()),
            }
            assert!(pair.a.len() + pair.b.len() <= settings.room, "{pair:?}");
        }
        // Half the pairs swapped, within 5 standard deviations of the binomial.
        let n = (in_order + swapped) as f64;
        assert!(n > 500.0, "{n} pairs");
        let deviation = (swapped as f64 - n / 2.0).abs();
        assert!(
            deviation < 5.0 * (n / 4.0).sqrt(),
            "{swapped} of {n} swapped"
        );
    }

    #[test]
    fn without_sentence_order_every_pair_is_in_order() {
        let pairs = pairs_of(&corpus(100, 5), &settings(12, false), 3);
        assert!(pairs.iter().all(|p| p.order != SentenceOrder::Swapped));
        assert!(pairs.iter().any(|p| p.order == SentenceOrder::InOrder));
    }

    #[test]
    fn a_pair_holds_whole_sentences_unless_it_was_cut_to_the_room() {
        // Each document is one chunk when the room holds it all: A and B are then whole
        // sentences, together the document, and the boundary falls between sentences.
        let corpus = corpus(200, 3);
        let roomy = PairSettings {
            room: 100,
            short_seq_prob: 0.0,
            sentence_order: true,
        };
        for (i, doc) in corpus.iter().enumerate() {
            let pairs = document_pairs(doc, &roomy, &mut document_rng(1, i));
            assert_eq!(pairs.len(), 1);
            let pair = &pairs[0];
            let (first, second) = match pair.order {
                SentenceOrder::Swapped => (&pair.b, &pair.a),
                _ => (&pair.a, &pair.b),
            };
            assert_eq!([first.as_slice(), second.as_slice()].concat(), doc.concat());
            let boundaries: Vec<usize> = doc
                .iter()
                .scan(0, |end, s| {
                    *end += s.len();
                    Some(*end)
                })
                .collect();
            assert!(boundaries.contains(&first.len()), "cut inside a sentence");
        }
    }

    #[test]
    fn truncation_cuts_the_longer_segment_at_either_end() {
        let mut rng = document_rng(0, 0);
        let (mut fronts, mut backs) = (0, 0);
        for _ in 0..200 {
            let (mut a, mut b) = (0..10, 0..3);
            truncate_longest_first(&mut a, &mut b, 8, &mut rng);
            assert_eq!((a.len(), b.len()), (5, 3), "the longer loses tokens");
            fronts += a.start;
            backs += 10 - a.end;
        }
        assert!(
            fronts > 300 && backs > 300,
            "{fronts} from the front, {backs} from the back"
        );
        // Equal lengths: B gives first, then A, alternately.
        let (mut a, mut b) = (0..4, 0..4);
        truncate_longest_first(&mut a, &mut b, 6, &mut rng);
        assert_eq!((a.len(), b.len()), (3, 3));
    }

    #[test]
    fn one_sentence_is_an_unpaired_segment_cut_to_the_room() {
        let long: Vec<u32> = (0..50).collect();
        let pairs = document_pairs(&[long], &settings(20, true), &mut document_rng(0, 0));
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].order, SentenceOrder::Unpaired);
        assert_eq!(pairs[0].a.len(), 20);
        span(&pairs[0].a);
        assert!(pairs[0].b.is_empty());
    }

    #[test]
    fn short_targets_come_at_the_short_seq_prob() {
        // Documents of many one-token sentences: a chunk closes at the document's target, so a
        // document whose first chunk is shorter than the room drew a short target.
        let corpus: Vec<Vec<Vec<u32>>> = (0..2000)
            .map(|d| (0..40).map(|s| vec![(d * 40 + s) as u32]).collect())
            .collect();
        let settings = settings(30, false);
        let short = corpus
            .iter()
            .enumerate()
            .filter(|(i, doc)| {
                let first = &document_pairs(doc, &settings, &mut document_rng(5, *i))[0];
                first.a.len() + first.b.len() < settings.room
            })
            .count() as f64;
        // Target drawn in 2..=30, so 1 in 29 short draws is not short.
        let p = 0.1 * 28.0 / 29.0;
        let deviation = (short - 2000.0 * p).abs();
        assert!(
            deviation < 5.0 * (2000.0 * p * (1.0 - p)).sqrt(),
            "{short} short"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_pairs_and_another_seed_others() {
        let corpus = corpus(50, 6);
        let settings = settings(10, true);
        assert_eq!(
            pairs_of(&corpus, &settings, 4),
            pairs_of(&corpus, &settings, 4)
        );
        assert_ne!(
            pairs_of(&corpus, &settings, 4),
            pairs_of(&corpus, &settings, 5)
        );
    }

    #[test]
    fn stored_classes_read_back_as_their_order() {
        for order in [
            SentenceOrder::InOrder,
            SentenceOrder::Swapped,
            SentenceOrder::Unpaired,
        ] {
            assert_eq!(SentenceOrder::from_class(order.class()), Some(order));
        }
        assert_eq!(SentenceOrder::from_class(3), None);
        assert_eq!(SentenceOrder::Swapped.target(), Some(1));
        assert_eq!(SentenceOrder::Unpaired.target(), None);
    }
}
