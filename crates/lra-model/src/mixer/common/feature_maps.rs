//! Random-feature maps and kernel sums (the xformers `feature_maps` idea): the features that turn
//! attention into `φ(Q)(φ(K)ᵀV)`, shared by the Linear Transformer, the Performer and the
//! low-rank part of Scatterbrain and Pixelfly.
//!
//! - Softmax-kernel features (FAVOR+, [Rethinking Attention with
//!   Performers](https://arxiv.org/abs/2009.14794)) and ReLU-kernel features over a projection
//!   `W` `[r, d]`, with the stabilisers of the JAX code.
//! - Gaussian orthogonal random matrices for `W`.
//! - `elu + 1` features ([Transformers are RNNs](https://arxiv.org/abs/2006.16236)).
//! - The kernel sums `φ(Q)(φ(K)ᵀV)`, `φ(Q)(φ(K)ᵀ1)` every kernel method normalises.

use burn::tensor::activation::{elu, relu};
use burn::tensor::{Bool, Device, Distribution, Tensor};

use super::reference::PAD_BIAS;

/// Added to every softmax-kernel feature after `exp` (JAX `make_fast_softmax_attention` passes
/// its `numerical_stabilizer=0.000001` as the feature creator's `eps`; the TF
/// `softmax_kernel_transformation` default is the same).
pub const SOFTMAX_FEATURE_EPS: f64 = 1e-6;
/// Added to every ReLU-kernel feature (TF `relu_kernel_transformation(numerical_stabilizer=
/// 0.001)`, JAX `make_fast_generalized_attention(kernel_epsilon=0.001)`).
pub const RELU_FEATURE_EPS: f64 = 1e-3;
/// Normalisers with `|R| ≤` this get `2·` this added (JAX `numerical_stabilizer=0.000001`).
pub const NORMALISER_GUARD: f64 = 1e-6;

/// The Linear Transformer feature map `φ(x) = elu(x) + 1` (elementwise, values in (0, ∞)).
pub fn elu_feature_map<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    elu(x, 1.0) + 1.0
}

/// The numerator `φ(Q) (φ(K)ᵀ V)` `[b, h, n, d]` and the normaliser `φ(Q) (φ(K)ᵀ 1)`
/// `[b, h, n, 1]` of kernel attention, in O(n·r·d) (shared with the Performer).
pub fn kernel_sums(phi_q: Tensor<4>, phi_k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let kv = phi_k.clone().swap_dims(2, 3).matmul(v); // [b, h, r, d]
    let z = phi_k.sum_dim(2); // [b, h, 1, r]
    let numerator = phi_q.clone().matmul(kv); // [b, h, n, d]
    let normaliser = phi_q.matmul(z.swap_dims(2, 3)); // [b, h, n, 1]
    (numerator, normaliser)
}

/// Normalised kernel attention from precomputed features.
///
/// `out_i = φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) / (φ(q_i)ᵀ Σ_j φ(k_j) + eps)`. Padded keys must already
/// have zero features.
///
/// # Shapes
/// - `phi_q`: `[b, h, n, r]`, `phi_k`: `[b, h, m, r]`, `v`: `[b, h, m, d]`
/// - output: `[b, h, n, d]`
pub fn kernel_attention(phi_q: Tensor<4>, phi_k: Tensor<4>, v: Tensor<4>, eps: f64) -> Tensor<4> {
    let (numerator, normaliser) = kernel_sums(phi_q, phi_k, v);
    numerator / (normaliser + eps)
}

/// `[b, n]` padding mask → `[b, 1, n, 1]`, 1 at real tokens and 0 at padding.
pub fn real_key_weights(pad_mask: Tensor<2, Bool>) -> Tensor<4> {
    let [batch, seq] = pad_mask.dims();
    pad_mask.bool_not().float().reshape([batch, 1, seq, 1])
}

/// FAVOR+ softmax-kernel attention with the projection `w` `[r, d]`: stabilised features, padded
/// keys excluded, normalised as the JAX code does.
///
/// # Shapes
/// - `q`, `k`, `v`: `[b, h, n, d]`; `pad_mask`: `[b, n]` (`true` = padding); `w`: `[r, d]`
/// - output: `[b, h, n, d]`
pub fn softmax_kernel_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    pad_mask: Option<Tensor<2, Bool>>,
    w: Tensor<2>,
) -> Tensor<4> {
    normalised_attention(
        softmax_query_features(q, w.clone(), SOFTMAX_FEATURE_EPS),
        softmax_key_features(k, w, pad_mask, SOFTMAX_FEATURE_EPS),
        v,
    )
}

/// `φ(Q)(φ(K)ᵀV)` divided by the normaliser `R = φ(Q)(φ(K)ᵀ1)`, with `2·1e-6` added where
/// `|R| ≤ 1e-6` (JAX `FastAttentionviaLowRankDecomposition`).
pub fn normalised_attention(phi_q: Tensor<4>, phi_k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let (numerator, normaliser) = kernel_sums(phi_q, phi_k, v);
    let guard = normaliser
        .clone()
        .abs()
        .lower_equal_elem(NORMALISER_GUARD)
        .float()
        * (2.0 * NORMALISER_GUARD);
    numerator / (normaliser + guard)
}

/// `x Wᵀ`: `[b, h, n, d]` × `[r, d]` → `[b, h, n, r]`, as one matrix product.
fn project(x: Tensor<4>, w: Tensor<2>) -> Tensor<4> {
    let [batch, heads, seq, dim] = x.dims();
    let rows = w.dims()[0];
    x.reshape([batch * heads * seq, dim])
        .matmul(w.transpose())
        .reshape([batch, heads, seq, rows])
}

/// `(u, h)` of the softmax kernel: `u = x̃ Wᵀ` `[b, h, n, r]` and `h = ‖x̃‖²/2` `[b, h, n, 1]`
/// with `x̃ = x·d^{-1/4}`, so `φ(x) ∝ exp(u − h)`.
pub fn softmax_exponents(x: Tensor<4>, w: Tensor<2>) -> (Tensor<4>, Tensor<4>) {
    let dim = x.dims()[3];
    let x = x * (dim as f64).powf(-0.25);
    let half_norm = x.clone().powi_scalar(2).sum_dim(3) / 2.0;
    (project(x, w), half_norm)
}

/// Softmax-kernel features of queries, `(exp(u − h − max_r u) + eps)/√r`: the per-query max
/// keeps every `exp` argument ≤ 0 and cancels in the normalised output (up to `eps`).
pub fn softmax_query_features(q: Tensor<4>, w: Tensor<2>, eps: f64) -> Tensor<4> {
    let rows = w.dims()[0];
    let (u, h) = softmax_exponents(q, w);
    let max = u.clone().max_dim(3); // [b, h, n, 1]
    ((u - h - max).exp() + eps) / (rows as f64).sqrt()
}

/// Softmax-kernel features of keys, `(exp(u − h − M) + eps)/√r` with one max `M` over all real
/// keys and projections of a (batch, head); padded keys get exactly zero features.
pub fn softmax_key_features(
    k: Tensor<4>,
    w: Tensor<2>,
    pad_mask: Option<Tensor<2, Bool>>,
    eps: f64,
) -> Tensor<4> {
    let rows = w.dims()[0];
    let (u, h) = softmax_exponents(k, w);
    let shape = u.dims();
    let ratio = (rows as f64).sqrt();
    match pad_mask {
        None => {
            let max = u.clone().max_dim(3).max_dim(2); // [b, h, 1, 1]
            ((u - h - max).exp() + eps) / ratio
        }
        Some(mask) => {
            let [batch, seq] = mask.dims();
            let pad = mask.clone().reshape([batch, 1, seq, 1]).expand(shape);
            let max = u
                .clone()
                .mask_fill(pad.clone(), PAD_BIAS)
                .max_dim(3)
                .max_dim(2);
            // Padded exponents are replaced before `exp`, so garbage there never overflows.
            let exponent = (u - h - max).mask_fill(pad, PAD_BIAS);
            ((exponent.exp() + eps) / ratio) * real_key_weights(mask)
        }
    }
}

/// Unstabilised softmax-kernel features `exp(u − h)/√r` (no max, no eps): the unbiased
/// estimator of the paper, `E[φ(q)·φ(k)] = exp(q·k/√d)`. Overflows for large inputs; for tests.
pub fn softmax_features_unstabilised(x: Tensor<4>, w: Tensor<2>) -> Tensor<4> {
    let rows = w.dims()[0];
    let (u, h) = softmax_exponents(x, w);
    (u - h).exp() / (rows as f64).sqrt()
}

/// ReLU-kernel features `relu(x Wᵀ/√r) + 1e-3` (TF `relu_kernel_transformation`), zero at
/// padded positions when `pad_mask` is given.
pub fn relu_features(x: Tensor<4>, w: Tensor<2>, pad_mask: Option<Tensor<2, Bool>>) -> Tensor<4> {
    let rows = w.dims()[0];
    relu_map(project(x, w) / (rows as f64).sqrt(), pad_mask)
}

/// `relu(x) + 1e-3` elementwise (the deterministic generalized features, and the ReLU kernel
/// after its projection), zero at padded positions when `pad_mask` is given.
pub fn relu_map(x: Tensor<4>, pad_mask: Option<Tensor<2, Bool>>) -> Tensor<4> {
    let features = relu(x) + RELU_FEATURE_EPS;
    match pad_mask {
        Some(mask) => features * real_key_weights(mask),
        None => features,
    }
}

/// A Gaussian orthogonal random matrix `[rows, dim]` from the device RNG (JAX
/// `GaussianOrthogonalRandomMatrix`, `scaling=0`): ⌈rows/dim⌉ independent `dim×dim` blocks with
/// orthonormal rows, stacked and cut to `rows`, each row scaled by the norm of an independent
/// `N(0, I_dim)` vector.
pub fn gaussian_orthogonal_matrix(rows: usize, dim: usize, device: &Device) -> Tensor<2> {
    let blocks = rows.div_ceil(dim);
    let gaussian = Tensor::<3>::random([blocks, dim, dim], Distribution::Normal(0.0, 1.0), device);
    // The second pass restores orthogonality lost to rounding in the first ("twice is enough").
    let orthonormal = orthonormalise_rows(orthonormalise_rows(gaussian))
        .reshape([blocks * dim, dim])
        .narrow(0, 0, rows);
    let norms = Tensor::<2>::random([rows, dim], Distribution::Normal(0.0, 1.0), device)
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt(); // [rows, 1], chi with `dim` degrees of freedom
    orthonormal * norms
}

/// Modified Gram–Schmidt on the rows of every `[d, d]` matrix of `[blocks, d, d]` (tensor ops
/// only, so it runs on any device): row `i` is normalised and then removed from rows `i+1..`.
pub fn orthonormalise_rows(x: Tensor<3>) -> Tensor<3> {
    let [_, rows, _] = x.dims();
    let mut rest = x;
    let mut done = Vec::with_capacity(rows);
    for i in 0..rows {
        let row = rest.clone().narrow(1, 0, 1); // [blocks, 1, d]
        let unit = row.clone() / row.powi_scalar(2).sum_dim(2).sqrt();
        done.push(unit.clone());
        let left = rows - i - 1;
        if left == 0 {
            break;
        }
        let others = rest.narrow(1, 1, left); // [blocks, left, d]
        let coefficients = others.clone().matmul(unit.clone().swap_dims(1, 2)); // [blocks, left, 1]
        rest = others - coefficients.matmul(unit);
    }
    Tensor::cat(done, 1)
}
