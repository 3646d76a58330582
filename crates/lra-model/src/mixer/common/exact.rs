//! Inputs of the fused exact-attention ops (`ops::softmax_attention`, `ops::flash_attention`)
//! that the `softmax`, `flash` and `blocksparse` mixers feed: scaled queries, the additive key
//! bias of a padding mask, and the dropout probability and mask seed in effect.

use burn::nn::Dropout;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};

use super::is_training;
use super::reference::PAD_BIAS;

/// `q / √d`: the fused attention ops (`softmax`, `flash`, `blocksparse`) take scaled queries.
pub fn scale_queries(q: Tensor<4>) -> Tensor<4> {
    let head_dim = q.dims()[3];
    q / (head_dim as f64).sqrt()
}

/// The additive key bias `[b, m]` of a padding mask (`PAD_BIAS` at padding, 0 elsewhere) for keys
/// `k` `[b, h, m, d]`.
pub fn key_bias(pad_mask: Option<Tensor<2, Bool>>, k: &Tensor<4>) -> Tensor<2> {
    let [batch, _, keys, _] = k.dims();
    match pad_mask {
        Some(mask) => mask.float() * PAD_BIAS,
        None => Tensor::zeros([batch, keys], &k.device()),
    }
}

/// The attention-dropout probability in effect and the seed of its mask: dropout acts only while
/// training on an autodiff device, and the seed comes from the device RNG so masks follow the
/// run's seeding like Burn's dropout.
pub fn attention_dropout(dropout: &Dropout, device: &Device) -> (f32, u64) {
    let training = is_training(&dropout.training, device);
    if !training || dropout.prob <= 0.0 {
        return (0.0, 0);
    }
    let draw = Tensor::<1, Int>::random([1], Distribution::Uniform(0.0, 16_777_216.0), device);
    (dropout.prob as f32, draw.into_scalar::<i64>() as u64)
}
