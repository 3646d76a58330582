//! The `[model]` section of an experiment config, defined once here (serde) and turned into a
//! [`ClassifierConfig`] with what the task supplies: vocabulary, length, input layout and the
//! objective's output width.

use serde::{Deserialize, Serialize};

use crate::classifier::{ClassifierConfig, HeadActivation, HeadKind, Pooling};
use crate::encoder::{EMBEDDING_STD, EncoderConfig, NormPlacement};
use crate::error::ConfigError;
use crate::init::DenseInit;
use crate::mixer::{MixerConfig, PaddedQueries};
use crate::positions::Positions;
use crate::sequence_norm::Normalization;
use crate::value_input::InputValues;

/// Model sizes and options; the mixer is chosen and configured apart (`attention`, `[mixer]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Width of the attention's queries, keys and values, all heads together. Default: d_model;
    /// the JAX LRA configs set `qkv_dim` to half the embedding width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qkv_dim: Option<usize>,
    /// Biases on the attention's query/key/value/output projections. Default true; false for
    /// the JAX LRA models (`transformer.py:60-75`, `bias=False`).
    #[serde(default = "enabled", skip_serializing_if = "is_enabled")]
    pub attention_bias: bool,
    pub d_ffn: usize,
    pub dropout: f64,
    pub attention_dropout: f64,
    pub pooling: Pooling,
    /// Hidden width of the MLP head (the pooler head is d_model wide).
    pub head_hidden: usize,
    /// The head: `mlp` (default, the LRA heads), `pooler` (BERT's dense + tanh, dropout, linear)
    /// or `linear` (one linear layer; `head_hidden` unused).
    #[serde(default)]
    pub head: HeadKind,
    /// The MLP head's nonlinearity: `relu` (default) or `gelu` (the S4 retrieval decoder).
    #[serde(default, skip_serializing_if = "HeadActivation::is_default")]
    pub head_activation: HeadActivation,
    /// How the dense layers start: `burn` (default; uniform ±1/√fan-in, as PyTorch) or `jax_lra`
    /// (the JAX LRA code's Flax inits; see [`DenseInit`]).
    #[serde(default, skip_serializing_if = "DenseInit::is_default")]
    pub dense_init: DenseInit,
    /// Dropout on the FFN's hidden activations too. Default: true (the LRA models); false for
    /// BERT/RoBERTa, whose FFN drops out its output only.
    #[serde(default = "enabled")]
    pub ffn_inner_dropout: bool,
    /// Feed-forward sublayer in each block. Default: true (false: the LRA S4 model).
    #[serde(default = "enabled")]
    pub ffn: bool,
    /// LayerNorm placement: `pre` (default) or `post` (BERT; S4 ListOps/Image `prenorm: false`).
    #[serde(default)]
    pub norm: NormPlacement,
    /// The blocks' norm: `layer` (default) or `batch` (the LRA S4 models' `norm: batch`,
    /// `BatchNorm1d` over batch × length per feature, padding included).
    #[serde(default, skip_serializing_if = "Normalization::is_default")]
    pub normalization: Normalization,
    /// Positions: `learned` (default), `sinusoidal` (the JAX LRA code's fixed table) or `none`
    /// (the LRA S4 model); `true`/`false` as in earlier configs mean learned/none.
    #[serde(default)]
    pub positions: Positions,
    /// Std of the token embeddings' normal init. Default: 0.02 (PyTorch LRA code, BERT); the JAX
    /// LRA code's `nn.Embed` draws from N(0, 1).
    #[serde(default = "embedding_std")]
    pub embedding_init_std: f64,
    /// Std of the CLS vector's normal init (`pooling = "cls"`). Default: 0.02; 0 is zeros, as in
    /// the JAX LRA code.
    #[serde(default = "embedding_std")]
    pub cls_init_std: f64,
    /// Ids read as numbers, `(id − center)/scale` through `Linear(1, d_model)`, instead of an
    /// embedding table: `{ center = 122.6, scale = 61.0 }` are the LRA S4 CIFAR pixels, `{ center
    /// = 0, scale = 255 }` its Pathfinder pixels. Default: the embedding table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_values: Option<InputValues>,
    /// Token-type (segment) embeddings: 0 = none (default), 2 for BERT sentence pairs.
    #[serde(default)]
    pub token_types: usize,
    /// LayerNorm over the summed embeddings (BERT, RoBERTa). Default: false.
    #[serde(default)]
    pub embedding_norm: bool,
    /// Epsilon of every LayerNorm. Default: 1e-5 (PyTorch's); BERT uses 1e-12.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Token id 0 is padding wherever it occurs, not only after the sequence's end: the PyTorch
    /// LRA code's `mask = input_ids != 0` (Skyformer `dataset_LRA.py:32`) and the JAX LRA code's
    /// `inputs > 0` (`transformer.py:148`). On Image, Pathfinder and Path-X the tokens are pixel
    /// values, so black pixels are then masked. Default: false.
    #[serde(default, skip_serializing_if = "is_disabled")]
    pub zero_ids_are_padding: bool,
    /// Whether the mixers see the padding mask. Default: true. `false`: padded positions are
    /// ordinary tokens to them (pooling still leaves them out where it does), as in the JAX LRA
    /// Linformer, Performer and linear attention, which never read their `padding_mask`
    /// (`linformer_attention.py:149-164`, `performer_attention.py:550-705`,
    /// `linear_attention.py:137-142`).
    #[serde(default = "enabled", skip_serializing_if = "is_enabled")]
    pub mask_padding_in_mixers: bool,
    /// What an attention mixer gives a padded query: `attend` (default; its attention over the
    /// real keys) or `uniform` (the mean of every position's value: flax's attention, which the
    /// JAX LRA Transformer and Longformer use; it reaches the output through mean pooling).
    #[serde(default, skip_serializing_if = "PaddedQueries::is_default")]
    pub padded_queries: PaddedQueries,
}

fn enabled() -> bool {
    true
}

fn is_enabled(value: &bool) -> bool {
    *value
}

fn is_disabled(value: &bool) -> bool {
    !*value
}

fn embedding_std() -> f64 {
    EMBEDDING_STD
}

fn default_layer_norm_eps() -> f64 {
    1e-5
}

/// What the task contributes to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskShape {
    /// Token ids, padding included.
    pub vocab_size: usize,
    /// Longest token sequence.
    pub max_len: usize,
    /// Output width: classes, or 1 for regression.
    pub outputs: usize,
    /// Pairs of documents through one shared encoder.
    pub dual_encoder: bool,
}

impl ModelConfig {
    /// Checks what each value alone cannot say.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(ConfigError::Inconsistent(format!(
                "model.layer_norm_eps = {}: expected a positive epsilon",
                self.layer_norm_eps
            )));
        }
        for (field, std) in [
            ("embedding_init_std", self.embedding_init_std),
            ("cls_init_std", self.cls_init_std),
        ] {
            if !(std.is_finite() && std >= 0.0) {
                return Err(ConfigError::Inconsistent(format!(
                    "model.{field} = {std}: expected a standard deviation ≥ 0"
                )));
            }
        }
        if let Some(values) = &self.input_values {
            values.validate()?;
        }
        if self.positions == Positions::Sinusoidal && !self.d_model.is_multiple_of(2) {
            return Err(ConfigError::Inconsistent(format!(
                "model.positions = \"sinusoidal\" needs an even model.d_model (sin and cos \
                 columns in pairs), got {}",
                self.d_model
            )));
        }
        Ok(())
    }

    /// Width of the queries, keys and values (`qkv_dim`, else `d_model`).
    pub fn qkv_dim(&self) -> usize {
        self.qkv_dim.unwrap_or(self.d_model)
    }

    /// The model for a task, with `mixer` in every block.
    pub fn classifier(&self, task: TaskShape, mixer: MixerConfig) -> ClassifierConfig {
        ClassifierConfig {
            encoder: EncoderConfig {
                vocab_size: task.vocab_size,
                input_values: self.input_values,
                max_len: task.max_len,
                d_model: self.d_model,
                n_layers: self.n_layers,
                n_heads: self.n_heads,
                qkv_dim: self.qkv_dim(),
                attention_bias: self.attention_bias,
                d_ffn: self.d_ffn,
                ffn: self.ffn,
                norm: self.norm,
                normalization: self.normalization,
                positions: self.positions,
                embedding_init_std: self.embedding_init_std,
                cls_init_std: self.cls_init_std,
                dropout: self.dropout,
                attention_dropout: self.attention_dropout,
                ffn_inner_dropout: self.ffn_inner_dropout,
                cls_token: self.pooling == Pooling::Cls,
                token_types: self.token_types,
                embedding_norm: self.embedding_norm,
                layer_norm_eps: self.layer_norm_eps,
                mixer,
                mask_padding_in_mixers: self.mask_padding_in_mixers,
                padded_queries: self.padded_queries,
            },
            pooling: self.pooling,
            head_hidden: self.head_hidden,
            head: self.head,
            head_activation: self.head_activation,
            num_classes: task.outputs,
            dual_encoder: task.dual_encoder,
            dense_init: self.dense_init,
            zero_ids_are_padding: self.zero_ids_are_padding,
        }
    }
}
