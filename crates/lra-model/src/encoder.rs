//! The LRA encoder: token embedding + learned positions, pre-LN blocks (mixer + FFN), final norm.
//! Same shape as the PyTorch LRA code bases (`mlpen/Nystromformer/LRA/code/model.py`) and, with a
//! CLS token, the original JAX LRA transformer.

use burn::module::{Module, Param};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Gelu, Initializer, LayerNorm,
    LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::mixer::{Mixer, MixerConfig, MixerDims, MixerInput, TokenMixer};

/// Embedding init std, as in the PyTorch LRA code (`normal_(std=0.02)`).
const EMBEDDING_STD: f64 = 0.02;

/// Builds an [`Encoder`].
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    /// Token vocabulary size (id 0 is padding).
    pub vocab_size: usize,
    /// Longest token sequence accepted (without the CLS token).
    pub max_len: usize,
    /// Model width.
    pub d_model: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Attention heads per mixer.
    pub n_heads: usize,
    /// Hidden width of the feed-forward network.
    pub d_ffn: usize,
    /// Dropout on embeddings, mixer and FFN outputs.
    pub dropout: f64,
    /// Dropout inside the mixer (attention probabilities).
    pub attention_dropout: f64,
    /// Prepend a learned CLS vector (JAX LRA `classifier_pool = "CLS"`).
    pub cls_token: bool,
    /// The token mixer of every block.
    pub mixer: MixerConfig,
}

impl EncoderConfig {
    /// Sequence length the mixers see: tokens plus the CLS slot.
    pub fn mixer_len(&self) -> usize {
        self.max_len + usize::from(self.cls_token)
    }

    /// Sizes handed to every mixer.
    pub fn mixer_dims(&self) -> MixerDims {
        MixerDims {
            d_model: self.d_model,
            n_heads: self.n_heads,
            max_len: self.mixer_len(),
            dropout: self.attention_dropout,
        }
    }

    /// Initialises the encoder.
    pub fn init(&self, device: &Device) -> Encoder {
        let normal = Initializer::Normal {
            mean: 0.0,
            std: EMBEDDING_STD,
        };
        let dims = self.mixer_dims();
        Encoder {
            tokens: EmbeddingConfig::new(self.vocab_size, self.d_model)
                .with_initializer(normal.clone())
                .init(device),
            positions: EmbeddingConfig::new(self.mixer_len(), self.d_model)
                .with_initializer(normal.clone())
                .init(device),
            cls: self
                .cls_token
                .then(|| normal.init([1, 1, self.d_model], device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            blocks: (0..self.n_layers)
                .map(|_| self.init_block(&dims, device))
                .collect(),
            norm: LayerNormConfig::new(self.d_model).init(device),
            max_len: self.max_len,
        }
    }

    fn init_block(&self, dims: &MixerDims, device: &Device) -> Block {
        Block {
            mixer_norm: LayerNormConfig::new(self.d_model).init(device),
            mixer: self.mixer.init(dims, device),
            ffn_norm: LayerNormConfig::new(self.d_model).init(device),
            ffn_in: LinearConfig::new(self.d_model, self.d_ffn).init(device),
            ffn_out: LinearConfig::new(self.d_ffn, self.d_model).init(device),
            activation: Gelu::new(),
            dropout: DropoutConfig::new(self.dropout).init(),
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

/// Token + position embedding, a stack of pre-LN blocks and a final LayerNorm.
#[derive(Module, Debug)]
pub struct Encoder {
    tokens: Embedding,
    positions: Embedding,
    cls: Option<Param<Tensor<3>>>,
    dropout: Dropout,
    blocks: Vec<Block>,
    norm: LayerNorm,
    max_len: usize,
}

impl Encoder {
    /// # Shapes
    /// - `tokens`, `pad_mask`: `[batch, seq]` with `seq <= max_len`
    ///
    /// # Panics
    /// If `seq` exceeds the `max_len` the encoder was built for.
    pub fn forward(&self, tokens: Tensor<2, Int>, pad_mask: Tensor<2, Bool>) -> EncoderOutput {
        let (mut x, pad_mask) = self.embed(tokens, pad_mask);
        let mut carry = None;
        for block in &self.blocks {
            (x, carry) = block.forward(x, pad_mask.clone(), carry);
        }
        EncoderOutput {
            hidden: self.norm.forward(x),
            pad_mask,
        }
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
        let (mut x, pad_mask) = self.embed(tokens, pad_mask);
        let mut carry = None;
        for block in &self.blocks[..layer] {
            (x, carry) = block.forward(x, pad_mask.clone(), carry);
        }
        Some((target.mixer_norm.forward(x), pad_mask, &target.mixer))
    }

    /// Token + position embeddings (with the CLS slot when configured) and the matching mask.
    fn embed(
        &self,
        tokens: Tensor<2, Int>,
        pad_mask: Tensor<2, Bool>,
    ) -> (Tensor<3>, Tensor<2, Bool>) {
        let [batch, seq] = tokens.dims();
        assert!(
            seq <= self.max_len,
            "sequence of {seq} tokens is longer than the model's max_len {}",
            self.max_len
        );
        let device = tokens.device();
        let mut x = self.tokens.forward(tokens); // [b, n, d]
        let mut pad_mask = pad_mask;
        if let Some(cls) = &self.cls {
            let [_, _, d_model] = x.dims();
            x = Tensor::cat(vec![cls.val().expand([batch, 1, d_model]), x], 1);
            let cls_mask = Tensor::<2, Bool>::from_data([[false]], &device).expand([batch, 1]);
            pad_mask = Tensor::cat(vec![cls_mask, pad_mask], 1);
        }
        let len = x.dims()[1];
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
        (
            self.dropout.forward(x + self.positions.forward(positions)),
            pad_mask,
        )
    }

    /// Number of blocks.
    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }
}

/// `x + mixer(LN(x))`, then `x + FFN(LN(x))` (pre-LN).
#[derive(Module, Debug)]
struct Block {
    mixer_norm: LayerNorm,
    mixer: Mixer,
    ffn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    activation: Gelu,
    dropout: Dropout,
}

impl Block {
    fn forward(
        &self,
        x: Tensor<3>,
        pad_mask: Tensor<2, Bool>,
        carry: Option<Tensor<3>>,
    ) -> (Tensor<3>, Option<Tensor<3>>) {
        let input = MixerInput::new(self.mixer_norm.forward(x.clone()))
            .pad_mask(pad_mask)
            .carry(carry);
        let mixed = self.mixer.forward(input);
        let x = x + self.dropout.forward(mixed.x);
        let hidden = self
            .activation
            .forward(self.ffn_in.forward(self.ffn_norm.forward(x.clone())));
        let x = x + self
            .dropout
            .forward(self.ffn_out.forward(self.dropout.forward(hidden)));
        (x, mixed.carry)
    }
}
