//! Seeded fuzzing of the readers of outside input, for the tests: every case is a sample input
//! truncated, with bytes flipped, overwritten, inserted, deleted or duplicated, spliced with
//! another sample, or replaced by random bytes. A reader must answer every case with a value or
//! an error that says where the input is wrong, never a panic.
//!
//! Cases per reader: [`DEFAULT_CASES`] (CI), or the number in the environment variable
//! [`CASES_VAR`] for longer runs (`LRA_FUZZ_CASES=1000000 cargo test --release fuzz`). A case is
//! reproduced by its seed and number alone.

use std::panic::{self, AssertUnwindSafe};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Environment variable with the number of cases per reader.
pub const CASES_VAR: &str = "LRA_FUZZ_CASES";
/// Cases per reader when [`CASES_VAR`] is unset.
pub const DEFAULT_CASES: usize = 1000;
/// Mutated inputs are cut to this length, or to the longest sample's, so that every case stays
/// fast and a large sample (a weights file) is still mutated whole rather than only truncated.
const MAX_INPUT_LEN: usize = 1 << 16;
/// Bytes that often mean something to a parser: separators, digits, signs, extremes.
const INTERESTING: &[u8] = b"\0\t\n\r \"'()[]{}=.,-+0123456789eE\x7f\x80\xff";

/// Cases per reader: [`CASES_VAR`], else [`DEFAULT_CASES`].
///
/// # Panics
/// When [`CASES_VAR`] is set to something other than a positive integer (a mistake of whoever
/// runs the tests).
pub fn cases() -> usize {
    match std::env::var(CASES_VAR) {
        Ok(text) => text
            .trim()
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{CASES_VAR}={text}: expected a positive integer")),
        Err(_) => DEFAULT_CASES,
    }
}

/// Draws inputs derived from a set of valid samples.
#[derive(Debug)]
pub struct Mutator {
    rng: ChaCha8Rng,
    samples: Vec<Vec<u8>>,
}

impl Mutator {
    /// A mutator of `samples` (at least one) whose draws are a function of `seed`.
    pub fn new(seed: u64, samples: Vec<Vec<u8>>) -> Self {
        assert!(!samples.is_empty(), "the fuzzer needs at least one sample");
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            samples,
        }
    }

    /// The next input: a sample changed by one to four mutations (or, rarely, random bytes).
    pub fn next_input(&mut self) -> Vec<u8> {
        let pick = self.rng.random_range(0..self.samples.len());
        let mut input = self.samples[pick].clone();
        for _ in 0..self.rng.random_range(1..=4) {
            self.mutate(&mut input);
        }
        input.truncate(self.max_len());
        input
    }

    /// The longest input handed out: [`MAX_INPUT_LEN`], or the longest sample if longer.
    fn max_len(&self) -> usize {
        self.samples
            .iter()
            .map(Vec::len)
            .fold(MAX_INPUT_LEN, usize::max)
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        let rng = &mut self.rng;
        let len = input.len();
        match rng.random_range(0..9) {
            0 => input.truncate(rng.random_range(0..=len)),
            1 if len > 0 => input[rng.random_range(0..len)] ^= 1 << rng.random_range(0..8),
            2 if len > 0 => input[rng.random_range(0..len)] = rng.random(),
            3 if len > 0 => {
                input[rng.random_range(0..len)] =
                    INTERESTING[rng.random_range(0..INTERESTING.len())]
            }
            4 => {
                let at = rng.random_range(0..=len);
                let count = rng.random_range(1..=16);
                let bytes: Vec<u8> = (0..count).map(|_| rng.random()).collect();
                input.splice(at..at, bytes);
            }
            5 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..=len.min(start + 64));
                input.drain(start..end);
            }
            6 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..=len.min(start + 64));
                let copy = input[start..end].to_vec();
                let at = rng.random_range(0..=len);
                input.splice(at..at, copy);
            }
            7 => {
                let other = &self.samples[rng.random_range(0..self.samples.len())];
                let keep = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                input.truncate(keep);
                input.extend_from_slice(&other[from..]);
            }
            _ => {
                let count = rng.random_range(0..=256);
                *input = (0..count).map(|_| rng.random()).collect();
            }
        }
    }
}

/// What a fuzz run saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Inputs the reader accepted.
    pub accepted: usize,
    /// Inputs the reader rejected with a well-formed error.
    pub rejected: usize,
}

/// How a reader answered one input: [`Verdict::Accepted`], [`Verdict::Rejected`] with an error
/// that meets the caller's rules, or a broken rule.
pub type Verdict = Result<bool, String>;

/// The verdict on a rejection: its message must contain `needle` (the file name, usually).
pub fn error_names(message: &str, needle: &str) -> Verdict {
    if message.contains(needle) {
        Ok(false)
    } else {
        Err(format!("the error does not name `{needle}`: {message}"))
    }
}

/// Feeds [`cases`] inputs drawn from `samples` (seed `seed`) to `read`, which returns whether the
/// input was accepted, or what rule its answer broke.
///
/// # Panics
/// With the case numbers, the seed and the messages when `read` panicked or broke a rule on any
/// input, after trying them all; the first failing input is written to the temp folder to replay.
pub fn run(
    reader: &str,
    seed: u64,
    samples: Vec<Vec<u8>>,
    mut read: impl FnMut(&[u8]) -> Verdict,
) -> Tally {
    let mut mutator = Mutator::new(seed, samples);
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    let mut first_failing_input = None;
    for case in 0..cases() {
        let input = mutator.next_input();
        let verdict = panic::catch_unwind(AssertUnwindSafe(|| read(&input)))
            .unwrap_or_else(|payload| Err(format!("panicked: {}", panic_message(&*payload))));
        match verdict {
            Ok(true) => tally.accepted += 1,
            Ok(false) => tally.rejected += 1,
            Err(broken) => {
                failures.push(format!("case {case}: {broken}"));
                first_failing_input.get_or_insert(input);
            }
        }
    }
    if let Some(input) = first_failing_input {
        let path = std::env::temp_dir().join(format!("lra-fuzz-{reader}-{seed}.bin"));
        let saved = std::fs::write(&path, input).map_or_else(
            |error| format!("(not saved: {error})"),
            |()| format!("saved to {}", path.display()),
        );
        panic!(
            "{reader}: {} of {} cases failed (seed {seed}; first failing input {saved}):\n{}",
            failures.len(),
            cases(),
            failures
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!(
        "fuzz {reader}: {} cases, {} accepted, {} rejected, no panic",
        cases(),
        tally.accepted,
        tally.rejected
    );
    tally
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_a_function_of_the_seed_and_differ_from_the_sample() {
        let sample = b"Source\tTarget\n[MAX 1 2 ]\t2\n".to_vec();
        let draw = |seed| {
            let mut mutator = Mutator::new(seed, vec![sample.clone()]);
            (0..200).map(|_| mutator.next_input()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let changed = draw(7).iter().filter(|input| **input != sample).count();
        assert!(
            changed >= 190,
            "only {changed} of 200 inputs differ from the sample"
        );
        assert!(draw(7).iter().all(|input| input.len() <= MAX_INPUT_LEN));
    }

    #[test]
    fn a_sample_longer_than_the_cap_is_mutated_whole_not_only_truncated() {
        let sample = vec![7u8; MAX_INPUT_LEN + 20_000];
        let mut mutator = Mutator::new(3, vec![sample.clone()]);
        let inputs: Vec<Vec<u8>> = (0..200).map(|_| mutator.next_input()).collect();
        assert!(inputs.iter().all(|input| input.len() <= sample.len()));
        let same_length = inputs.iter().filter(|i| i.len() == sample.len()).count();
        assert!(
            same_length >= 20,
            "only {same_length} of 200 inputs keep the sample's length"
        );
    }

    #[test]
    #[should_panic(expected = "panicked: index out of bounds")]
    fn a_panicking_reader_fails_the_run_with_its_message() {
        run("panics", 1, vec![b"abc".to_vec()], |input| {
            let _ = input[input.len() + 1];
            Ok(true)
        });
    }
}
