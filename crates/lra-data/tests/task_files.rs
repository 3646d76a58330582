//! The text, retrieval and image readers and the prepared cache, on small fixtures written in
//! each task's exact official format: read back through the real loaders, and malformed
//! versions of each give errors naming the file and line/record.

use std::fs;
use std::path::Path;

use lra_data::fixtures::{self, IMDB_REVIEWS_PER_CLASS};
use lra_data::{
    DataError, LabelKind, Labels, NamedSplit, OnProblem, Split, SplitBuilder, SplitData,
    SplitFormat, Target, TaskData, TokenWidth, cache, image, retrieval, text,
};

fn ids(split: &SplitData, index: usize, doc: usize) -> Vec<u32> {
    split.token_ids(index, doc).collect()
}

fn bytes_as_ids(text: &str) -> Vec<u32> {
    text.bytes().map(|b| u32::from(b) + 1).collect()
}

#[test]
fn imdb_reviews_are_utf8_bytes_plus_one_and_validation_is_the_test_split() {
    let root = tempfile::tempdir().unwrap();
    fixtures::write_imdb(root.path());
    let data = text::load(root.path(), OnProblem::Fail).unwrap();
    assert_eq!((data.vocab_size, data.num_classes), (257, 2));
    let per_part = 2 * IMDB_REVIEWS_PER_CLASS;
    assert_eq!(
        [data.train.len(), data.val.len(), data.test.len()],
        [per_part; 3]
    );
    // neg (label 0) first, then pos, each in review-id order; unsup/ is ignored.
    assert_eq!(data.train.class_ids().unwrap(), [0, 0, 0, 1, 1, 1]);
    for (part, split) in [("train", &data.train), ("test", &data.test)] {
        for (index, (class, id)) in [
            ("neg", 0),
            ("neg", 1),
            ("neg", 2),
            ("pos", 0),
            ("pos", 1),
            ("pos", 2),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                ids(split, index, 0),
                bytes_as_ids(&fixtures::imdb_review(part, class, id))
            );
        }
    }
    // "é" is two UTF-8 bytes, so two tokens.
    assert!(
        ids(&data.test, 0, 0)
            .windows(2)
            .any(|w| w == [0xC3 + 1, 0xA9 + 1])
    );
    assert_eq!(ids(&data.val, 4, 0), ids(&data.test, 4, 0));
}

#[test]
fn malformed_imdb_files_are_reported_with_their_path() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixtures::write_imdb(root.path());
    fs::write(dir.join("train/pos/9_8.txt"), "").unwrap();
    fs::write(dir.join("test/neg/5_9.txt"), "great").unwrap();
    fs::write(dir.join("test/pos/review.txt"), "no id").unwrap();

    let first = text::load(root.path(), OnProblem::Fail)
        .unwrap_err()
        .to_string();
    assert!(
        first.contains("train/pos/9_8.txt") && first.contains("empty review"),
        "{first}"
    );

    let mut found = Vec::new();
    let data = text::load(root.path(), OnProblem::Collect(&mut found)).unwrap();
    let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(messages[1].contains("test/neg/5_9.txt") && messages[1].contains("rating 9"));
    assert!(
        messages[2].contains("test/pos/review.txt") && messages[2].contains("<id>_<rating>.txt")
    );
    assert_eq!(data.train.len(), 6, "bad records are skipped");
}

#[test]
fn missing_imdb_data_names_the_expected_folders_and_the_source() {
    let root = tempfile::tempdir().unwrap();
    let error = text::load(root.path(), OnProblem::Fail).unwrap_err();
    assert!(matches!(error, DataError::Missing(_)));
    let message = error.to_string();
    for expected in ["train/neg", "test/pos", "aclImdb", "aclImdb_v1.tar.gz"] {
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn cifar_records_become_tf_grayscale_pixels_with_a_90_10_train_val_split() {
    let root = tempfile::tempdir().unwrap();
    fixtures::write_cifar(root.path(), 2, 3);
    let data = image::load(root.path(), OnProblem::Fail).unwrap();
    assert_eq!((data.vocab_size, data.num_classes), (256, 10));
    // 10 training records: train[:90%] = 9, the last one validates.
    assert_eq!(
        [data.train.len(), data.val.len(), data.test.len()],
        [9, 1, 3]
    );
    let expected = |record: usize| -> Vec<u32> {
        (0..image::PIXELS)
            .map(|p| {
                let (r, g, b) = fixtures::cifar_pixel(record, p);
                u32::from(image::grayscale(r, g, b))
            })
            .collect()
    };
    assert_eq!(ids(&data.train, 3, 0), expected(3));
    assert_eq!(ids(&data.val, 0, 0), expected(9));
    assert_eq!(ids(&data.test, 2, 0), expected(2));
    assert_eq!(data.train.class_ids().unwrap(), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(data.val.class_ids().unwrap(), [9]);
}

#[test]
fn truncated_cifar_files_and_bad_labels_name_file_and_record() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixtures::write_cifar(root.path(), 2, 2);
    let batch = dir.join("data_batch_3.bin");
    let mut bytes = fs::read(&batch).unwrap();
    bytes.truncate(image::RECORD_LEN + 100);
    fs::write(&batch, bytes).unwrap();
    let test = dir.join("test_batch.bin");
    let mut bytes = fs::read(&test).unwrap();
    bytes[0] = 10;
    fs::write(&test, bytes).unwrap();

    let first = image::load(root.path(), OnProblem::Fail)
        .unwrap_err()
        .to_string();
    assert!(
        first.contains("data_batch_3.bin: record 1") && first.contains("truncated"),
        "{first}"
    );
    let mut found = Vec::new();
    image::load(root.path(), OnProblem::Collect(&mut found)).unwrap();
    let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages[1].contains("test_batch.bin: record 0: label 10"),
        "{messages:#?}"
    );
}

#[test]
fn aan_pairs_are_found_in_the_nested_release_and_read_as_byte_pairs() {
    let root = tempfile::tempdir().unwrap();
    fixtures::write_aan(root.path());
    let data = retrieval::load(root.path(), OnProblem::Fail).unwrap();
    assert_eq!((data.vocab_size, data.num_classes), (257, 2));
    assert_eq!(data.docs_per_example(), 2);
    for split in Split::ALL {
        let pairs = fixtures::aan_pairs(split);
        let read = data.split(split);
        assert_eq!(read.len(), pairs.len());
        for (index, (label, first, second)) in pairs.iter().enumerate() {
            assert_eq!(read.class_ids().unwrap()[index], *label);
            assert_eq!(ids(read, index, 0), bytes_as_ids(first));
            assert_eq!(ids(read, index, 1), bytes_as_ids(second));
        }
    }
}

#[test]
fn malformed_aan_lines_name_file_and_line() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixtures::write_aan(root.path());
    let path = dir.join("new_aan_pairs.eval.tsv");
    fs::write(
        &path,
        "1\ta\tb\tc\td\n1\ta\tb\tc\n3\ta\tb\tc\td\n0\ta\tb\tc\td\n",
    )
    .unwrap();
    let first = retrieval::load(root.path(), OnProblem::Fail)
        .unwrap_err()
        .to_string();
    assert!(
        first.contains("new_aan_pairs.eval.tsv:2:") && first.contains("found 4"),
        "{first}"
    );
    let mut found = Vec::new();
    let data = retrieval::load(root.path(), OnProblem::Collect(&mut found)).unwrap();
    assert_eq!(found.len(), 2);
    assert!(
        found[1]
            .to_string()
            .contains("eval.tsv:3: label 3 is not a class"),
        "{}",
        found[1]
    );
    assert_eq!(data.val.len(), 2);
}

fn assert_same_task(a: &TaskData, b: &TaskData) {
    assert_eq!((a.vocab_size, a.num_classes), (b.vocab_size, b.num_classes));
    for split in Split::ALL {
        let (x, y) = (a.split(split), b.split(split));
        assert_eq!(x.len(), y.len());
        assert_eq!(x.labels(), y.labels());
        assert_eq!(x.docs_per_example(), y.docs_per_example());
        for index in 0..x.len() {
            for doc in 0..x.docs_per_example() {
                assert_eq!(ids(x, index, doc), ids(y, index, doc));
            }
        }
    }
}

#[test]
fn the_cache_reads_back_every_task_exactly() {
    let root = tempfile::tempdir().unwrap();
    fixtures::write_imdb(root.path());
    fixtures::write_cifar(root.path(), 2, 2);
    fixtures::write_aan(root.path());
    let tasks = [
        ("text", text::load(root.path(), OnProblem::Fail).unwrap()),
        ("image", image::load(root.path(), OnProblem::Fail).unwrap()),
        (
            "retrieval",
            retrieval::load(root.path(), OnProblem::Fail).unwrap(),
        ),
    ];
    for (name, data) in &tasks {
        let dir = cache::cache_dir(root.path(), name);
        assert!(!cache::exists(&dir, &[]));
        cache::write(&dir, name, data).unwrap();
        assert!(cache::exists(&dir, &[]));
        assert_same_task(data, &cache::read(&dir, name, &[]).unwrap());
    }
}

/// `bytes` with the cache's CRC-32 trailer recomputed.
fn resigned(bytes: &[u8]) -> Vec<u8> {
    let content = &bytes[..bytes.len() - 4];
    [content, &crc32fast::hash(content).to_le_bytes()].concat()
}

#[test]
fn every_flipped_byte_of_a_cache_file_is_an_error_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let (dir, file) = written_cache(root.path());
    let good = fs::read(&file).unwrap();
    for at in 0..good.len() {
        let mut flipped = good.clone();
        flipped[at] ^= 0x10;
        fs::write(&file, &flipped).unwrap();
        let message = cache_error(&dir, "retrieval");
        assert!(message.contains("val.lrac"), "byte {at}: {message}");
        if at >= 72 {
            assert!(
                message.contains("checksum mismatch"),
                "byte {at}: {message}"
            );
        }
    }
    fs::write(&file, &good).unwrap();
    assert!(cache::read(&dir, "retrieval", &[]).is_ok());
}

/// A cache of the retrieval fixture, and the path of its val file.
fn written_cache(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    fixtures::write_aan(root);
    let data = retrieval::load(root, OnProblem::Fail).unwrap();
    let dir = cache::cache_dir(root, "retrieval");
    cache::write(&dir, "retrieval", &data).unwrap();
    let file = cache::split_path(&dir, "val");
    (dir, file)
}

fn cache_error(dir: &Path, task: &str) -> String {
    let error = cache::read(dir, task, &[]).unwrap_err();
    assert!(matches!(error, DataError::Cache { .. }), "{error:?}");
    error.to_string()
}

#[test]
fn truncated_stale_or_foreign_caches_are_errors_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let (dir, file) = written_cache(root.path());
    let good = fs::read(&file).unwrap();

    fs::write(&file, &good[..good.len() - 1]).unwrap();
    let message = cache_error(&dir, "retrieval");
    assert!(
        message.contains("val.lrac") && message.contains("truncated"),
        "{message}"
    );
    assert!(message.contains("lra data prepare"), "{message}");

    fs::write(&file, &good[..40]).unwrap();
    assert!(cache_error(&dir, "retrieval").contains("shorter than the 96-byte header"));

    let mut stale = good.clone();
    stale[8] = 2; // format version 2: one byte per token, no token types
    fs::write(&file, &stale).unwrap();
    assert!(cache_error(&dir, "retrieval").contains("version 2; this lra reads version 3"));

    // A wrong label behind a valid checksum (a writer bug, not a flipped bit).
    let mut bad_label = good.clone();
    bad_label[96] = 7;
    fs::write(&file, resigned(&bad_label)).unwrap();
    assert!(cache_error(&dir, "retrieval").contains("example 0 has label 7"));

    let mut magic = good.clone();
    magic[0] = b'X';
    fs::write(&file, &magic).unwrap();
    assert!(cache_error(&dir, "retrieval").contains("not an lra cache file"));

    fs::write(&file, &good).unwrap();
    assert!(cache::read(&dir, "retrieval", &[]).is_ok());
    assert!(
        cache_error(&dir, "text").contains("task `retrieval`, expected the train split of `text`")
    );
}

/// A GLUE-like task: two-byte word pieces with token types, scores, an unlabelled test split and
/// a named extra split.
fn word_piece_task() -> TaskData {
    let split = |labels: LabelKind, examples: &[(&[u32], Option<Target>)]| {
        let mut builder = SplitBuilder::with_format(SplitFormat {
            docs_per_example: 1,
            id_offset: 0,
            width: TokenWidth::U16,
            labels,
            token_types: true,
        });
        for (ids, target) in examples {
            let types: Vec<u32> = (0..ids.len())
                .map(|i| u32::from(i * 2 >= ids.len()))
                .collect();
            builder.push_ids(&[ids], Some(&types), *target).unwrap();
        }
        builder.finish()
    };
    let scored = |score| Some(Target::Score(score));
    let mut data = TaskData::new(
        split(
            LabelKind::Scores,
            &[
                (&[101, 30_000, 102], scored(4.5)),
                (&[101, 7, 102, 9, 102], scored(0.25)),
            ],
        ),
        split(LabelKind::Scores, &[(&[101, 102], scored(1.0))]),
        split(LabelKind::Unlabelled, &[(&[101, 2_000, 102], None)]),
        30_522,
        1,
    );
    data.extra.push(NamedSplit {
        name: "validation_mismatched".into(),
        data: split(LabelKind::Scores, &[(&[101, 5, 102], scored(3.0))]),
    });
    data
}

#[test]
fn wide_tokens_types_scores_unlabelled_and_named_splits_round_trip_through_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let data = word_piece_task();
    let dir = cache::cache_dir(root.path(), "stsb");
    cache::write(&dir, "stsb", &data).unwrap();
    let extra = ["validation_mismatched"];
    assert!(cache::exists(&dir, &extra) && !cache::exists(&dir, &["test_mismatched"]));
    let read = cache::read(&dir, "stsb", &extra).unwrap();
    assert_eq!((read.vocab_size, read.num_classes), (30_522, 1));
    let pairs = data.named_splits().zip(read.named_splits());
    for ((name, written), (read_name, read)) in pairs {
        assert_eq!(name, read_name);
        assert_eq!(written.format(), read.format());
        assert_eq!(written.labels(), read.labels());
        for index in 0..written.len() {
            assert_eq!(ids(written, index, 0), ids(read, index, 0));
            assert_eq!(written.token_types(index, 0), read.token_types(index, 0));
        }
    }
    assert_eq!(ids(&read.train, 0, 0), [101, 30_000, 102]);
    assert_eq!(read.train.token_types(1, 0), Some(&[0u8, 0, 0, 1, 1][..]));
    assert_eq!(read.test.labels(), &Labels::Unlabelled);
}

#[test]
fn a_word_piece_id_outside_the_vocabulary_is_refused_behind_a_valid_checksum() {
    let root = tempfile::tempdir().unwrap();
    let mut data = word_piece_task();
    data.vocab_size = 30_000; // the training split holds id 30,000
    let dir = cache::cache_dir(root.path(), "stsb");
    cache::write(&dir, "stsb", &data).unwrap();
    let error = cache::read(&dir, "stsb", &["validation_mismatched"]).unwrap_err();
    assert!(
        error.to_string().contains("train.lrac")
            && error
                .to_string()
                .contains("outside the vocabulary of 30000 ids"),
        "{error}"
    );
}
