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
//! support, which `pixelfly` uses: both call [`sparse_lowrank_attention`] of
//! `common::sparse_lowrank`); LRA settings
//! `configs/experiment/lra/*/sblocal.yaml`.
//!
//! Complexity: O(n·(1.5·w + r)·d) time, O(n·(1.5·w + r)) memory per head.
//!
//! Deviations, and why:
//! - Features: the Performer's positive softmax features (`common::feature_maps`,
//!   `exp(W x̃ − ‖x̃‖²/2)/√r` with its stabilisers, the Performer's own) instead of fly's
//!   hyperbolic `[exp(u), exp(−u)]` features (`SBPerformerFeatures`, `2·rows` features); both
//!   are unbiased estimators of `exp(q·k/√d)`. The stabilisers' log-scale (per-query max plus
//!   the per-(batch, head) key max) is recomputed here from the Performer's exponents.
//! - Redraw: fly draws `W` at the first forward and never again (its constructor hard-sets
//!   `redraw = π`, which no call count is a multiple of); here `W` is drawn at init from the
//!   device RNG and kept, the same behaviour without a call counter. It is fixed (never trained)
//!   but recorded in checkpoints.
//! - `nb_features = 0` switches the low-rank term off: plain band softmax (the sparse part
//!   alone, used by the tests; not a setting of the paper).
//! - Dropout, as in the official code, drops only the exact `exp(s − log Z)` terms, never the
//!   subtracted low-rank band estimate.

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
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("window", self.window)?;
        validate_feature_eps(self.feature_eps)
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> ScatterbrainAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            ScatterbrainCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                projection: draw_features(self.nb_features, dims.head_dim(), device),
                window: self.window,
                feature_eps: self.feature_eps,
            },
        )
    }
}

/// Multi-head Scatterbrain attention (local band + Performer).
pub type ScatterbrainAttention = Attention<ScatterbrainCore>;

/// The attention core of [`ScatterbrainAttention`].
#[derive(Module, Debug)]
pub struct ScatterbrainCore {
    dropout: Dropout,
    /// `W` `[r, head_dim]` drawn at init, fixed (`None`: sparse part only).
    projection: Option<Param<Tensor<2>>>,
    window: usize,
    feature_eps: f64,
}

impl AttentionCore for ScatterbrainCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let support = BlockSupport::band(q.dims()[2], self.window);
        let lowrank = self.projection.as_ref().map(|w| LowRank {
            projection: w.val(),
            eps: self.feature_eps,
        });
        sparse_lowrank_attention(q, k, v, pad_mask, &support, lowrank, &self.dropout)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData};

    use super::*;
    use crate::mixer::common::feature_maps::{
        softmax_features_unstabilised, softmax_kernel_attention,
    };
    use crate::mixer::common::reference::{
        PAD_BIAS, attention_probs, relative_error, softmax_attention,
    };
    use crate::mixer::common::testing::{
        assert_same_output_and_gradients, gaussian, pad_mask, walk_plus_noise,
    };

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
                |q, k, v| module.core.attend(q, k, v, Some(mask.clone())),
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
                qkv_dim: 2 * dim,
                ..dims()
            };
            device.seed(200 + seed);
            let sb = config(rank).init(&dims, &device);
            let local = config(0).init(&dims, &device);
            let w = sb.core.projection.as_ref().unwrap().val();
            let run =
                |m: &ScatterbrainAttention| m.core.attend(qk.clone(), qk.clone(), v.clone(), None);
            sb_error += relative_error(run(&sb), exact.clone());
            local_error += relative_error(run(&local), exact.clone());
            let performer = softmax_kernel_attention(qk.clone(), qk.clone(), v.clone(), None, w);
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
        crate::mixer::common::testing::assert_random_only_in_training(&module, x, "dropout");
    }
}
