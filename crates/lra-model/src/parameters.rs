//! The float parameters of a module by path: the module fields from the root down, joined by
//! dots (`encoder.blocks.0.mixer_norm.gamma`, `head_out.bias`), as Burn's optimiser groups and
//! the Hugging Face key map name them.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

/// The path and id of every float parameter of `module`, in visiting order.
pub fn parameter_paths<M: Module>(module: &M) -> Vec<(String, ParamId)> {
    let mut paths = Vec::new();
    visit(
        module,
        |path, param_id, _| paths.push((path, param_id)),
        false,
    );
    paths
}

/// The path and values of every float parameter of `module`, in visiting order (a copy of each:
/// for tests and inspection, not for models of real size in a loop).
pub fn parameter_values<M: Module>(module: &M) -> Vec<(String, Vec<f32>)> {
    let mut values = Vec::new();
    visit(
        module,
        |path, _, data| values.push((path, data.expect("values were asked for"))),
        true,
    );
    values
}

/// Calls `found(path, id, values)` for each float parameter; `values` only when `with_values`.
fn visit<M: Module>(
    module: &M,
    found: impl FnMut(String, ParamId, Option<Vec<f32>>),
    with_values: bool,
) {
    struct Paths<F> {
        stack: Vec<String>,
        found: F,
        with_values: bool,
    }
    impl<F: FnMut(String, ParamId, Option<Vec<f32>>)> ModuleVisitor for Paths<F> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = self.with_values.then(|| {
                param
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("float parameters hold f32 values")
            });
            (self.found)(self.stack.join("."), param.id, values);
        }
    }
    module.visit(&mut Paths {
        stack: Vec::new(),
        found,
        with_values,
    });
}
