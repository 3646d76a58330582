//! The Sinkhorn Transformer's attention as the Long Range Arena's JAX code computes it
//! (google-research/long-range-arena @ `cd31e5c`, `lra_benchmarks/models/sinkhorn_transformer/
//! sinkhorn_attention.py`), for the LRA table's Sinkhorn row. `sinkhorn` follows the paper; this
//! core reproduces what that file does instead, line by line:
//!
//! - Groups are strided: the `[L] → [B, L/B]` reshape (`:340-348`) puts token `i·nb + j` at
//!   member `i` of group `j` (`nb = L/B` groups of `B = block_size` tokens), and each group's
//!   queries attend to its own members (the local branch).
//! - The "sorted" keys and values are plain sums of the `B` contiguous runs of `nb` tokens: the
//!   einsum `'bskhd,bnhl->bsnhd'` (`:382-383`) sums the block index and the sort matrix's column
//!   separately, and the sort matrix's rows sum to 1, so the sort network drops out (it gets no
//!   gradient there and is not built here). Every group attends to the same `B` summed keys.
//! - Two softmaxes, one per branch, and the outputs added (`:466-492`); scores `q·k/√d`; dropout
//!   on each branch's probabilities.
//! - Masks come from the padding mask cut into contiguous chunks of `B` (`:401-420`): the local
//!   branch allows member pair `(i, i')` of group `j` when tokens `j·B + i` and `j·B + i'` are
//!   real (not the group's own tokens), the sorted branch allows `(i, s)` when some chunk `m` has
//!   tokens `m·B + i` and `m·B + s` both real. Disallowed pairs get −1e10, so a row with none
//!   allowed is uniform.
//!
//! Lengths that are not a multiple of `block_size` fail there (`jnp.reshape`); here they are
//! padded at the end with zero, masked positions and cut off again.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::strided_groups::{chunk_pairs, chunks, group, masked_attention, ungroup};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Settings of [`SinkhornJaxAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkhornJaxConfig {
    /// Tokens per group `B`. Default: 50 (`SinkhornAttention`'s default; Image and Pathfinder
    /// set 64).
    pub block_size: usize,
}

impl Default for SinkhornJaxConfig {
    fn default() -> Self {
        Self { block_size: 50 }
    }
}

impl MixerSpec for SinkhornJaxConfig {
    type Mixer = SinkhornJaxAttention;
    const SUMMARY: &'static str = "Sinkhorn as the LRA JAX code computes it: strided local groups plus attention to chunk-sum keys";

    fn caps(&self) -> Caps {
        Caps {
            honours_padding: false,
            ..Caps::APPROXIMATE_ATTENTION
        }
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("block_size", self.block_size)
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> SinkhornJaxAttention {
        Attention::new(
            MultiHeadProjectionConfig::from_dims(dims).init(device),
            SinkhornJaxCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                block_size: self.block_size,
            },
        )
    }
}

/// Multi-head attention with [`SinkhornJaxCore`].
pub type SinkhornJaxAttention = Attention<SinkhornJaxCore>;

/// See the module documentation.
#[derive(Module, Debug)]
pub struct SinkhornJaxCore {
    dropout: Dropout,
    block_size: usize,
}

impl AttentionCore for SinkhornJaxCore {
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
        let len = seq.div_ceil(size) * size;
        let groups = len / size;
        let extend = |x: Tensor<4>| {
            if len == seq {
                x
            } else {
                let zeros = Tensor::zeros([batch, heads, len - seq, head_dim], &device);
                Tensor::cat(vec![x, zeros], 2)
            }
        };
        let real = match pad_mask {
            Some(mask) => mask.bool_not().float(),
            None => Tensor::ones([batch, seq], &device),
        };
        let real = if len == seq {
            real
        } else {
            Tensor::cat(vec![real, Tensor::zeros([batch, len - seq], &device)], 1)
        };
        let (q, k, v) = (extend(q), extend(k), extend(v));
        let q = group(q, size) / (head_dim as f64).sqrt();
        // The B contiguous runs of `groups` tokens, summed: [b, h, 1, B, d].
        let chunk_sums = |x: Tensor<4>| {
            x.reshape([batch, heads, size, groups, head_dim])
                .sum_dim(3)
                .reshape([batch, heads, 1, size, head_dim])
        };
        let (k_sorted, v_sorted) = (chunk_sums(k.clone()), chunk_sums(v.clone()));
        // Sorted pair (i, s): some contiguous chunk has members i and s both real.
        let chunked = chunks(real.clone(), size);
        let sorted_allowed = chunked
            .clone()
            .swap_dims(1, 2)
            .matmul(chunked)
            .greater_elem(0.5)
            .float()
            .reshape([batch, 1, 1, size, size]);
        let local = masked_attention(
            q.clone(),
            group(k, size),
            group(v, size),
            chunk_pairs(real, size),
            &self.dropout,
        );
        let sorted = masked_attention(q, k_sorted, v_sorted, sorted_allowed, &self.dropout);
        ungroup(local + sorted).narrow(2, 0, seq)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::mixer::common::testing::gaussian;
    use crate::mixer::common::testing::values;

    fn softmax_rows(scores: &[f64]) -> Vec<f64> {
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
        scores.iter().map(|s| (s - max).exp() / total).collect()
    }

    /// The pseudo-code of `sinkhorn_attention.py` for one row and head, in loops: 12 tokens in
    /// groups of B = 4 (3 groups), the last three and token 5 padded.
    #[test]
    fn attention_equals_the_official_computation() {
        let device = Device::flex();
        let (len, size, dim) = (12, 4, 3);
        let groups = len / size;
        let core = SinkhornJaxCore {
            dropout: DropoutConfig::new(0.0).init(),
            block_size: size,
        };
        let (q, k, v) = (
            gaussian(&device, 1, [1, 1, len, dim]),
            gaussian(&device, 2, [1, 1, len, dim]),
            gaussian(&device, 3, [1, 1, len, dim]),
        );
        let padded: Vec<bool> = (0..len).map(|t| t == 5 || t >= 9).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(padded.clone(), [1, len]), &device);
        let out = values(core.attend(q.clone(), k.clone(), v.clone(), Some(mask)));
        let (q, k, v) = (values(q), values(k), values(v));
        let row = |x: &[f64], t: usize| x[t * dim..(t + 1) * dim].to_vec();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let real = |t: usize| !padded[t];
        // In float32 as there: −1e10 swallows the score, so a row with nothing allowed is uniform.
        let with_bias = |score: f64, allowed: bool| {
            if allowed {
                score
            } else {
                f64::from(score as f32 + crate::mixer::common::strided_groups::MASKED)
            }
        };
        let sum_chunk = |x: &[f64], s: usize| -> Vec<f64> {
            (0..dim)
                .map(|f| (0..groups).map(|c| x[(s * groups + c) * dim + f]).sum())
                .collect()
        };
        for j in 0..groups {
            for i in 0..size {
                let token = i * groups + j;
                let query: Vec<f64> = row(&q, token)
                    .iter()
                    .map(|x| x / (dim as f64).sqrt())
                    .collect();
                let local_scores: Vec<f64> = (0..size)
                    .map(|m| {
                        let allowed = real(j * size + i) && real(j * size + m);
                        with_bias(dot(&query, &row(&k, m * groups + j)), allowed)
                    })
                    .collect();
                let sorted_scores: Vec<f64> = (0..size)
                    .map(|s| {
                        let allowed = (0..groups).any(|c| real(c * size + i) && real(c * size + s));
                        with_bias(dot(&query, &sum_chunk(&k, s)), allowed)
                    })
                    .collect();
                let (pl, ps) = (softmax_rows(&local_scores), softmax_rows(&sorted_scores));
                for f in 0..dim {
                    let expected: f64 = (0..size)
                        .map(|m| {
                            pl[m] * v[(m * groups + j) * dim + f] + ps[m] * sum_chunk(&v, m)[f]
                        })
                        .sum();
                    let got = out[token * dim + f];
                    assert!(
                        (got - expected).abs() < 1e-4,
                        "token {token}: {got} vs {expected}"
                    );
                }
            }
        }
    }
}
