//! Linear Transformer attention ([Transformers are RNNs: Fast Autoregressive Transformers with
//! Linear Attention](https://arxiv.org/abs/2006.16236), Katharopoulos, Vyas, Pappas and Fleuret,
//! ICML 2020), the LRA "Linear Transformer" baseline, non-causal form.
//!
//! The softmax similarity `exp(q·k/√d)` is replaced by the kernel `φ(q)·φ(k)` with the feature map
//! `φ(x) = elu(x) + 1` (positive, applied elementwise, so the feature width is the head width
//! `d`). Associativity then gives every query its output from two sums over the keys:
//!
//! ```text
//! out_i = φ(q_i)ᵀ S / (φ(q_i)ᵀ z + eps),   S = Σ_j φ(k_j) v_jᵀ  [d, d],   z = Σ_j φ(k_j)  [d]
//! ```
//!
//! Padded keys get `φ(k_j) = 0`, so they are in neither sum. There is no `1/√d` scaling (the paper
//! and the official code apply none).
//!
//! Checked against the official code, idiap/fast-transformers
//! `fast_transformers/attention/linear_attention.py` (commit 2aa1368): `elu_feature_map`
//! (`elu(x) + 1`), key features multiplied by the key-length mask, `KV = einsum(K, V)`,
//! `Z = 1 / (Q·ΣK + eps)` with `eps = 1e-6`, output `Q·KV·Z`.
//!
//! Complexity: O(n·d²) time and O(n·d + d²) memory per head; no `[n, n]` matrix.
//!
//! The LRA JAX code (`lra_benchmarks/models/linear_transformer/linear_attention.py`) computes the
//! same formula with the same `eps` but applies no padding mask (padded keys enter both sums);
//! padded keys are excluded here, as fast-transformers does.
//!
//! The PyTorch-LRA code (mlpen/Nystromformer `LRA/code/attention_linear.py`) computes an
//! unnormalised form, `φ(Q)(φ(K)ᵀV)/√n` with `n` the padded length; `normalize = false` selects
//! it for reproductions of tables built with that code.
//!
//! Deviations: none in the attention itself. The Q/K/V/output projections are the shared
//! [`MultiHeadProjection`](super::MultiHeadProjection) (with biases), as for every mixer here. There is no attention dropout:
//! the method never forms attention probabilities (fast-transformers' `LinearAttention` has none
//! either). The causal (prefix-sum) form is not implemented: LRA encoders are bidirectional.

use burn::module::Module;
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::feature_maps::{
    elu_feature_map, kernel_attention, kernel_sums, real_key_weights,
};
use super::{Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig};

/// Settings of [`LinearAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearConfig {
    /// Added to the normaliser `φ(q_i)ᵀ z` before dividing (the paper's ε). Default: 1e-6
    /// (fast-transformers `LinearAttention(eps=1e-6)`).
    pub eps: f64,
    /// Divide by the kernel sum `φ(q_i)ᵀ z` (the method paper, fast-transformers, the LRA JAX
    /// code). `false` computes the unnormalised `φ(Q) (φ(K)ᵀ V) / √n` of the PyTorch-LRA code
    /// (mlpen/Nystromformer `LRA/code/attention_linear.py`: `φ(Q)` and `φ(K)` each divided by
    /// `Q.size(2)^{1/4}`, the padded sequence length `n`; padded keys and values zeroed; no
    /// `eps`). Default: true.
    pub normalize: bool,
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self {
            eps: 1e-6,
            normalize: true,
        }
    }
}

impl MixerSpec for LinearConfig {
    type Mixer = LinearAttention;
    const SUMMARY: &'static str =
        "Linear Transformer: kernel attention with φ(x) = elu(x) + 1, O(n·d²) (LRA baseline)";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(format!(
                "eps must be finite and non-negative, got {}",
                self.eps
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> LinearAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        let core = LinearCore {
            eps: self.eps,
            normalize: self.normalize,
        };
        Attention::new(projection, core)
    }
}

/// Multi-head linear attention with the `elu + 1` feature map.
pub type LinearAttention = Attention<LinearCore>;

/// The attention core of [`LinearAttention`].
#[derive(Module, Debug)]
pub struct LinearCore {
    eps: f64,
    normalize: bool,
}

impl AttentionCore for LinearCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let phi_q = elu_feature_map(q);
        let phi_k = elu_feature_map(k);
        let phi_k = match pad_mask {
            Some(mask) => phi_k * real_key_weights(mask),
            None => phi_k,
        };
        if self.normalize {
            return kernel_attention(phi_q, phi_k, v, self.eps);
        }
        // Padded keys have zero features, so their values never enter `φ(K)ᵀV` (the official
        // code's extra `V · mask` changes nothing).
        let [.., seq, _] = phi_q.dims();
        let (numerator, _) = kernel_sums(phi_q, phi_k, v);
        numerator / (seq as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::testing::{
        OfficialFixture, gaussian as normal, pad_mask, padded_from,
    };

    fn linear(device: &Device) -> LinearAttention {
        let dims = MixerDims::new(16, 2, 64);
        LinearConfig::default().init(&dims, device)
    }

    #[test]
    fn feature_map_is_elu_plus_one() {
        let device = Device::flex();
        let x = Tensor::<1>::from_floats([-3.0, -0.5, 0.0, 0.25, 2.0], &device);
        let expected = [(-3f32).exp(), (-0.5f32).exp(), 1.0, 1.25, 3.0];
        elu_feature_map(x)
            .to_data()
            .assert_approx_eq::<f32>(&TensorData::from(expected), Tolerance::absolute(1e-6));
    }

    /// The O(n·d²) evaluation equals the explicit quadratic formula: `A = φ(Q)φ(K)ᵀ` with the
    /// padded key columns zeroed, rows divided by their sum (+ eps), times `V`.
    #[test]
    fn equals_the_explicit_quadratic_formula_with_masked_columns() {
        let device = Device::flex();
        let (seq, real) = (37, 23);
        let shape = [2, 2, seq, 8];
        let (q, k, v) = (
            normal(&device, 1, shape),
            normal(&device, 2, shape),
            normal(&device, 3, shape),
        );
        let mask = pad_mask(&device, seq, real);
        let actual = linear(&device)
            .core
            .attend(q.clone(), k.clone(), v.clone(), Some(mask));

        let mut column_weight = vec![1f32; 2 * seq];
        column_weight[seq + real..].fill(0.0);
        let column_weight =
            Tensor::<4>::from_data(TensorData::new(column_weight, [2, 1, 1, seq]), &device);
        let scores = elu_feature_map(q).matmul(elu_feature_map(k).swap_dims(2, 3)) * column_weight; // [b, h, n, n]
        let weights = scores.clone() / (scores.sum_dim(3) + 1e-6);
        let expected = weights.matmul(v);
        actual
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
    }

    /// Padded keys and values have no influence: changing them to large garbage leaves every
    /// output (real and padded queries alike) unchanged, and the padded row equals the same
    /// sequence cut to its real length.
    #[test]
    fn padded_keys_and_values_contribute_nothing() {
        let device = Device::flex();
        let (seq, real) = (40, 17);
        let shape = [2, 2, seq, 8];
        let (q, k, v) = (
            normal(&device, 4, shape),
            normal(&device, 5, shape),
            normal(&device, 6, shape),
        );
        let mask = pad_mask(&device, seq, real);
        let attention = linear(&device);
        let out = attention
            .core
            .attend(q.clone(), k.clone(), v.clone(), Some(mask.clone()));

        let pad4 = mask.clone().reshape([2, 1, seq, 1]).expand(shape);
        let garbage = normal(&device, 7, shape) * 100.0;
        let k2 = k.clone().mask_where(pad4.clone(), garbage.clone());
        let v2 = v.clone().mask_where(pad4, garbage * 3.0);
        let out2 = attention.core.attend(q.clone(), k2, v2, Some(mask));
        out.to_data()
            .assert_approx_eq::<f32>(&out2.to_data(), Tolerance::absolute(1e-6));

        let cut = |x: Tensor<4>| x.narrow(0, 1, 1).narrow(2, 0, real);
        let alone = attention.core.attend(cut(q), cut(k), cut(v), None);
        out.narrow(0, 1, 1)
            .narrow(2, 0, real)
            .to_data()
            .assert_approx_eq::<f32>(&alone.to_data(), Tolerance::absolute(1e-5));
    }

    /// The PyTorch-LRA form on a hand-computed case: `d = 1`, `q = k = [0, 1, 2]` so that
    /// `φ = [1, 2, 3]`, `v = [1, 2, 3]`: `out_i = φ(q_i) Σ_j φ(k_j) v_j / √3 = φ(q_i)·14/√3`;
    /// with the last token padded the sum runs over the first two keys, `1 + 4 = 5`.
    #[test]
    fn unnormalised_form_is_the_pytorch_lra_computation() {
        let device = Device::flex();
        let dims = MixerDims::new(1, 1, 3);
        let config = LinearConfig {
            normalize: false,
            ..LinearConfig::default()
        };
        let core = config.init(&dims, &device).core;
        let qk = Tensor::<4>::from_floats([[[[0.0], [1.0], [2.0]]]], &device);
        let v = Tensor::<4>::from_floats([[[[1.0], [2.0], [3.0]]]], &device);
        let root3 = 3f32.sqrt();
        let out = core.attend(qk.clone(), qk.clone(), v.clone(), None);
        let expected = TensorData::from([[[[14.0 / root3], [28.0 / root3], [42.0 / root3]]]]);
        out.to_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
        let padded = padded_from(&[2], 3, &device); // [1, 3]: last token padded
        let out = core.attend(qk.clone(), qk, v, Some(padded));
        let expected = TensorData::from([[[[5.0 / root3], [10.0 / root3], [15.0 / root3]]]]);
        out.to_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
    }

    /// `normalize = false` equals mlpen's `LinearAttention` run on the same padded inputs
    /// (`LRA/code/attention_linear.py` @56893131, outputs made by
    /// `scripts/make_fidelity_fixtures.py`).
    #[test]
    fn unnormalised_form_equals_the_official_module() {
        let fixture = OfficialFixture::parse(include_str!("fixtures/linear_official.json"));
        let device = Device::flex();
        let [_, heads, seq, head_dim] = fixture.shape;
        let dims = MixerDims::new(heads * head_dim, heads, seq);
        let config = LinearConfig {
            normalize: false,
            ..LinearConfig::default()
        };
        let (q, k, v, mask) = fixture.inputs(&device);
        let out = config.init(&dims, &device).core.attend(q, k, v, Some(mask));
        out.to_data()
            .assert_approx_eq::<f32>(&fixture.expected(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn validate_rejects_negative_eps() {
        let dims = MixerDims::new(16, 2, 64);
        let negative = LinearConfig {
            eps: -1.0,
            ..LinearConfig::default()
        };
        let error = negative.validate(&dims).unwrap_err();
        assert!(error.contains("eps"), "{error}");
        assert!(LinearConfig::default().validate(&dims).is_ok());
    }
}
