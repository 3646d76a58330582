//! Full softmax attention ([Attention Is All You Need](https://arxiv.org/abs/1706.03762),
//! Vaswani et al. 2017): explicit `[n, n]` scores per head. O(n²·d) time, O(n²) memory.
//! The exact reference for every other attention variant.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::reference::{attention_probs, key_padding_bias};
use super::{
    AttentionCore, Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, MultiHeadProjection,
    MultiHeadProjectionConfig, TokenMixer,
};

/// Softmax attention has no settings of its own beyond the model's heads and dropout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxConfig {}

impl MixerSpec for SoftmaxConfig {
    type Mixer = SoftmaxAttention;
    const SUMMARY: &'static str = "exact softmax attention with explicit n×n scores (reference)";

    fn caps(&self) -> Caps {
        Caps {
            exact: true,
            pad_mask: true,
        }
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
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let probs = attention_probs(q, k, pad_mask.map(key_padding_bias)); // [b, h, n, n]
        self.dropout.forward(probs).matmul(v)
    }
}

impl TokenMixer for SoftmaxAttention {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        self.heads.mix(input, self)
    }

    fn attention_core(&self) -> Option<&dyn AttentionCore> {
        Some(self)
    }
}
