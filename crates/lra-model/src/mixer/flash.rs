//! FlashAttention: Dao, Fu, Ermon, Rudra and Ré, NeurIPS 2022, "FlashAttention: Fast and
//! Memory-Efficient Exact Attention with IO-Awareness" (<https://arxiv.org/abs/2205.14135>);
//! loop order of FlashAttention-2 (Dao 2023, <https://arxiv.org/abs/2307.08691>).
//!
//! Exact softmax attention computed tile by tile with the online softmax, so the `[n, n]` score
//! matrix never exists, and a backward pass that recomputes the score tiles from the saved
//! per-row logsumexp. O(n²·d) time like softmax attention, O(n·d) memory in training and
//! inference. The kernel is `ops::flash_attention` (CPU backend); other backends compose the
//! naive reference (`mixer::reference`, O(n²) memory).
//!
//! Official code checked: Dao-AILab/flash-attention, `flash_attn/flash_attn_triton.py` (forward
//! and backward recurrences) and `flash_attn/flash_attn_interface.py` (dropout on the
//! probabilities, softmax scale 1/√d).
//!
//! Deviations, and why: tiles are [`DENSE_TILE`] squares chosen for CPU caches, not GPU shared
//! memory; dropout masks come from a counter hash instead of Philox (both are regenerated in the
//! backward, neither is stored); padding is a finite key bias instead of unpadding ("varlen"),
//! which LRA's fixed-length batches do not need.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::dropout_in_effect;
use super::common::exact::{key_bias, scale_queries};
use super::common::reference::{attention_probs, key_padding_bias};
use super::{Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig};
#[cfg(doc)]
use crate::ops::flash_attention::DENSE_TILE;
use crate::ops::flash_attention::{flash_attention, is_supported};

/// FlashAttention computes exact softmax attention: no settings beyond the model's heads and
/// dropout (the tile size is a property of the CPU kernel, not of the method).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlashConfig {}

impl MixerSpec for FlashConfig {
    type Mixer = FlashAttention;
    const SUMMARY: &'static str =
        "FlashAttention: exact softmax attention, tiled with an online softmax, O(n) memory";

    fn caps(&self) -> Caps {
        Caps::EXACT_ATTENTION
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> FlashAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            FlashCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
            },
        )
    }
}

/// Multi-head FlashAttention.
pub type FlashAttention = Attention<FlashCore>;

/// The attention core of [`FlashAttention`].
#[derive(Module, Debug)]
pub struct FlashCore {
    dropout: Dropout,
}

impl AttentionCore for FlashCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        if !is_supported(&q.device()) {
            let probs = attention_probs(q, k, pad_mask.map(key_padding_bias)); // [b, h, n, n]
            return self.dropout.forward(probs).matmul(v);
        }
        let key_bias = key_bias(pad_mask, &k);
        let (dropout, seed) = dropout_in_effect(&self.dropout, &q.device());
        flash_attention(scale_queries(q), k, v, key_bias, dropout, seed)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::mixer::common::reference::softmax_attention;
    use crate::mixer::common::testing::{assert_random_only_in_training, gaussian, pad_mask};

    fn dims(dropout: f64) -> MixerDims {
        MixerDims::new(16, 2, 200).with_dropout(dropout)
    }

    #[test]
    fn the_core_equals_naive_softmax_with_padding_in_outputs_and_gradients() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let attention = crate::init_now(FlashConfig::default().init(&dims(0.0), &device));
        // 200 = one tile of 128 + 72; the second sequence is padded from 131 on.
        let [q, k, v] = [11, 12, 13].map(|seed| gaussian(&device, seed, [2, 2, 200, 8]));
        let [q, k, v] = [q, k, v].map(Tensor::require_grad);
        let mask = pad_mask(&device, 200, 131);
        let flash = attention
            .core
            .attend(q.clone(), k.clone(), v.clone(), Some(mask.clone()));
        let naive = softmax_attention(q.clone(), k.clone(), v.clone(), Some(mask));
        let tol = Tolerance::absolute(1e-5);
        flash
            .to_data()
            .assert_approx_eq::<f32>(&naive.to_data(), tol);
        let weights = gaussian(&device, 14, [2, 2, 200, 8]);
        let flash_grads = (flash * weights.clone()).sum().backward();
        let naive_grads = (naive * weights).sum().backward();
        for x in [&q, &k, &v] {
            let (a, b) = (x.grad(&flash_grads).unwrap(), x.grad(&naive_grads).unwrap());
            a.to_data().assert_approx_eq::<f32>(&b.to_data(), tol);
        }
    }

    #[test]
    fn dropout_acts_only_in_training_and_follows_the_device_seed() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let attention = crate::init_now(FlashConfig::default().init(&dims(0.5), &device));
        let x = Tensor::<3>::random([2, 32, 16], Distribution::Normal(0.0, 1.0), &device);
        assert_random_only_in_training(&attention, x, "dropout mask");
    }
}
