//! Every reader of outside input in this crate fed truncated, mutated and random files
//! (`lra_data::fuzz`, `LRA_FUZZ_CASES` cases each): each answers with data or an error naming the
//! file (and the line or record where it can), never a panic.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use lra_data::fuzz::{self, Verdict, error_names};
use lra_data::pathfinder::{self, Layout, Record, Variant, encode_gray};
use lra_data::{DataError, OnProblem, Split, cache, fixtures, image, listops, retrieval, text};

/// `Ok(true)` for a value; for an error, whether its message names `path`.
fn named<T>(result: lra_data::Result<T>, path: &Path) -> Verdict {
    match result {
        Ok(_) => Ok(true),
        Err(error) => error_names(&error.to_string(), &path.display().to_string()),
    }
}

/// A parse error must also say which line: `path:line: ...` with a line the file has.
fn named_with_line<T>(result: lra_data::Result<T>, path: &Path, input: &[u8]) -> Verdict {
    if let Err(DataError::Parse { line, .. }) = &result {
        let lines = input.split(|&b| b == b'\n').count();
        if *line == 0 || *line > lines {
            return Err(format!("line {line} of a {lines}-line file"));
        }
    }
    named(result, path)
}

#[test]
fn listops_tsv_reader_never_panics() {
    let dir = scratch();
    let path = dir.path().join("basic_train.tsv");
    let samples = [
        "Source\tTarget\r\n[MAX 2 9 ]\t9\r\n( ( ( [SM 2 ( [MIN 3 4 ] ) ] ) ) )\t5\r\n",
        "Source\tTarget\n[MED 1 2 3 ]\t2\n[MIN [MAX 0 1 ] 7 ]\t1\n",
        "Source\tTarget\r\n( [SM ( [SM 9 9 ] ) 9 ] )\t7\r\n",
    ];
    fuzz::run("listops-tsv", 1, bytes_of(&samples), |input| {
        fs::write(&path, input).unwrap();
        named_with_line(listops::read_split(&path), &path, input)
    });
}

#[test]
fn aan_tsv_reader_never_panics() {
    let root = scratch();
    let tsv = fixtures::write_aan(root.path());
    let path = tsv.join(retrieval::split_file(Split::Train));
    let samples = vec![
        fs::read(&path).unwrap(),
        b"1.0\ta\tb\tc\td\n0\tx\ty\t\t\n".to_vec(),
    ];
    fuzz::run("aan-tsv", 2, samples, |input| {
        fs::write(&path, input).unwrap();
        let mut found = Vec::new();
        let collected = retrieval::read_split(&path, &mut OnProblem::Collect(&mut found));
        if let Some(problem) = found.iter().find(|p| !matches!(p, DataError::Parse { .. })) {
            return Err(format!("a problem without its line: {problem}"));
        }
        for problem in found {
            named_with_line::<()>(Err(problem), &path, input)?;
        }
        named(collected, &path)?;
        named_with_line(
            retrieval::read_split(&path, &mut OnProblem::Fail),
            &path,
            input,
        )
    });
}

#[test]
fn imdb_reader_never_panics_on_any_review_file() {
    let root = scratch();
    let part = root.path().join("train");
    // Each input is `<file name>\n<review>`; the name's `/` and NUL bytes (which no file name can
    // hold) become `_`, and it is cut to 255 bytes, the longest name Linux allows.
    let samples = [
        "3_1.txt\nA dull film.",
        "12_4.txt\ncaf\u{e9} <br /> ok",
        "7_2.txt\n",
    ];
    fuzz::run("imdb", 3, bytes_of(&samples), |input| {
        let (name, review) = match input.iter().position(|&b| b == b'\n') {
            Some(at) => (&input[..at], &input[at + 1..]),
            None => (input, &[][..]),
        };
        let name: Vec<u8> = name
            .iter()
            .take(255)
            .map(|&b| if b == b'/' || b == 0 { b'_' } else { b })
            .collect();
        let _ = fs::remove_dir_all(&part);
        for class in text::CLASSES {
            fs::create_dir_all(part.join(class)).unwrap();
        }
        fs::write(part.join("pos/1_9.txt"), "A fine film.").unwrap();
        let file = match name.as_slice() {
            b"" | b"." | b".." => return Ok(false),
            name => part.join("neg").join(std::ffi::OsStr::from_bytes(name)),
        };
        fs::write(&file, review).unwrap();
        let result = text::read_part(&part, &mut OnProblem::Fail);
        match &result {
            Ok(split) if split.len() != 1 + usize::from(!review.is_empty() && is_review(&file)) => {
                Err(format!(
                    "{} reviews read from {}",
                    split.len(),
                    file.display()
                ))
            }
            _ => named(result, &part),
        }
    });
}

/// Whether the IMDB reader should take `file` as a negative review: `<id>_<1-4>.txt`.
fn is_review(file: &Path) -> bool {
    let name = file.file_name().unwrap().to_string_lossy();
    let Some(stem) = name.strip_suffix(".txt") else {
        return false;
    };
    stem.split_once('_').is_some_and(|(id, rating)| {
        id.parse::<u64>().is_ok() && rating.parse::<u8>().is_ok_and(|r| (1..=4).contains(&r))
    })
}

#[test]
fn cifar_reader_never_panics() {
    let root = scratch();
    let dir = fixtures::write_cifar(root.path(), 2, 2);
    let path = dir.join(image::TEST_FILE);
    let samples = vec![
        fs::read(&path).unwrap(),
        fs::read(&path).unwrap()[..image::RECORD_LEN].to_vec(),
    ];
    fuzz::run("cifar", 4, samples, |input| {
        fs::write(&path, input).unwrap();
        let mut images = 0;
        let result = image::read_file(&path, &mut OnProblem::Fail, |pixels, label| {
            assert!(pixels.len() == image::PIXELS && label < 10);
            images += 1;
        });
        if let Err(DataError::Record { record, .. }) = &result
            && *record > input.len() / image::RECORD_LEN
        {
            return Err(format!("record {record} of a {}-byte file", input.len()));
        }
        if result.is_ok() && images != input.len() / image::RECORD_LEN {
            return Err(format!("{images} images from {} bytes", input.len()));
        }
        named(result, &path)
    });
}

/// A one-record Pathfinder set of `side`-pixel images in `dir`.
fn pathfinder_layout(dir: &Path, side: u32) -> (Layout, Record) {
    fs::create_dir_all(dir.join("metadata")).unwrap();
    fs::create_dir_all(dir.join("imgs/0")).unwrap();
    let metadata = dir.join("metadata/0.npy");
    fs::write(&metadata, "imgs/0 sample_0.png 0 1 1.0 14 4 2 0.5 1 1\n").unwrap();
    let layout = Layout {
        variant: Variant {
            resolution: side,
            contour_length: 14,
        },
        dir: dir.to_path_buf(),
        metadata_files: vec![metadata.clone()],
    };
    let record = Record {
        metadata,
        line: 1,
        image: PathBuf::from("imgs/0/sample_0.png"),
        label: 1,
    };
    (layout, record)
}

#[test]
fn pathfinder_png_reader_never_panics() {
    let root = scratch();
    let (layout, record) = pathfinder_layout(root.path(), 8);
    let image = layout.dir.join(&record.image);
    let pixels: Vec<u8> = (0..64).map(|p| (p * 37 % 256) as u8).collect();
    let samples = vec![
        encode_gray(8, &pixels),
        encode_gray(8, &[0; 64]),
        encode_gray(4, &[9; 16]),
    ];
    fuzz::run("pathfinder-png", 5, samples, |input| {
        fs::write(&image, input).unwrap();
        match pathfinder::load(&layout, std::slice::from_ref(&record)) {
            Ok(loaded) if loaded.samples.iter().any(|s| s.pixels.len() != 64) => {
                Err("an image of the wrong size was accepted".into())
            }
            result => named(result, &image),
        }
    });
}

#[test]
fn pathfinder_metadata_reader_never_panics() {
    let root = scratch();
    let (layout, _) = pathfinder_layout(root.path(), 8);
    let path = layout.metadata_files[0].clone();
    let samples = [
        "imgs/0 sample_0.png 0 1 1.0 14 4 2 0.5 1 1\nimgs/0 sample_1.png 1 0 1.0 14 4 2 0.5 1 1\n",
        "imgs/3 sample_12.png 12 0\n\n",
    ];
    fuzz::run("pathfinder-metadata", 6, bytes_of(&samples), |input| {
        fs::write(&path, input).unwrap();
        match pathfinder::read_records(&layout) {
            Ok(records) if records.iter().any(|r| r.label > 1 || r.image.is_absolute()) => {
                Err(format!("accepted {records:?}"))
            }
            result => named_with_line(result, &path, input),
        }
    });
}

/// A prepared cache of the retrieval fixture in `root`: the cache folder and its train file.
fn prepared_cache(root: &Path) -> (PathBuf, PathBuf) {
    fixtures::write_aan(root);
    let data = retrieval::load(root, OnProblem::Fail).unwrap();
    let dir = cache::cache_dir(root, "retrieval");
    cache::write(&dir, "retrieval", &data).unwrap();
    let file = cache::split_path(&dir, "train");
    (dir, file)
}

#[test]
fn cache_reader_rejects_every_changed_file() {
    let root = scratch();
    let (dir, file) = prepared_cache(root.path());
    let original = fs::read(&file).unwrap();
    fuzz::run("cache", 7, vec![original.clone()], |input| {
        fs::write(&file, input).unwrap();
        match cache::read(&dir, "retrieval", &[]) {
            Ok(_) if input != original => Err("a changed cache file was accepted".into()),
            result => named(result, &file),
        }
    });
}

#[test]
fn cache_reader_checks_structure_behind_a_valid_checksum() {
    // Inputs with a correct checksum reach the header and offset checks: a writer bug, not a
    // flipped bit, must still give an error rather than a panic or a huge allocation.
    let root = scratch();
    let (dir, file) = prepared_cache(root.path());
    fuzz::run(
        "cache-resigned",
        8,
        vec![fs::read(&file).unwrap()],
        |input| {
            fs::write(&file, with_checksum(input)).unwrap();
            named(cache::read(&dir, "retrieval", &[]), &file)
        },
    );
}

/// `input` with its last four bytes replaced by the CRC-32 of the rest (as the cache writes it).
fn with_checksum(input: &[u8]) -> Vec<u8> {
    let content = &input[..input.len().saturating_sub(4)];
    let mut signed = content.to_vec();
    signed.extend_from_slice(&crc32fast::hash(content).to_le_bytes());
    signed
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

fn bytes_of(samples: &[&str]) -> Vec<Vec<u8>> {
    samples.iter().map(|s| s.as_bytes().to_vec()).collect()
}
