//! Pieces shared by the FFT mixers (`fno`, `afno`, `fedformer`) and `s4`: the real FFT along the sequence
//! with padding handled, and complex matrix products on (real, imaginary) tensor pairs (Burn has
//! no complex dtype).
//!
//! FFT length: Burn's FFT takes power-of-two lengths only, and a spectral operator applied on a
//! grid of `N` points is a *circular* convolution, which would make the last tokens neighbours
//! of the first. Every input is zero-extended to `N = next_pow2(2·max_len)` points, fixed at init
//! from the model's `max_len`: with `N ≥ 2n - 1` every offset `t - s` between two tokens lands
//! on its own kernel tap, so the operator is a plain (non-periodic) convolution over the tokens,
//! the way FNO pads non-periodic domains (`fourier_2d.py`, `padding = 9`). Fixing `N` from
//! `max_len` rather than from each batch keeps a frequency bin's meaning independent of how
//! long the batch is.

use burn::tensor::Tensor;
use burn::tensor::signal::{irfft, rfft};

/// FFT length for inputs of up to `max_len` tokens (see the module docs), and padded tokens set
/// to zero so that they cannot reach real tokens through the FFT: the same as the state-space
/// mixers' long convolution.
pub(crate) use crate::ops::fft_conv::{fft_len, zero_padding};

/// Number of one-sided spectrum bins of an `fft_len`-point real FFT.
pub(crate) fn bins(fft_len: usize) -> usize {
    fft_len / 2 + 1
}

/// A complex tensor as its real and imaginary parts (same shape).
#[derive(Clone, Debug)]
pub(crate) struct Complex<const D: usize> {
    pub re: Tensor<D>,
    pub im: Tensor<D>,
}

impl<const D: usize> Complex<D> {
    /// Applies the same shape operation to both parts.
    pub fn map(self, f: impl Fn(Tensor<D>) -> Tensor<D>) -> Self {
        Self {
            re: f(self.re),
            im: f(self.im),
        }
    }

    /// Applies the same rank-changing shape operation to both parts.
    pub fn map_rank<const E: usize>(self, f: impl Fn(Tensor<D>) -> Tensor<E>) -> Complex<E> {
        Complex {
            re: f(self.re),
            im: f(self.im),
        }
    }

    /// Elementwise product (broadcasting like Burn's).
    pub fn mul(self, other: Self) -> Self {
        Self {
            re: self.re.clone() * other.re.clone() - self.im.clone() * other.im.clone(),
            im: self.re * other.im + self.im * other.re,
        }
    }

    /// Elementwise difference.
    pub fn sub(self, other: Self) -> Self {
        Self {
            re: self.re - other.re,
            im: self.im - other.im,
        }
    }

    /// `z + value` for a real `value`.
    pub fn add_scalar(self, value: f32) -> Self {
        Self {
            re: self.re + value,
            im: self.im,
        }
    }

    /// Complex conjugate.
    pub fn conj(self) -> Self {
        Self {
            re: self.re,
            im: -self.im,
        }
    }

    /// `1/z = z̄ / |z|²`.
    pub fn recip(self) -> Self {
        let norm = self.re.clone().powi_scalar(2) + self.im.clone().powi_scalar(2);
        Self {
            re: self.re / norm.clone(),
            im: -self.im / norm,
        }
    }

    /// Concatenation along `dim`.
    pub fn cat(parts: Vec<Self>, dim: usize) -> Self {
        let (re, im) = parts.into_iter().map(|z| (z.re, z.im)).unzip();
        Self {
            re: Tensor::cat(re, dim),
            im: Tensor::cat(im, dim),
        }
    }

    /// Batched complex matrix product `self · rhs` on the last two dimensions, as ONE real
    /// matmul: `[re, im] · [[W_re, W_im], [-W_im, W_re]] = [re·W_re - im·W_im, re·W_im + im·W_re]`.
    ///
    /// # Shapes
    /// - `self`: `[..., m, k]`, `rhs`: `[..., k, p]` (batch dimensions equal)
    /// - output: `[..., m, p]`
    pub fn matmul(self, rhs: Complex<D>) -> Complex<D> {
        let p = rhs.re.dims()[D - 1];
        let top = Tensor::cat(vec![rhs.re.clone(), rhs.im.clone()], D - 1);
        let bottom = Tensor::cat(vec![-rhs.im, rhs.re], D - 1);
        let weight = Tensor::cat(vec![top, bottom], D - 2); // [..., 2k, 2p]
        let product = Tensor::cat(vec![self.re, self.im], D - 1).matmul(weight); // [..., m, 2p]
        Complex {
            re: product.clone().narrow(D - 1, 0, p),
            im: product.narrow(D - 1, p, p),
        }
    }
}

/// One-sided spectrum of the tokens along the sequence, zero-extended to `fft_len` points.
///
/// # Shapes
/// - `x`: `[batch, seq, d]` with `seq <= fft_len / 2`
/// - output: `[batch, fft_len / 2 + 1, d]`
///
/// # Panics
/// If `seq` exceeds `fft_len / 2`, the `max_len` the mixer was built for.
pub(crate) fn spectrum(x: Tensor<3>, fft_len: usize) -> Complex<3> {
    let seq = x.dims()[1];
    assert!(
        2 * seq <= fft_len,
        "spectral mixer: sequence of {seq} tokens is longer than the max_len {} it was built for",
        fft_len / 2
    );
    let (re, im) = rfft(x, 1, Some(fft_len));
    Complex { re, im }
}

/// Inverse of [`spectrum`]: the first `seq` tokens of the `fft_len`-point inverse real FFT
/// (scaled by `1 / fft_len`; imaginary parts of the DC and Nyquist bins are ignored).
///
/// # Shapes
/// - `spectrum`: `[batch, fft_len / 2 + 1, d]`
/// - output: `[batch, seq, d]`
pub(crate) fn tokens(spectrum: Complex<3>, fft_len: usize, seq: usize) -> Tensor<3> {
    irfft(spectrum.re, spectrum.im, 1, Some(fft_len)).narrow(1, 0, seq)
}

/// Plain-Rust DFT in `f64` for the mixers' reference tests.
#[cfg(test)]
pub(crate) mod naive {
    use std::f64::consts::PI;

    pub use crate::mixer::common::testing::values;

    /// `[seq][d]` real signal → `[fft_len / 2 + 1][d]` bins of `Σ_t x[t] e^{-2πikt/N}`.
    pub fn rfft(x: &[Vec<f64>], fft_len: usize) -> Vec<Vec<(f64, f64)>> {
        let d = x[0].len();
        (0..=fft_len / 2)
            .map(|k| {
                (0..d)
                    .map(|c| {
                        x.iter().enumerate().fold((0.0, 0.0), |(re, im), (t, row)| {
                            let angle = -2.0 * PI * (k * t) as f64 / fft_len as f64;
                            (re + row[c] * angle.cos(), im + row[c] * angle.sin())
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// First `seq` samples of the real inverse DFT of one-sided bins (Hermitian completion,
    /// `1 / N` scaling, imaginary parts of DC and Nyquist dropped).
    pub fn irfft(bins: &[Vec<(f64, f64)>], fft_len: usize, seq: usize) -> Vec<Vec<f64>> {
        let d = bins[0].len();
        (0..seq)
            .map(|t| {
                (0..d)
                    .map(|c| {
                        let sum: f64 = bins
                            .iter()
                            .enumerate()
                            .map(|(k, row)| {
                                let (re, im) = row[c];
                                let angle = 2.0 * PI * (k * t) as f64 / fft_len as f64;
                                let weight = if k == 0 || 2 * k == fft_len { 1.0 } else { 2.0 };
                                weight * (re * angle.cos() - im * angle.sin())
                            })
                            .sum();
                        sum / fft_len as f64
                    })
                    .collect()
            })
            .collect()
    }

    /// `x · w` for one bin: `x` `[k]`, `w` `[k][p]` complex.
    pub fn vec_mat(x: &[(f64, f64)], w: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
        let p = w[0].len();
        (0..p)
            .map(|o| {
                x.iter()
                    .zip(w)
                    .fold((0.0, 0.0), |(re, im), (&(a, b), row)| {
                        let (c, d) = row[o];
                        (re + a * c - b * d, im + a * d + b * c)
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor, TensorData, Tolerance};

    use super::*;

    #[test]
    fn fft_length_is_a_power_of_two_of_at_least_twice_the_length() {
        assert_eq!(fft_len(1), 2);
        assert_eq!(fft_len(128), 256);
        assert_eq!(fft_len(129), 512);
        assert_eq!(fft_len(1000), 2048);
        assert_eq!(bins(256), 129);
    }

    #[test]
    fn complex_matmul_equals_the_complex_product() {
        let device = Device::flex();
        device.seed(3);
        let draw = |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Default, &device);
        let x = Complex {
            re: draw([2, 3, 4]),
            im: draw([2, 3, 4]),
        };
        let w = Complex {
            re: draw([2, 4, 5]),
            im: draw([2, 4, 5]),
        };
        let actual = x.clone().matmul(w.clone());
        let re = x.re.clone().matmul(w.re.clone()) - x.im.clone().matmul(w.im.clone());
        let im = x.re.matmul(w.im) + x.im.matmul(w.re);
        let tol = Tolerance::absolute(1e-5);
        actual
            .re
            .into_data()
            .assert_approx_eq::<f32>(&re.into_data(), tol);
        actual
            .im
            .into_data()
            .assert_approx_eq::<f32>(&im.into_data(), tol);
    }

    #[test]
    fn spectrum_and_tokens_match_the_naive_dft_and_invert_each_other() {
        let device = Device::flex();
        let (seq, d, n) = (5, 3, fft_len(5));
        device.seed(4);
        let x = Tensor::<3>::random([1, seq, d], Distribution::Normal(0.0, 1.0), &device);
        let rows: Vec<Vec<f64>> = naive::values(x.clone())
            .chunks(d)
            .map(<[f64]>::to_vec)
            .collect();
        let expected = naive::rfft(&rows, n);
        let spec = spectrum(x.clone(), n);
        let (re, im) = (
            naive::values(spec.re.clone()),
            naive::values(spec.im.clone()),
        );
        for (k, bin) in expected.iter().enumerate() {
            for (c, &(er, ei)) in bin.iter().enumerate() {
                assert!((re[k * d + c] - er).abs() < 1e-5, "re of bin {k}");
                assert!((im[k * d + c] - ei).abs() < 1e-5, "im of bin {k}");
            }
        }
        let back = naive::irfft(&expected, n, seq).concat();
        let back = Tensor::<3>::from_data(
            TensorData::new(back.iter().map(|&v| v as f32).collect(), [1, seq, d]),
            &device,
        );
        back.into_data()
            .assert_approx_eq::<f32>(&x.clone().into_data(), Tolerance::absolute(1e-5));
        tokens(spec, n, seq)
            .into_data()
            .assert_approx_eq::<f32>(&x.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    #[should_panic(expected = "longer than the max_len")]
    fn longer_inputs_than_the_grid_panic() {
        let device = Device::flex();
        spectrum(Tensor::<3>::zeros([1, 9, 2], &device), 16);
    }
}
