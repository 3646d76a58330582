//! A [`Linear`] layer applied to `[..., d_in]` inputs as one `[rows, d_in] · [d_in, d_out]`
//! product, the way PyTorch's `F.linear` runs.
//!
//! Burn 0.22's `Dispatch` backend does not forward `ModuleOps::linear` (it is a TODO there), so
//! `Linear::forward` never reaches the autodiff backend's fused linear: it runs as a batched matmul
//! against the weight broadcast over the leading dimensions. Its backward then forms the weight
//! gradient as one `[d_in, d_out]` product per leading index and sums them (for BERT-base at
//! batch 32: a `[32, 768, 768]` tensor per projection and layer, and 32 small products that each
//! repack the weight), and the input gradient as 32 products that each repack `Wᵀ`. Folding the
//! leading dimensions into the rows makes the forward and both gradients single large products.
//! `clippy.toml` disallows `Linear::forward`, so every layer goes through here.

use burn::nn::Linear;
use burn::tensor::Tensor;

/// [`Linear`] applied with its leading dimensions folded into the rows of one product.
pub trait FoldedLinear {
    /// `x · W + b` for `x` of shape `[..., d_in]`; equal to `Linear::forward` up to rounding.
    fn forward_folded<const D: usize>(&self, x: Tensor<D>) -> Tensor<D>;
}

impl FoldedLinear for Linear {
    fn forward_folded<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product();
        let product = x.reshape([rows, d_in]).matmul(self.weight.val());
        let product = match &self.bias {
            Some(bias) => product + bias.val().unsqueeze::<2>(),
            None => product,
        };
        dims[D - 1] = product.dims()[1];
        product.reshape(dims)
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Tensor, TensorData, Tolerance};

    use super::FoldedLinear;
    use crate::mixer::common::testing::{device, gaussian};

    /// Burn's own `Linear::forward`, the reference this module replaces.
    #[allow(clippy::disallowed_methods)]
    fn reference<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
        linear.forward(x)
    }

    /// Output and the gradients of input, weight and bias under a fixed random loss weighting.
    fn output_and_gradients<const D: usize>(
        linear: &Linear,
        x: Tensor<D>,
        apply: fn(&Linear, Tensor<D>) -> Tensor<D>,
    ) -> Vec<TensorData> {
        let x = x.require_grad();
        let y = apply(linear, x.clone());
        let weighting = gaussian(&y.device(), 9, y.dims());
        let grads = (y.clone() * weighting).sum().backward();
        let mut all = vec![
            y.into_data(),
            x.grad(&grads).unwrap().into_data(),
            linear.weight.grad(&grads).unwrap().into_data(),
        ];
        all.extend(
            linear
                .bias
                .as_ref()
                .map(|b| b.grad(&grads).unwrap().into_data()),
        );
        all
    }

    fn assert_same<const D: usize>(linear: &Linear, x: Tensor<D>) {
        let expected = output_and_gradients(linear, x.clone(), reference);
        let actual = output_and_gradients(linear, x, |l, x| l.forward_folded(x));
        assert_eq!(expected.len(), actual.len());
        for (expected, actual) in expected.into_iter().zip(actual) {
            expected.assert_approx_eq::<f32>(&actual, Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn equals_linear_forward_and_its_gradients_for_every_rank() {
        let device = device().autodiff();
        for bias in [true, false] {
            device.seed(3);
            let linear = LinearConfig::new(6, 5).with_bias(bias).init(&device);
            assert_same(&linear, gaussian(&device, 1, [6]));
            assert_same(&linear, gaussian(&device, 1, [7, 6]));
            assert_same(&linear, gaussian(&device, 1, [2, 4, 6]));
            assert_same(&linear, gaussian(&device, 1, [2, 3, 4, 6]));
        }
    }
}
