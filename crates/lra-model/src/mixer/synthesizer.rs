//! Synthesizer attention ([Synthesizer: Rethinking Self-Attention in Transformer
//! Models](https://arxiv.org/abs/2005.00743), Tay, Bahri, Metzler, Juan, Zhao, Zheng, 2021), as
//! the LRA "Synthesizer" baseline: the attention logits are *synthesised* instead of (or besides)
//! being computed from query-key dot products. Values still come from the input's V projection.
//!
//! Official code checked: google-research/long-range-arena at commit `cd31e5c`,
//! `lra_benchmarks/models/synthesizer/synthesizer_attention.py` (attention) and `synthesizer.py`
//! (blocks, encoder defaults), plus the task configs `*/configs/synthesizer_base.py`.
//!
//! Variants (the LRA code's `synthesizer_mode` × `ignore_dot_product`):
//! - `dense`: a per-token two-layer MLP gives each query its row of logits,
//!   `relu(x_i W1 + b1)` split into heads, then a `head_dim → max_len` layer shared by the heads.
//!   Row `i` depends on token `i` only.
//! - `random`: a `[heads, max_len, max_len]` logits matrix independent of the input, trained or,
//!   with `fixed = true`, frozen at its random initial value (the paper's "fixed random").
//! - `factorized_random`: the random matrix as the product of `[heads, max_len, k]` and
//!   `[heads, k, max_len]` factors.
//! - `dense_plus_vanilla`, `random_plus_vanilla`: the synthetic logits plus the dot-product logits
//!   `q·k/√head_dim`, one softmax over the sum (the LRA code adds them unweighted).
//!
//! Default `random_plus_vanilla`: what every LRA task actually ran (see [`SynthesizerConfig`]).
//!
//! Complexity: like softmax attention, O(n²·d) time and O(h·n²) memory for the weights (the
//! dense MLP adds O(n·d²) time; the random variants skip the q·kᵀ product unless mixed with
//! it). Parameters: `random` adds h·L² per layer (L = `max_len`; 64 M for LRA Retrieval's
//! L = 4000, h = 4), `factorized_random` 2·h·L·k, `dense` d² + d + (d/h + 1)·L.
//!
//! Fixed length: the synthetic matrices are `max_len` wide, taken from the model's
//! [`MixerDims::max_len`]. A shorter input of `n` tokens uses the first `n` rows and columns (the
//! LRA code slices `[:qlength, :kvlength]` the same way); a longer one panics.
//!
//! Deviations from the LRA code, and why:
//! - Padding: LRA applies no padding mask at all when `ignore_dot_product` is set
//!   (`synthesizer_attention.py:390`), so its pure synthesizers attend to padding. We always add
//!   [`PAD_BIAS`](super::reference::PAD_BIAS) to padded keys before the softmax (the mixer
//!   contract: padding never changes real outputs). Padded queries are not masked (their outputs
//!   are ignored downstream); LRA's mixtures mask query×key pairs with -1e10.
//! - Dense heads: LRA turns `[b, n, h, L]` into `[b, h, n, L]` with a `reshape`
//!   (`synthesizer_attention.py:333`, marked "TODO check if this reshape is needed"), which mixes
//!   tokens and heads when h > 1. We transpose, so query `i` of every head is synthesised from
//!   token `i`, as the paper defines it.
//! - Initialisation and biases: LRA's block uses `xavier_uniform` kernels and `bias=False` for every
//!   dense layer (`synthesizer.py:74-76`). The Q/K/V/output and dense-synthesizer layers here are
//!   Burn `Linear`s with their default init and biases, like every other mixer's projections in
//!   this workspace (the paper's dense MLP has biases). The random matrices keep LRA's
//!   `xavier_uniform` bounds: ±√(3/(h·L)) for `[h, L, L]`, ±√(6/(h·(L+k))) for both factors (JAX
//!   fans of a 3-D kernel: in = h·shape[-2], out = h·shape[-1]).
//! - `fixed` is not in the LRA code (its matrices are always `self.param`); it is the paper's fixed
//!   random variant. The frozen matrix is a constant tensor, not a parameter, so it is not written
//!   to checkpoints: it is redrawn from the seed when the model is built, as the trainer does
//!   before restoring a checkpoint.
//! - Not provided: factorized dense (the paper has it, the LRA code does not: its `'dense'` branch
//!   is plain dense), and combinations the LRA mode strings allow but no LRA config uses
//!   (`dense+random`, factorized random with dot product).
//!
//! Not an [`AttentionCore`](super::AttentionCore): the dense logits need the token states, not only Q/K/V, and the
//! method is not an approximation of softmax attention.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::linear;
use burn::tensor::{Bool, Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::common::projection::{merge_heads, split_heads};
use super::common::reference::key_padding_bias;
use super::{Caps, MixerDims, MixerInput, MixerOutput, MixerSpec, TokenMixer};

use crate::folded_linear::FoldedLinear;

/// Which synthetic attention, and whether dot-product logits are added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynthesizerVariant {
    /// Per-token MLP logits (LRA `synthesizer_mode = 'dense'`, `ignore_dot_product = True`).
    Dense,
    /// Input-independent `[h, L, L]` logits (LRA `'random'`, `ignore_dot_product = True`).
    Random,
    /// Random logits factorised as `[h, L, k]·[h, k, L]` (LRA `'factorized_random'`).
    FactorizedRandom,
    /// Dense plus dot-product logits (LRA `'dense'`, `ignore_dot_product = False`).
    DensePlusVanilla,
    /// Random plus dot-product logits (LRA `'random'`, `ignore_dot_product = False`).
    RandomPlusVanilla,
}

impl SynthesizerVariant {
    /// Whether the query-key dot product is added to the synthetic logits.
    pub fn plus_vanilla(self) -> bool {
        matches!(self, Self::DensePlusVanilla | Self::RandomPlusVanilla)
    }

    /// Whether the synthetic logits are a random matrix (so `fixed` applies).
    pub fn is_random(self) -> bool {
        matches!(
            self,
            Self::Random | Self::FactorizedRandom | Self::RandomPlusVanilla
        )
    }

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Random => "random",
            Self::FactorizedRandom => "factorized_random",
            Self::DensePlusVanilla => "dense_plus_vanilla",
            Self::RandomPlusVanilla => "random_plus_vanilla",
        }
    }
}

/// Settings of [`SynthesizerAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthesizerConfig {
    /// Default: `random_plus_vanilla`. LRA `SynthesizerEncoder` defaults to
    /// `synthesizer_mode='random'`, `ignore_dot_product=False` (`synthesizer.py:117-118`); the
    /// image configs set the same mode (`image/configs/{cifar10,pathfinder32}/synthesizer_base.py:23`),
    /// ListOps and Matching keep the defaults, and the text config's top-level
    /// `ignore_dot_product`/`synthesizer_mode`/`k` (`text_classification/configs/synthesizer_base.py:23-25`)
    /// never reach the model, since `text_classification/train.py:175-188` passes only
    /// `config.model`. So every reported LRA Synthesizer number is random + dot product.
    pub variant: SynthesizerVariant,
    /// Freeze the random matrix (`random`, `factorized_random`, `random_plus_vanilla` only).
    /// Default: false, LRA trains it (`self.param`, `synthesizer_attention.py:292-306`).
    pub fixed: bool,
    /// Rank of `factorized_random`. Default: 32 (`synthesizer_attention.py:199`; the encoder's
    /// own `k` is never passed down, `synthesizer.py:67-83`).
    pub k: usize,
}

impl Default for SynthesizerConfig {
    fn default() -> Self {
        Self {
            variant: SynthesizerVariant::RandomPlusVanilla,
            fixed: false,
            k: 32,
        }
    }
}

impl MixerSpec for SynthesizerConfig {
    type Mixer = SynthesizerAttention;
    const SUMMARY: &'static str =
        "Synthesizer: dense/random synthetic attention logits, optionally plus q·k (LRA baseline)";

    fn caps(&self) -> Caps {
        Caps {
            qkv_width: true,
            projection_bias: true,
            ..Caps::WITHOUT_CORE
        }
    }

    fn validate(&self, dims: &MixerDims) -> Result<(), String> {
        let variant = self.variant.name();
        if dims.max_len == 0 {
            return Err(format!(
                "variant = \"{variant}\" needs the model's max_len ≥ 1: its attention matrices \
                 are max_len wide"
            ));
        }
        if self.fixed && !self.variant.is_random() {
            return Err(format!(
                "fixed = true needs a random variant (random, factorized_random, \
                 random_plus_vanilla), got variant = \"{variant}\", which has no random matrix"
            ));
        }
        if self.variant == SynthesizerVariant::FactorizedRandom
            && !(1..=dims.max_len).contains(&self.k)
        {
            return Err(format!(
                "k = {} must be between 1 and the model's max_len = {} (rank of the factorized \
                 random matrix)",
                self.k, dims.max_len
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> SynthesizerAttention {
        let (d_model, qkv, heads, len) = (dims.d_model, dims.qkv_dim, dims.n_heads, dims.max_len);
        let linear = |d_in, d_out| LinearConfig::new(d_in, d_out).init(device);
        let synthetic = match self.variant {
            SynthesizerVariant::Dense | SynthesizerVariant::DensePlusVanilla => {
                Synthetic::Dense(DenseSynthesizer {
                    hidden: linear(d_model, qkv),
                    logits: linear(dims.head_dim(), len),
                })
            }
            SynthesizerVariant::Random | SynthesizerVariant::RandomPlusVanilla => {
                let bound = (3.0 / (heads * len) as f64).sqrt();
                Synthetic::Random(RandomMatrix::draw(
                    [heads, len, len],
                    bound,
                    self.fixed,
                    device,
                ))
            }
            SynthesizerVariant::FactorizedRandom => {
                let bound = (6.0 / (heads * (len + self.k)) as f64).sqrt();
                Synthetic::FactorizedRandom(FactorizedRandom {
                    left: RandomMatrix::draw([heads, len, self.k], bound, self.fixed, device),
                    right: RandomMatrix::draw([heads, self.k, len], bound, self.fixed, device),
                })
            }
        };
        let projection = |d_in, d_out| {
            LinearConfig::new(d_in, d_out)
                .with_bias(dims.projection_bias)
                .init(device)
        };
        SynthesizerAttention {
            synthetic,
            dot_product: self.variant.plus_vanilla().then(|| QueryKey {
                query: projection(d_model, qkv),
                key: projection(d_model, qkv),
            }),
            value: projection(d_model, qkv),
            output: projection(qkv, d_model),
            dropout: DropoutConfig::new(dims.dropout).init(),
            n_heads: heads,
            max_len: len,
        }
    }
}

/// Multi-head Synthesizer attention.
#[derive(Module, Debug)]
pub struct SynthesizerAttention {
    synthetic: Synthetic,
    /// Q and K projections of the `*_plus_vanilla` variants.
    dot_product: Option<QueryKey>,
    value: Linear,
    output: Linear,
    dropout: Dropout,
    n_heads: usize,
    max_len: usize,
}

/// Where the synthetic logits come from.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // one per layer, built once
enum Synthetic {
    Dense(DenseSynthesizer),
    Random(RandomMatrix),
    FactorizedRandom(FactorizedRandom),
}

/// `relu(x W1 + b1)` split into heads, then `W2 + b2` (`head_dim → max_len`, shared by heads).
#[derive(Module, Debug)]
struct DenseSynthesizer {
    hidden: Linear,
    logits: Linear,
}

/// `left · right`, `[h, L, k]·[h, k, L]`.
#[derive(Module, Debug)]
struct FactorizedRandom {
    left: RandomMatrix,
    right: RandomMatrix,
}

#[derive(Module, Debug)]
struct QueryKey {
    query: Linear,
    key: Linear,
}

/// A random `[h, rows, cols]` matrix: a trained parameter, or a constant tensor (Burn treats a
/// plain tensor field as a constant: no gradient, not seen by optimisers or checkpoints).
#[derive(Module, Debug)]
enum RandomMatrix {
    Learned(Param<Tensor<3>>),
    Fixed(Tensor<3>),
}

impl RandomMatrix {
    /// Draws `U(-bound, bound)` now from the device RNG, so learned and fixed start equal.
    fn draw(shape: [usize; 3], bound: f64, fixed: bool, device: &Device) -> Self {
        let value = Tensor::random(shape, Distribution::Uniform(-bound, bound), device);
        if fixed {
            Self::Fixed(value)
        } else {
            Self::Learned(Param::from_tensor(value))
        }
    }

    fn val(&self) -> Tensor<3> {
        match self {
            Self::Learned(param) => param.val(),
            Self::Fixed(value) => value.clone(),
        }
    }
}

impl SynthesizerAttention {
    /// The attention probabilities, before dropout, that [`TokenMixer::forward`] applies to the
    /// values: `softmax(synthetic [+ q·kᵀ/√head_dim] + padding bias)` over the keys.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]` with `seq <= max_len`; `pad_mask`: `[batch, seq]`
    /// - output: `[batch, heads, seq, seq]`
    pub fn attention_weights(&self, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>) -> Tensor<4> {
        let [batch, seq, _] = x.dims();
        let mut logits = self.synthetic_logits(x.clone()); // [b or 1, h, n, n]
        if let Some(QueryKey { query, key }) = &self.dot_product {
            let q = split_heads(query.forward_folded(x.clone()), self.n_heads);
            let k = split_heads(key.forward_folded(x), self.n_heads);
            let head_dim = q.dims()[3];
            logits = q.matmul(k.swap_dims(2, 3)) / (head_dim as f64).sqrt() + logits;
        }
        if let Some(mask) = pad_mask {
            logits = logits + key_padding_bias(mask);
        }
        softmax(logits.expand([batch, self.n_heads, seq, seq]), 3)
    }

    /// The synthetic logits: `[batch, h, n, n]` for `dense`, `[1, h, n, n]` for random variants.
    fn synthetic_logits(&self, x: Tensor<3>) -> Tensor<4> {
        let seq = x.dims()[1];
        assert!(
            seq <= self.max_len,
            "synthesizer: sequence of {seq} tokens is longer than its max_len {}",
            self.max_len
        );
        match &self.synthetic {
            Synthetic::Dense(dense) => {
                let hidden = split_heads(relu(dense.hidden.forward_folded(x)), self.n_heads);
                // Only the first `seq` output columns: logits for the keys that exist.
                let weight = dense.logits.weight.val().narrow(1, 0, seq);
                let bias = dense
                    .logits
                    .bias
                    .as_ref()
                    .map(|b| b.val().narrow(0, 0, seq));
                linear(hidden, weight, bias)
            }
            Synthetic::Random(matrix) => matrix
                .val()
                .narrow(1, 0, seq)
                .narrow(2, 0, seq)
                .unsqueeze_dim(0),
            Synthetic::FactorizedRandom(factors) => {
                let left = factors.left.val().narrow(1, 0, seq); // [h, n, k]
                let right = factors.right.val().narrow(2, 0, seq); // [h, k, n]
                left.matmul(right).unsqueeze_dim(0)
            }
        }
    }
}

impl TokenMixer for SynthesizerAttention {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let MixerInput { x, pad_mask, carry } = input;
        let v = split_heads(self.value.forward_folded(x.clone()), self.n_heads); // [b, h, n, dh]
        let probs = self.attention_weights(x, pad_mask); // [b, h, n, n]
        let context = self.dropout.forward(probs).matmul(v);
        MixerOutput {
            x: self.output.forward_folded(merge_heads(context)),
            carry,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::ModuleVisitor;
    use burn::optim::GradientsParams;
    use burn::tensor::Tolerance;

    use super::*;
    use crate::mixer::common::reference::{PAD_BIAS, attention_probs};
    use crate::mixer::common::testing::padded_from;

    const HEADS: usize = 2;
    const D_MODEL: usize = 8;
    const MAX_LEN: usize = 12;

    fn dims() -> MixerDims {
        MixerDims::new(D_MODEL, HEADS, MAX_LEN)
    }

    fn build(variant: SynthesizerVariant, fixed: bool, device: &Device) -> SynthesizerAttention {
        device.seed(1);
        let config = SynthesizerConfig {
            variant,
            fixed,
            k: 3,
        };
        config.validate(&dims()).unwrap();
        crate::init_now(config.init(&dims(), device))
    }

    fn input(seed: u64, batch: usize, seq: usize, device: &Device) -> Tensor<3> {
        device.seed(seed);
        Tensor::random(
            [batch, seq, D_MODEL],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    }

    const ALL: [SynthesizerVariant; 5] = [
        SynthesizerVariant::Dense,
        SynthesizerVariant::Random,
        SynthesizerVariant::FactorizedRandom,
        SynthesizerVariant::DensePlusVanilla,
        SynthesizerVariant::RandomPlusVanilla,
    ];

    #[test]
    fn random_weights_do_not_depend_on_the_input() {
        let device = Device::flex();
        for variant in [
            SynthesizerVariant::Random,
            SynthesizerVariant::FactorizedRandom,
        ] {
            for fixed in [false, true] {
                let mixer = build(variant, fixed, &device);
                let a = mixer.attention_weights(input(2, 2, MAX_LEN, &device), None);
                let b = mixer.attention_weights(input(3, 2, MAX_LEN, &device) * 10.0, None);
                assert_eq!(a.to_data(), b.to_data(), "{variant:?} fixed={fixed}");
                // Same in every batch row, and not trivially uniform.
                let rows = a.clone().narrow(0, 0, 1) - a.clone().narrow(0, 1, 1);
                assert_eq!(rows.abs().max().into_scalar::<f32>(), 0.0);
                let spread = a.clone().max().into_scalar::<f32>() - a.min().into_scalar::<f32>();
                assert!(spread > 1e-3, "{variant:?}: weights are uniform");
            }
        }
        // With dot products, the input does matter.
        let mixer = build(SynthesizerVariant::RandomPlusVanilla, false, &device);
        let a = mixer.attention_weights(input(2, 2, MAX_LEN, &device), None);
        let b = mixer.attention_weights(input(3, 2, MAX_LEN, &device), None);
        assert_ne!(a.to_data(), b.to_data());
    }

    #[test]
    fn padded_keys_get_zero_weight_and_do_not_change_real_outputs() {
        let device = Device::flex();
        let (seq, real) = (10, [10, 6]);
        let pad = padded_from(&real, seq, &device);
        for variant in ALL {
            let mixer = build(variant, false, &device);
            let x = input(2, 2, seq, &device);
            let weights = mixer.attention_weights(x.clone(), Some(pad.clone()));
            let on_padding = weights.clone().narrow(0, 1, 1).narrow(3, 6, 4);
            assert_eq!(
                on_padding.abs().max().into_scalar::<f32>(),
                0.0,
                "{variant:?}: weight on padded keys"
            );
            weights.sum_dim(3).to_data().assert_approx_eq::<f32>(
                &Tensor::<4>::ones([2, HEADS, seq, 1], &device).to_data(),
                Tolerance::absolute(1e-5),
            );

            let pad3 = pad.clone().reshape([2, seq, 1]).expand([2, seq, D_MODEL]);
            let garbage = input(3, 2, seq, &device) * 100.0;
            let x_garbage = x.clone().mask_where(pad3, garbage);
            let run = |x: Tensor<3>| {
                mixer
                    .forward(MixerInput::new(x).pad_mask(pad.clone()))
                    .x
                    .narrow(0, 1, 1)
                    .narrow(1, 0, 6)
            };
            run(x)
                .to_data()
                .assert_approx_eq::<f32>(&run(x_garbage).to_data(), Tolerance::absolute(1e-5));
        }
    }

    /// Parameter shapes of a module.
    struct Shapes(Vec<Vec<usize>>);

    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.shape().to_vec());
        }
    }

    fn random_matrix(mixer: &SynthesizerAttention) -> Tensor<3> {
        match &mixer.synthetic {
            Synthetic::Random(matrix) => matrix.val(),
            other => panic!("not random: {other:?}"),
        }
    }

    #[test]
    fn fixed_random_matrix_is_a_constant_and_learned_one_a_trained_parameter() {
        let device = Device::flex().autodiff();
        let square = vec![HEADS, MAX_LEN, MAX_LEN];
        let x = input(2, 2, MAX_LEN, &device);
        let pad = padded_from(&[MAX_LEN, 7], MAX_LEN, &device);
        for fixed in [false, true] {
            let mixer = build(SynthesizerVariant::Random, fixed, &device);
            let mut shapes = Shapes(Vec::new());
            mixer.visit(&mut shapes);
            assert_eq!(shapes.0.contains(&square), !fixed, "fixed={fixed}");
            let loss = (mixer
                .forward(MixerInput::new(x.clone()).pad_mask(pad.clone()))
                .x
                * input(4, 2, MAX_LEN, &device))
            .sum();
            let grads = loss.backward();
            let matrix = random_matrix(&mixer);
            let grad = matrix.grad(&grads);
            if fixed {
                assert!(grad.is_none(), "a fixed matrix must not get a gradient");
                assert!(!matrix.is_require_grad());
            } else {
                let grad = grad.expect("learned matrix gets a gradient");
                assert!(grad.abs().sum().into_scalar::<f32>() > 0.0);
            }
            // Every parameter that exists is trained.
            let params = GradientsParams::from_grads(grads, &mixer);
            assert_eq!(params.len(), shapes.0.len(), "fixed={fixed}");
        }
        // Given the seed, both start from the same matrix.
        let learned = random_matrix(&build(SynthesizerVariant::Random, false, &device));
        let fixed = random_matrix(&build(SynthesizerVariant::Random, true, &device));
        assert_eq!(learned.to_data(), fixed.to_data());
        let sizes = |fixed| build(SynthesizerVariant::Random, fixed, &device).num_params();
        assert_eq!(sizes(false) - sizes(true), HEADS * MAX_LEN * MAX_LEN);
    }

    #[test]
    fn every_variant_gives_every_parameter_a_gradient() {
        let device = Device::flex().autodiff();
        let x = input(2, 2, MAX_LEN, &device).require_grad();
        let pad = padded_from(&[MAX_LEN, 7], MAX_LEN, &device);
        for variant in ALL {
            for fixed in [false, true] {
                if fixed && !variant.is_random() {
                    continue;
                }
                let mixer = build(variant, fixed, &device);
                let out = mixer.forward(MixerInput::new(x.clone()).pad_mask(pad.clone()));
                let grads = (out.x * input(4, 2, MAX_LEN, &device)).sum().backward();
                let params = GradientsParams::from_grads(grads, &mixer);
                let mut check = NonZero {
                    grads: &params,
                    seen: 0,
                };
                mixer.visit(&mut check);
                assert!(check.seen >= 2, "{variant:?}: value and output at least");
            }
        }
    }

    struct NonZero<'a> {
        grads: &'a GradientsParams,
        seen: usize,
    }

    impl ModuleVisitor for NonZero<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.seen += 1;
            let grad = self.grads.get::<D>(param.id).expect("gradient");
            assert!(
                grad.abs().sum().into_scalar::<f32>() > 0.0,
                "{:?}",
                param.shape()
            );
        }
    }

    #[test]
    fn dense_row_depends_only_on_its_own_token() {
        let device = Device::flex();
        let seq = 9;
        let mixer = build(SynthesizerVariant::Dense, false, &device);
        let x = input(2, 1, seq, &device);
        let changed = 4;
        let other = input(3, 1, 1, &device) * 5.0;
        let x2 = x
            .clone()
            .slice_assign([0..1, changed..changed + 1, 0..D_MODEL], other);
        let pad = padded_from(&[seq], seq, &device); // nothing padded, same keys
        let a = mixer.attention_weights(x, Some(pad.clone()));
        let b = mixer.attention_weights(x2, Some(pad));
        for row in 0..seq {
            let (ra, rb) = (a.clone().narrow(2, row, 1), b.clone().narrow(2, row, 1));
            if row == changed {
                assert_ne!(ra.to_data(), rb.to_data(), "row of the changed token");
            } else {
                assert_eq!(ra.to_data(), rb.to_data(), "row {row} saw token {changed}");
            }
        }
    }

    /// Head split by hand: `[1, n, d]` → `[1, h, n, dh]`.
    fn heads_of(x: Tensor<3>) -> Tensor<4> {
        let [b, n, _] = x.dims();
        x.reshape([b, n, HEADS, D_MODEL / HEADS]).swap_dims(1, 2)
    }

    #[test]
    fn mixtures_are_softmax_of_synthetic_plus_scaled_dot_product() {
        let device = Device::flex();
        let (seq, real) = (7, 5); // shorter than max_len, with padding
        let x = input(2, 1, seq, &device);
        let pad = padded_from(&[real], seq, &device);
        let pad_bias = (pad.clone().float() * PAD_BIAS).reshape([1, 1, 1, seq]);
        for variant in [
            SynthesizerVariant::RandomPlusVanilla,
            SynthesizerVariant::DensePlusVanilla,
        ] {
            let mixer = build(variant, false, &device);
            let qk = mixer.dot_product.as_ref().unwrap();
            let q = heads_of(x.clone().matmul(qk.query.weight.val().unsqueeze()))
                + heads_of(
                    qk.query
                        .bias
                        .as_ref()
                        .unwrap()
                        .val()
                        .reshape([1, 1, D_MODEL]),
                );
            let k = heads_of(x.clone().matmul(qk.key.weight.val().unsqueeze()))
                + heads_of(qk.key.bias.as_ref().unwrap().val().reshape([1, 1, D_MODEL]));
            let synthetic: Tensor<4> = match &mixer.synthetic {
                Synthetic::Random(matrix) => matrix
                    .val()
                    .slice([0..HEADS, 0..seq, 0..seq])
                    .reshape([1, HEADS, seq, seq]),
                Synthetic::Dense(dense) => {
                    let w1 = dense.hidden.weight.val().unsqueeze();
                    let b1 = dense.hidden.bias.as_ref().unwrap().val();
                    let h = relu(x.clone().matmul(w1) + b1.reshape([1, 1, D_MODEL]));
                    let w2 = dense
                        .logits
                        .weight
                        .val()
                        .slice([0..D_MODEL / HEADS, 0..seq]);
                    let b2 = dense.logits.bias.as_ref().unwrap().val().narrow(0, 0, seq);
                    heads_of(h).matmul(w2.unsqueeze()) + b2.reshape([1, 1, 1, seq])
                }
                other => panic!("{other:?}"),
            };
            // softmax((q kᵀ)/√dh + synthetic + pad) via the naive reference.
            let expected = attention_probs(q, k, Some(synthetic + pad_bias.clone()));
            let actual = mixer.attention_weights(x.clone(), Some(pad.clone()));
            actual
                .to_data()
                .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-6));
        }
    }

    #[test]
    fn shorter_inputs_use_the_leading_block_of_the_random_matrices() {
        let device = Device::flex();
        let seq = 5;
        let x = input(2, 1, seq, &device);
        let mixer = build(SynthesizerVariant::Random, false, &device);
        let expected = softmax(
            random_matrix(&mixer)
                .slice([0..HEADS, 0..seq, 0..seq])
                .unsqueeze_dim::<4>(0),
            3,
        );
        let actual = mixer.attention_weights(x.clone(), None);
        actual
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-6));

        let mixer = build(SynthesizerVariant::FactorizedRandom, false, &device);
        let Synthetic::FactorizedRandom(f) = &mixer.synthetic else {
            unreachable!()
        };
        let full = f.left.val().matmul(f.right.val()); // [h, L, L]
        let expected = softmax(
            full.slice([0..HEADS, 0..seq, 0..seq]).unsqueeze_dim::<4>(0),
            3,
        );
        mixer
            .attention_weights(x, None)
            .to_data()
            .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    #[should_panic(expected = "longer than its max_len")]
    fn longer_inputs_than_max_len_panic() {
        let device = Device::flex();
        let mixer = build(SynthesizerVariant::Random, false, &device);
        mixer.forward(MixerInput::new(input(2, 1, MAX_LEN + 1, &device)));
    }

    #[test]
    fn validation_names_the_field() {
        let dims = dims();
        let fixed_dense = SynthesizerConfig {
            variant: SynthesizerVariant::Dense,
            fixed: true,
            ..Default::default()
        };
        assert!(fixed_dense.validate(&dims).unwrap_err().contains("fixed"));
        for k in [0, MAX_LEN + 1] {
            let factorized = SynthesizerConfig {
                variant: SynthesizerVariant::FactorizedRandom,
                k,
                ..Default::default()
            };
            assert!(factorized.validate(&dims).unwrap_err().starts_with("k = "));
        }
        // k matters only for the factorized variant.
        let random = SynthesizerConfig {
            k: 0,
            ..Default::default()
        };
        assert!(random.validate(&dims).is_ok());
        let zero_len = MixerDims { max_len: 0, ..dims };
        assert!(
            SynthesizerConfig::default()
                .validate(&zero_len)
                .unwrap_err()
                .contains("max_len")
        );
    }

    #[test]
    fn variant_names_parse_and_unknown_ones_are_rejected() {
        for variant in ALL {
            let parsed: SynthesizerConfig =
                toml::from_str(&format!("variant = \"{}\"", variant.name())).unwrap();
            assert_eq!(parsed.variant, variant);
        }
        assert!(toml::from_str::<SynthesizerConfig>("variant = \"factorized_dense\"").is_err());
        assert!(toml::from_str::<SynthesizerConfig>("heads = 2").is_err());
    }
}
