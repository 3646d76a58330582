//! Eager parameter initialisation.
//!
//! Burn initialises parameters lazily, on first use, so the RNG state at that moment (not at
//! `init`) would decide the weights. Forcing every parameter right after `init` makes the weights
//! a function of the seed set just before.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Initialises every lazy parameter of `module` now, in module order.
pub fn init_now<M: Module>(module: M) -> M {
    module.visit(&mut Touch);
    module
}

struct Touch;

impl ModuleVisitor for Touch {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}
