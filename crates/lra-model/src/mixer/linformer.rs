//! Linformer attention ([Linformer: Self-Attention with Linear
//! Complexity](https://arxiv.org/abs/2006.04768), Wang, Li, Khabsa, Fang and Ma, arXiv 2020), one
//! of the Long Range Arena baselines.
//!
//! Learned projections `E, F ∈ R^{k×n}` along the sequence compress the keys and values of each
//! head to `k` rows before ordinary softmax attention:
//!
//! ```text
//! out_i = softmax(Q_i (E_i K_i)ᵀ / √d) (F_i V_i)            Q_i, K_i, V_i: [n, d]
//! ```
//!
//! `n` is fixed by the model (`MixerDims::max_len`); an input of length `m < n` uses the first
//! `m` columns of `E` and `F` (fairseq `compress_k.weight[:, 0:tgt_len]`, LRA JAX
//! `kernel[:input_dim, :]`). Padded positions are removed *before* the projection by zeroing
//! their key and value rows (as mlpen's `attention_linformer.py`, `K * mask`), so they contribute
//! nothing to `E K` and `F V`; there is no per-key mask after the projection, because every
//! projected row mixes all positions. Outputs therefore depend on how much padding follows a
//! sequence (the padded columns of `E` are simply unused), but never on the padded values.
//!
//! Sharing of the projections (`sharing`; the paper's §4 names):
//! - `none`: `E_i`, `F_i` per head;
//! - `headwise`: `E_i = E`, `F_i = F` across the heads (fairseq's default layout,
//!   `shared_kv_compressed = 0`: its `compress_k`/`compress_v` act on all channels at once);
//! - `key_value`: `E_i = F_i = E`, one matrix for keys, values and all heads (the paper's
//!   key-value sharing; LRA JAX `lr_kernel`; fairseq `shared_kv_compressed = 1`);
//! - `key_value_per_head`: `E_i = F_i` per head (mlpen's `LinformerAttention`, `E: [heads, k, n]`
//!   applied to both K and V), the default.
//!
//! The paper's third level, layerwise sharing (one `E` for every layer, which mlpen also does
//! through a class attribute), cannot be expressed inside one mixer instance: each layer's mixer
//! owns its projections.
//!
//! Checked against facebookresearch/fairseq `examples/linformer/linformer_src/modules/
//! multihead_linear_attention.py` (commit 00bc279: `compress_k = nn.Linear(max_seq_len, k,
//! bias=False)`, Xavier-uniform with gain 1/√2, truncated to the input length, dropout on the
//! probabilities), mlpen/Nystromformer `LRA/code/attention_linformer.py` (commit f02d511; zeroed
//! padded K and V, `linformer_k = 256` in `lra_config.py`) and google-research/long-range-arena
//! `lra_benchmarks/models/linformer/linformer_attention.py` and `linformer.py` (one `lr_kernel`
//! for K, V and all heads, Xavier-uniform, `low_rank_features = 16`; the 32 that
//! `text_classification/configs/linformer_base.py` sets is never passed to the model by its
//! `train.py`, so every task runs 16; no padding handling at all).
//!
//! Complexity per head: O(n·k·d) time (the projections and the `[n, k]` scores), O(n·k) memory.
//!
//! Deviations, and why:
//! - `k > max_len` is clamped to `max_len` when the module is built (with `k ≥ n` the projection
//!   can already represent exact attention, `E = F = I`): the default `k = 256` then works for
//!   any model length, which the conformance suite (max_len 128) relies on.
//! - The projections act on the projected, head-split K and V (mlpen, LRA JAX). fairseq projects
//!   the layer input before `k_proj`/`v_proj`; the two differ only by where the projection bias
//!   enters (`E (X W + b)` vs `(E X) W + b`).
//! - Init: Xavier-uniform with gain 1/√2 over fan-in `n`, fan-out `k` (fairseq, the authors'
//!   code; LRA JAX uses gain 1). mlpen draws `N(0, 0.02)`: about the same scale at n = 4096
//!   (std 0.015 here), smaller for short `n`.
//! - The shared [`MultiHeadProjection`](super::MultiHeadProjection) provides Q/K/V/output projections (with biases), as for
//!   every mixer here. The causal (decoder) variant is not implemented.

use std::f64::consts::FRAC_1_SQRT_2;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::common::reference::attention_probs;
use super::{
    Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig, at_least_one,
};

/// Which heads and which of K/V share a length projection (Wang et al. 2020, §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    /// `E_i`, `F_i` for every head `i`.
    None,
    /// Headwise sharing: `E_i = E`, `F_i = F` for all heads.
    Headwise,
    /// Key-value sharing: `E_i = F_i = E`, one matrix for keys, values and all heads.
    KeyValue,
    /// `E_i = F_i` per head: one matrix per head for its keys and values (mlpen LRA code).
    KeyValuePerHead,
}

/// Settings of [`LinformerAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinformerConfig {
    /// Projected length `k` (rows of `E` and `F`); clamped to `max_len`. Default: 256 (mlpen
    /// `lra_config.py`, `"linformer-256": {"linformer_k": 256}`, the PyTorch LRA runs; the LRA
    /// JAX default is `low_rank_features = 16`, 32 in its text classification config).
    pub k: usize,
    /// Which heads and which of K/V share a projection. Default: `key_value_per_head` (mlpen
    /// `attention_linformer.py`: `E: [num_head, k, max_seq_len]`, used for K and V).
    pub sharing: Sharing,
    /// Whether `E` and `F` are learned. `false` keeps them at their random init, as the code
    /// behind Skyformer's table does by accident (pkuzengqi/Skyformer
    /// `src/models/attention_linformer.py` creates `E` with `nn.Parameter(...).to('cuda')`, a
    /// plain tensor that the model does not register, so it is never trained). Default: true.
    pub trainable: bool,
}

impl Default for LinformerConfig {
    fn default() -> Self {
        Self {
            k: 256,
            sharing: Sharing::KeyValuePerHead,
            trainable: true,
        }
    }
}

impl MixerSpec for LinformerConfig {
    type Mixer = LinformerAttention;
    const SUMMARY: &'static str =
        "Linformer: softmax attention over keys/values compressed to k rows by learned E, F";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("k", self.k)?;
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> LinformerAttention {
        let (n, k) = (dims.max_len, self.k.min(dims.max_len));
        let groups = match self.sharing {
            Sharing::None | Sharing::KeyValuePerHead => dims.n_heads,
            Sharing::Headwise | Sharing::KeyValue => 1,
        };
        let projection = || {
            Initializer::XavierUniform {
                gain: FRAC_1_SQRT_2,
            }
            .init_with([groups, k, n], Some(n), Some(k), device)
            .set_require_grad(self.trainable)
        };
        let key_projection = projection();
        let value_projection = match self.sharing {
            Sharing::None | Sharing::Headwise => Some(projection()),
            Sharing::KeyValue | Sharing::KeyValuePerHead => None,
        };
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            LinformerCore {
                dropout: DropoutConfig::new(dims.dropout).init(),
                key_projection,
                value_projection,
            },
        )
    }
}

/// Multi-head Linformer attention.
pub type LinformerAttention = Attention<LinformerCore>;

/// The attention core of [`LinformerAttention`].
#[derive(Module, Debug)]
pub struct LinformerCore {
    dropout: Dropout,
    /// `E`: `[groups, k, max_len]`, `groups` = heads, or 1 when the heads share it.
    key_projection: Param<Tensor<3>>,
    /// `F`, shaped as `E`; `None` when keys and values share `E`.
    value_projection: Option<Param<Tensor<3>>>,
}

impl AttentionCore for LinformerCore {
    /// # Panics
    /// If the sequence is longer than the `max_len` the projections were built for.
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, _, seq, _] = k.dims();
        let (k, v) = match pad_mask {
            Some(mask) => {
                let real = mask.bool_not().float().reshape([batch, 1, seq, 1]);
                (k * real.clone(), v * real)
            }
            None => (k, v),
        };
        let e = &self.key_projection;
        let f = self.value_projection.as_ref().unwrap_or(e);
        let k = project(e, k); // [b, h, k, d]
        let v = project(f, v); // [b, h, k, d]
        let probs = attention_probs(q, k, None); // [b, h, n, k]
        self.dropout.forward(probs).matmul(v)
    }
}

/// `P[:, :, :n] x`: compresses `x` `[b, h, n, d]` to `[b, h, k, d]` with the first `n` columns of
/// `projection` `[groups, k, max_len]`.
fn project(projection: &Param<Tensor<3>>, x: Tensor<4>) -> Tensor<4> {
    let [batch, heads, seq, _] = x.dims();
    let projection = projection.val();
    let [groups, rows, max_len] = projection.dims();
    assert!(
        seq <= max_len,
        "linformer: sequence length {seq} exceeds the max_len {max_len} the projections were built for"
    );
    projection
        .narrow(2, 0, seq)
        .reshape([1, groups, rows, seq])
        .expand([batch, heads, rows, seq])
        .matmul(x)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::reference::{relative_error, softmax_attention};
    use crate::mixer::common::testing::{gaussian, pad_mask, spoil_padding};

    const HEADS: usize = 2;
    const HEAD_DIM: usize = 8;
    const SHARINGS: [Sharing; 4] = [
        Sharing::None,
        Sharing::Headwise,
        Sharing::KeyValue,
        Sharing::KeyValuePerHead,
    ];

    fn dims(max_len: usize) -> MixerDims {
        MixerDims::new(HEADS * HEAD_DIM, HEADS, max_len)
    }

    fn linformer(
        k: usize,
        sharing: Sharing,
        max_len: usize,
        device: &Device,
    ) -> LinformerAttention {
        device.seed(0);
        let config = LinformerConfig {
            k,
            sharing,
            trainable: true,
        };
        crate::init_now(config.init(&dims(max_len), device))
    }

    /// `[groups, rows, cols]` copies of the given `[rows, cols]` matrix, as a parameter.
    fn fixed(matrix: Tensor<2>, groups: usize) -> Param<Tensor<3>> {
        let [rows, cols] = matrix.dims();
        Param::from_tensor(matrix.reshape([1, rows, cols]).repeat_dim(0, groups))
    }

    /// `trainable = false`: `E` gets no gradient (so no optimiser moves it), while the inputs
    /// still do; with the default it gets one.
    #[test]
    fn untrainable_projections_receive_no_gradient() {
        let device = Device::flex().autodiff();
        for trainable in [true, false] {
            let config = LinformerConfig {
                k: 4,
                trainable,
                ..LinformerConfig::default()
            };
            let attention = crate::init_now(config.init(&dims(8), &device));
            let shape = [2, HEADS, 8, HEAD_DIM];
            let k = gaussian(&device, 1, shape).require_grad();
            let (q, v) = (gaussian(&device, 2, shape), gaussian(&device, 3, shape));
            let grads = attention
                .core
                .attend(q, k.clone(), v, None)
                .sum()
                .backward();
            let e = attention.core.key_projection.val();
            assert_eq!(
                e.grad(&grads).is_some(),
                trainable,
                "trainable = {trainable}"
            );
            assert!(k.grad(&grads).is_some());
        }
    }

    #[test]
    fn projection_shapes_follow_the_sharing_mode_and_k_is_clamped() {
        let device = Device::flex();
        for sharing in SHARINGS {
            for (k, max_len, rows) in [(16, 64, 16), (256, 64, 64)] {
                let attention = linformer(k, sharing, max_len, &device);
                let groups = match sharing {
                    Sharing::None | Sharing::KeyValuePerHead => HEADS,
                    Sharing::Headwise | Sharing::KeyValue => 1,
                };
                assert_eq!(
                    attention.core.key_projection.val().dims(),
                    [groups, rows, max_len]
                );
                let separate_f = matches!(sharing, Sharing::None | Sharing::Headwise);
                assert_eq!(
                    attention.core.value_projection.is_some(),
                    separate_f,
                    "{sharing:?}"
                );
                if let Some(f) = &attention.core.value_projection {
                    assert_eq!(f.val().dims(), [groups, rows, max_len]);
                }
            }
        }
    }

    #[test]
    fn identity_projections_with_k_equal_to_n_are_softmax_attention() {
        // E = F = I (k = n = max_len): the projection keeps every key and value. Exact only
        // without padding: zeroed padded keys would still get weight exp(q·0) in the softmax.
        let device = Device::flex();
        let seq = 23;
        let shape = [2, HEADS, seq, HEAD_DIM];
        let (q, k, v) = (
            gaussian(&device, 1, shape),
            gaussian(&device, 2, shape),
            gaussian(&device, 3, shape),
        );
        let expected = softmax_attention(q.clone(), k.clone(), v.clone(), None);
        for sharing in SHARINGS {
            let mut attention = linformer(seq, sharing, seq, &device);
            let groups = attention.core.key_projection.val().dims()[0];
            attention.core.key_projection = fixed(Tensor::eye(seq, &device), groups);
            if attention.core.value_projection.is_some() {
                attention.core.value_projection = Some(fixed(Tensor::eye(seq, &device), groups));
            }
            let actual = attention.core.attend(q.clone(), k.clone(), v.clone(), None);
            actual
                .to_data()
                .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn short_inputs_use_the_first_columns_of_the_projections() {
        // Reference: the formula with E[:, :n] and F[:, :n] written out, padded rows zeroed.
        let device = Device::flex();
        let (max_len, k_rows) = (64, 12);
        for (seq, real) in [(23, 17), (50, 37)] {
            let shape = [2, HEADS, seq, HEAD_DIM];
            let (q, k, v) = (
                gaussian(&device, 1, shape),
                gaussian(&device, 2, shape),
                gaussian(&device, 3, shape),
            );
            let mask = pad_mask(&device, seq, real);
            for sharing in [Sharing::None, Sharing::KeyValue] {
                let attention = linformer(k_rows, sharing, max_len, &device);
                let actual =
                    attention
                        .core
                        .attend(q.clone(), k.clone(), v.clone(), Some(mask.clone()));
                assert_eq!(actual.dims(), shape);

                let real4 = mask.clone().bool_not().float().reshape([2, 1, seq, 1]);
                let columns = |p: &Param<Tensor<3>>| {
                    let p = p.val();
                    let groups = p.dims()[0];
                    p.narrow(2, 0, seq)
                        .reshape([1, groups, k_rows, seq])
                        .expand([2, HEADS, k_rows, seq])
                };
                let e = columns(&attention.core.key_projection);
                let f = attention
                    .core
                    .value_projection
                    .as_ref()
                    .map(columns)
                    .unwrap_or_else(|| e.clone());
                let expected = softmax_attention(
                    q.clone(),
                    e.matmul(k.clone() * real4.clone()),
                    f.matmul(v.clone() * real4),
                    None,
                );
                actual
                    .to_data()
                    .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
            }
        }
    }

    #[test]
    fn padded_keys_and_values_do_not_change_any_output() {
        // Padded K/V rows are zeroed before the projection, so nothing downstream sees them:
        // every output row (also the padded queries') is unchanged.
        let device = Device::flex();
        for (seq, real) in [(23, 17), (50, 37)] {
            let shape = [2, HEADS, seq, HEAD_DIM];
            let (q, k, v) = (
                gaussian(&device, 1, shape),
                gaussian(&device, 2, shape),
                gaussian(&device, 3, shape),
            );
            let mask = pad_mask(&device, seq, real);
            let (k2, v2) = (
                spoil_padding(k.clone(), &mask, 4),
                spoil_padding(v.clone(), &mask, 5),
            );
            for sharing in SHARINGS {
                let attention = linformer(256, sharing, 64, &device);
                let a = attention
                    .core
                    .attend(q.clone(), k.clone(), v.clone(), Some(mask.clone()));
                let b =
                    attention
                        .core
                        .attend(q.clone(), k2.clone(), v2.clone(), Some(mask.clone()));
                a.to_data()
                    .assert_approx_eq::<f32>(&b.to_data(), Tolerance::absolute(1e-5));
            }
        }
    }

    /// Row-selection matrix `[kk, n]` picking `kk` distinct positions drawn from the device RNG.
    fn selection(kk: usize, n: usize, device: &Device) -> Tensor<2> {
        let order = Tensor::<1>::random([n], Distribution::Default, device).argsort(0);
        let picked: Vec<i64> = order.narrow(0, 0, kk).into_data().iter::<i64>().collect();
        let mut rows = vec![0f32; kk * n];
        for (row, &col) in picked.iter().enumerate() {
            rows[row * n + col as usize] = 1.0;
        }
        Tensor::from_data(TensorData::new(rows, [kk, n]), device)
    }

    #[test]
    fn selection_projections_approach_softmax_as_k_grows() {
        // At a random init every row of E K and F V mixes all positions with random weights,
        // so the output A is uncorrelated with softmax attention S for every k: the relative
        // error is ≈ √(1 + ‖A‖²/‖S‖²) (`random_init_error_report`: 3.4 at k = 16, 1.0–1.2 at
        // k = n = 256), and it falls with k only because averaging over more random rows shrinks
        // ‖A‖ — no approximation is involved. What the mechanism can reach is shown with
        // E = F = a selection of k of the n positions (a projection training could find):
        // softmax attention over k sampled keys, whose error falls with k and is 0 at k = n.
        let device = Device::flex();
        let (n, seeds) = (128, 4);
        let shape = [1, HEADS, n, 16];
        let budgets = [8, 32, 64, 128];
        let mut errors = [0f32; 4];
        for seed in 0..seeds {
            let (q, k, v) = (
                gaussian(&device, 10 * seed + 1, shape),
                gaussian(&device, 10 * seed + 2, shape),
                gaussian(&device, 10 * seed + 3, shape),
            );
            let exact = softmax_attention(q.clone(), k.clone(), v.clone(), None);
            for (i, &kk) in budgets.iter().enumerate() {
                let mut attention = linformer(kk, Sharing::KeyValue, n, &device);
                device.seed(100 + seed);
                attention.core.key_projection = fixed(selection(kk, n, &device), 1);
                let approx = attention.core.attend(q.clone(), k.clone(), v.clone(), None);
                errors[i] += relative_error(approx, exact.clone()) / seeds as f32;
            }
        }
        for pair in errors.windows(2) {
            assert!(pair[1] < pair[0], "error must fall with k: {errors:?}");
        }
        assert!(errors[2] < 0.7 * errors[0], "{errors:?}");
        assert!(errors[3] < 1e-5, "k = n selects every key: {errors:?}");
    }

    /// Relative error against softmax at a random init, and ‖A‖/‖S‖ (the error tracks it).
    #[test]
    #[ignore = "report: cargo test --release -p lra-model linformer -- --ignored --nocapture"]
    fn random_init_error_report() {
        let device = Device::flex();
        let heads = 2;
        for (n, head_dim, budgets) in [
            (256, 16, &[16, 32, 64, 128, 256][..]),
            (1024, 32, &[256][..]),
            (4096, 32, &[256][..]),
        ] {
            let shape = [1, heads, n, head_dim];
            let dims = MixerDims::new(heads * head_dim, heads, n);
            for sharing in SHARINGS {
                for &k in budgets {
                    let seeds = 3;
                    let (mut error, mut norm) = (0.0, 0.0);
                    for seed in 0..seeds {
                        let (q, kk, v) = (
                            gaussian(&device, 10 * seed + 1, shape),
                            gaussian(&device, 10 * seed + 2, shape),
                            gaussian(&device, 10 * seed + 3, shape),
                        );
                        let exact = softmax_attention(q.clone(), kk.clone(), v.clone(), None);
                        device.seed(100 + seed);
                        let config = LinformerConfig {
                            k,
                            sharing,
                            trainable: true,
                        };
                        let attention = config.init(&dims, &device);
                        let approx = attention.core.attend(q, kk, v, None);
                        // ‖A‖ / ‖S‖, written as ‖(A + S) − S‖ / ‖S‖.
                        norm += relative_error(approx.clone() + exact.clone(), exact.clone())
                            / seeds as f32;
                        error += relative_error(approx, exact) / seeds as f32;
                    }
                    println!(
                        "n={n} d={head_dim} sharing={sharing:?} k={k}: \
                         relative error {error:.4}, norm ratio {norm:.4}"
                    );
                }
            }
        }
    }
}
