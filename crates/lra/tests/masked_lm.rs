//! The masked-LM head of a pretraining checkpoint (`cls.predictions` of BERT, `lm_head` of
//! RoBERTa) imported into `lra_model::MaskedLm`: its logits equal transformers' on the tiny
//! fixtures of `tests/fixtures/pretrained/` (`expected_mlm_logits.npy`, made by
//! `scripts/make_pretrained_fixtures.py`); so do the sentence-order head's, started from
//! `BertForPreTraining`'s pooler and next-sentence head (`expected_sop_logits.npy`).

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
        .masked_lm(MixerKind::Softmax.default_config(), 24, false, &device)
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
    // Only the next-sentence head and the pooler are left, for the sentence-order head (a tied
    // decoder, when stored, is reported as loaded through the word embeddings).
    for (key, reason) in &unused {
        let expected = if key.starts_with("cls.seq_relationship") || key.starts_with("bert.pooler.")
        {
            UnusedReason::SentenceOrderOff
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

/// The int64 rows of `array` as `[1, len]` tensors, each cut at its length in `ids` (the
/// fixture arrays are zero past each example's end).
fn example_row(
    array: &lra::npy::Array,
    len: usize,
    example: usize,
    device: &Device,
) -> Tensor<2, Int> {
    let row = &array.values[example * array.shape[1]..][..len];
    let values: Vec<i64> = row.iter().map(|&v| v as i64).collect();
    Tensor::from_data(TensorData::new(values, [1, len]), device)
}

#[test]
fn bert_next_sentence_head_starts_the_sentence_order_head_as_transformers_computes_it() {
    let device = Device::flex();
    device.seed(0);
    let checkpoint = Checkpoint::open(&fixture("bert")).unwrap();
    let (mlm, report) = checkpoint
        .masked_lm(MixerKind::Softmax.default_config(), 24, true, &device)
        .unwrap();
    for (key, parameter) in [
        ("bert.pooler.dense.weight", "sentence_order.pooler.weight"),
        ("bert.pooler.dense.bias", "sentence_order.pooler.bias"),
        (
            "cls.seq_relationship.weight",
            "sentence_order.classifier.weight",
        ),
        (
            "cls.seq_relationship.bias",
            "sentence_order.classifier.bias",
        ),
    ] {
        assert!(report.loaded_into(key, parameter), "{key}: {report}");
    }
    assert!(report.left_at_init.is_empty(), "{report}");
    assert!(
        report.to_string().contains(
            "cls.seq_relationship.weight -> sentence_order.classifier.weight (BERT's \
             next-sentence head, the closest start for sentence order"
        ),
        "{report}"
    );
    let ids = npy::read(&fixture("bert").join("expected_ids.npy")).unwrap();
    let types = npy::read(&fixture("bert").join("expected_type_ids.npy")).unwrap();
    let expected = npy::read(&fixture("bert").join("expected_sop_logits.npy")).unwrap();
    assert_eq!(expected.shape, [ids.shape[0], 2]);
    let mut worst = 0f32;
    let mut pairs = 0;
    for example in 0..ids.shape[0] {
        let row = &ids.values[example * ids.shape[1]..(example + 1) * ids.shape[1]];
        let len = row
            .iter()
            .rposition(|&id| id != 0.0)
            .map_or(0, |last| last + 1);
        let example_types = example_row(&types, len, example, &device);
        pairs += usize::from(example_types.clone().sum().into_scalar::<i64>() > 0);
        let pad =
            Tensor::<2, Bool>::from_data(TensorData::new(vec![false; len], [1, len]), &device);
        let logits = mlm
            .forward_pretraining(
                example_row(&ids, len, example, &device),
                Some(example_types),
                pad,
                None,
            )
            .sentence_order
            .expect("the sentence-order head")
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (a, b) in logits.iter().zip(&expected.values[example * 2..][..2]) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    assert!(pairs >= 2, "the fixture has text pairs (type ids 1)");
    assert!(worst < 1e-5, "relative error {worst}");
}

#[test]
fn a_checkpoint_without_next_sentence_head_starts_the_sentence_order_head_from_its_init() {
    let device = Device::flex();
    device.seed(0);
    let (_, report) = Checkpoint::open(&fixture("roberta"))
        .unwrap()
        .masked_lm(MixerKind::Softmax.default_config(), 16, true, &device)
        .unwrap();
    let mut left: Vec<&str> = report
        .left_at_init
        .iter()
        .map(|p| p.parameter.as_str())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "sentence_order.classifier.bias",
            "sentence_order.classifier.weight",
            "sentence_order.pooler.bias",
            "sentence_order.pooler.weight",
        ],
        "{report}"
    );
    let reason = report
        .init_reason("sentence_order.classifier.weight")
        .unwrap();
    assert!(reason.contains("cls.seq_relationship"), "{reason}");
}

/// Logits of `mlm` on a fixed batch of fixture ids: the MLM's, then the sentence-order head's
/// when it has one.
fn logits(mlm: &lra_model::MaskedLm, device: &Device) -> Vec<f32> {
    let ids: Vec<i64> = (0..2 * 12).map(|i| 5 + (i * 7) % 60).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 12]), device);
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 24], [2, 12]), device);
    let every = Tensor::<1, Int>::arange(0..24, device);
    let output = mlm.forward_pretraining(tokens, None, pad, Some(every));
    let mlm_logits = output.mlm.expect("the MLM logits asked for");
    let mut values = mlm_logits.into_data().try_to_vec::<f32>().unwrap();
    if let Some(order) = output.sentence_order {
        values.extend(order.into_data().try_to_vec::<f32>().unwrap());
    }
    values
}

#[test]
fn an_exported_masked_lm_imports_back_to_the_same_model_with_its_mixer_extras() {
    for (model, mixer, sentence_order) in [
        ("bert", "softmax", false),
        ("roberta", "softmax", false),
        ("bert", "nystrom", false),
        ("bert", "softmax", true),
        ("roberta", "softmax", true),
    ] {
        let device = Device::flex();
        device.seed(1);
        let kind: MixerKind = mixer.parse().unwrap();
        let mixer_config = kind
            .parse_config(&toml::toml! { landmarks = 4 })
            .unwrap_or_else(|_| kind.default_config());
        let checkpoint = Checkpoint::open(&fixture(model)).unwrap();
        let (mlm, _) = checkpoint
            .masked_lm(mixer_config.clone(), 16, sentence_order, &device)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        checkpoint.export(&mlm, 16, dir.path()).unwrap();

        device.seed(2); // a different init for anything the export failed to carry
        let exported = Checkpoint::open(dir.path()).unwrap();
        assert_eq!(exported.max_len(), 16);
        let (again, report) = exported
            .masked_lm(mixer_config.clone(), 16, sentence_order, &device)
            .unwrap();
        let case = format!("{model}/{mixer}/sop {sentence_order}");
        assert!(report.left_at_init.is_empty(), "{case}: {report}");
        assert_eq!(logits(&mlm, &device), logits(&again, &device), "{case}");
        if sentence_order {
            // A classifier fine-tuned from the export starts from the sentence-order pooler.
            let (_, report) = exported.classifier(mixer_config, 2, 16, &device).unwrap();
            let pooler = format!("{model}.pooler.dense.weight");
            assert!(
                report.loaded_into(&pooler, "head_in.weight"),
                "{case}: {report}"
            );
            assert_eq!(
                report.unused_reason("cls.seq_relationship.weight"),
                Some(&UnusedReason::PretrainingHead),
                "{case}"
            );
        }
    }
}

/// The pretraining pass runs the MLM head on the masked positions only: its logits are the
/// rows of the every-position logits at those positions.
#[test]
fn the_masked_positions_logits_are_the_full_logits_rows() {
    let device = Device::flex();
    device.seed(0);
    let (mlm, _) = Checkpoint::open(&fixture("roberta"))
        .unwrap()
        .masked_lm(MixerKind::Softmax.default_config(), 12, false, &device)
        .unwrap();
    let ids: Vec<i64> = (0..2 * 12).map(|i| 5 + (i * 11) % 60).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 12]), &device);
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 24], [2, 12]), &device);
    let full = mlm.forward(tokens.clone(), None, pad.clone());
    let vocab = full.dims()[2];
    let full = full
        .reshape([24, vocab])
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let at = [3i64, 7, 12, 23];
    let masked = Tensor::<1, Int>::from_data(TensorData::new(at.to_vec(), [4]), &device);
    let rows = mlm
        .forward_pretraining(tokens, None, pad, Some(masked))
        .mlm
        .unwrap();
    assert_eq!(rows.dims(), [4, vocab]);
    let rows = rows.into_data().try_to_vec::<f32>().unwrap();
    for (k, &position) in at.iter().enumerate() {
        let expected = &full[position as usize * vocab..][..vocab];
        for (got, want) in rows[k * vocab..][..vocab].iter().zip(expected) {
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }
}
