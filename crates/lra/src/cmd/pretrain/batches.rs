//! Masked batches of packed sequences, the MLM loss and the held-out evaluation.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use lra_data::SplitData;
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
    pad_mask: Tensor<2, Bool>,
    /// Flat positions (`example · len + i`) of the targets, and their original ids.
    positions: Tensor<1, Int>,
    targets: Tensor<1, Int>,
}

impl MaskedBatch {
    /// How many tokens the batch predicts.
    pub fn targets(&self) -> usize {
        self.targets.dims()[0]
    }
}

/// The sequences `indices`, masked, padded to `max_len`. A batch whose draw chose no target gets
/// one (its first ordinary token), so the loss is defined.
pub fn masked_batch(
    split: &SplitData,
    indices: &[usize],
    plan: MaskingPlan,
    rng: &mut impl Rng,
    device: &Device,
) -> MaskedBatch {
    let max_len = plan.max_len;
    let (mut tokens, mut pad, mut positions, mut targets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (row, &index) in indices.iter().enumerate() {
        let ids: Vec<u32> = split.token_ids(index, 0).take(max_len).collect();
        let masked = plan.mask(&ids, rng);
        for (i, target) in masked.targets.iter().enumerate() {
            if let Some(id) = target {
                positions.push((row * max_len + i) as i64);
                targets.push(i64::from(*id));
            }
        }
        tokens.extend(masked.inputs.iter().map(|&id| i64::from(id)));
        tokens.resize((row + 1) * max_len, i64::from(plan.special.pad));
        pad.extend((0..max_len).map(|i| i >= ids.len()));
    }
    if positions.is_empty() {
        let first = split
            .token_ids(indices[0], 0)
            .position(|id| !plan.is_special(id))
            .unwrap_or(0);
        positions.push(first as i64);
        targets.push(tokens[first]);
    }
    let batch = indices.len();
    let targets_len = targets.len();
    MaskedBatch {
        tokens: Tensor::from_data(TensorData::new(tokens, [batch, max_len]), device),
        pad_mask: Tensor::from_data(TensorData::new(pad, [batch, max_len]), device),
        positions: Tensor::from_data(TensorData::new(positions, [targets_len]), device),
        targets: Tensor::from_data(TensorData::new(targets, [targets_len]), device),
    }
}

/// Logits of the targets `[targets, vocab]`.
fn target_logits(model: &MaskedLm, batch: &MaskedBatch) -> Tensor<2> {
    let logits = model.forward(batch.tokens.clone(), None, batch.pad_mask.clone());
    let [b, n, vocab] = logits.dims();
    logits
        .reshape([b * n, vocab])
        .select(0, batch.positions.clone())
}

/// Mean cross-entropy over the batch's targets.
pub fn mlm_loss(model: &MaskedLm, batch: &MaskedBatch) -> Tensor<1> {
    let logits = target_logits(model, batch);
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, batch.targets.clone())
}

/// Mean loss and accuracy over the held-out targets, masked the same way at every evaluation
/// (draws from a stream of their own, seeded by the run's seed).
pub fn evaluate(
    model: &MaskedLm,
    val: &SplitData,
    plan: MaskingPlan,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> (f64, f64) {
    let (mut loss_sum, mut correct, mut count) = (0.0, 0usize, 0usize);
    let all: Vec<usize> = (0..val.len()).collect();
    for (number, chunk) in all.chunks(batch_size).enumerate() {
        let mut rng = step_rng(seed ^ 0x7661_6c69_6461_7465, number);
        let batch = masked_batch(val, chunk, plan, &mut rng, device);
        let logits = target_logits(model, &batch);
        let n = batch.targets.dims()[0];
        let loss = CrossEntropyLossConfig::new()
            .init(device)
            .forward(logits.clone(), batch.targets.clone());
        loss_sum += loss.into_scalar::<f32>() as f64 * n as f64;
        let hits = logits
            .argmax(1)
            .reshape([n])
            .equal(batch.targets.clone())
            .int()
            .sum();
        correct += hits.into_scalar::<i64>() as usize;
        count += n;
    }
    (loss_sum / count as f64, correct as f64 / count as f64)
}
