//! Evaluation metrics over every prediction of a split (not summed per batch), as GLUE and
//! Hugging Face `evaluate` define them: accuracy, binary F1, Matthews correlation, Pearson and
//! Spearman correlation; plus the scores of constant predictors as baselines.

use std::fmt;

use lra_data::Labels;
use serde::{Deserialize, Serialize};

/// What a model predicted for each example of a split, and what was right.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcomes {
    /// Class ids: predicted (argmax) and gold.
    Classes { predicted: Vec<u32>, gold: Vec<u32> },
    /// Real-valued scores (regression): predicted and gold.
    Scores { predicted: Vec<f64>, gold: Vec<f64> },
}

impl Outcomes {
    /// Number of examples.
    pub fn len(&self) -> usize {
        match self {
            Outcomes::Classes { gold, .. } => gold.len(),
            Outcomes::Scores { gold, .. } => gold.len(),
        }
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends another batch's outcomes (of the same kind).
    pub fn extend(&mut self, other: Outcomes) {
        match (self, other) {
            (
                Outcomes::Classes { predicted, gold },
                Outcomes::Classes {
                    predicted: p,
                    gold: g,
                },
            ) => {
                predicted.extend(p);
                gold.extend(g);
            }
            (
                Outcomes::Scores { predicted, gold },
                Outcomes::Scores {
                    predicted: p,
                    gold: g,
                },
            ) => {
                predicted.extend(p);
                gold.extend(g);
            }
            _ => unreachable!("one objective yields one kind of outcome"),
        }
    }

    /// A split's gold answers with every prediction replaced by `constant` (the majority
    /// class of the training labels, or the mean training score); `None` for an unlabelled
    /// split or a constant of the other kind.
    pub fn of_constant(labels: &Labels, constant: Constant) -> Option<Outcomes> {
        match (labels, constant) {
            (Labels::Classes(gold), Constant::Class(class)) => Some(Outcomes::Classes {
                predicted: vec![class; gold.len()],
                gold: gold.clone(),
            }),
            (Labels::Scores(gold), Constant::Score(score)) => Some(Outcomes::Scores {
                predicted: vec![score; gold.len()],
                gold: gold.iter().map(|&g| f64::from(g)).collect(),
            }),
            _ => None,
        }
    }
}

/// A constant predictor, the baseline a model must beat.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Constant {
    /// Always this class (the most frequent training label).
    Class(u32),
    /// Always this score (the mean training target).
    Score(f64),
}

/// A named metric a task can report and select checkpoints by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction of exact class matches.
    Accuracy,
    /// Binary F1 of class 1 (scikit-learn `f1_score`, GLUE MRPC/QQP).
    F1,
    /// Matthews correlation coefficient (scikit-learn `matthews_corrcoef`, GLUE CoLA).
    Mcc,
    /// Pearson correlation of scores (GLUE STS-B).
    Pearson,
    /// Spearman rank correlation, ties at their mean rank (GLUE STS-B).
    Spearman,
}

impl Metric {
    /// The name used in configs, `summary.json` and `metrics.csv` columns.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Mcc => "mcc",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
        }
    }

    /// The metric's value on `outcomes`; `None` when it does not apply to them (F1 of scores).
    pub fn compute(self, outcomes: &Outcomes) -> Option<f64> {
        match (self, outcomes) {
            (Metric::Accuracy, Outcomes::Classes { predicted, gold }) => {
                Some(accuracy(predicted, gold))
            }
            (Metric::F1, Outcomes::Classes { predicted, gold }) => Some(f1_binary(predicted, gold)),
            (Metric::Mcc, Outcomes::Classes { predicted, gold }) => Some(matthews(predicted, gold)),
            (Metric::Pearson, Outcomes::Scores { predicted, gold }) => {
                Some(pearson(predicted, gold))
            }
            (Metric::Spearman, Outcomes::Scores { predicted, gold }) => {
                Some(spearman(predicted, gold))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Fraction of positions where `predicted` equals `gold` (0 for no examples).
pub fn accuracy(predicted: &[u32], gold: &[u32]) -> f64 {
    let hits = predicted.iter().zip(gold).filter(|(p, g)| p == g).count();
    hits as f64 / gold.len().max(1) as f64
}

/// Binary F1 with class 1 positive: `2·TP / (2·TP + FP + FN)`, 0 when there is no positive
/// prediction or label at all (scikit-learn's `zero_division` default).
pub fn f1_binary(predicted: &[u32], gold: &[u32]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&p, &g) in predicted.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denominator = 2 * tp + fp + fn_;
    if denominator == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denominator as f64
    }
}

/// Matthews correlation for any number of classes (scikit-learn's multiclass formula, which for
/// two classes is `(TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN))`); 0 when the denominator
/// is 0, e.g. a constant prediction.
pub fn matthews(predicted: &[u32], gold: &[u32]) -> f64 {
    let classes = predicted
        .iter()
        .chain(gold)
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    let (mut predicted_count, mut gold_count) = (vec![0f64; classes], vec![0f64; classes]);
    let mut correct = 0f64;
    for (&p, &g) in predicted.iter().zip(gold) {
        predicted_count[p as usize] += 1.0;
        gold_count[g as usize] += 1.0;
        correct += f64::from(u8::from(p == g));
    }
    let samples = gold.len() as f64;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let covariance = correct * samples - dot(&predicted_count, &gold_count);
    let spread_predicted = samples * samples - dot(&predicted_count, &predicted_count);
    let spread_gold = samples * samples - dot(&gold_count, &gold_count);
    let denominator = (spread_predicted * spread_gold).sqrt();
    if denominator == 0.0 {
        0.0
    } else {
        covariance / denominator
    }
}

/// Pearson correlation; NaN when either side is constant (as `scipy.stats.pearsonr`).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mean_x, mean_y) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut covariance, mut var_x, mut var_y) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mean_x, b - mean_y);
        covariance += dx * dy;
        var_x += dx * dx;
        var_y += dy * dy;
    }
    if var_x == 0.0 || var_y == 0.0 {
        return f64::NAN;
    }
    covariance / (var_x * var_y).sqrt()
}

/// Spearman rank correlation: Pearson of the average ranks (ties share their mean rank).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// 1-based ranks, tied values getting the mean of the ranks they span.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1 ..= end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = rank;
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn accuracy_counts_exact_matches() {
        assert!(close(accuracy(&[0, 1, 2, 2], &[0, 1, 1, 2]), 0.75));
    }

    #[test]
    fn f1_is_twice_tp_over_twice_tp_plus_errors() {
        // TP 2 (positions 0, 3), FP 1 (2), FN 1 (4): 4 / (4 + 1 + 1).
        assert!(close(
            f1_binary(&[1, 0, 1, 1, 0], &[1, 0, 0, 1, 1]),
            4.0 / 6.0
        ));
        // No positive prediction and no positive label: 0, as scikit-learn's zero_division.
        assert_eq!(f1_binary(&[0, 0], &[0, 0]), 0.0);
    }

    #[test]
    fn mcc_matches_the_binary_formula_and_is_zero_when_degenerate() {
        // TP 2, TN 1, FP 1, FN 1: (2·1 − 1·1) / √(3·3·2·2) = 1/6.
        let (predicted, gold) = ([1, 0, 1, 1, 0], [1, 0, 0, 1, 1]);
        assert!(close(matthews(&predicted, &gold), 1.0 / 6.0));
        assert!(close(matthews(&gold, &gold), 1.0));
        assert!(close(matthews(&[1, 0, 0, 1], &[0, 1, 1, 0]), -1.0));
        // A constant prediction makes the denominator 0: scikit-learn returns 0.
        assert_eq!(matthews(&[1, 1, 1], &[0, 1, 0]), 0.0);
        assert_eq!(matthews(&[0, 0], &[0, 0]), 0.0);
    }

    #[test]
    fn multiclass_mcc_matches_scikit_learn() {
        // sklearn.metrics.matthews_corrcoef([0,1,2,2,1,0], [0,2,2,1,1,0]):
        // C = 6·4 − (2·2 + 2·2 + 2·2) = 12; √((36 − 12)(36 − 12)) = 24 → 0.5.
        assert!(close(
            matthews(&[0, 1, 2, 2, 1, 0], &[0, 2, 2, 1, 1, 0]),
            0.5
        ));
    }

    #[test]
    fn pearson_of_a_linear_relation_is_one_and_of_constants_nan() {
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0));
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0));
        // x = [1, 2, 3, 4], y = [1, 3, 2, 4]: cov 4, var 5 and 5 → 0.8.
        assert!(close(
            pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]),
            0.8
        ));
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
    }

    #[test]
    fn ties_get_their_mean_rank() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0, 20.0, 20.0]),
            vec![1.5, 4.0, 1.5, 6.0, 4.0, 4.0]
        );
    }

    #[test]
    fn spearman_with_ties_matches_scipy() {
        // scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]): ranks [1, 2.5, 2.5, 4] and
        // [1, 3, 2, 4]; Pearson of those: cov 4.5, var 4.5 and 5 → 4.5/√22.5 = 0.9486832980505138.
        assert!(close(
            spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]),
            4.5 / 22.5f64.sqrt()
        ));
        // Any monotone transform leaves Spearman at 1.
        assert!(close(spearman(&[1.0, 2.0, 3.0], &[1.0, 8.0, 27.0]), 1.0));
    }

    #[test]
    fn constant_predictors_are_the_baselines() {
        let gold = Labels::Classes(vec![1, 1, 0, 1]);
        let majority = Outcomes::of_constant(&gold, Constant::Class(1)).unwrap();
        assert!(close(Metric::Accuracy.compute(&majority).unwrap(), 0.75));
        assert!(close(Metric::F1.compute(&majority).unwrap(), 6.0 / 7.0));
        assert_eq!(Metric::Mcc.compute(&majority), Some(0.0));
        assert_eq!(Metric::Pearson.compute(&majority), None);
        let scores = Labels::Scores(vec![1.0, 2.0]);
        let mean = Outcomes::of_constant(&scores, Constant::Score(1.5)).unwrap();
        assert!(
            Metric::Pearson.compute(&mean).unwrap().is_nan(),
            "a constant has no correlation"
        );
        assert_eq!(Outcomes::of_constant(&scores, Constant::Class(0)), None);
        assert_eq!(
            Outcomes::of_constant(&Labels::Unlabelled, Constant::Class(0)),
            None
        );
    }
}
