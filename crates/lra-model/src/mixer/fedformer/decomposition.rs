//! FEDformer's mixture-of-experts seasonal-trend decomposition (`series_decomp_multi`), see the
//! [parent module](super) for the formulas.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::module::avg_pool1d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::folded_linear::FoldedLinear;

/// FEDformer's `series_decomp_multi` (or `series_decomp` with one window).
#[derive(Module, Debug)]
pub(super) struct SeriesDecomposition {
    /// Moving-average window sizes, one per expert.
    kernels: Vec<usize>,
    /// `Linear(1 → #kernels)` giving each scalar its expert weights; absent with one window
    /// (a softmax over one expert is 1).
    gate: Option<Linear>,
}

/// `seasonal + trend = v` (the official `series_decomp` output; the mixer needs only the trend).
#[cfg(test)]
pub(super) struct Decomposition {
    pub(super) seasonal: Tensor<3>,
    pub(super) trend: Tensor<3>,
}

impl SeriesDecomposition {
    /// The decomposition over moving averages of `kernels` (gated when there are several);
    /// `None` without kernels.
    pub(super) fn new(kernels: &[usize], device: &Device) -> Option<Self> {
        (!kernels.is_empty()).then(|| Self {
            kernels: kernels.to_vec(),
            gate: (kernels.len() > 1).then(|| LinearConfig::new(1, kernels.len()).init(device)),
        })
    }

    #[cfg(test)]
    pub(super) fn decompose(
        &self,
        v: Tensor<3>,
        pad_mask: Option<&Tensor<2, Bool>>,
    ) -> Decomposition {
        let trend = self.trend(v.clone(), pad_mask);
        Decomposition {
            seasonal: v - trend.clone(),
            trend,
        }
    }

    /// # Shapes
    /// - `v`: `[batch, seq, d]`, `pad_mask`: `[batch, seq]` → `[batch, seq, d]`
    pub(super) fn trend(&self, v: Tensor<3>, pad_mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
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
                let weights = softmax(gate.forward_folded(v.unsqueeze_dim::<4>(3)), 3); // [b, n, d, K]
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
    use burn::tensor::{Device, Tensor, Tolerance};

    use super::*;
    use crate::mixer::MixerSpec;
    use crate::mixer::common::spectral::naive;
    use crate::mixer::common::testing::pad_mask;
    use crate::mixer::fedformer::tests::{D, config, dims, input};

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
}
