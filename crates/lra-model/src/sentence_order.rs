//! The sentence-order prediction head (ALBERT's SOP, [Lan et al. 2020](https://arxiv.org/abs/1909.11942);
//! the Nyströmformer paper pretrains with MLM + SOP): BERT's pooler, `tanh(dense(h₀))` on the
//! first token's final state, then a linear layer to two logits (0 = segments in order,
//! 1 = swapped). The layout is `BertForPreTraining`'s next-sentence head (`bert.pooler.dense`,
//! `cls.seq_relationship`), so a BERT pretraining checkpoint starts it, and its pooler is the one
//! a GLUE classifier fine-tuned from the result takes over.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Tanh};
use burn::tensor::{Device, Tensor};

use crate::folded_linear::FoldedLinear;

/// The two classes: in order, swapped.
pub const SENTENCE_ORDER_CLASSES: usize = 2;

/// Pooler + two-way classifier on the first token.
#[derive(Module, Debug)]
pub struct SentenceOrderHead {
    /// BERT's pooler dense layer (`d_model → d_model`).
    pooler: Linear,
    activation: Tanh,
    /// The classifier (`d_model → 2`), BERT's `cls.seq_relationship`.
    classifier: Linear,
}

impl SentenceOrderHead {
    /// A head for `d_model`-wide hidden states, drawn from the device RNG now.
    pub fn new(d_model: usize, device: &Device) -> Self {
        crate::init_now(Self {
            pooler: LinearConfig::new(d_model, d_model).init(device),
            activation: Tanh::new(),
            classifier: LinearConfig::new(d_model, SENTENCE_ORDER_CLASSES).init(device),
        })
    }

    /// Sentence-order logits of each sequence.
    ///
    /// # Shapes
    /// - `hidden`: `[batch, seq, d_model]`, the encoder's final states
    /// - output: `[batch, 2]`
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [batch, _, d_model] = hidden.dims();
        let first = hidden.narrow(1, 0, 1).reshape([batch, d_model]); // [b, d]
        let pooled = self.activation.forward(self.pooler.forward_folded(first));
        self.classifier.forward_folded(pooled)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    #[test]
    fn the_logits_are_the_classifier_on_tanh_of_the_pooled_first_token() {
        let device = Device::flex();
        device.seed(4);
        let head = SentenceOrderHead::new(8, &device);
        let hidden = Tensor::<3>::random([3, 5, 8], Distribution::Default, &device);
        let logits = head.forward(hidden.clone());
        assert_eq!(logits.dims(), [3, 2]);
        // Only the first position matters.
        let later = hidden.clone().narrow(1, 1, 4).mul_scalar(-3.0);
        let changed = Tensor::cat(vec![hidden.clone().narrow(1, 0, 1), later], 1);
        logits.clone().into_data().assert_approx_eq::<f32>(
            &head.forward(changed).into_data(),
            Tolerance::absolute(1e-6),
        );
        let first = hidden.narrow(1, 0, 1).reshape([3, 8]);
        let w = head.pooler.weight.val();
        let pooled =
            (first.matmul(w) + head.pooler.bias.as_ref().unwrap().val().unsqueeze()).tanh();
        let expected = pooled.matmul(head.classifier.weight.val())
            + head.classifier.bias.as_ref().unwrap().val().unsqueeze();
        logits
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }
}
