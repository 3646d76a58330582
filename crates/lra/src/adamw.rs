//! AdamW whose update runs as one fused pass per parameter on the CPU
//! ([`lra_model::ops::adamw`]) and as Burn's `AdamW` elsewhere: the same arithmetic, the same
//! state type (so checkpoints of either load into the other), a fraction of the memory traffic.

use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, Optimizer};
use burn::tensor::{Device, Tensor};
use lra_model::ops::adamw::{AdamWStep, adamw_update, is_supported};

use crate::config::TrainConfig;
use crate::schedule::one_cycle_beta1;

/// See the module documentation.
#[derive(Clone)]
pub struct FusedAdamW {
    beta_1: f32,
    /// `train.cycle_momentum`: β1 follows `OneCycleLR` for this training config instead.
    cycle: Option<Box<TrainConfig>>,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// Burn's AdamW with the same settings, for devices without the fused kernel.
    composed: AdamW,
}

impl FusedAdamW {
    /// AdamW with these settings (no AMSGrad, plain decoupled decay).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let composed = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        Self {
            beta_1,
            cycle: None,
            beta_2,
            epsilon,
            weight_decay,
            composed,
        }
    }

    /// β1 cycled as `OneCycleLR(cycle_momentum = True)` over `train`'s steps: update `t`
    /// (counted from 1 in each parameter's state) takes the scheduler's β1 at step `t − 1`, and
    /// its bias correction `1 − β1ᵗ` that β1, as PyTorch's Adam reads `betas` at each step. The
    /// CPU's fused update only: other devices keep Burn's fixed-β1 `AdamW`.
    pub fn with_cycled_momentum(self, train: &TrainConfig) -> Self {
        Self {
            cycle: Some(Box::new(train.clone())),
            ..self
        }
    }

    fn beta_1_at(&self, time: usize) -> f32 {
        match &self.cycle {
            Some(train) => one_cycle_beta1(train, time - 1) as f32,
            None => self.beta_1,
        }
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !is_supported(&tensor.device()) {
            return self.composed.step(lr, tensor, grad, state);
        }
        let (moment_1, moment_2, time) = match state {
            Some(state) => {
                let momentum = state.momentum;
                (momentum.moment_1, momentum.moment_2, momentum.time + 1)
            }
            None => (grad.zeros_like(), grad.zeros_like(), 1),
        };
        let step = AdamWStep {
            lr,
            beta_1: self.beta_1_at(time),
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time,
        };
        let (tensor, moment_1, moment_2) = adamw_update(tensor, grad, moment_1, moment_2, step);
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, ModuleOptimizer};
    use lra_model::folded_linear::FoldedLinear;

    use super::*;

    /// Three steps of a small layer under `optim`, the same data each time.
    fn trained(mut optim: ModuleOptimizer, device: &Device) -> Vec<f32> {
        device.seed(4);
        let mut layer: Linear = LinearConfig::new(6, 5).init(device);
        for step in 0..3 {
            let x = Tensor::<2>::random([4, 6], burn::tensor::Distribution::Default, device);
            let loss = layer
                .forward_folded(x)
                .powf_scalar(2.0)
                .sum()
                .mul_scalar(step as f32 + 1.0);
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optim.step(1e-2, layer, grads);
        }
        let mut values = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
        values.extend(
            layer
                .bias
                .unwrap()
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
        values
    }

    /// Through Burn's module optimiser, the fused AdamW trains a layer exactly as Burn's AdamW.
    #[test]
    fn the_fused_optimiser_trains_exactly_as_burns_adamw() {
        let device = Device::flex().autodiff();
        assert!(
            is_supported(&device.clone().inner()),
            "the layer's parameters reach the fused kernel, not Burn's AdamW"
        );
        let fused = ModuleOptimizer::from(FusedAdamW::new(0.9, 0.98, 1e-6, 0.01));
        let burn = AdamWConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.98)
            .with_epsilon(1e-6)
            .with_weight_decay(0.01)
            .init();
        let (ours, theirs) = (trained(fused, &device), trained(burn, &device));
        assert_eq!(ours, theirs);
    }

    /// `with_cycled_momentum`: update `t` is the fixed-β1 update with OneCycleLR's β1 at
    /// scheduler step `t − 1`, applied to the same state (its bias correction included).
    #[test]
    fn a_cycled_update_is_the_fixed_update_with_that_steps_beta1() {
        let device = Device::flex();
        let mut train = crate::config::load_preset("lra-pytorch/listops")
            .unwrap()
            .train;
        (train.steps, train.warmup_steps, train.cycle_momentum) = (20, 4, true);
        let cycled = FusedAdamW::new(0.9, 0.98, 1e-6, 0.01).with_cycled_momentum(&train);
        device.seed(7);
        let mut param = Tensor::<2>::random([3, 5], burn::tensor::Distribution::Default, &device);
        let mut state = None;
        for time in 1..=6 {
            let grad = Tensor::<2>::random([3, 5], burn::tensor::Distribution::Default, &device);
            let beta_1 = crate::schedule::one_cycle_beta1(&train, time - 1) as f32;
            let fixed = FusedAdamW::new(beta_1, 0.98, 1e-6, 0.01);
            let (expected, expected_state) =
                fixed.step(1e-2, param.clone(), grad.clone(), state.clone());
            let (got, got_state) = cycled.step(1e-2, param, grad, state);
            assert_eq!(got.to_data(), expected.to_data(), "update {time}");
            let moments =
                |s: &Option<AdamWState<2>>| s.as_ref().unwrap().momentum.moment_1.to_data();
            assert_eq!(
                moments(&got_state),
                moments(&expected_state),
                "update {time}"
            );
            (param, state) = (got, got_state);
        }
        assert!((crate::schedule::one_cycle_beta1(&train, 3) - 0.85).abs() < 1e-12);
    }
}
