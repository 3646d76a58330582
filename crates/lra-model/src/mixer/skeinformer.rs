//! Skeinformer ([Sketching as a Tool for Understanding and Accelerating Self-attention for Long
//! Sequences](https://arxiv.org/abs/2205.00512), Chen, Zeng, Ji, Yang, NAACL 2022): softmax
//! attention from `s` sampled key columns, with the unsampled columns modelled by one constant
//! per row ("adaptive row normalisation") and `s` pilot rows computed exactly.
//!
//! Per batch row and head, with `A = exp(q kᵀ/√d)` over the `nᵢ` real keys (`s = min(nb_features,
//! n)`, `sᵢ = min(s, nᵢ)`):
//!
//! ```text
//! 1. pilot rows  S₀ ⊂ real tokens, s draws uniform with replacement (shared by the heads)
//!                B = softmax(q_{S₀} kᵀ) (s×n),  out₀ = B V   — exact rows
//! 2. importance  pⱼ ∝ ‖B_{:,j}‖₂ · ‖vⱼ‖₂, padded keys pⱼ = 0
//! 3. columns     S₁ = sᵢ distinct real keys drawn ∝ p without replacement (per head)
//! 4. row model   cᵢ = exp(mean_{j∈S₁} qᵢ·kⱼ/√d)  — stands for each unsampled A_ij
//!                out_i = (Σ_{j∈S₁} A_ij vⱼ + cᵢ (Σ_all vⱼ − Σ_{S₁} vⱼ))
//!                        / (Σ_{S₁} A_ij + cᵢ (nᵢ − sᵢ))
//! 5. rows S₀ of the output are replaced by out₀.
//! ```
//!
//! The sampled columns enter unweighted, as in the official `SkeinAttention.forward` (the
//! importance weights `1/√(p s)` it computes, `rs1`, are not used). With `sᵢ = nᵢ` every column is
//! taken once, the row model drops out, and the result is exact softmax attention.
//!
//! Official code checked: pkuzengqi/Skeinformer at commit `8b9ac6b`,
//! `src/models/attention_skeinformer.py` (`SkeinAttention`, `uniform_sketching`,
//! `importance_sketching`) and `src/config.py` (`"skeinformer": nb_features 256, accumulation 1`).
//!
//! Complexity per head: O(n·s·d) time, O(n·s) memory, plus an O(n log n) sort per row for the
//! column draw (Gumbel top-k) and one for the pilot positions.
//!
//! Randomness: both draws are redrawn at every call, in training and evaluation (as the official
//! code), from the device RNG: `s` uniforms for the pilot rows, then `h·n` uniforms for Gumbel
//! noise. Sampling without replacement ∝ p is the Gumbel top-k trick (Kool, van Hoof, Welling
//! 2019): the `s` largest `ln pⱼ + Gⱼ` have the distribution of successive sampling without
//! replacement, `torch.multinomial(replacement=False)`.
//!
//! Deviations, and why:
//! - One draw of noise per call is shared by the batch rows (uniforms `[1, s]`, Gumbel noise
//!   `[1, h, n]`), so a row's output does not depend on the other rows or on the batch size: each
//!   row is still sampled exactly as the official code samples it, but rows of one batch are
//!   correlated. The official code draws per row.
//! - Sample size per row: `sᵢ = min(nb_features, nᵢ)` columns of row `i`'s own real keys. The
//!   official code uses one `s = min(nb_features, min_i nᵢ − 1)` for the whole batch, so one
//!   short sequence shrinks the sample of every other. Here `s = min(nb_features, n)` keys are
//!   drawn for every row, padded keys ranked last (log-probability `PAD_BIAS`), and drawn padded
//!   keys are dropped, so a row with `nᵢ ≤ s` takes all its real keys and is exact.
//! - Pilot rows are the `⌊U·nᵢ⌋`-th real tokens (official: position `⌊U·nᵢ⌋`, which is the same
//!   when padding is a suffix, as in LRA). Repeated pilot rows are written back once (official:
//!   an indexed assignment; the duplicates carry the same value).
//! - Numerics: row-max shifts inside the exponentials (they cancel in the ratio; the official
//!   code exponentiates unshifted scores), and probabilities are floored at 1e-30 before the log.
//! - No attention dropout (the official attention has none); the model's `dropout` is unused.
//! - Q/K/V/output projections are the shared [`MultiHeadProjection`](super::MultiHeadProjection) (with biases), as for every
//!   mixer here.

use burn::module::Module;
use burn::tensor::{Bool, Device, Distribution, IndexingUpdateOp, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::common::reference::{PAD_BIAS, attention_probs, key_padding_bias};
use super::{Attention, AttentionCore, Caps, MixerDims, MixerSpec, MultiHeadProjectionConfig};

/// Settings of [`SkeinformerAttention`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkeinformerConfig {
    /// Sampled columns and pilot rows `s` (`nb_features`), clamped to the sequence length and to
    /// each row's real tokens. Default: 256 (`src/config.py`, `"skeinformer"`).
    pub nb_features: usize,
}

impl Default for SkeinformerConfig {
    fn default() -> Self {
        Self { nb_features: 256 }
    }
}

impl MixerSpec for SkeinformerConfig {
    type Mixer = SkeinformerAttention;
    const SUMMARY: &'static str = "Skeinformer: importance-sampled key columns, adaptive row \
                                   normalisation, exact pilot rows";

    fn caps(&self) -> Caps {
        Caps::APPROXIMATE_ATTENTION
    }

    fn validate(&self, _dims: &MixerDims) -> Result<(), String> {
        if self.nb_features == 0 {
            return Err("nb_features must be at least 1 (official: 256)".into());
        }
        Ok(())
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> SkeinformerAttention {
        let projection = MultiHeadProjectionConfig::from_dims(dims).init(device);
        Attention::new(
            projection,
            SkeinformerCore {
                nb_features: self.nb_features,
            },
        )
    }
}

/// Multi-head Skeinformer attention.
pub type SkeinformerAttention = Attention<SkeinformerCore>;

/// The attention core of [`SkeinformerAttention`].
#[derive(Module, Debug)]
pub struct SkeinformerCore {
    nb_features: usize,
}

impl AttentionCore for SkeinformerCore {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let [batch, heads, seq, head_dim] = q.dims();
        let device = q.device();
        let s = self.nb_features.min(seq);
        let (real, key_bias) = match pad_mask {
            Some(mask) => (
                mask.clone().bool_not().float(),
                Some(key_padding_bias(mask)),
            ),
            None => (Tensor::<2>::ones([batch, seq], &device), None),
        }; // [b, n], 1 = real
        let real4 = real.clone().reshape([batch, 1, seq, 1]);
        let (k, v) = (k * real4.clone(), v * real4.clone());
        let real_count = real.clone().sum_dim(1); // [b, 1]

        // 1. Pilot rows: the ⌊U·nᵢ⌋-th real token, U ~ U[0, 1), shared by the heads.
        let uniform =
            Tensor::<2>::random([1, s], Distribution::Default, &device).expand([batch, s]);
        let rank = (uniform * real_count.clone())
            .floor()
            .min_pair((real_count.clone() - 1.0).expand([batch, s]))
            .clamp_min(0.0)
            .int(); // [b, s]
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .float()
            .reshape([1, seq])
            .expand([batch, seq]);
        // Real tokens first, in order: the r-th real token is `order[r]`.
        let order = (positions + (real.clone().neg() + 1.0) * seq as f64).argsort(1); // [b, n]
        let pilot = order.gather(1, rank); // [b, s]
        let pilot4 = pilot
            .clone()
            .reshape([batch, 1, s, 1])
            .expand([batch, heads, s, head_dim]);
        let q_pilot = q.clone().gather(2, pilot4.clone()); // [b, h, s, d]
        let pilot_probs = attention_probs(q_pilot, k.clone(), key_bias); // [b, h, s, n]
        let pilot_out = pilot_probs.clone().matmul(v.clone()); // [b, h, s, d]

        // 2–3. Column importance ‖B_{:,j}‖·‖v_j‖, s distinct columns by Gumbel top-k.
        let log_importance = (pilot_probs
            .detach()
            .square()
            .sum_dim(2)
            .clamp_min(1e-30)
            .log()
            + v.clone()
                .detach()
                .square()
                .sum_dim(3)
                .swap_dims(2, 3)
                .clamp_min(1e-30)
                .log())
            * 0.5; // [b, h, 1, n]
        let padded = real4.clone().swap_dims(2, 3).lower_elem(0.5); // [b, 1, 1, n]
        let log_importance =
            log_importance.mask_fill(padded.expand([batch, heads, 1, seq]), PAD_BIAS);
        let keys = log_importance + gumbel_noise([1, heads, 1, seq], &device);
        let (_, columns) = keys.topk_with_indices(s, 3); // [b, h, 1, s]
        let columns = columns.reshape([batch, heads, s, 1]);
        let columns4 = columns.clone().expand([batch, heads, s, head_dim]);
        let k_cols = k.gather(2, columns4.clone()); // [b, h, s, d]
        let v_cols = v.clone().gather(2, columns4);
        let taken = real4
            .expand([batch, heads, seq, 1])
            .gather(2, columns)
            .swap_dims(2, 3); // [b, h, 1, s], 0 = a padded key that was drawn
        let taken_count = taken.clone().sum_dim(3); // [b, h, 1, 1] = sᵢ

        // 4. Sampled columns plus the row model for the others.
        let scores = q.matmul(k_cols.swap_dims(2, 3)) / (head_dim as f64).sqrt(); // [b, h, n, s]
        let shift = (scores.clone().detach() + (taken.clone().neg() + 1.0) * PAD_BIAS).max_dim(3);
        // A row of padding only took no column: its masked maximum is PAD_BIAS-sized, and
        // exp(score − shift) would overflow. Its output is 0 either way.
        let none_taken = taken_count.clone().lower_elem(0.5).expand(shift.dims());
        let shift = shift.mask_fill(none_taken, 0.0);
        let weights = (scores.clone() - shift.clone()).exp() * taken.clone();
        let mean_score = (scores * taken).sum_dim(3) / taken_count.clone().clamp_min(1.0);
        let row_model = (mean_score - shift).exp(); // [b, h, n, 1], cᵢ / e^shift
        let unsampled_v = v.sum_dim(2) - v_cols.clone().sum_dim(2); // [b, h, 1, d]
        let unsampled = real_count.reshape([batch, 1, 1, 1]) - taken_count; // nᵢ − sᵢ
        let numerator = weights.clone().matmul(v_cols) + row_model.clone() * unsampled_v;
        let denominator = weights.sum_dim(3) + row_model * unsampled;
        let out = numerator / denominator.clamp_min(1e-30);

        // 5. Exact pilot rows (a row drawn twice is written once).
        let zeros = Tensor::<4>::zeros([batch, heads, seq, head_dim], &device);
        let pilot_sum = zeros.scatter(2, pilot4, pilot_out, IndexingUpdateOp::Add);
        let hits = Tensor::<2>::zeros([batch, seq], &device)
            .scatter(
                1,
                pilot,
                Tensor::ones([batch, s], &device),
                IndexingUpdateOp::Add,
            )
            .reshape([batch, 1, seq, 1]);
        let is_pilot = hits
            .clone()
            .greater_elem(0.0)
            .expand([batch, heads, seq, head_dim]);
        out.mask_where(is_pilot, pilot_sum / hits.clamp_min(1.0))
    }
}

/// Standard Gumbel noise `-ln(-ln u)` from the device RNG; `u` stays inside (0, 1).
fn gumbel_noise(shape: [usize; 4], device: &Device) -> Tensor<4> {
    const EPS: f64 = 1e-6;
    let u = Tensor::<4>::random(shape, Distribution::Uniform(EPS, 1.0 - EPS), device);
    u.log().neg().log().neg()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tolerance;

    use super::*;
    use crate::mixer::common::reference::{relative_error, softmax_attention};
    use crate::mixer::common::testing::{normal, padded_from};

    const HEADS: usize = 2;

    fn skein(nb_features: usize, head_dim: usize, device: &Device) -> SkeinformerAttention {
        let dims = MixerDims::new(HEADS * head_dim, HEADS, 4096);
        let config = SkeinformerConfig { nb_features };
        config.validate(&dims).unwrap();
        device.seed(1);
        crate::init_now(config.init(&dims, device))
    }

    #[test]
    fn all_columns_give_exact_softmax_attention() {
        let device = Device::flex();
        let (seq, head_dim, real) = (64, 8, 37);
        let q = normal(&device, 2, [2, HEADS, seq, head_dim], 1.0);
        let k = normal(&device, 3, [2, HEADS, seq, head_dim], 1.0);
        let v = normal(&device, 4, [2, HEADS, seq, head_dim], 1.0);
        let pad = padded_from(&[seq, real], seq, &device);
        let expected = softmax_attention(q.clone(), k.clone(), v.clone(), Some(pad.clone()));
        // s = n, and s larger than n (clamped): every real column is taken once.
        for nb_features in [seq, 1000] {
            device.seed(5);
            let actual = skein(nb_features, head_dim, &device).core.attend(
                q.clone(),
                k.clone(),
                v.clone(),
                Some(pad.clone()),
            );
            for (row, len) in [(0, seq), (1, real)] {
                let part = |x: Tensor<4>| x.narrow(0, row, 1).narrow(2, 0, len);
                part(actual.clone()).to_data().assert_approx_eq::<f32>(
                    &part(expected.clone()).to_data(),
                    Tolerance::absolute(1e-4),
                );
            }
        }
    }

    /// Mean relative error against softmax attention over device seeds.
    fn mean_error(nb_features: usize, seq: usize, head_dim: usize, seeds: u64) -> f32 {
        let device = Device::flex();
        let mixer = skein(nb_features, head_dim, &device);
        let total: f32 = (0..seeds)
            .map(|seed| {
                let q = normal(&device, 100 + seed, [1, HEADS, seq, head_dim], 1.0);
                let k = normal(&device, 200 + seed, [1, HEADS, seq, head_dim], 1.0);
                let v = normal(&device, 300 + seed, [1, HEADS, seq, head_dim], 1.0);
                device.seed(400 + seed);
                let approx = mixer.core.attend(q.clone(), k.clone(), v.clone(), None);
                relative_error(approx, softmax_attention(q, k, v, None))
            })
            .sum();
        total / seeds as f32
    }

    #[test]
    fn error_falls_with_more_samples() {
        let (seq, head_dim) = (256, 16);
        let errors: Vec<f32> = [16, 64, 128]
            .into_iter()
            .map(|s| mean_error(s, seq, head_dim, 6))
            .collect();
        println!("Skeinformer relative error at s = 16, 64, 128: {errors:?}");
        assert!(errors[1] < errors[0] && errors[2] < errors[1], "{errors:?}");
        assert!(errors[2] < 0.7 * errors[0], "{errors:?}");
    }

    #[test]
    fn padded_keys_are_never_drawn_and_never_matter() {
        let device = Device::flex();
        let (seq, head_dim, real) = (64, 8, 40);
        let mixer = skein(16, head_dim, &device); // s < real tokens: a genuine sample
        let q = normal(&device, 2, [1, HEADS, seq, head_dim], 1.0);
        let k = normal(&device, 3, [1, HEADS, seq, head_dim], 1.0);
        let v = normal(&device, 4, [1, HEADS, seq, head_dim], 1.0);
        let garbage = normal(&device, 5, [1, HEADS, seq, head_dim], 100.0);
        let pad = padded_from(&[real], seq, &device);
        let pad4 = pad
            .clone()
            .reshape([1, 1, seq, 1])
            .expand([1, HEADS, seq, head_dim]);
        let run = |k: Tensor<4>, v: Tensor<4>, q: Tensor<4>| {
            device.seed(6);
            mixer
                .core
                .attend(q, k, v, Some(pad.clone()))
                .narrow(2, 0, real)
        };
        let clean = run(k.clone(), v.clone(), q.clone());
        let dirty = run(
            k.clone().mask_where(pad4.clone(), garbage.clone()),
            v.clone().mask_where(pad4.clone(), garbage.clone() * 3.0),
            q.clone().mask_where(pad4, garbage),
        );
        clean
            .clone()
            .to_data()
            .assert_approx_eq::<f32>(&dirty.to_data(), Tolerance::absolute(1e-5));
        // With exactly as many samples as real tokens the result is exact only if no padded key
        // took the place of a real one.
        let exact = softmax_attention(q.clone(), k.clone(), v.clone(), Some(pad.clone()));
        device.seed(6);
        skein(real, head_dim, &device)
            .core
            .attend(q, k, v, Some(pad))
            .narrow(2, 0, real)
            .to_data()
            .assert_approx_eq::<f32>(
                &exact.narrow(2, 0, real).to_data(),
                Tolerance::absolute(1e-4),
            );
    }

    #[test]
    fn each_batch_row_equals_running_it_alone_under_the_same_draws() {
        let device = Device::flex();
        let (seq, head_dim) = (96, 8);
        let mixer = skein(24, head_dim, &device); // s < n: the columns are a genuine sample
        let q = normal(&device, 2, [2, HEADS, seq, head_dim], 1.0);
        let k = normal(&device, 3, [2, HEADS, seq, head_dim], 1.0);
        let v = normal(&device, 4, [2, HEADS, seq, head_dim], 1.0);
        let pad = padded_from(&[seq, 57], seq, &device);
        device.seed(9);
        let together = mixer
            .core
            .attend(q.clone(), k.clone(), v.clone(), Some(pad.clone()));
        for row in 0..2 {
            let one = |x: Tensor<4>| x.narrow(0, row, 1);
            device.seed(9);
            let alone = mixer.core.attend(
                one(q.clone()),
                one(k.clone()),
                one(v.clone()),
                Some(pad.clone().narrow(0, row, 1)),
            );
            one(together.clone())
                .to_data()
                .assert_approx_eq::<f32>(&alone.to_data(), Tolerance::absolute(1e-5));
        }
    }

    #[test]
    fn draws_follow_the_device_seed() {
        let device = Device::flex();
        let (seq, head_dim) = (128, 8);
        let mixer = skein(16, head_dim, &device);
        let q = normal(&device, 2, [1, HEADS, seq, head_dim], 1.0);
        let k = normal(&device, 3, [1, HEADS, seq, head_dim], 1.0);
        let v = normal(&device, 4, [1, HEADS, seq, head_dim], 1.0);
        let run = |seed| {
            device.seed(seed);
            mixer.core.attend(q.clone(), k.clone(), v.clone(), None)
        };
        assert_eq!(run(7).to_data(), run(7).to_data());
        assert_ne!(run(7).to_data(), run(8).to_data());
    }

    #[test]
    fn validation_names_the_field() {
        let dims = MixerDims::new(8, 2, 16);
        let message = SkeinformerConfig { nb_features: 0 }
            .validate(&dims)
            .unwrap_err();
        assert!(message.starts_with("nb_features"), "{message}");
        assert!(toml::from_str::<SkeinformerConfig>("accumulation = 1").is_err());
    }
}
