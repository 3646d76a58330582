//! Block-sparse FlashAttention: Dao et al., NeurIPS 2022, "FlashAttention: Fast and
//! Memory-Efficient Exact Attention with IO-Awareness" (<https://arxiv.org/abs/2205.14135>), §3.3.
//!
//! FlashAttention restricted to a block layout: the sequence is cut into blocks of `block_size`
//! tokens and each query block attends only to its kept key blocks; skipped tiles are never
//! computed. The layout is BigBird's (Zaheer et al., NeurIPS 2020, <https://arxiv.org/abs/2007.14062>):
//! a band of `window` blocks around the diagonal, `global` blocks that see and are seen by every
//! block (the first and last blocks, as BigBird-ITC), and `random` key blocks per query block and
//! head, drawn once at init from the device RNG and fixed afterwards (as BigBird's `seed` at layer
//! construction). Time O(n·(window + global + random)·b·d), memory O(n·d), for training too.
//!
//! Official code checked: Dao-AILab/flash-attention `flash_attn/flash_blocksparse_attention.py`
//! (a per-head `[n/b, n/b]` block layout fed to the kernel) and google-research/bigbird
//! `bigbird/core/attention.py` (`bigbird_block_rand_mask`: random blocks exclude the window and
//! global blocks).
//!
//! Deviations, and why:
//! - FlashAttention's paper fixes a butterfly layout for LRA; we use BigBird's layout, whose
//!   defaults are documented for LRA (the brief's band + global + random pattern); any layout
//!   runs through the same kernel.
//! - The random blocks are drawn for the `max_len` block grid; a shorter input keeps those that
//!   fall inside it, and its own last block is global.
//! - BigBird computes its first/last query blocks with extra padding tricks; here global rows are
//!   simply rows whose layout keeps every block.
//! - Other backends than the CPU one compute each (head, query block) over its gathered kept keys
//!   with Burn ops: same cost class, slower constant.

use burn::module::{Module, Param, ParamId};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::common::dropout_in_effect;
use super::common::exact::{key_bias, scale_queries};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};
use crate::ops::flash_attention::{block_sparse_flash_attention, is_supported};

/// Settings of [`BlockSparseAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockSparseConfig {
    /// Tokens per block `b`. Default: 64 (BigBird paper base model, b = 64; LRA JAX BigBird
    /// `block_size` 64).
    pub block_size: usize,
    /// Blocks in the diagonal band, odd (the query's own block and `(window − 1)/2` on each side).
    /// Default: 3 (BigBird, w = 3 blocks).
    pub window: usize,
    /// Global blocks: the first `⌈global/2⌉` and last `⌊global/2⌋` blocks see every block and
    /// are seen by every block. Default: 2 (BigBird-ITC, g = 2: first and last block).
    pub global: usize,
    /// Random key blocks per query block and head, fixed at init. Default: 3 (BigBird paper and
    /// LRA JAX BigBird, r = 3).
    pub random: usize,
}

impl Default for BlockSparseConfig {
    fn default() -> Self {
        Self {
            block_size: 64,
            window: 3,
            global: 2,
            random: 3,
        }
    }
}

impl MixerSpec for BlockSparseConfig {
    type Mixer = BlockSparseAttention;
    const SUMMARY: &'static str =
        "block-sparse FlashAttention over a BigBird layout (band + global + random blocks)";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("block_size", self.block_size)?;
        if self.window.is_multiple_of(2) {
            return Err(format!(
                "window must be an odd number of blocks (the own block plus as many on each side), got {}",
                self.window
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> BlockSparseAttention {
        let pattern = Pattern {
            window: self.window,
            global: self.global,
        };
        let random_blocks = pattern.draw_random_blocks(
            dims.n_heads,
            dims.max_len.div_ceil(self.block_size),
            self.random,
            device,
        );
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            BlockSparseCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                block_size: self.block_size,
                pattern,
                random_blocks: Param::initialized(ParamId::new(), random_blocks),
            },
        )
    }
}

/// Which key blocks each query block keeps, besides the random ones.
#[derive(Clone, Debug)]
struct Pattern {
    window: usize,
    global: usize,
}

impl Pattern {
    /// Draws `count` distinct random key blocks per (head, query block) of a `blocks` grid, among
    /// those neither in the band nor global (BigBird `bigbird_block_rand_mask`): `[heads, blocks,
    /// blocks]`, 1 at a drawn (query block, key block).
    fn draw_random_blocks(
        &self,
        heads: usize,
        blocks: usize,
        count: usize,
        device: &Device,
    ) -> Tensor<3, Int> {
        let draws = Tensor::<1>::random(
            [(heads * blocks * count).max(1)],
            Distribution::Uniform(0.0, 1.0),
            device,
        );
        let draws: Vec<f32> = draws.into_data().try_into_vec().expect("f32 draws");
        let mut draws = draws.into_iter();
        let drawn: Vec<Vec<Vec<usize>>> = (0..heads)
            .map(|_| {
                (0..blocks)
                    .map(|i| {
                        let mut candidates: Vec<usize> = (0..blocks)
                            .filter(|&j| !self.in_band(i, j) && !self.is_global(j, blocks))
                            .collect();
                        // Partial Fisher–Yates shuffle: the first `count` are a uniform draw.
                        let picked = count.min(candidates.len());
                        for t in 0..picked {
                            let u = draws.next().unwrap_or(0.0);
                            let swap = t
                                + ((u * (candidates.len() - t) as f32) as usize)
                                    .min(candidates.len() - t - 1);
                            candidates.swap(t, swap);
                        }
                        candidates.truncate(picked);
                        candidates
                    })
                    .collect()
            })
            .collect();
        let grid = blocks.max(1);
        let mut member = vec![0i64; heads * grid * grid];
        for (h, rows) in drawn.iter().enumerate() {
            for (i, row) in rows.iter().enumerate() {
                for &j in row {
                    member[(h * grid + i) * grid + j] = 1;
                }
            }
        }
        Tensor::from_data(TensorData::new(member, [heads, grid, grid]), device)
    }

    fn in_band(&self, i: usize, j: usize) -> bool {
        i.abs_diff(j) <= self.window / 2
    }

    fn is_global(&self, block: usize, blocks: usize) -> bool {
        block < self.global.div_ceil(2) || block + self.global / 2 >= blocks
    }

    /// The layout `[heads, blocks, blocks]` (1 = kept) of a sequence of `blocks` blocks, with
    /// the random blocks `random` (drawn on the `max_len` grid by [`Self::draw_random_blocks`]).
    fn layout(&self, random: &Tensor<3, Int>, blocks: usize) -> Vec<f32> {
        let [heads, grid, _] = random.dims();
        let random: Vec<i64> = random.clone().into_data().iter::<i64>().collect();
        let is_random = |h: usize, i: usize, j: usize| {
            i < grid && j < grid && random[(h * grid + i) * grid + j] != 0
        };
        let keeps = |h, i, j| {
            self.in_band(i, j)
                || self.is_global(i, blocks)
                || self.is_global(j, blocks)
                || is_random(h, i, j)
        };
        (0..heads * blocks * blocks)
            .map(|index| {
                let (h, i, j) = (
                    index / (blocks * blocks),
                    (index / blocks) % blocks,
                    index % blocks,
                );
                f32::from(u8::from(keeps(h, i, j)))
            })
            .collect()
    }
}

/// Multi-head block-sparse FlashAttention.
pub type BlockSparseAttention = Attention<BlockSparseCore>;

/// The attention core of [`BlockSparseAttention`].
#[derive(Module, Debug)]
pub struct BlockSparseCore {
    dropout: Dropout,
    block_size: usize,
    #[module(skip)]
    pattern: Pattern,
    /// `[heads, blocks, blocks]` on the `max_len` grid, 1 at a random block: drawn at init and
    /// kept in checkpoints (an integer parameter, never trained; as BigBird's).
    random_blocks: Param<Tensor<3, Int>>,
}

impl BlockSparseCore {
    /// The layout `[heads, blocks, blocks]` (1 = kept) of a sequence of `blocks` blocks.
    fn layout(&self, blocks: usize) -> Vec<f32> {
        self.pattern.layout(&self.random_blocks.val(), blocks)
    }
}

impl AttentionCore for BlockSparseCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [_, heads, seq, _] = q.dims();
        let blocks = seq.div_ceil(self.block_size);
        let layout = self.layout(blocks);
        let key_bias = key_bias(pad_mask, &k);
        let device = q.device();
        if !is_supported(&device) {
            return self.gathered_attend(scale_queries(q), k, v, key_bias, &layout);
        }
        let layout =
            Tensor::<3>::from_data(TensorData::new(layout, [heads, blocks, blocks]), &device);
        let (dropout, seed) = dropout_in_effect(&self.dropout, &device);
        block_sparse_flash_attention(
            scale_queries(q),
            k,
            v,
            key_bias,
            layout,
            self.block_size,
            dropout,
            seed,
        )
    }
}

impl BlockSparseCore {
    /// The same attention from Burn ops: per (head, query block), softmax over the gathered keys of
    /// its kept blocks only.
    fn gathered_attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        key_bias: Tensor<2>,
        layout: &[f32],
    ) -> Tensor<4> {
        let [batch, heads, seq, _] = q.dims();
        let blocks = seq.div_ceil(self.block_size);
        let device = q.device();
        let per_head = (0..heads).map(|h| {
            let head = |x: &Tensor<4>| x.clone().narrow(1, h, 1);
            let (q, k, v) = (head(&q), head(&k), head(&v));
            let rows = (0..blocks).map(|i| {
                let start = i * self.block_size;
                let len = self.block_size.min(seq - start);
                let keys: Vec<i64> = (0..seq)
                    .filter(|&key| layout[(h * blocks + i) * blocks + key / self.block_size] != 0.0)
                    .map(|key| key as i64)
                    .collect();
                let count = keys.len();
                let keys = Tensor::<1, Int>::from_data(TensorData::new(keys, [count]), &device);
                let k = k.clone().select(2, keys.clone()); // [b, 1, kept, d]
                let v = v.clone().select(2, keys.clone());
                let bias = key_bias
                    .clone()
                    .select(1, keys)
                    .reshape([batch, 1, 1, count]);
                let scores = q.clone().narrow(2, start, len).matmul(k.swap_dims(2, 3)) + bias; // [b, 1, len, kept]
                self.dropout.forward(softmax(scores, 3)).matmul(v)
            });
            Tensor::cat(rows.collect(), 2)
        });
        Tensor::cat(per_head.collect(), 1)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;
    use crate::mixer::common::reference::PAD_BIAS;
    use crate::mixer::common::testing::{assert_random_only_in_training, gaussian, pad_mask};

    const SEQ: usize = 120;
    const BLOCK: usize = 16; // 8 blocks, the last of 8 tokens

    fn config() -> BlockSparseConfig {
        BlockSparseConfig {
            block_size: BLOCK,
            window: 3,
            global: 2,
            random: 1,
        }
    }

    fn dims(dropout: f64) -> MixerDims {
        MixerDims::new(16, 2, SEQ).with_dropout(dropout)
    }

    fn build(device: &Device) -> BlockSparseAttention {
        device.seed(3);
        crate::init_now(config().init(&dims(0.0), device))
    }

    /// Dense softmax over `[b, h, n, n]` scores with −∞ outside the layout's kept blocks.
    fn masked_dense(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad: Tensor<2, Bool>,
        layout: &[f32],
    ) -> Tensor<4> {
        let [batch, heads, seq, _] = q.dims();
        let blocks = seq.div_ceil(BLOCK);
        let block_bias: Vec<f32> = (0..heads * seq * seq)
            .map(|index| {
                let (h, i, j) = (index / (seq * seq), (index / seq) % seq, index % seq);
                match layout[(h * blocks + i / BLOCK) * blocks + j / BLOCK] != 0.0 {
                    true => 0.0,
                    false => f32::NEG_INFINITY,
                }
            })
            .collect();
        let block_bias =
            Tensor::<3>::from_data(TensorData::new(block_bias, [heads, seq, seq]), &q.device());
        let pad_bias = (pad.float() * PAD_BIAS).reshape([batch, 1, 1, seq]);
        let scores =
            scale_queries(q).matmul(k.swap_dims(2, 3)) + pad_bias + block_bias.unsqueeze_dim(0);
        softmax(scores, 3).matmul(v)
    }

    #[test]
    fn equals_dense_softmax_with_the_same_block_mask_in_outputs_and_gradients() {
        let device = Device::flex().autodiff();
        let attention = build(&device);
        let layout = attention.core.layout(SEQ.div_ceil(BLOCK));
        assert!(layout.contains(&0.0), "the layout skips blocks");
        let [q, k, v] =
            [11, 12, 13].map(|seed| gaussian(&device, seed, [2, 2, SEQ, 8]).require_grad());
        let mask = pad_mask(&device, SEQ, 77);
        let sparse = attention
            .core
            .attend(q.clone(), k.clone(), v.clone(), Some(mask.clone()));
        let dense = masked_dense(q.clone(), k.clone(), v.clone(), mask, &layout);
        let tol = Tolerance::absolute(1e-5);
        sparse
            .to_data()
            .assert_approx_eq::<f32>(&dense.to_data(), tol);
        let weights = gaussian(&device, 14, [2, 2, SEQ, 8]);
        let sparse_grads = (sparse * weights.clone()).sum().backward();
        let dense_grads = (dense * weights).sum().backward();
        for x in [&q, &k, &v] {
            let (a, b) = (
                x.grad(&sparse_grads).unwrap(),
                x.grad(&dense_grads).unwrap(),
            );
            a.to_data().assert_approx_eq::<f32>(&b.to_data(), tol);
        }
    }

    #[test]
    fn the_gathered_fallback_equals_the_kernel() {
        let device = Device::flex();
        let attention = build(&device);
        let [q, k, v] = [11, 12, 13].map(|seed| gaussian(&device, seed, [2, 2, SEQ, 8]));
        let mask = pad_mask(&device, SEQ, 77);
        let kernel = attention
            .core
            .attend(q.clone(), k.clone(), v.clone(), Some(mask.clone()));
        let layout = attention.core.layout(SEQ.div_ceil(BLOCK));
        let bias = key_bias(Some(mask), &k);
        let gathered = attention
            .core
            .gathered_attend(scale_queries(q), k, v, bias, &layout);
        kernel
            .to_data()
            .assert_approx_eq::<f32>(&gathered.to_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn the_layout_has_band_global_and_distinct_random_blocks() {
        let attention = build(&Device::flex());
        let blocks = SEQ.div_ceil(BLOCK);
        let layout = attention.core.layout(blocks);
        for h in 0..2 {
            for i in 0..blocks {
                let row = &layout[(h * blocks + i) * blocks..][..blocks];
                let kept = row.iter().filter(|&&x| x != 0.0).count();
                let expected = if i == 0 || i == blocks - 1 {
                    blocks // global rows see everything
                } else {
                    // band (3, fewer next to an end where the band meets a global block) + 2 global + 1 random
                    let band_not_global = (i.saturating_sub(1)..=(i + 1).min(blocks - 1))
                        .filter(|&j| j != 0 && j != blocks - 1)
                        .count();
                    band_not_global + 2 + 1
                };
                assert_eq!(kept, expected, "head {h}, block row {i}: {row:?}");
                assert!(row[0] != 0.0 && row[blocks - 1] != 0.0 && row[i] != 0.0);
            }
        }
        let random = attention.core.random_blocks.val();
        let head = |h| random.clone().narrow(0, h, 1).into_data();
        let other_heads = head(0) != head(1);
        assert!(other_heads, "heads draw their own random blocks");
    }

    #[test]
    fn an_even_window_is_rejected() {
        let config = BlockSparseConfig {
            window: 2,
            ..config()
        };
        let error = config.validate(&dims(0.0)).unwrap_err();
        assert!(error.contains("window"), "{error}");
    }

    #[test]
    fn dropout_acts_only_in_training_and_follows_the_device_seed() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let attention = crate::init_now(config().init(&dims(0.5), &device));
        let x = Tensor::<3>::random([2, 48, 16], Distribution::Normal(0.0, 1.0), &device);
        assert_random_only_in_training(&attention, x, "dropout mask");
    }
}
