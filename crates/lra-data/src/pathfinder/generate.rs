//! A Pathfinder generator after Linsley et al. 2018 (official code: github.com/drewlinsley/pathfinder,
//! `snakes2.py` / `snakes.py`), written from the algorithm, seeded and parallel.
//!
//! A contour ("snake") is a chain of straight pieces joined end to end; each piece of length
//! `paddle_length + 2·margin` is drawn only in its middle `paddle_length`, leaving the dashed look
//! of the original. Each new piece turns by an angle δ drawn with weight
//! `cos²(min(|δ|·continuity, π/2))` among the directions (one per pixel of arc, as the original)
//! whose piece keeps its distance from everything drawn so far. Two target contours start
//! `seed_distance` apart; short distractor contours fill the rest; one dot marks the start of a
//! target contour and the other the end of the same contour (label 1) or of the other one (label 0).
//!
//! Deviations from the official code, and why:
//! - Continuous coordinates and exact segment distances instead of integer pixel masks: paddles
//!   keep at least `2·margin + thickness` apart (the original's dilated masks may not overlap), and
//!   whole pieces, gaps included, at least [`TRACE_GAP`] px, so that two contours never touch and
//!   the label is exactly "one contour joins the dots" (checked by the tests with a flood fill).
//!   The original lets a snake come close to the other target snake's newest paddle.
//! - Drawing is a direct anti-aliased stroke (see `render.rs`) instead of PIL lines at 2×
//!   resampled with Lanczos; intensities are clipped to 1 instead of rescaled by the image maximum
//!   (the marker dots are 1, so the maximum is 1 either way).
//! - Every image has its own random stream (ChaCha8, stream = image index), so the output does not
//!   depend on the number of threads; the original used numpy's global generator per process.

use std::f32::consts::PI;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::geometry::{Point, Segment};
use super::render::Canvas;
use super::{RELEASE_RESOLUTIONS, Variant, png_io};
use crate::error::{DataError, Result};

/// Smallest distance in pixels between pieces (paddles plus their gaps) of different contours, or
/// of one contour away from its joints; keeps contours from touching.
pub const TRACE_GAP: f32 = 1.0;

/// Seed positions tried before a contour start counts as failed (`max_paddle_retrial + 1` of the
/// official wrapper).
const SEED_TRIES: u32 = 3;

/// Attempts at one distractor contour before it is left out (`max_distractor_contour_retrial + 1`).
const DISTRACTOR_TRIES: u32 = 5;

/// Attempts at the two target contours of one image before [`Generator::image`] gives up. The
/// release presets need 2 to 1,000 on average (most attempts run into the border), contour length
/// 20 at 32 px about 2,600; settings past this cap are infeasible in practice.
const MAX_PAIR_ATTEMPTS: u32 = 100_000;

/// Fewest direction candidates per step, for very short pieces.
const MIN_DIRECTIONS: usize = 8;

/// Drawing parameters; [`Shape::preset`] gives those of the official release.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    /// Length of one drawn paddle in pixels.
    pub paddle_length: f32,
    /// Stroke width of a paddle in pixels.
    pub paddle_thickness: f32,
    /// Gap half-width ("margin") choices; one is drawn per image.
    pub paddle_margins: Vec<f32>,
    /// Border in pixels that paddles keep clear of, on top of the margin.
    pub padding: f32,
    /// Distance in pixels between the starts of the two target contours.
    pub seed_distance: f32,
    /// Radius in pixels of the two marker dots.
    pub marker_radius: f32,
    /// Curvature limit: turns larger than `π / (2·continuity)` per paddle are never taken.
    pub continuity: f32,
    /// Paddle intensity in `[0, 1]` before clipping (official snake × paddle contrast).
    pub contrast: f32,
    /// Paddles per distractor contour (official: contour length / 3, rounded down).
    pub distractor_length: u32,
    /// Distractor contours per image (official: a per-resolution paddle budget / distractor length).
    pub distractor_snakes: u32,
}

/// The official settings of one release resolution (LRA `lra_benchmarks/data/pathfinder.py`
/// docstrings, other values from the `snakes2_wrapper.py` defaults).
struct Preset {
    side: u32,
    paddle_length: f32,
    paddle_thickness: f32,
    paddle_margins: &'static [f32],
    padding: f32,
    seed_distance: f32,
    marker_radius: f32,
    continuity: f32,
    contrast: f32,
    /// Paddles shared out among the distractor contours.
    distractor_paddles: u32,
}

const PRESETS: [Preset; 4] = [
    Preset {
        side: 32,
        paddle_length: 2.0,
        paddle_thickness: 0.5,
        paddle_margins: &[1.0],
        padding: 1.0,
        seed_distance: 7.0,
        marker_radius: 1.5,
        continuity: 1.0,
        contrast: 2.0 * 0.75,
        distractor_paddles: 20,
    },
    Preset {
        side: 64,
        paddle_length: 5.0,
        paddle_thickness: 1.0,
        paddle_margins: &[1.0],
        padding: 1.0,
        seed_distance: 12.0,
        marker_radius: 2.5,
        continuity: 1.8,
        contrast: 0.8,
        distractor_paddles: 22,
    },
    Preset {
        side: 128,
        paddle_length: 5.0,
        paddle_thickness: 1.5,
        paddle_margins: &[2.0, 3.0],
        padding: 1.0,
        seed_distance: 20.0,
        marker_radius: 3.0,
        continuity: 1.8,
        contrast: 0.9,
        distractor_paddles: 35,
    },
    Preset {
        side: 256,
        paddle_length: 5.0,
        paddle_thickness: 2.0,
        paddle_margins: &[3.0],
        padding: 22.0,
        seed_distance: 27.0,
        marker_radius: 5.0,
        continuity: 1.8,
        contrast: 1.0,
        distractor_paddles: 30,
    },
];

impl Shape {
    /// The official settings for `variant`. A side outside [`RELEASE_RESOLUTIONS`] takes the
    /// nearest release side's settings with every length scaled by the ratio of the sides.
    pub fn preset(variant: Variant) -> Shape {
        let side = variant.resolution.max(1) as f32;
        let preset = PRESETS
            .iter()
            .min_by(|a, b| {
                let off = |p: &Preset| (side / p.side as f32).ln().abs();
                off(a).total_cmp(&off(b))
            })
            .expect("presets are not empty");
        let scale = side / preset.side as f32;
        let distractor_length = (variant.contour_length / 3).max(1);
        Shape {
            paddle_length: preset.paddle_length * scale,
            paddle_thickness: preset.paddle_thickness * scale,
            paddle_margins: preset.paddle_margins.iter().map(|m| m * scale).collect(),
            padding: preset.padding * scale,
            seed_distance: preset.seed_distance * scale,
            marker_radius: preset.marker_radius * scale,
            continuity: preset.continuity,
            contrast: preset.contrast,
            distractor_length,
            distractor_snakes: preset.distractor_paddles / distractor_length,
        }
    }
}

/// What to generate; [`Default`] is LRA Pathfinder (32×32, contour length 14) at the release's
/// size.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Image side in pixels. Default: 32.
    pub resolution: u32,
    /// Paddles per target contour. Default: 14 (the "hard" sets LRA reports).
    pub contour_length: u32,
    /// Number of images. Default: 200,000 (LRA's configs assume 160,000 train + 20,000 val of
    /// about 200,000 per set).
    pub images: usize,
    /// Images per metadata file and `imgs/<k>` folder. Default: 1,000 (the release's split into
    /// per-process batches is not documented; readers accept any).
    pub images_per_batch: usize,
    /// Seed; the same configuration always gives the same files.
    pub seed: u64,
    /// Drawing parameters; `None` takes [`Shape::preset`] of the variant.
    pub shape: Option<Shape>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            resolution: Variant::PATHFINDER.resolution,
            contour_length: Variant::PATHFINDER.contour_length,
            images: 200_000,
            images_per_batch: 1_000,
            seed: 0,
            shape: None,
        }
    }
}

impl GeneratorConfig {
    /// The set this configuration makes.
    pub fn variant(&self) -> Variant {
        Variant {
            resolution: self.resolution,
            contour_length: self.contour_length,
        }
    }

    /// The drawing parameters in force: [`GeneratorConfig::shape`] or the variant's preset.
    pub fn effective_shape(&self) -> Shape {
        self.shape
            .clone()
            .unwrap_or_else(|| Shape::preset(self.variant()))
    }

    /// Checks every field, naming the first bad one and what it should be.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(DataError::Invalid(message));
        if !(8..=4096).contains(&self.resolution) {
            return invalid(format!(
                "resolution is {}; expected 8..=4096 pixels (release: {RELEASE_RESOLUTIONS:?})",
                self.resolution
            ));
        }
        if self.contour_length == 0 {
            return invalid("contour_length is 0; expected at least 1 paddle".to_string());
        }
        if self.images_per_batch == 0 {
            return invalid("images_per_batch is 0; expected at least 1".to_string());
        }
        let shape = self.effective_shape();
        let positive = [
            ("paddle_length", shape.paddle_length),
            ("paddle_thickness", shape.paddle_thickness),
            ("seed_distance", shape.seed_distance),
            ("marker_radius", shape.marker_radius),
            ("contrast", shape.contrast),
        ];
        let non_negative = [("padding", shape.padding), ("continuity", shape.continuity)];
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return invalid(format!(
                    "shape.{name} is {value}; expected a positive number"
                ));
            }
        }
        for (name, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return invalid(format!("shape.{name} is {value}; expected a number >= 0"));
            }
        }
        if shape.paddle_margins.is_empty() {
            return invalid("shape.paddle_margins is empty; expected at least one".to_string());
        }
        let side = self.resolution as f32;
        for &margin in &shape.paddle_margins {
            if !(margin.is_finite() && margin >= 0.0) {
                return invalid(format!(
                    "shape.paddle_margins has {margin}; expected numbers >= 0"
                ));
            }
            if 2.0 * (shape.padding + margin) + shape.paddle_length >= side {
                return invalid(format!(
                    "a paddle of length {} with margin {margin} and padding {} does not fit in \
                     {side} pixels",
                    shape.paddle_length, shape.padding
                ));
            }
        }
        if 4.0 * shape.seed_distance >= side {
            return invalid(format!(
                "shape.seed_distance is {}; the first contour starts at least 2·seed_distance \
                 from the border, so it must be below resolution / 4 = {}",
                shape.seed_distance,
                side / 4.0
            ));
        }
        if shape.distractor_length == 0 {
            return invalid("shape.distractor_length is 0; expected at least 1".to_string());
        }
        Ok(())
    }
}

/// One generated image with the geometry behind it.
#[derive(Clone, Debug)]
pub struct GeneratedImage {
    /// Row-major gray values, `resolution²` of them.
    pub pixels: Vec<u8>,
    /// 1 when both markers lie on one contour, else 0.
    pub label: u32,
    /// The paddle margin drawn for this image.
    pub margin: f32,
    /// Every contour drawn (targets first), each as the polyline from its first paddle's start
    /// through the joints to its last paddle's end, in pixel coordinates.
    pub contours: Vec<Vec<Point>>,
    /// Centres of the two marker dots (ends of contours).
    pub markers: [Point; 2],
    /// Tries the two target contours needed.
    pub pair_attempts: u32,
    /// Distractor contours drawn (some may not fit).
    pub distractors: u32,
}

/// A validated configuration, ready to draw images by index.
#[derive(Clone, Debug)]
pub struct Generator {
    config: GeneratorConfig,
    shape: Shape,
}

impl Generator {
    /// Validates `config` (see [`GeneratorConfig::validate`]).
    pub fn new(config: &GeneratorConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
            shape: config.effective_shape(),
        })
    }

    /// Draws image `index`; the result depends only on the configuration and `index`.
    ///
    /// Fails when the two target contours do not fit after 100,000 tries (settings that leave no
    /// room for them; the release presets need 2 to 1,000 on average).
    pub fn image(&self, index: u64) -> Result<GeneratedImage> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(index);
        let label = u32::from(rng.random_bool(0.5));
        let margin =
            self.shape.paddle_margins[rng.random_range(0..self.shape.paddle_margins.len())];
        let mut scene = Scene {
            shape: &self.shape,
            side: self.config.resolution as f32,
            margin,
            pieces: Vec::new(),
        };

        let mut pair_attempts = 0;
        let targets = loop {
            pair_attempts += 1;
            if let Some(targets) = scene.target_pair(&mut rng, self.config.contour_length) {
                break targets;
            }
            if pair_attempts >= MAX_PAIR_ATTEMPTS {
                return Err(DataError::Invalid(format!(
                    "image {index}: two target contours of {} paddles did not fit in {} \
                     attempts; the shape settings leave too little room",
                    self.config.contour_length, MAX_PAIR_ATTEMPTS
                )));
            }
        };
        let mut distractors = 0;
        for snake in 2..2 + self.shape.distractor_snakes as usize {
            distractors += u32::from(scene.distractor(&mut rng, snake));
        }

        let origin = rng.random_range(0..2);
        let terminal = if label == 1 { origin } else { 1 - origin };
        let markers = [
            targets[origin][0],
            *targets[terminal].last().expect("non-empty"),
        ];
        let mut canvas = Canvas::new(self.config.resolution as usize);
        for piece in &scene.pieces {
            canvas.stroke(piece.core, self.shape.paddle_thickness, self.shape.contrast);
        }
        for marker in markers {
            canvas.disk(marker, self.shape.marker_radius, 1.0);
        }
        Ok(GeneratedImage {
            pixels: canvas.to_gray(),
            label,
            margin,
            contours: scene.contours(),
            markers,
            pair_attempts,
            distractors,
        })
    }
}

/// One piece of a contour: the straight run from joint to joint, drawn in its middle.
#[derive(Clone, Copy, Debug)]
struct Piece {
    snake: usize,
    index: usize,
    /// Joint to joint, gaps included.
    line: Segment,
    /// The drawn paddle: `line` less `margin` at both ends.
    core: Segment,
}

/// Where a contour grows next: its last piece's end joint and direction.
struct Growth {
    snake: usize,
    index: usize,
    joint: Point,
    angle: f32,
}

/// The pieces placed so far in one image.
struct Scene<'a> {
    shape: &'a Shape,
    side: f32,
    margin: f32,
    pieces: Vec<Piece>,
}

impl Scene<'_> {
    fn piece(&self, snake: usize, index: usize, joint: Point, angle: f32) -> Piece {
        let direction = Point::unit(angle);
        let (margin, length) = (self.margin, self.shape.paddle_length);
        Piece {
            snake,
            index,
            line: Segment {
                a: joint,
                b: joint + direction * (length + 2.0 * margin),
            },
            core: Segment {
                a: joint + direction * margin,
                b: joint + direction * (margin + length),
            },
        }
    }

    /// The piece whose paddle starts at `tail`.
    fn piece_from_tail(&self, snake: usize, tail: Point, angle: f32) -> Piece {
        self.piece(snake, 0, tail - Point::unit(angle) * self.margin, angle)
    }

    /// Whether `piece` stays inside the border and keeps its distance from every placed piece but
    /// its own predecessor, which it joins.
    fn fits(&self, piece: &Piece) -> bool {
        let lo = self.shape.padding + self.margin;
        let hi = self.side - lo;
        let inside = |p: Point| (lo..=hi).contains(&p.x) && (lo..=hi).contains(&p.y);
        if !(inside(piece.core.a) && inside(piece.core.b)) {
            return false;
        }
        let paddle_gap = 2.0 * self.margin + self.shape.paddle_thickness;
        let either_gap = paddle_gap.max(TRACE_GAP);
        self.pieces.iter().all(|other| {
            let joined = other.snake == piece.snake && other.index + 1 == piece.index;
            // Most pieces are far away; their bounding boxes settle it without exact distances
            // (cores lie inside lines, so both gaps hold).
            joined
                || piece.line.box_separation(&other.line) >= either_gap
                || (piece.core.distance(&other.core) >= paddle_gap
                    && piece.line.distance(&other.line) >= TRACE_GAP)
        })
    }

    /// Places a contour's first piece at a random free spot of `[lo, hi]²`; `None` after
    /// [`SEED_TRIES`] misses.
    fn seed(&mut self, rng: &mut ChaCha8Rng, snake: usize, lo: f32, hi: f32) -> Option<Growth> {
        for _ in 0..SEED_TRIES {
            let tail = Point::new(rng.random_range(lo..=hi), rng.random_range(lo..=hi));
            let angle = rng.random_range(-PI..PI);
            if let Some(growth) = self.place_first(snake, tail, angle) {
                return Some(growth);
            }
        }
        None
    }

    fn place_first(&mut self, snake: usize, tail: Point, angle: f32) -> Option<Growth> {
        let piece = self.piece_from_tail(snake, tail, angle);
        self.fits(&piece).then(|| {
            self.pieces.push(piece);
            Growth {
                snake,
                index: 0,
                joint: piece.line.b,
                angle,
            }
        })
    }

    /// Adds one piece to a contour, turning by a weighted random angle among those that fit;
    /// false when none fits.
    fn extend(&mut self, rng: &mut ChaCha8Rng, growth: &mut Growth) -> bool {
        // One candidate per pixel of arc at the paddle's far end, as the official sampler.
        let radius = self.shape.paddle_length + self.margin;
        let directions = ((2.0 * PI * radius).ceil() as usize).max(MIN_DIRECTIONS);
        let mut candidates: Vec<(f32, Piece, f32)> = Vec::new();
        let mut total = 0.0;
        for k in 0..directions {
            let mut turn = 2.0 * PI * k as f32 / directions as f32;
            if turn > PI {
                turn -= 2.0 * PI;
            }
            let weight = (turn.abs() * self.shape.continuity)
                .min(PI / 2.0)
                .cos()
                .powi(2);
            if weight < 1e-6 {
                continue;
            }
            let angle = growth.angle + turn;
            let piece = self.piece(growth.snake, growth.index + 1, growth.joint, angle);
            if self.fits(&piece) {
                total += weight;
                candidates.push((weight, piece, angle));
            }
        }
        if candidates.is_empty() {
            return false;
        }
        let mut target = rng.random_range(0.0..total);
        let chosen = candidates
            .iter()
            .find(|(weight, ..)| {
                target -= weight;
                target < 0.0
            })
            .unwrap_or(candidates.last().expect("non-empty"));
        let (_, piece, angle) = *chosen;
        self.pieces.push(piece);
        growth.index += 1;
        growth.joint = piece.line.b;
        growth.angle = angle;
        true
    }

    /// Draws the two target contours, starting `seed_distance` apart and growing in turns as the
    /// original does; `None` (with the scene cleared) when either does not fit.
    fn target_pair(&mut self, rng: &mut ChaCha8Rng, length: u32) -> Option<[Vec<Point>; 2]> {
        self.pieces.clear();
        let reach = 2.0 * self.shape.seed_distance;
        let mut first = self.seed(rng, 0, reach, self.side - reach)?;
        let first_tail = self.pieces[0].core.a;
        let mut second = (0..SEED_TRIES).find_map(|_| {
            let bearing = rng.random_range(-PI..PI);
            let tail = first_tail + Point::unit(bearing) * self.shape.seed_distance;
            let angle = rng.random_range(-PI..PI);
            self.place_first(1, tail, angle)
        })?;
        for _ in 1..length {
            if !(self.extend(rng, &mut first) && self.extend(rng, &mut second)) {
                return None;
            }
        }
        let contours = self.contours();
        Some([contours[0].clone(), contours[1].clone()])
    }

    /// Tries to add one distractor contour; on failure nothing of it stays.
    fn distractor(&mut self, rng: &mut ChaCha8Rng, snake: usize) -> bool {
        let lo = self.shape.padding + self.margin;
        for _ in 0..DISTRACTOR_TRIES {
            let placed = self.pieces.len();
            if let Some(mut growth) = self.seed(rng, snake, lo, self.side - lo)
                && (1..self.shape.distractor_length).all(|_| self.extend(rng, &mut growth))
            {
                return true;
            }
            self.pieces.truncate(placed);
        }
        false
    }

    /// Each contour's polyline (first paddle start, the joints, last paddle end), in contour order.
    fn contours(&self) -> Vec<Vec<Point>> {
        // The target contours grow in turns, so their pieces interleave in `pieces`.
        let mut pieces = self.pieces.clone();
        pieces.sort_by_key(|piece| (piece.snake, piece.index));
        pieces
            .chunk_by(|a, b| a.snake == b.snake)
            .map(|chain| {
                let mut points = vec![chain[0].core.a];
                points.extend(chain[1..].iter().map(|piece| piece.line.a));
                points.push(chain[chain.len() - 1].core.b);
                points
            })
            .collect()
    }
}

/// What [`generate`] keeps of one image for the metadata and the totals.
struct Drawn {
    label: u32,
    margin: f32,
    pair_attempts: u32,
    distractors: u32,
}

/// Totals of one [`generate`] run.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// The folder written (`<out>/pathfinder<side>/<difficulty>`).
    pub dir: PathBuf,
    /// Images written.
    pub images: usize,
    /// Images with label 1.
    pub positives: usize,
    /// Mean tries per image for the two target contours.
    pub mean_pair_attempts: f64,
    /// Distractor contours drawn over all images.
    pub distractors_drawn: u64,
    /// Distractor contours asked for over all images; some do not fit in crowded images.
    pub distractors_wanted: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Generates `config.images` images into `<out>/pathfinder<side>/<difficulty>/` in the release
/// layout (`imgs/<k>/sample_<i>.png`, `metadata/<k>.npy` text records), in parallel on the
/// current rayon pool; [`super::find`] on `out` then finds the set.
///
/// The metadata files are written last, each through a temporary name, so an interrupted run
/// leaves no metadata listing missing images. Refuses a folder that already has metadata files.
pub fn generate(config: &GeneratorConfig, out: &Path) -> Result<Stats> {
    generate_with_progress(config, out, &|| {})
}

/// [`generate`], calling `on_image` once per image written (from the worker threads), e.g. to
/// advance a progress bar.
pub fn generate_with_progress(
    config: &GeneratorConfig,
    out: &Path,
    on_image: &(dyn Fn() + Sync),
) -> Result<Stats> {
    let start = Instant::now();
    let generator = Generator::new(config)?;
    let shape = &generator.shape;
    let variant = config.variant();
    let dir = out.join(variant.relative_dir());
    let metadata_dir = dir.join("metadata");
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::io(path, source)
    };
    if metadata_dir.is_dir()
        && fs::read_dir(&metadata_dir)
            .map_err(io_error(&metadata_dir))?
            .next()
            .is_some()
    {
        return Err(DataError::Invalid(format!(
            "{} already holds metadata files; remove the folder or generate elsewhere",
            metadata_dir.display()
        )));
    }
    let per_batch = config.images_per_batch;
    let batches = config.images.div_ceil(per_batch);
    fs::create_dir_all(&metadata_dir).map_err(io_error(&metadata_dir))?;
    for batch in 0..batches {
        let batch_dir = dir.join("imgs").join(batch.to_string());
        fs::create_dir_all(&batch_dir).map_err(io_error(&batch_dir))?;
    }

    let side = config.resolution;
    let drawn: Vec<Drawn> = (0..config.images)
        .into_par_iter()
        .map(|i| {
            let image = generator.image(i as u64)?;
            let path = dir
                .join("imgs")
                .join((i / per_batch).to_string())
                .join(format!("sample_{}.png", i % per_batch));
            fs::write(&path, png_io::encode_gray(side, &image.pixels)).map_err(io_error(&path))?;
            on_image();
            Ok(Drawn {
                label: image.label,
                margin: image.margin,
                pair_attempts: image.pair_attempts,
                distractors: image.distractors,
            })
        })
        .collect::<Result<_>>()?;

    for (batch, chunk) in drawn.chunks(per_batch).enumerate() {
        let mut text = String::new();
        for (j, image) in chunk.iter().enumerate() {
            // Fields as the official `accumulate_meta`: folder, file, index, label, continuity,
            // contour length, distractor length, paddle length, thickness, margin, contrast count.
            text.push_str(&format!(
                "imgs/{batch} sample_{j}.png {j} {} {:?} {} {} {} {} {} 1\n",
                image.label,
                shape.continuity,
                config.contour_length,
                shape.distractor_length,
                shape.paddle_length,
                shape.paddle_thickness,
                image.margin
            ));
        }
        write_atomically(&metadata_dir.join(format!("{batch}.npy")), text.as_bytes())?;
    }

    let total = |field: fn(&Drawn) -> u32| drawn.iter().map(|d| u64::from(field(d))).sum::<u64>();
    Ok(Stats {
        dir,
        images: drawn.len(),
        positives: total(|d| d.label) as usize,
        mean_pair_attempts: total(|d| d.pair_attempts) as f64 / drawn.len().max(1) as f64,
        distractors_drawn: total(|d| d.distractors),
        distractors_wanted: drawn.len() as u64 * u64::from(shape.distractor_snakes),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes `bytes` under a temporary name beside `path`, then renames it into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(path.file_name().unwrap_or_default());
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let written = fs::File::create(&temp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| fs::rename(&temp, path));
    written.map_err(|source| {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&temp);
        DataError::io(path, source)
    })
}
