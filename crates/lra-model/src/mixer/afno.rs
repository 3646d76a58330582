//! Adaptive Fourier Neural Operator token mixing ([Adaptive Fourier Neural Operators: Efficient
//! Token Mixers for Transformers](https://arxiv.org/abs/2111.13587), Guibas, Mardani, Li, Tao,
//! Anandkumar, Catanzaro, ICLR 2022).
//!
//! Official code: NVlabs/AFNO-transformer `afno/afno1d.py` (`AFNO1D`). `X = rfft(x)` over the
//! tokens (orthonormal scaling); the channels split into `num_blocks` blocks, and at every kept
//! frequency one block-diagonal complex two-layer MLP, shared by all frequencies, mixes them:
//! `o1 = ReLU(X W1 + b1)`, `o2 = o1 W2 + b2` (ReLU on real and imaginary parts separately, as
//! the official code does); only the first `hard_thresholding_fraction` of the bins go through
//! the MLP, the others are zero; `softshrink(λ)` on real and imaginary parts sparsifies the
//! result; `y = irfft(o2) + x` (the module keeps its own residual, like `AFNO1D.forward`).
//!
//! Complexity: O(n log n · d) for the FFTs plus O(n · d² · f / num_blocks) for the MLP
//! (`f` = `hidden_size_factor`); memory O(n · d · f). Parameters: 2·(2·d·bs·f + bs·f·nb + d)
//! with block size `bs = d / nb`.
//!
//! Deviations from the official code, and why:
//! - FFT grid: tokens zero-extended to `next_pow2(2·max_len)` points (Burn's FFT needs a power
//!   of two; the margin stops circular wrap-around of the end into the start, see
//!   [`spectral`](super::spectral)); `afno1d.py` transforms the `n` tokens as a periodic
//!   sequence. With orthonormal scaling on the longer grid the spectrum of the same tokens is
//!   about `√(n / N)` times smaller, which the learned weights absorb.
//! - Padding: padded tokens are zeroed before the FFT (the official code has no mask), so they
//!   never reach real tokens; the residual adds the input unchanged.
//! - No fp32 cast: Burn's FFT here runs in the model's float type (fp32).

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::common::spectral::{self, Complex};
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer};

/// Settings of [`AfnoMixer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AfnoConfig {
    /// Blocks of the block-diagonal channel MLP; must divide `d_model`. Default: 8,
    /// `afno1d.py` (`num_blocks=8`).
    pub num_blocks: usize,
    /// Soft-shrinkage threshold λ on the MLP output. Default: 0.01, `afno1d.py`
    /// (`sparsity_threshold=0.01`).
    pub sparsity_threshold: f64,
    /// Fraction of the spectrum bins (lowest first) that go through the MLP; the rest are
    /// zeroed. Default: 1.0 (all), `afno1d.py` (`hard_thresholding_fraction=1`).
    pub hard_thresholding_fraction: f64,
    /// Hidden width of each block's MLP as a multiple of the block size. Default: 1,
    /// `afno1d.py` (`hidden_size_factor=1`).
    pub hidden_size_factor: usize,
}

impl Default for AfnoConfig {
    fn default() -> Self {
        Self {
            num_blocks: 8,
            sparsity_threshold: 0.01,
            hard_thresholding_fraction: 1.0,
            hidden_size_factor: 1,
        }
    }
}

impl AfnoConfig {
    /// Bins that go through the MLP: `floor(bins · fraction)`, as `afno1d.py` computes it.
    fn kept_bins(&self, fft_len: usize) -> usize {
        (spectral::bins(fft_len) as f64 * self.hard_thresholding_fraction) as usize
    }
}

impl MixerSpec for AfnoConfig {
    type Mixer = AfnoMixer;
    const SUMMARY: &'static str =
        "AFNO: block-diagonal complex MLP over channels at each frequency, soft-shrinkage";

    fn caps(&self) -> Caps {
        Caps::WITHOUT_CORE
    }

    fn validate(&self, dims: &MixerDims) -> Result<(), String> {
        if self.num_blocks == 0 || !dims.d_model.is_multiple_of(self.num_blocks) {
            return Err(format!(
                "num_blocks = {} must divide d_model = {}",
                self.num_blocks, dims.d_model
            ));
        }
        if !(self.sparsity_threshold.is_finite() && self.sparsity_threshold >= 0.0) {
            return Err(format!(
                "sparsity_threshold = {} must be a finite number ≥ 0",
                self.sparsity_threshold
            ));
        }
        let fft_len = spectral::fft_len(dims.max_len);
        if !(self.hard_thresholding_fraction <= 1.0 && self.kept_bins(fft_len) >= 1) {
            return Err(format!(
                "hard_thresholding_fraction = {} must be at most 1 and keep at least one of the \
                 {} spectrum bins for max_len = {}",
                self.hard_thresholding_fraction,
                spectral::bins(fft_len),
                dims.max_len
            ));
        }
        if self.hidden_size_factor == 0 {
            return Err("hidden_size_factor = 0 must be at least 1".to_string());
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> AfnoMixer {
        let blocks = self.num_blocks;
        let block = dims.d_model / blocks;
        let hidden = block * self.hidden_size_factor;
        // `afno1d.py`: every weight and bias is `0.02 · randn`.
        let draw = |shape: [usize; 3]| {
            Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.02),
                device,
            ))
        };
        let layer = |d_in: usize, d_out: usize| ComplexLayer {
            weight_re: draw([blocks, d_in, d_out]),
            weight_im: draw([blocks, d_in, d_out]),
            bias_re: draw([blocks, 1, d_out]),
            bias_im: draw([blocks, 1, d_out]),
        };
        let fft_len = spectral::fft_len(dims.max_len);
        AfnoMixer {
            hidden: layer(block, hidden),
            output: layer(hidden, block),
            sparsity_threshold: self.sparsity_threshold,
            kept_bins: self.kept_bins(fft_len),
            fft_len,
        }
    }
}

/// One block-diagonal complex affine layer: per block `z W + b`.
#[derive(Module, Debug)]
struct ComplexLayer {
    /// `[blocks, d_in, d_out]`.
    weight_re: Param<Tensor<3>>,
    weight_im: Param<Tensor<3>>,
    /// `[blocks, 1, d_out]`.
    bias_re: Param<Tensor<3>>,
    bias_im: Param<Tensor<3>>,
}

impl ComplexLayer {
    /// # Shapes
    /// - `z`: `[blocks, rows, d_in]` → `[blocks, rows, d_out]`
    fn forward(&self, z: Complex<3>) -> Complex<3> {
        let product = z.matmul(Complex {
            re: self.weight_re.val(),
            im: self.weight_im.val(),
        });
        Complex {
            re: product.re + self.bias_re.val(),
            im: product.im + self.bias_im.val(),
        }
    }
}

/// AFNO token mixing over the sequence.
#[derive(Module, Debug)]
pub struct AfnoMixer {
    hidden: ComplexLayer,
    output: ComplexLayer,
    sparsity_threshold: f64,
    /// Lowest bins that go through the MLP.
    kept_bins: usize,
    /// FFT grid length, `next_pow2(2·max_len)`.
    fft_len: usize,
}

/// `sign(v) · max(|v| - λ, 0)`.
fn softshrink<const D: usize>(v: Tensor<D>, lambda: f64) -> Tensor<D> {
    v.clone() - v.clamp(-lambda, lambda)
}

impl TokenMixer for AfnoMixer {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let MixerInput { x, pad_mask, carry } = input;
        let [batch, seq, d] = x.dims();
        let (kept, bins) = (self.kept_bins, spectral::bins(self.fft_len));
        let blocks = self.hidden.weight_re.dims()[0];
        let block = d / blocks;
        // Orthonormal scaling (`norm="ortho"`): 1/√N forward here, √N after the inverse.
        let ortho = (self.fft_len as f64).sqrt();
        let tokens = spectral::zero_padding(x.clone(), pad_mask.as_ref());
        let spectrum = spectral::spectrum(tokens, self.fft_len).map(|t| {
            (t.narrow(1, 0, kept) / ortho)
                .reshape([batch * kept, blocks, block])
                .swap_dims(0, 1) // [blocks, b·kept, block]
        });
        let hidden = self.hidden.forward(spectrum).map(relu);
        let device = x.device();
        let mixed = self.output.forward(hidden).map(|t| {
            let t = softshrink(t, self.sparsity_threshold)
                .swap_dims(0, 1)
                .reshape([batch, kept, d]);
            if kept == bins {
                t
            } else {
                Tensor::cat(vec![t, Tensor::zeros([batch, bins - kept, d], &device)], 1)
            }
        });
        MixerOutput {
            x: spectral::tokens(mixed, self.fft_len, seq) * ortho + x,
            carry,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::*;
    use crate::mixer::common::spectral::naive;

    const D: usize = 8;
    const BLOCKS: usize = 2;

    fn dims(max_len: usize) -> MixerDims {
        MixerDims::new(D, 1, max_len)
    }

    fn input(seed: u64, seq: usize, device: &Device) -> Tensor<3> {
        device.seed(seed);
        Tensor::random([2, seq, D], Distribution::Normal(0.0, 1.0), device)
    }

    /// Redraws every parameter from N(0, 1), so the MLP output is far above the threshold.
    fn unit_scale(layer: &mut ComplexLayer, device: &Device) {
        let redraw = |p: &Param<Tensor<3>>| {
            Param::from_tensor(Tensor::random(
                p.dims(),
                Distribution::Normal(0.0, 1.0),
                device,
            ))
        };
        layer.weight_re = redraw(&layer.weight_re);
        layer.weight_im = redraw(&layer.weight_im);
        layer.bias_re = redraw(&layer.bias_re);
        layer.bias_im = redraw(&layer.bias_im);
    }

    /// The block-diagonal complex layer for one bin: `[d]` → `[d_out · blocks]`.
    fn naive_layer(z: &[(f64, f64)], layer: &ComplexLayer) -> Vec<(f64, f64)> {
        let [blocks, d_in, d_out] = layer.weight_re.dims();
        let (w_re, w_im) = (
            naive::values(layer.weight_re.val()),
            naive::values(layer.weight_im.val()),
        );
        let (b_re, b_im) = (
            naive::values(layer.bias_re.val()),
            naive::values(layer.bias_im.val()),
        );
        (0..blocks)
            .flat_map(|blk| {
                let w: Vec<Vec<(f64, f64)>> = (0..d_in)
                    .map(|i| {
                        (0..d_out)
                            .map(|o| {
                                let at = (blk * d_in + i) * d_out + o;
                                (w_re[at], w_im[at])
                            })
                            .collect()
                    })
                    .collect();
                let out = naive::vec_mat(&z[blk * d_in..(blk + 1) * d_in], &w);
                out.into_iter()
                    .enumerate()
                    .map(|(o, (re, im))| (re + b_re[blk * d_out + o], im + b_im[blk * d_out + o]))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn output_equals_the_naive_dft_block_mlp_with_shrinkage_and_thresholding() {
        let device = Device::flex();
        let seq = 6;
        let config = AfnoConfig {
            num_blocks: BLOCKS,
            sparsity_threshold: 0.5,
            hard_thresholding_fraction: 0.5,
            hidden_size_factor: 2,
        };
        config.validate(&dims(seq)).unwrap();
        device.seed(1);
        let mut mixer = config.init(&dims(seq), &device);
        unit_scale(&mut mixer.hidden, &device);
        unit_scale(&mut mixer.output, &device);
        let n = mixer.fft_len;
        assert_eq!(mixer.kept_bins, 4, "floor(9 bins · 0.5)");
        let x = input(2, seq, &device);
        let out = naive::values(mixer.forward(MixerInput::new(x.clone())).x);
        let xs = naive::values(x);
        let ortho = (n as f64).sqrt();
        let shrink = |v: f64| v.signum() * (v.abs() - 0.5).max(0.0);
        let mut shrunk = 0;
        for b in 0..2 {
            let rows: Vec<Vec<f64>> = xs[b * seq * D..(b + 1) * seq * D]
                .chunks(D)
                .map(<[f64]>::to_vec)
                .collect();
            let bins: Vec<Vec<(f64, f64)>> = naive::rfft(&rows, n)
                .iter()
                .enumerate()
                .map(|(k, bin)| {
                    if k >= 4 {
                        return vec![(0.0, 0.0); D];
                    }
                    let z: Vec<_> = bin
                        .iter()
                        .map(|&(re, im)| (re / ortho, im / ortho))
                        .collect();
                    let h: Vec<_> = naive_layer(&z, &mixer.hidden)
                        .into_iter()
                        .map(|(re, im)| (re.max(0.0), im.max(0.0)))
                        .collect();
                    naive_layer(&h, &mixer.output)
                        .into_iter()
                        .map(|(re, im)| {
                            shrunk += usize::from(re.abs() < 0.5) + usize::from(im.abs() < 0.5);
                            (shrink(re), shrink(im))
                        })
                        .collect()
                })
                .collect();
            let expected = naive::irfft(&bins, n, seq);
            for (t, row) in expected.iter().enumerate() {
                for (c, e) in row.iter().enumerate() {
                    let at = (b * seq + t) * D + c;
                    let e = e * ortho + xs[at];
                    assert!(
                        (out[at] - e).abs() < 1e-4,
                        "b {b} t {t} c {c}: {} vs {e}",
                        out[at]
                    );
                }
            }
        }
        assert!(shrunk > 0, "the threshold zeroed some coefficients");
    }

    #[test]
    fn a_threshold_above_every_coefficient_leaves_only_the_residual() {
        let device = Device::flex();
        let config = AfnoConfig {
            num_blocks: BLOCKS,
            sparsity_threshold: 1e6,
            ..Default::default()
        };
        let mixer = config.init(&dims(10), &device);
        let x = input(3, 10, &device);
        let out = mixer.forward(MixerInput::new(x.clone())).x;
        out.into_data()
            .assert_approx_eq::<f32>(&x.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn softshrink_moves_values_towards_zero_by_lambda() {
        let device = Device::flex();
        let v = Tensor::<1>::from_floats([-2.0, -0.5, 0.0, 0.3, 1.5], &device);
        let expected = Tensor::<1>::from_floats([-1.5, 0.0, 0.0, 0.0, 1.0], &device);
        softshrink(v, 0.5)
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-7));
    }

    #[test]
    fn validation_names_the_field() {
        let dims = dims(16);
        let check = |config: AfnoConfig, field: &str| {
            let error = config.validate(&dims).unwrap_err();
            assert!(error.starts_with(field), "{error}");
        };
        check(
            AfnoConfig {
                num_blocks: 3,
                ..Default::default()
            },
            "num_blocks",
        );
        check(
            AfnoConfig {
                num_blocks: 0,
                ..Default::default()
            },
            "num_blocks",
        );
        check(
            AfnoConfig {
                sparsity_threshold: -1.0,
                ..Default::default()
            },
            "sparsity_threshold",
        );
        check(
            AfnoConfig {
                sparsity_threshold: f64::NAN,
                ..Default::default()
            },
            "sparsity_threshold",
        );
        for fraction in [0.0, 1.5, f64::NAN] {
            check(
                AfnoConfig {
                    hard_thresholding_fraction: fraction,
                    ..Default::default()
                },
                "hard_thresholding_fraction",
            );
        }
        check(
            AfnoConfig {
                hidden_size_factor: 0,
                ..Default::default()
            },
            "hidden_size_factor",
        );
        assert!(AfnoConfig::default().validate(&dims).is_ok());
        assert!(toml::from_str::<AfnoConfig>("blocks = 4").is_err());
    }
}
