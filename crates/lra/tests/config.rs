//! Experiment configs: presets parse, overrides are validated, typos are rejected with the valid
//! choices named.

use lra::cmd::run::{RunArgs, resolve};
use lra::config::{ExperimentConfig, list_presets, load_preset};
use lra::sweep::{SweepFile, cell_config};
use lra::table::PublishedNumbers;

fn args(preset: &str) -> RunArgs {
    RunArgs {
        preset: Some(preset.to_string()),
        ..RunArgs::default()
    }
}

fn error_text(result: anyhow::Result<ExperimentConfig>) -> String {
    format!("{:#}", result.expect_err("expected an error"))
}

#[test]
fn every_preset_resolves() {
    let presets = list_presets();
    for required in [
        "tiny/listops",
        "tiny/pathfinder",
        "tiny/pathx",
        "tiny/path256",
        "lra-pytorch/listops",
        "lra-jax/listops",
    ] {
        assert!(
            presets.iter().any(|p| p == required),
            "missing preset {required}: {presets:?}"
        );
    }
    for preset in presets {
        let config = resolve(&args(&preset)).unwrap_or_else(|e| panic!("{preset}: {e:#}"));
        assert_eq!(config.preset, preset);
    }
}

#[test]
fn pytorch_listops_preset_is_the_mlpen_config() {
    let c = load_preset("lra-pytorch/listops").unwrap();
    assert_eq!(
        (
            c.model.d_model,
            c.model.n_layers,
            c.model.n_heads,
            c.model.d_ffn
        ),
        (64, 2, 2, 128)
    );
    assert_eq!(
        (c.task.max_len, c.train.batch_size, c.train.steps),
        (2000, 32, 5000)
    );
    assert_eq!((c.train.lr, c.train.warmup_steps), (1e-4, 1000));
}

#[test]
fn overrides_and_flags_change_the_config() {
    let mut a = args("tiny");
    a.attention = Some("local".into());
    a.overrides = vec![
        "mixer.block_size=16".into(),
        "train.lr=1".into(),
        "model.pooling=cls".into(),
    ];
    a.steps = Some(7);
    a.seed = Some(3);
    a.data = Some("some/dir".into());
    let c = resolve(&a).unwrap();
    assert_eq!(c.attention, "local");
    assert_eq!(
        c.mixer.get("block_size").and_then(|v| v.as_integer()),
        Some(16)
    );
    assert_eq!(
        c.train.lr, 1.0,
        "an integer given for a float field is accepted"
    );
    assert_eq!(c.model.pooling, lra_model::Pooling::Cls);
    assert_eq!((c.train.steps, c.seed), (7, 3));
    assert_eq!(c.task.data_dir, std::path::PathBuf::from("some/dir"));
}

#[test]
fn nested_mixer_settings_can_be_set_key_by_key() {
    let mut a = args("tiny");
    a.attention = Some("contextpool".into());
    a.overrides = vec![
        "mixer.host=local".into(),
        "mixer.host_config.block_size=8".into(),
    ];
    let c = resolve(&a).unwrap();
    let host = c.mixer["host_config"].as_table().unwrap();
    assert_eq!(host.get("block_size").and_then(|v| v.as_integer()), Some(8));

    a.overrides = vec!["mixer.host=local".into(), "mixer.host_config.blok=8".into()];
    let text = format!("{:#}", resolve(&a).unwrap_err());
    assert!(text.contains("blok"), "{text}");
}

#[test]
fn resolved_config_round_trips_through_toml_with_mixer_defaults_filled_in() {
    let mut a = args("tiny");
    a.attention = Some("local".into());
    let c = resolve(&a).unwrap();
    assert_eq!(
        c.mixer.get("block_size").and_then(|v| v.as_integer()),
        Some(50)
    );
    let again = ExperimentConfig::from_toml(&c.to_toml(), "round trip").unwrap();
    assert_eq!(again, c);
}

#[test]
fn misspelt_keys_are_rejected_naming_the_key_and_valid_ones() {
    let mut a = args("tiny");
    a.overrides = vec!["model.d_modle=32".into()];
    let text = error_text(resolve(&a));
    assert!(
        text.contains("d_modle") && text.contains("d_model"),
        "{text}"
    );

    a.overrides = vec!["modle.d_model=32".into()];
    let text = error_text(resolve(&a));
    assert!(
        text.contains("unknown section `modle`") && text.contains("model"),
        "{text}"
    );

    a.overrides = vec!["mixer.blocksize=3".into()];
    a.attention = Some("local".into());
    let text = error_text(resolve(&a));
    assert!(
        text.contains("blocksize") && text.contains("block_size"),
        "{text}"
    );

    let file = "seed = 0\nattention = \"softmax\"\ntypo = 1\n";
    let text = format!(
        "{:#}",
        ExperimentConfig::from_toml(file, "x.toml").unwrap_err()
    );
    assert!(text.contains("x.toml") && text.contains("typo"), "{text}");
}

#[test]
fn bad_values_are_rejected() {
    for (set, expected) in [
        ("model.n_heads=3", "must divide d_model"),
        ("model.dropout=1.5", "model.dropout"),
        ("train.steps=0", "train.steps"),
        ("model.d_model=\"wide\"", "d_model"),
        ("mixer.block_size=0", "block_size"),
    ] {
        let mut a = args("tiny");
        a.attention = Some("local".into());
        a.overrides = vec![set.into()];
        let text = error_text(resolve(&a));
        assert!(text.contains(expected), "{set}: {text}");
    }
}

#[test]
fn unknown_attention_and_preset_list_the_valid_choices() {
    let mut a = args("tiny");
    a.attention = Some("nystrom-typo".into());
    let text = error_text(resolve(&a));
    assert!(
        text.contains("nystrom-typo") && text.contains("softmax") && text.contains("local"),
        "{text}"
    );

    let text = error_text(resolve(&args("no-such-preset")));
    assert!(
        text.contains("no-such-preset") && text.contains("tiny"),
        "{text}"
    );
}

#[test]
fn a_preset_family_resolves_to_the_tasks_member() {
    let mut request = args("tiny");
    assert_eq!(resolve(&request).unwrap().preset, "tiny/listops");
    request.task = Some("pathx".into());
    let config = resolve(&request).unwrap();
    assert_eq!(
        (config.preset.as_str(), config.task.name.as_str()),
        ("tiny/pathx", "pathx")
    );
    request.preset = Some("lra-jax".into());
    assert_eq!(resolve(&request).unwrap().preset, "lra-jax/pathx");
    request.task = Some("text".into());
    request.preset = Some("tiny".into());
    let text = error_text(resolve(&request));
    for piece in [
        "no tiny/text",
        "tiny/pathx",
        "aclImdb_v1.tar.gz",
        "lra data check text",
    ] {
        assert!(text.contains(piece), "`{piece}` not in: {text}");
    }
}

#[test]
fn every_sweep_file_resolves_and_matches_its_published_table() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/sweeps");
    let numbers = PublishedNumbers::load_all().unwrap();
    // GLUE sweeps start from a checkpoint downloaded beforehand: CI resolves them with the tiny
    // committed one.
    let tiny_bert =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pretrained/bert");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        files += 1;
        let sweep = SweepFile::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
        for mut cell in sweep.cells() {
            if cell.init.as_ref().is_some_and(|init| !init.exists()) {
                cell.init = Some(tiny_bert.clone());
            }
            let config = cell_config(&cell).unwrap_or_else(|e| {
                panic!(
                    "{}: cell {} ({}): {e:#}",
                    path.display(),
                    cell.index,
                    cell.row
                )
            });
            let row = sweep.rows.iter().find(|r| r.name == cell.row).unwrap();
            let retuned = row.task_set.get(&cell.task).cloned().unwrap_or_default();
            for (key, value) in row.mixer.iter().filter(|(key, _)| {
                !retuned
                    .iter()
                    .any(|o| o.starts_with(&format!("mixer.{key}=")))
            }) {
                assert_eq!(
                    config.mixer.get(key),
                    Some(value),
                    "{}: mixer.{key}",
                    cell.row
                );
            }
            if let Some(source) = &sweep.published {
                assert!(
                    numbers.get(source, &cell.row, &cell.task).is_some(),
                    "{}: no published {source} number for `{}` on {}",
                    path.display(),
                    cell.row,
                    cell.task
                );
            }
        }
    }
    assert!(files >= 1);
    assert!(
        !list_presets().iter().any(|p| p.starts_with("sweeps/")),
        "sweep grids are not presets"
    );
}

/// The JAX Sinkhorn rows classify as that code does: one linear layer on the mean of every
/// position; Retrieval's dual encoder keeps its head and first-token pooling.
#[test]
fn the_sinkhorn_rows_use_the_jax_sinkhorn_head() {
    use lra_model::{HeadKind, Pooling};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../experiments/sweeps/lra-table1.toml");
    let sweep = SweepFile::load(&path).unwrap();
    let mut seen = 0;
    for cell in sweep
        .cells()
        .into_iter()
        .filter(|c| c.row == "Sinkhorn Transformer")
    {
        let model = cell_config(&cell).unwrap().model;
        let expected = if cell.task == "retrieval" {
            (HeadKind::Mlp, Pooling::First)
        } else {
            (HeadKind::Linear, Pooling::MeanWithPadding)
        };
        assert_eq!((model.head, model.pooling), expected, "{}", cell.task);
        seen += 1;
    }
    assert_eq!(seen, 6);
}

/// Both LRA codes mask id 0 wherever it occurs, and the JAX table's rows treat padding as their
/// attention code does: flax's uniform padded queries (Transformer, Longformer), no mask at all
/// (Linformer, Performer, linear), and the JAX Reformer with heads as wide as the model.
#[test]
fn the_lra_presets_and_the_jax_rows_mask_padding_as_their_code() {
    use lra_model::mixer::PaddedQueries;
    for name in list_presets() {
        if name.starts_with("lra-jax/") || name.starts_with("lra-pytorch/") {
            let preset = load_preset(&name).unwrap();
            assert!(preset.model.zero_ids_are_padding, "{name}");
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../experiments/sweeps/lra-table1.toml");
    let sweep = SweepFile::load(&path).unwrap();
    let mut seen = 0;
    for cell in sweep.cells() {
        let config = cell_config(&cell).unwrap();
        let model = &config.model;
        let uniform = matches!(cell.row.as_str(), "Transformer" | "Longformer");
        let blind = matches!(
            cell.row.as_str(),
            "Linformer" | "Performer" | "Linear Transformer"
        );
        let label = format!("{} on {}", cell.row, cell.task);
        assert_eq!(
            model.padded_queries == PaddedQueries::Uniform,
            uniform,
            "{label}"
        );
        assert_eq!(!model.mask_padding_in_mixers, blind, "{label}");
        if cell.row == "Sinkhorn Transformer" {
            assert_eq!(config.attention, "sinkhorn_jax", "{label}");
        }
        if cell.row == "Local Attention" {
            assert_eq!(config.attention, "local_jax", "{label}");
        }
        if cell.row == "Reformer" {
            assert_eq!(config.attention, "reformer_jax", "{label}");
            assert_eq!(model.qkv_dim(), model.d_model, "{label}");
        }
        seen += 1;
    }
    assert_eq!(seen, 66);
}

/// `train.cycle_momentum` follows OneCycleLR: with another schedule it is refused by name.
#[test]
fn cycled_momentum_needs_the_one_cycle_schedule() {
    let mut config = load_preset("lra-pytorch/listops").unwrap();
    assert!(config.train.cycle_momentum);
    config.train.schedule = lra::config::Schedule::Linear;
    let text = toml::to_string(&config).unwrap();
    let error = format!(
        "{:#}",
        ExperimentConfig::from_toml(&text, "test").unwrap_err()
    );
    assert!(error.contains("train.cycle_momentum"), "{error}");
}

/// `task.pad_to` pads past the truncation length, never below it.
#[test]
fn a_padded_length_shorter_than_the_truncation_is_refused() {
    let mut config = load_preset("lra-pytorch/text").unwrap();
    assert_eq!(
        (config.task.max_len, config.task.padded_len()),
        (4000, 4096)
    );
    config.task.pad_to = Some(3000);
    let text = toml::to_string(&config).unwrap();
    let error = format!(
        "{:#}",
        ExperimentConfig::from_toml(&text, "test").unwrap_err()
    );
    assert!(error.contains("task.pad_to = 3000"), "{error}");
}
