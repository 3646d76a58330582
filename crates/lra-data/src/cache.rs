//! The compact binary cache written by `lra data prepare`: one file per split, read back by
//! memory-mapping it, so training never parses text or images again and Path-X's tokens need not
//! fit in memory.
//!
//! Layout of `<split>.lrac` (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LRACACHE` |
//! | 8 | 4 | format version ([`VERSION`]) |
//! | 12 | 4 | documents per example (1, or 2 for pairs) |
//! | 16 | 4 | id offset (token id = stored value + offset) |
//! | 20 | 4 | vocabulary size |
//! | 24 | 4 | number of classes (1 for regression) |
//! | 28 | 1 | bytes per token `w` (1, 2 or 4) |
//! | 29 | 1 | labels: 0 class ids, 1 scores, 2 none |
//! | 30 | 1 | 1 when token types follow the tokens, else 0 |
//! | 31 | 1 | reserved (0) |
//! | 32 | 8 | examples `n` |
//! | 40 | 8 | tokens `t` |
//! | 48 | 16 | task name, NUL-padded |
//! | 64 | 32 | split name, NUL-padded |
//! | 96 | 4·n | labels (u32 class ids or f32 scores; absent when unlabelled) |
//! | … | 8·(n·docs + 1) | document offsets into the tokens (u64) |
//! | … | w·t | tokens |
//! | … | t | token types, one byte each (when present) |
//! | … | 4 | CRC-32 of every byte before it |
//!
//! Everything is checked on open: magic, version, the exact file length (a truncated file is an
//! error, never a shorter split), the checksum (a flipped byte anywhere is an error, never a
//! silently different run; it reads the whole file once, about 0.3 s per GB), task, split, offsets,
//! labels and token ids.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{DataError, Result};
use crate::example::{
    LabelKind, Labels, NamedSplit, Split, SplitData, SplitFormat, TaskData, TokenWidth,
};

/// First bytes of every cache file.
pub const MAGIC: [u8; 8] = *b"LRACACHE";
/// Format version; files of any other version are refused. Version 2 added the checksum, version 3
/// token widths, token types, score and missing labels, and longer split names.
pub const VERSION: u32 = 3;
const HEADER_LEN: usize = 96;
/// The CRC-32 trailer.
const CHECKSUM_LEN: usize = 4;
/// Largest id offset a cache may declare (ids reserved below the byte tokens, e.g. padding).
const MAX_ID_OFFSET: usize = 256;
/// Largest number of classes a cache may declare, far above any task's.
const MAX_CLASSES: usize = 1 << 16;
/// Largest vocabulary a cache may declare, far above any tokenizer's (XLM-R: 250,002).
const MAX_VOCAB: usize = 1 << 24;
const TASK_FIELD: usize = 16;
const SPLIT_FIELD: usize = 32;

/// The cache folder of `task` for data under `data_dir`: `<data_dir>/lra-cache/<task>/`.
pub fn cache_dir(data_dir: &Path, task: &str) -> PathBuf {
    data_dir.join("lra-cache").join(task)
}

/// The file of the split called `name` in a cache folder.
pub fn split_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.lrac"))
}

/// Whether the files of the three splits and of the `extra` named ones are present in `dir`.
pub fn exists(dir: &Path, extra: &[&str]) -> bool {
    let present = |name: &str| split_path(dir, name).is_file();
    Split::ALL.iter().all(|split| present(split.name())) && extra.iter().all(|name| present(name))
}

/// Writes every split of `data` into `dir` (created if needed). Each file is written under a
/// temporary name, flushed to disk and renamed into place, so a cache file is never partial,
/// even after a crash or a full disk (the temporary file is removed then).
pub fn write(dir: &Path, task: &str, data: &TaskData) -> Result<()> {
    if task.len() > TASK_FIELD {
        return Err(DataError::Invalid(format!(
            "task name `{task}` is longer than {TASK_FIELD} bytes"
        )));
    }
    if let Some((name, _)) = data
        .named_splits()
        .find(|(name, _)| name.len() > SPLIT_FIELD)
    {
        return Err(DataError::Invalid(format!(
            "split name `{name}` is longer than {SPLIT_FIELD} bytes"
        )));
    }
    fs::create_dir_all(dir).map_err(|source| DataError::io(dir, source))?;
    for (name, split) in data.named_splits() {
        let path = split_path(dir, name);
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = write_split(&temp, task, name, split, data)
            .and_then(|()| fs::rename(&temp, &path).map_err(|e| DataError::io(&path, e)))
            .and_then(|()| sync_dir(dir));
        if written.is_err() {
            // Best effort: the original error is the one worth reporting.
            let _ = fs::remove_file(&temp);
        }
        written?;
    }
    Ok(())
}

fn write_split(
    path: &Path,
    task: &str,
    name: &str,
    part: &SplitData,
    data: &TaskData,
) -> Result<()> {
    let io_error = |source| DataError::io(path, source);
    let (offsets, tokens, types) = part.raw_parts();
    let format = part.format();
    let file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io_error)?);
    let mut out = Checksummed {
        inner: file,
        crc: crc32fast::Hasher::new(),
    };
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    for value in [
        VERSION,
        format.docs_per_example as u32,
        format.id_offset,
        data.vocab_size as u32,
        data.num_classes as u32,
    ] {
        header.extend_from_slice(&value.to_le_bytes());
    }
    header.extend_from_slice(&[
        format.width.bytes() as u8,
        label_code(format.labels),
        u8::from(format.token_types),
        0,
    ]);
    let token_count = tokens.len() / format.width.bytes();
    header.extend_from_slice(&(part.len() as u64).to_le_bytes());
    header.extend_from_slice(&(token_count as u64).to_le_bytes());
    header.extend_from_slice(&padded_name(task, TASK_FIELD));
    header.extend_from_slice(&padded_name(name, SPLIT_FIELD));
    out.write_all(&header).map_err(io_error)?;
    match part.labels() {
        Labels::Classes(classes) => {
            for class in classes {
                out.write_all(&class.to_le_bytes()).map_err(io_error)?;
            }
        }
        Labels::Scores(scores) => {
            for score in scores {
                out.write_all(&score.to_le_bytes()).map_err(io_error)?;
            }
        }
        Labels::Unlabelled => {}
    }
    for offset in offsets {
        out.write_all(&offset.to_le_bytes()).map_err(io_error)?;
    }
    out.write_all(tokens).map_err(io_error)?;
    if let Some(types) = types {
        out.write_all(types).map_err(io_error)?;
    }
    let Checksummed {
        inner: mut file,
        crc,
    } = out;
    file.write_all(&crc.finalize().to_le_bytes())
        .map_err(io_error)?;
    let file = file.into_inner().map_err(|e| io_error(e.into_error()))?;
    file.sync_all().map_err(io_error)
}

fn label_code(kind: LabelKind) -> u8 {
    match kind {
        LabelKind::Classes => 0,
        LabelKind::Scores => 1,
        LabelKind::Unlabelled => 2,
    }
}

fn label_kind(code: u8) -> Option<LabelKind> {
    [LabelKind::Classes, LabelKind::Scores, LabelKind::Unlabelled]
        .into_iter()
        .find(|&kind| label_code(kind) == code)
}

/// Passes writes on to `inner`, keeping the CRC-32 of every byte written.
struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.crc.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Makes the renames inside `dir` durable (a crash right after cannot undo them).
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| DataError::io(dir, source))
}

fn padded_name(name: &str, len: usize) -> Vec<u8> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.resize(len, 0);
    bytes
}

/// Opens the split files of `task` in `dir`, checking each one: train, val, test, the `extra`
/// named ones (which must be there), then any other split file the folder holds (a split a task
/// reads when its source is present, e.g. GLUE's AX next to MNLI), by name.
pub fn read(dir: &Path, task: &str, extra: &[&str]) -> Result<TaskData> {
    let (train, train_sizes) = read_split(&split_path(dir, "train"), task, "train")?;
    let read_checked = |name: &str| {
        let path = split_path(dir, name);
        let (split, sizes) = read_split(&path, task, name)?;
        if sizes != train_sizes {
            return Err(cache_error(
                &path,
                format!(
                    "vocabulary/classes {sizes:?} differ from {train_sizes:?} in {}",
                    split_path(dir, "train").display()
                ),
            ));
        }
        Ok(split)
    };
    let val = read_checked("val")?;
    let test = read_checked("test")?;
    let mut names: Vec<String> = extra.iter().map(|name| name.to_string()).collect();
    names.extend(other_split_files(dir, &names)?);
    let extra = names
        .iter()
        .map(|name| {
            read_checked(name).map(|data| NamedSplit {
                name: name.to_string(),
                data,
            })
        })
        .collect::<Result<_>>()?;
    Ok(TaskData {
        train,
        val,
        test,
        extra,
        vocab_size: train_sizes.0,
        num_classes: train_sizes.1,
    })
}

fn cache_error(path: &Path, message: String) -> DataError {
    DataError::Cache {
        path: path.to_path_buf(),
        message,
    }
}

/// Names of the split files in `dir` other than train, val, test and `known`, sorted.
fn other_split_files(dir: &Path, known: &[String]) -> Result<Vec<String>> {
    let entries = fs::read_dir(dir).map_err(|source| DataError::io(dir, source))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| DataError::io(dir, source))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(".lrac")
            && !["train", "val", "test"].contains(&stem)
            && !known.iter().any(|k| k == stem)
        {
            names.push(stem.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// One split file: the split and its `(vocab_size, num_classes)`.
fn read_split(path: &Path, task: &str, split: &str) -> Result<(SplitData, (usize, usize))> {
    let fail = |message: String| cache_error(path, message);
    let file = File::open(path).map_err(|source| DataError::io(path, source))?;
    let file_len = file
        .metadata()
        .map_err(|source| DataError::io(path, source))?
        .len();
    if file_len < (HEADER_LEN + CHECKSUM_LEN) as u64 {
        return Err(fail(format!(
            "{file_len} bytes is shorter than the {HEADER_LEN}-byte header and {CHECKSUM_LEN}-byte \
             checksum (truncated, or written by an older lra: prepare it again)"
        )));
    }
    // SAFETY: the file is only read; a cache file changed while mapped is outside the contract
    // (prepare replaces files by rename, which leaves an open mapping intact).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| DataError::io(path, source))?;
    let u32_at = |at: usize| u32::from_le_bytes(map[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().expect("8 bytes"));
    if map[..8] != MAGIC {
        return Err(fail("not an lra cache file (wrong magic bytes)".into()));
    }
    let version = u32_at(8);
    if version != VERSION {
        return Err(fail(format!(
            "written by cache format version {version}; this lra reads version {VERSION}"
        )));
    }
    let name = |at: usize, len: usize| {
        String::from_utf8_lossy(&map[at..at + len])
            .trim_end_matches('\0')
            .to_string()
    };
    let header = Header::parse(&map, u32_at, u64_at).map_err(fail)?;
    let Some(expected_len) = header.file_len() else {
        return Err(fail(format!(
            "impossible sizes: {} examples, {} tokens",
            header.examples, header.tokens
        )));
    };
    if file_len != expected_len {
        let what = if file_len < expected_len {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(fail(format!(
            "{file_len} bytes, but the header ({} examples, {} tokens) needs {expected_len} ({what})",
            header.examples, header.tokens
        )));
    }
    let (content, trailer) = map.split_at(map.len() - CHECKSUM_LEN);
    let (stored, computed) = (
        u32::from_le_bytes(trailer.try_into().expect("4 bytes")),
        crc32fast::hash(content),
    );
    if stored != computed {
        return Err(fail(format!(
            "checksum mismatch (stored CRC-32 {stored:08x}, contents give {computed:08x}): the \
             file is corrupt"
        )));
    }
    let (found_task, found_split) = (name(48, TASK_FIELD), name(64, SPLIT_FIELD));
    if found_task != task || found_split != split {
        return Err(fail(format!(
            "holds the {found_split} split of task `{found_task}`, expected the {split} split of \
             `{task}`"
        )));
    }
    let n = header.examples as usize;
    let format = header.format;
    let labels_at = HEADER_LEN;
    // The exact length was checked, so every section fits in the file.
    let offsets_at = labels_at + header.label_bytes().unwrap_or(0) as usize;
    let labels = read_labels(format.labels, n, header.num_classes, |i| {
        u32_at(labels_at + 4 * i)
    })
    .map_err(fail)?;
    let slots = n * format.docs_per_example + 1;
    let offsets: Vec<u64> = (0..slots).map(|i| u64_at(offsets_at + 8 * i)).collect();
    let ordered = offsets[0] == 0 && offsets.windows(2).all(|w| w[0] <= w[1]);
    if !ordered || offsets[slots - 1] != header.tokens {
        return Err(fail(
            "document offsets do not run in order from 0 to the token count (corrupt)".into(),
        ));
    }
    let tokens_at = offsets_at + 8 * slots;
    let token_bytes = tokens_at..tokens_at + header.tokens as usize * format.width.bytes();
    check_token_range(&map[token_bytes.clone()], &header).map_err(fail)?;
    let type_bytes = format
        .token_types
        .then(|| token_bytes.end..token_bytes.end + header.tokens as usize);
    let split_data = SplitData::mapped(
        format,
        labels,
        offsets,
        Arc::new(map),
        token_bytes,
        type_bytes,
    );
    Ok((split_data, (header.vocab_size, header.num_classes)))
}

/// The fixed-size fields of a split file, checked for plausibility.
struct Header {
    format: SplitFormat,
    vocab_size: usize,
    num_classes: usize,
    examples: u64,
    tokens: u64,
}

impl Header {
    fn parse(
        map: &[u8],
        u32_at: impl Fn(usize) -> u32,
        u64_at: impl Fn(usize) -> u64,
    ) -> std::result::Result<Self, String> {
        let docs = u32_at(12) as usize;
        let id_offset = u32_at(16);
        let (vocab_size, num_classes) = (u32_at(20) as usize, u32_at(24) as usize);
        let width = TokenWidth::from_bytes(map[28].into())
            .ok_or_else(|| format!("{} bytes per token; expected 1, 2 or 4", map[28]))?;
        let labels = label_kind(map[29])
            .ok_or_else(|| format!("label kind {}; expected 0, 1 or 2", map[29]))?;
        let token_types = match map[30] {
            0 => false,
            1 => true,
            other => return Err(format!("token-type flag {other}; expected 0 or 1")),
        };
        // Bounding the vocabulary keeps a model from being sized by a damaged header.
        let largest = u64::from(width.max_value()) + u64::from(id_offset) + 1;
        if id_offset as usize > MAX_ID_OFFSET
            || vocab_size as u64 > largest
            || vocab_size > MAX_VOCAB
        {
            return Err(format!(
                "vocabulary of {vocab_size} ids with id offset {id_offset}: {}-byte tokens allow \
                 an offset up to {MAX_ID_OFFSET} and at most {} ids",
                width.bytes(),
                largest.min(MAX_VOCAB as u64)
            ));
        }
        if !(1..=MAX_CLASSES).contains(&num_classes) {
            return Err(format!(
                "{num_classes} classes; expected 1 to {MAX_CLASSES}"
            ));
        }
        if !(1..=2).contains(&docs) {
            return Err(format!("{docs} documents per example; expected 1 or 2"));
        }
        Ok(Self {
            format: SplitFormat {
                docs_per_example: docs,
                id_offset,
                width,
                labels,
                token_types,
            },
            vocab_size,
            num_classes,
            examples: u64_at(32),
            tokens: u64_at(40),
        })
    }

    /// Bytes of the labels section (`None` when it overflows).
    fn label_bytes(&self) -> Option<u64> {
        match self.format.labels {
            LabelKind::Classes | LabelKind::Scores => self.examples.checked_mul(4),
            LabelKind::Unlabelled => Some(0),
        }
    }

    /// The length the header implies, `None` when it overflows.
    fn file_len(&self) -> Option<u64> {
        let docs = self.format.docs_per_example as u64;
        let offset_bytes = self
            .examples
            .checked_mul(docs)?
            .checked_add(1)?
            .checked_mul(8)?;
        let per_token = self.format.width.bytes() as u64 + u64::from(self.format.token_types);
        let token_bytes = self.tokens.checked_mul(per_token)?;
        (HEADER_LEN as u64 + CHECKSUM_LEN as u64)
            .checked_add(self.label_bytes()?)?
            .checked_add(offset_bytes)?
            .checked_add(token_bytes)
    }
}

/// The labels of `n` examples, each a u32 read by `word(i)`, checked against the class count.
fn read_labels(
    kind: LabelKind,
    n: usize,
    num_classes: usize,
    word: impl Fn(usize) -> u32,
) -> std::result::Result<Labels, String> {
    Ok(match kind {
        LabelKind::Classes => {
            let classes: Vec<u32> = (0..n).map(word).collect();
            if let Some((index, label)) = classes
                .iter()
                .enumerate()
                .find(|(_, l)| **l as usize >= num_classes)
            {
                return Err(format!(
                    "example {index} has label {label}, but the task has {num_classes} classes"
                ));
            }
            Labels::Classes(classes)
        }
        LabelKind::Scores => {
            let scores: Vec<f32> = (0..n).map(|i| f32::from_bits(word(i))).collect();
            if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
                return Err(format!("example {index} has a score that is not finite"));
            }
            Labels::Scores(scores)
        }
        LabelKind::Unlabelled => Labels::Unlabelled,
    })
}

/// Every stored token must give an id inside the vocabulary.
fn check_token_range(tokens: &[u8], header: &Header) -> std::result::Result<(), String> {
    let width = header.format.width;
    let largest = header
        .vocab_size
        .saturating_sub(header.format.id_offset as usize + 1) as u64;
    if largest >= u64::from(width.max_value()) {
        return Ok(());
    }
    let outside = match width {
        TokenWidth::U8 => tokens.iter().position(|&b| u64::from(b) > largest),
        _ => tokens.chunks_exact(width.bytes()).position(|bytes| {
            let mut word = [0u8; 4];
            word[..bytes.len()].copy_from_slice(bytes);
            u64::from(u32::from_le_bytes(word)) > largest
        }),
    };
    match outside {
        Some(position) => Err(format!(
            "token {position} is outside the vocabulary of {} ids (corrupt)",
            header.vocab_size
        )),
        None => Ok(()),
    }
}
