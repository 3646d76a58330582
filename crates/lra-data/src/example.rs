//! Task-independent containers: one labelled sequence, the compact storage of a split (token ids
//! of a width chosen per task, optional token types, class ids, scores or no labels), the splits
//! of a task, and padding.

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

/// What one example is labelled with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Class id in `0..num_classes`.
    Class(u32),
    /// A real-valued score (GLUE STS-B).
    Score(f32),
}

/// The gold answers of a split.
#[derive(Clone, Debug, PartialEq)]
pub enum Labels {
    /// One class id per example.
    Classes(Vec<u32>),
    /// One real-valued score per example.
    Scores(Vec<f32>),
    /// No answers (GLUE test sets, scored by the benchmark's server).
    Unlabelled,
}

/// Which kind of [`Labels`] a split holds; stored in the cache header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
    Classes,
    Scores,
    Unlabelled,
}

impl Labels {
    /// An empty list of this kind.
    pub fn empty(kind: LabelKind) -> Self {
        match kind {
            LabelKind::Classes => Labels::Classes(Vec::new()),
            LabelKind::Scores => Labels::Scores(Vec::new()),
            LabelKind::Unlabelled => Labels::Unlabelled,
        }
    }

    /// Which kind this is.
    pub fn kind(&self) -> LabelKind {
        match self {
            Labels::Classes(_) => LabelKind::Classes,
            Labels::Scores(_) => LabelKind::Scores,
            Labels::Unlabelled => LabelKind::Unlabelled,
        }
    }

    /// The answer of example `index` (`None` when unlabelled).
    pub fn get(&self, index: usize) -> Option<Target> {
        match self {
            Labels::Classes(classes) => Some(Target::Class(classes[index])),
            Labels::Scores(scores) => Some(Target::Score(scores[index])),
            Labels::Unlabelled => None,
        }
    }

    fn push(&mut self, target: Option<Target>) -> Result<(), String> {
        match (self, target) {
            (Labels::Classes(classes), Some(Target::Class(class))) => classes.push(class),
            (Labels::Scores(scores), Some(Target::Score(score))) => scores.push(score),
            (Labels::Unlabelled, None) => {}
            (labels, target) => {
                return Err(format!(
                    "a {target:?} target in a split of {:?} labels",
                    labels.kind()
                ));
            }
        }
        Ok(())
    }
}

/// Bytes per stored token: the smallest width that holds a task's ids, so Path-X's pixels take
/// one byte each and word pieces two (BERT's 30,522 ids) or four.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenWidth {
    U8,
    U16,
    U32,
}

impl TokenWidth {
    /// Bytes per token.
    pub fn bytes(self) -> usize {
        match self {
            TokenWidth::U8 => 1,
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }

    /// The width of `bytes` bytes, if there is one.
    pub fn from_bytes(bytes: usize) -> Option<Self> {
        match bytes {
            1 => Some(TokenWidth::U8),
            2 => Some(TokenWidth::U16),
            4 => Some(TokenWidth::U32),
            _ => None,
        }
    }

    /// The narrowest width that stores every id below `vocab_size` (ids stored minus `id_offset`).
    pub fn for_vocab(vocab_size: usize, id_offset: u32) -> Self {
        let largest = vocab_size.saturating_sub(id_offset as usize + 1);
        if largest <= u8::MAX as usize {
            TokenWidth::U8
        } else if largest <= u16::MAX as usize {
            TokenWidth::U16
        } else {
            TokenWidth::U32
        }
    }

    /// Largest value one token of this width stores.
    pub fn max_value(self) -> u32 {
        match self {
            TokenWidth::U8 => u8::MAX.into(),
            TokenWidth::U16 => u16::MAX.into(),
            TokenWidth::U32 => u32::MAX,
        }
    }

    /// The value of one little-endian stored token (`bytes.len() == self.bytes()`).
    fn decode(bytes: &[u8]) -> u32 {
        match *bytes {
            [b] => b.into(),
            [a, b] => u16::from_le_bytes([a, b]).into(),
            [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
            _ => unreachable!("tokens are 1, 2 or 4 bytes"),
        }
    }

    fn encode(self, value: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&value.to_le_bytes()[..self.bytes()]);
    }
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

/// Bytes of a split: built in memory, or memory-mapped from a prepared cache file.
#[derive(Clone, Debug)]
enum Stored {
    Owned(Arc<Vec<u8>>),
    Mapped {
        map: Arc<memmap2::Mmap>,
        range: std::ops::Range<usize>,
    },
}

impl Stored {
    fn as_slice(&self) -> &[u8] {
        match self {
            Stored::Owned(bytes) => bytes,
            Stored::Mapped { map, range } => &map[range.clone()],
        }
    }
}

/// How a split's tokens and labels are stored: everything the cache header records about them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitFormat {
    /// 1 for single sequences, 2 for pairs through a dual encoder (retrieval).
    pub docs_per_example: usize,
    /// Added to every stored value to give the token id.
    pub id_offset: u32,
    /// Bytes per stored token.
    pub width: TokenWidth,
    /// Class ids, scores or none.
    pub labels: LabelKind,
    /// A token-type (segment) id per token, one byte each (BERT sentence pairs).
    pub token_types: bool,
}

impl SplitFormat {
    /// One byte per token with class labels: every LRA task.
    pub fn bytes(docs_per_example: usize, id_offset: u32) -> Self {
        Self {
            docs_per_example,
            id_offset,
            width: TokenWidth::U8,
            labels: LabelKind::Classes,
            token_types: false,
        }
    }
}

/// One split, stored compactly: every document's tokens in one flat buffer (token id = stored
/// value + `id_offset`, [`TokenWidth`] bytes each) with offsets, optional token types beside
/// them, and the labels.
///
/// One byte per token keeps Path-X (160K × 16,384 pixels) at 2.6 GB, which a memory-mapped cache
/// serves without reading it into memory. Cloning is cheap (the buffers are shared), so a task may
/// use one split twice (IMDB validates on its test set).
#[derive(Clone, Debug)]
pub struct SplitData {
    format: SplitFormat,
    labels: Labels,
    /// `examples · docs_per_example + 1` token positions; document `j` of example `i` is tokens
    /// `offsets[i·d + j] .. offsets[i·d + j + 1]`.
    offsets: Vec<u64>,
    tokens: Stored,
    types: Option<Stored>,
}

impl SplitData {
    /// Number of examples.
    pub fn len(&self) -> usize {
        (self.offsets.len() - 1) / self.format.docs_per_example
    }

    /// Whether the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How tokens and labels are stored.
    pub fn format(&self) -> SplitFormat {
        self.format
    }

    /// 1 for single sequences, 2 for pairs (retrieval).
    pub fn docs_per_example(&self) -> usize {
        self.format.docs_per_example
    }

    /// Added to every stored value to give the token id.
    pub fn id_offset(&self) -> u32 {
        self.format.id_offset
    }

    /// The gold answers.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Every example's class id, for class-labelled splits.
    pub fn class_ids(&self) -> Option<&[u32]> {
        match &self.labels {
            Labels::Classes(classes) => Some(classes),
            _ => None,
        }
    }

    fn token_range(&self, index: usize, doc: usize) -> std::ops::Range<usize> {
        assert!(
            doc < self.format.docs_per_example,
            "document {doc} of a {}-document split",
            self.format.docs_per_example
        );
        let slot = index * self.format.docs_per_example + doc;
        self.offsets[slot] as usize..self.offsets[slot + 1] as usize
    }

    /// Token ids of document `doc` of example `index`.
    ///
    /// # Panics
    /// If `index` or `doc` is out of range.
    pub fn token_ids(&self, index: usize, doc: usize) -> impl Iterator<Item = u32> + '_ {
        let range = self.token_range(index, doc);
        let width = self.format.width.bytes();
        let offset = self.format.id_offset;
        self.tokens.as_slice()[range.start * width..range.end * width]
            .chunks_exact(width)
            .map(move |bytes| TokenWidth::decode(bytes) + offset)
    }

    /// Token-type ids of document `doc` of example `index`, when the split stores them.
    pub fn token_types(&self, index: usize, doc: usize) -> Option<&[u8]> {
        let range = self.token_range(index, doc);
        self.types.as_ref().map(|types| &types.as_slice()[range])
    }

    /// Length of every document, example by example.
    pub fn document_lengths(&self) -> impl Iterator<Item = usize> + '_ {
        self.offsets.windows(2).map(|w| (w[1] - w[0]) as usize)
    }

    /// The offsets, the token bytes and the token-type bytes, for writing a cache file.
    pub(crate) fn raw_parts(&self) -> (&[u64], &[u8], Option<&[u8]>) {
        (
            &self.offsets,
            self.tokens.as_slice(),
            self.types.as_ref().map(Stored::as_slice),
        )
    }

    /// A split whose tokens (and types) are byte ranges of `map`; the caller has checked that
    /// `offsets` and `labels` fit them.
    pub(crate) fn mapped(
        format: SplitFormat,
        labels: Labels,
        offsets: Vec<u64>,
        map: Arc<memmap2::Mmap>,
        tokens: std::ops::Range<usize>,
        types: Option<std::ops::Range<usize>>,
    ) -> Self {
        Self {
            format,
            labels,
            offsets,
            types: types.map(|range| Stored::Mapped {
                map: map.clone(),
                range,
            }),
            tokens: Stored::Mapped { map, range: tokens },
        }
    }

    /// The compact form of `examples` (id offset 0, one byte per token), for readers that
    /// produce [`Example`]s. Fails when a token id does not fit in a byte.
    pub fn from_examples(examples: &[Example]) -> std::result::Result<Self, String> {
        let mut builder = SplitBuilder::new(1, 0);
        for (index, example) in examples.iter().enumerate() {
            builder
                .push_ids(&[&example.tokens], None, Some(Target::Class(example.label)))
                .map_err(|reason| format!("example {index}: {reason}"))?;
        }
        Ok(builder.finish())
    }
}

/// Collects examples into a [`SplitData`].
#[derive(Debug)]
pub struct SplitBuilder {
    format: SplitFormat,
    labels: Labels,
    offsets: Vec<u64>,
    tokens: Vec<u8>,
    types: Vec<u8>,
}

impl SplitBuilder {
    /// An empty split of `docs_per_example` documents per example whose token ids are the
    /// stored bytes plus `id_offset`, labelled with classes (the LRA tasks).
    pub fn new(docs_per_example: usize, id_offset: u32) -> Self {
        Self::with_format(SplitFormat::bytes(docs_per_example, id_offset))
    }

    /// An empty split stored as `format` says.
    pub fn with_format(format: SplitFormat) -> Self {
        Self {
            format,
            labels: Labels::empty(format.labels),
            offsets: vec![0],
            tokens: Vec::new(),
            types: Vec::new(),
        }
    }

    /// Appends one example of byte tokens with a class label.
    ///
    /// # Panics
    /// If `documents` does not hold exactly `docs_per_example` documents, or the split is not
    /// one byte per token with class labels (reader bugs).
    pub fn push(&mut self, documents: &[&[u8]], label: u32) {
        assert_eq!(
            documents.len(),
            self.format.docs_per_example,
            "documents per example"
        );
        assert_eq!(
            self.format,
            SplitFormat::bytes(self.format.docs_per_example, self.format.id_offset),
            "push takes byte tokens with class labels"
        );
        for document in documents {
            self.tokens.extend_from_slice(document);
            self.offsets.push(self.tokens.len() as u64);
        }
        if let Labels::Classes(classes) = &mut self.labels {
            classes.push(label);
        }
    }

    /// Appends one example given as token ids, with its token types (one per token of all
    /// documents, when the format has them) and its target (`None` for unlabelled splits).
    /// Fails, leaving the builder unchanged, when an id does not fit the width or the example
    /// does not fit the format.
    pub fn push_ids(
        &mut self,
        documents: &[&[u32]],
        types: Option<&[u32]>,
        target: Option<Target>,
    ) -> Result<(), String> {
        let format = self.format;
        if documents.len() != format.docs_per_example {
            return Err(format!(
                "{} documents, expected {}",
                documents.len(),
                format.docs_per_example
            ));
        }
        let total: usize = documents.iter().map(|d| d.len()).sum();
        match (format.token_types, types) {
            (true, Some(types)) if types.len() == total => {
                if let Some(bad) = types.iter().find(|&&t| t > u8::MAX.into()) {
                    return Err(format!("token type {bad} does not fit in a byte"));
                }
            }
            (true, Some(types)) => {
                return Err(format!("{} token types for {total} tokens", types.len()));
            }
            (true, None) => return Err("token types missing".into()),
            (false, Some(_)) => return Err("token types given to a split without them".into()),
            (false, None) => {}
        }
        let max = u64::from(format.width.max_value()) + u64::from(format.id_offset);
        if let Some(id) = documents
            .iter()
            .flat_map(|d| d.iter())
            .find(|&&id| id < format.id_offset || u64::from(id) > max)
        {
            return Err(format!(
                "token id {id} is outside {}..={max}, what {}-byte tokens with offset {} hold",
                format.id_offset,
                format.width.bytes(),
                format.id_offset
            ));
        }
        self.labels.push(target)?;
        for document in documents {
            for &id in *document {
                format.width.encode(id - format.id_offset, &mut self.tokens);
            }
            self.offsets
                .push((self.tokens.len() / format.width.bytes()) as u64);
        }
        if let Some(types) = types {
            self.types.extend(types.iter().map(|&t| t as u8));
        }
        Ok(())
    }

    /// Number of examples so far.
    pub fn len(&self) -> usize {
        (self.offsets.len() - 1) / self.format.docs_per_example
    }

    /// Whether no example was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The finished split.
    pub fn finish(self) -> SplitData {
        SplitData {
            format: self.format,
            labels: self.labels,
            offsets: self.offsets,
            tokens: Stored::Owned(Arc::new(self.tokens)),
            types: self
                .format
                .token_types
                .then(|| Stored::Owned(Arc::new(self.types))),
        }
    }
}

/// An evaluation split beyond validation and test (MNLI's mismatched sets, GLUE's AX), scored or
/// predicted with the best model at the end of a run.
#[derive(Clone, Debug)]
pub struct NamedSplit {
    /// Name in results and cache files (`validation_mismatched`, …).
    pub name: String,
    /// Its examples.
    pub data: SplitData,
}

/// A whole task: its splits and the sizes a model needs to be built for it.
#[derive(Clone, Debug)]
pub struct TaskData {
    /// Training examples.
    pub train: SplitData,
    /// Validation examples (they select the best checkpoint).
    pub val: SplitData,
    /// Test examples (possibly unlabelled).
    pub test: SplitData,
    /// Further evaluation splits, in the task's order.
    pub extra: Vec<NamedSplit>,
    /// Number of token ids, padding included; every token is below this.
    pub vocab_size: usize,
    /// Number of classes (1 for a regression task); every class id is below this.
    pub num_classes: usize,
}

impl TaskData {
    /// A task with the three usual splits and no others.
    pub fn new(
        train: SplitData,
        val: SplitData,
        test: SplitData,
        vocab_size: usize,
        num_classes: usize,
    ) -> Self {
        Self {
            train,
            val,
            test,
            extra: Vec::new(),
            vocab_size,
            num_classes,
        }
    }

    /// The examples of split `s`.
    pub fn split(&self, s: Split) -> &SplitData {
        match s {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// Every split by name: `train`, `val`, `test`, then the extra ones.
    pub fn named_splits(&self) -> impl Iterator<Item = (&str, &SplitData)> {
        Split::ALL
            .iter()
            .map(|&s| (s.name(), self.split(s)))
            .chain(self.extra.iter().map(|e| (e.name.as_str(), &e.data)))
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
        assert_eq!(split.class_ids(), Some(&[1, 0][..]));
        let ids = |i, d| split.token_ids(i, d).collect::<Vec<_>>();
        assert_eq!(ids(0, 0), [u32::from(b'a') + 1, u32::from(b'b') + 1]);
        assert!(ids(0, 1).is_empty());
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
    fn wide_tokens_types_scores_and_unlabelled_splits_round_trip() {
        for (width, id) in [(TokenWidth::U16, 30_521), (TokenWidth::U32, 250_001)] {
            let format = SplitFormat {
                docs_per_example: 1,
                id_offset: 0,
                width,
                labels: LabelKind::Scores,
                token_types: true,
            };
            let mut builder = SplitBuilder::with_format(format);
            builder
                .push_ids(
                    &[&[101, id, 102]],
                    Some(&[0, 0, 1]),
                    Some(Target::Score(3.8)),
                )
                .unwrap();
            builder
                .push_ids(&[&[7]], Some(&[1]), Some(Target::Score(0.0)))
                .unwrap();
            let split = builder.finish();
            assert_eq!(split.token_ids(0, 0).collect::<Vec<_>>(), [101, id, 102]);
            assert_eq!(split.token_types(0, 0), Some(&[0u8, 0, 1][..]));
            assert_eq!(split.token_types(1, 0), Some(&[1u8][..]));
            assert_eq!(split.labels(), &Labels::Scores(vec![3.8, 0.0]));
            assert_eq!(split.class_ids(), None);
        }
        let mut unlabelled = SplitBuilder::with_format(SplitFormat {
            labels: LabelKind::Unlabelled,
            ..SplitFormat::bytes(1, 0)
        });
        unlabelled.push_ids(&[&[1, 2]], None, None).unwrap();
        assert_eq!(unlabelled.finish().labels().get(0), None);
    }

    #[test]
    fn push_ids_refuses_what_does_not_fit_and_keeps_the_builder_unchanged() {
        let format = SplitFormat {
            width: TokenWidth::U16,
            token_types: true,
            ..SplitFormat::bytes(1, 0)
        };
        let mut builder = SplitBuilder::with_format(format);
        let class = Some(Target::Class(0));
        assert!(
            builder
                .push_ids(&[&[65_536]], Some(&[0]), class)
                .unwrap_err()
                .contains("65536")
        );
        assert!(
            builder
                .push_ids(&[&[1, 2]], Some(&[0]), class)
                .unwrap_err()
                .contains("1 token types for 2")
        );
        assert!(builder.push_ids(&[&[1]], None, class).is_err());
        assert!(
            builder
                .push_ids(&[&[1]], Some(&[0]), Some(Target::Score(1.0)))
                .is_err()
        );
        assert!(builder.push_ids(&[&[1]], Some(&[0]), None).is_err());
        assert!(builder.is_empty());
        assert_eq!(TokenWidth::for_vocab(256, 0), TokenWidth::U8);
        assert_eq!(TokenWidth::for_vocab(257, 1), TokenWidth::U8);
        assert_eq!(TokenWidth::for_vocab(30_522, 0), TokenWidth::U16);
        assert_eq!(TokenWidth::for_vocab(250_002, 0), TokenWidth::U32);
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
        let data = TaskData::new(split(0), split(1), split(2), 2, 3);
        let names: Vec<_> = Split::ALL.iter().map(Split::name).collect();
        assert_eq!(names, ["train", "val", "test"]);
        for (label, split) in Split::ALL.into_iter().enumerate() {
            assert_eq!(data.split(split).class_ids(), Some(&[label as u32][..]));
        }
    }
}
