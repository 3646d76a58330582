//! Full softmax attention ([Attention Is All You Need](https://arxiv.org/abs/1706.03762),
//! Vaswani et al. 2017): explicit `[n, n]` scores per head. O(n²·d) time, O(n²) memory.
//! The exact reference for every other attention variant. On the CPU backend the scores, softmax
//! and dropout run as one operation with a handwritten backward (`ops::softmax_attention`); other
//! backends compose Burn ops (`mixer::reference`).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::reference::{PAD_BIAS, attention_probs, key_padding_bias};
use super::{
    AttentionCore, Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, MultiHeadProjection,
    MultiHeadProjectionConfig, TokenMixer,
};
use crate::ops::softmax_attention::{is_supported, softmax_attention};

/// Softmax attention has no settings of its own beyond the model's heads and dropout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxConfig {}

impl MixerSpec for SoftmaxConfig {
    type Mixer = SoftmaxAttention;
    const SUMMARY: &'static str = "exact softmax attention with explicit n×n scores (reference)";

    fn caps(&self) -> Caps {
        Caps::EXACT
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> SoftmaxAttention {
        SoftmaxAttention {
            heads: MultiHeadProjectionConfig::from_dims(dims).init(device),
            dropout: DropoutConfig::new(dims.dropout).init(),
        }
    }
}

/// Multi-head softmax attention.
#[derive(Module, Debug)]
pub struct SoftmaxAttention {
    heads: MultiHeadProjection,
    dropout: Dropout,
}

impl AttentionCore for SoftmaxAttention {
    fn projection(&self) -> &MultiHeadProjection {
        &self.heads
    }

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
        let (dropout, seed) = attention_dropout(&self.dropout, &device);
        softmax_attention(scale_queries(q), k, v, key_bias, dropout, seed)
    }
}

/// `q / √d`: the fused attention ops (this one, `flash`, `blocksparse`) take scaled queries.
pub(super) fn scale_queries(q: Tensor<4>) -> Tensor<4> {
    let head_dim = q.dims()[3];
    q / (head_dim as f64).sqrt()
}

/// The additive key bias `[b, m]` of a padding mask (`PAD_BIAS` at padding, 0 elsewhere) for keys
/// `k` `[b, h, m, d]`.
pub(super) fn key_bias(pad_mask: Option<Tensor<2, Bool>>, k: &Tensor<4>) -> Tensor<2> {
    let [batch, _, keys, _] = k.dims();
    match pad_mask {
        Some(mask) => mask.float() * PAD_BIAS,
        None => Tensor::zeros([batch, keys], &k.device()),
    }
}

/// The attention-dropout probability in effect and the seed of its mask: dropout acts only while
/// training on an autodiff device, and the seed comes from the device RNG so masks follow the
/// run's seeding like Burn's dropout.
pub(super) fn attention_dropout(dropout: &Dropout, device: &Device) -> (f32, u64) {
    let training = device.is_autodiff() && dropout.training.is_enabled();
    if !training || dropout.prob <= 0.0 {
        return (0.0, 0);
    }
    let draw = Tensor::<1, Int>::random([1], Distribution::Uniform(0.0, 16_777_216.0), device);
    (dropout.prob as f32, draw.into_scalar::<i64>() as u64)
}

impl TokenMixer for SoftmaxAttention {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        self.heads.mix(input, self)
    }

    fn attention_core(&self) -> Option<&dyn AttentionCore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;
    use crate::mixer::testing::assert_random_only_in_training;

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
