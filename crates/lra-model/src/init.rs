//! Eager parameter initialisation.
//!
//! Burn initialises parameters lazily, on first use, so the RNG state at that moment (not at
//! `init`) would decide the weights. Forcing every parameter right after `init` makes the weights
//! a function of the seed set just before.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Shape, Tensor};
use serde::{Deserialize, Serialize};

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

/// How the dense (linear) layers of a classifier start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenseInit {
    /// Burn's `Linear` init, as PyTorch's: weights and biases uniform in ±1/√fan-in.
    #[default]
    Burn,
    /// The JAX LRA code's (flax 0.3.6): the attention's query/key/value/output and the FFN's
    /// kernels `xavier_uniform` (`transformer.py:60-75`, `common_layers.py:151-161`), FFN biases
    /// `N(0, 1e-6²)`, attention biases 0 (theirs have none: `model.attention_bias = false`
    /// removes ours), the classifier head's kernels
    /// `lecun_normal` (normal truncated at ±2σ, variance 1/fan-in) and biases 0
    /// (`common_layers.py:191-193`, Flax's Dense defaults). Other parameters keep their init.
    JaxLra,
}

impl DenseInit {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Re-draws the dense layers of a classifier as [`DenseInit::JaxLra`] says, from the device RNG,
/// in module order. Layers are told apart by their path: `…mixer….{query,key,value,output}`
/// (the attention projections), `…ffn_in` / `…ffn_out`, and `head_in` / `head_out`.
pub fn jax_lra_dense<M: Module>(module: M) -> M {
    let mut mapper = JaxLraDense { path: Vec::new() };
    module.map(&mut mapper)
}

struct JaxLraDense {
    path: Vec<String>,
}

/// Which family a `weight`/`bias` parameter at `path` (its module path) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Attention,
    FeedForward,
    Head,
}

/// Linformer's `E`/`F` (the JAX `lr_kernel`, `linformer_attention.py:127-144`, drawn with the
/// layer's `xavier_uniform` kernel init).
fn is_linformer_projection(path: &[String]) -> bool {
    let in_mixer = path.iter().any(|p| p == "mixer");
    in_mixer
        && path
            .last()
            .is_some_and(|p| p == "key_projection" || p == "value_projection")
}

fn family(path: &[String]) -> Option<Family> {
    let layer = path.iter().rev().nth(1)?.as_str();
    let in_mixer = path.iter().any(|p| p == "mixer");
    match layer {
        "query" | "key" | "value" | "output" if in_mixer => Some(Family::Attention),
        "ffn_in" | "ffn_out" => Some(Family::FeedForward),
        "head_in" | "head_out" if path.len() == 2 => Some(Family::Head),
        _ => None,
    }
}

impl ModuleMapper for JaxLraDense {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if is_linformer_projection(&self.path) {
            return redraw(param, |shape, device| {
                // Stored `[groups, k, max_len]`; the JAX `lr_kernel` is `(max_len, k)`.
                let dims = shape.dims::<D>();
                let bound = (6.0 / (dims[D - 1] + dims[D - 2]) as f64).sqrt();
                Tensor::random(shape, Distribution::Uniform(-bound, bound), device)
            });
        }
        let Some(family) = family(&self.path) else {
            return param;
        };
        let is_weight = self.path.last().is_some_and(|p| p == "weight");
        redraw(param, |shape, device| {
            let dims = shape.dims::<D>();
            match (family, is_weight) {
                (Family::Attention | Family::FeedForward, true) => {
                    let bound = (6.0 / (dims[0] + dims[D - 1]) as f64).sqrt();
                    Tensor::random(shape, Distribution::Uniform(-bound, bound), device)
                }
                (Family::Head, true) => truncated_normal(shape, 1.0 / (dims[0] as f64), device),
                (Family::FeedForward, false) => {
                    Tensor::random(shape, Distribution::Normal(0.0, 1e-6), device)
                }
                (Family::Attention | Family::Head, false) => Tensor::zeros(shape, device),
            }
        })
    }
}

/// `param` with a new value drawn by `draw(shape, device)`, keeping its id and whether it trains.
fn redraw<const D: usize>(
    param: Param<Tensor<D>>,
    draw: impl FnOnce(Shape, &Device) -> Tensor<D>,
) -> Param<Tensor<D>> {
    let (id, tensor, mapper) = param.consume();
    let redrawn = draw(tensor.shape(), &tensor.device());
    let redrawn = if tensor.is_require_grad() {
        redrawn.require_grad()
    } else {
        redrawn
    };
    Param::from_mapped_value(id, redrawn, mapper)
}

/// JAX's `variance_scaling(1, "fan_in", "truncated_normal")`: a standard normal truncated to
/// ±2, scaled so that the variance is `variance` (σ = √variance / 0.8796…, the truncated
/// standard normal's standard deviation). Out-of-range draws are drawn again.
fn truncated_normal<const D: usize>(shape: Shape, variance: f64, device: &Device) -> Tensor<D> {
    const TRUNCATED_STD: f64 = 0.879_625_661_034_239_8;
    let mut values = Tensor::<D>::random(shape.clone(), Distribution::Normal(0.0, 1.0), device);
    loop {
        let outside = values.clone().abs().greater_elem(2.0);
        if !outside.clone().any().into_scalar::<bool>() {
            break;
        }
        let fresh = Tensor::random(shape.clone(), Distribution::Normal(0.0, 1.0), device);
        values = values.mask_where(outside, fresh);
    }
    values.mul_scalar(variance.sqrt() / TRUNCATED_STD)
}
