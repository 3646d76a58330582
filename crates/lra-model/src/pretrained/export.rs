//! A trained [`MaskedLm`] written back as a Hugging Face checkpoint folder (`config.json`,
//! `model.safetensors`, the tokenizer's files), so `lra run --init` (or transformers, for the
//! softmax mixer) loads it like the checkpoint it started from. Keys are the inverse of the
//! import's mapping; what a mixer adds (Nyström's convolution, …) is written under its own
//! parameter path, which the import then loads back unchanged. A sentence-order head is written
//! as `BertForPreTraining`'s pooler and next-sentence head (`<model>.pooler.dense`,
//! `cls.seq_relationship`, for RoBERTa too, which has no such head of its own): a classifier
//! fine-tuned from the export takes that pooler, and continued pretraining with SOP the head.

use std::path::Path;

use burn::tensor::TensorData;
use burn_store::burn_pack::Tensor as PackTensor;
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleContext, ModuleSnapshot,
    SafetensorsStore, bridge,
};

use super::Checkpoint;
use super::config::Family;
use super::error::{PretrainedError, Result};
use crate::masked_lm::MaskedLm;

impl Checkpoint {
    /// Writes `model` (built from this checkpoint for `max_len` tokens) into `dir` as a checkpoint
    /// of the same family: this `config.json` with `max_position_embeddings` set to the rows
    /// written, and the weights (the tokenizer files are the data side's:
    /// `lra_data::tokenizer::copy_tokenizer_files`).
    pub fn export(&self, model: &MaskedLm, max_len: usize, dir: &Path) -> Result<()> {
        let io = |path: &Path, error: std::io::Error| PretrainedError::File {
            path: path.to_path_buf(),
            message: error.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let offset = self.config.position_offset();
        let source = self.folder.join("config.json");
        let text = std::fs::read_to_string(&source).map_err(|e| io(&source, e))?;
        let mut config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| PretrainedError::File {
                path: source.clone(),
                message: e.to_string(),
            })?;
        config["max_position_embeddings"] = (max_len + offset).into();
        let target = dir.join("config.json");
        let pretty = serde_json::to_string_pretty(&config).expect("JSON values serialise");
        std::fs::write(&target, pretty + "\n").map_err(|e| io(&target, e))?;
        let weights = dir.join("model.safetensors");
        let mut store = SafetensorsStore::from_file(&weights)
            .skip_enum_variants(true)
            .overwrite(true)
            .with_to_adapter(ExportAdapter { offset })
            .remap(export_remapper(self.config.family));
        model
            .save_into(&mut store)
            .map_err(|e| PretrainedError::File {
                path: weights,
                message: format!("cannot write the weights: {e}"),
            })
    }
}

/// Burn → PyTorch layout (Linear weights transposed, LayerNorm `gamma`/`beta` named
/// `weight`/`bias`), and the position table given back RoBERTa's `offset` unused first rows.
#[derive(Clone)]
struct ExportAdapter {
    offset: usize,
}

impl ModuleAdapter for ExportAdapter {
    fn adapt(&self, tensor: PackTensor, ctx: ModuleContext<'_>) -> PackTensor {
        let tensor = BurnToPyTorchAdapter.adapt(tensor, ctx);
        if self.offset == 0 || !tensor.name.ends_with("positions.weight") {
            return tensor;
        }
        let (rows, width) = (tensor.shape[0], tensor.shape[1]);
        let (offset, dtype, name) = (self.offset, tensor.dtype, tensor.name.clone());
        let shape = [rows + offset, width];
        bridge::map_data(tensor, name, dtype, shape.into(), move |data| {
            let mut bytes = vec![0u8; offset * width * dtype.size()];
            bytes.extend_from_slice(data.as_bytes());
            TensorData::from_bytes_vec(bytes, shape, dtype)
        })
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Parameter path → checkpoint key: the import's mapping inverted.
fn export_remapper(family: Family) -> KeyRemapper {
    let model = family.name();
    let layer = format!("{model}.encoder.layer.${{1}}.");
    let mut patterns: Vec<(String, String)> = vec![
        (
            r"^encoder\.tokens\.".into(),
            format!("{model}.embeddings.word_embeddings."),
        ),
        (
            r"^encoder\.positions\.".into(),
            format!("{model}.embeddings.position_embeddings."),
        ),
        (
            r"^encoder\.token_types\.".into(),
            format!("{model}.embeddings.token_type_embeddings."),
        ),
        (
            r"^encoder\.embedding_norm\.".into(),
            format!("{model}.embeddings.LayerNorm."),
        ),
        (
            r"^encoder\.blocks\.(\d+)\.mixer_norm\.".into(),
            format!("{layer}attention.output.LayerNorm."),
        ),
        (
            r"^encoder\.blocks\.(\d+)\.ffn_in\.".into(),
            format!("{layer}intermediate.dense."),
        ),
        (
            r"^encoder\.blocks\.(\d+)\.ffn_out\.".into(),
            format!("{layer}output.dense."),
        ),
        (
            r"^encoder\.blocks\.(\d+)\.ffn_norm\.".into(),
            format!("{layer}output.LayerNorm."),
        ),
        (
            r"^encoder\.blocks\.(\d+)\.mixer\.(?:.*\.)?projection\.(query|key|value)\.".into(),
            format!("{layer}attention.self.${{2}}."),
        ),
        (
            r"^encoder\.blocks\.(\d+)\.mixer\.(?:.*\.)?projection\.output\.".into(),
            format!("{layer}attention.output.dense."),
        ),
    ];
    let head: [(&str, &str); 3] = match family {
        Family::Bert => [
            (r"^head\.dense\.", "cls.predictions.transform.dense."),
            (r"^head\.norm\.", "cls.predictions.transform.LayerNorm."),
            (r"^head\.bias$", "cls.predictions.bias"),
        ],
        Family::Roberta => [
            (r"^head\.dense\.", "lm_head.dense."),
            (r"^head\.norm\.", "lm_head.layer_norm."),
            (r"^head\.bias$", "lm_head.bias"),
        ],
    };
    patterns.extend(head.map(|(from, to)| (from.to_string(), to.to_string())));
    patterns.push((
        r"^sentence_order\.pooler\.".into(),
        format!("{model}.pooler.dense."),
    ));
    patterns.push((
        r"^sentence_order\.classifier\.".into(),
        "cls.seq_relationship.".into(),
    ));
    // LayerNorm parameters under PyTorch's names, whichever the adapter left.
    patterns.push((
        r"(LayerNorm|layer_norm)\.gamma$".into(),
        "${1}.weight".into(),
    ));
    patterns.push((r"(LayerNorm|layer_norm)\.beta$".into(), "${1}.bias".into()));
    KeyRemapper::from_patterns(patterns).expect("the export patterns are valid regular expressions")
}
