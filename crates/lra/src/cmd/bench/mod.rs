//! `lra bench`: wall-clock and peak-memory benchmarks on the chosen device, written as CSV, a
//! Markdown table and log-log SVG charts with the fitted slope per method.
//!
//! - `mixers`: one mixer on random `[batch, n, d_model]` input, per n (forward, or forward+backward);
//! - `attention`: the exact attention operations alone (`flash`, the materialised `softmax` op) on
//!   random `[batch, heads, n, head_dim]` q, k, v — the counterpart of PyTorch's
//!   `scaled_dot_product_attention` in `scripts/bench_pytorch.py sdpa`;
//! - `step`: one training step (forward, backward, AdamW update) of a preset's model;
//! - `mlm`: one masked-LM pretraining step of a BERT/RoBERTa-shaped model per attention and
//!   length — the counterpart of transformers' `…ForMaskedLM` in `scripts/bench_pytorch.py mlm`;
//! - `efficiency`: the LRA paper's efficiency table — a preset's whole model at n = 1K…4K (or
//!   beyond) for several attentions, steps/s and peak memory relative to softmax.
//!
//! Time on an otherwise idle machine and compare ratios taken in the same session.
//!
//! `args.rs`: the subcommands' options; `cases.rs`: what each benchmark builds and times;
//! `measure.rs`: timing and peak memory of repeated calls; `report.rs`: CSV, Markdown and charts.

mod args;
mod cases;
mod measure;
mod report;

use anyhow::Result;

pub use args::{
    AttentionArgs, AttentionOp, BenchCommand, EfficiencyArgs, EfficiencyFile, MixerArgs, MlmArgs,
    Mode, StepArgs,
};
pub use measure::BenchRow;
pub use report::write_outputs;

/// Runs a benchmark and writes its CSV, Markdown table and SVG charts.
pub fn execute(command: BenchCommand) -> Result<()> {
    let (rows, out, extra_markdown) = match command {
        BenchCommand::Mixers(args) => (cases::bench_mixers(&args)?, args.out, String::new()),
        BenchCommand::Attention(args) => (cases::bench_attention(&args)?, args.out, String::new()),
        BenchCommand::Step(args) => (vec![cases::bench_step(&args)?], args.out, String::new()),
        BenchCommand::Mlm(args) => (cases::bench_mlm(&args)?, args.out, String::new()),
        BenchCommand::Efficiency(args) => {
            let (file, rows) = cases::bench_efficiency(&args)?;
            let table = report::efficiency_table(&file, &rows);
            (rows, args.out, table)
        }
    };
    write_outputs(&rows, &out, &extra_markdown)
}
