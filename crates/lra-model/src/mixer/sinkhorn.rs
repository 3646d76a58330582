//! Sparse Sinkhorn attention ([Sparse Sinkhorn Attention](https://arxiv.org/abs/2002.11296),
//! Tay, Bahri, Yang, Metzler and Juan, ICML 2020), as run as the "Sinkhorn Transformer" baseline
//! of the Long Range Arena (Tay et al. 2021).
//!
//! The sequence is cut into `nb` contiguous blocks of `w` tokens. A sorting network maps the sum
//! of each block's keys to one row of logits over the blocks; the row-normalised (softmax) or
//! doubly-normalised (Sinkhorn) matrix `P` [nb, nb] then "sorts" the key and value blocks:
//! block `i` is paired with the soft mixture `K̃ᵢ = Σⱼ Pᵢⱼ Kⱼ`, `Ṽᵢ = Σⱼ Pᵢⱼ Vⱼ`. Each query block
//! attends to its own block and, with a second softmax, to its sorted block; the two outputs are
//! added (`combine = "sum"`, the LRA code); `combine = "joint"` uses one softmax over both key
//! sets instead (lucidrains' formulation, which is exactly softmax attention with one block):
//!
//! ```text
//! out_i = softmax(Qᵢ Kᵢᵀ/√d) Vᵢ + softmax(Qᵢ K̃ᵢᵀ/√d) Ṽᵢ        (sum)
//!       = softmax(Qᵢ [Kᵢ; K̃ᵢ]ᵀ/√d) [Vᵢ; Ṽᵢ]                   (joint)
//! P     = softmax(R/τ)                         (sort_activation = "softmax", the LRA default)
//!       = sinkhorn((R [+ Gumbel noise])/τ)     ("sinkhorn" / "gumbel_sinkhorn")
//! R     = (Σ_{t ∈ block i} k_t) W_sort          W_sort: [head_dim, blocks], shared by the heads
//! ```
//!
//! `sinkhorn` alternates row and column normalisation in log space (`log_softmax` over the last
//! axis, then over the second-to-last), `sinkhorn_iters` times, then exponentiates.
//! Gumbel noise `-ln(-ln u)` (Mena et al. 2018, "Learning Latent Permutations with Gumbel-Sinkhorn
//! Networks") is drawn from the device RNG and only while training; evaluation uses the noiseless
//! matrix.
//!
//! Checked against the LRA JAX code, `lra_benchmarks/models/sinkhorn_transformer/
//! sinkhorn_attention.py` and `sinkhorn_transformer.py` (google-research/long-range-arena, commit
//! cd31e5c): block sums of keys as block summaries (l. 355), a dense layer from the head width to
//! `max_num_blocks` logits shared by the heads, without bias and Xavier-uniform initialised
//! (l. 358-366; `sinkhorn_transformer.py` l. 72-74), softmax over the last axis by default
//! (l. 217, 380), the sum of a local and a sorted block attention (l. 466-492), dropout on both
//! probability tensors with independent masks.
//!
//! Complexity: O(n·w·d) for the two block attentions, O(n·nb·d) = O(n²·d/w) to mix the blocks
//! with `P` (nb = n/w) and O(iters·nb²) for Sinkhorn; memory O(n·w + nb²) per head.
//!
//! Deviations from the LRA code, and why:
//! - Sorting: the LRA einsum `'bskhd,bnhl->bsnhd'` (l. 382-383) sums the key-block index `k` and
//!   the permutation column `l` separately, so every "sorted" block is the sum of all key blocks
//!   and `P` drops out (its rows sum to 1): the sort net gets no gradient. We apply `P` as the
//!   paper's block sorting, `K̃ᵢ = Σⱼ Pᵢⱼ Kⱼ` (row `i` comes from block `i`'s summary, as in LRA).
//! - Blocks are contiguous, as in `local.rs`; the LRA reshape (l. 343-348) groups strided tokens
//!   (while its padding-mask reshape, l. 403-404, is contiguous). Lengths that are not a multiple
//!   of `w` are padded internally (LRA requires divisibility).
//! - The sort net has `ceil(max_len / block_size)` outputs instead of `max_num_blocks = 25`
//!   (l. 216), which is fewer than the blocks of LRA's own ListOps (2000/50) and Text (4000/50)
//!   runs; those only ran because of the einsum above. The first `nb` outputs are used (l. 366).
//! - Padding: padded keys and values are zeroed, block summaries pool only real tokens (LRA sums
//!   every key, l. 355), and a sorted key position is masked when no real key was mixed into it
//!   (the intent of LRA's permuted `sorted_padding_mask`, l. 418-419, and its `> 0` test,
//!   l. 459-461). Padded keys therefore never influence real positions, not even through `P`.
//! - Sinkhorn: normalises each [nb, nb] matrix per batch row and head (the LRA reshape at l. 372
//!   mixes heads and blocks), and omits the final clip of the log-matrix to `[-1, 1]` (l. 63),
//!   which would undo the normalisation. Gumbel noise is an option the LRA docstring names
//!   (l. 259) but does not implement (any value but "sinkhorn" takes the softmax branch).
//! - `temperature` also divides the logits in softmax mode (LRA ignores it there); the default
//!   1.0 makes this identical.
//! - The Q/K/V/output projections are the shared [`MultiHeadProjection`](super::MultiHeadProjection) (with biases; LRA uses
//!   none), as for every mixer here. The causal variant is not implemented.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::common::is_training;
use super::common::reference::{PAD_BIAS, attention_probs};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

use crate::folded_linear::FoldedLinear;

/// How the sort-net logits become the block-sorting matrix `P`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortActivation {
    /// Softmax over each row (each block's distribution over key blocks): the LRA default.
    Softmax,
    /// Sinkhorn normalisation of rows and columns (a soft permutation matrix).
    Sinkhorn,
    /// Sinkhorn with Gumbel noise added to the logits while training.
    GumbelSinkhorn,
}

/// How a block's attention to its own keys and to its sorted block's keys are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Two separately normalised attentions, added (LRA `sinkhorn_attention.py` l. 466-492).
    Sum,
    /// One softmax over the own and the sorted keys together (as lucidrains/sinkhorn-transformer
    /// concatenates them); with a single block this is exactly softmax attention.
    Joint,
}

/// Settings of [`SinkhornAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkhornConfig {
    /// Tokens per block `w`. Default: 50 (LRA `sinkhorn_attention.py` l. 215 `block_size=50`,
    /// also `sinkhorn_transformer.py` l. 37 and 114; the LRA CIFAR-10 and Pathfinder configs
    /// set 64).
    pub block_size: usize,
    /// Normalisation of the sort-net logits. Default: `softmax` (LRA `sinkhorn_attention.py`
    /// l. 217 `sort_activation='softmax'`, never overridden by `sinkhorn_transformer.py`).
    pub sort_activation: SortActivation,
    /// Row + column normalisation rounds of the Sinkhorn modes (columns end exactly normalised,
    /// rows only approximately after few rounds). Default: 1 (LRA
    /// `sinkhorn_operator(..., n_iters=1, ...)`, l. 34; the call at l. 371 keeps it).
    pub sinkhorn_iters: usize,
    /// The logits are divided by this before normalising. Default: 1.0 (LRA
    /// `sinkhorn_operator(..., temp=1.0, ...)`, l. 34).
    pub temperature: f64,
    /// How the local and the sorted attention are combined. Default: `sum` (LRA).
    pub combine: Combine,
}

impl Default for SinkhornConfig {
    fn default() -> Self {
        Self {
            block_size: 50,
            sort_activation: SortActivation::Softmax,
            sinkhorn_iters: 1,
            temperature: 1.0,
            combine: Combine::Sum,
        }
    }
}

impl MixerSpec for SinkhornConfig {
    type Mixer = SinkhornAttention;
    const SUMMARY: &'static str =
        "sparse Sinkhorn attention: own block + block sorted by a learned sort net (LRA baseline)";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("block_size", self.block_size)?;
        at_least_one("sinkhorn_iters", self.sinkhorn_iters)?;
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!(
                "temperature must be finite and positive, got {}",
                self.temperature
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> SinkhornAttention {
        let max_blocks = dims.max_len.max(1).div_ceil(self.block_size);
        let sort_net = LinearConfig::new(dims.head_dim(), max_blocks)
            .with_bias(false)
            .with_initializer(Initializer::XavierUniform { gain: 1.0 })
            .init(device);
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            SinkhornCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                sort_net,
                block_size: self.block_size,
                sort_activation: self.sort_activation,
                sinkhorn_iters: self.sinkhorn_iters,
                temperature: self.temperature,
                combine: self.combine,
            },
        )
    }
}

/// Multi-head sparse Sinkhorn attention.
pub type SinkhornAttention = Attention<SinkhornCore>;

/// The attention core of [`SinkhornAttention`].
#[derive(Module, Debug)]
pub struct SinkhornCore {
    dropout: Dropout,
    /// Block key sum `[head_dim]` → logits over the key blocks `[max_blocks]`.
    sort_net: Linear,
    block_size: usize,
    #[module(skip)]
    sort_activation: SortActivation,
    sinkhorn_iters: usize,
    temperature: f64,
    #[module(skip)]
    combine: Combine,
}

/// Q, K, V cut into blocks, with padded keys and values zeroed.
struct Blocks {
    /// `[b, h, nb, w, d]`
    q: Tensor<5>,
    /// `[b, h, nb, w, d]`, zero at padding.
    k: Tensor<5>,
    /// `[b, h, nb, w, d]`, zero at padding.
    v: Tensor<5>,
    /// `[b, nb, w]`: 1 at real tokens, 0 at padding (including the tail filling the last block).
    real: Tensor<3>,
    seq: usize,
}

impl SinkhornCore {
    /// Cuts `[b, h, n, d]` into `nb = ceil(n / w)` blocks of `w = min(block_size, n)` tokens.
    fn blocks(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Blocks {
        let [batch, heads, seq, head_dim] = q.dims();
        let w = self.block_size.min(seq);
        let nb = seq.div_ceil(w);
        let padded = nb * w;
        let device = q.device();
        let real = match pad_mask {
            Some(mask) => mask.bool_not().float(),
            None => Tensor::ones([batch, seq], &device),
        }; // [b, n]
        let real4 = real.clone().reshape([batch, 1, seq, 1]);
        let to_blocks =
            |x: Tensor<4>| extend_seq(x, padded, 2).reshape([batch, heads, nb, w, head_dim]);
        Blocks {
            q: to_blocks(q),
            k: to_blocks(k * real4.clone()),
            v: to_blocks(v * real4),
            real: extend_seq(real, padded, 1).reshape([batch, nb, w]),
            seq,
        }
    }

    /// The block-sorting matrix `P` `[b, h, nb, nb]`; row `i` comes from block `i`'s key sum.
    fn sorting_matrix(&self, blocks: &Blocks) -> Tensor<4> {
        let [batch, heads, nb, _, head_dim] = blocks.k.dims();
        let max_blocks = self.sort_net.weight.dims()[1];
        assert!(
            nb <= max_blocks,
            "sinkhorn: {nb} blocks exceed the sort net's {max_blocks} (built for a shorter max_len)"
        );
        let summaries = blocks
            .k
            .clone()
            .sum_dim(3)
            .reshape([batch, heads, nb, head_dim]);
        let logits = self.sort_net.forward_folded(summaries).narrow(3, 0, nb); // [b, h, nb, nb]
        let device = logits.device();
        let logits = match self.sort_activation {
            SortActivation::GumbelSinkhorn if is_training(&self.dropout.training, &device) => {
                logits + gumbel_noise([batch, heads, nb, nb], &device)
            }
            _ => logits,
        } / self.temperature;
        match self.sort_activation {
            SortActivation::Softmax => softmax(logits, 3),
            SortActivation::Sinkhorn | SortActivation::GumbelSinkhorn => {
                sinkhorn(logits, self.sinkhorn_iters)
            }
        }
    }

    /// Each query block attends to its own block and to the mixture of key blocks given by its
    /// row of `perm` `[b, h, nb, nb]`, combined as `self.combine` says.
    fn block_attention(&self, blocks: Blocks, perm: Tensor<4>) -> Tensor<4> {
        let Blocks { q, k, v, real, seq } = blocks;
        let [batch, heads, nb, w, head_dim] = q.dims();
        let local_bias = ((real.clone().neg() + 1.0).reshape([batch, 1, nb, 1, w]) * PAD_BIAS)
            .expand([batch, heads, nb, 1, w]);
        let sort = |x: Tensor<5>| {
            perm.clone()
                .matmul(x.reshape([batch, heads, nb, w * head_dim]))
                .reshape([batch, heads, nb, w, head_dim])
        };
        // Share of real keys mixed into each sorted position; none at all → masked.
        let sorted_real = perm.clone().matmul(
            real.reshape([batch, 1, nb, w])
                .expand([batch, heads, nb, w]),
        );
        let sorted_bias = sorted_real
            .lower_equal_elem(0.0)
            .float()
            .reshape([batch, heads, nb, 1, w])
            * PAD_BIAS;
        let (sorted_k, sorted_v) = (sort(k.clone()), sort(v.clone()));
        let attend = |k: Tensor<5>, v: Tensor<5>, bias: Tensor<5>| {
            self.dropout
                .forward(attention_probs(q.clone(), k, Some(bias)))
                .matmul(v)
        }; // [b, h, nb, w, d]
        let context = match self.combine {
            Combine::Sum => attend(k, v, local_bias) + attend(sorted_k, sorted_v, sorted_bias),
            Combine::Joint => attend(
                Tensor::cat(vec![k, sorted_k], 3),
                Tensor::cat(vec![v, sorted_v], 3),
                Tensor::cat(vec![local_bias, sorted_bias], 4),
            ),
        };
        context
            .reshape([batch, heads, nb * w, head_dim])
            .narrow(2, 0, seq)
    }
}

impl AttentionCore for SinkhornCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let blocks = self.blocks(q, k, v, pad_mask);
        let perm = self.sorting_matrix(&blocks);
        self.block_attention(blocks, perm)
    }
}

/// Sinkhorn normalisation of the last two axes in log space: `iters` rounds of row then column
/// normalisation of `exp(log_alpha)`. Columns sum to 1 exactly after every round; rows converge.
pub fn sinkhorn<const D: usize>(log_alpha: Tensor<D>, iters: usize) -> Tensor<D> {
    let mut log_alpha = log_alpha;
    for _ in 0..iters {
        log_alpha = log_softmax(log_alpha, D - 1);
        log_alpha = log_softmax(log_alpha, D - 2);
    }
    log_alpha.exp()
}

/// Standard Gumbel noise `-ln(-ln u)` from the device RNG; `u` stays inside (0, 1).
fn gumbel_noise(shape: [usize; 4], device: &Device) -> Tensor<4> {
    const EPS: f64 = 1e-6;
    let u = Tensor::<4>::random(shape, Distribution::Uniform(EPS, 1.0 - EPS), device);
    u.log().neg().log().neg()
}

/// Extends axis `axis` of `x` to `len` with zeros.
fn extend_seq<const D: usize>(x: Tensor<D>, len: usize, axis: usize) -> Tensor<D> {
    let mut dims = x.dims();
    let missing = len - dims[axis];
    if missing == 0 {
        return x;
    }
    dims[axis] = missing;
    let fill = Tensor::<D>::zeros(dims, &x.device());
    Tensor::cat(vec![x, fill], axis)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::reference::softmax_attention;
    use crate::mixer::common::testing::assert_random_only_in_training;
    use crate::mixer::common::testing::pad_mask;

    const HEADS: usize = 2;
    const HEAD_DIM: usize = 4;

    fn qkv(device: &Device, seed: u64, seq: usize) -> Tensor<4> {
        device.seed(seed);
        Tensor::random(
            [2, HEADS, seq, HEAD_DIM],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    }

    fn dims(max_len: usize, dropout: f64) -> MixerDims {
        MixerDims::new(HEADS * HEAD_DIM, HEADS, max_len).with_dropout(dropout)
    }

    fn mixer(config: SinkhornConfig, max_len: usize, device: &Device) -> SinkhornAttention {
        device.seed(0);
        crate::init_now(config.init(&dims(max_len, 0.0), device))
    }

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn sinkhorn_makes_rows_and_columns_sum_to_one() {
        let device = Device::flex();
        device.seed(5);
        let logits = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(0.0, 2.0), &device);
        // Columns are normalised last: exact after any number of rounds.
        let one_round = sinkhorn(logits.clone(), 1);
        let ones = Tensor::<4>::ones([2, 3, 1, 6], &device);
        assert!(max_abs_diff(one_round.sum_dim(2), ones.clone()) < 1e-5);
        // Rows converge to 1 as well: a doubly stochastic matrix.
        let iters = 20;
        let p = sinkhorn(logits, iters);
        assert!(p.clone().greater_elem(0.0).all().into_scalar::<bool>());
        let col_err = max_abs_diff(p.clone().sum_dim(2), ones.clone());
        let row_err = max_abs_diff(p.sum_dim(3), ones.reshape([2, 3, 6, 1]));
        assert!(
            col_err < 1e-3,
            "columns off by {col_err} after {iters} rounds"
        );
        assert!(row_err < 1e-3, "rows off by {row_err} after {iters} rounds");
    }

    #[test]
    fn one_block_covering_the_sequence_reduces_to_softmax_attention() {
        // With one block, P = [[1]]: the sorted block is the block itself. Joint: one softmax over
        // the same keys twice, i.e. softmax attention. Sum (LRA): two exact softmax attentions.
        let device = Device::flex();
        let seq = 16;
        let (q, k, v) = (
            qkv(&device, 1, seq),
            qkv(&device, 2, seq),
            qkv(&device, 3, seq),
        );
        let mask = pad_mask(&device, seq, 11);
        let softmax = softmax_attention(q.clone(), k.clone(), v.clone(), Some(mask.clone()));
        for (combine, factor) in [(Combine::Joint, 1.0), (Combine::Sum, 2.0)] {
            for sort_activation in [
                SortActivation::Softmax,
                SortActivation::Sinkhorn,
                SortActivation::GumbelSinkhorn,
            ] {
                let config = SinkhornConfig {
                    block_size: 64,
                    sort_activation,
                    sinkhorn_iters: 3,
                    temperature: 0.5,
                    combine,
                };
                let actual = mixer(config, seq, &device).core.attend(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    Some(mask.clone()),
                );
                let expected = softmax.clone() * factor;
                actual
                    .to_data()
                    .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
            }
        }
    }

    #[test]
    fn hard_permutation_pairs_each_block_with_its_matched_block() {
        let device = Device::flex();
        let (seq, w, real) = (14, 5, 12); // blocks [0,5) [5,10) [10,14) + one tail slot
        let (q, k, v) = (
            qkv(&device, 1, seq),
            qkv(&device, 2, seq),
            qkv(&device, 3, seq),
        );
        let mask = pad_mask(&device, seq, real);
        // matched[h][i]: the key block that query block i is sorted to, per head.
        let matched = [[2, 0, 1], [1, 1, 2]]; // head 1: not a bijection, still a hard choice
        let mut perm = vec![0f32; 2 * HEADS * 9];
        for b in 0..2 {
            for (h, row) in matched.iter().enumerate() {
                for (i, &j) in row.iter().enumerate() {
                    perm[((b * HEADS + h) * 3 + i) * 3 + j] = 1.0;
                }
            }
        }
        let perm = Tensor::<4>::from_data(TensorData::new(perm, [2, HEADS, 3, 3]), &device);
        let config = SinkhornConfig {
            block_size: w,
            ..SinkhornConfig::default()
        };
        let attention = mixer(config, seq, &device);
        let blocks = attention
            .core
            .blocks(q.clone(), k.clone(), v.clone(), Some(mask.clone()));
        let actual = attention.core.block_attention(blocks, perm);

        let span = |i: usize| (i * w, w.min(seq - i * w));
        for (h, row) in matched.iter().enumerate() {
            for (i, &j) in row.iter().enumerate() {
                let head = |x: &Tensor<4>| x.clone().narrow(1, h, 1);
                let (qs, ql) = span(i);
                let (ks, kl) = span(j);
                let own = softmax_attention(
                    head(&q).narrow(2, qs, ql),
                    head(&k).narrow(2, qs, ql),
                    head(&v).narrow(2, qs, ql),
                    Some(mask.clone().narrow(1, qs, ql)),
                );
                let sorted = softmax_attention(
                    head(&q).narrow(2, qs, ql),
                    head(&k).narrow(2, ks, kl),
                    head(&v).narrow(2, ks, kl),
                    Some(mask.clone().narrow(1, ks, kl)),
                );
                let got = head(&actual).narrow(2, qs, ql);
                got.to_data()
                    .assert_approx_eq::<f32>(&(own + sorted).to_data(), Tolerance::absolute(1e-5));
            }
        }
    }

    #[test]
    fn sorting_matrix_rows_are_distributions_over_blocks() {
        let device = Device::flex();
        let seq = 23; // 5 blocks of 5, the last one partial
        let (q, k, v) = (
            qkv(&device, 1, seq),
            qkv(&device, 2, seq),
            qkv(&device, 3, seq),
        );
        for (sort_activation, iters) in
            [(SortActivation::Softmax, 1), (SortActivation::Sinkhorn, 30)]
        {
            let config = SinkhornConfig {
                block_size: 5,
                sort_activation,
                sinkhorn_iters: iters,
                temperature: 1.0,
                combine: Combine::Sum,
            };
            let attention = mixer(config, seq, &device);
            let blocks = attention.core.blocks(
                q.clone(),
                k.clone(),
                v.clone(),
                Some(pad_mask(&device, seq, 13)),
            );
            let p = attention.core.sorting_matrix(&blocks);
            assert_eq!(p.dims(), [2, HEADS, 5, 5]);
            let ones = Tensor::<4>::ones([2, HEADS, 5, 1], &device);
            assert!(
                max_abs_diff(p.sum_dim(3), ones) < 1e-3,
                "{sort_activation:?}"
            );
        }
    }

    #[test]
    fn gumbel_noise_only_in_training_and_follows_the_device_seed() {
        let device = Device::flex().autodiff();
        let config = SinkhornConfig {
            block_size: 4,
            sort_activation: SortActivation::GumbelSinkhorn,
            sinkhorn_iters: 5,
            temperature: 0.75,
            combine: Combine::Sum,
        };
        let attention = mixer(config, 16, &device);
        device.seed(9);
        let x = Tensor::<3>::random(
            [2, 16, HEADS * HEAD_DIM],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        assert_random_only_in_training(&attention, x, "Gumbel noise");
    }

    #[test]
    fn validation_names_the_bad_field() {
        let dims = dims(64, 0.0);
        let bad = [
            (
                "block_size",
                SinkhornConfig {
                    block_size: 0,
                    ..Default::default()
                },
            ),
            (
                "sinkhorn_iters",
                SinkhornConfig {
                    sinkhorn_iters: 0,
                    ..Default::default()
                },
            ),
            (
                "temperature",
                SinkhornConfig {
                    temperature: 0.0,
                    ..Default::default()
                },
            ),
            (
                "temperature",
                SinkhornConfig {
                    temperature: f64::NAN,
                    ..Default::default()
                },
            ),
        ];
        for (field, config) in bad {
            let error = config.validate(&dims).unwrap_err();
            assert!(error.contains(field), "{error}");
        }
        assert!(SinkhornConfig::default().validate(&dims).is_ok());
    }

    #[test]
    fn config_parses_the_sort_activation_names() {
        let table: toml::Table = toml::from_str("sort_activation = \"gumbel_sinkhorn\"").unwrap();
        let config: SinkhornConfig = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(config.sort_activation, SortActivation::GumbelSinkhorn);
        assert_eq!(config.block_size, 50);
        let table: toml::Table = toml::from_str("sort = \"softmax\"").unwrap();
        assert!(
            toml::Value::Table(table)
                .try_into::<SinkhornConfig>()
                .is_err()
        );
        // The registry's table of the defaults parses back to the defaults.
        let kind = crate::MixerKind::Sinkhorn;
        let table = kind.default_config().to_table();
        assert_eq!(table["sort_activation"].as_str(), Some("softmax"));
        assert_eq!(kind.parse_config(&table).unwrap(), kind.default_config());
    }
}
