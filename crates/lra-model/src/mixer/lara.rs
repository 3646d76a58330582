//! Linear randomized attention, LARA ([Linear Complexity Randomized Self-attention
//! Mechanism](https://arxiv.org/abs/2204.04667), Zheng, Wang and Kong, ICML 2022, §4): RA's
//! importance sampler with `C` proposals shared by all queries, combined by multiple importance
//! sampling (MIS) and self-normalised, in O(C·n·d).
//!
//! Checked against the official code, `efficient_attention/lara.py` (class `LinearRA`) and
//! `attn_utils.py` (`prm_projection`), HKUNLP/efficient-attention commit 531ff51. With
//! `s = d^{-1/2}` and `prm(x, ω) = s·ω·x − s‖x‖²/2` (log positive random features):
//!
//! ```text
//! q̄_c, k̄_c   landmarks: means of C contiguous segments of Q and K (the 1-D `_proposal_gen_1d`)
//! μ_c        = q̄_c + k̄_c;     ω_c = μ_c + ε_c while training (ε ~ N(0, I)), ω_c = μ_c in eval
//! f_c        = Σₘ softmax_m(prm(kₘ, ω_c)) vₘ                                    [C, d]
//! log p̃_cn  = prm(qₙ, ω_c) + logsumexp_m prm(kₘ, ω_c)        (target density at ω_c, up to n)
//! log q_c    = prm(μ_c, ω_c)                                  (proposal c at its own sample)
//! β_c        = exp(log q_c − logsumexp_c' prm(μ_c', ω_c))     (balance heuristic)
//! t_cn       = softmax_n(s·q̄_c·qₙ)                            (softmax over the queries, as coded)
//! α_cn       = max(β_c + α_coeff·(t_cn − mean_c' t_c'n), 1e-8)                   ("mis-opt")
//! outₙ       = Σ_c softmax_c(log α_cn + log p̃_cn − log q_c) f_c
//! ```
//!
//! `mis = "mis_bh"` uses `α = 1` with the mixture `logsumexp_c' prm(μ_c', ω_c)` as proposal
//! density; `mis_biased` uses `log α_cn = s·μ_c·qₙ` with that mixture density (both official
//! `mis_type`s). `sampling = "antithetic"` adds the samples `μ − ε`, `multisample` a second
//! independent sample per proposal (official `use_antithetics` / `use_multisample`; training only).
//! `noise` is RA's: the official `ε ~ N(0, I)` on the unscaled `ω` is a standard deviation of
//! `d^{-1/4}` in the paper's scaled coordinates, `paper` gives it unit variance there (see `ra.rs`).
//!
//! The unit test `matches_the_official_code_on_a_golden_case` pins the evaluation output (uneven
//! segments, `mis_opt` and `mis_bh`) to a NumPy transcription of the official forward; the same
//! transcription agreed to 1e-6 on random inputs for all three `mis` types and for `C > n`.
//!
//! Accuracy: on i.i.d. Gaussian q, k, v segment means of unrelated tokens are poor proposals and
//! the error against softmax stays high (head_dim 32, C = 49: relative error ≈ 0.94 in evaluation
//! and ≈ 0.87 with training-mode sampling, n = 1024 and 4096); it falls slowly with `C` and
//! converges like self-normalised importance sampling when the proposals fit (unit tests).
//!
//! Complexity: O(C·n·d) time and O(C·n) memory per head (O(C²·d) for the proposal densities).
//!
//! Deviations from the official code, and why:
//! - Landmarks are means over the *real* tokens of each sequence: the segments split the real
//!   length `L` of each row with the official rule (`L // C` tokens per segment, the last
//!   `L mod C` segments one longer; each token its own landmark when `L ≤ C`). The official code
//!   zeroes Q/K at padding and splits the padded length, so padding dilutes the landmarks and
//!   whole landmarks can be pure padding. Unpadded sequences get exactly the official landmarks.
//!   When `L < C` the `C − L` empty landmarks are excluded from the estimator, which then equals
//!   the official `n <= num_landmarks` case (`q̄ = q`, `k̄ = k`).
//! - `t_cn` is a softmax over the real queries only (the official softmax also runs over padded
//!   positions, whose zeroed queries take part of the mass), so padding cannot change real outputs.
//! - Padded keys get `reference::PAD_BIAS` instead of `-inf` in `prm(k, ω)`.
//! - Proposals: `segment_means` is the official 1-D behaviour of the default `proposal_gen='pool'`
//!   (its pooling layers only act on 2-D inputs, so plain segment means are used and the
//!   Linear + LayerNorm of `pool` are unused: they are not built here); `adaptive_1d` is the
//!   official `adaptive-1d` (per-head-width Linear + LayerNorm on Q and K before the means, used by
//!   the official WMT runs). The 2-D pooling and the `*-mixed` key-landmark mixing are image-only.
//! - No attention dropout (the official `LinearRA` has none).

use burn::module::{Flag, Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::common::proposal::Noise;
use super::common::reference::PAD_BIAS;
use super::common::{is_training, log_sum_exp};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

use crate::folded_linear::FoldedLinear;
use crate::layer_norm::{DEFAULT_EPSILON, LayerNorm};

/// How the landmarks `q̄_c`, `k̄_c` (the proposal means) are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalGen {
    /// Means of contiguous segments of Q and K (official `pool` on 1-D sequences).
    SegmentMeans,
    /// Linear + LayerNorm (width `head_dim`, shared by the heads) on Q and K, then segment means
    /// (official `adaptive-1d`).
    Adaptive1d,
}

/// How the samples of the `C` proposals are weighted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisType {
    /// Balance heuristic plus query-specific correction `α_coeff·(t − mean t)` (official
    /// `mis-opt`).
    MisOpt,
    /// Balance heuristic only (official `mis-bh`).
    MisBh,
    /// `log α = s·μ_c·qₙ` with the mixture density (official `mis-biased`).
    MisBiased,
}

/// Samples drawn per proposal while training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// One sample `μ + ε` per proposal.
    Single,
    /// The pair `μ ± ε` (official `use_antithetics`).
    Antithetic,
    /// Two independent samples (official `use_multisample`).
    Multisample,
}

/// Settings of [`LaraAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LaraConfig {
    /// Number of proposals / landmarks `C`. Default: 49 (official `LinearRA(num_landmarks=49)` and
    /// `--num-landmarks` default, `lara.py`; the repository has no LRA configuration, its 1-D WMT
    /// runs in the README use 8, 16 and 32).
    pub num_landmarks: usize,
    /// How the landmarks are made. Default: `segment_means` (official default `proposal_gen='pool'`,
    /// which is plain segment means on 1-D inputs).
    pub proposal_gen: ProposalGen,
    /// MIS weighting. Default: `mis_opt` (official `mis_type='mis-opt'`).
    pub mis: MisType,
    /// Weight of the query-specific term of `mis_opt`. Default: 1.0 (official `alpha_coeff=1.0`;
    /// the README's DeiT runs pass 2.0).
    pub alpha_coeff: f64,
    /// Samples per proposal while training. Default: `single` (official `use_antithetics=False`,
    /// `use_multisample=False`).
    pub sampling: Sampling,
    /// Noise variance of the proposals, as in RA. Default: `official`
    /// (`weights = mu + torch.randn_like(mu)`).
    pub noise: Noise,
}

impl Default for LaraConfig {
    fn default() -> Self {
        Self {
            num_landmarks: 49,
            proposal_gen: ProposalGen::SegmentMeans,
            mis: MisType::MisOpt,
            alpha_coeff: 1.0,
            sampling: Sampling::Single,
            noise: Noise::Official,
        }
    }
}

impl MixerSpec for LaraConfig {
    type Mixer = LaraAttention;
    const SUMMARY: &'static str =
        "LARA: linear randomized attention, multiple importance sampling over C landmark proposals";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("num_landmarks", self.num_landmarks)?;
        if !self.alpha_coeff.is_finite() {
            return Err(format!(
                "alpha_coeff must be finite, got {}",
                self.alpha_coeff
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> LaraAttention {
        let head_dim = dims.head_dim();
        let adaptive = match self.proposal_gen {
            ProposalGen::SegmentMeans => None,
            ProposalGen::Adaptive1d => Some(AdaptiveProposal {
                query: ProposalNet::init(head_dim, device),
                key: ProposalNet::init(head_dim, device),
            }),
        };
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            LaraCore {
                adaptive,
                training: Param::from_bool(true),
                num_landmarks: self.num_landmarks,
                alpha_coeff: self.alpha_coeff,
                mis: self.mis,
                sampling: self.sampling,
                noise: self.noise,
            },
        )
    }
}

/// Linear + LayerNorm on one head's vectors (official `adaptive-1d` `q_bar_gen` / `k_bar_gen`).
#[derive(Module, Debug)]
struct ProposalNet {
    linear: Linear,
    norm: LayerNorm,
}

impl ProposalNet {
    /// Official `_init_weights`: weights `N(0, 0.02²)` (timm `trunc_normal_(std=.02)`), biases 0,
    /// LayerNorm weight 1 and bias 0.
    fn init(width: usize, device: &Device) -> Self {
        let linear = LinearConfig::new(width, width)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            })
            .init(device);
        let linear = Linear {
            bias: Some(Param::from_tensor(Tensor::zeros([width], device))),
            ..linear
        };
        Self {
            linear,
            norm: LayerNorm::new(width, DEFAULT_EPSILON, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm.forward(self.linear.forward_folded(x))
    }
}

#[derive(Module, Debug)]
struct AdaptiveProposal {
    query: ProposalNet,
    key: ProposalNet,
}

/// Multi-head linear randomized attention.
pub type LaraAttention = Attention<LaraCore>;

/// The attention core of [`LaraAttention`].
#[derive(Module, Debug)]
pub struct LaraCore {
    adaptive: Option<AdaptiveProposal>,
    /// Draws samples only while this is set and the device records gradients (as dropout).
    training: Param<Flag>,
    num_landmarks: usize,
    alpha_coeff: f64,
    #[module(skip)]
    mis: MisType,
    #[module(skip)]
    sampling: Sampling,
    #[module(skip)]
    noise: Noise,
}

impl AttentionCore for LaraCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let training = is_training(&self.training, &q.device());
        self.estimate(q, k, v, pad_mask, training)
    }
}

/// Log positive random features `prm(x, ω) = s·ω·x − s‖x‖²/2` for every pair (sample, vector).
///
/// # Shapes
/// - `omega`: `[b, h, c, d]`, `x`: `[b, h, n, d]` → `[b, h, c, n]`
fn prm(x: Tensor<4>, omega: Tensor<4>, scale: f64) -> Tensor<4> {
    let [batch, heads, seq, _] = x.dims();
    let half_norm = (x.clone().square().sum_dim(3) * (scale / 2.0)).reshape([batch, heads, 1, seq]);
    omega.matmul(x.swap_dims(2, 3)) * scale - half_norm
}

/// Segment assignment of the real tokens of each row: `[b, C, n]` with 1 where token `m` belongs
/// to landmark `c`, and `[b, C]` with 1 where landmark `c` has tokens (every landmark of a row
/// without real tokens).
///
/// A row with `L` real tokens (rank `r` among them) uses the official split of `lara.py`:
/// `segs = L // C`; the first `C·(segs+1) − L` segments hold `segs` tokens, the rest `segs + 1`;
/// when `L < C` (`segs = 0`) token `r` alone forms landmark `C − L + r`.
fn segments(real: Tensor<2>, landmarks: usize) -> (Tensor<3>, Tensor<2>) {
    let [batch, seq] = real.dims();
    let device = real.device();
    let c = landmarks as f64;
    let rank = real.clone().cumsum(1) - 1.0; // [b, n]
    let len = real.clone().sum_dim(1); // [b, 1]
    let segs = (len.clone() / c).floor();
    let short = (segs.clone() + 1.0) * c - len.clone(); // segments of `segs` tokens
    let boundary = (short.clone() * segs.clone()).expand([batch, seq]);
    let in_short = (rank.clone() / segs.clone().clamp_min(1.0)).floor();
    let in_long = short.expand([batch, seq])
        + ((rank.clone() - boundary.clone()) / (segs + 1.0).expand([batch, seq])).floor();
    let index = in_long
        .mask_where(rank.lower(boundary), in_short)
        .mask_fill(real.lower_elem(0.5), -1.0); // padding belongs to no segment
    let landmark = Tensor::<1, Int>::arange(0..landmarks as i64, &device)
        .float()
        .reshape([1, landmarks, 1]);
    let assign = relu(1.0 - (index.reshape([batch, 1, seq]) - landmark).abs()); // [b, C, n]
    let present = assign
        .clone()
        .sum_dim(2)
        .greater_elem(0.5)
        .float()
        .reshape([batch, landmarks]);
    // A row of padding only counts its (zero) landmarks as present: with none, every sample's
    // mixture density would be −∞ and the weights 0/0.
    let empty = len.lower_elem(0.5).float().expand([batch, landmarks]);
    (assign, present.max_pair(empty))
}

impl LaraCore {
    /// LARA with explicit randomness: `stochastic` samples around the proposal means as in
    /// training, otherwise `ω = μ` (evaluation).
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
        let landmarks = self.num_landmarks;
        let real = match &pad_mask {
            Some(mask) => mask.clone().bool_not().float(),
            None => Tensor::ones([batch, seq], &device),
        }; // [b, n]
        let real4 = real.clone().reshape([batch, 1, seq, 1]);
        let (q, k, v) = (q * real4.clone(), k * real4.clone(), v * real4);
        let pad_bias = (real.clone() - 1.0).neg() * PAD_BIAS; // [b, n], PAD_BIAS at padding
        let pad_bias = pad_bias.reshape([batch, 1, 1, seq]);

        // Landmarks: segment means of (transformed) Q and K over the real tokens.
        let (assign, present) = segments(real, landmarks);
        let count = assign
            .clone()
            .sum_dim(2)
            .clamp_min(1.0)
            .reshape([batch, 1, landmarks, 1]);
        let assign = assign.reshape([batch, 1, landmarks, seq]);
        let (q_src, k_src) = match &self.adaptive {
            Some(nets) => (nets.query.forward(q.clone()), nets.key.forward(k.clone())),
            None => (q.clone(), k.clone()),
        };
        let q_bar = assign.clone().matmul(q_src) / count.clone(); // [b, h, C, d]
        let k_bar = assign.matmul(k_src) / count;
        let mu = q_bar.clone() + k_bar;

        // Samples ω (and the proposal means / presence of each sample).
        let noise_std = self.noise.std(head_dim);
        let gaussian = || {
            Tensor::<4>::random(
                [batch, heads, landmarks, head_dim],
                Distribution::Normal(0.0, 1.0),
                &device,
            ) * noise_std
        };
        let copies = if stochastic && self.sampling != Sampling::Single {
            2
        } else {
            1
        };
        let omega = if !stochastic {
            mu.clone()
        } else {
            match self.sampling {
                Sampling::Single => mu.clone() + gaussian(),
                Sampling::Antithetic => {
                    let eps = gaussian();
                    Tensor::cat(vec![mu.clone() + eps.clone(), mu.clone() - eps], 2)
                }
                Sampling::Multisample => {
                    Tensor::cat(vec![mu.clone() + gaussian(), mu.clone() + gaussian()], 2)
                }
            }
        };
        let repeat = |x: Tensor<4>| {
            if copies == 1 {
                x
            } else {
                x.repeat_dim(2, copies)
            }
        };
        let samples = landmarks * copies;
        let mu = repeat(mu);
        let present = present.repeat_dim(1, copies); // [b, S]
        let absent_bias = (present.clone() - 1.0).neg() * PAD_BIAS;

        // Self-normalised estimates per sample and the target density at each sample.
        let log_q = prm(q.clone(), omega.clone(), scale); // [b, h, S, n]
        let log_k = prm(k, omega.clone(), scale) + pad_bias.clone(); // [b, h, S, m]
        let per_sample = softmax(log_k.clone(), 3).matmul(v); // f: [b, h, S, d]
        let log_target = log_q + log_sum_exp(log_k, 3); // [b, h, S, n]

        // Proposal densities of every sample under every proposal mean.
        let log_mixture = prm(mu.clone(), omega.clone(), scale)
            + absent_bias.clone().reshape([batch, 1, 1, samples]); // [b, h, S, S]
        let log_mixture = log_sum_exp(log_mixture, 3); // [b, h, S, 1]
        let log_ratio = match self.mis {
            MisType::MisOpt => {
                let own = (omega * mu.clone()).sum_dim(3) * scale
                    - mu.square().sum_dim(3) * (scale / 2.0); // log q_c(ω_c): [b, h, S, 1]
                let balance = (own.clone() - log_mixture).exp();
                let logits = q_bar.matmul(q.swap_dims(2, 3)) * scale + pad_bias; // [b, h, C, n]
                let t = repeat(softmax(logits, 3));
                let weight = present.clone().reshape([batch, 1, samples, 1]);
                let mean_t =
                    (t.clone() * weight.clone()).sum_dim(2) / weight.sum_dim(2).clamp_min(1.0); // [b, 1|h, 1, n]
                let alpha = balance + (t - mean_t) * self.alpha_coeff;
                alpha.clamp_min(1e-8).log() + log_target - own
            }
            MisType::MisBh => log_target - log_mixture,
            MisType::MisBiased => {
                let log_alpha = mu.matmul(q.swap_dims(2, 3)) * scale;
                log_alpha + log_target - log_mixture
            }
        };
        let log_ratio = log_ratio + absent_bias.reshape([batch, 1, samples, 1]);
        let weights = softmax(log_ratio, 2); // over the samples: [b, h, S, n]
        weights.swap_dims(2, 3).matmul(per_sample) // [b, h, n, d]
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::reference::{relative_error, softmax_attention};
    use crate::mixer::common::testing::golden_qkv;
    use crate::mixer::common::testing::standard_normal;

    fn dims() -> MixerDims {
        MixerDims::new(32, 2, 256)
    }

    fn lara(config: LaraConfig, device: &Device) -> LaraAttention {
        config.init(&dims(), device)
    }

    fn with_landmarks(num_landmarks: usize) -> LaraConfig {
        LaraConfig {
            num_landmarks,
            ..LaraConfig::default()
        }
    }

    /// Mean relative error against softmax attention over `seeds` device seeds; `periodic`
    /// repeats two random tokens, so that every segment mean (every proposal) is the same.
    fn mean_error(config: LaraConfig, stochastic: bool, periodic: bool, seeds: u64) -> f32 {
        let device = Device::flex();
        let attention = lara(config, &device);
        let n = 256;
        let mut sum = 0.0;
        for seed in 0..seeds {
            device.seed(200 + seed);
            let tokens = |count| standard_normal(&device, [1, 2, count, 16]);
            let (q, k) = if periodic {
                (
                    tokens(2).repeat_dim(2, n / 2),
                    tokens(2).repeat_dim(2, n / 2),
                )
            } else {
                (tokens(n), tokens(n))
            };
            let v = tokens(n);
            let exact = softmax_attention(q.clone(), k.clone(), v.clone(), None);
            let estimate = attention.core.estimate(q, k, v, None, stochastic);
            sum += relative_error(estimate, exact);
        }
        sum / seeds as f32
    }

    #[test]
    fn error_falls_with_the_number_of_landmarks() {
        // Gaussian q, k, v (n = 256, head_dim 16): segment means of unrelated tokens make poor
        // proposals, so the error falls slowly until every token is its own landmark.
        for stochastic in [false, true] {
            let errors: Vec<f32> = [4, 16, 64, 256]
                .iter()
                .map(|&c| mean_error(with_landmarks(c), stochastic, false, 4))
                .collect();
            println!("Gaussian, stochastic {stochastic}: error for C = 4, 16, 64, 256: {errors:?}");
            assert!(
                errors[3] < 0.8 * errors[0],
                "stochastic {stochastic}: 256 landmarks ({}) not clearly better than 4 ({})",
                errors[3],
                errors[0]
            );
        }
    }

    #[test]
    fn identical_proposals_give_a_consistent_self_normalised_estimate() {
        // Two alternating tokens: every landmark is the same proposal, so LARA is plain
        // self-normalised importance sampling with C draws, consistent for the paper's proposal
        // variance: the error must keep falling with C (roughly like 1/√C).
        for mis in [MisType::MisOpt, MisType::MisBh] {
            let config = |num_landmarks| LaraConfig {
                num_landmarks,
                mis,
                noise: Noise::Paper,
                ..LaraConfig::default()
            };
            let few = mean_error(config(2), true, true, 4);
            let many = mean_error(config(128), true, true, 4);
            println!("{mis:?}: error C=2 {few:.3}, C=128 {many:.3}");
            assert!(
                many < 0.5 * few,
                "{mis:?}: 128 draws ({many}) not clearly better than 2 ({few})"
            );
        }
    }

    #[test]
    fn matches_the_official_code_on_a_golden_case() {
        // Expected values: a NumPy transcription of the official `LinearRA.forward` (1-D,
        // evaluation, `proposal_gen='pool'`, alpha_coeff 1) on these inputs with C = 3 landmarks
        // over 7 tokens (uneven segments 2, 2, 3).
        let expected_opt = [
            0.4731364, 0.0851620, -0.1107647, -0.4540612, 0.4751348, 0.0852896, -0.1098567,
            -0.4635358, 0.4499411, 0.0825221, -0.1002634, -0.4437157, 0.4273227, 0.0802901,
            -0.0962348, -0.4042150, 0.4883878, 0.0938571, -0.2439767, 0.1372161, 0.5114162,
            0.0986148, -0.2931841, 0.3105808, 0.5118891, 0.0987106, -0.2941609, 0.3139814,
        ];
        let expected_bh = [
            0.4657197, 0.0843703, -0.1083572, -0.4462534, 0.4690215, 0.0846196, -0.1075579,
            -0.4585891, 0.4554945, 0.0831369, -0.1024639, -0.4476780, 0.4337635, 0.0810626,
            -0.0998659, -0.4037018, 0.4864300, 0.0934264, -0.2393172, 0.1202229, 0.5110799,
            0.0985463, -0.2924839, 0.3081364, 0.5118020, 0.0986928, -0.2939778, 0.3133400,
        ];
        let device = Device::flex();
        let (q, k, v) = golden_qkv(&device);
        let dims = MixerDims::new(4, 1, 7);
        for (mis, expected) in [
            (MisType::MisOpt, expected_opt),
            (MisType::MisBh, expected_bh),
        ] {
            let config = LaraConfig {
                num_landmarks: 3,
                mis,
                ..LaraConfig::default()
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
    fn segments_follow_the_official_split() {
        let device = Device::flex();
        // 10 real tokens into 4 landmarks: sizes 2, 2, 3, 3; a row with 3 real tokens and 4
        // landmarks: each token its own landmark, the first landmark empty.
        let real = Tensor::<2>::from_data(
            TensorData::new(
                [vec![1.0f32; 10], vec![1.0, 1.0, 1.0], vec![0.0; 7]].concat(),
                [2, 10],
            ),
            &device,
        );
        let (assign, present) = segments(real, 4);
        let index = assign.clone().argmax(1).reshape([2, 10]); // landmark of each token
        let index: Vec<i64> = index
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert_eq!(&index[..10], &[0, 0, 1, 1, 2, 2, 2, 3, 3, 3]);
        assert_eq!(&index[10..13], &[1, 2, 3]);
        let counts: Vec<f32> = assign.sum_dim(2).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(counts, vec![2.0, 2.0, 3.0, 3.0, 0.0, 1.0, 1.0, 1.0]);
        let present: Vec<f32> = present.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(present, vec![1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn more_landmarks_than_tokens_equals_one_landmark_per_token() {
        // The official `n <= num_landmarks` case: every token is its own landmark.
        let device = Device::flex();
        device.seed(4);
        let shape = [1, 2, 20, 16];
        let (q, k, v) = (
            standard_normal(&device, shape),
            standard_normal(&device, shape),
            standard_normal(&device, shape),
        );
        let many = lara(with_landmarks(49), &device).core.estimate(
            q.clone(),
            k.clone(),
            v.clone(),
            None,
            false,
        );
        let exact_count = lara(with_landmarks(20), &device)
            .core
            .estimate(q, k, v, None, false);
        let diff = (many - exact_count).abs().max().into_scalar::<f32>();
        assert!(
            diff < 1e-5,
            "empty landmarks changed the estimate by {diff}"
        );
    }

    #[test]
    fn padding_is_invisible_to_real_positions() {
        let device = Device::flex();
        device.seed(3);
        let shape = [2, 2, 60, 16];
        let (q, k, v) = (
            standard_normal(&device, shape),
            standard_normal(&device, shape),
            standard_normal(&device, shape),
        );
        let real = 37;
        let pad: Vec<bool> = (0..120).map(|i| i >= 60 + real).collect();
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [2, 60]), &device);
        let pad4 = pad.clone().reshape([2, 1, 60, 1]).expand(shape);
        let garbage = standard_normal(&device, shape) * 100.0;
        let (q2, k2, v2) = (
            q.clone().mask_where(pad4.clone(), garbage.clone()),
            k.clone().mask_where(pad4.clone(), garbage.clone() * 0.5),
            v.clone().mask_where(pad4, garbage),
        );
        for sampling in [Sampling::Single, Sampling::Antithetic] {
            for mis in [MisType::MisOpt, MisType::MisBh, MisType::MisBiased] {
                let config = LaraConfig {
                    num_landmarks: 8,
                    mis,
                    sampling,
                    ..LaraConfig::default()
                };
                let attention = lara(config, &device);
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
                        q2.clone(),
                        k2.clone(),
                        v2.clone(),
                        Some(pad.clone()),
                        stochastic,
                    );
                    let diff = (a.narrow(2, 0, real) - b.narrow(2, 0, real)).abs().max();
                    let diff = diff.into_scalar::<f32>();
                    assert!(
                        diff < 1e-5,
                        "{mis:?} {sampling:?} stochastic {stochastic}: padding leaks ({diff})"
                    );
                }
                // The padded row equals its real tokens run alone (deterministic evaluation).
                let full = attention.core.estimate(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    Some(pad.clone()),
                    false,
                );
                let row = |x: &Tensor<4>| x.clone().narrow(0, 1, 1).narrow(2, 0, real);
                let alone = attention
                    .core
                    .estimate(row(&q), row(&k), row(&v), None, false);
                let diff = (full.narrow(0, 1, 1).narrow(2, 0, real) - alone)
                    .abs()
                    .max();
                let diff = diff.into_scalar::<f32>();
                assert!(
                    diff < 1e-5,
                    "{mis:?}: padded row differs from the row alone ({diff})"
                );
            }
        }
    }

    #[test]
    fn adaptive_proposals_are_trained() {
        use burn::module::{ModuleVisitor, Param as ModuleParam};
        use burn::optim::GradientsParams;

        let device = Device::flex().autodiff();
        device.seed(1);
        let config = LaraConfig {
            num_landmarks: 4,
            proposal_gen: ProposalGen::Adaptive1d,
            ..LaraConfig::default()
        };
        let attention = crate::init_now(lara(config, &device));
        let shape = [2, 2, 24, 16];
        let (q, k, v) = (
            standard_normal(&device, shape),
            standard_normal(&device, shape),
            standard_normal(&device, shape),
        );
        let loss = (attention.core.attend(q, k, v, None) * standard_normal(&device, shape)).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &attention);
        struct Check<'a>(&'a GradientsParams, usize);
        impl ModuleVisitor for Check<'_> {
            fn visit_float<const D: usize>(&mut self, param: &ModuleParam<Tensor<D>>) {
                let grad = self
                    .0
                    .get::<D>(param.id)
                    .expect("parameter without gradient");
                assert!(grad.abs().sum().into_scalar::<f32>() > 0.0);
                self.1 += 1;
            }
        }
        // `attend` bypasses the Q/K/V projections: check the proposal networks only.
        let mut check = Check(&grads, 0);
        attention
            .core
            .adaptive
            .as_ref()
            .expect("adaptive")
            .visit(&mut check);
        assert_eq!(
            check.1, 8,
            "two Linear (weight, bias) + LayerNorm (gamma, beta)"
        );
    }
}
