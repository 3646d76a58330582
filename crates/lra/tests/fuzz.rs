//! The harness's readers of outside input fed truncated, mutated and random files
//! (`lra_data::fuzz`, `LRA_FUZZ_CASES` cases each): `.npy` arrays, experiment and sweep TOML,
//! checkpoints. Each answers with a value or an error naming the file, never a panic.

use std::fs;
use std::path::Path;

use burn::optim::AdamWConfig;
use lra::checkpoint::{self, TrainState};
use lra::config::{self, ExperimentConfig};
use lra::npy::{self, Array};
use lra::sweep::SweepFile;
use lra_data::fuzz::{self, Verdict, error_names};

/// `Ok(true)` for a value; for an error, whether its message (with causes) names `path`.
fn named<T>(result: anyhow::Result<T>, path: &Path) -> Verdict {
    match result {
        Ok(_) => Ok(true),
        Err(error) => error_names(&format!("{error:#}"), &path.display().to_string()),
    }
}

#[test]
fn npy_reader_never_panics_nor_trusts_the_header_shape() {
    let dir = scratch();
    let path = dir.path().join("q.npy");
    let samples = [
        Array {
            shape: vec![2, 3],
            values: vec![1.0, -2.5, 0.0, 3.0, 4.0, 5.0],
        },
        Array {
            shape: vec![1, 1, 2, 2],
            values: vec![0.5; 4],
        },
    ]
    .iter()
    .map(|array| {
        npy::write(&path, array).unwrap();
        fs::read(&path).unwrap()
    })
    .collect();
    fuzz::run("npy", 11, samples, |input| {
        fs::write(&path, input).unwrap();
        match npy::read(&path) {
            Ok(array) if array.shape.iter().product::<usize>() != array.values.len() => {
                Err(format!(
                    "shape {:?} holds {} values",
                    array.shape,
                    array.values.len()
                ))
            }
            result => named(result, &path),
        }
    });
}

#[test]
fn experiment_config_reader_never_panics() {
    let dir = scratch();
    let path = dir.path().join("experiment.toml");
    let samples = [
        "tiny/listops",
        "tiny/pathx",
        "lra-jax/listops",
        "lra-pytorch/retrieval",
        "s4/image",
    ]
    .iter()
    .map(|preset| {
        let file = config::preset_dirs()[1].join(format!("{preset}.toml"));
        fs::read(file).unwrap()
    })
    .collect();
    fuzz::run("experiment-toml", 12, samples, |input| {
        fs::write(&path, input).unwrap();
        let loaded = config::load_file(&path);
        if let Ok(config) = &loaded {
            // The mixer settings are parsed only here; any answer but a panic will do.
            let _ = config.clone().resolved();
        }
        named(loaded, &path)
    });
}

#[test]
fn sweep_file_reader_never_panics() {
    let dir = scratch();
    let path = dir.path().join("sweep.toml");
    let sweeps = config::preset_dirs()[1].join("sweeps");
    let samples = ["lra-table1.toml", "lra-pytorch.toml", "s4-table.toml"]
        .iter()
        .map(|name| fs::read(sweeps.join(name)).unwrap())
        .collect();
    fuzz::run("sweep-toml", 13, samples, |input| {
        fs::write(&path, input).unwrap();
        let loaded = SweepFile::load(&path);
        if let Ok(sweep) = &loaded {
            let cells = sweep.cells();
            let expected = sweep.rows.len() * sweep.tasks.len() * sweep.seeds.len();
            if cells.len() != expected {
                return Err(format!("{} cells, expected {expected}", cells.len()));
            }
        }
        named(loaded, &path)
    });
}

/// A temporary folder in memory where there is one: each case writes files, and on this
/// project's machines that is 30 times faster than the disk.
fn scratch() -> tempfile::TempDir {
    let memory = Path::new("/dev/shm");
    if memory.is_dir() {
        tempfile::tempdir_in(memory).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// A real checkpoint of a very small model in `dir`; returns its config and the files' names and
/// contents (all shorter than the fuzzer's inputs may grow).
fn saved_checkpoint(dir: &Path) -> (ExperimentConfig, Vec<(String, Vec<u8>)>) {
    let small = ["model.d_model=16", "model.d_ffn=32", "model.head_hidden=16"].map(String::from);
    let config = config::load_preset("tiny")
        .unwrap()
        .with_overrides(&small)
        .unwrap()
        .resolved()
        .unwrap();
    let device = lra::device::parse("cpu").unwrap().autodiff();
    let model = config.classifier(16, 10).unwrap().init(&device);
    let state = TrainState {
        step: 7,
        best_value: 0.25,
        best_step: 5,
        ..TrainState::default()
    };
    checkpoint::save(dir, &model, &AdamWConfig::new().init(), &state).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    (config, files)
}

/// Loads the checkpoint in `dir` the way a resumed run does.
fn restore(dir: &Path, config: &ExperimentConfig) -> anyhow::Result<TrainState> {
    let device = lra::device::parse("cpu").unwrap().autodiff();
    let found = checkpoint::find(dir)?.ok_or_else(|| anyhow::anyhow!("no checkpoint"))?;
    found.restore_model(config.classifier(16, 10)?.init(&device))?;
    found.restore_optimizer(AdamWConfig::new().init())?;
    Ok(found.state)
}

/// Fuzzes one file of the checkpoint at a time (the file picked by the input's first byte);
/// `resign` rewrites `checksums.json` to match, so that the readers behind the checksum are hit.
fn fuzz_checkpoint(name: &str, seed: u64, resign: bool) {
    let root = scratch();
    let dir = root.path().join("checkpoint");
    let (config, files) = saved_checkpoint(&dir);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["checksums.json", "model.bpk", "optimizer.bpk", "state.json"]
    );
    let samples = (0..files.len() as u8)
        .map(|which| [vec![which], files[which as usize].1.clone()].concat())
        .collect();
    fuzz::run(name, seed, samples, |input| {
        let Some((&which, contents)) = input.split_first() else {
            return Ok(false);
        };
        let (file_name, original) = &files[usize::from(which) % files.len()];
        for (name, bytes) in &files {
            fs::write(dir.join(name), bytes).unwrap();
        }
        fs::write(dir.join(file_name), contents).unwrap();
        if resign && file_name != "checksums.json" {
            resign_checkpoint(&dir);
        }
        // A checksum list may change its spacing and still say the same; any other change must
        // be caught. Errors name the checkpoint folder (a wrong checksum names the file it fails).
        match restore(&dir, &config) {
            Ok(_)
                if !resign && file_name != "checksums.json" && contents != original.as_slice() =>
            {
                Err(format!("a changed {file_name} was accepted"))
            }
            result => named(result, &dir),
        }
    });
}

/// Rewrites `checksums.json` to match the files as they are now.
fn resign_checkpoint(dir: &Path) {
    let sums: std::collections::BTreeMap<&str, u32> = ["model.bpk", "optimizer.bpk", "state.json"]
        .into_iter()
        .map(|name| (name, crc32fast::hash(&fs::read(dir.join(name)).unwrap())))
        .collect();
    fs::write(
        dir.join("checksums.json"),
        serde_json::to_vec(&sums).unwrap(),
    )
    .unwrap();
}

#[test]
fn checkpoint_reader_rejects_every_changed_file() {
    fuzz_checkpoint("checkpoint", 14, false);
}

#[test]
fn checkpoint_reader_never_panics_behind_a_valid_checksum() {
    fuzz_checkpoint("checkpoint-resigned", 15, true);
}

/// A copy of the tiny BERT checkpoint fixture in a scratch folder.
fn bert_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = scratch();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pretrained/bert");
    let copy = dir.path().join("bert");
    fs::create_dir_all(&copy).unwrap();
    for entry in fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    (dir, copy)
}

/// Fuzzes one file of the tiny BERT checkpoint folder (`seed` picks the draws), loading the
/// folder the way `--init` does after each change.
fn fuzz_pretrained_file(name: &str, seed: u64) {
    use lra_data::tokenizer::PretrainedTokenizer;
    use lra_model::MixerKind;
    use lra_model::pretrained::Checkpoint;

    let (_dir, folder) = bert_copy();
    let device = burn::tensor::Device::flex();
    let path = folder.join(name);
    let original = fs::read(&path).unwrap();
    fuzz::run(name, seed, vec![original.clone()], |input| {
        fs::write(&path, input).unwrap();
        let verdict = if name == "tokenizer.json" {
            named(
                PretrainedTokenizer::from_checkpoint(&folder).map_err(anyhow::Error::from),
                &path,
            )
        } else {
            // A size changed in config.json surfaces as a weight whose shape does not fit, an
            // error naming the weights file: either file of the folder will do.
            let loaded = Checkpoint::open(&folder).and_then(|checkpoint| {
                checkpoint.masked_lm(MixerKind::Softmax.default_config(), 16, false, &device)
            });
            named(loaded.map_err(anyhow::Error::from), &folder)
        };
        fs::write(&path, &original).unwrap();
        verdict
    });
}

#[test]
fn pretrained_config_reader_never_panics() {
    fuzz_pretrained_file("config.json", 20);
}

#[test]
fn pretrained_weights_reader_never_panics() {
    fuzz_pretrained_file("model.safetensors", 21);
}

#[test]
fn pretrained_tokenizer_reader_never_panics() {
    fuzz_pretrained_file("tokenizer.json", 22);
}

#[test]
fn corpus_reader_never_panics() {
    let dir = scratch();
    let path = dir.path().join("corpus.jsonl");
    let sample =
        b"{\"text\": \"the cat sat\"}\n{\"text\": \"caf\\u00e9 d\\u00e9j\\u00e0 vu\", \"id\": 2}\n";
    fuzz::run("corpus-jsonl", 23, vec![sample.to_vec()], |input| {
        fs::write(&path, input).unwrap();
        named(
            lra_data::corpus::read_documents(&path).map_err(anyhow::Error::from),
            &path,
        )
    });
}
