//! Writers of tiny data sets in each task's exact official format (a few KB each), for tests and
//! demos: the files are read back through the real readers, so they must be byte-for-byte what
//! the official sources hold.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Split;
use crate::image::{PIXELS, TEST_FILE, TRAIN_FILES};
use crate::retrieval;

/// Reviews written per class and part by [`write_imdb`].
pub const IMDB_REVIEWS_PER_CLASS: usize = 3;

/// An `aclImdb/` folder under `root` with [`IMDB_REVIEWS_PER_CLASS`] reviews in each of
/// `{train,test}/{neg,pos}` (file names `<id>_<rating>.txt`, including a non-ASCII review) and an
/// `unsup/` folder the reader must ignore. Returns the `aclImdb/` path.
pub fn write_imdb(root: &Path) -> PathBuf {
    let dir = root.join("aclImdb");
    for part in ["train", "test"] {
        for (class, ratings) in [("neg", [1, 3, 4]), ("pos", [7, 9, 10])] {
            let class_dir = dir.join(part).join(class);
            fs::create_dir_all(&class_dir).expect("create IMDB fixture folder");
            for (id, rating) in ratings.into_iter().enumerate() {
                let text = imdb_review(part, class, id);
                fs::write(class_dir.join(format!("{id}_{rating}.txt")), text)
                    .expect("write IMDB review");
            }
        }
        fs::write(dir.join(part).join("urls_pos.txt"), "http://example.org\n")
            .expect("write IMDB url list");
    }
    let unsup = dir.join("train/unsup");
    fs::create_dir_all(&unsup).expect("create unsup folder");
    fs::write(unsup.join("0_0.txt"), "unlabelled").expect("write unsup review");
    dir
}

/// The text [`write_imdb`] writes for review `id` of a class.
pub fn imdb_review(part: &str, class: &str, id: usize) -> String {
    format!(
        "{part} {class} review {id}: café<br /><br />{}",
        "ok ".repeat(id * 5)
    )
}

/// A `cifar-10-batches-bin/` folder under `root` whose five training files hold `per_file`
/// records each and whose test file holds `test` records. Record `i` (counted over all train
/// files, then the test file from 0) has label `i % 10` and pixel `(r, g, b)` at position `p` =
/// [`cifar_pixel`]`(i, p)`. Returns the folder.
pub fn write_cifar(root: &Path, per_file: usize, test: usize) -> PathBuf {
    let dir = root.join("cifar-10-batches-bin");
    fs::create_dir_all(&dir).expect("create CIFAR fixture folder");
    for (file_index, name) in TRAIN_FILES.iter().enumerate() {
        let first = file_index * per_file;
        fs::write(dir.join(name), cifar_records(first..first + per_file)).expect("write batch");
    }
    fs::write(dir.join(TEST_FILE), cifar_records(0..test)).expect("write test batch");
    fs::write(dir.join("batches.meta.txt"), "airplane\nautomobile\n").expect("write meta");
    dir
}

/// Colour of pixel `p` of fixture record `i`.
pub fn cifar_pixel(i: usize, p: usize) -> (u8, u8, u8) {
    (
        (i * 7 + p) as u8,
        (i * 13 + 3 * p) as u8,
        (255 - p % 256) as u8,
    )
}

fn cifar_records(records: std::ops::Range<usize>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in records {
        bytes.push((i % 10) as u8);
        for channel in 0..3 {
            bytes.extend((0..PIXELS).map(|p| {
                let (r, g, b) = cifar_pixel(i, p);
                [r, g, b][channel]
            }));
        }
    }
    bytes
}

/// The AAN pairs of split `split` in [`write_aan`]: `(label, text1, text2)`.
pub fn aan_pairs(split: Split) -> Vec<(u32, String, String)> {
    let count = match split {
        Split::Train => 6,
        Split::Val | Split::Test => 2,
    };
    (0..count)
        .map(|i| {
            let label = (i % 2) as u32;
            let first = format!(
                "{} paper {i} abstract: we propose ü {}",
                split.name(),
                "x".repeat(i)
            );
            let second = format!("cited work {i} \"quoted\" text");
            (label, first, second)
        })
        .collect()
}

/// The LRA release's nested layout under `root` with `lra_release/lra_release/tsv_data/
/// new_aan_pairs.{train,eval,test}.tsv` holding [`aan_pairs`] (no header; labels written as the
/// release does, e.g. `1`, and one as `0.0` to exercise float parsing). Returns the tsv folder.
pub fn write_aan(root: &Path) -> PathBuf {
    let dir = root.join("lra_release/lra_release/tsv_data");
    fs::create_dir_all(&dir).expect("create AAN fixture folder");
    for split in Split::ALL {
        let mut text = String::new();
        for (i, (label, first, second)) in aan_pairs(split).into_iter().enumerate() {
            let label = if i == 0 {
                format!("{label}.0")
            } else {
                label.to_string()
            };
            text.push_str(&format!("{label}\taan-{i}a\taan-{i}b\t{first}\t{second}\n"));
        }
        fs::write(dir.join(retrieval::split_file(split)), text).expect("write AAN split");
    }
    dir
}

/// The fixtures committed under `crates/lra-data/tests/fixtures/` (made once by the scripts in
/// `scripts/`): tiny GLUE data in both layouts (`glue_data/`, `glue-hf/`, the same examples) and
/// tokenizer checkpoints with the reference library's ids (`tokenizers/`). Other crates' tests
/// can read them from here.
pub fn committed_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A learnable SST-2 in the official `glue_data/SST-2/` layout under `root` (header lines,
/// `sentence<TAB>label`; test `index<TAB>sentence`): short sentences of words in the committed
/// `bert-uncased` fixture tokenizer's vocabulary, positive (1) exactly when they contain "dog" and
/// negative when they contain "cat" instead, so a small model can beat the majority class.
/// Deterministic; returns the `glue_data/` folder.
pub fn write_keyword_sst2(root: &Path, train: usize, dev: usize, test: usize) -> PathBuf {
    const FILLER: [&str; 10] = [
        "the", "a", "sat", "on", "mat", "ran", "play", "hello", "world", "paris",
    ];
    let dir = root.join("glue_data");
    let task_dir = dir.join("SST-2");
    fs::create_dir_all(&task_dir).expect("create SST-2 fixture folder");
    // A small linear congruential generator: fixtures must not depend on a crate's RNG stream.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % bound
    };
    let mut sentence = |label: usize| {
        let len = 3 + next(5);
        let key = next(len + 1);
        let mut words: Vec<&str> = (0..len).map(|_| FILLER[next(FILLER.len())]).collect();
        words.insert(key, if label == 1 { "dog" } else { "cat" });
        words.join(" ")
    };
    let mut labelled = String::from("sentence\tlabel\n");
    let mut dev_text = labelled.clone();
    for i in 0..train + dev {
        let label = usize::from(i % 5 < 2); // 40 % positive: the majority class is 0
        let line = format!("{} \t{label}\n", sentence(label));
        if i < train {
            labelled.push_str(&line);
        } else {
            dev_text.push_str(&line);
        }
    }
    let mut test_text = String::from("index\tsentence\n");
    for i in 0..test {
        test_text.push_str(&format!("{i}\t{}\n", sentence(i % 2)));
    }
    for (file, text) in [
        ("train.tsv", labelled),
        ("dev.tsv", dev_text),
        ("test.tsv", test_text),
    ] {
        fs::write(task_dir.join(file), text).expect("write SST-2 fixture");
    }
    dir
}
