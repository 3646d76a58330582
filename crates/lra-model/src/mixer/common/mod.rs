//! The pieces mixers share, named for what they are. Mixer files import from here (and from
//! `crate::ops`), never from one another; a mixer that wraps a host mixer by design
//! (`contextpool`) reaches it through the registry.
//!
//! - [`attention`]: the generic attention mixer, projections around any `AttentionCore`.
//! - [`projection`]: the Q/K/V/output projections and the head split.
//! - [`reference`]: naive exact softmax attention, the reference and building block.
//! - [`exact`]: inputs of the fused exact-attention ops (`flash`, `blocksparse`, `softmax`).
//! - [`blocks`]: block-sparse attention over a per-block plan (local, Longformer, BigBird).
//! - [`feature_maps`]: random-feature maps and kernel sums (linear, Performer, Scatterbrain).
//! - [`sparse_lowrank`]: sparse + low-rank attention (Scatterbrain, Pixelfly).
//! - [`inverse`]: iterative inverses (Nyström's pseudo-inverse, SOFT's Newton inverse).
//! - [`proposal`]: the Gaussian proposals of randomized attention (RA, LARA).
//! - [`state_space`]: the pieces S4 and S4D share.
//! - [`spectral`]: complex tensors and FFT helpers (FNO, AFNO, FEDformer, S4).
//! - [`testing`]: inputs and checks shared by unit and integration tests.

pub mod attention;
pub mod blocks;
pub mod exact;
pub mod feature_maps;
pub mod inverse;
pub mod projection;
pub mod proposal;
pub mod reference;
pub mod sparse_lowrank;
pub mod spectral;
pub mod state_space;
pub mod testing;

use burn::module::{Flag, Param};
use burn::tensor::{Device, Tensor};

/// Whether a module with the control flag `training` (Burn's `Dropout::training`, cleared by
/// `Module::valid`) runs a training call on `device`: only autodiff devices train, so a module
/// that was never made `valid` still evaluates deterministically on a plain device.
pub fn is_training(training: &Param<Flag>, device: &Device) -> bool {
    device.is_autodiff() && training.is_enabled()
}

/// A tensor drawn at init and then kept fixed (random features, sketches, noise): a parameter
/// that never requires a gradient, so checkpoints record it and `--resume` restores it, while
/// optimisers leave it alone. (A plain tensor field would be a Burn constant, not recorded.)
pub fn fixed<const D: usize>(value: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(value).set_require_grad(false)
}
