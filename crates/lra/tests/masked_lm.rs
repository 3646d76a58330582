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
