//! Loading a checkpoint's tensors into a built model through `burn-store`: its safetensors or
//! PyTorch reader, the key remapping of [`super::keys`], `PyTorchToBurnAdapter` (a Linear weight
//! is transposed from PyTorch's `[out, in]` to Burn's `[in, out]`), a cast to the device's float
//! type, and `ModuleSnapshot::apply`, whose account of applied, missing and unused tensors
//! becomes the [`ImportReport`].

use std::collections::HashMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use burn_store::burn_pack::Tensor as PackTensor;
use burn_store::{
    ApplyError, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use super::config::CheckpointConfig;
use super::error::{PretrainedError, Result};
use super::keys::{Mapping, Target};
use super::positions::{PositionExtension, extend_table, take_rows};
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

/// The model an import fills: where its parameters are, its mixer, its length, and how a
/// position table shorter than that length is lengthened (`None`: it is an error).
pub struct ImportTarget {
    pub target: Target,
    pub mixer: &'static str,
    pub max_len: usize,
    pub extend: Option<PositionExtension>,
}

/// Loads the checkpoint `weights` (described by `config`) into `module`, whose parameters are
/// at the paths `into.target` says, built with `into.max_len` positions and the mixer
/// `into.mixer`.
pub fn import<M: Module>(
    module: &mut M,
    weights: &Path,
    config: &CheckpointConfig,
    into: ImportTarget,
    device: &Device,
) -> Result<ImportReport> {
    let ImportTarget {
        target,
        mixer,
        max_len,
        extend,
    } = into;
    let tensors = read_tensors(weights)?;
    let shapes: HashMap<String, Vec<usize>> = tensors
        .iter()
        .map(|tensor| (tensor.name.clone(), tensor.shape.to_vec()))
        .collect();
    let mapping = Mapping::for_module(module, config.family, target, mixer);
    let (tensors, renames) = mapping.remapper().remap(tensors);
    let original: HashMap<String, String> = renames.into_iter().collect();
    let (tensors, positions) =
        fit_position_table(tensors, config, &mapping, (max_len, extend), weights)?;

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
                note: mapping.load_note(&parameter),
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
/// gets it lengthened `extend`, or, without it, is an error.
fn fit_position_table(
    tensors: Vec<PackTensor>,
    config: &CheckpointConfig,
    mapping: &Mapping,
    (max_len, extend): (usize, Option<PositionExtension>),
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
            extended: None,
        };
        return Ok((tensors, positions));
    };
    let extended = extend.filter(|_| first + max_len > rows);
    if first + max_len > rows && extended.is_none() {
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
        .map(|tensor| match extended {
            _ if tensor.name != path => tensor,
            Some(how) => extend_table(tensor, first, max_len, how),
            None => take_rows(tensor, first, max_len),
        })
        .collect();
    let positions = PositionRows {
        first,
        taken: max_len,
        of: rows,
        extended,
    };
    Ok((tensors, positions))
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
