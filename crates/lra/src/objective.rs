//! What a model is trained to predict: the loss on a batch and the outcomes (predictions next to
//! gold answers) that metrics are computed from. One type for every task; a task names its
//! objective in the task registry.

use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::tensor::{Int, Tensor};
use lra_data::SplitData;

use crate::metrics::{Constant, Outcomes};

/// A task's training objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// Cross-entropy over `classes` logits; predictions are the argmax.
    Classification { classes: usize },
    /// Mean squared error of one output per example (GLUE STS-B).
    Regression,
}

/// Gold answers of a batch, on the device.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Class ids `[batch]`.
    Classes(Tensor<1, Int>),
    /// Real-valued targets `[batch]`.
    Scores(Tensor<1>),
}

impl Objective {
    /// Width of the model's output layer.
    pub fn outputs(self) -> usize {
        match self {
            Objective::Classification { classes } => classes,
            Objective::Regression => 1,
        }
    }

    /// Mean loss over the batch: `output` is `[batch, outputs]`.
    pub fn loss(self, output: Tensor<2>, targets: &Targets) -> Tensor<1> {
        match (self, targets) {
            (Objective::Classification { .. }, Targets::Classes(labels)) => {
                CrossEntropyLossConfig::new()
                    .init(&output.device())
                    .forward(output, labels.clone())
            }
            (Objective::Regression, Targets::Scores(scores)) => {
                let [batch, _] = output.dims();
                MseLoss::new().forward(output.reshape([batch]), scores.clone(), Reduction::Mean)
            }
            _ => unreachable!("a task's data carries the targets its objective expects"),
        }
    }

    /// Predictions next to gold answers, on the host.
    pub fn outcomes(self, output: Tensor<2>, targets: Targets) -> Outcomes {
        let [batch, _] = output.dims();
        match (self, targets) {
            (Objective::Classification { .. }, Targets::Classes(labels)) => Outcomes::Classes {
                predicted: host_ids(output.argmax(1).reshape([batch])),
                gold: host_ids(labels),
            },
            (Objective::Regression, Targets::Scores(scores)) => Outcomes::Scores {
                predicted: host_values(output.reshape([batch])),
                gold: host_values(scores),
            },
            _ => unreachable!("a task's data carries the targets its objective expects"),
        }
    }

    /// The constant predictor to compare with: the most frequent training class (ties: the
    /// highest id). `None` for regression: `SplitData` stores class ids only, so no split carries
    /// the float targets a mean-score baseline needs.
    pub fn baseline(self, train: &SplitData) -> Option<Constant> {
        match self {
            Objective::Classification { classes } => {
                let mut counts = vec![0usize; classes];
                for &label in train.labels() {
                    counts[label as usize] += 1;
                }
                let majority = (0..classes).max_by_key(|&c| counts[c]).unwrap_or(0);
                Some(Constant::Class(majority as u32))
            }
            Objective::Regression => None,
        }
    }
}

fn host_ids(ids: Tensor<1, Int>) -> Vec<u32> {
    ids.into_data().iter::<i64>().map(|id| id as u32).collect()
}

fn host_values(values: Tensor<1>) -> Vec<f64> {
    values.into_data().iter::<f32>().map(f64::from).collect()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::metrics::Metric;

    #[test]
    fn classification_loss_is_cross_entropy_and_predictions_the_argmax() {
        let device = Device::default();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, 0.0, 0.0, 1.0], [2, 2]),
            &device,
        );
        let labels = Targets::Classes(Tensor::from_data(
            TensorData::new(vec![0i64, 0], [2]),
            &device,
        ));
        let objective = Objective::Classification { classes: 2 };
        let loss = objective.loss(logits.clone(), &labels).into_scalar::<f32>() as f64;
        // −log σ(2) and −log σ(−1), averaged.
        let expected = ((1.0 + (-2f64).exp()).ln() + (1.0 + 1f64.exp()).ln()) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
        let outcomes = objective.outcomes(logits, labels);
        assert_eq!(
            outcomes,
            Outcomes::Classes {
                predicted: vec![0, 1],
                gold: vec![0, 0]
            }
        );
        assert_eq!(Metric::Accuracy.compute(&outcomes), Some(0.5));
    }

    #[test]
    fn regression_loss_is_the_mean_squared_error() {
        let device = Device::default();
        let output =
            Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 3.0, 0.5], [3, 1]), &device);
        let scores = Targets::Scores(Tensor::from_data(
            TensorData::new(vec![2.0f32, 3.0, 2.5], [3]),
            &device,
        ));
        let loss = Objective::Regression
            .loss(output.clone(), &scores)
            .into_scalar::<f32>();
        // (1 + 0 + 4) / 3.
        assert!((loss - 5.0 / 3.0).abs() < 1e-6, "{loss}");
        let outcomes = Objective::Regression.outcomes(output, scores);
        assert_eq!(
            outcomes,
            Outcomes::Scores {
                predicted: vec![1.0, 3.0, 0.5],
                gold: vec![2.0, 3.0, 2.5]
            }
        );
    }
}
