//! Masked-LM inputs as BERT draws them (and transformers' `DataCollatorForLanguageModeling`):
//! each token is chosen with probability 15 %, special tokens never; a chosen token becomes the
//! mask token (80 %), a random vocabulary token (10 %) or stays (10 %), and is a prediction
//! target. Whole-word masking (BERT's later `--do_whole_word_mask`, fairseq's
//! `mask_whole_words`) chooses 15 % of the words instead and all of a chosen word's pieces, each
//! then replaced 80/10/10 on its own. Draws come from (seed, step), so a resumed run masks
//! exactly as the uninterrupted one.

use std::ops::Range;

use rand::seq::SliceRandom;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How tokens are chosen and replaced.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Masking {
    /// Chance that a (non-special) token is chosen as a target. Default 0.15 (BERT).
    pub probability: f64,
    /// Of the chosen, the share replaced by the mask token. Default 0.8.
    pub mask_share: f64,
    /// Of the chosen, the share replaced by a random token (the rest stay). Default 0.1.
    pub random_share: f64,
    /// At most this many targets per example, the excess dropped at random; 0 = no cap.
    pub max_per_example: usize,
    /// Exactly this many targets per example instead of `probability`'s draw, chosen uniformly
    /// among the non-special tokens (all of them when there are fewer), as the MRA code does
    /// (77 of 512: the top 77 of uniform random scores); 0 = draw by `probability`.
    pub exact_per_example: usize,
}

impl Default for Masking {
    fn default() -> Self {
        Self {
            probability: 0.15,
            mask_share: 0.8,
            random_share: 0.1,
            max_per_example: 0,
            exact_per_example: 0,
        }
    }
}

/// One masked example: the model's input and, at each target, the original id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masked {
    pub inputs: Vec<u32>,
    pub targets: Vec<Option<u32>>,
}

/// The generator of step `step`'s masks in a run seeded `seed` (independent of the data order's
/// and dropout's streams).
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        (seed ^ 0x6d61_736b_6d61_736b)
            .wrapping_add((step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    )
}

impl Masking {
    /// Checks the shares and probability.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if !(unit(self.probability) && unit(self.mask_share) && unit(self.random_share)) {
            return Err(format!(
                "masking probabilities must lie in [0, 1]: {self:?}"
            ));
        }
        if self.exact_per_example > 0 && self.max_per_example > 0 {
            return Err(format!(
                "an exact count of targets ({}) and a cap ({}) exclude each other",
                self.exact_per_example, self.max_per_example
            ));
        }
        if self.mask_share + self.random_share > 1.0 {
            return Err(format!(
                "mask_share + random_share = {} exceeds 1",
                self.mask_share + self.random_share
            ));
        }
        Ok(())
    }

    /// Masks one example of `ids`; `special(id)` marks ids never chosen (CLS, SEP, padding);
    /// random replacements are drawn from `0..vocab_size` as BERT does.
    pub fn apply(
        &self,
        ids: &[u32],
        special: impl Fn(u32) -> bool,
        vocab_size: usize,
        mask_id: u32,
        rng: &mut impl Rng,
    ) -> Masked {
        if self.exact_per_example > 0 {
            let candidates: Vec<usize> = (0..ids.len()).filter(|&i| !special(ids[i])).collect();
            let count = self.exact_per_example.min(candidates.len());
            let mut chosen: Vec<usize> = sample(rng, candidates.len(), count)
                .into_iter()
                .map(|k| candidates[k])
                .collect();
            chosen.sort_unstable();
            return self.replace(ids, chosen, vocab_size, mask_id, rng);
        }
        let mut chosen: Vec<usize> = (0..ids.len())
            .filter(|&i| rng.random_bool(self.probability) && !special(ids[i]))
            .collect();
        if self.max_per_example > 0 && chosen.len() > self.max_per_example {
            let mut kept: Vec<usize> = sample(rng, chosen.len(), self.max_per_example)
                .into_iter()
                .map(|k| chosen[k])
                .collect();
            kept.sort_unstable();
            chosen = kept;
        }
        self.replace(ids, chosen, vocab_size, mask_id, rng)
    }

    /// [`Self::apply`] choosing whole words: each word (a piece for which `starts_word` holds, or
    /// any piece after a special token, and the pieces that continue it) is chosen with the
    /// probability, with all its pieces. Under the cap, chosen words are kept in random order
    /// while their pieces fit, so no word is ever cut.
    pub fn apply_whole_words(
        &self,
        ids: &[u32],
        special: impl Fn(u32) -> bool,
        starts_word: impl Fn(u32) -> bool,
        vocab_size: usize,
        mask_id: u32,
        rng: &mut impl Rng,
    ) -> Masked {
        let mut words: Vec<Range<usize>> = words(ids, &special, starts_word)
            .into_iter()
            .filter(|_| rng.random_bool(self.probability))
            .collect();
        let pieces = |words: &[Range<usize>]| words.iter().map(|w| w.len()).sum::<usize>();
        if self.max_per_example > 0 && pieces(&words) > self.max_per_example {
            words.shuffle(rng);
            let mut kept = Vec::new();
            for word in words {
                if pieces(&kept) + word.len() <= self.max_per_example {
                    kept.push(word);
                }
            }
            kept.sort_unstable_by_key(|word| word.start);
            words = kept;
        }
        self.replace(
            ids,
            words.into_iter().flatten().collect(),
            vocab_size,
            mask_id,
            rng,
        )
    }

    /// The example with the `chosen` positions (ascending) made targets, each replaced by the
    /// mask token, a random token or itself (80/10/10).
    fn replace(
        &self,
        ids: &[u32],
        chosen: Vec<usize>,
        vocab_size: usize,
        mask_id: u32,
        rng: &mut impl Rng,
    ) -> Masked {
        let mut inputs = ids.to_vec();
        let mut targets = vec![None; ids.len()];
        let random_given_not_mask =
            self.random_share / (1.0 - self.mask_share).max(f64::MIN_POSITIVE);
        for i in chosen {
            targets[i] = Some(ids[i]);
            if rng.random_bool(self.mask_share) {
                inputs[i] = mask_id;
            } else if rng.random_bool(random_given_not_mask.min(1.0)) {
                inputs[i] = rng.random_range(0..vocab_size as u32);
            }
        }
        Masked { inputs, targets }
    }
}

/// The spans of the words of `ids`: a word begins at a piece `starts_word` marks or right after
/// a special token; special tokens belong to no word.
pub fn words(
    ids: &[u32],
    special: impl Fn(u32) -> bool,
    starts_word: impl Fn(u32) -> bool,
) -> Vec<Range<usize>> {
    let mut words: Vec<Range<usize>> = Vec::new();
    let mut previous_special = true;
    for (i, &id) in ids.iter().enumerate() {
        if special(id) {
            previous_special = true;
            continue;
        }
        match words.last_mut() {
            Some(word) if !previous_special && !starts_word(id) => word.end = i + 1,
            _ => words.push(i..i + 1),
        }
        previous_special = false;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: u32 = 4;
    const VOCAB: usize = 1000;

    /// 400 examples of 128 ids (ids ≥ 10), CLS = 2 first and SEP = 3 last.
    fn corpus() -> Vec<Vec<u32>> {
        (0..400u32)
            .map(|e| {
                let mut ids = vec![2];
                ids.extend((0..126).map(|i| 10 + (e * 131 + i * 17) % 900));
                ids.push(3);
                ids
            })
            .collect()
    }

    fn special(id: u32) -> bool {
        id < 10
    }

    /// `count` out of `n` trials is within 5 standard deviations of probability `p`.
    fn within_binomial(count: usize, n: usize, p: f64) -> bool {
        let mean = n as f64 * p;
        (count as f64 - mean).abs() <= 5.0 * (mean * (1.0 - p)).sqrt()
    }

    #[test]
    fn masking_statistics_follow_bert_and_special_tokens_are_never_chosen() {
        let masking = Masking::default();
        let mut rng = step_rng(7, 0);
        let (mut maskable, mut chosen, mut masked, mut random, mut kept) = (0, 0, 0, 0, 0);
        for ids in corpus() {
            let out = masking.apply(&ids, special, VOCAB, MASK, &mut rng);
            maskable += ids.iter().filter(|&&id| !special(id)).count();
            for ((&id, &input), target) in ids.iter().zip(&out.inputs).zip(&out.targets) {
                match target {
                    None => assert_eq!(input, id, "only targets change"),
                    Some(original) => {
                        assert!(!special(id), "special token {id} chosen");
                        assert_eq!(*original, id);
                        chosen += 1;
                        if input == MASK {
                            masked += 1;
                        } else if input == id {
                            kept += 1;
                        } else {
                            random += 1;
                        }
                    }
                }
            }
        }
        assert!(
            within_binomial(chosen, maskable, 0.15),
            "{chosen} of {maskable}"
        );
        assert!(within_binomial(masked, chosen, 0.8), "{masked} of {chosen}");
        // A random replacement equal to the original counts as kept: 0.1 · (1 − 1/|V|).
        assert!(
            within_binomial(random, chosen, 0.1 * (1.0 - 1.0 / VOCAB as f64)),
            "{random}"
        );
        assert!(
            within_binomial(kept, chosen, 0.1 + 0.1 / VOCAB as f64),
            "{kept}"
        );
    }

    #[test]
    fn equal_seed_and_step_give_equal_masks_and_other_steps_differ() {
        let ids = &corpus()[0];
        let masking = Masking::default();
        let draw = |seed, step| masking.apply(ids, special, VOCAB, MASK, &mut step_rng(seed, step));
        assert_eq!(draw(1, 5), draw(1, 5));
        assert_ne!(draw(1, 5), draw(1, 6));
        assert_ne!(draw(1, 5), draw(2, 5));
    }

    /// Ids ≥ 500 continue a word (as `##` pieces do).
    fn starts_word(id: u32) -> bool {
        id < 500
    }

    #[test]
    fn words_begin_at_word_starts_and_after_special_tokens() {
        // [CLS] a ##b c [SEP] ##d ##e f [SEP]
        let ids = [2, 10, 600, 11, 3, 601, 602, 12, 3];
        assert_eq!(words(&ids, special, starts_word), [1..3, 3..4, 5..7, 7..8]);
    }

    #[test]
    fn whole_words_are_masked_together_at_the_word_probability() {
        let masking = Masking::default();
        let mut rng = step_rng(11, 3);
        let (mut word_count, mut chosen_words, mut pieces, mut masked) = (0, 0, 0, 0);
        for ids in corpus() {
            let out = masking.apply_whole_words(&ids, special, starts_word, VOCAB, MASK, &mut rng);
            for word in words(&ids, special, starts_word) {
                let targets = out.targets[word.clone()].iter().flatten().count();
                assert!(
                    targets == 0 || targets == word.len(),
                    "word {word:?} cut: {out:?}"
                );
                word_count += 1;
                if targets > 0 {
                    chosen_words += 1;
                    pieces += targets;
                    masked += word.clone().filter(|&i| out.inputs[i] == MASK).count();
                }
            }
            for (&id, target) in ids.iter().zip(&out.targets) {
                assert!(
                    !(special(id) && target.is_some()),
                    "special token {id} chosen"
                );
            }
        }
        assert!(
            word_count > 10_000 && word_count < 50_000,
            "{word_count} words"
        );
        assert!(
            within_binomial(chosen_words, word_count, 0.15),
            "{chosen_words} of {word_count} words"
        );
        // Each piece of a chosen word is replaced on its own: 80 % become the mask token.
        assert!(within_binomial(masked, pieces, 0.8), "{masked} of {pieces}");
    }

    #[test]
    fn the_cap_drops_whole_words_only() {
        let masking = Masking {
            probability: 0.5,
            max_per_example: 7,
            ..Masking::default()
        };
        for step in 0..50 {
            let ids = &corpus()[step];
            let out = masking.apply_whole_words(
                ids,
                special,
                starts_word,
                VOCAB,
                MASK,
                &mut step_rng(0, step),
            );
            assert!(out.targets.iter().flatten().count() <= 7);
            for word in words(ids, special, starts_word) {
                let targets = out.targets[word.clone()].iter().flatten().count();
                assert!(targets == 0 || targets == word.len());
            }
        }
    }

    #[test]
    fn the_cap_keeps_at_most_that_many_targets() {
        let masking = Masking {
            probability: 0.5,
            max_per_example: 5,
            ..Masking::default()
        };
        let out = masking.apply(&corpus()[1], special, VOCAB, MASK, &mut step_rng(0, 0));
        assert_eq!(out.targets.iter().flatten().count(), 5);
        assert!(
            Masking {
                mask_share: 0.95,
                ..Masking::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn an_exact_count_chooses_that_many_uniformly_and_never_a_special_token() {
        let masking = Masking {
            exact_per_example: 20,
            ..Masking::default()
        };
        let examples = corpus();
        let mut rng = step_rng(5, 2);
        let mut hits = vec![0usize; 128];
        for ids in &examples {
            let out = masking.apply(ids, special, VOCAB, MASK, &mut rng);
            assert_eq!(out.targets.iter().flatten().count(), 20);
            for (i, target) in out.targets.iter().enumerate() {
                if target.is_some() {
                    assert!(!special(ids[i]), "special token chosen at {i}");
                    hits[i] += 1;
                }
            }
        }
        // Each of the 126 ordinary positions is chosen with probability 20/126.
        for &h in &hits[1..127] {
            assert!(within_binomial(h, examples.len(), 20.0 / 126.0), "{hits:?}");
        }
        // Fewer candidates than the count: all of them.
        let short = [2, 11, 12, 3];
        let out = masking.apply(&short, special, VOCAB, MASK, &mut rng);
        assert_eq!(out.targets, [None, Some(11), Some(12), None]);
        let both = Masking {
            max_per_example: 5,
            ..masking
        };
        assert!(both.validate().is_err());
    }
}
