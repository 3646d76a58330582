//! Inputs of the fused exact-attention ops (`ops::softmax_attention`, `ops::flash_attention`)
//! that the `softmax`, `flash` and `blocksparse` mixers feed: scaled queries, the additive key
//! bias of a padding mask. (Their dropout probability and mask seed: `common::dropout_in_effect`.)

use burn::tensor::{Bool, Tensor};

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
