//! AdamW whose update runs as one fused pass per parameter on the CPU
//! ([`lra_model::ops::adamw`]) and as Burn's `AdamW` elsewhere: the same arithmetic, the same
//! state type (so checkpoints of either load into the other), a fraction of the memory traffic.

use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, Optimizer};
use burn::tensor::{Device, Tensor};
use lra_model::ops::adamw::{AdamWStep, adamw_update, is_supported};

/// See the module documentation.
#[derive(Clone)]
pub struct FusedAdamW {
    beta_1: f32,
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
            beta_2,
            epsilon,
            weight_decay,
            composed,
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
            beta_1: self.beta_1,
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
