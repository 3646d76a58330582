//! `lra bench` at tiny sizes: every requested method × length × mode gets a row, and the
//! Markdown table and charts are written next to the CSV.

use std::collections::BTreeSet;

use lra::cmd::bench::{
    AttentionArgs, AttentionOp, BenchCommand, EfficiencyArgs, MixerArgs, MlmArgs, Mode, execute,
};
use lra_model::MixerKind;

/// Peak memory is measured by the counting allocator, as in the `lra` binary.
#[global_allocator]
static ALLOCATOR: lra::memory::PeakAllocator<std::alloc::System> =
    lra::memory::PeakAllocator(std::alloc::System);

fn csv_keys(path: &std::path::Path) -> BTreeSet<(String, String, usize)> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader
        .deserialize::<std::collections::HashMap<String, String>>()
        .map(|row| {
            let row = row.unwrap();
            let ms: f64 = row["median_ms"].parse().unwrap();
            let mib: f64 = row["peak_mib"].parse().unwrap();
            assert!(ms > 0.0 && mib > 0.0, "{row:?}");
            (
                row["attention"].clone(),
                row["mode"].clone(),
                row["seq_len"].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn mixer_bench_covers_every_registered_mixer_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixers.csv");
    execute(BenchCommand::Mixers(MixerArgs {
        attention: Vec::new(),
        seq_len: vec![64, 96],
        batch: 1,
        d_model: 16,
        heads: 2,
        mode: Mode::Train,
        repeats: 1,
        device: "cpu".into(),
        out: out.clone(),
    }))
    .unwrap();
    let expected: BTreeSet<_> = MixerKind::ALL
        .iter()
        .flat_map(|k| [64, 96].map(|n| (k.name().to_string(), "train".to_string(), n)))
        .collect();
    assert_eq!(csv_keys(&out), expected);
    // Each row says what the CPU kernels ran with (their speed depends on it).
    let mut reader = csv::Reader::from_path(&out).unwrap();
    for row in reader.deserialize::<std::collections::HashMap<String, String>>() {
        let device = &row.unwrap()["device"];
        assert_eq!(
            device,
            &format!("cpu ({})", lra_model::ops::cpu_description()),
            "{device}"
        );
        assert!(
            ["AVX-512F", "AVX2+FMA", "baseline", "no x86"]
                .iter()
                .any(|kind| device.contains(kind))
        );
    }
    let svg = std::fs::read_to_string(dir.path().join("mixers-time.svg")).unwrap();
    assert!(
        svg.contains("softmax, slope"),
        "legend names each method with its slope"
    );
}

/// `(median_ms, peak_mib)` of one row of a bench CSV.
fn csv_row(path: &std::path::Path, attention: &str, mode: &str, n: usize) -> (f64, f64) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader
        .deserialize::<std::collections::HashMap<String, String>>()
        .map(Result::unwrap)
        .find(|row| {
            row["attention"] == attention && row["mode"] == mode && row["seq_len"] == n.to_string()
        })
        .map(|row| {
            (
                row["median_ms"].parse().unwrap(),
                row["peak_mib"].parse().unwrap(),
            )
        })
        .unwrap_or_else(|| panic!("no row {attention} {mode} {n}"))
}

#[test]
fn attention_bench_times_every_op_and_flash_trains_in_less_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("attention.csv");
    execute(BenchCommand::Attention(AttentionArgs {
        op: vec![
            AttentionOp::Flash,
            AttentionOp::Softmax,
            AttentionOp::Reference,
        ],
        seq_len: vec![128, 512],
        batch: 1,
        heads: 4,
        head_dim: 8,
        mode: Mode::Both,
        repeats: 1,
        device: "cpu".into(),
        out: out.clone(),
    }))
    .unwrap();
    let expected: BTreeSet<_> = ["flash", "softmax", "reference"]
        .iter()
        .flat_map(|a| {
            ["train", "forward"]
                .iter()
                .flat_map(move |m| [128, 512].map(|n| (a.to_string(), m.to_string(), n)))
        })
        .collect();
    assert_eq!(csv_keys(&out), expected);
    // The materialised op keeps [4, 512, 512] weights (4 MiB) for its backward, the composed
    // reference several such tensors; flash keeps O(n·d).
    let (_, flash_mib) = csv_row(&out, "flash", "train", 512);
    for materialised in ["softmax", "reference"] {
        let (_, mib) = csv_row(&out, materialised, "train", 512);
        assert!(
            flash_mib * 4.0 < mib,
            "flash {flash_mib} MiB vs {materialised} {mib} MiB"
        );
    }
}

#[test]
fn efficiency_bench_times_the_whole_model_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("efficiency.csv");
    execute(BenchCommand::Efficiency(EfficiencyArgs {
        file: concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../experiments/bench/lra-efficiency.toml"
        )
        .into(),
        attention: vec!["softmax".into(), "linear".into()],
        seq_len: vec![32, 64],
        batch: Some(2),
        mode: Some(Mode::Both),
        repeats: Some(1),
        device: "cpu".into(),
        out: out.clone(),
    }))
    .unwrap();
    let expected: BTreeSet<_> = ["softmax", "linear"]
        .iter()
        .flat_map(|a| {
            ["train", "forward"]
                .iter()
                .flat_map(move |m| [32, 64].map(|n| (a.to_string(), m.to_string(), n)))
        })
        .collect();
    assert_eq!(csv_keys(&out), expected);
    let markdown = std::fs::read_to_string(dir.path().join("efficiency.md")).unwrap();
    assert!(markdown.contains("| linear | "), "{markdown}");
    assert!(
        markdown.contains("×)"),
        "ratios to the baseline: {markdown}"
    );
    assert!(dir.path().join("efficiency-memory.svg").is_file());
}

#[test]
fn mlm_bench_times_the_pretraining_step_per_attention_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mlm.csv");
    let tiny_bert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pretrained/bert"
    );
    execute(BenchCommand::Mlm(MlmArgs {
        init: tiny_bert.into(),
        attention: vec!["softmax".into(), "flash".into(), "linear".into()],
        seq_len: vec![64, 512],
        batch: 2,
        repeats: 1,
        device: "cpu".into(),
        out: out.clone(),
    }))
    .unwrap();
    let expected: BTreeSet<_> = ["softmax", "flash", "linear"]
        .iter()
        .flat_map(|a| [64, 512].map(|n| (a.to_string(), "train".to_string(), n)))
        .collect();
    assert_eq!(csv_keys(&out), expected);
    // Past the checkpoint's 64 positions (the table is sized to each length); flash keeps no
    // [n, n] weights for the backward, the softmax step keeps 2 layers × [2, 4, 512, 512].
    let (_, flash_mib) = csv_row(&out, "flash", "train", 512);
    let (_, softmax_mib) = csv_row(&out, "softmax", "train", 512);
    assert!(
        flash_mib < softmax_mib,
        "flash {flash_mib} MiB vs softmax {softmax_mib} MiB"
    );
}
