//! YOSO attention: Zeng, Xiong, Ravi, Acharya, Fung and Singh 2021, "You Only Sample (Almost)
//! Once: Linear Cost Self-Attention Via Bernoulli Sampling", ICML
//! (<https://arxiv.org/abs/2111.09714>).
//!
//! `exp(qᵀk)` is replaced by the collision probability of `τ`-bit sign-random-projection hashes of
//! the unit vectors `q̂, k̂`: `E_ij = (1 − arccos(q̂_iᵀk̂_j)/π)^τ`. The output is
//! `normalize(Σ_j E_ij v_j)` (row-wise L2 normalisation replaces the softmax denominator).
//!
//! - `sampled` (YOSO): `m` hash functions of `τ` bits each; for each, a table with one slot per
//!   code holds the sum of the (unpadded) values hashed there, and each query reads its slot:
//!   `out_i = (1/m) Σ_f T_f[h_f(q_i)]`, an unbiased estimate of `Σ_j E_ij v_j`. O(n·m·(τ + d))
//!   time and O(n·m·d + m·2^τ·d) memory per batch row and head (tables built by scatter-add, read
//!   by index select).
//! - `expectation` (YOSO-E): the O(n²) exact expectation with `0.98·q̂ᵀk̂` inside `arccos` (the
//!   official YOSO-E, which keeps the derivative of `arccos` finite).
//!
//! Backward of `sampled`, as the official code with `lsh_backward = false`: the derivative of the
//! sampler is taken from the expectation, with the official surrogate `(τ/2)·E_ij` for
//! `∂E_ij/∂(q̂_iᵀk̂_j)`: `∂q̂_i = Σ_j (τ/2) E_ij (g_iᵀv_j) k̂_j`, symmetric for `k̂`, `∂v_j = Σ_i
//! E_ij g_i`. Here the output normalisation is differentiated at the expectation too (at the
//! sampled value its Jacobian is ~1/eps for a query whose hashes met no key, which made training
//! diverge to NaN). This needs the `[n, n]` matrix `E`, so a training step costs O(n²·d) time
//! and memory while evaluation stays O(n·m·d). (The official weighted-LSH backward estimate needs a
//! CUDA kernel with a loop over the head dimension; it is not implemented.)
//!
//! Official code checked: mlpen/YOSO `encoders/backbones/efficient_attentions/yoso/yoso_v1/`
//! (`yoso.py`, `kernel.py`) and the LRA configs `LRA/models/yoso-*/config.json`. Written from
//! that description, not copied.
//!
//! Randomness: new hash projections from the device RNG on every call, in training and in
//! evaluation (the official code resamples per call too), so outputs follow the caller's seed.
//!
//! Deviations, and why:
//! - Gaussian sign random projections (the paper's hash; `use_fast_hash = False` in v1) instead
//!   of the Hadamard-based fast hash: same collision probability, no power-of-two `d` needed.
//! - One set of projections for every batch row and head (the official code draws per batch row
//!   and head): rows of a batch then stay independent of each other and of the batch size.
//! - No attention dropout (YOSO has no attention probabilities); `MixerDims::dropout` is unused.
//!   No convolution branch (the optional `conv_window` of YOSO-v2).

use burn::module::Module;
use burn::tensor::{Bool, Device, Distribution, IndexingUpdateOp, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Factor on `q̂ᵀk̂` inside `arccos` in YOSO-E (official value; keeps `1 − x²` away from 0).
const EXPECTATION_SCALE: f64 = 0.98;
/// Smallest norm L2 normalisation divides by (PyTorch `F.normalize`'s `eps`).
const NORM_EPS: f64 = 1e-12;
/// Longest hash code. The tables hold `m·2^τ·d` floats per batch row and head (official LRA
/// settings use τ ≤ 12); 16 keeps them and their flat indices within reach.
const MAX_HASH_BITS: usize = 16;

/// How `Σ_j E_ij v_j` is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum YosoEstimator {
    /// LSH Bernoulli sampling with `n_hashes` hash tables (YOSO).
    Sampled,
    /// The exact expectation, O(n²) (YOSO-E).
    Expectation,
}

/// Settings of [`YosoAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct YosoConfig {
    /// Hash code length `τ` (bits per hash). Default: 10 (official LRA `yoso` configs for Image
    /// and Pathfinder; they use 11 for ListOps and 12 for Text and Retrieval).
    pub hash_bits: usize,
    /// Number of hashes `m`. Default: 32 (official LRA `yoso-v1-32` configs).
    pub n_hashes: usize,
    /// `sampled` (YOSO) or `expectation` (YOSO-E). Default: `sampled` (the method).
    pub estimator: YosoEstimator,
}

impl Default for YosoConfig {
    fn default() -> Self {
        Self {
            hash_bits: 10,
            n_hashes: 32,
            estimator: YosoEstimator::Sampled,
        }
    }
}

impl MixerSpec for YosoConfig {
    type Mixer = YosoAttention;
    const SUMMARY: &'static str =
        "YOSO: LSH Bernoulli-sampling attention (or its expectation), L2-normalised output";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        if !(1..=MAX_HASH_BITS).contains(&self.hash_bits) {
            return Err(format!(
                "hash_bits must be between 1 and {MAX_HASH_BITS}, got {}",
                self.hash_bits
            ));
        }
        at_least_one("n_hashes", self.n_hashes)?;
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> YosoAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            YosoCore {
                hash_bits: self.hash_bits,
                n_hashes: self.n_hashes,
                estimator: self.estimator,
            },
        )
    }
}

/// Multi-head YOSO attention.
pub type YosoAttention = Attention<YosoCore>;

/// The attention core of [`YosoAttention`].
#[derive(Module, Debug)]
pub struct YosoCore {
    hash_bits: usize,
    n_hashes: usize,
    #[module(skip)]
    estimator: YosoEstimator,
}

impl AttentionCore for YosoCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, _, seq, _] = q.dims();
        // Padded keys are removed by zeroing their values: they then add nothing anywhere.
        let v = match pad_mask {
            Some(mask) => v * mask.bool_not().float().reshape([batch, 1, seq, 1]),
            None => v,
        };
        let (q, k) = (normalize(q), normalize(k));
        match self.estimator {
            YosoEstimator::Expectation => {
                normalize(collision_probability(q, k, self.hash_bits, EXPECTATION_SCALE).matmul(v))
            }
            YosoEstimator::Sampled => self.sampled_with_expected_gradient(q, k, v),
        }
    }
}

impl YosoCore {
    /// The normalised sampled output; on an autodiff device plus a zero-valued term whose
    /// gradient is that of the expectation form with the official surrogate derivative.
    fn sampled_with_expected_gradient(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> Tensor<4> {
        let head_dim = q.dims()[3];
        let projections = Tensor::random(
            [head_dim, self.n_hashes * self.hash_bits],
            Distribution::Normal(0.0, 1.0),
            &q.device(),
        );
        let sampled = normalize(lsh_cumulation(
            q.clone().detach(),
            k.clone().detach(),
            v.clone().detach(),
            projections,
            self.hash_bits,
        ));
        if !q.device().is_autodiff() {
            return sampled;
        }
        // The normalisation's Jacobian is also taken at the expectation: at the sampled value it
        // would be ~1/eps for a query whose hashes met no key (a zero row).
        let expected = normalize(surrogate_numerator(q, k, v, self.hash_bits));
        sampled + expected.clone() - expected.detach()
    }
}

/// `E·V` (exact collision probabilities) whose gradient uses the official surrogate
/// `∂E_ij/∂(q̂_iᵀk̂_j) = (τ/2)·E_ij`: `∂v = Eᵀg`, `∂(q̂_iᵀk̂_j) = (τ/2)·E_ij·g_iᵀv_j`.
fn surrogate_numerator(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, hash_bits: usize) -> Tensor<4> {
    let dot = q.matmul(k.swap_dims(2, 3)); // [b, h, n, n]
    let expected = collision_probability_of(dot.clone().detach(), hash_bits, 1.0);
    let zero_valued = dot.clone() - dot.detach();
    let slope = expected.clone() * zero_valued * (hash_bits as f64 / 2.0);
    expected.matmul(v.clone()) + slope.matmul(v.detach())
}

/// `(1 − arccos(scale·q̂ᵀk̂)/π)^τ` for unit rows `q`, `k`: `[b, h, n, n]`.
pub fn collision_probability(
    q: Tensor<4>,
    k: Tensor<4>,
    hash_bits: usize,
    scale: f64,
) -> Tensor<4> {
    collision_probability_of(q.matmul(k.swap_dims(2, 3)), hash_bits, scale)
}

fn collision_probability_of(dot: Tensor<4>, hash_bits: usize, scale: f64) -> Tensor<4> {
    let cosine = (dot * scale).clamp(-1.0, 1.0);
    (cosine.acos() / -std::f64::consts::PI + 1.0).powi_scalar(hash_bits as i32)
}

/// Sampled `Σ_j E_ij v_j`: per hash `f`, the values are summed into a table slot per code and each
/// query reads the slot of its own code; the `m` reads are averaged.
///
/// # Shapes
/// - `q`, `k` (unit rows), `v`: `[b, h, n, d]`; `projections`: `[d, m·τ]`
/// - output: `[b, h, n, d]`
pub fn lsh_cumulation(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    projections: Tensor<2>,
    hash_bits: usize,
) -> Tensor<4> {
    let [batch, heads, seq, head_dim] = q.dims();
    let n_hashes = projections.dims()[1] / hash_bits;
    let rows = batch * heads;
    let slots = 1usize << hash_bits;
    let device = q.device();
    let codes = |x: Tensor<4>| {
        let bits = x
            .reshape([rows, seq, head_dim])
            .matmul(projections.clone().unsqueeze())
            .greater_elem(0.0)
            .float()
            .reshape([rows, seq, n_hashes, hash_bits]);
        let code = bits.matmul(powers_of_two(hash_bits, &device).unsqueeze()); // [bh, n, m, 1]
        let table = Tensor::<1, Int>::arange(0..(rows * n_hashes) as i64, &device)
            .reshape([rows, 1, n_hashes, 1])
            .mul_scalar(slots as i64);
        (code.int() + table).reshape([rows * seq * n_hashes]) // slot in all tables
    };
    let values = v
        .reshape([rows, seq, 1, head_dim])
        .expand([rows, seq, n_hashes, head_dim])
        .reshape([rows * seq * n_hashes, head_dim]);
    let tables = Tensor::<2>::zeros([rows * n_hashes * slots, head_dim], &device).select_assign(
        0,
        codes(k),
        values,
        IndexingUpdateOp::Add,
    );
    tables
        .select(0, codes(q))
        .reshape([rows, seq, n_hashes, head_dim])
        .mean_dim(2)
        .reshape([batch, heads, seq, head_dim])
}

/// `[τ, 1]` column `(1, 2, 4, …)` turning sign bits into a code.
fn powers_of_two(bits: usize, device: &Device) -> Tensor<2> {
    let powers: Vec<f32> = (0..bits).map(|t| (1u32 << t) as f32).collect();
    Tensor::from_data(TensorData::new(powers, [bits, 1]), device)
}

/// Rows scaled to unit L2 norm. `eps²` inside the square root keeps zero rows at zero with a
/// finite gradient (`max(‖x‖, eps)` would give `0·∞ = NaN` through the square root).
fn normalize(x: Tensor<4>) -> Tensor<4> {
    let norm = (x.clone().powi_scalar(2).sum_dim(3) + NORM_EPS * NORM_EPS).sqrt();
    x / norm
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;
    use crate::mixer::common::reference::relative_error;
    use crate::mixer::common::testing::{gaussian, pad_mask};

    fn yoso(hash_bits: usize, n_hashes: usize, device: &Device) -> YosoAttention {
        let dims = MixerDims::new(16, 2, 256);
        YosoConfig {
            hash_bits,
            n_hashes,
            estimator: YosoEstimator::Sampled,
        }
        .init(&dims, device)
    }

    fn unit_qkv(device: &Device, seed: u64, seq: usize) -> [Tensor<4>; 3] {
        let [q, k, v] = [0, 1, 2].map(|i| gaussian(device, 10 * seed + i, [1, 2, seq, 8]));
        [normalize(q), normalize(k), v]
    }

    /// The tables give exactly `Ê·V` with `Ê_ij` the fraction of hashes on which the codes
    /// (signs of the projections) of `q_i` and `k_j` agree.
    #[test]
    fn tables_sum_the_values_of_colliding_keys() {
        let device = Device::flex();
        let (seq, bits, hashes) = (24, 3, 5);
        let [q, k, v] = unit_qkv(&device, 1, seq);
        device.seed(7);
        let projections =
            Tensor::<2>::random([8, hashes * bits], Distribution::Normal(0.0, 1.0), &device);
        let actual = lsh_cumulation(q.clone(), k.clone(), v.clone(), projections.clone(), bits);

        let signs = |x: Tensor<4>| {
            x.matmul(projections.clone().unsqueeze())
                .greater_elem(0.0)
                .float()
                .reshape([1, 2, seq, hashes, bits])
        };
        let (sq, sk) = (signs(q), signs(k));
        let mut collisions = Tensor::<4>::zeros([1, 2, seq, seq], &device);
        for f in 0..hashes {
            let pick = |s: Tensor<5>| s.narrow(3, f, 1).reshape([1, 2, seq, bits]);
            let (a, b) = (pick(sq.clone()), pick(sk.clone()));
            // Codes agree iff every bit agrees: Σ_t [a_t = b_t] = τ.
            let agree = a.clone().matmul(b.clone().swap_dims(2, 3))
                + (a.neg() + 1.0).matmul((b.neg() + 1.0).swap_dims(2, 3));
            collisions = collisions + agree.equal_elem(bits as f32).float();
        }
        let expected = (collisions / hashes as f64).matmul(v);
        actual
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
    }

    /// Bernoulli sampling is unbiased: the normalised output approaches YOSO's expectation form
    /// (without the 0.98 factor) as the number of hashes grows, about as `1/√m`.
    #[test]
    fn sampled_output_converges_to_the_expectation() {
        let device = Device::flex();
        let (seq, bits) = (64, 4);
        let seeds = [1u64, 2, 3];
        let error = |hashes: usize| {
            seeds
                .iter()
                .map(|&seed| {
                    let [q, k, v] = unit_qkv(&device, seed, seq);
                    let expected = normalize(
                        collision_probability(q.clone(), k.clone(), bits, 1.0).matmul(v.clone()),
                    );
                    device.seed(100 + seed);
                    let projections = Tensor::<2>::random(
                        [8, hashes * bits],
                        Distribution::Normal(0.0, 1.0),
                        &device,
                    );
                    let sampled = normalize(lsh_cumulation(q, k, v, projections, bits));
                    relative_error(sampled, expected)
                })
                .sum::<f32>()
                / seeds.len() as f32
        };
        let errors: Vec<f32> = [4, 16, 64, 256].into_iter().map(error).collect();
        // Each 4× more hashes should halve the error (1/√m); allow 1.6×. Measured (3 seeds,
        // n = 64, τ = 4): 0.89, 0.56, 0.29, 0.15.
        assert!(
            errors.windows(2).all(|pair| pair[1] < pair[0] / 1.6),
            "errors {errors:?}"
        );
        assert!(errors[3] < 0.2, "errors {errors:?}");
    }

    /// The gradient of the sampled path is the expectation-based surrogate:
    /// `∂q̂_i = Σ_j (τ/2) E_ij (g_iᵀv_j) k̂_j`, `∂k̂_j = Σ_i (τ/2) E_ij (g_iᵀv_j) q̂_i`, `∂v = Eᵀg`.
    #[test]
    fn sampled_gradient_is_the_expectation_surrogate() {
        let device = Device::flex().autodiff();
        let (seq, bits) = (16, 6);
        let [q, k, v] = unit_qkv(&device, 4, seq).map(|x| x.require_grad());
        let g = gaussian(&device, 99, [1, 2, seq, 8]);
        let out = surrogate_numerator(q.clone(), k.clone(), v.clone(), bits);
        let grads = (out * g.clone()).sum().backward();

        let inner = |x: &Tensor<4>| x.clone().inner();
        let (q0, k0, v0, g0) = (inner(&q), inner(&k), inner(&v), g.inner());
        let e = collision_probability(q0.clone(), k0.clone(), bits, 1.0);
        let weight = e.clone() * g0.clone().matmul(v0.swap_dims(2, 3)) * (bits as f64 / 2.0); // [b, h, i, j]
        let expected = [
            weight.clone().matmul(k0),
            weight.swap_dims(2, 3).matmul(q0),
            e.swap_dims(2, 3).matmul(g0),
        ];
        for (x, expected) in [q, k, v].iter().zip(expected) {
            x.grad(&grads)
                .expect("gradient")
                .to_data()
                .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-4));
        }
    }

    /// YOSO-E: `normalize(((1 − arccos(0.98·q̂ᵀk̂)/π)^τ with padded keys removed)·V)`.
    #[test]
    fn expectation_form_matches_its_formula_without_padded_keys() {
        let device = Device::flex();
        let (seq, bits, real) = (20, 5, 13);
        let mixer = YosoConfig {
            hash_bits: bits,
            estimator: YosoEstimator::Expectation,
            ..YosoConfig::default()
        }
        .init(&MixerDims::new(16, 2, 64), &device);
        let [q, k, v] = [1, 2, 3].map(|seed| gaussian(&device, seed, [2, 2, seq, 8]));
        let pad = pad_mask(&device, seq, real);
        let actual = mixer
            .core
            .attend(q.clone(), k.clone(), v.clone(), Some(pad.clone()));

        let cosine = normalize(q).matmul(normalize(k).swap_dims(2, 3)) * 0.98;
        let weights = (cosine.acos() / -std::f64::consts::PI + 1.0).powi_scalar(bits as i32);
        let keep = pad.bool_not().float().reshape([2, 1, 1, seq]);
        let expected = normalize((weights * keep).matmul(v));
        actual
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
    }

    /// In training the value is still the sampled output, and the gradient stays finite when a
    /// query's hashes meet no key (a zero row before normalisation).
    #[test]
    fn training_output_is_the_sample_and_its_gradient_is_finite() {
        let device = Device::flex().autodiff();
        let mixer = yoso(16, 1, &device); // 2^16 codes, one hash: almost no collisions
        let [q, k, v] = [1, 2, 3].map(|seed| gaussian(&device, seed, [1, 2, 32, 8]).require_grad());
        device.seed(5);
        let train = mixer.core.attend(q.clone(), k.clone(), v.clone(), None);
        device.seed(5); // the same projections as the call above
        let projections = Tensor::<2>::random([8, 16], Distribution::Normal(0.0, 1.0), &device);
        let detached = |x: &Tensor<4>| normalize(x.clone().detach());
        let sample = normalize(lsh_cumulation(
            detached(&q),
            detached(&k),
            v.clone().detach(),
            projections,
            16,
        ));
        let zero_rows = sample
            .clone()
            .abs()
            .sum_dim(3)
            .lower_elem(1e-6)
            .int()
            .sum()
            .into_scalar::<i64>();
        assert!(
            zero_rows > 0,
            "the case under test needs queries without collisions"
        );
        train
            .clone()
            .to_data()
            .assert_approx_eq::<f32>(&sample.to_data(), Tolerance::absolute(1e-6));
        let grads = train.sum().backward();
        for x in [q, k, v] {
            let grad = x.grad(&grads).expect("gradient");
            assert!(
                grad.is_finite().all().into_scalar::<bool>(),
                "non-finite gradient"
            );
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        let dims = MixerDims::new(16, 2, 64);
        for (config, field) in [
            (
                YosoConfig {
                    hash_bits: 0,
                    ..YosoConfig::default()
                },
                "hash_bits",
            ),
            (
                YosoConfig {
                    hash_bits: 17,
                    ..YosoConfig::default()
                },
                "hash_bits",
            ),
            (
                YosoConfig {
                    n_hashes: 0,
                    ..YosoConfig::default()
                },
                "n_hashes",
            ),
        ] {
            let error = config.validate(&dims).expect_err("invalid config accepted");
            assert!(error.contains(field), "{error}");
        }
        assert_eq!(YosoConfig::default().validate(&dims), Ok(()));
    }
}
