//! Longformer attention: Beltagy, Peters and Cohan 2020, "Longformer: The Long-Document
//! Transformer" (<https://arxiv.org/abs/2004.05150>), an LRA baseline (Tay et al. 2021).
//!
//! Query `i` attends to the keys `j` with `|i - j| <= w/2` (sliding window) and to the global
//! positions; global positions (here the first `global_tokens`, e.g. the CLS token) attend to
//! every key. Softmax over that set only.
//!
//! Complexity: O(n·(1.5w + g)·d) time, O(n·(1.5w + g)) memory. The window is computed on blocks
//! of `w/2` tokens (`mixer/blocks.rs`: each query block gathers its own and both neighbouring key
//! blocks, an exact in-window mask cuts out the band); global keys are one shared extra part of
//! the same softmax, global queries `g` dense rows.
//!
//! Official code checked: allenai/longformer (`longformer/longformer.py`, sliding chunks), HF
//! `LongformerSelfAttention` (which the mlpen PyTorch LRA code wraps: `window_size` 128,
//! `first_token_view` = the first token is global), and google-research/long-range-arena
//! `lra_benchmarks/models/longformer/longformer_attention.py` (dense masks).
//!
//! Deviations, and why:
//! - Longformer and both LRA code bases give global attention its own Q/K/V projections
//!   (`query_global`, ...). Here global queries and keys use the layer's one projection, so the
//!   core is an [`AttentionCore`] over one Q, K, V (exactness tests and `lra approx` rely on it);
//!   the attention pattern is the same.
//! - The window is symmetric, `w/2` keys on each side (HF / allenai); LRA JAX takes `w - w/2` to
//!   the left including the query and `w/2` to the right (`_build_sliding_window_mask`).
//! - LRA JAX builds dense `[n, n]` masks (O(n²)); here only the band and global keys are scored.
//!   LRA JAX passes no global mask at all (no global tokens); the default here follows the
//!   PyTorch LRA setting (first token global), `global_tokens = 0` gives LRA JAX's pattern.
//! - Dilation and the causal variant are not implemented (LRA uses neither).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::blocks::{
    BlockPlan, SharedKeys, block_sparse_attention, dense_rows, pad_indicator,
};
use super::{Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig};

/// Settings of [`LongformerAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LongformerConfig {
    /// Window width `w`: `w/2` keys on each side of the query (even). Default: 128 (mlpen LRA
    /// `lra_config.py`, `"longformer": {"window_size": 128}`, HF `attention_window`).
    pub window: usize,
    /// Leading positions with global attention. Default: 1, the first (CLS) token (mlpen LRA
    /// `first_token_view: True`; LRA JAX has none, `global_mask=None`).
    pub global_tokens: usize,
}

impl Default for LongformerConfig {
    fn default() -> Self {
        Self {
            window: 128,
            global_tokens: 1,
        }
    }
}

impl MixerSpec for LongformerConfig {
    type Mixer = LongformerAttention;
    const SUMMARY: &'static str =
        "Longformer: sliding window (w/2 each side) + global leading tokens, computed block-wise";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, dims: &MixerDims) -> Result<(), String> {
        if self.window < 2 || !self.window.is_multiple_of(2) {
            return Err(format!(
                "window must be even and at least 2 (w/2 keys on each side), got {}",
                self.window
            ));
        }
        if self.global_tokens > dims.max_len {
            return Err(format!(
                "global_tokens must be at most max_len = {}, got {}",
                dims.max_len, self.global_tokens
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> LongformerAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            LongformerCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                window: self.window,
                global_tokens: self.global_tokens,
            },
        )
    }
}

/// Multi-head sliding-window attention with global leading tokens.
pub type LongformerAttention = Attention<LongformerCore>;

/// The attention core of [`LongformerAttention`].
#[derive(Module, Debug)]
pub struct LongformerCore {
    dropout: Dropout,
    window: usize,
    global_tokens: usize,
}

impl AttentionCore for LongformerCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, _, seq, _] = q.dims();
        let device = q.device();
        let is_pad = pad_indicator(pad_mask, batch, seq, &device); // [b, n]
        let globals = self.global_tokens.min(seq);
        if globals == seq {
            return dense_rows(q, k, v, is_pad, &self.dropout);
        }
        let radius = self.window / 2;
        let plan = BlockPlan::sliding(seq, radius, radius, radius);
        if globals == 0 {
            return block_sparse_attention(q, k, v, is_pad, &plan, None, &self.dropout);
        }
        let shared = SharedKeys {
            k: k.clone().narrow(2, 0, globals),
            v: v.clone().narrow(2, 0, globals),
            is_pad: is_pad.clone().narrow(1, 0, globals),
        };
        // Global keys are seen through `shared`; excluding them from the band counts them once.
        let excluded = Tensor::cat(
            vec![
                Tensor::ones([batch, globals], &device),
                is_pad.clone().narrow(1, globals, seq - globals),
            ],
            1,
        );
        let windowed = block_sparse_attention(
            q.clone(),
            k.clone(),
            v.clone(),
            excluded,
            &plan,
            Some(shared),
            &self.dropout,
        );
        let global_rows = dense_rows(q.narrow(2, 0, globals), k, v, is_pad, &self.dropout);
        Tensor::cat(
            vec![global_rows, windowed.narrow(2, globals, seq - globals)],
            2,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixer::common::blocks::dense;

    fn dims() -> MixerDims {
        MixerDims::new(8, 2, 64)
    }

    fn build(window: usize, global_tokens: usize, device: &Device) -> LongformerAttention {
        let config = LongformerConfig {
            window,
            global_tokens,
        };
        config.validate(&dims()).expect("valid test config");
        config.init(&dims(), device)
    }

    /// The pattern from its definition (Beltagy et al. §3.1): band `|i - j| <= w/2`, and global
    /// positions see and are seen by everyone.
    fn sees(window: usize, globals: usize, i: usize, j: usize) -> bool {
        i < globals || j < globals || i.abs_diff(j) <= window / 2
    }

    #[test]
    fn equals_dense_softmax_with_the_window_and_global_mask() {
        let device = Device::flex().autodiff();
        // (window, globals, seq, real): partial last block with padding; whole blocks; several
        // global tokens; no global token; a window wider than the sequence; all tokens global.
        let cases = [
            (6, 1, 23, 17),
            (8, 1, 24, 24),
            (4, 3, 19, 12),
            (6, 0, 17, 10),
            (40, 2, 13, 9),
            (4, 8, 6, 4),
        ];
        for (window, globals, seq, real) in cases {
            eprintln!("window {window}, global tokens {globals}");
            let attention = build(window, globals, &device);
            dense::assert_equals_dense(
                &|q, k, v, mask| attention.core.attend(q, k, v, Some(mask)),
                &|_, i, j| sees(window, globals, i, j),
                2,
                seq,
                real,
            );
        }
    }

    #[test]
    fn config_parses_and_validates() {
        let parsed: LongformerConfig = toml::from_str("window = 64").unwrap();
        assert_eq!(parsed.global_tokens, 1);
        assert!(toml::from_str::<LongformerConfig>("attention_window = 64").is_err());
        let defaults = toml::to_string(&LongformerConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<LongformerConfig>(&defaults).unwrap(),
            LongformerConfig::default()
        );
        for window in [0, 7] {
            let config = LongformerConfig {
                window,
                ..LongformerConfig::default()
            };
            let error = config.validate(&dims()).unwrap_err();
            assert!(
                error.contains("window") && error.contains("even"),
                "{error}"
            );
        }
        let too_many = LongformerConfig {
            global_tokens: 65,
            ..LongformerConfig::default()
        };
        let error = too_many.validate(&dims()).unwrap_err();
        assert!(error.contains("global_tokens"), "{error}");
    }
}
