//! SOFT: softmax-free attention ([SOFT: Softmax-free Transformer with Linear
//! Complexity](https://arxiv.org/abs/2110.11945), Lu, Yao, Zhang, Zhu, Xu, Gao, Xiang, Zhang,
//! NeurIPS 2021). The softmax is replaced by a Gaussian kernel on *tied* queries and keys
//! (`K = Q`), which makes the attention matrix symmetric positive semi-definite, and that matrix is
//! approximated by Nyström through `c` landmarks:
//!
//! ```text
//! q̂ᵢ  = qᵢ / d^{1/4}                             (so ‖q̂ᵢ − q̂ⱼ‖²/2 = ‖qᵢ − qⱼ‖²/(2√d))
//! S   = [exp(−‖q̂ᵢ − q̂ⱼ‖²/2)]ᵢⱼ                     the exact n×n kernel, never formed
//! q̃   = GELU(LN(Conv_r(q̂)))                        c = ⌈n/r⌉ landmarks, stride = kernel = r
//! K₁  = [exp(−‖q̂ᵢ − q̃ₗ‖²/2)]  (n×c),  K₂ = [exp(−‖q̃ₗ − q̃ₘ‖²/2)]  (c×c)
//! out = K₁ · NS(K₂ + λI) · (K₁ᵀ V)  [+ DWConv_k(V)]      ≈ S V, no row normalisation
//! ```
//!
//! `NS` is the Newton–Schulz iteration for the inverse, as `SOFT/kernel/inverse.py::newton_inv`:
//! `P = K₂ + 0.01·I`, `V₀ = α·P` with `α = 0.9·2 / max_rowsum(K₂)²` per matrix, then 20 steps
//! `V ← 2V − V·P·V`, run without gradient; the backward treats the result as the exact inverse
//! of `P`, `∂L/∂P = −Vᵀ·(∂L/∂V)·Vᵀ` (`_NewtonInverseKernel.backward`). Here that gradient comes
//! from a linear surrogate `V − V·(P − stopgrad P)·V`, whose value is `V` and whose derivative is
//! `−V·dP·V`.
//!
//! Official code checked: fudan-zvg/SOFT at commit `d3febc3`, `models/softmax_free_transformer.py`
//! (`SoftmaxFreeAttentionKernel`, `SoftmaxFreeAttention`, `SoftmaxFreeTransformerBlock`),
//! `SOFT/kernel/inverse.py` and `config/SOFT_*.yaml`; and the 1-D LRA port of the same class in
//! mlpen/mra-attention at commit `7e08afe`, `old_code/LRA/encoders/soft.py` with
//! `old_code/LRA/models/soft/{64,64-conv}/config.json`.
//!
//! Complexity per head: O(n·c·d + c³·iters) time, O(n·c + c²) memory (c = `num_landmarks`).
//!
//! Projections: only Q, V and the output (`W_q`, `W_v`, `ff` in the official code): K is Q. This
//! mixer therefore builds its own projections instead of the shared `MultiHeadProjection` (whose
//! K projection would get no gradient), and is not an `AttentionCore`: `attend(q, k, v)` would
//! have to ignore `k`, and SOFT approximates its own Gaussian kernel, not softmax attention.
//! [`SoftAttention::attend_tied`] is its core on projected heads.
//!
//! Deviations, and why:
//! - 1-D landmarks. The official model is 2-D (ImageNet): `Conv2d(head_dim, head_dim,
//!   kernel = stride = sr_ratio)` over the H×W token grid, shared by the heads. Sequences are 1-D,
//!   so the landmark op is the LRA port's `Conv1d(head_dim, head_dim, kernel = stride = r)`, with
//!   `r = ⌈max_len / num_landmarks⌉` (the port uses `⌊max_len / num_landmarks⌋`, which drops the
//!   tail when the division is not exact, e.g. 4000/64). Shorter inputs are zero-padded to a
//!   multiple of `r` and get `⌈n/r⌉` landmarks.
//! - Padding (the official ImageNet code has none): as in the LRA port, padded queries and values
//!   are zeroed before anything else, so the landmark windows see zeros there; in addition a
//!   landmark whose window holds only padding is dropped from the Nyström formula (its column of
//!   `K₁` is zeroed and its row and column of `K₂` replaced by the identity), so a padded sequence
//!   is approximated through landmarks of its real tokens only. Outputs at padded positions are
//!   arbitrary (finite).
//! - `landmarks = "mean"` (not in the official code) replaces the learned convolution by the mean
//!   of the real scaled queries of each window: parameter-free, and with `r = 1` the landmarks
//!   are the queries themselves, so SOFT becomes exact Gaussian-kernel attention. Used by the
//!   tests of the approximation.
//! - The depthwise skip convolution on V is 1-D, `(k, 1)` over the sequence with one kernel per
//!   head shared by the head's channels, as the LRA port's `Conv2d(h, h, (k, 1), groups = h)`.
//! - `regularization` and `newton_iters` are settings (official: fixed 0.01 and `max_iter`).
//! - No attention dropout (the official attention has none); the model's `dropout` is unused.
//! - Burn `Linear` initialisation for every projection and the landmark convolution
//!   (`U(±1/√fan_in)`, as PyTorch's default for `nn.Linear`/`nn.Conv1d`); the skip convolution is
//!   drawn from `U(±1/√k)` (PyTorch's default for a `(k, 1)` depthwise kernel).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Bool, Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::common::blocks::pad_tail;
use super::common::inverse::newton_inverse;
use super::common::projection::{merge_heads, split_heads};
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer};

use crate::folded_linear::FoldedLinear;
use crate::layer_norm::{DEFAULT_EPSILON, LayerNorm};
use crate::ops::gelu::gelu;

/// How the landmarks `q̃` are formed from the scaled queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftLandmarks {
    /// `GELU(LayerNorm(Conv(q̂)))` with a learned convolution of kernel = stride = `r`, shared by
    /// the heads (official `Qlandmark_op` + `Qnorm_act`).
    Conv,
    /// Mean of the real scaled queries of each window of `r` tokens (no parameters).
    Mean,
}

/// Settings of [`SoftAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoftConfig {
    /// Number of landmarks `c` at the model's `max_len`; the window (stride) is
    /// `r = ⌈max_len / c⌉` (so at most `max_len` landmarks, one per token). Default: 64, the LRA
    /// port's `num_landmarks` (mlpen/mra-attention
    /// `old_code/LRA/models/soft/{64,64-conv}/config.json`); the official ImageNet models use `sr_ratio` 8/4/2 on 56²/28²/14² grids, i.e. 49 landmarks per stage.
    pub num_landmarks: usize,
    /// How landmarks are formed. Default: `conv` (official `SoftmaxFreeAttentionKernel`).
    pub landmarks: SoftLandmarks,
    /// Newton–Schulz iterations for `(K₂ + λI)⁻¹`. Default: 20 (official `max_iter`,
    /// `newton_maxiter: 20` in `config/SOFT_*.yaml`).
    pub newton_iters: usize,
    /// Ridge `λ` added to `K₂` before inverting. Default: 0.01 (`SOFT/kernel/inverse.py`,
    /// `P = P + 0.01 * I`).
    pub regularization: f64,
    /// Width of the depthwise convolution on V added to the output; 0 disables it. Default: 3
    /// (official `SoftmaxFreeTransformerBlock(conv_size=3)`; the ImageNet stages use 9/5/3, the
    /// LRA port 0 or 33).
    pub conv_size: usize,
}

impl Default for SoftConfig {
    fn default() -> Self {
        Self {
            num_landmarks: 64,
            landmarks: SoftLandmarks::Conv,
            newton_iters: 20,
            regularization: 0.01,
            conv_size: 3,
        }
    }
}

impl SoftConfig {
    /// Window (stride) of the landmark op for sequences up to `max_len`.
    fn stride(&self, max_len: usize) -> usize {
        max_len.div_ceil(self.num_landmarks).max(1)
    }
}

impl MixerSpec for SoftConfig {
    type Mixer = SoftAttention;
    const SUMMARY: &'static str =
        "SOFT: Gaussian-kernel attention with tied Q=K, Nyström landmarks, Newton inverse";

    fn caps(&self) -> Caps {
        Caps::WITHOUT_CORE
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        if self.num_landmarks == 0 {
            return Err("num_landmarks must be at least 1 (LRA port: 64)".into());
        }
        if self.newton_iters == 0 {
            return Err("newton_iters must be at least 1 (official: 20)".into());
        }
        if !(self.regularization >= 0.0 && self.regularization.is_finite()) {
            return Err(format!(
                "regularization = {} must be a finite number ≥ 0 (official: 0.01)",
                self.regularization
            ));
        }
        if self.conv_size > 0 && self.conv_size.is_multiple_of(2) {
            return Err(format!(
                "conv_size = {} must be odd (same-length output) or 0 to disable the skip \
                 convolution",
                self.conv_size
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> SoftAttention {
        let d_model = dims.d_model;
        let head_dim = dims.head_dim();
        let stride = self.stride(dims.max_len);
        let linear = || LinearConfig::new(d_model, d_model).init(device);
        let landmark = match self.landmarks {
            SoftLandmarks::Conv => Some(LandmarkConv {
                conv: LinearConfig::new(stride * head_dim, head_dim)
                    .with_bias(false)
                    .init(device),
                norm: LayerNorm::new(head_dim, DEFAULT_EPSILON, device),
            }),
            SoftLandmarks::Mean => None,
        };
        let skip = (self.conv_size > 0).then(|| {
            let bound = 1.0 / (self.conv_size as f64).sqrt();
            Param::from_tensor(Tensor::random(
                [dims.n_heads, self.conv_size],
                Distribution::Uniform(-bound, bound),
                device,
            ))
        });
        SoftAttention {
            query: linear(),
            value: linear(),
            output: linear(),
            landmark,
            skip,
            n_heads: dims.n_heads,
            stride,
            newton_iters: self.newton_iters,
            regularization: self.regularization,
        }
    }
}

/// Multi-head SOFT attention.
#[derive(Module, Debug)]
pub struct SoftAttention {
    query: Linear,
    value: Linear,
    output: Linear,
    /// The learned landmark op (`landmarks = "conv"`); `None` for window means.
    landmark: Option<LandmarkConv>,
    /// Depthwise skip convolution on V, `[heads, conv_size]`.
    skip: Option<Param<Tensor<2>>>,
    n_heads: usize,
    /// Landmark window `r`.
    stride: usize,
    newton_iters: usize,
    regularization: f64,
}

/// `GELU(LN(Conv1d(d → d, kernel = stride = r, no bias)))`; the convolution is a linear map of
/// each flattened `[r, d]` window.
#[derive(Module, Debug)]
struct LandmarkConv {
    conv: Linear,
    norm: LayerNorm,
}

impl SoftAttention {
    /// SOFT on projected, head-split queries and values (keys are the queries).
    ///
    /// # Shapes
    /// - `q`, `v`: `[batch, heads, seq, head_dim]`; `pad_mask`: `[batch, seq]`, `true` = padding
    /// - output: `[batch, heads, seq, head_dim]`
    pub fn attend_tied(
        &self,
        q: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = q.dims();
        let device = q.device();
        let real = match pad_mask {
            Some(mask) => mask.bool_not().float(),
            None => Tensor::ones([batch, seq], &device),
        }; // [b, n], 1 = real token
        let real4 = real.clone().reshape([batch, 1, seq, 1]);
        let q = q * real4.clone() / (head_dim as f64).sqrt().sqrt();
        let v = v * real4;

        // Landmarks over windows of `r` tokens (zero-padded to a whole number of windows).
        let r = self.stride;
        let windows = seq.div_ceil(r);
        let padded = windows * r;
        let q_windows =
            pad_tail(q.clone(), padded, 0.0).reshape([batch, heads, windows, r, head_dim]);
        let real_windows = pad_tail(real.reshape([batch, 1, seq, 1]), padded, 0.0)
            .reshape([batch, 1, windows, r, 1])
            .sum_dim(3)
            .reshape([batch, 1, windows, 1]); // real tokens per window
        let landmarks = match &self.landmark {
            Some(op) => {
                let flat = q_windows.reshape([batch, heads, windows, r * head_dim]);
                gelu(op.norm.forward(op.conv.forward_folded(flat)))
            }
            None => {
                q_windows
                    .sum_dim(3)
                    .reshape([batch, heads, windows, head_dim])
                    / real_windows.clone().clamp_min(1.0)
            }
        }; // [b, h, c, d]
        let keep = real_windows.greater_elem(0.0).float(); // [b, 1, c, 1], 0 = only padding

        // [b, h, n, c]; columns of padding-only landmarks are zero.
        let kernel_1 = gaussian_kernel(q, landmarks.clone()) * keep.clone().swap_dims(2, 3);
        let kernel_2 = gaussian_kernel(landmarks.clone(), landmarks); // [b, h, c, c]
        let eye = Tensor::<2>::eye(windows, &device).reshape([1, 1, windows, windows]);
        let kernel_2 =
            kernel_2 * keep.clone().matmul(keep.clone().swap_dims(2, 3)) + eye * (keep.neg() + 1.0);
        let inverse = newton_inverse(kernel_2, self.newton_iters, self.regularization);
        let context = kernel_1.clone().matmul(
            inverse.matmul(kernel_1.swap_dims(2, 3).matmul(v.clone())), // [b, h, c, d]
        );
        match &self.skip {
            Some(weight) => context + depthwise_conv(v, weight.val()),
            None => context,
        }
    }
}

impl TokenMixer for SoftAttention {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let MixerInput { x, pad_mask, carry } = input;
        let q = split_heads(self.query.forward_folded(x.clone()), self.n_heads);
        let v = split_heads(self.value.forward_folded(x), self.n_heads);
        let context = self.attend_tied(q, v, pad_mask);
        MixerOutput {
            x: self.output.forward_folded(merge_heads(context)),
            carry,
        }
    }
}

/// `exp(−‖aᵢ − bⱼ‖²/2)` for `a`: `[.., n, d]`, `b`: `[.., m, d]` → `[.., n, m]`, with the squared
/// distance expanded as `‖a‖² + ‖b‖² − 2a·b` (official `subtraction_gaussian_kernel_torch`).
pub fn gaussian_kernel(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    let a2 = a.clone().square().sum_dim(3); // [.., n, 1]
    let b2 = b.clone().square().sum_dim(3).swap_dims(2, 3); // [.., 1, m]
    let dist = (a2 + b2 - a.matmul(b.swap_dims(2, 3)) * 2.0).clamp_min(0.0);
    (dist * -0.5).exp()
}

/// Same-length depthwise convolution along the sequence: `out[.., h, i, :] =
/// Σₜ w[h, t]·v[.., h, i + t − k/2, :]`, zero outside the sequence (PyTorch's cross-correlation).
fn depthwise_conv(v: Tensor<4>, weight: Tensor<2>) -> Tensor<4> {
    let [batch, heads, seq, head_dim] = v.dims();
    let width = weight.dims()[1];
    let half = width / 2;
    let zeros = Tensor::<4>::zeros([batch, heads, half, head_dim], &v.device());
    let padded = Tensor::cat(vec![zeros.clone(), v, zeros], 2);
    (0..width)
        .map(|t| {
            let tap = weight.clone().narrow(1, t, 1).reshape([1, heads, 1, 1]);
            padded.clone().narrow(2, t, seq) * tap
        })
        .reduce(|a, b| a + b)
        .expect("conv_size ≥ 1")
}

#[cfg(test)]
mod tests {
    use burn::module::ModuleVisitor;
    use burn::optim::GradientsParams;
    use burn::tensor::{TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::reference::relative_error;
    use crate::mixer::common::testing::{normal, padded_from};

    const HEADS: usize = 2;

    fn soft(config: SoftConfig, head_dim: usize, max_len: usize, device: &Device) -> SoftAttention {
        let dims = MixerDims::new(HEADS * head_dim, HEADS, max_len);
        config.validate(&dims).unwrap();
        device.seed(1);
        crate::init_now(config.init(&dims, device))
    }

    /// The exact kernel SOFT approximates, unnormalised as in the official code:
    /// `Σⱼ exp(−‖qᵢ − qⱼ‖²/(2√d)) vⱼ` over real keys `j`.
    fn exact_gaussian_attention(
        q: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, _, seq, head_dim] = q.dims();
        let q = q / (head_dim as f64).sqrt().sqrt();
        let mut kernel = gaussian_kernel(q.clone(), q);
        if let Some(mask) = pad_mask {
            kernel = kernel * mask.bool_not().float().reshape([batch, 1, 1, seq]);
        }
        kernel.matmul(v)
    }

    fn mean_landmarks(
        num_landmarks: usize,
        newton_iters: usize,
        regularization: f64,
    ) -> SoftConfig {
        SoftConfig {
            num_landmarks,
            landmarks: SoftLandmarks::Mean,
            newton_iters,
            regularization,
            conv_size: 0,
        }
    }

    #[test]
    fn newton_inverse_inverts_and_has_the_gradient_of_the_inverse() {
        let device = Device::flex().autodiff();
        let points = normal(&device, 3, [1, 2, 12, 4], 1.0);
        let p = gaussian_kernel(points.clone(), points).require_grad(); // SPD, well conditioned
        let inverse = newton_inverse(p.clone(), 30, 0.0);
        let eye = Tensor::<2>::eye(12, &device).reshape([1, 1, 12, 12]);
        inverse
            .clone()
            .matmul(p.clone().detach())
            .to_data()
            .assert_approx_eq::<f32>(
                &eye.expand([1, 2, 12, 12]).to_data(),
                Tolerance::absolute(1e-4),
            );
        // d/dP Σ W ⊙ P⁻¹ = −P⁻ᵀ W P⁻ᵀ.
        let w = normal(&device, 4, [1, 2, 12, 12], 1.0);
        let grads = (inverse.clone() * w.clone()).sum().backward();
        let grad = p.grad(&grads).unwrap();
        let inv_t = inverse.detach().swap_dims(2, 3);
        let expected = inv_t.clone().matmul(w).matmul(inv_t).neg();
        grad.to_data()
            .assert_approx_eq::<f32>(&expected.inner().to_data(), Tolerance::absolute(1e-3));
        // The ridge: the result inverts P + λI.
        let p = p.detach();
        let ridge = newton_inverse(p.clone(), 30, 0.5);
        let shifted = p + Tensor::<2>::eye(12, &device).reshape([1, 1, 12, 12]) * 0.5;
        ridge.matmul(shifted).to_data().assert_approx_eq::<f32>(
            &Tensor::<2>::eye(12, &device)
                .reshape([1, 1, 12, 12])
                .expand([1, 2, 12, 12])
                .to_data(),
            Tolerance::absolute(1e-4),
        );
    }

    #[test]
    fn one_landmark_per_token_is_exact_gaussian_kernel_attention() {
        let device = Device::flex();
        let (seq, head_dim, real) = (48, 8, 31);
        let mixer = soft(mean_landmarks(seq, 60, 0.0), head_dim, seq, &device);
        let q = normal(&device, 5, [2, HEADS, seq, head_dim], 1.0);
        let v = normal(&device, 6, [2, HEADS, seq, head_dim], 1.0);
        let pad = padded_from(&[seq, real], seq, &device);
        let actual = mixer.attend_tied(q.clone(), v.clone(), Some(pad.clone()));
        let expected = exact_gaussian_attention(q, v, Some(pad));
        // Real positions only: padded queries' outputs are arbitrary.
        for (row, len) in [(0, seq), (1, real)] {
            let real_part = |x: Tensor<4>| x.narrow(0, row, 1).narrow(2, 0, len);
            real_part(actual.clone()).to_data().assert_approx_eq::<f32>(
                &real_part(expected.clone()).to_data(),
                Tolerance::absolute(1e-4),
            );
        }
    }

    /// Mean relative error over seeds against the exact Gaussian-kernel attention.
    fn mean_error(config: SoftConfig, seq: usize, head_dim: usize, scale: f64, seeds: u64) -> f32 {
        let device = Device::flex();
        let mixer = soft(config, head_dim, seq, &device);
        let total: f32 = (0..seeds)
            .map(|seed| {
                let q = normal(&device, 100 + seed, [1, HEADS, seq, head_dim], scale);
                let v = normal(&device, 200 + seed, [1, HEADS, seq, head_dim], 1.0);
                let approx = mixer.attend_tied(q.clone(), v.clone(), None);
                relative_error(approx, exact_gaussian_attention(q, v, None))
            })
            .sum();
        total / seeds as f32
    }

    #[test]
    fn error_against_the_exact_gaussian_kernel_falls_with_more_landmarks() {
        let (seq, head_dim) = (256, 16);
        // q ~ N(0, 0.5²): with d = 16 the kernel between two queries is ≈ e^{-1}, a smooth
        // kernel a few landmarks can represent. With q ~ N(0, 1) it is ≈ e^{-4} off the
        // diagonal, nearly the identity, and the error stays high until c ≈ n (0.75 at c = 8,
        // 0.52 at c = 128, 0.007 at c = 256; measured with this test's seeds).
        let errors: Vec<f32> = [8, 32, 128]
            .into_iter()
            .map(|c| mean_error(mean_landmarks(c, 20, 0.01), seq, head_dim, 0.5, 4))
            .collect();
        println!("SOFT (mean landmarks) relative error at c = 8, 32, 128: {errors:?}");
        assert!(errors[1] < errors[0] && errors[2] < errors[1], "{errors:?}");
        assert!(errors[2] < 0.5 * errors[0], "{errors:?}");
    }

    #[test]
    fn padding_is_the_same_as_a_shorter_sequence() {
        let device = Device::flex();
        let (seq, head_dim, real) = (40, 8, 24); // stride 4: 6 real windows, 4 padded ones
        for landmarks in [SoftLandmarks::Conv, SoftLandmarks::Mean] {
            let config = SoftConfig {
                num_landmarks: 10,
                landmarks,
                ..SoftConfig::default()
            };
            let mixer = soft(config, head_dim, seq, &device);
            let q = normal(&device, 7, [1, HEADS, seq, head_dim], 1.0);
            let v = normal(&device, 8, [1, HEADS, seq, head_dim], 1.0);
            let garbage = normal(&device, 9, [1, HEADS, seq, head_dim], 100.0);
            let pad = padded_from(&[real], seq, &device);
            let pad4 = pad
                .clone()
                .reshape([1, 1, seq, 1])
                .expand([1, HEADS, seq, head_dim]);
            let padded = mixer.attend_tied(
                q.clone().mask_where(pad4.clone(), garbage.clone()),
                v.clone().mask_where(pad4, garbage),
                Some(pad),
            );
            let short = mixer.attend_tied(q.narrow(2, 0, real), v.narrow(2, 0, real), None);
            padded
                .narrow(2, 0, real)
                .to_data()
                .assert_approx_eq::<f32>(&short.to_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn skip_convolution_is_a_same_length_depthwise_convolution() {
        let device = Device::flex();
        let (seq, head_dim, width) = (9, 3, 5);
        let v = normal(&device, 10, [2, HEADS, seq, head_dim], 1.0);
        device.seed(11);
        let weight = Tensor::<2>::random([HEADS, width], Distribution::Normal(0.0, 1.0), &device);
        let actual = depthwise_conv(v.clone(), weight.clone());
        let v_data = v.to_data().try_into_vec::<f32>().unwrap();
        let w_data = weight.to_data().try_into_vec::<f32>().unwrap();
        let mut expected = vec![0f32; v_data.len()];
        for b in 0..2 {
            for h in 0..HEADS {
                for i in 0..seq {
                    for c in 0..head_dim {
                        let mut sum = 0.0;
                        for t in 0..width {
                            let j = i as isize + t as isize - (width / 2) as isize;
                            if (0..seq as isize).contains(&j) {
                                let at = ((b * HEADS + h) * seq + j as usize) * head_dim + c;
                                sum += w_data[h * width + t] * v_data[at];
                            }
                        }
                        expected[((b * HEADS + h) * seq + i) * head_dim + c] = sum;
                    }
                }
            }
        }
        actual.to_data().assert_approx_eq::<f32>(
            &TensorData::new(expected, [2, HEADS, seq, head_dim]),
            Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn keys_are_the_queries_and_every_parameter_is_trained() {
        let device = Device::flex().autodiff();
        let dims = MixerDims::new(8, HEADS, 16);
        device.seed(1);
        let mixer = crate::init_now(SoftConfig::default().init(&dims, &device));
        device.seed(2);
        let x = Tensor::<3>::random([2, 16, 8], Distribution::Normal(0.0, 1.0), &device);
        let pad = padded_from(&[16, 11], 16, &device);
        let out = mixer.forward(MixerInput::new(x).pad_mask(pad)).x;
        let grads = (out.clone() * out).sum().backward();
        let params = GradientsParams::from_grads(grads, &mixer);
        let mut count = Count(0);
        mixer.visit(&mut count);
        // query, value, output (weight + bias each), landmark conv, layer norm (2), skip conv.
        assert_eq!(count.0, 10);
        assert_eq!(params.len(), count.0, "a parameter got no gradient");
    }

    struct Count(usize);

    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
            self.0 += 1;
        }
    }

    #[test]
    fn validation_names_the_field() {
        let dims = MixerDims::new(8, 2, 16);
        let check = |config: SoftConfig, field: &str| {
            let message = config.validate(&dims).unwrap_err();
            assert!(message.starts_with(field), "{message}");
        };
        check(
            SoftConfig {
                num_landmarks: 0,
                ..Default::default()
            },
            "num_landmarks",
        );
        // More landmarks than tokens: one landmark per token.
        let many = SoftConfig {
            num_landmarks: 17,
            ..Default::default()
        };
        assert!(many.validate(&dims).is_ok());
        assert_eq!(many.stride(dims.max_len), 1);
        check(
            SoftConfig {
                newton_iters: 0,
                ..Default::default()
            },
            "newton_iters",
        );
        check(
            SoftConfig {
                regularization: -1.0,
                ..Default::default()
            },
            "regularization",
        );
        check(
            SoftConfig {
                conv_size: 4,
                ..Default::default()
            },
            "conv_size",
        );
        assert!(
            SoftConfig {
                conv_size: 0,
                ..Default::default()
            }
            .validate(&dims)
            .is_ok()
        );
        let parsed: SoftConfig = toml::from_str("landmarks = \"mean\"").unwrap();
        assert_eq!(parsed.landmarks, SoftLandmarks::Mean);
        assert!(toml::from_str::<SoftConfig>("ratio = 4").is_err());
    }
}
