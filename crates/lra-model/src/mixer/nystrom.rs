//! Nyströmformer attention ([Nyströmformer: A Nyström-Based Algorithm for Approximating
//! Self-Attention](https://arxiv.org/abs/2102.03902), Xiong, Zeng, Chakraborty, Tan, Fung, Li and
//! Singh, AAAI 2021).
//!
//! Softmax attention `softmax(QKᵀ/√d) V` is approximated through `m` landmarks, the segment means
//! `Q̃`, `K̃` `[m, d]` of the queries and keys:
//!
//! ```text
//! F = softmax(Q K̃ᵀ/√d)          [n, m]
//! A = softmax(Q̃ K̃ᵀ/√d)          [m, m]
//! B = softmax(Q̃ Kᵀ/√d + pad)    [m, n]
//! out = F · A⁺ · (B V)  (+ depthwise convolution of V, optional)
//! ```
//!
//! `A⁺` is the iterative Moore–Penrose pseudoinverse of Razavi et al. (2014) used by the paper:
//! `Z₀ = Aᵀ / (‖A‖₁ ‖A‖∞)`, then `Z ← ¼ Z (13I − AZ (15I − AZ (7I − AZ)))`; the
//! error `I − AZ` goes to `¾E³ + ¼E⁴` per step, so it converges cubically once every singular
//! value of `AZ₀` has grown near 1 (each step multiplies a small one by about 13/4).
//! [`iterative_pinv`] lives in `common::inverse` (CUR uses it too).
//!
//! With one landmark per token (`m = n`), `F = A = B = P` (the softmax matrix) and `F A⁺ B =
//! P P⁺ P = P`: the method is exact up to the convergence of the pseudoinverse.
//!
//! Checked against the official code, `mlpen/Nystromformer`, `LRA/code/attention_nystrom.py`
//! (commit 2075dfe) and `LRA/code/lra_config.py` (commit 2bcc280): `Q` and `K` scaled by
//! `d^{-1/4}` each (= scores over `√d`), landmarks by a reshape to `[m, n/m, d]` and a mean,
//! the three softmax kernels above with the padding bias only on `B`, `iterative_inv` with
//! `n_iter = 6`, and `nn.Conv2d(heads, heads, (conv_kernel_size, 1), padding = (k // 2, 0),
//! groups = heads, bias = False)` applied to `V · mask` and added. Every LRA task config sets
//! `num_landmarks` ∈ {32, 64, 128, 256} (as `nystrom-32` … `nystrom-256` runs) and
//! `conv_kernel_size = 35`.
//!
//! Complexity: O(n·m·d + m³·iters) time and O(n·m + m²) memory per head, plus O(n·d·k) for the
//! convolution.
//!
//! Deviations from the official code, and why:
//! - Segments: the official reshape needs `n % m == 0` and averages over padded (zeroed) tokens
//!   as well, so short sequences get landmarks shrunk toward 0. Here the segments are contiguous
//!   runs of the *real* tokens of each sequence: real token number `r` (counting real tokens
//!   only, from 0) of a sequence with `L` real tokens goes to segment `⌊r·m/L⌋`. Segments then
//!   differ in length by at most one token; with `L = n` divisible by `m` this is exactly the
//!   official reshape. Means are over real tokens only.
//! - Empty landmarks: when a sequence has fewer real tokens than landmarks (`L < m`), `m − L`
//!   segments are empty. Their columns are masked out of `F` and `A` and their rows of `A` are
//!   zeroed, so `A = diag(A_real, 0)`, whose pseudoinverse is `diag(A_real⁺, 0)`: the result is
//!   Nyström attention over the `L` non-empty landmarks (one token each), i.e. softmax attention.
//! - `Z₀` is normalised per batch row and head. The official code divides by one maximum over
//!   the whole batch and all heads (`torch.max` without `dim`; the per-matrix option sits behind
//!   a misspelled config key), which makes one example's output depend on the others. For the
//!   row-stochastic `A` of this method `‖A‖∞ = 1`, so `‖A‖₁‖A‖∞` is the official column-sum
//!   maximum, taken per matrix.
//! - `padding = "official"` ([`NystromPadding::Official`]) undoes the first and third of these
//!   for reproductions: segments over every position (padded ones zeroed) and one `Z₀` scale
//!   for the batch. Empty landmarks cannot occur then.
//! - The official code falls back to exact softmax when `num_landmarks == seq_len`; this one
//!   always runs the Nyström path (exact at `m = n` up to the pseudoinverse's convergence).
//! - No dropout on attention (the official `NystromAttention` has none either). The Q/K/V/output
//!   projections are the shared [`MultiHeadProjection`](super::MultiHeadProjection).
//!
//! The convolution is a learned skip path, not part of the approximation: with its initial
//! (PyTorch-style Kaiming-uniform) weights it dominates the output, so approximation errors
//! against softmax are measured with `conv_kernel = None`.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::common::inverse::{PinvScale, iterative_pinv_scaled};
use super::common::reference::{PAD_BIAS, attention_probs, key_padding_bias};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
    zero_is_none,
};

/// Settings of [`NystromAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NystromConfig {
    /// Number of landmarks `m` (segment means of the queries and keys); clamped to the sequence
    /// length. Default: 64, the official LRA setting `nystrom-64` (`LRA/code/lra_config.py`
    /// and `LRA/README.md` offer 32, 64, 128 and 256; `methods.md` notes the MRA repository's
    /// Nyström config uses 64; which one the paper's LRA table used was not verified).
    pub landmarks: usize,
    /// Iterations of the Moore–Penrose pseudoinverse of `A`. Default: 6 (official
    /// `iterative_inv(self, mat, n_iter = 6)`).
    pub pinv_iters: usize,
    /// Kernel length of the depthwise convolution of `V` added to the output (must be odd, the
    /// official padding `k // 2` keeps the length only then); `None` (written `0` in TOML)
    /// turns it off. Default: 35 (`conv_kernel_size: 35` in every task of the official
    /// `LRA/code/lra_config.py`; the MRA repository's LRA configs use 33).
    #[serde(with = "zero_is_none")]
    pub conv_kernel: Option<usize>,
    /// How padding enters the landmarks and the pseudoinverse. Default: `real` (this module's
    /// deviations, see the module doc); `official` computes what the PyTorch-LRA code behind
    /// published tables does.
    pub padding: NystromPadding,
}

/// Landmarks and pseudoinverse scaling with padded sequences.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NystromPadding {
    /// Segments over the real tokens only, means over real tokens, `Z₀` scaled per matrix: an
    /// example's output does not depend on its padding or on the other examples of the batch.
    #[default]
    Real,
    /// As mlpen/Nystromformer `LRA/code/attention_nystrom.py` and its copy in
    /// pkuzengqi/Skyformer `src/models/attention_nystrom.py`: `m` equal segments of the whole
    /// padded sequence, means over all their positions (padded ones zeroed, so they pull the
    /// landmarks toward 0), and `Z₀` scaled by one maximum over the batch and all heads.
    Official,
}

impl Default for NystromConfig {
    fn default() -> Self {
        Self {
            landmarks: 64,
            pinv_iters: 6,
            conv_kernel: Some(35),
            padding: NystromPadding::Real,
        }
    }
}

impl MixerSpec for NystromConfig {
    type Mixer = NystromAttention;
    const SUMMARY: &'static str =
        "Nyströmformer: softmax kernels through segment-mean landmarks + iterative pseudoinverse";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("landmarks", self.landmarks)?;
        at_least_one("pinv_iters", self.pinv_iters)?;
        if let Some(kernel) = self.conv_kernel
            && kernel % 2 == 0
        {
            return Err(format!(
                "conv_kernel must be odd (or 0 for none), got {kernel}"
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> NystromAttention {
        let conv = self.conv_kernel.map(|kernel| {
            Conv2dConfig::new([dims.n_heads, dims.n_heads], [kernel, 1])
                .with_groups(dims.n_heads)
                .with_padding(PaddingConfig2d::Explicit(kernel / 2, 0, kernel / 2, 0))
                .with_bias(false)
                .init(device)
        });
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            NystromCore {
                conv,
                landmarks: self.landmarks,
                pinv_iters: self.pinv_iters,
                official_padding: self.padding == NystromPadding::Official,
            },
        )
    }
}

/// Multi-head Nyström attention.
pub type NystromAttention = Attention<NystromCore>;

/// The attention core of [`NystromAttention`].
#[derive(Module, Debug)]
pub struct NystromCore {
    /// Depthwise convolution over the sequence, one `[k, 1]` kernel per head.
    conv: Option<Conv2d>,
    landmarks: usize,
    pinv_iters: usize,
    /// [`NystromPadding::Official`].
    official_padding: bool,
}

impl AttentionCore for NystromCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = q.dims();
        let device = q.device();
        let m = self.landmarks.min(seq);
        let real = match &pad_mask {
            Some(mask) => mask.clone().bool_not().int(),
            None => Tensor::<2, Int>::ones([batch, seq], &device),
        }; // [b, n]
        let real4 = real.clone().float().reshape([batch, 1, seq, 1]);
        let (q, k, v) = (q * real4.clone(), k * real4.clone(), v * real4);

        // Official: segments of every position, the padded ones (zeroed above) included.
        let members = if self.official_padding {
            real.ones_like()
        } else {
            real
        };
        let (means, nonempty) = segment_means(members, m); // [b, m, n], [b, m]
        let means = means.unsqueeze_dim::<4>(1).expand([batch, heads, m, seq]);
        let q_land = means.clone().matmul(q.clone()); // [b, h, m, d]
        let k_land = means.matmul(k.clone());
        let land_bias = ((nonempty.clone().neg() + 1.0) * PAD_BIAS).reshape([batch, 1, 1, m]);

        let f = attention_probs(q, k_land.clone(), Some(land_bias.clone())); // [b, h, n, m]
        let a = attention_probs(q_land.clone(), k_land, Some(land_bias))
            * nonempty.reshape([batch, 1, m, 1]); // [b, h, m, m]
        let key_bias = pad_mask.map(key_padding_bias);
        let b = attention_probs(q_land, k, key_bias); // [b, h, m, n]
        let scale = if self.official_padding {
            PinvScale::WholeBatch
        } else {
            PinvScale::PerMatrix
        };
        let a_pinv = iterative_pinv_scaled(a, self.pinv_iters, scale);
        let context = f.matmul(a_pinv.matmul(b.matmul(v.clone())));
        debug_assert_eq!(context.dims(), [batch, heads, seq, head_dim]);
        match &self.conv {
            Some(conv) => context + conv.forward(v),
            None => context,
        }
    }
}

/// Averaging matrices of the landmark segments: real token number `r` (counted over real tokens
/// only) of a sequence with `L` real tokens belongs to segment `⌊r·m/L⌋`.
///
/// Returns `means` `[b, m, n]` (row `j` averages the tokens of segment `j`; zero for an empty
/// segment) and `nonempty` `[b, m]` (1 where segment `j` has a token, else 0).
/// `real`: `[b, n]`, 1 at real tokens and 0 at padding.
fn segment_means(real: Tensor<2, Int>, m: usize) -> (Tensor<3>, Tensor<2>) {
    let [batch, seq] = real.dims();
    let device = real.device();
    let rank = real.clone().cumsum(1) - 1; // [b, n]: index among the real tokens
    let count = real.clone().sum_dim(1).clamp_min(1); // [b, 1]
    let segment = (rank * m as i64).div(count.expand([batch, seq])); // [b, n]
    let ids = Tensor::<1, Int>::arange(0..m as i64, &device)
        .reshape([1, m, 1])
        .expand([batch, m, seq]);
    let member = segment
        .reshape([batch, 1, seq])
        .expand([batch, m, seq])
        .equal(ids);
    let member = member.float() * real.float().reshape([batch, 1, seq]); // [b, m, n]
    let sizes = member.clone().sum_dim(2); // [b, m, 1]
    let nonempty = sizes.clone().greater_elem(0.0).float().reshape([batch, m]);
    (member / sizes.clamp_min(1.0), nonempty)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::inverse::{iterative_pinv, pinv_start};
    use crate::mixer::common::reference::{relative_error, softmax_attention};
    use crate::mixer::common::testing::{OfficialFixture, gaussian, pad_mask, spoil_padding};

    fn nystrom(
        config: NystromConfig,
        heads: usize,
        head_dim: usize,
        max_len: usize,
    ) -> NystromAttention {
        let device = Device::flex();
        device.seed(0);
        let dims = MixerDims::new(heads * head_dim, heads, max_len);
        config.validate(&dims).unwrap();
        crate::init_now(config.init(&dims, &device))
    }

    #[test]
    fn pinv_inverts_invertible_and_pseudo_inverts_singular_matrices() {
        let device = Device::flex();
        // A well-conditioned matrix: A⁺ = A⁻¹.
        let a = gaussian(&device, 1, [2, 3, 6, 6]) * 0.2
            + Tensor::<2>::eye(6, &device).reshape([1, 1, 6, 6]);
        let z = iterative_pinv(a.clone(), 12);
        let eye = Tensor::<2>::eye(6, &device)
            .reshape([1, 1, 6, 6])
            .expand([2, 3, 6, 6]);
        a.clone()
            .matmul(z)
            .to_data()
            .assert_approx_eq::<f32>(&eye.to_data(), Tolerance::absolute(1e-5));
        // A rank-2 matrix: the Penrose conditions A Z A = A and Z A Z = Z once converged. In
        // floating point the null space is unstable (roundoff there grows by 13/4 per step, so
        // Z A Z drifts after ~10 more steps): few iterations are also the safe choice.
        let left = gaussian(&device, 2, [1, 2, 5, 2]);
        let right = gaussian(&device, 3, [1, 2, 2, 5]);
        let a = left.matmul(right);
        let z = iterative_pinv(a.clone(), 8);
        let aza = a.clone().matmul(z.clone()).matmul(a.clone());
        let zaz = z.clone().matmul(a.clone()).matmul(z.clone());
        assert!(relative_error(aza, a) < 1e-5);
        assert!(relative_error(zaz, z) < 1e-3);
    }

    #[test]
    fn official_landmarks_average_padded_and_zeroed_tokens_and_scale_over_the_batch() {
        let device = Device::flex();
        // 4 positions, the last padded, 2 landmarks: official segments are positions {0, 1}
        // and {2, 3}, each averaged over 2 positions, the padded (zeroed) one included.
        let keys = Tensor::<2>::from_floats([[1.0], [3.0], [5.0], [0.0]], &device); // k₃ zeroed
        let real = Tensor::<2, Int>::from_ints([[1, 1, 1, 0]], &device);
        let (means, nonempty) = segment_means(real.ones_like(), 2);
        let landmarks = means.reshape([2, 4]).matmul(keys.clone());
        let expected = TensorData::from([[2.0f32], [2.5]]); // (1+3)/2, (5+0)/2
        landmarks
            .to_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
        assert_eq!(
            nonempty.into_data().try_into_vec::<f32>().unwrap(),
            vec![1.0, 1.0]
        );
        // This module's default: segments of the 3 real tokens, {0, 1} and {2}.
        let (means, _) = segment_means(real, 2);
        let landmarks = means.reshape([2, 4]).matmul(keys);
        landmarks.to_data().assert_approx_eq::<f32>(
            &TensorData::from([[2.0f32], [5.0]]),
            Tolerance::absolute(1e-6),
        );

        // Z₀ = Aᵀ / norm: per matrix ‖A‖₁‖A‖∞, or one maximum column sum over the batch.
        let a = Tensor::<4>::from_floats(
            [[[[1.0, 0.0], [0.0, 1.0]]], [[[2.0, 1.0], [1.0, 3.0]]]],
            &device,
        );
        let per_matrix = pinv_start(a.clone(), PinvScale::PerMatrix);
        let whole_batch = pinv_start(a, PinvScale::WholeBatch);
        let expected = TensorData::from([
            [[[1.0f32, 0.0], [0.0, 1.0]]],
            [[[2.0 / 16.0, 1.0 / 16.0], [1.0 / 16.0, 3.0 / 16.0]]],
        ]);
        per_matrix
            .to_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
        let expected = TensorData::from([
            [[[0.25f32, 0.0], [0.0, 0.25]]],
            [[[0.5, 0.25], [0.25, 0.75]]],
        ]);
        whole_batch
            .to_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
    }

    /// `padding = "official"` equals the official module run on the same inputs (Skyformer
    /// `src/models/attention_nystrom.py` @1a677cb, outputs made by
    /// `scripts/make_fidelity_fixtures.py`), on a batch whose second row is padded; the default
    /// mode does not.
    #[test]
    fn official_padding_equals_the_official_module() {
        let fixture = OfficialFixture::parse(include_str!("fixtures/nystrom_official.json"));
        let device = Device::flex();
        let [_, heads, seq, head_dim] = fixture.shape;
        let (q, k, v, mask) = fixture.inputs(&device);
        let run = |padding| {
            let config = NystromConfig {
                landmarks: fixture.landmarks,
                conv_kernel: None,
                padding,
                ..NystromConfig::default()
            };
            let attention = nystrom(config, heads, head_dim, seq);
            let (q, k, v) = (q.clone(), k.clone(), v.clone());
            attention.core.attend(q, k, v, Some(mask.clone()))
        };
        run(NystromPadding::Official)
            .to_data()
            .assert_approx_eq::<f32>(&fixture.expected(), Tolerance::absolute(1e-5));
        let official = Tensor::<4>::from_data(fixture.expected(), &device);
        let padded_row = |x: Tensor<4>| x.narrow(0, 1, 1);
        let default = run(NystromPadding::Real);
        assert!(relative_error(padded_row(default), padded_row(official)) > 1e-3);
    }

    /// Without padding, one example and `n` divisible by `m`, the official mode computes what
    /// the default does (the per-matrix norm of a row-stochastic `A` is its column-sum maximum).
    #[test]
    fn official_padding_equals_the_default_on_an_unpadded_example() {
        let device = Device::flex();
        let shape = [1, 1, 32, 8];
        let (q, k, v) = (
            gaussian(&device, 11, shape),
            gaussian(&device, 12, shape),
            gaussian(&device, 13, shape),
        );
        let config = |padding| NystromConfig {
            landmarks: 8,
            conv_kernel: None,
            padding,
            ..NystromConfig::default()
        };
        let default = nystrom(config(NystromPadding::Real), 1, 8, 32).core.attend(
            q.clone(),
            k.clone(),
            v.clone(),
            None,
        );
        let official = nystrom(config(NystromPadding::Official), 1, 8, 32)
            .core
            .attend(q, k, v, None);
        official
            .to_data()
            .assert_approx_eq::<f32>(&default.to_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn segments_split_the_real_tokens_evenly() {
        let device = Device::flex();
        // Row 0: 10 real tokens in 4 segments → sizes 3, 2, 3, 2 (⌊r·4/10⌋).
        // Row 1: 3 real tokens, then padding → segments 0, 1, 2 with one token, 3 empty.
        let real: Vec<i64> = (0..20).map(|i| i64::from(i < 10 || i - 10 < 3)).collect();
        let real = Tensor::<2, Int>::from_data(TensorData::new(real, [2, 10]), &device);
        let (means, nonempty) = segment_means(real, 4);
        let sizes: Vec<f32> = means
            .clone()
            .greater_elem(0.0)
            .float()
            .sum_dim(2)
            .into_data()
            .try_into_vec()
            .unwrap();
        assert_eq!(sizes, vec![3.0, 2.0, 3.0, 2.0, 1.0, 1.0, 1.0, 0.0]);
        let nonempty: Vec<f32> = nonempty.into_data().try_into_vec().unwrap();
        assert_eq!(nonempty, vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        // Rows of non-empty segments average (sum to 1); contiguous runs.
        let row0: Vec<f32> = means.narrow(0, 0, 1).into_data().try_into_vec().unwrap();
        let third = 1.0 / 3.0;
        let expected_first = [third, third, third, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        for (got, want) in row0[..10].iter().zip(expected_first) {
            assert!((got - want).abs() < 1e-6, "{row0:?}");
        }
    }

    #[test]
    fn one_landmark_per_token_is_softmax_attention() {
        // m = n: every real token is its own landmark, F = A = B = P and F A⁺ B = P.
        let device = Device::flex();
        let (seq, heads, head_dim) = (16, 2, 8);
        let shape = [2, heads, seq, head_dim];
        let (q, k, v) = (
            gaussian(&device, 1, shape),
            gaussian(&device, 2, shape),
            gaussian(&device, 3, shape),
        );
        let config = NystromConfig {
            landmarks: seq,
            pinv_iters: 40,
            conv_kernel: None,
            padding: NystromPadding::Real,
        };
        let attention = nystrom(config, heads, head_dim, seq);
        for mask in [None, Some(pad_mask(&device, seq, 11))] {
            let actual = attention
                .core
                .attend(q.clone(), k.clone(), v.clone(), mask.clone());
            let expected = softmax_attention(q.clone(), k.clone(), v.clone(), mask.clone());
            // Compare real positions only (padded queries are not defined by softmax either).
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
    fn error_falls_as_landmarks_grow() {
        let device = Device::flex();
        let (seq, heads, head_dim) = (256, 2, 16);
        let shape = [1, heads, seq, head_dim];
        let budgets = [8, 32, 128];
        let mut errors = [0f32; 3];
        for seed in 0..3 {
            let (q, k, v) = (
                gaussian(&device, 10 * seed + 1, shape),
                gaussian(&device, 10 * seed + 2, shape),
                gaussian(&device, 10 * seed + 3, shape),
            );
            let expected = softmax_attention(q.clone(), k.clone(), v.clone(), None);
            for (error, &landmarks) in errors.iter_mut().zip(&budgets) {
                let config = NystromConfig {
                    landmarks,
                    pinv_iters: 6,
                    conv_kernel: None,
                    padding: NystromPadding::Real,
                };
                let actual = nystrom(config, heads, head_dim, seq).core.attend(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    None,
                );
                *error += relative_error(actual, expected.clone()) / 3.0;
            }
        }
        println!("nystrom relative error at m = {budgets:?}: {errors:?}");
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
        let attention = nystrom(NystromConfig::default(), heads, head_dim, seq);
        for landmarks in [8, 64] {
            let mut attention = attention.clone();
            attention.core.landmarks = landmarks;
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
    fn unpadded_divisible_length_uses_the_official_contiguous_segments() {
        // n = 12, m = 3: segments are tokens 0-3, 4-7, 8-11, so the landmarks are the means of
        // those blocks; check F against a direct computation.
        let device = Device::flex();
        let shape = [1, 1, 12, 4];
        let (q, k) = (gaussian(&device, 1, shape), gaussian(&device, 2, shape));
        let block_means =
            |x: Tensor<4>| x.reshape([1, 1, 3, 4, 4]).mean_dim(3).reshape([1, 1, 3, 4]);
        let real = Tensor::<2, Int>::ones([1, 12], &device);
        let (means, _) = segment_means(real, 3);
        let means = means.unsqueeze_dim::<4>(1);
        means
            .clone()
            .matmul(q.clone())
            .to_data()
            .assert_approx_eq::<f32>(&block_means(q).to_data(), Tolerance::absolute(1e-6));
        means
            .matmul(k.clone())
            .to_data()
            .assert_approx_eq::<f32>(&block_means(k).to_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn config_validation_and_toml_round_trip() {
        let dims = MixerDims::new(16, 2, 64);
        for (field, config) in [
            (
                "landmarks",
                NystromConfig {
                    landmarks: 0,
                    ..Default::default()
                },
            ),
            (
                "pinv_iters",
                NystromConfig {
                    pinv_iters: 0,
                    ..Default::default()
                },
            ),
            (
                "conv_kernel",
                NystromConfig {
                    conv_kernel: Some(4),
                    ..Default::default()
                },
            ),
        ] {
            let error = config.validate(&dims).unwrap_err();
            assert!(error.contains(field), "{error}");
        }
        let kind = crate::MixerKind::Nystrom;
        let table = kind.default_config().to_table();
        assert_eq!(table["conv_kernel"].as_integer(), Some(35));
        assert_eq!(kind.parse_config(&table).unwrap(), kind.default_config());
        let table: toml::Table = toml::from_str("conv_kernel = 0").unwrap();
        let config: NystromConfig = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(config.conv_kernel, None);
        let back: NystromConfig = toml::Value::try_from(&config).unwrap().try_into().unwrap();
        assert_eq!(back, config);
    }
}
