//! FEDformer's Frequency Enhanced Block with its mixture-of-experts seasonal-trend decomposition
//! as a token mixer ([FEDformer: Frequency Enhanced Decomposed Transformer for Long-term Series
//! Forecasting](https://arxiv.org/abs/2201.12740), Zhou, Ma, Wen, Wang, Sun, Jin, ICML 2022).
//!
//! Official code: MAZiqing/FEDformer `layers/FourierCorrelation.py` (`FourierBlock`,
//! `get_frequency_modes`), `layers/AutoCorrelation.py` (`AutoCorrelationLayer`: Q projection in,
//! output projection out; K and V are projected but the Fourier block ignores them) and
//! `layers/Autoformer_EncDec.py` (`moving_avg`, `series_decomp(_multi)`, `EncoderLayer`).
//!
//! FEB-f: `q = x W_q`, `Q = rfft(q)` along the sequence; `M` bins `I` chosen once at init
//! (`random`: a uniformly random subset of the bins below Nyquist, sorted; `low`: the lowest
//! `M`); per head `h` and selected bin `I_m`, `Y[I_m] = Q_h[I_m] · W[h, m]` with a complex
//! `E×E` matrix (`E = d / heads`); every other bin is zero; `y = irfft(Y) W_o`.
//!
//! Decomposition (MOEDecomp): `trend(v) = Σ_j softmax(v w + b)_j · AvgPool_{k_j}(v)`, each
//! moving average replicating the first and last token at the ends (window `[t - ⌈(k-1)/2⌉,
//! t + ⌊(k-1)/2⌋]`), the gate a `Linear(1 → #kernels)` applied to every scalar of `v`;
//! `seasonal = v - trend`. FEDformer's encoder layer is `x ← seasonal(x + FEB(x))` (the trend is
//! dropped). In this workspace's pre-LN block `x + mixer(LN(x))` the mixer returns
//! `FEB(u) - trend(u + FEB(u))` for its input `u`, so that with `u = x` the block's sum is
//! exactly FEDformer's `seasonal(x + FEB(x))`.
//!
//! Complexity: O(n log n · d) for the FFTs, O(M · d²/h) for the mode mixing, O(n · d · Σ k)
//! for the moving averages (O(n · d) each with a running sum; Burn's pooling is direct), plus
//! the two d×d projections. Parameters: 2·d² + 2d (projections) + 2·M·d²/h + 2·#kernels
//! (gate, only with two or more kernels).
//!
//! Deviations from the official code, and why:
//! - Output bins: `FourierBlock.forward` writes the mix of the `m`-th selected bin to output bin
//!   `m` (`out_ft[..., wi]`), so the selected frequencies come out shifted onto the lowest `M`
//!   bins. Here it is written back to its own bin `I_m`, as the paper defines FEB-f and as the
//!   official cross-attention block (`FourierCrossAttention`) does.
//! - Heads: the official weights hard-code 8 heads (`rand(8, in/8, out/8, M)`); here the
//!   model's `n_heads`. `AutoCorrelationLayer` merges the block's `[B, H, E, L]` output with
//!   `view(B, L, -1)`, which interleaves time steps and channels; here heads are transposed
//!   back before merging. The unused K/V projections are not built.
//! - Mode set: drawn from the Burn device RNG at init (the official code uses NumPy's global
//!   RNG) and stored in the module as an integer parameter, so checkpoints keep it. `modes`
//!   larger than the available bins is an error instead of a silent `min`.
//! - FFT grid: tokens zero-extended to `next_pow2(2·max_len)` points (Burn's FFT needs a power
//!   of two; the margin stops circular wrap-around of the end into the start, see
//!   [`spectral`](super::spectral)); the official code transforms the `L` steps as a periodic
//!   sequence. Modes are drawn from the `N / 2` bins below Nyquist of that grid.
//! - Padding: padded tokens are zeroed after the Q projection, and the moving averages treat
//!   the last real token as the sequence end (padded positions take its value, like the
//!   official replicate padding), so padded positions never reach real ones. Padding is
//!   assumed to follow the real tokens, as everywhere in this workspace.
//! - Only the mixer's decomposition: the FFN's decomposition in FEDformer's encoder layer
//!   belongs to the block, not to the token mixer, and is not reproduced.
//! - Not provided: the cross-attention blocks FEA-f / FEA-w (an encoder-only classifier has no
//!   cross attention).
//!
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

use burn::module::{Module, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::module::avg_pool1d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::signal::{irfft, rfft};
use burn::tensor::{Bool, Device, Distribution, IndexingUpdateOp, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::spectral::{self, Complex};
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer};

/// How the frequency bins of the Fourier block are chosen (`mode_select`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeSelect {
    /// A uniformly random subset of the bins below Nyquist, drawn once at init.
    Random,
    /// The lowest `modes` bins.
    Low,
}

/// Which frequency enhanced block (`version` in FEDformer's `run.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    /// FEB-f: Fourier modes (`--version Fourier`).
    Fourier,
    /// FEB-w: Legendre multiwavelets (`--version Wavelets`).
    Wavelet,
}

/// Settings of [`FedformerMixer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FedformerConfig {
    /// Frequency bins `M` the Fourier block keeps. Default: 64, FEDformer `run.py`
    /// (`--modes 64`).
    pub modes: usize,
    /// Which bins. Default: `random`, FEDformer `run.py` (`--mode_select random`).
    pub mode_select: ModeSelect,
    /// Moving-average window sizes of the decomposition experts; one window is a plain moving
    /// average (no gate), several are mixed by the learned gate, none turns the decomposition
    /// off. Default: `[24]`, FEDformer `run.py` (`--moving_avg [24]`).
    pub moving_avg: Vec<usize>,
    /// Fourier (FEB-f) or wavelet (FEB-w) block. Default: `fourier`, FEDformer `run.py`
    /// (`--version Fourier`). `modes`/`mode_select` apply to `fourier`, `wavelet_*` to `wavelet`.
    pub block: Block,
    /// Legendre order `k` of the multiwavelets. Default: 8, `MultiWaveletTransform(k=8)`.
    pub wavelet_k: usize,
    /// Fourier modes `alpha` of the kernels `A, B, C`. Default: 16,
    /// `MultiWaveletTransform(alpha=16)`.
    pub wavelet_alpha: usize,
    /// Channels `c` of `k` coefficients each (`Lk0: d → c·k`). Default: 128,
    /// `MultiWaveletTransform(c=128)`.
    pub wavelet_c: usize,
    /// Coarsest levels left undecomposed (`L`): `log2(grid) - L` levels. Default: 3, FEDformer
    /// `run.py` (`--L 3`; the layer's own default is 0).
    pub wavelet_l: usize,
}

impl Default for FedformerConfig {
    fn default() -> Self {
        Self {
            modes: 64,
            mode_select: ModeSelect::Random,
            moving_avg: vec![24],
            block: Block::Fourier,
            wavelet_k: 8,
            wavelet_alpha: 16,
            wavelet_c: 128,
            wavelet_l: 3,
        }
    }
}

impl MixerSpec for FedformerConfig {
    type Mixer = FedformerMixer;
    const SUMMARY: &'static str =
        "FEDformer: Fourier block on M random modes + mixture-of-experts trend removal";

    fn caps(&self) -> Caps {
        Caps {
            exact: false,
            pad_mask: true,
        }
    }

    fn validate(&self, dims: &MixerDims) -> Result<(), String> {
        let available = spectral::fft_len(dims.max_len) / 2;
        if self.block == Block::Wavelet {
            self.validate_wavelet(dims)?;
        } else if !(1..=available).contains(&self.modes) {
            return Err(format!(
                "modes = {} must be between 1 and {available}, the bins below Nyquist of the \
                 {}-point FFT used for max_len = {}",
                self.modes,
                spectral::fft_len(dims.max_len),
                dims.max_len
            ));
        }
        if self.moving_avg.contains(&0) {
            return Err(format!(
                "moving_avg = {:?}: every window size must be at least 1",
                self.moving_avg
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> FedformerMixer {
        let (d, heads) = (dims.d_model, dims.n_heads);
        let head_dim = d / heads;
        let fft_len = spectral::fft_len(dims.max_len);
        let linear = || LinearConfig::new(d, d).init(device);
        let decomposition = (!self.moving_avg.is_empty()).then(|| SeriesDecomposition {
            kernels: self.moving_avg.clone(),
            gate: (self.moving_avg.len() > 1)
                .then(|| LinearConfig::new(1, self.moving_avg.len()).init(device)),
        });
        if self.block == Block::Wavelet {
            return FedformerMixer {
                query: linear(),
                weight_re: None,
                weight_im: None,
                output: linear(),
                modes: None,
                wavelet: Some(self.init_wavelet(d, fft_len, device)),
                decomposition,
                fft_len,
            };
        }
        let modes = match self.mode_select {
            ModeSelect::Random => {
                let keys = Tensor::<1>::random([fft_len / 2], Distribution::Default, device);
                keys.argsort(0).narrow(0, 0, self.modes).sort(0)
            }
            ModeSelect::Low => Tensor::arange(0..self.modes as i64, device),
        };
        // `FourierBlock`: `scale · rand(..., cfloat)`, `scale = 1 / (in · out)`, in = out = d.
        let scale = 1.0 / (d * d) as f64;
        let draw = || {
            Param::from_tensor(Tensor::random(
                [heads, self.modes, head_dim, head_dim],
                Distribution::Uniform(0.0, scale),
                device,
            ))
        };
        FedformerMixer {
            query: linear(),
            weight_re: Some(draw()),
            weight_im: Some(draw()),
            output: linear(),
            modes: Some(Param::initialized(ParamId::new(), modes)),
            wavelet: None,
            decomposition,
            fft_len,
        }
    }
}

impl FedformerConfig {
    fn validate_wavelet(&self, dims: &MixerDims) -> Result<(), String> {
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

    fn init_wavelet(&self, d: usize, grid: usize, device: &Device) -> WaveletBlock {
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

/// FEDformer Fourier block (FEB-f) with the decomposition's trend removed.
#[derive(Module, Debug)]
pub struct FedformerMixer {
    query: Linear,
    /// Real parts of the per-head, per-mode matrices `[heads, modes, E, E]` (Fourier block).
    weight_re: Option<Param<Tensor<4>>>,
    /// Imaginary parts, same shape.
    weight_im: Option<Param<Tensor<4>>>,
    output: Linear,
    /// Selected bins `I`, sorted (an integer parameter: saved, never trained; Fourier block).
    modes: Option<Param<Tensor<1, Int>>>,
    /// The multiwavelet block, in place of the Fourier weights.
    wavelet: Option<WaveletBlock>,
    decomposition: Option<SeriesDecomposition>,
    /// FFT grid length, `next_pow2(2·max_len)`.
    fft_len: usize,
}

impl FedformerMixer {
    /// The output spectrum of the Fourier block: bin `I_m` holds `Q[I_m] · W[m]` per head,
    /// every other bin is zero.
    ///
    /// # Shapes
    /// - `q`: `[batch, seq, d]` (padding already zeroed) → `[batch, fft_len / 2 + 1, d]`
    fn mixed_spectrum(&self, q: Tensor<3>) -> Complex<3> {
        let [batch, _, d] = q.dims();
        let fourier = "Fourier block weights";
        let (weight_re, weight_im) = (
            self.weight_re.as_ref().expect(fourier),
            self.weight_im.as_ref().expect(fourier),
        );
        let [heads, modes, head_dim, _] = weight_re.dims();
        let bins = spectral::bins(self.fft_len);
        let index = self.modes.as_ref().expect(fourier).val();
        let selected = spectral::spectrum(q, self.fft_len).map_rank(|t| {
            t.select(1, index.clone())
                .reshape([batch, modes, heads, head_dim])
                .permute([2, 1, 0, 3]) // [h, M, b, E]
        });
        let weight = Complex {
            re: weight_re.val(),
            im: weight_im.val(),
        };
        let device = index.device();
        selected.matmul(weight).map_rank(|t| {
            let t = t.permute([2, 1, 0, 3]).reshape([batch, modes, d]);
            Tensor::zeros([batch, bins, d], &device).select_assign(
                1,
                index.clone(),
                t,
                IndexingUpdateOp::Add,
            )
        })
    }

    /// `FEB(u) = irfft(mixed_spectrum(u W_q)) W_o`.
    fn frequency_block(&self, u: Tensor<3>, pad_mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
        if let Some(wavelet) = &self.wavelet {
            let y = wavelet.forward(self.query.forward(u), pad_mask);
            return self.output.forward(y);
        }
        let seq = u.dims()[1];
        let q = spectral::zero_padding(self.query.forward(u), pad_mask);
        let y = spectral::tokens(self.mixed_spectrum(q), self.fft_len, seq);
        self.output.forward(y)
    }
}

impl TokenMixer for FedformerMixer {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let MixerInput { x, pad_mask, carry } = input;
        let feb = self.frequency_block(x.clone(), pad_mask.as_ref());
        let x = match &self.decomposition {
            Some(decomposition) => {
                let trend = decomposition.trend(x + feb.clone(), pad_mask.as_ref());
                feb - trend
            }
            None => feb,
        };
        MixerOutput { x, carry }
    }
}

/// FEDformer's `series_decomp_multi` (or `series_decomp` with one window).
#[derive(Module, Debug)]
struct SeriesDecomposition {
    /// Moving-average window sizes, one per expert.
    kernels: Vec<usize>,
    /// `Linear(1 → #kernels)` giving each scalar its expert weights; absent with one window
    /// (a softmax over one expert is 1).
    gate: Option<Linear>,
}

/// `seasonal + trend = v` (the official `series_decomp` output; the mixer needs only the trend).
#[cfg(test)]
struct Decomposition {
    seasonal: Tensor<3>,
    trend: Tensor<3>,
}

impl SeriesDecomposition {
    #[cfg(test)]
    fn decompose(&self, v: Tensor<3>, pad_mask: Option<&Tensor<2, Bool>>) -> Decomposition {
        let trend = self.trend(v.clone(), pad_mask);
        Decomposition {
            seasonal: v - trend.clone(),
            trend,
        }
    }

    /// # Shapes
    /// - `v`: `[batch, seq, d]`, `pad_mask`: `[batch, seq]` → `[batch, seq, d]`
    fn trend(&self, v: Tensor<3>, pad_mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
        let v = match pad_mask {
            Some(mask) => repeat_last_real_token(v, mask),
            None => v,
        };
        let averages: Vec<Tensor<3>> = self
            .kernels
            .iter()
            .map(|&k| moving_average(v.clone(), k))
            .collect();
        match &self.gate {
            None => averages.into_iter().next().expect("one window"),
            Some(gate) => {
                let weights = softmax(gate.forward(v.unsqueeze_dim::<4>(3)), 3); // [b, n, d, K]
                (Tensor::stack::<4>(averages, 3) * weights)
                    .sum_dim(3)
                    .squeeze_dim(3)
            }
        }
    }
}

/// Padded positions take the value of the last real token before them, so that the moving
/// averages near the end of a padded sequence replicate its last real token, as the official
/// code replicates the last step of an unpadded one.
fn repeat_last_real_token(v: Tensor<3>, pad_mask: &Tensor<2, Bool>) -> Tensor<3> {
    let [batch, seq, d] = v.dims();
    let positions = Tensor::<1, Int>::arange(0..seq as i64, &v.device())
        .reshape([1, seq])
        .expand([batch, seq]);
    let source = positions.mask_fill(pad_mask.clone(), 0).cummax(1); // [b, n]
    let source = source.reshape([batch, seq, 1]).expand([batch, seq, d]);
    v.gather(1, source)
}

/// `moving_avg`: mean over the window `[t - ⌈(k-1)/2⌉, t + ⌊(k-1)/2⌋]`, with the first and last
/// tokens repeated beyond the ends.
fn moving_average(v: Tensor<3>, kernel: usize) -> Tensor<3> {
    let seq = v.dims()[1];
    let (front, back) = (kernel - 1 - (kernel - 1) / 2, (kernel - 1) / 2);
    let mut parts = Vec::with_capacity(3);
    if front > 0 {
        parts.push(v.clone().narrow(1, 0, 1).repeat_dim(1, front));
    }
    parts.push(v.clone());
    if back > 0 {
        parts.push(v.narrow(1, seq - 1, 1).repeat_dim(1, back));
    }
    let extended = Tensor::cat(parts, 1).swap_dims(1, 2); // [b, d, n + k - 1]
    let options = AvgPoolOptions::new([kernel]).with_stride([1]);
    avg_pool1d(extended, options).swap_dims(1, 2)
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
struct WaveletBlock {
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
    fn forward(&self, q: Tensor<3>, pad_mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
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
        let v = spectral::zero_padding(self.lift.forward(q), pad_mask);
        let v = Tensor::cat(
            vec![v, Tensor::zeros([batch, self.grid - seq, c * k], &device)],
            1,
        );
        let y = self.transform(v.reshape([batch, self.grid, c, k]));
        self.project
            .forward(y.narrow(1, 0, seq).reshape([batch, seq, c * k]))
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
        let mut s = self.coarsest.forward(s);
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
    use burn::module::Module;
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::*;
    use crate::mixer::spectral::naive;
    use crate::mixer::testing::pad_mask;

    const D: usize = 8;
    const HEADS: usize = 2;

    fn dims(max_len: usize) -> MixerDims {
        MixerDims {
            d_model: D,
            n_heads: HEADS,
            max_len,
            dropout: 0.0,
        }
    }

    fn input(seed: u64, seq: usize, device: &Device) -> Tensor<3> {
        device.seed(seed);
        Tensor::random([2, seq, D], Distribution::Normal(0.0, 1.0), device)
    }

    fn config(modes: usize, moving_avg: Vec<usize>) -> FedformerConfig {
        FedformerConfig {
            modes,
            mode_select: ModeSelect::Random,
            moving_avg,
            ..FedformerConfig::default()
        }
    }

    fn wavelet_config(l: usize) -> FedformerConfig {
        FedformerConfig {
            block: Block::Wavelet,
            wavelet_k: 3,
            wavelet_alpha: 4,
            wavelet_c: 2,
            wavelet_l: l,
            moving_avg: vec![3, 5],
            ..FedformerConfig::default()
        }
    }

    fn selected(mixer: &FedformerMixer) -> Vec<i64> {
        let data = mixer
            .modes
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .convert::<i64>();
        data.try_to_vec().expect("integer indices")
    }

    fn decomposition(kernels: Vec<usize>, device: &Device) -> SeriesDecomposition {
        device.seed(9);
        config(1, kernels)
            .init(&dims(32), device)
            .decomposition
            .expect("decomposition")
    }

    /// Naive MOEDecomp trend of one `[seq][d]` sequence: clamped-index window means mixed by
    /// the softmax gate `(w_j · v + b_j)`.
    fn naive_trend(v: &[Vec<f64>], kernels: &[usize], gate: &[(f64, f64)]) -> Vec<Vec<f64>> {
        let seq = v.len() as i64;
        let mean = |t: i64, c: usize, k: usize| {
            let lo = t - (k as i64 - 1 - (k as i64 - 1) / 2);
            (lo..lo + k as i64)
                .map(|j| v[j.clamp(0, seq - 1) as usize][c])
                .sum::<f64>()
                / k as f64
        };
        (0..seq)
            .map(|t| {
                (0..v[0].len())
                    .map(|c| {
                        let x = v[t as usize][c];
                        let logits: Vec<f64> = gate.iter().map(|(w, b)| w * x + b).collect();
                        let total: f64 = logits.iter().map(|l| l.exp()).sum();
                        kernels
                            .iter()
                            .zip(&logits)
                            .map(|(&k, l)| l.exp() / total * mean(t, c, k))
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn decomposition_reconstructs_its_input() {
        let device = Device::flex();
        let seq = 20;
        let mask = pad_mask(&device, seq, 13);
        for kernels in [vec![5], vec![3, 8, 24]] {
            let parts = decomposition(kernels.clone(), &device)
                .decompose(input(1, seq, &device), Some(&mask));
            (parts.seasonal + parts.trend)
                .into_data()
                .assert_approx_eq::<f32>(
                    &input(1, seq, &device).into_data(),
                    Tolerance::absolute(1e-6),
                );
        }
    }

    #[test]
    fn trend_equals_the_naive_gated_moving_averages_with_replicated_ends() {
        let device = Device::flex();
        let seq = 11;
        for kernels in [vec![4], vec![1, 3, 8, 24]] {
            let decomposition = decomposition(kernels.clone(), &device);
            let gate: Vec<(f64, f64)> = match &decomposition.gate {
                Some(gate) => naive::values(gate.weight.val())
                    .into_iter()
                    .zip(naive::values(gate.bias.as_ref().unwrap().val()))
                    .collect(),
                None => vec![(0.0, 0.0)],
            };
            let x = input(2, seq, &device);
            let trend = naive::values(decomposition.trend(x.clone(), None));
            let xs = naive::values(x);
            for b in 0..2 {
                let rows: Vec<Vec<f64>> = xs[b * seq * D..(b + 1) * seq * D]
                    .chunks(D)
                    .map(<[f64]>::to_vec)
                    .collect();
                let expected = naive_trend(&rows, &kernels, &gate).concat();
                for (a, e) in trend[b * seq * D..(b + 1) * seq * D].iter().zip(&expected) {
                    assert!((a - e).abs() < 1e-5, "{kernels:?}: {a} vs {e}");
                }
            }
        }
    }

    #[test]
    fn a_constant_series_is_all_trend() {
        let device = Device::flex();
        let x = Tensor::<3>::ones([1, 9, D], &device) * 3.5;
        let parts = decomposition(vec![2, 7], &device).decompose(x.clone(), None);
        parts
            .trend
            .into_data()
            .assert_approx_eq::<f32>(&x.into_data(), Tolerance::absolute(1e-6));
        assert!(parts.seasonal.abs().max().into_scalar::<f32>() < 1e-6);
    }

    #[test]
    fn padded_trend_equals_the_trend_of_the_real_tokens_alone() {
        let device = Device::flex();
        let (seq, real) = (16, 10);
        let decomposition = decomposition(vec![3, 8], &device);
        let x = input(3, seq, &device);
        let padded = decomposition
            .trend(x.clone(), Some(&pad_mask(&device, seq, real)))
            .narrow(0, 1, 1)
            .narrow(1, 0, real);
        let alone = decomposition.trend(x.narrow(0, 1, 1).narrow(1, 0, real), None);
        padded
            .into_data()
            .assert_approx_eq::<f32>(&alone.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn each_selected_bin_is_mixed_and_written_back_to_itself() {
        let device = Device::flex();
        let seq = 12;
        device.seed(4);
        let mixer = config(5, vec![]).init(&dims(seq), &device);
        let n = mixer.fft_len;
        let modes = selected(&mixer);
        // Random selection: not simply the lowest bins (the official FEB-f's output bins).
        assert_ne!(modes, vec![0, 1, 2, 3, 4]);
        let q = input(5, seq, &device);
        let out = mixer.mixed_spectrum(q.clone());
        let (re, im) = (naive::values(out.re), naive::values(out.im));
        let (w_re, w_im) = (
            naive::values(mixer.weight_re.as_ref().unwrap().val()),
            naive::values(mixer.weight_im.as_ref().unwrap().val()),
        );
        let e = D / HEADS;
        let qs = naive::values(q);
        let bins = spectral::bins(n);
        for b in 0..2 {
            let rows: Vec<Vec<f64>> = qs[b * seq * D..(b + 1) * seq * D]
                .chunks(D)
                .map(<[f64]>::to_vec)
                .collect();
            let spectrum = naive::rfft(&rows, n);
            for (k, bin) in spectrum.iter().enumerate() {
                let expected: Vec<(f64, f64)> = match modes.iter().position(|&m| m as usize == k) {
                    Some(m) => (0..HEADS)
                        .flat_map(|h| {
                            let w: Vec<Vec<(f64, f64)>> = (0..e)
                                .map(|i| {
                                    (0..e)
                                        .map(|o| {
                                            let at = ((h * 5 + m) * e + i) * e + o;
                                            (w_re[at], w_im[at])
                                        })
                                        .collect()
                                })
                                .collect();
                            naive::vec_mat(&bin[h * e..(h + 1) * e], &w)
                        })
                        .collect(),
                    None => vec![(0.0, 0.0); D],
                };
                for (c, (er, ei)) in expected.into_iter().enumerate() {
                    let at = (b * bins + k) * D + c;
                    assert!(
                        (re[at] - er).abs() < 1e-6,
                        "re, bin {k}: {} vs {er}",
                        re[at]
                    );
                    assert!(
                        (im[at] - ei).abs() < 1e-6,
                        "im, bin {k}: {} vs {ei}",
                        im[at]
                    );
                }
            }
        }
    }

    #[test]
    fn with_the_residual_the_block_sum_is_the_seasonal_part() {
        // x + mixer(x) = seasonal(x + FEB(x)): FEDformer's `x, _ = decomp(x + FEB(x))`.
        let device = Device::flex();
        let seq = 14;
        let mixer = config(4, vec![3, 5]).init(&dims(seq), &device);
        let x = input(6, seq, &device);
        let mask = pad_mask(&device, seq, 9);
        let out = mixer
            .forward(MixerInput::new(x.clone()).pad_mask(mask.clone()))
            .x;
        let feb = mixer.frequency_block(x.clone(), Some(&mask));
        let parts = mixer
            .decomposition
            .as_ref()
            .unwrap()
            .decompose(x.clone() + feb, Some(&mask));
        (x + out)
            .into_data()
            .assert_approx_eq::<f32>(&parts.seasonal.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn modes_are_sorted_distinct_below_nyquist_and_follow_the_seed() {
        let device = Device::flex();
        let seq = 40; // fft_len 128: bins 0..64 below Nyquist
        let draw = |seed, select| {
            device.seed(seed);
            let config = FedformerConfig {
                mode_select: select,
                ..config(10, vec![24])
            };
            selected(&config.init(&dims(seq), &device))
        };
        let modes = draw(1, ModeSelect::Random);
        assert_eq!(modes.len(), 10);
        assert!(modes.windows(2).all(|w| w[0] < w[1]), "{modes:?}");
        assert!(modes.iter().all(|&m| (0..64).contains(&m)), "{modes:?}");
        assert_eq!(modes, draw(1, ModeSelect::Random));
        assert_ne!(modes, draw(2, ModeSelect::Random));
        assert_eq!(draw(1, ModeSelect::Low), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn modes_survive_a_checkpoint_file_round_trip() {
        let device = Device::flex();
        let seq = 40;
        device.seed(1);
        let saved = config(10, vec![3, 5]).init(&dims(seq), &device);
        device.seed(2);
        let fresh = config(10, vec![3, 5]).init(&dims(seq), &device);
        assert_ne!(selected(&saved), selected(&fresh));
        // Through a checkpoint file, as `lra run` saves and restores models.
        let path = std::env::temp_dir().join(format!("fedformer-modes-{}.bpk", std::process::id()));
        saved.clone().save_file(&path).expect("save");
        let loaded = fresh.try_load_file(&path).expect("load");
        assert_eq!(selected(&saved), selected(&loaded));
        let x = input(3, seq, &device);
        let run = |mixer: &FedformerMixer| mixer.forward(MixerInput::new(x.clone())).x.into_data();
        assert_eq!(run(&saved), run(&loaded), "same mixer after loading");
        drop(loaded); // its tensors read the file lazily
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn validation_names_the_field() {
        let dims = dims(40); // 64 bins below Nyquist
        for modes in [0, 65] {
            let error = config(modes, vec![24]).validate(&dims).unwrap_err();
            assert!(error.starts_with("modes = "), "{error}");
        }
        assert!(config(64, vec![]).validate(&dims).is_ok());
        let error = config(8, vec![3, 0]).validate(&dims).unwrap_err();
        assert!(error.starts_with("moving_avg"), "{error}");
        let parsed: FedformerConfig =
            toml::from_str("mode_select = \"low\"\nmoving_avg = [3, 9]").unwrap();
        assert_eq!(parsed.mode_select, ModeSelect::Low);
        assert_eq!(parsed.moving_avg, vec![3, 9]);
        assert!(toml::from_str::<FedformerConfig>("mode_select = \"high\"").is_err());
        assert!(toml::from_str::<FedformerConfig>("version = \"wavelets\"").is_err());
    }

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
