//! Learning rate as a pure function of the step, so a resumed run needs no scheduler state.

use crate::config::{Schedule, TrainConfig};

/// Learning rate for optimisation step `step` (0-based).
pub fn learning_rate(train: &TrainConfig, step: usize) -> f64 {
    let s = (step + 1) as f64; // the first update already gets a non-zero rate
    let warmup = train.warmup_steps as f64;
    let total = train.steps as f64;
    let warm = if warmup > 0.0 {
        (s / warmup).min(1.0)
    } else {
        1.0
    };
    let after_warmup = ((s - warmup) / (total - warmup).max(1.0)).clamp(0.0, 1.0);
    let decay = match train.schedule {
        Schedule::Constant => 1.0,
        Schedule::Linear => 1.0 - after_warmup,
        Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * after_warmup).cos()),
        Schedule::Rsqrt => 1.0 / s.max(warmup).max(1.0).sqrt(),
    };
    train.lr * warm * decay
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train(schedule: Schedule) -> TrainConfig {
        TrainConfig {
            steps: 100,
            epochs: None,
            batch_size: 1,
            lr: 1.0,
            warmup_steps: 10,
            schedule,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            grad_clip: 0.0,
            eval_every: 10,
            eval_batches: 0,
            skip_nonfinite: 0,
        }
    }

    #[test]
    fn warmup_is_linear_and_reaches_the_peak() {
        let t = train(Schedule::Constant);
        assert!((learning_rate(&t, 0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&t, 4) - 0.5).abs() < 1e-12);
        assert!((learning_rate(&t, 9) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&t, 50) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn linear_and_cosine_decay_to_zero_at_the_last_step() {
        for schedule in [Schedule::Linear, Schedule::Cosine] {
            let t = train(schedule);
            assert!(learning_rate(&t, 99).abs() < 1e-12, "{schedule:?}");
            let mid = learning_rate(&t, 54);
            assert!((mid - 0.5).abs() < 0.02, "{schedule:?}: {mid}");
        }
    }

    #[test]
    fn rsqrt_matches_the_jax_lra_formula() {
        let t = train(Schedule::Rsqrt);
        // constant * min(1, s/w) * rsqrt(max(s, w))
        assert!((learning_rate(&t, 4) - 0.5 / 10f64.sqrt()).abs() < 1e-12);
        assert!((learning_rate(&t, 39) - 1.0 / 40f64.sqrt()).abs() < 1e-12);
    }
}
