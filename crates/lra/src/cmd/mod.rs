//! One module per subcommand of the `lra` binary.

pub mod approx;
pub mod bench;
pub mod data;
pub mod encode;
pub mod list;
pub mod pretrain;
pub mod run;
pub mod submit;
pub mod sweep;
pub mod table;
