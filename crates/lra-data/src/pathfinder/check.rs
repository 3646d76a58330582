//! A full health check of one set: every problem, each with its image and metadata record.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use rayon::prelude::*;

use super::read::{ImageRead, Layout, Record, parse_metadata, read_image};

/// Standard deviations from an even split beyond which the labels count as imbalanced: a fair
/// coin per image (as the official generator draws labels) crosses it with probability < 1e-4.
const IMBALANCE_Z: f64 = 4.0;

/// Problems listed by `Display` before the rest are only counted.
const PROBLEMS_SHOWN: usize = 100;

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// A metadata line that is not a valid record (too few fields, bad label, bad path).
    MalformedRecord,
    /// The image file a record names does not exist.
    MissingImage,
    /// A file that exists but cannot be read.
    Unreadable,
    /// A zero-byte image file.
    EmptyImage,
    /// Bytes that are not a complete PNG.
    CorruptImage,
    /// A PNG whose size is not the set's resolution.
    WrongSize,
    /// An image listed by more than one record.
    DuplicateRecord,
    /// An image with exactly the pixels of an earlier one.
    DuplicateImage,
    /// Label counts further from even than chance allows (whole set; no image or record).
    LabelImbalance,
}

impl ProblemKind {
    /// Short lower-case name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            ProblemKind::MalformedRecord => "malformed record",
            ProblemKind::MissingImage => "missing image",
            ProblemKind::Unreadable => "unreadable file",
            ProblemKind::EmptyImage => "empty image",
            ProblemKind::CorruptImage => "corrupt image",
            ProblemKind::WrongSize => "wrong image size",
            ProblemKind::DuplicateRecord => "duplicate record",
            ProblemKind::DuplicateImage => "duplicate image",
            ProblemKind::LabelImbalance => "label imbalance",
        }
    }
}

/// One problem found by [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The image concerned, when there is one.
    pub image: Option<PathBuf>,
    /// The metadata file and 1-based line concerned, when there is one.
    pub record: Option<(PathBuf, usize)>,
    /// Details: what was found and what was expected.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.name())?;
        if let Some(image) = &self.image {
            write!(f, ": {}", image.display())?;
        }
        if let Some((metadata, line)) = &self.record {
            write!(f, " ({} line {line})", metadata.display())?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Everything [`check`] found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The set's folder.
    pub dir: PathBuf,
    /// Well-formed metadata records.
    pub records: usize,
    /// Records whose image decoded at the right size.
    pub good_images: usize,
    /// Well-formed records per label (index 0 and 1).
    pub label_counts: [usize; 2],
    /// Every problem, in the order of the records.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Number of problems of `kind`.
    pub fn count(&self, kind: ProblemKind) -> usize {
        self.problems.iter().filter(|p| p.kind == kind).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} records ({} label 0, {} label 1), {} good images, {} problems",
            self.dir.display(),
            self.records,
            self.label_counts[0],
            self.label_counts[1],
            self.good_images,
            self.problems.len()
        )?;
        for problem in self.problems.iter().take(PROBLEMS_SHOWN) {
            writeln!(f, "  {problem}")?;
        }
        if self.problems.len() > PROBLEMS_SHOWN {
            writeln!(f, "  ... and {} more", self.problems.len() - PROBLEMS_SHOWN)?;
        }
        Ok(())
    }
}

/// Checks every record and image of a set without stopping at the first problem.
///
/// Finds malformed records, records listing the same image, missing, unreadable, empty, corrupt
/// and wrongly sized images, images with identical pixels (by a 128-bit hash) and label counts
/// more than 4 standard deviations of a fair coin from even. Images are decoded in parallel.
pub fn check(layout: &Layout) -> Report {
    let mut problems = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    for path in &layout.metadata_files {
        match parse_metadata(path) {
            Ok(parsed) => {
                for entry in parsed {
                    match entry {
                        Ok(record) => records.push(record),
                        Err((line, detail)) => problems.push(Problem {
                            kind: ProblemKind::MalformedRecord,
                            image: None,
                            record: Some((path.clone(), line)),
                            detail,
                        }),
                    }
                }
            }
            Err(error) => problems.push(Problem {
                kind: ProblemKind::Unreadable,
                image: Some(path.clone()),
                record: None,
                detail: error.to_string(),
            }),
        }
    }

    let problem_at = |record: &Record, kind, detail| Problem {
        kind,
        image: Some(layout.dir.join(&record.image)),
        record: Some((record.metadata.clone(), record.line)),
        detail,
    };

    let mut first_listing: HashMap<&PathBuf, &Record> = HashMap::new();
    let mut unique = Vec::with_capacity(records.len());
    for record in &records {
        match first_listing.get(&record.image) {
            Some(first) => problems.push(problem_at(
                record,
                ProblemKind::DuplicateRecord,
                format!("already listed in {}", first.location()),
            )),
            None => {
                first_listing.insert(&record.image, record);
                unique.push(record);
            }
        }
    }

    // Only a hash of each good image is kept: a whole Path-X set is 3.3 GB of pixels.
    let reads: Vec<std::result::Result<u128, (ProblemKind, String)>> = unique
        .par_iter()
        .map(|record| match read_image(layout, record) {
            ImageRead::Pixels(pixels) => Ok(pixel_hash(&pixels)),
            ImageRead::Empty => Err((ProblemKind::EmptyImage, "zero-byte file".to_string())),
            ImageRead::Failed(kind, detail) => Err((kind, detail)),
        })
        .collect();

    let mut first_with_pixels: HashMap<u128, &Record> = HashMap::new();
    let mut good_images = 0;
    for (record, read) in unique.iter().zip(reads) {
        match read {
            Err((kind, detail)) => problems.push(problem_at(record, kind, detail)),
            Ok(hash) => {
                good_images += 1;
                if let Some(first) = first_with_pixels.get(&hash) {
                    problems.push(problem_at(
                        record,
                        ProblemKind::DuplicateImage,
                        format!(
                            "same pixels as {} ({})",
                            layout.dir.join(&first.image).display(),
                            first.location()
                        ),
                    ));
                } else {
                    first_with_pixels.insert(hash, record);
                }
            }
        }
    }

    let mut label_counts = [0; 2];
    for record in &records {
        label_counts[record.label as usize] += 1;
    }
    if let Some(detail) = imbalance(label_counts) {
        problems.push(Problem {
            kind: ProblemKind::LabelImbalance,
            image: None,
            record: None,
            detail,
        });
    }

    Report {
        dir: layout.dir.clone(),
        records: records.len(),
        good_images,
        label_counts,
        problems,
    }
}

/// A description of the imbalance when `counts` is further than [`IMBALANCE_Z`] standard
/// deviations of a fair coin from an even split.
pub(crate) fn imbalance(counts: [usize; 2]) -> Option<String> {
    let n = (counts[0] + counts[1]) as f64;
    if n == 0.0 {
        return None;
    }
    let z = (counts[1] as f64 - n / 2.0).abs() / (n.sqrt() / 2.0);
    (z > IMBALANCE_Z).then(|| {
        format!(
            "{} label 0 and {} label 1 ({:.1} % positive), {z:.1} standard deviations from an \
             even split (more than {IMBALANCE_Z} is not chance)",
            counts[0],
            counts[1],
            100.0 * counts[1] as f64 / n
        )
    })
}

/// A 128-bit content hash: two differently keyed SipHash runs, so that distinct images share
/// one only with negligible probability even among millions.
fn pixel_hash(pixels: &[u8]) -> u128 {
    let half = |key: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        pixels.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imbalance_flags_only_beyond_four_standard_deviations() {
        // n = 10,000: one standard deviation is 50 positives.
        assert_eq!(imbalance([5_000, 5_000]), None);
        assert_eq!(imbalance([5_199, 4_801]), None);
        let flagged = imbalance([5_201, 4_799]).unwrap();
        assert!(flagged.contains("4.0 standard deviations"), "{flagged}");
        assert!(imbalance([0, 20]).is_some());
        assert_eq!(imbalance([0, 0]), None);
    }

    #[test]
    fn pixel_hash_separates_single_pixel_changes() {
        let image = vec![0u8; 1024];
        let mut changed = image.clone();
        changed[517] = 1;
        assert_eq!(pixel_hash(&image), pixel_hash(&image.clone()));
        assert_ne!(pixel_hash(&image), pixel_hash(&changed));
    }
}
