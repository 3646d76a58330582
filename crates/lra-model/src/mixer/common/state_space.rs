//! The pieces of a structured state-space layer that S4 and S4D share: the settings check, the
//! step-size init, and the block's output tail. Their kernels (DPLR vs diagonal) differ.

use burn::nn::{Dropout, Linear};
use burn::tensor::activation::glu;
use burn::tensor::{Device, Distribution, Tensor};

use crate::folded_linear::FoldedLinear;
use crate::ops::gelu::gelu;

/// Checks the settings shared by S4 and S4D.
pub fn validate_ssm(d_state: usize, dt_min: f64, dt_max: f64) -> Result<(), String> {
    if d_state < 2 || !d_state.is_multiple_of(2) {
        return Err(format!(
            "d_state = {d_state}: expected an even state size ≥ 2 (conjugate pairs)"
        ));
    }
    if !(dt_min > 0.0 && dt_min <= dt_max) {
        return Err(format!(
            "dt_min = {dt_min}, dt_max = {dt_max}: expected 0 < dt_min ≤ dt_max"
        ));
    }
    Ok(())
}

/// `log Δ ~ U[log dt_min, log dt_max]` per channel (s4d.py).
pub fn log_dt_init(channels: usize, dt_min: f64, dt_max: f64, device: &Device) -> Tensor<1> {
    let (low, high) = (dt_min.ln(), dt_max.ln());
    if low == high {
        return Tensor::full([channels], low as f32, device);
    }
    Tensor::random([channels], Distribution::Uniform(low, high), device)
}

/// GELU → dropout → position-wise linear (→ GLU): the tail of the official S4 block.
pub fn output_layer(y: Tensor<3>, dropout: &Dropout, output: &Linear, use_glu: bool) -> Tensor<3> {
    let y = output.forward_folded(super::dropout(dropout, gelu(y)));
    if use_glu { glu(y, 2) } else { y }
}
