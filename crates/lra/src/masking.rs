//! Masked-LM inputs as BERT draws them (and transformers' `DataCollatorForLanguageModeling`):
//! each token is chosen with probability 15 %, special tokens never; a chosen token becomes the
//! mask token (80 %), a random vocabulary token (10 %) or stays (10 %), and is a prediction
//! target. Draws come from (seed, step), so a resumed run masks exactly as the uninterrupted one.

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
    /// At most this many targets per example (MRA: 77 of 512), the excess dropped at random;
    /// 0 = no cap.
    pub max_per_example: usize,
}

impl Default for Masking {
    fn default() -> Self {
        Self {
            probability: 0.15,
            mask_share: 0.8,
            random_share: 0.1,
            max_per_example: 0,
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
}
