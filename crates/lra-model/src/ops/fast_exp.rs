//! A branch-free `exp` for the attention kernels' softmax passes. `f32::exp` is a libm call per
//! element, which the compiler cannot vectorise and which cost as much as the score GEMMs; this
//! one (Cephes' `expf` range reduction and polynomial, rounding by the 1.5·2²³ trick) compiles to
//! SIMD code when applied over a slice. Also the two row passes of a softmax built on it (bias
//! add + row max, exp + row sum), shared by the materialised and the tiled attention ops.

/// `exp(x)`: relative error below 3e-7 for results in f32's normal range, exactly 0 below it
/// (x < −87.3, so masked scores of −∞ give 0), +∞ above x ≈ 88.7, NaN for NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding and subtracting it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let clamped = x.clamp(-87.3, 88.7);
    let rounded = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    // n as an integer from the bits of `rounded` (ROUND + n keeps ROUND's exponent, one ulp per
    // unit): an `as i32` conversion does not vectorise on baseline x86-64.
    let n_int = rounded.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let value = y * f32::from_bits(((n_int + 127) << 23) as u32);
    if x.is_nan() {
        x
    } else if x < -87.3 {
        0.0
    } else {
        value
    }
}

/// `xs += bias` elementwise; returns the new maximum of `xs` (−∞ when empty; NaNs are skipped
/// like `f32::max` does), over 16 lanes so it vectorises (inlined into callers compiled for AVX).
#[inline(always)]
pub fn add_and_max(xs: &mut [f32], bias: &[f32]) -> f32 {
    xs.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
    // `if x > lane` (false for NaN) rather than `f32::max`, whose NaN rule kept this scalar.
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| a.max(x));
    for chunk in chunks {
        let chunk: &[f32; 16] = chunk.try_into().expect("chunks of 16");
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    lanes.iter().fold(tail, |a, &x| a.max(x))
}

/// `xs[i] = exp(xs[i] + shift)` for every element; returns their sum, accumulated in 16 lanes so
/// that the additions vectorise.
#[inline(always)]
pub fn exp_shifted_sum(xs: &mut [f32], shift: f32) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = xs.chunks_exact_mut(16);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *x = exp(*x + shift);
            *lane += *x;
        }
    }
    let tail: f32 = chunks
        .into_remainder()
        .iter_mut()
        .map(|x| {
            *x = exp(*x + shift);
            *x
        })
        .sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_std_exp_over_the_whole_range() {
        let mut worst = 0f64;
        for i in 0..=2_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 2_000_000.0;
            let (fast, exact) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((fast - exact) / exact).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn edges_are_zero_infinity_and_nan() {
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        let mut xs = [0.0, 1.0, -1.0];
        exp_shifted_sum(&mut xs, 1.0);
        assert!((xs[0] - 1f32.exp()).abs() < 1e-6 && (xs[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn shifted_sum_is_the_sum_of_the_shifted_exps() {
        let mut xs: Vec<f32> = (0..37).map(|i| i as f32 * 0.1 - 2.0).collect();
        let expected: f64 = xs.iter().map(|&x| (f64::from(x) - 1.0).exp()).sum();
        let sum = exp_shifted_sum(&mut xs, -1.0);
        assert!((f64::from(sum) - expected).abs() < 1e-5 * expected);
        assert!((f64::from(xs[36]) - 0.6f64.exp()).abs() < 1e-6);
    }
}
