//! Token ids read as numbers instead of looked up in an embedding table: `(id − center)/scale`
//! through `Linear(1, d_model)`. The LRA S4 models take image pixels so (state-spaces/s4
//! `encoder: linear` with `d_input = 1`, `src/tasks/encoders.py:418`): CIFAR grayscale
//! normalised by `Normalize(122.6/255, 61.0/255)` after `ToTensor()` (`src/dataloaders/basic.py:97-118`),
//! Pathfinder and Path-X as `ToTensor()`'s `p/255` (`src/dataloaders/lra.py:442`, `center: False`).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::folded_linear::FoldedLinear;

/// `model.input_values`: how an id becomes the number the linear layer sees.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputValues {
    /// Subtracted from the id.
    pub center: f64,
    /// The difference is divided by it.
    pub scale: f64,
}

impl InputValues {
    /// A finite centre and a finite, non-zero scale.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.center.is_finite() || !self.scale.is_finite() || self.scale == 0.0 {
            return Err(ConfigError::Inconsistent(format!(
                "model.input_values = {{ center = {}, scale = {} }}: expected a finite center \
                 and a finite, non-zero scale",
                self.center, self.scale
            )));
        }
        Ok(())
    }

    /// The layer, drawn as PyTorch's `nn.Linear(1, d)`: weight and bias uniform in ±1.
    pub fn init(self, d_model: usize, device: &Device) -> ValueInput {
        ValueInput {
            linear: LinearConfig::new(1, d_model).init(device),
            center: self.center,
            scale: self.scale,
        }
    }
}

/// `Linear(1, d)` on `(id − center)/scale`.
#[derive(Module, Debug)]
pub struct ValueInput {
    linear: Linear,
    center: f64,
    scale: f64,
}

impl ValueInput {
    /// `[batch, seq]` ids → `[batch, seq, d_model]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let values = (tokens.float() - self.center) / self.scale;
        self.linear.forward_folded(values.unsqueeze_dim::<3>(2))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{TensorData, Tolerance};

    use super::*;

    /// Each position's vector is `w·(id − center)/scale + b`, with `w` and `b` drawn in ±1.
    #[test]
    fn an_id_becomes_its_scaled_value_times_the_weight_plus_the_bias() {
        let device = Device::flex();
        device.seed(1);
        let input = InputValues {
            center: 122.6,
            scale: 61.0,
        }
        .init(4, &device);
        let weight = input.linear.weight.val(); // [1, 4]
        let bias = input.linear.bias.as_ref().expect("a bias").val();
        for values in [weight.clone(), bias.clone().unsqueeze()] {
            let bound = values.abs().max().into_scalar::<f32>();
            assert!(bound <= 1.0 && bound > 0.1, "uniform in ±1: {bound}");
        }
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 255, 122, 7], [2, 2]), &device);
        let out = input.forward(ids);
        let weight: Vec<f32> = weight.into_data().try_to_vec().unwrap();
        let bias: Vec<f32> = bias.into_data().try_to_vec().unwrap();
        let expected: Vec<f32> = [0.0f32, 255.0, 122.0, 7.0]
            .iter()
            .flat_map(|id| {
                let value = (id - 122.6) / 61.0;
                (0..4)
                    .map(|j| value * weight[j] + bias[j])
                    .collect::<Vec<_>>()
            })
            .collect();
        out.into_data().assert_approx_eq::<f32>(
            &TensorData::new(expected, [2, 2, 4]),
            Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn a_zero_scale_is_refused_by_name() {
        let error = InputValues {
            center: 0.0,
            scale: 0.0,
        }
        .validate()
        .unwrap_err();
        assert!(error.to_string().contains("model.input_values"), "{error}");
    }
}
