//! Long convolution through the FFT, for the state-space mixers (S4, S4D).
//!
//! `y_t = Σ_s k[t − s] u_s` over a whole sequence costs O(n²) directly and O(n log n) as
//! `irfft(rfft(u) · rfft(k))`. Burn's FFT takes power-of-two lengths only, and a product of
//! spectra is a *circular* convolution, so both signals are zero-padded to the first power of two
//! ≥ 2n: then no output wraps around onto another (S4's `FFTConv`, state-spaces/s4
//! `models/s4/s4.py`, pads to 2L for the same reason).

use burn::tensor::signal::{irfft, rfft};
use burn::tensor::{Bool, Tensor};

/// FFT length that turns the circular convolution of two length-`seq` signals into a linear one.
pub fn fft_len(seq: usize) -> usize {
    (2 * seq.max(1)).next_power_of_two()
}

/// Token states `[batch, seq, channels]` with the padded positions set to zero, so that a
/// convolution never carries padding into real tokens (a bidirectional kernel would otherwise
/// carry trailing padding back to them).
pub fn zero_padding(x: Tensor<3>, pad_mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
    match pad_mask {
        Some(mask) => {
            let [batch, seq, channels] = x.dims();
            let mask = mask
                .clone()
                .reshape([batch, seq, 1])
                .expand([batch, seq, channels]);
            x.mask_fill(mask, 0.0)
        }
        None => x,
    }
}

/// Convolves token states `[batch, seq, channels]` along the sequence with one kernel per channel:
/// `kernels` is `[1, channels, seq]` (causal) or `[2, channels, seq]` (forward and backward
/// kernels of [`bidirectional_conv`]). Output `[batch, seq, channels]`.
pub fn sequence_conv(x: Tensor<3>, kernels: Tensor<3>) -> Tensor<3> {
    let [directions, channels, seq] = kernels.dims();
    let u = x.swap_dims(1, 2); // [b, c, n]
    let kernel = |i| kernels.clone().narrow(0, i, 1).reshape([channels, seq]);
    let y = match directions {
        1 => causal_conv(u, kernel(0)),
        2 => bidirectional_conv(u, kernel(0), kernel(1)),
        other => panic!("sequence_conv: expected 1 or 2 kernels per channel, got {other}"),
    };
    y.swap_dims(1, 2)
}

/// Causal convolution `y_t = Σ_{s ≤ t} k[t − s] u_s` per channel.
///
/// # Shapes
/// - `u`: `[batch, channels, seq]`, `kernel`: `[channels, seq]`
/// - output: `[batch, channels, seq]`
pub fn causal_conv(u: Tensor<3>, kernel: Tensor<2>) -> Tensor<3> {
    let seq = u.dims()[2];
    convolve_circular(u, kernel, fft_len(seq))
}

/// Two-sided convolution of the bidirectional S4 layer:
/// `y_t = Σ_{s ≤ t} k_fwd[t − s] u_s + Σ_{s > t} k_bwd[s − t − 1] u_s`.
/// The backward kernel starts one step away from the diagonal, so `u_t` is not counted twice (the
/// official layer places `flip(k_bwd)` at the end of the 2L-long kernel, which does the same).
///
/// # Shapes
/// - `u`: `[batch, channels, seq]`, `k_fwd`, `k_bwd`: `[channels, seq]`
/// - output: `[batch, channels, seq]`
pub fn bidirectional_conv(u: Tensor<3>, k_fwd: Tensor<2>, k_bwd: Tensor<2>) -> Tensor<3> {
    let [channels, seq] = k_fwd.dims();
    let len = fft_len(seq);
    // Circular index −(s − t) ≡ len − (s − t): k_bwd[j] sits at len − 1 − j.
    let gap = Tensor::zeros([channels, len - 2 * seq], &k_fwd.device());
    let kernel = Tensor::cat(vec![k_fwd, gap, k_bwd.flip([1])], 1); // [c, len]
    convolve_circular(u, kernel, len)
}

/// Circular convolution of `u` (zero-padded to `len`) with `kernel` (zero-padded to `len`), cut
/// back to `u`'s length.
fn convolve_circular(u: Tensor<3>, kernel: Tensor<2>, len: usize) -> Tensor<3> {
    let [_, channels, seq] = u.dims();
    let (u_re, u_im) = rfft(u, 2, Some(len)); // [b, c, len/2 + 1]
    let (k_re, k_im) = rfft(kernel, 1, Some(len)); // [c, len/2 + 1]
    let bins = len / 2 + 1;
    let k_re = k_re.reshape([1, channels, bins]);
    let k_im = k_im.reshape([1, channels, bins]);
    let y_re = u_re.clone() * k_re.clone() - u_im.clone() * k_im.clone();
    let y_im = u_re * k_im + u_im * k_re;
    irfft(y_re, y_im, 2, Some(len)).narrow(2, 0, seq)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::testing;

    fn random<const D: usize>(device: &Device, seed: u64, shape: [usize; D]) -> Tensor<D> {
        device.seed(seed);
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    /// `Σ_s weight(t, s) · u_s` by two nested loops.
    fn direct(u: &Tensor<3>, weight: impl Fn(usize, usize, usize) -> f32) -> TensorData {
        let [batch, channels, seq] = u.dims();
        let u: Vec<f32> = u.to_data().try_to_vec::<f32>().unwrap();
        let mut y = vec![0.0f32; u.len()];
        for b in 0..batch {
            for c in 0..channels {
                let row = (b * channels + c) * seq;
                for t in 0..seq {
                    y[row + t] = (0..seq).map(|s| weight(c, t, s) * u[row + s]).sum();
                }
            }
        }
        TensorData::new(y, [batch, channels, seq])
    }

    #[test]
    fn causal_fft_conv_equals_direct_convolution() {
        let device = testing::device();
        // 100 is not a power of two: the FFT length (256) is larger than 2n.
        for seq in [64, 100] {
            let u = random(&device, 1, [2, 3, seq]);
            let k = random(&device, 2, [3, seq]);
            let kv: Vec<f32> = k.to_data().try_to_vec::<f32>().unwrap();
            let expected = direct(&u, |c, t, s| if s <= t { kv[c * seq + t - s] } else { 0.0 });
            causal_conv(u, k)
                .into_data()
                .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-4));
        }
    }

    #[test]
    fn bidirectional_fft_conv_equals_direct_convolution() {
        let device = testing::device();
        for seq in [64, 100] {
            let u = random(&device, 3, [2, 3, seq]);
            let k_fwd = random(&device, 4, [3, seq]);
            let k_bwd = random(&device, 5, [3, seq]);
            let fwd: Vec<f32> = k_fwd.to_data().try_to_vec::<f32>().unwrap();
            let bwd: Vec<f32> = k_bwd.to_data().try_to_vec::<f32>().unwrap();
            let expected = direct(&u, |c, t, s| {
                if s <= t {
                    fwd[c * seq + t - s]
                } else {
                    bwd[c * seq + s - t - 1]
                }
            });
            bidirectional_conv(u, k_fwd, k_bwd)
                .into_data()
                .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-4));
        }
    }
}
