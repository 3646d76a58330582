//! The registry: one line per mixer. `mixers!` expands it into the Burn-style pair of enums
//! (`MixerConfig` → `init` → `Mixer`, like burn-nn's `ActivationConfig` → `Activation`) plus the
//! `MixerKind` name table used by the CLI, `lra list` and the conformance suite.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::Device;

// Every mixer module (and the contract types) by glob: adding a mixer touches only the list below.
use super::*;
use crate::ConfigError;

macro_rules! mixers {
    ($($variant:ident => $name:literal, $config:ty, $module:ty;)+) => {
        /// Names of all registered mixers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum MixerKind { $($variant,)+ }

        impl MixerKind {
            /// Every registered mixer, in registry order.
            pub const ALL: &'static [MixerKind] = &[$(MixerKind::$variant,)+];

            /// The name used on the command line and in configs.
            pub fn name(self) -> &'static str {
                match self { $(MixerKind::$variant => $name,)+ }
            }

            /// One line describing the method.
            pub fn summary(self) -> &'static str {
                match self { $(MixerKind::$variant => <$config as MixerSpec>::SUMMARY,)+ }
            }

            /// The mixer's config with every field at its default.
            pub fn default_config(self) -> MixerConfig {
                match self { $(MixerKind::$variant => MixerConfig::$variant(<$config>::default()),)+ }
            }

            /// Parses this mixer's config from a TOML table (missing keys take their defaults,
            /// unknown keys are rejected).
            pub fn parse_config(self, table: &toml::Table) -> Result<MixerConfig, ConfigError> {
                let value = toml::Value::Table(table.clone());
                match self {
                    $(MixerKind::$variant => serde_path_to_error::deserialize::<_, $config>(value)
                        .map(MixerConfig::$variant)
                        .map_err(|error| ConfigError::MixerField {
                            mixer: $name,
                            message: format!("`mixer.{}`: {}", error.path(), error.inner().message()),
                        }),)+
                }
            }
        }

        /// The configuration of one mixer, tagged by kind.
        #[derive(Clone, Debug, PartialEq)]
        pub enum MixerConfig { $($variant($config),)+ }

        impl MixerConfig {
            /// Which mixer this configures.
            pub fn kind(&self) -> MixerKind {
                match self { $(MixerConfig::$variant(_) => MixerKind::$variant,)+ }
            }

            /// Capabilities of the configured mixer.
            pub fn caps(&self) -> Caps {
                match self { $(MixerConfig::$variant(c) => c.caps(),)+ }
            }

            /// The settings as a TOML table (all fields, defaults included).
            pub fn to_table(&self) -> toml::Table {
                let value = match self {
                    $(MixerConfig::$variant(c) => toml::Value::try_from(c),)+
                };
                match value.expect("mixer configs serialise to TOML") {
                    toml::Value::Table(table) => table,
                    other => unreachable!("mixer config serialised to {other:?}"),
                }
            }

            /// Checks the settings against the model sizes.
            pub fn validate(&self, dims: &MixerDims) -> Result<(), ConfigError> {
                if dims.n_heads == 0 || dims.d_model % dims.n_heads != 0 {
                    return Err(ConfigError::Inconsistent(format!(
                        "n_heads = {} must divide d_model = {}",
                        dims.n_heads, dims.d_model
                    )));
                }
                if !dims.projection_bias && !self.caps().projection_bias {
                    return Err(ConfigError::Inconsistent(format!(
                        "model.attention_bias = false, but `{}` has no query/key/value \
                         projections to take the biases from (leave attention_bias unset)",
                        self.kind().name()
                    )));
                }
                if dims.padded_queries != PaddedQueries::Attend && !self.caps().attention_core {
                    return Err(ConfigError::Inconsistent(format!(
                        "model.padded_queries = \"uniform\", but `{}` has no attention core over \
                         projected values to average (leave padded_queries unset)",
                        self.kind().name()
                    )));
                }
                if dims.qkv_dim != dims.d_model {
                    if !self.caps().qkv_width {
                        return Err(ConfigError::Inconsistent(format!(
                            "model.qkv_dim = {} differs from d_model = {}, and `{}` builds its \
                             queries, keys and values d_model wide (leave qkv_dim unset)",
                            dims.qkv_dim, dims.d_model, self.kind().name()
                        )));
                    }
                    if dims.qkv_dim == 0 || dims.qkv_dim % dims.n_heads != 0 {
                        return Err(ConfigError::Inconsistent(format!(
                            "n_heads = {} must divide model.qkv_dim = {}",
                            dims.n_heads, dims.qkv_dim
                        )));
                    }
                }
                let result = match self { $(MixerConfig::$variant(c) => c.validate(dims),)+ };
                result.map_err(|message| ConfigError::MixerField { mixer: self.kind().name(), message })
            }

            /// Builds the mixer module with parameters drawn now from the device RNG.
            pub fn init(&self, dims: &MixerDims, device: &Device) -> Mixer {
                crate::init_now(match self {
                    $(MixerConfig::$variant(c) => Mixer::$variant(c.init(dims, device)),)+
                })
            }
        }

        /// A built mixer of any registered kind.
        #[derive(Module, Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum Mixer { $($variant($module),)+ }

        impl TokenMixer for Mixer {
            fn forward(&self, input: MixerInput) -> MixerOutput {
                match self { $(Mixer::$variant(m) => m.forward(input),)+ }
            }

            fn attention(&self) -> Option<AttentionParts<'_>> {
                match self { $(Mixer::$variant(m) => m.attention(),)+ }
            }
        }
    };
}

mixers! {
    Softmax => "softmax", softmax::SoftmaxConfig, softmax::SoftmaxAttention;
    Local => "local", local::LocalConfig, local::LocalAttention;
    LocalJax => "local_jax", local_jax::LocalJaxConfig, local_jax::LocalJaxAttention;
    Longformer => "longformer", longformer::LongformerConfig, longformer::LongformerAttention;
    BigBird => "bigbird", bigbird::BigBirdConfig, bigbird::BigBirdAttention;
    Sparse => "sparse", sparse::SparseConfig, sparse::SparseAttention;
    Sinkhorn => "sinkhorn", sinkhorn::SinkhornConfig, sinkhorn::SinkhornAttention;
    SinkhornJax => "sinkhorn_jax", sinkhorn_jax::SinkhornJaxConfig, sinkhorn_jax::SinkhornJaxAttention;
    Synthesizer => "synthesizer", synthesizer::SynthesizerConfig, synthesizer::SynthesizerAttention;
    Linformer => "linformer", linformer::LinformerConfig, linformer::LinformerAttention;
    Luna => "luna", luna::LunaConfig, luna::LunaAttention;
    Soft => "soft", soft::SoftConfig, soft::SoftAttention;
    Skeinformer => "skeinformer", skeinformer::SkeinformerConfig, skeinformer::SkeinformerAttention;
    Linear => "linear", linear::LinearConfig, linear::LinearAttention;
    Performer => "performer", performer::PerformerConfig, performer::PerformerAttention;
    Ra => "ra", ra::RaConfig, ra::RandomizedAttention;
    Lara => "lara", lara::LaraConfig, lara::LaraAttention;
    Sktr => "sktr", sktr::SktrConfig, sktr::SktrAttention;
    Nystrom => "nystrom", nystrom::NystromConfig, nystrom::NystromAttention;
    Cur => "cur", cur::CurConfig, cur::CurAttention;
    LowRank => "lowrank", lowrank::LowRankConfig, lowrank::LowRankAttention;
    Fno => "fno", fno::FnoConfig, fno::FnoMixer;
    Afno => "afno", afno::AfnoConfig, afno::AfnoMixer;
    Fedformer => "fedformer", fedformer::FedformerConfig, fedformer::FedformerMixer;
    Pixelfly => "pixelfly", pixelfly::PixelflyConfig, pixelfly::PixelflyAttention;
    Scatterbrain => "scatterbrain", scatterbrain::ScatterbrainConfig, scatterbrain::ScatterbrainAttention;
    ContextPool => "contextpool", contextpool::ContextPoolConfig, contextpool::ContextPoolMixer;
    S4 => "s4", s4::S4Config, s4::S4;
    S4d => "s4d", s4d::S4dConfig, s4d::S4d;
    Mra => "mra", mra::MraConfig, mra::MraAttention;
    Reformer => "reformer", reformer::ReformerConfig, reformer::ReformerAttention;
    ReformerJax => "reformer_jax", reformer_jax::ReformerJaxConfig, reformer_jax::ReformerJax;
    Yoso => "yoso", yoso::YosoConfig, yoso::YosoAttention;
    Flash => "flash", flash::FlashConfig, flash::FlashAttention;
    BlockSparse => "blocksparse", blocksparse::BlockSparseConfig, blocksparse::BlockSparseAttention;
}

impl MixerKind {
    /// All names, comma-separated, for error messages and help texts.
    pub fn valid_names() -> String {
        Self::ALL
            .iter()
            .map(|kind| kind.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FromStr for MixerKind {
    type Err = ConfigError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| ConfigError::UnknownMixer {
                name: name.to_string(),
                valid: Self::valid_names(),
            })
    }
}

impl fmt::Display for MixerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
