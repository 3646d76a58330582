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
pub mod strided_groups;
pub mod testing;

use burn::module::{Flag, Param};
use burn::nn::Dropout;
use burn::tensor::{Device, Distribution, Int, Tensor};

use crate::ops;

/// Whether a module with the control flag `training` (Burn's `Dropout::training`, cleared by
/// `Module::valid`) runs a training call on `device`: only autodiff devices train, so a module
/// that was never made `valid` still evaluates deterministically on a plain device.
pub fn is_training(training: &Param<Flag>, device: &Device) -> bool {
    device.is_autodiff() && training.is_enabled()
}

/// The dropout probability in effect and the seed of its mask: dropout acts only while training
/// on an autodiff device, and the seed comes from the device RNG so masks follow the run's
/// seeding like Burn's dropout. `(0, 0)` when no dropout acts.
pub fn dropout_in_effect(dropout: &Dropout, device: &Device) -> (f32, u64) {
    let training = is_training(&dropout.training, device);
    if !training || dropout.prob <= 0.0 {
        return (0.0, 0);
    }
    let draw = Tensor::<1, Int>::random([1], Distribution::Uniform(0.0, 16_777_216.0), device);
    (dropout.prob as f32, draw.into_scalar::<i64>() as u64)
}

/// `log Σ exp(x)` over `dim`, the axis kept; the maximum it shifts by is detached (it cancels).
pub fn log_sum_exp<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let max = x.clone().detach().max_dim(dim);
    (x - max.clone()).exp().sum_dim(dim).log() + max
}

/// `dropout.forward(x)` with the same semantics (training calls only, scaled by `1/(1 − p)`),
/// through the fused `ops::dropout` kernel where the device has it.
pub fn dropout<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !ops::dropout::is_supported(&device) {
        return dropout.forward(x);
    }
    let (prob, seed) = dropout_in_effect(dropout, &device);
    if prob > 0.0 {
        ops::dropout::dropout(x, prob, seed)
    } else {
        x
    }
}

/// A tensor drawn at init and then kept fixed (random features, sketches, noise): a parameter
/// that never requires a gradient, so checkpoints record it and `--resume` restores it, while
/// optimisers leave it alone. (A plain tensor field would be a Burn constant, not recorded.)
pub fn fixed<const D: usize>(value: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(value).set_require_grad(false)
}
