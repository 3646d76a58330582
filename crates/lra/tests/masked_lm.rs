//! The masked-LM head of a pretraining checkpoint (`cls.predictions` of BERT, `lm_head` of
//! RoBERTa) imported into `lra_model::MaskedLm`: its logits equal transformers' on the tiny
//! fixtures of `tests/fixtures/pretrained/` (`expected_mlm_logits.npy`, made by
//! `scripts/make_pretrained_fixtures.py`).

use std::path::{Path, PathBuf};

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use lra::npy;
use lra_model::MixerKind;
use lra_model::pretrained::{Checkpoint, UnusedReason};

fn fixture(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pretrained")
        .join(model)
}

/// The imported MLM's logits on each reference example (run alone, unpadded) against
/// transformers': largest error relative to max(|reference|, 1).
fn mlm_error(model: &str) -> (f32, Vec<(String, UnusedReason)>) {
    let device = Device::flex();
    device.seed(0);
    let checkpoint = Checkpoint::open(&fixture(model)).unwrap();
    let (mlm, report) = checkpoint
        .masked_lm(MixerKind::Softmax.default_config(), 24, &device)
        .unwrap();
    let ids = npy::read(&fixture(model).join("expected_ids.npy")).unwrap();
    let expected = npy::read(&fixture(model).join("expected_mlm_logits.npy")).unwrap();
    let (examples, seq, vocab) = (expected.shape[0], expected.shape[1], expected.shape[2]);
    let mut worst = 0f32;
    for example in 0..examples {
        let row = &ids.values[example * ids.shape[1]..(example + 1) * ids.shape[1]];
        let len = row
            .iter()
            .rposition(|&id| id != 0.0)
            .map_or(0, |last| last + 1);
        let tokens: Vec<i64> = row[..len].iter().map(|&id| id as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, len]), &device);
        let pad =
            Tensor::<2, Bool>::from_data(TensorData::new(vec![false; len], [1, len]), &device);
        let logits = mlm
            .forward(tokens, None, pad)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let reference = &expected.values[example * seq * vocab..][..len * vocab];
        for (a, b) in logits.iter().zip(reference) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    let unused = report
        .unused
        .into_iter()
        .map(|u| (u.key, u.reason))
        .collect();
    (worst, unused)
}

#[test]
fn bert_mlm_head_reproduces_transformers_prediction_logits() {
    let (error, unused) = mlm_error("bert");
    assert!(error < 1e-5, "relative error {error}");
    // Only the next-sentence head and the pooler are left (a tied decoder, when stored, is
    // reported as loaded through the word embeddings).
    for (key, reason) in &unused {
        let expected = if key.starts_with("cls.seq_relationship") {
            UnusedReason::PretrainingHead
        } else if key.starts_with("bert.pooler.") {
            UnusedReason::PoolerNotUsed
        } else {
            UnusedReason::TiedDecoder
        };
        assert_eq!(reason, &expected, "{key}");
    }
}

#[test]
fn roberta_lm_head_reproduces_transformers_logits() {
    let (error, unused) = mlm_error("roberta");
    assert!(error < 1e-5, "relative error {error}");
    assert!(
        unused
            .iter()
            .all(|(_, reason)| *reason == UnusedReason::TiedDecoder),
        "{unused:?}"
    );
}

/// Logits of `mlm` on a fixed batch of fixture ids.
fn logits(mlm: &lra_model::MaskedLm, device: &Device) -> Vec<f32> {
    let ids: Vec<i64> = (0..2 * 12).map(|i| 5 + (i * 7) % 60).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 12]), device);
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 24], [2, 12]), device);
    mlm.forward(tokens, None, pad)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn an_exported_masked_lm_imports_back_to_the_same_model_with_its_mixer_extras() {
    for (model, mixer) in [
        ("bert", "softmax"),
        ("roberta", "softmax"),
        ("bert", "nystrom"),
    ] {
        let device = Device::flex();
        device.seed(1);
        let kind: MixerKind = mixer.parse().unwrap();
        let mixer_config = kind
            .parse_config(&toml::toml! { landmarks = 4 })
            .unwrap_or_else(|_| kind.default_config());
        let checkpoint = Checkpoint::open(&fixture(model)).unwrap();
        let (mlm, _) = checkpoint
            .masked_lm(mixer_config.clone(), 16, &device)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        checkpoint.export(&mlm, 16, dir.path()).unwrap();

        device.seed(2); // a different init for anything the export failed to carry
        let exported = Checkpoint::open(dir.path()).unwrap();
        assert_eq!(exported.max_len(), 16);
        let (again, report) = exported.masked_lm(mixer_config, 16, &device).unwrap();
        assert!(report.left_at_init.is_empty(), "{model}/{mixer}: {report}");
        assert_eq!(
            logits(&mlm, &device),
            logits(&again, &device),
            "{model}/{mixer}"
        );
    }
}
