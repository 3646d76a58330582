//! GLUE ([Wang et al., 2019](https://arxiv.org/abs/1804.07461)): the nine tasks and the AX
//! diagnostic set, read from the GLUE download script's `glue_data/` TSVs or the Hugging Face
//! `nyu-mll/glue` parquet files into sentence (pair) examples with canonical label ids, plus the
//! test-server submission files. Text stays text here; [`crate::tokenizer`] turns it into ids.
//!
//! The per-task facts (files, columns, label orders) live in one table, [`task::TASKS`].

mod data;
mod encode;
mod locate;
pub mod parquet;
mod submission;
pub mod task;
pub mod tsv;

pub use data::{GlueExample, GlueSplitData, Target, read_split};
pub use encode::encode_split;
pub use locate::{GlueFile, GlueLayout, locate};
pub use submission::{Prediction, write_submission};
pub use task::{GlueSplit, GlueTask, SplitSpec, TaskSpec};
