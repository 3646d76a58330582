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

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::fast_exp;
use super::softmax_attention::keep_mask;
use super::tile_product::{View, product};

/// Defines a method that runs `self.$inline(..)` (an `#[inline(always)]` method) compiled for
/// AVX-512F, or else AVX2, when the CPU has it. The crate targets baseline x86-64, whose 4-lane
/// SSE2 code made the exp and max passes a fifth of the run time; 16 lanes halve 8 lanes' cost.
macro_rules! widest_simd {
    (
        $(#[$doc:meta])*
        fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)? => $inline:ident
    ) => {
        $(#[$doc])*
        fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512(problem: &Problem $(, $arg: $ty)*) $(-> $ret)? {
                    problem.$inline($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2(problem: &Problem $(, $arg: $ty)*) $(-> $ret)? {
                    problem.$inline($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512(self $(, $arg)*) };
                }
                if is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2(self $(, $arg)*) };
                }
            }
            self.$inline($($arg),*)
        }
    };
}

/// Tile edge of dense FlashAttention: 128 query rows per forward task and 128 keys per backward
/// step. A `[128, 256]` score run (128 KiB) stays in L2, and each pass over K, V (forward) or
/// Q, dO (backward) serves twice the rows of 64-row tiles: 8 % faster at n = 16K, the same at 1K–4K.
pub const DENSE_TILE: usize = 128;

/// Most rows (forward: keys, backward: queries) that one run of consecutive kept blocks puts into
/// a single product: a longer product loads and stores its accumulators less often, and the
/// `gemm` crate (the fallback without AVX-512) packs its operands once per call.
const RUN_ROWS: usize = 256;

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

impl FlashAttentionKernels for Flex {
    fn forward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        extras: &FlashExtras<Self>,
    ) -> (FlexTensor, FlexTensor) {
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let problem = Problem::new(&q, &k, &v, extras);
        let (out, lse) = problem.forward();
        let [b, h, n, d] = problem.query_shape();
        (
            FlexTensor::from_data(TensorData::new(out, [b, h, n, d])),
            FlexTensor::from_data(TensorData::new(lse, [b, h, n])),
        )
    }

    fn backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        out: FlexTensor,
        lse: FlexTensor,
        grad_out: FlexTensor,
        extras: &FlashExtras<Self>,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (q, k, v) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous());
        let (out, lse, grad_out) = (
            out.to_contiguous(),
            lse.to_contiguous(),
            grad_out.to_contiguous(),
        );
        let problem = Problem::new(&q, &k, &v, extras);
        let (dq, dk, dv) = problem.backward(f32s(&out), f32s(&lse), f32s(&grad_out));
        let [b, h, n, d] = problem.query_shape();
        let m = problem.keys;
        (
            FlexTensor::from_data(TensorData::new(dq, [b, h, n, d])),
            FlexTensor::from_data(TensorData::new(dk, [b, h, m, d])),
            FlexTensor::from_data(TensorData::new(dv, [b, h, m, d])),
        )
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

/// Borrowed inputs of one call, flattened: `q` is `[b·h, n, d]`, `k`, `v` are `[b·h, m, d]`.
struct Problem<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    key_bias: Vec<f32>,
    layout: Layout,
    batch: usize,
    heads: usize,
    queries: usize,
    keys: usize,
    head_dim: usize,
    dropout: f32,
    seed: u64,
}

/// Which `[block, block]` tiles are computed, per head (or one for all heads).
struct Layout {
    block: usize,
    heads: usize,
    query_blocks: usize,
    key_blocks: usize,
    kept: Vec<bool>,
}

impl Layout {
    fn index(&self, head: usize, query_block: usize, key_block: usize) -> usize {
        let head = if self.heads == 1 { 0 } else { head };
        (head * self.query_blocks + query_block) * self.key_blocks + key_block
    }

    /// Kept key blocks of one query block, ascending.
    fn row(&self, head: usize, query_block: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.key_blocks).filter(move |&j| self.kept[self.index(head, query_block, j)])
    }

    /// Query blocks that keep one key block, ascending.
    fn column(&self, head: usize, key_block: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.query_blocks).filter(move |&i| self.kept[self.index(head, i, key_block)])
    }
}

/// Runs `(first, count)` of consecutive indices of the ascending `indices`, at most `max` long.
fn runs(indices: impl Iterator<Item = usize>, max: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for index in indices {
        match runs.last_mut() {
            Some((first, count)) if *first + *count == index && *count < max => *count += 1,
            _ => runs.push((index, 1)),
        }
    }
    runs
}

/// `xs += bias` elementwise; returns the new maximum of `xs` (−∞ when empty; NaNs are skipped
/// like `f32::max` does), over 16 lanes so it vectorises (inlined into the callers' AVX code).
#[inline(always)]
fn add_and_max(xs: &mut [f32], bias: &[f32]) -> f32 {
    xs.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
    // `if x > lane` (false for NaN) rather than `f32::max`, whose NaN rule kept this scalar.
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| a.max(x));
    for chunk in chunks {
        let chunk: &[f32; 16] = chunk.try_into().expect("chunks of 16");
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    lanes.iter().fold(tail, |a, &x| a.max(x))
}

/// Rows `start..start + len` of a `[rows, width]` row-major matrix.
fn rows(data: &[f32], width: usize, start: usize, len: usize) -> &[f32] {
    &data[start * width..(start + len) * width]
}

impl<'a> Problem<'a> {
    fn new(
        q: &'a FlexTensor,
        k: &'a FlexTensor,
        v: &'a FlexTensor,
        extras: &FlashExtras<Flex>,
    ) -> Self {
        let q_shape = q.layout().shape();
        let (batch, heads, queries, head_dim) = (q_shape[0], q_shape[1], q_shape[2], q_shape[3]);
        let keys = k.layout().shape()[2];
        let layout_tensor = extras.layout.to_contiguous();
        let layout_shape = layout_tensor.layout().shape();
        let block = extras.block_size;
        let layout = Layout {
            block,
            heads: layout_shape[0],
            query_blocks: layout_shape[1],
            key_blocks: layout_shape[2],
            kept: f32s(&layout_tensor).iter().map(|&x| x != 0.0).collect(),
        };
        assert!(
            block > 0
                && layout.query_blocks == queries.div_ceil(block)
                && layout.key_blocks == keys.div_ceil(block)
                && (layout.heads == 1 || layout.heads == heads),
            "block layout {layout_shape:?} does not fit {heads} heads, {queries} queries, {keys} keys in blocks of {block}"
        );
        Self {
            q: f32s(q),
            k: f32s(k),
            v: f32s(v),
            key_bias: f32s(&extras.key_bias.to_contiguous()).to_vec(),
            layout,
            batch,
            heads,
            queries,
            keys,
            head_dim,
            dropout: extras.dropout,
            seed: extras.seed,
        }
    }

    fn query_shape(&self) -> [usize; 4] {
        [self.batch, self.heads, self.queries, self.head_dim]
    }

    /// First row and length of block `index` of a sequence of `len`.
    fn span(&self, index: usize, len: usize) -> (usize, usize) {
        self.run_span((index, 1), len)
    }

    /// First row and length of the blocks `first..first + count` of a sequence of `len`.
    fn run_span(&self, (first, count): (usize, usize), len: usize) -> (usize, usize) {
        let start = first * self.layout.block;
        (start, (count * self.layout.block).min(len - start))
    }

    /// `x` (`[b·h, m, d]` keys or values) with each key block `[c, d]` stored transposed as a
    /// `[d, c]` panel at the block's own offset, so a block's column of `xᵀ` is contiguous.
    fn panels(&self, x: &[f32]) -> Vec<f32> {
        let (m, d, block) = (self.keys, self.head_dim, self.layout.block);
        let mut panels = written_zeros(x.len());
        panels
            .par_chunks_mut(m * d)
            .zip(x.par_chunks(m * d))
            .for_each(|(panels, x)| {
                for (panel, x) in panels.chunks_mut(block * d).zip(x.chunks(block * d)) {
                    let width = x.len() / d;
                    for (i, row) in x.chunks(d).enumerate() {
                        for (p, &value) in row.iter().enumerate() {
                            panel[p * width + i] = value;
                        }
                    }
                }
            });
        panels
    }

    /// Blocks per run: [`RUN_ROWS`] rows, at least one block.
    fn run_blocks(&self) -> usize {
        (RUN_ROWS / self.layout.block).max(1)
    }

    /// `(output [b·h·n·d], logsumexp [b·h·n])`, parallel over (batch·head, query block).
    fn forward(&self) -> (Vec<f32>, Vec<f32>) {
        let (n, d, block) = (self.queries, self.head_dim, self.layout.block);
        let key_panels = self.panels(self.k);
        let mut out = written_zeros(self.batch * self.heads * n * d);
        let mut lse = written_zeros(self.batch * self.heads * n);
        out.par_chunks_mut(n * d)
            .zip(lse.par_chunks_mut(n))
            .enumerate()
            .for_each(|(bh, (out, lse))| {
                out.par_chunks_mut(block * d)
                    .zip(lse.par_chunks_mut(block))
                    .enumerate()
                    .for_each(|(i, (out, lse))| {
                        self.forward_query_block(bh, i, &key_panels, out, lse)
                    });
            });
        (out, lse)
    }

    widest_simd! {
        /// Online softmax over the kept key blocks of query block `i` (FA2 forward, one tile of
        /// rows).
        fn forward_query_block(
            &self,
            bh: usize,
            i: usize,
            key_panels: &[f32],
            acc: &mut [f32],
            lse: &mut [f32],
        ) => forward_query_block_inline
    }

    #[inline(always)]
    fn forward_query_block_inline(
        &self,
        bh: usize,
        i: usize,
        key_panels: &[f32],
        acc: &mut [f32],
        lse: &mut [f32],
    ) {
        let (n, m, d) = (self.queries, self.keys, self.head_dim);
        let (q0, r) = self.span(i, n);
        let q = rows(self.q, d, bh * n + q0, r);
        let bias = &self.key_bias[(bh / self.heads) * m..][..m];
        let mut row_max = vec![f32::NEG_INFINITY; r];
        let mut row_sum = vec![0f32; r];
        let run_blocks = self.run_blocks();
        let mut scores = vec![0f32; r * run_blocks * self.layout.block];
        for run in runs(self.layout.row(bh % self.heads, i), run_blocks) {
            let (k0, c) = self.run_span(run, m);
            let scores = &mut scores[..r * c];
            for (first, block) in (k0..k0 + c).step_by(self.layout.block).enumerate() {
                let (_, width) = self.span(block / self.layout.block, m);
                let panel = rows(key_panels, d, bh * m + block, width);
                let dst = &mut scores[first * self.layout.block..];
                // S = Q Kᵀ, one key block at a time
                product(
                    dst,
                    c,
                    View::rows(q, d),
                    View::rows(panel, width),
                    [r, d, width],
                    false,
                );
            }
            for (a, s) in scores.chunks_mut(c).enumerate() {
                let new_max = row_max[a].max(add_and_max(s, &bias[k0..k0 + c]));
                let rescale = (row_max[a] - new_max).exp();
                row_max[a] = new_max;
                row_sum[a] = row_sum[a] * rescale + fast_exp::exp_shifted_sum(s, -new_max);
                acc[a * d..(a + 1) * d]
                    .iter_mut()
                    .for_each(|o| *o *= rescale);
            }
            if self.dropout > 0.0 {
                for (a, s) in scores.chunks_mut(c).enumerate() {
                    for (s, keep) in s.iter_mut().zip(self.dropout_scales(bh * n + q0 + a, k0)) {
                        *s *= keep;
                    }
                }
            }
            let (scores, v) = (View::rows(scores, c), rows(self.v, d, bh * m + k0, c));
            product(acc, d, scores, View::rows(v, d), [r, c, d], true); // O += dropout(P̃) V
        }
        for (a, out) in acc.chunks_mut(d).enumerate() {
            // A row without kept blocks keeps a zero output (never the case for our layouts).
            if row_sum[a] > 0.0 {
                let inv = 1.0 / row_sum[a];
                out.iter_mut().for_each(|o| *o *= inv);
                lse[a] = row_max[a] + row_sum[a].ln();
            }
        }
    }

    /// Dropout factors (`1 / keep` or 0; all 1 without dropout) of row `row` of the flattened
    /// `[b·h·n, m]` weights from key `k0` on, at the element indices of `ops::softmax_attention`.
    fn dropout_scales(&self, row: usize, k0: usize) -> impl Iterator<Item = f32> + '_ {
        let keep = 1.0 - self.dropout;
        let start = (row * self.keys + k0) as u64;
        let mut mask = (self.dropout > 0.0).then(|| keep_mask(self.seed, start, keep));
        std::iter::repeat_with(
            move || match mask.as_mut().map(|m| m.next() == Some(true)) {
                None => 1.0,
                Some(true) => 1.0 / keep,
                Some(false) => 0.0,
            },
        )
    }

    /// `(dq, dk, dv)`, parallel over (batch·head, group of key blocks); each task owns the `dK`,
    /// `dV` rows of its key blocks and sums its `dQ` into a private buffer.
    fn backward(
        &self,
        out: &[f32],
        lse: &[f32],
        grad_out: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (n, m, d) = (self.queries, self.keys, self.head_dim);
        let heads_total = self.batch * self.heads;
        // D = rowsum(dO ⊙ O), one per query row.
        let delta: Vec<f32> = out
            .par_chunks(d)
            .zip(grad_out.par_chunks(d))
            .map(|(o, g)| o.iter().zip(g).map(|(o, g)| o * g).sum())
            .collect();
        // Enough groups per head to occupy every thread when there are few heads.
        let groups = rayon::current_num_threads()
            .div_ceil(heads_total)
            .clamp(1, self.layout.key_blocks.max(1));
        let blocks_per_group = self.layout.key_blocks.div_ceil(groups).max(1);
        let group_rows = blocks_per_group * self.layout.block;
        let panels = Panels {
            keys: self.panels(self.k),
            values: self.panels(self.v),
        };
        let mut dq = written_zeros(heads_total * n * d);
        let mut dk = written_zeros(heads_total * m * d);
        let mut dv = written_zeros(heads_total * m * d);
        dq.par_chunks_mut(n * d)
            .zip(dk.par_chunks_mut(m * d))
            .zip(dv.par_chunks_mut(m * d))
            .enumerate()
            .for_each(|(bh, ((dq, dk), dv))| {
                let rows_of_head = RowsOfHead {
                    grad_out: rows(grad_out, d, bh * n, n),
                    lse: &lse[bh * n..(bh + 1) * n],
                    delta: &delta[bh * n..(bh + 1) * n],
                };
                let partials: Vec<Vec<f32>> = dk
                    .par_chunks_mut(group_rows * d)
                    .zip(dv.par_chunks_mut(group_rows * d))
                    .enumerate()
                    .map(|(g, (dk, dv))| {
                        let first = g * blocks_per_group;
                        self.backward_key_blocks(bh, first, &rows_of_head, &panels, dk, dv)
                    })
                    .collect();
                for partial in partials {
                    dq.iter_mut().zip(partial).for_each(|(dq, p)| *dq += p);
                }
            });
        (dq, dk, dv)
    }

    widest_simd! {
        /// FA2 backward over the key blocks `first..` whose `dK`, `dV` rows are `dk`, `dv`;
        /// returns this task's contribution to `dQ` of head `bh`.
        fn backward_key_blocks(
            &self,
            bh: usize,
            first: usize,
            head: &RowsOfHead,
            panels: &Panels,
            dk: &mut [f32],
            dv: &mut [f32],
        ) -> Vec<f32> => backward_key_blocks_inline
    }

    #[inline(always)]
    fn backward_key_blocks_inline(
        &self,
        bh: usize,
        first: usize,
        head: &RowsOfHead,
        panels: &Panels,
        dk: &mut [f32],
        dv: &mut [f32],
    ) -> Vec<f32> {
        let (n, m, d, block) = (self.queries, self.keys, self.head_dim, self.layout.block);
        let bias = &self.key_bias[(bh / self.heads) * m..][..m];
        let mut dq = written_zeros(n * d);
        let run_blocks = self.run_blocks();
        let tile = run_blocks * block * block;
        let mut probs = vec![0f32; tile];
        let mut weights = vec![0f32; tile];
        let mut grad_scores = vec![0f32; tile];
        for (offset, (dk, dv)) in dk
            .chunks_mut(block * d)
            .zip(dv.chunks_mut(block * d))
            .enumerate()
        {
            let j = first + offset;
            let (k0, c) = self.span(j, m);
            let k = rows(self.k, d, bh * m + k0, c);
            let key_panel = View::rows(rows(&panels.keys, d, bh * m + k0, c), c);
            let value_panel = View::rows(rows(&panels.values, d, bh * m + k0, c), c);
            for run in runs(self.layout.column(bh % self.heads, j), run_blocks) {
                let (q0, r) = self.run_span(run, n);
                let q = rows(self.q, d, bh * n + q0, r);
                let grad_out = rows(head.grad_out, d, q0, r);
                let (p, w, ds) = (
                    &mut probs[..r * c],
                    &mut weights[..r * c],
                    &mut grad_scores[..r * c],
                );
                let (q, grad_out) = (View::rows(q, d), View::rows(grad_out, d));
                product(p, c, q, key_panel, [r, d, c], false); // S = Q Kᵀ
                product(ds, c, grad_out, value_panel, [r, d, c], false); // dW = dO Vᵀ
                let rows_iter = p.chunks_mut(c).zip(w.chunks_mut(c)).zip(ds.chunks_mut(c));
                for (a, ((p, w), ds)) in rows_iter.enumerate() {
                    let (lse, delta) = (head.lse[q0 + a], head.delta[q0 + a]);
                    if self.dropout == 0.0 {
                        // One pass without the mask iterator, so that it vectorises.
                        for ((p, g), b) in p.iter_mut().zip(ds).zip(&bias[k0..k0 + c]) {
                            *p = fast_exp::exp(*p + b - lse);
                            *g = *p * (*g - delta); // dS = P ⊙ (dP − D)
                        }
                        continue;
                    }
                    for (p, b) in p.iter_mut().zip(&bias[k0..k0 + c]) {
                        *p = fast_exp::exp(*p + b - lse);
                    }
                    // W = P ⊙ mask / keep and dP = dW ⊙ mask / keep share the factors.
                    let scales = self.dropout_scales(bh * n + q0 + a, k0);
                    for (((p, w), g), scale) in p.iter().zip(w.iter_mut()).zip(ds).zip(scales) {
                        *w = p * scale;
                        *g = p * (*g * scale - delta);
                    }
                }
                let w: &[f32] = if self.dropout > 0.0 { w } else { p };
                product(dv, d, View::transposed(w, c), grad_out, [c, r, d], true); // dV += Wᵀ dO
                product(dk, d, View::transposed(ds, c), q, [c, r, d], true); // dK += dSᵀ Q
                let dq = &mut dq[q0 * d..(q0 + r) * d];
                product(dq, d, View::rows(ds, c), View::rows(k, d), [r, c, d], true); // dQ += dS K
            }
        }
        dq
    }
}

/// Per-row backward inputs of one (batch·head).
struct RowsOfHead<'a> {
    grad_out: &'a [f32],
    lse: &'a [f32],
    delta: &'a [f32],
}

/// Keys and values of every head transposed block by block (see [`Problem::panels`]).
struct Panels {
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// `len` zeros, written rather than requested zeroed from the allocator: a zeroed allocation is
/// mapped to the shared zero page, and the first write to each of its pages then costs a
/// copy-on-write fault and a TLB shootdown on every thread (a tenth of the run time here).
fn written_zeros(len: usize) -> Vec<f32> {
    let mut zeros = Vec::with_capacity(len);
    zeros.resize(len, 0.0);
    zeros
}

/// The elements of a contiguous f32 tensor, in order.
fn f32s(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("flash attention works on contiguous f32 tensors")
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::softmax;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::mixer::reference::PAD_BIAS;
    use crate::ops::softmax_attention::kept;
    use crate::ops::softmax_attention::softmax_attention;

    const HEADS: usize = 2;
    const HEAD_DIM: usize = 8;

    /// `q`, `k`, `v` `[2, HEADS, seq, HEAD_DIM]` and a key bias padding the second sequence from
    /// `real` on.
    fn inputs(device: &Device, seq: usize, real: usize) -> [Tensor<4>; 4] {
        device.seed(5);
        let shape = [2, HEADS, seq, HEAD_DIM];
        let draw = || Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        let pad: Vec<f32> = (0..2 * seq)
            .map(|i| if i >= seq + real { PAD_BIAS } else { 0.0 })
            .collect();
        let bias = Tensor::<2>::from_data(TensorData::new(pad, [2, seq]), device);
        [draw(), draw(), draw(), bias.reshape([2, 1, 1, seq])]
    }

    /// `dropout(softmax(q kᵀ + bias + block_bias)) v` composed from Burn ops, with the dropout
    /// mask of [`kept`] built explicitly; `block_bias` `[h, n, m]` is −∞ outside kept tiles.
    fn reference(
        [q, k, v, bias]: [Tensor<4>; 4],
        block_bias: Option<Tensor<3>>,
        dropout: f32,
        seed: u64,
    ) -> Tensor<4> {
        let [b, h, n, _] = q.dims();
        let m = k.dims()[2];
        let mut scores = q.matmul(k.swap_dims(2, 3)) + bias; // [b, h, n, m]
        if let Some(block_bias) = block_bias {
            scores = scores + block_bias.unsqueeze_dim(0);
        }
        let probs = softmax(scores, 3);
        let keep = 1.0 - dropout;
        let mask: Vec<f32> = (0..(b * h * n * m) as u64)
            .map(|i| match dropout == 0.0 || kept(seed, i, keep) {
                true => 1.0 / keep,
                false => 0.0,
            })
            .collect();
        let mask = Tensor::<4>::from_data(TensorData::new(mask, [b, h, n, m]), &probs.device());
        (probs * mask).matmul(v)
    }

    /// Asserts equal outputs and equal gradients of `sum(out ⊙ w)` with respect to q, k and v.
    fn assert_same_outputs_and_gradients(
        inputs: &[Tensor<4>; 4],
        fast: impl Fn([Tensor<4>; 4]) -> Tensor<4>,
        slow: impl Fn([Tensor<4>; 4]) -> Tensor<4>,
    ) {
        let tracked = |inputs: &[Tensor<4>; 4]| {
            let [q, k, v, bias] = inputs.clone();
            [q.require_grad(), k.require_grad(), v.require_grad(), bias]
        };
        let (fast_in, slow_in) = (tracked(inputs), tracked(inputs));
        let out_fast = fast(fast_in.clone());
        let out_slow = slow(slow_in.clone());
        let tol = Tolerance::absolute(1e-5);
        out_fast
            .to_data()
            .assert_approx_eq::<f32>(&out_slow.to_data(), tol);
        let weights = Tensor::<4>::random(
            out_fast.dims(),
            Distribution::Normal(0.0, 1.0),
            &out_fast.device(),
        );
        let grads_fast = (out_fast * weights.clone()).sum().backward();
        let grads_slow = (out_slow * weights).sum().backward();
        for (name, (a, b)) in ["q", "k", "v"].iter().zip(fast_in.iter().zip(&slow_in)) {
            let (a, b) = (a.grad(&grads_fast).unwrap(), b.grad(&grads_slow).unwrap());
            assert!(
                b.clone().abs().sum().into_scalar::<f32>() > 0.0,
                "d{name} is zero"
            );
            a.to_data().assert_approx_eq::<f32>(&b.to_data(), tol);
        }
    }

    fn key_bias(bias: Tensor<4>) -> Tensor<2> {
        let [b, _, _, m] = bias.dims();
        bias.reshape([b, m])
    }

    #[test]
    fn dense_equals_naive_softmax_for_lengths_off_the_tile_grid() {
        let device = Device::flex().autodiff();
        let flash =
            |[q, k, v, bias]: [Tensor<4>; 4]| flash_attention(q, k, v, key_bias(bias), 0.0, 0);
        // One tile of 128 + 22, and 2 tiles + 44; the second sequence is padded from `real` on.
        for (seq, real) in [(150, 117), (300, 250)] {
            assert_exact_outputs_and_gradients(&inputs(&device, seq, real), flash, 0.0, 0);
        }
    }

    #[test]
    fn dropout_drops_what_the_materialised_op_drops() {
        let device = Device::flex().autodiff();
        let inputs = inputs(&device, 300, 250);
        let flash =
            |[q, k, v, bias]: [Tensor<4>; 4]| flash_attention(q, k, v, key_bias(bias), 0.3, 77);
        let materialised =
            |[q, k, v, bias]: [Tensor<4>; 4]| softmax_attention(q, k, v, key_bias(bias), 0.3, 77);
        // Each f32 op is held to the f64 computation rather than to the other (their gradients,
        // of magnitude ~10, are 1e-5 (flash) and 5e-5 (materialised) from it); a different mask
        // would miss by O(1).
        assert_exact_outputs_and_gradients(&inputs, flash, 0.3, 77);
        assert_exact_outputs_and_gradients(&inputs, materialised, 0.3, 77);
    }

    /// `(out, [dq, dk, dv])` of `sum(out ⊙ w)` for `out = dropout(softmax(q kᵀ + bias)) v`,
    /// written out in f64 per (batch, head) with the mask of [`kept`].
    fn exact_outputs_and_gradients(
        inputs: &[Tensor<4>; 4],
        w: &Tensor<4>,
        dropout: f32,
        seed: u64,
    ) -> (Vec<f64>, [Vec<f64>; 3]) {
        let [b, h, n, d] = inputs[0].dims();
        let f64s = |t: &Tensor<4>| -> Vec<f64> {
            let values = t.to_data().try_to_vec::<f32>().expect("f32 tensor");
            values.into_iter().map(f64::from).collect()
        };
        let ([q, k, v, bias], w) = (inputs.each_ref().map(f64s), f64s(w));
        let keep = 1.0 - dropout;
        let (mut out, mut dq, mut dk, mut dv) = (
            vec![0.0; q.len()],
            vec![0.0; q.len()],
            vec![0.0; q.len()],
            vec![0.0; q.len()],
        );
        for bh in 0..b * h {
            let row = |_: &[f64], i: usize| (bh * n + i) * d;
            let dot = |x: &[f64], i: usize, y: &[f64], j: usize| -> f64 {
                (0..d).map(|t| x[row(x, i) + t] * y[row(y, j) + t]).sum()
            };
            for i in 0..n {
                let scores: Vec<f64> = (0..n)
                    .map(|j| dot(&q, i, &k, j) + bias[(bh / h) * n + j])
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                let probs: Vec<f64> = scores.iter().map(|s| (s - max).exp() / total).collect();
                let scale: Vec<f64> = (0..n)
                    .map(|j| {
                        match dropout == 0.0 || kept(seed, ((bh * n + i) * n + j) as u64, keep) {
                            true => 1.0 / f64::from(keep),
                            false => 0.0,
                        }
                    })
                    .collect();
                // dP = (dO Vᵀ) ⊙ mask / keep; dS = P ⊙ (dP − rowsum(dP ⊙ P))
                let grad_probs: Vec<f64> = (0..n).map(|j| dot(&w, i, &v, j) * scale[j]).collect();
                let delta: f64 = (0..n).map(|j| grad_probs[j] * probs[j]).sum();
                for j in 0..n {
                    let weight = probs[j] * scale[j];
                    let grad_score = probs[j] * (grad_probs[j] - delta);
                    for t in 0..d {
                        out[row(&q, i) + t] += weight * v[row(&v, j) + t];
                        dv[row(&v, j) + t] += weight * w[row(&w, i) + t];
                        dq[row(&q, i) + t] += grad_score * k[row(&k, j) + t];
                        dk[row(&k, j) + t] += grad_score * q[row(&q, i) + t];
                    }
                }
            }
        }
        (out, [dq, dk, dv])
    }

    /// Asserts that `op`'s output and its gradients of `sum(out ⊙ w)` are within 1e-5 (times the
    /// largest magnitude, when above 1) of [`exact_outputs_and_gradients`].
    fn assert_exact_outputs_and_gradients(
        inputs: &[Tensor<4>; 4],
        op: impl Fn([Tensor<4>; 4]) -> Tensor<4>,
        dropout: f32,
        seed: u64,
    ) {
        let [q, k, v, bias] = inputs.clone();
        let tracked = [q.require_grad(), k.require_grad(), v.require_grad(), bias];
        let out = op(tracked.clone());
        let w = Tensor::<4>::random(out.dims(), Distribution::Normal(0.0, 1.0), &out.device());
        let (exact_out, exact_grads) = exact_outputs_and_gradients(inputs, &w, dropout, seed);
        let grads = (out.clone() * w).sum().backward();
        let computed = [&tracked[0], &tracked[1], &tracked[2]].map(|x| x.grad(&grads).unwrap());
        let named = std::iter::once(("out", out.inner(), exact_out)).chain(
            ["dq", "dk", "dv"]
                .into_iter()
                .zip(computed)
                .zip(exact_grads)
                .map(|((name, got), exact)| (name, got, exact)),
        );
        for (name, got, exact) in named {
            let got = got.to_data().try_to_vec::<f32>().expect("f32 tensor");
            let worst = got
                .iter()
                .zip(&exact)
                .map(|(&g, e)| (f64::from(g) - e).abs())
                .fold(0.0, f64::max);
            // f32 sums over a row carry ~10 ulps of the largest terms, so the bound is relative
            // to the tensor's scale (elements near 0 come from cancelling terms of that scale).
            let scale = exact.iter().fold(1.0f64, |a, e| a.max(e.abs()));
            assert!(
                worst < 1e-5 * scale,
                "{name} is {worst:e} from the exact values (largest magnitude {scale})"
            );
        }
    }

    /// Per-head layouts `[HEADS, nb, nb]`: the diagonal plus pseudo-random blocks.
    fn layout(blocks: usize) -> Vec<f32> {
        (0..HEADS * blocks * blocks)
            .map(|index| {
                let (i, j) = ((index / blocks) % blocks, index % blocks);
                f32::from(u8::from(i == j || (index * 7919) % 5 < 2))
            })
            .collect()
    }

    /// `[h, n, m]` bias: 0 in kept tiles, −∞ elsewhere.
    fn block_bias(
        layout: &[f32],
        blocks: usize,
        block: usize,
        seq: usize,
        device: &Device,
    ) -> Tensor<3> {
        let bias: Vec<f32> = (0..HEADS * seq * seq)
            .map(|index| {
                let (h, i, j) = (index / (seq * seq), (index / seq) % seq, index % seq);
                match layout[(h * blocks + i / block) * blocks + j / block] != 0.0 {
                    true => 0.0,
                    false => f32::NEG_INFINITY,
                }
            })
            .collect();
        Tensor::from_data(TensorData::new(bias, [HEADS, seq, seq]), device)
    }

    #[test]
    fn block_sparse_equals_dense_softmax_with_the_block_mask() {
        let device = Device::flex().autodiff();
        let (seq, block) = (100usize, 16); // 7 blocks, the last one of 4 rows
        let blocks = seq.div_ceil(block);
        let layout = layout(blocks);
        assert!(layout.contains(&0.0), "the test layout skips blocks");
        let layout_tensor = || {
            Tensor::<3>::from_data(
                TensorData::new(layout.clone(), [HEADS, blocks, blocks]),
                &device,
            )
        };
        let mask = block_bias(&layout, blocks, block, seq, &device);
        let inputs = inputs(&device, seq, 70);
        for (dropout, seed) in [(0.0, 0), (0.2, 5)] {
            let sparse = |[q, k, v, bias]: [Tensor<4>; 4]| {
                block_sparse_flash_attention(
                    q,
                    k,
                    v,
                    key_bias(bias),
                    layout_tensor(),
                    block,
                    dropout,
                    seed,
                )
            };
            let dense = |x| reference(x, Some(mask.clone()), dropout, seed);
            assert_same_outputs_and_gradients(&inputs, sparse, dense);
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_layout_that_does_not_fit_is_rejected() {
        let device = Device::flex();
        let [q, k, v, bias] = inputs(&device, 40, 40);
        let layout = Tensor::<3>::ones([1, 2, 2], &device); // 40 tokens need 3 blocks of 16
        block_sparse_flash_attention(q, k, v, key_bias(bias), layout, 16, 0.0, 0);
    }
}
