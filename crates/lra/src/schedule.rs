//! Learning rate as a pure function of the step, so a resumed run needs no scheduler state.

use crate::config::{Schedule, TrainConfig};

/// Learning rate for optimisation step `step` (0-based).
pub fn learning_rate(train: &TrainConfig, step: usize) -> f64 {
    if train.schedule == Schedule::OneCycle {
        return one_cycle(train, step);
    }
    // Counted from 1 by default, so that the first update already gets a non-zero rate.
    let s = (step + train.first_schedule_step) as f64;
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
        Schedule::JaxCosine => {
            let progress = ((s - warmup) / total.max(1.0)).max(0.0) % 1.0;
            (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
        }
        Schedule::Rsqrt => 1.0 / s.max(warmup).max(1.0).sqrt(),
        Schedule::OneCycle => unreachable!("handled above"),
    };
    train.lr * warm * decay
}

/// PyTorch `OneCycleLR` (linear annealing, `div_factor` 25, `final_div_factor` 1e4) at
/// scheduler step `step`: linear from `lr/25` at step 0 to `lr` at step `warmup − 1`, then
/// linear to `lr/25/1e4` at step `steps − 1`.
fn one_cycle(train: &TrainConfig, step: usize) -> f64 {
    let peak = train.lr;
    let start = peak / 25.0;
    let (rising, share) = one_cycle_phase(train, step);
    if rising {
        between(start, peak, share)
    } else {
        between(peak, start / 1e4, share)
    }
}

/// Adam's β1 at scheduler step `step` under `OneCycleLR(cycle_momentum = True)` with its
/// defaults `base_momentum = 0.85`, `max_momentum = 0.95`: against the rate, 0.95 → 0.85 while
/// it rises, 0.85 → 0.95 while it falls.
pub fn one_cycle_beta1(train: &TrainConfig, step: usize) -> f64 {
    const BASE: f64 = 0.85;
    const MAX: f64 = 0.95;
    let (rising, share) = one_cycle_phase(train, step);
    if rising {
        between(MAX, BASE, share)
    } else {
        between(BASE, MAX, share)
    }
}

/// Whether `step` is in `OneCycleLR`'s rising phase (up to step `warmup − 1`), and the share of
/// its phase done.
fn one_cycle_phase(train: &TrainConfig, step: usize) -> (bool, f64) {
    let peak_step = train.warmup_steps as f64 - 1.0;
    let last_step = train.steps as f64 - 1.0;
    let step = step as f64;
    if step <= peak_step {
        (true, step / peak_step.max(1.0))
    } else {
        (false, (step - peak_step) / (last_step - peak_step).max(1.0))
    }
}

fn between(from: f64, to: f64, share: f64) -> f64 {
    from + (to - from) * share.clamp(0.0, 1.0)
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
            first_schedule_step: 1,
            weight_decay: 0.0,
            param_groups: Vec::new(),
            beta1: 0.9,
            cycle_momentum: false,
            beta2: 0.999,
            eps: 1e-6,
            grad_clip: 0.0,
            grad_clip_by: crate::config::ClipBy::GlobalNorm,
            eval_every: 10,
            eval_batches: 0,
            skip_nonfinite: 0,
            test_with: Default::default(),
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

    /// Values printed by PyTorch 2.15 `OneCycleLR(max_lr=1, pct_start=0.1, total_steps=100,
    /// anneal_strategy='linear')`, read before each optimiser step.
    /// `OneCycleLR(cycle_momentum = True)` anneals β1 with the rate's phase shares
    /// (`_anneal_func(max_momentum, base_momentum, pct)`, then back): 0.95 at step 0, 0.85 at
    /// the peak (step 9 of 100 with a 10 % warm-up), 0.95 at the last step.
    #[test]
    fn one_cycle_beta1_falls_while_the_rate_rises_and_rises_back() {
        let t = train(Schedule::OneCycle);
        for (step, expected) in [
            (0, 0.95),
            (5, 0.95 - 0.1 * 5.0 / 9.0),
            (9, 0.85),
            (10, 0.85 + 0.1 / 90.0),
            (54, 0.9),
            (99, 0.95),
        ] {
            let beta1 = one_cycle_beta1(&t, step);
            assert!(
                (beta1 - expected).abs() < 1e-12,
                "step {step}: {beta1} vs {expected}"
            );
        }
    }

    #[test]
    fn one_cycle_matches_pytorch() {
        let t = train(Schedule::OneCycle);
        let pytorch = [
            (0, 0.04),
            (1, 0.146_666_666_666_666_67),
            (5, 0.573_333_333_333_333_4),
            (9, 1.0),
            (10, 0.988_888_933_333_333_4),
            (54, 0.500_002_000_000_000_1),
            (99, 4.000_000_000_004e-6),
        ];
        for (step, expected) in pytorch {
            let lr = learning_rate(&t, step);
            assert!(
                (lr - expected).abs() < 1e-12,
                "step {step}: {lr} vs {expected}"
            );
        }
    }

    #[test]
    fn rsqrt_matches_the_jax_lra_formula() {
        let t = train(Schedule::Rsqrt);
        // constant * min(1, s/w) * rsqrt(max(s, w))
        assert!((learning_rate(&t, 4) - 0.5 / 10f64.sqrt()).abs() < 1e-12);
        assert!((learning_rate(&t, 39) - 1.0 / 40f64.sqrt()).abs() < 1e-12);
    }

    /// `train_utils.create_learning_rate_scheduler(factors = "constant * linear_warmup *
    /// cosine_decay", steps_per_cycle = steps)` written out for w = 10, steps = 100.
    #[test]
    fn jax_cosine_counts_from_the_warmup_over_all_steps_and_stays_above_zero() {
        let t = train(Schedule::JaxCosine);
        let jax = |s: f64| {
            let progress = ((s - 10.0) / 100.0).max(0.0) % 1.0;
            (s / 10.0).min(1.0) * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
        };
        for step in [0, 4, 9, 10, 54, 99] {
            let lr = learning_rate(&t, step);
            assert!(
                (lr - jax(step as f64 + 1.0)).abs() < 1e-12,
                "step {step}: {lr}"
            );
        }
        assert!((learning_rate(&t, 9) - 1.0).abs() < 1e-12);
        // The last step: p = 0.9, ½(1 + cos 0.9π) ≈ 0.0245, not 0 as `cosine` gives.
        assert!((learning_rate(&t, 99) - 0.024_471_741_852_423).abs() < 1e-9);
    }

    /// Counted from 0, the schedule is Hugging Face's `get_linear_schedule_with_warmup` as the
    /// `Trainer` steps it (update k at `lr_lambda(k)`): 0 on the first update, `lr` after the
    /// warmup, `lr · (T − k) / (T − w)` after it.
    #[test]
    fn counted_from_zero_the_linear_schedule_is_hugging_faces() {
        let mut t = train(Schedule::Linear);
        t.first_schedule_step = 0;
        let hugging_face = |k: f64| {
            if k < 10.0 {
                k / 10.0
            } else {
                ((100.0 - k) / 90.0).max(0.0)
            }
        };
        for step in [0, 1, 9, 10, 54, 99] {
            let lr = learning_rate(&t, step);
            assert!(
                (lr - hugging_face(step as f64)).abs() < 1e-12,
                "step {step}: {lr}"
            );
        }
        assert_eq!(learning_rate(&t, 0), 0.0, "the first update does not move");
    }
}
