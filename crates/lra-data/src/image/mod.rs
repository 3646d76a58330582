//! LRA "Image": CIFAR-10 as sequences of 1,024 8-bit grayscale pixels, read from the official
//! binary release.
//!
//! Each file of `cifar-10-batches-bin/` holds 3,073-byte records: the label (0-9), then the 32×32
//! red, green and blue planes, row-major. The LRA code (`lra_benchmarks/image/input_pipeline.py`)
//! converts with `tf.image.rgb_to_grayscale` and uses the pixel values as tokens (vocabulary
//! 256); train = the first 90% of the training set, validation = the last 10%, test = the test
//! batch. Deviation: TFDS slices its own (hash-shuffled) record order, so which 5,000 images
//! validate differs; here they are the last 5,000 of `data_batch_5.bin`. Sizes are the same.

use std::fs;
use std::path::Path;

use crate::error::{DataError, OnProblem, Result};
use crate::example::{SplitBuilder, TaskData};
use crate::layout::Layout;

/// Pixel values 0..=255 (no padding is ever needed: every image has [`PIXELS`] tokens).
pub const VOCAB_SIZE: usize = 256;
/// The ten CIFAR-10 classes.
pub const NUM_CLASSES: usize = 10;
/// Tokens per image.
pub const PIXELS: usize = 32 * 32;
/// Bytes per record: label + three colour planes.
pub const RECORD_LEN: usize = 1 + 3 * PIXELS;
/// Training files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test file.
pub const TEST_FILE: &str = "test_batch.bin";

/// Where the binary files are looked for.
/// The CIFAR-10 binary archive (unpacks to `cifar-10-batches-bin/`).
pub const DOWNLOAD_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

pub const LAYOUT: Layout = Layout {
    task: "image (CIFAR-10)",
    subdirs: &["", "cifar-10-batches-bin"],
    required: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ],
    source: "the CIFAR-10 binary version https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz \
             (unpacks to cifar-10-batches-bin/)",
};

/// `tf.image.rgb_to_grayscale` on one uint8 pixel: to float in [0, 1] (× 1/255), weights
/// (0.2989, 0.5870, 0.1140), back to uint8 by `convert_image_dtype` (× 255.5, truncated), all in
/// float32 as TensorFlow computes it.
pub fn grayscale(red: u8, green: u8, blue: u8) -> u8 {
    let scale = (1.0f64 / 255.0) as f32;
    let [r, g, b] = [red, green, blue].map(|c| f32::from(c) * scale);
    let gray = r * 0.2989 + g * 0.5870 + b * 0.1140;
    (gray * 255.5) as u8
}

/// Reads the five training files and the test file under `root` (see [`LAYOUT`]).
pub fn load(root: &Path, mut on_problem: OnProblem) -> Result<TaskData> {
    let dir = LAYOUT.locate(root)?;
    let train_files: Vec<_> = TRAIN_FILES.iter().map(|name| dir.join(name)).collect();
    let whole_records: usize = train_files
        .iter()
        .map(|path| Ok(file_len(path)? / RECORD_LEN))
        .sum::<Result<usize>>()?;
    // TFDS `train[:90%]`: the boundary rounded to the nearest record.
    let boundary = (whole_records * 9 + 5) / 10;
    let mut train = SplitBuilder::new(1, 0);
    let mut val = SplitBuilder::new(1, 0);
    let mut seen = 0;
    for path in &train_files {
        read_file(path, &mut on_problem, |pixels, label| {
            let target = if seen < boundary {
                &mut train
            } else {
                &mut val
            };
            target.push(&[pixels], label);
            seen += 1;
        })?;
    }
    let mut test = SplitBuilder::new(1, 0);
    read_file(&dir.join(TEST_FILE), &mut on_problem, |pixels, label| {
        test.push(&[pixels], label)
    })?;
    Ok(TaskData {
        train: train.finish(),
        val: val.finish(),
        test: test.finish(),
        vocab_size: VOCAB_SIZE,
        num_classes: NUM_CLASSES,
        extra: Vec::new(),
    })
}

fn file_len(path: &Path) -> Result<usize> {
    let meta = fs::metadata(path).map_err(|source| DataError::io(path, source))?;
    Ok(meta.len() as usize)
}

/// Calls `add(grayscale pixels, label)` for each record of one binary file. A label above 9 is a
/// problem of that record; a file that ends inside a record is a problem of the last one.
pub fn read_file(
    path: &Path,
    on_problem: &mut OnProblem,
    mut add: impl FnMut(&[u8], u32),
) -> Result<()> {
    let bytes = fs::read(path).map_err(|source| DataError::io(path, source))?;
    let problem = |record: usize, message: String| DataError::Record {
        path: path.to_path_buf(),
        record,
        message,
    };
    let records = bytes.chunks(RECORD_LEN);
    let mut pixels = vec![0u8; PIXELS];
    for (index, record) in records.enumerate() {
        if record.len() < RECORD_LEN {
            on_problem.report(problem(
                index,
                format!(
                    "the file ends {} bytes into this {RECORD_LEN}-byte record (truncated)",
                    record.len()
                ),
            ))?;
            continue;
        }
        let label = record[0];
        if usize::from(label) >= NUM_CLASSES {
            on_problem.report(problem(index, format!("label {label} is not a class 0-9")))?;
            continue;
        }
        let (red, rest) = record[1..].split_at(PIXELS);
        let (green, blue) = rest.split_at(PIXELS);
        for (i, pixel) in pixels.iter_mut().enumerate() {
            *pixel = grayscale(red[i], green[i], blue[i]);
        }
        add(&pixels, u32::from(label));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grayscale_matches_tensorflow_on_known_pixels() {
        // Values of tf.image.rgb_to_grayscale on uint8 inputs: black and white stay put (the
        // weights sum to 0.9999, and × 255.5 truncates back to 255), pure channels give
        // trunc(w · 255.5).
        assert_eq!(grayscale(0, 0, 0), 0);
        assert_eq!(grayscale(255, 255, 255), 255);
        assert_eq!(grayscale(255, 0, 0), 76); // 0.2989 · 255.5 = 76.37
        assert_eq!(grayscale(0, 255, 0), 149); // 0.5870 · 255.5 = 149.98
        assert_eq!(grayscale(0, 0, 255), 29); // 0.1140 · 255.5 = 29.13
        assert_eq!(grayscale(128, 128, 128), 128); // 128/255 · 0.9999 · 255.5 = 128.24
    }

    #[test]
    fn grayscale_is_monotone_and_close_to_the_weighted_mean() {
        for v in 0..=255u8 {
            let gray = f64::from(grayscale(v, v, v));
            assert!((gray - f64::from(v)).abs() <= 1.0, "{v} → {gray}");
        }
    }
}
