//! Errors in user-supplied model and mixer configuration.

use thiserror::Error;

/// A model or mixer configuration that cannot be used, with what was expected.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The attention/mixer name is not in the registry.
    #[error("unknown attention `{name}`; registered: {valid}")]
    UnknownMixer { name: String, valid: String },
    /// A mixer's config table has an unknown key or a value of the wrong type.
    #[error("[mixer] settings for `{mixer}`: {message}")]
    MixerField {
        mixer: &'static str,
        message: String,
    },
    /// Values that are individually fine but do not fit together (e.g. heads not dividing d_model).
    #[error("{0}")]
    Inconsistent(String),
}
