//! Pathfinder and Path-X (LRA): is there a path between the two marked dots?
//!
//! An image shows dashed contours made of short "paddles" (Linsley et al. 2018, "Learning long-range
//! spatial dependencies with horizontal gated recurrent units", NeurIPS; Kim, Linsley et al. 2020,
//! "Disentangling neural mechanisms for perceptual grouping", ICLR). Two dots mark contour ends; the
//! label is 1 when both dots sit on the same contour. LRA feeds the pixels row by row: 1,024 tokens
//! for Pathfinder (32×32), 16,384 for Path-X (128×128), 65,536 for Path-256.
//!
//! - [`find`] locates one set of the official release layout (`metadata/<k>.npy` text files and
//!   `imgs/<k>/sample_<i>.png`), [`read_records`], [`load`] and [`read_split`] read it.
//! - [`check`] lists every problem of a set (empty, corrupt, duplicate or wrongly sized images,
//!   malformed records, label imbalance) instead of stopping at the first.
//! - [`generate`] writes new sets in the same layout with a seeded, parallel generator.
//!
//! The LRA paper's tasks are the "hard" sets, contour length 14 (`pathfinder32/curv_contour_length_14`
//! and `pathfinder128/curv_contour_length_14`, as in the LRA TFDS builder and the S4 loader): the
//! defaults of [`Variant`].

mod check;
mod generate;
mod geometry;
mod png_io;
mod read;
mod render;
mod task;

use std::path::PathBuf;

pub use check::{Problem, ProblemKind, Report, check};
pub use generate::{
    GeneratedImage, Generator, GeneratorConfig, Shape, Stats, TRACE_GAP, generate,
    generate_with_progress,
};
pub use geometry::Point;
pub use png_io::{decode_gray, encode_gray};
pub use read::{Layout, Loaded, Record, Sample, find, load, read_records, read_split, split_range};
pub use task::load_task;

/// Image sides of the official release (`pathfinder32` ... `pathfinder256`).
pub const RELEASE_RESOLUTIONS: [u32; 4] = [32, 64, 128, 256];

/// Contour lengths of the release's difficulties: easy (`curv_baseline`), intermediate, hard.
pub const RELEASE_CONTOUR_LENGTHS: [u32; 3] = [6, 9, 14];

/// Contour length of the release's `curv_baseline` ("easy") sets.
const BASELINE_CONTOUR_LENGTH: u32 = 6;

/// Number of classes: the dots are connected (1) or not (0).
pub const NUM_CLASSES: usize = 2;

/// Pixel values 0..=255 are the tokens.
pub const PIXEL_VALUES: usize = 256;

/// One Pathfinder set: image side and difficulty (paddles per target contour).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Variant {
    /// Image side in pixels. Default: 32 (LRA "Pathfinder").
    pub resolution: u32,
    /// Paddles per target contour: 6 easy, 9 intermediate, 14 hard. Default: 14, the sets the LRA
    /// paper reports.
    pub contour_length: u32,
}

impl Default for Variant {
    fn default() -> Self {
        Self::PATHFINDER
    }
}

impl Variant {
    /// LRA "Pathfinder": `pathfinder32/curv_contour_length_14`.
    pub const PATHFINDER: Variant = Variant {
        resolution: 32,
        contour_length: 14,
    };
    /// LRA "Path-X": `pathfinder128/curv_contour_length_14`.
    pub const PATH_X: Variant = Variant {
        resolution: 128,
        contour_length: 14,
    };
    /// Path-256: `pathfinder256/curv_contour_length_14`.
    pub const PATH_256: Variant = Variant {
        resolution: 256,
        contour_length: 14,
    };

    /// The set of an LRA task name: `pathfinder`, `pathx` or `path256` (all contour length 14).
    pub fn for_task(name: &str) -> Option<Variant> {
        match name {
            "pathfinder" => Some(Self::PATHFINDER),
            "pathx" => Some(Self::PATH_X),
            "path256" => Some(Self::PATH_256),
            _ => None,
        }
    }

    /// Release folder of the resolution, e.g. `pathfinder128`.
    pub fn resolution_dir(&self) -> String {
        format!("pathfinder{}", self.resolution)
    }

    /// Release folder of the difficulty: `curv_baseline` for length 6, else
    /// `curv_contour_length_<n>`.
    pub fn difficulty_dir(&self) -> String {
        if self.contour_length == BASELINE_CONTOUR_LENGTH {
            "curv_baseline".to_string()
        } else {
            format!("curv_contour_length_{}", self.contour_length)
        }
    }

    /// `pathfinder<side>/<difficulty>`, the set's place below the release's top folder.
    pub fn relative_dir(&self) -> PathBuf {
        PathBuf::from(self.resolution_dir()).join(self.difficulty_dir())
    }

    /// Tokens per image: side².
    pub fn seq_len(&self) -> usize {
        (self.resolution as usize).pow(2)
    }
}
