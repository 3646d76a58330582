//! FlashAttention (Dao et al., NeurIPS 2022, <https://arxiv.org/abs/2205.14135>; FlashAttention-2,
//! Dao 2023, <https://arxiv.org/abs/2307.08691>) for the embedded CPU backend: exact
//! `dropout(softmax(q kᵀ + key_bias)) v` computed tile by tile with the online softmax, never
//! holding an `[n, n]` matrix, with a handwritten backward that recomputes the score tiles from the
//! per-row logsumexp instead of storing them. Forward and backward both use O(n·d) memory.
//!
//! An optional block layout (kept (query block, key block) pairs) gives block-sparse
//! FlashAttention (the paper's §3.3): skipped tiles are never computed, so time scales with the
//! number of kept blocks. Dense attention is the all-kept layout with [`DENSE_TILE`] tiles.
//!
//! Official code checked: Dao-AILab/flash-attention, `flash_attn/flash_attn_triton.py` (forward:
//! running max / sum, `lse` saved; backward: `D = rowsum(dO ∘ O)`, `dS = P ∘ (dP − D)`) and
//! `flash_attn/flash_blocksparse_attention.py` (block layout per head).
//!
//! Deviations, and why:
//! - Loop order follows FA2 in the forward (outer loop over query tiles, parallel over
//!   (batch·head, query tile) with rayon). The backward runs the FA2 key-tile outer loop
//!   serially per (batch·head, group of key tiles): `dK`, `dV` of a key tile stay in one task, and
//!   `dQ` goes to a per-task buffer summed afterwards (CPU threads have no cheap atomic adds).
//! - Dropout masks come from the counter hash of `ops::softmax_attention` (not Philox) at the same
//!   flat `[b, h, n, m]` index, so both ops drop the same elements for the same seed.
//! - Padding is an additive finite key bias (`mixer::reference::PAD_BIAS`), as for the other
//!   attention ops, so a query whose kept keys are all padding gets a uniform distribution, not NaN.
//! - Tiles are multiplied in place on borrowed sub-slices by `ops::tile_product` (Burn's tensor
//!   API would copy every tile); keys (and in the backward values) are transposed once per call
//!   into one `[d, block]` panel per key block, so that every right-hand side has contiguous rows.
//!
//! Files: this one holds the public functions, the backend extension and the autodiff wrapper
//! (what survives the forward, what the backward consumes); `kernel.rs` the CPU kernels.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Tensor};

mod kernel;
#[cfg(test)]
mod tests;

/// Tile edge of dense FlashAttention: 128 query rows per forward task and 128 keys per backward
/// step. A `[128, 256]` score run (128 KiB) stays in L2, and each pass over K, V (forward) or
/// Q, dO (backward) serves twice the rows of 64-row tiles: 8 % faster at n = 16K, the same at 1K–4K.
pub const DENSE_TILE: usize = 128;

/// Whether [`flash_attention`] has a kernel for tensors on `device`.
pub fn is_supported(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// Exact `dropout(softmax(q kᵀ + key_bias)) v` in O(n·d) memory. The caller scales `q`.
///
/// # Shapes
/// - `q`: `[b, h, n, d]`, `k`, `v`: `[b, h, m, d]`, `key_bias`: `[b, m]`
/// - output: `[b, h, n, d]`
///
/// `dropout` is the drop probability (0 disables it); the mask is a pure function of `seed` and
/// the element's position, the same as [`super::softmax_attention::softmax_attention`]'s.
///
/// # Panics
/// On devices for which [`is_supported`] is false.
pub fn flash_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_bias: Tensor<2>,
    dropout: f32,
    seed: u64,
) -> Tensor<4> {
    let [_, _, queries, _] = q.dims();
    let keys = k.dims()[2];
    let layout = Tensor::ones(
        [1, queries.div_ceil(DENSE_TILE), keys.div_ceil(DENSE_TILE)],
        &q.device(),
    );
    block_sparse_flash_attention(q, k, v, key_bias, layout, DENSE_TILE, dropout, seed)
}

/// [`flash_attention`] restricted to the kept blocks of `layout`: scores outside kept
/// `[block_size, block_size]` tiles are −∞ (never computed).
///
/// # Shapes
/// - as [`flash_attention`]; `layout`: `[h or 1, ⌈n / block_size⌉, ⌈m / block_size⌉]`, nonzero =
///   kept (one layout per head, or one shared by all heads)
///
/// # Panics
/// On devices for which [`is_supported`] is false, or if `layout` does not match the shapes.
#[allow(clippy::too_many_arguments)]
pub fn block_sparse_flash_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_bias: Tensor<2>,
    layout: Tensor<3>,
    block_size: usize,
    dropout: f32,
    seed: u64,
) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::flash_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        key_bias.into_dispatch(),
        layout.into_dispatch(),
        block_size,
        dropout,
        seed,
    ))
}

/// The dispatched operation (routes to the Flex kernel, or to its autodiff wrapper).
#[backend_extension(Flex, Autodiff)]
pub trait FlashAttentionOps: Backend {
    /// See [`block_sparse_flash_attention`].
    #[allow(clippy::too_many_arguments)]
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        layout: FloatTensor<Self>,
        block_size: usize,
        dropout: f32,
        seed: u64,
    ) -> FloatTensor<Self>;
}

/// Everything but `q`, `k`, `v` that forward and backward share.
#[derive(Clone, Debug)]
pub struct FlashExtras<B: Backend> {
    /// `[b, m]` additive key bias.
    pub key_bias: FloatTensor<B>,
    /// `[h or 1, query blocks, key blocks]`, nonzero = kept.
    pub layout: FloatTensor<B>,
    pub block_size: usize,
    pub dropout: f32,
    pub seed: u64,
}

/// Forward and backward kernels of the inner backend (not dispatched, so they may return tuples).
pub trait FlashAttentionKernels: Backend {
    /// Returns the output and the per-row logsumexp `[b, h, n]` of the biased scores.
    fn forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        extras: &FlashExtras<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Returns `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        extras: &FlashExtras<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl FlashAttentionOps for Flex {
    fn flash_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        key_bias: FlexTensor,
        layout: FlexTensor,
        block_size: usize,
        dropout: f32,
        seed: u64,
    ) -> FlexTensor {
        let extras = FlashExtras {
            key_bias,
            layout,
            block_size,
            dropout,
            seed,
        };
        <Self as FlashAttentionKernels>::forward(q, k, v, &extras).0
    }
}

impl<B: FlashAttentionOps + FlashAttentionKernels, C: CheckpointStrategy> FlashAttentionOps
    for Autodiff<B, C>
{
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        layout: FloatTensor<Self>,
        block_size: usize,
        dropout: f32,
        seed: u64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FlashAttentionBackward;

        /// Only O(n·d) survives the forward: the inputs, the output and the row logsumexp.
        type State<B> = ([NodeId; 3], FloatTensor<B>, FloatTensor<B>, FlashExtras<B>);

        impl<B: FlashAttentionKernels> Backward<B, 3> for FlashAttentionBackward {
            type State = State<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [parent_q, parent_k, parent_v] = ops.parents;
                let grad_out = grads.consume::<B>(&ops.node);
                let ([q_id, k_id, v_id], out, lse, extras) = ops.state;
                let q = checkpointer.retrieve_node_output(q_id);
                let k = checkpointer.retrieve_node_output(k_id);
                let v = checkpointer.retrieve_node_output(v_id);
                let (grad_q, grad_k, grad_v) = B::backward(q, k, v, out, lse, grad_out, &extras);
                for (parent, grad) in [(parent_q, grad_q), (parent_k, grad_k), (parent_v, grad_v)] {
                    if let Some(parent) = parent {
                        grads.register::<B>(parent.id, grad);
                    }
                }
            }
        }

        let extras = FlashExtras {
            key_bias: key_bias.into_primitive(),
            layout: layout.into_primitive(),
            block_size,
            dropout,
            seed,
        };
        match FlashAttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let ids = [
                    prep.checkpoint(&q),
                    prep.checkpoint(&k),
                    prep.checkpoint(&v),
                ];
                let (out, lse) = <B as FlashAttentionKernels>::forward(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    &extras,
                );
                prep.finish((ids, out.clone(), lse, extras), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(
                <B as FlashAttentionKernels>::forward(
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    &extras,
                )
                .0,
            ),
        }
    }
}
