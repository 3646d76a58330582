//! `lra approx`: `.npy` in/out matches an independent softmax-attention computation number for
//! number; the sweep writes a CSV (one row per value) and an SVG; bad files fail clearly.

use std::path::Path;
use std::process::{Command, Output};

use lra::npy::{self, Array};

fn lra(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lra"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Deterministic values in [-2, 2) without a random-number dependency.
fn values(len: usize, salt: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// softmax(q kᵀ/√d) v over real keys, with plain loops.
fn softmax_attention(q: &Array, k: &Array, v: &Array, real: &[f32]) -> Vec<f32> {
    let [b, h, n, d] = [q.shape[0], q.shape[1], q.shape[2], q.shape[3]];
    let at = |a: &Array, bi: usize, hi: usize, i: usize, j: usize| {
        a.values[((bi * h + hi) * n + i) * d + j]
    };
    let mut out = vec![0f32; b * h * n * d];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..n {
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..d)
                            .map(|c| (at(q, bi, hi, i, c) * at(k, bi, hi, j, c)) as f64)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let max = (0..n)
                    .filter(|&j| real[bi * n + j] != 0.0)
                    .map(|j| scores[j])
                    .fold(f64::MIN, f64::max);
                let weights: Vec<f64> = (0..n)
                    .map(|j| {
                        if real[bi * n + j] != 0.0 {
                            (scores[j] - max).exp()
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let total: f64 = weights.iter().sum();
                for c in 0..d {
                    let value: f64 = (0..n)
                        .map(|j| weights[j] * at(v, bi, hi, j, c) as f64)
                        .sum();
                    out[((bi * h + hi) * n + i) * d + c] = (value / total) as f32;
                }
            }
        }
    }
    out
}

/// The sweep CSV's records and their `relative_error` column.
fn sweep_rows(path: &Path) -> (Vec<csv::StringRecord>, Vec<f64>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let errors = rows.iter().map(|r| r[6].parse().unwrap()).collect();
    (rows, errors)
}

#[test]
fn npy_files_in_softmax_attention_out_number_for_number() {
    let dir = tempfile::tempdir().unwrap();
    let shape = vec![2, 3, 13, 8];
    let len = shape.iter().product();
    let arrays: Vec<Array> = (0..3)
        .map(|salt| Array {
            shape: shape.clone(),
            values: values(len, salt),
        })
        .collect();
    for (name, array) in ["q", "k", "v"].iter().zip(&arrays) {
        npy::write(&dir.path().join(format!("{name}.npy")), array).unwrap();
    }
    let real: Vec<f32> = (0..2 * 13)
        .map(|i| if i >= 13 + 9 { 0.0 } else { 1.0 })
        .collect();
    npy::write(
        &dir.path().join("m.npy"),
        &Array {
            shape: vec![2, 13],
            values: real.clone(),
        },
    )
    .unwrap();

    let args = [
        "approx", "-a", "softmax", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--mask",
        "m.npy", "--out", "o.npy",
    ];
    let out = lra(&args, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = npy::read(&dir.path().join("o.npy")).unwrap();
    assert_eq!(result.shape, shape);
    let expected = softmax_attention(&arrays[0], &arrays[1], &arrays[2], &real);
    for (i, (a, e)) in result.values.iter().zip(&expected).enumerate() {
        assert!((a - e).abs() < 1e-5, "element {i}: {a} vs {e}");
    }
}

#[test]
fn bad_npy_inputs_fail_with_the_file_and_expected_shape() {
    let dir = tempfile::tempdir().unwrap();
    let good = Array {
        shape: vec![1, 2, 5, 4],
        values: values(40, 1),
    };
    npy::write(&dir.path().join("q.npy"), &good).unwrap();
    npy::write(
        &dir.path().join("k.npy"),
        &Array {
            shape: vec![1, 2, 5, 3],
            values: values(30, 2),
        },
    )
    .unwrap();
    npy::write(&dir.path().join("v.npy"), &good).unwrap();
    npy::write(
        &dir.path().join("m.npy"),
        &Array {
            shape: vec![1, 4],
            values: vec![1.0; 4],
        },
    )
    .unwrap();
    let run = |k: &str, mask: &str| {
        let out = lra(
            &[
                "approx", "-a", "softmax", "--q", "q.npy", "--k", k, "--v", "v.npy", "--mask",
                mask, "--out", "o.npy",
            ],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let message = run("k.npy", "m.npy");
    assert!(
        message.contains("k.npy") && message.contains("head_dim"),
        "{message}"
    );
    npy::write(&dir.path().join("k.npy"), &good).unwrap();
    let message = run("k.npy", "m.npy");
    assert!(
        message.contains("m.npy") && message.contains("[1, 5]"),
        "{message}"
    );
    let message = run("missing.npy", "m.npy");
    assert!(message.contains("missing.npy"), "{message}");
    assert!(!dir.path().join("o.npy").exists());
}

#[test]
fn sweep_writes_one_row_per_value_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "approx",
        "-a",
        "local",
        "--sweep",
        "block_size=8,32,128",
        "--seq-len",
        "128",
        "--head-dim",
        "8",
        "--seeds",
        "2",
        "--out",
        "sweep",
    ];
    let out = lra(&args, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rows, errors) = sweep_rows(&dir.path().join("sweep/approx.csv"));
    assert_eq!(
        rows.iter().map(|r| r[2].to_string()).collect::<Vec<_>>(),
        ["8", "32", "128"]
    );
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
    assert!(
        errors[2] < 1e-5,
        "one block covering the sequence is exact: {errors:?}"
    );
    let svg = std::fs::read_to_string(dir.path().join("sweep/approx.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("block_size"));
}

#[test]
fn sweep_on_a_trained_runs_layer_uses_its_masked_qkv() {
    let dir = tempfile::tempdir().unwrap();
    let train = [
        "run",
        "-p",
        "tiny",
        "--steps",
        "2",
        "--set",
        "train.eval_every=1",
        "--set",
        "task.generate.train=64",
        "--set",
        "task.generate.val=16",
        "--set",
        "task.generate.test=16",
        "--data",
        "data",
        "--out",
        "runs",
        "-q",
    ];
    let out = lra(&train, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parent = dir.path().join("runs/listops/softmax");
    let run = std::fs::read_dir(&parent)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let run = run.to_str().unwrap();

    let sweep = [
        "approx",
        "-a",
        "local",
        "--from-run",
        run,
        "--batch",
        "4",
        "--layer",
        "1",
        "--seeds",
        "1",
        "--sweep",
        "block_size=2,1000",
        "--out",
        "sweep",
    ];
    let out = lra(&sweep, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rows, errors) = sweep_rows(&dir.path().join("sweep/approx.csv"));
    assert_eq!(&rows[0][3], "128", "sequence length of the tiny preset");
    assert!(
        errors[0] > 1e-3,
        "2-token blocks differ from full attention: {errors:?}"
    );
    assert!(
        errors[1] < 1e-5,
        "one block over the sequence is exact on the run's own masked Q, K, V: {errors:?}"
    );

    let out = lra(
        &["approx", "-a", "local", "--from-run", run, "--layer", "7"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the run has 2 layers"));
}
