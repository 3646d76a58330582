//! The official LRA ListOps generator, reproduced on a portable, seeded random number generator.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::expr::{self, MAX_NESTING};
use super::{DIGIT_ZERO_ID, END_ID, Expr, FIRST_OP_ID, Op};
use crate::error::{DataError, Result};

/// Probability that a node above the depth limit becomes an operator rather than a digit
/// (`VALUE_P` of the official generator).
pub const VALUE_P: f64 = 0.25;

/// How many attempts in a row may fail to yield a new expression before [`generate`] gives up;
/// with the official limits about one attempt in 12 succeeds.
const MAX_FRUITLESS_ATTEMPTS: u64 = 1_000_000;

/// Sizes and limits for [`generate`]; [`Default`] gives the official LRA ListOps settings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateConfig {
    /// Number of training expressions.
    pub train: usize,
    /// Number of validation expressions.
    pub val: usize,
    /// Number of test expressions.
    pub test: usize,
    /// Every expression has more than this many tokens (see [`Expr::token_len`]).
    pub min_len: usize,
    /// Every expression has fewer than this many tokens.
    pub max_len: usize,
    /// Most levels a tree may have, counting the root as level 1 ([`Expr::depth`]).
    pub max_depth: usize,
    /// Most arguments of one operator; every operator gets at least 2.
    pub max_args: usize,
    /// Seed of the random number generator; the same configuration always gives the same data.
    pub seed: u64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            train: 96_000,
            val: 2_000,
            test: 2_000,
            min_len: 500,
            max_len: 2_000,
            max_depth: 10,
            max_args: 10,
            seed: 0,
        }
    }
}

/// Generates distinct random expressions as the official LRA ListOps script does, returned as
/// `[train, val, test]`.
///
/// A tree is drawn top-down from the root at depth 1: below `max_depth` a node is an operator with
/// probability [`VALUE_P`], otherwise a uniformly random digit; an operator gets a uniform number
/// of arguments in `2..=max_args`, each drawn the same way one level deeper, and a uniformly
/// chosen operator. A tree is kept when `min_len < token_len < max_len` and its string has not
/// been kept before; the kept trees fill train, val and test in that order.
///
/// Fails with [`DataError::Invalid`] when the limits admit no tree, or when
/// 1,000,000 attempts in a row bring no new one (the limits leave too few distinct trees).
pub fn generate(cfg: &GenerateConfig) -> Result<[Vec<Expr>; 3]> {
    validate(cfg)?;
    let wanted = cfg
        .train
        .checked_add(cfg.val)
        .and_then(|n| n.checked_add(cfg.test))
        .ok_or_else(|| DataError::Invalid("train + val + test overflows".to_string()))?;

    let mut sampler = Sampler {
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        max_depth: cfg.max_depth,
        max_args: cfg.max_args,
        max_len: cfg.max_len,
        ids: Vec::with_capacity(cfg.max_len),
    };
    // Trees are compared by their prefix token ids, one byte per token: equal ids mean equal
    // strings, and the set stays a small fraction of the trees' own size.
    let mut seen: HashSet<Box<[u8]>> = HashSet::with_capacity(wanted.min(1 << 20));
    let mut exprs = Vec::with_capacity(wanted.min(1 << 20));
    let mut fruitless_attempts = 0;
    while exprs.len() < wanted {
        let ids = sampler.sample();
        if ids.is_some_and(|ids| ids.len() > cfg.min_len && !seen.contains(ids)) {
            let ids = sampler.ids.as_slice();
            seen.insert(ids.into());
            let tree = expr::from_ids(ids.iter().map(|&id| u32::from(id)))
                .expect("the sampler emits well-formed prefix sequences");
            exprs.push(tree);
            fruitless_attempts = 0;
        } else {
            fruitless_attempts += 1;
            if fruitless_attempts >= MAX_FRUITLESS_ATTEMPTS {
                return Err(DataError::Invalid(format!(
                    "gave up after {MAX_FRUITLESS_ATTEMPTS} attempts in a row without a new \
                     expression ({} of {wanted} found): min_len {}, max_len {}, max_depth {} and \
                     max_args {} allow too few distinct expressions",
                    exprs.len(),
                    cfg.min_len,
                    cfg.max_len,
                    cfg.max_depth,
                    cfg.max_args
                )));
            }
        }
    }
    let mut val = exprs.split_off(cfg.train);
    let test = val.split_off(cfg.val);
    Ok([exprs, val, test])
}

fn validate(cfg: &GenerateConfig) -> Result<()> {
    let invalid = |message: String| Err(DataError::Invalid(message));
    if cfg.max_args < 2 {
        return invalid(format!(
            "max_args is {} but every operator takes at least 2 arguments",
            cfg.max_args
        ));
    }
    if cfg.max_depth == 0 || cfg.max_depth > MAX_NESTING {
        return invalid(format!(
            "max_depth is {}; it must be in 1..={MAX_NESTING}",
            cfg.max_depth
        ));
    }
    if cfg.min_len.saturating_add(1) >= cfg.max_len {
        return invalid(format!(
            "no length lies strictly between min_len {} and max_len {}",
            cfg.min_len, cfg.max_len
        ));
    }
    let longest = (1..cfg.max_depth).fold(1usize, |below, _| {
        cfg.max_args.saturating_mul(below).saturating_add(2)
    });
    if longest <= cfg.min_len {
        return invalid(format!(
            "the longest expression max_depth {} and max_args {} allow has {longest} tokens, \
             not more than min_len {}",
            cfg.max_depth, cfg.max_args, cfg.min_len
        ));
    }
    Ok(())
}

/// Draws trees as prefix token ids into a reused buffer, so rejected attempts allocate nothing.
struct Sampler {
    rng: ChaCha8Rng,
    max_depth: usize,
    max_args: usize,
    max_len: usize,
    ids: Vec<u8>,
}

impl Sampler {
    /// Draws one tree; `None` when it reached `max_len` tokens, at which point drawing stops early
    /// since a tree only grows.
    fn sample(&mut self) -> Option<&[u8]> {
        self.ids.clear();
        self.node(1).then_some(self.ids.as_slice())
    }

    /// Draws the subtree at `depth`, consuming random numbers in the official script's order:
    /// the operator-or-digit coin, then the digit or the argument count, the arguments, and last
    /// the operator. Returns false once the tree is too long.
    fn node(&mut self, depth: usize) -> bool {
        let is_operator = depth < self.max_depth && self.rng.random::<f64>() <= VALUE_P;
        if !is_operator {
            let digit = self.rng.random_range(0..10u8);
            self.ids.push(DIGIT_ZERO_ID as u8 + digit);
            return self.ids.len() < self.max_len;
        }
        let arg_count = self.rng.random_range(2..=self.max_args);
        let op_slot = self.ids.len();
        self.ids.push(0);
        for _ in 0..arg_count {
            if !self.node(depth + 1) {
                return false;
            }
        }
        let op = self.rng.random_range(0..Op::ALL.len());
        self.ids[op_slot] = (FIRST_OP_ID as usize + op) as u8;
        self.ids.push(END_ID as u8);
        self.ids.len() < self.max_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_config() -> GenerateConfig {
        GenerateConfig {
            train: 50,
            val: 10,
            test: 10,
            min_len: 20,
            max_len: 100,
            max_depth: 6,
            max_args: 5,
            seed: 7,
        }
    }

    fn expect_invalid(cfg: GenerateConfig, fragment: &str) {
        match generate(&cfg) {
            Err(DataError::Invalid(message)) => {
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}")
            }
            other => panic!("expected Invalid containing {fragment:?}, got {other:?}"),
        }
    }

    #[test]
    fn default_is_the_official_configuration() {
        let cfg = GenerateConfig::default();
        assert_eq!((cfg.train, cfg.val, cfg.test), (96_000, 2_000, 2_000));
        assert_eq!((cfg.min_len, cfg.max_len), (500, 2_000));
        assert_eq!((cfg.max_depth, cfg.max_args, cfg.seed), (10, 10, 0));
    }

    #[test]
    fn split_sizes_follow_the_config() {
        let [train, val, test] = generate(&small_config()).unwrap();
        assert_eq!((train.len(), val.len(), test.len()), (50, 10, 10));
        let empty = GenerateConfig {
            train: 0,
            val: 0,
            test: 0,
            ..small_config()
        };
        assert_eq!(generate(&empty).unwrap(), [vec![], vec![], vec![]]);
    }

    #[test]
    fn impossible_limits_are_rejected_up_front() {
        let base = small_config();
        expect_invalid(
            GenerateConfig {
                min_len: 100,
                ..base.clone()
            },
            "strictly between",
        );
        expect_invalid(
            GenerateConfig {
                min_len: 99,
                ..base.clone()
            },
            "strictly between",
        );
        expect_invalid(
            GenerateConfig {
                max_args: 1,
                ..base.clone()
            },
            "max_args",
        );
        expect_invalid(
            GenerateConfig {
                max_depth: 0,
                ..base.clone()
            },
            "max_depth",
        );
        // Depth 3 with 2 arguments reaches at most 2 + 2 * (2 + 2 * 1) = 10 tokens.
        expect_invalid(
            GenerateConfig {
                max_depth: 3,
                max_args: 2,
                ..base
            },
            "longest expression",
        );
    }

    #[test]
    fn too_few_distinct_trees_ends_with_an_error_instead_of_looping() {
        // Only the 4 operators x 100 digit pairs = 400 trees have exactly 4 tokens.
        let cfg = GenerateConfig {
            train: 401,
            val: 0,
            test: 0,
            min_len: 3,
            max_len: 5,
            max_depth: 2,
            max_args: 2,
            seed: 1,
        };
        expect_invalid(cfg.clone(), "400 of 401 found");
        let [all, _, _] = generate(&GenerateConfig { train: 400, ..cfg }).unwrap();
        assert_eq!(all.len(), 400);
    }

    #[test]
    fn depth_one_allows_only_digits() {
        let cfg = GenerateConfig {
            train: 10,
            val: 0,
            test: 0,
            min_len: 0,
            max_len: 2,
            max_depth: 1,
            max_args: 10,
            seed: 3,
        };
        let [digits, _, _] = generate(&cfg).unwrap();
        let mut values: Vec<u8> = digits.iter().map(Expr::value).collect();
        values.sort_unstable();
        assert_eq!(values, (0..10).collect::<Vec<u8>>());
    }
}
