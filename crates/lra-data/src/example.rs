//! Task-independent containers: one labelled sequence, the compact storage of a split, the three
//! splits of a task, and padding.

use std::sync::Arc;

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

/// The token bytes of a split: built in memory, or memory-mapped from a prepared cache file.
#[derive(Clone, Debug)]
enum TokenBytes {
    Owned(Arc<Vec<u8>>),
    Mapped {
        map: Arc<memmap2::Mmap>,
        range: std::ops::Range<usize>,
    },
}

impl TokenBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            TokenBytes::Owned(bytes) => bytes,
            TokenBytes::Mapped { map, range } => &map[range.clone()],
        }
    }
}

/// One split, stored compactly: every document's tokens one byte each (token id = byte +
/// `id_offset`) in one flat buffer with offsets, and the labels beside them.
///
/// One byte per token keeps Path-X (160K × 16,384 pixels) at 2.6 GB, which a memory-mapped cache
/// serves without reading it into memory. Every LRA vocabulary fits: bytes/pixels with offset 1
/// (text, retrieval) or 0 (image, pathfinder), ListOps ids below 16. Cloning is cheap (the token
/// buffer is shared), so a task may use one split twice (IMDB validates on its test set).
#[derive(Clone, Debug)]
pub struct SplitData {
    docs_per_example: usize,
    id_offset: u32,
    labels: Vec<u32>,
    /// `examples · docs_per_example + 1` positions in the token buffer; document `j` of example
    /// `i` is `offsets[i·d + j] .. offsets[i·d + j + 1]`.
    offsets: Vec<u64>,
    tokens: TokenBytes,
}

impl SplitData {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// 1 for single sequences, 2 for pairs (retrieval).
    pub fn docs_per_example(&self) -> usize {
        self.docs_per_example
    }

    /// Added to every stored byte to give the token id.
    pub fn id_offset(&self) -> u32 {
        self.id_offset
    }

    /// Every example's class index.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Stored bytes of document `doc` of example `index` (token ids minus [`Self::id_offset`]).
    ///
    /// # Panics
    /// If `index` or `doc` is out of range.
    pub fn document(&self, index: usize, doc: usize) -> &[u8] {
        assert!(
            doc < self.docs_per_example,
            "document {doc} of a {}-document split",
            self.docs_per_example
        );
        let slot = index * self.docs_per_example + doc;
        let range = self.offsets[slot] as usize..self.offsets[slot + 1] as usize;
        &self.tokens.as_slice()[range]
    }

    /// Token ids of document `doc` of example `index`.
    pub fn token_ids(&self, index: usize, doc: usize) -> impl Iterator<Item = u32> + '_ {
        let offset = self.id_offset;
        self.document(index, doc)
            .iter()
            .map(move |&byte| u32::from(byte) + offset)
    }

    /// Length of every document, example by example.
    pub fn document_lengths(&self) -> impl Iterator<Item = usize> + '_ {
        self.offsets.windows(2).map(|w| (w[1] - w[0]) as usize)
    }

    /// The flat token buffer and its offsets, for writing a cache file.
    pub(crate) fn raw_parts(&self) -> (&[u64], &[u8]) {
        (&self.offsets, self.tokens.as_slice())
    }

    /// A split whose tokens are the bytes `range` of `map`; the caller has checked that `offsets`
    /// and `labels` fit them.
    pub(crate) fn mapped(
        docs_per_example: usize,
        id_offset: u32,
        labels: Vec<u32>,
        offsets: Vec<u64>,
        map: Arc<memmap2::Mmap>,
        range: std::ops::Range<usize>,
    ) -> Self {
        Self {
            docs_per_example,
            id_offset,
            labels,
            offsets,
            tokens: TokenBytes::Mapped { map, range },
        }
    }

    /// The compact form of `examples` (id offset 0), for readers that produce [`Example`]s.
    /// Fails when a token id does not fit in a byte.
    pub fn from_examples(examples: &[Example]) -> std::result::Result<Self, String> {
        let mut builder = SplitBuilder::new(1, 0);
        for (index, example) in examples.iter().enumerate() {
            let bytes: Vec<u8> = example
                .tokens
                .iter()
                .map(|&id| u8::try_from(id))
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| format!("example {index}: a token id is above 255"))?;
            builder.push(&[&bytes], example.label);
        }
        Ok(builder.finish())
    }
}

/// Collects examples into a [`SplitData`].
#[derive(Debug)]
pub struct SplitBuilder {
    docs_per_example: usize,
    id_offset: u32,
    labels: Vec<u32>,
    offsets: Vec<u64>,
    tokens: Vec<u8>,
}

impl SplitBuilder {
    /// An empty split of `docs_per_example` documents per example whose token ids are the
    /// stored bytes plus `id_offset`.
    pub fn new(docs_per_example: usize, id_offset: u32) -> Self {
        Self {
            docs_per_example,
            id_offset,
            labels: Vec::new(),
            offsets: vec![0],
            tokens: Vec::new(),
        }
    }

    /// Appends one example.
    ///
    /// # Panics
    /// If `documents` does not hold exactly `docs_per_example` documents (a reader bug).
    pub fn push(&mut self, documents: &[&[u8]], label: u32) {
        assert_eq!(
            documents.len(),
            self.docs_per_example,
            "documents per example"
        );
        for document in documents {
            self.tokens.extend_from_slice(document);
            self.offsets.push(self.tokens.len() as u64);
        }
        self.labels.push(label);
    }

    /// Number of examples so far.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no example was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The finished split.
    pub fn finish(self) -> SplitData {
        SplitData {
            docs_per_example: self.docs_per_example,
            id_offset: self.id_offset,
            labels: self.labels,
            offsets: self.offsets,
            tokens: TokenBytes::Owned(Arc::new(self.tokens)),
        }
    }
}

/// A whole task: its three splits and the sizes a model needs to be built for it.
#[derive(Clone, Debug)]
pub struct TaskData {
    /// Training examples.
    pub train: SplitData,
    /// Validation examples.
    pub val: SplitData,
    /// Test examples.
    pub test: SplitData,
    /// Number of token ids, padding included; every token is below this.
    pub vocab_size: usize,
    /// Number of classes; every label is below this.
    pub num_classes: usize,
}

impl TaskData {
    /// The examples of split `s`.
    pub fn split(&self, s: Split) -> &SplitData {
        match s {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// 1 for single-sequence tasks, 2 for pair tasks (retrieval).
    pub fn docs_per_example(&self) -> usize {
        self.train.docs_per_example()
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
    fn split_builder_keeps_documents_labels_and_offsets() {
        let mut builder = SplitBuilder::new(2, 1);
        builder.push(&[b"ab", b""], 1);
        builder.push(&[&[0, 255], b"c"], 0);
        let split = builder.finish();
        assert_eq!(split.len(), 2);
        assert_eq!(split.labels(), [1, 0]);
        assert_eq!(split.document(0, 0), b"ab");
        assert_eq!(split.document(0, 1), b"");
        assert_eq!(split.token_ids(1, 0).collect::<Vec<_>>(), [1, 256]);
        assert_eq!(
            split.token_ids(1, 1).collect::<Vec<_>>(),
            [u32::from(b'c') + 1]
        );
        assert_eq!(split.document_lengths().collect::<Vec<_>>(), [2, 0, 2, 1]);
    }

    #[test]
    fn from_examples_rejects_ids_above_a_byte() {
        let fits = Example {
            tokens: vec![0, 15, 255],
            label: 3,
        };
        let split = SplitData::from_examples(std::slice::from_ref(&fits)).unwrap();
        assert_eq!(split.token_ids(0, 0).collect::<Vec<_>>(), fits.tokens);
        let too_big = Example {
            tokens: vec![256],
            label: 0,
        };
        assert!(
            SplitData::from_examples(&[fits, too_big])
                .unwrap_err()
                .contains("example 1")
        );
    }

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
        let split = |label| {
            let mut builder = SplitBuilder::new(1, 0);
            builder.push(&[&[1]], label);
            builder.finish()
        };
        let data = TaskData {
            train: split(0),
            val: split(1),
            test: split(2),
            vocab_size: 2,
            num_classes: 3,
        };
        let names: Vec<_> = Split::ALL.iter().map(Split::name).collect();
        assert_eq!(names, ["train", "val", "test"]);
        for (label, split) in Split::ALL.into_iter().enumerate() {
            assert_eq!(data.split(split).labels(), [label as u32]);
        }
    }
}
