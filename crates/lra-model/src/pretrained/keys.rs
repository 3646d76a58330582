//! Checkpoint key → parameter path of the project's model, as `burn-store` key-remapping
//! patterns, and why a key or parameter is left out.
//!
//! Parameter paths are Burn's module paths without enum variant names (`skip_enum_variants`), so
//! one mapping serves every mixer: an attention mixer is `Attention<Core>` whose Q/K/V/output
//! projections sit at `mixer.projection.{query,key,value,output}` whatever the core.
//!
//! | checkpoint (after the `bert.`/`roberta.` prefix) | parameter |
//! |---|---|
//! | `embeddings.word_embeddings` | `encoder.tokens` |
//! | `embeddings.position_embeddings` | `encoder.positions` (rows cut, see `CheckpointConfig::position_offset`) |
//! | `embeddings.token_type_embeddings` | `encoder.token_types` |
//! | `embeddings.LayerNorm` | `encoder.embedding_norm` |
//! | `encoder.layer.N.attention.self.{query,key,value}` | `encoder.blocks.N.mixer.projection.{query,key,value}` |
//! | `encoder.layer.N.attention.output.dense` | `encoder.blocks.N.mixer.projection.output` |
//! | `encoder.layer.N.attention.output.LayerNorm` | `encoder.blocks.N.mixer_norm` |
//! | `encoder.layer.N.intermediate.dense` | `encoder.blocks.N.ffn_in` |
//! | `encoder.layer.N.output.dense` | `encoder.blocks.N.ffn_out` |
//! | `encoder.layer.N.output.LayerNorm` | `encoder.blocks.N.ffn_norm` |
//! | `pooler.dense` | `head_in` (the pooler head's dense layer) |
//!
//! LayerNorm `weight`/`bias` (or the older `gamma`/`beta`) become Burn's `gamma`/`beta`.

use burn_store::KeyRemapper;

use super::config::Family;

/// What the mapped parameters belong to: the classifier (encoder + pooler head) or the encoder
/// alone (its paths have no `encoder.` prefix, and the pooler is not used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Classifier,
    Encoder,
}

impl Target {
    fn encoder_prefix(self) -> &'static str {
        match self {
            Target::Classifier => "encoder.",
            Target::Encoder => "",
        }
    }
}

/// The remapping patterns, applied in order to each key (`KeyRemapper` applies every pattern
/// that matches, each to the result of the previous ones).
pub fn patterns(family: Family, target: Target) -> Vec<(String, String)> {
    let encoder = target.encoder_prefix();
    let layer = r"^encoder\.layer\.(\d+)\.";
    let block = format!("{encoder}blocks.${{1}}.");
    let mut patterns = vec![
        // A task model's keys carry the base model's prefix; the base model's own do not.
        (format!(r"^{}\.", family.name()), String::new()),
        (
            r"^embeddings\.word_embeddings\.".into(),
            format!("{encoder}tokens."),
        ),
        (
            r"^embeddings\.position_embeddings\.".into(),
            format!("{encoder}positions."),
        ),
        (
            r"^embeddings\.token_type_embeddings\.".into(),
            format!("{encoder}token_types."),
        ),
        (
            r"^embeddings\.LayerNorm\.".into(),
            format!("{encoder}embedding_norm."),
        ),
        (
            format!(r"{layer}attention\.self\.(query|key|value)\."),
            format!("{block}mixer.projection.${{2}}."),
        ),
        (
            format!(r"{layer}attention\.output\.dense\."),
            format!("{block}mixer.projection.output."),
        ),
        (
            format!(r"{layer}attention\.output\.LayerNorm\."),
            format!("{block}mixer_norm."),
        ),
        (
            format!(r"{layer}intermediate\.dense\."),
            format!("{block}ffn_in."),
        ),
        (
            format!(r"{layer}output\.dense\."),
            format!("{block}ffn_out."),
        ),
        (
            format!(r"{layer}output\.LayerNorm\."),
            format!("{block}ffn_norm."),
        ),
    ];
    if target == Target::Classifier {
        patterns.push((r"^pooler\.dense\.".into(), "head_in.".into()));
    }
    // Burn's LayerNorm names its parameters gamma and beta.
    let norm = format!(r"^({encoder}(?:embedding_norm|blocks\.\d+\.(?:mixer_norm|ffn_norm)))\.");
    patterns.push((format!("{norm}(?:weight|gamma)$"), "${1}.gamma".into()));
    patterns.push((format!("{norm}(?:bias|beta)$"), "${1}.beta".into()));
    patterns
}

/// The patterns as `burn-store`'s remapper.
pub fn remapper(family: Family, target: Target) -> KeyRemapper {
    KeyRemapper::from_patterns(patterns(family, target))
        .expect("the key-mapping patterns are valid regular expressions")
}

/// Path of the position table parameter.
pub fn positions_path(target: Target) -> String {
    format!("{}positions.weight", target.encoder_prefix())
}

/// Why a checkpoint key was not loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnusedReason {
    /// Masked-LM / next-sentence heads of a pretraining checkpoint.
    PretrainingHead,
    /// The classifier of a checkpoint fine-tuned on some task.
    FineTunedHead,
    /// The pooler of a checkpoint loaded as an encoder without head.
    PoolerNotUsed,
    /// Attention projections, and the chosen mixer has none.
    NoAttentionProjections { mixer: &'static str },
    /// transformers' position-id buffer (older checkpoints save it): ids are recomputed.
    PositionIdBuffer,
    /// Nothing in the model corresponds.
    NoParameter,
}

impl std::fmt::Display for UnusedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PretrainingHead => f.write_str("pretraining head (masked LM / next sentence)"),
            Self::FineTunedHead => {
                f.write_str("a fine-tuned task head; this model's head starts from its init")
            }
            Self::PoolerNotUsed => f.write_str("the pooler; an encoder without head has none"),
            Self::NoAttentionProjections { mixer } => write!(
                f,
                "attention projections; the `{mixer}` mixer has no Q/K/V/output projections"
            ),
            Self::PositionIdBuffer => f.write_str("position-id buffer; ids are recomputed"),
            Self::NoParameter => f.write_str("no parameter of this model corresponds"),
        }
    }
}

/// Why the checkpoint key `key` (as stored) found no parameter.
pub fn unused_reason(key: &str, family: Family, mixer: &'static str) -> UnusedReason {
    let key = key
        .strip_prefix(family.name())
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(key);
    if key.starts_with("cls.") || key.starts_with("lm_head.") {
        UnusedReason::PretrainingHead
    } else if key.starts_with("classifier.") || key.starts_with("qa_outputs.") {
        UnusedReason::FineTunedHead
    } else if key.starts_with("pooler.") {
        UnusedReason::PoolerNotUsed
    } else if key.starts_with("encoder.layer.")
        && (key.contains(".attention.self.") || key.contains(".attention.output.dense."))
    {
        UnusedReason::NoAttentionProjections { mixer }
    } else if key.ends_with("position_ids") {
        UnusedReason::PositionIdBuffer
    } else {
        UnusedReason::NoParameter
    }
}

/// Why a parameter of the model kept its init, when that is expected; `None` when the
/// checkpoint should have had a tensor for it (an error).
pub fn init_reason(path: &str, target: Target, mixer: &'static str) -> Option<String> {
    let encoder = target.encoder_prefix();
    if target == Target::Classifier && path.starts_with("head_out.") {
        return Some("the task's output layer: trained from scratch".into());
    }
    if target == Target::Classifier && path.starts_with("head_in.") {
        return Some(
            "the pooler: the checkpoint has none (a masked-LM checkpoint such as roberta-base)"
                .into(),
        );
    }
    let in_mixer = path
        .strip_prefix(encoder)
        .and_then(|rest| rest.strip_prefix("blocks."))
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(_, rest)| {
            rest.starts_with("mixer.") && !rest.starts_with("mixer.projection.")
        });
    in_mixer.then(|| format!("added by the `{mixer}` mixer; BERT/RoBERTa have no such parameter"))
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::tensor::Device;
    use burn_store::ModuleSnapshot;

    use super::*;
    use crate::MixerKind;
    use crate::model_config::TaskShape;
    use crate::pretrained::config::CheckpointConfig;

    fn remap(keys: &[&str], family: Family, target: Target) -> Vec<String> {
        let patterns = remapper(family, target).to_regex_pairs();
        keys.iter()
            .map(|key| {
                patterns.iter().fold(key.to_string(), |name, (regex, to)| {
                    regex.replace_all(&name, to.as_str()).into_owned()
                })
            })
            .collect()
    }

    #[test]
    fn bert_keys_map_to_the_encoder_blocks_and_the_pooler_head() {
        let keys = [
            "bert.embeddings.word_embeddings.weight",
            "bert.embeddings.position_embeddings.weight",
            "bert.embeddings.token_type_embeddings.weight",
            "bert.embeddings.LayerNorm.weight",
            "bert.embeddings.LayerNorm.bias",
            "bert.encoder.layer.0.attention.self.query.weight",
            "bert.encoder.layer.0.attention.self.key.bias",
            "bert.encoder.layer.11.attention.self.value.weight",
            "bert.encoder.layer.3.attention.output.dense.weight",
            "bert.encoder.layer.3.attention.output.LayerNorm.gamma",
            "bert.encoder.layer.3.attention.output.LayerNorm.beta",
            "bert.encoder.layer.10.intermediate.dense.bias",
            "bert.encoder.layer.10.output.dense.weight",
            "bert.encoder.layer.10.output.LayerNorm.weight",
            "bert.pooler.dense.weight",
            "cls.predictions.transform.dense.weight",
        ];
        let expected = [
            "encoder.tokens.weight",
            "encoder.positions.weight",
            "encoder.token_types.weight",
            "encoder.embedding_norm.gamma",
            "encoder.embedding_norm.beta",
            "encoder.blocks.0.mixer.projection.query.weight",
            "encoder.blocks.0.mixer.projection.key.bias",
            "encoder.blocks.11.mixer.projection.value.weight",
            "encoder.blocks.3.mixer.projection.output.weight",
            "encoder.blocks.3.mixer_norm.gamma",
            "encoder.blocks.3.mixer_norm.beta",
            "encoder.blocks.10.ffn_in.bias",
            "encoder.blocks.10.ffn_out.weight",
            "encoder.blocks.10.ffn_norm.gamma",
            "head_in.weight",
            // Unmapped: reported as unused.
            "cls.predictions.transform.dense.weight",
        ];
        assert_eq!(remap(&keys, Family::Bert, Target::Classifier), expected);
        // A base-model checkpoint (no prefix) maps the same way.
        let bare: Vec<&str> = keys.iter().map(|k| k.trim_start_matches("bert.")).collect();
        assert_eq!(remap(&bare, Family::Bert, Target::Classifier), expected);
    }

    #[test]
    fn roberta_keys_lose_their_prefix_and_the_encoder_target_drops_the_pooler() {
        let keys = [
            "roberta.embeddings.word_embeddings.weight",
            "roberta.encoder.layer.1.output.LayerNorm.bias",
            "roberta.pooler.dense.bias",
            "lm_head.dense.weight",
        ];
        assert_eq!(
            remap(&keys, Family::Roberta, Target::Encoder),
            [
                "tokens.weight",
                "blocks.1.ffn_norm.beta",
                "pooler.dense.bias",
                "lm_head.dense.weight"
            ]
        );
        assert_eq!(
            unused_reason("roberta.pooler.dense.bias", Family::Roberta, "softmax"),
            UnusedReason::PoolerNotUsed
        );
        assert_eq!(
            unused_reason("lm_head.dense.weight", Family::Roberta, "softmax"),
            UnusedReason::PretrainingHead
        );
        assert_eq!(
            unused_reason(
                "bert.encoder.layer.0.attention.self.query.weight",
                Family::Bert,
                "fno"
            ),
            UnusedReason::NoAttentionProjections { mixer: "fno" }
        );
    }

    /// Every mapped BERT key names a parameter of the model built for every attention mixer
    /// (collected with Burn's own paths, enum variants skipped), so Q/K/V/output load whatever
    /// the attention core.
    #[test]
    fn mapped_keys_name_parameters_of_every_attention_mixer() {
        let config = CheckpointConfig::parse(
            r#"{"model_type": "bert", "vocab_size": 11, "hidden_size": 8, "num_hidden_layers": 2,
                "num_attention_heads": 2, "intermediate_size": 12, "max_position_embeddings": 16}"#,
            "config.json".into(),
        )
        .unwrap();
        let hf_keys: Vec<String> = [
            "embeddings.word_embeddings.weight",
            "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight",
            "embeddings.LayerNorm.weight",
            "embeddings.LayerNorm.bias",
            "pooler.dense.weight",
            "pooler.dense.bias",
        ]
        .into_iter()
        .map(String::from)
        .chain((0..2).flat_map(|layer| {
            [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "attention.output.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ]
            .into_iter()
            .flat_map(move |module| {
                ["weight", "bias"].map(|p| format!("bert.encoder.layer.{layer}.{module}.{p}"))
            })
        }))
        .collect();
        let keys: Vec<&str> = hf_keys.iter().map(String::as_str).collect();
        let mapped = remap(&keys, Family::Bert, Target::Classifier);
        let device = Device::flex();
        let shape = TaskShape {
            vocab_size: 11,
            max_len: 16,
            outputs: 2,
            dual_encoder: false,
        };
        let attention_mixers = MixerKind::ALL
            .iter()
            .filter(|kind| kind.default_config().caps().attention_core);
        let mut checked = 0;
        for kind in attention_mixers {
            let model = config
                .model_config()
                .classifier(shape, kind.default_config())
                .init(&device);
            let paths: Vec<String> = model
                .collect(None, None, true)
                .into_iter()
                .map(|tensor| tensor.name)
                .collect();
            for (key, path) in keys.iter().zip(&mapped) {
                assert!(
                    paths.contains(path),
                    "{kind}: {key} → {path} is not a parameter"
                );
            }
            let extras: Vec<&String> = paths
                .iter()
                .filter(|path| !mapped.contains(path) && !path.starts_with("head_out."))
                .collect();
            for path in extras {
                assert!(
                    init_reason(path, Target::Classifier, kind.name()).is_some(),
                    "{kind}: {path} is neither mapped nor a mixer's own parameter"
                );
            }
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} attention mixers");
        assert!(model_has_no_projection_for_non_attention_mixer(
            &device, &config, shape
        ));
    }

    fn model_has_no_projection_for_non_attention_mixer(
        device: &Device,
        config: &CheckpointConfig,
        shape: TaskShape,
    ) -> bool {
        let fno = MixerKind::Fno.default_config();
        let model = config.model_config().classifier(shape, fno).init(device);
        !model
            .collect(None, None, true)
            .iter()
            .any(|tensor| tensor.name.contains("mixer.projection."))
            && model.num_params() > 0
    }
}
