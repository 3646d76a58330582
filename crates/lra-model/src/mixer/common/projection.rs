//! Q/K/V/output projections and the head split shared by all attention mixers (the xformers
//! `MultiHeadDispatch` idea): an attention variant only writes its [`AttentionCore`], and
//! [`Attention`](super::attention::Attention) puts these projections around it.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::folded_linear::FoldedLinear;
use crate::mixer::{AttentionCore, MixerDims, MixerInput, MixerOutput};

/// Builds [`MultiHeadProjection`].
#[derive(Clone, Debug)]
pub struct MultiHeadProjectionConfig {
    /// Model width.
    pub d_model: usize,
    /// Number of heads; must divide `qkv_dim`.
    pub n_heads: usize,
    /// Width of the queries, keys and values of all heads together.
    pub qkv_dim: usize,
    /// Whether the four projections have biases.
    pub bias: bool,
}

impl MultiHeadProjectionConfig {
    /// Projections for the model sizes in `dims`.
    pub fn from_dims(dims: &MixerDims) -> Self {
        Self {
            d_model: dims.d_model,
            n_heads: dims.n_heads,
            qkv_dim: dims.qkv_dim,
            bias: dims.projection_bias,
        }
    }

    /// Initialises the four projections.
    pub fn init(&self, device: &Device) -> MultiHeadProjection {
        let linear = |d_in, d_out| {
            LinearConfig::new(d_in, d_out)
                .with_bias(self.bias)
                .init(device)
        };
        let input = || linear(self.d_model, self.qkv_dim);
        MultiHeadProjection {
            query: input(),
            key: input(),
            value: input(),
            output: linear(self.qkv_dim, self.d_model),
            n_heads: self.n_heads,
        }
    }
}

/// Input projections to per-head Q, K, V, and the output projection after the heads merge.
#[derive(Module, Debug)]
pub struct MultiHeadProjection {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    n_heads: usize,
}

impl MultiHeadProjection {
    /// Runs `core` on the projected heads of `input.x`; the carried state passes through.
    pub fn mix(&self, input: MixerInput, core: &impl AttentionCore) -> MixerOutput {
        let MixerInput { x, pad_mask, carry } = input;
        let [q, k, v] = self.project(x);
        let context = core.attend(q, k, v, pad_mask); // [b, h, n, dh]
        MixerOutput {
            x: self.output.forward_folded(merge_heads(context)),
            carry,
        }
    }

    /// Per-head Q, K, V `[b, h, n, qkv_dim / h]` of token states `[b, n, d]`.
    pub fn project(&self, x: Tensor<3>) -> [Tensor<4>; 3] {
        [
            split_heads(self.query.forward_folded(x.clone()), self.n_heads),
            split_heads(self.key.forward_folded(x.clone()), self.n_heads),
            split_heads(self.value.forward_folded(x), self.n_heads),
        ]
    }
}

/// `[b, n, d]` → `[b, h, n, d / h]`, for mixers that project without [`MultiHeadProjection`].
pub fn split_heads(x: Tensor<3>, n_heads: usize) -> Tensor<4> {
    let [batch, seq, d_model] = x.dims();
    x.reshape([batch, seq, n_heads, d_model / n_heads])
        .swap_dims(1, 2)
}

/// `[b, h, n, dh]` → `[b, n, h·dh]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [batch, heads, seq, head_dim] = x.dims();
    x.swap_dims(1, 2).reshape([batch, seq, heads * head_dim])
}
