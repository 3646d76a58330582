//! Layer normalisation over the last dimension, `(x − mean)/√(var + ε) · γ + β`, as one operation
//! with a handwritten backward for the embedded CPU backend. Burn's autodiff has no layer-norm
//! node: it records the decomposition (mean, subtract, square, mean, add, sqrt, divide, scale,
//! shift), each a full-size tensor forward and again backward. Here the forward is one pass per row
//! that keeps each row's mean and 1/σ, and the backward is
//! `dx = (g − mean(g) − x̂·mean(g·x̂)) / σ` with `g = dy ⊙ γ`, plus `dγ = Σ dy ⊙ x̂`, `dβ = Σ dy`
//! summed over fixed row blocks in a fixed order (the same on any thread count).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::buffers::{f32_slice, owned_contiguous, written_zeros};
use super::simd::widest_simd;

/// Elements per parallel task (whole rows): large enough that a task outweighs its scheduling.
const CHUNK: usize = 1 << 14;

/// Whether [`layer_norm`] has a fused kernel for tensors on `device`.
pub fn is_supported(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// `(x − mean)/√(var + epsilon) · gamma + beta` over the last dimension (population variance),
/// `gamma`, `beta`: `[d]` with `d` the last dimension of `x`.
///
/// # Panics
/// On devices for which [`is_supported`] is false.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::fused_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon as f32,
    ))
}

/// The dispatched operation (routes to the Flex kernel, or to its autodiff wrapper).
#[backend_extension(Flex, Autodiff)]
pub trait LayerNormOps: Backend {
    /// See [`layer_norm`].
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;
}

/// Forward and backward kernels of the inner backend.
pub trait LayerNormKernels: Backend {
    /// The output and each row's `[mean, 1/σ]` (`[rows, 2]`).
    fn forward(
        x: &FloatTensor<Self>,
        gamma: &FloatTensor<Self>,
        beta: &FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `(dx, dγ, dβ)` from the forward's input, `gamma`, row statistics and the output gradient.
    fn backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl LayerNormOps for Flex {
    fn fused_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
    ) -> FlexTensor {
        <Self as LayerNormKernels>::forward(&x, &gamma, &beta, epsilon).0
    }
}

impl LayerNormKernels for Flex {
    fn forward(
        x: &FlexTensor,
        gamma: &FlexTensor,
        beta: &FlexTensor,
        epsilon: f32,
    ) -> (FlexTensor, FlexTensor) {
        let (x, gamma, beta) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
        );
        let (gamma, beta) = (f32_slice(&gamma), f32_slice(&beta));
        let width = gamma.len();
        let x_values = f32_slice(&x);
        let rows = x_values.len() / width;
        let mut out = written_zeros(x_values.len());
        let mut stats = written_zeros(2 * rows);
        let block = rows_per_task(width);
        out.par_chunks_mut(block * width)
            .zip(x_values.par_chunks(block * width))
            .zip(stats.par_chunks_mut(block * 2))
            .for_each(|((out, x), stats)| normalize_rows(x, gamma, beta, epsilon, out, stats));
        (
            FlexTensor::from_data(TensorData::new(out, x.layout().shape().clone())),
            FlexTensor::from_data(TensorData::new(stats, [rows, 2])),
        )
    }

    fn backward(
        x: FlexTensor,
        gamma: FlexTensor,
        stats: FlexTensor,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, gamma) = (x.to_contiguous(), gamma.to_contiguous());
        let (x_values, gamma_values, stats) = (f32_slice(&x), f32_slice(&gamma), f32_slice(&stats));
        let width = gamma_values.len();
        let block = rows_per_task(width);
        let mut grad = owned_contiguous(grad);
        // Per block of rows: (dγ, dβ) partial sums, added up in block order below.
        let partials: Vec<Vec<f32>> = grad
            .storage_mut::<f32>()
            .par_chunks_mut(block * width)
            .zip(x_values.par_chunks(block * width))
            .zip(stats.par_chunks(block * 2))
            .map(|((grad, x), stats)| {
                let mut sums = vec![0f32; 2 * width];
                backward_rows(x, gamma_values, stats, grad, &mut sums);
                sums
            })
            .collect();
        let mut sums = vec![0f32; 2 * width];
        for partial in &partials {
            sums.iter_mut().zip(partial).for_each(|(sum, p)| *sum += p);
        }
        let grad_beta = sums.split_off(width);
        (
            grad,
            FlexTensor::from_data(TensorData::new(sums, [width])),
            FlexTensor::from_data(TensorData::new(grad_beta, [width])),
        )
    }
}

impl<B: LayerNormOps + LayerNormKernels, C: CheckpointStrategy> LayerNormOps for Autodiff<B, C> {
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNormBackward;

        impl<B: LayerNormKernels> Backward<B, 3> for LayerNormBackward {
            /// The input, γ and the row statistics.
            type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [parent_x, parent_gamma, parent_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, gamma, stats) = ops.state;
                let (grad_x, grad_gamma, grad_beta) = B::backward(x, gamma, stats, grad);
                for (parent, grad) in [
                    (parent_x, grad_x),
                    (parent_gamma, grad_gamma),
                    (parent_beta, grad_beta),
                ] {
                    if let Some(parent) = parent {
                        grads.register::<B>(parent.id, grad);
                    }
                }
            }
        }

        match LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, gamma, beta) = (
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                );
                let (out, stats) = B::forward(&x, &gamma, &beta, epsilon);
                prep.finish((x, gamma, stats), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            )),
        }
    }
}

/// Rows per parallel task for rows of `width` elements.
fn rows_per_task(width: usize) -> usize {
    (CHUNK / width.max(1)).max(1)
}

widest_simd! {
    /// Normalises the rows of `x` into `out` and writes each row's `[mean, 1/σ]` to `stats`.
    fn normalize_rows(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        epsilon: f32,
        out: &mut [f32],
        stats: &mut [f32],
    ) => normalize_rows_kernel
}

widest_simd! {
    /// Overwrites `grad` (rows of dy) with dx and adds each row's `dy ⊙ x̂` and `dy` to
    /// `sums[..width]` and `sums[width..]`.
    fn backward_rows(x: &[f32], gamma: &[f32], stats: &[f32], grad: &mut [f32], sums: &mut [f32])
        => backward_rows_kernel
}

#[inline(always)]
fn normalize_rows_kernel(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    out: &mut [f32],
    stats: &mut [f32],
) {
    let width = gamma.len();
    let rows = x.chunks_exact(width).zip(out.chunks_exact_mut(width));
    for ((x, out), stats) in rows.zip(stats.chunks_exact_mut(2)) {
        let mean = lane_sum(x, x, x, |v, _, _| v) / width as f32;
        let variance = lane_sum(x, x, x, |v, _, _| (v - mean) * (v - mean)) / width as f32;
        let inv_std = 1.0 / (variance + epsilon).sqrt();
        for (((out, &x), &gamma), &beta) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            *out = (x - mean) * inv_std * gamma + beta;
        }
        stats.copy_from_slice(&[mean, inv_std]);
    }
}

#[inline(always)]
fn backward_rows_kernel(
    x: &[f32],
    gamma: &[f32],
    stats: &[f32],
    grad: &mut [f32],
    sums: &mut [f32],
) {
    let width = gamma.len();
    let (grad_gamma, grad_beta) = sums.split_at_mut(width);
    let rows = x.chunks_exact(width).zip(grad.chunks_exact_mut(width));
    for ((x, grad), stats) in rows.zip(stats.chunks_exact(2)) {
        let (mean, inv_std) = (stats[0], stats[1]);
        let mean_g = lane_sum(grad, gamma, x, |dy, gamma, _| dy * gamma) / width as f32;
        let mean_g_xhat = lane_sum(grad, gamma, x, |dy, gamma, x| {
            dy * gamma * (x - mean) * inv_std
        }) / width as f32;
        let columns = grad.iter_mut().zip(x).zip(gamma);
        let accumulators = grad_gamma.iter_mut().zip(grad_beta.iter_mut());
        for (((dy, &x), &gamma), (grad_gamma, grad_beta)) in columns.zip(accumulators) {
            let x_hat = (x - mean) * inv_std;
            *grad_gamma += *dy * x_hat;
            *grad_beta += *dy;
            *dy = (*dy * gamma - mean_g - x_hat * mean_g_xhat) * inv_std;
        }
    }
}

/// `Σᵢ term(a[i], b[i], c[i])` over slices of one length, accumulated in 16 lanes so that the
/// additions vectorise.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], c: &[f32], term: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let (a, b, c) = (a.chunks_exact(16), b.chunks_exact(16), c.chunks_exact(16));
    let tail = a.remainder().iter().zip(b.remainder()).zip(c.remainder());
    let tail: f32 = tail.map(|((&a, &b), &c)| term(a, b, c)).sum();
    for ((a, b), c) in a.zip(b).zip(c) {
        let (a, b, c): (&[f32; 16], &[f32; 16], &[f32; 16]) = (
            a.try_into().expect("chunks of 16"),
            b.try_into().expect("chunks of 16"),
            c.try_into().expect("chunks of 16"),
        );
        for (lane, ((&a, &b), &c)) in lanes.iter_mut().zip(a.iter().zip(b).zip(c)) {
            *lane += term(a, b, c);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::mixer::common::testing::device_with_kernel;

    /// Output and gradients (x, γ, β) equal Burn's `LayerNorm` (autodiff through its
    /// decomposition) on rows of BERT's width and on a width that is no multiple of the lanes.
    #[test]
    fn output_and_gradients_equal_burns_layer_norm() {
        let Some(device) = device_with_kernel(is_supported, "layer_norm") else {
            return;
        };
        let device = device.autodiff();
        for (batch, seq, width, epsilon) in [(3, 50, 768, 1e-12), (2, 9, 37, 1e-5)] {
            device.seed(13);
            let draw =
                |std: f64| Tensor::<1>::random([width], Distribution::Normal(0.0, std), &device);
            let gamma = (draw(1.0) + 1.0).require_grad();
            let beta = draw(0.5).require_grad();
            let mut reference = LayerNormConfig::new(width)
                .with_epsilon(epsilon)
                .init(&device);
            reference.gamma = Param::from_tensor(gamma.clone());
            reference.beta = Some(Param::from_tensor(beta.clone()));
            let x =
                Tensor::<3>::random([batch, seq, width], Distribution::Normal(0.3, 2.0), &device)
                    .require_grad();
            let upstream =
                Tensor::<3>::random([batch, seq, width], Distribution::Normal(0.0, 1.0), &device);
            let fused = layer_norm(x.clone(), gamma.clone(), beta.clone(), epsilon);
            let expected = reference.forward(x.clone());
            let tol = Tolerance::absolute(2e-5);
            fused
                .to_data()
                .assert_approx_eq::<f32>(&expected.to_data(), tol);
            let fused_grads = (fused * upstream.clone()).sum().backward();
            let expected_grads = (expected * upstream).sum().backward();
            let expected_x = x.grad(&expected_grads).unwrap();
            x.grad(&fused_grads)
                .unwrap()
                .to_data()
                .assert_approx_eq::<f32>(&expected_x.to_data(), tol);
            for (name, param) in [("gamma", gamma), ("beta", beta)] {
                let a = param.grad(&fused_grads).unwrap();
                let b = param.grad(&expected_grads).unwrap();
                a.to_data()
                    .assert_approx_eq::<f32>(&b.to_data(), Tolerance::absolute(2e-4));
                assert!(
                    b.abs().sum().into_scalar::<f32>() > 0.0,
                    "{name}: zero gradient"
                );
            }
        }
    }
}
