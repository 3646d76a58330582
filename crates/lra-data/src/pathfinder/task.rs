//! A Pathfinder set as a training task: the records split 80/10/10 in order (as LRA's TFDS
//! pipeline does), each image one document of one byte per pixel.

use std::path::Path;

use super::{NUM_CLASSES, PIXEL_VALUES, Variant, find, load, read_records, split_range};
use crate::{Result, Split, SplitBuilder, TaskData};

/// Images decoded at a time: bounds the decoded-but-not-yet-packed memory for Path-X.
const CHUNK: usize = 4096;

/// Reads the set `variant` at or below `root` into train/val/test splits.
pub fn load_task(root: &Path, variant: Variant) -> Result<TaskData> {
    let layout = find(root, variant)?;
    let records = read_records(&layout)?;
    let [train, val, test] = Split::ALL.map(|split| -> Result<_> {
        let mut builder = SplitBuilder::new(1, 0);
        for chunk in records[split_range(records.len(), split)].chunks(CHUNK) {
            for sample in load(&layout, chunk)?.samples {
                builder.push(&[&sample.pixels], sample.label);
            }
        }
        Ok(builder.finish())
    });
    Ok(TaskData {
        train: train?,
        val: val?,
        test: test?,
        vocab_size: PIXEL_VALUES,
        num_classes: NUM_CLASSES,
        extra: Vec::new(),
    })
}
