//! MRA attention: Zeng, Pal, Cheng, Wang, Singh, Ravi and Lin 2022, "Multi Resolution Analysis
//! (MRA) for Approximate Self-Attention", ICML (<https://arxiv.org/abs/2207.10284>). Variant
//! MRA-2 (two resolutions: blocks of `w` tokens and single tokens).
//!
//! 1. Low resolution: block means `Q̂, K̂, V̂` over blocks of `w` tokens (padding excluded, each
//!    mean divided by the block's real-token count) and the `[n/w, n/w]` logits `L = Q̂K̂ᵀ/√d`.
//! 2. Selection: the `(n/w)·block_per_row` block pairs with the largest `L − rowmax(L)` over the
//!    *whole* matrix (one top-k per batch row and head, as the official code), with the prior
//!    blocks (first block-rows/columns, a diagonal band) lifted by +5e3 so they are always kept.
//! 3. High resolution: exact scores `QKᵀ/√d` on the selected `[w, w]` blocks only, gathered and
//!    multiplied as one batched matmul, then scatter-added into their query rows.
//! 4. `full` mode (MRA-2): every unselected pair `(I, J)` contributes `exp(L_IJ)·count_J` with the
//!    value `V̂_J` to every query of block `I` ("exp of the mean", the paper's approximation);
//!    `sparse` mode (MRA-2-s) keeps only the selected blocks. Output = numerator / denominator.
//!
//! Complexity: O((n/w)²·d + n·block_per_row·w·d) time, O((n/w)² + n·block_per_row·w) memory.
//!
//! Official code checked: mlpen/mra-attention `old_code/LRA/encoders/mra2.py`,
//! `old_code/LRA/encoders/mra2_kernel/attention.py` (algorithm) and the LRA configs
//! `old_code/LRA/models/mra2/*/config.json`. Written from that description, not copied.
//!
//! Deviations, and why:
//! - No CUDA block-sparse kernels: the selected blocks are gathered with `select`, scored with one
//!   batched matmul and scatter-added back, which costs the same O(k·w²·d).
//! - Sequences that are not a multiple of `w` are padded at the end (masked like padding); the
//!   official code requires `n % 32 == 0`.
//! - High- and low-resolution parts are shifted by their own maxima (a per-query maximum over the
//!   selected blocks, the block-row maximum of `L`) and rescaled to the larger of the two, as the
//!   official `log_correction`; the shifts are constants for autodiff (they cancel exactly).
//! - Padded keys get the project's `PAD_BIAS` instead of −1e4 (both underflow `exp` to 0).
//! - No attention dropout (the official MRA-2 module has none); `MixerDims::dropout` is unused.
//! - The 2-D token permutation the official code applies to CIFAR images is not done: the mixer
//!   sees a flat sequence.

use burn::module::Module;
use burn::tensor::{Bool, Device, IndexingUpdateOp, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::common::reference::PAD_BIAS;
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Added to the selection score of prior blocks so that top-k always keeps them (official value).
const PRIOR_BONUS: f32 = 5e3;
/// Low-resolution logit offset of block pairs with no real token (official value).
const EMPTY_PAIR_PENALTY: f32 = 1e4;
/// Keeps block means and the final division finite for all-padding blocks / rows.
const EPS: f64 = 1e-6;

/// What the unselected block pairs contribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MraMode {
    /// MRA-2: low-resolution attention for every unselected block pair.
    Full,
    /// MRA-2-s: nothing; the low resolution only picks the blocks.
    Sparse,
}

/// Settings of [`MraAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MraConfig {
    /// Tokens per block `w`. Default: 32 (official `mra2.py`, block size fixed to 32).
    pub block_size: usize,
    /// High-resolution blocks per block-row on average: `(n/w)·block_per_row` are kept in total.
    /// Default: 8 (official LRA configs `models/mra2/8/config.json`, `8-s`).
    pub block_per_row: usize,
    /// `full` (MRA-2) or `sparse` (MRA-2-s). Default: `full` (the paper's main variant).
    pub mode: MraMode,
    /// Leading block-rows and block-columns always kept at high resolution. Default: 1 (every
    /// official LRA config: `initial_prior_first_n_blocks = 1`).
    pub prior_first_blocks: usize,
    /// Width of the diagonal band of blocks always kept (`|I − J| ≤ width / 2`; 0 = none).
    /// Default: 1 (official Text/Retrieval configs, `initial_prior_diagonal_n_blocks = 1`).
    pub prior_diagonal_blocks: usize,
}

impl Default for MraConfig {
    fn default() -> Self {
        Self {
            block_size: 32,
            block_per_row: 8,
            mode: MraMode::Full,
            prior_first_blocks: 1,
            prior_diagonal_blocks: 1,
        }
    }
}

impl MixerSpec for MraConfig {
    type Mixer = MraAttention;
    const SUMMARY: &'static str =
        "MRA-2: low-resolution block scores pick the blocks computed at full resolution";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("block_size", self.block_size)?;
        at_least_one("block_per_row", self.block_per_row)?;
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> MraAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            MraCore {
                block_size: self.block_size,
                block_per_row: self.block_per_row,
                mode: self.mode,
                prior_first_blocks: self.prior_first_blocks,
                prior_diagonal_blocks: self.prior_diagonal_blocks,
            },
        )
    }
}

/// Multi-head MRA-2 attention.
pub type MraAttention = Attention<MraCore>;

/// The attention core of [`MraAttention`].
#[derive(Module, Debug)]
pub struct MraCore {
    block_size: usize,
    block_per_row: usize,
    #[module(skip)]
    mode: MraMode,
    prior_first_blocks: usize,
    prior_diagonal_blocks: usize,
}

impl AttentionCore for MraCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = q.dims();
        let w = self.block_size.min(seq);
        let blocks = seq.div_ceil(w);
        let padded = blocks * w;
        let device = q.device();
        let is_pad = pad_mask
            .map(|mask| mask.float())
            .unwrap_or_else(|| Tensor::zeros([batch, seq], &device));
        let is_pad = extend_seq(is_pad.reshape([batch, 1, seq, 1]), padded, 1.0); // [b, 1, p, 1]
        let real = is_pad.clone().neg() + 1.0;
        let g = Grid {
            rows: batch * heads,
            blocks,
            w,
            head_dim,
        };
        // Padded tokens are zeroed so that they drop out of the block sums.
        let to_blocks = |x: Tensor<4>| g.blocked(extend_seq(x, padded, 0.0) * real.clone());
        let (qb, kb, vb) = (to_blocks(q), to_blocks(k), to_blocks(v)); // [bh, nb, w, d]
        let key_pad = g.blocked(is_pad.expand([batch, heads, padded, 1])); // [bh, nb, w, 1]
        let count = real
            .reshape([batch, 1, blocks, w])
            .sum_dim(3)
            .expand([batch, heads, blocks, 1])
            .reshape([g.rows, blocks, 1]); // real tokens per block
        let low = LowResolution::new(&g, &qb, &kb, &vb, count);
        let selected = self.select_blocks(&g, &low.logits, &device); // [bh, k]
        let high = g.high_resolution(qb, kb, vb, key_pad, &selected);
        let (num, den) = match self.mode {
            MraMode::Sparse => (high.num, high.den),
            MraMode::Full => combine(&g, high, low.unselected(&g, &selected)),
        };
        (num / (den + EPS))
            .reshape([batch, heads, padded, head_dim])
            .narrow(2, 0, seq)
    }
}

impl MraCore {
    /// Flat indices `I·nb + J` `[bh, k]` of the kept block pairs: top-k of `L − rowmax(L)` plus
    /// the prior bonus over all `nb²` pairs of each batch row and head.
    fn select_blocks(&self, g: &Grid, logits: &Tensor<3>, device: &Device) -> Tensor<2, Int> {
        let nb = g.blocks;
        let kept = (nb * self.block_per_row).min(nb * nb);
        let logits = logits.clone().detach();
        let score = logits.clone() - logits.max_dim(2) + self.prior(nb, device) * PRIOR_BONUS;
        let (_, indices) = score.reshape([g.rows, nb * nb]).topk_with_indices(kept, 1);
        indices
    }

    /// `[1, nb, nb]` indicator of the prior blocks.
    fn prior(&self, nb: usize, device: &Device) -> Tensor<3> {
        let band = self.prior_diagonal_blocks / 2;
        let prior: Vec<f32> = (0..nb * nb)
            .map(|flat| {
                let (i, j) = (flat / nb, flat % nb);
                let first = i < self.prior_first_blocks || j < self.prior_first_blocks;
                let diagonal = self.prior_diagonal_blocks > 0 && i.abs_diff(j) <= band;
                f32::from(u8::from(first || diagonal))
            })
            .collect();
        Tensor::from_data(TensorData::new(prior, [1, nb, nb]), device)
    }
}

/// Block geometry of one call: `rows = batch·heads` independent attention problems, each of
/// `blocks` blocks of `w` tokens.
struct Grid {
    rows: usize,
    blocks: usize,
    w: usize,
    head_dim: usize,
}

/// Numerator `[bh·nb, w, d]` and denominator `[bh·nb, w, 1]` of one part, shifted by `shift`
/// (`exp(score − shift)`), which broadcasts against the denominator.
struct Part {
    num: Tensor<3>,
    den: Tensor<3>,
    shift: Tensor<3>,
}

impl Grid {
    /// `[b, h, p, x]` → `[bh, nb, w, x]`.
    fn blocked(&self, x: Tensor<4>) -> Tensor<4> {
        let width = x.dims()[3];
        x.reshape([self.rows, self.blocks, self.w, width])
    }

    /// Indices into `[bh·nb, ..]` of the query (row) and key (column) blocks of each selected
    /// pair, flattened to `[bh·k]`.
    fn pair_rows(&self, selected: &Tensor<2, Int>) -> (Tensor<1, Int>, Tensor<1, Int>) {
        let [rows, kept] = selected.dims();
        let nb = self.blocks as i64;
        let base = Tensor::<1, Int>::arange(0..rows as i64, &selected.device())
            .reshape([rows, 1])
            .mul_scalar(nb);
        let query = (base.clone() + selected.clone().div_scalar(nb)).reshape([rows * kept]);
        let key = (base + selected.clone().remainder_scalar(nb)).reshape([rows * kept]);
        (query, key)
    }

    /// Exact attention restricted to the selected `[w, w]` blocks, summed per query row.
    fn high_resolution(
        &self,
        qb: Tensor<4>,
        kb: Tensor<4>,
        vb: Tensor<4>,
        key_pad: Tensor<4>,
        selected: &Tensor<2, Int>,
    ) -> Part {
        let (w, d) = (self.w, self.head_dim);
        let flat_blocks = self.rows * self.blocks;
        let (query_rows, key_rows) = self.pair_rows(selected);
        let gather = |x: Tensor<4>, rows: &Tensor<1, Int>, width| {
            x.reshape([flat_blocks, w, width]).select(0, rows.clone())
        };
        let q = gather(qb, &query_rows, d) / (d as f64).sqrt(); // [bh·k, w, d]
        let k = gather(kb, &key_rows, d);
        let v = gather(vb, &key_rows, d);
        let bias = gather(key_pad, &key_rows, 1).swap_dims(1, 2) * PAD_BIAS; // [bh·k, 1, w]
        let scores = q.matmul(k.swap_dims(1, 2)) + bias; // [bh·k, w, w]
        // Per-query maximum over all selected blocks of its row: a constant shift, so detached.
        let block_max = scores.clone().detach().max_dim(2); // [bh·k, w, 1]
        let shift = Tensor::<3>::full([flat_blocks, w, 1], PAD_BIAS, &block_max.device())
            .select_assign(0, query_rows.clone(), block_max, IndexingUpdateOp::Max);
        let weights = (scores - shift.clone().select(0, query_rows.clone())).exp();
        let zeros = |width| Tensor::<3>::zeros([flat_blocks, w, width], &shift.device());
        let num = zeros(d).select_assign(
            0,
            query_rows.clone(),
            weights.clone().matmul(v),
            IndexingUpdateOp::Add,
        );
        let den = zeros(1).select_assign(0, query_rows, weights.sum_dim(2), IndexingUpdateOp::Add);
        Part { num, den, shift }
    }
}

/// Block means and low-resolution logits.
struct LowResolution {
    /// `L = Q̂K̂ᵀ/√d`, with −1e4 where either block has no real token: `[bh, nb, nb]`.
    logits: Tensor<3>,
    /// `V̂` `[bh, nb, d]`.
    values: Tensor<3>,
    /// Real tokens per key block, `[bh, 1, nb]`.
    key_count: Tensor<3>,
}

impl LowResolution {
    fn new(g: &Grid, qb: &Tensor<4>, kb: &Tensor<4>, vb: &Tensor<4>, count: Tensor<3>) -> Self {
        let (rows, nb, d) = (g.rows, g.blocks, g.head_dim);
        let mean =
            |x: &Tensor<4>| x.clone().sum_dim(2).reshape([rows, nb, d]) / (count.clone() + EPS);
        let (q, k) = (mean(qb), mean(kb));
        let non_empty = count.clone().greater_elem(0.5).float(); // [bh, nb, 1]
        let key_count = count.clone().swap_dims(1, 2);
        let pair = non_empty.clone().matmul(non_empty.swap_dims(1, 2)); // [bh, nb, nb]
        let logits = q.matmul(k.swap_dims(1, 2)) / (d as f64).sqrt()
            + (pair.neg() + 1.0) * (-EMPTY_PAIR_PENALTY);
        let values = mean(vb);
        Self {
            logits,
            values,
            key_count,
        }
    }

    /// The low-resolution part over the unselected pairs: each stands for `count_J` keys with
    /// value `V̂_J`; every query of block `I` receives the block row's sums.
    fn unselected(self, g: &Grid, selected: &Tensor<2, Int>) -> Part {
        let (rows, nb) = (g.rows, g.blocks);
        let device = selected.device();
        let kept = selected.dims()[1];
        let chosen = Tensor::<2>::zeros([rows, nb * nb], &device).scatter(
            1,
            selected.clone(),
            Tensor::ones([rows, kept], &device),
            IndexingUpdateOp::Assign,
        );
        let shift = self.logits.clone().detach().max_dim(2); // [bh, nb, 1]
        let weights = (self.logits - shift.clone()).exp()
            * self.key_count
            * (chosen.reshape([rows, nb, nb]).neg() + 1.0);
        let num = weights.clone().matmul(self.values); // [bh, nb, d]
        let den = weights.sum_dim(2); // [bh, nb, 1]
        let flat = rows * nb;
        Part {
            num: num.reshape([flat, 1, g.head_dim]),
            den: den.reshape([flat, 1, 1]),
            shift: shift.reshape([flat, 1, 1]),
        }
    }
}

/// Sum of two parts after rescaling both to the larger of their shifts.
fn combine(g: &Grid, high: Part, low: Part) -> (Tensor<3>, Tensor<3>) {
    let low_shift = low.shift.expand([g.rows * g.blocks, g.w, 1]);
    let common = high.shift.clone().max_pair(low_shift.clone());
    let high_scale = (high.shift - common.clone()).exp();
    let low_scale = (low_shift - common).exp();
    (
        high.num * high_scale.clone() + low.num * low_scale.clone(),
        high.den * high_scale + low.den * low_scale,
    )
}

/// Extends axis 2 of `x` to `len` with `value`.
fn extend_seq(x: Tensor<4>, len: usize, value: f32) -> Tensor<4> {
    let mut dims = x.dims();
    let missing = len - dims[2];
    if missing == 0 {
        return x;
    }
    dims[2] = missing;
    let fill = Tensor::<4>::full(dims, value, &x.device());
    Tensor::cat(vec![x, fill], 2)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;
    use crate::mixer::common::reference::{relative_error, softmax_attention};
    use crate::mixer::common::testing::{gaussian, pad_mask, spoil_padding};

    fn mra(config: MraConfig, device: &Device) -> MraAttention {
        let dims = MixerDims::new(16, 2, 256);
        config.init(&dims, device)
    }

    fn qkv(device: &Device, seq: usize) -> [Tensor<4>; 3] {
        [1, 2, 3].map(|seed| gaussian(device, seed, [2, 2, seq, 8]))
    }

    #[test]
    fn budget_covering_all_blocks_is_softmax_attention() {
        let device = Device::flex();
        let seq = 100; // 4 blocks of 32, the last one partial
        let [q, k, v] = qkv(&device, seq);
        let pad = pad_mask(&device, seq, 70);
        for mode in [MraMode::Full, MraMode::Sparse] {
            let config = MraConfig {
                block_per_row: 4,
                mode,
                prior_first_blocks: 0,
                prior_diagonal_blocks: 0,
                ..MraConfig::default()
            };
            let actual = mra(config, &device).core.attend(
                q.clone(),
                k.clone(),
                v.clone(),
                Some(pad.clone()),
            );
            let expected = softmax_attention(q.clone(), k.clone(), v.clone(), Some(pad.clone()));
            // Padded queries are zeroed (their outputs are unused), so compare real positions.
            let real = |x: Tensor<4>| x.narrow(2, 0, 70);
            real(actual)
                .to_data()
                .assert_approx_eq::<f32>(&real(expected).to_data(), Tolerance::absolute(1e-5));
        }
    }

    /// With one high-resolution block per row (the diagonal prior), the rest of each row is the
    /// low-resolution formula, checked against a dense computation of the same formula.
    #[test]
    fn unselected_blocks_follow_the_low_resolution_formula() {
        let device = Device::flex();
        let (seq, w) = (64, 16);
        let [q, k, v] = qkv(&device, seq);
        let config = MraConfig {
            block_size: w,
            block_per_row: 1,
            mode: MraMode::Full,
            prior_first_blocks: 0,
            prior_diagonal_blocks: 1,
        };
        let actual = mra(config, &device)
            .core
            .attend(q.clone(), k.clone(), v.clone(), None);

        // Dense reference: score exp(q_i·k_j/√d) inside diagonal blocks, exp(Q̂_I·K̂_J/√d)
        // elsewhere, each unselected key weighted by V̂_J (the means broadcast to the tokens).
        let nb = seq / w;
        let block_mean = |x: Tensor<4>| {
            x.reshape([2, 2, nb, w, 8])
                .mean_dim(3)
                .expand([2, 2, nb, w, 8])
                .reshape([2, 2, seq, 8])
        };
        let scale = 8f64.sqrt();
        let exact = q.clone().matmul(k.clone().swap_dims(2, 3)) / scale;
        let coarse = block_mean(q).matmul(block_mean(k).swap_dims(2, 3)) / scale;
        let diagonal: Vec<bool> = (0..seq * seq).map(|f| f / seq / w == f % seq / w).collect();
        let diagonal = Tensor::<2, Bool>::from_data(TensorData::new(diagonal, [seq, seq]), &device)
            .reshape([1, 1, seq, seq])
            .expand([2, 2, seq, seq]);
        let scores = coarse.mask_where(diagonal.clone(), exact);
        let weights = (scores.clone() - scores.max_dim(3)).exp();
        let exact_v = v.clone().reshape([2, 2, 1, seq, 8]);
        let coarse_v = block_mean(v).reshape([2, 2, 1, seq, 8]);
        let values = coarse_v.expand([2, 2, seq, seq, 8]).mask_where(
            diagonal
                .reshape([2, 2, seq, seq, 1])
                .expand([2, 2, seq, seq, 8]),
            exact_v.expand([2, 2, seq, seq, 8]),
        ); // [b, h, i, j, d]
        let num = (weights.clone().reshape([2, 2, seq, seq, 1]) * values).sum_dim(3);
        let expected = num.reshape([2, 2, seq, 8]) / weights.sum_dim(3);
        actual
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
    }

    /// Padded keys (any content) change nothing for real queries, also when only some blocks are
    /// kept at high resolution and the block means carry the rest.
    #[test]
    fn padded_keys_do_not_reach_real_queries_with_a_small_budget() {
        let device = Device::flex();
        let (seq, real) = (128, 75);
        let [q, k, v] = qkv(&device, seq);
        let pad = pad_mask(&device, seq, real);
        let spoil = |x: Tensor<4>| spoil_padding(x, &pad, 9);
        let config = MraConfig {
            block_size: 16,
            block_per_row: 2,
            ..MraConfig::default()
        };
        let mixer = mra(config, &device);
        let clean = mixer
            .core
            .attend(q.clone(), k.clone(), v.clone(), Some(pad.clone()));
        let spoilt = mixer.core.attend(spoil(q), spoil(k), spoil(v), Some(pad));
        clean.narrow(2, 0, real).to_data().assert_approx_eq::<f32>(
            &spoilt.narrow(2, 0, real).to_data(),
            Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn error_shrinks_as_the_budget_grows() {
        let device = Device::flex();
        let seq = 256;
        let [q, k, v] = qkv(&device, seq);
        let expected = softmax_attention(q.clone(), k.clone(), v.clone(), None);
        let errors: Vec<f32> = [1, 2, 4, 8]
            .iter()
            .map(|&block_per_row| {
                let config = MraConfig {
                    block_per_row,
                    ..MraConfig::default()
                };
                let actual =
                    mra(config, &device)
                        .core
                        .attend(q.clone(), k.clone(), v.clone(), None);
                relative_error(actual, expected.clone())
            })
            .collect();
        assert!(
            errors.windows(2).all(|pair| pair[1] < pair[0]),
            "errors {errors:?}"
        );
        assert!(errors[3] < 1e-5, "all 8 blocks kept, error {}", errors[3]);
    }
}
