//! Sequence classifier: encoder, pooling, and a two-layer MLP head (PyTorch LRA `SCHead`,
//! JAX LRA classifier head).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::encoder::{Encoder, EncoderConfig};

/// How the sequence is reduced to one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// A learned CLS vector is prepended; its final state is used (JAX LRA).
    Cls,
    /// Mean over real tokens (padding excluded).
    Mean,
    /// Mean over all positions, padding included (mlpen PyTorch LRA code).
    MeanWithPadding,
}

/// Builds a [`Classifier`].
#[derive(Clone, Debug)]
pub struct ClassifierConfig {
    /// The encoder; its `cls_token` must be set exactly when pooling is `Cls`.
    pub encoder: EncoderConfig,
    /// Sequence reduction.
    pub pooling: Pooling,
    /// Hidden width of the head.
    pub head_hidden: usize,
    /// Output classes.
    pub num_classes: usize,
}

impl ClassifierConfig {
    /// Initialises the classifier, drawing every parameter now from the device RNG.
    pub fn init(&self, device: &Device) -> Classifier {
        crate::init_now(Classifier {
            encoder: self.encoder.init(device),
            head_in: LinearConfig::new(self.encoder.d_model, self.head_hidden).init(device),
            head_out: LinearConfig::new(self.head_hidden, self.num_classes).init(device),
            activation: Relu::new(),
            pooling: self.pooling,
        })
    }
}

/// Encoder + pooling + MLP head.
#[derive(Module, Debug)]
pub struct Classifier {
    encoder: Encoder,
    head_in: Linear,
    head_out: Linear,
    activation: Relu,
    #[module(skip)]
    pooling: Pooling,
}

impl Classifier {
    /// The encoder, e.g. to inspect a trained layer.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - `tokens`, `pad_mask`: `[batch, seq]` (`true` = padding)
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, tokens: Tensor<2, Int>, pad_mask: Tensor<2, Bool>) -> Tensor<2> {
        let encoded = self.encoder.forward(tokens, pad_mask);
        let pooled = pool(encoded.hidden, encoded.pad_mask, self.pooling); // [b, d]
        self.head_out
            .forward(self.activation.forward(self.head_in.forward(pooled)))
    }
}

/// `[b, n, d]` → `[b, d]`.
fn pool(hidden: Tensor<3>, pad_mask: Tensor<2, Bool>, pooling: Pooling) -> Tensor<2> {
    let [batch, seq, d_model] = hidden.dims();
    match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1).reshape([batch, d_model]),
        Pooling::MeanWithPadding => hidden.mean_dim(1).reshape([batch, d_model]),
        Pooling::Mean => {
            let real = pad_mask.bool_not().float().reshape([batch, seq, 1]); // [b, n, 1]
            let count = real.clone().sum_dim(1).clamp_min(1.0); // [b, 1, 1]
            (hidden * real)
                .sum_dim(1)
                .div(count)
                .reshape([batch, d_model])
        }
    }
}
