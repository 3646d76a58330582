//! Kernelized attention with a learned spectral distribution, SKTR / KL-Transformer
//! ([On Learning the Transformer Kernel](https://arxiv.org/abs/2110.08323), Chowdhury, Oh et al.,
//! TMLR 2022): linear attention whose random features are drawn from a *learned* Gaussian
//! spectral density, so training shapes the kernel.
//!
//! Checked against the official code, cs1160701/OnLearningTheKernel commit a8e3d3b:
//! `fast_transformers/feature_maps/fourier_features.py` (`GaussianMixturePositive` = GMM-PRF,
//! `SmoothedGaussianMixtureFourierFeatures` = GMM-RKS), `fast_transformers/attention/
//! linear_attention.py`, and the LRA models `{listops,text,retrieval}/model.py` (README:
//! GMM-PRF = `mix-gauss-positive`, GMM-RKS = `mix-gauss-fourier`). With `x̃ = x·d^{-1/4}`
//! (`x * sqrt(softmax_temp)`, `softmax_temp = 1/√d`) and base noise `ε ~ N(0, I)`:
//!
//! ```text
//! GMM-PRF  ω = μ_h + exp(σ_h/2) ⊙ ε          (σ: learned log-variance, diagonal)
//!          φ(x) = exp(ω·x̃ − ‖x̃‖² − ½·log r)            (r features)
//! GMM-RKS  ω± = A_hᵀ ε ± μ_h                  (A: learned full d×d matrix)
//!          φ(x) = √(4/r)·[cos ω₊·x̃, sin ω₊·x̃, cos ω₋·x̃, sin ω₋·x̃] ⊕ [smoothing]
//! out_i    = φ(q_i)ᵀ Σⱼ φ(kⱼ) vⱼᵀ / (φ(q_i)ᵀ Σⱼ φ(kⱼ) + 1e-6)   (fast-transformers linear attention)
//! ```
//!
//! Each head has its own Gaussian (the official "mixture" runs across the heads: `mean` and
//! `sigma` are `[n_heads, d]`); `components = K > 1` gives each head `K` Gaussians with equal
//! weights, each feeding `r/K` of the features (stratified sampling of the mixture; the official
//! `n_heads` components are `components = 1`). At `μ = 0`, `σ = 0` (unit variance) the PRF
//! estimates the RBF kernel `exp(−‖q̃ − k̃‖²/2)`: note the official offset `‖x̃‖²` rather than
//! FAVOR+'s `‖x̃‖²/2`, so the attention it approximates is `softmax(q̃·k̃ − ‖k̃‖²/2)`, not softmax
//! attention. `prf_kernel = "softmax"` uses the `‖x̃‖²/2` offset instead, which makes the same
//! features an unbiased estimator of the softmax kernel `exp(q̃·k̃)` at that initialisation. The
//! RKS features at `μ = 0`, `A = I` estimate `2·exp(−‖q̃ − k̃‖²/2) + smoothing²` (the official
//! `√(4/r)` scale counts both signs of `μ`; the constant smoothing feature keeps the normaliser
//! positive).
//!
//! Randomness: `ε` is redrawn from the device RNG at every training forward (official
//! `redraw=1`); `redraw = false` keeps the draw made at initialisation.
//!
//! Accuracy: SKTR learns its kernel and is not meant to reproduce softmax. At initialisation
//! (random `μ`, `σ`) on Gaussian q, k, v ~ N(0, 1) with head_dim 32 (r = 128) the relative error
//! against softmax attention is ≈ 2.5 (n = 1024) and ≈ 2.8-3.5 (n = 4096); with the standard
//! normal density the features converge to their kernel like 1/√r (unit tests).
//!
//! Complexity: O(n·r·d) time, O(n·r + r·d) memory per head; O(K·d) (PRF) or O(K·d²) (RKS)
//! parameters per head.
//!
//! Deviations from the official code, and why:
//! - Evaluation uses a fixed `ε` drawn at initialisation; the official default
//!   (`deterministic_eval=False`) redraws at every evaluation call too, which would make
//!   evaluation outputs random. (Its `deterministic_eval=True` keeps the last training draw.)
//! - `components` and `prf_kernel` are extensions (defaults reproduce the official maps).
//! - FastFood and generator variants of the paper are not implemented.
//! - No attention dropout (fast-transformers' linear attention has none).

use burn::module::{Flag, Module, Param};
use burn::tensor::{Bool, Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::common::{fixed, is_training};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Denominator stabiliser of fast-transformers' `LinearAttention` (`eps=1e-6`).
const EPS: f64 = 1e-6;

/// Which random-feature map is built on the learned spectral density.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SktrVariant {
    /// Positive random features `exp(ω·x̃ − ‖x̃‖²)` (official `mix-gauss-positive`).
    GmmPrf,
    /// Random kitchen sinks `cos/sin(ω·x̃)` with a smoothing feature (official
    /// `mix-gauss-fourier`).
    GmmRks,
}

/// The kernel the positive features estimate at `μ = 0`, unit variance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrfKernel {
    /// Offset `‖x̃‖²`: the RBF kernel `exp(−‖q̃ − k̃‖²/2)` (official `GaussianMixturePositive`).
    Rbf,
    /// Offset `‖x̃‖²/2`: the softmax kernel `exp(q̃·k̃)` (FAVOR+ positive features).
    Softmax,
}

/// Settings of [`SktrAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SktrConfig {
    /// Feature map. Default: `gmm_prf` (GMM-PRF, listed first in the official README).
    pub variant: SktrVariant,
    /// Number of random features `r` (RKS: the cos/sin features, a multiple of `4·components`,
    /// without the smoothing feature). Default (unset): the official rule from the head width
    /// `d`, `min(max_len, pow2cast(d·ln d))` for PRF (256 for d = 64, 128 for d = 32) and
    /// `min(max_len, 2·pow2cast(d·ln d))` for RKS (retrieval `model.py`, `n_dims - 1`).
    pub num_features: Option<usize>,
    /// Gaussian components per head `K`. Default: 1 (official: one `(μ, σ)` per head).
    pub components: usize,
    /// Offset of the positive features (PRF only). Default: `rbf` (official `‖x̃‖²`).
    pub prf_kernel: PrfKernel,
    /// Value of the constant feature appended by RKS. Default: 1.0
    /// (`SmoothedGaussianMixtureFourierFeatures(smoothing=1.0)`, retrieval `model.py`; the text
    /// model passes 0.36).
    pub smoothing: f64,
    /// Redraw the base noise `ε` at every training forward. Default: true (official `redraw=1`).
    pub redraw: bool,
}

impl Default for SktrConfig {
    fn default() -> Self {
        Self {
            variant: SktrVariant::GmmPrf,
            num_features: None,
            components: 1,
            prf_kernel: PrfKernel::Rbf,
            smoothing: 1.0,
            redraw: true,
        }
    }
}

/// The official `pow2cast`: the power of two nearest to `x` on a log scale, rounding up when the
/// second-highest bit of `⌊x⌋` is set (`text/model.py`).
fn pow2cast(x: f64) -> usize {
    let whole = x as u64;
    if whole < 2 {
        return 1;
    }
    let bits = 64 - whole.leading_zeros();
    let second_bit_set = (whole >> (bits - 2)) & 1 == 1;
    let exponent = if second_bit_set {
        x.log2().ceil()
    } else {
        x.log2().floor()
    };
    1 << exponent as u32
}

impl SktrConfig {
    /// Spectral samples `ω` per component: PRF features, or RKS frequencies (4 features each).
    fn samples_per_component(&self, dims: &MixerDims) -> usize {
        let d = dims.head_dim() as f64;
        let auto = pow2cast(d * d.ln());
        let features = match (self.variant, self.num_features) {
            (_, Some(r)) => r,
            (SktrVariant::GmmPrf, None) => dims.max_len.min(auto),
            (SktrVariant::GmmRks, None) => dims.max_len.min(2 * auto),
        };
        let per_sample = match self.variant {
            SktrVariant::GmmPrf => 1,
            SktrVariant::GmmRks => 4,
        };
        (features / (per_sample * self.components)).max(1)
    }
}

impl MixerSpec for SktrConfig {
    type Mixer = SktrAttention;
    const SUMMARY: &'static str =
        "SKTR: linear attention with random features from a learned Gaussian spectral density";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("components", self.components)?;
        let per_sample = match self.variant {
            SktrVariant::GmmPrf => 1,
            SktrVariant::GmmRks => 4,
        };
        if let Some(r) = self.num_features
            && (r == 0 || r % (per_sample * self.components) != 0)
        {
            return Err(format!(
                "num_features must be a positive multiple of {} ({}components = {}), got {r}",
                per_sample * self.components,
                if per_sample == 4 { "4 · " } else { "" },
                self.components
            ));
        }
        if self.variant == SktrVariant::GmmRks && self.prf_kernel != PrfKernel::Rbf {
            return Err("prf_kernel applies to variant = \"gmm_prf\" only".into());
        }
        if !self.smoothing.is_finite() {
            return Err(format!("smoothing must be finite, got {}", self.smoothing));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> SktrAttention {
        let (heads, d, k) = (dims.n_heads, dims.head_dim(), self.components);
        let samples = self.samples_per_component(dims);
        let uniform = |bound: f64| Distribution::Uniform(-bound, bound);
        // Official `reset_parameters`: Xavier-uniform scale parameter, mean U(±1/√fan_in) with
        // the scale parameter's fan-in (per head: `[n_heads, d]` resp. `[n_heads, d, d]`).
        let spectrum = match self.variant {
            SktrVariant::GmmPrf => {
                let bound = (6.0 / (d + heads) as f64).sqrt();
                Spectrum {
                    mean: Param::from_tensor(Tensor::random(
                        [heads, k, d],
                        uniform(1.0 / (d as f64).sqrt()),
                        device,
                    )),
                    log_var: Some(Param::from_tensor(Tensor::random(
                        [heads, k, d],
                        uniform(bound),
                        device,
                    ))),
                    transform: None,
                }
            }
            SktrVariant::GmmRks => {
                let bound = (6.0 / (d * d + heads * d) as f64).sqrt();
                Spectrum {
                    mean: Param::from_tensor(Tensor::random(
                        [heads, k, d],
                        uniform(1.0 / d as f64),
                        device,
                    )),
                    log_var: None,
                    transform: Some(Param::from_tensor(Tensor::random(
                        [heads, k, d, d],
                        uniform(bound),
                        device,
                    ))),
                }
            }
        };
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            SktrCore {
                spectrum,
                fixed_noise: fixed(Tensor::random(
                    [1, k, d, samples],
                    Distribution::Normal(0.0, 1.0),
                    device,
                )),
                training: Param::from_bool(true),
                redraw: self.redraw,
                smoothing: self.smoothing,
                variant: self.variant,
                prf_kernel: self.prf_kernel,
            },
        )
    }
}

/// The learned Gaussian(s) of each head.
#[derive(Module, Debug)]
struct Spectrum {
    /// `μ`: `[heads, K, d]`.
    mean: Param<Tensor<3>>,
    /// PRF: log-variance `σ` of the diagonal covariance, `[heads, K, d]`.
    log_var: Option<Param<Tensor<3>>>,
    /// RKS: full linear map `A` of the base noise, `[heads, K, d, d]`.
    transform: Option<Param<Tensor<4>>>,
}

/// Multi-head linear attention with learned spectral random features.
pub type SktrAttention = Attention<SktrCore>;

/// The attention core of [`SktrAttention`].
#[derive(Module, Debug)]
pub struct SktrCore {
    spectrum: Spectrum,
    /// Base noise `ε` `[1, K, d, samples]` drawn at initialisation, used in evaluation (fixed,
    /// not trained).
    fixed_noise: Param<Tensor<4>>,
    /// Redraws `ε` only while this is set and the device records gradients (as dropout).
    training: Param<Flag>,
    redraw: bool,
    smoothing: f64,
    #[module(skip)]
    variant: SktrVariant,
    #[module(skip)]
    prf_kernel: PrfKernel,
}

impl AttentionCore for SktrCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let training = is_training(&self.training, &q.device());
        self.estimate(q, k, v, pad_mask, training && self.redraw)
    }
}

impl SktrCore {
    /// Linear attention with features from fresh noise (`fresh`) or the fixed draw.
    pub(crate) fn estimate(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
        fresh: bool,
    ) -> Tensor<4> {
        let [batch, _, seq, _] = q.dims();
        let noise = if fresh {
            self.fixed_noise
                .val()
                .random_like(Distribution::Normal(0.0, 1.0))
        } else {
            self.fixed_noise.val()
        };
        let features = self.feature_map(noise);
        let phi_q = features.apply(q); // [b, h, n, R]
        let phi_k = features.apply(k);
        let phi_k = match pad_mask {
            Some(mask) => phi_k * mask.bool_not().float().reshape([batch, 1, seq, 1]),
            None => phi_k,
        };
        let kv = phi_k.clone().swap_dims(2, 3).matmul(v); // [b, h, R, d]
        let key_sum = phi_k.sum_dim(2).swap_dims(2, 3); // [b, h, R, 1]
        let numerator = phi_q.clone().matmul(kv);
        let denominator = phi_q.matmul(key_sum) + EPS;
        numerator / denominator
    }

    /// The per-head spectral samples for base noise `[1, K, d, S]`.
    fn feature_map(&self, noise: Tensor<4>) -> FeatureMap {
        let mean = self.spectrum.mean.val().unsqueeze_dim::<4>(3); // [h, K, d, 1]
        let [heads, components, d, _] = mean.dims();
        let samples = noise.dims()[3];
        // [h, K, d, S] → [1, h, d, K·S]: the components' samples side by side.
        let flatten = |omega: Tensor<4>| {
            omega
                .swap_dims(1, 2)
                .reshape([1, heads, d, components * samples])
        };
        match self.variant {
            SktrVariant::GmmPrf => {
                let log_var = self.spectrum.log_var.as_ref().expect("PRF log-variance");
                let std = (log_var.val() / 2.0).exp().unsqueeze_dim::<4>(3);
                let omega = noise * std + mean;
                FeatureMap::Positive {
                    omega: flatten(omega),
                    norm_weight: match self.prf_kernel {
                        PrfKernel::Rbf => 1.0,
                        PrfKernel::Softmax => 0.5,
                    },
                }
            }
            SktrVariant::GmmRks => {
                let transform = self.spectrum.transform.as_ref().expect("RKS transform");
                let gaussian = transform.val().swap_dims(2, 3).matmul(noise); // Aᵀε: [h, K, d, S]
                FeatureMap::Fourier {
                    plus: flatten(gaussian.clone() + mean.clone()),
                    minus: flatten(gaussian - mean),
                    smoothing: self.smoothing,
                }
            }
        }
    }
}

/// Random features of one forward pass (a short-lived value: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum FeatureMap {
    /// `exp(ω·x̃ − w‖x̃‖² − ½ log r)`.
    Positive { omega: Tensor<4>, norm_weight: f64 },
    /// `√(4/r)[cos ω₊·x̃, sin ω₊·x̃, cos ω₋·x̃, sin ω₋·x̃]` and the constant `smoothing`.
    Fourier {
        plus: Tensor<4>,
        minus: Tensor<4>,
        smoothing: f64,
    },
}

impl FeatureMap {
    /// `[b, h, n, d]` → features `[b, h, n, R]`.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, heads, seq, d] = x.dims();
        let x = x * (d as f64).powf(-0.25);
        match self {
            FeatureMap::Positive { omega, norm_weight } => {
                let r = omega.dims()[3];
                let u = x.clone().matmul(omega.clone()); // [b, h, n, r]
                let offset = x.square().sum_dim(3) * *norm_weight + 0.5 * (r as f64).ln(); // [b, h, n, 1]
                (u - offset).exp()
            }
            FeatureMap::Fourier {
                plus,
                minus,
                smoothing,
            } => {
                let frequencies = plus.dims()[3];
                let scale = (1.0 / frequencies as f64).sqrt(); // √(4/r) with r = 4·frequencies
                let u_plus = x.clone().matmul(plus.clone());
                let u_minus = x.matmul(minus.clone());
                let constant = Tensor::full([batch, heads, seq, 1], *smoothing, &u_plus.device());
                Tensor::cat(
                    vec![
                        u_plus.clone().cos() * scale,
                        u_plus.sin() * scale,
                        u_minus.clone().cos() * scale,
                        u_minus.sin() * scale,
                        constant,
                    ],
                    3,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;
    use burn::tensor::activation::softmax;

    use super::*;
    use crate::mixer::common::reference::{relative_error, softmax_attention};
    use crate::mixer::common::testing::standard_normal;

    fn dims(max_len: usize) -> MixerDims {
        MixerDims::new(32, 2, max_len)
    }

    /// The module with its spectral density reset to the standard normal (μ = 0, unit
    /// variance / identity map), as in the brief's limiting case.
    fn standard(config: SktrConfig, device: &Device) -> SktrAttention {
        let mut attention = config.init(&dims(4096), device);
        let spectrum = &mut attention.core.spectrum;
        spectrum.mean = Param::from_tensor(spectrum.mean.val().zeros_like());
        if let Some(log_var) = &spectrum.log_var {
            spectrum.log_var = Some(Param::from_tensor(log_var.val().zeros_like()));
        }
        if let Some(transform) = &spectrum.transform {
            let [h, k, d, _] = transform.val().dims();
            let eye = Tensor::<2>::eye(d, device)
                .reshape([1, 1, d, d])
                .expand([h, k, d, d]);
            spectrum.transform = Some(Param::from_tensor(eye));
        }
        attention
    }

    /// Exact attention under the kernel the features estimate at the standard normal density.
    fn exact(config: &SktrConfig, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let d = q.dims()[3];
        let (q, k) = (q * (d as f64).powf(-0.25), k * (d as f64).powf(-0.25));
        let dots = q.clone().matmul(k.clone().swap_dims(2, 3)); // q̃·k̃
        let [b, h, n, _] = k.dims();
        let key_norm = k.square().sum_dim(3).reshape([b, h, 1, n]);
        match (config.variant, config.prf_kernel) {
            (SktrVariant::GmmPrf, PrfKernel::Softmax) => softmax(dots, 3).matmul(v),
            (SktrVariant::GmmPrf, PrfKernel::Rbf) => softmax(dots - key_norm / 2.0, 3).matmul(v),
            (SktrVariant::GmmRks, _) => {
                let query_norm = q.square().sum_dim(3); // [b, h, n, 1]
                let distance = query_norm + key_norm - dots * 2.0;
                let kernel = (distance / -2.0).exp() * 2.0 + config.smoothing.powi(2);
                let normaliser = kernel.clone().sum_dim(3);
                kernel.matmul(v) / normaliser
            }
        }
    }

    /// Mean relative error over `seeds` device seeds, q and k ~ N(0, scale²).
    fn mean_error(config: &SktrConfig, scale: f64, seeds: u64) -> f32 {
        let device = Device::flex();
        let attention = standard(config.clone(), &device);
        let mut sum = 0.0;
        for seed in 0..seeds {
            device.seed(400 + seed);
            let shape = [1, 2, 256, 16];
            let (q, k, v) = (
                standard_normal(&device, shape),
                standard_normal(&device, shape),
                standard_normal(&device, shape),
            );
            let (q, k) = (q * scale, k * scale);
            let reference = exact(config, q.clone(), k.clone(), v.clone());
            sum += relative_error(attention.core.estimate(q, k, v, None, true), reference);
        }
        sum / seeds as f32
    }

    #[test]
    fn standard_density_error_falls_with_the_number_of_features() {
        // q, k ~ N(0, 0.5²), head_dim 16, n = 256 (at N(0, 1) the positive features need far
        // more than 1024 draws: their variance grows like exp(‖q̃ + k̃‖²)). Measured errors for
        // r = 16, 64, 256, 1024, 4096: PRF/softmax 0.49, 0.36, 0.18, 0.098, 0.052; PRF/RBF 0.46,
        // 0.32, 0.16, 0.087, 0.047; RKS 0.39, 0.17, 0.079, 0.041, 0.020 (about 1/√r).
        let configs = [
            (SktrVariant::GmmPrf, PrfKernel::Softmax),
            (SktrVariant::GmmPrf, PrfKernel::Rbf),
            (SktrVariant::GmmRks, PrfKernel::Rbf),
        ];
        for (variant, prf_kernel) in configs {
            let config = |r| SktrConfig {
                variant,
                prf_kernel,
                num_features: Some(r),
                ..SktrConfig::default()
            };
            let few = mean_error(&config(16), 0.5, 4);
            let many = mean_error(&config(1024), 0.5, 4);
            println!("{variant:?}/{prf_kernel:?}: error r=16 {few:.4}, r=1024 {many:.4}");
            assert!(
                many < 0.3 * few,
                "{variant:?}/{prf_kernel:?}: 1024 features ({many}) vs 16 ({few})"
            );
        }
    }

    #[test]
    fn softmax_offset_estimates_softmax_attention() {
        let config = SktrConfig {
            prf_kernel: PrfKernel::Softmax,
            num_features: Some(4096),
            ..SktrConfig::default()
        };
        let device = Device::flex();
        let attention = standard(config, &device);
        device.seed(7);
        let shape = [1, 2, 128, 16];
        let (q, k, v) = (
            standard_normal(&device, shape) * 0.5,
            standard_normal(&device, shape) * 0.5,
            standard_normal(&device, shape),
        );
        let reference = softmax_attention(q.clone(), k.clone(), v.clone(), None);
        let error = relative_error(attention.core.estimate(q, k, v, None, true), reference);
        println!("softmax-offset PRF, r = 4096: relative error {error:.4}");
        assert!(error < 0.1, "relative error {error}");
    }

    #[test]
    fn default_feature_counts_follow_the_official_rule() {
        assert_eq!(pow2cast(64.0 * 64f64.ln()), 256);
        assert_eq!(pow2cast(32.0 * 32f64.ln()), 128);
        assert_eq!(pow2cast(8.0 * 8f64.ln()), 16);
        let prf = SktrConfig::default();
        let rks = SktrConfig {
            variant: SktrVariant::GmmRks,
            ..SktrConfig::default()
        };
        let head_64 = MixerDims::new(256, 4, 4096);
        assert_eq!(prf.samples_per_component(&head_64), 256);
        assert_eq!(rks.samples_per_component(&head_64), 512 / 4);
        let short = MixerDims {
            max_len: 100,
            ..head_64
        };
        assert_eq!(prf.samples_per_component(&short), 100);
    }

    #[test]
    fn gradients_reach_the_spectral_parameters() {
        use burn::module::{ModuleVisitor, Param as ModuleParam};
        use burn::optim::GradientsParams;

        for variant in [SktrVariant::GmmPrf, SktrVariant::GmmRks] {
            let device = Device::flex().autodiff();
            device.seed(1);
            let config = SktrConfig {
                variant,
                components: 2,
                ..SktrConfig::default()
            };
            let attention = crate::init_now(config.init(&dims(64), &device));
            let shape = [2, 2, 24, 16];
            let (q, k, v) = (
                standard_normal(&device, shape),
                standard_normal(&device, shape),
                standard_normal(&device, shape),
            );
            let loss =
                (attention.core.attend(q, k, v, None) * standard_normal(&device, shape)).sum();
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
            let mut check = Check(&grads, 0);
            attention.core.spectrum.visit(&mut check);
            assert_eq!(check.1, 2, "{variant:?}: mean and scale");
        }
    }

    #[test]
    fn padded_keys_get_no_weight() {
        for variant in [SktrVariant::GmmPrf, SktrVariant::GmmRks] {
            let device = Device::flex();
            device.seed(3);
            let config = SktrConfig {
                variant,
                ..SktrConfig::default()
            };
            let attention = config.init(&dims(64), &device);
            let shape = [2, 2, 50, 16];
            let (q, k, v) = (
                standard_normal(&device, shape),
                standard_normal(&device, shape),
                standard_normal(&device, shape),
            );
            let real = 33;
            let pad: Vec<bool> = (0..100).map(|i| i >= 50 + real).collect();
            let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [2, 50]), &device);
            let pad4 = pad.clone().reshape([2, 1, 50, 1]).expand(shape);
            let garbage = standard_normal(&device, shape) * 100.0;
            let k2 = k.clone().mask_where(pad4.clone(), garbage.clone());
            let v2 = v.clone().mask_where(pad4, garbage);
            for fresh in [false, true] {
                device.seed(9);
                let a = attention.core.estimate(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    Some(pad.clone()),
                    fresh,
                );
                device.seed(9);
                let b = attention.core.estimate(
                    q.clone(),
                    k2.clone(),
                    v2.clone(),
                    Some(pad.clone()),
                    fresh,
                );
                let diff = (a.narrow(2, 0, real) - b.narrow(2, 0, real)).abs().max();
                let diff = diff.into_scalar::<f32>();
                assert!(
                    diff < 1e-5,
                    "{variant:?} fresh {fresh}: padding leaks ({diff})"
                );
            }
            let full = attention
                .core
                .estimate(q.clone(), k.clone(), v.clone(), Some(pad), false);
            let row = |x: &Tensor<4>| x.clone().narrow(0, 1, 1).narrow(2, 0, real);
            let alone = attention
                .core
                .estimate(row(&q), row(&k), row(&v), None, false);
            let diff = (full.narrow(0, 1, 1).narrow(2, 0, real) - alone)
                .abs()
                .max();
            assert!(
                diff.into_scalar::<f32>() < 1e-5,
                "{variant:?}: row alone differs"
            );
        }
    }

    #[test]
    fn config_round_trips_through_toml() {
        use crate::MixerKind;
        let kind = MixerKind::Sktr;
        let table = kind.default_config().to_table();
        assert_eq!(kind.parse_config(&table).unwrap(), kind.default_config());
        let mut set = toml::Table::new();
        set.insert("num_features".into(), toml::Value::Integer(64));
        set.insert("variant".into(), toml::Value::String("gmm_rks".into()));
        let parsed = kind.parse_config(&set).unwrap();
        assert_eq!(parsed.to_table()["num_features"].as_integer(), Some(64));
    }
}
