//! Pathfinder: the reader on fixtures in the exact release layout, its errors, the set check, and
//! the generator's labels checked by an independent flood fill along the drawn contours.

use std::fs;
use std::path::{Path, PathBuf};

use lra_data::pathfinder::{
    self, GeneratedImage, Generator, GeneratorConfig, ProblemKind, Variant, check, encode_gray,
    find, load, read_records, read_split, split_range,
};
use lra_data::{DataError, Split};

/// A deterministic, distinct `side²` image for fixture `i`.
fn fixture_pixels(side: u32, i: usize) -> Vec<u8> {
    (0..side * side)
        .map(|p| ((p as usize * 7 + i * 31) % 251) as u8)
        .collect()
}

/// A release-style metadata line for image `j` of batch `k`.
fn record_line(k: usize, j: usize, label: u32) -> String {
    format!("imgs/{k} sample_{j}.png {j} {label} 1.0 14 4 2 0.5 1 1\n")
}

/// Writes `labels.len()` images split over `batches` metadata files into `dir` (a set folder) and
/// returns the pixels in record order.
fn write_set(dir: &Path, side: u32, batches: usize, labels: &[u32]) -> Vec<Vec<u8>> {
    fs::create_dir_all(dir.join("metadata")).unwrap();
    let per_batch = labels.len().div_ceil(batches);
    let mut all = Vec::new();
    for (k, chunk) in labels.chunks(per_batch).enumerate() {
        fs::create_dir_all(dir.join(format!("imgs/{k}"))).unwrap();
        let mut text = String::new();
        for (j, &label) in chunk.iter().enumerate() {
            let pixels = fixture_pixels(side, all.len());
            fs::write(
                dir.join(format!("imgs/{k}/sample_{j}.png")),
                encode_gray(side, &pixels),
            )
            .unwrap();
            text.push_str(&record_line(k, j, label));
            all.push(pixels);
        }
        fs::write(dir.join(format!("metadata/{k}.npy")), text).unwrap();
    }
    all
}

/// The hard Pathfinder-32 set of a release unpacked under `top`, as the tarball unpacks.
fn release_set_dir(top: &Path) -> PathBuf {
    top.join("lra_release/lra_release/pathfinder32/curv_contour_length_14")
}

fn alternating_labels(n: usize) -> Vec<u32> {
    (0..n).map(|i| (i % 2) as u32).collect()
}

#[test]
fn release_layout_reads_back_from_any_folder_level() {
    let top = tempfile::tempdir().unwrap();
    let set = release_set_dir(top.path());
    // 12 records over 3 metadata files; file 10 sorts after 2 numerically.
    let labels = alternating_labels(12);
    let pixels = write_set(&set, 32, 3, &labels);
    fs::rename(set.join("metadata/2.npy"), set.join("metadata/10.npy")).unwrap();

    let roots = [
        top.path().to_path_buf(),
        top.path().join("lra_release"),
        top.path().join("lra_release/lra_release"),
        set.parent().unwrap().to_path_buf(),
        set.clone(),
    ];
    for root in roots {
        let layout = find(&root, Variant::PATHFINDER).unwrap();
        assert_eq!(layout.dir, set, "from {}", root.display());
        let names: Vec<_> = layout
            .metadata_files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["0.npy", "1.npy", "10.npy"]);
    }

    let layout = find(top.path(), Variant::PATHFINDER).unwrap();
    let records = read_records(&layout).unwrap();
    assert_eq!(records.len(), 12);
    assert_eq!(records[5].image, Path::new("imgs/1/sample_1.png"));
    assert_eq!(records[5].line, 2);
    let loaded = load(&layout, &records).unwrap();
    assert!(loaded.skipped_empty.is_empty());
    let read_labels: Vec<u32> = loaded.samples.iter().map(|s| s.label).collect();
    assert_eq!(read_labels, labels);
    for (sample, expected) in loaded.samples.iter().zip(&pixels) {
        assert_eq!(&sample.pixels, expected);
    }
}

#[test]
fn splits_are_80_10_10_of_the_records_in_order() {
    assert_eq!(split_range(100, Split::Train), 0..80);
    assert_eq!(split_range(100, Split::Val), 80..90);
    assert_eq!(split_range(100, Split::Test), 90..100);
    assert_eq!(split_range(200_000, Split::Val), 160_000..180_000);

    let top = tempfile::tempdir().unwrap();
    let set = release_set_dir(top.path());
    let pixels = write_set(&set, 32, 2, &alternating_labels(20));
    let layout = find(top.path(), Variant::PATHFINDER).unwrap();
    let val = read_split(&layout, Split::Val).unwrap();
    let val_pixels: Vec<_> = val.samples.into_iter().map(|s| s.pixels).collect();
    assert_eq!(val_pixels, pixels[16..18]);
}

#[test]
fn missing_data_error_says_what_is_expected_and_where_it_comes_from() {
    let top = tempfile::tempdir().unwrap();
    let error = find(top.path(), Variant::PATH_X).unwrap_err().to_string();
    for fragment in [
        "pathfinder128/curv_contour_length_14",
        "lra_release/pathfinder128/curv_contour_length_14/metadata/*.npy",
        "metadata/<k>.npy",
        "imgs/<k>/sample_<i>.png",
        "128×128 8-bit grayscale PNG",
        "lra_release.gz",
        "generate",
    ] {
        assert!(error.contains(fragment), "{error:?} lacks {fragment:?}");
    }
    // An empty metadata folder is missing data too.
    fs::create_dir_all(
        top.path()
            .join("pathfinder128/curv_contour_length_14/metadata"),
    )
    .unwrap();
    assert!(find(top.path(), Variant::PATH_X).is_err());
}

#[test]
fn another_sets_folder_is_rejected_by_name() {
    let top = tempfile::tempdir().unwrap();
    let easy = top.path().join("pathfinder32/curv_baseline");
    write_set(&easy, 32, 1, &[0, 1]);
    let error = find(&easy, Variant::PATHFINDER).unwrap_err().to_string();
    assert!(error.contains("curv_contour_length_14"), "{error}");
    let hard128 = top.path().join("pathfinder128/curv_contour_length_14");
    write_set(&hard128, 32, 1, &[0, 1]);
    let error = find(&hard128, Variant::PATHFINDER).unwrap_err().to_string();
    assert!(error.contains("pathfinder32"), "{error}");
}

/// Writes a one-file set whose metadata has `lines`, and the error of reading its records.
fn record_error(lines: &str) -> (PathBuf, DataError) {
    let top = tempfile::tempdir().unwrap().keep();
    let set = top.join("pathfinder32/curv_contour_length_14");
    fs::create_dir_all(set.join("metadata")).unwrap();
    let path = set.join("metadata/0.npy");
    fs::write(&path, lines).unwrap();
    let layout = find(&top, Variant::PATHFINDER).unwrap();
    (path, read_records(&layout).unwrap_err())
}

#[test]
fn malformed_records_name_file_and_line() {
    let good = record_line(0, 0, 1);
    let cases = [
        ("imgs/0 sample_1.png 1\n", 2, "expected at least 4"),
        (
            "imgs/0 sample_1.png 1 2 1.0 14\n",
            2,
            "label 2 out of range",
        ),
        (
            "imgs/0 sample_1.png 1 yes\n",
            2,
            "label `yes` is not an integer",
        ),
        ("imgs/0 sample_1.png 1 -1\n", 2, "not an integer"),
        ("../../etc sample_1.png 1 0\n", 2, "must stay inside"),
    ];
    for (bad, line, fragment) in cases {
        let (path, error) = record_error(&format!("{good}{bad}"));
        let shown = error.to_string();
        match error {
            DataError::Parse {
                path: error_path,
                line: error_line,
                message,
            } => {
                assert_eq!(error_path, path);
                assert_eq!(error_line, line, "{shown}");
                assert!(message.contains(fragment), "{shown:?} lacks {fragment:?}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        assert!(shown.starts_with(&format!("{}:{line}: ", path.display())));
    }
    // Blank lines and a missing final newline are fine.
    let top = tempfile::tempdir().unwrap();
    let set = top.path().join("pathfinder32/curv_contour_length_14");
    write_set(&set, 32, 1, &[1, 0]);
    fs::write(
        set.join("metadata/0.npy"),
        format!(
            "{}\n{}",
            record_line(0, 0, 1),
            record_line(0, 1, 0).trim_end()
        ),
    )
    .unwrap();
    let layout = find(top.path(), Variant::PATHFINDER).unwrap();
    let records = read_records(&layout).unwrap();
    assert_eq!(records.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3]);
}

#[test]
fn bad_images_are_errors_naming_image_and_record_and_empty_ones_are_skipped() {
    let top = tempfile::tempdir().unwrap();
    let set = release_set_dir(top.path());
    write_set(&set, 32, 1, &alternating_labels(4));
    let layout = find(top.path(), Variant::PATHFINDER).unwrap();
    let records = read_records(&layout).unwrap();
    let image = |j: usize| set.join(format!("imgs/0/sample_{j}.png"));

    fs::write(image(2), []).unwrap();
    let loaded = load(&layout, &records).unwrap();
    assert_eq!(loaded.samples.len(), 3);
    assert_eq!(loaded.skipped_empty, [image(2)]);

    let bad_images: [(Vec<u8>, &str); 3] = [
        (
            encode_gray(64, &[0; 64 * 64]),
            "image is 64×64 pixels, expected 32×32",
        ),
        (b"\x89PNG\r\n\x1a\n broken".to_vec(), "PNG"),
        (encode_gray(32, &[9; 32 * 32])[..200].to_vec(), "PNG"),
    ];
    for (bytes, fragment) in bad_images {
        fs::write(image(1), bytes).unwrap();
        let error = load(&layout, &records).unwrap_err().to_string();
        assert!(error.contains(fragment), "{error:?} lacks {fragment:?}");
        assert!(
            error.starts_with(&image(1).display().to_string()),
            "{error}"
        );
        assert!(error.contains("0.npy line 2"), "{error}");
    }
    fs::remove_file(image(1)).unwrap();
    let error = load(&layout, &records).unwrap_err().to_string();
    assert!(
        error.contains("file not found") && error.contains("line 2"),
        "{error}"
    );
}

#[test]
fn check_lists_every_problem_with_image_and_record() {
    let top = tempfile::tempdir().unwrap();
    let set = release_set_dir(top.path());
    // 40 records, 33 of them label 1: 4.1 standard deviations from even.
    let labels: Vec<u32> = (0..40).map(|i| u32::from(i % 6 != 0)).collect();
    let pixels = write_set(&set, 32, 2, &labels);
    let layout = find(top.path(), Variant::PATHFINDER).unwrap();
    assert_eq!(check(&layout).count(ProblemKind::LabelImbalance), 1);

    let image = |j: usize| set.join(format!("imgs/0/sample_{j}.png"));
    fs::write(image(1), []).unwrap();
    fs::write(image(2), b"not a png").unwrap();
    fs::write(image(3), encode_gray(16, &[0; 256])).unwrap();
    fs::write(image(4), encode_gray(32, &pixels[0])).unwrap();
    fs::remove_file(image(5)).unwrap();
    let mut metadata = fs::read_to_string(set.join("metadata/1.npy")).unwrap();
    metadata.push_str(&record_line(0, 6, 1)); // line 21: lists imgs/0/sample_6.png again
    metadata.push_str("imgs/1 sample_0.png 0 7\n"); // line 22: bad label
    fs::write(set.join("metadata/1.npy"), metadata).unwrap();

    let report = check(&layout);
    let meta = |k: usize| set.join(format!("metadata/{k}.npy"));
    let expect = |kind: ProblemKind, image: Option<PathBuf>, record: (PathBuf, usize)| {
        let found = report
            .problems
            .iter()
            .find(|p| p.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} in {report}"));
        assert_eq!(found.image, image, "{found}");
        assert_eq!(found.record, Some(record), "{found}");
        assert_eq!(report.count(kind), 1, "{report}");
    };
    expect(ProblemKind::EmptyImage, Some(image(1)), (meta(0), 2));
    expect(ProblemKind::CorruptImage, Some(image(2)), (meta(0), 3));
    expect(ProblemKind::WrongSize, Some(image(3)), (meta(0), 4));
    expect(ProblemKind::DuplicateImage, Some(image(4)), (meta(0), 5));
    expect(ProblemKind::MissingImage, Some(image(5)), (meta(0), 6));
    expect(ProblemKind::DuplicateRecord, Some(image(6)), (meta(1), 21));
    expect(ProblemKind::MalformedRecord, None, (meta(1), 22));
    assert_eq!(report.count(ProblemKind::LabelImbalance), 1);
    assert_eq!(report.problems.len(), 8, "{report}");
    assert_eq!(report.records, 41);
    assert_eq!(report.good_images, 40 - 4);
    let duplicate = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::DuplicateImage)
        .unwrap();
    assert!(duplicate.detail.contains("sample_0.png"), "{duplicate}");
    let shown = report.to_string();
    assert!(
        shown.contains("8 problems") && shown.contains("0.npy line 3"),
        "{shown}"
    );
}

// ---- Generator -------------------------------------------------------------------------------

/// Sub-pixels per pixel side of the flood-fill raster: contours of different snakes keep
/// `TRACE_GAP` = 1 px apart, 4 sub-pixels, so their rasterised lines are never 8-neighbours.
const TRACE_SCALE: f32 = 4.0;

/// Rasterises every contour polyline (all in one layer, with no idea which is which) at
/// [`TRACE_SCALE`] and flood-fills from the first marker; returns whether the second is reached.
fn markers_connected(image: &GeneratedImage, side: u32) -> bool {
    let n = (side as f32 * TRACE_SCALE) as usize;
    let cell = |x: f32, y: f32| {
        let to = |v: f32| ((v * TRACE_SCALE).floor().max(0.0) as usize).min(n - 1);
        to(y) * n + to(x)
    };
    let mut ink = vec![false; n * n];
    for contour in &image.contours {
        for pair in contour.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let steps = ((b - a).norm() * TRACE_SCALE * 8.0).ceil().max(1.0) as usize;
            for s in 0..=steps {
                let t = s as f32 / steps as f32;
                ink[cell(a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t)] = true;
            }
        }
    }
    let [from, to] = image.markers.map(|m| cell(m.x, m.y));
    assert!(ink[from] && ink[to], "markers lie on contour ends");
    let mut seen = vec![false; n * n];
    let mut stack = vec![from];
    seen[from] = true;
    while let Some(c) = stack.pop() {
        let (row, col) = ((c / n) as isize, (c % n) as isize);
        for dr in -1..=1 {
            for dc in -1..=1 {
                let (r, q) = (row + dr, col + dc);
                if r < 0 || q < 0 || r >= n as isize || q >= n as isize {
                    continue;
                }
                let next = r as usize * n + q as usize;
                if ink[next] && !seen[next] {
                    seen[next] = true;
                    stack.push(next);
                }
            }
        }
    }
    seen[to]
}

fn distance_to_polyline(
    p: lra_data::pathfinder::Point,
    line: &[lra_data::pathfinder::Point],
) -> f32 {
    line.windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            let ab = b - a;
            let t = (((p - a).x * ab.x + (p - a).y * ab.y) / (ab.x * ab.x + ab.y * ab.y))
                .clamp(0.0, 1.0);
            (p - (a + ab * t)).norm()
        })
        .fold(f32::INFINITY, f32::min)
}

/// Checks that the contours are what the image shows: bright pixels lie on a contour or a
/// marker, and every piece of every contour has ink under it.
fn assert_contours_match_pixels(image: &GeneratedImage, config: &GeneratorConfig) {
    use lra_data::pathfinder::Point;
    let shape = config.effective_shape();
    let side = config.resolution as usize;
    for (index, &value) in image.pixels.iter().enumerate() {
        if value < 128 {
            continue;
        }
        let centre = Point::new((index % side) as f32 + 0.5, (index / side) as f32 + 0.5);
        let near_contour = image
            .contours
            .iter()
            .any(|c| distance_to_polyline(centre, c) <= shape.paddle_thickness / 2.0 + 1.0);
        let near_marker = image
            .markers
            .iter()
            .any(|&m| (centre - m).norm() <= shape.marker_radius + 1.0);
        assert!(near_contour || near_marker, "stray ink at pixel {index}");
    }
    for contour in &image.contours {
        for pair in contour.windows(2) {
            let mid = (pair[0] + pair[1]) * 0.5;
            let (col, row) = (mid.x as isize, mid.y as isize);
            let brightest = (-1..=1)
                .flat_map(|dr| (-1..=1).map(move |dc| (row + dr, col + dc)))
                .filter(|&(r, c)| r >= 0 && c >= 0 && (r as usize) < side && (c as usize) < side)
                .map(|(r, c)| image.pixels[r as usize * side + c as usize])
                .max()
                .unwrap();
            assert!(brightest >= 64, "no ink under the piece around {mid:?}");
        }
    }
}

fn config(resolution: u32, images: usize, seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        resolution,
        images,
        images_per_batch: 16,
        seed,
        ..GeneratorConfig::default()
    }
}

#[test]
fn generated_labels_match_a_flood_fill_along_the_drawn_contours() {
    for (resolution, images) in [(32, 300), (64, 40), (128, 60), (256, 20)] {
        let config = config(resolution, images, 7);
        let shape = config.effective_shape();
        let generator = Generator::new(&config).unwrap();
        let mut positives = 0;
        for index in 0..images as u64 {
            let image = generator.image(index).unwrap();
            assert_eq!(image.pixels.len(), (resolution * resolution) as usize);
            // Two full-length targets: contour_length pieces, so contour_length + 1 points.
            for target in &image.contours[..2] {
                assert_eq!(target.len(), config.contour_length as usize + 1);
            }
            for distractor in &image.contours[2..] {
                assert_eq!(distractor.len(), shape.distractor_length as usize + 1);
            }
            assert_eq!(
                markers_connected(&image, resolution),
                image.label == 1,
                "{resolution}px image {index}: label {} disagrees with the flood fill",
                image.label
            );
            assert_contours_match_pixels(&image, &config);
            positives += image.label;
        }
        assert!(
            positives > 0 && positives < images as u32,
            "{resolution}px: both labels"
        );
    }
}

#[test]
fn generated_contours_keep_apart_and_respect_the_curvature_limit() {
    let config = config(128, 40, 3);
    let shape = config.effective_shape();
    let max_turn = std::f32::consts::PI / (2.0 * shape.continuity);
    let generator = Generator::new(&config).unwrap();
    for index in 0..40 {
        let image = generator.image(index).unwrap();
        for (i, a) in image.contours.iter().enumerate() {
            for w in a.windows(3) {
                let (u, v) = (w[1] - w[0], w[2] - w[1]);
                let turn = (u.x * v.y - u.y * v.x).atan2(u.x * v.x + u.y * v.y).abs();
                assert!(
                    turn < max_turn + 1e-4,
                    "image {index}: turn {turn} > {max_turn}"
                );
            }
            for b in &image.contours[i + 1..] {
                let gap = polyline_gap(a, b);
                assert!(
                    gap >= pathfinder::TRACE_GAP - 1e-4,
                    "image {index}: contours {gap} apart"
                );
            }
        }
    }
}

/// Smallest distance between two polylines, from points every 0.05 px along the first (so at most
/// 0.025 px above the exact value).
fn polyline_gap(a: &[lra_data::pathfinder::Point], b: &[lra_data::pathfinder::Point]) -> f32 {
    a.windows(2)
        .flat_map(|w| {
            let steps = ((w[1] - w[0]).norm() / 0.05).ceil().max(1.0) as usize;
            (0..=steps).map(move |s| w[0] + (w[1] - w[0]) * (s as f32 / steps as f32))
        })
        .map(|p| distance_to_polyline(p, b))
        .fold(f32::INFINITY, f32::min)
}

#[test]
fn generated_labels_are_balanced() {
    use rayon::prelude::*;
    let images = 2_000;
    let generator = Generator::new(&config(32, images, 11)).unwrap();
    let positives: u32 = (0..images as u64)
        .into_par_iter()
        .map(|i| generator.image(i).unwrap().label)
        .sum();
    // A fair coin: 4 standard deviations are 4 · √2000 / 2 ≈ 89.
    let off = (f64::from(positives) - images as f64 / 2.0).abs();
    assert!(
        off <= 4.0 * (images as f64).sqrt() / 2.0,
        "{positives} of {images}"
    );
}

#[test]
fn generate_writes_a_set_that_reads_back_checks_clean_and_is_reproducible() {
    let config = config(32, 50, 5);
    let out = tempfile::tempdir().unwrap();
    let stats = generate_on(1, &config, out.path());
    assert_eq!(stats.images, 50);
    assert_eq!(
        stats.dir,
        out.path().join("pathfinder32/curv_contour_length_14")
    );

    let layout = find(out.path(), Variant::PATHFINDER).unwrap();
    assert_eq!(layout.metadata_files.len(), 4); // 16 + 16 + 16 + 2
    let report = check(&layout);
    assert!(report.is_ok(), "{report}");
    let records = read_records(&layout).unwrap();
    assert_eq!(records[17].image, Path::new("imgs/1/sample_1.png"));
    let first_line = fs::read_to_string(&layout.metadata_files[0]).unwrap();
    let fields: Vec<&str> = first_line.lines().next().unwrap().split(' ').collect();
    assert_eq!(fields.len(), 11, "{first_line}");
    assert_eq!(&fields[..3], ["imgs/0", "sample_0.png", "0"]);
    assert_eq!(&fields[4..], ["1.0", "14", "4", "2", "0.5", "1", "1"]);

    let loaded = load(&layout, &records).unwrap();
    let generator = Generator::new(&config).unwrap();
    for (i, sample) in loaded.samples.iter().enumerate() {
        let image = generator.image(i as u64).unwrap();
        assert_eq!((&sample.pixels, sample.label), (&image.pixels, image.label));
    }
    assert_eq!(
        stats.positives,
        loaded.samples.iter().filter(|s| s.label == 1).count()
    );

    // Same bytes with two threads; another seed gives other images.
    let again = tempfile::tempdir().unwrap();
    generate_on(2, &config, again.path());
    let set = Variant::PATHFINDER.relative_dir();
    for record in &records {
        let read = |root: &Path| fs::read(root.join(&set).join(&record.image)).unwrap();
        assert_eq!(
            read(out.path()),
            read(again.path()),
            "{}",
            record.image.display()
        );
    }
    assert_eq!(
        fs::read(&layout.metadata_files[3]).unwrap(),
        fs::read(again.path().join(&set).join("metadata/3.npy")).unwrap()
    );
    let other = Generator::new(&GeneratorConfig {
        seed: 6,
        ..config.clone()
    })
    .unwrap();
    assert_ne!(
        other.image(0).unwrap().pixels,
        generator.image(0).unwrap().pixels
    );

    // A second run into the same folder is refused rather than mixed in.
    let error = lra_data::pathfinder::generate(&config, out.path())
        .unwrap_err()
        .to_string();
    assert!(error.contains("already holds metadata"), "{error}");
}

fn generate_on(threads: usize, config: &GeneratorConfig, out: &Path) -> pathfinder::Stats {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| pathfinder::generate(config, out))
        .unwrap()
}

#[test]
fn invalid_generator_settings_name_the_field() {
    let cases: [(GeneratorConfig, &str); 5] = [
        (
            GeneratorConfig {
                resolution: 4,
                ..GeneratorConfig::default()
            },
            "resolution",
        ),
        (
            GeneratorConfig {
                contour_length: 0,
                ..GeneratorConfig::default()
            },
            "contour_length",
        ),
        (
            GeneratorConfig {
                images_per_batch: 0,
                ..GeneratorConfig::default()
            },
            "images_per_batch",
        ),
        (
            GeneratorConfig {
                shape: Some(pathfinder::Shape {
                    paddle_margins: vec![],
                    ..pathfinder::Shape::preset(Variant::PATHFINDER)
                }),
                ..GeneratorConfig::default()
            },
            "shape.paddle_margins",
        ),
        (
            GeneratorConfig {
                shape: Some(pathfinder::Shape {
                    seed_distance: 9.0,
                    ..pathfinder::Shape::preset(Variant::PATHFINDER)
                }),
                ..GeneratorConfig::default()
            },
            "shape.seed_distance",
        ),
    ];
    for (config, field) in cases {
        let error = Generator::new(&config).unwrap_err().to_string();
        assert!(
            error.starts_with(field),
            "{error:?} should start with {field:?}"
        );
    }
    // Valid but infeasible: a 20 px paddle cannot fit from the centre of a 32 px image.
    let cramped = GeneratorConfig {
        shape: Some(pathfinder::Shape {
            paddle_length: 20.0,
            ..pathfinder::Shape::preset(Variant::PATHFINDER)
        }),
        ..GeneratorConfig::default()
    };
    let error = Generator::new(&cramped)
        .unwrap()
        .image(0)
        .unwrap_err()
        .to_string();
    assert!(error.contains("did not fit in 100000 attempts"), "{error}");

    let error = serde_json_like_unknown_field();
    assert!(error.contains("unknown field"), "{error}");
}

/// Deserialising a misspelt key must fail (`deny_unknown_fields`).
fn serde_json_like_unknown_field() -> String {
    use serde::de::{IntoDeserializer, value::MapDeserializer};
    let entries = vec![("resolutoin", 32u32)];
    let deserializer: MapDeserializer<'_, _, serde::de::value::Error> =
        MapDeserializer::new(entries.into_iter().map(|(k, v)| (k, v.into_deserializer())));
    <GeneratorConfig as serde::Deserialize>::deserialize(deserializer)
        .unwrap_err()
        .to_string()
}

#[test]
fn presets_follow_the_release_settings() {
    let hard32 = pathfinder::Shape::preset(Variant::PATHFINDER);
    assert_eq!((hard32.paddle_length, hard32.paddle_thickness), (2.0, 0.5));
    assert_eq!((hard32.distractor_length, hard32.distractor_snakes), (4, 5));
    let path_x = pathfinder::Shape::preset(Variant::PATH_X);
    assert_eq!(path_x.paddle_margins, [2.0, 3.0]);
    assert_eq!((path_x.seed_distance, path_x.marker_radius), (20.0, 3.0));
    assert_eq!(path_x.distractor_snakes, 35 / 4);
    let easy = pathfinder::Shape::preset(Variant {
        resolution: 32,
        contour_length: 6,
    });
    assert_eq!(easy.distractor_length, 2);
    // A side between release sides scales the nearest one's lengths.
    let side96 = pathfinder::Shape::preset(Variant {
        resolution: 96,
        contour_length: 14,
    });
    assert_eq!(side96.seed_distance, 20.0 * 0.75);
    assert_eq!(
        Variant::PATH_X.relative_dir(),
        Path::new("pathfinder128/curv_contour_length_14")
    );
    assert_eq!(Variant::for_task("pathx"), Some(Variant::PATH_X));
    assert_eq!(Variant::for_task("pathfinder"), Some(Variant::PATHFINDER));
    assert_eq!(Variant::for_task("path256").unwrap().seq_len(), 65_536);
    assert_eq!(Variant::for_task("path-x"), None);
    assert_eq!(
        Variant {
            resolution: 32,
            contour_length: 6
        }
        .difficulty_dir(),
        "curv_baseline"
    );
}
