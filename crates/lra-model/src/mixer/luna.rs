//! Luna: Linear Unified Nested Attention ([Luna: Linear Unified Nested
//! Attention](https://arxiv.org/abs/2106.01540), Ma, Kong, Wang, Zhou, May, Ma and Zettlemoyer,
//! NeurIPS 2021).
//!
//! An extra sequence `P` of fixed length `l` travels from layer to layer next to the tokens `X`.
//! Each layer packs `X` into `l` slots by letting `P` attend to `X`, and unpacks by letting `X`
//! attend to the `l` packed slots:
//!
//! ```text
//! P̂   = LN_p(P)
//! C_p = Attn(query = P̂ W_pq, key = X W_pk, value = X W_pv)     pack   [l, d_model], padded X masked
//! Y   = Attn(query = X W_q, key = C_p W_k, value = C_p W_v) W_o    unpack [n, d_model]
//! P'  = P + Dropout(C_p)                                           carried to the next layer
//! ```
//!
//! multi-head in both attentions (as many pack heads as unpack heads, LRA `model.py`), scaled by
//! `1/√head_dim`. `C_p` is the merged heads of the pack attention with no output projection, as in
//! the official code. With `tie_kv` one projection serves as key and value (`W_pk = W_pv`,
//! `W_k = W_v`). At the first layer (`carry = None`) `P` is the learned initial sequence
//! `[l, d_model]`, broadcast over the batch; later layers receive the previous layer's `P'`
//! through [`MixerInput::carry`] and return theirs through [`MixerOutput::carry`].
//!
//! Dynamic projection (the LRA encoder's default): a sequence with `m < l` real tokens uses only
//! the first `m` slots of `P` — the other slots are zeroed in the initial `P` and masked as keys
//! of the unpack attention (the official code slices `P` to the longest sequence of the batch
//! and masks slots `≥ m` per sequence; keeping all `l` slots and masking them is the same for
//! every real output and keeps the carry `[b, l, d_model]`).
//!
//! Luna implements [`TokenMixer`] directly: it is not one attention over a single projected
//! `(Q, K, V)` triple — it has two attentions with their own projections, an extra input `P` and
//! carried state — so it has no [`super::AttentionCore`] (`attention_core() = None`), and it is
//! not an approximation of softmax attention (no error-against-softmax test applies).
//!
//! Checked against XuezheMax/fairseq-apollo (commit 3644d20, LRA code as of 5648724):
//! `fairseq/modules/luna_attention.py` (`LunarMultiheadAttention`: `_compute_pcontext` for the
//! pack, `forward` for the unpack, `reset_parameters`), `fairseq/modules/luna_sentence_encoder.py`
//! (`LunaSentenceEncoderLayer.forward`: residual and layer norms of `P`),
//! `fairseq/models/lra/luna_lra_encoder.py` (initial `P` ~ N(0, d_model^-1/2), dynamic
//! projection), `fairseq/models/lra/model.py` (`tie_kv=getattr(args, 'tie_kv', False)`,
//! `num_projected_attention_heads = encoder_attention_heads`) and `examples/luna/README.lra.md`.
//!
//! Complexity per layer: O(n·l·d_model) time, O(n·l) memory per head, plus O(l·d_model²) for the
//! projections of `P`.
//!
//! Deviations, and why:
//! - Normalisation: the LRA Luna layers are post-LN (`normalize_before=False`,
//!   `P' = LN_p(P + Dropout(C_p))`, with a LayerNorm on the embeddings and the initial `P`). This
//!   repository's encoder is pre-LN for every mixer (the mixer receives `LN(X)` and the block adds
//!   the residual), so `P` takes the official pre-LN path (`normalize_before=True`): `LN_p`
//!   before the pack, residual without a norm after. The final `proj_layer_norm` of the pre-LN
//!   encoder only matters when `P` feeds the classifier (`--use-p`), which it does not here.
//! - Dropout: the model hands mixers one rate (`MixerDims::dropout`, the attention dropout); it
//!   is used on both attention probability tensors and on `C_p` before the residual (the
//!   official code uses `--dropout` there). The official encoder also applies embedding dropout
//!   to the initial `P`; that is left out (the encoder owns embedding dropout here).
//! - Init: weights as `LunarMultiheadAttention.reset_parameters` (Xavier-uniform, gain 1/√2 for
//!   the query/key/value projections, gain 1 and zero bias for the output projection; other
//!   biases PyTorch's default U(±1/√d)). The LRA ListOps and Text runs pass `--apply-bert-init`
//!   (all weights N(0, 0.02)); the Retrieval, Image and Pathfinder architectures do not.
//! - The causal (decoder) variant is not implemented.

use std::f64::consts::FRAC_1_SQRT_2;

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::common::projection::{merge_heads, split_heads};
use super::common::reference::{attention_probs, key_padding_bias};
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer, at_least_one};

use crate::folded_linear::FoldedLinear;
use crate::layer_norm::{DEFAULT_EPSILON, LayerNorm};

/// Settings of [`LunaAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LunaConfig {
    /// Length `l` of the projected sequence `P`. Default: 256 (Luna-256, the paper's best LRA
    /// average; `examples/luna/README.lra.md` runs `plen` 16, 128 or 256).
    pub projection_length: usize,
    /// One projection for keys and values in each attention (`W_pk = W_pv`, `W_k = W_v`).
    /// Default: false (the LRA model passes `tie_kv=getattr(args, 'tie_kv', False)` and defines
    /// no such argument; the module default and the BERT/MT models tie them).
    pub tie_kv: bool,
    /// A sequence with `m < l` real tokens uses only the first `m` slots of `P`. Default: true
    /// (`LunaLRAEncoder(dynamic_projection=True)`, not overridden by the LRA model).
    pub dynamic_projection: bool,
}

impl Default for LunaConfig {
    fn default() -> Self {
        Self {
            projection_length: 256,
            tie_kv: false,
            dynamic_projection: true,
        }
    }
}

impl MixerSpec for LunaConfig {
    type Mixer = LunaAttention;
    const SUMMARY: &'static str =
        "Luna: pack tokens into l slots carried across layers, unpack by attending to them";

    fn caps(&self) -> Caps {
        Caps::WITHOUT_CORE
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        at_least_one("projection_length", self.projection_length)?;
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> LunaAttention {
        let d = dims.d_model;
        let input = || projection(d, FRAC_1_SQRT_2, false, device);
        let untied = || (!self.tie_kv).then(input);
        LunaAttention {
            projected: Initializer::Normal {
                mean: 0.0,
                std: (d as f64).powf(-0.5),
            }
            .init([self.projection_length, d], device),
            projected_norm: LayerNorm::new(d, DEFAULT_EPSILON, device),
            pack_query: input(),
            pack_key: input(),
            pack_value: untied(),
            query: input(),
            unpack_key: input(),
            unpack_value: untied(),
            output: projection(d, 1.0, true, device),
            dropout: DropoutConfig::new(dims.dropout).init(),
            n_heads: dims.n_heads,
            dynamic_projection: self.dynamic_projection,
        }
    }
}

/// `d → d` linear layer with Xavier-uniform weights; zero bias or PyTorch's default U(±1/√d).
fn projection(d: usize, gain: f64, zero_bias: bool, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(d, d)
        .with_initializer(Initializer::XavierUniform { gain })
        .init(device);
    let bound = 1.0 / (d as f64).sqrt();
    let bias = if zero_bias {
        Initializer::Zeros
    } else {
        Initializer::Uniform {
            min: -bound,
            max: bound,
        }
    };
    linear.bias = Some(bias.init([d], device));
    linear
}

/// Luna's nested pack/unpack attention with its own projections and initial `P`.
#[derive(Module, Debug)]
pub struct LunaAttention {
    /// Initial projected sequence `P` `[l, d_model]`, used when no carry comes in.
    projected: Param<Tensor<2>>,
    /// `LN_p`, normalising `P` before the pack (`self_atten_proj_layer_norm`).
    projected_norm: LayerNorm,
    /// Pack queries from `P` (`pq_proj`).
    pack_query: Linear,
    /// Pack keys from `X` (`pk_proj`; `pc_proj`, also the values, when tied).
    pack_key: Linear,
    /// Pack values from `X` (`pv_proj`); `None` when tied to `pack_key`.
    pack_value: Option<Linear>,
    /// Unpack queries from `X` (`q_proj`).
    query: Linear,
    /// Unpack keys from the packed `C_p` (`k_proj`; `c_proj` when tied).
    unpack_key: Linear,
    /// Unpack values from `C_p` (`v_proj`); `None` when tied to `unpack_key`.
    unpack_value: Option<Linear>,
    /// Output projection of the unpacked heads (`out_proj`).
    output: Linear,
    dropout: Dropout,
    n_heads: usize,
    dynamic_projection: bool,
}

impl LunaAttention {
    /// `[b, l]`, `true` at slots of `P` a sequence does not use (dynamic projection: slot `j`
    /// of a sequence with `m` real tokens is unused when `j ≥ m`); `None` when all are used.
    fn unused_slots(
        &self,
        pad_mask: Option<&Tensor<2, Bool>>,
        [batch, seq]: [usize; 2],
        length: usize,
        device: &Device,
    ) -> Option<Tensor<2, Bool>> {
        if !self.dynamic_projection {
            return None;
        }
        let slots = Tensor::<1, Int>::arange(0..length as i64, device)
            .reshape([1, length])
            .expand([batch, length]);
        match pad_mask {
            Some(mask) => {
                let real = mask.clone().bool_not().int().sum_dim(1); // [b, 1]
                Some(slots.greater_equal(real.expand([batch, length])))
            }
            None if seq < length => Some(slots.greater_equal_elem(seq as i64)),
            None => None,
        }
    }

    /// Pack: `P̂` `[b, l, d]` attends to the real tokens of `x` `[b, n, d]` → `C_p` `[b, l, d]`.
    fn pack(&self, p: Tensor<3>, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let h = self.n_heads;
        let key = self.pack_key.forward_folded(x.clone());
        let value = match &self.pack_value {
            Some(value) => value.forward_folded(x),
            None => key.clone(),
        };
        let probs = attention_probs(
            split_heads(self.pack_query.forward_folded(p), h),
            split_heads(key, h),
            pad_mask.map(key_padding_bias),
        ); // [b, h, l, n]
        merge_heads(self.dropout.forward(probs).matmul(split_heads(value, h)))
    }

    /// Unpack: `x` `[b, n, d]` attends to the used slots of `packed` `[b, l, d]` → `[b, n, d]`.
    fn unpack(
        &self,
        x: Tensor<3>,
        packed: Tensor<3>,
        unused_slots: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let h = self.n_heads;
        let key = self.unpack_key.forward_folded(packed.clone());
        let value = match &self.unpack_value {
            Some(value) => value.forward_folded(packed),
            None => key.clone(),
        };
        let probs = attention_probs(
            split_heads(self.query.forward_folded(x), h),
            split_heads(key, h),
            unused_slots.map(key_padding_bias),
        ); // [b, h, n, l]
        let context = self.dropout.forward(probs).matmul(split_heads(value, h)); // [b, h, n, dh]
        self.output.forward_folded(merge_heads(context))
    }
}

impl TokenMixer for LunaAttention {
    /// # Shapes
    /// - `input.x`: `[b, n, d_model]`, `input.pad_mask`: `[b, n]`, `input.carry`: `[b, l, d_model]`
    /// - output `x`: `[b, n, d_model]`, `carry`: `[b, l, d_model]` (the packed sequence `P'`)
    ///
    /// # Panics
    /// If the carried state is not `[b, l, d_model]`.
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let MixerInput { x, pad_mask, carry } = input;
        let [batch, seq, d_model] = x.dims();
        let device = x.device();
        let length = self.projected.dims()[0];
        let unused = self.unused_slots(pad_mask.as_ref(), [batch, seq], length, &device);
        let p = match carry {
            Some(p) => {
                assert_eq!(
                    p.dims(),
                    [batch, length, d_model],
                    "luna: the carried sequence must be [batch, projection_length, d_model]"
                );
                p
            }
            None => {
                let p = self
                    .projected
                    .val()
                    .reshape([1, length, d_model])
                    .expand([batch, length, d_model]);
                match &unused {
                    Some(unused) => {
                        p * unused
                            .clone()
                            .bool_not()
                            .float()
                            .reshape([batch, length, 1])
                    }
                    None => p,
                }
            }
        }; // [b, l, d]
        let packed = self.pack(self.projected_norm.forward(p.clone()), x.clone(), pad_mask);
        MixerOutput {
            x: self.unpack(x, packed.clone(), unused),
            carry: Some(p + self.dropout.forward(packed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::mixer::common::reference::softmax_attention;
    use crate::mixer::common::testing::pad_mask;

    const HEADS: usize = 2;
    const D_MODEL: usize = 16;

    fn luna(config: LunaConfig, device: &Device) -> LunaAttention {
        let dims = MixerDims::new(D_MODEL, HEADS, 64);
        device.seed(0);
        crate::init_now(config.init(&dims, device))
    }

    fn config(projection_length: usize, tie_kv: bool, dynamic_projection: bool) -> LunaConfig {
        LunaConfig {
            projection_length,
            tie_kv,
            dynamic_projection,
        }
    }

    fn input(device: &Device, seed: u64, seq: usize) -> Tensor<3> {
        device.seed(seed);
        Tensor::random([2, seq, D_MODEL], Distribution::Normal(0.0, 1.0), device)
    }

    fn run(
        luna: &LunaAttention,
        x: Tensor<3>,
        mask: Tensor<2, Bool>,
        carry: Option<Tensor<3>>,
    ) -> MixerOutput {
        luna.forward(MixerInput::new(x).pad_mask(mask).carry(carry))
    }

    fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
        let diff = (a - b).abs().max().into_scalar::<f32>();
        assert!(diff <= 1e-5, "{what}: max abs difference {diff}");
    }

    /// Every variant: short/long `P`, tied/untied K=V, static/dynamic projection.
    fn variants() -> Vec<LunaConfig> {
        let mut all = vec![LunaConfig::default()];
        for length in [1, 16] {
            for tie in [false, true] {
                for dynamic in [false, true] {
                    all.push(config(length, tie, dynamic));
                }
            }
        }
        all
    }

    #[test]
    fn shapes_at_lengths_that_are_not_powers_of_two() {
        let device = Device::flex();
        for (seq, real) in [(23, 17), (50, 37)] {
            for config in variants() {
                let length = config.projection_length;
                let luna = luna(config, &device);
                let first = run(
                    &luna,
                    input(&device, 1, seq),
                    pad_mask(&device, seq, real),
                    None,
                );
                let carry = first.carry.expect("luna returns its packed sequence");
                assert_eq!(first.x.dims(), [2, seq, D_MODEL]);
                assert_eq!(carry.dims(), [2, length, D_MODEL]);
                let second = run(
                    &luna,
                    input(&device, 2, seq),
                    pad_mask(&device, seq, real),
                    Some(carry),
                );
                assert_eq!(second.x.dims(), [2, seq, D_MODEL]);
                assert_eq!(second.carry.unwrap().dims(), [2, length, D_MODEL]);
                assert!(second.x.is_finite().all().into_scalar::<bool>());
            }
        }
    }

    #[test]
    fn padded_inputs_change_neither_real_outputs_nor_the_carry() {
        let device = Device::flex();
        for (seq, real) in [(23, 17), (50, 37)] {
            let mask = pad_mask(&device, seq, real);
            let x = input(&device, 1, seq);
            let pad3 = mask.clone().reshape([2, seq, 1]).expand([2, seq, D_MODEL]);
            let garbage = x.clone().mask_where(pad3, input(&device, 3, seq) * 1000.0);
            for config in variants() {
                let luna = luna(config, &device);
                let previous = run(&luna, input(&device, 2, seq), mask.clone(), None).carry;
                for carry in [None, previous] {
                    let a = run(&luna, x.clone(), mask.clone(), carry.clone());
                    let b = run(&luna, garbage.clone(), mask.clone(), carry);
                    let real_rows = |out: Tensor<3>| {
                        [
                            out.clone().narrow(0, 0, 1),
                            out.narrow(0, 1, 1).narrow(1, 0, real),
                        ]
                    };
                    for (a, b) in real_rows(a.x).into_iter().zip(real_rows(b.x)) {
                        assert_close(a, b, "outputs at real positions");
                    }
                    assert_close(a.carry.unwrap(), b.carry.unwrap(), "carried P'");
                }
            }
        }
    }

    #[test]
    fn the_carried_sequence_changes_the_next_layer() {
        let device = Device::flex();
        let seq = 23;
        let mask = pad_mask(&device, seq, 17);
        for config in variants() {
            let length = config.projection_length;
            let luna = luna(config, &device);
            let first = run(&luna, input(&device, 1, seq), mask.clone(), None);
            let carry = first.carry.unwrap();
            assert_eq!(carry.dims(), [2, length, D_MODEL]);
            let x = input(&device, 2, seq);
            let with_carry = run(&luna, x.clone(), mask.clone(), Some(carry)).x;
            let fresh = run(&luna, x, mask.clone(), None).x;
            let diff = (with_carry - fresh).abs().max().into_scalar::<f32>();
            assert!(diff > 1e-3, "carry had no effect (max difference {diff})");
        }
    }

    #[test]
    fn carry_is_p_plus_the_pack_attention_of_normalised_p_over_real_tokens() {
        // P' − P = merge(softmax(LN_p(P) W_pq (X W_pk)ᵀ/√d) X W_pv), padded tokens excluded,
        // written with the reference softmax attention (dropout 0, static projection).
        let device = Device::flex();
        let (seq, real) = (23, 17);
        let luna = luna(config(16, false, false), &device);
        let x = input(&device, 1, seq);
        let mask = pad_mask(&device, seq, real);
        let carry = run(&luna, x.clone(), mask.clone(), None).carry.unwrap();
        let p = luna
            .projected
            .val()
            .reshape([1, 16, D_MODEL])
            .expand([2, 16, D_MODEL]);
        let pack_value = luna.pack_value.as_ref().unwrap();
        let expected = merge_heads(softmax_attention(
            split_heads(
                luna.pack_query
                    .forward_folded(luna.projected_norm.forward(p.clone())),
                HEADS,
            ),
            split_heads(luna.pack_key.forward_folded(x.clone()), HEADS),
            split_heads(pack_value.forward_folded(x), HEADS),
            Some(mask),
        ));
        (carry - p)
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn one_slot_gives_every_position_the_same_output() {
        // With l = 1 the unpack softmax has a single key: weight 1 for every query, so every
        // position (padded or not) receives the same vector W_o (C_p W_v).
        let device = Device::flex();
        let seq = 23;
        for tie in [false, true] {
            let luna = luna(config(1, tie, false), &device);
            let out = run(
                &luna,
                input(&device, 1, seq),
                pad_mask(&device, seq, 17),
                None,
            )
            .x;
            let first = out.clone().narrow(1, 0, 1).expand([2, seq, D_MODEL]);
            assert_close(out, first, "all positions");
        }
    }

    #[test]
    fn dynamic_projection_equals_truncating_p_to_the_real_length() {
        // The official encoder slices P to the sequence length (per batch, masking the rest);
        // masking unused slots must give the same real outputs and the same used slots of P'.
        let device = Device::flex();
        let (seq, length) = (12, 16);
        let full = luna(config(length, false, true), &device);
        let x = input(&device, 1, seq);
        let mask = pad_mask(&device, seq, 7);
        let both = run(&full, x.clone(), mask.clone(), None);
        let next = run(
            &full,
            input(&device, 2, seq),
            mask.clone(),
            both.carry.clone(),
        );
        for (row, real) in [(0, seq), (1, 7)] {
            let mut short = full.clone();
            short.projected = Param::from_tensor(full.projected.val().narrow(0, 0, real));
            short.dynamic_projection = false;
            let row_mask = mask.clone().narrow(0, row, 1);
            let alone = run(&short, x.clone().narrow(0, row, 1), row_mask.clone(), None);
            let used = |out: &MixerOutput| {
                out.carry
                    .clone()
                    .unwrap()
                    .narrow(0, row, 1)
                    .narrow(1, 0, real)
            };
            assert_close(
                both.x.clone().narrow(0, row, 1).narrow(1, 0, real),
                alone.x.clone().narrow(1, 0, real),
                "first layer, real outputs",
            );
            assert_close(
                used(&both),
                alone.carry.clone().unwrap(),
                "first layer, used slots",
            );
            // Second layer, carrying only the used slots.
            let alone_next = run(
                &short,
                input(&device, 2, seq).narrow(0, row, 1),
                row_mask,
                alone.carry,
            );
            assert_close(
                next.x.clone().narrow(0, row, 1).narrow(1, 0, real),
                alone_next.x.narrow(1, 0, real),
                "second layer, real outputs",
            );
        }
    }
}
