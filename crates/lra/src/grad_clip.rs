//! Gradient clipping as the reference code bases do it: by the global L2 norm over every
//! parameter (PyTorch `clip_grad_norm_`, Hugging Face `max_grad_norm`, optax
//! `clip_by_global_norm`), which Burn's optimiser does not offer (its `Norm` clips each tensor on
//! its own); Burn's per-tensor norm and per-value clipping are selectable too.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::tensor::Tensor;

use crate::config::{ClipBy, TrainConfig};

/// The global L2 norm of the gradients of `model`'s parameters (in f32, as clipping computes
/// it: a norm beyond f32's range is infinite).
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> f64 {
    struct SquaredSum<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredSum<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                let squares = (grad.clone() * grad).sum();
                self.sum = Some(match self.sum.take() {
                    Some(sum) => sum + squares,
                    None => squares,
                });
            }
        }
    }
    let mut visitor = SquaredSum { grads, sum: None };
    model.visit(&mut visitor);
    visitor
        .sum
        .map_or(0.0, |sum| sum.sqrt().into_scalar::<f32>() as f64)
}

/// `grads` scaled by `max_norm / norm` when their global norm `norm` exceeds `max_norm`
/// (PyTorch: `max_norm / (norm + 1e-6)`), unchanged otherwise.
pub fn clip_to_global_norm<M: Module>(
    model: &M,
    grads: GradientsParams,
    norm: f64,
    max_norm: f64,
) -> GradientsParams {
    let factor = max_norm / (norm + 1e-6);
    if factor >= 1.0 {
        return grads;
    }
    struct Scale {
        grads: GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, grad * self.factor);
            }
        }
    }
    let mut visitor = Scale { grads, factor };
    model.visit(&mut visitor);
    visitor.grads
}

/// The global-norm limit of `t`, when it clips that way.
pub fn global_limit(t: &TrainConfig) -> Option<f64> {
    (t.grad_clip > 0.0 && t.grad_clip_by == ClipBy::GlobalNorm).then_some(t.grad_clip)
}

/// The clipping Burn's optimiser applies itself (per tensor or per value), if any.
pub fn optimizer_clipping(t: &TrainConfig) -> Option<GradientClippingConfig> {
    let limit = t.grad_clip as f32;
    match t.grad_clip_by {
        _ if t.grad_clip <= 0.0 => None,
        ClipBy::GlobalNorm => None,
        ClipBy::TensorNorm => Some(GradientClippingConfig::Norm(limit)),
        ClipBy::Value => Some(GradientClippingConfig::Value(limit)),
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::Device;

    use super::*;

    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<1>>,
        b: Param<Tensor<1>>,
    }

    /// Gradients (3, 0) and (0, 4) have global norm 5: clipped to 1 they become (0.6, 0) and
    /// (0, 0.8), where per-tensor clipping would give (1, 0) and (0, 1).
    #[test]
    fn global_norm_clipping_scales_every_gradient_by_one_factor() {
        let device = Device::flex().autodiff();
        let param = |values: [f32; 2]| Param::from_tensor(Tensor::from_floats(values, &device));
        let model = Two {
            a: param([1.0, 1.0]),
            b: param([1.0, 1.0]),
        };
        let loss = (model.a.val() * Tensor::from_floats([3.0, 0.0], &device)).sum()
            + (model.b.val() * Tensor::from_floats([0.0, 4.0], &device)).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = global_norm(&model, &grads);
        assert!((norm - 5.0).abs() < 1e-6, "{norm}");
        let values = |grads: &GradientsParams, param: &Param<Tensor<1>>| -> Vec<f32> {
            let grad = grads.get::<1>(param.id).unwrap();
            grad.into_data().try_into_vec().unwrap()
        };
        let clipped = clip_to_global_norm(&model, grads, norm, 1.0);
        let (a, b) = (values(&clipped, &model.a), values(&clipped, &model.b));
        assert!((a[0] - 0.6).abs() < 1e-5 && a[1].abs() < 1e-6, "{a:?}");
        assert!((b[1] - 0.8).abs() < 1e-5 && b[0].abs() < 1e-6, "{b:?}");
        let unclipped = clip_to_global_norm(&model, clipped, 1.0, 2.0);
        let a = values(&unclipped, &model.a);
        assert!((a[0] - 0.6).abs() < 1e-5, "below the limit nothing changes");
    }
}
