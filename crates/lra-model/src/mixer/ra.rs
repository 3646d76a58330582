//! Randomized attention, RA ([Linear Complexity Randomized Self-attention
//! Mechanism](https://arxiv.org/abs/2204.04667), Zheng, Wang and Kong, ICML 2022, §3): the
//! unbiased importance-sampling estimator of softmax attention with query-specific proposals.
//!
//! With `q̃ = q·d^{-1/4}`, `k̃ = k·d^{-1/4}` (so `q̃·k̃ = q·k/√d`), softmax attention is an
//! expectation over a query-specific mixture of Gaussians:
//!
//! ```text
//! SA(qₙ) = E_{ω ~ pₙ}[ fₙ(ω) ],   pₙ(ω) = Σₘ πₙₘ N(ω; q̃ₙ + k̃ₘ, I),   πₙ = softmax(q̃ₙ·k̃ᵀ)
//! fₙ(ω) = Σₘ softmax_m(ω·k̃ₘ − ‖k̃ₘ‖²/2) vₘ
//! ```
//!
//! because `N(ω; 0, I)·exp(ω·q̃ − ‖q̃‖²/2)·exp(ω·k̃ − ‖k̃‖²/2) = exp(q̃·k̃)·N(ω; q̃ + k̃, I)`. A draw
//! from `pₙ` picks a key `m* ~ Categorical(πₙ)` and then `ω = q̃ₙ + k̃_{m*} + ε`; `fₙ` at that draw is
//! RA's output. The official code (`efficient_attention/randomized_attention.py`,
//! HKUNLP/efficient-attention commit 531ff51, class `RandomizedAttention`) works in unscaled
//! coordinates: `μₙ = qₙ + k_{m*}` (index drawn with `torch.multinomial` under `no_grad`),
//! `ω = μ + ε` with `ε ~ N(0, I)` while training and `ω = μ` in evaluation, and
//! `out = softmax_m(ω·(s kₘ) − s‖kₘ‖²/2) v` with `s = d^{-1/2}`. In the scaled coordinates above
//! that is noise of standard deviation `d^{-1/4}` instead of 1 (`noise = "official"`, the default);
//! `noise = "paper"` draws `ε ~ N(0, √d·I)` on the unscaled `ω`, i.e. unit variance in the scaled
//! coordinates, which makes the training-mode output exactly unbiased for softmax attention (the
//! unit test `paper_noise_is_unbiased_for_softmax_attention` checks it).
//!
//! `num_samples` keeps the official meaning of its special values: `-1` uses the mixture mean
//! `μₙ = qₙ + Σₘ πₙₘ kₘ`, `0` uses `μₙ = qₙ + mean(k)`; `S ≥ 1` draws `S` independent
//! `(m*, ε)` pairs per query and averages the `S` estimates (the official code always draws one;
//! more samples lower the variance, `S` is the budget of the approximation tests).
//!
//! The unit test `evaluation_matches_the_official_proposal_mean_on_a_golden_case` pins the
//! evaluation output to a NumPy transcription of the official code.
//!
//! Accuracy on Gaussian q, k, v ~ N(0, 1), head_dim 32, n = 1024 and 4096: relative error
//! against softmax ≈ 0.65 in evaluation (proposal mean) and ≈ 5.8 for one training-mode sample:
//! with such diffuse attention a single draw of `f` is far more concentrated than softmax, so
//! the unbiased estimate has a large variance (it falls like 1/√S with more samples).
//!
//! Complexity: O(S·n²·d) time and O(S·n²) memory per head: RA is a randomised generalisation of
//! softmax attention, not an efficient one (LARA, `lara.rs`, is its linear form).
//!
//! Deviations from the official code, and why:
//! - Evaluation with `num_samples ≥ 1` uses the mixture mean `μₙ = qₙ + Σₘ πₙₘ kₘ` (the official
//!   `num_samples = -1` proposal) instead of a freshly drawn key index: the official evaluation
//!   still samples `m*`, so its outputs would not be a function of the input and the model; with
//!   the mean, evaluation is deterministic like the official `ω = μ`.
//! - Key padding: the official `_apply_attention` ignores `key_padding_mask`. Padded keys get
//!   `reference::PAD_BIAS` in both the proposal `π` (so they are never drawn) and in `f`, and `num_samples =
//!   0` averages only real keys.
//! - Categorical draws use the Gumbel-max trick on `log π` with uniforms from Burn's device RNG
//!   (the same distribution as `torch.multinomial`); the draw carries no gradient, as in the
//!   official `no_grad` block, while `k_{m*}` does.
//! - Attention dropout (the harness `dropout`) is applied to the `[n, n]` probabilities of `f` while
//!   training, where softmax attention applies it; the official RA does not use `attn_drop`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::common::is_training;
use super::common::proposal::Noise;
use super::common::reference::key_padding_bias;
use super::{Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig};

/// Settings of [`RandomizedAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaConfig {
    /// Samples `S` of `(m*, ε)` per query, averaged (`S ≥ 1`); `-1`: proposal mean
    /// `q + Σₘ πₘ kₘ`; `0`: `q + mean(k)`. Default: 1 (official `RandomizedAttention(num_samples=1)`
    /// and `--num-samples` default 1, `randomized_attention.py`).
    pub num_samples: i64,
    /// Noise variance of the proposal. Default: `official` (`torch.randn_like(mu)` on the unscaled
    /// mean, `randomized_attention.py`); `paper` is the paper's unit-variance proposal.
    pub noise: Noise,
}

impl Default for RaConfig {
    fn default() -> Self {
        Self {
            num_samples: 1,
            noise: Noise::Official,
        }
    }
}

impl MixerSpec for RaConfig {
    type Mixer = RandomizedAttention;
    const SUMMARY: &'static str =
        "randomized attention (RA): unbiased importance-sampling estimate of softmax, O(n²)";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        if self.num_samples < -1 {
            return Err(format!(
                "num_samples must be -1 (proposal mean), 0 (mean key) or a sample count >= 1, \
                 got {}",
                self.num_samples
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> RandomizedAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            RaCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                num_samples: self.num_samples,
                noise: self.noise,
            },
        )
    }
}

/// Multi-head randomized attention.
pub type RandomizedAttention = Attention<RaCore>;

/// The attention core of [`RandomizedAttention`].
#[derive(Module, Debug)]
pub struct RaCore {
    dropout: Dropout,
    num_samples: i64,
    #[module(skip)]
    noise: Noise,
}

impl AttentionCore for RaCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let training = is_training(&self.dropout.training, &q.device());
        self.estimate(q, k, v, pad_mask, training)
    }
}

impl RaCore {
    /// RA with explicit randomness: `stochastic` draws `m*` and `ε` as in training, otherwise
    /// `ω` is the deterministic proposal mean used in evaluation.
    pub(crate) fn estimate(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
        stochastic: bool,
    ) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = q.dims();
        let device = q.device();
        let scale = (head_dim as f64).powf(-0.5);
        let key_bias = pad_mask.clone().map(key_padding_bias); // [b, 1, 1, m]
        let add_bias = |x: Tensor<4>| match &key_bias {
            Some(bias) => x + bias.clone(),
            None => x,
        };
        let noise_std = self.noise.std(head_dim);
        // ω·(s k) − s‖k‖²/2 (+ padding bias) → softmax over keys → weighted values.
        let k_scaled = k.clone() * scale;
        let k_half_norm =
            (k.clone().square().sum_dim(3) * (scale / 2.0)).reshape([batch, heads, 1, seq]);
        let f = |omega: Tensor<4>| {
            let logits =
                add_bias(omega.matmul(k_scaled.clone().swap_dims(2, 3))) - k_half_norm.clone();
            self.dropout.forward(softmax(logits, 3)).matmul(v.clone())
        };
        let perturb = |mu: Tensor<4>| {
            if stochastic {
                let eps = Tensor::random(mu.dims(), Distribution::Normal(0.0, 1.0), &device);
                mu + eps * noise_std
            } else {
                mu
            }
        };

        if self.num_samples == 0 {
            let real = match pad_mask {
                Some(mask) => mask.bool_not().float(),
                None => Tensor::ones([batch, seq], &device),
            }
            .reshape([batch, 1, 1, seq]);
            let count = real.clone().sum_dim(3).clamp_min(1.0); // [b, 1, 1, 1]
            let mean_key = real.matmul(k.clone()) / count; // [b, h, 1, d] (broadcast matmul)
            return f(perturb(q + mean_key));
        }
        let scores = add_bias(q.clone().matmul(k.clone().swap_dims(2, 3)) * scale); // [b, h, n, m]
        if self.num_samples < 0 || !stochastic {
            let mu = q + softmax(scores, 3).matmul(k);
            return f(perturb(mu));
        }
        let log_pi = log_softmax(scores, 3);
        let samples = self.num_samples as usize;
        let mut total: Option<Tensor<4>> = None;
        for _ in 0..samples {
            let index = gumbel_argmax(log_pi.clone()); // [b, h, n, 1]
            let index = index.expand([batch, heads, seq, head_dim]);
            let chosen_key = k.clone().gather(2, index); // k_{m*}: [b, h, n, d]
            let estimate = f(perturb(q.clone() + chosen_key));
            total = Some(match total {
                Some(sum) => sum + estimate,
                None => estimate,
            });
        }
        total.expect("num_samples >= 1") / samples as f64
    }
}

/// One draw per row from `Categorical(exp(log_p))` over the last axis (Gumbel-max trick:
/// `argmax(log p − log E)` with `E = −log U ~ Exp(1)`), without gradient.
fn gumbel_argmax(log_p: Tensor<4>) -> Tensor<4, Int> {
    let uniform = log_p.random_like(Distribution::Uniform(0.0, 1.0));
    let exponential = (-uniform.clamp_min(1e-30).log()).clamp_min(1e-30);
    (log_p.detach() - exponential.log()).argmax(3)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::reference::{relative_error, softmax_attention};
    use crate::mixer::common::testing::standard_normal;

    fn ra(num_samples: i64, noise: Noise, device: &Device) -> RandomizedAttention {
        let dims = MixerDims::new(32, 2, 256);
        RaConfig { num_samples, noise }.init(&dims, device)
    }

    /// Mean relative error of the training-mode estimate over `seeds` device seeds.
    fn mean_error(num_samples: i64, noise: Noise, seeds: u64) -> f32 {
        let device = Device::flex();
        let attention = ra(num_samples, noise, &device);
        let mut sum = 0.0;
        for seed in 0..seeds {
            device.seed(100 + seed);
            let shape = [1, 2, 256, 16];
            let (q, k, v) = (
                standard_normal(&device, shape),
                standard_normal(&device, shape),
                standard_normal(&device, shape),
            );
            let exact = softmax_attention(q.clone(), k.clone(), v.clone(), None);
            let estimate = attention.core.estimate(q, k, v, None, true);
            sum += relative_error(estimate, exact);
        }
        sum / seeds as f32
    }

    #[test]
    fn error_falls_with_the_number_of_samples() {
        for noise in [Noise::Official, Noise::Paper] {
            let one = mean_error(1, noise, 4);
            let many = mean_error(16, noise, 4);
            println!("{noise:?}: relative error S=1 {one:.4}, S=16 {many:.4}");
            assert!(
                many < 0.7 * one,
                "{noise:?}: 16 samples ({many}) not clearly better than 1 ({one})"
            );
        }
    }

    #[test]
    fn paper_noise_is_unbiased_for_softmax_attention() {
        // Averaging S draws of an unbiased estimator: the error of the mean falls like 1/√S and
        // the bias must stay below that. The official noise is narrower than the paper's proposal
        // and keeps a visible bias.
        let device = Device::flex();
        device.seed(5);
        let shape = [1, 1, 8, 4];
        let (q, k, v) = (
            standard_normal(&device, shape) * 1.5,
            standard_normal(&device, shape) * 1.5,
            standard_normal(&device, shape),
        );
        let exact = softmax_attention(q.clone(), k.clone(), v.clone(), None);
        let samples = 20_000;
        let paper = ra(samples, Noise::Paper, &device).core.estimate(
            q.clone(),
            k.clone(),
            v.clone(),
            None,
            true,
        );
        let official = ra(samples, Noise::Official, &device)
            .core
            .estimate(q, k, v, None, true);
        let paper_bias = (paper - exact.clone()).abs().max().into_scalar::<f32>();
        let official_bias = (official - exact).abs().max().into_scalar::<f32>();
        println!("max |mean − softmax|: paper {paper_bias:.4}, official {official_bias:.4}");
        assert!(paper_bias < 0.02, "paper proposal biased: {paper_bias}");
        assert!(
            official_bias > 2.0 * paper_bias,
            "official noise expected to be visibly biased: {official_bias} vs {paper_bias}"
        );
    }

    #[test]
    fn evaluation_matches_the_official_proposal_mean_on_a_golden_case() {
        // Expected values: a NumPy transcription of the official `_apply_attention` with
        // `num_samples = -1` in evaluation (`weights = mu = q + π k`) on the inputs of LARA's
        // golden test.
        let expected = [
            0.2170597, -0.0213357, 0.0398400, -0.4758782, 0.4950190, 0.1041592, -0.1313343,
            -0.4528218, 0.3784908, 0.1478529, -0.1092821, -0.2390853, 0.3274249, 0.1364546,
            -0.0722966, -0.1845672, 0.4184543, 0.0700743, -0.2901554, 0.1404186, 0.6386342,
            0.1029415, -0.4177102, 0.2349419, 0.4591450, 0.1118970, -0.1929730, 0.3847896,
        ];
        let device = Device::flex();
        let (q, k, v) = crate::mixer::common::testing::golden_qkv(&device);
        let dims = MixerDims::new(4, 1, 7);
        // The default (`num_samples = 1`) evaluates with the same proposal mean.
        for num_samples in [-1, 1] {
            let config = RaConfig {
                num_samples,
                ..RaConfig::default()
            };
            let actual = config.init(&dims, &device).core.estimate(
                q.clone(),
                k.clone(),
                v.clone(),
                None,
                false,
            );
            let expected = TensorData::new(expected.to_vec(), [1, 1, 7, 4]);
            actual
                .to_data()
                .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn padded_keys_get_no_weight_in_both_modes() {
        let device = Device::flex();
        device.seed(3);
        let shape = [2, 2, 40, 8];
        let (q, k, v) = (
            standard_normal(&device, shape),
            standard_normal(&device, shape),
            standard_normal(&device, shape),
        );
        let pad: Vec<bool> = (0..80).map(|i| i >= 40 + 27).collect();
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [2, 40]), &device);
        let pad4 = pad.clone().reshape([2, 1, 40, 1]).expand(shape);
        let garbage = standard_normal(&device, shape) * 100.0;
        let k2 = k.clone().mask_where(pad4.clone(), garbage.clone());
        let v2 = v.clone().mask_where(pad4, garbage);
        for num_samples in [-1, 0, 2] {
            let attention = ra(num_samples, Noise::Official, &device);
            for stochastic in [false, true] {
                device.seed(9);
                let a = attention.core.estimate(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    Some(pad.clone()),
                    stochastic,
                );
                device.seed(9);
                let b = attention.core.estimate(
                    q.clone(),
                    k2.clone(),
                    v2.clone(),
                    Some(pad.clone()),
                    stochastic,
                );
                let diff = (a.narrow(2, 0, 27) - b.narrow(2, 0, 27)).abs().max();
                let diff = diff.into_scalar::<f32>();
                assert!(
                    diff < 1e-5,
                    "num_samples {num_samples}, stochastic {stochastic}: padded keys leak ({diff})"
                );
            }
        }
        // Without padding keys, the masked second row equals the first 27 tokens run alone.
        let attention = ra(-1, Noise::Official, &device);
        let full = attention
            .core
            .estimate(q.clone(), k.clone(), v.clone(), Some(pad), false);
        let alone = attention.core.estimate(
            q.narrow(0, 1, 1).narrow(2, 0, 27),
            k.narrow(0, 1, 1).narrow(2, 0, 27),
            v.narrow(0, 1, 1).narrow(2, 0, 27),
            None,
            false,
        );
        let diff = (full.narrow(0, 1, 1).narrow(2, 0, 27) - alone).abs().max();
        assert!(diff.into_scalar::<f32>() < 1e-5);
    }
}
