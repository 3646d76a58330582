//! Naive softmax attention: explicit scores, softmax, weighted sum. The exact reference every
//! exact mixer is tested against and the building block of block-local variants.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Tensor};

/// Additive score bias for padded keys. Finite, so a query whose keys are all padding gets a
/// uniform (not NaN) distribution; `exp` of it underflows to exactly 0 next to any real key.
pub const PAD_BIAS: f32 = -1e9;

/// Attention probabilities `softmax(q kᵀ / √d + bias)` over the last axis.
///
/// Works for any number of leading axes (`[b, h, n, d]`, or blocked `[b, h, nb, w, d]`).
/// `key_bias` must broadcast against the scores `[.., n_q, n_k]` (e.g. `[b, 1, 1, n_k]`).
pub fn attention_probs<const D: usize>(
    q: Tensor<D>,
    k: Tensor<D>,
    key_bias: Option<Tensor<D>>,
) -> Tensor<D> {
    let head_dim = q.dims()[D - 1];
    let scores = q.matmul(k.swap_dims(D - 2, D - 1)) / (head_dim as f64).sqrt();
    let scores = match key_bias {
        Some(bias) => scores + bias,
        None => scores,
    };
    softmax(scores, D - 1)
}

/// `[b, n]` padding mask → additive bias `[b, 1, 1, n]` for `[b, h, n, n]` scores.
pub fn key_padding_bias(pad_mask: Tensor<2, Bool>) -> Tensor<4> {
    let [batch, seq] = pad_mask.dims();
    (pad_mask.float() * PAD_BIAS).reshape([batch, 1, 1, seq])
}

/// Exact softmax attention `softmax(q kᵀ/√d) v` with padded keys excluded.
///
/// # Shapes
/// - `q`, `k`, `v`: `[batch, heads, seq, head_dim]`; `pad_mask`: `[batch, seq]`, `true` = padding
/// - output: `[batch, heads, seq, head_dim]`
pub fn softmax_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    pad_mask: Option<Tensor<2, Bool>>,
) -> Tensor<4> {
    attention_probs(q, k, pad_mask.map(key_padding_bias)).matmul(v)
}

/// Relative Frobenius error `‖a − b‖ / ‖b‖` (`b` the reference), for approximation tests.
pub fn relative_error(a: Tensor<4>, b: Tensor<4>) -> f32 {
    let diff = (a - b.clone()).powi_scalar(2).sum().sqrt();
    let norm = b.powi_scalar(2).sum().sqrt();
    (diff / norm).into_scalar::<f32>()
}
