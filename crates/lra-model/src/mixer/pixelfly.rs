//! Pixelated Butterfly attention ([Pixelated Butterfly: Simple and Efficient Sparse Training for
//! Neural Network Models](https://arxiv.org/abs/2112.00029), Chen, Dao, Liang, Yang, Song,
//! Rudra and Ré, ICLR 2022): block-sparse attention on the *flat block butterfly* pattern plus a
//! low-rank term, combined as in Scatterbrain.
//!
//! The sequence is cut into blocks of `block_size` tokens. With `N = 2^⌈log2 nb⌉` for `nb` blocks,
//! the flat butterfly pattern is the **sum** (not the product) of the first `f` butterfly factors:
//! query block `I` sees key block `J` iff `I == J` or `I XOR J == 2^t` for some `t < f`
//! (fly `FlatBlockButterflySparsityConfig.make_layout`, `butterfly_factor_to_matrix`). Only those
//! `1 + f` key blocks are gathered and scored (batched `[l, (1+f)·l]` block matmuls). The low-rank
//! term is the Performer estimate everywhere, corrected on the sparse support by the exact
//! scores and jointly normalised (Scatterbrain, §14 of the notes; fly
//! `sbblocksparse_attention.py`), through [`sparse_lowrank_attention`] (`common::sparse_lowrank`):
//!
//! ```text
//! out_i = [Σ_{j∈S} (exp(s_ij) − φ(q_i)·φ(k_j)) v_j + φ(q_i)(φ(K)ᵀV)] / [Σ_{j∈S} exp(s_ij) + φ(q_i)·Σ_j φ(k_j) − Σ_{j∈S} φ(q_i)·φ(k_j)]
//! ```
//!
//! Which attention form: the paper's attention experiments use block-sparse flat butterfly +
//! low-rank with Performer features (sbblocksparse with `SBPerformerFeatures`); the learned
//! low-rank product `U Vᵀ` with a gate (`SparseLRLinear`) is the MLP-layer form, which has no
//! meaning for an attention matrix whose size changes with `n`, so the Performer form is used.
//!
//! Official code checked: HazyResearch/fly `src/models/layers/blocksparse_linear.py`
//! (`FlatBlockButterflySparsityConfig`), `src/models/attention/sbblocksparse_attention.py`,
//! `feature_maps_sb.py`; defaults from `configs/model/channel_mlp_cfg/fbbflylr.yaml`.
//!
//! Complexity: with all `log2 N` factors, `1 + log2 N` key blocks per query block:
//! O(n·l·log(n/l)·d + n·r·d) time, O(n·l·log(n/l) + n·r) memory per head.
//!
//! Deviations, and why:
//! - Butterfly size: fly stretches a fixed `butterfly_size × butterfly_size` pattern (16 in
//!   `fbbflylr.yaml`) over a weight matrix of fixed size. An attention matrix grows with `n`, so
//!   here one butterfly cell is one block (`N` follows `n`) and by default all `log2 N` factors
//!   are kept: the O(n log n) pattern the paper's complexity refers to. `n_factors` keeps fewer
//!   (fly's `n_factors`; `fbbflylr.yaml` uses 2 for the MLP).
//! - No `global_size` rows/columns (0 in fly's configs); the low-rank term carries global
//!   information.
//! - Sequences need not be a multiple of the block: the last block is filled and masked (fly
//!   requires `n % block == 0`). Block pairs whose partner lies past the last block are empty.
//! - Features, redraw, dropout: as `scatterbrain` (Performer positive features fixed at
//!   init; dropout on the exact terms only). `nb_features = 0` leaves the sparse part alone.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::sparse_lowrank::{
    BlockSupport, LowRank, draw_features, sparse_lowrank_attention, validate_feature_eps,
};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Settings of [`PixelflyAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PixelflyConfig {
    /// Tokens per block `l`. Default: 32 (fly `FlatBlockButterflySparsityConfig(block=32)`,
    /// `fbbflylr.yaml`).
    pub block_size: usize,
    /// Butterfly factors `f` kept (key blocks `I XOR 2^t`, `t < f`); unset: all `log2 N`, the
    /// O(n log n) pattern. Default: unset (see the module notes; fly's MLP config uses 2).
    pub n_factors: Option<usize>,
    /// Random features `r` of the low-rank term; 0 turns it off. Default: 32 (fly
    /// `fbbflylr.yaml` low-rank `rank: 32`; Scatterbrain LRA `nb_features: 32`).
    pub nb_features: usize,
    /// Added to every feature after `exp`. Default: 1e-4 (fly LRA `sblocal.yaml`,
    /// `softmax_eps: 1e-4`).
    pub feature_eps: f64,
}

impl Default for PixelflyConfig {
    fn default() -> Self {
        Self {
            block_size: 32,
            n_factors: None,
            nb_features: 32,
            feature_eps: 1e-4,
        }
    }
}

impl MixerSpec for PixelflyConfig {
    type Mixer = PixelflyAttention;
    const SUMMARY: &'static str =
        "Pixelfly: flat block butterfly sparse attention + Performer low-rank, O(n·l·log n·d)";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("block_size", self.block_size)?;
        if self.n_factors == Some(0) {
            return Err("n_factors must be at least 1 (or unset for all factors)".into());
        }
        validate_feature_eps(self.feature_eps)
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> PixelflyAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            PixelflyCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                projection: draw_features(self.nb_features, dims.head_dim(), device),
                block_size: self.block_size,
                n_factors: self.n_factors,
                feature_eps: self.feature_eps,
            },
        )
    }
}

/// Multi-head Pixelfly attention (flat block butterfly + Performer).
pub type PixelflyAttention = Attention<PixelflyCore>;

/// The attention core of [`PixelflyAttention`].
#[derive(Module, Debug)]
pub struct PixelflyCore {
    dropout: Dropout,
    /// `W` `[r, head_dim]` drawn at init, fixed (`None`: sparse part only).
    projection: Option<Param<Tensor<2>>>,
    block_size: usize,
    n_factors: Option<usize>,
    feature_eps: f64,
}

impl AttentionCore for PixelflyCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let support = flat_butterfly(q.dims()[2], self.block_size, self.n_factors);
        let lowrank = self.projection.as_ref().map(|w| LowRank {
            projection: w.val(),
            eps: self.feature_eps,
        });
        sparse_lowrank_attention(q, k, v, pad_mask, &support, lowrank, &self.dropout)
    }
}

/// The flat block butterfly support of a sequence of `seq` tokens: blocks of `block` tokens
/// (capped at `seq`); query block `I` gathers `I` and `I XOR 2^t` for `t < f` (`f` = `n_factors`
/// or all `log2 N` levels, at most that); partners past the last block are empty slots.
fn flat_butterfly(seq: usize, block: usize, n_factors: Option<usize>) -> BlockSupport {
    let block = block.min(seq).max(1);
    let blocks = seq.div_ceil(block);
    let levels = blocks.next_power_of_two().trailing_zeros() as usize;
    let factors = n_factors.unwrap_or(levels).min(levels);
    let slots = 1 + factors;
    let mut key_blocks = Vec::with_capacity(blocks * slots);
    // Every query of a block keeps the same keys: one row of `keep` per block.
    let mut keep = vec![0f32; blocks * slots * block];
    for query_block in 0..blocks {
        let partners = (0..factors).map(|t| query_block ^ (1 << t));
        for (slot, key_block) in std::iter::once(query_block).chain(partners).enumerate() {
            let valid = key_block < blocks;
            key_blocks.push(if valid { key_block } else { query_block });
            if valid {
                let start = (query_block * slots + slot) * block;
                keep[start..start + block].fill(1.0);
            }
        }
    }
    BlockSupport {
        block,
        blocks,
        slots,
        key_blocks,
        keep_rows: 1,
        keep,
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::mixer::common::feature_maps::{
        softmax_features_unstabilised, softmax_kernel_attention,
    };
    use crate::mixer::common::reference::{
        PAD_BIAS, attention_probs, relative_error, softmax_attention,
    };
    use crate::mixer::common::testing::{
        assert_same_output_and_gradients, pad_mask, walk_plus_noise,
    };

    fn dims() -> MixerDims {
        MixerDims::new(16, 2, 64)
    }

    fn pixelfly(config: PixelflyConfig, device: &Device) -> PixelflyAttention {
        config.validate(&dims()).expect("valid test config");
        device.seed(5);
        crate::init_now(config.init(&dims(), device))
    }

    /// The flat butterfly from its definition (fly `make_layout`): block `I` sees `J` iff
    /// `I == J` or `I XOR J == 2^t` with `t < f`.
    fn sees(factors: usize, query_block: usize, key_block: usize) -> bool {
        let x = query_block ^ key_block;
        x == 0 || (x.is_power_of_two() && x.trailing_zeros() < factors as u32)
    }

    /// `[2, 1, n, n]`: 1 where query `i` keeps key `j` (butterfly and real), 0 elsewhere.
    fn butterfly_keep(
        seq: usize,
        real: usize,
        block: usize,
        factors: usize,
        device: &Device,
    ) -> Tensor<4> {
        let keep: Vec<f32> = (0..2 * seq * seq)
            .map(|x| {
                let (b, i, j) = (x / (seq * seq), x / seq % seq, x % seq);
                let padded = b == 1 && j >= real;
                f32::from(u8::from(sees(factors, i / block, j / block) && !padded))
            })
            .collect();
        Tensor::from_data(TensorData::new(keep, [2, 1, seq, seq]), device)
    }

    /// The blocked support on a hand-checked example and against the definition: 8 blocks,
    /// all 3 factors → block 5 sees {5, 4, 7, 1}; one factor → {5, 4}; a 1024-token sequence in
    /// blocks of 32 keeps 1 + log2 32 = 6 of 32 blocks per row.
    #[test]
    fn pattern_is_the_flat_butterfly() {
        let kept_blocks = |support: &BlockSupport, query_block: usize| -> Vec<usize> {
            let (l, slots) = (support.block, support.slots);
            (0..slots)
                .filter(|slot| support.keep[(query_block * slots + slot) * l] == 1.0)
                .map(|slot| support.key_blocks[query_block * slots + slot])
                .collect()
        };
        assert_eq!(
            kept_blocks(&flat_butterfly(32, 4, None), 5),
            vec![5, 4, 7, 1]
        );
        assert_eq!(kept_blocks(&flat_butterfly(32, 4, Some(1)), 5), vec![5, 4]);
        assert_eq!(flat_butterfly(1024, 32, None).slots, 6);
        // 10 blocks (N = 16): every kept pair satisfies the definition, and every pair that
        // satisfies it within the sequence is kept.
        let support = flat_butterfly(40, 4, None);
        for query_block in 0..10 {
            let mut kept = kept_blocks(&support, query_block);
            kept.sort();
            let expected: Vec<usize> = (0..10).filter(|&j| sees(4, query_block, j)).collect();
            assert_eq!(kept, expected, "block {query_block}");
        }
    }

    /// With the low-rank term off, Pixelfly is softmax over the butterfly blocks: equal to dense
    /// softmax with the butterfly block mask (outputs and input gradients), with padding, a
    /// partial last block, fewer factors, and a sequence shorter than a block.
    #[test]
    fn sparse_part_equals_dense_softmax_with_the_butterfly_mask() {
        // (seq, real, block, n_factors, factors in effect)
        for (seq, real, block, n_factors, factors) in [
            (40, 37, 4, None, 4),
            (38, 38, 4, None, 4),
            (32, 30, 4, Some(2), 2),
            (5, 4, 8, None, 0),
        ] {
            let config = PixelflyConfig {
                block_size: block,
                n_factors,
                nb_features: 0,
                ..Default::default()
            };
            let device = Device::flex().autodiff();
            let module = pixelfly(config, &device);
            let mask = pad_mask(&device, seq, real);
            let block = block.min(seq);
            assert_same_output_and_gradients(
                seq,
                4,
                1e-5,
                |q, k, v| module.core.attend(q, k, v, Some(mask.clone())),
                |q, k, v| {
                    let keep = butterfly_keep(seq, real, block, factors, &device);
                    let bias = (keep.neg() + 1.0) * PAD_BIAS;
                    attention_probs(q, k, Some(bias)).matmul(v)
                },
            );
        }
    }

    /// With the low-rank term on, the blocked computation equals the dense sparse + low-rank
    /// matrix: exact `exp` scores on the butterfly blocks, `φ(q_i)·φ(k_j)` (unstabilised,
    /// eps 0) elsewhere, padded keys 0, rows normalised (outputs and input gradients).
    #[test]
    fn equals_the_dense_butterfly_plus_lowrank_matrix() {
        let (seq, real, block) = (36, 30, 4);
        let config = PixelflyConfig {
            block_size: block,
            n_factors: Some(2),
            nb_features: 24,
            feature_eps: 0.0,
        };
        let device = Device::flex().autodiff();
        let module = pixelfly(config, &device);
        let w = module
            .core
            .projection
            .as_ref()
            .expect("low-rank term on")
            .val();
        let mask = pad_mask(&device, seq, real);
        assert_same_output_and_gradients(
            seq,
            8,
            1e-4,
            |q, k, v| module.core.attend(q * 0.5, k * 0.5, v, Some(mask.clone())),
            |q, k, v| {
                let (q, k) = (q * 0.5, k * 0.5);
                let keep = butterfly_keep(seq, real, block, 2, &device);
                let real_keys = butterfly_keep(seq, real, seq, 0, &device); // one block: all
                let exact = (q.clone().matmul(k.clone().swap_dims(2, 3)) / 8f64.sqrt()).exp();
                let estimate = softmax_features_unstabilised(q, w.clone())
                    .matmul(softmax_features_unstabilised(k, w.clone()).swap_dims(2, 3));
                let a = exact * keep.clone() + estimate * (real_keys - keep);
                (a.clone() / a.sum_dim(3)).matmul(v)
            },
        );
    }

    /// On Scatterbrain's kind of input (local + spread attention) the sparse + low-rank
    /// combination's error (relative Frobenius vs exact softmax, mean of 8 feature draws) is at
    /// most that of the butterfly part alone and of the Performer part alone.
    #[test]
    fn error_is_at_most_that_of_either_part_alone() {
        let device = Device::flex();
        let (seq, dim) = (128, 16);
        let dims = MixerDims {
            d_model: 2 * dim,
            qkv_dim: 2 * dim,
            ..dims()
        };
        let config = |nb_features| PixelflyConfig {
            block_size: 8,
            nb_features,
            ..Default::default()
        };
        let mut errors = [0f32; 3]; // pixelfly, butterfly alone, performer alone
        for seed in 0..8 {
            let qk = walk_plus_noise(&device, 10 + seed, seq, dim);
            let v = crate::mixer::common::testing::gaussian(&device, 50 + seed, [1, 2, seq, dim]);
            let exact = softmax_attention(qk.clone(), qk.clone(), v.clone(), None);
            device.seed(300 + seed);
            let both = config(32).init(&dims, &device);
            let sparse = config(0).init(&dims, &device);
            let w = both.core.projection.as_ref().unwrap().val();
            let performer = softmax_kernel_attention(qk.clone(), qk.clone(), v.clone(), None, w);
            let run =
                |m: &PixelflyAttention| m.core.attend(qk.clone(), qk.clone(), v.clone(), None);
            errors[0] += relative_error(run(&both), exact.clone());
            errors[1] += relative_error(run(&sparse), exact.clone());
            errors[2] += relative_error(performer, exact);
        }
        let [both, sparse, performer] = errors.map(|e| e / 8.0);
        eprintln!(
            "mean relative error: pixelfly {both}, butterfly {sparse}, performer {performer}"
        );
        assert!(
            both <= sparse.min(performer),
            "pixelfly {both} vs butterfly {sparse}, performer {performer}"
        );
    }

    #[test]
    fn config_parses_and_validates() {
        let config: PixelflyConfig = toml::from_str("block_size = 16\nn_factors = 2").unwrap();
        assert_eq!(config.block_size, 16);
        assert_eq!(config.n_factors, Some(2));
        assert_eq!(config.nb_features, PixelflyConfig::default().nb_features);
        assert!(toml::from_str::<PixelflyConfig>("butterfly_size = 16").is_err());
        let defaults = toml::to_string(&PixelflyConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<PixelflyConfig>(&defaults).unwrap(),
            PixelflyConfig::default()
        );
        for (bad, field) in [
            (
                PixelflyConfig {
                    block_size: 0,
                    ..Default::default()
                },
                "block_size",
            ),
            (
                PixelflyConfig {
                    n_factors: Some(0),
                    ..Default::default()
                },
                "n_factors",
            ),
            (
                PixelflyConfig {
                    feature_eps: f64::NAN,
                    ..Default::default()
                },
                "feature_eps",
            ),
        ] {
            let error = bad.validate(&dims()).unwrap_err();
            assert!(error.contains(field), "{error}");
        }
    }
}
