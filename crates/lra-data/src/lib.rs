//! Task data for the Long Range Arena and GLUE harness: readers, synthetic-data generators and
//! tokenizers.
//!
//! Everything here is plain Rust on text and token ids; turning them into tensors is the model
//! crates' job.

pub mod cache;
pub mod corpus;
pub mod error;
pub mod example;
pub mod fixtures;
pub mod fuzz;
pub mod glue;
pub mod image;
pub mod layout;
pub mod lines;
pub mod listops;
pub mod pathfinder;
pub mod retrieval;
pub mod text;
pub mod tokenizer;

pub use error::{DataError, OnProblem, Result};

/// The LRA release archive: ListOps, retrieval, Pathfinder and Path-X in their official formats.
pub const RELEASE_URL: &str = "https://storage.googleapis.com/long-range-arena/lra_release.gz";
pub use example::{
    Example, LabelKind, Labels, NamedSplit, PAD_ID, Split, SplitBuilder, SplitData, SplitFormat,
    Target, TaskData, TokenWidth, pad_to,
};
