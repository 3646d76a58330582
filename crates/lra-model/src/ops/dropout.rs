//! Dropout whose mask is a pure function of a seed and each element's position: the backward pass
//! regenerates the forward's mask instead of storing it, and the attention ops
//! (`softmax_attention`, `flash_attention`) draw their masks from the same hash.
//!
//! The elementwise [`dropout`] is one operation with a handwritten backward for the embedded CPU
//! backend: Burn's dropout draws a Bernoulli tensor through its generic sampler (ChaCha, one draw
//! per element), multiplies twice and keeps the mask for the backward; this one hashes once per
//! four elements and scales in place. Other backends keep Burn's `Dropout` (see
//! `mixer::common::dropout`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::buffers::owned_contiguous;

/// Elements per parallel task: large enough that a task outweighs its scheduling.
const CHUNK: usize = 1 << 14;

/// Whether [`dropout`] has a fused kernel for tensors on `device`.
pub fn is_supported(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// `x ⊙ mask / (1 − prob)`, element `i` kept when [`kept`]`(seed, i, 1 − prob)` (`i` in row-major
/// order).
///
/// # Panics
/// On devices for which [`is_supported`] is false.
pub fn dropout<const D: usize>(x: Tensor<D>, prob: f32, seed: u64) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::fused_dropout(x.into_dispatch(), prob, seed))
}

/// The dispatched operation (routes to the Flex kernel, or to its autodiff wrapper).
#[backend_extension(Flex, Autodiff)]
pub trait DropoutOps: Backend {
    /// See [`dropout`].
    fn fused_dropout(x: FloatTensor<Self>, prob: f32, seed: u64) -> FloatTensor<Self>;
}

impl DropoutOps for Flex {
    fn fused_dropout(x: FlexTensor, prob: f32, seed: u64) -> FlexTensor {
        let mut out = owned_contiguous(x);
        let keep = 1.0 - prob;
        out.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, values)| drop_in_place(values, seed, (chunk * CHUNK) as u64, keep));
        out
    }
}

/// The backward is the forward's masking applied to the output gradient.
impl<B: DropoutOps, C: CheckpointStrategy> DropoutOps for Autodiff<B, C> {
    fn fused_dropout(x: FloatTensor<Self>, prob: f32, seed: u64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct DropoutBackward;

        impl<B: DropoutOps> Backward<B, 1> for DropoutBackward {
            type State = (f32, u64);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let [parent] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (prob, seed) = ops.state;
                if let Some(parent) = parent {
                    grads.register::<B>(parent.id, B::fused_dropout(grad, prob, seed));
                }
            }
        }

        match DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (prob, seed),
                B::fused_dropout(x.into_primitive(), prob, seed),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_dropout(x.into_primitive(), prob, seed))
            }
        }
    }
}

/// `values[i] ⊙ mask / keep` in place, `values[0]` being element `start` of the masked tensor.
pub(crate) fn drop_in_place(values: &mut [f32], seed: u64, start: u64, keep: f32) {
    for (value, kept) in values.iter_mut().zip(keep_mask(seed, start, keep)) {
        *value = if kept { *value / keep } else { 0.0 };
    }
}

/// Whether the dropout mask keeps element `index`: 16 bits of a SplitMix64 hash of
/// (seed, index / 4), so a backward pass regenerates exactly the forward's mask without storing
/// it, at one hash per four elements.
pub fn kept(seed: u64, index: u64, keep: f32) -> bool {
    lane(mix(seed, index >> 2), index) < keep_threshold(keep)
}

/// [`kept`] for the consecutive elements `start, start + 1, …`.
pub(crate) fn keep_mask(seed: u64, start: u64, keep: f32) -> impl Iterator<Item = bool> {
    let threshold = keep_threshold(keep);
    let mut word = (start >> 2, mix(seed, start >> 2));
    (start..).map(move |index| {
        if word.0 != index >> 2 {
            word = (index >> 2, mix(seed, index >> 2));
        }
        lane(word.1, index) < threshold
    })
}

fn keep_threshold(keep: f32) -> u32 {
    (keep * 65_536.0) as u32
}

fn lane(hash: u64, index: u64) -> u32 {
    ((hash >> ((index & 3) * 16)) & 0xFFFF) as u32
}

fn mix(seed: u64, word: u64) -> u64 {
    let mut z = seed ^ word.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::testing::device_with_kernel;

    #[test]
    fn keeps_the_requested_fraction() {
        let kept_count = (0..100_000u64).filter(|&i| kept(42, i, 0.9)).count();
        assert!((89_000..91_000).contains(&kept_count), "{kept_count}");
    }

    #[test]
    fn mask_iterator_equals_the_per_element_rule_from_any_start() {
        for start in [0u64, 1, 3, 16_385] {
            let from_iterator: Vec<bool> = keep_mask(7, start, 0.7).take(11).collect();
            let per_element: Vec<bool> = (start..start + 11).map(|i| kept(7, i, 0.7)).collect();
            assert_eq!(from_iterator, per_element, "start {start}");
        }
    }

    /// Forward and gradient equal `x ⊙ mask / keep` with the mask built element by element, over
    /// a tensor spanning several parallel chunks, whose input is a transposed (strided) view.
    #[test]
    fn output_and_gradient_are_the_masked_scaled_input() {
        let Some(device) = device_with_kernel(is_supported, "dropout") else {
            return;
        };
        let device = device.autodiff();
        device.seed(3);
        let (rows, cols, prob, seed) = (300, 130, 0.25, 17);
        let x = Tensor::<2>::random([cols, rows], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let upstream = Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 1.0), &device);
        let out = dropout(x.clone().transpose(), prob, seed);
        let mask: Vec<f32> = (0..(rows * cols) as u64)
            .map(|i| {
                if kept(seed, i, 1.0 - prob) {
                    1.0 / (1.0 - prob)
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, cols]), &device);
        let tol = Tolerance::absolute(1e-6);
        out.to_data()
            .assert_approx_eq::<f32>(&(x.clone().transpose() * mask.clone()).to_data(), tol);
        let grads = (out * upstream.clone()).sum().backward();
        let expected = (upstream * mask).transpose();
        x.grad(&grads)
            .unwrap()
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), tol);
    }
}
