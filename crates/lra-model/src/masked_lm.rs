//! The masked-language-model head on the encoder (BERT's `cls.predictions`, RoBERTa's `lm_head`):
//! `logits = LayerNorm(gelu(dense(h))) · Eᵀ + b`, the decoder tied to the word embeddings `E`;
//! optionally beside it the sentence-order head ([`SentenceOrderHead`]). The model MLM (+ SOP)
//! pretraining trains and that pretrained checkpoints' heads import into.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::encoder::{Encoder, EncoderConfig};
use crate::folded_linear::FoldedLinear;
use crate::layer_norm::LayerNorm;
use crate::ops::gelu::gelu;
use crate::sentence_order::SentenceOrderHead;

/// Builds a [`MaskedLm`].
#[derive(Clone, Debug)]
pub struct MaskedLmConfig {
    /// The encoder; it must not prepend a learned CLS vector (every output is a token's).
    pub encoder: EncoderConfig,
    /// Add the sentence-order prediction head.
    pub sentence_order: bool,
}

impl MaskedLmConfig {
    /// Initialises the model, drawing every parameter now from the device RNG (the output bias
    /// starts at zero, as transformers' does). The sentence-order head is drawn last, so the
    /// rest is the same with or without it.
    pub fn init(&self, device: &Device) -> MaskedLm {
        let d_model = self.encoder.d_model;
        let model = crate::init_now(MaskedLm {
            encoder: self.encoder.init(device),
            head: MlmHead {
                dense: LinearConfig::new(d_model, d_model).init(device),
                norm: LayerNorm::new(d_model, self.encoder.layer_norm_eps, device),
                bias: Param::from_tensor(Tensor::zeros([self.encoder.vocab_size], device)),
            },
            sentence_order: None,
        });
        MaskedLm {
            sentence_order: self
                .sentence_order
                .then(|| SentenceOrderHead::new(d_model, device)),
            ..model
        }
    }
}

/// The transform and output bias of the MLM head; the decoder matrix is the encoder's.
#[derive(Module, Debug)]
pub struct MlmHead {
    dense: Linear,
    norm: LayerNorm,
    bias: Param<Tensor<1>>,
}

/// Encoder + masked-LM head (+ sentence-order head).
#[derive(Module, Debug)]
pub struct MaskedLm {
    encoder: Encoder,
    head: MlmHead,
    sentence_order: Option<SentenceOrderHead>,
}

/// The outputs of both pretraining heads.
#[derive(Debug)]
pub struct PretrainingOutput {
    /// Vocabulary logits of the masked positions asked for, `[targets, vocab]`.
    pub mlm: Option<Tensor<2>>,
    /// Sentence-order logits of every sequence, `[batch, 2]`, when the model has that head.
    pub sentence_order: Option<Tensor<2>>,
}

impl MaskedLm {
    /// The encoder (to fine-tune it, or inspect it).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The encoder alone, the head dropped.
    pub fn into_encoder(self) -> Encoder {
        self.encoder
    }

    /// Whether the model has the sentence-order head.
    pub fn has_sentence_order(&self) -> bool {
        self.sentence_order.is_some()
    }

    /// Vocabulary logits of every position.
    ///
    /// # Shapes
    /// - `tokens`, `types`, `pad_mask`: `[batch, seq]` (`true` = padding)
    /// - output: `[batch, seq, vocab]`
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        types: Option<Tensor<2, Int>>,
        pad_mask: Tensor<2, Bool>,
    ) -> Tensor<3> {
        let hidden = self.encoder.forward_typed(tokens, types, pad_mask).hidden;
        let [batch, seq, d_model] = hidden.dims();
        let logits = self.mlm_logits(hidden.reshape([batch * seq, d_model]));
        let vocab = logits.dims()[1];
        logits.reshape([batch, seq, vocab])
    }

    /// Both heads' logits from one pass of the encoder: the MLM head only at the positions
    /// `masked` (indices into the flattened `[batch · seq]` positions), as the MRA code gathers
    /// its 77 targets before the head; the loss is the same as over every position's logits,
    /// and at 15 % masking the vocabulary product, a quarter of a BERT-base step's work at
    /// 512 tokens, shrinks sevenfold.
    ///
    /// # Shapes
    /// - `tokens`, `types`, `pad_mask`: `[batch, seq]` (`true` = padding); `masked`: `[targets]`
    /// - output: MLM logits `[targets, vocab]`, sentence-order logits `[batch, 2]`
    pub fn forward_pretraining(
        &self,
        tokens: Tensor<2, Int>,
        types: Option<Tensor<2, Int>>,
        pad_mask: Tensor<2, Bool>,
        masked: Option<Tensor<1, Int>>,
    ) -> PretrainingOutput {
        let hidden = self.encoder.forward_typed(tokens, types, pad_mask).hidden;
        let [batch, seq, d_model] = hidden.dims();
        PretrainingOutput {
            sentence_order: self
                .sentence_order
                .as_ref()
                .map(|head| head.forward(hidden.clone())),
            mlm: masked.map(|at| {
                let rows = hidden.reshape([batch * seq, d_model]).select(0, at);
                self.mlm_logits(rows)
            }),
        }
    }

    /// The MLM head on encoder states `[rows, d_model]` → `[rows, vocab]`.
    fn mlm_logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        let transformed = self
            .head
            .norm
            .forward(gelu(self.head.dense.forward_folded(hidden)));
        let embeddings = self.encoder.token_embedding(); // [vocab, d]
        transformed
            .matmul(embeddings.transpose())
            .add(self.head.bias.val().unsqueeze::<2>())
    }
}
