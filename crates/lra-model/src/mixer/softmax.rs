//! Full softmax attention ([Attention Is All You Need](https://arxiv.org/abs/1706.03762),
//! Vaswani et al. 2017): explicit `[n, n]` scores per head. O(n²·d) time, O(n²) memory.
//! The exact reference for every other attention variant. On the CPU backend the scores, softmax
//! and dropout run as one operation with a handwritten backward (`ops::softmax_attention`); other
//! backends compose Burn ops (`mixer::reference`).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::dropout_in_effect;
use super::common::exact::{key_bias, scale_queries};
use super::common::reference::{attention_probs, key_padding_bias};
use super::{Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig};
use crate::ops::softmax_attention::{is_supported, softmax_attention};

/// Softmax attention has no settings of its own beyond the model's heads and dropout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxConfig {}

impl MixerSpec for SoftmaxConfig {
    type Mixer = SoftmaxAttention;
    const SUMMARY: &'static str = "exact softmax attention with explicit n×n scores (reference)";

    fn caps(&self) -> Caps {
        Caps::EXACT_ATTENTION
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> SoftmaxAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            SoftmaxCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
            },
        )
    }
}

/// Multi-head softmax attention.
pub type SoftmaxAttention = Attention<SoftmaxCore>;

/// The attention core of [`SoftmaxAttention`].
#[derive(Module, Debug)]
pub struct SoftmaxCore {
    dropout: Dropout,
}

impl AttentionCore for SoftmaxCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let device = q.device();
        if !is_supported(&device) {
            let probs = attention_probs(q, k, pad_mask.map(key_padding_bias)); // [b, h, n, n]
            return self.dropout.forward(probs).matmul(v);
        }
        let key_bias = key_bias(pad_mask, &k);
        let (dropout, seed) = dropout_in_effect(&self.dropout, &device);
        softmax_attention(scale_queries(q), k, v, key_bias, dropout, seed)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::mixer::common::testing::assert_random_only_in_training;
    use crate::mixer::{MixerInput, TokenMixer};

    #[test]
    fn dropout_acts_only_in_training_and_follows_the_device_seed() {
        let device = Device::flex().autodiff();
        let dims = MixerDims::new(16, 2, 32).with_dropout(0.5);
        device.seed(1);
        let attention = crate::init_now(SoftmaxConfig::default().init(&dims, &device));
        let x = Tensor::<3>::random([2, 32, 16], Distribution::Normal(0.0, 1.0), &device);
        let training = attention.forward(MixerInput::new(x.clone())).x;
        let eval = attention
            .valid()
            .forward(MixerInput::new(x.clone().inner()))
            .x;
        assert_ne!(
            eval.to_data(),
            training.inner().to_data(),
            "dropout acts in training"
        );
        assert_random_only_in_training(&attention, x, "dropout mask");
    }
}
