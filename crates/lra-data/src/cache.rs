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
//! | 16 | 4 | id offset (token id = stored byte + offset) |
//! | 20 | 4 | vocabulary size |
//! | 24 | 4 | number of classes |
//! | 28 | 4 | reserved (0) |
//! | 32 | 8 | examples `n` |
//! | 40 | 8 | tokens `t` |
//! | 48 | 16 | task name, NUL-padded |
//! | 64 | 8 | split name, NUL-padded |
//! | 72 | 4·n | labels (u32) |
//! | … | 8·(n·docs + 1) | document offsets into the tokens (u64) |
//! | … | t | tokens, one byte each |
//! | … | 4 | CRC-32 of every byte before it |
//!
//! Everything is checked on open: magic, version, the exact file length (a truncated file is an
//! error, never a shorter split), the checksum (a flipped byte anywhere is an error, never a
//! silently different run; it reads the whole file once, about 0.3 s per GB), task, split, offsets
//! and labels.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{DataError, Result};
use crate::example::{Split, SplitData, TaskData};

/// First bytes of every cache file.
pub const MAGIC: [u8; 8] = *b"LRACACHE";
/// Format version; files of any other version are refused. Version 2 added the checksum.
pub const VERSION: u32 = 2;
const HEADER_LEN: usize = 72;
/// The CRC-32 trailer.
const CHECKSUM_LEN: usize = 4;
/// Largest id offset a cache may declare (ids reserved below the byte tokens, e.g. padding).
const MAX_ID_OFFSET: usize = 256;
/// Largest number of classes a cache may declare, far above any task's.
const MAX_CLASSES: usize = 1 << 16;
const TASK_FIELD: usize = 16;
const SPLIT_FIELD: usize = 8;

/// The cache folder of `task` for data under `data_dir`: `<data_dir>/lra-cache/<task>/`.
pub fn cache_dir(data_dir: &Path, task: &str) -> PathBuf {
    data_dir.join("lra-cache").join(task)
}

/// The file of one split in a cache folder.
pub fn split_path(dir: &Path, split: Split) -> PathBuf {
    dir.join(format!("{}.lrac", split.name()))
}

/// Whether all three split files are present in `dir`.
pub fn exists(dir: &Path) -> bool {
    Split::ALL
        .iter()
        .all(|&split| split_path(dir, split).is_file())
}

/// Writes the three splits of `data` into `dir` (created if needed). Each file is written under
/// a temporary name, flushed to disk and renamed into place, so a cache file is never partial,
/// even after a crash or a full disk (the temporary file is removed then).
pub fn write(dir: &Path, task: &str, data: &TaskData) -> Result<()> {
    if task.len() > TASK_FIELD {
        return Err(DataError::Invalid(format!(
            "task name `{task}` is longer than {TASK_FIELD} bytes"
        )));
    }
    fs::create_dir_all(dir).map_err(|source| DataError::io(dir, source))?;
    for split in Split::ALL {
        let path = split_path(dir, split);
        let temp = dir.join(format!(".{}.{}.tmp", split.name(), std::process::id()));
        let written = write_split(&temp, task, split, data)
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

fn write_split(path: &Path, task: &str, split: Split, data: &TaskData) -> Result<()> {
    let io_error = |source| DataError::io(path, source);
    let part = data.split(split);
    let (offsets, tokens) = part.raw_parts();
    let file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io_error)?);
    let mut out = Checksummed {
        inner: file,
        crc: crc32fast::Hasher::new(),
    };
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    for value in [
        VERSION,
        part.docs_per_example() as u32,
        part.id_offset(),
        data.vocab_size as u32,
        data.num_classes as u32,
        0,
    ] {
        header.extend_from_slice(&value.to_le_bytes());
    }
    header.extend_from_slice(&(part.len() as u64).to_le_bytes());
    header.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    header.extend_from_slice(&padded_name(task, TASK_FIELD));
    header.extend_from_slice(&padded_name(split.name(), SPLIT_FIELD));
    out.write_all(&header).map_err(io_error)?;
    for label in part.labels() {
        out.write_all(&label.to_le_bytes()).map_err(io_error)?;
    }
    for offset in offsets {
        out.write_all(&offset.to_le_bytes()).map_err(io_error)?;
    }
    out.write_all(tokens).map_err(io_error)?;
    let Checksummed {
        inner: mut file,
        crc,
    } = out;
    file.write_all(&crc.finalize().to_le_bytes())
        .map_err(io_error)?;
    let file = file.into_inner().map_err(|e| io_error(e.into_error()))?;
    file.sync_all().map_err(io_error)
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

/// Opens the three split files of `task` in `dir`, checking each one.
pub fn read(dir: &Path, task: &str) -> Result<TaskData> {
    let [train, val, test] =
        Split::ALL.map(|split| read_split(&split_path(dir, split), task, split));
    let (train, train_sizes) = train?;
    let (val, val_sizes) = val?;
    let (test, test_sizes) = test?;
    for (split, sizes) in [(Split::Val, val_sizes), (Split::Test, test_sizes)] {
        if sizes != train_sizes {
            return Err(cache_error(
                &split_path(dir, split),
                format!(
                    "vocabulary/classes {sizes:?} differ from {train_sizes:?} in {}",
                    split_path(dir, Split::Train).display()
                ),
            ));
        }
    }
    Ok(TaskData {
        train,
        val,
        test,
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

/// One split file: the split and its `(vocab_size, num_classes)`.
fn read_split(path: &Path, task: &str, split: Split) -> Result<(SplitData, (usize, usize))> {
    let fail = |message: String| cache_error(path, message);
    let file = File::open(path).map_err(|source| DataError::io(path, source))?;
    let file_len = file
        .metadata()
        .map_err(|source| DataError::io(path, source))?
        .len();
    if file_len < (HEADER_LEN + CHECKSUM_LEN) as u64 {
        return Err(fail(format!(
            "{file_len} bytes is shorter than the {HEADER_LEN}-byte header and {CHECKSUM_LEN}-byte \
             checksum (truncated)"
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
    let docs = u32_at(12) as usize;
    let id_offset = u32_at(16);
    let (vocab_size, num_classes) = (u32_at(20) as usize, u32_at(24) as usize);
    let (examples, tokens) = (u64_at(32), u64_at(40));
    // One byte per token: ids run up to 255 + the offset, and the vocabulary cannot be larger.
    // Bounding both keeps a model from being sized by a damaged header.
    if id_offset as usize > MAX_ID_OFFSET || vocab_size > 256 + id_offset as usize {
        return Err(fail(format!(
            "vocabulary of {vocab_size} ids with id offset {id_offset}; one-byte tokens allow \
             an offset up to {MAX_ID_OFFSET} and at most 256 ids above it"
        )));
    }
    if !(1..=MAX_CLASSES).contains(&num_classes) {
        return Err(fail(format!(
            "{num_classes} classes; expected 1 to {MAX_CLASSES}"
        )));
    }
    if !(1..=2).contains(&docs) {
        return Err(fail(format!(
            "{docs} documents per example; expected 1 or 2"
        )));
    }
    let documents = examples.checked_mul(docs as u64);
    let expected_len = documents
        .and_then(|d| d.checked_add(1))
        .and_then(|slots| slots.checked_mul(8))
        .and_then(|offset_bytes| examples.checked_mul(4)?.checked_add(offset_bytes))
        .and_then(|body| body.checked_add(tokens)?.checked_add(HEADER_LEN as u64))
        .and_then(|content| content.checked_add(CHECKSUM_LEN as u64));
    let Some(expected_len) = expected_len else {
        return Err(fail(format!(
            "impossible sizes: {examples} examples, {tokens} tokens"
        )));
    };
    if file_len != expected_len {
        let what = if file_len < expected_len {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(fail(format!(
            "{file_len} bytes, but the header ({examples} examples, {tokens} tokens) needs \
             {expected_len} ({what})"
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
    if found_task != task || found_split != split.name() {
        return Err(fail(format!(
            "holds the {found_split} split of task `{found_task}`, expected the {} split of `{task}`",
            split.name()
        )));
    }
    let n = examples as usize;
    let labels_at = HEADER_LEN;
    let offsets_at = labels_at + 4 * n;
    let labels: Vec<u32> = (0..n).map(|i| u32_at(labels_at + 4 * i)).collect();
    if let Some((index, label)) = labels
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= num_classes)
    {
        return Err(fail(format!(
            "example {index} has label {label}, but the task has {num_classes} classes"
        )));
    }
    let slots = n * docs + 1;
    let offsets: Vec<u64> = (0..slots).map(|i| u64_at(offsets_at + 8 * i)).collect();
    let ordered = offsets[0] == 0 && offsets.windows(2).all(|w| w[0] <= w[1]);
    if !ordered || offsets[slots - 1] != tokens {
        return Err(fail(
            "document offsets do not run in order from 0 to the token count (corrupt)".into(),
        ));
    }
    let max_byte = vocab_size.saturating_sub(id_offset as usize + 1);
    let token_bytes = offsets_at + 8 * slots..content.len();
    if max_byte < 255
        && let Some(position) = map[token_bytes.clone()]
            .iter()
            .position(|&b| b as usize > max_byte)
    {
        return Err(fail(format!(
            "token {position} is outside the vocabulary of {vocab_size} ids (corrupt)"
        )));
    }
    let split_data =
        SplitData::mapped(docs, id_offset, labels, offsets, Arc::new(map), token_bytes);
    Ok((split_data, (vocab_size, num_classes)))
}
