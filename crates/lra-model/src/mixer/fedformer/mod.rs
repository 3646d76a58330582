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
//!
//! The multiwavelet variant FEB-w (`block = "wavelet"`) is in [`wavelet`]; the decomposition in
//! [`decomposition`].

mod decomposition;
mod wavelet;

use decomposition::SeriesDecomposition;
use wavelet::WaveletBlock;

use burn::module::{Module, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Bool, Device, Distribution, IndexingUpdateOp, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer};
use crate::folded_linear::FoldedLinear;
use crate::mixer::common::spectral::{self, Complex};

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
        Caps::WITHOUT_CORE
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
        let decomposition = SeriesDecomposition::new(&self.moving_avg, device);
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
            let y = wavelet.forward(self.query.forward_folded(u), pad_mask);
            return self.output.forward_folded(y);
        }
        let seq = u.dims()[1];
        let q = spectral::zero_padding(self.query.forward_folded(u), pad_mask);
        let y = spectral::tokens(self.mixed_spectrum(q), self.fft_len, seq);
        self.output.forward_folded(y)
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

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::{Device, Distribution, Tensor, Tolerance};

    use super::*;
    use crate::mixer::common::spectral::naive;
    use crate::mixer::common::testing::pad_mask;

    pub(super) const D: usize = 8;
    const HEADS: usize = 2;

    pub(super) fn dims(max_len: usize) -> MixerDims {
        MixerDims::new(D, HEADS, max_len)
    }

    pub(super) fn input(seed: u64, seq: usize, device: &Device) -> Tensor<3> {
        device.seed(seed);
        Tensor::random([2, seq, D], Distribution::Normal(0.0, 1.0), device)
    }

    pub(super) fn config(modes: usize, moving_avg: Vec<usize>) -> FedformerConfig {
        FedformerConfig {
            modes,
            mode_select: ModeSelect::Random,
            moving_avg,
            ..FedformerConfig::default()
        }
    }

    pub(super) fn wavelet_config(l: usize) -> FedformerConfig {
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
}
