//! Task-independent containers: one labelled sequence, the three splits of a task, and padding.

/// The token id reserved for padding in every task's vocabulary.
pub const PAD_ID: u32 = 0;

/// One labelled sequence of token ids (never padded; see [`pad_to`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// Token ids, as many as the source had.
    pub tokens: Vec<u32>,
    /// Class index in `0..num_classes`.
    pub label: u32,
}

/// One of the three parts a task's data is divided into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Data the model is trained on.
    Train,
    /// Data used for model selection during training.
    Val,
    /// Held-out data for the final score.
    Test,
}

impl Split {
    /// All splits, in the order train, val, test.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// Lower-case name as used in file names: `"train"`, `"val"` or `"test"`.
    pub fn name(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// A whole task: its three splits and the sizes a model needs to be built for it.
#[derive(Clone, Debug)]
pub struct TaskData {
    /// Training examples.
    pub train: Vec<Example>,
    /// Validation examples.
    pub val: Vec<Example>,
    /// Test examples.
    pub test: Vec<Example>,
    /// Number of token ids, padding included; every token is below this.
    pub vocab_size: usize,
    /// Number of classes; every label is below this.
    pub num_classes: usize,
}

impl TaskData {
    /// The examples of split `s`.
    pub fn split(&self, s: Split) -> &[Example] {
        match s {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

/// Pads with [`PAD_ID`] or truncates `tokens` to exactly `len` ids.
///
/// Returns `(ids, is_padding)`, both of length `len`; `is_padding[i]` is true exactly where
/// `ids[i]` was added as padding. Truncation keeps the first `len` tokens, as LRA does.
pub fn pad_to(tokens: &[u32], len: usize) -> (Vec<u32>, Vec<bool>) {
    let kept = tokens.len().min(len);
    let mut ids = Vec::with_capacity(len);
    ids.extend_from_slice(&tokens[..kept]);
    ids.resize(len, PAD_ID);
    let mut is_padding = vec![false; kept];
    is_padding.resize(len, true);
    (ids, is_padding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_to_pads_short_sequences_and_marks_the_padding() {
        let (ids, is_padding) = pad_to(&[5, 6, 7], 5);
        assert_eq!(ids, vec![5, 6, 7, PAD_ID, PAD_ID]);
        assert_eq!(is_padding, vec![false, false, false, true, true]);
    }

    #[test]
    fn pad_to_truncates_long_sequences_keeping_the_start() {
        let (ids, is_padding) = pad_to(&[1, 2, 3, 4], 2);
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(is_padding, vec![false, false]);
    }

    #[test]
    fn pad_to_edge_lengths() {
        assert_eq!(pad_to(&[9, 8], 2), (vec![9, 8], vec![false, false]));
        assert_eq!(pad_to(&[9, 8], 0), (vec![], vec![]));
        assert_eq!(pad_to(&[], 2), (vec![PAD_ID, PAD_ID], vec![true, true]));
    }

    #[test]
    fn split_names_and_lookup() {
        let example = |label| Example {
            tokens: vec![1],
            label,
        };
        let data = TaskData {
            train: vec![example(0)],
            val: vec![example(1)],
            test: vec![example(2)],
            vocab_size: 2,
            num_classes: 3,
        };
        let names: Vec<_> = Split::ALL.iter().map(Split::name).collect();
        assert_eq!(names, ["train", "val", "test"]);
        for (label, split) in Split::ALL.into_iter().enumerate() {
            assert_eq!(data.split(split)[0].label, label as u32);
        }
    }
}
