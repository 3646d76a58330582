//! Token mixers (softmax attention, its efficient variants, and non-attention mixers) behind one
//! trait and one registry, plus the LRA encoder classifier they plug into.
//!
//! Add a mixer: write `mixer/<name>.rs` with a `Config` and a module (an attention variant: an
//! [`AttentionCore`] inside [`mixer::Attention`]; otherwise a [`TokenMixer`]), add `pub mod <name>;`
//! to `mixer/mod.rs` and one line to the `mixers!` list in `mixer/registry.rs`. Shared maths lives in
//! `mixer/common/`. The conformance suite in `tests/conformance.rs` then covers it.

pub mod classifier;
pub mod device;
pub mod encoder;
pub mod error;
pub mod folded_linear;
pub mod init;
pub mod layer_norm;
pub mod masked_lm;
pub mod mixer;
pub mod model_config;
pub mod ops;
pub mod parameters;
pub mod positions;
pub mod pretrained;
pub mod sentence_order;
pub mod sequence_norm;
pub mod value_input;

pub use classifier::{Classifier, ClassifierConfig, HeadActivation, HeadKind, Pooling};
pub use device::DeviceError;
pub use encoder::{Encoder, EncoderConfig};
pub use error::ConfigError;
pub use init::init_now;
pub use masked_lm::{MaskedLm, MaskedLmConfig, PretrainingOutput};
pub use mixer::{
    AttentionCore, Caps, Mixer, MixerConfig, MixerDims, MixerInput, MixerKind, MixerOutput,
    TokenMixer,
};
pub use model_config::{ModelConfig, TaskShape};
