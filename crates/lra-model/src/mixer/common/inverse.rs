//! Iterative matrix inverses on `[b, h, m, m]` tensors (tensor ops only, so they run and
//! differentiate on any device): Nyströmformer's pseudo-inverse (also CUR's) and SOFT's
//! Newton–Schulz inverse.

use burn::tensor::Tensor;

/// Iterative Moore–Penrose pseudoinverse of each `[m, m]` matrix in `a` `[b, h, m, m]`
/// (Razavi et al. 2014, as used by Nyströmformer):
/// `Z₀ = Aᵀ / (‖A‖₁ ‖A‖∞)` per matrix (max absolute column sum times max absolute row sum,
/// which puts every eigenvalue of `A Z₀` in (0, 1]), then `iters` times
/// `Z ← ¼ Z (13I − AZ (15I − AZ (7I − AZ)))`.
///
/// Converges to `A⁺` for any `A`; singular values far below `‖A‖` need more iterations (each
/// multiplies the small eigenvalues of `AZ` by about 13/4), so few iterations act as a
/// low-rank regulariser. A zero matrix gives zero, and exactly zero rows and columns stay
/// exactly zero. For a numerically rank-deficient `A`, roundoff in its null space also grows by
/// 13/4 per step, so iterating far past convergence degrades `Z A Z = Z` (the paper's 6
/// iterations are safe).
pub fn iterative_pinv(a: Tensor<4>, iters: usize) -> Tensor<4> {
    iterative_pinv_scaled(a, iters, PinvScale::PerMatrix)
}

/// Which matrices the starting guess `Z₀ = Aᵀ / norm` takes its norm over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinvScale {
    /// `‖A‖₁ ‖A‖∞` of each matrix: an example's result does not depend on the others.
    PerMatrix,
    /// One maximum absolute column sum over every matrix of the batch and all heads, as the
    /// mlpen/Skyformer PyTorch-LRA code computes it (`torch.max` without `dim`).
    WholeBatch,
}

/// The starting guess `Z₀ = Aᵀ / norm` of [`iterative_pinv_scaled`].
pub fn pinv_start(a: Tensor<4>, scale: PinvScale) -> Tensor<4> {
    let abs = a.clone().abs();
    let max_col_sum = abs.clone().sum_dim(2).max_dim(3); // [b, h, 1, 1]
    let norm = match scale {
        PinvScale::PerMatrix => max_col_sum * abs.sum_dim(3).max_dim(2),
        PinvScale::WholeBatch => max_col_sum.max().reshape([1, 1, 1, 1]),
    };
    a.swap_dims(2, 3) / norm.clamp_min(1e-30)
}

/// [`iterative_pinv`] with the starting guess normalised as `scale` says.
pub fn iterative_pinv_scaled(a: Tensor<4>, iters: usize, scale: PinvScale) -> Tensor<4> {
    let [.., m, _] = a.dims();
    let mut z = pinv_start(a.clone(), scale);
    let eye = Tensor::<2>::eye(m, &a.device()).reshape([1, 1, m, m]);
    for _ in 0..iters {
        let az = a.clone().matmul(z.clone());
        let t = eye.clone() * 7.0 - az.clone();
        let t = eye.clone() * 15.0 - az.clone().matmul(t);
        let t = eye.clone() * 13.0 - az.matmul(t);
        z = z.matmul(t) * 0.25;
    }
    z
}

/// Newton–Schulz inverse of `p + λI` per `[.., c, c]` matrix (`SOFT/kernel/inverse.py`):
/// `V₀ = α(p + λI)`, `α = 0.9·2/max_rowsum(p)²`, then `V ← 2V − V(p + λI)V`, `iters` times, on
/// detached values. Backward: that of the exact inverse, `−V·dP·V`.
pub fn newton_inverse(p: Tensor<4>, iters: usize, regularization: f64) -> Tensor<4> {
    let [_, _, c, _] = p.dims();
    let eye = Tensor::<2>::eye(c, &p.device()).reshape([1, 1, c, c]) * regularization;
    let fixed = p.clone().detach();
    let max_rowsum = fixed.clone().sum_dim(3).max_dim(2); // [.., 1, 1]
    let alpha = max_rowsum.square().recip() * 1.8;
    let target = fixed + eye.clone();
    let mut inverse = target.clone() * alpha;
    for _ in 0..iters {
        inverse = inverse.clone() * 2.0 - inverse.clone().matmul(target.clone()).matmul(inverse);
    }
    // Value `inverse` (the difference is exactly zero), derivative `−V dP V`.
    let delta = p + eye - target;
    inverse.clone() - inverse.clone().matmul(delta).matmul(inverse)
}
