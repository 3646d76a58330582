//! S4D: the diagonal structured state space layer (Gu, Gupta, Goel, Ré, "On the Parameterization
//! and Initialization of Diagonal State Space Models", NeurIPS 2022, arXiv:2206.11893).
//! Official code: state-spaces/s4 `models/s4/s4d.py` (`S4DKernel`, `S4D`) and the diagonal kernel
//! of `models/s4/s4.py` (`SSMKernelDiag`, inits `diag-lin` / `diag-inv`).
//!
//! Per channel h (H = d_model independent SISO systems), a diagonal complex state matrix
//! `A = −exp(log_a_real) + i·a_imag` with N/2 conjugate pairs, step `Δ = exp(log_dt)`, and ZOH
//! discretisation `Ā = exp(ΔA)`, `B̄ = (exp(ΔA) − 1)/A` (B folded into C, as in s4d.py). The kernel
//! is the Vandermonde product `K_ℓ = 2·Re Σ_n C_n B̄_n Ā_n^ℓ`; the layer is `y = K * u + D·u`
//! (FFT convolution, `ops::fft_conv`), then GELU → dropout → position-wise output linear with GLU
//! (the official LRA block, `final_act: glu`). Bidirectional: a second C gives a backward kernel.
//! Complex numbers are (real, imaginary) tensor pairs.
//!
//! Cost: kernel O(H·N·n) time and memory (Vandermonde), convolution O(H·n log n).
//!
//! Deviations: the official optimiser gives A and Δ their own learning rate (0.001) and no weight
//! decay; the harness trains every parameter with one AdamW group. Padded positions are zeroed
//! before the convolution (the official code convolves over padding).

use std::f64::consts::PI;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::common::state_space::{log_dt_init, output_layer, validate_ssm};
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer};
use crate::ops::fft_conv::{sequence_conv, zero_padding};

/// Initialisation of the imaginary parts of the diagonal A (S4D paper §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum S4dInit {
    /// S4D-Lin: `A_n = −½ + iπn`.
    Lin,
    /// S4D-Inv: `A_n = −½ + i·(N/π)·(N/(2n+1) − 1)`.
    Inv,
}

/// Settings of [`S4d`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S4dConfig {
    /// State size N (N/2 complex conjugate pairs are stored). Default: 64 (s4d.py `d_state`).
    pub d_state: usize,
    /// Imaginary-part initialisation. Default: `lin` (s4d.py, S4D-Lin).
    pub init: S4dInit,
    /// Smallest initial step Δ. Default: 0.001 (s4d.py `dt_min`, LRA configs).
    pub dt_min: f64,
    /// Largest initial step Δ. Default: 0.1 (s4d.py `dt_max`, LRA configs).
    pub dt_max: f64,
    /// Add a backward kernel (non-causal layer). Default: true (LRA configs `bidirectional: true`).
    pub bidirectional: bool,
    /// Output linear to 2H followed by GLU (else a plain H → H linear). Default: true (s4d.py and
    /// the LRA configs `final_act: glu`).
    pub glu: bool,
}

impl Default for S4dConfig {
    fn default() -> Self {
        Self {
            d_state: 64,
            init: S4dInit::Lin,
            dt_min: 1e-3,
            dt_max: 1e-1,
            bidirectional: true,
            glu: true,
        }
    }
}

impl MixerSpec for S4dConfig {
    type Mixer = S4d;
    const SUMMARY: &'static str =
        "S4D: diagonal state space layer (S4D-Lin/Inv, ZOH), Vandermonde kernel, FFT convolution";

    fn caps(&self) -> Caps {
        Caps::WITHOUT_CORE
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        validate_ssm(self.d_state, self.dt_min, self.dt_max)
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> S4d {
        let channels = dims.d_model;
        let half = self.d_state / 2;
        let directions = 1 + usize::from(self.bidirectional);
        let imag: Vec<f32> = (0..channels)
            .flat_map(|_| (0..half).map(|n| imag_init(self.init, self.d_state, n) as f32))
            .collect();
        let c_std = 0.5f64.sqrt(); // complex N(0, 1): each part has variance ½ (torch.randn cfloat)
        let c = || Distribution::Normal(0.0, c_std);
        S4d {
            log_dt: Param::from_tensor(log_dt_init(channels, self.dt_min, self.dt_max, device)),
            log_a_real: Param::from_tensor(Tensor::full([channels, half], 0.5f32.ln(), device)),
            a_imag: Param::from_tensor(Tensor::from_data(
                TensorData::new(imag, [channels, half]),
                device,
            )),
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
            glu: self.glu,
        }
    }
}

/// Imaginary part of `A_n`, n < N/2 (`d_state` = N).
fn imag_init(init: S4dInit, d_state: usize, n: usize) -> f64 {
    match init {
        S4dInit::Lin => PI * n as f64,
        S4dInit::Inv => {
            let big_n = d_state as f64;
            big_n / PI * (big_n / (2 * n + 1) as f64 - 1.0)
        }
    }
}

/// S4D layer: diagonal SSM convolution + D skip, GELU, dropout, output linear (GLU).
#[derive(Module, Debug)]
pub struct S4d {
    /// `log Δ` per channel `[H]`.
    log_dt: Param<Tensor<1>>,
    /// `log(−Re A)` `[H, N/2]`, so that Re A stays negative.
    log_a_real: Param<Tensor<2>>,
    /// `Im A` `[H, N/2]`.
    a_imag: Param<Tensor<2>>,
    /// C (B folded in), one per direction `[dirs, H, N/2]`.
    c_re: Param<Tensor<3>>,
    c_im: Param<Tensor<3>>,
    /// Skip connection D `[H]`.
    d_skip: Param<Tensor<1>>,
    output: Linear,
    dropout: Dropout,
    glu: bool,
}

impl S4d {
    /// Convolution kernels `[dirs, H, len]`: `K_ℓ = 2·Re Σ_n C_n (exp(ΔA_n) − 1)/A_n · exp(ΔA_n ℓ)`.
    pub fn kernel(&self, len: usize) -> Tensor<3> {
        let device = self.log_dt.device();
        let dt = self.log_dt.val().exp().unsqueeze_dim::<2>(1); // [H, 1]
        let a_re = -self.log_a_real.val().exp(); // [H, N/2]
        let a_im = self.a_imag.val();
        let (dta_re, dta_im) = (a_re.clone() * dt.clone(), a_im.clone() * dt); // [H, N/2]
        // (exp(ΔA) − 1) / A
        let growth = dta_re.clone().exp();
        let num_re = growth.clone() * dta_im.clone().cos() - 1.0;
        let num_im = growth * dta_im.clone().sin();
        let norm = a_re.clone().powi_scalar(2) + a_im.clone().powi_scalar(2);
        let b_re = (num_re.clone() * a_re.clone() + num_im.clone() * a_im.clone()) / norm.clone();
        let b_im = (num_im * a_re - num_re * a_im) / norm;
        // C·B̄ per direction [dirs, H, N/2]
        let (c_re, c_im) = (self.c_re.val(), self.c_im.val());
        let (b_re, b_im) = (b_re.unsqueeze_dim::<3>(0), b_im.unsqueeze_dim::<3>(0));
        let cb_re = c_re.clone() * b_re.clone() - c_im.clone() * b_im.clone();
        let cb_im = c_re * b_im + c_im * b_re;
        // Vandermonde exp(ΔA·ℓ) [H, N/2, len]
        let steps = Tensor::<1, Int>::arange(0..len as i64, &device)
            .float()
            .reshape([1, 1, len]);
        let magnitude = (dta_re.unsqueeze_dim::<3>(2) * steps.clone()).exp();
        let phase = dta_im.unsqueeze_dim::<3>(2) * steps;
        let v_re = magnitude.clone() * phase.clone().cos();
        let v_im = magnitude * phase.sin();
        // 2·Re(C B̄ · V): [H, dirs, N/2] @ [H, N/2, len]
        let kernel = cb_re.swap_dims(0, 1).matmul(v_re) - cb_im.swap_dims(0, 1).matmul(v_im);
        kernel.swap_dims(0, 1) * 2.0
    }
}

impl TokenMixer for S4d {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let u = zero_padding(input.x, input.pad_mask.as_ref()); // [b, n, H]
        let seq = u.dims()[1];
        let y =
            sequence_conv(u.clone(), self.kernel(seq)) + u * self.d_skip.val().reshape([1, 1, -1]);
        MixerOutput {
            x: output_layer(y, &self.dropout, &self.output, self.glu),
            carry: input.carry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::folded_linear::FoldedLinear;
    use crate::mixer::common::testing::values;
    use burn::tensor::activation::gelu;

    fn dims(d_model: usize) -> MixerDims {
        MixerDims::new(d_model, 1, 64)
    }

    /// Runs `x_{k+1} = Ā x_k + B̄ u_k`, `y_k = 2·Re(C x_k)` with a unit impulse at k = 0, in f64,
    /// with the ZOH matrices computed from A and Δ directly.
    fn impulse_response(mixer: &S4d, len: usize) -> Vec<f64> {
        let [directions, channels, half] = mixer.c_re.dims();
        let dt = values(mixer.log_dt.val().exp());
        let a_re = values(-mixer.log_a_real.val().exp());
        let a_im = values(mixer.a_imag.val());
        let (c_re, c_im) = (values(mixer.c_re.val()), values(mixer.c_im.val()));
        let mut kernel = vec![0.0; directions * channels * len];
        for dir in 0..directions {
            for h in 0..channels {
                for n in 0..half {
                    let (ar, ai) = (a_re[h * half + n], a_im[h * half + n]);
                    // Ā = exp(ΔA), B̄ = A⁻¹(Ā − 1)
                    let mag = (dt[h] * ar).exp();
                    let (abar_re, abar_im) = (mag * (dt[h] * ai).cos(), mag * (dt[h] * ai).sin());
                    let denom = ar * ar + ai * ai;
                    let (nr, ni) = (abar_re - 1.0, abar_im);
                    let (mut x_re, mut x_im) =
                        ((nr * ar + ni * ai) / denom, (ni * ar - nr * ai) / denom);
                    let c = (dir * channels + h) * half + n;
                    for step in 0..len {
                        kernel[(dir * channels + h) * len + step] +=
                            2.0 * (c_re[c] * x_re - c_im[c] * x_im);
                        (x_re, x_im) = (
                            abar_re * x_re - abar_im * x_im,
                            abar_re * x_im + abar_im * x_re,
                        );
                    }
                }
            }
        }
        kernel
    }

    #[test]
    fn kernel_equals_the_unrolled_zoh_recurrence() {
        let device = Device::flex();
        for init in [S4dInit::Lin, S4dInit::Inv] {
            device.seed(3);
            let config = S4dConfig {
                d_state: 8,
                init,
                ..S4dConfig::default()
            };
            let mixer = config.init(&dims(4), &device);
            let len = 64;
            let actual = values(mixer.kernel(len));
            let expected = impulse_response(&mixer, len);
            let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let error = actual
                .iter()
                .zip(&expected)
                .fold(0.0f64, |m, (a, e)| m.max((a - e).abs()));
            assert!(
                error <= 1e-4 * scale,
                "{init:?}: max error {error} (scale {scale})"
            );
        }
    }

    #[test]
    fn initialisation_follows_s4d_lin_and_inv() {
        let device = Device::flex();
        let lin = S4dConfig::default().init(&dims(4), &device);
        let imag = values(lin.a_imag.val());
        assert!((imag[3] - 3.0 * PI).abs() < 1e-5, "S4D-Lin: Im A_3 = 3π");
        let real = values(-lin.log_a_real.val().exp());
        assert!(real.iter().all(|r| (r + 0.5).abs() < 1e-6), "Re A = −½");
        let dt = values(lin.log_dt.val().exp());
        assert!(
            dt.iter().all(|d| (1e-3..=1e-1).contains(d)),
            "Δ in [dt_min, dt_max]"
        );
        let inv = S4dConfig {
            d_state: 8,
            init: S4dInit::Inv,
            ..S4dConfig::default()
        }
        .init(&dims(4), &device);
        // N/π·(N/(2n+1) − 1) at N = 8, n = 1
        let expected = 8.0 / PI * (8.0 / 3.0 - 1.0);
        assert!((values(inv.a_imag.val())[1] - expected).abs() < 1e-5);
    }

    #[test]
    fn forward_without_glu_is_gelu_of_convolution_plus_skip() {
        let device = Device::flex();
        let config = S4dConfig {
            d_state: 4,
            glu: false,
            bidirectional: false,
            ..S4dConfig::default()
        };
        let mixer = config.init(&dims(2), &device);
        let x =
            crate::mixer::common::testing::gaussian(&device, 5, [1, 1, 16, 2]).reshape([1, 16, 2]);
        let kernel = values(mixer.kernel(16));
        let d = values(mixer.d_skip.val());
        let u = values(x.clone());
        let mut conv = vec![0.0f32; 32];
        for t in 0..16 {
            for h in 0..2 {
                let causal: f64 = (0..=t).map(|s| kernel[h * 16 + t - s] * u[s * 2 + h]).sum();
                conv[t * 2 + h] = (causal + d[h] * u[t * 2 + h]) as f32;
            }
        }
        let conv = Tensor::<3>::from_data(TensorData::new(conv, [1, 16, 2]), &device);
        let expected = mixer.output.forward_folded(gelu(conv));
        mixer
            .forward(MixerInput::new(x))
            .x
            .into_data()
            .assert_approx_eq::<f32>(
                &expected.into_data(),
                burn::tensor::Tolerance::absolute(1e-4),
            );
    }

    #[test]
    fn bad_settings_are_rejected() {
        let odd = S4dConfig {
            d_state: 5,
            ..S4dConfig::default()
        };
        assert!(odd.validate(&dims(4)).unwrap_err().contains("d_state"));
        let inverted = S4dConfig {
            dt_min: 0.2,
            ..S4dConfig::default()
        };
        assert!(inverted.validate(&dims(4)).unwrap_err().contains("dt_min"));
    }
}
