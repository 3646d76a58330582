//! The `lra` harness: experiment configs, the training loop, evaluation, run folders and the CLI
//! commands. `main.rs` only parses arguments and calls [`cmd`].

pub mod adamw;
pub mod batches;
pub mod checkpoint;
pub mod cmd;
pub mod config;
pub mod grad_clip;
pub use lra_model::device;
pub mod interrupt;
pub mod masking;
pub mod memory;
pub mod metrics;
pub mod npy;
pub mod objective;
pub mod param_groups;
pub mod plot;
pub mod progress;
pub mod results;
pub mod schedule;
pub mod suggest;
pub mod sweep;
pub mod table;
pub mod task;
pub mod train;
