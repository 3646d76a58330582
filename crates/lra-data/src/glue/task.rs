//! The GLUE task table: one [`TaskSpec`] per task says where its files are in both layouts, which
//! columns hold the texts, the label and the index, its labels in one canonical order, and the
//! submission file of each test split. Readers, locator and submission writer only read this table.

use std::fmt;
use std::str::FromStr;

use crate::error::DataError;

/// A GLUE task: the nine of the benchmark plus the AX diagnostic set (predicted with an MNLI model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlueTask {
    /// Corpus of Linguistic Acceptability (Matthews correlation).
    Cola,
    /// Stanford Sentiment Treebank, binary.
    Sst2,
    /// Microsoft Research Paraphrase Corpus.
    Mrpc,
    /// Semantic Textual Similarity Benchmark (regression, scores 0–5).
    Stsb,
    /// Quora Question Pairs.
    Qqp,
    /// Multi-Genre NLI (matched and mismatched validation/test sets).
    Mnli,
    /// Question-answering NLI (from SQuAD).
    Qnli,
    /// Recognizing Textual Entailment.
    Rte,
    /// Winograd NLI.
    Wnli,
    /// The diagnostic set (test only).
    Ax,
}

/// A split of a GLUE task, named as in the Hugging Face dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlueSplit {
    /// Training set.
    Train,
    /// Development set (`dev.tsv`).
    Validation,
    /// MNLI's in-genre development set.
    ValidationMatched,
    /// MNLI's cross-genre development set.
    ValidationMismatched,
    /// Unlabelled test set, scored by the GLUE server.
    Test,
    /// MNLI's in-genre test set.
    TestMatched,
    /// MNLI's cross-genre test set.
    TestMismatched,
}

impl GlueSplit {
    /// The Hugging Face split name (`validation_matched`, …), also the parquet file's stem.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Validation => "validation",
            Self::ValidationMatched => "validation_matched",
            Self::ValidationMismatched => "validation_mismatched",
            Self::Test => "test",
            Self::TestMatched => "test_matched",
            Self::TestMismatched => "test_mismatched",
        }
    }

    /// Whether the split is an unlabelled test set.
    pub fn is_test(self) -> bool {
        matches!(self, Self::Test | Self::TestMatched | Self::TestMismatched)
    }
}

impl fmt::Display for GlueSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a label sits in a TSV line.
#[derive(Clone, Copy, Debug)]
pub enum LabelColumn {
    /// A fixed 0-based column.
    At(usize),
    /// The last field (MNLI's `gold_label` after a varying number of annotator labels).
    Last,
}

/// What a task does with a line that has too few fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortLines {
    /// Report it as a malformed record.
    Reject,
    /// Skip and count it: QQP's train/dev files hold such lines, and the reference readers skip
    /// them (HF transformers' legacy `QqpProcessor` catches the `IndexError`).
    Skip,
}

/// The layout of one official TSV file (tab-separated, no quoting, `\n` line ends).
#[derive(Clone, Copy, Debug)]
pub struct TsvFormat {
    /// Column names, for messages; also the header's names when there is one.
    pub columns: &'static [&'static str],
    /// Whether the first line is a header (CoLA train/dev have none).
    pub has_header: bool,
    /// The column holding the example's index; `None`: the row number (counted from 0 after the
    /// header), as the Hugging Face dataset's `idx` for CoLA and SST-2 (its MRPC train/validation
    /// `idx` count lines of the MSR source file instead; only test indices reach submissions).
    pub index: Option<usize>,
    /// Column of the first text.
    pub text_a: usize,
    /// Column of the second text of pair tasks.
    pub text_b: Option<usize>,
    /// Column of the label; `None` on test files.
    pub label: Option<LabelColumn>,
    /// Lines with too few fields: error or skip.
    pub short_lines: ShortLines,
}

impl TsvFormat {
    /// Fields a line needs so that every column read exists (with [`LabelColumn::Last`], the label
    /// must come after the texts).
    pub fn min_fields(&self) -> usize {
        let texts = self.text_a.max(self.text_b.unwrap_or(0));
        let read = match self.label {
            Some(LabelColumn::At(column)) => texts.max(column),
            Some(LabelColumn::Last) => texts + 1,
            None => texts,
        };
        read.max(self.index.unwrap_or(0)) + 1
    }
}

/// What a task predicts.
#[derive(Clone, Copy, Debug)]
pub enum TargetSpec {
    /// Classes in canonical order: the strings the official TSVs use and the GLUE server expects
    /// in submissions. `hf_names[i]` is the Hugging Face ClassLabel name of HF id `i`, and
    /// `hf_labels[i]` the canonical label it stands for.
    Classes {
        /// Canonical label strings; a class id is an index into this list.
        labels: &'static [&'static str],
        /// Hugging Face ClassLabel names, in HF id order.
        hf_names: &'static [&'static str],
        /// The canonical label of each HF id.
        hf_labels: &'static [&'static str],
    },
    /// A real-valued score in `[0, 5]` (STS-B).
    Score,
}

/// One split of a task: its files in both layouts and its submission file.
#[derive(Clone, Copy, Debug)]
pub struct SplitSpec {
    /// Which split.
    pub split: GlueSplit,
    /// The TSV file relative to `glue_data/` (e.g. `MNLI/dev_matched.tsv`).
    pub tsv_file: &'static str,
    /// How that file is laid out.
    pub tsv: &'static TsvFormat,
    /// File name in the GLUE server's submission zip (test splits only).
    pub submission_file: Option<&'static str>,
}

/// Everything the readers need to know about one task.
#[derive(Clone, Copy, Debug)]
pub struct TaskSpec {
    /// Which task.
    pub task: GlueTask,
    /// Short name (`cola`, `sst2`, …), as on the command line.
    pub name: &'static str,
    /// The Hugging Face config folder (`nyu-mll/glue/<config>/`).
    pub hf_config: &'static str,
    /// The Hugging Face text columns: first text, and second text of pair tasks.
    pub hf_text_columns: (&'static str, Option<&'static str>),
    /// Classes or a score.
    pub target: TargetSpec,
    /// Its splits, in the order train, validation(s), test(s).
    pub splits: &'static [SplitSpec],
}

impl TaskSpec {
    /// The Hugging Face parquet file of `split`, relative to the dataset folder.
    pub fn parquet_file(&self, split: GlueSplit) -> String {
        format!("{}/{}-00000-of-00001.parquet", self.hf_config, split.name())
    }
}

const BINARY: &[&str] = &["0", "1"];
const NLI3: &[&str] = &["entailment", "neutral", "contradiction"];
const NLI2: &[&str] = &["entailment", "not_entailment"];

/// A labelled TSV whose lines are `index, text, text, label` (QNLI, RTE, WNLI).
const fn index_pair_label(columns: &'static [&'static str]) -> TsvFormat {
    TsvFormat {
        columns,
        has_header: true,
        index: Some(0),
        text_a: 1,
        text_b: Some(2),
        label: Some(LabelColumn::Last),
        short_lines: ShortLines::Reject,
    }
}

/// A test TSV whose lines are `index, text[, text]`.
const fn index_texts(columns: &'static [&'static str], pair: bool) -> TsvFormat {
    TsvFormat {
        columns,
        has_header: true,
        index: Some(0),
        text_a: 1,
        text_b: if pair { Some(2) } else { None },
        label: None,
        short_lines: ShortLines::Reject,
    }
}

const COLA_LABELLED: TsvFormat = TsvFormat {
    columns: &["source", "label", "original_mark", "sentence"],
    has_header: false,
    index: None,
    text_a: 3,
    text_b: None,
    label: Some(LabelColumn::At(1)),
    short_lines: ShortLines::Reject,
};
const SINGLE_TEST: TsvFormat = index_texts(&["index", "sentence"], false);
const SST2_LABELLED: TsvFormat = TsvFormat {
    columns: &["sentence", "label"],
    has_header: true,
    index: None,
    text_a: 0,
    text_b: None,
    label: Some(LabelColumn::At(1)),
    short_lines: ShortLines::Reject,
};
const MRPC_LABELLED: TsvFormat = TsvFormat {
    columns: &["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    has_header: true,
    index: None,
    text_a: 3,
    text_b: Some(4),
    label: Some(LabelColumn::At(0)),
    short_lines: ShortLines::Reject,
};
const MRPC_TEST: TsvFormat = TsvFormat {
    columns: &["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    text_a: 3,
    text_b: Some(4),
    ..index_texts(&[], true)
};
const STSB_COLUMNS: [&str; 10] = [
    "index",
    "genre",
    "filename",
    "year",
    "old_index",
    "source1",
    "source2",
    "sentence1",
    "sentence2",
    "score",
];
const STSB_LABELLED: TsvFormat = TsvFormat {
    text_a: 7,
    text_b: Some(8),
    ..index_pair_label(&STSB_COLUMNS)
};
const STSB_TEST: TsvFormat = TsvFormat {
    columns: STSB_COLUMNS.split_last().unwrap().1,
    text_a: 7,
    text_b: Some(8),
    ..index_texts(&[], true)
};
const QQP_LABELLED: TsvFormat = TsvFormat {
    columns: &[
        "id",
        "qid1",
        "qid2",
        "question1",
        "question2",
        "is_duplicate",
    ],
    has_header: true,
    index: Some(0),
    text_a: 3,
    text_b: Some(4),
    label: Some(LabelColumn::At(5)),
    short_lines: ShortLines::Skip,
};
const QQP_TEST: TsvFormat = index_texts(&["id", "question1", "question2"], true);
const MNLI_TRAIN: TsvFormat = TsvFormat {
    columns: &[
        "index",
        "promptID",
        "pairID",
        "genre",
        "sentence1_binary_parse",
        "sentence2_binary_parse",
        "sentence1_parse",
        "sentence2_parse",
        "sentence1",
        "sentence2",
        "label1",
        "gold_label",
    ],
    text_a: 8,
    text_b: Some(9),
    ..index_pair_label(&[])
};
const MNLI_DEV: TsvFormat = TsvFormat {
    columns: &[
        "index",
        "promptID",
        "pairID",
        "genre",
        "sentence1_binary_parse",
        "sentence2_binary_parse",
        "sentence1_parse",
        "sentence2_parse",
        "sentence1",
        "sentence2",
        "label1",
        "label2",
        "label3",
        "label4",
        "label5",
        "gold_label",
    ],
    ..MNLI_TRAIN
};
const MNLI_TEST: TsvFormat = TsvFormat {
    columns: MNLI_TRAIN.columns.split_at(10).0,
    text_a: 8,
    text_b: Some(9),
    ..index_texts(&[], true)
};
const QNLI_LABELLED: TsvFormat = index_pair_label(&["index", "question", "sentence", "label"]);
const QNLI_TEST: TsvFormat = index_texts(&["index", "question", "sentence"], true);
const PAIR_LABELLED: TsvFormat = index_pair_label(&["index", "sentence1", "sentence2", "label"]);
const PAIR_TEST: TsvFormat = index_texts(&["index", "sentence1", "sentence2"], true);

/// Train, validation and test of a task with one file each under `glue_data/<folder>/`.
macro_rules! three_splits {
    ($folder:literal, $labelled:expr, $test:expr, $submission:literal) => {
        &[
            SplitSpec {
                split: GlueSplit::Train,
                tsv_file: concat!($folder, "/train.tsv"),
                tsv: $labelled,
                submission_file: None,
            },
            SplitSpec {
                split: GlueSplit::Validation,
                tsv_file: concat!($folder, "/dev.tsv"),
                tsv: $labelled,
                submission_file: None,
            },
            SplitSpec {
                split: GlueSplit::Test,
                tsv_file: concat!($folder, "/test.tsv"),
                tsv: $test,
                submission_file: Some($submission),
            },
        ]
    };
}

/// The task table, in [`GlueTask`] order.
pub static TASKS: [TaskSpec; 10] = [
    TaskSpec {
        task: GlueTask::Cola,
        name: "cola",
        hf_config: "cola",
        hf_text_columns: ("sentence", None),
        target: TargetSpec::Classes {
            labels: BINARY,
            hf_names: &["unacceptable", "acceptable"],
            hf_labels: BINARY,
        },
        splits: three_splits!("CoLA", &COLA_LABELLED, &SINGLE_TEST, "CoLA.tsv"),
    },
    TaskSpec {
        task: GlueTask::Sst2,
        name: "sst2",
        hf_config: "sst2",
        hf_text_columns: ("sentence", None),
        target: TargetSpec::Classes {
            labels: BINARY,
            hf_names: &["negative", "positive"],
            hf_labels: BINARY,
        },
        splits: three_splits!("SST-2", &SST2_LABELLED, &SINGLE_TEST, "SST-2.tsv"),
    },
    TaskSpec {
        task: GlueTask::Mrpc,
        name: "mrpc",
        hf_config: "mrpc",
        hf_text_columns: ("sentence1", Some("sentence2")),
        target: TargetSpec::Classes {
            labels: BINARY,
            hf_names: &["not_equivalent", "equivalent"],
            hf_labels: BINARY,
        },
        splits: three_splits!("MRPC", &MRPC_LABELLED, &MRPC_TEST, "MRPC.tsv"),
    },
    TaskSpec {
        task: GlueTask::Stsb,
        name: "stsb",
        hf_config: "stsb",
        hf_text_columns: ("sentence1", Some("sentence2")),
        target: TargetSpec::Score,
        splits: three_splits!("STS-B", &STSB_LABELLED, &STSB_TEST, "STS-B.tsv"),
    },
    TaskSpec {
        task: GlueTask::Qqp,
        name: "qqp",
        hf_config: "qqp",
        hf_text_columns: ("question1", Some("question2")),
        target: TargetSpec::Classes {
            labels: BINARY,
            hf_names: &["not_duplicate", "duplicate"],
            hf_labels: BINARY,
        },
        splits: three_splits!("QQP", &QQP_LABELLED, &QQP_TEST, "QQP.tsv"),
    },
    TaskSpec {
        task: GlueTask::Mnli,
        name: "mnli",
        hf_config: "mnli",
        hf_text_columns: ("premise", Some("hypothesis")),
        target: TargetSpec::Classes {
            labels: NLI3,
            hf_names: NLI3,
            hf_labels: NLI3,
        },
        splits: &[
            SplitSpec {
                split: GlueSplit::Train,
                tsv_file: "MNLI/train.tsv",
                tsv: &MNLI_TRAIN,
                submission_file: None,
            },
            SplitSpec {
                split: GlueSplit::ValidationMatched,
                tsv_file: "MNLI/dev_matched.tsv",
                tsv: &MNLI_DEV,
                submission_file: None,
            },
            SplitSpec {
                split: GlueSplit::ValidationMismatched,
                tsv_file: "MNLI/dev_mismatched.tsv",
                tsv: &MNLI_DEV,
                submission_file: None,
            },
            SplitSpec {
                split: GlueSplit::TestMatched,
                tsv_file: "MNLI/test_matched.tsv",
                tsv: &MNLI_TEST,
                submission_file: Some("MNLI-m.tsv"),
            },
            SplitSpec {
                split: GlueSplit::TestMismatched,
                tsv_file: "MNLI/test_mismatched.tsv",
                tsv: &MNLI_TEST,
                submission_file: Some("MNLI-mm.tsv"),
            },
        ],
    },
    TaskSpec {
        task: GlueTask::Qnli,
        name: "qnli",
        hf_config: "qnli",
        hf_text_columns: ("question", Some("sentence")),
        target: TargetSpec::Classes {
            labels: NLI2,
            hf_names: NLI2,
            hf_labels: NLI2,
        },
        splits: three_splits!("QNLI", &QNLI_LABELLED, &QNLI_TEST, "QNLI.tsv"),
    },
    TaskSpec {
        task: GlueTask::Rte,
        name: "rte",
        hf_config: "rte",
        hf_text_columns: ("sentence1", Some("sentence2")),
        target: TargetSpec::Classes {
            labels: NLI2,
            hf_names: NLI2,
            hf_labels: NLI2,
        },
        splits: three_splits!("RTE", &PAIR_LABELLED, &PAIR_TEST, "RTE.tsv"),
    },
    TaskSpec {
        task: GlueTask::Wnli,
        name: "wnli",
        hf_config: "wnli",
        hf_text_columns: ("sentence1", Some("sentence2")),
        // The TSV's 1 means entailment; HF lists not_entailment first, so its ids agree.
        target: TargetSpec::Classes {
            labels: BINARY,
            hf_names: &["not_entailment", "entailment"],
            hf_labels: BINARY,
        },
        splits: three_splits!("WNLI", &PAIR_LABELLED, &PAIR_TEST, "WNLI.tsv"),
    },
    TaskSpec {
        task: GlueTask::Ax,
        name: "ax",
        hf_config: "ax",
        hf_text_columns: ("premise", Some("hypothesis")),
        target: TargetSpec::Classes {
            labels: NLI3,
            hf_names: NLI3,
            hf_labels: NLI3,
        },
        splits: &[SplitSpec {
            split: GlueSplit::Test,
            tsv_file: "diagnostic/diagnostic.tsv",
            tsv: &PAIR_TEST,
            submission_file: Some("AX.tsv"),
        }],
    },
];

impl GlueTask {
    /// Every task, in the table's order.
    pub const ALL: [GlueTask; 10] = [
        Self::Cola,
        Self::Sst2,
        Self::Mrpc,
        Self::Stsb,
        Self::Qqp,
        Self::Mnli,
        Self::Qnli,
        Self::Rte,
        Self::Wnli,
        Self::Ax,
    ];

    /// The task's entry in [`TASKS`].
    pub fn spec(self) -> &'static TaskSpec {
        &TASKS[self as usize]
    }

    /// Short name: `cola sst2 mrpc stsb qqp mnli qnli rte wnli ax`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Label names in canonical order (class id = position), as submission files write them;
    /// empty for the regression task STS-B.
    pub fn labels(self) -> &'static [&'static str] {
        match self.spec().target {
            TargetSpec::Classes { labels, .. } => labels,
            TargetSpec::Score => &[],
        }
    }

    /// Whether the task predicts a score (STS-B) rather than a class.
    pub fn is_regression(self) -> bool {
        matches!(self.spec().target, TargetSpec::Score)
    }

    /// The task's splits: train, validation(s), test(s); AX has only `test`.
    pub fn splits(self) -> &'static [SplitSpec] {
        self.spec().splits
    }

    /// The entry of `split`, or an error listing the task's splits.
    pub fn split(self, split: GlueSplit) -> Result<&'static SplitSpec, DataError> {
        self.splits()
            .iter()
            .find(|spec| spec.split == split)
            .ok_or_else(|| {
                let names: Vec<&str> = self.splits().iter().map(|s| s.split.name()).collect();
                DataError::Invalid(format!(
                    "GLUE task {self} has no split {split}; its splits are {}",
                    names.join(", ")
                ))
            })
    }

    /// Submission file names of the task's test splits (`MNLI-m.tsv`, `MNLI-mm.tsv` for MNLI).
    pub fn submission_files(self) -> Vec<&'static str> {
        self.splits()
            .iter()
            .filter_map(|spec| spec.submission_file)
            .collect()
    }
}

impl fmt::Display for GlueTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GlueTask {
    type Err = DataError;

    fn from_str(name: &str) -> Result<Self, DataError> {
        Self::ALL
            .into_iter()
            .find(|task| task.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|task| task.name()).collect();
                DataError::Invalid(format!(
                    "unknown GLUE task `{name}`; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_and_names_round_trip() {
        for (position, task) in GlueTask::ALL.into_iter().enumerate() {
            assert_eq!(TASKS[position].task, task);
            assert_eq!(task.name().parse::<GlueTask>().unwrap(), task);
        }
        assert!(
            "mnli-mm"
                .parse::<GlueTask>()
                .unwrap_err()
                .to_string()
                .contains("cola, sst2")
        );
    }

    #[test]
    fn hf_ids_map_onto_the_canonical_labels() {
        for spec in &TASKS {
            if let TargetSpec::Classes {
                labels,
                hf_names,
                hf_labels,
            } = spec.target
            {
                assert_eq!(hf_names.len(), labels.len(), "{}", spec.name);
                assert_eq!(hf_labels.len(), labels.len(), "{}", spec.name);
                assert!(
                    hf_labels.iter().all(|l| labels.contains(l)),
                    "{}",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn every_column_read_exists_in_its_format() {
        for spec in &TASKS {
            for split in spec.splits {
                let format = split.tsv;
                assert!(
                    format.min_fields() <= format.columns.len(),
                    "{}",
                    split.tsv_file
                );
                assert_eq!(
                    format.label.is_none(),
                    split.split.is_test(),
                    "{}",
                    split.tsv_file
                );
                assert_eq!(split.submission_file.is_some(), split.split.is_test());
            }
        }
        assert_eq!(MNLI_TEST.columns.last(), Some(&"sentence2"));
        assert_eq!(STSB_TEST.columns.last(), Some(&"sentence2"));
    }
}
