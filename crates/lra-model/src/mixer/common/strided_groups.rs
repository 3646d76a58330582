//! The block layout of the LRA JAX code's local and Sinkhorn attentions
//! (google-research/long-range-arena @ `cd31e5c`, `local_attention.py:318-323`,
//! `sinkhorn_attention.py:340-348`): a `[L]` sequence is reshaped to `[B, L/B]` and attention
//! runs along the first axis, so group `j` holds the strided tokens `i·(L/B) + j`, `i < B`. Their
//! padding masks, though, are reshaped to `[L/B, B]` (`local_attention.py:342-343`,
//! `sinkhorn_attention.py:403-404`): group `j`'s pair `(i, i')` is allowed when tokens `j·B + i`
//! and `j·B + i'` of the *contiguous* chunk `j` are real, and a disallowed pair gets −1e10.

use burn::nn::Dropout;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// The bias of a disallowed pair; in float32 it swallows any score, so a row with nothing
/// allowed is uniform.
pub const MASKED: f32 = -1e10;

/// `[b, h, L, d]` → `[b, h, L/size, size, d]`: member `i` of group `j` is token `i·(L/size) + j`.
pub fn group(x: Tensor<4>, size: usize) -> Tensor<5> {
    let [batch, heads, len, dim] = x.dims();
    x.reshape([batch, heads, size, len / size, dim])
        .swap_dims(2, 3)
}

/// The inverse of [`group`].
pub fn ungroup(x: Tensor<5>) -> Tensor<4> {
    let [batch, heads, groups, size, dim] = x.dims();
    x.swap_dims(2, 3)
        .reshape([batch, heads, groups * size, dim])
}

/// `real` `[b, L]` (1 = real) cut into contiguous chunks of `size`: `[b, L/size, size]`.
pub fn chunks(real: Tensor<2>, size: usize) -> Tensor<3> {
    let [batch, len] = real.dims();
    real.reshape([batch, len / size, size])
}

/// The pairs group `j` may attend, `[b, 1, L/size, size, size]`: 1 where members `i` and `i'` of
/// contiguous chunk `j` are both real.
pub fn chunk_pairs(real: Tensor<2>, size: usize) -> Tensor<5> {
    let chunks = chunks(real, size);
    let [batch, groups, _] = chunks.dims();
    (chunks.clone().unsqueeze_dim::<4>(3) * chunks.unsqueeze_dim(2))
        .reshape([batch, 1, groups, size, size])
}

/// `softmax(q·kᵀ + bias)·v` with −1e10 where `allowed` is 0, dropout on the probabilities
/// (`q` already scaled): `[b, h, g, B, d]` queries against `[b, h, 1 or g, B, d]` keys.
pub fn masked_attention(
    q: Tensor<5>,
    k: Tensor<5>,
    v: Tensor<5>,
    allowed: Tensor<5>,
    dropout: &Dropout,
) -> Tensor<5> {
    let bias = (allowed - 1.0).neg() * MASKED;
    let scores = q.matmul(k.swap_dims(3, 4)) + bias;
    dropout.forward(softmax(scores, 4)).matmul(v)
}
