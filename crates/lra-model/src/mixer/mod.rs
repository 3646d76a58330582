//! The token-mixer contract shared by every attention variant and non-attention mixer.
//!
//! A mixer maps `[batch, seq, d_model]` to `[batch, seq, d_model]` given a key-padding mask.
//! Mixers that carry state from layer to layer (Luna's packed sequence) read and return it through
//! [`MixerInput::carry`] / [`MixerOutput::carry`]; the encoder threads it through unchanged, so it
//! needs no special case for them.

pub mod afno;
pub mod bigbird;
mod blocks;
pub mod blocksparse;
pub mod contextpool;
pub mod cur;
pub mod fedformer;
pub mod flash;
pub mod fno;
mod heads;
pub mod lara;
pub mod linear;
pub mod linformer;
pub mod local;
pub mod longformer;
pub mod lowrank;
pub mod luna;
pub mod mra;
pub mod nystrom;
pub mod performer;
pub mod pixelfly;
pub mod ra;
pub mod reference;
pub mod reformer;
mod registry;
pub mod s4;
pub mod s4d;
pub mod scatterbrain;
pub mod sinkhorn;
pub mod skeinformer;
pub mod sktr;
pub mod soft;
pub mod softmax;
pub mod sparse;
mod spectral;
pub mod synthesizer;
#[cfg(test)]
mod testing;
pub mod yoso;

pub use heads::{MultiHeadProjection, MultiHeadProjectionConfig};
pub use registry::{Mixer, MixerConfig, MixerKind};

use burn::tensor::{Bool, Device, Tensor};

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

    /// The attention core, for mixers that are attention over projected Q, K, V
    /// (used by exactness checks and `lra approx`); `None` for other mixers.
    fn attention_core(&self) -> Option<&dyn AttentionCore> {
        None
    }
}

/// The attention part of an attention mixer: already projected, head-split Q, K, V in, the
/// per-head context out. `lra approx` and the exactness tests call it directly.
pub trait AttentionCore {
    /// The Q/K/V/output projections feeding this core (e.g. to take a trained layer's Q, K, V).
    fn projection(&self) -> &MultiHeadProjection;

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
    /// Longest sequence the model accepts (after any CLS token).
    pub max_len: usize,
    /// Dropout on attention probabilities (or the mixer's equivalent).
    pub dropout: f64,
}

impl MixerDims {
    /// Sizes without dropout.
    pub fn new(d_model: usize, n_heads: usize, max_len: usize) -> Self {
        Self {
            d_model,
            n_heads,
            max_len,
            dropout: 0.0,
        }
    }

    /// The same sizes with attention dropout `dropout`.
    pub fn with_dropout(self, dropout: f64) -> Self {
        Self { dropout, ..self }
    }

    /// Per-head width `d_model / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }
}

/// What a mixer supports; tests, trainer and CLI read these instead of testing names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Computes exactly softmax attention (up to float rounding).
    pub exact: bool,
    /// Honours the key-padding mask: padded positions never influence real ones.
    pub pad_mask: bool,
}

impl Caps {
    /// Exact softmax attention that honours padding.
    pub const EXACT: Caps = Caps {
        exact: true,
        pad_mask: true,
    };
    /// An approximation (or another mixer) that honours padding.
    pub const APPROXIMATE: Caps = Caps {
        exact: false,
        pad_mask: true,
    };
}

/// `Err("{name} must be at least 1")` when `value` is 0: the check most mixer configs need.
pub(crate) fn at_least_one(name: &str, value: usize) -> Result<(), String> {
    if value == 0 {
        return Err(format!("{name} must be at least 1"));
    }
    Ok(())
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
