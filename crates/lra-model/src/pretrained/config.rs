//! A checkpoint's `config.json` (Hugging Face `BertConfig` / `RobertaConfig`), and the
//! [`ModelConfig`] of the project's encoder that computes what that model computes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{PretrainedError, Result};
use crate::classifier::{HeadActivation, HeadKind, Pooling};
use crate::encoder::{EMBEDDING_STD, NormPlacement};
use crate::init::DenseInit;
use crate::model_config::ModelConfig;
use crate::positions::Positions;
use crate::sequence_norm::Normalization;

/// The model families this import reads (`model_type` in `config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `bert`: position ids `0, 1, …`.
    Bert,
    /// `roberta`: position ids `pad_token_id + 1 + i` (fairseq's convention, kept by transformers'
    /// `create_position_ids_from_input_ids`).
    Roberta,
}

impl Family {
    /// The `model_type` string, also the prefix of the base model's keys in task checkpoints
    /// (`bert.`, `roberta.`: transformers' `base_model_prefix`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
        }
    }
}

/// The fields of `config.json` the encoder depends on. Absent optional fields take the defaults
/// of transformers' config class for the family, as `from_pretrained` does.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointConfig {
    /// The `config.json` read (for messages).
    pub path: PathBuf,
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: usize,
}

/// `config.json` as written by `save_pretrained`; unknown fields (architectures, ids of special
/// tokens, …) are ignored, as transformers keeps but does not use them for the encoder.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    hidden_act: Option<String>,
    hidden_dropout_prob: Option<f64>,
    attention_probs_dropout_prob: Option<f64>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    pad_token_id: Option<usize>,
    position_embedding_type: Option<String>,
}

impl CheckpointConfig {
    /// Reads `folder/config.json`.
    pub fn read(folder: &Path) -> Result<Self> {
        let path = folder.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                PretrainedError::Missing {
                    path: path.clone(),
                    what: "no config.json: expected a Hugging Face BERT or RoBERTa checkpoint \
                           folder (config.json + model.safetensors or pytorch_model.bin, as \
                           `save_pretrained` writes)"
                        .into(),
                }
            } else {
                PretrainedError::File {
                    path: path.clone(),
                    message: error.to_string(),
                }
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a `config.json` found at `path`.
    pub fn parse(text: &str, path: PathBuf) -> Result<Self> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            PretrainedError::File {
                path: path.clone(),
                message: format!("`{}`: {}", e.path(), e.inner()),
            }
        })?;
        let field = |field: &'static str, message: String| PretrainedError::Field {
            path: path.clone(),
            field,
            message,
        };
        let family = match raw.model_type.as_deref() {
            Some("bert") => Family::Bert,
            Some("roberta") => Family::Roberta,
            Some(other) => {
                return Err(field(
                    "model_type",
                    format!("`{other}` is not supported; expected `bert` or `roberta`"),
                ));
            }
            None => {
                return Err(field(
                    "model_type",
                    "missing; expected `bert` or `roberta`".into(),
                ));
            }
        };
        let act = raw.hidden_act.as_deref().unwrap_or("gelu");
        if act != "gelu" {
            return Err(field(
                "hidden_act",
                format!(
                    "`{act}` is not supported; expected `gelu` (the exact erf GELU of BERT and \
                     RoBERTa, which the encoder's feed-forward network computes)"
                ),
            ));
        }
        let positions = raw.position_embedding_type.as_deref().unwrap_or("absolute");
        if positions != "absolute" {
            return Err(field(
                "position_embedding_type",
                format!("`{positions}` is not supported; expected `absolute`"),
            ));
        }
        let positive = |value: usize, name: &'static str| match value {
            0 => Err(field(name, "must be positive".into())),
            value => Ok(value),
        };
        let required = |value: Option<usize>, name: &'static str| {
            positive(value.ok_or_else(|| field(name, "missing".into()))?, name)
        };
        let config = Self {
            family,
            vocab_size: required(raw.vocab_size, "vocab_size")?,
            hidden_size: required(raw.hidden_size, "hidden_size")?,
            num_hidden_layers: required(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads: required(raw.num_attention_heads, "num_attention_heads")?,
            intermediate_size: required(raw.intermediate_size, "intermediate_size")?,
            hidden_dropout_prob: raw.hidden_dropout_prob.unwrap_or(0.1),
            attention_probs_dropout_prob: raw.attention_probs_dropout_prob.unwrap_or(0.1),
            max_position_embeddings: positive(
                raw.max_position_embeddings.unwrap_or(512),
                "max_position_embeddings",
            )?,
            type_vocab_size: positive(raw.type_vocab_size.unwrap_or(2), "type_vocab_size")?,
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-12),
            pad_token_id: raw.pad_token_id.unwrap_or(match family {
                Family::Bert => 0,
                Family::Roberta => 1,
            }),
            path: path.clone(),
        };
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(field(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    config.num_attention_heads, config.hidden_size
                ),
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", config.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                config.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(field(name, format!("{p} is not a probability in [0, 1)")));
            }
        }
        if config.layer_norm_eps.is_nan() || config.layer_norm_eps <= 0.0 {
            return Err(field(
                "layer_norm_eps",
                format!("{} is not a positive epsilon", config.layer_norm_eps),
            ));
        }
        if config.usable_positions() == 0 {
            return Err(field(
                "max_position_embeddings",
                format!(
                    "{} rows leave no position for a token (RoBERTa's first pad_token_id + 1 = \
                     {} rows are never used)",
                    config.max_position_embeddings,
                    config.position_offset()
                ),
            ));
        }
        Ok(config)
    }

    /// Rows of the checkpoint's position table before the one of the first token: 0 for BERT;
    /// `pad_token_id + 1` for RoBERTa, whose real token `i` of a right-padded sequence has position
    /// id `pad_token_id + 1 + i`. Dropping these rows at import makes our position `i` (ids
    /// `0, 1, …` whatever the padding) equal to the reference's for every real token.
    pub fn position_offset(&self) -> usize {
        match self.family {
            Family::Bert => 0,
            Family::Roberta => self.pad_token_id + 1,
        }
    }

    /// Longest sequence the checkpoint has positions for (special tokens included).
    pub fn usable_positions(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset())
    }

    /// The project's encoder configured as this checkpoint's model: post-LN blocks, a LayerNorm
    /// over the summed word + position + token-type embeddings, the checkpoint's epsilon and
    /// dropouts, the first token (`[CLS]`/`<s>`) pooled into BERT's pooler head. The feed-forward
    /// activation is the exact erf GELU (`ops::gelu`) that `hidden_act = "gelu"` means in
    /// transformers (not the tanh approximation).
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            d_model: self.hidden_size,
            n_layers: self.num_hidden_layers,
            n_heads: self.num_attention_heads,
            qkv_dim: None,
            d_ffn: self.intermediate_size,
            dropout: self.hidden_dropout_prob,
            attention_dropout: self.attention_probs_dropout_prob,
            pooling: Pooling::First,
            head_hidden: self.hidden_size,
            head: HeadKind::Pooler,
            head_activation: HeadActivation::Relu,
            dense_init: DenseInit::Burn,
            zero_ids_are_padding: false,
            attention_bias: true,
            ffn_inner_dropout: false,
            ffn: true,
            norm: NormPlacement::Post,
            normalization: Normalization::Layer,
            input_values: None,
            mask_padding_in_mixers: true,
            padded_queries: crate::mixer::PaddedQueries::Attend,
            positions: Positions::Learned,
            embedding_init_std: EMBEDDING_STD,
            cls_init_std: EMBEDDING_STD,
            token_types: self.type_vocab_size,
            embedding_norm: true,
            layer_norm_eps: self.layer_norm_eps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BERT_BASE: &str = r#"{
        "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
        "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
        "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
        "transformers_version": "4.6.0.dev0", "type_vocab_size": 2, "use_cache": true,
        "vocab_size": 30522
    }"#;

    const ROBERTA_BASE: &str = r#"{
        "architectures": ["RobertaForMaskedLM"], "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
        "layer_norm_eps": 1e-05, "max_position_embeddings": 514, "model_type": "roberta",
        "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
        "type_vocab_size": 1, "vocab_size": 50265
    }"#;

    fn parse(text: &str) -> Result<CheckpointConfig> {
        CheckpointConfig::parse(text, PathBuf::from("ckpt/config.json"))
    }

    fn edited(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from}");
        text.replace(from, to)
    }

    #[test]
    fn bert_base_gives_a_post_ln_encoder_with_its_sizes_and_positions_from_zero() {
        let config = parse(BERT_BASE).unwrap();
        assert_eq!(config.family, Family::Bert);
        assert_eq!(
            (config.position_offset(), config.usable_positions()),
            (0, 512)
        );
        let model = config.model_config();
        assert_eq!(
            (model.d_model, model.n_layers, model.n_heads, model.d_ffn),
            (768, 12, 12, 3072)
        );
        assert_eq!(model.norm, NormPlacement::Post);
        assert!(model.embedding_norm && model.positions == Positions::Learned && model.ffn);
        assert_eq!((model.token_types, model.layer_norm_eps), (2, 1e-12));
        assert_eq!(
            (model.pooling, model.head),
            (Pooling::First, HeadKind::Pooler)
        );
        model.validate().unwrap();
    }

    #[test]
    fn roberta_positions_start_after_the_padding_row() {
        let config = parse(ROBERTA_BASE).unwrap();
        assert_eq!(config.family, Family::Roberta);
        // pad_token_id = 1: position ids 2, 3, …; 514 rows hold 512 tokens.
        assert_eq!(
            (config.position_offset(), config.usable_positions()),
            (2, 512)
        );
        let model = config.model_config();
        assert_eq!((model.token_types, model.layer_norm_eps), (1, 1e-5));
    }

    #[test]
    fn unsupported_values_are_errors_naming_file_and_field() {
        let cases = [
            (
                edited(
                    BERT_BASE,
                    r#""model_type": "bert""#,
                    r#""model_type": "gpt2""#,
                ),
                "model_type",
            ),
            (
                edited(
                    BERT_BASE,
                    r#""hidden_act": "gelu""#,
                    r#""hidden_act": "gelu_new""#,
                ),
                "hidden_act",
            ),
            (
                edited(
                    BERT_BASE,
                    r#""position_embedding_type": "absolute""#,
                    r#""position_embedding_type": "relative_key""#,
                ),
                "position_embedding_type",
            ),
            (
                edited(
                    BERT_BASE,
                    r#""num_attention_heads": 12"#,
                    r#""num_attention_heads": 7"#,
                ),
                "num_attention_heads",
            ),
            (
                edited(BERT_BASE, r#""hidden_size": 768,"#, ""),
                "hidden_size",
            ),
            (
                edited(
                    BERT_BASE,
                    r#""vocab_size": 30522"#,
                    r#""vocab_size": "many""#,
                ),
                "vocab_size",
            ),
            (
                edited(
                    ROBERTA_BASE,
                    r#""max_position_embeddings": 514"#,
                    r#""max_position_embeddings": 2"#,
                ),
                "max_position_embeddings",
            ),
        ];
        for (text, field) in cases {
            let message = parse(&text).unwrap_err().to_string();
            assert!(
                message.contains("ckpt/config.json") && message.contains(field),
                "{field}: {message}"
            );
        }
        let message = parse("{ not json").unwrap_err().to_string();
        assert!(message.contains("ckpt/config.json"), "{message}");
    }

    #[test]
    fn absent_optional_fields_take_transformers_defaults() {
        let minimal = r#"{"model_type": "roberta", "vocab_size": 10, "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16}"#;
        let config = parse(minimal).unwrap();
        // RobertaConfig's defaults: BertConfig's, with pad_token_id = 1.
        assert_eq!(config.pad_token_id, 1);
        assert_eq!(
            (config.max_position_embeddings, config.type_vocab_size),
            (512, 2)
        );
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.hidden_dropout_prob, 0.1);
    }
}
