//! The Reformer of the Long Range Arena's JAX code, as it computes (google-research/
//! long-range-arena @ `cd31e5c`, `lra_benchmarks/models/reformer/reformer_attention.py`), for
//! the LRA table's Reformer row. It differs from the method paper (our `reformer`) in ways that
//! move numbers, so it is a mixer of its own rather than options of `reformer`:
//!
//! - The input is padded at the end with zeros to the next multiple of `chunk_len` (a whole
//!   chunk more when the length already is one, `extra_len = chunk_len − n % chunk_len`), and the
//!   padding takes part: with the projections' biases off (as there, `bias=False`) a zero input
//!   has zero query and value, hashes to bucket 0, and is a key of score 0 for everyone.
//! - Queries are the keys, not normalised, and the scores are `q·k · √d` (multiplied, `:191`).
//! - A fixed rotation `[d, n_hashes, n_buckets/2]` shared by the heads and every call (theirs is
//!   drawn from `PRNGKey(0)` inside every call, `:149-150`, so every layer has the same; ours is
//!   drawn once per layer from the run's seed and kept in the checkpoint). A token's bucket is `argmax([xR, −xR])`, offset by
//!   `hash · n_buckets`; tokens are sorted by (bucket, position).
//! - The sorted sequence is cut into `n_hashes · n_buckets` chunks (not chunks of a fixed
//!   length), each attending to itself and the previous chunk (the first to the last, `:31-32`).
//!   No self-masking, no padding mask (`padding_mask` is never read), no dropout.
//! - The hash rounds are combined with weights `softmax` over the rounds of each round's
//!   log-normaliser (`:203-208`).
//! - No output projection: the heads' outputs, concatenated, are the mixer's output (`:332-339`),
//!   so the heads are `d_model` wide (`qkv_features` is set to the input width, `:301`).
//!
//! The JAX row runs `chunk_len = 10, n_hashes = 1, n_buckets = 10` (the `ReformerAttention`
//! defaults; `reformer.py` passes none of them).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::common::log_sum_exp;
use super::common::projection::{merge_heads, split_heads};
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer, at_least_one};
use crate::folded_linear::FoldedLinear;

/// Settings of [`ReformerJax`] (names and defaults of the JAX `ReformerAttention`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReformerJaxConfig {
    /// The input is zero-padded to a multiple of it. Default: 10.
    pub chunk_len: usize,
    /// Hash rounds. Default: 1.
    pub n_hashes: usize,
    /// Buckets per round (even), and chunks per round. Default: 10.
    pub n_buckets: usize,
}

impl Default for ReformerJaxConfig {
    fn default() -> Self {
        Self {
            chunk_len: 10,
            n_hashes: 1,
            n_buckets: 10,
        }
    }
}

impl MixerSpec for ReformerJaxConfig {
    type Mixer = ReformerJax;
    const SUMMARY: &'static str =
        "Reformer as the LRA JAX code computes it: fixed rotations, n_buckets chunks, no masks";

    fn caps(&self) -> Caps {
        Caps {
            honours_padding: false,
            projection_bias: true,
            ..Caps::WITHOUT_CORE
        }
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("chunk_len", self.chunk_len)?;
        at_least_one("n_hashes", self.n_hashes)?;
        if self.n_buckets < 2 || !self.n_buckets.is_multiple_of(2) {
            return Err(format!(
                "n_buckets = {}: expected an even number ≥ 2 (argmax over [xR, −xR])",
                self.n_buckets
            ));
        }
        // The padded length, a multiple of chunk_len, must split into n_buckets chunks.
        if !self.chunk_len.is_multiple_of(self.n_buckets) {
            return Err(format!(
                "chunk_len = {} must be a multiple of n_buckets = {}, so that the padded \
                 sequence splits into n_buckets equal chunks",
                self.chunk_len, self.n_buckets
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> ReformerJax {
        let projection = || {
            LinearConfig::new(dims.d_model, dims.d_model)
                .with_bias(dims.projection_bias)
                .init(device)
        };
        let head_dim = dims.d_model / dims.n_heads;
        let rotations = Tensor::random(
            [head_dim, self.n_hashes, self.n_buckets / 2],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        ReformerJax {
            query: projection(),
            value: projection(),
            rotations: Param::from_tensor(rotations).set_require_grad(false),
            n_heads: dims.n_heads,
            chunk_len: self.chunk_len,
            n_hashes: self.n_hashes,
            n_buckets: self.n_buckets,
        }
    }
}

/// Shared-QK LSH attention as the LRA JAX code runs it.
#[derive(Module, Debug)]
pub struct ReformerJax {
    query: Linear,
    value: Linear,
    /// The fixed random rotation `[head_dim, n_hashes, n_buckets/2]`, kept in checkpoints.
    rotations: Param<Tensor<3>>,
    n_heads: usize,
    chunk_len: usize,
    n_hashes: usize,
    n_buckets: usize,
}

impl TokenMixer for ReformerJax {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let MixerInput { x, carry, .. } = input;
        let [batch, seq, d_model] = x.dims();
        let padded_len = seq + self.chunk_len - seq % self.chunk_len;
        let zeros = Tensor::zeros([batch, padded_len - seq, d_model], &x.device());
        let x = Tensor::cat(vec![x, zeros], 1);
        let qk = split_heads(self.query.forward_folded(x.clone()), self.n_heads);
        let v = split_heads(self.value.forward_folded(x), self.n_heads);
        let out = merge_heads(self.attend(qk, v)).narrow(1, 0, seq);
        MixerOutput { x: out, carry }
    }
}

impl ReformerJax {
    /// LSH attention on shared queries/keys and values `[b, h, L, d]` (`L` a multiple of
    /// `n_buckets`) → `[b, h, L, d]`.
    pub fn attend(&self, qk: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let [batch, heads, len, head_dim] = qk.dims();
        let device = qk.device();
        let rounds = self.n_hashes;
        let total = rounds * len;
        // Sort key of (round r, position t): len · (bucket + r·n_buckets) + t, as `:160-162`.
        let buckets = self.buckets(qk.clone()); // [b, h, r, L]
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device)
            .float()
            .reshape([1, 1, 1, len]);
        let keys = (buckets.float() * len as f64 + positions).reshape([batch, heads, total]);
        let order = keys.argsort(2); // [b, h, rL]: sorted slot → (round, position)
        let undo = order.clone().argsort(2); // (round, position) → sorted slot
        let source = order.remainder_scalar(len as i64); // position of each sorted slot
        let gather = |x: Tensor<4>| {
            let index = source.clone().reshape([batch, heads, total, 1]);
            x.gather(2, index.expand([batch, heads, total, head_dim]))
        };
        let chunks = rounds * self.n_buckets;
        let chunk = total / chunks;
        let chunked = |x: Tensor<4>| x.reshape([batch * heads, chunks, chunk, head_dim]);
        let (sorted_qk, sorted_v) = (chunked(gather(qk)), chunked(gather(v)));
        let keys = look_one_back(sorted_qk.clone());
        let values = look_one_back(sorted_v);
        let scores = sorted_qk.matmul(keys.swap_dims(2, 3)) * (head_dim as f64).sqrt();
        let log_normaliser = log_sum_exp(scores.clone(), 3);
        let out = (scores - log_normaliser.clone()).exp().matmul(values); // [bh, C, c, d]
        // Back to (round, position) order, then the rounds weighted by their normalisers.
        let unsort = |x: Tensor<4>, width: usize| {
            let index = undo.clone().reshape([batch, heads, total, 1]);
            x.reshape([batch, heads, total, width])
                .gather(2, index.expand([batch, heads, total, width]))
                .reshape([batch, heads, rounds, len, width])
        };
        let out = unsort(out, head_dim); // [b, h, r, L, d]
        let weights = burn::tensor::activation::softmax(unsort(log_normaliser, 1), 2);
        (out * weights)
            .sum_dim(2)
            .reshape([batch, heads, len, head_dim])
    }

    /// Each token's bucket per round, offset by `round · n_buckets`: `[b, h, rounds, L]`.
    fn buckets(&self, qk: Tensor<4>) -> Tensor<4, Int> {
        let [batch, heads, len, head_dim] = qk.dims();
        let (rounds, half) = (self.n_hashes, self.n_buckets / 2);
        let rotations = self.rotations.val().reshape([head_dim, rounds * half]);
        let rotated = qk
            .detach()
            .reshape([batch * heads * len, head_dim])
            .matmul(rotations)
            .reshape([batch, heads, len, rounds, half]);
        let both = Tensor::cat(vec![rotated.clone(), rotated.neg()], 4);
        let bucket = both
            .argmax(4)
            .reshape([batch, heads, len, rounds])
            .swap_dims(2, 3);
        let offsets = Tensor::<1, Int>::arange(0..rounds as i64, &bucket.device())
            .mul_scalar(self.n_buckets as i64)
            .reshape([1, 1, rounds, 1]);
        bucket + offsets
    }
}

/// Each chunk with the previous one appended (the first with the last): `[B, C, c, d]` →
/// `[B, C, 2c, d]`, as `look_one_back`.
fn look_one_back(x: Tensor<4>) -> Tensor<4> {
    let chunks = x.dims()[1];
    let previous = Tensor::cat(
        vec![
            x.clone().narrow(1, chunks - 1, 1),
            x.clone().narrow(1, 0, chunks - 1),
        ],
        1,
    );
    Tensor::cat(vec![x, previous], 2)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;
    use crate::mixer::common::testing::gaussian;
    use crate::mixer::common::testing::values;

    /// `reformer_attention.py`'s `lsh_attention_single_head` for one row and head, in loops.
    fn reference(
        qk: &[Vec<f64>],
        v: &[Vec<f64>],
        rotations: &[f64],
        rounds: usize,
        buckets: usize,
    ) -> Vec<Vec<f64>> {
        let (len, dim, half) = (qk.len(), qk[0].len(), buckets / 2);
        let mut keys = Vec::new();
        for round in 0..rounds {
            for (t, x) in qk.iter().enumerate() {
                let rotated: Vec<f64> = (0..half)
                    .map(|i| {
                        (0..dim)
                            .map(|f| x[f] * rotations[(f * rounds + round) * half + i])
                            .sum()
                    })
                    .collect();
                let both: Vec<f64> = rotated
                    .iter()
                    .copied()
                    .chain(rotated.iter().map(|r| -r))
                    .collect();
                let bucket =
                    (0..buckets).fold(0, |best, i| if both[i] > both[best] { i } else { best });
                keys.push((
                    (len * (bucket + round * buckets) + t) as f64,
                    round * len + t,
                ));
            }
        }
        keys.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sorted: Vec<usize> = keys.iter().map(|k| k.1).collect();
        let chunks = rounds * buckets;
        let chunk = rounds * len / chunks;
        let mut out = vec![vec![0.0; dim]; rounds * len];
        let mut log_norm = vec![0.0; rounds * len];
        for slot in 0..rounds * len {
            let c = slot / chunk;
            let previous = (c + chunks - 1) % chunks;
            let attended: Vec<usize> = (c * chunk..(c + 1) * chunk)
                .chain(previous * chunk..(previous + 1) * chunk)
                .map(|s| sorted[s] % len)
                .collect();
            let query = &qk[sorted[slot] % len];
            let scores: Vec<f64> = attended
                .iter()
                .map(|&k| (0..dim).map(|f| query[f] * qk[k][f]).sum::<f64>() * (dim as f64).sqrt())
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = scores.iter().map(|s| (s - max).exp()).sum::<f64>().ln() + max;
            for (&k, s) in attended.iter().zip(&scores) {
                for f in 0..dim {
                    out[sorted[slot]][f] += (s - lse).exp() * v[k][f];
                }
            }
            log_norm[sorted[slot]] = lse;
        }
        (0..len)
            .map(|t| {
                let logits: Vec<f64> = (0..rounds).map(|r| log_norm[r * len + t]).collect();
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                (0..dim)
                    .map(|f| {
                        (0..rounds)
                            .map(|r| (logits[r] - max).exp() / total * out[r * len + t][f])
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    /// Two rounds of 4 buckets over 16 tokens (one of them a zero vector, as the zero padding
    /// is): equal to the loops above, per row and head.
    #[test]
    fn attention_equals_the_official_single_head_computation() {
        let device = Device::flex();
        let config = ReformerJaxConfig {
            chunk_len: 4,
            n_hashes: 2,
            n_buckets: 4,
        };
        let dims = MixerDims::new(8, 2, 16).with_projection_bias(false);
        device.seed(2);
        let mixer = config.init(&dims, &device);
        let qk = gaussian(&device, 3, [2, 2, 16, 4]);
        let zero_row = Tensor::<4>::zeros([2, 2, 1, 4], &device);
        let qk = Tensor::cat(vec![qk.narrow(2, 0, 15), zero_row], 2);
        let v = gaussian(&device, 4, [2, 2, 16, 4]);
        let out = values(mixer.attend(qk.clone(), v.clone()));
        let rotations = values(mixer.rotations.val());
        let (qk, v) = (values(qk), values(v));
        let rows = |x: &[f64], row: usize| -> Vec<Vec<f64>> {
            (0..16)
                .map(|t| x[(row * 16 + t) * 4..(row * 16 + t + 1) * 4].to_vec())
                .collect()
        };
        for row in 0..4 {
            let expected = reference(&rows(&qk, row), &rows(&v, row), &rotations, 2, 4);
            for (t, wanted) in expected.iter().enumerate() {
                for (f, w) in wanted.iter().enumerate() {
                    let got = out[(row * 16 + t) * 4 + f];
                    assert!((got - w).abs() < 1e-4, "row {row} token {t}: {got} vs {w}");
                }
            }
        }
    }

    /// 20 tokens with `chunk_len = 10` run as 30: a whole chunk of zero inputs is appended, and
    /// the output is the concatenated heads (no output projection).
    #[test]
    fn the_input_is_padded_with_a_whole_chunk_when_it_divides() {
        let device = Device::flex();
        let dims = MixerDims::new(8, 2, 20).with_projection_bias(false);
        device.seed(5);
        let mixer = ReformerJaxConfig::default().init(&dims, &device);
        let x = gaussian(&device, 6, [1, 20, 8]);
        let out = mixer.forward(MixerInput::new(x.clone())).x;
        let padded = Tensor::cat(vec![x, Tensor::zeros([1, 10, 8], &device)], 1);
        let qk = split_heads(mixer.query.forward_folded(padded.clone()), 2);
        let v = split_heads(mixer.value.forward_folded(padded), 2);
        let expected = merge_heads(mixer.attend(qk, v)).narrow(1, 0, 20);
        out.into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn chunks_must_split_evenly() {
        let config = ReformerJaxConfig {
            chunk_len: 10,
            n_hashes: 1,
            n_buckets: 4,
        };
        let error = config.validate(&MixerDims::new(8, 2, 20)).unwrap_err();
        assert!(error.contains("multiple of n_buckets"), "{error}");
    }
}
