//! The model: embeddings + encoder ([`Encoder`]), pooling, and a head. Heads: a two-layer MLP
//! (PyTorch LRA `SCHead`, JAX LRA classifier head) or the BERT pooler (dense + tanh on the pooled
//! vector, dropout, then a linear layer: Hugging Face `BertForSequenceClassification`); for pair
//! tasks a dual encoder: both documents go through the same encoder and the head classifies
//! `[a, b, a·b, a − b]` (PyTorch LRA `SCHeadDual`, JAX LRA `ClassifierHeadDual` with
//! `interaction = "NLI"`, `lra_benchmarks/matching/`). The output width is the objective's:
//! class logits, or one value for regression.
//!
//! Deviation: the JAX dual head has a second hidden layer (`mlp_dim → mlp_dim / 2`); this one
//! keeps the PyTorch LRA head (one hidden layer) for both presets.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu, Tanh};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::encoder::{Encoder, EncoderConfig};
use crate::folded_linear::FoldedLinear;
use crate::init::{DenseInit, jax_lra_dense};

/// How the sequence is reduced to one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// A learned CLS vector is prepended; its final state is used (JAX LRA).
    Cls,
    /// Mean over real tokens (padding excluded).
    Mean,
    /// Mean over all positions, the padded positions' final states included (the JAX LRA code's
    /// `jnp.mean(encoded, axis=1)`, `common_layers.py:183`).
    MeanWithPadding,
    /// The padded positions' states zeroed, then the mean over all positions: the real tokens'
    /// sum divided by the padded length (the PyTorch LRA code, mlpen and Skyformer
    /// `model_transformer.py`: `self.norm(X) * mask[:, :, None]`, then `mean(dim = 1)`).
    MeanWithZeroedPadding,
    /// The first token's final state: a real `[CLS]`/`<s>` token the tokenizer put there
    /// (BERT, RoBERTa).
    First,
}

/// What sits on the pooled vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// `out(relu(hidden(x)))` (the LRA heads).
    #[default]
    Mlp,
    /// BERT's pooler and classifier: `out(dropout(tanh(dense(x))))`, `dense` being d_model wide.
    Pooler,
    /// One linear layer, `out(x)` (the JAX LRA Sinkhorn encoder's head:
    /// `sinkhorn_transformer.py:194-197`, a Dense on the mean).
    Linear,
}

/// The nonlinearity of the MLP head's hidden layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadActivation {
    /// The LRA codes' (PyTorch LRA `SCHead`, JAX LRA `classifier_head`).
    #[default]
    Relu,
    /// Exact-erf GELU (state-spaces/s4's retrieval decoder, `configs/pipeline/aan.yaml`).
    Gelu,
}

impl HeadActivation {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Builds a [`Classifier`].
#[derive(Clone, Debug)]
pub struct ClassifierConfig {
    /// The encoder; its `cls_token` must be set exactly when pooling is `Cls`.
    pub encoder: EncoderConfig,
    /// Sequence reduction.
    pub pooling: Pooling,
    /// Hidden width of the head (the pooler's is d_model).
    pub head_hidden: usize,
    /// The head's kind.
    pub head: HeadKind,
    /// The MLP head's nonlinearity.
    pub head_activation: HeadActivation,
    /// Output width: classes, or 1 for regression.
    pub num_classes: usize,
    /// Classify pairs of documents with the shared encoder (retrieval) instead of single ones.
    pub dual_encoder: bool,
    /// How the dense layers start.
    pub dense_init: DenseInit,
    /// Token id 0 is padding wherever it occurs (see [`crate::ModelConfig::zero_ids_are_padding`]).
    pub zero_ids_are_padding: bool,
}

impl ClassifierConfig {
    /// Initialises the classifier, drawing every parameter now from the device RNG.
    pub fn init(&self, device: &Device) -> Classifier {
        let hidden = self.head_width();
        let classifier = crate::init_now(Classifier {
            encoder: self.encoder.init(device),
            head_in: (self.head != HeadKind::Linear)
                .then(|| LinearConfig::new(self.head_input(), hidden).init(device)),
            head_out: LinearConfig::new(hidden, self.num_classes).init(device),
            activation: Relu::new(),
            head_activation: self.head_activation,
            pooler_activation: Tanh::new(),
            head_dropout: DropoutConfig::new(self.encoder.dropout).init(),
            pooling: self.pooling,
            head: self.head,
            dual_encoder: self.dual_encoder,
            zero_ids_are_padding: self.zero_ids_are_padding,
        });
        match self.dense_init {
            DenseInit::Burn => classifier,
            DenseInit::JaxLra => jax_lra_dense(classifier),
        }
    }

    /// Width of the head's hidden layer (the output layer's input).
    fn head_width(&self) -> usize {
        match self.head {
            HeadKind::Mlp => self.head_hidden,
            HeadKind::Pooler => self.encoder.d_model,
            HeadKind::Linear => self.head_input(),
        }
    }

    /// Width of the head's input: the pooled vector, or the four pair features.
    fn head_input(&self) -> usize {
        if self.dual_encoder {
            4 * self.encoder.d_model
        } else {
            self.encoder.d_model
        }
    }
}

/// Encoder + pooling + head.
#[derive(Module, Debug)]
pub struct Classifier {
    encoder: Encoder,
    /// The MLP's hidden layer, or the pooler's dense layer (none in the linear head).
    head_in: Option<Linear>,
    /// The output layer.
    head_out: Linear,
    activation: Relu,
    pooler_activation: Tanh,
    #[module(skip)]
    head_activation: HeadActivation,
    head_dropout: Dropout,
    #[module(skip)]
    pooling: Pooling,
    #[module(skip)]
    head: HeadKind,
    #[module(skip)]
    dual_encoder: bool,
    #[module(skip)]
    zero_ids_are_padding: bool,
}

impl Classifier {
    /// The encoder, e.g. to inspect a trained layer.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Whether this classifier takes pairs of documents ([`Self::forward_pair`]).
    pub fn is_dual_encoder(&self) -> bool {
        self.dual_encoder
    }

    /// Class logits of single documents.
    ///
    /// # Shapes
    /// - `tokens`, `pad_mask`: `[batch, seq]` (`true` = padding)
    /// - output: `[batch, num_classes]`
    ///
    /// # Panics
    /// If the classifier is a dual encoder.
    pub fn forward(&self, tokens: Tensor<2, Int>, pad_mask: Tensor<2, Bool>) -> Tensor<2> {
        assert!(
            !self.dual_encoder,
            "a dual-encoder classifier takes pairs: use forward_pair"
        );
        self.head(self.embed(tokens, pad_mask))
    }

    /// [`Self::forward`] with token-type (segment) ids `[batch, seq]`, for a classifier whose
    /// encoder has token types (BERT sentence pairs encoded together).
    ///
    /// # Panics
    /// As [`Self::forward`], and if the encoder has no token types.
    pub fn forward_typed(
        &self,
        tokens: Tensor<2, Int>,
        types: Tensor<2, Int>,
        pad_mask: Tensor<2, Bool>,
    ) -> Tensor<2> {
        assert!(
            !self.dual_encoder,
            "a dual-encoder classifier takes pairs: use forward_pair"
        );
        let pad_mask = self.padding_mask(&tokens, pad_mask);
        let encoded = self.encoder.forward_typed(tokens, Some(types), pad_mask);
        self.head(pool(encoded.hidden, encoded.pad_mask, self.pooling))
    }

    /// Class logits of document pairs: both documents are embedded by the one shared encoder
    /// (in one batched pass), and the head sees `[a, b, a·b, a − b]`.
    ///
    /// # Shapes
    /// - `tokens_a`, `pad_a`, `tokens_b`, `pad_b`: `[batch, seq]` (`true` = padding)
    /// - output: `[batch, num_classes]`
    ///
    /// # Panics
    /// If the classifier is not a dual encoder, or the two documents' shapes differ.
    pub fn forward_pair(
        &self,
        (tokens_a, pad_a): (Tensor<2, Int>, Tensor<2, Bool>),
        (tokens_b, pad_b): (Tensor<2, Int>, Tensor<2, Bool>),
    ) -> Tensor<2> {
        assert!(
            self.dual_encoder,
            "forward_pair needs a dual-encoder classifier"
        );
        let [batch, _] = tokens_a.dims();
        let both = self.embed(
            Tensor::cat(vec![tokens_a, tokens_b], 0),
            Tensor::cat(vec![pad_a, pad_b], 0),
        ); // [2b, d]
        let a = both.clone().narrow(0, 0, batch);
        let b = both.narrow(0, batch, batch);
        self.head(pair_features(a, b))
    }

    /// The pooled encoding of each sequence, `[batch, seq]` → `[batch, d_model]`.
    pub fn embed(&self, tokens: Tensor<2, Int>, pad_mask: Tensor<2, Bool>) -> Tensor<2> {
        let pad_mask = self.padding_mask(&tokens, pad_mask);
        let encoded = self.encoder.forward(tokens, pad_mask);
        pool(encoded.hidden, encoded.pad_mask, self.pooling)
    }

    /// The padding mask the encoder sees: `pad_mask`, and with `zero_ids_are_padding` every
    /// position whose token id is 0 as well.
    pub fn padding_mask(
        &self,
        tokens: &Tensor<2, Int>,
        pad_mask: Tensor<2, Bool>,
    ) -> Tensor<2, Bool> {
        if self.zero_ids_are_padding {
            pad_mask.bool_or(tokens.clone().equal_elem(0))
        } else {
            pad_mask
        }
    }

    /// The head on pooled vectors (or pair features).
    pub fn head(&self, features: Tensor<2>) -> Tensor<2> {
        match (self.head, &self.head_in) {
            (HeadKind::Mlp, Some(hidden)) => {
                let hidden = hidden.forward_folded(features);
                let hidden = match self.head_activation {
                    HeadActivation::Relu => self.activation.forward(hidden),
                    HeadActivation::Gelu => crate::ops::gelu::gelu(hidden),
                };
                self.head_out.forward_folded(hidden)
            }
            (HeadKind::Pooler, Some(dense)) => {
                let pooled = self
                    .pooler_activation
                    .forward(dense.forward_folded(features));
                self.head_out
                    .forward_folded(self.head_dropout.forward(pooled))
            }
            // The linear head (the others always have their first layer).
            _ => self.head_out.forward_folded(features),
        }
    }
}

/// The dual encoder's interaction features `[a, b, a·b, a − b]`: `[b, d]` × 2 → `[b, 4d]`.
pub fn pair_features(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    Tensor::cat(vec![a.clone(), b.clone(), a.clone() * b.clone(), a - b], 1)
}

/// `[b, n, d]` → `[b, d]`.
fn pool(hidden: Tensor<3>, pad_mask: Tensor<2, Bool>, pooling: Pooling) -> Tensor<2> {
    let [batch, seq, d_model] = hidden.dims();
    match pooling {
        Pooling::Cls | Pooling::First => hidden.narrow(1, 0, 1).reshape([batch, d_model]),
        Pooling::MeanWithPadding => hidden.mean_dim(1).reshape([batch, d_model]),
        Pooling::MeanWithZeroedPadding => {
            let real = pad_mask.bool_not().float().reshape([batch, seq, 1]);
            (hidden * real).mean_dim(1).reshape([batch, d_model])
        }
        Pooling::Mean => {
            let real = pad_mask.bool_not().float().reshape([batch, seq, 1]); // [b, n, 1]
            let count = real.clone().sum_dim(1).clamp_min(1.0); // [b, 1, 1]
            (hidden * real)
                .sum_dim(1)
                .div(count)
                .reshape([batch, d_model])
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::{Device, Distribution, TensorData, Tolerance};

    use super::*;
    use crate::MixerKind;
    use crate::parameters::parameter_values;

    const SEQ: usize = 12;
    const D_MODEL: usize = 16;

    /// A small dual-encoder classifier in evaluation mode (no dropout), seeded.
    fn dual_classifier(device: &Device) -> Classifier {
        device.seed(3);
        dual_classifier_config().init(device).valid()
    }

    fn dual_classifier_config() -> ClassifierConfig {
        ClassifierConfig {
            encoder: EncoderConfig {
                vocab_size: 257,
                input_values: None,
                max_len: SEQ,
                d_model: D_MODEL,
                n_layers: 1,
                n_heads: 2,
                qkv_dim: D_MODEL,
                attention_bias: true,
                d_ffn: 32,
                ffn: true,
                norm: crate::encoder::NormPlacement::Pre,
                normalization: crate::sequence_norm::Normalization::Layer,
                positions: crate::positions::Positions::Learned,
                embedding_init_std: crate::encoder::EMBEDDING_STD,
                cls_init_std: crate::encoder::EMBEDDING_STD,
                dropout: 0.1,
                attention_dropout: 0.1,
                ffn_inner_dropout: true,
                cls_token: false,
                token_types: 0,
                embedding_norm: false,
                layer_norm_eps: 1e-5,
                mixer: MixerKind::ALL[0].default_config(),
                mask_padding_in_mixers: true,
                padded_queries: crate::mixer::PaddedQueries::Attend,
            },
            pooling: Pooling::Mean,
            head_hidden: 8,
            head: HeadKind::Mlp,
            head_activation: HeadActivation::Relu,
            num_classes: 2,
            dual_encoder: true,
            dense_init: DenseInit::Burn,
            zero_ids_are_padding: false,
        }
    }

    /// `[2, SEQ]` documents of ids from `rows`, each padded after its length.
    fn documents(device: &Device, rows: [&[i64]; 2]) -> (Tensor<2, Int>, Tensor<2, Bool>) {
        let mut ids = Vec::new();
        let mut pad = Vec::new();
        for row in rows {
            for position in 0..SEQ {
                ids.push(row.get(position).copied().unwrap_or(0));
                pad.push(position >= row.len());
            }
        }
        (
            Tensor::from_data(TensorData::new(ids, [2, SEQ]), device),
            Tensor::from_data(TensorData::new(pad, [2, SEQ]), device),
        )
    }

    #[test]
    fn dual_encoder_logits_are_the_head_on_a_b_ab_a_minus_b_of_shared_embeddings() {
        let device = Device::flex();
        let model = dual_classifier(&device);
        let a = documents(&device, [&[5, 9, 200, 3], &[7; 10]]);
        let b = documents(&device, [&[1, 2, 3, 4, 5, 6, 7, 8], &[256, 4]]);
        let logits = model.forward_pair(a.clone(), b.clone());
        assert_eq!(logits.dims(), [2, 2]);

        let (ea, eb) = (
            model.embed(a.0.clone(), a.1.clone()),
            model.embed(b.0.clone(), b.1.clone()),
        );
        let expected = model.head(pair_features(ea.clone(), eb.clone()));
        logits
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));

        // Swapping the roles permutes the features: [b, a, b·a, b − a] = [a, b, a·b, a − b]
        // with the first two blocks exchanged and the last negated.
        let swapped = pair_features(eb.clone(), ea.clone());
        let d = D_MODEL;
        let forward = pair_features(ea, eb);
        let permuted = Tensor::cat(
            vec![
                forward.clone().narrow(1, d, d),
                forward.clone().narrow(1, 0, d),
                forward.clone().narrow(1, 2 * d, d),
                forward.narrow(1, 3 * d, d).neg(),
            ],
            1,
        );
        swapped
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&permuted.into_data(), Tolerance::absolute(1e-6));
        model
            .forward_pair(b, a)
            .into_data()
            .assert_approx_eq::<f32>(&model.head(swapped).into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn the_shared_encoder_embeds_equal_documents_equally() {
        let device = Device::flex();
        let model = dual_classifier(&device);
        let doc: &[i64] = &[40, 41, 42, 43, 44, 45];
        // The same document as a[0], b[1] (padded the same way), next to other documents.
        let a = documents(&device, [doc, &[9, 9]]);
        let b = documents(&device, [&[100; 12], doc]);
        let both = model.embed(
            Tensor::cat(vec![a.0.clone(), b.0.clone()], 0),
            Tensor::cat(vec![a.1.clone(), b.1.clone()], 0),
        );
        both.clone()
            .narrow(0, 0, 1)
            .into_data()
            .assert_approx_eq::<f32>(&both.narrow(0, 3, 1).into_data(), Tolerance::absolute(1e-6));

        // A pair of equal documents has a − b = 0, so its logits are the head on [e, e, e², 0].
        let same = model.forward_pair(a.clone(), a.clone());
        let e = model.embed(a.0, a.1);
        let features = Tensor::cat(
            vec![e.clone(), e.clone(), e.clone() * e.clone(), e.zeros_like()],
            1,
        );
        same.into_data()
            .assert_approx_eq::<f32>(&model.head(features).into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn the_pooler_head_is_dense_tanh_then_linear_on_the_first_token() {
        let device = Device::flex();
        device.seed(5);
        let mut config = ClassifierConfig {
            encoder: dual_classifier_config().encoder,
            pooling: Pooling::First,
            head_hidden: 3,
            head: HeadKind::Pooler,
            head_activation: HeadActivation::Relu,
            num_classes: 1,
            dual_encoder: false,
            dense_init: DenseInit::Burn,
            zero_ids_are_padding: false,
        };
        config.encoder.token_types = 2;
        let model = config.init(&device).valid();
        let dense = model.head_in.as_ref().expect("the pooler's dense layer");
        assert_eq!(
            dense.weight.dims(),
            [D_MODEL, D_MODEL],
            "the pooler is d_model wide"
        );
        let (tokens, pad) = documents(&device, [&[101, 7, 8, 102], &[101, 9, 102]]);
        let logits = model.forward(tokens.clone(), pad.clone());
        assert_eq!(logits.dims(), [2, 1]);
        let hidden = model.encoder.forward(tokens, pad).hidden;
        let first = hidden.narrow(1, 0, 1).reshape([2, D_MODEL]);
        let expected = model
            .head_out
            .forward_folded(dense.forward_folded(first).tanh());
        logits
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    #[should_panic(expected = "takes pairs")]
    fn a_dual_encoder_refuses_single_documents() {
        let device = Device::flex();
        let model = dual_classifier(&device);
        let (tokens, pad) = documents(&device, [&[1], &[2]]);
        let _ = model.forward(tokens, pad);
    }

    /// The linear head (the JAX Sinkhorn encoder's): one layer on the pooled vector, no other
    /// head parameters.
    #[test]
    fn the_linear_head_is_one_layer_on_the_mean() {
        let device = Device::flex();
        device.seed(6);
        let config = ClassifierConfig {
            encoder: dual_classifier_config().encoder,
            pooling: Pooling::MeanWithPadding,
            head_hidden: 3,
            head: HeadKind::Linear,
            head_activation: HeadActivation::Relu,
            num_classes: 4,
            dual_encoder: false,
            dense_init: DenseInit::Burn,
            zero_ids_are_padding: false,
        };
        let model = config.init(&device).valid();
        assert!(model.head_in.is_none());
        assert_eq!(model.head_out.weight.dims(), [D_MODEL, 4]);
        let (tokens, pad) = documents(&device, [&[1, 7, 8, 3], &[1, 9, 3]]);
        let logits = model.forward(tokens.clone(), pad.clone());
        let hidden = model.encoder.forward(tokens, pad).hidden;
        let expected = model
            .head_out
            .forward_folded(hidden.mean_dim(1).reshape([2, D_MODEL]));
        logits
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }

    /// `mean_with_zeroed_padding` (the PyTorch LRA code's pooling): the real positions' final
    /// states summed and divided by the padded length; `mean_with_padding` (the JAX code's)
    /// averages every position's state.
    #[test]
    fn the_two_padded_means_differ_exactly_in_the_padded_states() {
        let device = Device::flex();
        let mut config = dual_classifier_config();
        config.dual_encoder = false;
        config.head = HeadKind::Linear;
        let (tokens, pad) = documents(&device, [&[1, 7, 8, 3], &[1, 9, 3, 4, 4, 4, 4, 4, 2]]);
        let mut logits = |pooling| {
            config.pooling = pooling;
            device.seed(6);
            let model = config.init(&device).valid();
            let hidden = model.encoder.forward(tokens.clone(), pad.clone()).hidden;
            (model.forward(tokens.clone(), pad.clone()), hidden, model)
        };
        let (zeroed, hidden, model) = logits(Pooling::MeanWithZeroedPadding);
        let rows = pad.clone().bool_not().float().reshape([2, SEQ, 1]);
        let real_sum = (hidden.clone() * rows).sum_dim(1).reshape([2, D_MODEL]);
        let expected = model.head_out.forward_folded(real_sum / SEQ as f32);
        zeroed
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
        let (with_padding, _, model) = logits(Pooling::MeanWithPadding);
        let expected = model
            .head_out
            .forward_folded(hidden.mean_dim(1).reshape([2, D_MODEL]));
        with_padding
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
        let gap = (zeroed - with_padding).abs().max().into_scalar::<f32>();
        assert!(
            gap > 1e-3,
            "the padded states must count in one mean only: {gap}"
        );
    }

    /// `zero_ids_are_padding`: the model sees id 0 as padding wherever it is, exactly as if the
    /// caller's mask had marked it; without the option the same tokens give other logits.
    #[test]
    fn zero_ids_are_padding_wherever_they_occur() {
        let device = Device::flex();
        let mut config = dual_classifier_config();
        config.dual_encoder = false;
        let build = |config: &ClassifierConfig| {
            device.seed(8);
            config.init(&device).valid()
        };
        let (tokens, pad) = documents(&device, [&[5, 0, 7, 0, 0, 9], &[0, 3, 4, 0]]);
        config.zero_ids_are_padding = true;
        let masked = build(&config).forward(tokens.clone(), pad.clone());
        config.zero_ids_are_padding = false;
        let plain = build(&config);
        let explicit = pad.clone().bool_or(tokens.clone().equal_elem(0));
        let expected = plain.forward(tokens.clone(), explicit);
        masked
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
        let unmasked = plain.forward(tokens, pad);
        let gap = (masked - unmasked).abs().max().into_scalar::<f32>();
        assert!(gap > 1e-4, "the zero ids must be masked: {gap}");
    }

    /// `dense_init = "jax_lra"` also draws Linformer's `E` as the JAX `lr_kernel`: xavier_uniform
    /// over `(max_len, k)`, bound √(6/(n + k)), where Burn's init keeps a gain of 1/√2.
    #[test]
    fn jax_lra_draws_linformers_projection_with_the_full_xavier_bound() {
        let device = Device::flex();
        let mut config = dual_classifier_config();
        config.dual_encoder = false;
        config.encoder.mixer =
            crate::MixerConfig::Linformer(crate::mixer::linformer::LinformerConfig {
                k: 4,
                sharing: crate::mixer::linformer::Sharing::KeyValue,
                trainable: true,
            });
        let mut projections = |init| {
            config.dense_init = init;
            device.seed(9);
            parameter_values(&config.init(&device))
                .into_iter()
                .filter(|(path, _)| path.ends_with("key_projection"))
                .map(|(_, values)| values.iter().fold(0f32, |m, v| m.max(v.abs())))
                .collect::<Vec<_>>()
        };
        let bound = (6.0 / (SEQ + 4) as f32).sqrt();
        let (burn, jax) = (projections(DenseInit::Burn), projections(DenseInit::JaxLra));
        assert_eq!(jax.len(), 1);
        assert!(burn[0] <= bound * std::f32::consts::FRAC_1_SQRT_2 * 1.000_01);
        assert!(
            jax[0] <= bound && jax[0] > bound * 0.8,
            "{jax:?} vs bound {bound}"
        );
    }

    /// `dense_init = "jax_lra"`: attention and FFN kernels within xavier_uniform's bound (and
    /// beyond Burn's), FFN biases ~1e-6, attention and head biases 0, head kernels within the
    /// truncated normal's ±2σ; every other parameter as Burn draws it with the same seed.
    #[test]
    fn jax_lra_dense_init_draws_the_flax_initialisers() {
        let device = Device::flex();
        let mut config = dual_classifier_config();
        config.dual_encoder = false;
        config.encoder.mixer = MixerKind::Softmax.default_config();
        device.seed(9);
        let burn = parameter_values(&config.init(&device));
        config.dense_init = DenseInit::JaxLra;
        device.seed(9);
        let jax = parameter_values(&config.init(&device));
        let (d, ffn, hidden) = (D_MODEL as f32, 32.0f32, 8.0f32);
        let mut seen = [0; 5];
        for ((path, burn), (_, jax)) in burn.iter().zip(&jax) {
            let max = jax.iter().fold(0f32, |m, v| m.max(v.abs()));
            let layer = path.rsplit('.').nth(1).unwrap();
            let redrawn = path.ends_with("weight")
                && (layer.starts_with("ffn_") || layer.starts_with("head_"));
            let attention =
                path.contains(".mixer.") && matches!(layer, "query" | "key" | "value" | "output");
            if attention && path.ends_with("weight") {
                assert!(
                    max <= (6.0 / (2.0 * d)).sqrt() && max > 1.0 / d.sqrt(),
                    "{path}"
                );
                seen[0] += 1;
            } else if path.ends_with("ffn_in.weight") || path.ends_with("ffn_out.weight") {
                assert!(
                    max <= (6.0 / (d + ffn)).sqrt() && max > 1.0 / ffn.sqrt(),
                    "{path}"
                );
                seen[1] += 1;
            } else if path.contains("ffn_") && path.ends_with("bias") {
                assert!(max < 1e-5 && max > 0.0, "{path}: {max}");
                seen[2] += 1;
            } else if path.starts_with("head_") && path.ends_with("weight") {
                let fan_in = if path.starts_with("head_in") {
                    d
                } else {
                    hidden
                };
                let two_sigma = 2.0 / fan_in.sqrt() / 0.879_625_7;
                assert!(max <= two_sigma * 1.000_01, "{path}");
                seen[3] += 1;
            } else if (attention || path.starts_with("head_")) && path.ends_with("bias") {
                assert_eq!(max, 0.0, "{path}");
                seen[4] += 1;
            } else {
                assert_eq!(burn, jax, "{path} keeps Burn's init");
            }
            if redrawn || (attention && path.ends_with("weight")) {
                assert_ne!(burn, jax, "{path} is drawn anew");
            }
        }
        assert_eq!(
            seen,
            [4, 2, 2, 2, 6],
            "{:?}",
            jax.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
    }

    /// `head_activation = "gelu"`: the MLP head is `out(gelu(hidden(x)))` (exact-erf GELU).
    #[test]
    fn the_gelu_head_applies_gelu_between_its_layers() {
        let device = Device::flex();
        device.seed(8);
        let mut config = dual_classifier_config();
        config.head_activation = HeadActivation::Gelu;
        let model = config.init(&device).valid();
        let features = Tensor::<2>::random([3, 4 * D_MODEL], Distribution::Default, &device)
            .sub_scalar(0.5)
            .mul_scalar(8.0);
        let hidden = model
            .head_in
            .as_ref()
            .unwrap()
            .forward_folded(features.clone());
        let expected = model
            .head_out
            .forward_folded(burn::tensor::activation::gelu(hidden));
        model
            .head(features)
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));
    }
}
