//! The LRA encoder: token embedding + positions, pre-LN blocks (mixer + FFN), final norm.
//! Same shape as the PyTorch LRA code bases (`mlpen/Nystromformer/LRA/code/model.py`) and, with a
//! CLS token, the original JAX LRA transformer. Block options give the official LRA S4 model's
//! shape (state-spaces/s4 `SequenceResidualBlock`): post-norm (`prenorm: false`, no final norm),
//! no FFN (the S4 layer carries its own output linear), and no position embeddings.

use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig,
};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::folded_linear::FoldedLinear;
use crate::layer_norm::LayerNorm;
use crate::mixer::common::dropout;
use crate::mixer::{Mixer, MixerConfig, MixerDims, MixerInput, PaddedQueries, TokenMixer};
use crate::ops::gelu::gelu;
use crate::positions::{Positions, sinusoid_tensor};
use crate::sequence_norm::{Normalization, SequenceNorm};
use crate::value_input::{InputValues, ValueInput};

/// Embedding init std, as in the PyTorch LRA code (`normal_(std=0.02)`): learned positions and
/// token types always, token embeddings and the CLS vector by default.
pub const EMBEDDING_STD: f64 = 0.02;

/// Where each block's LayerNorms sit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormPlacement {
    /// `x + f(LN(x))`, and a final LayerNorm after the last block (PyTorch/JAX LRA, S4 `prenorm`).
    #[default]
    Pre,
    /// `LN(x + f(x))`, no final LayerNorm (original Transformer; S4 ListOps/Image `prenorm: false`).
    Post,
}

/// Builds an [`Encoder`].
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    /// Token vocabulary size (id 0 is padding).
    pub vocab_size: usize,
    /// Ids read as numbers through `Linear(1, d_model)` instead of an embedding table (the LRA
    /// S4 models' pixels); `None`: the embedding table.
    pub input_values: Option<InputValues>,
    /// Longest token sequence accepted (without the CLS token).
    pub max_len: usize,
    /// Model width.
    pub d_model: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Attention heads per mixer.
    pub n_heads: usize,
    /// Width of the attention's queries, keys and values, all heads together.
    pub qkv_dim: usize,
    /// Biases on the attention projections (the JAX LRA code has none).
    pub attention_bias: bool,
    /// Hidden width of the feed-forward network.
    pub d_ffn: usize,
    /// Whether blocks have a feed-forward network after the mixer (the LRA S4 model has none).
    pub ffn: bool,
    /// Norm placement in the blocks.
    pub norm: NormPlacement,
    /// The blocks' and final norm's statistics: LayerNorm, or BatchNorm (the LRA S4 models).
    pub normalization: Normalization,
    /// Position information (the LRA S4 model has none: the convolution knows positions).
    pub positions: Positions,
    /// Std of the token embeddings' normal init ([`EMBEDDING_STD`]; 1 in the JAX LRA code).
    pub embedding_init_std: f64,
    /// Std of the CLS vector's normal init ([`EMBEDDING_STD`]; 0, zeros, in the JAX LRA code).
    pub cls_init_std: f64,
    /// Dropout on embeddings, mixer and FFN outputs.
    pub dropout: f64,
    /// Dropout inside the mixer (attention probabilities).
    pub attention_dropout: f64,
    /// Dropout also on the FFN's hidden activations (the LRA models; BERT has none there).
    pub ffn_inner_dropout: bool,
    /// Prepend a learned CLS vector (JAX LRA `classifier_pool = "CLS"`).
    pub cls_token: bool,
    /// Token-type (segment) ids the embedding distinguishes (BERT: 2); 0 = no token types.
    pub token_types: usize,
    /// LayerNorm over the summed embeddings before the first block (BERT, RoBERTa).
    pub embedding_norm: bool,
    /// Epsilon of every LayerNorm (1e-5 as PyTorch's default; BERT 1e-12).
    pub layer_norm_eps: f64,
    /// The token mixer of every block.
    pub mixer: MixerConfig,
    /// Whether the mixers see the padding mask (else padded positions are tokens to them).
    pub mask_padding_in_mixers: bool,
    /// What the attention mixers give a padded query.
    pub padded_queries: PaddedQueries,
}

impl EncoderConfig {
    /// Sequence length the mixers see: tokens plus the CLS slot.
    pub fn mixer_len(&self) -> usize {
        self.max_len + usize::from(self.cls_token)
    }

    /// Sizes handed to every mixer.
    pub fn mixer_dims(&self) -> MixerDims {
        MixerDims::new(self.d_model, self.n_heads, self.mixer_len())
            .with_qkv_dim(self.qkv_dim)
            .with_dropout(self.attention_dropout)
            .with_projection_bias(self.attention_bias)
            .with_padded_queries(self.padded_queries)
    }

    /// Initialises the encoder.
    pub fn init(&self, device: &Device) -> Encoder {
        let normal = |std| Initializer::Normal { mean: 0.0, std };
        let dims = self.mixer_dims();
        // Fields in the order their parameters are drawn (a model is a function of the seed).
        let values = self
            .input_values
            .map(|input| input.init(self.d_model, device));
        let tokens = values.is_none().then(|| {
            EmbeddingConfig::new(self.vocab_size, self.d_model)
                .with_initializer(normal(self.embedding_init_std))
                .init(device)
        });
        let positions = (self.positions == Positions::Learned).then(|| {
            EmbeddingConfig::new(self.mixer_len(), self.d_model)
                .with_initializer(normal(EMBEDDING_STD))
                .init(device)
        });
        let sinusoid = (self.positions == Positions::Sinusoidal)
            .then(|| sinusoid_tensor(self.mixer_len(), self.d_model, device));
        let cls = self
            .cls_token
            .then(|| normal(self.cls_init_std).init([1, 1, self.d_model], device));
        let token_types = (self.token_types > 0).then(|| {
            EmbeddingConfig::new(self.token_types, self.d_model)
                .with_initializer(normal(EMBEDDING_STD))
                .init(device)
        });
        Encoder {
            tokens,
            values,
            positions,
            sinusoid,
            cls,
            token_types,
            embedding_norm: self.embedding_norm.then(|| self.layer_norm(device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            blocks: (0..self.n_layers)
                .map(|_| self.init_block(&dims, device))
                .collect(),
            norm: (self.norm == NormPlacement::Pre).then(|| self.sequence_norm(device)),
            max_len: self.max_len,
        }
    }

    fn layer_norm(&self, device: &Device) -> LayerNorm {
        LayerNorm::new(self.d_model, self.layer_norm_eps, device)
    }

    fn sequence_norm(&self, device: &Device) -> SequenceNorm {
        SequenceNorm::new(
            self.normalization,
            self.d_model,
            self.layer_norm_eps,
            device,
        )
    }

    fn init_block(&self, dims: &MixerDims, device: &Device) -> Block {
        let ffn = |layer: Linear| self.ffn.then_some(layer);
        Block {
            mixer_norm: self.sequence_norm(device),
            mixer: self.mixer.init(dims, device),
            ffn_norm: self.ffn.then(|| self.sequence_norm(device)),
            ffn_in: ffn(LinearConfig::new(self.d_model, self.d_ffn).init(device)),
            ffn_out: ffn(LinearConfig::new(self.d_ffn, self.d_model).init(device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            inner_dropout: self.ffn_inner_dropout,
            mask_padding: self.mask_padding_in_mixers,
            post_norm: self.norm == NormPlacement::Post,
        }
    }
}

/// Output of the encoder.
#[derive(Clone, Debug)]
pub struct EncoderOutput {
    /// Final hidden states `[batch, seq', d_model]`; `seq' = seq + 1` with a CLS token at 0.
    pub hidden: Tensor<3>,
    /// Padding mask `[batch, seq']` matching `hidden` (`true` = padding; CLS is not padding).
    pub pad_mask: Tensor<2, Bool>,
}

/// Token (+ position, + token-type) embedding, an optional embedding LayerNorm, a stack of
/// blocks and, with pre-norm, a final LayerNorm.
#[derive(Module, Debug)]
pub struct Encoder {
    /// The token embedding table, or (`input_values`) the linear layer on the ids' values.
    tokens: Option<Embedding>,
    values: Option<ValueInput>,
    positions: Option<Embedding>,
    /// The fixed sinusoidal table `[max_len (+ CLS), d_model]`: a constant, not a parameter.
    sinusoid: Option<Tensor<2>>,
    cls: Option<Param<Tensor<3>>>,
    token_types: Option<Embedding>,
    embedding_norm: Option<LayerNorm>,
    dropout: Dropout,
    blocks: Vec<Block>,
    norm: Option<SequenceNorm>,
    max_len: usize,
}

impl Encoder {
    /// # Shapes
    /// - `tokens`, `pad_mask`: `[batch, seq]` with `seq <= max_len`
    ///
    /// # Panics
    /// If `seq` exceeds the `max_len` the encoder was built for.
    pub fn forward(&self, tokens: Tensor<2, Int>, pad_mask: Tensor<2, Bool>) -> EncoderOutput {
        self.forward_typed(tokens, None, pad_mask)
    }

    /// [`Self::forward`] with token-type (segment) ids `[batch, seq]` for an encoder built with
    /// token types (BERT sentence pairs: 0 for the first sentence, 1 for the second).
    ///
    /// # Panics
    /// If type ids are given to an encoder without token types.
    pub fn forward_typed(
        &self,
        tokens: Tensor<2, Int>,
        types: Option<Tensor<2, Int>>,
        pad_mask: Tensor<2, Bool>,
    ) -> EncoderOutput {
        let (mut x, pad_mask) = self.embed(tokens, types, pad_mask);
        let mut carry = None;
        for block in &self.blocks {
            (x, carry) = block.forward(x, pad_mask.clone(), carry);
        }
        let hidden = match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        EncoderOutput { hidden, pad_mask }
    }

    /// What block `layer`'s mixer receives for these tokens (its normalised input and padding
    /// mask), together with that mixer; `None` past the last block. For inspecting a trained
    /// layer, e.g. its attention's Q, K, V.
    pub fn mixer_input(
        &self,
        tokens: Tensor<2, Int>,
        pad_mask: Tensor<2, Bool>,
        layer: usize,
    ) -> Option<(Tensor<3>, Tensor<2, Bool>, &Mixer)> {
        let target = self.blocks.get(layer)?;
        let (mut x, pad_mask) = self.embed(tokens, None, pad_mask);
        let mut carry = None;
        for block in &self.blocks[..layer] {
            (x, carry) = block.forward(x, pad_mask.clone(), carry);
        }
        Some((target.mixer_input(x), pad_mask, &target.mixer))
    }

    /// Token + position (+ token-type) embeddings (with the CLS slot when configured), layer
    /// normalised when configured, and the matching mask.
    fn embed(
        &self,
        tokens: Tensor<2, Int>,
        types: Option<Tensor<2, Int>>,
        pad_mask: Tensor<2, Bool>,
    ) -> (Tensor<3>, Tensor<2, Bool>) {
        let [batch, seq] = tokens.dims();
        assert!(
            seq <= self.max_len,
            "sequence of {seq} tokens is longer than the model's max_len {}",
            self.max_len
        );
        let device = tokens.device();
        let mut x = self.input_vectors(tokens); // [b, n, d]
        let mut pad_mask = pad_mask;
        if let Some(cls) = &self.cls {
            let [_, _, d_model] = x.dims();
            x = Tensor::cat(vec![cls.val().expand([batch, 1, d_model]), x], 1);
            let cls_mask = Tensor::<2, Bool>::from_data([[false]], &device).expand([batch, 1]);
            pad_mask = Tensor::cat(vec![cls_mask, pad_mask], 1);
        }
        if let Some(embedding) = &self.positions {
            let len = x.dims()[1];
            let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
            x = x + embedding.forward(positions);
        }
        if let Some(table) = &self.sinusoid {
            let len = x.dims()[1];
            x = x + table.clone().narrow(0, 0, len).unsqueeze::<3>();
        }
        match (&self.token_types, types) {
            (Some(embedding), Some(types)) => x = x + embedding.forward(types),
            // Without ids every token is of type 0 (a single sentence).
            (Some(embedding), None) => {
                let first = embedding.weight.val().narrow(0, 0, 1).unsqueeze::<3>();
                x = x + first;
            }
            (None, Some(_)) => panic!("token-type ids given to an encoder without token types"),
            (None, None) => {}
        }
        if let Some(norm) = &self.embedding_norm {
            x = norm.forward(x);
        }
        (dropout(&self.dropout, x), pad_mask)
    }

    /// Each id's vector: its embedding, or the linear layer on its value.
    fn input_vectors(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match (&self.tokens, &self.values) {
            (Some(table), _) => table.forward(tokens),
            (None, Some(values)) => values.forward(tokens),
            (None, None) => unreachable!("an encoder is built with one input layer"),
        }
    }

    /// Whether the embedding takes token-type (segment) ids ([`Self::forward_typed`]).
    pub fn has_token_types(&self) -> bool {
        self.token_types.is_some()
    }

    /// The token embedding matrix `[vocab, d_model]` (a tied output layer's weights).
    ///
    /// # Panics
    /// If the encoder reads ids as values (`input_values`): it has no table.
    pub fn token_embedding(&self) -> Tensor<2> {
        let table = self.tokens.as_ref();
        table
            .expect("an encoder with input_values has no token embedding")
            .weight
            .val()
    }

    /// The learned position table `[max_len, d_model]`, if the encoder has one.
    pub fn position_table(&self) -> Option<Tensor<2>> {
        self.positions.as_ref().map(|table| table.weight.val())
    }

    /// Number of blocks.
    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }
}

/// Pre-norm: `x + mixer(LN(x))`, then `x + FFN(LN(x))`; post-norm: `LN(x + mixer(x))`, then
/// `LN(x + FFN(x))`. The FFN sublayer is optional.
#[derive(Module, Debug)]
struct Block {
    mixer_norm: SequenceNorm,
    mixer: Mixer,
    ffn_norm: Option<SequenceNorm>,
    ffn_in: Option<Linear>,
    ffn_out: Option<Linear>,
    dropout: Dropout,
    inner_dropout: bool,
    /// Whether the mixer is given the padding mask.
    mask_padding: bool,
    post_norm: bool,
}

impl Block {
    fn forward(
        &self,
        x: Tensor<3>,
        pad_mask: Tensor<2, Bool>,
        carry: Option<Tensor<3>>,
    ) -> (Tensor<3>, Option<Tensor<3>>) {
        let input = MixerInput::new(self.mixer_input(x.clone())).carry(carry);
        let input = if self.mask_padding {
            input.pad_mask(pad_mask)
        } else {
            input
        };
        let mixed = self.mixer.forward(input);
        let mut x = self.residual(x, dropout(&self.dropout, mixed.x), &self.mixer_norm);
        if let (Some(norm), Some(ffn_in), Some(ffn_out)) =
            (&self.ffn_norm, &self.ffn_in, &self.ffn_out)
        {
            let input = if self.post_norm {
                x.clone()
            } else {
                norm.forward(x.clone())
            };
            let mut hidden = gelu(ffn_in.forward_folded(input));
            if self.inner_dropout {
                hidden = dropout(&self.dropout, hidden);
            }
            let update = dropout(&self.dropout, ffn_out.forward_folded(hidden));
            x = self.residual(x, update, norm);
        }
        (x, mixed.carry)
    }

    /// What the mixer sees: the normalised input with pre-norm, the input itself with post-norm.
    fn mixer_input(&self, x: Tensor<3>) -> Tensor<3> {
        if self.post_norm {
            x
        } else {
            self.mixer_norm.forward(x)
        }
    }

    /// `x + update`, normalised afterwards with post-norm.
    fn residual(&self, x: Tensor<3>, update: Tensor<3>, norm: &SequenceNorm) -> Tensor<3> {
        if self.post_norm {
            norm.forward(x + update)
        } else {
            x + update
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;
    use crate::mixer::MixerKind;

    fn config(norm: NormPlacement, ffn: bool, positions: Positions) -> EncoderConfig {
        EncoderConfig {
            vocab_size: 8,
            input_values: None,
            max_len: 16,
            d_model: 8,
            n_layers: 2,
            n_heads: 2,
            qkv_dim: 8,
            attention_bias: true,
            d_ffn: 16,
            ffn,
            norm,
            normalization: Normalization::Layer,
            positions,
            embedding_init_std: EMBEDDING_STD,
            cls_init_std: EMBEDDING_STD,
            dropout: 0.0,
            attention_dropout: 0.0,
            ffn_inner_dropout: true,
            cls_token: false,
            token_types: 0,
            embedding_norm: false,
            layer_norm_eps: 1e-5,
            mixer: MixerKind::ALL[0].default_config(),
            mask_padding_in_mixers: true,
            padded_queries: PaddedQueries::Attend,
        }
    }

    fn tokens(device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new((0..16i64).map(|i| i % 8).collect(), [1, 16]),
            device,
        );
        (
            ids,
            Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 16], [1, 16]), device),
        )
    }

    /// `mask_padding_in_mixers = false`: the hidden states are those of an unpadded input (the
    /// mixers never see the mask), and the mask still comes back for the pooling.
    #[test]
    fn mixers_without_the_mask_treat_padding_as_tokens() {
        let device = Device::flex();
        let (ids, unpadded) = tokens(&device);
        let padded = Tensor::<2, Bool>::from_data(
            TensorData::new((0..16).map(|i| i >= 11).collect::<Vec<_>>(), [1, 16]),
            &device,
        );
        let hidden = |mask_padding: bool, mask: &Tensor<2, Bool>| {
            let mut config = config(NormPlacement::Pre, true, Positions::Learned);
            config.mask_padding_in_mixers = mask_padding;
            device.seed(1);
            let out = config.init(&device).forward(ids.clone(), mask.clone());
            (out.hidden, out.pad_mask)
        };
        let (blind, mask) = hidden(false, &padded);
        let (reference, _) = hidden(true, &unpadded);
        blind
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&reference.into_data(), Tolerance::absolute(1e-6));
        assert_eq!(mask.into_data(), padded.clone().into_data());
        let (masked, _) = hidden(true, &padded);
        let gap = (masked - blind).abs().max().into_scalar::<f32>();
        assert!(
            gap > 1e-4,
            "the mask must matter when the mixers see it: {gap}"
        );
    }

    #[test]
    fn post_norm_block_without_ffn_is_layer_norm_of_the_residual() {
        let device = Device::flex();
        device.seed(1);
        let encoder = config(NormPlacement::Post, false, Positions::Learned).init(&device);
        let block = &encoder.blocks[0];
        assert!(block.ffn_in.is_none() && encoder.norm.is_none());
        let x = Tensor::<3>::random([1, 16, 8], Distribution::Normal(0.0, 1.0), &device);
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 16], [1, 16]), &device);
        let mixed = block
            .mixer
            .forward(MixerInput::new(x.clone()).pad_mask(mask.clone()))
            .x;
        let expected = block.mixer_norm.forward(x.clone() + mixed);
        let (actual, _) = block.forward(x, mask, None);
        actual
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }

    #[test]
    fn options_default_to_the_pre_norm_transformer() {
        let device = Device::flex();
        let encoder = config(NormPlacement::Pre, true, Positions::Learned).init(&device);
        assert!(encoder.norm.is_some() && encoder.positions.is_some());
        assert!(
            encoder
                .blocks
                .iter()
                .all(|b| b.ffn_in.is_some() && !b.post_norm)
        );
        let (ids, mask) = tokens(&device);
        let out = encoder.forward(ids, mask).hidden;
        // The final LayerNorm makes every position zero-mean.
        let mean = out.mean_dim(2).abs().max().into_scalar::<f32>();
        assert!(mean < 1e-5);
    }

    #[test]
    fn without_positions_equal_tokens_give_equal_embeddings() {
        let device = Device::flex();
        let encoder = config(NormPlacement::Pre, true, Positions::None).init(&device);
        let (ids, mask) = tokens(&device);
        let (x, _) = encoder.embed(ids, None, mask);
        // Tokens 0 and 8 carry the same id.
        x.clone()
            .narrow(1, 0, 1)
            .into_data()
            .assert_approx_eq::<f32>(&x.narrow(1, 8, 1).into_data(), Tolerance::absolute(0.0));
    }

    #[test]
    fn token_types_and_embedding_norm_follow_bert() {
        let device = Device::flex();
        device.seed(4);
        let mut bert = config(NormPlacement::Post, true, Positions::Learned);
        bert.token_types = 2;
        bert.embedding_norm = true;
        bert.layer_norm_eps = 1e-12;
        let encoder = bert.init(&device);
        let (ids, mask) = tokens(&device);
        let types = Tensor::<2, Int>::from_data(
            TensorData::new((0..16i64).map(|i| i64::from(i >= 10)).collect(), [1, 16]),
            &device,
        );
        let (x, _) = encoder.embed(ids.clone(), Some(types.clone()), mask.clone());
        // LayerNorm(word + position + type), by hand.
        let positions = Tensor::<1, Int>::arange(0..16, &device).reshape([1, 16]);
        let sum = encoder.tokens.as_ref().unwrap().forward(ids.clone())
            + encoder.positions.as_ref().unwrap().forward(positions)
            + encoder.token_types.as_ref().unwrap().forward(types);
        let mean = sum.clone().mean_dim(2);
        let centred = sum - mean;
        let variance = centred.clone().powi_scalar(2).mean_dim(2);
        let expected = centred / (variance + 1e-12).sqrt();
        x.clone()
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));
        // Without type ids every token is of type 0.
        let zeros = Tensor::<2, Int>::zeros([1, 16], &device);
        let (untyped, _) = encoder.embed(ids.clone(), None, mask.clone());
        let (typed_zero, _) = encoder.embed(ids, Some(zeros), mask);
        untyped
            .into_data()
            .assert_approx_eq::<f32>(&typed_zero.into_data(), Tolerance::absolute(1e-6));
    }

    /// The JAX LRA model: the CLS vector (zeros at init) is prepended before the fixed table is
    /// added, so it takes position 0; the table is no parameter.
    #[test]
    fn sinusoidal_positions_add_the_fixed_table_after_the_cls_slot() {
        let device = Device::flex();
        device.seed(2);
        let mut jax = config(NormPlacement::Pre, true, Positions::Sinusoidal);
        jax.cls_token = true;
        jax.cls_init_std = 0.0;
        let encoder = jax.init(&device);
        assert!(encoder.positions.is_none());
        let (ids, mask) = tokens(&device);
        let (x, _) = encoder.embed(ids.clone(), None, mask);
        let table = sinusoid_tensor(17, 8, &device).unsqueeze::<3>();
        let cls = Tensor::<3>::zeros([1, 1, 8], &device);
        let expected =
            Tensor::cat(vec![cls, encoder.tokens.as_ref().unwrap().forward(ids)], 1) + table;
        x.into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
        let parameters = encoder.num_params();
        let learned = config(NormPlacement::Pre, true, Positions::Learned).init(&device);
        assert_eq!(learned.num_params() - parameters, 16 * 8 - 8);
    }

    #[test]
    fn embedding_init_std_scales_the_token_table() {
        let device = Device::flex();
        device.seed(3);
        let mut wide = config(NormPlacement::Pre, true, Positions::Learned);
        wide.vocab_size = 4096;
        wide.embedding_init_std = 1.0;
        let table = wide.init(&device).token_embedding();
        let std = table.clone().var(1).mean().sqrt().into_scalar::<f32>();
        assert!((std - 1.0).abs() < 0.05, "std {std}");
    }
}
