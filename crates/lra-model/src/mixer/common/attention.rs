//! The generic attention mixer (the xformers `MultiHeadDispatch` idea): the shared Q/K/V/output
//! projections around any [`AttentionCore`], so an attention method only writes its core.

use burn::module::Module;

use super::projection::MultiHeadProjection;
use crate::mixer::{AttentionCore, AttentionParts, MixerInput, MixerOutput, TokenMixer};

/// Multi-head attention with the core `C`: project, split heads, `C::attend`, merge, project.
#[derive(Module, Debug)]
pub struct Attention<C: Module> {
    /// Q/K/V/output projections.
    pub projection: MultiHeadProjection,
    /// The method's own part, on projected heads.
    pub core: C,
}

impl<C: Module> Attention<C> {
    /// `core` behind `projection`.
    pub fn new(projection: MultiHeadProjection, core: C) -> Self {
        Self { projection, core }
    }
}

impl<C: AttentionCore + Module> TokenMixer for Attention<C> {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        self.projection.mix(input, &self.core)
    }

    fn attention(&self) -> Option<AttentionParts<'_>> {
        Some(AttentionParts {
            projection: &self.projection,
            core: &self.core,
        })
    }
}
