//! Turns examples into tensors, in an order that is a pure function of (seed, step): a resumed
//! run sees exactly the batches the uninterrupted run would have seen.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use lra_data::{Example, pad_to};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// One batch on a device.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Token ids `[batch, max_len]`.
    pub tokens: Tensor<2, Int>,
    /// `[batch, max_len]`, `true` at padding.
    pub pad_mask: Tensor<2, Bool>,
    /// Class ids `[batch]`.
    pub labels: Tensor<1, Int>,
}

/// Pads or truncates each example to `max_len` and stacks them.
pub fn make_batch(examples: &[&Example], max_len: usize, device: &Device) -> Batch {
    let batch = examples.len();
    let mut tokens = Vec::with_capacity(batch * max_len);
    let mut pad = Vec::with_capacity(batch * max_len);
    for example in examples {
        let (ids, is_pad) = pad_to(&example.tokens, max_len);
        tokens.extend(ids.into_iter().map(i64::from));
        pad.extend(is_pad);
    }
    let labels: Vec<i64> = examples.iter().map(|e| i64::from(e.label)).collect();
    Batch {
        tokens: Tensor::from_data(TensorData::new(tokens, [batch, max_len]), device),
        pad_mask: Tensor::from_data(TensorData::new(pad, [batch, max_len]), device),
        labels: Tensor::from_data(TensorData::new(labels, [batch]), device),
    }
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
    use super::*;

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
