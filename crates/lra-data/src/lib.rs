//! Task data for the Long Range Arena harness: readers, synthetic-data generators and tokenizers.
//!
//! Everything here works on plain token ids; turning them into tensors is the model crates' job.

pub mod error;
pub mod example;
pub mod listops;
pub mod pathfinder;

pub use error::{DataError, Result};
pub use example::{Example, PAD_ID, Split, TaskData, pad_to};
