//! FEB-w (`block = "wavelet"`; `layers/MultiWaveletCorrelation.py` `MultiWaveletTransform` with
//! one `MWT_CZ1d`, filters from `layers/utils.py` `get_filter('legendre', k)`): `v = Lk0(u W_q)`
//! viewed as `c` channels of `k` Legendre coefficients `[b, n, c, k]`. One analysis step maps each
//! pair of even/odd steps `[x_e | x_o]` to coarse `s = x_e H0ᵀ + x_o H1ᵀ` and detail
//! `d = x_e G0ᵀ + x_o G1ᵀ` (half the length); level `i` keeps `Ud_i = A(d) + B(s)` and
//! `Us_i = C(d)`, with `A, B, C` sparse Fourier kernels (`sparseKernelFT1d`: rfft of the level,
//! the lowest `alpha` bins mixed by complex `ck × ck` matrices, the rest zeroed, irfft), shared by
//! all levels. After `log2(N) - L` levels the coarsest `s` goes through `T0 = Linear(k, k)`;
//! then from the coarsest level up `s ← synthesis(s + Us_i, Ud_i)` with `x_e = s H0 + d G0`,
//! `x_o = s H1 + d G1` (`evenOdd`); `FEB-w(u) = Lk1(s) W_o`. `[H0 H1; G0 G1]` is orthogonal
//! (see [`LegendreFilters`]), so the synthesis inverts the analysis exactly.
//! Complexity of FEB-w: O(n · c·k²) for the filter steps and O(n log n · c·k) for the FFTs,
//! summed over levels of halving length, plus O(log n · alpha · (c·k)²) for the mode mixing.
//! Parameters: 6·alpha·(c·k)² (the complex weights of `A, B, C`, about 100.7M with the official
//! defaults `k = 8`, `c = 128`, `alpha = 16`) + 2·d·c·k + c·k + d (`Lk0`, `Lk1`) + k² + k (`T0`)
//! + 2·d² + 2d (projections), plus the decomposition's gate.
//!
//! Deviations of FEB-w, and why:
//! - Grid: tokens zero-extended to the same fixed `next_pow2(2·max_len)` grid as FEB-f (padded
//!   tokens zeroed after `Lk0`, whose bias would otherwise leak), where the official code extends
//!   the `N` steps to `2^⌈log2 N⌉` by repeating the first ones (a periodic extension). A fixed
//!   zero-extended grid makes the real tokens' outputs independent of how much padding follows
//!   and stops the circular FFTs of each level from wrapping the end into the start.
//! - Filters: `H0, H1` by Gauss–Legendre quadrature as in `get_filter`; `G0, G1` by Gram–Schmidt
//!   of the fine-scale basis against the `φ` rows directly in the 2k-dimensional fine-scale
//!   coordinates, which is the official polynomial Gram–Schmidt written in that basis (same
//!   matrices up to rounding; the official code also zeroes entries below 1e-8). Only the
//!   Legendre base (the official default); the Chebyshev base is not provided.
//! - Input: the Q projection feeds `Lk0` (the official `AutoCorrelationLayer` hands the block
//!   the V projection; in self-attention both are a learned `d×d` map of the same input).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::signal::{irfft, rfft};
use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};

use super::FedformerConfig;
use crate::folded_linear::FoldedLinear;
use crate::mixer::MixerDims;
use crate::mixer::common::spectral::{self, Complex};

impl FedformerConfig {
    pub(super) fn validate_wavelet(&self, dims: &MixerDims) -> Result<(), String> {
        for (name, value) in [
            ("wavelet_k", self.wavelet_k),
            ("wavelet_alpha", self.wavelet_alpha),
            ("wavelet_c", self.wavelet_c),
        ] {
            if value == 0 {
                return Err(format!("{name} = 0 must be at least 1"));
            }
        }
        let grid = spectral::fft_len(dims.max_len);
        let depth = grid.trailing_zeros() as usize;
        if self.wavelet_l >= depth {
            return Err(format!(
                "wavelet_l = {} must be below {depth}: the {grid}-point grid used for max_len = \
                 {} has {depth} levels and at least one must be decomposed",
                self.wavelet_l, dims.max_len
            ));
        }
        Ok(())
    }

    pub(super) fn init_wavelet(&self, d: usize, grid: usize, device: &Device) -> WaveletBlock {
        let (k, c) = (self.wavelet_k, self.wavelet_c);
        let kernel = || SparseKernel::init(self.wavelet_alpha, c * k, device);
        WaveletBlock {
            lift: LinearConfig::new(d, c * k).init(device),
            a: kernel(),
            b: kernel(),
            c: kernel(),
            coarsest: LinearConfig::new(k, k).init(device),
            project: LinearConfig::new(c * k, d).init(device),
            channels: c,
            order: k,
            levels: grid.trailing_zeros() as usize - self.wavelet_l,
            grid,
        }
    }
}

/// Legendre multiwavelet two-scale filters of order `k` (`get_filter('legendre', k)`), each
/// `k × k`, row index = coarse function, column index = fine-scale coefficient.
///
/// With `φ_i(x) = √(2i+1) P_i(2x-1)` (orthonormal on [0, 1]) and the fine-scale basis
/// `√2 φ_j(2x)` on [0, ½] and `√2 φ_j(2x-1)` on [½, 1], `[H0 | H1]` holds the coordinates of
/// the `φ_i` and `[G0 | G1]` those of the wavelets `ψ_i` (the orthonormal complement of the
/// `φ_i` in the fine space). Both sets are orthonormal and mutually orthogonal, so
/// `W = [H0 H1; G0 G1]` is an orthogonal `2k × 2k` matrix.
#[derive(Clone, Debug)]
struct LegendreFilters {
    h0: Vec<Vec<f64>>,
    h1: Vec<Vec<f64>>,
    g0: Vec<Vec<f64>>,
    g1: Vec<Vec<f64>>,
}

/// `P_0(x) … P_{n}(x)` by the three-term recurrence.
fn legendre_values(n: usize, x: f64) -> Vec<f64> {
    let mut p = vec![1.0, x];
    for m in 1..n {
        let m = m as f64;
        let next = ((2.0 * m + 1.0) * x * p[m as usize] - m * p[m as usize - 1]) / (m + 1.0);
        p.push(next);
    }
    p.truncate(n + 1);
    p
}

/// `k`-point Gauss–Legendre nodes and weights on [0, 1] (exact for degree ≤ 2k - 1).
fn gauss_legendre(k: usize) -> Vec<(f64, f64)> {
    (0..k)
        .map(|i| {
            let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (k as f64 + 0.5)).cos();
            // Newton on P_k from the usual cosine guess; P_k' = k (x P_k - P_{k-1}) / (x² - 1).
            let derivative = |x: f64| {
                let p = legendre_values(k, x);
                (p[k], k as f64 * (x * p[k] - p[k - 1]) / (x * x - 1.0))
            };
            for _ in 0..100 {
                let (p, dp) = derivative(x);
                let step = p / dp;
                x -= step;
                if step.abs() < 1e-15 {
                    break;
                }
            }
            let derivative = derivative(x).1;
            let weight = 2.0 / ((1.0 - x * x) * derivative * derivative);
            ((x + 1.0) / 2.0, weight / 2.0)
        })
        .collect()
}

impl LegendreFilters {
    fn new(k: usize) -> Self {
        let phi = |x: f64| -> Vec<f64> {
            legendre_values(k, 2.0 * x - 1.0)
                .iter()
                .enumerate()
                .map(|(i, p)| (2.0 * i as f64 + 1.0).sqrt() * p)
                .collect()
        };
        // (1/√2) ∫₀¹ φ_i(shift(y)) φ_j(y) dy: degree ≤ 2k - 2, exact under k-point quadrature.
        let quadrature = |shift: &dyn Fn(f64) -> f64| -> Vec<Vec<f64>> {
            let mut m = vec![vec![0.0; k]; k];
            for (y, w) in gauss_legendre(k) {
                let (coarse, fine) = (phi(shift(y)), phi(y));
                for i in 0..k {
                    for j in 0..k {
                        m[i][j] += w * coarse[i] * fine[j] / std::f64::consts::SQRT_2;
                    }
                }
            }
            m
        };
        let h0 = quadrature(&|y| y / 2.0);
        let h1 = quadrature(&|y| (y + 1.0) / 2.0);
        // ψ_i: the left-half fine basis function e_i, Gram–Schmidt against the φ rows and the
        // earlier ψ (the official `get_phi_psi` does the same on polynomial coefficients).
        let rows: Vec<Vec<f64>> = (0..k)
            .map(|i| [h0[i].clone(), h1[i].clone()].concat())
            .collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let mut psi: Vec<Vec<f64>> = Vec::with_capacity(k);
        for i in 0..k {
            let mut v = vec![0.0; 2 * k];
            v[i] = 1.0;
            for basis in rows.iter().chain(psi.iter()) {
                let projection = dot(&v, basis);
                v.iter_mut()
                    .zip(basis)
                    .for_each(|(x, b)| *x -= projection * b);
            }
            let norm = dot(&v, &v).sqrt();
            psi.push(v.into_iter().map(|x| x / norm).collect());
        }
        Self {
            h0,
            h1,
            g0: psi.iter().map(|r| r[..k].to_vec()).collect(),
            g1: psi.iter().map(|r| r[k..].to_vec()).collect(),
        }
    }

    /// `W = [H0 H1; G0 G1]`, row-major `2k × 2k`.
    fn two_scale(&self) -> Vec<Vec<f64>> {
        let top = self.h0.iter().zip(&self.h1);
        let bottom = self.g0.iter().zip(&self.g1);
        top.chain(bottom)
            .map(|(a, b)| [a.clone(), b.clone()].concat())
            .collect()
    }

    /// `W` (`transpose = false`, synthesis) or `Wᵀ` (analysis) as a tensor.
    fn tensor(&self, transpose: bool, device: &Device) -> Tensor<2> {
        let w = self.two_scale();
        let n = w.len();
        let values: Vec<f32> = (0..n * n)
            .map(|at| {
                let (r, c) = (at / n, at % n);
                (if transpose { w[c][r] } else { w[r][c] }) as f32
            })
            .collect();
        Tensor::from_data(TensorData::new(values, [n, n]), device)
    }
}

/// `sparseKernelFT1d`: the lowest `alpha` bins of the level's rfft mixed by complex
/// `ck × ck` matrices, the others zeroed.
#[derive(Module, Debug)]
struct SparseKernel {
    /// Real parts `[alpha, ck, ck]`.
    weight_re: Param<Tensor<3>>,
    /// Imaginary parts, same shape.
    weight_im: Param<Tensor<3>>,
}

impl SparseKernel {
    fn init(alpha: usize, channels: usize, device: &Device) -> Self {
        // Official: `scale · rand(ck, ck, alpha, cfloat)`, `scale = 1 / (ck)²`.
        let scale = 1.0 / (channels * channels) as f64;
        let draw = || {
            Param::from_tensor(Tensor::random(
                [alpha, channels, channels],
                Distribution::Uniform(0.0, scale),
                device,
            ))
        };
        Self {
            weight_re: draw(),
            weight_im: draw(),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, n, ck]` with `n` a power of two → `[batch, n, ck]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, n, channels] = x.dims();
        let bins = n / 2 + 1;
        let used = self.weight_re.dims()[0].min(bins);
        let weight = Complex {
            re: self.weight_re.val().narrow(0, 0, used),
            im: self.weight_im.val().narrow(0, 0, used),
        };
        if n == 1 {
            // One point: its rfft is itself and the irfft keeps the real part of the product.
            let w = weight.re.reshape([channels, channels]);
            return x
                .reshape([batch, channels])
                .matmul(w)
                .reshape([batch, 1, channels]);
        }
        let device = x.device();
        let (re, im) = rfft(x, 1, None);
        let spectrum = Complex { re, im }.map(|t| t.narrow(1, 0, used).swap_dims(0, 1));
        let out = spectrum.matmul(weight).map(|t| {
            let t = t.swap_dims(0, 1); // [batch, used, ck]
            if used < bins {
                Tensor::cat(
                    vec![t, Tensor::zeros([batch, bins - used, channels], &device)],
                    1,
                )
            } else {
                t
            }
        });
        irfft(out.re, out.im, 1, Some(n))
    }
}

/// FEB-w: `Lk1(MWT(Lk0(q)))` on the fixed zero-extended grid.
#[derive(Module, Debug)]
pub(super) struct WaveletBlock {
    /// `Lk0: d → c·k`.
    lift: Linear,
    a: SparseKernel,
    b: SparseKernel,
    c: SparseKernel,
    /// `T0: k → k` on the coarsest level.
    coarsest: Linear,
    /// `Lk1: c·k → d`.
    project: Linear,
    channels: usize,
    order: usize,
    /// Analysis steps, `log2(grid) - L`.
    levels: usize,
    /// Grid length, `next_pow2(2·max_len)`.
    grid: usize,
}

impl WaveletBlock {
    /// # Shapes
    /// - `q`: `[batch, seq, d]`, `pad_mask`: `[batch, seq]` → `[batch, seq, d]`
    pub(super) fn forward(&self, q: Tensor<3>, pad_mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
        let [batch, seq, _] = q.dims();
        let (c, k) = (self.channels, self.order);
        assert!(
            2 * seq <= self.grid,
            "fedformer wavelet: sequence of {seq} tokens is longer than the max_len {} it was \
             built for",
            self.grid / 2
        );
        let device = q.device();
        // Zeroed after `Lk0`, whose bias would otherwise give padded tokens a value.
        let v = spectral::zero_padding(self.lift.forward_folded(q), pad_mask);
        let v = Tensor::cat(
            vec![v, Tensor::zeros([batch, self.grid - seq, c * k], &device)],
            1,
        );
        let y = self.transform(v.reshape([batch, self.grid, c, k]));
        self.project
            .forward_folded(y.narrow(1, 0, seq).reshape([batch, seq, c * k]))
    }

    /// `MWT_CZ1d.forward` on a power-of-two length.
    ///
    /// # Shapes
    /// - `x`: `[batch, n, c, k]` → `[batch, n, c, k]`
    fn transform(&self, x: Tensor<4>) -> Tensor<4> {
        let filters = LegendreFilters::new(self.order);
        let device = x.device();
        let (analysis, synthesis) = (
            filters.tensor(true, &device),
            filters.tensor(false, &device),
        );
        let kernel = |op: &SparseKernel, t: Tensor<4>| {
            let [b, n, c, k] = t.dims();
            op.forward(t.reshape([b, n, c * k])).reshape([b, n, c, k])
        };
        let mut s = x;
        let mut kept = Vec::with_capacity(self.levels);
        for _ in 0..self.levels {
            let (coarse, detail) = analyse(s, &analysis);
            let ud = kernel(&self.a, detail.clone()) + kernel(&self.b, coarse.clone());
            kept.push((ud, kernel(&self.c, detail)));
            s = coarse;
        }
        let mut s = self.coarsest.forward_folded(s);
        for (ud, us) in kept.into_iter().rev() {
            s = synthesise(s + us, ud, &synthesis);
        }
        s
    }
}

/// One analysis step: even/odd pairs `[x_e | x_o] Wᵀ = [s | d]`.
///
/// # Shapes
/// - `x`: `[batch, n, c, k]`, `analysis`: `[2k, 2k]` → (`s`, `d`), each `[batch, n/2, c, k]`
fn analyse(x: Tensor<4>, analysis: &Tensor<2>) -> (Tensor<4>, Tensor<4>) {
    let [b, n, c, k] = x.dims();
    let pairs = x
        .reshape([b, n / 2, 2, c, k])
        .permute([0, 1, 3, 2, 4])
        .reshape([b * n / 2 * c, 2 * k]);
    let sd = pairs.matmul(analysis.clone());
    let part = |from| sd.clone().narrow(1, from, k).reshape([b, n / 2, c, k]);
    (part(0), part(k))
}

/// One synthesis step (`evenOdd`): `[s | d] W = [x_e | x_o]`, interleaved.
///
/// # Shapes
/// - `s`, `d`: `[batch, h, c, k]`, `synthesis`: `[2k, 2k]` → `[batch, 2h, c, k]`
fn synthesise(s: Tensor<4>, d: Tensor<4>, synthesis: &Tensor<2>) -> Tensor<4> {
    let [b, h, c, k] = s.dims();
    Tensor::cat(vec![s, d], 3)
        .reshape([b * h * c, 2 * k])
        .matmul(synthesis.clone())
        .reshape([b, h, c, 2, k])
        .permute([0, 1, 3, 2, 4])
        .reshape([b, 2 * h, c, k])
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::*;
    use crate::mixer::common::spectral::naive;
    use crate::mixer::common::testing::pad_mask;
    use crate::mixer::fedformer::Block;
    use crate::mixer::fedformer::tests::{D, dims, input, wavelet_config};
    use crate::mixer::{MixerInput, MixerSpec, TokenMixer};

    fn product(
        a: &[Vec<f64>],
        b: &[Vec<f64>],
        transpose_a: bool,
        transpose_b: bool,
    ) -> Vec<Vec<f64>> {
        let n = a.len();
        let at = |m: &[Vec<f64>], i: usize, j: usize, t: bool| if t { m[j][i] } else { m[i][j] };
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        (0..n)
                            .map(|l| at(a, i, l, transpose_a) * at(b, l, j, transpose_b))
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    fn assert_sum(terms: [Vec<Vec<f64>>; 2], identity: bool, what: &str) {
        for (i, (r0, r1)) in terms[0].iter().zip(&terms[1]).enumerate() {
            for (j, (x, y)) in r0.iter().zip(r1).enumerate() {
                let expected = if identity && i == j { 1.0 } else { 0.0 };
                assert!(
                    (x + y - expected).abs() < 1e-10,
                    "{what} [{i}][{j}] = {}",
                    x + y
                );
            }
        }
    }

    #[test]
    fn legendre_filters_are_an_orthogonal_two_scale_matrix() {
        for k in [1, 2, 3, 5, 8] {
            let f = LegendreFilters::new(k);
            let (h0, h1, g0, g1) = (&f.h0, &f.h1, &f.g0, &f.g1);
            // Rows (φ and ψ orthonormal in the fine space): W Wᵀ = I.
            let rows = |a, b, c, d| [product(a, b, false, true), product(c, d, false, true)];
            assert_sum(rows(h0, h0, h1, h1), true, "H0 H0ᵀ + H1 H1ᵀ");
            assert_sum(rows(g0, g0, g1, g1), true, "G0 G0ᵀ + G1 G1ᵀ");
            assert_sum(rows(h0, g0, h1, g1), false, "H0 G0ᵀ + H1 G1ᵀ");
            // Columns (what perfect reconstruction uses): Wᵀ W = I.
            let cols = |a, b, c, d| [product(a, b, true, false), product(c, d, true, false)];
            assert_sum(cols(h0, h0, g0, g0), true, "H0ᵀ H0 + G0ᵀ G0");
            assert_sum(cols(h1, h1, g1, g1), true, "H1ᵀ H1 + G1ᵀ G1");
            assert_sum(cols(h0, h1, g0, g1), false, "H0ᵀ H1 + G0ᵀ G1");
            for i in 0..k {
                for j in 0..k {
                    // φ_i(x/2) has degree i: no component on finer φ_j, j > i.
                    if j > i {
                        assert!(h0[i][j].abs() < 1e-12 && h1[i][j].abs() < 1e-12);
                    }
                    // Mirror symmetry x → 1 - x: φ_j(1 - x) = (-1)^j φ_j(x).
                    let sign = if (i + j) % 2 == 0 { 1.0 } else { -1.0 };
                    assert!(
                        (h1[i][j] - sign * h0[i][j]).abs() < 1e-12,
                        "k {k} [{i}][{j}]"
                    );
                }
            }
        }
        // k = 1 is the Haar wavelet.
        let haar = LegendreFilters::new(1);
        let r = std::f64::consts::FRAC_1_SQRT_2;
        for (got, want) in [
            (haar.h0[0][0], r),
            (haar.h1[0][0], r),
            (haar.g0[0][0], r),
            (haar.g1[0][0], -r),
        ] {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        // Quadrature: k points integrate x^(2k-1) on [0, 1] exactly.
        let integral: f64 = gauss_legendre(4).iter().map(|(x, w)| w * x.powi(7)).sum();
        assert!((integral - 0.125).abs() < 1e-14, "{integral}");
    }

    #[test]
    fn decomposition_then_reconstruction_is_the_identity() {
        let device = Device::flex();
        for k in [1, 3, 8] {
            let filters = LegendreFilters::new(k);
            let (analysis, synthesis) = (
                filters.tensor(true, &device),
                filters.tensor(false, &device),
            );
            device.seed(k as u64);
            let x = Tensor::<4>::random([2, 32, 3, k], Distribution::Normal(0.0, 1.0), &device);
            for levels in 1..=5 {
                let mut s = x.clone();
                let mut details = Vec::new();
                for _ in 0..levels {
                    let (coarse, detail) = analyse(s, &analysis);
                    details.push(detail);
                    s = coarse;
                }
                for detail in details.into_iter().rev() {
                    s = synthesise(s, detail, &synthesis);
                }
                s.into_data()
                    .assert_approx_eq::<f32>(&x.clone().into_data(), Tolerance::absolute(1e-5));
            }
        }
    }

    #[test]
    fn wavelet_sparse_kernel_equals_the_naive_mode_mixing() {
        let device = Device::flex();
        device.seed(5);
        let (n, ch, alpha) = (8, 3, 3);
        let kernel = SparseKernel::init(alpha, ch, &device);
        let x = Tensor::<3>::random([1, n, ch], Distribution::Normal(0.0, 1.0), &device);
        let got = naive::values(kernel.forward(x.clone()));
        let rows: Vec<Vec<f64>> = naive::values(x).chunks(ch).map(<[f64]>::to_vec).collect();
        let (w_re, w_im) = (
            naive::values(kernel.weight_re.val()),
            naive::values(kernel.weight_im.val()),
        );
        let bins: Vec<Vec<(f64, f64)>> = naive::rfft(&rows, n)
            .iter()
            .enumerate()
            .map(|(m, bin)| {
                if m >= alpha {
                    return vec![(0.0, 0.0); ch];
                }
                let w: Vec<Vec<(f64, f64)>> = (0..ch)
                    .map(|i| {
                        (0..ch)
                            .map(|o| (w_re[(m * ch + i) * ch + o], w_im[(m * ch + i) * ch + o]))
                            .collect()
                    })
                    .collect();
                naive::vec_mat(bin, &w)
            })
            .collect();
        let expected = naive::irfft(&bins, n, n).concat();
        for (a, e) in got.iter().zip(&expected) {
            assert!((a - e).abs() < 1e-5, "{a} vs {e}");
        }
    }

    #[test]
    fn wavelet_block_honours_padding() {
        let device = Device::flex();
        let (seq, real) = (12, 7);
        for l in [0, 2] {
            device.seed(3);
            let mixer = wavelet_config(l).init(&dims(seq), &device);
            let mask = pad_mask(&device, seq, real);
            let x = input(4, seq, &device);
            let noise = input(5, seq, &device)
                .narrow(0, 1, 1)
                .narrow(1, real, seq - real);
            let changed = x
                .clone()
                .slice_assign([1..2, real..seq, 0..D], noise * 10.0);
            let run = |x: Tensor<3>| {
                mixer
                    .forward(MixerInput::new(x).pad_mask(mask.clone()))
                    .x
                    .narrow(0, 1, 1)
                    .narrow(1, 0, real)
            };
            let out = run(x.clone());
            out.clone()
                .into_data()
                .assert_approx_eq::<f32>(&run(changed).into_data(), Tolerance::absolute(1e-5));
            // The real tokens alone give the same outputs: the grid is fixed by max_len.
            let alone = mixer
                .forward(MixerInput::new(x.narrow(0, 1, 1).narrow(1, 0, real)))
                .x;
            out.into_data()
                .assert_approx_eq::<f32>(&alone.into_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn wavelet_block_trains_every_parameter_and_follows_the_seed() {
        let device = Device::flex().autodiff();
        let seq = 12;
        device.seed(6);
        let mixer = wavelet_config(1).init(&dims(seq), &device);
        assert!(mixer.weight_re.is_none() && mixer.modes.is_none());
        let x = input(7, seq, &device);
        let weights = input(8, seq, &device);
        let grads = (mixer.forward(MixerInput::new(x.clone())).x * weights)
            .sum()
            .backward();
        let wavelet = mixer.wavelet.as_ref().unwrap();
        let total = |grad: Option<Tensor<2>>, name: &str| {
            let grad = grad.unwrap_or_else(|| panic!("{name}: no gradient"));
            assert!(
                grad.abs().sum().into_scalar::<f32>() > 0.0,
                "{name}: zero gradient"
            );
        };
        for (name, linear) in [
            ("query", &mixer.query),
            ("output", &mixer.output),
            ("lift", &wavelet.lift),
            ("coarsest", &wavelet.coarsest),
            ("project", &wavelet.project),
        ] {
            total(linear.weight.val().grad(&grads), name);
        }
        for (name, op) in [("a", &wavelet.a), ("b", &wavelet.b), ("c", &wavelet.c)] {
            for weight in [&op.weight_re, &op.weight_im] {
                total(weight.val().grad(&grads).map(|g| g.reshape([0, -1])), name);
            }
        }
        let draw = |seed| {
            device.seed(seed);
            let mixer = wavelet_config(1).init(&dims(seq), &device);
            mixer.forward(MixerInput::new(x.clone())).x.into_data()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn wavelet_validation_names_the_field() {
        let dims = dims(12); // 32-point grid: 5 levels
        assert!(wavelet_config(4).validate(&dims).is_ok());
        let error = wavelet_config(5).validate(&dims).unwrap_err();
        assert!(error.starts_with("wavelet_l = 5"), "{error}");
        for (field, config) in [
            (
                "wavelet_k",
                FedformerConfig {
                    wavelet_k: 0,
                    ..wavelet_config(1)
                },
            ),
            (
                "wavelet_alpha",
                FedformerConfig {
                    wavelet_alpha: 0,
                    ..wavelet_config(1)
                },
            ),
            (
                "wavelet_c",
                FedformerConfig {
                    wavelet_c: 0,
                    ..wavelet_config(1)
                },
            ),
        ] {
            let error = config.validate(&dims).unwrap_err();
            assert!(error.starts_with(field), "{error}");
        }
        // `modes` is a Fourier setting: the wavelet block does not check it.
        assert!(
            FedformerConfig {
                modes: 1000,
                ..wavelet_config(1)
            }
            .validate(&dims)
            .is_ok()
        );
        let parsed: FedformerConfig =
            toml::from_str("block = \"wavelet\"\nwavelet_k = 4\nwavelet_l = 0").unwrap();
        assert_eq!(
            (parsed.block, parsed.wavelet_k, parsed.wavelet_l),
            (Block::Wavelet, 4, 0)
        );
        assert_eq!((parsed.wavelet_alpha, parsed.wavelet_c), (16, 128));
        assert_eq!(FedformerConfig::default().block, Block::Fourier);
        assert!(toml::from_str::<FedformerConfig>("block = \"wavelets\"").is_err());
    }
}
