//! The `lra` command line.

use clap::{Parser, Subcommand};
use lra::cmd::{approx, bench, data, encode, list, pretrain, run, submit, sweep, table};
use lra::interrupt;
use lra::train::Outcome;

/// jemalloc, told never to return freed pages to the OS: glibc unmaps every large buffer (the
/// `[n, n]` attention scores) when it is freed, and faulting the pages back in costs about a
/// third of a training step. A run is one process whose peak memory stays in use anyway. The
/// counting wrapper lets `lra bench` report measured peak memory.
#[global_allocator]
static ALLOCATOR: lra::memory::PeakAllocator<tikv_jemallocator::Jemalloc> =
    lra::memory::PeakAllocator(tikv_jemallocator::Jemalloc);

#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &[u8; 36] = b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

/// Long Range Arena training and benchmark harness.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:
  lra run --attention softmax --task listops --preset tiny
  lra run --preset lra-pytorch/listops --attention local --set mixer.block_size=64
  lra data generate listops --out datasets/listops --train 1000 --val 100 --test 100
  lra sweep experiments/sweeps/lra-table1.toml --shard 0/4
  lra table experiments/sweeps/lra-table1.toml
  lra data check retrieval --data path/to/lra_release
  lra data prepare text --data path/to/aclImdb
  lra encode --init path/to/bert-base-uncased --input sentences.txt --out hidden.npy
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
    /// List the registered token mixers (with their settings), tasks (with their metrics) and
    /// presets (with what each is for).
    List(list::ListArgs),
    /// Data tools: generate, prepare (binary cache), check.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Compare a mixer's attention core with exact softmax attention (error sweeps, .npy I/O).
    Approx(approx::ApproxArgs),
    /// Last hidden states of a pretrained BERT/RoBERTa checkpoint (with any mixer) for the lines
    /// of a text file, as .npy (to check the import against transformers).
    Encode(encode::EncodeArgs),
    /// Masked-LM (continued) pretraining of a BERT/RoBERTa checkpoint with any attention, on a
    /// text corpus; writes a checkpoint `lra run --init` fine-tunes.
    // Boxed: its many setting flags would make every `Command` that large.
    Pretrain(Box<pretrain::PretrainArgs>),
    /// Time mixers or training steps; writes CSV.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run a sweep file's grid (or one shard); skips finished runs, resumes interrupted ones.
    Sweep(sweep::SweepArgs),
    /// Accuracy table of a sweep (or of all runs) next to the published numbers.
    Table(table::TableArgs),
    /// GLUE server upload zip from the best finished run of every GLUE task.
    Submit(submit::SubmitArgs),
}

fn main() {
    let cli = Cli::parse();
    // Training checkpoints on SIGTERM/SIGINT; every other command keeps their default action.
    if matches!(
        cli.command,
        Command::Run(_) | Command::Sweep(_) | Command::Pretrain(_)
    ) && let Err(error) = interrupt::install()
    {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
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
            Outcome::Interrupted { step } => {
                println!(
                    "interrupted by a signal; checkpoint of step {step} written; continue with: \
                     lra run --resume {}",
                    run.path.display()
                );
                std::process::exit(interrupt::EXIT_INTERRUPTED);
            }
        }),
        Command::List(args) => {
            print!("{}", list::render(args.format));
            Ok(())
        }
        Command::Data(command) => data::execute(command),
        Command::Bench(command) => bench::execute(command),
        Command::Approx(args) => approx::execute(&args),
        Command::Pretrain(args) => pretrain::execute(&args).map(|run| match run.ended {
            pretrain::Ended::Finished { checkpoint } => println!("{}", checkpoint.display()),
            pretrain::Ended::Stopped { step } => println!(
                "stopped at step {step}; continue with: lra pretrain --resume {}",
                run.dir.display()
            ),
            pretrain::Ended::Interrupted { step } => {
                println!(
                    "interrupted by a signal; training state of step {step} written; continue \
                     with: lra pretrain --resume {}",
                    run.dir.display()
                );
                std::process::exit(interrupt::EXIT_INTERRUPTED);
            }
        }),
        Command::Encode(args) => encode::execute(&args).map(|report| print!("{report}")),
        Command::Sweep(args) => sweep::execute(&args).map(|_| {
            if interrupt::requested() {
                std::process::exit(interrupt::EXIT_INTERRUPTED);
            }
        }),
        Command::Table(args) => table::execute(&args).map(|markdown| print!("{markdown}")),
        Command::Submit(args) => {
            submit::execute(&args).map(|files| println!("{}", files.join("\n")))
        }
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
