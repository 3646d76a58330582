//! CUR / indefinite-Nyström attention, after [Sublinear Time Approximation of Text Similarity
//! Matrices](https://arxiv.org/abs/2112.09631) (Ray, Monath, McCallum and Musco, AAAI 2022).
//!
//! The paper approximates an `n×n` similarity matrix `K` from `O(n·s)` of its entries: sample
//! landmark indices uniformly, keep the sampled columns `C = K[:, S]`, rows `R = K[S_r, :]` and
//! their intersection `W = K[S_r, S]`, and set `K̃ = C W⁺ R` (CUR). For symmetric indefinite `K`
//! its SMS-Nyström (`S_r = S`) regularises `W` by a shift read off a larger sample `S₁ ⊇ S`:
//! `W + e·I`, `e = −min(0, λ_min(K[S₁, S₁]))`.
//!
//! What is approximated here: the *unnormalised* attention matrix `E = exp(QKᵀ/√d)` (padded keys
//! excluded), asymmetric and entrywise positive. Its CUR approximation `Ê = C W⁺ R` is applied to
//! `[V, 1]` and each row is normalised by its approximate row sum, as softmax normalises `E`:
//!
//! ```text
//! C = exp(Q K_Sᵀ/√d)     [n, s]     W = exp(Q_{S_r} K_Sᵀ/√d)   [r, s]   (S ⊆ S_r)
//! R = exp(Q_{S_r} Kᵀ/√d) [r, n]     out = C (W⁺ (R V)) / C (W⁺ (R 1))
//! ```
//!
//! Only these blocks are formed: O(n·(s + r)·d + r·s²·iters) time and O(n·(s + r)) memory per
//! head. With `s = n` (so `S_r = S` = all tokens, no shift) `Ê = E E⁺ E = E` and the output is
//! softmax attention, up to the convergence of `W⁺`, the Nyströmformer iteration
//! (`common::inverse::iterative_pinv`, as Nyström; it works for rectangular `W` and then gives the
//! least-squares `W⁺`).
//!
//! Sources: there is no official attention code, and the paper's experiments use exact `pinv` on
//! (symmetrised) NLP similarity matrices. The authors' code, `archanray/approximate_similarities`,
//! `matrix_approximations/approximator.py`, was read for the details: `CUR_alt` samples `k`
//! rows and a subset of `k/2` of them as columns (`W` is `k × k/2`); `nystrom_with_eig_estimate`
//! samples `S₁` of size `⌈√(n·s)⌉`, `S ⊂ S₁`, uses `W − min(0, λ_min(K[S₁,S₁]))·I` with unshifted
//! outer factors, and by default neither rescales by `n/s₁` nor multiplies the eigenvalue.
//! The paper's own Algorithm 1 could not be re-read here.
//!
//! Design choices and deviations:
//! - Rows: `r = 2s` by default (`CUR_alt`). On Gaussian Q, K the square intersection (`r = s`)
//!   is far less stable: the relative error at n = 1024, s = 64 is 0.93 for `r = s`, 0.77 for
//!   `r = 2s`, 0.66 for `r = 4s` (mean of 3 seeds, 6 pinv iterations); at s = 8 the square
//!   version's error is above 100 (near-singular `W`, normaliser near zero).
//! - Shift: optional (`shift`, square intersection only). `E` is not symmetric, so `λ_min` is
//!   taken of the symmetric part `H = (E₁ + E₁ᵀ)/2` of `E₁ = E[S₁, S₁]` (which bounds the real
//!   parts of the eigenvalues; `W + e·I` then has a positive semidefinite symmetric part).
//!   Without an eigensolver among tensor ops, `λ_min` is estimated by `eig_iters` power
//!   iterations on `ρI − H` (`ρ` = largest absolute row sum of `H`) and the Rayleigh quotient;
//!   the estimate errs toward a smaller shift. No gradient flows through the shift. It is off by
//!   default: attention matrices are far from the near-PSD matrices the shift is designed for,
//!   and the shift then dominates `W` (relative error ≈ 0.95 at every budget on Gaussian inputs,
//!   i.e. close to uniform attention).
//! - Sampling: the landmarks are the real tokens with the smallest priorities, a uniform random
//!   draw per token, so `S ⊆ S_r ⊆ S₁` are nested uniform samples without replacement among the
//!   real tokens (padding never becomes a landmark while real tokens remain). While training
//!   (autodiff device, module not `valid()`) and `resample = true`, the priorities are redrawn
//!   from the device RNG each forward and per batch row (the paper samples per matrix);
//!   otherwise the priorities drawn at `init` are used, so evaluation is deterministic and shared
//!   by all rows and heads. When a sequence has fewer real tokens than landmarks, the surplus
//!   landmarks are masked out (their rows/columns of `C`, `W`, `R` are exactly zero and stay so
//!   in `W⁺`), which leaves CUR over the real landmarks.
//! - Stabilisation: `C` is scaled per query row by `exp(−max_j∈S q·k_j/√d)` (cancels in the row
//!   normalisation); `R` and `W` (and `E₁`) by one `exp(−max)` per batch row and head (cancels
//!   in `W⁺` and in the shift), so no entry exceeds 1.
//! - Normaliser: `Ê 1` may be small or negative where the approximation is poor. In the scaled
//!   units each true row sum is at least 1 (it contains the landmark with the row's largest
//!   score, `exp(0)`), so the approximate row sum is clamped to at least 1.
//! - `W⁺` by 6 iterations (as Nyströmformer) rather than an exact pseudoinverse: the iteration
//!   count acts as a spectral cut-off, and more iterations make the approximation worse here.
//! - No dropout on attention. The Q/K/V/output projections are the shared
//!   [`MultiHeadProjection`](super::MultiHeadProjection).

use burn::module::{Flag, Module, Param};
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::common::inverse::iterative_pinv;
use super::common::reference::PAD_BIAS;
use super::common::{fixed, is_training};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
    zero_is_none,
};

/// Regularisation of the landmark intersection `W` before its pseudoinverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shift {
    /// Plain CUR: `W⁺` of the unshifted intersection.
    None,
    /// SMS-Nyström: `W + e·I`, `e = −min(0, λ_min)` of the symmetric part of `E[S₁, S₁]`
    /// (the authors' code default, `scaling=False`).
    Sampled,
    /// `e` scaled by `L / s₁` (`L` real tokens): the paper's extrapolation of the sampled
    /// eigenvalue to the full matrix (`scaling=True` in the authors' code).
    Rescaled,
}

/// Settings of [`CurAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurConfig {
    /// Landmarks `s` (sampled rows and columns of the attention matrix); clamped to the
    /// sequence length. Default: 64, the landmark budget of Nyströmformer's LRA runs so the two
    /// compare at equal cost (the paper has no attention setting; it sweeps `s`).
    pub samples: usize,
    /// Landmark rows `r` (`S_r ⊇ S`, so `W = E[S_r, S]` is `r × s` and `W⁺` a least-squares
    /// fit); `None` (written `0` in TOML) means `2·s` (the authors' `CUR_alt` samples twice as
    /// many rows as columns), clamped to `[s, n]`. Default: `None`.
    #[serde(with = "zero_is_none")]
    pub row_samples: Option<usize>,
    /// Iterations of the pseudoinverse of `W` (`common::inverse::iterative_pinv`). Default: 6, as
    /// Nyströmformer (the paper uses an exact `pinv`, which is unstable here; see the notes).
    pub pinv_iters: usize,
    /// Regularisation of `W`; a shift needs `row_samples = samples`. Default: `none` (the shift
    /// over-regularises attention matrices; see the module notes).
    pub shift: Shift,
    /// Size `s₁` of the sample `S₁ ⊇ S` whose smallest eigenvalue sets the shift; `None`
    /// (written `0` in TOML) means `⌈√(n·s)⌉` (authors' code, `large_k = sqrt(k * n)`),
    /// clamped to `[s, n]`. Default: `None`.
    #[serde(with = "zero_is_none")]
    pub shift_samples: Option<usize>,
    /// Multiplier of the estimated `|λ_min|`. Default: 1.0 (authors' code `eig_mult=1`).
    pub shift_multiplier: f64,
    /// Power iterations estimating `λ_min`. Default: 20 (ours; see the module notes).
    pub eig_iters: usize,
    /// Redraw the landmarks each training forward (the paper samples per matrix); evaluation
    /// always uses the draw made at init. Default: true.
    pub resample: bool,
}

impl Default for CurConfig {
    fn default() -> Self {
        Self {
            samples: 64,
            row_samples: None,
            pinv_iters: 6,
            shift: Shift::None,
            shift_samples: None,
            shift_multiplier: 1.0,
            eig_iters: 20,
            resample: true,
        }
    }
}

impl MixerSpec for CurConfig {
    type Mixer = CurAttention;
    const SUMMARY: &'static str =
        "CUR / SMS-Nyström: exp-score matrix from s sampled rows and columns, row-normalised";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("samples", self.samples)?;
        at_least_one("pinv_iters", self.pinv_iters)?;
        if !(self.shift_multiplier.is_finite() && self.shift_multiplier >= 0.0) {
            return Err(format!(
                "shift_multiplier must be finite and non-negative, got {}",
                self.shift_multiplier
            ));
        }
        if self.shift != Shift::None {
            if self.eig_iters == 0 {
                return Err("eig_iters must be at least 1 when shift is not `none`".into());
            }
            if self.row_samples != Some(self.samples) {
                return Err(format!(
                    "shift = {:?} needs a square intersection: set row_samples = samples ({})",
                    self.shift, self.samples
                ));
            }
        }
        if let Some(rows) = self.row_samples
            && rows < self.samples
        {
            return Err(format!(
                "row_samples must be at least samples = {}, got {rows}",
                self.samples
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> CurAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            CurCore {
                priority: fixed(Tensor::random(
                    [dims.max_len],
                    Distribution::Uniform(0.0, 1.0),
                    device,
                )),
                training: Param::from_bool(true),
                samples: self.samples,
                row_samples: self.row_samples,
                pinv_iters: self.pinv_iters,
                shift: self.shift,
                shift_samples: self.shift_samples,
                shift_multiplier: self.shift_multiplier,
                eig_iters: self.eig_iters,
                resample: self.resample,
            },
        )
    }
}

/// Multi-head CUR attention.
pub type CurAttention = Attention<CurCore>;

/// The attention core of [`CurAttention`].
#[derive(Module, Debug)]
pub struct CurCore {
    /// Landmark priorities drawn at init `[max_len]` (fixed, not trained).
    priority: Param<Tensor<1>>,
    /// Training mode (cleared by `valid()`): landmarks are redrawn only then.
    training: Param<Flag>,
    samples: usize,
    row_samples: Option<usize>,
    pinv_iters: usize,
    #[module(skip)]
    shift: Shift,
    shift_samples: Option<usize>,
    shift_multiplier: f64,
    eig_iters: usize,
    resample: bool,
}

impl CurCore {
    /// Token indices in landmark order `[b, count]` (the first `s` are `S`, the first `s₁` are
    /// `S₁`) and whether each is a real token (1) or padding (0) `[b, count]`.
    fn landmarks(
        &self,
        pad_mask: Option<Tensor<2, Bool>>,
        shape: [usize; 2],
        count: usize,
        device: &Device,
    ) -> (Tensor<2, Int>, Tensor<2>) {
        let [batch, seq] = shape;
        let priority = if self.resample && is_training(&self.training, device) {
            Tensor::<2>::random([batch, seq], Distribution::Uniform(0.0, 1.0), device)
        } else {
            let max_len = self.priority.dims()[0];
            assert!(
                seq <= max_len,
                "cur: sequence length {seq} exceeds max_len {max_len} the mixer was built for"
            );
            self.priority
                .val()
                .narrow(0, 0, seq)
                .reshape([1, seq])
                .expand([batch, seq])
        };
        let priority = match pad_mask {
            Some(mask) => priority.mask_fill(mask, 2.0), // padding sorts last
            None => priority,
        };
        let (sorted, order) = priority.sort_with_indices(1);
        let real = sorted.narrow(1, 0, count).lower_elem(1.5).float();
        (order.narrow(1, 0, count), real)
    }
}

impl AttentionCore for CurCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = q.dims();
        let device = q.device();
        let s = self.samples.min(seq); // landmark columns S
        let r = self.row_samples.unwrap_or(2 * s).clamp(s, seq); // landmark rows S_r ⊇ S
        let s1 = match self.shift {
            Shift::None => r,
            Shift::Sampled | Shift::Rescaled => self
                .shift_samples
                .unwrap_or(((seq * s) as f64).sqrt().ceil() as usize)
                .clamp(r, seq),
        };
        // Landmark order: S = first s, S_r = first r, S₁ = first s1 (nested samples).
        let (order, chosen_real) = self.landmarks(pad_mask.clone(), [batch, seq], s1, &device);
        let real = match &pad_mask {
            Some(mask) => mask.clone().bool_not().float(),
            None => Tensor::ones([batch, seq], &device),
        }; // [b, n]
        let gather_rows = |x: &Tensor<4>| {
            let index = order
                .clone()
                .reshape([batch, 1, s1, 1])
                .expand([batch, heads, s1, head_dim]);
            x.clone().gather(2, index)
        };
        let (q_1, k_1) = (gather_rows(&q), gather_rows(&k)); // [b, h, s1, d]
        let scale = (head_dim as f64).sqrt().recip();
        // Additive masks of padded landmarks (and keys), as row [b, 1, count, 1] or column
        // [b, 1, 1, count] biases.
        let bias = |real: Tensor<2>| real.neg().add_scalar(1.0) * PAD_BIAS;
        let as_cols =
            |bias: Tensor<2>, count: usize| bias.narrow(1, 0, count).reshape([batch, 1, 1, count]);
        let as_rows =
            |bias: Tensor<2>, count: usize| bias.narrow(1, 0, count).reshape([batch, 1, count, 1]);
        let land_bias = bias(chosen_real.clone()); // [b, s1]
        let k_cols = k_1.clone().narrow(2, 0, s).swap_dims(2, 3); // [b, h, d, s]
        let q_rows = q_1.clone().narrow(2, 0, r); // [b, h, r, d]

        // C: queries × landmark keys, scaled per row so that its largest entry is 1.
        let c_scores = q.matmul(k_cols.clone()) * scale + as_cols(land_bias.clone(), s);
        let c = (c_scores.clone() - c_scores.detach().max_dim(3)).exp(); // [b, h, n, s]
        // R and W: landmark-row queries × all keys / landmark keys, one scale per (b, h).
        let r_scores = q_rows.clone().matmul(k.swap_dims(2, 3)) * scale
            + as_rows(land_bias.clone(), r)
            + as_cols(bias(real.clone()), seq); // [b, h, r, n]
        let w_scores = q_rows.matmul(k_cols) * scale
            + as_rows(land_bias.clone(), r)
            + as_cols(land_bias.clone(), s); // [b, h, r, s]
        let mut top = r_scores.clone().detach().max_dim(3).max_dim(2); // [b, h, 1, 1]
        let shift_scores = match self.shift {
            Shift::None => None,
            Shift::Sampled | Shift::Rescaled => {
                let scores = (q_1.matmul(k_1.swap_dims(2, 3)) * scale
                    + as_rows(land_bias.clone(), s1)
                    + as_cols(land_bias, s1))
                .detach(); // [b, h, s1, s1]
                top = top.max_pair(scores.clone().max_dim(3).max_dim(2));
                Some(scores)
            }
        };
        let r_mat = (r_scores - top.clone()).exp();
        let mut w = (w_scores - top.clone()).exp();
        if let Some(scores) = shift_scores {
            // Square intersection (validated: row_samples = samples).
            let e1 = (scores - top).exp();
            let mut shift = min_eigenvalue_of_symmetric_part(e1, chosen_real, self.eig_iters)
                .neg()
                .clamp_min(0.0)
                * self.shift_multiplier;
            if self.shift == Shift::Rescaled {
                shift = shift * (real.clone().sum_dim(1) / s1 as f64).reshape([batch, 1, 1, 1]);
            }
            w = w + Tensor::<2>::eye(s, &device).reshape([1, 1, s, s]) * shift;
        }
        let ones = Tensor::ones([batch, heads, seq, 1], &device);
        let values = Tensor::cat(vec![v * real.reshape([batch, 1, seq, 1]), ones], 3);
        let u = iterative_pinv(w, self.pinv_iters); // [b, h, s, r]
        let out = c.matmul(u.matmul(r_mat.matmul(values))); // [b, h, n, d + 1]
        let numerator = out.clone().narrow(3, 0, head_dim);
        let row_sum = out.narrow(3, head_dim, 1).clamp_min(1.0);
        numerator / row_sum
    }
}

/// Estimate of the smallest eigenvalue of `(E + Eᵀ)/2` for each `[m, m]` matrix of `e`
/// `[b, h, m, m]` (rows and columns where `real` `[b, m]` is 0 must be zero and are ignored):
/// `iters` power iterations on `ρI − H`, `ρ` = largest absolute row sum of `H` (so `ρI − H` is
/// positive semidefinite and its top eigenvalue is `ρ − λ_min`), from a fixed start vector,
/// then the Rayleigh quotient. The estimate is never below the true `λ_min`. Returns
/// `[b, h, 1, 1]`.
fn min_eigenvalue_of_symmetric_part(e: Tensor<4>, real: Tensor<2>, iters: usize) -> Tensor<4> {
    let [batch, heads, m, _] = e.dims();
    let device = e.device();
    let sym = (e.clone() + e.swap_dims(2, 3)) * 0.5;
    let rho = sym.clone().abs().sum_dim(3).max_dim(2); // [b, h, 1, 1]
    let shifted = Tensor::<2>::eye(m, &device).reshape([1, 1, m, m]) * rho.clone() - sym;
    // A fixed, non-special start (not the constant vector, which is close to the top
    // eigenvector of a positive matrix, i.e. orthogonal to what we look for).
    let start = (Tensor::<1, Int>::arange(0..m as i64, &device).float() * 2.4 + 0.5).cos();
    let mut x = start.reshape([1, 1, m, 1]) * real.reshape([batch, 1, m, 1]);
    x = x.expand([batch, heads, m, 1]);
    let unit = |x: Tensor<4>| x.clone() / x.square().sum_dim(2).sqrt().clamp_min(1e-30);
    x = unit(x);
    for _ in 0..iters {
        x = unit(shifted.clone().matmul(x));
    }
    let top = (x.clone() * shifted.matmul(x)).sum_dim(2); // Rayleigh quotient ≤ ρ − λ_min
    rho - top
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;
    use crate::mixer::common::reference::{relative_error, softmax_attention};
    use crate::mixer::common::testing::assert_random_only_in_training;
    use crate::mixer::common::testing::normal;
    use crate::mixer::common::testing::{pad_mask, spoil_padding};

    fn cur(
        config: CurConfig,
        heads: usize,
        head_dim: usize,
        max_len: usize,
        seed: u64,
    ) -> CurAttention {
        let device = Device::flex();
        device.seed(seed);
        let dims = MixerDims::new(heads * head_dim, heads, max_len);
        config.validate(&dims).unwrap();
        crate::init_now(config.init(&dims, &device))
    }

    #[test]
    fn all_tokens_as_landmarks_is_softmax_attention() {
        // s = n, no shift: C = R = E, W = E and C W⁺ R = E.
        let device = Device::flex();
        let (seq, heads, head_dim) = (12, 2, 8);
        let shape = [2, heads, seq, head_dim];
        let (q, k, v) = (
            normal(&device, 1, shape, 0.7),
            normal(&device, 2, shape, 0.7),
            normal(&device, 3, shape, 1.0),
        );
        let config = CurConfig {
            samples: seq,
            pinv_iters: 30,
            shift: Shift::None,
            ..CurConfig::default()
        };
        let attention = cur(config, heads, head_dim, seq, 0);
        for mask in [None, Some(pad_mask(&device, seq, 8))] {
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

    fn mean_error(config: &CurConfig, seq: usize, head_dim: usize, seeds: u64) -> f32 {
        let device = Device::flex();
        let shape = [1, 2, seq, head_dim];
        let mut error = 0.0;
        for seed in 0..seeds {
            let (q, k, v) = (
                normal(&device, 10 * seed + 1, shape, 1.0),
                normal(&device, 10 * seed + 2, shape, 1.0),
                normal(&device, 10 * seed + 3, shape, 1.0),
            );
            let expected = softmax_attention(q.clone(), k.clone(), v.clone(), None);
            let attention = cur(config.clone(), 2, head_dim, seq, 100 + seed);
            let actual = attention.core.attend(q, k, v, None);
            error += relative_error(actual, expected) / seeds as f32;
        }
        error
    }

    #[test]
    fn error_falls_as_samples_grow() {
        let budgets = [16, 32, 64];
        let errors = budgets.map(|samples| {
            let config = CurConfig {
                samples,
                ..CurConfig::default()
            };
            mean_error(&config, 256, 16, 4)
        });
        println!("cur relative error at s = {budgets:?} (r = 2s): {errors:?}");
        assert!(errors[1] < errors[0] && errors[2] < errors[1], "{errors:?}");
        assert!(errors[2] < 0.7 * errors[0], "{errors:?}");
    }

    #[test]
    fn padded_keys_and_values_have_no_influence() {
        let device = Device::flex();
        let (seq, heads, head_dim, real) = (40, 2, 8, 27);
        let shape = [2, heads, seq, head_dim];
        let (q, k, v) = (
            normal(&device, 1, shape, 1.0),
            normal(&device, 2, shape, 1.0),
            normal(&device, 3, shape, 1.0),
        );
        let mask = pad_mask(&device, seq, real);
        let garbage = |x: Tensor<4>, seed| spoil_padding(x, &mask, seed);
        // 8 landmarks (fewer than the real tokens) and 32 (more: some masked out).
        let cases = [
            (8, None, Shift::None),
            (8, Some(8), Shift::Sampled),
            (32, Some(32), Shift::Rescaled),
        ];
        for (samples, row_samples, shift) in cases {
            let config = CurConfig {
                samples,
                row_samples,
                shift,
                ..CurConfig::default()
            };
            let attention = cur(config, heads, head_dim, seq, 0);
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
    fn landmarks_are_distinct_real_tokens() {
        let device = Device::flex();
        let (seq, real) = (30, 9);
        let attention = cur(CurConfig::default(), 2, 4, seq, 3);
        let (order, chosen) =
            attention
                .core
                .landmarks(Some(pad_mask(&device, seq, real)), [2, seq], 12, &device);
        let order: Vec<i64> = order.into_data().convert::<i64>().try_into_vec().unwrap();
        let chosen: Vec<f32> = chosen.into_data().try_into_vec().unwrap();
        for row in 0..2 {
            let picks = &order[row * 12..(row + 1) * 12];
            let mut unique = picks.to_vec();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 12, "{picks:?}");
            for (j, &token) in picks.iter().enumerate() {
                let is_real = row == 0 || (token as usize) < real;
                assert_eq!(chosen[row * 12 + j] == 1.0, is_real, "row {row}: {picks:?}");
            }
            if row == 1 {
                // All 9 real tokens come first, then padding.
                assert!(
                    picks[..real].iter().all(|&t| (t as usize) < real),
                    "{picks:?}"
                );
            }
        }
    }

    #[test]
    fn min_eigenvalue_estimate_is_close_to_and_above_the_true_one() {
        // diag(3, 1, -2, 0.5) rotated by a fixed orthogonal matrix: λ_min = -2.
        let device = Device::flex();
        let (c, s) = (0.6f32, 0.8f32);
        let rot = [
            [c, -s, 0.0, 0.0],
            [s, c, 0.0, 0.0],
            [0.0, 0.0, c, s],
            [0.0, 0.0, -s, c],
        ];
        let mix = [
            [0.5f32, 0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5, -0.5],
            [0.5, 0.5, -0.5, -0.5],
            [0.5, -0.5, -0.5, 0.5],
        ];
        let q = Tensor::<2>::from_floats(rot, &device).matmul(Tensor::from_floats(mix, &device));
        let d = Tensor::<2>::from_floats(
            [
                [3.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, -2.0, 0.0],
                [0.0, 0.0, 0.0, 0.5],
            ],
            &device,
        );
        let h = q.clone().matmul(d).matmul(q.transpose());
        // An antisymmetric part must not matter.
        let skew = Tensor::<2>::from_floats(
            [
                [0.0, 1.0, 0.0, 2.0],
                [-1.0, 0.0, 3.0, 0.0],
                [0.0, -3.0, 0.0, 1.0],
                [-2.0, 0.0, -1.0, 0.0],
            ],
            &device,
        );
        let e = (h + skew).reshape([1, 1, 4, 4]);
        let real = Tensor::<2>::ones([1, 4], &device);
        let estimate = min_eigenvalue_of_symmetric_part(e, real, 60).into_scalar::<f32>();
        assert!((-2.00001..-1.99).contains(&estimate), "{estimate}");
    }

    #[test]
    fn landmarks_are_redrawn_only_while_training() {
        let device = Device::flex().autodiff();
        let dims = MixerDims::new(8, 2, 32);
        device.seed(0);
        let attention = crate::init_now(
            CurConfig {
                samples: 4,
                ..CurConfig::default()
            }
            .init(&dims, &device),
        );
        let x = Tensor::<3>::random([1, 32, 8], Distribution::Normal(0.0, 1.0), &device);
        assert_random_only_in_training(&attention, x, "landmarks");
    }

    #[test]
    fn config_validation_and_toml_round_trip() {
        let dims = MixerDims::new(16, 2, 64);
        for (field, config) in [
            (
                "samples",
                CurConfig {
                    samples: 0,
                    ..Default::default()
                },
            ),
            (
                "pinv_iters",
                CurConfig {
                    pinv_iters: 0,
                    ..Default::default()
                },
            ),
            (
                "shift_multiplier",
                CurConfig {
                    shift_multiplier: -1.0,
                    ..Default::default()
                },
            ),
            (
                "eig_iters",
                CurConfig {
                    eig_iters: 0,
                    shift: Shift::Sampled,
                    row_samples: Some(64),
                    ..Default::default()
                },
            ),
            (
                "row_samples",
                CurConfig {
                    row_samples: Some(10),
                    ..Default::default()
                },
            ),
            (
                "row_samples = samples",
                CurConfig {
                    shift: Shift::Sampled,
                    ..Default::default()
                },
            ),
        ] {
            let error = config.validate(&dims).unwrap_err();
            assert!(error.contains(field), "{error}");
        }
        let kind = crate::MixerKind::Cur;
        let table = kind.default_config().to_table();
        assert_eq!(table["shift"].as_str(), Some("none"));
        assert_eq!(kind.parse_config(&table).unwrap(), kind.default_config());
        let text = "shift = \"rescaled\"\nshift_samples = 100\nrow_samples = 64";
        let table: toml::Table = toml::from_str(text).unwrap();
        let config: CurConfig = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(
            (config.shift, config.shift_samples),
            (Shift::Rescaled, Some(100))
        );
        assert!(config.validate(&dims).is_ok());
    }
}
