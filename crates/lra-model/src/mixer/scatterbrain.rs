//! Scatterbrain attention ([Scatterbrain: Unifying Sparse and Low-rank Attention
//! Approximation](https://arxiv.org/abs/2110.15343), Chen, Dao, Winsor, Song, Rudra and Ré,
//! NeurIPS 2021), the local-window + Performer form (`SBLocalAttention`).
//!
//! In the robust-PCA view (Candès et al. 2011) the attention matrix is sparse + low-rank: a
//! Performer estimate `L_ij = φ(q_i)·φ(k_j)` of `exp(q_i·k_j/√d)` everywhere, corrected on a
//! sparse support `S` (here a band of `window` keys around each query) by the exact scores:
//!
//! ```text
//! A_ij = exp(q_i·k_j/√d) on S,   L_ij off S
//! out_i = Σ_j A_ij v_j / Σ_j A_ij
//!       = [Σ_{j∈S} (exp(s_ij) − L_ij) v_j + φ(q_i)(φ(K)ᵀV)] / [Σ_{j∈S} exp(s_ij) + φ(q_i)·Σ_j φ(k_j) − Σ_{j∈S} L_ij]
//! ```
//!
//! so only the band is computed exactly (O(n·w·d)) and the low-rank part costs O(n·r·d), without
//! forming any `[n, n]` matrix. The band is computed block-wise: blocks of `⌈w/2⌉` queries score
//! the keys of their own and both neighbouring blocks (`1.5·w` keys per query), masked to the band
//! `i − ⌊w/2⌋ ≤ j < i − ⌊w/2⌋ + w` (the official `local_dot_product` band).
//! Everything is combined in log space as the official code does: the low-rank residual
//! `φ(q_i)·Σφ(k) − Σ_S L_ij` is clamped at 1e-24 (random features are unbiased, not bounded, so
//! it can go negative), `log Z_i = logaddexp(logsumexp_S s_ij, log residual + log scale)`.
//!
//! Official code checked: HazyResearch/fly `src/models/attention/sblocal_attention.py`
//! (`SBLocalAttention.forward`), `feature_maps_sb.py` (`SBPerformerFeatures`),
//! `scatterbrain_utils.py`, `sbblocksparse_attention.py` (the same combination on a block-sparse
//! support, reused here by [`super::pixelfly`] through [`sparse_lowrank_attention`]); LRA settings
//! `configs/experiment/lra/*/sblocal.yaml`.
//!
//! Complexity: O(n·(1.5·w + r)·d) time, O(n·(1.5·w + r)) memory per head.
//!
//! Deviations, and why:
//! - Features: the Performer's positive softmax features of [`super::performer`]
//!   (`exp(W x̃ − ‖x̃‖²/2)/√r` with its stabilisers, reused, not copied) instead of fly's
//!   hyperbolic `[exp(u), exp(−u)]` features (`SBPerformerFeatures`, `2·rows` features); both
//!   are unbiased estimators of `exp(q·k/√d)`. The stabilisers' log-scale (per-query max plus
//!   the per-(batch, head) key max) is recomputed here from the Performer's exponents.
//! - Redraw: fly draws `W` at the first forward and never again (its constructor hard-sets
//!   `redraw = π`, which no call count is a multiple of); here `W` is drawn at init from the
//!   device RNG and kept, the same behaviour without a call counter. It is a constant, not a
//!   parameter.
//! - `nb_features = 0` switches the low-rank term off: plain band softmax (the sparse part
//!   alone, used by the tests; not a setting of the paper).
//! - Dropout, as in the official code, drops only the exact `exp(s − log Z)` terms, never the
//!   subtracted low-rank band estimate.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::linear::kernel_sums;
use super::performer::{
    gaussian_orthogonal_matrix, softmax_exponents, softmax_key_features, softmax_query_features,
};
use super::reference::PAD_BIAS;
use super::{
    AttentionCore, Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, MultiHeadProjection,
    MultiHeadProjectionConfig, TokenMixer, at_least_one,
};

/// Floor of the low-rank residual normaliser (fly `clamp_min_(1e-24)`).
const RESIDUAL_FLOOR: f64 = 1e-24;

/// Settings of [`ScatterbrainAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScatterbrainConfig {
    /// Keys per query in the exact band (`local_context`). Default: 64 (fly
    /// `configs/experiment/lra/*/sblocal.yaml`, `local_context: 64`).
    pub window: usize,
    /// Random features `r` of the low-rank term; 0 turns it off. Default: 32 (fly LRA
    /// `sblocal.yaml`, `nb_features: 32`).
    pub nb_features: usize,
    /// Added to every feature after `exp`. Default: 1e-4 (fly LRA `sblocal.yaml`,
    /// `softmax_eps: 1e-4`).
    pub feature_eps: f64,
}

impl Default for ScatterbrainConfig {
    fn default() -> Self {
        Self {
            window: 64,
            nb_features: 32,
            feature_eps: 1e-4,
        }
    }
}

impl MixerSpec for ScatterbrainConfig {
    type Mixer = ScatterbrainAttention;
    const SUMMARY: &'static str = "Scatterbrain: exact local band + Performer low-rank with the sparse correction, O(n·(w+r)·d)";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("window", self.window)?;
        validate_feature_eps(self.feature_eps)
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> ScatterbrainAttention {
        ScatterbrainAttention {
            heads: MultiHeadProjectionConfig::from_dims(dims).init(device),
            dropout: DropoutConfig::new(dims.dropout).init(),
            projection: draw_features(self.nb_features, dims.head_dim(), device),
            window: self.window,
            feature_eps: self.feature_eps,
        }
    }
}

/// `feature_eps` must be a finite, non-negative number.
pub(crate) fn validate_feature_eps(eps: f64) -> Result<(), String> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(format!(
            "feature_eps must be a finite number ≥ 0, got {eps}"
        ));
    }
    Ok(())
}

/// The fixed Performer projection `[r, head_dim]` (`None` when `r = 0`: no low-rank term).
pub(crate) fn draw_features(rows: usize, head_dim: usize, device: &Device) -> Option<Tensor<2>> {
    (rows > 0).then(|| gaussian_orthogonal_matrix(rows, head_dim, device))
}

/// Multi-head Scatterbrain attention (local band + Performer).
#[derive(Module, Debug)]
pub struct ScatterbrainAttention {
    heads: MultiHeadProjection,
    dropout: Dropout,
    /// `W` `[r, head_dim]` drawn at init: a constant, not a parameter (`None`: sparse part only).
    projection: Option<Tensor<2>>,
    window: usize,
    feature_eps: f64,
}

impl AttentionCore for ScatterbrainAttention {
    fn projection(&self) -> &MultiHeadProjection {
        &self.heads
    }

    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let support = BlockSupport::band(q.dims()[2], self.window);
        let lowrank = self.projection.clone().map(|w| LowRank {
            projection: w,
            eps: self.feature_eps,
        });
        sparse_lowrank_attention(q, k, v, pad_mask, &support, lowrank, &self.dropout)
    }
}

impl TokenMixer for ScatterbrainAttention {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        self.heads.mix(input, self)
    }

    fn attention_core(&self) -> Option<&dyn AttentionCore> {
        Some(self)
    }
}

/// A block-sparse support: the sequence is cut into blocks of `block` tokens; query block `B`
/// scores the key blocks `key_blocks[B·slots .. (B+1)·slots]`, of which only the tokens marked
/// in `keep` count (padding is applied on top).
pub(crate) struct BlockSupport {
    /// Tokens per block `l`.
    pub block: usize,
    /// Blocks `nb = ⌈n/l⌉`.
    pub blocks: usize,
    /// Key blocks gathered per query block `K`.
    pub slots: usize,
    /// `nb·K` key block indices; empty slots repeat a valid index and are zero in `keep`.
    pub key_blocks: Vec<usize>,
    /// Rows of `keep` per query block: `l`, or 1 when all queries of a block keep the same keys.
    pub keep_rows: usize,
    /// `[nb, keep_rows, K·l]` row-major: 1 where query `(B, r)` keeps gathered key `(slot, c)`.
    pub keep: Vec<f32>,
}

impl BlockSupport {
    /// The band `i − ⌊w/2⌋ ≤ j < i − ⌊w/2⌋ + w` of `window = w` keys around each query, from
    /// blocks of `⌈w/2⌉` tokens (capped at `seq`) and their two neighbours.
    pub fn band(seq: usize, window: usize) -> Self {
        let block = window.div_ceil(2).min(seq).max(1);
        let blocks = seq.div_ceil(block);
        let left = window / 2;
        let slots = 3;
        let mut key_blocks = Vec::with_capacity(blocks * slots);
        let mut keep = vec![0f32; blocks * block * slots * block];
        for query_block in 0..blocks {
            for slot in 0..slots {
                // Slot 0 is the previous block, 1 the own block, 2 the next block.
                let key_block = (query_block + slot).checked_sub(1).filter(|&b| b < blocks);
                key_blocks.push(key_block.unwrap_or(query_block));
                let Some(key_block) = key_block else { continue };
                for r in 0..block {
                    let i = query_block * block + r;
                    for c in 0..block {
                        let j = key_block * block + c;
                        if j + left >= i && j + left < i + window {
                            keep[((query_block * block + r) * slots + slot) * block + c] = 1.0;
                        }
                    }
                }
            }
        }
        Self {
            block,
            blocks,
            slots,
            key_blocks,
            keep_rows: block,
            keep,
        }
    }
}

/// The low-rank term: Performer features with the projection `[r, d]` and feature `eps`.
pub(crate) struct LowRank {
    pub projection: Tensor<2>,
    pub eps: f64,
}

/// Sparse + low-rank attention (Scatterbrain): exact `exp` scores on `support`, the Performer
/// estimate everywhere else, jointly normalised; plain softmax over `support` when `lowrank` is
/// `None`. Padded keys are out of the support and have zero features.
///
/// # Shapes
/// - `q`, `k`, `v`: `[b, h, n, d]`; `pad_mask`: `[b, n]` (`true` = padding)
/// - output: `[b, h, n, d]`
pub(crate) fn sparse_lowrank_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    pad_mask: Option<Tensor<2, Bool>>,
    support: &BlockSupport,
    lowrank: Option<LowRank>,
    dropout: &Dropout,
) -> Tensor<4> {
    let [batch, heads, seq, head_dim] = q.dims();
    let device = q.device();
    let (l, nb, slots) = (support.block, support.blocks, support.slots);
    let padded = nb * l;
    let gather = Gather::new(support, &device);

    // Keys kept by each query: the structure times the realness of the gathered keys (keys past
    // the end of the sequence are padding).
    let is_pad = pad_mask
        .clone()
        .map(|mask| mask.float())
        .unwrap_or_else(|| Tensor::zeros([batch, seq], &device)); // [b, n]
    let real = pad_tail(is_pad, padded, 1.0).neg().add_scalar(1.0); // [b, n']
    let real = gather.keys(real.reshape([batch, 1, padded, 1])); // [b, 1, nb, K·l, 1]
    let structure = Tensor::<3>::from_data(
        TensorData::new(support.keep.clone(), [nb, support.keep_rows, slots * l]),
        &device,
    )
    .unsqueeze::<5>(); // [1, 1, nb, l or 1, K·l]
    let keep = structure * real.swap_dims(3, 4); // [b, 1, nb, l or 1, K·l]

    let to_blocks = |x: Tensor<4>| {
        let width = x.dims()[3];
        pad_tail(x, padded, 0.0).reshape([batch, heads, nb, l, width])
    };
    let from_blocks = |x: Tensor<5>| {
        let width = x.dims()[4];
        x.reshape([batch, heads, padded, width]).narrow(2, 0, seq)
    };
    let scale = (head_dim as f64).powf(-0.5);
    let k_kept = gather.keys(pad_tail(k.clone(), padded, 0.0)); // [b, h, nb, K·l, d]
    let v_kept = gather.keys(pad_tail(v.clone(), padded, 0.0)); // [b, h, nb, K·l, d]
    let scores = to_blocks(q.clone()).matmul(k_kept.swap_dims(3, 4)) * scale
        + (keep.clone().neg().add_scalar(1.0) * PAD_BIAS); // [b, h, nb, l, K·l]

    let Some(LowRank { projection, eps }) = lowrank else {
        let probs = dropout.forward(softmax(scores, 4));
        return from_blocks(probs.matmul(v_kept));
    };

    let phi_q = softmax_query_features(q.clone(), projection.clone(), eps); // [b, h, n, r]
    let phi_k = softmax_key_features(k.clone(), projection.clone(), pad_mask.clone(), eps);
    let log_scale = feature_log_scale(q, k, projection, pad_mask); // [b, h, n, 1]
    let (numerator, normaliser) = kernel_sums(phi_q.clone(), phi_k.clone(), v); // all keys
    let phi_k_kept = gather.keys(pad_tail(phi_k, padded, 0.0)); // [b, h, nb, K·l, r]
    let estimates = to_blocks(phi_q).matmul(phi_k_kept.swap_dims(3, 4)) * keep; // L on S

    let log_scale = to_blocks(log_scale); // [b, h, nb, l, 1]
    let residual = (to_blocks(normaliser) - estimates.clone().sum_dim(4)).clamp_min(RESIDUAL_FLOOR);
    // The row max cancels; `exp(s − max)` serves both the log-sum-exp and the exact weights.
    let max = scores.clone().max_dim(4).detach(); // [b, h, nb, l, 1]
    let shifted = (scores - max.clone()).exp();
    let log_sum = shifted.clone().sum_dim(4).log() + max.clone();
    let log_norm = log_add_exp(log_sum, residual.log() + log_scale.clone()); // log Z
    let lowrank_scale = (log_scale - log_norm.clone()).exp(); // [b, h, nb, l, 1]
    let exact = dropout.forward(shifted * (max - log_norm).exp());
    let weights = exact - estimates * lowrank_scale.clone();
    from_blocks(weights.matmul(v_kept) + to_blocks(numerator) * lowrank_scale)
}

/// `log` of the factor the stabilised features carry: `φ(q_i)·φ(k_j)·exp(log_scale_i)` estimates
/// `exp(q_i·k_j/√d)`. The Performer's query features subtract each query's max projection, its
/// key features one max over the real keys of a (batch, head); this is their sum `[b, h, n, 1]`.
fn feature_log_scale(
    q: Tensor<4>,
    k: Tensor<4>,
    projection: Tensor<2>,
    pad_mask: Option<Tensor<2, Bool>>,
) -> Tensor<4> {
    let (u_q, _) = softmax_exponents(q, projection.clone());
    let (u_k, _) = softmax_exponents(k, projection);
    let u_k = match pad_mask {
        Some(mask) => {
            let [batch, seq] = mask.dims();
            let pad = mask.reshape([batch, 1, seq, 1]).expand(u_k.dims());
            u_k.mask_fill(pad, PAD_BIAS)
        }
        None => u_k,
    };
    u_q.max_dim(3) + u_k.max_dim(3).max_dim(2)
}

/// Stable elementwise `log(exp(a) + exp(b))`.
fn log_add_exp(a: Tensor<5>, b: Tensor<5>) -> Tensor<5> {
    let max = a.clone().max_pair(b.clone()).detach();
    ((a - max.clone()).exp() + (b - max.clone()).exp()).log() + max
}

/// Gathers, for every query block, the key blocks of a [`BlockSupport`].
struct Gather {
    indices: Tensor<1, Int>,
    blocks: usize,
    block: usize,
    slots: usize,
}

impl Gather {
    fn new(support: &BlockSupport, device: &Device) -> Self {
        let indices: Vec<i64> = support.key_blocks.iter().map(|&b| b as i64).collect();
        Self {
            indices: Tensor::from_data(
                TensorData::new(indices, [support.key_blocks.len()]),
                device,
            ),
            blocks: support.blocks,
            block: support.block,
            slots: support.slots,
        }
    }

    /// `[x, y, nb·l, z]` → `[x, y, nb, K·l, z]`: the rows of the key blocks of each query block.
    fn keys(&self, x: Tensor<4>) -> Tensor<5> {
        let [d0, d1, _, width] = x.dims();
        let (nb, l, slots) = (self.blocks, self.block, self.slots);
        x.reshape([d0, d1, nb, l, width])
            .select(2, self.indices.clone()) // [x, y, nb·K, l, z]
            .reshape([d0, d1, nb, slots * l, width])
    }
}

/// Extends the sequence axis (axis 2 for 4-D, axis 1 for 2-D) to `len` with `value`.
fn pad_tail<const D: usize>(x: Tensor<D>, len: usize, value: f32) -> Tensor<D> {
    let axis = if D == 4 { 2 } else { 1 };
    let mut dims = x.dims();
    let missing = len - dims[axis];
    if missing == 0 {
        return x;
    }
    dims[axis] = missing;
    let fill = Tensor::<D>::full(dims, value, &x.device());
    Tensor::cat(vec![x, fill], axis)
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::mixer::performer::{favor_attention, softmax_features_unstabilised};
    use crate::mixer::reference::{attention_probs, relative_error, softmax_attention};
    use crate::mixer::testing::{gaussian, pad_mask};

    fn dims() -> MixerDims {
        MixerDims::new(16, 2, 64)
    }

    fn scatterbrain(config: ScatterbrainConfig, device: &Device) -> ScatterbrainAttention {
        config.validate(&dims()).expect("valid test config");
        device.seed(5);
        crate::init_now(config.init(&dims(), device))
    }

    /// Whether query `i` sees key `j` in the band of `window` keys (fly `local_dot_product`).
    fn in_band(window: usize, i: usize, j: usize) -> bool {
        let left = window / 2;
        j + left >= i && j + left < i + window
    }

    /// `[2, 1, n, n]`: 1 where query `i` keeps key `j` (band and real), 0 elsewhere.
    fn band_keep(window: usize, seq: usize, real: usize, device: &Device) -> Tensor<4> {
        let keep: Vec<f32> = (0..2 * seq * seq)
            .map(|x| {
                let (b, i, j) = (x / (seq * seq), x / seq % seq, x % seq);
                let padded = b == 1 && j >= real;
                f32::from(u8::from(in_band(window, i, j) && !padded))
            })
            .collect();
        Tensor::from_data(TensorData::new(keep, [2, 1, seq, seq]), device)
    }

    /// Output and q/k/v gradients of `actual` equal those of `expected` on the same inputs.
    pub(crate) fn assert_same_output_and_gradients(
        seq: usize,
        head_dim: usize,
        tolerance: f32,
        actual: impl Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
        expected: impl Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
    ) {
        let device = Device::flex().autodiff();
        let shape = [2, 2, seq, head_dim];
        let data: Vec<_> = (1..=4)
            .map(|s| gaussian(&device, s, shape).into_data())
            .collect();
        let leaves =
            || [0, 1, 2].map(|i| Tensor::<4>::from_data(data[i].clone(), &device).require_grad());
        let weights = Tensor::<4>::from_data(data[3].clone(), &device);
        let [q1, k1, v1] = leaves();
        let out1 = actual(q1.clone(), k1.clone(), v1.clone());
        let grads1 = (out1.clone() * weights.clone()).sum().backward();
        let [q2, k2, v2] = leaves();
        let out2 = expected(q2.clone(), k2.clone(), v2.clone());
        let grads2 = (out2.clone() * weights).sum().backward();
        let close = |what: &str, a: Tensor<4>, b: Tensor<4>| {
            eprintln!("seq {seq}: {what}"); // shown if the assertion fails
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(tolerance));
        };
        close("output", out1, out2);
        for (name, a, b) in [("q", q1, q2), ("k", k1, k2), ("v", v1, v2)] {
            let grad = |x: Tensor<4>, g| x.grad(g).expect("gradient");
            close(&format!("grad {name}"), grad(a, &grads1), grad(b, &grads2));
        }
    }

    /// With the low-rank term off, Scatterbrain is softmax over the band: equal to dense softmax
    /// with the band mask (outputs and input gradients), also for odd windows, a partial last
    /// block, windows longer than the sequence and padding (every query keeps a real key: rows
    /// with none are arbitrary in both).
    #[test]
    fn sparse_part_equals_dense_softmax_with_the_band_mask() {
        for (seq, real, window) in [(23, 21, 6), (23, 23, 5), (20, 13, 64), (3, 2, 4), (9, 9, 1)] {
            let config = ScatterbrainConfig {
                window,
                nb_features: 0,
                ..Default::default()
            };
            let device = Device::flex().autodiff();
            let module = scatterbrain(config, &device);
            let mask = pad_mask(&device, seq, real);
            assert_same_output_and_gradients(
                seq,
                4,
                1e-5,
                |q, k, v| module.attend(q, k, v, Some(mask.clone())),
                |q, k, v| {
                    let keep = band_keep(window, seq, real, &device);
                    let bias = (keep.neg() + 1.0) * PAD_BIAS;
                    attention_probs(q, k, Some(bias)).matmul(v)
                },
            );
        }
    }

    /// The block-wise computation equals the dense sparse + low-rank matrix it stands for:
    /// `A_ij = exp(q_i·k_j/√d)` in the band, `φ(q_i)·φ(k_j)` (unstabilised features, eps 0)
    /// elsewhere, padded keys 0, `out = A V / A 1` (outputs and input gradients).
    #[test]
    fn equals_the_dense_sparse_plus_lowrank_matrix() {
        let (seq, real, window) = (29, 21, 6);
        let config = ScatterbrainConfig {
            window,
            nb_features: 24,
            feature_eps: 0.0,
        };
        let device = Device::flex().autodiff();
        let module = scatterbrain(config, &device);
        let w = module.projection.clone().expect("low-rank term on");
        let mask = pad_mask(&device, seq, real);
        assert_same_output_and_gradients(
            seq,
            8,
            1e-4,
            |q, k, v| module.attend(q * 0.5, k * 0.5, v, Some(mask.clone())),
            |q, k, v| {
                let (q, k) = (q * 0.5, k * 0.5);
                let keep = band_keep(window, seq, real, &device);
                let real_keys = band_keep(2 * seq + 2, seq, real, &device); // all real keys
                let exact = (q.clone().matmul(k.clone().swap_dims(2, 3)) / 8f64.sqrt()).exp();
                let estimate = softmax_features_unstabilised(q, w.clone())
                    .matmul(softmax_features_unstabilised(k, w.clone()).swap_dims(2, 3));
                let a = exact * keep.clone() + estimate * (real_keys - keep);
                (a.clone() / a.sum_dim(3)).matmul(v)
            },
        );
    }

    /// The band of the blocked code on a hand-checked example: window 4 → keys `i−2 ..= i+1`;
    /// window 5 → `i−2 ..= i+2`.
    #[test]
    fn band_matches_a_hand_checked_example() {
        for (window, query, expected) in [(4, 5, vec![3, 4, 5, 6]), (5, 0, vec![0, 1, 2])] {
            let support = BlockSupport::band(12, window);
            let (l, slots) = (support.block, support.slots);
            let (query_block, r) = (query / l, query % l);
            let mut kept = Vec::new();
            for slot in 0..slots {
                let key_block = support.key_blocks[query_block * slots + slot];
                for c in 0..l {
                    if support.keep[((query_block * l + r) * slots + slot) * l + c] == 1.0 {
                        kept.push(key_block * l + c);
                    }
                }
            }
            kept.sort();
            assert_eq!(kept, expected, "window {window}, query {query}");
        }
    }

    /// Keys for the accuracy comparison: a smooth random walk over positions (nearby tokens are
    /// similar, giving the local, sparse part of the attention) plus independent noise (spread,
    /// low-rank-like mass): the mixed regime of the Scatterbrain paper (§3, Fig. 2/3).
    pub(crate) fn walk_plus_noise(device: &Device, seed: u64, seq: usize, dim: usize) -> Tensor<4> {
        let steps = gaussian(device, seed, [1, 2, seq, dim]) * 0.25;
        let walk = steps.cumsum(2);
        let centred = walk.clone() - walk.mean_dim(2);
        centred + gaussian(device, seed + 100, [1, 2, seq, dim]) * 0.5
    }

    /// On the paper's kind of input, Scatterbrain's error (relative Frobenius, vs exact softmax)
    /// is at most the smaller of its two parts' errors: the band alone (local attention) and
    /// the low-rank estimate alone (Performer, same features), averaged over 8 feature draws.
    #[test]
    fn error_is_at_most_that_of_local_or_performer_alone() {
        let device = Device::flex();
        let (seq, dim, window, rank) = (128, 16, 16, 32);
        let (mut sb_error, mut local_error, mut performer_error) = (0.0, 0.0, 0.0);
        let seeds = 8;
        for seed in 0..seeds {
            let qk = walk_plus_noise(&device, 10 + seed, seq, dim);
            let v = gaussian(&device, 50 + seed, [1, 2, seq, dim]);
            let exact = softmax_attention(qk.clone(), qk.clone(), v.clone(), None);
            let config = |nb_features| ScatterbrainConfig {
                window,
                nb_features,
                ..Default::default()
            };
            let dims = MixerDims {
                d_model: 2 * dim,
                ..dims()
            };
            device.seed(200 + seed);
            let sb = config(rank).init(&dims, &device);
            let local = config(0).init(&dims, &device);
            let w = sb.projection.clone().unwrap();
            let run = |m: &ScatterbrainAttention| m.attend(qk.clone(), qk.clone(), v.clone(), None);
            sb_error += relative_error(run(&sb), exact.clone());
            local_error += relative_error(run(&local), exact.clone());
            let performer = favor_attention(
                qk.clone(),
                qk.clone(),
                v.clone(),
                None,
                w,
                crate::mixer::performer::PerformerKernel::Softmax,
            );
            performer_error += relative_error(performer, exact);
        }
        let n = seeds as f32;
        let (sb, local, performer) = (sb_error / n, local_error / n, performer_error / n);
        eprintln!("mean relative error: scatterbrain {sb}, local {local}, performer {performer}");
        assert!(
            sb <= local.min(performer),
            "scatterbrain {sb} vs local {local}, performer {performer}"
        );
    }

    #[test]
    fn config_parses_and_validates() {
        let config: ScatterbrainConfig = toml::from_str("window = 32\nnb_features = 0").unwrap();
        assert_eq!(config.window, 32);
        assert_eq!(config.nb_features, 0);
        assert_eq!(
            config.feature_eps,
            ScatterbrainConfig::default().feature_eps
        );
        assert!(toml::from_str::<ScatterbrainConfig>("local_context = 8").is_err());
        let defaults = toml::to_string(&ScatterbrainConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<ScatterbrainConfig>(&defaults).unwrap(),
            ScatterbrainConfig::default()
        );
        let error = ScatterbrainConfig {
            window: 0,
            ..Default::default()
        }
        .validate(&dims())
        .unwrap_err();
        assert!(error.contains("window"), "{error}");
        let error = ScatterbrainConfig {
            feature_eps: -1.0,
            ..Default::default()
        }
        .validate(&dims())
        .unwrap_err();
        assert!(error.contains("feature_eps"), "{error}");
    }

    #[test]
    fn randomness_is_only_dropout_in_training() {
        let device = Device::flex().autodiff();
        let dims = MixerDims {
            dropout: 0.1,
            ..dims()
        };
        device.seed(3);
        let module = crate::init_now(ScatterbrainConfig::default().init(&dims, &device));
        let x = Tensor::<3>::random([2, 40, 16], Distribution::Normal(0.0, 1.0), &device);
        crate::mixer::testing::assert_random_only_in_training(&module, x, "dropout");
    }
}
