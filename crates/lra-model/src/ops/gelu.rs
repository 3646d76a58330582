//! The exact (erf) GELU, `x·Φ(x)`, as one operation with a handwritten backward for the embedded
//! CPU backend. Burn's CPU GELU calls libm's `erff` per element (scalar code, 6 % of a BERT
//! fine-tuning step) and its backward is a chain of recorded elementwise ops; here Φ comes from a
//! branch-free erfc that vectorises, and the backward `Φ(x) + x·φ(x)` is one pass. Other backends
//! use Burn's `activation::gelu`.

use std::f32::consts::FRAC_1_SQRT_2;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Tensor, TensorData, activation};
use rayon::prelude::*;

use super::buffers::{f32_slice, owned_contiguous};
use super::fast_exp;
use super::simd::widest_simd;

/// Elements per parallel task: large enough that a task outweighs its scheduling.
const CHUNK: usize = 1 << 14;

/// `1 / √(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Whether [`gelu`] runs the fused kernel for tensors on `device`.
pub fn is_supported(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// `x·Φ(x)` with Φ the standard normal CDF (BERT's `gelu`, PyTorch's `approximate="none"`): the
/// fused kernel where [`is_supported`], Burn's `activation::gelu` elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !is_supported(&x.device()) {
        return activation::gelu(x);
    }
    Tensor::from_dispatch(Dispatch::fused_gelu(x.into_dispatch()))
}

/// The dispatched operation (routes to the Flex kernel, or to its autodiff wrapper).
#[backend_extension(Flex, Autodiff)]
pub trait GeluOps: Backend {
    /// See [`gelu`].
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Forward and backward kernels of the inner backend.
pub trait GeluKernels: Backend {
    /// `x·Φ(x)` into a new tensor (`x` is left as it is, for the backward).
    fn forward(x: &FloatTensor<Self>) -> FloatTensor<Self>;

    /// `grad ⊙ (Φ(x) + x·φ(x))`.
    fn backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl GeluOps for Flex {
    fn fused_gelu(x: FlexTensor) -> FlexTensor {
        let mut out = owned_contiguous(x);
        out.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .for_each(forward_in_place);
        out
    }
}

impl GeluKernels for Flex {
    fn forward(x: &FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        let mut out = f32_slice(&x).to_vec();
        out.par_chunks_mut(CHUNK).for_each(forward_in_place);
        FlexTensor::from_data(TensorData::new(out, x.layout().shape().clone()))
    }

    fn backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        let mut grad = owned_contiguous(grad);
        grad.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .zip(f32_slice(&x).par_chunks(CHUNK))
            .for_each(|(grad, x)| backward_in_place(x, grad));
        grad
    }
}

impl<B: GeluOps + GeluKernels, C: CheckpointStrategy> GeluOps for Autodiff<B, C> {
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluBackward;

        impl<B: GeluKernels> Backward<B, 1> for GeluBackward {
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [parent] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                if let Some(parent) = parent {
                    grads.register::<B>(parent.id, B::backward(ops.state, grad));
                }
            }
        }

        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let out = B::forward(&x);
                prep.finish(x, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_gelu(x.into_primitive())),
        }
    }
}

widest_simd! {
    /// `values[i] = GELU(values[i])`.
    fn forward_in_place(values: &mut [f32]) => gelu_values
}

widest_simd! {
    /// `grad[i] *= GELU'(x[i])`.
    fn backward_in_place(x: &[f32], grad: &mut [f32]) => gelu_derivatives
}

#[inline(always)]
fn gelu_values(values: &mut [f32]) {
    for value in values {
        *value *= normal_cdf(*value);
    }
}

#[inline(always)]
fn gelu_derivatives(x: &[f32], grad: &mut [f32]) {
    for (grad, &x) in grad.iter_mut().zip(x) {
        let pdf = FRAC_1_SQRT_2PI * fast_exp::exp(-0.5 * x * x);
        *grad *= normal_cdf(x) + x * pdf;
    }
}

/// Φ(x) from `erfc(z) ≈ t·exp(−z² + P(t))`, `t = 1 / (1 + z/2)`, `z = |x|/√2` (Numerical
/// Recipes' `erfcc`, relative error below 1.2e-7 for every z ≥ 0): Φ(−|x|) = erfc(z)/2 keeps its
/// relative accuracy into the lower tail (1e-5 down to x = −7, where Φ ≈ 1e-12, limited by z² in
/// f32), where `(1 + erf)/2` would round to 0. The absolute error stays below 2e-7.
#[inline(always)]
fn normal_cdf(x: f32) -> f32 {
    let z = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = 0.170_872_77;
    let p = p * t - 0.822_152_23;
    let p = p * t + 1.488_515_9;
    let p = p * t - 1.135_204;
    let p = p * t + 0.278_868_07;
    let p = p * t - 0.186_288_06;
    let p = p * t + 0.096_784_18;
    let p = p * t + 0.374_091_96;
    let p = p * t + 1.000_023_7;
    let p = p * t - 1.265_512_2;
    let lower_tail = 0.5 * t * fast_exp::exp(p - z * z);
    if x < 0.0 {
        lower_tail
    } else {
        1.0 - lower_tail
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::mixer::common::testing::device_with_kernel;

    /// Φ(x) = erfc(−x/√2)/2 in f64.
    fn exact_cdf(x: f64) -> f64 {
        0.5 * erfc(-x / std::f64::consts::SQRT_2)
    }

    /// erfc in f64: the Taylor series of erf below 3, Lentz's continued fraction above (std has
    /// no erf).
    fn erfc(z: f64) -> f64 {
        if z < 0.0 {
            return 2.0 - erfc(-z);
        }
        if z < 3.0 {
            // erf series: 2/√π Σ (−1)ⁿ z^(2n+1) / (n! (2n+1))
            let (mut term, mut sum, mut n) = (z, z, 0.0);
            while term.abs() > 1e-18 {
                n += 1.0;
                term *= -z * z / n;
                sum += term / (2.0 * n + 1.0);
            }
            1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum
        } else {
            // Lentz's continued fraction for erfc.
            let mut fraction = 0.0;
            for k in (1..=60).rev() {
                fraction = (k as f64 / 2.0) / (z + fraction);
            }
            (-z * z).exp() / std::f64::consts::PI.sqrt() / (z + fraction)
        }
    }

    #[test]
    fn cdf_is_accurate_to_single_precision_and_relatively_so_in_the_lower_tail() {
        let mut worst_absolute = 0f64;
        let mut worst_tail = 0f64;
        for i in 0..=200_000 {
            let x = -12.0 + 24.0 * f64::from(i) / 200_000.0;
            let (fast, exact) = (
                f64::from(normal_cdf(x as f32)),
                exact_cdf(f64::from(x as f32)),
            );
            worst_absolute = worst_absolute.max((fast - exact).abs());
            if (-7.0..-0.5).contains(&x) {
                worst_tail = worst_tail.max(((fast - exact) / exact).abs());
            }
        }
        assert!(
            worst_absolute < 2e-7,
            "worst absolute error {worst_absolute:e}"
        );
        assert!(
            worst_tail < 1e-5,
            "worst relative error on [−7, −0.5): {worst_tail:e}"
        );
    }

    #[test]
    fn edges_follow_the_limits() {
        assert_eq!(normal_cdf(f32::INFINITY), 1.0);
        assert_eq!(normal_cdf(-100.0), 0.0);
        assert!(normal_cdf(f32::NAN).is_nan());
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
    }

    /// Output and gradient equal Burn's composed GELU (libm's erf and autodiff's derivative) on a
    /// tensor that spans several parallel chunks, including its widest SIMD path.
    #[test]
    fn output_and_gradient_equal_burns_gelu() {
        let Some(device) = device_with_kernel(is_supported, "gelu") else {
            return;
        };
        let device = device.autodiff();
        device.seed(11);
        let x = Tensor::<3>::random([3, 70, 101], Distribution::Normal(0.0, 3.0), &device)
            .require_grad();
        let upstream = Tensor::<3>::random([3, 70, 101], Distribution::Normal(0.0, 1.0), &device);
        let fused = gelu(x.clone());
        let reference = activation::gelu(x.clone());
        let tol = Tolerance::absolute(2e-6);
        fused
            .to_data()
            .assert_approx_eq::<f32>(&reference.to_data(), tol);
        let fused_grad = x
            .grad(&(fused * upstream.clone()).sum().backward())
            .unwrap();
        let reference_grad = x.grad(&(reference * upstream).sum().backward()).unwrap();
        fused_grad
            .to_data()
            .assert_approx_eq::<f32>(&reference_grad.to_data(), tol);
    }
}
