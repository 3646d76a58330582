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
//! - Not provided: the wavelet version (FEB-w, Legendre multiwavelets) and the cross-attention
//!   block FEA (an encoder-only classifier has no cross attention).

use burn::module::{Module, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::module::avg_pool1d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Bool, Device, Distribution, IndexingUpdateOp, Int, Tensor};
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
}

impl Default for FedformerConfig {
    fn default() -> Self {
        Self {
            modes: 64,
            mode_select: ModeSelect::Random,
            moving_avg: vec![24],
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
        if !(1..=available).contains(&self.modes) {
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
        let linear = || LinearConfig::new(d, d).init(device);
        FedformerMixer {
            query: linear(),
            weight_re: draw(),
            weight_im: draw(),
            output: linear(),
            modes: Param::initialized(ParamId::new(), modes),
            decomposition: (!self.moving_avg.is_empty()).then(|| SeriesDecomposition {
                kernels: self.moving_avg.clone(),
                gate: (self.moving_avg.len() > 1)
                    .then(|| LinearConfig::new(1, self.moving_avg.len()).init(device)),
            }),
            fft_len,
        }
    }
}

/// FEDformer Fourier block (FEB-f) with the decomposition's trend removed.
#[derive(Module, Debug)]
pub struct FedformerMixer {
    query: Linear,
    /// Real parts of the per-head, per-mode matrices `[heads, modes, E, E]`.
    weight_re: Param<Tensor<4>>,
    /// Imaginary parts, same shape.
    weight_im: Param<Tensor<4>>,
    output: Linear,
    /// Selected bins `I`, sorted (an integer parameter: saved, never trained).
    modes: Param<Tensor<1, Int>>,
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
        let [heads, modes, head_dim, _] = self.weight_re.dims();
        let bins = spectral::bins(self.fft_len);
        let index = self.modes.val();
        let selected = spectral::spectrum(q, self.fft_len).map_rank(|t| {
            t.select(1, index.clone())
                .reshape([batch, modes, heads, head_dim])
                .permute([2, 1, 0, 3]) // [h, M, b, E]
        });
        let weight = Complex {
            re: self.weight_re.val(),
            im: self.weight_im.val(),
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
        }
    }

    fn selected(mixer: &FedformerMixer) -> Vec<i64> {
        let data = mixer.modes.val().into_data().convert::<i64>();
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
            naive::values(mixer.weight_re.val()),
            naive::values(mixer.weight_im.val()),
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
}
