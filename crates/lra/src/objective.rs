//! What a model is trained to predict: the loss on a batch and the outcomes (predictions next to
//! gold answers) that metrics are computed from. One type for every task; a task names its
//! objective in the task registry.

use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::tensor::{Int, Tensor};
use lra_data::{LabelKind, Labels, SplitData};

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

    /// The labels a split must carry to be trained or scored with this objective.
    pub fn label_kind(self) -> LabelKind {
        match self {
            Objective::Classification { .. } => LabelKind::Classes,
            Objective::Regression => LabelKind::Scores,
        }
    }

    /// The model's answer for each example of a batch: the argmax class, or the score.
    pub fn predictions(self, output: Tensor<2>) -> Predictions {
        let [batch, _] = output.dims();
        match self {
            Objective::Classification { .. } => {
                Predictions::Classes(host_ids(output.argmax(1).reshape([batch])))
            }
            Objective::Regression => Predictions::Scores(host_values(output.reshape([batch]))),
        }
    }

    /// The constant predictor to compare with: the most frequent training class (ties: the
    /// highest id), or the mean training score. `None` when the training split does not carry
    /// this objective's labels.
    pub fn baseline(self, train: &SplitData) -> Option<Constant> {
        match (self, train.labels()) {
            (Objective::Classification { classes }, Labels::Classes(labels)) => {
                let mut counts = vec![0usize; classes];
                for &label in labels {
                    counts[label as usize] += 1;
                }
                let majority = (0..classes).max_by_key(|&c| counts[c]).unwrap_or(0);
                Some(Constant::Class(majority as u32))
            }
            (Objective::Regression, Labels::Scores(scores)) if !scores.is_empty() => {
                let sum: f64 = scores.iter().map(|&s| f64::from(s)).sum();
                Some(Constant::Score(sum / scores.len() as f64))
            }
            _ => None,
        }
    }
}

/// A model's answers on an unlabelled split, in example order.
#[derive(Clone, Debug, PartialEq)]
pub enum Predictions {
    Classes(Vec<u32>),
    Scores(Vec<f64>),
}

impl Predictions {
    /// No answers yet, of the kind `objective` gives.
    pub fn empty(objective: Objective) -> Self {
        match objective {
            Objective::Classification { .. } => Predictions::Classes(Vec::new()),
            Objective::Regression => Predictions::Scores(Vec::new()),
        }
    }

    /// Appends a batch's answers (of the same kind).
    pub fn extend(&mut self, more: Predictions) {
        match (self, more) {
            (Predictions::Classes(all), Predictions::Classes(more)) => all.extend(more),
            (Predictions::Scores(all), Predictions::Scores(more)) => all.extend(more),
            _ => unreachable!("one objective yields one kind of prediction"),
        }
    }

    /// Number of answers.
    pub fn len(&self) -> usize {
        match self {
            Predictions::Classes(classes) => classes.len(),
            Predictions::Scores(scores) => scores.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answer `index` as text: the class id, or the score.
    pub fn text(&self, index: usize) -> String {
        match self {
            Predictions::Classes(classes) => classes[index].to_string(),
            Predictions::Scores(scores) => format!("{:.6}", scores[index]),
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
        let device = Device::flex();
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
        let device = Device::flex();
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
