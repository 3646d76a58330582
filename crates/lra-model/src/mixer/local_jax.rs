//! Local attention as the Long Range Arena's JAX code computes it (google-research/
//! long-range-arena @ `cd31e5c`, `lra_benchmarks/models/local/local_attention.py`), for the LRA
//! table's Local Attention row. `local` follows the method (contiguous windows); that file does
//! otherwise:
//!
//! - Its blocks are strided: Q, K, V are reshaped to `[B, L/B]` and attention runs along the
//!   first axis (`:318-323`, `local.py:68` `attention_axis=(1,)`), so group `j` is the tokens
//!   `i·(L/B) + j` (see [`strided_groups`](super::common::strided_groups)).
//! - Its padding mask is cut into contiguous chunks (`:342-343`), so group `j` is masked by chunk
//!   `j`'s padding, with −1e10 (`:377-380`).
//! - The input is first zero-padded to the next multiple of `block_size`, a whole block more when
//!   the length already is one (`:228-233`), and the mask is padded with `-1e9`, which as a
//!   boolean is `true`: those positions count as real (`:237`). With the projections' biases off
//!   (as there) their queries, keys and values are zero.
//! - Scores `q·k/√d`, dropout on the probabilities, the output projection, then the padding cut
//!   off (`:100-146, 394-411`).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::strided_groups::{chunk_pairs, group, masked_attention, ungroup};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Settings of [`LocalJaxAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalJaxConfig {
    /// Tokens per group `B`. Default: 50 (`LocalAttention`'s default; Image and Pathfinder set
    /// 64).
    pub block_size: usize,
}

impl Default for LocalJaxConfig {
    fn default() -> Self {
        Self { block_size: 50 }
    }
}

impl MixerSpec for LocalJaxConfig {
    type Mixer = LocalJaxAttention;
    const SUMMARY: &'static str =
        "Local attention as the LRA JAX code computes it: strided groups, contiguous-chunk masks";

    fn caps(&self) -> Caps {
        Caps {
            honours_padding: false,
            ..Caps::APPROXIMATE_ATTENTION
        }
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("block_size", self.block_size)
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> LocalJaxAttention {
        Attention::new(
            MultiHeadProjectionConfig::from_dims(dims).init(device),
            LocalJaxCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                block_size: self.block_size,
            },
        )
    }
}

/// Multi-head attention with [`LocalJaxCore`].
pub type LocalJaxAttention = Attention<LocalJaxCore>;

/// See the module documentation.
#[derive(Module, Debug)]
pub struct LocalJaxCore {
    dropout: Dropout,
    block_size: usize,
}

impl AttentionCore for LocalJaxCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = q.dims();
        let device = q.device();
        let size = self.block_size;
        let extra = size - seq % size;
        let zeros = || Tensor::zeros([batch, heads, extra, head_dim], &device);
        let extend = |x: Tensor<4>| Tensor::cat(vec![x, zeros()], 2);
        let real = match pad_mask {
            Some(mask) => mask.bool_not().float(),
            None => Tensor::ones([batch, seq], &device),
        };
        // The appended positions count as real: the mask is padded with `-1e9`, i.e. `true`.
        let real = Tensor::cat(vec![real, Tensor::ones([batch, extra], &device)], 1);
        let q = group(extend(q), size) / (head_dim as f64).sqrt();
        let (k, v) = (group(extend(k), size), group(extend(v), size));
        let out = masked_attention(q, k, v, chunk_pairs(real, size), &self.dropout);
        ungroup(out).narrow(2, 0, seq)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::mixer::common::strided_groups::MASKED;
    use crate::mixer::common::testing::gaussian;
    use crate::mixer::common::testing::values;

    /// `local_attention.py` for one row and head, in loops: 10 tokens padded to 12 with zeros
    /// (blocks of 4, so 3 strided groups), token 2 and the last two real ones padded, the
    /// appended two counted real.
    #[test]
    fn attention_equals_the_official_computation() {
        let device = Device::flex();
        let (seq, size, dim) = (10, 4, 3);
        let core = LocalJaxCore {
            dropout: DropoutConfig::new(0.0).init(),
            block_size: size,
        };
        let [q, k, v] = [1, 2, 3].map(|seed| gaussian(&device, seed, [1, 1, seq, dim]));
        let padded: Vec<bool> = (0..seq).map(|t| t == 2 || t >= 8).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(padded.clone(), [1, seq]), &device);
        let out = values(core.attend(q.clone(), k.clone(), v.clone(), Some(mask)));
        let len = 12;
        let groups = len / size;
        let row = |x: &[f64], t: usize| -> Vec<f64> {
            if t < seq {
                x[t * dim..(t + 1) * dim].to_vec()
            } else {
                vec![0.0; dim]
            }
        };
        let (q, k, v) = (values(q), values(k), values(v));
        let real = |t: usize| t >= seq || !padded[t];
        for token in 0..seq {
            let (i, j) = (token / groups, token % groups);
            let query: Vec<f64> = row(&q, token)
                .iter()
                .map(|x| x / (dim as f64).sqrt())
                .collect();
            let scores: Vec<f64> = (0..size)
                .map(|m| {
                    let key = row(&k, m * groups + j);
                    let score: f64 = query.iter().zip(&key).map(|(a, b)| a * b).sum();
                    if real(j * size + i) && real(j * size + m) {
                        score
                    } else {
                        f64::from(score as f32 + MASKED)
                    }
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for f in 0..dim {
                let expected: f64 = (0..size)
                    .map(|m| (scores[m] - max).exp() / total * row(&v, m * groups + j)[f])
                    .sum();
                let got = out[token * dim + f];
                assert!(
                    (got - expected).abs() < 1e-5,
                    "token {token}: {got} vs {expected}"
                );
            }
        }
    }
}
