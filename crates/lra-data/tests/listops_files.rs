//! Writing and reading split files: round trips, the exact release format, and malformed input.

use std::fs;
use std::path::{Path, PathBuf};

use lra_data::listops::{
    self, Expr, GenerateConfig, HEADER, Op, files_exist, generate, load, read_split, split_file,
    tokenize, write_dataset, write_split,
};
use lra_data::{DataError, Split};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const GOOD_LINE: &str = "( ( ( [MIN 4 ) 7 ) ] )\t4";

fn write_file(dir: &Path, content: &[u8]) -> PathBuf {
    let path = dir.join("basic_test.tsv");
    fs::write(&path, content).unwrap();
    path
}

/// Reads `content` as a split file and checks the error is a parse error on `line` whose
/// message contains `fragment` and whose Display names the file and line.
fn expect_parse_error(content: &str, line: usize, fragment: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), content.as_bytes());
    let error = read_split(&path).unwrap_err();
    let shown = error.to_string();
    match &error {
        DataError::Parse {
            path: error_path,
            line: error_line,
            message,
        } => {
            assert_eq!(error_path, &path);
            assert_eq!(*error_line, line, "{shown}");
            assert!(message.contains(fragment), "{shown:?} lacks {fragment:?}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(
        shown.starts_with(&format!("{}:{line}: ", path.display())),
        "{shown}"
    );
}

#[test]
fn write_dataset_then_load_gives_the_same_examples() {
    let cfg = GenerateConfig {
        train: 200,
        val: 30,
        test: 20,
        ..GenerateConfig::default()
    };
    let splits = generate(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("listops");
    assert!(!files_exist(&data_dir));
    write_dataset(&data_dir, &splits).unwrap();
    assert!(files_exist(&data_dir));

    let data = load(&data_dir).unwrap();
    assert_eq!(data.vocab_size, 16);
    assert_eq!(data.num_classes, 10);
    for (split, trees) in Split::ALL.into_iter().zip(&splits) {
        let examples = data.split(split);
        assert_eq!(examples.len(), trees.len());
        for (index, tree) in trees.iter().enumerate() {
            let tokens: Vec<u32> = examples.token_ids(index, 0).collect();
            assert_eq!(tokens, tokenize(&tree.to_lra_string()).unwrap());
            assert_eq!(
                examples.class_ids().unwrap()[index],
                u32::from(tree.value())
            );
            assert!(tokens.iter().all(|&id| id > 0 && id < 16));
        }
    }

    // Renamed into place: no temporary files are left behind.
    let mut names: Vec<String> = fs::read_dir(&data_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["basic_test.tsv", "basic_train.tsv", "basic_val.tsv"]
    );
}

#[test]
fn written_file_matches_the_release_format_byte_for_byte() {
    let tree = Expr::Apply(
        Op::Max,
        vec![
            Expr::Digit(2),
            Expr::Digit(9),
            Expr::Apply(Op::Min, vec![Expr::Digit(4), Expr::Digit(7)]),
            Expr::Digit(0),
        ],
    );
    let med = Expr::Apply(Op::Med, vec![Expr::Digit(2), Expr::Digit(5)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("basic_val.tsv");
    write_split(&path, &[tree, med]).unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "Source\tTarget\r\n\
         ( ( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )\t9\r\n\
         ( ( ( [MED 2 ) 5 ) ] )\t3\r\n"
    );

    // Overwriting replaces the whole file.
    write_split(&path, &[]).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "Source\tTarget\r\n");
}

#[test]
fn lf_and_crlf_line_endings_are_both_read() {
    let dir = tempfile::tempdir().unwrap();
    for content in [
        format!("{HEADER}\n{GOOD_LINE}\n{GOOD_LINE}"),
        format!("{HEADER}\r\n{GOOD_LINE}\r\n{GOOD_LINE}\r\n"),
    ] {
        let examples = read_split(&write_file(dir.path(), content.as_bytes())).unwrap();
        assert_eq!(examples.len(), 2);
        assert_eq!(examples[0].tokens, vec![11, 5, 8, 15]);
        assert_eq!(examples[0].label, 4);
    }
    let header_only = read_split(&write_file(dir.path(), b"Source\tTarget\r\n")).unwrap();
    assert!(header_only.is_empty());
}

#[test]
fn wrong_header() {
    expect_parse_error(
        &format!("Src\tTgt\n{GOOD_LINE}\n"),
        1,
        "expected the header",
    );
    expect_parse_error(&format!("{GOOD_LINE}\n"), 1, "expected the header");
}

#[test]
fn empty_file() {
    expect_parse_error("", 1, "found an empty file");
}

#[test]
fn line_without_a_tab() {
    expect_parse_error(
        &format!("{HEADER}\n{GOOD_LINE}\n( [MIN 4 7 ] ) 4\n"),
        3,
        "expected 2 tab-separated fields (Source, Target), found 1",
    );
    expect_parse_error(&format!("{HEADER}\n{GOOD_LINE}\t4\n"), 2, "found 3");
    expect_parse_error(&format!("{HEADER}\n\n{GOOD_LINE}\n"), 2, "found 1");
}

#[test]
fn wrong_label() {
    expect_parse_error(
        &format!("{HEADER}\n{GOOD_LINE}\n[SM 1 2 ]\t7\n"),
        3,
        "label 7 does not match the expression's value 3",
    );
}

#[test]
fn unknown_token() {
    expect_parse_error(
        &format!("{HEADER}\n( ( ( [FOO 4 ) 7 ) ] )\t4\n"),
        2,
        "unknown token `[FOO` at column 7",
    );
}

#[test]
fn target_that_is_not_a_digit() {
    for (target, shown) in [("x", "`x`"), ("10", "`10`"), ("", "``"), (" 4", "` 4`")] {
        expect_parse_error(
            &format!("{HEADER}\n[MIN 4 7 ]\t{target}\n"),
            2,
            &format!("target {shown} is not an integer 0-9"),
        );
    }
}

#[test]
fn unbalanced_brackets() {
    expect_parse_error(
        &format!("{HEADER}\n( ( ( [MIN 4 ) 7 ) )\t4\n"),
        2,
        "missing `]`: 1 operator(s) still open",
    );
    expect_parse_error(
        &format!("{HEADER}\n( ( ( [MIN 4 ) 7 ) ] ) ]\t4\n"),
        2,
        "unexpected `]` at column 24: the expression already ended",
    );
    expect_parse_error(&format!("{HEADER}\n] 4\t4\n"), 2, "no operator is open");
    expect_parse_error(&format!("{HEADER}\n( )\t4\n"), 2, "empty expression");
}

#[test]
fn invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), b"Source\tTarget\n[MIN 4 \xff ]\t4\n");
    match read_split(&path).unwrap_err() {
        DataError::Parse { line, message, .. } => {
            assert_eq!(line, 2);
            assert!(message.contains("UTF-8"), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("basic_train.tsv");
    let error = read_split(&path).unwrap_err();
    assert!(matches!(&error, DataError::Io { path: p, .. } if p == &path));
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: ", path.display()))
    );

    // load names the first missing split file.
    write_split(&path, &[]).unwrap();
    let error = load(dir.path()).unwrap_err();
    let val_path = split_file(dir.path(), Split::Val);
    assert!(
        matches!(&error, DataError::Io { path: p, .. } if p == &val_path),
        "{error}"
    );
    assert!(!files_exist(dir.path()));
}

#[test]
fn write_split_into_a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent").join("basic_train.tsv");
    assert!(matches!(
        write_split(&path, &[Expr::Digit(1)]),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn random_garbage_never_panics() {
    const PIECES: [&str; 14] = [
        "(", ")", " ", "  ", "\t", "\r", "\n", "[MIN", "[SM", "]", "7", "x", "é", "<pad>",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut outcomes = [0usize; 2];
    for _ in 0..2_000 {
        let mut content = String::from(if rng.random_bool(0.9) {
            "Source\tTarget\n"
        } else {
            ""
        });
        for _ in 0..rng.random_range(0..40) {
            content.push_str(PIECES[rng.random_range(0..PIECES.len())]);
        }
        let path = write_file(dir.path(), content.as_bytes());
        outcomes[usize::from(read_split(&path).is_ok())] += 1;
        let _ = listops::parse(&content);
    }
    assert!(outcomes[0] > 0);
}
