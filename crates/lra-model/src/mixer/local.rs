//! Disjoint local attention: the sequence is cut into contiguous blocks of `block_size` tokens and
//! each query attends only to the keys of its own block (the LRA "Local Attention" baseline,
//! Tay et al. 2021; Xiong et al. 2021, "Simple Local Attentions Remain Competitive").
//! O(n·w·d) time, O(n·w) memory: only the `n/w` diagonal `[w, w]` blocks are computed.
//!
//! The LRA JAX code (`lra_benchmarks/models/local/local_attention.py`) reshapes with the block
//! size first, which groups strided rather than contiguous tokens; we use contiguous blocks as in
//! Xiong et al. and the PyTorch LRA code bases.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::reference::{PAD_BIAS, attention_probs};
use super::{
    AttentionCore, Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, MultiHeadProjection,
    MultiHeadProjectionConfig, TokenMixer,
};

/// Settings of [`LocalAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Tokens per block `w`. Default: 50 (LRA `LocalAttention` block_size).
    pub block_size: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self { block_size: 50 }
    }
}

impl MixerSpec for LocalConfig {
    type Mixer = LocalAttention;
    const SUMMARY: &'static str =
        "disjoint local attention: softmax within contiguous blocks (LRA Local baseline)";

    fn caps(&self) -> Caps {
        Caps {
            exact: false,
            pad_mask: true,
        }
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        if self.block_size == 0 {
            return Err("block_size must be at least 1".into());
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> LocalAttention {
        LocalAttention {
            heads: MultiHeadProjectionConfig::from_dims(dims).init(device),
            dropout: DropoutConfig::new(dims.dropout).init(),
            block_size: self.block_size,
        }
    }
}

/// Multi-head attention restricted to disjoint contiguous blocks.
#[derive(Module, Debug)]
pub struct LocalAttention {
    heads: MultiHeadProjection,
    dropout: Dropout,
    block_size: usize,
}

impl AttentionCore for LocalAttention {
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
        let [batch, heads, seq, head_dim] = q.dims();
        let w = self.block_size.min(seq);
        let blocks = seq.div_ceil(w);
        let padded = blocks * w;
        // Keys past the end of the sequence (filling the last block) count as padding.
        let is_pad = pad_mask
            .map(|mask| mask.float())
            .unwrap_or_else(|| Tensor::zeros([batch, seq], &q.device())); // [b, n]
        let is_pad = pad_tail(is_pad, padded, 1.0);
        let key_bias = (is_pad * PAD_BIAS).reshape([batch, 1, blocks, 1, w]);
        let to_blocks =
            |x: Tensor<4>| pad_tail(x, padded, 0.0).reshape([batch, heads, blocks, w, head_dim]);
        let probs = attention_probs(to_blocks(q), to_blocks(k), Some(key_bias)); // [b, h, nb, w, w]
        let context = self.dropout.forward(probs).matmul(to_blocks(v)); // [b, h, nb, w, dh]
        context
            .reshape([batch, heads, padded, head_dim])
            .narrow(2, 0, seq)
    }
}

impl TokenMixer for LocalAttention {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        self.heads.mix(input, self)
    }

    fn attention_core(&self) -> Option<&dyn AttentionCore> {
        Some(self)
    }
}

/// Extends the sequence axis (axis 2 for 4-D, axis 1 for 2-D, i.e. the axis after batch/heads)
/// to `len` with `value`.
fn pad_tail<const D: usize>(x: Tensor<D>, len: usize, value: f32) -> Tensor<D> {
    let axis = if D == 4 { 2 } else { 1 };
    let mut dims = x.dims();
    let missing = len - dims[axis];
    if missing == 0 {
        return x;
    }
    dims[axis] = missing;
    let fill = Tensor::<D>::full(dims, value, &x.device());
    Tensor::cat(vec![x, fill], axis)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;
    use crate::mixer::reference::softmax_attention;

    fn qkv(device: &Device, seed: u64, seq: usize) -> Tensor<4> {
        device.seed(seed);
        Tensor::random([2, 2, seq, 8], Distribution::Normal(0.0, 1.0), device)
    }

    fn local(block_size: usize, device: &Device) -> LocalAttention {
        let dims = MixerDims {
            d_model: 16,
            n_heads: 2,
            max_len: 64,
            dropout: 0.0,
        };
        LocalConfig { block_size }.init(&dims, device)
    }

    #[test]
    fn equals_dense_softmax_with_a_block_diagonal_mask() {
        let device = Device::flex();
        let (seq, w) = (23, 5); // last block is partial
        let (q, k, v) = (
            qkv(&device, 1, seq),
            qkv(&device, 2, seq),
            qkv(&device, 3, seq),
        );
        // Every query keeps at least one visible key (fully masked rows are arbitrary).
        let pad: Vec<bool> = (0..2 * seq).map(|i| i >= seq + 21).collect();
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [2, seq]), &device);
        let actual = local(w, &device).attend(q.clone(), k.clone(), v.clone(), Some(pad.clone()));

        // Dense reference: key j is visible to query i iff same block and j not padded.
        let mut bias = vec![0f32; 2 * seq * seq];
        for b in 0..2 {
            for i in 0..seq {
                for j in 0..seq {
                    let padded = b == 1 && j >= 21;
                    if i / w != j / w || padded {
                        bias[(b * seq + i) * seq + j] = PAD_BIAS;
                    }
                }
            }
        }
        let bias = Tensor::<4>::from_data(TensorData::new(bias, [2, 1, seq, seq]), &device);
        let expected = attention_probs(q, k, Some(bias)).matmul(v);
        actual
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn one_block_covering_the_sequence_is_softmax_attention() {
        let device = Device::flex();
        let (q, k, v) = (
            qkv(&device, 1, 16),
            qkv(&device, 2, 16),
            qkv(&device, 3, 16),
        );
        let actual = local(16, &device).attend(q.clone(), k.clone(), v.clone(), None);
        let expected = softmax_attention(q, k, v, None);
        actual
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
    }
}
