//! Fourier Neural Operator spectral convolution as a token mixer ([Fourier Neural Operator for
//! Parametric Partial Differential Equations](https://arxiv.org/abs/2010.08895), Li, Kovachki,
//! Azizzadenesheli, Liu, Bhattacharya, Stuart, Anandkumar, ICLR 2021).
//!
//! Official code: zongyi-li/fourier_neural_operator `fourier_1d.py` (`SpectralConv1d`):
//! `X = rfft(x)` along the sequence, keep the lowest `modes` bins and mix channels there with
//! learned complex matrices, `Y[k] = X[k] · W[k]` (`W[k] ∈ C^{d×d}`), zero every other bin,
//! `y = irfft(Y)`. Complex weights are stored as real and imaginary parameter pairs.
//!
//! Complexity: O(n log n · d) for the two FFTs plus O(modes · d²) per sequence for the mixing;
//! memory O(n · d). Parameters: 2 · modes · d².
//!
//! Deviations from the official code, and why:
//! - Only the spectral convolution: the FNO layer `GELU(K(x) + W x)` gets its pointwise path and
//!   nonlinearity from the Transformer block around the mixer (its residual and FFN), so the
//!   mixer is the spectral convolution `K` alone.
//! - FFT grid: the tokens are zero-extended to `next_pow2(2·max_len)` points (Burn's FFT needs a
//!   power of two; the margin avoids circular wrap-around of the end into the start, see
//!   [`spectral`](super::spectral)); `fourier_1d.py` transforms a periodic grid as is. `modes`
//!   counts bins of that grid, so bin `k` is `k / N` cycles per token.
//! - Padding: padded tokens are zeroed before the FFT (the official code has no mask), so they
//!   never reach real tokens.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::common::spectral::{self, Complex};
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer};

/// Settings of [`FnoMixer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FnoConfig {
    /// Lowest spectrum bins kept (`modes`). Default: 16, `fourier_1d.py` (`modes = 16`) and the
    /// methods notes' FNO defaults.
    pub modes: usize,
}

impl Default for FnoConfig {
    fn default() -> Self {
        Self { modes: 16 }
    }
}

impl MixerSpec for FnoConfig {
    type Mixer = FnoMixer;
    const SUMMARY: &'static str =
        "FNO: spectral convolution, learned complex channel mixing on the lowest modes";

    fn caps(&self) -> Caps {
        Caps::WITHOUT_CORE
    }

    fn validate(&self, dims: &MixerDims) -> Result<(), String> {
        let bins = spectral::bins(spectral::fft_len(dims.max_len));
        if !(1..=bins).contains(&self.modes) {
            return Err(format!(
                "modes = {} must be between 1 and {bins}, the spectrum bins of the \
                 {}-point FFT used for max_len = {}",
                self.modes,
                spectral::fft_len(dims.max_len),
                dims.max_len
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> FnoMixer {
        let d = dims.d_model;
        // `fourier_1d.py`: `scale · rand(in, out, modes, cfloat)`, `scale = 1 / (in · out)`:
        // real and imaginary parts both U[0, 1) · scale.
        let scale = 1.0 / (d * d) as f64;
        let draw = || {
            Param::from_tensor(Tensor::random(
                [self.modes, d, d],
                Distribution::Uniform(0.0, scale),
                device,
            ))
        };
        FnoMixer {
            weight_re: draw(),
            weight_im: draw(),
            fft_len: spectral::fft_len(dims.max_len),
        }
    }
}

/// FNO spectral convolution over the sequence.
#[derive(Module, Debug)]
pub struct FnoMixer {
    /// Real parts of the per-mode channel matrices `[modes, d_in, d_out]`.
    weight_re: Param<Tensor<3>>,
    /// Imaginary parts, same shape.
    weight_im: Param<Tensor<3>>,
    /// FFT grid length, `next_pow2(2·max_len)`.
    fft_len: usize,
}

impl FnoMixer {
    fn modes(&self) -> usize {
        self.weight_re.dims()[0]
    }
}

impl TokenMixer for FnoMixer {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let MixerInput { x, pad_mask, carry } = input;
        let [batch, seq, d] = x.dims();
        let (modes, bins) = (self.modes(), spectral::bins(self.fft_len));
        let x = spectral::zero_padding(x, pad_mask.as_ref());
        let low =
            spectral::spectrum(x, self.fft_len).map(|t| t.narrow(1, 0, modes).swap_dims(0, 1)); // [modes, b, d]
        let weight = Complex {
            re: self.weight_re.val(),
            im: self.weight_im.val(),
        };
        let device = weight.re.device();
        let mixed = low.matmul(weight).map(|t| {
            let kept = t.swap_dims(0, 1); // [b, modes, d]
            if modes == bins {
                kept
            } else {
                let dropped = Tensor::zeros([batch, bins - modes, d], &device);
                Tensor::cat(vec![kept, dropped], 1) // [b, bins, d]
            }
        });
        MixerOutput {
            x: spectral::tokens(mixed, self.fft_len, seq),
            carry,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::*;
    use crate::mixer::common::spectral::naive;
    use crate::mixer::common::testing::pad_mask;

    const D: usize = 4;

    fn dims(max_len: usize) -> MixerDims {
        MixerDims::new(D, 1, max_len)
    }

    fn input(seed: u64, seq: usize, device: &Device) -> Tensor<3> {
        device.seed(seed);
        Tensor::random([2, seq, D], Distribution::Normal(0.0, 1.0), device)
    }

    #[test]
    fn all_modes_with_identity_weights_is_the_identity() {
        let device = Device::flex();
        let (seq, real) = (12, 7);
        let bins = spectral::bins(spectral::fft_len(seq));
        let config = FnoConfig { modes: bins };
        config.validate(&dims(seq)).unwrap();
        let mut mixer = config.init(&dims(seq), &device);
        let eye = Tensor::<2>::eye(D, &device)
            .unsqueeze::<3>()
            .repeat_dim(0, bins);
        mixer.weight_re = Param::from_tensor(eye);
        mixer.weight_im = Param::from_tensor(Tensor::zeros([bins, D, D], &device));
        let x = input(1, seq, &device);
        let mask = pad_mask(&device, seq, real);
        let out = mixer
            .forward(MixerInput::new(x.clone()).pad_mask(mask.clone()))
            .x;
        let expected = spectral::zero_padding(x, Some(&mask)); // padding comes out as zeros
        out.into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn output_equals_the_naive_dft_spectral_convolution() {
        let device = Device::flex();
        let seq = 6;
        let n = spectral::fft_len(seq);
        device.seed(5);
        let mixer = FnoConfig { modes: 3 }.init(&dims(seq), &device);
        let x = input(2, seq, &device);
        let out = naive::values(mixer.forward(MixerInput::new(x.clone())).x);
        let (w_re, w_im) = (
            naive::values(mixer.weight_re.val()),
            naive::values(mixer.weight_im.val()),
        );
        let xs = naive::values(x);
        for b in 0..2 {
            let rows: Vec<Vec<f64>> = xs[b * seq * D..(b + 1) * seq * D]
                .chunks(D)
                .map(<[f64]>::to_vec)
                .collect();
            let mut bins = naive::rfft(&rows, n);
            for (k, bin) in bins.iter_mut().enumerate() {
                *bin = if k < 3 {
                    let w: Vec<Vec<(f64, f64)>> = (0..D)
                        .map(|i| {
                            (0..D)
                                .map(|o| {
                                    let at = (k * D + i) * D + o;
                                    (w_re[at], w_im[at])
                                })
                                .collect()
                        })
                        .collect();
                    naive::vec_mat(bin, &w)
                } else {
                    vec![(0.0, 0.0); D]
                };
            }
            let expected = naive::irfft(&bins, n, seq).concat();
            let actual = &out[b * seq * D..(b + 1) * seq * D];
            for (a, e) in actual.iter().zip(&expected) {
                assert!((a - e).abs() < 1e-6, "batch {b}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn dc_mode_alone_broadcasts_the_token_sum_through_its_matrix() {
        // Only bin 0: y[t] = (Σ_s x[s]) · W_re[0] / N at every t (irfft drops the DC imaginary part).
        let device = Device::flex();
        let seq = 9;
        let n = spectral::fft_len(seq) as f64;
        let mixer = FnoConfig { modes: 1 }.init(&dims(seq), &device);
        let x = input(3, seq, &device);
        let out = mixer.forward(MixerInput::new(x.clone())).x;
        let w0 = mixer.weight_re.val().reshape([1, D, D]);
        let expected = (x.sum_dim(1).matmul(w0) / n).expand([2, seq, D]);
        out.into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn shifting_the_tokens_shifts_the_output() {
        // A convolution: moving an input right by `s` tokens moves the output right by `s`.
        let device = Device::flex();
        let (seq, shift, len) = (16, 5, 11);
        let mixer = FnoConfig { modes: 8 }.init(&dims(seq), &device);
        let signal = input(4, len, &device);
        let place = |at: usize| {
            let zeros = |k| Tensor::<3>::zeros([2, k, D], &device);
            Tensor::cat(vec![zeros(at), signal.clone(), zeros(seq - len - at)], 1)
        };
        let a = mixer.forward(MixerInput::new(place(0))).x;
        let b = mixer.forward(MixerInput::new(place(shift))).x;
        b.narrow(1, shift, seq - shift)
            .into_data()
            .assert_approx_eq::<f32>(
                &a.narrow(1, 0, seq - shift).into_data(),
                Tolerance::absolute(1e-6),
            );
    }

    #[test]
    fn validation_names_the_field() {
        let bins = spectral::bins(spectral::fft_len(100));
        for modes in [0, bins + 1] {
            let error = FnoConfig { modes }.validate(&dims(100)).unwrap_err();
            assert!(error.starts_with("modes = "), "{error}");
        }
        assert!(FnoConfig { modes: bins }.validate(&dims(100)).is_ok());
        assert!(toml::from_str::<FnoConfig>("mode = 3").is_err());
        let parsed: FnoConfig = toml::from_str("modes = 3").unwrap();
        assert_eq!(parsed.modes, 3);
    }
}
