//! How token positions enter the embeddings: a learned table, the fixed sinusoidal table of the
//! JAX LRA code, or nothing.

use std::fmt;

use burn::tensor::{Device, Tensor, TensorData};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Position information added to the token embeddings (`model.positions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// A learned table, `N(0, 0.02²)` at init (PyTorch LRA code, BERT, the JAX code's Image
    /// and Path-X).
    #[default]
    Learned,
    /// The fixed, untrained sin/cos table of the JAX LRA code
    /// (`lra_benchmarks/models/layers/common_layers.py`, `sinusoidal_init`; its default for
    /// ListOps, Text, Retrieval and Pathfinder-32).
    Sinusoidal,
    /// None (the S4 models: the convolution knows positions).
    None,
}

impl Positions {
    /// The word the config uses.
    pub fn name(self) -> &'static str {
        match self {
            Positions::Learned => "learned",
            Positions::Sinusoidal => "sinusoidal",
            Positions::None => "none",
        }
    }
}

/// Also accepts the booleans of earlier configs (`true` = learned, `false` = none), so saved run
/// configs keep loading.
impl<'de> Deserialize<'de> for Positions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PositionsVisitor;
        impl Visitor<'_> for PositionsVisitor {
            type Value = Positions;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`learned`, `sinusoidal` or `none` (or a boolean: learned or none)")
            }

            fn visit_bool<E: de::Error>(self, learned: bool) -> Result<Positions, E> {
                Ok(if learned {
                    Positions::Learned
                } else {
                    Positions::None
                })
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Positions, E> {
                [Positions::Learned, Positions::Sinusoidal, Positions::None]
                    .into_iter()
                    .find(|positions| positions.name() == name)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(name), &self))
            }
        }
        deserializer.deserialize_any(PositionsVisitor)
    }
}

/// The sinusoidal table `[len, d_model]`: `sin(p·ωᵢ)` in column `2i`, `cos(p·ωᵢ)` in column
/// `2i + 1`, `ωᵢ = 10000^(−2i/d_model)`, computed in f64 as the JAX code does in NumPy.
///
/// # Panics
/// If `d_model` is odd (the config check rejects it first).
pub fn sinusoid_table(len: usize, d_model: usize) -> Vec<f32> {
    assert!(
        d_model.is_multiple_of(2),
        "a sinusoidal table needs an even width"
    );
    let mut table = Vec::with_capacity(len * d_model);
    for position in 0..len {
        for pair in 0..d_model / 2 {
            let frequency = (-(10000f64.ln()) * (2 * pair) as f64 / d_model as f64).exp();
            let angle = position as f64 * frequency;
            table.extend([angle.sin() as f32, angle.cos() as f32]);
        }
    }
    table
}

/// [`sinusoid_table`] as a tensor on `device`.
pub fn sinusoid_tensor(len: usize, d_model: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(sinusoid_table(len, d_model), [len, d_model]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Model {
        positions: Positions,
    }

    fn parse(text: &str) -> Result<Positions, toml::de::Error> {
        toml::from_str::<Model>(text).map(|model| model.positions)
    }

    #[test]
    fn names_and_the_earlier_booleans_parse() {
        assert_eq!(parse("positions = 'learned'").unwrap(), Positions::Learned);
        assert_eq!(
            parse("positions = 'sinusoidal'").unwrap(),
            Positions::Sinusoidal
        );
        assert_eq!(parse("positions = 'none'").unwrap(), Positions::None);
        assert_eq!(parse("positions = true").unwrap(), Positions::Learned);
        assert_eq!(parse("positions = false").unwrap(), Positions::None);
        let error = parse("positions = 'rotary'").unwrap_err().to_string();
        assert!(
            error.contains("`learned`, `sinusoidal` or `none`"),
            "{error}"
        );
    }

    /// The JAX code's table for d = 4 by hand: ω = (1, 10000^(−1/2) = 0.01).
    #[test]
    fn the_table_is_sin_and_cos_of_position_times_frequency() {
        let table = sinusoid_table(3, 4);
        let expected: Vec<f32> = [0.0f64, 1.0, 2.0]
            .iter()
            .flat_map(|&p| [p.sin(), p.cos(), (p * 0.01).sin(), (p * 0.01).cos()])
            .map(|value| value as f32)
            .collect();
        assert_eq!(table.len(), expected.len());
        for (got, want) in table.iter().zip(&expected) {
            assert!((got - want).abs() <= 1e-7, "{got} != {want}");
        }
    }
}
