//! `lra data generate listops`: writes the official-format ListOps TSV files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use lra_data::listops::{self, GenerateConfig};

/// Data tools.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a synthetic task's data in its official release format.
    #[command(subcommand)]
    Generate(GenerateCommand),
}

/// Synthetic tasks that can be generated.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// ListOps (`basic_{train,val,test}.tsv`, header `Source<TAB>Target`), as the LRA generator.
    Listops(ListopsArgs),
}

/// Options of `lra data generate listops`; defaults are the LRA release's.
#[derive(Debug, Args)]
pub struct ListopsArgs {
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Training expressions.
    #[arg(long, default_value_t = 96_000)]
    pub train: usize,
    /// Validation expressions.
    #[arg(long, default_value_t = 2_000)]
    pub val: usize,
    /// Test expressions.
    #[arg(long, default_value_t = 2_000)]
    pub test: usize,
    /// Expressions have strictly more tokens than this.
    #[arg(long, default_value_t = 500)]
    pub min_len: usize,
    /// Expressions have strictly fewer tokens than this.
    #[arg(long, default_value_t = 2_000)]
    pub max_len: usize,
    /// Maximum nesting depth.
    #[arg(long, default_value_t = 10)]
    pub max_depth: usize,
    /// Maximum operator arity.
    #[arg(long, default_value_t = 10)]
    pub max_args: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs a data command.
pub fn execute(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Generate(GenerateCommand::Listops(args)) => {
            let config = GenerateConfig {
                train: args.train,
                val: args.val,
                test: args.test,
                min_len: args.min_len,
                max_len: args.max_len,
                max_depth: args.max_depth,
                max_args: args.max_args,
                seed: args.seed,
            };
            let splits = listops::generate(&config).context("generating ListOps")?;
            listops::write_dataset(&args.out, &splits)?;
            println!(
                "wrote {} / {} / {} ListOps expressions to {}",
                splits[0].len(),
                splits[1].len(),
                splits[2].len(),
                args.out.display()
            );
            Ok(())
        }
    }
}
