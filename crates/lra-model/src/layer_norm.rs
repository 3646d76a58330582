//! Layer normalisation over the last dimension with a learned scale γ and shift β: Burn's
//! `nn::LayerNorm` computation and parameter names (`gamma`, `beta`, so checkpoints and the
//! Hugging Face key map see the same paths), run through the fused CPU kernel
//! (`ops::layer_norm`) where the device has it and through Burn's `layer_norm` elsewhere.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor, module};

use crate::ops;

/// PyTorch's and Burn's default ε.
pub const DEFAULT_EPSILON: f64 = 1e-5;

/// `(x − mean)/√(var + ε) · γ + β` over the last dimension (population variance).
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// Scale γ `[d]`, initialised to ones.
    pub gamma: Param<Tensor<1>>,
    /// Shift β `[d]`, initialised to zeros.
    pub beta: Param<Tensor<1>>,
    epsilon: f64,
}

impl LayerNorm {
    /// γ = 1, β = 0 over `width` features.
    pub fn new(width: usize, epsilon: f64, device: &Device) -> Self {
        Self {
            gamma: Initializer::Ones.init([width], device),
            beta: Initializer::Zeros.init([width], device),
            epsilon,
        }
    }

    /// Normalises `x` `[..., d]` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        normalize(x, self.gamma.val(), self.beta.val(), self.epsilon)
    }
}

/// `x` `[..., d]` normalised over its last dimension, then scaled by γ and shifted by β.
pub fn normalize<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    if ops::layer_norm::is_supported(&x.device()) {
        ops::layer_norm::layer_norm(x, gamma, beta, epsilon)
    } else {
        module::layer_norm(x, gamma, Some(beta), epsilon)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    /// The same output as Burn's `LayerNorm` with the same parameters and ε.
    #[test]
    fn equals_burns_layer_norm() {
        let device = Device::flex();
        device.seed(2);
        let mut ours = LayerNorm::new(24, 1e-12, &device);
        let mut burns = LayerNormConfig::new(24).with_epsilon(1e-12).init(&device);
        let gamma = Tensor::<1>::random([24], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<1>::random([24], Distribution::Normal(0.0, 0.5), &device);
        ours.gamma = Param::from_tensor(gamma.clone());
        ours.beta = Param::from_tensor(beta.clone());
        burns.gamma = Param::from_tensor(gamma);
        burns.beta = Some(Param::from_tensor(beta));
        let x = Tensor::<3>::random([2, 5, 24], Distribution::Normal(1.0, 3.0), &device);
        ours.forward(x.clone())
            .to_data()
            .assert_approx_eq::<f32>(&burns.forward(x).to_data(), Tolerance::absolute(1e-5));
    }
}
