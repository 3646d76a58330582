//! Q/K/V/output projections and the head split shared by all attention mixers (the xformers
//! `MultiHeadDispatch` idea): an attention variant only writes its [`AttentionCore`], and
//! [`Attention`](super::attention::Attention) puts these projections around it.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::folded_linear::FoldedLinear;
use crate::mixer::{AttentionCore, MixerDims, MixerInput, MixerOutput, PaddedQueries};

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
    /// What a padded query position gets.
    pub padded_queries: PaddedQueries,
}

impl MultiHeadProjectionConfig {
    /// Projections for the model sizes in `dims`.
    pub fn from_dims(dims: &MixerDims) -> Self {
        Self {
            d_model: dims.d_model,
            n_heads: dims.n_heads,
            qkv_dim: dims.qkv_dim,
            bias: dims.projection_bias,
            padded_queries: dims.padded_queries,
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
            padded_queries: self.padded_queries,
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
    #[module(skip)]
    padded_queries: PaddedQueries,
}

impl MultiHeadProjection {
    /// Runs `core` on the projected heads of `input.x`; the carried state passes through.
    pub fn mix(&self, input: MixerInput, core: &impl AttentionCore) -> MixerOutput {
        let MixerInput { x, pad_mask, carry } = input;
        let [q, k, v] = self.project(x);
        let uniform = (self.padded_queries == PaddedQueries::Uniform).then(|| v.clone());
        let context = core.attend(q, k, v, pad_mask.clone()); // [b, h, n, dh]
        let context = match (uniform, pad_mask) {
            (Some(v), Some(mask)) => {
                let dims = context.dims();
                let [batch, _, seq, _] = dims;
                let padded = mask.reshape([batch, 1, seq, 1]).expand(dims);
                context.mask_where(padded, v.mean_dim(2).expand(dims))
            }
            _ => context,
        };
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

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;
    use crate::mixer::common::testing::{gaussian, padded_from};
    use crate::mixer::{MixerKind, TokenMixer};

    /// `padded_queries = "uniform"`: a padded query's output is the output projection of the
    /// mean of every position's value (flax's uniform softmax row); real queries are unchanged.
    #[test]
    fn a_uniform_padded_query_gets_the_mean_of_all_values() {
        let device = Device::flex();
        let (seq, real) = (12, 7);
        let build = |padded_queries| {
            device.seed(3);
            let dims = MixerDims::new(8, 2, seq).with_padded_queries(padded_queries);
            crate::init::init_now(MixerKind::Softmax.default_config().init(&dims, &device))
        };
        let (attend, uniform) = (build(PaddedQueries::Attend), build(PaddedQueries::Uniform));
        let x = gaussian(&device, 4, [1, seq, 8]);
        let mask = padded_from(&[real], seq, &device);
        let run = |mixer: &crate::Mixer| {
            mixer
                .forward(MixerInput::new(x.clone()).pad_mask(mask.clone()))
                .x
        };
        let (a, u) = (run(&attend), run(&uniform));
        u.clone()
            .narrow(1, 0, real)
            .into_data()
            .assert_approx_eq::<f32>(&a.narrow(1, 0, real).into_data(), Tolerance::absolute(1e-6));
        let parts = uniform.attention().expect("softmax has projections");
        let [_, _, v] = parts.projection.project(x.clone());
        let mean = merge_heads(v.mean_dim(2)); // [1, 1, qkv]
        let expected = parts.projection.output.forward_folded(mean);
        for position in real..seq {
            u.clone()
                .narrow(1, position, 1)
                .into_data()
                .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn a_mixer_without_attention_core_refuses_uniform_padded_queries() {
        let dims = MixerDims::new(8, 2, 12).with_padded_queries(PaddedQueries::Uniform);
        let error = MixerKind::S4.default_config().validate(&dims).unwrap_err();
        assert!(
            error.to_string().contains("model.padded_queries"),
            "{error}"
        );
    }
}
