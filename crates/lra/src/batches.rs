//! Turns examples into tensors, in an order that is a pure function of (seed, step): a resumed
//! run sees exactly the batches the uninterrupted run would have seen.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use lra_data::{Labels, PAD_ID, SplitData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::objective::Targets;

/// One batch on a device.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Token ids `[batch, max_len]` (of the first document, for pair tasks).
    pub tokens: Tensor<2, Int>,
    /// `[batch, max_len]`, `true` at padding.
    pub pad_mask: Tensor<2, Bool>,
    /// Token-type ids `[batch, max_len]` (0 at padding), for splits that store them.
    pub types: Option<Tensor<2, Int>>,
    /// Pair tasks: the second document's token ids and padding mask, `[batch, max_len]` each.
    pub second: Option<(Tensor<2, Int>, Tensor<2, Bool>)>,
    /// Gold answers `[batch]`; `None` for an unlabelled split.
    pub targets: Option<Targets>,
}

/// How long the sequences of a batch are: documents are truncated at `truncate` tokens and
/// padded to `padded` (≥ `truncate`; Skyformer pads to a power of two past its truncation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqLen {
    pub truncate: usize,
    pub padded: usize,
}

impl SeqLen {
    /// Truncated and padded to the same length.
    pub fn exactly(len: usize) -> Self {
        Self {
            truncate: len,
            padded: len,
        }
    }
}

/// The examples `indices` of `split`, each document truncated and padded as `len` says.
pub fn make_batch(split: &SplitData, indices: &[usize], len: SeqLen, device: &Device) -> Batch {
    let second =
        (split.docs_per_example() == 2).then(|| document_tensors(split, indices, 1, len, device));
    let (tokens, pad_mask) = document_tensors(split, indices, 0, len, device);
    Batch {
        tokens,
        pad_mask,
        types: type_tensor(split, indices, len, device),
        second,
        targets: targets(split.labels(), indices, device),
    }
}

fn targets(labels: &Labels, indices: &[usize], device: &Device) -> Option<Targets> {
    let shape = [indices.len()];
    match labels {
        Labels::Classes(classes) => {
            let ids: Vec<i64> = indices.iter().map(|&i| i64::from(classes[i])).collect();
            Some(Targets::Classes(Tensor::from_data(
                TensorData::new(ids, shape),
                device,
            )))
        }
        Labels::Scores(scores) => {
            let values: Vec<f32> = indices.iter().map(|&i| scores[i]).collect();
            Some(Targets::Scores(Tensor::from_data(
                TensorData::new(values, shape),
                device,
            )))
        }
        Labels::Unlabelled => None,
    }
}

/// The token types of the first document of each example, truncated and 0-padded as `len`.
fn type_tensor(
    split: &SplitData,
    indices: &[usize],
    len: SeqLen,
    device: &Device,
) -> Option<Tensor<2, Int>> {
    split.format().token_types.then(|| {
        let mut types = Vec::with_capacity(indices.len() * len.padded);
        for &index in indices {
            let stored = split.token_types(index, 0).unwrap_or_default();
            let kept = stored.len().min(len.truncate);
            types.extend(stored[..kept].iter().map(|&t| i64::from(t)));
            types.resize(types.len() + len.padded - kept, 0);
        }
        Tensor::from_data(TensorData::new(types, [indices.len(), len.padded]), device)
    })
}

/// Document `doc` of each example as `[batch, len.padded]` ids and padding mask.
fn document_tensors(
    split: &SplitData,
    indices: &[usize],
    doc: usize,
    len: SeqLen,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let (batch, padded) = (indices.len(), len.padded);
    let mut tokens = Vec::with_capacity(batch * padded);
    let mut pad = Vec::with_capacity(batch * padded);
    for &index in indices {
        let before = tokens.len();
        tokens.extend(
            split
                .token_ids(index, doc)
                .take(len.truncate)
                .map(i64::from),
        );
        let real = tokens.len() - before;
        tokens.resize(before + padded, i64::from(PAD_ID));
        pad.extend((0..padded).map(|position| position >= real));
    }
    (
        Tensor::from_data(TensorData::new(tokens, [batch, padded]), device),
        Tensor::from_data(TensorData::new(pad, [batch, padded]), device),
    )
}

/// Training order: every epoch is a fresh permutation seeded by (seed, epoch); the batch of step
/// `s` holds positions `s·B .. (s+1)·B` of the concatenated epochs.
pub struct TrainOrder {
    seed: u64,
    len: usize,
    epoch: Option<(usize, Vec<usize>)>,
}

impl TrainOrder {
    /// Order over `len` examples.
    pub fn new(seed: u64, len: usize) -> Self {
        Self {
            seed,
            len,
            epoch: None,
        }
    }

    /// Example indices of the batch at `step`.
    pub fn batch(&mut self, step: usize, batch_size: usize) -> Vec<usize> {
        (step * batch_size..(step + 1) * batch_size)
            .map(|position| self.at(position))
            .collect()
    }

    fn at(&mut self, position: usize) -> usize {
        let epoch = position / self.len;
        if self.epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut permutation: Vec<usize> = (0..self.len).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(
                self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            permutation.shuffle(&mut rng);
            self.epoch = Some((epoch, permutation));
        }
        let (_, permutation) = self
            .epoch
            .as_ref()
            .expect("epoch permutation was just built");
        permutation[position % self.len]
    }
}

#[cfg(test)]
mod tests {
    use lra_data::SplitBuilder;

    use super::*;

    /// `task.pad_to` past `max_len`: truncated at 3 tokens, padded with masked zeros to 5.
    #[test]
    fn a_padded_length_past_the_truncation_pads_with_masked_zeros() {
        let device = Device::flex();
        let mut builder = SplitBuilder::new(1, 0);
        builder.push(&[b"abcdef"], 1);
        builder.push(&[b"g"], 0);
        let split = builder.finish();
        let len = SeqLen {
            truncate: 3,
            padded: 5,
        };
        let batch = make_batch(&split, &[0, 1], len, &device);
        let ids: Vec<i64> = batch.tokens.into_data().iter::<i64>().collect();
        let b = |c: u8| i64::from(c);
        assert_eq!(ids, [b(b'a'), b(b'b'), b(b'c'), 0, 0, b(b'g'), 0, 0, 0, 0]);
        let pads = batch.pad_mask.into_data().try_to_vec::<bool>().unwrap();
        let expected = [
            false, false, false, true, true, false, true, true, true, true,
        ];
        assert_eq!(pads, expected);
    }

    #[test]
    fn batches_pad_truncate_and_carry_the_second_document() {
        let device = Device::flex();
        let mut builder = SplitBuilder::new(2, 1);
        builder.push(&[b"abcdef", b"x"], 1);
        builder.push(&[b"", b"yz"], 0);
        let split = builder.finish();
        let batch = make_batch(&split, &[1, 0], SeqLen::exactly(4), &device);
        let ids = |t: Tensor<2, Int>| t.into_data().iter::<i64>().collect::<Vec<_>>();
        let pads = |t: Tensor<2, Bool>| t.into_data().try_to_vec::<bool>().unwrap();
        let b = |c: u8| i64::from(c) + 1;
        assert_eq!(
            ids(batch.tokens),
            [0, 0, 0, 0, b(b'a'), b(b'b'), b(b'c'), b(b'd')]
        );
        assert_eq!(
            pads(batch.pad_mask),
            [true, true, true, true, false, false, false, false]
        );
        let (second, second_pad) = batch.second.expect("pairs carry a second document");
        assert_eq!(ids(second), [b(b'y'), b(b'z'), 0, 0, b(b'x'), 0, 0, 0]);
        assert_eq!(
            pads(second_pad),
            [false, false, true, true, false, true, true, true]
        );
        let Some(Targets::Classes(labels)) = batch.targets else {
            panic!("class targets expected")
        };
        assert_eq!(labels.into_data().iter::<i64>().collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn every_epoch_is_a_permutation_and_order_depends_only_on_seed_and_step() {
        let mut order = TrainOrder::new(7, 10);
        let first_epoch: Vec<usize> = (0..5).flat_map(|s| order.batch(s, 2)).collect();
        let mut sorted = first_epoch.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        let second_epoch: Vec<usize> = (5..10).flat_map(|s| order.batch(s, 2)).collect();
        assert_ne!(first_epoch, second_epoch, "epochs are reshuffled");
        // A fresh order (as after a resume) jumping straight to step 7 agrees.
        assert_eq!(TrainOrder::new(7, 10).batch(7, 2), order.batch(7, 2));
        assert_ne!(
            TrainOrder::new(8, 10).batch(0, 10),
            TrainOrder::new(7, 10).batch(0, 10)
        );
    }
}
