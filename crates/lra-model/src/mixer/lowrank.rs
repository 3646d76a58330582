//! Randomized low-rank attention: the softmax matrix projected onto a randomized range estimate
//! ([Finding Structure with Randomness: Probabilistic Algorithms for Constructing Approximate
//! Matrix Decompositions](https://arxiv.org/abs/0909.4061), Halko, Martinsson and Tropp, SIAM
//! Review 2011). There is no official attention code; this is the "rank-k oracle" of
//! `methods.md` §8.
//!
//! The exact probabilities `P = softmax(QKᵀ/√d)` `[n, n]` are formed (O(n²): the point is to show
//! what rank buys, not to save compute), then a randomized range finder with power iterations
//! (HMT Algorithm 4.4, "randomized subspace iteration") builds an orthonormal `Q` `[n, k+p]`:
//!
//! ```text
//! Ω ~ N(0, 1)  [n, k+p]         Q = orth(P Ω)
//! repeat q times:  Q̃ = orth(Pᵀ Q),  Q = orth(P Q̃)
//! P̂ = Q Qᵀ P                    out = P̂ V = Q (Qᵀ (P V))
//! ```
//!
//! `P̂` has rank ≤ `k + p`; by HMT Theorem 10.5/10.6 its expected error is within a factor
//! `1 + O(√(k+p)·√n / (p−1))^{1/(2q+1)}` of the best rank-`k` error `σ_{k+1}`. With `k + p ≥ n`
//! (and `P` of full rank) `Q Qᵀ = I` and the output is exact. The truncation of `Q Qᵀ P` to
//! rank `k` by an SVD of `Qᵀ P` (HMT Algorithm 5.1) is not done: Burn has no SVD, and the
//! untruncated projection is at least as accurate.
//!
//! Orthonormalisation: Burn has no QR, so `orth` is classical Gram–Schmidt applied twice per
//! column ("twice is enough", Giraud et al. 2005), column by column with tensor ops (O(n·w²)
//! for `w = k + p` columns). A column whose norm falls below half of itself in the second pass
//! lies numerically in the span of the previous ones (Kahan–Parlett criterion) and is set to
//! zero instead of being normalised: this happens when `k + p` exceeds the rank of `P` (e.g.
//! more sketch columns than real tokens), where normalising round-off would break `Q Qᵀ` as a
//! projector. Cholesky-QR was not used: `YᵀY` squares the condition number of the sketch, which
//! for a decaying spectrum is far beyond f32.
//!
//! Complexity: O(n²·(d + (2q+1)(k+p)) + (2q+1)·n·(k+p)²) time and O(n²) memory per head.
//!
//! Details:
//! - Padding: padded keys get probability 0 and padded query rows of `P` are zeroed before
//!   sketching, so the range (and `Q`) only depends on real rows and padded positions output 0.
//! - `Ω` is drawn at init (`[max_len, k+p]`, a constant shared by rows and heads) and used in
//!   evaluation, so evaluation is deterministic; while training (autodiff device, module not
//!   `valid()`) and `redraw = true`, a fresh `Ω` per batch row and head is drawn each forward
//!   from the device RNG (HMT draw Ω per matrix).
//! - No dropout on attention. The Q/K/V/output projections are the shared
//!   [`MultiHeadProjection`](super::MultiHeadProjection).

use burn::module::{Flag, Module, Param};
use burn::tensor::{Bool, Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::common::reference::{attention_probs, key_padding_bias};
use super::common::{fixed, is_training};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Settings of [`LowRankAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LowRankConfig {
    /// Target rank `k`. Default: 64, the landmark budget of Nyströmformer's LRA runs, so the
    /// oracle compares with the O(n) methods at equal rank (`methods.md` §8 leaves `k` open).
    pub rank: usize,
    /// Oversampling `p`: the sketch has `k + p` columns (clamped to the sequence length).
    /// Default: 10 (`methods.md` §8 "randomized SVD (k, p=10, q=2)"; HMT §4.2 suggest 5 or 10).
    pub oversampling: usize,
    /// Power (subspace) iterations `q`, each re-orthonormalised. Default: 2 (`methods.md` §8;
    /// HMT §4.5, q = 1 or 2 for slowly decaying spectra).
    pub power_iters: usize,
    /// Redraw `Ω` each training forward (evaluation uses the draw made at init). Default: true.
    pub redraw: bool,
}

impl Default for LowRankConfig {
    fn default() -> Self {
        Self {
            rank: 64,
            oversampling: 10,
            power_iters: 2,
            redraw: true,
        }
    }
}

impl MixerSpec for LowRankConfig {
    type Mixer = LowRankAttention;
    const SUMMARY: &'static str =
        "randomized low-rank oracle: exact softmax matrix projected on a k+p range sketch (HMT)";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("rank", self.rank)?;
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> LowRankAttention {
        let width = self.rank + self.oversampling;
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            LowRankCore {
                omega: fixed(Tensor::random(
                    [dims.max_len, width],
                    Distribution::Normal(0.0, 1.0),
                    device,
                )),
                training: Param::from_bool(true),
                power_iters: self.power_iters,
                redraw: self.redraw,
            },
        )
    }
}

/// Multi-head randomized low-rank attention.
pub type LowRankAttention = Attention<LowRankCore>;

/// The attention core of [`LowRankAttention`].
#[derive(Module, Debug)]
pub struct LowRankCore {
    /// Gaussian test matrix drawn at init `[max_len, k + p]` (fixed, not trained).
    omega: Param<Tensor<2>>,
    /// Training mode (cleared by `valid()`): `Ω` is redrawn only then.
    training: Param<Flag>,
    power_iters: usize,
    redraw: bool,
}

impl LowRankCore {
    /// The test matrix `Ω` `[b, h, n, w]`, `w = min(k + p, n)`.
    fn test_matrix(&self, shape: [usize; 3], device: &Device) -> Tensor<4> {
        let [batch, heads, seq] = shape;
        let [max_len, width] = self.omega.dims();
        let width = width.min(seq);
        if self.redraw && is_training(&self.training, device) {
            return Tensor::random(
                [batch, heads, seq, width],
                Distribution::Normal(0.0, 1.0),
                device,
            );
        }
        assert!(
            seq <= max_len,
            "lowrank: sequence length {seq} exceeds max_len {max_len} the mixer was built for"
        );
        self.omega
            .val()
            .narrow(0, 0, seq)
            .narrow(1, 0, width)
            .reshape([1, 1, seq, width])
            .expand([batch, heads, seq, width])
    }
}

impl AttentionCore for LowRankCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, heads, seq, _] = q.dims();
        let device = q.device();
        let real_rows = match &pad_mask {
            Some(mask) => mask.clone().bool_not().float().reshape([batch, 1, seq, 1]),
            None => Tensor::ones([batch, 1, seq, 1], &device),
        };
        let probs = attention_probs(q, k, pad_mask.map(key_padding_bias)) * real_rows; // [b, h, n, n]
        let omega = self.test_matrix([batch, heads, seq], &device);
        let mut basis = orthonormalize(probs.clone().matmul(omega));
        for _ in 0..self.power_iters {
            let co_basis = orthonormalize(probs.clone().swap_dims(2, 3).matmul(basis));
            basis = orthonormalize(probs.clone().matmul(co_basis));
        }
        let exact = probs.matmul(v); // P V [b, h, n, d]
        basis.clone().matmul(basis.swap_dims(2, 3).matmul(exact))
    }
}

/// Orthonormal basis of the columns of `y` `[b, h, n, w]` by classical Gram–Schmidt applied
/// twice per column; a column that is numerically in the span of the previous ones (its norm
/// drops below half in the second pass, or it is zero) becomes a zero column. The result has
/// orthonormal or zero columns, so `Q Qᵀ` is the orthogonal projector onto the numerical span.
pub(crate) fn orthonormalize(y: Tensor<4>) -> Tensor<4> {
    let [.., width] = y.dims();
    let sum_sq = |x: &Tensor<4>| x.clone().square().sum_dim(2); // [b, h, 1, 1]
    let mut basis: Option<Tensor<4>> = None;
    for j in 0..width {
        let column = y.clone().narrow(3, j, 1); // [b, h, n, 1]
        let project_out = |x: Tensor<4>, q: &Tensor<4>| {
            x.clone() - q.clone().matmul(q.clone().swap_dims(2, 3).matmul(x))
        };
        let (before, after) = match &basis {
            None => (column.clone(), column),
            Some(q) => {
                let first = project_out(column, q);
                (first.clone(), project_out(first, q))
            }
        };
        let norm_sq = sum_sq(&after);
        let keep = norm_sq.clone().greater(sum_sq(&before) * 0.25).float();
        let unit = after / norm_sq.clamp_min(1e-30).sqrt() * keep;
        basis = Some(match basis {
            None => unit,
            Some(q) => Tensor::cat(vec![q, unit], 3),
        });
    }
    basis.expect("at least one column")
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;
    use crate::mixer::common::reference::{relative_error, softmax_attention};
    use crate::mixer::common::testing::{
        assert_random_only_in_training, gaussian, pad_mask, spoil_padding,
    };

    fn lowrank(
        config: LowRankConfig,
        heads: usize,
        head_dim: usize,
        max_len: usize,
        seed: u64,
    ) -> LowRankAttention {
        let device = Device::flex();
        device.seed(seed);
        let dims = MixerDims::new(heads * head_dim, heads, max_len);
        config.validate(&dims).unwrap();
        crate::init_now(config.init(&dims, &device))
    }

    /// Columns orthonormal or zero, `Q Qᵀ y = y`; returns the number of unit columns.
    fn check_basis(y: Tensor<4>) -> usize {
        let [batch, heads, _, width] = y.dims();
        let q = orthonormalize(y.clone());
        let norms: Vec<f32> = q
            .clone()
            .square()
            .sum_dim(2)
            .into_data()
            .try_into_vec()
            .unwrap();
        assert!(
            norms
                .iter()
                .all(|&x| x.abs() < 1e-6 || (x - 1.0).abs() < 1e-5),
            "{norms:?}"
        );
        let gram = q.clone().swap_dims(2, 3).matmul(q.clone());
        let diag =
            gram.clone() * Tensor::<2>::eye(width, &y.device()).reshape([1, 1, width, width]);
        gram.to_data()
            .assert_approx_eq::<f32>(&diag.to_data(), Tolerance::absolute(1e-5));
        let projected = q.clone().matmul(q.swap_dims(2, 3).matmul(y.clone()));
        assert!(relative_error(projected, y) < 1e-5);
        let units = norms.iter().filter(|&&x| x > 0.5).count();
        assert_eq!(units % (batch * heads), 0);
        units / (batch * heads)
    }

    #[test]
    fn orthonormalize_gives_an_orthonormal_basis_of_the_span() {
        let device = Device::flex();
        // Rank 3 in 5 columns: columns 2 and 4 are combinations of 0, 1 and 3.
        let combos = Tensor::<2>::from_floats(
            [
                [1.0, 0.0, 2.0, 0.0, 1.0],
                [0.0, 1.0, -1.0, 0.0, 1.0],
                [0.0, 0.0, 0.0, 1.0, 1.0],
            ],
            &device,
        )
        .reshape([1, 1, 3, 5]);
        // In R^8 the round-off left of a dependent column may become an extra (harmless) unit
        // direction; in R^3 the span is exhausted after 3 and the rest must be zero.
        let units = check_basis(gaussian(&device, 1, [1, 2, 8, 3]).matmul(combos.clone()));
        assert!((3..=5).contains(&units));
        assert_eq!(
            check_basis(gaussian(&device, 2, [1, 2, 3, 3]).matmul(combos)),
            3
        );
        // Full-rank tall input: all columns kept.
        assert_eq!(check_basis(gaussian(&device, 3, [2, 1, 20, 6])), 6);
    }

    #[test]
    fn full_width_sketch_is_softmax_attention() {
        // k + p ≥ n: Q spans everything (the real rows, with padding), Q Qᵀ P = P.
        let device = Device::flex();
        let (seq, heads, head_dim) = (16, 2, 8);
        let shape = [2, heads, seq, head_dim];
        let (q, k, v) = (
            gaussian(&device, 1, shape),
            gaussian(&device, 2, shape),
            gaussian(&device, 3, shape),
        );
        let config = LowRankConfig {
            rank: 10,
            oversampling: 10,
            power_iters: 1,
            redraw: true,
        };
        let attention = lowrank(config, heads, head_dim, seq, 0);
        for mask in [None, Some(pad_mask(&device, seq, 11))] {
            let actual = attention
                .core
                .attend(q.clone(), k.clone(), v.clone(), mask.clone());
            let expected = softmax_attention(q.clone(), k.clone(), v.clone(), mask.clone());
            let real = match mask {
                Some(mask) => mask.bool_not().float().reshape([2, 1, seq, 1]),
                None => Tensor::ones([2, 1, seq, 1], &device),
            };
            (actual * real.clone())
                .to_data()
                .assert_approx_eq::<f32>(&(expected * real).to_data(), Tolerance::absolute(1e-4));
        }
    }

    #[test]
    fn error_falls_as_rank_grows() {
        let device = Device::flex();
        let (seq, head_dim) = (256, 16);
        let shape = [1, 2, seq, head_dim];
        let budgets = [4, 16, 64];
        let seeds = 3;
        let mut errors = [0f32; 3];
        for seed in 0..seeds {
            let (q, k, v) = (
                gaussian(&device, 10 * seed + 1, shape),
                gaussian(&device, 10 * seed + 2, shape),
                gaussian(&device, 10 * seed + 3, shape),
            );
            let expected = softmax_attention(q.clone(), k.clone(), v.clone(), None);
            for (error, &rank) in errors.iter_mut().zip(&budgets) {
                let config = LowRankConfig {
                    rank,
                    ..LowRankConfig::default()
                };
                let attention = lowrank(config, 2, head_dim, seq, 100 + seed);
                let actual = attention.core.attend(q.clone(), k.clone(), v.clone(), None);
                *error += relative_error(actual, expected.clone()) / seeds as f32;
            }
        }
        println!("lowrank relative error at k = {budgets:?}: {errors:?}");
        assert!(errors[1] < errors[0] && errors[2] < errors[1], "{errors:?}");
        assert!(errors[2] < 0.7 * errors[0], "{errors:?}");
    }

    #[test]
    fn padded_keys_and_values_have_no_influence() {
        let device = Device::flex();
        let (seq, heads, head_dim, real) = (40, 2, 8, 27);
        let shape = [2, heads, seq, head_dim];
        let (q, k, v) = (
            gaussian(&device, 1, shape),
            gaussian(&device, 2, shape),
            gaussian(&device, 3, shape),
        );
        let mask = pad_mask(&device, seq, real);
        let garbage = |x: Tensor<4>, seed| spoil_padding(x, &mask, seed);
        for rank in [4, 30] {
            let config = LowRankConfig {
                rank,
                ..LowRankConfig::default()
            };
            let attention = lowrank(config, heads, head_dim, seq, 0);
            let a = attention
                .core
                .attend(q.clone(), k.clone(), v.clone(), Some(mask.clone()));
            let b = attention.core.attend(
                garbage(q.clone(), 7),
                garbage(k.clone(), 8),
                garbage(v.clone(), 9),
                Some(mask.clone()),
            );
            a.narrow(2, 0, real).to_data().assert_approx_eq::<f32>(
                &b.narrow(2, 0, real).to_data(),
                Tolerance::absolute(1e-5),
            );
        }
    }

    #[test]
    fn test_matrix_is_redrawn_only_while_training() {
        let device = Device::flex().autodiff();
        let dims = MixerDims::new(8, 2, 32);
        device.seed(0);
        let config = LowRankConfig {
            rank: 2,
            oversampling: 1,
            power_iters: 0,
            redraw: true,
        };
        let attention = crate::init_now(config.init(&dims, &device));
        let x = Tensor::<3>::random([1, 32, 8], Distribution::Normal(0.0, 1.0), &device);
        assert_random_only_in_training(&attention, x, "sketch");
    }

    #[test]
    fn config_round_trips_and_validates() {
        let dims = MixerDims::new(16, 2, 64);
        let error = LowRankConfig {
            rank: 0,
            ..Default::default()
        }
        .validate(&dims)
        .unwrap_err();
        assert!(error.contains("rank"), "{error}");
        let kind = crate::MixerKind::LowRank;
        let table = kind.default_config().to_table();
        assert_eq!(table["oversampling"].as_integer(), Some(10));
        assert_eq!(kind.parse_config(&table).unwrap(), kind.default_config());
    }
}
