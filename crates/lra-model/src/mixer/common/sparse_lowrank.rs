//! Sparse + low-rank attention ([Scatterbrain](https://arxiv.org/abs/2110.15343), Chen et al.
//! 2021): exact `exp` scores on a block-sparse support, the Performer estimate everywhere else,
//! jointly normalised in log space as HazyResearch/fly does. The support is the method's choice:
//! a band (`scatterbrain`) or a flat butterfly (`pixelfly`); see `mixer/scatterbrain.rs` for the
//! derivation.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use burn::module::Param;
use burn::nn::Dropout;

use super::blocks::pad_tail;
use super::feature_maps::{
    gaussian_orthogonal_matrix, kernel_sums, softmax_exponents, softmax_key_features,
    softmax_query_features,
};
use super::fixed;
use super::reference::PAD_BIAS;

/// Floor of the low-rank residual normaliser (fly `clamp_min_(1e-24)`).
const RESIDUAL_FLOOR: f64 = 1e-24;

/// `feature_eps` must be a finite, non-negative number.
pub fn validate_feature_eps(eps: f64) -> Result<(), String> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(format!(
            "feature_eps must be a finite number ≥ 0, got {eps}"
        ));
    }
    Ok(())
}

/// The fixed Performer projection `[r, head_dim]` (`None` when `r = 0`: no low-rank term).
pub fn draw_features(rows: usize, head_dim: usize, device: &Device) -> Option<Param<Tensor<2>>> {
    (rows > 0).then(|| fixed(gaussian_orthogonal_matrix(rows, head_dim, device)))
}

/// A block-sparse support: the sequence is cut into blocks of `block` tokens; query block `B`
/// scores the key blocks `key_blocks[B·slots .. (B+1)·slots]`, of which only the tokens marked
/// in `keep` count (padding is applied on top).
pub struct BlockSupport {
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
pub struct LowRank {
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
pub fn sparse_lowrank_attention(
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
