//! The encoder blocks' normalisation over `[batch, seq, d]` sequences: LayerNorm over each
//! position's features (the Transformer LRA models, BERT) or BatchNorm over batch × length per
//! feature (the LRA S4 models: state-spaces/s4 `norm: batch`, `nn.BatchNorm1d` on the sequence
//! transposed to `[batch, d, seq]`, `src/models/nn/normalization.py:31-59`). Both keep γ and β
//! under the names `gamma` and `beta`, so a LayerNorm model's checkpoint paths are unchanged.

use burn::module::{Module, Param, RunningState};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor, module};
use serde::{Deserialize, Serialize};

use crate::layer_norm;

/// Which statistics a [`SequenceNorm`] normalises with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Each position over its features.
    #[default]
    Layer,
    /// Each feature over the batch and every position, padding included (as `BatchNorm1d`
    /// sees it); running averages (momentum 0.1) replace the batch's statistics in evaluation.
    Batch,
}

impl Normalization {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// PyTorch's `BatchNorm1d` default momentum of the running statistics.
const BATCH_MOMENTUM: f64 = 0.1;

/// `(x − mean)/√(var + ε) · γ + β` with the statistics of [`Normalization`].
#[derive(Module, Debug)]
pub struct SequenceNorm {
    /// Scale γ `[d]`, initialised to ones.
    pub gamma: Param<Tensor<1>>,
    /// Shift β `[d]`, initialised to zeros.
    pub beta: Param<Tensor<1>>,
    /// BatchNorm's running statistics; none for LayerNorm.
    running: Option<RunningStatistics>,
    epsilon: f64,
}

/// Per-feature running mean and (population) variance `[d]`.
#[derive(Module, Debug)]
struct RunningStatistics {
    mean: RunningState<Tensor<1>>,
    variance: RunningState<Tensor<1>>,
}

impl SequenceNorm {
    /// γ = 1, β = 0 over `width` features (and running mean 0, variance 1 for BatchNorm).
    pub fn new(kind: Normalization, width: usize, epsilon: f64, device: &Device) -> Self {
        let running = (kind == Normalization::Batch).then(|| RunningStatistics {
            mean: RunningState::new(Tensor::zeros([width], device)),
            variance: RunningState::new(Tensor::ones([width], device)),
        });
        Self {
            gamma: Initializer::Ones.init([width], device),
            beta: Initializer::Zeros.init([width], device),
            running,
            epsilon,
        }
    }

    /// Normalises `x` `[batch, seq, d]`. BatchNorm uses the batch's statistics (and updates the
    /// running ones) when `x` is on an autodiff device, i.e. in training, and the running ones
    /// otherwise.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (gamma, beta) = (self.gamma.val(), self.beta.val());
        let Some(running) = &self.running else {
            return layer_norm::normalize(x, gamma, beta, self.epsilon);
        };
        let channels_first = x.swap_dims(1, 2); // [b, d, n]
        let normalized = if channels_first.device().is_autodiff() {
            let batch = module::batch_norm_train(channels_first, gamma, beta, self.epsilon);
            running.absorb(batch.mean.detach(), batch.variance.detach());
            batch.output
        } else {
            module::batch_norm(
                channels_first,
                gamma,
                beta,
                running.mean.value(),
                running.variance.value(),
                self.epsilon,
            )
        };
        normalized.swap_dims(1, 2)
    }
}

impl RunningStatistics {
    /// `running ← (1 − momentum)·running + momentum·batch`, as `BatchNorm1d`.
    fn absorb(&self, mean: Tensor<1>, variance: Tensor<1>) {
        let blend = |state: &RunningState<Tensor<1>>, batch: Tensor<1>| {
            let updated = state.value_sync() * (1.0 - BATCH_MOMENTUM) + batch * BATCH_MOMENTUM;
            state.update(updated.detach());
            // Merged now, not at the next update: a checkpoint reads the merged value.
            state.value_sync();
        };
        blend(&self.mean, mean);
        blend(&self.variance, variance);
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;

    fn input(device: &Device) -> Tensor<3> {
        device.seed(4);
        Tensor::random([3, 7, 5], Distribution::Normal(2.0, 3.0), device)
    }

    /// Training: each feature has mean β and std γ over batch × length; the running statistics
    /// move a tenth of the way to the batch's (population variance) and are merged at once (what
    /// a checkpoint reads); evaluation then normalises with those running values.
    #[test]
    fn batch_norm_normalises_each_feature_over_batch_and_length() {
        let device = Device::flex().autodiff();
        let mut norm = SequenceNorm::new(Normalization::Batch, 5, 1e-5, &device);
        norm.gamma = Param::from_tensor(Tensor::from_floats([1.0, 2.0, 0.5, 1.0, 3.0], &device));
        norm.beta = Param::from_tensor(Tensor::from_floats([0.0, 1.0, -1.0, 4.0, 0.0], &device));
        let x = input(&device);
        let out = norm.forward(x.clone());
        let flat = out.swap_dims(0, 2).reshape([5, 21]); // [feature, batch × length]
        flat.clone()
            .mean_dim(1)
            .reshape([5])
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([0.0f32, 1.0, -1.0, 4.0, 0.0]),
                Tolerance::absolute(1e-5),
            );
        let (variance, _) = flat.var_mean_bias(1);
        variance
            .reshape([5])
            .sqrt()
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([1.0f32, 2.0, 0.5, 1.0, 3.0]),
                Tolerance::absolute(1e-3),
            );

        let columns = x.swap_dims(0, 2).reshape([5, 21]);
        let (batch_var, batch_mean) = columns.var_mean_bias(1);
        let running = norm.running.as_ref().expect("batch norm keeps statistics");
        let expected_mean = batch_mean.reshape([5]) * 0.1;
        let expected_var = batch_var.reshape([5]) * 0.1 + 0.9;
        running
            .mean
            .value_sync()
            .into_data()
            .assert_approx_eq::<f32>(
                &expected_mean.clone().into_data(),
                Tolerance::absolute(1e-5),
            );
        running
            .variance
            .value_sync()
            .into_data()
            .assert_approx_eq::<f32>(&expected_var.clone().into_data(), Tolerance::absolute(1e-4));

        let eval = norm.valid();
        let probe = input(&device.clone().inner());
        let expected = (probe.clone() - expected_mean.inner().reshape([1, 1, 5]))
            / (expected_var.inner().reshape([1, 1, 5]) + 1e-5).sqrt()
            * eval.gamma.val().reshape([1, 1, 5])
            + eval.beta.val().reshape([1, 1, 5]);
        eval.forward(probe)
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-4));
    }

    /// LayerNorm mode is the crate's LayerNorm.
    #[test]
    fn layer_mode_is_the_layer_norm() {
        let device = Device::flex();
        let norm = SequenceNorm::new(Normalization::Layer, 5, 1e-5, &device);
        let layer = layer_norm::LayerNorm::new(5, 1e-5, &device);
        let x = input(&device);
        norm.forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&layer.forward(x).into_data(), Tolerance::absolute(1e-6));
    }
}
