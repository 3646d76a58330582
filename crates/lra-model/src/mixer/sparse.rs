//! Sparse Transformer attention: Child, Gray, Radford and Sutskever 2019, "Generating Long
//! Sequences with Sparse Transformers" (<https://arxiv.org/abs/1904.10509>), as used as a baseline
//! in the Long Range Arena (Tay et al. 2021, <https://arxiv.org/abs/2011.04006>).
//!
//! Each query attends to a fixed, factorised subset of the keys (softmax over that subset only):
//!
//! - **fixed** (the pattern LRA runs): the query's own block of `l` tokens plus
//!   the "summary" columns of every block, i.e. the keys `j` with `j mod l == 0` or
//!   `j mod l >= l - c` (`c + 1` columns per block). O(n·(l + n·(c+1)/l)·d) time.
//! - **strided**: the previous `l` positions plus every `l`-th position, i.e. Child et al.'s
//!   `A¹ = {max(0, i - l), .., i}` ∪ `A² = {j : (i - j) mod l = 0}`. O(n·(2l + n/l)·d) time, the
//!   paper's O(n·√n·d) for `l ≈ √n`.
//!
//! Child et al. either give the two halves of a pattern to different heads or merge them; LRA
//! merges them in every head, and so do we.
//!
//! Official code checked: google-research/long-range-arena (commit cd31e5c),
//! `lra_benchmarks/models/sparse_transformer/sparse_attention.py` (pattern definitions, lines
//! 63-95; CLS handling, lines 185-191), `sparse_transformer.py`, and
//! `lra_benchmarks/utils/train_utils.py` lines 74-80 (the patterns every LRA task used:
//! `Fixed1Pattern(block_size=50)` ∪ `Fixed2Pattern(block_size=50, c=10)`, in every head).
//!
//! Like the LRA code, the patterns are **causal** by default (`sparse_attention.py` line 18: "all
//! attention patterns are causal"; line 94 ands every pattern with the lower triangle), and with
//! CLS pooling position 0 is global: it sees every key and every query sees it, while the pattern
//! applies to positions `1..` counted from 0 (`use_cls_token`, lines 185-191).
//!
//! Deviations, and why:
//! - LRA builds a dense `[n, n]` mask and runs dense attention (O(n²)). Here only the kept keys are
//!   scored, block-wise: for `fixed`, `[l, l]` diagonal blocks plus the gathered summary columns;
//!   for `strided`, a band of the current and previous (and, bidirectional, next) block plus, for
//!   each offset within a block, the same offset in every other block. Each key is scored once
//!   (summary columns in the query's own block and the query itself in the strided part are
//!   excluded, being in the local part), so the result equals dense softmax with the same mask.
//! - `causal = false` (not in LRA or Child et al.) makes both patterns symmetric.
//! - `global_first` is a setting: the mixer cannot see whether the encoder prepended a CLS token
//!   (LRA derives it from `classifier_pool`). It defaults to on, as in every LRA run with CLS
//!   pooling; turn it off for mean pooling without CLS to get LRA's pure causal pattern.
//! - `strided` is Child et al.'s strided scheme (band ∪ stride, one `l`); LRA's code only has the
//!   separate `LocalPattern` / `StridedPattern` building blocks and no task uses them.
//! - Only keys are masked for padding (the project's convention); LRA also masks padded query
//!   rows, whose outputs are never used.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::common::blocks::pad_tail;
use super::common::reference::{PAD_BIAS, attention_probs};
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Which factorised pattern of Child et al. (2019) to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparsePattern {
    /// Own block of `block_size` tokens plus the summary columns of every block.
    Fixed,
    /// The previous `block_size` positions plus every `block_size`-th position.
    Strided,
}

/// Settings of [`SparseAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SparseConfig {
    /// The factorised pattern. Default: `fixed` (LRA `train_utils.py` lines 75-78 use
    /// `Fixed1Pattern` + `Fixed2Pattern` for every task).
    pub pattern: SparsePattern,
    /// Block length `l` of `fixed`, stride and band width `l` of `strided`. Default: 50 (LRA
    /// `train_utils.py` lines 76-77, `block_size=50`; Child et al. used 128 on enwik8, which is
    /// also the default of LRA's `SparseAttention` module, `sparse_attention.py` line 181).
    pub block_size: usize,
    /// Summary columns `c` per block for `fixed` (the keys with `j mod l >= l - c`, plus
    /// `j mod l == 0`); ignored by `strided`. Default: 10 (LRA `train_utils.py` line 77, `c=10`;
    /// enwik8 used 32, `sparse_attention.py` line 182).
    pub summary: usize,
    /// Queries see only keys at or before them. Default: true (LRA `sparse_attention.py` line 18
    /// and line 94: all LRA sparse patterns are causal).
    pub causal: bool,
    /// Position 0 (the CLS token) sees every key and is seen by every query; the pattern applies
    /// to positions `1..`. Default: true (LRA `sparse_attention.py` lines 185-191,
    /// `use_cls_token`, set by `sparse_transformer.py` lines 159-162 for CLS pooling: the
    /// encoder's default, in effect for ListOps, Text, Retrieval and CIFAR-10; Pathfinder-32
    /// pools by mean).
    pub global_first: bool,
}

impl Default for SparseConfig {
    fn default() -> Self {
        Self {
            pattern: SparsePattern::Fixed,
            block_size: 50,
            summary: 10,
            causal: true,
            global_first: true,
        }
    }
}

impl MixerSpec for SparseConfig {
    type Mixer = SparseAttention;
    const SUMMARY: &'static str =
        "Sparse Transformer: fixed or strided factorised attention, computed block-wise";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("block_size", self.block_size)?;
        if self.pattern == SparsePattern::Fixed && self.summary >= self.block_size {
            return Err(format!(
                "summary must be less than block_size = {} for the fixed pattern, got {}",
                self.block_size, self.summary
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> SparseAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            SparseCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                pattern: self.pattern,
                block_size: self.block_size,
                summary: self.summary,
                causal: self.causal,
                global_first: self.global_first,
            },
        )
    }
}

/// Multi-head attention restricted to a Sparse Transformer pattern.
pub type SparseAttention = Attention<SparseCore>;

/// The attention core of [`SparseAttention`].
#[derive(Module, Debug)]
pub struct SparseCore {
    dropout: Dropout,
    #[module(skip)]
    pattern: SparsePattern,
    block_size: usize,
    summary: usize,
    causal: bool,
    global_first: bool,
}

impl AttentionCore for SparseCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, _, seq, _] = q.dims();
        let is_pad = pad_mask
            .map(|mask| mask.float())
            .unwrap_or_else(|| Tensor::zeros([batch, seq], &q.device())); // [b, n]
        if !self.global_first {
            return self.pattern_attend(q, k, v, is_pad, None);
        }
        // Position 0 sees everything: one dense row.
        let bias = (is_pad.clone() * PAD_BIAS).reshape([batch, 1, 1, seq]);
        let probs = attention_probs(q.clone().narrow(2, 0, 1), k.clone(), Some(bias)); // [b, h, 1, n]
        let first = self.dropout.forward(probs).matmul(v.clone()); // [b, h, 1, dh]
        if seq == 1 {
            return first;
        }
        let global = GlobalKey {
            k: k.clone().narrow(2, 0, 1),
            v: v.clone().narrow(2, 0, 1),
            is_pad: is_pad.clone().narrow(1, 0, 1),
        };
        let rest = |x: Tensor<4>| x.narrow(2, 1, seq - 1);
        let is_pad = is_pad.narrow(1, 1, seq - 1);
        let others = self.pattern_attend(rest(q), rest(k), rest(v), is_pad, Some(global));
        Tensor::cat(vec![first, others], 2)
    }
}

/// A key every query of the pattern sees in addition to its pattern (the CLS position).
struct GlobalKey {
    k: Tensor<4>,      // [b, h, 1, dh]
    v: Tensor<4>,      // [b, h, 1, dh]
    is_pad: Tensor<2>, // [b, 1]
}

/// One group of kept keys: its biased scores `[b, h, nb, l, keys]` and how its probabilities
/// weight the values into `[b, h, nb, l, dh]`.
struct Part {
    scores: Tensor<5>,
    values: Values,
}

enum Values {
    /// Per query block: `[b, h, nb, keys, dh]`.
    Blocked(Tensor<5>),
    /// The same keys for every query: `[b, h, keys, dh]`.
    Shared(Tensor<4>),
    /// Same offset in every block, grouped by offset: `[b, h, l, nb, dh]`.
    ByOffset(Tensor<5>),
}

impl Values {
    /// `probs`: `[b, h, nb, l, keys]` → context `[b, h, nb, l, dh]`.
    fn weight(self, probs: Tensor<5>) -> Tensor<5> {
        let [batch, heads, blocks, block, keys] = probs.dims();
        match self {
            Values::Blocked(values) => probs.matmul(values),
            Values::Shared(values) => {
                let head_dim = values.dims()[3];
                probs
                    .reshape([batch, heads, blocks * block, keys])
                    .matmul(values)
                    .reshape([batch, heads, blocks, block, head_dim])
            }
            Values::ByOffset(values) => probs.swap_dims(2, 3).matmul(values).swap_dims(2, 3),
        }
    }
}

impl SparseCore {
    /// The pattern on `[b, h, m, dh]` (positions counted from 0), plus an optional global key.
    fn pattern_attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        is_pad: Tensor<2>,
        global: Option<GlobalKey>,
    ) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = q.dims();
        let l = self.block_size;
        let blocks = seq.div_ceil(l);
        let padded = blocks * l;
        // Positions past the end (filling the last block) count as padding.
        let q = pad_tail(q, padded, 0.0) / (head_dim as f64).sqrt();
        let k = pad_tail(k, padded, 0.0);
        let v = pad_tail(v, padded, 0.0);
        let is_pad = pad_tail(is_pad, padded, 1.0);
        let geometry = Geometry {
            batch,
            heads,
            blocks,
            l,
            head_dim,
            causal: self.causal,
        };
        let mut parts = match self.pattern {
            SparsePattern::Fixed => geometry.fixed(q.clone(), k, v, is_pad, self.summary),
            SparsePattern::Strided => geometry.strided(q.clone(), k, v, is_pad),
        };
        if let Some(global) = global {
            let bias = (global.is_pad * PAD_BIAS).reshape([batch, 1, 1, 1]);
            let scores = (q.matmul(global.k.swap_dims(2, 3)) + bias) // [b, h, p, 1]
                .reshape([batch, heads, blocks, l, 1]);
            parts.push(Part {
                scores,
                values: Values::Shared(global.v),
            });
        }
        let widths: Vec<usize> = parts.iter().map(|part| part.scores.dims()[4]).collect();
        let scores = Tensor::cat(parts.iter().map(|part| part.scores.clone()).collect(), 4);
        let probs = self.dropout.forward(softmax(scores, 4)); // [b, h, nb, l, kept]
        let mut offset = 0;
        let mut context: Option<Tensor<5>> = None;
        for (part, width) in parts.into_iter().zip(widths) {
            let weighted = part.values.weight(probs.clone().narrow(4, offset, width));
            offset += width;
            context = Some(match context {
                Some(sum) => sum + weighted,
                None => weighted,
            });
        }
        context
            .expect("every pattern has a local part")
            .reshape([batch, heads, padded, head_dim])
            .narrow(2, 0, seq)
    }
}

/// Sizes of one blocked call; builds the score parts of each pattern.
struct Geometry {
    batch: usize,
    heads: usize,
    blocks: usize,
    l: usize,
    head_dim: usize,
    causal: bool,
}

impl Geometry {
    /// `[b, h, p, dh]` → `[b, h, nb, l, dh]`.
    fn to_blocks(&self, x: Tensor<4>) -> Tensor<5> {
        x.reshape([self.batch, self.heads, self.blocks, self.l, self.head_dim])
    }

    /// `[b, p]` padding indicator → `[b, 1, nb, l, 1]`.
    fn pad_blocks(&self, is_pad: Tensor<2>) -> Tensor<5> {
        is_pad.reshape([self.batch, 1, self.blocks, self.l, 1])
    }

    /// Fixed pattern: own block (causal: up to the query) and the summary columns of the other
    /// blocks (causal: earlier blocks only).
    fn fixed(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        is_pad: Tensor<2>,
        c: usize,
    ) -> Vec<Part> {
        let (batch, heads, blocks, l) = (self.batch, self.heads, self.blocks, self.l);
        let device = q.device();
        let (qb, kb, vb) = (
            self.to_blocks(q.clone()),
            self.to_blocks(k),
            self.to_blocks(v),
        );
        let pad = self.pad_blocks(is_pad);

        // Own block: [b, h, nb, l, l].
        let pad_bias = pad.clone().reshape([batch, 1, blocks, 1, l]) * PAD_BIAS;
        let mut local = qb.matmul(kb.clone().swap_dims(3, 4)) + pad_bias;
        if self.causal {
            let mask = (0..l * l).map(|x| x % l > x / l); // key after query
            local = local + bias_tensor(mask, [1, 1, 1, l, l], &device);
        }

        // Summary columns of every block: [b, h, nb, l, S], S = nb·(c + 1).
        let width = blocks * (c + 1);
        let columns = |x: Tensor<5>| {
            let first = x.clone().narrow(3, 0, 1);
            if c == 0 {
                first
            } else {
                Tensor::cat(vec![first, x.narrow(3, l - c, c)], 3)
            }
        };
        let ks = columns(kb).reshape([batch, heads, width, self.head_dim]);
        let vs = columns(vb.clone()).reshape([batch, heads, width, self.head_dim]);
        let pad_bias = columns(pad).reshape([batch, 1, 1, 1, width]) * PAD_BIAS;
        let causal = self.causal;
        // Summary columns of the query's own block are already in the local part.
        let mask = (0..blocks * width).map(|x| {
            let (query_block, key_block) = (x / width, (x % width) / (c + 1));
            key_block == query_block || (causal && key_block > query_block)
        });
        let summary = q
            .matmul(ks.swap_dims(2, 3))
            .reshape([batch, heads, blocks, l, width])
            + pad_bias
            + bias_tensor(mask, [1, 1, blocks, 1, width], &device);

        vec![
            Part {
                scores: local,
                values: Values::Blocked(vb),
            },
            Part {
                scores: summary,
                values: Values::Shared(vs),
            },
        ]
    }

    /// Strided pattern: a band of the previous `l - 1` positions (bidirectional: and the next)
    /// from the current and neighbouring blocks, plus the same offset in every other block.
    fn strided(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, is_pad: Tensor<2>) -> Vec<Part> {
        let (batch, blocks, l) = (self.batch, self.blocks, self.l);
        let device = q.device();
        let (qb, kb, vb) = (self.to_blocks(q), self.to_blocks(k), self.to_blocks(v));
        let pad = self.pad_blocks(is_pad); // [b, 1, nb, l, 1]

        // Band: keys of blocks B-1, B (and B+1) for query block B: [b, h, nb, l, W].
        let windowed = |x: Tensor<5>, fill: f32| self.window(x, fill);
        let kw = windowed(kb.clone(), 0.0);
        let vw = windowed(vb.clone(), 0.0);
        let width = kw.dims()[3];
        let pad_bias = windowed(pad.clone(), 1.0).reshape([batch, 1, blocks, 1, width]) * PAD_BIAS;
        let causal = self.causal;
        // Query offset r, window slot j at offset j - l from the block start: i - j_abs = r + l - j.
        let mask = (0..l * width).map(|x| {
            let distance = (x / width + l) as isize - (x % width) as isize;
            if causal {
                !(0..l as isize).contains(&distance)
            } else {
                distance.unsigned_abs() >= l
            }
        });
        let band = qb.clone().matmul(kw.swap_dims(3, 4))
            + pad_bias
            + bias_tensor(mask, [1, 1, 1, l, width], &device);

        // Stride: offset r of query block B sees offset r of every other block (its own key is
        // in the band): scores [b, h, l, nb, nb] grouped by offset, then [b, h, nb, l, nb].
        let by_offset = |x: Tensor<5>| x.swap_dims(2, 3); // [.., l, nb, ..]
        let pad_bias = by_offset(pad).reshape([batch, 1, l, 1, blocks]) * PAD_BIAS;
        let mask = (0..blocks * blocks).map(|x| {
            let (query_block, key_block) = (x / blocks, x % blocks);
            key_block == query_block || (causal && key_block > query_block)
        });
        let stride = (by_offset(qb).matmul(by_offset(kb).swap_dims(3, 4))
            + pad_bias
            + bias_tensor(mask, [1, 1, 1, blocks, blocks], &device))
        .swap_dims(2, 3);

        vec![
            Part {
                scores: band,
                values: Values::Blocked(vw),
            },
            Part {
                scores: stride,
                values: Values::ByOffset(by_offset(vb)),
            },
        ]
    }

    /// `[x, y, nb, l, z]` → `[x, y, nb, W, z]`: for block B the rows of blocks B-1, B and, when
    /// bidirectional, B+1 (`W` = 2l or 3l); blocks outside the sequence are filled with `fill`.
    fn window(&self, x: Tensor<5>, fill: f32) -> Tensor<5> {
        let [d0, d1, blocks, l, d4] = x.dims();
        let edge = Tensor::<5>::full([d0, d1, 1, l, d4], fill, &x.device());
        let shifted = |start: usize, edge_first: bool| {
            if blocks == 1 {
                return edge.clone();
            }
            let inner = x.clone().narrow(2, start, blocks - 1);
            let parts = if edge_first {
                vec![edge.clone(), inner]
            } else {
                vec![inner, edge.clone()]
            };
            Tensor::cat(parts, 2)
        };
        let mut rows = vec![shifted(0, true), x.clone()];
        if !self.causal {
            rows.push(shifted(1, false));
        }
        Tensor::cat(rows, 3)
    }
}

/// `PAD_BIAS` where `masked` is true, 0 elsewhere, as a tensor of `shape` (row-major).
fn bias_tensor<const D: usize>(
    masked: impl Iterator<Item = bool>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    let values: Vec<f32> = masked.map(|m| if m { PAD_BIAS } else { 0.0 }).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    fn config(pattern: SparsePattern, causal: bool, global_first: bool) -> SparseConfig {
        SparseConfig {
            pattern,
            block_size: 5,
            summary: 2,
            causal,
            global_first,
        }
    }

    fn build(config: &SparseConfig, device: &Device) -> SparseAttention {
        let dims = MixerDims::new(8, 2, 64);
        config.validate(&dims).expect("valid test config");
        config.init(&dims, device)
    }

    /// Whether query `i` sees key `j`, written from the definitions (Child et al. 2019 §4.3;
    /// LRA `sparse_attention.py` `_build_mask` and `use_cls_token`), independently of the
    /// blocked code.
    fn sees(config: &SparseConfig, i: usize, j: usize) -> bool {
        let (i, j) = if config.global_first {
            if i == 0 || j == 0 {
                return true;
            }
            (i - 1, j - 1)
        } else {
            (i, j)
        };
        let l = config.block_size;
        let in_pattern = match config.pattern {
            // A1: same block; A2: j mod l in {0} ∪ {l - c, .., l - 1}.
            SparsePattern::Fixed => i / l == j / l || j % l == 0 || j % l >= l - config.summary,
            // A1: {max(0, i - l), .., i} (both sides when bidirectional); A2: (i - j) mod l = 0.
            SparsePattern::Strided => i.abs_diff(j) <= l || i.abs_diff(j) % l == 0,
        };
        in_pattern && (!config.causal || j <= i)
    }

    /// Keys visible to query `i` in a sequence of `seq` tokens.
    fn visible(config: &SparseConfig, seq: usize, i: usize) -> Vec<usize> {
        (0..seq).filter(|&j| sees(config, i, j)).collect()
    }

    /// `[2, seq]`: the second sequence is padded after `real` tokens.
    fn padding(seq: usize, real: usize) -> Vec<bool> {
        (0..2 * seq).map(|x| x >= seq && x % seq >= real).collect()
    }

    /// Dense additive bias `[2, 1, seq, seq]`: `PAD_BIAS` outside the pattern and at padded keys.
    fn dense_bias(config: &SparseConfig, seq: usize, pad: &[bool], device: &Device) -> Tensor<4> {
        let mut bias = vec![0f32; 2 * seq * seq];
        for b in 0..2 {
            for i in 0..seq {
                let mut any = false;
                for j in 0..seq {
                    if sees(config, i, j) && !pad[b * seq + j] {
                        any = true;
                    } else {
                        bias[(b * seq + i) * seq + j] = PAD_BIAS;
                    }
                }
                assert!(any, "query {i} of row {b} sees no key: test premise broken");
            }
        }
        Tensor::from_data(TensorData::new(bias, [2, 1, seq, seq]), device)
    }

    fn random(device: &Device, seed: u64, seq: usize) -> TensorData {
        device.seed(seed);
        Tensor::<4>::random([2, 2, seq, 4], Distribution::Normal(0.0, 1.0), device).into_data()
    }

    /// Blocked output and q/k/v gradients equal dense masked softmax attention.
    fn assert_equals_dense(config: &SparseConfig, seq: usize, real: usize) {
        let device = Device::flex().autodiff();
        let attention = build(config, &device);
        let pad = padding(seq, real);
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [2, seq]), &device);
        let (q, k, v, w) = (
            random(&device, 1, seq),
            random(&device, 2, seq),
            random(&device, 3, seq),
            random(&device, 4, seq),
        );
        let w = Tensor::<4>::from_data(w, &device);
        let leaves = || {
            [&q, &k, &v].map(|data| Tensor::<4>::from_data(data.clone(), &device).require_grad())
        };
        let [q1, k1, v1] = leaves();
        let actual = attention
            .core
            .attend(q1.clone(), k1.clone(), v1.clone(), Some(mask));
        let grads1 = (actual.clone() * w.clone()).sum().backward();
        let [q2, k2, v2] = leaves();
        let bias = dense_bias(config, seq, &pad, &device);
        let expected = attention_probs(q2.clone(), k2.clone(), Some(bias)).matmul(v2.clone());
        let grads2 = (expected.clone() * w).sum().backward();

        let close = |what: &str, a: Tensor<4>, b: Tensor<4>| {
            eprintln!("{config:?}, seq {seq}: {what}"); // shown if the assertion fails
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-5));
        };
        close("output", actual, expected);
        for (name, a, b) in [("q", q1, q2), ("k", k1, k2), ("v", v1, v2)] {
            close(
                &format!("grad {name}"),
                a.grad(&grads1).expect("gradient"),
                b.grad(&grads2).expect("gradient"),
            );
        }
    }

    #[test]
    fn fixed_equals_dense_softmax_with_the_pattern_mask() {
        for causal in [true, false] {
            for global_first in [false, true] {
                let config = config(SparsePattern::Fixed, causal, global_first);
                assert_equals_dense(&config, 23, 17); // partial last block, padding
                assert_equals_dense(&config, 20, 20); // whole blocks, no padding
                assert_equals_dense(&config, 3, 2); // shorter than one block
            }
        }
    }

    #[test]
    fn strided_equals_dense_softmax_with_the_pattern_mask() {
        for causal in [true, false] {
            for global_first in [false, true] {
                let config = config(SparsePattern::Strided, causal, global_first);
                assert_equals_dense(&config, 23, 17);
                assert_equals_dense(&config, 20, 20);
                assert_equals_dense(&config, 3, 2);
            }
        }
    }

    #[test]
    fn a_single_global_token_attends_to_itself() {
        let config = config(SparsePattern::Fixed, true, true);
        assert_equals_dense(&config, 1, 1);
    }

    #[test]
    fn the_pattern_matches_the_paper_on_a_hand_checked_example() {
        let (seq, l) = (16, 4);
        let hand = |pattern, summary, causal, global_first| SparseConfig {
            pattern,
            block_size: l,
            summary,
            causal,
            global_first,
        };
        // Strided, l = 4, query 5: band {1..5} (t = max(0, 5 - 4) = 1) ∪ stride {1, 5}.
        let strided = hand(SparsePattern::Strided, 0, true, false);
        // Bidirectional: band {1..9} ∪ stride {1, 5, 9, 13}.
        let strided_both = hand(SparsePattern::Strided, 0, false, false);
        // Fixed, l = 4, c = 1, query 5: own block {4, 5} ∪ summary columns j mod 4 ∈ {0, 3}, j ≤ 5.
        let fixed = hand(SparsePattern::Fixed, 1, true, false);
        // Bidirectional: {4..7} ∪ {0, 3, 4, 7, 8, 11, 12, 15}.
        let fixed_both = hand(SparsePattern::Fixed, 1, false, false);
        // CLS at 0; position 6 is pattern index 5: {0} ∪ (1 + {1..5}).
        let strided_cls = hand(SparsePattern::Strided, 0, true, true);
        let cases: [(&SparseConfig, usize, Vec<usize>); 6] = [
            (&strided, 5, vec![1, 2, 3, 4, 5]),
            (&strided_both, 5, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 13]),
            (&fixed, 5, vec![0, 3, 4, 5]),
            (&fixed_both, 5, vec![0, 3, 4, 5, 6, 7, 8, 11, 12, 15]),
            (&strided_cls, 6, vec![0, 2, 3, 4, 5, 6]),
            (&strided_cls, 0, (0..seq).collect()),
        ];
        let device = Device::flex();
        for (config, query, expected) in cases {
            assert_eq!(visible(config, seq, query), expected, "{config:?}");
            // The blocked implementation: with q = k = 0 each query spreads uniformly over the
            // keys it sees; with v = identity its output row is that distribution.
            let attention = build(config, &device);
            let zeros = Tensor::<4>::zeros([1, 1, seq, seq], &device);
            let identity = Tensor::<2>::eye(seq, &device).reshape([1, 1, seq, seq]);
            let probs = attention.core.attend(zeros.clone(), zeros, identity, None);
            let row: Vec<f32> = probs
                .narrow(2, query, 1)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let uniform = 1.0 / expected.len() as f32;
            for (key, p) in row.iter().enumerate() {
                let want = if expected.contains(&key) {
                    uniform
                } else {
                    0.0
                };
                assert!(
                    (p - want).abs() < 1e-6,
                    "{config:?}: p({query} → {key}) = {p}"
                );
            }
        }
    }

    #[test]
    fn config_parses_and_validates() {
        let parsed: SparseConfig = toml::from_str("pattern = \"strided\"\nblock_size = 8").unwrap();
        assert_eq!(parsed.pattern, SparsePattern::Strided);
        assert_eq!(parsed.summary, SparseConfig::default().summary);
        assert!(toml::from_str::<SparseConfig>("stride = 8").is_err());
        let defaults = toml::to_string(&SparseConfig::default()).unwrap();
        assert!(defaults.contains("pattern = \"fixed\""), "{defaults}");
        assert_eq!(
            toml::from_str::<SparseConfig>(&defaults).unwrap(),
            SparseConfig::default()
        );
        assert!(toml::from_str::<SparseConfig>("pattern = \"dilated\"").is_err());
        let dims = MixerDims::new(8, 2, 64);
        let bad_summary = SparseConfig {
            summary: 50,
            ..SparseConfig::default()
        };
        let error = bad_summary.validate(&dims).unwrap_err();
        assert!(
            error.contains("summary") && error.contains("block_size"),
            "{error}"
        );
        let bad_block = SparseConfig {
            block_size: 0,
            ..SparseConfig::default()
        };
        assert!(
            bad_block
                .validate(&dims)
                .unwrap_err()
                .contains("block_size")
        );
        let strided = SparseConfig {
            pattern: SparsePattern::Strided,
            summary: 50,
            ..SparseConfig::default()
        };
        assert_eq!(
            strided.validate(&dims),
            Ok(()),
            "summary is ignored by strided"
        );
    }
}
