//! Loading a checkpoint's tensors into a built model through `burn-store`: its safetensors or
//! PyTorch reader, the key remapping of [`super::keys`], `PyTorchToBurnAdapter` (a Linear weight
//! is transposed from PyTorch's `[out, in]` to Burn's `[in, out]`), a cast to the device's float
//! type, and `ModuleSnapshot::apply`, whose account of applied, missing and unused tensors
//! becomes the [`ImportReport`].

use std::collections::HashMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{DType, Device, TensorData};
use burn_store::burn_pack::Tensor as PackTensor;
use burn_store::{
    ApplyError, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore, bridge,
};

use super::config::CheckpointConfig;
use super::error::{PretrainedError, Result};
use super::keys::{Mapping, Target};
use super::report::{ImportReport, LeftAtInit, Loaded, PositionRows, Unused};

/// The weights file of a checkpoint folder: `model.safetensors`, else `pytorch_model.bin`
/// (transformers' own order of preference).
pub fn weights_file(folder: &Path) -> Result<std::path::PathBuf> {
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|name| folder.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| PretrainedError::Missing {
            path: folder.to_path_buf(),
            what: "no weights: expected model.safetensors or pytorch_model.bin (a sharded \
                   checkpoint's *.index.json is not supported)"
                .into(),
        })
}

/// Loads the checkpoint `weights` (described by `config`) into `module`, whose parameters are
/// at the paths `target` says, built with `max_len` positions and the mixer `mixer`.
pub fn import<M: Module>(
    module: &mut M,
    weights: &Path,
    config: &CheckpointConfig,
    target: Target,
    mixer: &'static str,
    max_len: usize,
    device: &Device,
) -> Result<ImportReport> {
    let tensors = read_tensors(weights)?;
    let shapes: HashMap<String, Vec<usize>> = tensors
        .iter()
        .map(|tensor| (tensor.name.clone(), tensor.shape.to_vec()))
        .collect();
    let mapping = Mapping::for_module(module, config.family, target, mixer);
    let (tensors, renames) = mapping.remapper().remap(tensors);
    let original: HashMap<String, String> = renames.into_iter().collect();
    let (tensors, positions) = cut_position_table(tensors, config, &mapping, max_len, weights)?;

    let adapter =
        PyTorchToBurnAdapter.chain(FloatCastAdapter::to(device.settings().float_dtype.into()));
    let adapter: Box<dyn ModuleAdapter> = Box::new(adapter);
    let result = module.apply(tensors, None, Some(adapter), true);

    let key_of = |path: &str| {
        original
            .get(path)
            .cloned()
            .unwrap_or_else(|| path.to_string())
    };
    if let Some(error) = result.errors.first() {
        return Err(apply_error(error, weights, &key_of, &shapes));
    }
    let mut left_at_init = Vec::new();
    let mut missing = Vec::new();
    for (parameter, _) in result.missing {
        match mapping.init_reason(&parameter) {
            Some(reason) => left_at_init.push(LeftAtInit { parameter, reason }),
            None => missing.push(parameter),
        }
    }
    if !missing.is_empty() {
        return Err(PretrainedError::MissingTensors {
            path: weights.to_path_buf(),
            parameters: missing,
        });
    }
    Ok(ImportReport {
        weights: weights.to_path_buf(),
        mixer,
        loaded: result
            .applied
            .into_iter()
            .map(|parameter| Loaded {
                key: key_of(&parameter),
                parameter,
            })
            .collect(),
        positions,
        left_at_init,
        unused: result
            .unused
            .iter()
            .map(|path| {
                let key = key_of(path);
                let reason = mapping.unused_reason(&key);
                Unused { key, reason }
            })
            .collect(),
    })
}

/// Every tensor of the file, under its own name, read lazily by the reader its name says.
fn read_tensors(path: &Path) -> Result<Vec<PackTensor>> {
    let error = |message: String| PretrainedError::File {
        path: path.to_path_buf(),
        message: format!("cannot read the weights: {message}"),
    };
    let tensors = if path.extension().is_some_and(|ext| ext == "safetensors") {
        let mut store = SafetensorsStore::from_file(path);
        let tensors = store.get_all_tensors().map_err(|e| error(e.to_string()))?;
        tensors.values().cloned().collect()
    } else {
        // Keys as they are: renumbering layers would hide a checkpoint with a layer missing.
        let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
        let tensors = store.get_all_tensors().map_err(|e| error(e.to_string()))?;
        tensors.values().cloned().collect()
    };
    Ok(tensors)
}

/// Replaces the position table by the rows the model uses: from `position_offset` on (RoBERTa's
/// first rows belong to the padding id), `max_len` of them. A model longer than the usable table
/// is an error.
fn cut_position_table(
    tensors: Vec<PackTensor>,
    config: &CheckpointConfig,
    mapping: &Mapping,
    max_len: usize,
    weights: &Path,
) -> Result<(Vec<PackTensor>, PositionRows)> {
    let first = config.position_offset();
    let path = mapping.positions_path();
    let rows = tensors
        .iter()
        .find(|tensor| tensor.name == path)
        .map(|table| table.shape.first().copied().unwrap_or(0));
    // Absent: `apply` reports the position parameter as missing.
    let Some(rows) = rows else {
        let positions = PositionRows {
            first,
            taken: max_len,
            of: 0,
        };
        return Ok((tensors, positions));
    };
    if first + max_len > rows {
        return Err(PretrainedError::TooLong {
            path: weights.to_path_buf(),
            max_len,
            usable: rows.saturating_sub(first),
            rows,
            offset_note: if first > 0 {
                format!(", of which RoBERTa's first pad_token_id + 1 = {first} are never used")
            } else {
                String::new()
            },
        });
    }
    let tensors = tensors
        .into_iter()
        .map(|tensor| {
            if tensor.name == path {
                take_rows(tensor, first, max_len)
            } else {
                tensor
            }
        })
        .collect();
    let positions = PositionRows {
        first,
        taken: max_len,
        of: rows,
    };
    Ok((tensors, positions))
}

/// Rows `first..first + count` of a 2-D tensor, read when the tensor is.
fn take_rows(tensor: PackTensor, first: usize, count: usize) -> PackTensor {
    let dtype: DType = tensor.dtype;
    let width: usize = tensor.shape.iter().skip(1).product();
    let row_bytes = width * dtype.size();
    let name = tensor.name.clone();
    bridge::map_data(tensor, name, dtype, [count, width].into(), move |data| {
        let bytes = &data.as_bytes()[first * row_bytes..(first + count) * row_bytes];
        TensorData::from_bytes_vec(bytes.to_vec(), [count, width], dtype)
    })
}

/// `burn-store`'s error for one tensor, in the checkpoint's terms.
fn apply_error(
    error: &ApplyError,
    weights: &Path,
    key_of: &dyn Fn(&str) -> String,
    shapes: &HashMap<String, Vec<usize>>,
) -> PretrainedError {
    match error {
        ApplyError::ShapeMismatch { path, expected, .. } => {
            let key = key_of(path);
            PretrainedError::ShapeMismatch {
                path: weights.to_path_buf(),
                checkpoint: shapes.get(&key).cloned().unwrap_or_default(),
                key,
                parameter: path.clone(),
                expected: expected.to_vec(),
            }
        }
        other => PretrainedError::File {
            path: weights.to_path_buf(),
            message: other.to_string(),
        },
    }
}
