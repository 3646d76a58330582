//! Inputs shared by the mixers' unit tests.

use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};

/// `shape` of independent N(0, 1) draws under device seed `seed`.
pub(crate) fn gaussian(device: &Device, seed: u64, shape: [usize; 4]) -> Tensor<4> {
    device.seed(seed);
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// `[2, seq]` padding mask: row 0 unpadded, row 1 padded from position `real` on.
pub(crate) fn pad_mask(device: &Device, seq: usize, real: usize) -> Tensor<2, Bool> {
    let mask: Vec<bool> = (0..2 * seq).map(|i| i >= seq + real).collect();
    Tensor::from_data(TensorData::new(mask, [2, seq]), device)
}
