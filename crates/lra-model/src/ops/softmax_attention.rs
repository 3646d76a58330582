//! Materialised softmax attention `dropout(softmax(q kᵀ + bias)) v` as one operation with a
//! handwritten backward, for the embedded CPU backend.
//!
//! Composed from Burn ops, autodiff records every elementwise step over the `[n, n]` scores
//! (bias, max, subtract, exp, sum, divide, dropout mask, scale) and copies each one; this
//! operation makes one pass over the scores forward (bias + softmax + dropout in place) and one
//! backward (`dS = P ⊙ (dP − rowsum(dP ⊙ P))`), keeps only `P` for the backward, and regenerates the
//! dropout mask from a counter-based hash instead of storing it. Matrix products use the backend's
//! GEMM. Other backends use the composed reference (`mixer::reference`).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::buffers::{f32_slice, owned_contiguous};
use super::dropout::{drop_in_place, keep_mask};
use super::fast_exp;

/// Whether [`softmax_attention`] has a fused kernel for tensors on `device`.
pub fn is_supported(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// `dropout(softmax(q kᵀ + key_bias)) v`. The caller scales `q`.
///
/// # Shapes
/// - `q`: `[b, h, n, d]`, `k`, `v`: `[b, h, m, d]`, `key_bias`: `[b, m]` (added to every query's scores)
/// - output: `[b, h, n, d]`
///
/// `dropout` is the drop probability (0 disables it); the mask is a pure function of `seed` and
/// the element's position.
///
/// # Panics
/// On devices for which [`is_supported`] is false.
pub fn softmax_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_bias: Tensor<2>,
    dropout: f32,
    seed: u64,
) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::softmax_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        key_bias.into_dispatch(),
        dropout,
        seed,
    ))
}

/// The dispatched operation (routes to the Flex kernel, or to its autodiff wrapper).
#[backend_extension(Flex, Autodiff)]
pub trait SoftmaxAttentionOps: Backend {
    /// See [`softmax_attention`].
    fn softmax_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        dropout: f32,
        seed: u64,
    ) -> FloatTensor<Self>;
}

/// Forward and backward kernels of the inner backend (not dispatched, so they may return tuples).
pub trait SoftmaxAttentionKernels: Backend {
    /// Returns the output and the attention probabilities `P` (before dropout).
    fn forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        dropout: f32,
        seed: u64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Returns `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        dropout: f32,
        seed: u64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl SoftmaxAttentionOps for Flex {
    fn softmax_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        dropout: f32,
        seed: u64,
    ) -> FloatTensor<Self> {
        <Self as SoftmaxAttentionKernels>::forward(q, k, v, key_bias, dropout, seed).0
    }
}

impl SoftmaxAttentionKernels for Flex {
    fn forward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        key_bias: FlexTensor,
        dropout: f32,
        seed: u64,
    ) -> (FlexTensor, FlexTensor) {
        let heads = q.layout().shape()[1];
        let queries = q.layout().shape()[2];
        let mut probs = owned_contiguous(Flex::float_matmul(q, Flex::float_swap_dims(k, 2, 3))); // [b, h, n, m]
        let keys = probs.layout().shape()[3];
        let bias = key_bias.to_contiguous();
        let bias = f32_slice(&bias);
        let shape = probs.layout().shape().clone();
        let mut weights = (dropout > 0.0).then(|| vec![0f32; shape.num_elements()]);
        let rows = probs.storage_mut::<f32>().par_chunks_mut(keys);
        let row_kernel = |row: usize, scores: &mut [f32], dropped: Option<&mut [f32]>| {
            let batch = row / (heads * queries);
            softmax_row(scores, &bias[batch * keys..(batch + 1) * keys]);
            if let Some(dropped) = dropped {
                drop_row(scores, dropped, seed, (row * keys) as u64, dropout);
            }
        };
        match weights.as_mut() {
            Some(weights) => rows
                .zip(weights.par_chunks_mut(keys))
                .enumerate()
                .for_each(|(row, (scores, dropped))| row_kernel(row, scores, Some(dropped))),
            None => rows
                .enumerate()
                .for_each(|(row, scores)| row_kernel(row, scores, None)),
        }
        let weights = match weights {
            Some(weights) => FlexTensor::from_data(TensorData::new(weights, shape)),
            None => probs.clone(),
        };
        (Flex::float_matmul(weights, v), probs)
    }

    fn backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        probs: FlexTensor,
        grad_out: FlexTensor,
        dropout: f32,
        seed: u64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let keys = probs.layout().shape()[3];
        let weights = apply_dropout(&probs, dropout, seed);
        let grad_v = Flex::float_matmul(Flex::float_swap_dims(weights, 2, 3), grad_out.clone());
        // dW = dO vᵀ, turned in place into dS = P ⊙ (dP − rowsum(dP ⊙ P)) with dP = dW ⊙ mask / keep.
        let mut grad_scores =
            owned_contiguous(Flex::float_matmul(grad_out, Flex::float_swap_dims(v, 2, 3)));
        let p = f32_slice(&probs);
        let keep = 1.0 - dropout;
        grad_scores
            .storage_mut::<f32>()
            .par_chunks_mut(keys)
            .zip(p.par_chunks(keys))
            .enumerate()
            .for_each(|(row, (grad, p_row))| {
                if dropout > 0.0 {
                    drop_in_place(grad, seed, (row * keys) as u64, keep);
                }
                let dot: f32 = grad.iter().zip(p_row).map(|(g, p)| g * p).sum();
                for (g, p) in grad.iter_mut().zip(p_row) {
                    *g = p * (*g - dot);
                }
            });
        let grad_q = Flex::float_matmul(grad_scores.clone(), k);
        let grad_k = Flex::float_matmul(Flex::float_swap_dims(grad_scores, 2, 3), q);
        (grad_q, grad_k, grad_v)
    }
}

impl<B: SoftmaxAttentionOps + SoftmaxAttentionKernels, C: CheckpointStrategy> SoftmaxAttentionOps
    for Autodiff<B, C>
{
    fn softmax_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        dropout: f32,
        seed: u64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxAttentionBackward;

        impl<B: SoftmaxAttentionKernels> Backward<B, 3> for SoftmaxAttentionBackward {
            type State = (NodeId, NodeId, NodeId, FloatTensor<B>, f32, u64);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [parent_q, parent_k, parent_v] = ops.parents;
                let grad_out = grads.consume::<B>(&ops.node);
                let (q_id, k_id, v_id, probs, dropout, seed) = ops.state;
                let q = checkpointer.retrieve_node_output(q_id);
                let k = checkpointer.retrieve_node_output(k_id);
                let v = checkpointer.retrieve_node_output(v_id);
                let (grad_q, grad_k, grad_v) = B::backward(q, k, v, probs, grad_out, dropout, seed);
                for (parent, grad) in [(parent_q, grad_q), (parent_k, grad_k), (parent_v, grad_v)] {
                    if let Some(parent) = parent {
                        grads.register::<B>(parent.id, grad);
                    }
                }
            }
        }

        let key_bias = key_bias.into_primitive();
        match SoftmaxAttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (q_id, k_id, v_id) = (
                    prep.checkpoint(&q),
                    prep.checkpoint(&k),
                    prep.checkpoint(&v),
                );
                let (out, probs) = <B as SoftmaxAttentionKernels>::forward(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    key_bias,
                    dropout,
                    seed,
                );
                prep.finish((q_id, k_id, v_id, probs, dropout, seed), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_attention(
                q.into_primitive(),
                k.into_primitive(),
                v.into_primitive(),
                key_bias,
                dropout,
                seed,
            )),
        }
    }
}

/// In-place `softmax(scores + bias)`.
fn softmax_row(scores: &mut [f32], bias: &[f32]) {
    let max = fast_exp::add_and_max(scores, bias);
    let inv = 1.0 / fast_exp::exp_shifted_sum(scores, -max);
    for s in scores.iter_mut() {
        *s *= inv;
    }
}

/// `probs ⊙ mask / keep`, or `probs` itself (shared, not copied) without dropout.
fn apply_dropout(probs: &FlexTensor, dropout: f32, seed: u64) -> FlexTensor {
    if dropout <= 0.0 {
        return probs.clone();
    }
    let keys = probs.layout().shape()[3];
    let mut weights = vec![0f32; probs.layout().num_elements()];
    weights
        .par_chunks_mut(keys)
        .zip(f32_slice(probs).par_chunks(keys))
        .enumerate()
        .for_each(|(row, (out, p))| drop_row(p, out, seed, (row * keys) as u64, dropout));
    FlexTensor::from_data(TensorData::new(weights, probs.layout().shape().clone()))
}

/// `out = probs ⊙ mask / keep` for one row starting at flat index `start`.
fn drop_row(probs: &[f32], out: &mut [f32], seed: u64, start: u64, dropout: f32) {
    let keep = 1.0 - dropout;
    let mask = keep_mask(seed, start, keep);
    for ((o, p), kept) in out.iter_mut().zip(probs).zip(mask) {
        *o = if kept { p / keep } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::mixer::common::testing::device_with_kernel;
    use crate::mixer::reference::{PAD_BIAS, attention_probs};
    use crate::ops::dropout::kept;

    const SHAPE: [usize; 4] = [2, 3, 37, 8];

    fn inputs(device: &Device) -> (Tensor<4>, Tensor<4>, Tensor<4>, Tensor<2>) {
        device.seed(5);
        let draw =
            || Tensor::<4>::random(SHAPE, Distribution::Normal(0.0, 1.0), device).require_grad();
        let (q, k, v) = (draw(), draw(), draw());
        let pad: Vec<f32> = (0..2 * 37)
            .map(|i| if i >= 37 + 30 { PAD_BIAS } else { 0.0 })
            .collect();
        let bias = Tensor::<2>::from_data(TensorData::new(pad, [2, 37]), device);
        (q, k, v, bias)
    }

    /// The same computation composed from Burn ops, with the dropout mask built explicitly.
    fn composed(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        bias: Tensor<2>,
        dropout: f32,
        seed: u64,
    ) -> Tensor<4> {
        let [b, h, n, _] = q.dims();
        let m = k.dims()[2];
        let scale = ((q.dims()[3]) as f64).sqrt(); // attention_probs divides by √d; undo it
        let probs = attention_probs(q * scale, k, Some(bias.reshape([b, 1, 1, m])));
        let keep = 1.0 - dropout;
        let mask: Vec<f32> = (0..(b * h * n * m) as u64)
            .map(|i| {
                if dropout == 0.0 || kept(seed, i, keep) {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::<4>::from_data(TensorData::new(mask, [b, h, n, m]), &probs.device());
        (probs * mask).matmul(v)
    }

    fn check(dropout: f32) {
        let Some(device) = device_with_kernel(is_supported, "softmax_attention") else {
            return;
        };
        let device = device.autodiff();
        let (q, k, v, bias) = inputs(&device);
        let weights = Tensor::<4>::random(SHAPE, Distribution::Normal(0.0, 1.0), &device);
        let fused = softmax_attention(q.clone(), k.clone(), v.clone(), bias.clone(), dropout, 99);
        let reference = composed(q.clone(), k.clone(), v.clone(), bias, dropout, 99);
        let tol = Tolerance::absolute(1e-5);
        fused
            .to_data()
            .assert_approx_eq::<f32>(&reference.to_data(), tol);
        let fused_grads = (fused * weights.clone()).sum().backward();
        let reference_grads = (reference * weights).sum().backward();
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let a = x.grad(&fused_grads).unwrap();
            let b = x.grad(&reference_grads).unwrap();
            assert!(
                b.clone().abs().sum().into_scalar::<f32>() > 0.0,
                "{name}: zero gradient"
            );
            a.to_data().assert_approx_eq::<f32>(&b.to_data(), tol);
        }
    }

    #[test]
    fn outputs_and_gradients_equal_the_composed_ops() {
        check(0.0);
    }

    #[test]
    fn dropout_mask_of_the_backward_is_the_forward_one() {
        check(0.3);
    }
}
