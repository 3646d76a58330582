//! The Gaussian proposal of randomized attention ([Linear Complexity Randomized Self-attention
//! Mechanism](https://arxiv.org/abs/2204.04667)): the noise setting RA and LARA share.

use serde::{Deserialize, Serialize};

/// Variance of the Gaussian noise added to the proposal mean while training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Noise {
    /// `ε ~ N(0, I)` added to the unscaled mean `q + k` (the official code: standard deviation
    /// `d^{-1/4}` in the paper's scaled coordinates).
    Official,
    /// Unit variance in the paper's scaled coordinates (`N(0, √d·I)` on the unscaled mean): the
    /// proposal of the paper, for which RA is exactly unbiased.
    Paper,
}

impl Noise {
    /// Standard deviation of the noise on the unscaled `ω` for head width `head_dim`.
    pub fn std(self, head_dim: usize) -> f64 {
        match self {
            Noise::Official => 1.0,
            Noise::Paper => (head_dim as f64).powf(0.25),
        }
    }
}
