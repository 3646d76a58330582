//! Masked batches of packed sequences (with their sentence-order targets, for segment pairs
//! packed for SOP), the MLM and SOP losses and the held-out evaluation.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use lra_data::SplitData;
use lra_data::corpus::segment_pairs::SentenceOrder;
use lra_data::tokenizer::SpecialTokens;
use lra_model::MaskedLm;
use rand::Rng;

use crate::masking::{Masked, Masking, step_rng};

/// What masking a sequence needs to know besides the draws.
#[derive(Clone, Copy)]
pub struct MaskingPlan<'a> {
    pub masking: &'a Masking,
    pub special: SpecialTokens,
    pub vocab: usize,
    pub max_len: usize,
    /// Whole-word masking: for each id, whether its piece begins a word.
    pub word_starts: Option<&'a [bool]>,
}

impl MaskingPlan<'_> {
    /// Ids never chosen as targets.
    fn is_special(&self, id: u32) -> bool {
        let s = self.special;
        [s.pad, s.cls, s.sep, s.mask, s.unk].contains(&id)
    }

    /// One sequence masked: by pieces, or by whole words when the plan knows where words begin.
    fn mask(&self, ids: &[u32], rng: &mut impl Rng) -> Masked {
        let special = |id| self.is_special(id);
        let (vocab, mask_id) = (self.vocab, self.special.mask);
        match self.word_starts {
            Some(starts) => {
                let starts_word = |id: u32| starts.get(id as usize).copied().unwrap_or(true);
                let masking = self.masking;
                masking.apply_whole_words(ids, special, starts_word, vocab, mask_id, rng)
            }
            None => self.masking.apply(ids, special, vocab, mask_id, rng),
        }
    }
}

/// A batch of masked sequences on a device.
pub struct MaskedBatch {
    tokens: Tensor<2, Int>,
    /// Token types (segment ids), when the split stores them (segment pairs).
    types: Option<Tensor<2, Int>>,
    pad_mask: Tensor<2, Bool>,
    /// The masked tokens: their flat positions (`example · len + i`) and original ids, when the
    /// batch has any (a micro-batch may have none).
    mlm: Option<Targets>,
    /// The rows with a sentence-order target and their targets (0 in order, 1 swapped), when the
    /// batch has any.
    sentence_order: Option<Targets>,
}

/// Where a batch's targets are (flat token positions, or rows) and what they are.
struct Targets {
    at: Tensor<1, Int>,
    expected: Tensor<1, Int>,
}

impl Targets {
    /// `None` for no targets: a batch without them has no loss of that kind.
    fn new(at: Vec<i64>, expected: Vec<i64>, device: &Device) -> Option<Self> {
        let n = at.len();
        (n > 0).then(|| Self {
            at: Tensor::from_data(TensorData::new(at, [n]), device),
            expected: Tensor::from_data(TensorData::new(expected, [n]), device),
        })
    }

    fn count(targets: &Option<Self>) -> usize {
        targets.as_ref().map_or(0, |t| t.expected.dims()[0])
    }
}

impl MaskedBatch {
    /// How many tokens the batch predicts.
    pub fn targets(&self) -> usize {
        Targets::count(&self.mlm)
    }

    /// How many sequences have a sentence-order target.
    pub fn order_targets(&self) -> usize {
        Targets::count(&self.sentence_order)
    }
}

/// One sequence of a step: its ids and its masking.
struct MaskedRow {
    ids: Vec<u32>,
    masked: Masked,
}

/// One step's sequences `indices`, masked as one batch and cut into micro-batches of
/// `micro_batch` sequences (so the masks are the same whatever the cut). When the draw chose no
/// target in the whole step, the first ordinary token of its first sequence becomes one, so the
/// step's loss is defined. See [`masked_batch`] for what a batch holds.
pub fn masked_batches(
    split: &SplitData,
    indices: &[usize],
    micro_batch: usize,
    plan: MaskingPlan,
    rng: &mut impl Rng,
    device: &Device,
) -> Vec<MaskedBatch> {
    let mut rows: Vec<MaskedRow> = indices
        .iter()
        .map(|&index| {
            let ids: Vec<u32> = split.token_ids(index, 0).take(plan.max_len).collect();
            let masked = plan.mask(&ids, rng);
            MaskedRow { ids, masked }
        })
        .collect();
    let no_target = |row: &MaskedRow| row.masked.targets.iter().all(Option::is_none);
    if rows.iter().all(no_target) {
        let first = &mut rows[0];
        let ordinary = first.ids.iter().position(|&id| !plan.is_special(id));
        let at = ordinary.unwrap_or(0);
        first.masked.targets[at] = Some(first.ids[at]);
    }
    indices
        .chunks(micro_batch)
        .zip(rows.chunks(micro_batch))
        .map(|(indices, rows)| batch_tensors(split, indices, rows, plan, device))
        .collect()
}

/// The sequences `indices`, masked, padded to `max_len`, with their token types when the split
/// has them and their sentence-order targets when its labels are sentence-order classes
/// (segment pairs packed for SOP; unpaired segments have none); at least one masked token.
pub fn masked_batch(
    split: &SplitData,
    indices: &[usize],
    plan: MaskingPlan,
    rng: &mut impl Rng,
    device: &Device,
) -> MaskedBatch {
    let mut batches = masked_batches(split, indices, indices.len(), plan, rng, device);
    batches.pop().expect("one batch of all the sequences")
}

/// The tensors of the masked `rows` (sequences `indices` of `split`).
fn batch_tensors(
    split: &SplitData,
    indices: &[usize],
    rows: &[MaskedRow],
    plan: MaskingPlan,
    device: &Device,
) -> MaskedBatch {
    let max_len = plan.max_len;
    let (mut tokens, mut types, mut pad, mut positions, mut targets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (row, (&index, MaskedRow { ids, masked })) in indices.iter().zip(rows).enumerate() {
        for (i, target) in masked.targets.iter().enumerate() {
            if let Some(id) = target {
                positions.push((row * max_len + i) as i64);
                targets.push(i64::from(*id));
            }
        }
        tokens.extend(masked.inputs.iter().map(|&id| i64::from(id)));
        tokens.resize((row + 1) * max_len, i64::from(plan.special.pad));
        if let Some(row_types) = split.token_types(index, 0) {
            types.extend(row_types.iter().take(max_len).map(|&t| i64::from(t)));
            types.resize((row + 1) * max_len, 0);
        }
        pad.extend((0..max_len).map(|i| i >= ids.len()));
    }
    let batch = indices.len();
    let int_tensor = |values: Vec<i64>| {
        Tensor::<2, Int>::from_data(TensorData::new(values, [batch, max_len]), device)
    };
    MaskedBatch {
        tokens: int_tensor(tokens),
        types: (!types.is_empty()).then(|| int_tensor(types)),
        pad_mask: Tensor::from_data(TensorData::new(pad, [batch, max_len]), device),
        mlm: Targets::new(positions, targets, device),
        sentence_order: order_targets(split, indices, device),
    }
}

/// The sentence-order targets of the rows `indices` of `split`, if it has any.
fn order_targets(split: &SplitData, indices: &[usize], device: &Device) -> Option<Targets> {
    let classes = split.class_ids()?;
    let (rows, labels): (Vec<i64>, Vec<i64>) = indices
        .iter()
        .enumerate()
        .filter_map(|(row, &index)| {
            let target = SentenceOrder::from_class(classes[index])?.target()?;
            Some((row as i64, i64::from(target)))
        })
        .unzip();
    Targets::new(rows, labels, device)
}

/// The logits a batch is scored on: of the MLM targets `[targets, vocab]`, and of the rows with
/// a sentence-order target `[rows, 2]`, where it has them.
struct BatchLogits {
    mlm: Option<Tensor<2>>,
    sentence_order: Option<Tensor<2>>,
}

/// Both heads' logits of the batch's targets, from one pass of the encoder.
///
/// # Panics
/// If the batch has sentence-order targets and the model no sentence-order head.
fn batch_logits(model: &MaskedLm, batch: &MaskedBatch) -> BatchLogits {
    let output = model.forward_pretraining(
        batch.tokens.clone(),
        batch.types.clone(),
        batch.pad_mask.clone(),
        batch.mlm.as_ref().map(|masked| masked.at.clone()),
    );
    let mlm = output.mlm;
    let sentence_order = batch.sentence_order.as_ref().map(|order| {
        output
            .sentence_order
            .expect("sentence-order targets need the model's sentence-order head")
            .select(0, order.at.clone())
    });
    BatchLogits {
        mlm,
        sentence_order,
    }
}

/// The batch's losses: the MLM's mean cross-entropy over its masked tokens, and the
/// sentence-order mean cross-entropy over its rows that have a target, where it has them.
pub struct BatchLosses {
    pub mlm: Option<Tensor<1>>,
    pub sentence_order: Option<Tensor<1>>,
}

/// The losses of `batch` (see [`BatchLosses`]).
pub fn batch_losses(model: &MaskedLm, batch: &MaskedBatch) -> BatchLosses {
    let logits = batch_logits(model, batch);
    let cross_entropy = |logits: Option<Tensor<2>>, targets: &Option<Targets>| {
        let (logits, targets) = (logits?, targets.as_ref()?);
        let loss = CrossEntropyLossConfig::new().init(&logits.device());
        Some(loss.forward(logits, targets.expected.clone()))
    };
    BatchLosses {
        mlm: cross_entropy(logits.mlm, &batch.mlm),
        sentence_order: cross_entropy(logits.sentence_order, &batch.sentence_order),
    }
}

/// Mean loss and accuracy of one head over a split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadScores {
    pub loss: f64,
    pub accuracy: f64,
}

/// The held-out scores: the MLM's, and the sentence-order head's when the split has
/// sentence-order targets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeldOutScores {
    pub mlm: HeadScores,
    pub sentence_order: Option<HeadScores>,
}

/// Sums of one head's losses (weighted by their counts) and hits over batches.
#[derive(Default)]
struct Tally {
    loss_sum: f64,
    correct: usize,
    count: usize,
}

impl Tally {
    /// Adds a batch's logits `[n, classes]` against its targets `[n]`, where it has them.
    fn add(&mut self, logits: Option<Tensor<2>>, targets: &Option<Targets>) {
        let (Some(logits), Some(targets)) = (logits, targets) else {
            return;
        };
        let targets = targets.expected.clone();
        let n = targets.dims()[0];
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), targets.clone());
        self.loss_sum += loss.into_scalar::<f32>() as f64 * n as f64;
        let hits = logits.argmax(1).reshape([n]).equal(targets).int().sum();
        self.correct += hits.into_scalar::<i64>() as usize;
        self.count += n;
    }

    fn scores(&self) -> Option<HeadScores> {
        (self.count > 0).then(|| HeadScores {
            loss: self.loss_sum / self.count as f64,
            accuracy: self.correct as f64 / self.count as f64,
        })
    }
}

/// Mean loss and accuracy over the held-out targets, masked the same way at every evaluation
/// (draws from a stream of their own, seeded by the run's seed), and over its sentence-order
/// targets when it has them.
pub fn evaluate(
    model: &MaskedLm,
    val: &SplitData,
    plan: MaskingPlan,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> HeldOutScores {
    let (mut mlm, mut sentence_order) = (Tally::default(), Tally::default());
    let all: Vec<usize> = (0..val.len()).collect();
    for (number, chunk) in all.chunks(batch_size).enumerate() {
        let mut rng = step_rng(seed ^ 0x7661_6c69_6461_7465, number);
        let batch = masked_batch(val, chunk, plan, &mut rng, device);
        let logits = batch_logits(model, &batch);
        mlm.add(logits.mlm, &batch.mlm);
        sentence_order.add(logits.sentence_order, &batch.sentence_order);
    }
    HeldOutScores {
        mlm: mlm
            .scores()
            .expect("every batch has at least one MLM target"),
        sentence_order: sentence_order.scores(),
    }
}
