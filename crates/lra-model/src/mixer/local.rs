//! Local attention, two modes (Xiong et al. 2021, "Simple Local Attentions Remain Competitive
//! for Long-Context Tasks", <https://arxiv.org/abs/2112.07210>):
//!
//! - **disjoint** (the LRA "Local Attention" baseline, Tay et al. 2021): the sequence is cut into
//!   contiguous blocks of `block_size` tokens and each query attends only to the keys of its own
//!   block. O(n·w·d) time, O(n·w) memory: only the `n/w` diagonal `[w, w]` blocks are computed.
//! - **sliding** (overlapping window): query `i` attends to the keys `j` with `|i - j| <= w/2`
//!   (the Longformer band, Beltagy et al. 2020, as in HF `LongformerSelfAttention` with
//!   `attention_window = w`). Computed on blocks of `w/2` tokens: each query block gathers its own
//!   and both neighbouring key blocks (`[b, h, nb, 3·w/2, d]`, `mixer/blocks.rs`) and an exact
//!   in-window mask cuts the band out of them. O(n·1.5w·d) time, O(n·1.5w) memory.
//!
//! The LRA JAX code (`lra_benchmarks/models/local/local_attention.py`) reshapes with the block
//! size first, which groups strided rather than contiguous tokens; we use contiguous blocks as in
//! Xiong et al. and the PyTorch LRA code bases. Xiong et al. have no self-contained official file
//! (fairseq `examples/xformers` only wires xFormers configs); the sliding band follows HF
//! Longformer's (`w/2` on each side) rather than LRA JAX Longformer's (`w - w/2` to the left
//! including the query, `w/2` to the right), so that it is symmetric.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::blocks::{BlockPlan, block_sparse_attention, pad_indicator, pad_tail};
use super::common::reference::{PAD_BIAS, attention_probs};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Which keys a query sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalMode {
    /// The keys of its own block of `block_size` tokens.
    Disjoint,
    /// The keys within `block_size / 2` positions on either side.
    Sliding,
}

/// Settings of [`LocalAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Disjoint blocks or an overlapping sliding window. Default: `disjoint` (the LRA Local
    /// baseline, `local_attention.py`).
    pub mode: LocalMode,
    /// Block length `w` (disjoint), or window width `w` (sliding: `w/2` keys on each side; even).
    /// Default: 50 (LRA `LocalAttention` block_size).
    pub block_size: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            mode: LocalMode::Disjoint,
            block_size: 50,
        }
    }
}

impl MixerSpec for LocalConfig {
    type Mixer = LocalAttention;
    const SUMMARY: &'static str = "local attention: softmax within contiguous blocks (LRA Local \
        baseline) or an overlapping sliding window";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("block_size", self.block_size)?;
        if self.mode == LocalMode::Sliding
            && (self.block_size < 2 || !self.block_size.is_multiple_of(2))
        {
            return Err(format!(
                "block_size must be even and at least 2 in sliding mode (w/2 keys on each side), \
                 got {}",
                self.block_size
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> LocalAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            LocalCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                mode: self.mode,
                block_size: self.block_size,
            },
        )
    }
}

/// Multi-head attention restricted to disjoint contiguous blocks or a sliding window.
pub type LocalAttention = Attention<LocalCore>;

/// The attention core of [`LocalAttention`].
#[derive(Module, Debug)]
pub struct LocalCore {
    dropout: Dropout,
    #[module(skip)]
    mode: LocalMode,
    block_size: usize,
}

impl AttentionCore for LocalCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, _, seq, _] = q.dims();
        let is_pad = pad_indicator(pad_mask, batch, seq, &q.device()); // [b, n]
        match self.mode {
            LocalMode::Disjoint => self.disjoint(q, k, v, is_pad),
            LocalMode::Sliding => {
                let radius = self.block_size / 2;
                let plan = BlockPlan::sliding(seq, radius, radius, radius);
                block_sparse_attention(q, k, v, is_pad, &plan, None, &self.dropout)
            }
        }
    }
}

impl LocalCore {
    /// Softmax within each disjoint block; `is_pad`: `[b, n]`, 1 at padding.
    fn disjoint(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, is_pad: Tensor<2>) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = q.dims();
        let w = self.block_size.min(seq);
        let blocks = seq.div_ceil(w);
        let padded = blocks * w;
        // Keys past the end of the sequence (filling the last block) count as padding.
        let is_pad = pad_tail(is_pad, padded, 1.0);
        let key_bias = (is_pad * PAD_BIAS).reshape([batch, 1, blocks, 1, w]);
        let to_blocks =
            |x: Tensor<4>| pad_tail(x, padded, 0.0).reshape([batch, heads, blocks, w, head_dim]);
        let probs = attention_probs(to_blocks(q), to_blocks(k), Some(key_bias)); // [b, h, nb, w, w]
        let context = self.dropout.forward(probs).matmul(to_blocks(v)); // [b, h, nb, w, dh]
        context
            .reshape([batch, heads, padded, head_dim])
            .narrow(2, 0, seq)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::blocks::dense;
    use crate::mixer::common::reference::softmax_attention;

    fn qkv(device: &Device, seed: u64, seq: usize) -> Tensor<4> {
        device.seed(seed);
        Tensor::random([2, 2, seq, 8], Distribution::Normal(0.0, 1.0), device)
    }

    fn local(block_size: usize, device: &Device) -> LocalAttention {
        let dims = MixerDims::new(16, 2, 64);
        LocalConfig {
            mode: LocalMode::Disjoint,
            block_size,
        }
        .init(&dims, device)
    }

    fn sliding(window: usize, device: &Device) -> LocalAttention {
        let dims = MixerDims::new(8, 2, 64);
        let config = LocalConfig {
            mode: LocalMode::Sliding,
            block_size: window,
        };
        config.validate(&dims).expect("valid test config");
        config.init(&dims, device)
    }

    #[test]
    fn sliding_window_equals_dense_softmax_with_a_band_mask() {
        let device = Device::flex().autodiff();
        // (window, seq, real): partial last block and padding; whole blocks; a window wider
        // than the sequence; the narrowest window.
        for (window, seq, real) in [(6, 23, 17), (8, 24, 24), (40, 13, 9), (2, 11, 7)] {
            let attention = sliding(window, &device);
            let radius = window / 2;
            dense::assert_equals_dense(
                &|q, k, v, mask| attention.core.attend(q, k, v, Some(mask)),
                &|_, i, j| i.abs_diff(j) <= radius,
                2,
                seq,
                real,
            );
        }
    }

    #[test]
    fn sliding_window_sees_exactly_the_band_on_a_hand_checked_example() {
        // Window 4 (2 keys each side), 10 tokens: with q = k = 0 a query spreads uniformly over
        // the keys it sees, and with v = identity its output row is that distribution.
        let device = Device::flex();
        let seq = 10;
        let zeros = Tensor::<4>::zeros([1, 1, seq, seq], &device);
        let identity = Tensor::<2>::eye(seq, &device).reshape([1, 1, seq, seq]);
        let probs = sliding(4, &device)
            .core
            .attend(zeros.clone(), zeros, identity, None);
        let rows = probs.into_data().try_to_vec::<f32>().unwrap();
        for (query, expected) in [
            (0, vec![0, 1, 2]),
            (5, vec![3, 4, 5, 6, 7]),
            (9, vec![7, 8, 9]),
        ] {
            let row = &rows[query * seq..(query + 1) * seq];
            for (key, p) in row.iter().enumerate() {
                let want = if expected.contains(&key) {
                    1.0 / expected.len() as f32
                } else {
                    0.0
                };
                assert!((p - want).abs() < 1e-6, "p({query} → {key}) = {p}");
            }
        }
    }

    #[test]
    fn config_parses_and_validates_the_mode() {
        let parsed: LocalConfig = toml::from_str("mode = \"sliding\"\nblock_size = 64").unwrap();
        assert_eq!(parsed.mode, LocalMode::Sliding);
        assert_eq!(
            toml::from_str::<LocalConfig>("").unwrap(),
            LocalConfig::default()
        );
        assert!(toml::from_str::<LocalConfig>("mode = \"strided\"").is_err());
        assert!(toml::from_str::<LocalConfig>("window = 8").is_err());
        let dims = MixerDims::new(8, 2, 64);
        let odd = LocalConfig {
            mode: LocalMode::Sliding,
            block_size: 5,
        };
        let error = odd.validate(&dims).unwrap_err();
        assert!(
            error.contains("block_size") && error.contains("even"),
            "{error}"
        );
        let disjoint_odd = LocalConfig {
            mode: LocalMode::Disjoint,
            block_size: 5,
        };
        assert_eq!(disjoint_odd.validate(&dims), Ok(()));
    }

    #[test]
    fn equals_dense_softmax_with_a_block_diagonal_mask() {
        let device = Device::flex();
        let (seq, w) = (23, 5); // last block is partial
        let (q, k, v) = (
            qkv(&device, 1, seq),
            qkv(&device, 2, seq),
            qkv(&device, 3, seq),
        );
        // Every query keeps at least one visible key (fully masked rows are arbitrary).
        let pad: Vec<bool> = (0..2 * seq).map(|i| i >= seq + 21).collect();
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [2, seq]), &device);
        let actual =
            local(w, &device)
                .core
                .attend(q.clone(), k.clone(), v.clone(), Some(pad.clone()));

        // Dense reference: key j is visible to query i iff same block and j not padded.
        let mut bias = vec![0f32; 2 * seq * seq];
        for b in 0..2 {
            for i in 0..seq {
                for j in 0..seq {
                    let padded = b == 1 && j >= 21;
                    if i / w != j / w || padded {
                        bias[(b * seq + i) * seq + j] = PAD_BIAS;
                    }
                }
            }
        }
        let bias = Tensor::<4>::from_data(TensorData::new(bias, [2, 1, seq, seq]), &device);
        let expected = attention_probs(q, k, Some(bias)).matmul(v);
        actual
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn one_block_covering_the_sequence_is_softmax_attention() {
        let device = Device::flex();
        let (q, k, v) = (
            qkv(&device, 1, 16),
            qkv(&device, 2, 16),
            qkv(&device, 3, 16),
        );
        let actual = local(16, &device)
            .core
            .attend(q.clone(), k.clone(), v.clone(), None);
        let expected = softmax_attention(q, k, v, None);
        actual
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
    }
}
