//! The nine GLUE tasks (Wang et al., 2019): sentences or sentence pairs from the official
//! `glue_data/` TSVs or the Hugging Face parquet files, encoded by a pretrained checkpoint's
//! tokenizer (`task.tokenizer`, which `--init` fills in) into one sequence with token types, and
//! scored with the benchmark's metrics. Validation is the dev set (MNLI: matched); MNLI also scores
//! its mismatched dev set and predicts both test sets and the AX diagnostic set. Test answers are
//! withheld by the benchmark, so test predictions are written as the GLUE server's submission files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lra_data::glue::{self, GlueSplit, GlueTask, Prediction, Target};
use lra_data::tokenizer::{PretrainedTokenizer, TOKENIZER_FILES};
use lra_data::{NamedSplit, OnProblem, TaskData};
use serde::{Deserialize, Serialize};

use super::settings;
use super::{DataSet, InputLayout, PublishedColumn, TableColumn, Task};
use crate::config::TaskConfig;
use crate::metrics::Metric;
use crate::objective::{Objective, Predictions};

/// One GLUE task.
pub struct Glue {
    task: GlueTask,
    summary: &'static str,
    /// Reported metrics; `selection` picks the best checkpoint.
    metrics: &'static [Metric],
    selection: Metric,
}

/// Metrics as GLUE reports them; the selection metric is the one the efficient-attention papers
/// (Nyströmformer Table 2) and BERT's table report: F1 for MRPC and QQP, Spearman for STS-B.
pub static COLA: Glue = Glue {
    task: GlueTask::Cola,
    summary: "GLUE CoLA: grammatical acceptability, 2 classes (Matthews correlation)",
    metrics: &[Metric::Mcc, Metric::Accuracy],
    selection: Metric::Mcc,
};
pub static SST2: Glue = Glue {
    task: GlueTask::Sst2,
    summary: "GLUE SST-2: movie-review sentiment, 2 classes",
    metrics: &[Metric::Accuracy],
    selection: Metric::Accuracy,
};
pub static MRPC: Glue = Glue {
    task: GlueTask::Mrpc,
    summary: "GLUE MRPC: paraphrase pairs, 2 classes (F1 and accuracy)",
    metrics: &[Metric::F1, Metric::Accuracy],
    selection: Metric::F1,
};
pub static STSB: Glue = Glue {
    task: GlueTask::Stsb,
    summary: "GLUE STS-B: sentence-pair similarity 0-5, regression (Pearson, Spearman)",
    metrics: &[Metric::Pearson, Metric::Spearman],
    selection: Metric::Spearman,
};
pub static QQP: Glue = Glue {
    task: GlueTask::Qqp,
    summary: "GLUE QQP: duplicate Quora questions, 2 classes (accuracy and F1)",
    metrics: &[Metric::Accuracy, Metric::F1],
    selection: Metric::F1,
};
pub static MNLI: Glue = Glue {
    task: GlueTask::Mnli,
    summary: "GLUE MNLI: entailment, 3 classes; matched and mismatched dev/test, AX",
    metrics: &[Metric::Accuracy],
    selection: Metric::Accuracy,
};
pub static QNLI: Glue = Glue {
    task: GlueTask::Qnli,
    summary: "GLUE QNLI: question/sentence entailment, 2 classes",
    metrics: &[Metric::Accuracy],
    selection: Metric::Accuracy,
};
pub static RTE: Glue = Glue {
    task: GlueTask::Rte,
    summary: "GLUE RTE: textual entailment, 2 classes",
    metrics: &[Metric::Accuracy],
    selection: Metric::Accuracy,
};
pub static WNLI: Glue = Glue {
    task: GlueTask::Wnli,
    summary: "GLUE WNLI: Winograd entailment, 2 classes",
    metrics: &[Metric::Accuracy],
    selection: Metric::Accuracy,
};

/// A GLUE task's own `[task]` keys.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Folder of the checkpoint whose tokenizer encodes the texts (`tokenizer.json`,
    /// `vocab.txt`, or `vocab.json` + `merges.txt`); `--init` sets it to the checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    tokenizer: Option<PathBuf>,
}

impl Glue {
    fn tokenizer(&self, settings: &toml::Table) -> Result<PretrainedTokenizer> {
        let dir = self.tokenizer_dir(settings)?;
        Ok(PretrainedTokenizer::from_checkpoint(&dir)?)
    }

    fn tokenizer_dir(&self, settings: &toml::Table) -> Result<PathBuf> {
        let settings: Settings = settings::parse_settings(self.name(), settings)?;
        settings.tokenizer.ok_or_else(|| {
            anyhow::anyhow!(
                "GLUE task {} encodes its texts with a pretrained checkpoint's tokenizer: pass \
                 `--init DIR` (a Hugging Face BERT or RoBERTa folder saved with save_pretrained) \
                 or set `task.tokenizer = \"DIR\"`",
                self.name()
            )
        })
    }

    /// The splits read as validation and test, and the extra ones with their names.
    fn roles(&self) -> (GlueSplit, GlueSplit, Vec<(GlueTask, GlueSplit)>) {
        match self.task {
            GlueTask::Mnli => (
                GlueSplit::ValidationMatched,
                GlueSplit::TestMatched,
                vec![
                    (GlueTask::Mnli, GlueSplit::ValidationMismatched),
                    (GlueTask::Mnli, GlueSplit::TestMismatched),
                ],
            ),
            _ => (GlueSplit::Validation, GlueSplit::Test, Vec::new()),
        }
    }
}

/// The name an extra split has in results: the Hugging Face split name, `ax` for AX.
fn extra_name(task: GlueTask, split: GlueSplit) -> &'static str {
    if task == GlueTask::Ax {
        "ax"
    } else {
        split.name()
    }
}

impl Task for Glue {
    fn name(&self) -> &'static str {
        self.task.name()
    }
    fn summary(&self) -> &'static str {
        self.summary
    }
    fn input(&self) -> InputLayout {
        InputLayout::Tokenized
    }
    fn vocab_size(&self, settings: &toml::Table) -> Result<usize> {
        Ok(self.tokenizer(settings)?.vocab_size())
    }
    fn objective(&self) -> Objective {
        if self.task.is_regression() {
            Objective::Regression
        } else {
            Objective::Classification {
                classes: self.task.labels().len(),
            }
        }
    }
    fn metrics(&self) -> &'static [Metric] {
        self.metrics
    }
    fn selection_metric(&self) -> Metric {
        self.selection
    }
    fn published(&self) -> Option<PublishedColumn> {
        Some(PublishedColumn {
            file: "glue.csv",
            column: self.name(),
        })
    }
    /// The dev set: GLUE's test answers are withheld, and the efficient-attention papers report
    /// dev scores.
    fn reported_split(&self) -> &'static str {
        "val"
    }
    /// Hugging Face `run_glue`'s recipe.
    fn default_preset(&self) -> String {
        format!("glue/{}", self.name())
    }
    fn resolve_settings(&self, settings: &toml::Table) -> Result<toml::Table> {
        settings::resolve::<Settings>(self.name(), settings)
    }
    /// The task, a checksum of the tokenizer's files and the length: a cache made with another
    /// tokenizer or length is never read in place of this one.
    fn cache_name(&self, set: &DataSet) -> Result<String> {
        let dir = self.tokenizer_dir(&set.settings)?;
        let mut crc = crc32fast::Hasher::new();
        for file in TOKENIZER_FILES {
            let path = dir.join(file);
            if path.is_file() {
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                crc.update(file.as_bytes());
                crc.update(&bytes);
            }
        }
        crc.update(&(set.max_len as u64).to_le_bytes());
        Ok(format!("{}-{:08x}", self.name(), crc.finalize()))
    }
    fn table_columns(&self) -> Vec<TableColumn> {
        let matched = TableColumn {
            name: self.name(),
            split: self.reported_split(),
            metric: self.selection,
        };
        match self.task {
            GlueTask::Mnli => vec![
                matched,
                TableColumn {
                    name: "mnli-mm",
                    split: "validation_mismatched",
                    metric: self.selection,
                },
            ],
            _ => vec![matched],
        }
    }
    fn extra_splits(&self) -> &'static [&'static str] {
        match self.task {
            GlueTask::Mnli => &["validation_mismatched", "test_mismatched"],
            _ => &[],
        }
    }
    fn fetch_hint(&self, set: &DataSet) -> String {
        let root = set.root.display();
        let tokenizer = self
            .tokenizer_dir(&set.settings)
            .map_or("CHECKPOINT_DIR".to_string(), |dir| {
                dir.display().to_string()
            });
        format!(
            "Next: download the Hugging Face copy of GLUE (all nine tasks and AX): \
             `huggingface-cli download nyu-mll/glue --repo-type dataset --local-dir {root}`; \
             then check it: `lra data check {} --data {root} --tokenizer {tokenizer}`",
            self.name()
        )
    }
    fn read(&self, set: &DataSet, mut on_problem: OnProblem) -> Result<TaskData> {
        let tokenizer = self.tokenizer(&set.settings)?;
        let mut encode = |task: GlueTask, split: GlueSplit| -> Result<_> {
            let read = glue::read_split(&set.root, task, split, &mut on_problem)?;
            glue::encode_split(&read, &tokenizer, set.max_len)
                .with_context(|| format!("tokenizing {}", read.path.display()))
        };
        let (val, test, extra) = self.roles();
        let mut data = TaskData::new(
            encode(self.task, GlueSplit::Train)?,
            encode(self.task, val)?,
            encode(self.task, test)?,
            tokenizer.vocab_size(),
            self.objective().outputs(),
        );
        for (task, split) in extra {
            data.extra.push(NamedSplit {
                name: extra_name(task, split).to_string(),
                data: encode(task, split)?,
            });
        }
        // AX is predicted with the MNLI model when its file is there (it is not part of MNLI).
        if self.task == GlueTask::Mnli
            && glue::locate(&set.root, GlueTask::Ax, GlueSplit::Test).is_ok()
        {
            data.extra.push(NamedSplit {
                name: "ax".into(),
                data: encode(GlueTask::Ax, GlueSplit::Test)?,
            });
        }
        Ok(data)
    }
    /// The GLUE server's submission file (`SST-2.tsv`, `MNLI-m.tsv`, `AX.tsv`, …) under
    /// `predictions/`, indexed as the test file is and labelled as the server expects.
    fn write_predictions(
        &self,
        config: &TaskConfig,
        run_dir: &Path,
        split: &str,
        predictions: &Predictions,
    ) -> Result<PathBuf> {
        let (task, glue_split) = match split {
            "test" => (self.task, self.roles().1),
            "ax" => (GlueTask::Ax, GlueSplit::Test),
            "test_mismatched" => (self.task, GlueSplit::TestMismatched),
            other => bail!(
                "GLUE task {} has no unlabelled split `{other}`",
                self.name()
            ),
        };
        // The examples' indices come from the test file itself.
        let read = glue::read_split(&config.data_dir, task, glue_split, &mut OnProblem::Fail)?;
        if read.examples.len() != predictions.len() {
            bail!(
                "{} predictions for the {} examples of {}",
                predictions.len(),
                read.examples.len(),
                read.path.display()
            );
        }
        let rows: Vec<Prediction> = read
            .examples
            .iter()
            .enumerate()
            .map(|(i, example)| Prediction {
                index: example.index,
                value: match predictions {
                    Predictions::Classes(classes) => Target::Class(classes[i]),
                    Predictions::Scores(scores) => Target::Score(scores[i] as f32),
                },
            })
            .collect();
        let dir = run_dir.join("predictions");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = glue::write_submission(&dir, task, glue_split, &rows)?;
        Ok(path
            .strip_prefix(run_dir)
            .map(Path::to_path_buf)
            .unwrap_or(path))
    }
}
