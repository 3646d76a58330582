//! The `lra` command line.

use clap::{Parser, Subcommand};
use lra::cmd::{data, list, run};
use lra::train::Outcome;

/// Long Range Arena training and benchmark harness.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:
  lra run --attention softmax --task listops --preset tiny
  lra run --preset lra-pytorch/listops --attention local --set mixer.block_size=64
  lra data generate listops --out datasets/listops --train 1000 --val 100 --test 100
  lra list"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train and evaluate one model; writes a run folder.
    Run(run::RunArgs),
    /// List the registered token mixers and their settings.
    List,
    /// Data tools (generators).
    #[command(subcommand)]
    Data(data::DataCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::execute(&args).map(|(run, outcome)| match outcome {
            Outcome::Finished(summary) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).expect("summary serialises")
                );
            }
            Outcome::Stopped { step } => println!(
                "stopped at step {step}; continue with: lra run --resume {}",
                run.path.display()
            ),
        }),
        Command::List => {
            print!("{}", list::render());
            Ok(())
        }
        Command::Data(command) => data::execute(command),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
