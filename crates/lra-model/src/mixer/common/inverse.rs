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
    let [.., m, _] = a.dims();
    let abs = a.clone().abs();
    let max_col_sum = abs.clone().sum_dim(2).max_dim(3); // [b, h, 1, 1]
    let max_row_sum = abs.sum_dim(3).max_dim(2);
    let norm = (max_col_sum * max_row_sum).clamp_min(1e-30);
    let mut z = a.clone().swap_dims(2, 3) / norm;
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
