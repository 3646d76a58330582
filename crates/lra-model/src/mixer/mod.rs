//! The token-mixer contract shared by every attention variant and non-attention mixer.
//!
//! A mixer maps `[batch, seq, d_model]` to `[batch, seq, d_model]` given a key-padding mask.
//! Mixers that carry state from layer to layer (Luna's packed sequence) read and return it through
//! [`MixerInput::carry`] / [`MixerOutput::carry`]; the encoder threads it through unchanged, so it
//! needs no special case for them.

pub mod common;
mod registry;

// One file per method (`Config` + module); the shared pieces they build on live in `common`.
pub mod afno;
pub mod bigbird;
pub mod blocksparse;
pub mod contextpool;
pub mod cur;
pub mod fedformer;
pub mod flash;
pub mod fno;
pub mod lara;
pub mod linear;
pub mod linformer;
pub mod local;
pub mod local_jax;
pub mod longformer;
pub mod lowrank;
pub mod luna;
pub mod mra;
pub mod nystrom;
pub mod performer;
pub mod pixelfly;
pub mod ra;
pub mod reformer;
pub mod reformer_jax;
pub mod s4;
pub mod s4d;
pub mod scatterbrain;
pub mod sinkhorn;
pub mod sinkhorn_jax;
pub mod skeinformer;
pub mod sktr;
pub mod soft;
pub mod softmax;
pub mod sparse;
pub mod synthesizer;
pub mod yoso;

pub use common::attention::Attention;
pub use common::projection::{MultiHeadProjection, MultiHeadProjectionConfig};
/// The exact reference, at the path other crates and the conformance suite import it from.
pub use common::reference;
pub use registry::{Mixer, MixerConfig, MixerKind};

use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Input of one mixer call.
#[derive(Clone, Debug)]
pub struct MixerInput {
    /// Token states `[batch, seq, d_model]`.
    pub x: Tensor<3>,
    /// `[batch, seq]`, `true` at padded positions (Burn's `mask_pad` convention).
    pub pad_mask: Option<Tensor<2, Bool>>,
    /// State carried from the previous layer's mixer (`None` at the first layer).
    pub carry: Option<Tensor<3>>,
}

impl MixerInput {
    /// Input without padding and without carried state.
    pub fn new(x: Tensor<3>) -> Self {
        Self {
            x,
            pad_mask: None,
            carry: None,
        }
    }

    /// Sets the key-padding mask (`true` = padding).
    pub fn pad_mask(mut self, pad_mask: Tensor<2, Bool>) -> Self {
        self.pad_mask = Some(pad_mask);
        self
    }

    /// Sets the state carried from the previous layer.
    pub fn carry(mut self, carry: Option<Tensor<3>>) -> Self {
        self.carry = carry;
        self
    }
}

/// Output of one mixer call.
#[derive(Clone, Debug)]
pub struct MixerOutput {
    /// Mixed token states `[batch, seq, d_model]`.
    pub x: Tensor<3>,
    /// State for the next layer's mixer; stateless mixers pass the input's carry through.
    pub carry: Option<Tensor<3>>,
}

/// Anything that mixes information across the sequence dimension.
pub trait TokenMixer {
    /// # Shapes
    /// - `input.x`: `[batch, seq, d_model]`, `input.pad_mask`: `[batch, seq]`
    /// - output `x`: `[batch, seq, d_model]`
    fn forward(&self, input: MixerInput) -> MixerOutput;

    /// The projections and attention core of a mixer that is attention over projected Q, K, V
    /// ([`Attention`]); `None` for other mixers.
    fn attention(&self) -> Option<AttentionParts<'_>> {
        None
    }

    /// The attention core alone (used by exactness checks and `lra approx`).
    fn attention_core(&self) -> Option<&dyn AttentionCore> {
        self.attention().map(|parts| parts.core)
    }
}

/// The two halves of an attention mixer, borrowed.
#[derive(Clone, Copy)]
pub struct AttentionParts<'a> {
    /// The Q/K/V/output projections (e.g. to take a trained layer's Q, K, V).
    pub projection: &'a MultiHeadProjection,
    /// What the mixer does with the projected heads.
    pub core: &'a dyn AttentionCore,
}

/// The attention part of an attention mixer: already projected, head-split Q, K, V in, the
/// per-head context out. [`Attention`] puts the shared projections around it; `lra approx` and
/// the exactness tests call it directly.
pub trait AttentionCore {
    /// # Shapes
    /// - `q`, `k`, `v`: `[batch, heads, seq, head_dim]`; `pad_mask`: `[batch, seq]` (`true` = padding)
    /// - output: `[batch, heads, seq, head_dim]`
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4>;
}

/// Sizes every mixer is built for; fixed by the model, not by the mixer's own config.
#[derive(Clone, Debug, PartialEq)]
pub struct MixerDims {
    /// Model width.
    pub d_model: usize,
    /// Number of attention heads (ignored by mixers without heads).
    pub n_heads: usize,
    /// Width of the queries, keys and values of all heads together (the JAX LRA code's
    /// `qkv_dim`); `d_model` unless the model says otherwise. Mixers whose caps lack
    /// [`Caps::qkv_width`] require it equal to `d_model`.
    pub qkv_dim: usize,
    /// Longest sequence the model accepts (after any CLS token).
    pub max_len: usize,
    /// Dropout on attention probabilities (or the mixer's equivalent).
    pub dropout: f64,
    /// Biases on the attention's query/key/value/output projections (true; the JAX LRA code's
    /// attention has none). Mixers whose caps lack [`Caps::qkv_width`] build no such
    /// projections and require it true.
    pub projection_bias: bool,
    /// What an attention mixer gives a padded query (see [`PaddedQueries`]).
    pub padded_queries: PaddedQueries,
}

/// The attention output at a padded query position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddedQueries {
    /// Whatever the core computes for it (its attention over the real keys, for most).
    #[default]
    Attend,
    /// The plain mean of every position's value, padded ones included: flax's attention, which
    /// puts a −1e10 bias on every (query, key) pair with a padded side (`make_padding_mask`, an
    /// outer product, `flax/deprecated/nn/attention.py:397-405, 487-496` at v0.3.6), so a padded
    /// query's logits all round to −1e10 and its softmax is uniform.
    Uniform,
}

impl PaddedQueries {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl MixerDims {
    /// Sizes without dropout.
    pub fn new(d_model: usize, n_heads: usize, max_len: usize) -> Self {
        Self {
            d_model,
            n_heads,
            qkv_dim: d_model,
            max_len,
            dropout: 0.0,
            projection_bias: true,
            padded_queries: PaddedQueries::Attend,
        }
    }

    /// The same sizes with padded queries answered as `padded_queries` says.
    pub fn with_padded_queries(self, padded_queries: PaddedQueries) -> Self {
        Self {
            padded_queries,
            ..self
        }
    }

    /// The same sizes with queries, keys and values `qkv_dim` wide.
    pub fn with_qkv_dim(self, qkv_dim: usize) -> Self {
        Self { qkv_dim, ..self }
    }

    /// The same sizes with (or without) biases on the attention projections.
    pub fn with_projection_bias(self, projection_bias: bool) -> Self {
        Self {
            projection_bias,
            ..self
        }
    }

    /// The same sizes with attention dropout `dropout`.
    pub fn with_dropout(self, dropout: f64) -> Self {
        Self { dropout, ..self }
    }

    /// Per-head width `qkv_dim / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.qkv_dim / self.n_heads
    }
}

/// What a mixer supports; tests, trainer and CLI read these instead of testing names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Computes exactly softmax attention (up to float rounding).
    pub exact_softmax: bool,
    /// Honours the key-padding mask: padded positions never influence real ones.
    pub honours_padding: bool,
    /// Is an [`Attention`] mixer, so [`TokenMixer::attention_core`] is `Some` (what `lra approx`
    /// compares with softmax attention).
    pub attention_core: bool,
    /// Builds queries, keys and values [`MixerDims::qkv_dim`] wide (every mixer with an
    /// attention core does, through the shared projections).
    pub qkv_width: bool,
    /// Has query/key/value-style projections whose biases [`MixerDims::projection_bias`]
    /// (`model.attention_bias`) turns off.
    pub projection_bias: bool,
}

impl Caps {
    /// Exact softmax attention that honours padding.
    pub const EXACT_ATTENTION: Caps = Caps {
        exact_softmax: true,
        honours_padding: true,
        attention_core: true,
        qkv_width: true,
        projection_bias: true,
    };
    /// An approximating attention core that honours padding.
    pub const APPROXIMATE_ATTENTION: Caps = Caps {
        exact_softmax: false,
        ..Caps::EXACT_ATTENTION
    };
    /// A mixer without an attention core over projected Q, K, V (its own projections, or no
    /// attention at all) that honours padding.
    pub const WITHOUT_CORE: Caps = Caps {
        attention_core: false,
        qkv_width: false,
        projection_bias: false,
        ..Caps::APPROXIMATE_ATTENTION
    };
}

/// `Err("{name} must be at least 1")` when `value` is 0: the check most mixer configs need.
pub(crate) fn at_least_one(name: &str, value: usize) -> Result<(), String> {
    if value == 0 {
        return Err(format!("{name} must be at least 1"));
    }
    Ok(())
}

/// `Option<usize>` as a TOML integer, `0` meaning `None` (TOML has no null, and a missing key
/// takes the default): optional sizes of mixer configs (`nystrom`, `cur`).
pub(crate) mod zero_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<usize>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.unwrap_or(0) as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<usize>, D::Error> {
        let value = u64::deserialize(deserializer)?;
        Ok((value != 0).then_some(value as usize))
    }
}

/// Builds a mixer module from its config. Implemented by every `XxxConfig` in the registry.
pub trait MixerSpec {
    /// The module this config builds.
    type Mixer;
    /// One line for `lra list`.
    const SUMMARY: &'static str;
    /// Capabilities of the configured mixer.
    fn caps(&self) -> Caps;
    /// Checks the config against the model sizes before anything is built.
    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        Ok(())
    }
    /// Initialises the module with fresh parameters on `device`.
    fn init(&self, dims: &MixerDims, device: &Device) -> Self::Mixer;
}
