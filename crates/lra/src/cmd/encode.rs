//! `lra encode`: the last hidden states of a Hugging Face BERT/RoBERTa checkpoint, imported into
//! the project's encoder with any mixer (`lra_model::pretrained`), for the lines of a text file,
//! written as `.npy` — how the import is checked against transformers number for number.
//!
//! Each line is a sentence or `sentence_a<TAB>sentence_b`, tokenised by the checkpoint's own
//! tokenizer (`lra_data::tokenizer`) and cut "longest first" to `--max-len`. Batches are padded
//! with id 0 to `max_len` and masked, as in training. The hidden states are `[examples, seq,
//! hidden]` float32 with `seq` the longest example and zeros past each example's end; the ids
//! `[examples, seq]` int64, 0-padded.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use clap::Args;
use lra_data::DataError;
use lra_data::lines::for_each_line;
use lra_data::tokenizer::{Encoded, PretrainedTokenizer};
use lra_model::Encoder;
use lra_model::pretrained::Checkpoint;

use crate::cmd::approx::mixer_table;
use crate::config::mixer_kind;
use crate::device;
use crate::npy::{self, Array};

/// Options of `lra encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Checkpoint folder, as `save_pretrained` writes it: config.json, model.safetensors or
    /// pytorch_model.bin, and the tokenizer's files.
    #[arg(long, value_name = "DIR")]
    pub init: PathBuf,
    /// Text file, one example a line: a sentence, or `sentence_a<TAB>sentence_b`.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Output `.npy`: last hidden states `[examples, seq, hidden]`, float32.
    #[arg(long, value_name = "H.npy")]
    pub out: PathBuf,
    /// Output `.npy`: token ids `[examples, seq]`, int64.
    #[arg(long, value_name = "I.npy")]
    pub ids_out: Option<PathBuf>,
    /// Token mixer of every block; the checkpoint's Q/K/V/output projections load into any
    /// attention mixer.
    #[arg(long, short, default_value = "softmax")]
    pub attention: String,
    /// Mixer settings, e.g. `--set num_landmarks=16` (a `mixer.` prefix is accepted).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Longest example in tokens, special tokens included (longer ones are cut longest first);
    /// default: the checkpoint's position table.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Seed of what the mixer draws at init (random features, landmarks' extras, …).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs `lra encode`: writes the output files and returns the import report.
pub fn execute(args: &EncodeArgs) -> Result<String> {
    ensure!(args.batch_size > 0, "--batch-size must be positive");
    if args.ids_out.as_deref() == Some(args.out.as_path()) {
        bail!(
            "--out and --ids-out name the same file {}",
            args.out.display()
        );
    }
    let device = device::parse(&args.device)?;
    let checkpoint = Checkpoint::open(&args.init)?;
    let max_len = args.max_len.unwrap_or_else(|| checkpoint.max_len());
    let tokenizer = PretrainedTokenizer::from_checkpoint(&args.init)?;
    let examples = read_examples(
        &args.input,
        &tokenizer,
        max_len,
        checkpoint.config.vocab_size,
    )?;

    let mixer = crate::config::mixer_settings(
        mixer_kind(&args.attention)?,
        &mixer_table(&args.overrides)?,
    )?;
    device.seed(args.seed);
    let (encoder, report) = checkpoint.encoder(mixer, max_len, &device)?;

    let seq = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let hidden = encode(&encoder, &examples, max_len, seq, args.batch_size, &device);
    // Both outputs are computed before either is written; each is written atomically.
    npy::write(&args.out, &hidden)?;
    if let Some(path) = &args.ids_out {
        let ids: Vec<i64> = examples
            .iter()
            .flat_map(|e| padded(&e.ids, seq).map(i64::from))
            .collect();
        npy::write_i64(path, &[examples.len(), seq], &ids)?;
    }
    Ok(report.to_string())
}

/// Every line of `path` tokenised; errors name the file and line.
fn read_examples(
    path: &Path,
    tokenizer: &PretrainedTokenizer,
    max_len: usize,
    vocab_size: usize,
) -> Result<Vec<Encoded>> {
    let mut examples = Vec::new();
    let lines = for_each_line(path, |line, bytes| {
        let error = |message: String| DataError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        };
        let text =
            std::str::from_utf8(bytes).map_err(|e| error(format!("not UTF-8 text ({e})")))?;
        let (a, b) = match text.split('\t').collect::<Vec<_>>()[..] {
            [a] => (a, None),
            [a, b] => (a, Some(b)),
            ref fields => {
                return Err(error(format!(
                    "{} tab-separated fields; expected a sentence or sentence_a<TAB>sentence_b",
                    fields.len()
                )));
            }
        };
        if a.trim().is_empty() || b.is_some_and(|b| b.trim().is_empty()) {
            return Err(error(
                "an empty sentence; expected a sentence or sentence_a<TAB>sentence_b".into(),
            ));
        }
        let encoded = tokenizer
            .encode(a, b, max_len)
            .map_err(|e| error(e.to_string()))?;
        if let Some(&id) = encoded.ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(error(format!(
                "token id {id} is outside the checkpoint's vocabulary of {vocab_size} (config.json \
                 vocab_size): is the tokenizer the checkpoint's?"
            )));
        }
        examples.push(encoded);
        Ok(())
    })
    .with_context(|| format!("reading the examples of {}", path.display()))?;
    ensure!(
        lines > 0,
        "{}: no examples (the file is empty)",
        path.display()
    );
    Ok(examples)
}

/// `values` followed by zeros up to `len`.
fn padded(values: &[u32], len: usize) -> impl Iterator<Item = u32> + '_ {
    values.iter().copied().chain(std::iter::repeat(0)).take(len)
}

/// Last hidden states `[examples, seq, hidden]`, zero past each example's end.
fn encode(
    encoder: &Encoder,
    examples: &[Encoded],
    max_len: usize,
    seq: usize,
    batch_size: usize,
    device: &Device,
) -> Array {
    let mut values = Vec::new();
    let mut hidden_size = 0;
    for batch in examples.chunks(batch_size) {
        let (tokens, types, pad_mask) = batch_tensors(batch, max_len, device);
        let types = encoder.has_token_types().then_some(types);
        let hidden = encoder.forward_typed(tokens, types, pad_mask).hidden;
        let [_, _, width] = hidden.dims();
        hidden_size = width;
        let states = hidden
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("converted to float32");
        for (row, example) in batch.iter().enumerate() {
            let start = row * max_len * width;
            values.extend_from_slice(&states[start..start + example.ids.len() * width]);
            values.resize(values.len() + (seq - example.ids.len()) * width, 0.0);
        }
    }
    Array {
        shape: vec![examples.len(), seq, hidden_size],
        values,
    }
}

/// Ids, type ids and padding mask `[batch, max_len]`, padded with id 0 as training batches are.
fn batch_tensors(
    batch: &[Encoded],
    max_len: usize,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Bool>) {
    let ids: Vec<i64> = batch
        .iter()
        .flat_map(|e| padded(&e.ids, max_len).map(i64::from))
        .collect();
    let types: Vec<i64> = batch
        .iter()
        .flat_map(|e| padded(&e.type_ids, max_len).map(i64::from))
        .collect();
    let pad: Vec<bool> = batch
        .iter()
        .flat_map(|e| (0..max_len).map(move |position| position >= e.ids.len()))
        .collect();
    let shape = [batch.len(), max_len];
    (
        Tensor::from_data(TensorData::new(ids, shape), device),
        Tensor::from_data(TensorData::new(types, shape), device),
        Tensor::from_data(TensorData::new(pad, shape), device),
    )
}
