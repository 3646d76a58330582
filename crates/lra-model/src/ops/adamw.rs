//! AdamW's update of one parameter as a single pass on the embedded CPU backend. Burn's AdamW
//! composes it from about fifteen tensor operations, each writing a fresh parameter-sized tensor
//! (for BERT-base, 15 × 440 MB of new pages every step); here the parameter and both moments
//! are updated in place, element by element, with the same arithmetic in the same order (so the
//! same values). Other backends compose Burn's operations as Burn does.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::buffers::{f32_slice, owned_contiguous};
use super::simd::widest_simd;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// The scalars of one update, as Burn's `AdamW` holds and derives them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// Updates so far, this one included (1 on the first): the bias corrections' exponent.
    pub time: usize,
}

impl AdamWStep {
    /// The per-element constants, in f32 as Burn's scalar operations apply them.
    fn constants(&self) -> Constants {
        let time = self.time as i32;
        let decay_rate = self.lr * f64::from(self.weight_decay);
        Constants {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            factor_1: 1.0 - self.beta_1,
            factor_2: 1.0 - self.beta_2,
            correction_1: 1.0 - self.beta_1.powi(time),
            correction_2: 1.0 - self.beta_2.powi(time),
            epsilon: self.epsilon,
            keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: self.lr as f32,
        }
    }
}

#[derive(Clone, Copy)]
struct Constants {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    /// `1 − lr·weight_decay`, when there is decay.
    keep: Option<f32>,
    lr: f32,
}

/// Whether [`adamw_update`] runs the fused kernel for tensors on `device`.
pub fn is_supported(device: &Device) -> bool {
    *device == Device::flex()
}

/// One AdamW update of `param` with gradient `grad` and the moments before it (zeros on the
/// first update): `(param, first moment, second moment)` after it.
///
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `p ← p·(1 − lr·λ) − lr·(m/c₁) / (√(v/c₂) + ε)`
/// with `cᵢ = 1 − βᵢᵗ`: Burn's `AdamW` (without AMSGrad or cautious decay), in its order.
///
/// # Panics
/// On devices for which [`is_supported`] is false, or if the shapes differ.
pub fn adamw_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamWStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (param, moment_1, moment_2) = Dispatch::fused_adamw(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (
        Tensor::from_dispatch(param),
        Tensor::from_dispatch(moment_1),
        Tensor::from_dispatch(moment_2),
    )
}

/// The dispatched operation.
#[backend_extension(Flex)]
pub trait AdamWOps: Backend {
    /// See [`adamw_update`].
    fn fused_adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl AdamWOps for Flex {
    fn fused_adamw(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        step: AdamWStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let shape = param.layout().shape().clone();
        for (name, tensor) in [
            ("grad", &grad),
            ("moment_1", &moment_1),
            ("moment_2", &moment_2),
        ] {
            assert_eq!(
                tensor.layout().shape(),
                &shape,
                "AdamW: {name} does not have the parameter's shape"
            );
        }
        let grad = grad.to_contiguous();
        let (mut param, mut moment_1, mut moment_2) = (
            owned_contiguous(param),
            owned_contiguous(moment_1),
            owned_contiguous(moment_2),
        );
        let constants = step.constants();
        param
            .storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .zip(moment_1.storage_mut::<f32>().par_chunks_mut(CHUNK))
            .zip(moment_2.storage_mut::<f32>().par_chunks_mut(CHUNK))
            .zip(f32_slice(&grad).par_chunks(CHUNK))
            .for_each(|(((param, m), v), g)| update_chunk(param, m, v, g, &constants));
        (param, moment_1, moment_2)
    }
}

widest_simd! {
    /// One chunk of the update, in place.
    fn update_chunk(
        param: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
        c: &Constants,
    ) => update_values
}

#[inline(always)]
fn update_values(param: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: &Constants) {
    let elements = param.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g);
    for (((p, m), v), &g) in elements {
        *m = *m * c.beta_1 + g * c.factor_1;
        *v = *v * c.beta_2 + g * g * c.factor_2;
        let delta = (*m / c.correction_1) / ((*v / c.correction_2).sqrt() + c.epsilon);
        let decayed = match c.keep {
            Some(keep) => *p * keep,
            None => *p,
        };
        *p = decayed - delta * c.lr;
    }
}

#[cfg(test)]
mod tests {
    use burn::optim::{AdamWConfig, Optimizer};
    use burn::tensor::Distribution;

    use super::*;

    /// Three updates of Burn's `AdamW` and of the fused op, from the same parameter and the same
    /// gradients (with and without weight decay): the same parameters and moments, bit for bit.
    #[test]
    fn three_updates_equal_burns_adamw() {
        let device = Device::flex();
        device.seed(5);
        for weight_decay in [0.0f32, 0.05] {
            let config = AdamWConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.98)
                .with_epsilon(1e-6)
                .with_weight_decay(weight_decay);
            let burn = config.build();
            let start = Tensor::<2>::random([37, 300], Distribution::Normal(0.0, 1.0), &device);
            let (mut expected, mut state) = (start.clone(), None);
            let mut fused = start;
            let mut moments = (
                Tensor::<2>::zeros([37, 300], &device),
                Tensor::<2>::zeros([37, 300], &device),
            );
            for time in 1..=3 {
                let grad = Tensor::<2>::random([37, 300], Distribution::Normal(0.0, 0.1), &device);
                let lr = 1e-3 * time as f64;
                (expected, state) = burn.step(lr, expected, grad.clone(), state);
                let step = AdamWStep {
                    lr,
                    beta_1: 0.9,
                    beta_2: 0.98,
                    epsilon: 1e-6,
                    weight_decay,
                    time,
                };
                let (param, m, v) = adamw_update(fused, grad, moments.0, moments.1, step);
                fused = param;
                moments = (m, v);
                let burn_state = state.as_ref().unwrap();
                assert_eq!(
                    fused.to_data(),
                    expected.to_data(),
                    "parameter, update {time}"
                );
                let burn_moments = [&burn_state.momentum.moment_1, &burn_state.momentum.moment_2];
                for (ours, burns) in [&moments.0, &moments.1].into_iter().zip(burn_moments) {
                    assert_eq!(ours.to_data(), burns.to_data(), "moment, update {time}");
                }
            }
        }
    }
}
