//! Times the Pathfinder generator writing PNGs and metadata into a temporary folder.
//!
//! `cargo run --release -p lra-data --example pathfinder_bench -- [resolution] [images] [threads]`
//! (defaults: 128, 2000, 2) prints images per second and the projected time for 200,000 images,
//! then times reading the set back and checking it.

use std::time::Instant;

use lra_data::pathfinder::{GeneratorConfig, check, find, generate, load, read_records};

/// Images in one LRA-sized set, for the projection.
const RELEASE_SET_SIZE: f64 = 200_000.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse())
        .collect::<Result<_, _>>()?;
    let resolution = args.first().copied().unwrap_or(128);
    let images = args.get(1).copied().unwrap_or(2_000);
    let threads = args.get(2).copied().unwrap_or(2);
    let config = GeneratorConfig {
        resolution: u32::try_from(resolution)?,
        images,
        seed: 1,
        ..GeneratorConfig::default()
    };
    let out = tempfile::tempdir()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let stats = pool.install(|| generate(&config, out.path()))?;
    let rate = stats.images as f64 / stats.seconds;
    println!(
        "{}×{} contour length {}: {} images on {threads} threads in {:.2} s = {rate:.0} images/s; \
         200K images would take {:.1} min",
        resolution,
        resolution,
        config.contour_length,
        stats.images,
        stats.seconds,
        RELEASE_SET_SIZE / rate / 60.0
    );
    println!(
        "positives {:.3}, mean target-pair attempts {:.2}, distractors drawn {} of {}",
        stats.positives as f64 / stats.images as f64,
        stats.mean_pair_attempts,
        stats.distractors_drawn,
        stats.distractors_wanted
    );

    let start = Instant::now();
    let layout = pool.install(|| find(out.path(), config.variant()))?;
    let records = read_records(&layout)?;
    let loaded = pool.install(|| load(&layout, &records))?;
    let read_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let report = pool.install(|| check(&layout));
    println!(
        "read back {} images in {read_seconds:.2} s ({:.0} images/s); check in {:.2} s: {} problems",
        loaded.samples.len(),
        loaded.samples.len() as f64 / read_seconds,
        start.elapsed().as_secs_f64(),
        report.problems.len()
    );
    Ok(())
}
