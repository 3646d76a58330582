//! A checkpoint's learned position table fitted to the model's `max_len`: its first rows when
//! the model is shorter, or the table lengthened when it is longer — tiled (the learned rows
//! copied one after another, as Longformer and Nyströmformer's `from_cp` did to go past 512) or
//! linearly interpolated (the rows stretched over the longer length, first and last kept).

use burn::tensor::{DType, TensorData};
use burn_store::bridge;
use burn_store::burn_pack::Tensor as PackTensor;
use serde::{Deserialize, Serialize};

/// How a position table is lengthened for sequences longer than the checkpoint's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionExtension {
    /// Row `i` is learned row `i mod n`.
    Tile,
    /// Row `i` is the learned table read at `i · (n − 1) / (len − 1)`, linearly between the two
    /// nearest rows (PyTorch's `interpolate(mode="linear", align_corners=True)`).
    Interpolate,
}

impl PositionExtension {
    /// The name in settings and reports.
    pub fn name(self) -> &'static str {
        match self {
            PositionExtension::Tile => "tile",
            PositionExtension::Interpolate => "interpolate",
        }
    }
}

/// `count` rows made from the `table` of `n = table.len() / width` learned rows (row-major).
pub fn extend_rows(table: &[f32], width: usize, count: usize, how: PositionExtension) -> Vec<f32> {
    let n = table.len() / width;
    let row = |i: usize| &table[i * width..(i + 1) * width];
    let mut out = Vec::with_capacity(count * width);
    for i in 0..count {
        match how {
            PositionExtension::Tile => out.extend_from_slice(row(i % n)),
            PositionExtension::Interpolate => {
                let x = if count > 1 {
                    i as f64 * (n - 1) as f64 / (count - 1) as f64
                } else {
                    0.0
                };
                let below = (x.floor() as usize).min(n - 1);
                let above = (below + 1).min(n - 1);
                let t = (x - below as f64) as f32;
                let (a, b) = (row(below), row(above));
                out.extend(a.iter().zip(b).map(|(a, b)| a + t * (b - a)));
            }
        }
    }
    out
}

/// Rows `first..first + count` of a 2-D tensor, read when the tensor is.
pub fn take_rows(tensor: PackTensor, first: usize, count: usize) -> PackTensor {
    let dtype: DType = tensor.dtype;
    let width: usize = tensor.shape.iter().skip(1).product();
    let row_bytes = width * dtype.size();
    let name = tensor.name.clone();
    bridge::map_data(tensor, name, dtype, [count, width].into(), move |data| {
        let bytes = &data.as_bytes()[first * row_bytes..(first + count) * row_bytes];
        TensorData::from_bytes_vec(bytes.to_vec(), [count, width], dtype)
    })
}

/// The rows from `first` on of a 2-D tensor, lengthened to `count` rows `how` (computed in f32,
/// stored in the tensor's own dtype), read when the tensor is.
pub fn extend_table(
    tensor: PackTensor,
    first: usize,
    count: usize,
    how: PositionExtension,
) -> PackTensor {
    let dtype: DType = tensor.dtype;
    let (rows, width) = (
        tensor.shape[0],
        tensor.shape.iter().skip(1).product::<usize>(),
    );
    let name = tensor.name.clone();
    bridge::map_data(tensor, name, dtype, [count, width].into(), move |data| {
        let all = data
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("converted to f32 just before");
        let learned = &all[first * width..rows * width];
        TensorData::new(extend_rows(learned, width, count, how), [count, width])
            .convert_dtype(dtype)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three learned rows of width 2.
    const TABLE: [f32; 6] = [0.0, 10.0, 1.0, 20.0, 3.0, 40.0];

    #[test]
    fn tiling_repeats_the_learned_rows() {
        let tiled = extend_rows(&TABLE, 2, 7, PositionExtension::Tile);
        let expected: Vec<f32> = [0, 1, 2, 0, 1, 2, 0]
            .iter()
            .flat_map(|&r| TABLE[r * 2..r * 2 + 2].to_vec())
            .collect();
        assert_eq!(tiled, expected);
    }

    #[test]
    fn interpolation_keeps_the_ends_and_is_linear_between_rows() {
        // 5 rows over 3: positions 0, 0.5, 1, 1.5, 2 of the table.
        let stretched = extend_rows(&TABLE, 2, 5, PositionExtension::Interpolate);
        assert_eq!(
            stretched,
            [0.0, 10.0, 0.5, 15.0, 1.0, 20.0, 2.0, 30.0, 3.0, 40.0]
        );
        assert_eq!(
            extend_rows(&TABLE, 2, 3, PositionExtension::Interpolate),
            TABLE,
            "the same length is the table itself"
        );
    }
}
