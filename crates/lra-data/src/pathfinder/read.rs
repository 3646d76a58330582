//! Reading a set in the official release layout.
//!
//! One set (one resolution and difficulty) is a folder with `metadata/<k>.npy` and
//! `imgs/<k>/sample_<i>.png`. Despite their extension the metadata files are plain text, one
//! space-separated record per image: image folder, file name, index, label, then generator
//! settings, e.g. `imgs/0 sample_0.png 0 1 1.0 14 4 2 0.5 1 1` (read this way by the LRA TFDS
//! builder `lra_benchmarks/data/pathfinder.py` and the S4 loader; only fields 0, 1 and 3 matter).

use std::fs;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use super::check::ProblemKind;
use super::{NUM_CLASSES, Variant, png_io};
use crate::RELEASE_URL;
use crate::error::{DataError, Result};
use crate::example::Split;

/// Fields a metadata record needs: image folder, file name, index, label.
const MIN_RECORD_FIELDS: usize = 4;

/// One located set: its folder and metadata files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Resolution and difficulty the set was asked for; images must be `resolution²`.
    pub variant: Variant,
    /// The folder holding `metadata/` and `imgs/`.
    pub dir: PathBuf,
    /// The `metadata/*.npy` files, ordered by their numeric name (`0.npy`, `1.npy`, `2.npy`, ...).
    pub metadata_files: Vec<PathBuf>,
}

/// One metadata record: an image and its label, with where the record was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The metadata file holding the record.
    pub metadata: PathBuf,
    /// 1-based line of the record in that file.
    pub line: usize,
    /// The image, relative to the set's folder (e.g. `imgs/0/sample_0.png`).
    pub image: PathBuf,
    /// 1 when the marked dots are connected, else 0.
    pub label: u32,
}

impl Record {
    /// "`<metadata file>` line `<n>`", for messages.
    pub fn location(&self) -> String {
        format!("{} line {}", self.metadata.display(), self.line)
    }
}

/// One decoded image with its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Row-major gray values, `resolution²` of them; the model's tokens.
    pub pixels: Vec<u8>,
    /// 1 when the marked dots are connected, else 0.
    pub label: u32,
}

/// The samples read for a request, and the empty image files left out.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Decoded samples, in record order.
    pub samples: Vec<Sample>,
    /// Zero-byte image files, skipped as the LRA input pipeline does (the release has some, e.g.
    /// `pathfinder32/curv_baseline/imgs/0/sample_172.png`).
    pub skipped_empty: Vec<PathBuf>,
}

/// Finds the set `variant` at or below `root`.
///
/// `root` may be the set's own folder, its `pathfinder<side>` folder, the release's `lra_release`
/// folder or the folder the release was unpacked into (`lra_release/lra_release/...`, as the
/// tarball unpacks). Fails when no candidate has metadata files, listing every folder looked at,
/// the files expected and where they come from; and when `root` is plainly another set's folder.
pub fn find(root: &Path, variant: Variant) -> Result<Layout> {
    let relative = variant.relative_dir();
    let candidates = [
        root.to_path_buf(),
        root.join(variant.difficulty_dir()),
        root.join(&relative),
        root.join("lra_release").join(&relative),
        root.join("lra_release").join("lra_release").join(&relative),
    ];
    for dir in &candidates {
        if !dir.join("metadata").is_dir() {
            continue;
        }
        check_folder_names(dir, variant)?;
        let metadata_files = list_metadata(&dir.join("metadata"))?;
        if !metadata_files.is_empty() {
            return Ok(Layout {
                variant,
                dir: dir.clone(),
                metadata_files,
            });
        }
    }
    let looked_at: Vec<String> = candidates
        .iter()
        .map(|dir| format!("  {}", dir.join("metadata").join("*.npy").display()))
        .collect();
    let side = variant.resolution;
    Err(DataError::Missing(format!(
        "no Pathfinder data for {} under {}; looked for metadata files at\n{}\n\
         A set folder holds metadata/<k>.npy (plain text despite the name, one line per image: \
         `imgs/<k> sample_<i>.png <i> <label 0|1> ...`) and the images imgs/<k>/sample_<i>.png \
         ({side}×{side} 8-bit grayscale PNG). It comes from the LRA release {RELEASE_URL} \
         (folder lra_release/{}), or can be generated \
         (`lra data generate pathfinder`).",
        relative.display(),
        root.display(),
        looked_at.join("\n"),
        relative.display(),
    )))
}

/// Rejects a folder whose own name or parent's name says it is another resolution or difficulty.
fn check_folder_names(dir: &Path, variant: Variant) -> Result<()> {
    let name_of = |path: &Path| {
        path.file_name()
            .map(|name| name.to_string_lossy().into_owned())
    };
    let own = name_of(dir);
    let parent = dir.parent().and_then(name_of);
    let mismatch = |found: &str, wanted: String, what: &str| {
        Err(DataError::Invalid(format!(
            "{} is a {what} folder `{found}`, but {} was asked for (wanted `{wanted}`)",
            dir.display(),
            variant.relative_dir().display()
        )))
    };
    if let Some(own) = own.filter(|name| name.starts_with("curv_"))
        && own != variant.difficulty_dir()
    {
        return mismatch(&own, variant.difficulty_dir(), "difficulty");
    }
    let is_resolution = |name: &String| {
        name.strip_prefix("pathfinder")
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(parent) = parent.filter(is_resolution)
        && parent != variant.resolution_dir()
    {
        return mismatch(&parent, variant.resolution_dir(), "resolution");
    }
    Ok(())
}

/// The `*.npy` files of a metadata folder, numeric names first in numeric order.
fn list_metadata(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|source| DataError::io(dir, source))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| DataError::io(dir, source))?.path();
        if path.extension().is_some_and(|ext| ext == "npy") && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by_key(|path| {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let number = stem.as_deref().and_then(|s| s.parse::<u64>().ok());
        (number.unwrap_or(u64::MAX), stem)
    });
    Ok(files)
}

/// Reads every metadata record of the set, in file order. The first malformed record is a
/// [`DataError::Parse`] naming its file and line.
pub fn read_records(layout: &Layout) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for path in &layout.metadata_files {
        for parsed in parse_metadata(path)? {
            records.push(parsed.map_err(|(line, message)| DataError::Parse {
                path: path.clone(),
                line,
                message,
            })?);
        }
    }
    Ok(records)
}

/// Parses one metadata file; each non-blank line gives a record or `(line, what is wrong)`.
/// Fails only when the file cannot be read.
pub(crate) fn parse_metadata(
    path: &Path,
) -> Result<Vec<std::result::Result<Record, (usize, String)>>> {
    let bytes = fs::read(path).map_err(|source| DataError::io(path, source))?;
    let parsed = bytes
        .split(|&byte| byte == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(index, line)| {
            let line_number = index + 1;
            parse_record(line)
                .map(|(image, label)| Record {
                    metadata: path.to_path_buf(),
                    line: line_number,
                    image,
                    label,
                })
                .map_err(|message| (line_number, message))
        })
        .collect();
    Ok(parsed)
}

/// One record line: `<folder> <file> <index> <label> ...`.
fn parse_record(line: &[u8]) -> std::result::Result<(PathBuf, u32), String> {
    let line = std::str::from_utf8(line).map_err(|error| format!("not valid UTF-8: {error}"))?;
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if fields.len() < MIN_RECORD_FIELDS {
        return Err(format!(
            "expected at least {MIN_RECORD_FIELDS} space-separated fields (image folder, file \
             name, index, label), found {}: `{}`",
            fields.len(),
            line.trim_ascii().escape_debug()
        ));
    }
    let image = Path::new(fields[0]).join(fields[1]);
    let stays_inside = image
        .components()
        .all(|component| matches!(component, Component::Normal(_)));
    if !stays_inside {
        return Err(format!(
            "image path `{}` must stay inside the set folder (no `..`, no absolute path)",
            image.display()
        ));
    }
    let label: u32 = fields[3]
        .parse()
        .map_err(|_| format!("label `{}` is not an integer", fields[3].escape_debug()))?;
    if label as usize >= NUM_CLASSES {
        return Err(format!("label {label} out of range: expected 0 or 1"));
    }
    Ok((image, label))
}

/// What reading one record's image gave.
pub(crate) enum ImageRead {
    /// The decoded pixels, of the right size.
    Pixels(Vec<u8>),
    /// A zero-byte file.
    Empty,
    /// Missing, unreadable, corrupt or wrongly sized, with a description.
    Failed(ProblemKind, String),
}

/// Reads and decodes one record's image, checking its size against the layout's resolution.
pub(crate) fn read_image(layout: &Layout, record: &Record) -> ImageRead {
    let path = layout.dir.join(&record.image);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return ImageRead::Failed(ProblemKind::MissingImage, "file not found".to_string());
        }
        Err(error) => return ImageRead::Failed(ProblemKind::Unreadable, error.to_string()),
    };
    if bytes.is_empty() {
        return ImageRead::Empty;
    }
    let (width, height, pixels) = match png_io::decode_gray(&bytes) {
        Ok(decoded) => decoded,
        Err(message) => return ImageRead::Failed(ProblemKind::CorruptImage, message),
    };
    let side = layout.variant.resolution;
    if (width, height) != (side, side) {
        return ImageRead::Failed(
            ProblemKind::WrongSize,
            format!(
                "image is {width}×{height} pixels, expected {side}×{side} for {}",
                layout.variant.resolution_dir()
            ),
        );
    }
    ImageRead::Pixels(pixels)
}

/// Reads the images of `records` in parallel, in record order.
///
/// Zero-byte files are skipped and listed in [`Loaded::skipped_empty`]; any other problem (missing,
/// corrupt or wrongly sized image) is an error naming the image and its metadata record.
pub fn load(layout: &Layout, records: &[Record]) -> Result<Loaded> {
    let reads: Vec<ImageRead> = records
        .par_iter()
        .map(|record| read_image(layout, record))
        .collect();
    let mut loaded = Loaded {
        samples: Vec::with_capacity(records.len()),
        skipped_empty: Vec::new(),
    };
    for (record, read) in records.iter().zip(reads) {
        match read {
            ImageRead::Pixels(pixels) => loaded.samples.push(Sample {
                pixels,
                label: record.label,
            }),
            ImageRead::Empty => loaded.skipped_empty.push(layout.dir.join(&record.image)),
            ImageRead::Failed(_, message) => {
                return Err(DataError::Invalid(format!(
                    "{}: {message} (listed in {})",
                    layout.dir.join(&record.image).display(),
                    record.location()
                )));
            }
        }
    }
    Ok(loaded)
}

/// The records of `split` among `n`: the first 80 % train, the next 10 % val, the rest test.
///
/// The release has no official split; LRA's TFDS pipeline takes `[:80%]`, `[80%:90%]`, `[90%:]`
/// of the records in order, as here. Images are drawn independently, so order carries no bias.
pub fn split_range(n: usize, split: Split) -> Range<usize> {
    let train_end = n * 8 / 10;
    let val_end = n * 9 / 10;
    match split {
        Split::Train => 0..train_end,
        Split::Val => train_end..val_end,
        Split::Test => val_end..n,
    }
}

/// Reads the records of the set, then the images of `split` (see [`split_range`] and [`load`]).
pub fn read_split(layout: &Layout, split: Split) -> Result<Loaded> {
    let records = read_records(layout)?;
    load(layout, &records[split_range(records.len(), split)])
}
