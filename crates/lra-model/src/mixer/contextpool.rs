//! Adaptive context pooling ([Efficient Representation Learning via Adaptive Context
//! Pooling](https://arxiv.org/abs/2207.01844), Huang, Talbott, Jaitly and Susskind, ICML 2022)
//! in front of any registered host mixer.
//!
//! Before the host attends, every key and value is replaced by an adaptively pooled summary of
//! its neighbourhood, so each query attends to contexts of a learned, per-token granularity. A
//! light mapping function of the mixer input `x` predicts, per token, a pooling-weight logit
//! `a_j` (importance `w_j = exp(a_j)`) and a support size `s_i ∈ (0, 1)`, giving the Gaussian
//! mask `g_ij = exp(−(j − i)²/(2σ_i²))` with `σ_i = σ_min + s_i·R/2`, truncated to `|j − i| ≤ R`
//! (`max_support`):
//!
//! ```text
//! pooled_i = Σ_j g_ij w_j m_j y_j / Σ_j g_ij w_j m_j        (m_j = 0 at padding)
//! ```
//!
//! computed as a softmax over the `2R + 1` offsets of `a_j − (j − i)²/(2σ_i²)`. Because the weights
//! of each token sum to 1, pooling commutes with the host's affine K/V projections, so the keys
//! and values are pooled after the projection (`y = k, v`), with no extra projection; queries stay
//! per token. A host with an attention core runs as the mixer contract defines it
//! (`projection.mix(input, core)`), with the core fed the pooled keys and values; a host
//! without one (a non-attention mixer, or one with tied or carried projections such as `soft` and
//! `luna`) gets its input pooled instead, queries included.
//!
//! No official code is published (Apple research); this follows the paper's description (§3,
//! Fig. 2) and the project notes (§18).
//!
//! Complexity: O(n·(2R + 1)·d) for the pooling plus the host's cost.
//!
//! Choices where the paper gives no detail, and why:
//! - Mapping function: one linear map `d_model → 2` per token (weight logit, support logit), the
//!   lightest "mapping function" the paper describes; `s_i = sigmoid(·)`.
//! - Support: `σ_i ≥ σ_min = 0.1` keeps `1/σ²` finite for the gradients; there the nearest
//!   neighbour's weight is `e^{−50}`, so the smallest support is the identity pooling. The
//!   Gaussian is truncated at `R ≥ 2σ_i` (so the cost is linear in `n`).
//! - Placement: pooled keys/values inside this mixer, i.e. before the host attention of the
//!   same layer, rather than a separate module after the previous layer's attention.
//!
//! The host is named by `host` and configured by the `host_config` table (its own settings,
//! checked as strictly as a top-level mixer's); it cannot be `contextpool` itself.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Bool, Device, Tensor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use super::common::reference::PAD_BIAS;
use super::{
    AttentionCore, AttentionParts, Caps, Mixer, MixerConfig, MixerDims, MixerInput, MixerKind,
    MixerOutput, MixerSpec, TokenMixer,
};

use crate::folded_linear::FoldedLinear;

/// Smallest Gaussian width σ (see the module notes).
const MIN_SIGMA: f64 = 0.1;
/// This mixer's own registry name, which cannot be its host.
const NAME: &str = "contextpool";

/// Settings of [`ContextPoolMixer`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextPoolConfig {
    /// The registered mixer that attends over the pooled keys/values. Default: `softmax` (the
    /// paper plugs ContextPool into standard transformers).
    pub host: String,
    /// The host's own settings (its keys, as in its `[mixer]` table). Default: empty (the
    /// host's defaults).
    pub host_config: toml::Table,
    /// Truncation radius `R` of the Gaussian mask (tokens each side); 0 leaves keys and values
    /// unpooled. Default: 8 (our choice: no official code or LRA setting is published).
    pub max_support: usize,
}

impl Default for ContextPoolConfig {
    fn default() -> Self {
        Self {
            host: "softmax".into(),
            host_config: toml::Table::new(),
            max_support: 8,
        }
    }
}

/// Writes `host_config` with every host default filled in (as the registry writes a top-level
/// mixer's table), so a run's `config.toml` records the host's full settings.
impl Serialize for ContextPoolConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let host_config = self
            .host_mixer()
            .map(|host| host.to_table())
            .unwrap_or_else(|_| self.host_config.clone());
        let mut fields = serializer.serialize_struct("ContextPoolConfig", 3)?;
        fields.serialize_field("host", &self.host)?;
        fields.serialize_field("max_support", &self.max_support)?;
        fields.serialize_field("host_config", &host_config)?;
        fields.end()
    }
}

impl ContextPoolConfig {
    /// The host's config, parsed from `host` and `host_config`.
    fn host_mixer(&self) -> Result<MixerConfig, String> {
        if self.host == NAME {
            return Err(format!("host cannot be `{NAME}` itself"));
        }
        let kind: MixerKind = self.host.parse().map_err(|e| format!("host: {e}"))?;
        kind.parse_config(&self.host_config)
            .map_err(|e| format!("host_config: {e}"))
    }
}

impl MixerSpec for ContextPoolConfig {
    type Mixer = ContextPoolMixer;
    const SUMMARY: &'static str = "ContextPool: keys/values adaptively pooled (learned weights, Gaussian support) before a host mixer";

    fn caps(&self) -> Caps {
        Caps {
            // Pooling masks padding; the rest is up to the host.
            honours_padding: self
                .host_mixer()
                .is_ok_and(|host| host.caps().honours_padding),
            ..Caps::WITHOUT_CORE
        }
    }

    fn validate(&self, dims: &MixerDims) -> Result<(), String> {
        self.host_mixer()?
            .validate(dims)
            .map_err(|e| format!("host_config: {e}"))
    }

    fn init(&self, dims: &MixerDims, device: &Device) -> ContextPoolMixer {
        let host = self
            .host_mixer()
            .unwrap_or_else(|e| panic!("contextpool config must be validated first: {e}"));
        ContextPoolMixer {
            host: vec![host.init(dims, device)],
            mapping: LinearConfig::new(dims.d_model, 2).init(device),
            max_support: self.max_support,
        }
    }
}

/// Adaptive context pooling of keys/values in front of a host mixer.
#[derive(Module, Debug)]
pub struct ContextPoolMixer {
    /// The host, as a one-element `Vec`: the host's type is the registry's `Mixer`, which
    /// contains this type, and Burn derives `Module` for `Vec` but not for `Box`.
    host: Vec<Mixer>,
    /// Per-token mapping `d_model → 2`: pooling-weight logit and support logit.
    mapping: Linear,
    max_support: usize,
}

impl ContextPoolMixer {
    /// Pooling weights of every token over its `2R + 1` neighbours, from the mixer input.
    fn pooling(&self, x: Tensor<3>, pad_mask: Option<Tensor<2, Bool>>) -> Pooling {
        let [batch, seq, _] = x.dims();
        let mapped = self.mapping.forward_folded(x); // [b, n, 2]
        let weight_logit = mapped.clone().narrow(2, 0, 1).reshape([batch, seq]);
        let support = sigmoid(mapped.narrow(2, 1, 1).reshape([batch, seq])); // s_i ∈ (0, 1)
        let radius = self.max_support;
        let sigma = support * (radius as f64 / 2.0) + MIN_SIGMA; // [b, n]
        let inverse_variance = (sigma.powi_scalar(2) * 2.0).recip(); // 1/(2σ_i²)
        let pad_bias = pad_mask
            .map(|mask| mask.float() * PAD_BIAS)
            .unwrap_or_else(|| Tensor::zeros([batch, seq], &weight_logit.device()));
        let key_logit = weight_logit + pad_bias; // [b, n]
        let logits: Vec<Tensor<2>> = offsets(radius)
            .map(|offset| {
                let distance = (offset * offset) as f64;
                shift(key_logit.clone(), 1, offset, PAD_BIAS) - inverse_variance.clone() * distance
            })
            .collect();
        Pooling {
            weights: softmax(Tensor::stack(logits, 2), 2), // [b, n, 2R + 1]
            radius,
        }
    }
}

/// Per-token weights over the offsets `−R ..= R`.
struct Pooling {
    /// `[b, n, 2R + 1]`, each row summing to 1.
    weights: Tensor<3>,
    radius: usize,
}

impl Pooling {
    /// `pooled_i = Σ_o weights[i, o] · y_{i+o}` along the sequence axis of `[b, h, n, d]`.
    fn pool(&self, y: Tensor<4>) -> Tensor<4> {
        let [batch, seq, _] = self.weights.dims();
        offsets(self.radius)
            .enumerate()
            .map(|(slot, offset)| {
                let weight = self.weights.clone().narrow(2, slot, 1);
                shift(y.clone(), 2, offset, 0.0) * weight.reshape([batch, 1, seq, 1])
            })
            .reduce(|sum, term| sum + term)
            .expect("at least one offset")
    }
}

/// `−R ..= R`.
fn offsets(radius: usize) -> impl Iterator<Item = isize> {
    let radius = radius as isize;
    -radius..=radius
}

/// `x` moved so position `i` holds `x_{i+offset}` along `axis`, `fill` where that is outside.
fn shift<const D: usize>(x: Tensor<D>, axis: usize, offset: isize, fill: f32) -> Tensor<D> {
    let len = x.dims()[axis];
    let distance = offset.unsigned_abs().min(len);
    if distance == 0 {
        return x;
    }
    let mut dims = x.dims();
    dims[axis] = distance;
    let filler = Tensor::<D>::full(dims, fill, &x.device());
    let kept = len - distance;
    if offset > 0 {
        Tensor::cat(vec![x.narrow(axis, distance, kept), filler], axis)
    } else {
        Tensor::cat(vec![filler, x.narrow(axis, 0, kept)], axis)
    }
}

/// The host's attention core, fed pooled keys and values.
struct PooledKeys<'a> {
    core: &'a dyn AttentionCore,
    pooling: Pooling,
}

impl AttentionCore for PooledKeys<'_> {
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad_mask: Option<Tensor<2, Bool>>,
    ) -> Tensor<4> {
        let head_dim = k.dims()[3];
        let pooled = self.pooling.pool(Tensor::cat(vec![k, v], 3)); // one pass for both
        let k = pooled.clone().narrow(3, 0, head_dim);
        let v = pooled.narrow(3, head_dim, head_dim);
        self.core.attend(q, k, v, pad_mask)
    }
}

impl TokenMixer for ContextPoolMixer {
    fn forward(&self, input: MixerInput) -> MixerOutput {
        let host = &self.host[0];
        let pooling = self.pooling(input.x.clone(), input.pad_mask.clone());
        match host.attention() {
            Some(AttentionParts { projection, core }) => {
                projection.mix(input, &PooledKeys { core, pooling })
            }
            None => {
                let [batch, seq, width] = input.x.dims();
                let pooled = pooling.pool(input.x.clone().reshape([batch, 1, seq, width]));
                host.forward(MixerInput {
                    x: pooled.reshape([batch, seq, width]),
                    ..input
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    use super::*;
    use crate::mixer::common::reference::softmax_attention;
    use crate::mixer::common::testing::{gaussian, pad_mask};

    fn dims() -> MixerDims {
        MixerDims::new(16, 2, 64)
    }

    fn contextpool(config: ContextPoolConfig, device: &Device) -> ContextPoolMixer {
        config.validate(&dims()).expect("valid test config");
        device.seed(9);
        crate::init_now(config.init(&dims(), device))
    }

    fn input(device: &Device, seq: usize) -> Tensor<3> {
        device.seed(21);
        Tensor::random([2, seq, 16], Distribution::Normal(0.0, 1.0), device)
    }

    fn run(mixer: &impl TokenMixer, x: Tensor<3>, mask: Tensor<2, Bool>) -> Tensor<3> {
        mixer.forward(MixerInput::new(x).pad_mask(mask)).x
    }

    /// With the smallest support ContextPool is its host: `max_support = 0` (no neighbours),
    /// and a support logit driven to −∞ (σ at its floor, neighbours weighted `e^{−50}`), for
    /// attention hosts (one with its own `host_config`) and hosts without an attention core.
    #[test]
    fn smallest_support_equals_the_host() {
        let device = Device::flex();
        let (seq, real) = (24, 17);
        let (x, mask) = (input(&device, seq), pad_mask(&device, seq, real));
        for host in ["softmax", "local", "soft", "luna"] {
            let host_config: toml::Table = toml::from_str("block_size = 8").unwrap();
            let config = |max_support| ContextPoolConfig {
                host: host.into(),
                host_config: if host == "local" {
                    host_config.clone()
                } else {
                    toml::Table::new()
                },
                max_support,
            };
            let none = contextpool(config(0), &device);
            let expected = run(&none.host[0], x.clone(), mask.clone());
            run(&none, x.clone(), mask.clone())
                .into_data()
                .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-6));

            let mut narrowest = contextpool(config(8), &device);
            let bias = Tensor::<1>::from_data(TensorData::new(vec![0f32, -1e4], [2]), &device);
            narrowest.mapping.bias = Some(Param::from_tensor(bias));
            // Real positions: a padded token pools its real neighbours (its own weight is
            // masked), which changes only its own output, unused downstream.
            let real_rows = |out: Tensor<3>| out.narrow(1, 0, real).into_data();
            let expected = real_rows(run(&narrowest.host[0], x.clone(), mask.clone()));
            real_rows(run(&narrowest, x.clone(), mask.clone()))
                .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-6));
        }
    }

    /// `pooled_i = Σ_{|j−i|≤R} g_ij w_j m_j y_j / Σ g_ij w_j m_j` written out element by element
    /// from the mapping's outputs (`w_j = exp(a_j)`, `σ_i = 0.1 + sigmoid(z_i)·R/2`).
    fn pooled_by_hand(
        module: &ContextPoolMixer,
        x: Tensor<3>,
        real: &[usize],
        y: Tensor<4>,
    ) -> Tensor<4> {
        let [batch, heads, seq, width] = y.dims();
        let radius = module.max_support;
        let mapped = module
            .mapping
            .forward_folded(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let values = y.to_data().try_to_vec::<f32>().unwrap();
        let mut out = vec![0f32; values.len()];
        for b in 0..batch {
            for i in 0..seq {
                let support = 1.0 / (1.0 + (-mapped[(b * seq + i) * 2 + 1]).exp());
                let sigma = 0.1 + support * radius as f32 / 2.0;
                let neighbours = i.saturating_sub(radius)..(i + radius + 1).min(real[b]);
                let weight = |j: usize| {
                    let distance = (j as f32 - i as f32).powi(2);
                    (mapped[(b * seq + j) * 2] - distance / (2.0 * sigma * sigma)).exp()
                };
                let total: f32 = neighbours.clone().map(weight).sum();
                for h in 0..heads {
                    for j in neighbours.clone() {
                        let share = weight(j) / total;
                        for c in 0..width {
                            let at = |t: usize| ((b * heads + h) * seq + t) * width + c;
                            out[at(i)] += share * values[at(j)];
                        }
                    }
                }
            }
        }
        Tensor::from_data(
            TensorData::new(out, [batch, heads, seq, width]),
            &y.device(),
        )
    }

    /// Keys and values reach the host pooled by the paper's formula (padding excluded), queries
    /// unpooled: the host core's output equals softmax attention on hand-pooled keys/values.
    #[test]
    fn host_attends_over_keys_and_values_pooled_by_the_formula() {
        let device = Device::flex();
        let (seq, real) = (20, 13);
        let module = contextpool(
            ContextPoolConfig {
                max_support: 3,
                ..Default::default()
            },
            &device,
        );
        let (x, mask) = (input(&device, seq), pad_mask(&device, seq, real));
        let (q, k, v) = (
            gaussian(&device, 31, [2, 2, seq, 8]),
            gaussian(&device, 32, [2, 2, seq, 8]),
            gaussian(&device, 33, [2, 2, seq, 8]),
        );
        let pooled = PooledKeys {
            core: module.host[0].attention_core().expect("softmax has a core"),
            pooling: module.pooling(x.clone(), Some(mask.clone())),
        };
        // Only real rows: a padded key's own pooled value is irrelevant (it is masked).
        let actual = pooled
            .attend(q.clone(), k.clone(), v.clone(), Some(mask.clone()))
            .narrow(2, 0, real);
        let by_hand = |y| pooled_by_hand(&module, x.clone(), &[seq, real], y);
        let expected = softmax_attention(q, by_hand(k), by_hand(v), Some(mask)).narrow(2, 0, real);
        actual
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn config_parses_and_validates() {
        let config: ContextPoolConfig =
            toml::from_str("host = \"local\"\nmax_support = 4\n[host_config]\nblock_size = 16")
                .unwrap();
        assert_eq!(config.host, "local");
        assert_eq!(config.max_support, 4);
        assert!(config.validate(&dims()).is_ok());
        // Written with the host's defaults filled in; reading that back gives the same mixer.
        let written = toml::to_string(&config).unwrap();
        assert!(written.contains("block_size = 16"), "{written}");
        let sparse = ContextPoolConfig {
            host: "sparse".into(),
            ..Default::default()
        };
        let written = toml::to_string(&sparse).unwrap();
        assert!(written.contains("summary = 10"), "{written}");
        let reread: ContextPoolConfig = toml::from_str(&written).unwrap();
        assert_eq!(reread.host_mixer(), sparse.host_mixer());
        assert_eq!(toml::to_string(&reread).unwrap(), written);
        assert!(toml::from_str::<ContextPoolConfig>("support = 4").is_err());
        let bad = |host: &str, table: &str| {
            ContextPoolConfig {
                host: host.into(),
                host_config: toml::from_str(table).unwrap(),
                max_support: 4,
            }
            .validate(&dims())
            .unwrap_err()
        };
        let error = bad("nope", "");
        assert!(error.contains("host") && error.contains("nope"), "{error}");
        let error = bad("contextpool", "");
        assert!(error.contains("host"), "{error}");
        let error = bad("local", "window = 3");
        assert!(
            error.contains("host_config") && error.contains("window"),
            "{error}"
        );
        let error = bad("local", "block_size = 0");
        assert!(
            error.contains("host_config") && error.contains("block_size"),
            "{error}"
        );
        assert!(!ContextPoolConfig::default().caps().exact_softmax);
        assert!(ContextPoolConfig::default().caps().honours_padding);
    }
}
