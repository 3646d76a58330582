//! S4: the structured state space sequence layer (Gu, Goel, Ré, "Efficiently Modeling Long
//! Sequences with Structured State Spaces", ICLR 2022, arXiv:2111.00396).
//! Official code: state-spaces/s4 `models/s4/s4.py` (`transition`, `rank_correction`, `nplr`,
//! `SSMKernelDPLR`, `FFTConv`) and `configs/experiment/lra/s4-*.yaml`.
//!
//! Per channel h (H = d_model SISO systems of state size N) the continuous state matrix is
//! diagonal plus low rank, `A = Λ − P P*` (N/2 stored conjugate pairs), initialised from the
//! HiPPO-LegS matrix through its normal-plus-low-rank decomposition
//! `A_LegS = V (Λ − P̃ P̃*) V*`. The kernel follows the paper's Algorithm 1: bilinear
//! discretisation with learned `Δ = exp(log_dt)`, the length-L generating function evaluated at
//! the L-th roots of unity through Cauchy sums `Σ_n w_n / (g(ω) − λ_n)` with the Woodbury identity
//! for the rank-1 term, then an inverse FFT. The learned C is C̃ = C(I − Ā^L) (as in the official
//! code), for the kernel length `L` = the power of two ≥ `max_len`; shorter inputs use the
//! kernel's prefix. The layer is `y = K * u + D·u` (FFT convolution, `ops::fft_conv`), then
//! GELU → dropout → output linear with GLU; bidirectional runs add a second C̃ (backward kernel).
//! Complex numbers are (real, imaginary) tensor pairs.
//!
//! Cost: kernel O(H·N·L) (Cauchy sums evaluated directly, as the official code's fallback does;
//! the fast Cauchy multipole algorithm of the paper is not used), convolution O(H·n log n).
//!
//! Deviations: the bilinear factor `2/(1 + ω)` is folded into the Cauchy denominators
//! (`1/((1 − ω)/Δ − λ(1 + ω)/2)`), which avoids the division by zero at ω = −1 that the official
//! code side-steps with rounding. The official optimiser gives Λ, P, B a learning rate of 0.001
//! and no weight decay; the harness trains every parameter with one AdamW group. `B_clip` of the
//! official init is not applied. Padded positions are zeroed before the convolution.
//! The NPLR eigen-decomposition runs once at init in f64 plain Rust (a cyclic Jacobi solver on the
//! real 2N × 2N form of the Hermitian matrix), since no crate in the dependency tree provides a
//! complex eigen-solver.

use std::f64::consts::PI;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::signal::irfft;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::common::spectral::Complex;
use super::common::state_space::{log_dt_init, output_layer, validate_ssm};
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer};
use crate::ops::fft_conv::{sequence_conv, zero_padding};

/// Settings of [`S4`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S4Config {
    /// State size N (N/2 complex conjugate pairs are stored). Default: 64 (s4.py `d_state`; the
    /// LRA configs use 4 for ListOps/Text/Retrieval and 64 for Image/Pathfinder/Path-X).
    pub d_state: usize,
    /// Smallest initial step Δ. Default: 0.001 (s4.py `dt_min`, LRA configs).
    pub dt_min: f64,
    /// Largest initial step Δ. Default: 0.1 (s4.py `dt_max`, LRA configs).
    pub dt_max: f64,
    /// Add a backward kernel (non-causal layer). Default: true (LRA configs `bidirectional: true`).
    pub bidirectional: bool,
    /// One (Λ, P, B) shared by all channels (`n_ssm: 1`) instead of one per channel
    /// (`n_ssm: null`). Default: true (LRA ListOps/Text/Retrieval/Image configs).
    pub shared_ssm: bool,
    /// Output linear to 2H followed by GLU (else a plain H → H linear). Default: true (LRA
    /// configs `final_act: glu`).
    pub glu: bool,
    /// How the learned parameter gives the step: `exp` (default, `Δ = exp(log_dt)`, the S4
    /// paper's) or `softplus` (`Δ = softplus(p)`, stored as `softplus⁻¹(Δ)`: the official LRA
    /// configs, `configs/model/layer/s4.yaml:25` `dt_transform: softplus`). Both start from the
    /// same log-uniform Δ.
    pub dt_transform: DtTransform,
}

/// The map from the learned step parameter to Δ > 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DtTransform {
    #[default]
    Exp,
    Softplus,
}

impl Default for S4Config {
    fn default() -> Self {
        Self {
            d_state: 64,
            dt_min: 1e-3,
            dt_max: 1e-1,
            bidirectional: true,
            shared_ssm: true,
            glu: true,
            dt_transform: DtTransform::Exp,
        }
    }
}

impl MixerSpec for S4Config {
    type Mixer = S4;
    const SUMMARY: &'static str = "S4: DPLR state space layer (HiPPO-LegS), Cauchy + Woodbury kernel at roots of unity, FFT convolution";

    fn caps(&self) -> Caps {
        Caps::WITHOUT_CORE
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        validate_ssm(self.d_state, self.dt_min, self.dt_max)
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> S4 {
        let channels = dims.d_model;
        let half = self.d_state / 2;
        let copies = if self.shared_ssm { 1 } else { channels };
        let directions = 1 + usize::from(self.bidirectional);
        let nplr = Nplr::legs(self.d_state);
        let param = |values: &[f64]| {
            let repeated: Vec<f32> = (0..copies)
                .flat_map(|_| values.iter().map(|&v| v as f32))
                .collect();
            Param::from_tensor(Tensor::<2>::from_data(
                TensorData::new(repeated, [copies, half]),
                device,
            ))
        };
        let log_neg_real: Vec<f64> = nplr.lambda_re.iter().map(|r| (-r).ln()).collect();
        let c = || Distribution::Normal(0.0, 0.5f64.sqrt()); // complex N(0, 1)
        let log_dt = log_dt_init(channels, self.dt_min, self.dt_max, device);
        let log_dt_values = log_dt.clone();
        S4 {
            log_dt: (self.dt_transform == DtTransform::Exp).then(|| Param::from_tensor(log_dt)),
            softplus_inv_dt: (self.dt_transform == DtTransform::Softplus)
                .then(|| Param::from_tensor(softplus_inverse(log_dt_values))),
            log_lambda_real: param(&log_neg_real),
            lambda_imag: param(&nplr.lambda_im),
            p_re: param(&nplr.p_re),
            p_im: param(&nplr.p_im),
            b_re: param(&nplr.b_re),
            b_im: param(&nplr.b_im),
            c_re: Param::from_tensor(Tensor::random([directions, channels, half], c(), device)),
            c_im: Param::from_tensor(Tensor::random([directions, channels, half], c(), device)),
            d_skip: Param::from_tensor(Tensor::random(
                [channels],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            output: LinearConfig::new(channels, channels * (1 + usize::from(self.glu)))
                .init(device),
            dropout: DropoutConfig::new(dims.dropout).init(),
            kernel_len: dims.max_len.next_power_of_two(),
            glu: self.glu,
        }
    }
}

/// S4 layer: DPLR SSM convolution + D skip, GELU, dropout, output linear (GLU).
#[derive(Module, Debug)]
pub struct S4 {
    /// `log Δ` per channel `[H]` (`dt_transform = "exp"`).
    log_dt: Option<Param<Tensor<1>>>,
    /// `softplus⁻¹(Δ)` per channel `[H]` (`dt_transform = "softplus"`).
    softplus_inv_dt: Option<Param<Tensor<1>>>,
    /// `log(−Re Λ)` `[S, N/2]` (S = 1 shared or H), so that Re Λ stays negative.
    log_lambda_real: Param<Tensor<2>>,
    /// `Im Λ` `[S, N/2]`.
    lambda_imag: Param<Tensor<2>>,
    /// Low-rank factor P of `A = Λ − P P*` `[S, N/2]`.
    p_re: Param<Tensor<2>>,
    p_im: Param<Tensor<2>>,
    /// B `[S, N/2]`.
    b_re: Param<Tensor<2>>,
    b_im: Param<Tensor<2>>,
    /// C̃ = C(I − Ā^L), one per direction `[dirs, H, N/2]`.
    c_re: Param<Tensor<3>>,
    c_im: Param<Tensor<3>>,
    /// Skip connection D `[H]`.
    d_skip: Param<Tensor<1>>,
    output: Linear,
    dropout: Dropout,
    /// L: the length C̃ truncates the generating function to (a power of two).
    kernel_len: usize,
    glu: bool,
}

/// `log Δ` `[H]` → `softplus⁻¹(Δ) = log(exp(Δ) − 1)`, in f64 (Δ ≈ 1e-3 loses digits in f32).
fn softplus_inverse(log_dt: Tensor<1>) -> Tensor<1> {
    let device = log_dt.device();
    let channels = log_dt.dims()[0];
    let inverse: Vec<f32> = log_dt
        .into_data()
        .iter::<f32>()
        .map(|log| f64::from(log).exp().exp_m1().ln() as f32)
        .collect();
    Tensor::from_data(TensorData::new(inverse, [channels]), &device)
}

impl S4 {
    /// Δ `[H]` from whichever parameter the layer holds.
    pub fn dt(&self) -> Tensor<1> {
        match (&self.log_dt, &self.softplus_inv_dt) {
            (Some(log_dt), _) => log_dt.val().exp(),
            (None, Some(inverse)) => burn::tensor::activation::softplus(inverse.val(), 1.0),
            (None, None) => unreachable!("an S4 layer is built with one step parameter"),
        }
    }

    /// Convolution kernels `[dirs, H, len]` (`len` a power of two): the generating function
    /// `K̂(ω) = C̃ (I − Āω)⁻¹ B̄` at `ω_k = exp(−2πik/len)`, k ≤ len/2, then the inverse real FFT.
    pub fn kernel(&self, len: usize) -> Tensor<3> {
        let device = self.c_re.device();
        let [directions, channels, half] = self.c_re.dims();
        let bins = len / 2 + 1;
        // Roots of unity ω and the bilinear terms (1 − ω)/Δ and t = (1 + ω)/2.
        let angle = |k: usize| -2.0 * PI * k as f64 / len as f64;
        let row = |f: &dyn Fn(usize) -> f64| {
            let values: Vec<f32> = (0..bins).map(|k| f(k) as f32).collect();
            Tensor::<3>::from_data(TensorData::new(values, [1, 1, bins]), &device)
        };
        let omega_re = row(&|k| angle(k).cos());
        let omega_im = row(&|k| angle(k).sin());
        let inv_dt = self.dt().recip().reshape([channels, 1, 1]);
        let g = Complex {
            re: (-omega_re.clone() + 1.0) * inv_dt.clone(),
            im: -omega_im.clone() * inv_dt,
        }; // [H, 1, F]
        let t = Complex {
            re: (omega_re + 1.0) * 0.5,
            im: omega_im * 0.5,
        }; // [1, 1, F]
        let lambda = Complex {
            re: -self.log_lambda_real.val().exp(),
            im: self.lambda_imag.val(),
        }
        .map_rank(|t| t.unsqueeze_dim(2)); // [S, N/2, 1]
        // Cauchy terms for λ and for its conjugate: 1 / ((1 − ω)/Δ − λ t)   [H, N/2, F]
        let r = g.clone().sub(lambda.clone().mul(t.clone())).recip();
        let r_conj = g.sub(lambda.conj().mul(t.clone())).recip();
        let cauchy = Tensor::cat(vec![r.re, r.im, r_conj.re, r_conj.im], 1); // [H, 2N, F]

        // Weights of the four Cauchy sums per channel: C̃∘B, C̃∘P (per direction), P̄∘B, P̄∘P.
        let c = Complex {
            re: self.c_re.val().swap_dims(0, 1),
            im: self.c_im.val().swap_dims(0, 1),
        }; // [H, dirs, N/2]
        let p = Complex {
            re: self.p_re.val(),
            im: self.p_im.val(),
        }
        .map_rank(|t| t.unsqueeze_dim(1)); // [S, 1, N/2]
        let b = Complex {
            re: self.b_re.val(),
            im: self.b_im.val(),
        }
        .map_rank(|t| t.unsqueeze_dim(1));
        let expand = |z: Complex<3>| z.map(|t| t.expand([channels, 1, half]));
        let weights = Complex::cat(
            vec![
                c.clone().mul(b.clone()),
                c.mul(p.clone()),
                expand(p.clone().conj().mul(b)),
                expand(p.clone().conj().mul(p)),
            ],
            1,
        ); // [H, 2·dirs + 2, N/2]
        // Σ_n w_n r_n + conj(w_n) r̄_n as two real matmuls over the stacked (re, im) parts.
        let stacked_re = Tensor::cat(
            vec![
                weights.re.clone(),
                -weights.im.clone(),
                weights.re.clone(),
                weights.im.clone(),
            ],
            2,
        );
        let stacked_im = Tensor::cat(
            vec![
                weights.im.clone(),
                weights.re.clone(),
                -weights.im,
                weights.re,
            ],
            2,
        );
        let sums = Complex {
            re: stacked_re.matmul(cauchy.clone()),
            im: stacked_im.matmul(cauchy),
        }; // [H, 2·dirs + 2, F]
        let rows = |start, len| sums.clone().map(|t| t.narrow(1, start, len));
        let k00 = rows(0, directions);
        let k01 = rows(directions, directions);
        let k10 = rows(2 * directions, 1);
        let k11 = rows(2 * directions + 1, 1);
        // Woodbury with the (1 + ω)/2 scaling folded in: K̂ = k00 − t·k01·k10 / (1 + t·k11).
        let correction = t
            .clone()
            .mul(k01)
            .mul(k10)
            .mul(t.mul(k11).add_scalar(1.0).recip());
        let spectrum = k00.sub(correction);
        irfft(spectrum.re, spectrum.im, 2, Some(len)).swap_dims(0, 1) // [dirs, H, len]
    }
}

impl TokenMixer for S4 {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let u = zero_padding(input.x, input.pad_mask.as_ref()); // [b, n, H]
        let seq = u.dims()[1];
        let len = self.kernel_len.max(seq.next_power_of_two());
        let kernel = self.kernel(len).narrow(2, 0, seq);
        let y = sequence_conv(u.clone(), kernel) + u * self.d_skip.val().reshape([1, 1, -1]);
        MixerOutput {
            x: output_layer(y, &self.dropout, &self.output, self.glu),
            carry: input.carry,
        }
    }
}

/// The HiPPO-LegS matrix `A` (row-major N × N) and vector `B` (s4.py `transition('legs')`):
/// `A_nk = −√(2n+1)√(2k+1)` for n > k, `−(n+1)` for n = k, 0 above the diagonal; `B_n = √(2n+1)`.
fn hippo_legs(size: usize) -> (Vec<f64>, Vec<f64>) {
    let root = |n: usize| ((2 * n + 1) as f64).sqrt();
    let mut a = vec![0.0; size * size];
    for n in 0..size {
        for k in 0..=n {
            a[n * size + k] = if n == k {
                -((n + 1) as f64)
            } else {
                -root(n) * root(k)
            };
        }
    }
    (a, (0..size).map(root).collect())
}

/// The normal-plus-low-rank form of HiPPO-LegS in its eigenbasis: `A = V (Λ − P̃ P̃*) V*`,
/// `B̃ = V* B`, keeping the N/2 eigenvalues with positive imaginary part (the others are their
/// conjugates).
#[derive(Clone, Debug)]
struct Nplr {
    lambda_re: Vec<f64>,
    lambda_im: Vec<f64>,
    p_re: Vec<f64>,
    p_im: Vec<f64>,
    b_re: Vec<f64>,
    b_im: Vec<f64>,
    /// Eigenvectors as columns, row-major N × N/2.
    v_re: Vec<f64>,
    v_im: Vec<f64>,
}

impl Nplr {
    /// `A + P Pᵀ` with `P_n = √(n + ½)` (s4.py `rank_correction('legs')`) is `−½ I + S` with S
    /// skew-symmetric, so its eigenvalues are `−½ + iμ` where μ are the eigenvalues of the
    /// Hermitian `−iS`. Those come from the real symmetric form `[[0, S], [−S, 0]]`, whose
    /// eigenvector `[x; y]` for μ gives the complex eigenvector `x + iy`; each μ appears twice
    /// there (`v` and `i·v`), so every other one is kept.
    fn legs(size: usize) -> Self {
        let (a, b) = hippo_legs(size);
        let p: Vec<f64> = (0..size).map(|n| (n as f64 + 0.5).sqrt()).collect();
        let normal = |n: usize, k: usize| a[n * size + k] + p[n] * p[k];
        let twice = 2 * size;
        let mut real_form = vec![0.0; twice * twice];
        for n in 0..size {
            for k in 0..size {
                let skew = 0.5 * (normal(n, k) - normal(k, n));
                real_form[n * twice + size + k] = skew;
                real_form[(size + n) * twice + k] = -skew;
            }
        }
        let (values, vectors) = symmetric_eigen(real_form, twice);
        let mut order: Vec<usize> = (0..twice).collect();
        order.sort_by(|&i, &j| values[j].total_cmp(&values[i]));
        let kept: Vec<usize> = order.into_iter().take(size).step_by(2).collect();
        let half = kept.len();
        let mut nplr = Self {
            lambda_re: vec![-0.5; half],
            lambda_im: kept.iter().map(|&j| values[j]).collect(),
            p_re: vec![0.0; half],
            p_im: vec![0.0; half],
            b_re: vec![0.0; half],
            b_im: vec![0.0; half],
            v_re: vec![0.0; size * half],
            v_im: vec![0.0; size * half],
        };
        for (col, &j) in kept.iter().enumerate() {
            for n in 0..size {
                let (x, y) = (vectors[n * twice + j], vectors[(size + n) * twice + j]);
                nplr.v_re[n * half + col] = x;
                nplr.v_im[n * half + col] = y;
                // V* w = Σ_n (x_n − i y_n) w_n for real w
                nplr.p_re[col] += x * p[n];
                nplr.p_im[col] -= y * p[n];
                nplr.b_re[col] += x * b[n];
                nplr.b_im[col] -= y * b[n];
            }
        }
        nplr
    }
}

/// Eigenvalues and eigenvectors (columns of a row-major matrix) of a real symmetric matrix, by
/// cyclic Jacobi rotations (Golub & Van Loan §8.5).
fn symmetric_eigen(mut a: Vec<f64>, size: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; size * size];
    for i in 0..size {
        v[i * size + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..size)
            .flat_map(|i| (0..size).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * size + j].powi(2))
            .sum();
        if off <= 1e-30 * total {
            break;
        }
        for p in 0..size {
            for q in p + 1..size {
                let apq = a[p * size + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * size + q] - a[p * size + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..size {
                    let (akp, akq) = (a[k * size + p], a[k * size + q]);
                    a[k * size + p] = c * akp - s * akq;
                    a[k * size + q] = s * akp + c * akq;
                }
                for k in 0..size {
                    let (apk, aqk) = (a[p * size + k], a[q * size + k]);
                    a[p * size + k] = c * apk - s * aqk;
                    a[q * size + k] = s * apk + c * aqk;
                }
                for k in 0..size {
                    let (vkp, vkq) = (v[k * size + p], v[k * size + q]);
                    v[k * size + p] = c * vkp - s * vkq;
                    v[k * size + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..size).map(|i| a[i * size + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixer::common::testing::values;

    /// Minimal complex f64 arithmetic for the dense reference computations.
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct C64(f64, f64);

    impl C64 {
        const ZERO: Self = C64(0.0, 0.0);
        const ONE: Self = C64(1.0, 0.0);
        fn add(self, o: Self) -> Self {
            C64(self.0 + o.0, self.1 + o.1)
        }
        fn sub(self, o: Self) -> Self {
            C64(self.0 - o.0, self.1 - o.1)
        }
        fn mul(self, o: Self) -> Self {
            C64(self.0 * o.0 - self.1 * o.1, self.0 * o.1 + self.1 * o.0)
        }
        fn scale(self, s: f64) -> Self {
            C64(self.0 * s, self.1 * s)
        }
        fn conj(self) -> Self {
            C64(self.0, -self.1)
        }
        fn div(self, o: Self) -> Self {
            let norm = o.0 * o.0 + o.1 * o.1;
            self.mul(o.conj()).scale(1.0 / norm)
        }
        fn abs(self) -> f64 {
            self.0.hypot(self.1)
        }
    }

    type Matrix = Vec<Vec<C64>>;

    fn matmul(a: &Matrix, b: &Matrix) -> Matrix {
        let (rows, inner, cols) = (a.len(), b.len(), b[0].len());
        (0..rows)
            .map(|i| {
                (0..cols)
                    .map(|j| (0..inner).fold(C64::ZERO, |s, k| s.add(a[i][k].mul(b[k][j]))))
                    .collect()
            })
            .collect()
    }

    fn identity(size: usize) -> Matrix {
        (0..size)
            .map(|i| {
                (0..size)
                    .map(|j| if i == j { C64::ONE } else { C64::ZERO })
                    .collect()
            })
            .collect()
    }

    /// `a⁻¹ b` by Gauss–Jordan elimination with partial pivoting.
    fn solve(mut a: Matrix, mut b: Matrix) -> Matrix {
        let size = a.len();
        for col in 0..size {
            let pivot = (col..size)
                .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
                .unwrap();
            a.swap(col, pivot);
            b.swap(col, pivot);
            let inv = C64::ONE.div(a[col][col]);
            a[col].iter_mut().for_each(|x| *x = x.mul(inv));
            b[col].iter_mut().for_each(|x| *x = x.mul(inv));
            for row in 0..size {
                if row != col {
                    let factor = a[row][col];
                    let (pivot_a, pivot_b) = (a[col].clone(), b[col].clone());
                    for (x, p) in a[row].iter_mut().zip(&pivot_a) {
                        *x = x.sub(factor.mul(*p));
                    }
                    for (x, p) in b[row].iter_mut().zip(&pivot_b) {
                        *x = x.sub(factor.mul(*p));
                    }
                }
            }
        }
        b
    }

    /// The stored half and its conjugates: the full N-dimensional vector.
    fn with_conjugates(re: &[f64], im: &[f64]) -> Vec<C64> {
        let half: Vec<C64> = re.iter().zip(im).map(|(&r, &i)| C64(r, i)).collect();
        half.iter()
            .copied()
            .chain(half.iter().map(|z| z.conj()))
            .collect()
    }

    #[test]
    fn nplr_reconstructs_hippo_legs() {
        for size in [8, 64] {
            let nplr = Nplr::legs(size);
            let half = size / 2;
            let (a, b) = hippo_legs(size);
            // V_full = [V, V̄] (N × N), Λ_full and P̃_full with their conjugates.
            let v: Matrix = (0..size)
                .map(|n| {
                    let row: Vec<C64> = (0..half)
                        .map(|j| C64(nplr.v_re[n * half + j], nplr.v_im[n * half + j]))
                        .collect();
                    row.iter()
                        .copied()
                        .chain(row.iter().map(|z| z.conj()))
                        .collect()
                })
                .collect();
            let lambda = with_conjugates(&nplr.lambda_re, &nplr.lambda_im);
            let p = with_conjugates(&nplr.p_re, &nplr.p_im);
            let b_tilde = with_conjugates(&nplr.b_re, &nplr.b_im);
            let inner: Matrix = (0..size)
                .map(|i| {
                    (0..size)
                        .map(|j| {
                            let diag = if i == j { lambda[i] } else { C64::ZERO };
                            diag.sub(p[i].mul(p[j].conj()))
                        })
                        .collect()
                })
                .collect();
            let v_star: Matrix = (0..size)
                .map(|i| (0..size).map(|j| v[j][i].conj()).collect())
                .collect();
            let rebuilt = matmul(&matmul(&v, &inner), &v_star);
            let b_col: Matrix = b_tilde.iter().map(|&z| vec![z]).collect();
            let b_rebuilt = matmul(&v, &b_col);
            let scale = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for n in 0..size {
                for k in 0..size {
                    let error = rebuilt[n][k].sub(C64(a[n * size + k], 0.0)).abs();
                    assert!(
                        error < 1e-9 * scale,
                        "N = {size}: A[{n}][{k}] off by {error}"
                    );
                }
                let error = b_rebuilt[n][0].sub(C64(b[n], 0.0)).abs();
                assert!(error < 1e-9 * scale, "N = {size}: B[{n}] off by {error}");
            }
            assert!(nplr.lambda_im.iter().all(|&mu| mu > 0.0), "kept Im λ > 0");
        }
    }

    /// `K_ℓ = Re(C Ā^ℓ B̄)` with `Ā = (I − Δ/2·A)⁻¹(I + Δ/2·A)`, `B̄ = (I − Δ/2·A)⁻¹ Δ B`,
    /// `A = Λ − P P*` materialised (full N with conjugates) and `C = C̃ (I − Ā^L)⁻¹`.
    fn dense_kernel(mixer: &S4, len: usize) -> Vec<f64> {
        let [directions, channels, half] = mixer.c_re.dims();
        let size = 2 * half;
        let copies = mixer.p_re.dims()[0];
        let lambda_re = values(-mixer.log_lambda_real.val().exp());
        let lambda_im = values(mixer.lambda_imag.val());
        let (p_re, p_im) = (values(mixer.p_re.val()), values(mixer.p_im.val()));
        let (b_re, b_im) = (values(mixer.b_re.val()), values(mixer.b_im.val()));
        let (c_re, c_im) = (values(mixer.c_re.val()), values(mixer.c_im.val()));
        let dt = values(mixer.dt());
        let mut kernel = vec![0.0; directions * channels * len];
        for h in 0..channels {
            // This channel's copy of (Λ, P, B): the only one when shared.
            let ssm = (h % copies) * half..(h % copies + 1) * half;
            let lambda = with_conjugates(&lambda_re[ssm.clone()], &lambda_im[ssm.clone()]);
            let p = with_conjugates(&p_re[ssm.clone()], &p_im[ssm.clone()]);
            let b = with_conjugates(&b_re[ssm.clone()], &b_im[ssm]);
            let step = |sign: f64| -> Matrix {
                (0..size)
                    .map(|i| {
                        (0..size)
                            .map(|j| {
                                let diag = if i == j { lambda[i] } else { C64::ZERO };
                                let a = diag.sub(p[i].mul(p[j].conj()));
                                let eye = if i == j { C64::ONE } else { C64::ZERO };
                                eye.add(a.scale(sign * dt[h] / 2.0))
                            })
                            .collect()
                    })
                    .collect()
            };
            let a_bar = solve(step(-1.0), step(1.0));
            let b_bar = solve(
                step(-1.0),
                b.iter().map(|&z| vec![z.scale(dt[h])]).collect(),
            );
            let mut power = identity(size);
            for _ in 0..len {
                power = matmul(&power, &a_bar);
            }
            // (I − Ā^L)ᵀ Cᵀ = C̃ᵀ
            let transposed: Matrix = (0..size)
                .map(|i| {
                    (0..size)
                        .map(|j| identity(size)[j][i].sub(power[j][i]))
                        .collect()
                })
                .collect();
            for dir in 0..directions {
                let offset = (dir * channels + h) * half;
                let c_tilde =
                    with_conjugates(&c_re[offset..offset + half], &c_im[offset..offset + half]);
                let c = solve(
                    transposed.clone(),
                    c_tilde.iter().map(|&z| vec![z]).collect(),
                );
                let mut state = b_bar.clone();
                for ell in 0..len {
                    let y = (0..size).fold(C64::ZERO, |s, n| s.add(c[n][0].mul(state[n][0])));
                    kernel[(dir * channels + h) * len + ell] = y.0;
                    state = matmul(&a_bar, &state);
                }
            }
        }
        kernel
    }

    #[test]
    fn dplr_kernel_equals_the_dense_discretised_ssm() {
        let device = Device::flex();
        for shared_ssm in [true, false] {
            device.seed(5);
            let config = S4Config {
                d_state: 8,
                shared_ssm,
                ..S4Config::default()
            };
            let dims = MixerDims::new(3, 1, 32);
            let mut mixer = config.init(&dims, &device);
            // Move (Λ, P, B) off the HiPPO init (per channel when not shared): any DPLR matrix.
            let perturb = |param: &Param<Tensor<2>>| {
                let noise = Tensor::random(param.dims(), Distribution::Normal(0.0, 0.3), &device);
                Param::from_tensor(param.val() + noise)
            };
            mixer.lambda_imag = perturb(&mixer.lambda_imag);
            mixer.log_lambda_real = perturb(&mixer.log_lambda_real);
            mixer.p_re = perturb(&mixer.p_re);
            mixer.p_im = perturb(&mixer.p_im);
            mixer.b_im = perturb(&mixer.b_im);
            let len = 32;
            let actual = values(mixer.kernel(len));
            let expected = dense_kernel(&mixer, len);
            let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let error = actual
                .iter()
                .zip(&expected)
                .fold(0.0f64, |m, (a, e)| m.max((a - e).abs()));
            assert!(
                error <= 1e-4 * scale,
                "shared_ssm = {shared_ssm}: max error {error} (scale {scale})"
            );
        }
    }

    #[test]
    fn a_shorter_input_uses_the_prefix_of_the_max_len_kernel() {
        let device = Device::flex();
        let dims = MixerDims::new(4, 1, 32);
        device.seed(2);
        let mixer = S4Config {
            d_state: 8,
            ..S4Config::default()
        }
        .init(&dims, &device);
        // 20 tokens (not a power of two), and the same tokens followed by zeros up to max_len:
        // zeros add nothing to a convolution, so the first 20 outputs must agree.
        let x = Tensor::<3>::random([1, 20, 4], Distribution::Normal(0.0, 1.0), &device);
        let padded = Tensor::cat(vec![x.clone(), Tensor::zeros([1, 12, 4], &device)], 1);
        let short = mixer.forward(MixerInput::new(x)).x;
        let long = mixer.forward(MixerInput::new(padded)).x.narrow(1, 0, 20);
        short
            .into_data()
            .assert_approx_eq::<f32>(&long.into_data(), burn::tensor::Tolerance::absolute(1e-5));
    }

    #[test]
    fn learned_step_starts_log_uniform_in_its_range() {
        let device = Device::flex();
        let dims = MixerDims::new(32, 1, 16);
        let mixer = S4Config::default().init(&dims, &device);
        let dt = values(mixer.dt());
        assert!(dt.iter().all(|d| (1e-3..=1e-1).contains(d)));
        assert!(dt.iter().any(|&d| d < 1e-2) && dt.iter().any(|&d| d > 1e-2));
    }

    /// `dt_transform = "softplus"` stores softplus⁻¹(Δ) of the same draw, so the layer computes
    /// what the `exp` layer of the same seed computes, and its step still learns.
    #[test]
    fn the_softplus_step_starts_where_the_exp_step_does() {
        let device = Device::flex().autodiff();
        let dims = MixerDims::new(8, 1, 16).with_dropout(0.0);
        let build = |transform| {
            device.seed(5);
            crate::init::init_now(
                S4Config {
                    dt_transform: transform,
                    ..S4Config::default()
                }
                .init(&dims, &device),
            )
        };
        let (exp, softplus) = (build(DtTransform::Exp), build(DtTransform::Softplus));
        let stored = values(softplus.softplus_inv_dt.as_ref().unwrap().val());
        for (dt, inverse) in values(exp.dt()).iter().zip(&stored) {
            assert!(
                (inverse - dt.exp_m1().ln()).abs() < 1e-4,
                "{inverse} vs Δ {dt}"
            );
        }
        let x = Tensor::<3>::random([1, 16, 8], Distribution::Normal(0.0, 1.0), &device);
        let run = |mixer: &S4| mixer.forward(MixerInput::new(x.clone())).x;
        let out = run(&softplus);
        out.clone().into_data().assert_approx_eq::<f32>(
            &run(&exp).into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
        let grads = out.powi_scalar(2).sum().backward();
        let param = softplus.softplus_inv_dt.as_ref().unwrap();
        let grad = param
            .grad(&grads)
            .expect("the step parameter has a gradient");
        assert!(grad.abs().sum().into_scalar::<f32>() > 0.0);
    }

    #[test]
    fn bad_settings_are_rejected() {
        let dims = MixerDims::new(4, 1, 16);
        let odd = S4Config {
            d_state: 3,
            ..S4Config::default()
        };
        assert!(odd.validate(&dims).unwrap_err().contains("d_state"));
        let zero = S4Config {
            dt_min: 0.0,
            ..S4Config::default()
        };
        assert!(zero.validate(&dims).unwrap_err().contains("dt_min"));
    }
}
