//! Hugging Face BERT and RoBERTa checkpoints in the project's encoder, with any registered mixer.
//!
//! A checkpoint folder is what transformers' `save_pretrained` writes: `config.json` and
//! `model.safetensors` (or `pytorch_model.bin`), usually with the tokenizer's files (read by
//! `lra_data::tokenizer`). Nothing is downloaded. The encoder is configured as the checkpoint's
//! model ([`CheckpointConfig::model_config`]: post-LN, embedding LayerNorm, the checkpoint's
//! epsilon, exact-erf GELU, first-token pooling into BERT's pooler) and the weights are loaded
//! through Burn's `burn-store` ([`import`]): every attention mixer takes the checkpoint's Q/K/V
//! and output projections; what a mixer adds (Nyström's convolution, Performer's features, …)
//! keeps its init. The [`ImportReport`] lists every tensor loaded, every parameter left at init
//! and every checkpoint tensor unused, with the reason; a shape mismatch, or an encoder
//! parameter the checkpoint lacks, is an error.
//!
//! Positions: the model's `max_len` may be shorter than the checkpoint's table (its first rows
//! are taken); longer only when the checkpoint is opened [`Checkpoint::extending_positions`]
//! (tiled or interpolated, see [`PositionExtension`]). RoBERTa numbers the real tokens of a right-padded sequence
//! `pad_token_id + 1 + i`; its first `pad_token_id + 1` rows are dropped at import, so the
//! encoder's position `i` is the reference's for every real token. Padding: the project pads
//! with id 0 (`<s>` for RoBERTa) and masks by length; a mixer that honours the padding mask gives
//! every real token the hidden state it has without padding.
//!
//! ```no_run
//! # use lra_model::{MixerKind, pretrained};
//! # use burn::tensor::Device;
//! let device = Device::flex();
//! device.seed(0); // the task head and any mixer extras are drawn from the device RNG
//! let (model, config, report) = pretrained::load(
//!     "checkpoints/bert-base-uncased".as_ref(),
//!     MixerKind::Nystrom.default_config(),
//!     2,   // outputs
//!     128, // max_len
//!     &device,
//! )?;
//! println!("{report}");
//! # Ok::<(), pretrained::PretrainedError>(())
//! ```

mod config;
mod error;
mod export;
mod import;
mod keys;
mod positions;
mod report;

use std::path::{Path, PathBuf};

use burn::tensor::Device;

pub use config::{CheckpointConfig, Family};
pub use error::{PretrainedError, Result};
pub use keys::UnusedReason;
pub use positions::{PositionExtension, extend_rows};
pub use report::{ImportReport, LeftAtInit, Loaded, PositionRows, Unused};

use crate::classifier::{Classifier, ClassifierConfig};
use crate::encoder::Encoder;
use crate::masked_lm::{MaskedLm, MaskedLmConfig};
use crate::mixer::MixerConfig;
use crate::model_config::{ModelConfig, TaskShape};
use keys::Target;

/// A checkpoint folder: its `config.json` read, its weights file found (read on import).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub folder: PathBuf,
    pub config: CheckpointConfig,
    /// `model.safetensors` or `pytorch_model.bin`.
    pub weights: PathBuf,
    /// How the position table is lengthened for a model longer than it (`None`: an error).
    pub extend_positions: Option<PositionExtension>,
}

impl Checkpoint {
    /// Reads `folder/config.json` and finds the weights file.
    pub fn open(folder: &Path) -> Result<Self> {
        Ok(Self {
            config: CheckpointConfig::read(folder)?,
            weights: import::weights_file(folder)?,
            folder: folder.to_path_buf(),
            extend_positions: None,
        })
    }

    /// This checkpoint, its position table lengthened `how` for models longer than it.
    pub fn extending_positions(self, how: Option<PositionExtension>) -> Self {
        Self {
            extend_positions: how,
            ..self
        }
    }

    /// Longest sequence the checkpoint has positions for.
    pub fn max_len(&self) -> usize {
        self.config.usable_positions()
    }

    /// The encoder's configuration for this checkpoint.
    pub fn model_config(&self) -> ModelConfig {
        self.config.model_config()
    }

    /// The classifier (encoder + BERT pooler head with `outputs` outputs) for sequences of up to
    /// `max_len` tokens, with `mixer` in every block, initialised from the device RNG and then
    /// loaded with the checkpoint's weights. The output layer (and a pooler the checkpoint lacks,
    /// and the mixer's own extra parameters) keep their init.
    pub fn classifier(
        &self,
        mixer: MixerConfig,
        outputs: usize,
        max_len: usize,
        device: &Device,
    ) -> Result<(Classifier, ImportReport)> {
        let config = self.classifier_config(mixer, outputs, max_len)?;
        let mixer_name = config.encoder.mixer.kind().name();
        let mut model = config.init(device);
        let report =
            self.import_into(&mut model, Target::Classifier, mixer_name, max_len, device)?;
        Ok((model, report))
    }

    /// Loads the checkpoint's weights into `model`, a classifier built (with `mixer` in every
    /// block, for up to `max_len` tokens) from [`Self::model_config`] with possibly other
    /// dropout or head sizes: the training loop builds its model from the experiment config and
    /// then imports, so `--set model.dropout=…` applies to a pretrained model too.
    pub fn load_into(
        &self,
        model: &mut Classifier,
        mixer: &MixerConfig,
        max_len: usize,
        device: &Device,
    ) -> Result<ImportReport> {
        self.import_into(
            model,
            Target::Classifier,
            mixer.kind().name(),
            max_len,
            device,
        )
    }

    /// The masked LM (encoder + the checkpoint's MLM head, its decoder tied to the word
    /// embeddings) for sequences of up to `max_len` tokens, with `mixer` in every block, and
    /// with `sentence_order` the sentence-order head, started from the checkpoint's pooler and
    /// next-sentence head where it has them (BERT pretraining checkpoints), else from its init.
    /// A checkpoint without an MLM head (a fine-tuned classifier) is an error naming the missing
    /// parameters.
    pub fn masked_lm(
        &self,
        mixer: MixerConfig,
        max_len: usize,
        sentence_order: bool,
        device: &Device,
    ) -> Result<(MaskedLm, ImportReport)> {
        let encoder = self.classifier_config(mixer, 1, max_len)?.encoder;
        let mixer_name = encoder.mixer.kind().name();
        let mut model = MaskedLmConfig {
            encoder,
            sentence_order,
        }
        .init(device);
        let report = self.import_into(&mut model, Target::MaskedLm, mixer_name, max_len, device)?;
        Ok((model, report))
    }

    /// The encoder alone (no pooler: the checkpoint's is reported unused), as
    /// [`Self::classifier`] builds it.
    pub fn encoder(
        &self,
        mixer: MixerConfig,
        max_len: usize,
        device: &Device,
    ) -> Result<(Encoder, ImportReport)> {
        let config = self.classifier_config(mixer, 1, max_len)?.encoder;
        let mixer_name = config.mixer.kind().name();
        let mut encoder = crate::init_now(config.init(device));
        let report =
            self.import_into(&mut encoder, Target::Encoder, mixer_name, max_len, device)?;
        Ok((encoder, report))
    }

    /// Imports the weights into `module` (`target` says where its parameters are).
    fn import_into<M: burn::module::Module>(
        &self,
        module: &mut M,
        target: Target,
        mixer: &'static str,
        max_len: usize,
        device: &Device,
    ) -> Result<ImportReport> {
        let into = import::ImportTarget {
            target,
            mixer,
            max_len,
            extend: self.extend_positions,
        };
        import::import(module, &self.weights, &self.config, into, device)
    }

    /// The model's configuration, checked (the mixer against the model's sizes too).
    fn classifier_config(
        &self,
        mixer: MixerConfig,
        outputs: usize,
        max_len: usize,
    ) -> Result<ClassifierConfig> {
        let model = self.model_config();
        let shape = TaskShape {
            vocab_size: self.config.vocab_size,
            max_len,
            outputs,
            dual_encoder: false,
        };
        let config = model.classifier(shape, mixer);
        let model_error = |source| PretrainedError::Model {
            path: self.config.path.clone(),
            source,
        };
        model.validate().map_err(model_error)?;
        config
            .encoder
            .mixer
            .validate(&config.encoder.mixer_dims())
            .map_err(model_error)?;
        Ok(config)
    }
}

/// Builds a [`Classifier`] with `mixer` in every block and `outputs` outputs from the checkpoint
/// folder `folder`, for sequences of up to `max_len` tokens (at most the checkpoint's
/// [`Checkpoint::max_len`]); returns it with the encoder's [`ModelConfig`] and the
/// [`ImportReport`]. Seed `device` first: the output layer and any mixer extras are drawn from
/// its RNG.
pub fn load(
    folder: &Path,
    mixer: MixerConfig,
    outputs: usize,
    max_len: usize,
    device: &Device,
) -> Result<(Classifier, ModelConfig, ImportReport)> {
    let checkpoint = Checkpoint::open(folder)?;
    let (model, report) = checkpoint.classifier(mixer, outputs, max_len, device)?;
    Ok((model, checkpoint.model_config(), report))
}
