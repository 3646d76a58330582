//! `lra encode` and `lra_model::pretrained` on the tiny BERT and RoBERTa checkpoints of
//! `tests/fixtures/pretrained/` (made by `scripts/make_pretrained_fixtures.py` with transformers):
//! the hidden states equal transformers' to 1e-5 relative, the ids equal its tokenizer's; the
//! import report accounts for every tensor; bad checkpoints and inputs fail naming what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::tensor::Device;
use lra::npy;
use lra_model::MixerKind;
use lra_model::pretrained::{self, Checkpoint, PretrainedError, UnusedReason};

/// The `--max-len` the reference was computed with (`MAX_LEN` in the script).
const MAX_LEN: &str = "24";

fn fixture(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pretrained")
        .join(model)
}

fn lra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lra"))
        .args(args)
        .output()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A copy of a fixture checkpoint, with `config.json` passed through `edit`.
fn edited_copy(model: &str, dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let copy = dir.join(model);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(fixture(model)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let config = copy.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, edit(&text)).unwrap();
    copy
}

/// Runs `lra encode` on a fixture's inputs; returns (hidden, ids, report).
fn encode(checkpoint: &Path, dir: &Path, extra: &[&str]) -> (npy::Array, npy::Array, String) {
    let (out, ids) = (dir.join("h.npy"), dir.join("i.npy"));
    let inputs = fixture("bert").join("inputs.txt");
    let mut args = vec![
        "encode",
        "--init",
        path(checkpoint),
        "--input",
        path(&inputs),
        "--out",
        path(&out),
        "--ids-out",
        path(&ids),
        "--max-len",
        MAX_LEN,
    ];
    args.extend_from_slice(extra);
    let output = lra(&args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (npy::read(&out).unwrap(), npy::read(&ids).unwrap(), stdout)
}

/// Largest `|a − b| / max(|b|, 1)`.
fn max_relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len());
    actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f32::max)
}

fn assert_matches_transformers(model: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (hidden, ids, report) = encode(&fixture(model), dir.path(), &[]);
    let expected_hidden = npy::read(&fixture(model).join("expected_hidden.npy")).unwrap();
    let expected_ids = npy::read(&fixture(model).join("expected_ids.npy")).unwrap();
    assert_eq!(ids, expected_ids, "{model}: token ids");
    assert_eq!(hidden.shape, expected_hidden.shape, "{model}: hidden shape");
    let error = max_relative_error(&hidden.values, &expected_hidden.values);
    assert!(error < 1e-5, "{model}: relative error {error}");
    report
}

#[test]
fn bert_hidden_states_equal_transformers() {
    let report = assert_matches_transformers("bert");
    // model.safetensors; the pretraining heads and (for an encoder alone) the pooler are unused.
    assert!(report.contains("model.safetensors"), "{report}");
    assert!(
        report.contains("cls.predictions.transform.dense.weight: pretraining head"),
        "{report}"
    );
    assert!(
        report.contains("bert.pooler.dense.weight: the pooler"),
        "{report}"
    );
    assert!(
        report.contains("bert.encoder.layer.1.output.LayerNorm.weight -> blocks.1.ffn_norm.gamma"),
        "{report}"
    );
    assert!(
        report.contains("position table: rows 0..24 of 64"),
        "{report}"
    );
}

/// RoBERTa: read from pytorch_model.bin; its padding id is 1 and its positions start at
/// pad_token_id + 1, while the encoder pads with id 0 (`<s>`) and counts positions from 0.
#[test]
fn roberta_hidden_states_equal_transformers_despite_other_padding_and_positions() {
    let report = assert_matches_transformers("roberta");
    assert!(report.contains("pytorch_model.bin"), "{report}");
    assert!(
        report.contains("position table: rows 2..26 of 66"),
        "{report}"
    );
    assert!(
        report.contains("lm_head.decoder.weight: pretraining head"),
        "{report}"
    );
}

#[test]
fn an_approximate_attention_takes_the_projections_and_keeps_its_own_parameters_at_init() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--attention", "nystrom", "--set", "landmarks=8"];
    let (hidden, _, report) = encode(&fixture("bert"), dir.path(), &args);
    for projection in ["query", "key", "value"] {
        let line = format!(
            "bert.encoder.layer.0.attention.self.{projection}.weight -> \
             blocks.0.mixer.projection.{projection}.weight"
        );
        assert!(report.contains(&line), "{line}\n{report}");
    }
    assert!(
        report.contains("bert.encoder.layer.1.attention.output.dense.bias -> blocks.1.mixer.projection.output.bias"),
        "{report}"
    );
    assert!(
        report.contains("blocks.0.mixer.core.conv.weight: added by the `nystrom` mixer"),
        "{report}"
    );
    // An approximation of the same model: finite, close, not equal.
    let expected = npy::read(&fixture("bert").join("expected_hidden.npy")).unwrap();
    assert!(hidden.values.iter().all(|v| v.is_finite()));
    let error = max_relative_error(&hidden.values, &expected.values);
    assert!(
        error > 1e-4,
        "Nyström with its random conv cannot be exact: {error}"
    );
}

#[test]
fn a_mixer_without_projections_reports_the_attention_keys_unused() {
    let device = Device::flex();
    let checkpoint = Checkpoint::open(&fixture("bert")).unwrap();
    let (_, report) = checkpoint
        .encoder(MixerKind::Fno.default_config(), 24, &device)
        .unwrap();
    assert_eq!(
        report.unused_reason("bert.encoder.layer.0.attention.self.query.weight"),
        Some(&UnusedReason::NoAttentionProjections { mixer: "fno" })
    );
    // The rest of each block still loads.
    assert!(report.loaded_into(
        "bert.encoder.layer.0.intermediate.dense.weight",
        "blocks.0.ffn_in.weight"
    ));
}

#[test]
fn the_classifier_takes_the_pooler_and_leaves_the_output_layer_at_init() {
    let device = Device::flex();
    device.seed(0);
    let mixer = MixerKind::Softmax.default_config();
    let (model, config, report) =
        pretrained::load(&fixture("bert"), mixer.clone(), 3, 24, &device).unwrap();
    assert_eq!((config.d_model, config.n_layers, config.d_ffn), (32, 2, 37));
    assert!(report.loaded_into("bert.pooler.dense.weight", "head_in.weight"));
    assert!(
        report
            .init_reason("head_out.weight")
            .is_some_and(|r| r.contains("output layer"))
    );
    assert!(report.unused_reason("bert.pooler.dense.weight").is_none());
    assert_eq!(model.encoder().n_layers(), 2);

    // RoBERTa's masked-LM checkpoint has no pooler: it starts from init, and says so.
    let (_, _, report) = pretrained::load(&fixture("roberta"), mixer, 2, 24, &device).unwrap();
    assert!(
        report
            .init_reason("head_in.weight")
            .is_some_and(|r| r.contains("no"))
    );
    assert_eq!(
        report.unused_reason("lm_head.dense.weight"),
        Some(&UnusedReason::PretrainingHead)
    );
}

#[test]
fn a_shape_mismatch_is_refused_naming_the_key_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let copy = edited_copy("bert", dir.path(), |text| {
        text.replace("\"intermediate_size\": 37", "\"intermediate_size\": 36")
    });
    let error = pretrained::load(
        &copy,
        MixerKind::Softmax.default_config(),
        2,
        24,
        &Device::flex(),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(error, PretrainedError::ShapeMismatch { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("bert.encoder.layer.0.intermediate.dense")
            && message.contains("[37, 32]")
            && message.contains("[32, 36]"),
        "{message}"
    );
}

#[test]
fn encoder_parameters_missing_from_the_checkpoint_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let copy = edited_copy("bert", dir.path(), |text| {
        text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3")
    });
    let message = pretrained::load(
        &copy,
        MixerKind::Softmax.default_config(),
        2,
        24,
        &Device::flex(),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("model.safetensors") && message.contains("encoder.blocks.2.ffn_in.weight"),
        "{message}"
    );
}

/// Runs `lra encode` expecting failure; returns stderr. No output file may appear.
fn encode_fails(checkpoint: &Path, input: &Path, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.npy");
    let mut args = vec![
        "encode",
        "--init",
        path(checkpoint),
        "--input",
        path(input),
        "--out",
        path(&out),
    ];
    args.extend_from_slice(extra);
    let output = lra(&args);
    assert!(!output.status.success());
    assert!(!out.exists(), "no output is written on failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_checkpoints_fail_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = fixture("bert").join("inputs.txt");
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "\"model_type\": \"bert\"",
            "\"model_type\": \"gpt2\"",
            &["config.json", "model_type", "gpt2"],
        ),
        (
            "\"hidden_act\": \"gelu\"",
            "\"hidden_act\": \"relu\"",
            &["config.json", "hidden_act", "relu"],
        ),
        (
            "\"type_vocab_size\": 2",
            "\"type_vocab_size\": \"two\"",
            &["config.json", "type_vocab_size"],
        ),
    ];
    for (i, (from, to, expected)) in cases.into_iter().enumerate() {
        let copy = edited_copy("bert", &dir.path().join(i.to_string()), |text| {
            assert!(text.contains(from));
            text.replace(from, to)
        });
        let stderr = encode_fails(&copy, &inputs, &[]);
        for part in expected {
            assert!(stderr.contains(part), "{part}: {stderr}");
        }
    }
    // No config.json at all.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let stderr = encode_fails(&empty, &inputs, &[]);
    assert!(
        stderr.contains("config.json") && stderr.contains("empty"),
        "{stderr}"
    );
    // A config.json without weights next to it.
    let no_weights = dir.path().join("no-weights");
    std::fs::create_dir(&no_weights).unwrap();
    std::fs::copy(
        fixture("bert").join("config.json"),
        no_weights.join("config.json"),
    )
    .unwrap();
    let stderr = encode_fails(&no_weights, &inputs, &[]);
    assert!(
        stderr.contains("no-weights") && stderr.contains("model.safetensors or pytorch_model.bin"),
        "{stderr}"
    );
    // Longer than the position table.
    let stderr = encode_fails(&fixture("roberta"), &inputs, &["--max-len", "65"]);
    assert!(
        stderr.contains("max_len 65") && stderr.contains("64 usable positions"),
        "{stderr}"
    );
}

#[test]
fn malformed_input_lines_fail_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, line) in [
        ("three.txt", "a cat\nthe\tcat\tsat\n", 2),
        ("empty-b.txt", "a cat\nthe dog\n\t\n", 3),
        ("blank.txt", "\n", 1),
    ] {
        let input = dir.path().join(name);
        std::fs::write(&input, text).unwrap();
        let stderr = encode_fails(&fixture("bert"), &input, &[]);
        assert!(stderr.contains(&format!("{name}:{line}")), "{stderr}");
    }
    let stderr = encode_fails(&fixture("bert"), &dir.path().join("none.txt"), &[]);
    assert!(stderr.contains("none.txt"), "{stderr}");
}
