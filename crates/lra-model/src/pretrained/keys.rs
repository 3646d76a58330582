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
//! | `cls.predictions.transform.dense` / `lm_head.dense` | `head.dense` (masked LM) |
//! | `cls.predictions.transform.LayerNorm` / `lm_head.layer_norm` | `head.norm` (masked LM) |
//! | `cls.predictions.bias` / `lm_head.bias` | `head.bias` (masked LM; the decoder is tied to `encoder.tokens`) |
//! | `pooler.dense` | `sentence_order.pooler` (masked LM with the sentence-order head) |
//! | `cls.seq_relationship` | `sentence_order.classifier` (BERT's next-sentence head; same) |
//!
//! LayerNorm `weight`/`bias` (or the older `gamma`/`beta`) become Burn's `gamma`/`beta`.

use burn::module::Module;
use burn_store::{KeyRemapper, ModuleSnapshot};

use super::config::Family;

/// What the mapped parameters belong to: the classifier (encoder + pooler head), the encoder
/// alone (its paths have no `encoder.` prefix, and the pooler is not used), or the masked LM
/// (encoder + the pretraining checkpoint's MLM head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Classifier,
    Encoder,
    MaskedLm,
}

impl Target {
    fn encoder_prefix(self) -> &'static str {
        match self {
            Target::Classifier | Target::MaskedLm => "encoder.",
            Target::Encoder => "",
        }
    }
}

/// How one checkpoint maps onto one model: the family (key prefix), what the parameters belong
/// to, and where the mixer keeps its Q/K/V/output projections.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub family: Family,
    pub target: Target,
    /// The mixer's name, for the report.
    pub mixer: &'static str,
    /// Path of the mixer's `MultiHeadProjection` inside `mixer.` (`projection.` for every
    /// `Attention<Core>`; deeper for a mixer wrapping a host attention), if it has one.
    pub projection: Option<String>,
}

/// Where the masked LM keeps its sentence-order head.
const SENTENCE_ORDER: &str = "sentence_order.";

impl Mapping {
    /// The mapping for `module` (built for `target`) with the mixer `mixer`: the projection's
    /// place is read off the module's own parameter paths.
    pub fn for_module<M: Module>(
        module: &M,
        family: Family,
        target: Target,
        mixer: &'static str,
    ) -> Self {
        let block = format!("{}blocks.0.mixer.", target.encoder_prefix());
        let projection = module
            .collect(None, None, true)
            .into_iter()
            .find_map(|tensor| {
                let inner = tensor
                    .name
                    .strip_prefix(&block)?
                    .strip_suffix("query.weight")?;
                inner.ends_with("projection.").then(|| inner.to_string())
            });
        Self {
            family,
            target,
            mixer,
            projection,
        }
    }

    /// The remapping patterns, applied in order to each key (`KeyRemapper` applies every
    /// pattern that matches, each to the result of the previous ones).
    pub fn patterns(&self) -> Vec<(String, String)> {
        let encoder = self.target.encoder_prefix();
        let layer = r"^encoder\.layer\.(\d+)\.";
        let block = format!("{encoder}blocks.${{1}}.");
        let mut patterns = vec![
            // A task model's keys carry the base model's prefix; the base model's own do not.
            (format!(r"^{}\.", self.family.name()), String::new()),
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
        if let Some(projection) = &self.projection {
            patterns.push((
                format!(r"{layer}attention\.self\.(query|key|value)\."),
                format!("{block}mixer.{projection}${{2}}."),
            ));
            patterns.push((
                format!(r"{layer}attention\.output\.dense\."),
                format!("{block}mixer.{projection}output."),
            ));
        }
        if self.target == Target::Classifier {
            patterns.push((r"^pooler\.dense\.".into(), "head_in.".into()));
        }
        if self.target == Target::MaskedLm {
            let head = [
                (r"^cls\.predictions\.transform\.dense\.", "head.dense."),
                (r"^cls\.predictions\.transform\.LayerNorm\.", "head.norm."),
                (r"^cls\.predictions\.bias$", "head.bias"),
                (r"^lm_head\.dense\.", "head.dense."),
                (r"^lm_head\.layer_norm\.", "head.norm."),
                (r"^lm_head\.bias$", "head.bias"),
            ];
            patterns.extend(head.map(|(from, to)| (from.to_string(), to.to_string())));
            patterns.push((
                r"^pooler\.dense\.".into(),
                format!("{SENTENCE_ORDER}pooler."),
            ));
            patterns.push((
                r"^cls\.seq_relationship\.".into(),
                format!("{SENTENCE_ORDER}classifier."),
            ));
            patterns.push((
                r"^head\.norm\.(?:weight|gamma)$".into(),
                "head.norm.gamma".into(),
            ));
            patterns.push((
                r"^head\.norm\.(?:bias|beta)$".into(),
                "head.norm.beta".into(),
            ));
        }
        // Burn's LayerNorm names its parameters gamma and beta.
        let norm = format!(
            r"^({}(?:embedding_norm|blocks\.\d+\.(?:mixer_norm|ffn_norm)))\.",
            encoder.replace('.', r"\.")
        );
        patterns.push((format!("{norm}(?:weight|gamma)$"), "${1}.gamma".into()));
        patterns.push((format!("{norm}(?:bias|beta)$"), "${1}.beta".into()));
        patterns
    }

    /// The patterns as `burn-store`'s remapper.
    pub fn remapper(&self) -> KeyRemapper {
        KeyRemapper::from_patterns(self.patterns())
            .expect("the key-mapping patterns are valid regular expressions")
    }

    /// Path of the position table parameter.
    pub fn positions_path(&self) -> String {
        format!("{}positions.weight", self.target.encoder_prefix())
    }

    /// Why the checkpoint key `key` (as stored) found no parameter.
    pub fn unused_reason(&self, key: &str) -> UnusedReason {
        let key = key
            .strip_prefix(self.family.name())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(key);
        let tied = key == "cls.predictions.decoder.weight"
            || key == "cls.predictions.decoder.bias"
            || key == "lm_head.decoder.weight"
            || key == "lm_head.decoder.bias";
        let sentence_head = key.starts_with("pooler.") || key.starts_with("cls.seq_relationship.");
        if self.target == Target::MaskedLm && tied {
            UnusedReason::TiedDecoder
        } else if self.target == Target::MaskedLm && sentence_head {
            UnusedReason::SentenceOrderOff
        } else if key.starts_with("cls.") || key.starts_with("lm_head.") {
            UnusedReason::PretrainingHead
        } else if key.starts_with("classifier.") || key.starts_with("qa_outputs.") {
            UnusedReason::FineTunedHead
        } else if key.starts_with("pooler.") {
            UnusedReason::PoolerNotUsed
        } else if self.projection.is_none()
            && key.starts_with("encoder.layer.")
            && (key.contains(".attention.self.") || key.contains(".attention.output.dense."))
        {
            UnusedReason::NoAttentionProjections { mixer: self.mixer }
        } else if key.ends_with("position_ids") {
            UnusedReason::PositionIdBuffer
        } else {
            UnusedReason::NoParameter
        }
    }

    /// Why a parameter of the model kept its init, when that is expected; `None` when the
    /// checkpoint should have had a tensor for it (an error).
    pub fn init_reason(&self, path: &str) -> Option<String> {
        if self.target == Target::Classifier && path.starts_with("head_out.") {
            return Some("the task's output layer: trained from scratch".into());
        }
        if self.target == Target::Classifier && path.starts_with("head_in.") {
            return Some(
                "the pooler: the checkpoint has none (a masked-LM checkpoint such as roberta-base)"
                    .into(),
            );
        }
        if let Some(part) = path.strip_prefix(SENTENCE_ORDER) {
            return Some(match part.starts_with("pooler.") {
                true => "the sentence-order head's pooler: the checkpoint has none \
                         (`pooler.dense`); trained from scratch"
                    .into(),
                false => "the sentence-order classifier: the checkpoint has no next-sentence \
                          head (`cls.seq_relationship`) to start it from; trained from scratch"
                    .into(),
            });
        }
        let in_mixer = path
            .strip_prefix(self.target.encoder_prefix())
            .and_then(|rest| rest.strip_prefix("blocks."))
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(_, rest)| rest.strip_prefix("mixer."));
        let is_projection = |inner: &str| {
            self.projection
                .as_deref()
                .is_some_and(|projection| inner.starts_with(projection))
        };
        match in_mixer {
            Some(inner) if !is_projection(inner) => Some(format!(
                "added by the `{}` mixer; BERT/RoBERTa have no such parameter",
                self.mixer
            )),
            _ => None,
        }
    }

    /// Why loading `parameter` from its checkpoint tensor deserves a word in the report.
    pub fn load_note(&self, parameter: &str) -> Option<&'static str> {
        parameter
            .strip_prefix(SENTENCE_ORDER)
            .filter(|part| part.starts_with("classifier."))
            .map(|_| {
                "BERT's next-sentence head, the closest start for sentence order (its class 0, \
                 B continues A, is SOP's 0, in order)"
            })
    }
}

/// Why a checkpoint key was not loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnusedReason {
    /// Masked-LM / next-sentence heads of a pretraining checkpoint.
    PretrainingHead,
    /// The MLM decoder, tied to the word embeddings (loaded through them).
    TiedDecoder,
    /// The classifier of a checkpoint fine-tuned on some task.
    FineTunedHead,
    /// The pooler of a checkpoint loaded as an encoder without head.
    PoolerNotUsed,
    /// The pooler and next-sentence head, loaded into a masked LM only with its sentence-order
    /// head.
    SentenceOrderOff,
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
            Self::TiedDecoder => {
                f.write_str("the MLM decoder, tied to the word embeddings (loaded through them)")
            }
            Self::FineTunedHead => {
                f.write_str("a fine-tuned task head; this model's head starts from its init")
            }
            Self::PoolerNotUsed => f.write_str("the pooler; an encoder without head has none"),
            Self::SentenceOrderOff => f.write_str(
                "pooler / next-sentence head; only the sentence-order head takes it, and it is off",
            ),
            Self::NoAttentionProjections { mixer } => write!(
                f,
                "attention projections; the `{mixer}` mixer has no Q/K/V/output projections"
            ),
            Self::PositionIdBuffer => f.write_str("position-id buffer; ids are recomputed"),
            Self::NoParameter => f.write_str("no parameter of this model corresponds"),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::MixerKind;
    use crate::model_config::TaskShape;
    use crate::pretrained::config::CheckpointConfig;

    /// The mapping of an `Attention<Core>` mixer.
    fn attention(family: Family, target: Target) -> Mapping {
        Mapping {
            family,
            target,
            mixer: "softmax",
            projection: Some("projection.".into()),
        }
    }

    fn remap(keys: &[&str], mapping: &Mapping) -> Vec<String> {
        let patterns = mapping.remapper().to_regex_pairs();
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
        assert_eq!(
            remap(&keys, &attention(Family::Bert, Target::Classifier)),
            expected
        );
        // A base-model checkpoint (no prefix) maps the same way.
        let bare: Vec<&str> = keys.iter().map(|k| k.trim_start_matches("bert.")).collect();
        assert_eq!(
            remap(&bare, &attention(Family::Bert, Target::Classifier)),
            expected
        );
    }

    #[test]
    fn roberta_keys_lose_their_prefix_and_the_encoder_target_drops_the_pooler() {
        let keys = [
            "roberta.embeddings.word_embeddings.weight",
            "roberta.encoder.layer.1.output.LayerNorm.bias",
            "roberta.pooler.dense.bias",
            "lm_head.dense.weight",
        ];
        let mapping = attention(Family::Roberta, Target::Encoder);
        assert_eq!(
            remap(&keys, &mapping),
            [
                "tokens.weight",
                "blocks.1.ffn_norm.beta",
                "pooler.dense.bias",
                "lm_head.dense.weight"
            ]
        );
        assert_eq!(
            mapping.unused_reason("roberta.pooler.dense.bias"),
            UnusedReason::PoolerNotUsed
        );
        assert_eq!(
            mapping.unused_reason("lm_head.dense.weight"),
            UnusedReason::PretrainingHead
        );
        let fno = Mapping {
            mixer: "fno",
            projection: None,
            ..attention(Family::Bert, Target::Encoder)
        };
        let query = "bert.encoder.layer.0.attention.self.query.weight";
        assert_eq!(
            remap(&[query], &fno),
            ["encoder.layer.0.attention.self.query.weight"]
        );
        assert_eq!(
            fno.unused_reason(query),
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
            let mapping =
                Mapping::for_module(&model, Family::Bert, Target::Classifier, kind.name());
            assert_eq!(mapping.projection.as_deref(), Some("projection."), "{kind}");
            let mapped = remap(&keys, &mapping);
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
            for path in paths.iter().filter(|path| !mapped.contains(path)) {
                assert!(
                    mapping.init_reason(path).is_some(),
                    "{kind}: {path} is neither mapped nor expected to keep its init"
                );
            }
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} attention mixers");
    }

    /// A mixer wrapping a host attention (context pooling) takes the host's projections; one
    /// without projections (FNO) takes none.
    #[test]
    fn the_projection_is_found_wherever_the_mixer_keeps_it() {
        let config = CheckpointConfig::parse(
            r#"{"model_type": "bert", "vocab_size": 11, "hidden_size": 8, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 12, "max_position_embeddings": 16}"#,
            "config.json".into(),
        )
        .unwrap();
        let device = Device::flex();
        let projection = |kind: MixerKind| {
            let encoder = config
                .model_config()
                .classifier(
                    TaskShape {
                        vocab_size: 11,
                        max_len: 16,
                        outputs: 2,
                        dual_encoder: false,
                    },
                    kind.default_config(),
                )
                .encoder
                .init(&device);
            Mapping::for_module(&encoder, Family::Bert, Target::Encoder, kind.name()).projection
        };
        assert_eq!(
            projection(MixerKind::ContextPool).as_deref(),
            Some("host.0.projection.")
        );
        assert_eq!(projection(MixerKind::Fno), None);
    }
}
