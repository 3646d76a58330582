//! Optimiser parameter groups, as PyTorch's: parameters whose path matches a group's pattern get
//! that group's weight decay (and peak learning rate). The usual one is Hugging Face's: no weight
//! decay on biases and LayerNorm parameters (`Trainer`, and the MRA code's optimiser).

use anyhow::{Result, bail};
use burn::module::{Module, ParamGroup};
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use lra_model::parameters::parameter_paths;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

/// One group: `[[train.param_groups]]` in a config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroupConfig {
    /// Regular expression searched in each parameter's path, the module fields from the model
    /// down joined by dots (`encoder.layers.0.norm_1.gamma`, `head.dense.bias`); a parameter
    /// that several groups match belongs to the last of them.
    pub params: String,
    /// AdamW's decoupled weight decay for the group.
    pub weight_decay: f64,
    /// The group's peak learning rate: the schedule's shape scaled to it (PyTorch schedulers
    /// scale each group's own lr). Unset: `train.lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

/// Biases and LayerNorm parameters (our LayerNorms keep Burn's `gamma` and `beta`): the group
/// Hugging Face's `Trainer` trains without weight decay.
pub const BIASES_AND_NORMS: &str = r"(^|\.)(bias|gamma|beta)$";

impl ParamGroupConfig {
    /// The Burn group matching the pattern.
    pub fn group(&self) -> Result<ParamGroup> {
        ParamGroup::from_regex(&self.params)
            .map_err(|e| anyhow::anyhow!("train.param_groups: `{}`: {e:?}", self.params))
    }
}

/// Checks every group's pattern and that it matches a parameter of `module` (a pattern that
/// matches nothing is a typo, not a group), and every group's numbers.
pub fn check<M: Module>(groups: &[ParamGroupConfig], module: &M) -> Result<()> {
    let paths = parameter_paths(module);
    for (index, config) in groups.iter().enumerate() {
        let group = config.group()?;
        if !paths.iter().any(|(path, id)| group.matches(id, Some(path))) {
            let examples: Vec<&str> = paths.iter().take(6).map(|(p, _)| p.as_str()).collect();
            bail!(
                "train.param_groups[{index}]: `{}` matches no parameter of the model; paths look \
                 like {}",
                config.params,
                examples.join(", ")
            );
        }
        if !(config.weight_decay >= 0.0 && config.lr.is_none_or(|lr| lr > 0.0)) {
            bail!(
                "train.param_groups[{index}]: weight_decay must be ≥ 0 and lr > 0, got {config:?}"
            );
        }
    }
    Ok(())
}

/// The learning rate of every parameter at a step whose base rate (`train.lr` on the
/// schedule) is `rate`: groups with their own peak get `rate · lr / train.lr`.
pub fn rates(train: &TrainConfig, rate: f64) -> Result<ModuleLearningRate> {
    let mut scheduler = ModuleLrScheduler::new(rate);
    for config in &train.param_groups {
        let lr = config.lr.unwrap_or(train.lr);
        scheduler = scheduler.with_group(config.group()?, rate * lr / train.lr);
    }
    Ok(scheduler.step())
}

#[cfg(test)]
mod tests {
    use burn::optim::GradientsParams;
    use burn::tensor::Device;
    use burn::tensor::Tensor;
    use lra_model::Classifier;
    use lra_model::parameters::parameter_values;

    use super::*;
    use crate::config::load_preset;
    use crate::train::optimizer;

    fn model() -> (Classifier, TrainConfig) {
        let config = load_preset("tiny/listops").expect("the tiny preset loads");
        let device = Device::flex().autodiff();
        device.seed(3);
        let classifier = config.classifier(20, 10).expect("its classifier builds");
        (classifier.init(&device), config.train)
    }

    fn group(params: &str, weight_decay: f64, lr: Option<f64>) -> ParamGroupConfig {
        ParamGroupConfig {
            params: params.into(),
            weight_decay,
            lr,
        }
    }

    #[test]
    fn biases_and_norms_are_the_bias_and_layer_norm_parameters() {
        let (model, _) = model();
        let group = group(BIASES_AND_NORMS, 0.0, None).group().unwrap();
        let paths = parameter_paths(&model);
        let (mut biases, mut norms) = (0, 0);
        for (path, id) in &paths {
            let last = path.rsplit('.').next().unwrap();
            assert_eq!(
                group.matches(id, Some(path)),
                matches!(last, "bias" | "gamma" | "beta"),
                "{path}"
            );
            if matches!(last, "gamma" | "beta") {
                assert!(path.contains("norm"), "{path} is not a LayerNorm parameter");
                norms += 1;
            }
            biases += usize::from(last == "bias");
        }
        assert!(biases > 4 && norms > 4, "{paths:?}");
    }

    /// With zero gradients AdamW's update is pure decay, θ·(1 − lr·wd): each group's parameters
    /// shrink by their own group's factor.
    #[test]
    fn each_group_decays_at_its_own_rate() {
        let (model, mut train) = model();
        train.lr = 0.1;
        train.weight_decay = 0.5;
        train.param_groups = vec![
            group(BIASES_AND_NORMS, 0.0, None),
            group(r"^head_out\.weight$", 0.5, Some(0.2)),
        ];
        check(&train.param_groups, &model).unwrap();
        let before = parameter_values(&model);
        let device = Device::flex().autodiff();
        let tokens = Tensor::<2, burn::tensor::Int>::ones([2, 16], &device);
        let mask = Tensor::<2, burn::tensor::Bool>::from_data([[false; 16]; 2], &device);
        let loss = model.forward(tokens, mask).sum().mul_scalar(0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut optim = optimizer(&train, &device).unwrap();
        let model = optim.step(rates(&train, 0.1).unwrap(), model, grads);
        for ((path, old), (_, new)) in before.iter().zip(parameter_values(&model)) {
            let last = path.rsplit('.').next().unwrap();
            let factor = match (path.as_str(), last) {
                (_, "bias" | "gamma" | "beta") => 1.0,
                ("head_out.weight", _) => 1.0 - 0.2 * 0.5,
                _ => 1.0 - 0.1 * 0.5,
            };
            for (o, n) in old.iter().zip(&new) {
                assert!(
                    (o * factor - n).abs() <= 1e-6 * o.abs().max(1.0),
                    "{path}: {o} → {n}"
                );
            }
        }
    }

    #[test]
    fn a_pattern_that_matches_nothing_or_does_not_parse_is_an_error() {
        let (model, _) = model();
        let error = check(&[group(r"layer_norm\.weight$", 0.0, None)], &model).unwrap_err();
        assert!(
            error.to_string().contains("matches no parameter")
                && error.to_string().contains("layer_norm"),
            "{error}"
        );
        let error = check(&[group("(unclosed", 0.0, None)], &model).unwrap_err();
        assert!(error.to_string().contains("(unclosed"), "{error}");
    }

    /// Every committed preset's groups match parameters of the model it builds (the S4 presets'
    /// SSM groups, for one, would silently match nothing if a path changed).
    #[test]
    fn every_presets_groups_match_its_model() {
        let mut with_groups = 0;
        for name in crate::config::list_presets() {
            let config = load_preset(&name).unwrap();
            if config.train.param_groups.is_empty() {
                continue;
            }
            let model = config.classifier(300, 10).unwrap().init(&Device::flex());
            check(&config.train.param_groups, &model).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            with_groups += 1;
        }
        assert!(with_groups >= 6, "the S4 presets have groups");
    }
}
