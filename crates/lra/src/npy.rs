//! `.npy` files of float32 tensors (NumPy's format, through the `npyz` crate).

use std::io::{BufReader, Cursor, Read, Seek};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::results::atomic_write;

/// A C-ordered array: shape and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Reads a float32 (or, for masks, any integer/bool/float) `.npy` file, as f32 values.
pub fn read(path: &Path) -> Result<Array> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    check_header_len(path, &mut file)?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .with_context(|| format!("{}: not a .npy file", path.display()))?;
    if npy.order() != npyz::Order::C {
        bail!(
            "{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
            path.display()
        );
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    check_size_against_file(path, &npy)?;
    let descr = npy.dtype().descr();
    let values: std::io::Result<Vec<f32>> = match descr.trim_matches('\'') {
        "<f4" => npy.into_vec::<f32>(),
        "<f8" => as_f32(npy.into_vec::<f64>(), |v| v as f32),
        "<i8" => as_f32(npy.into_vec::<i64>(), |v| v as f32),
        "<i4" => as_f32(npy.into_vec::<i32>(), |v| v as f32),
        "|b1" | "|u1" => as_f32(npy.into_vec::<u8>(), f32::from),
        other => bail!(
            "{}: dtype {other} is not supported; expected float32 (<f4), float64, int32/64 or bool",
            path.display()
        ),
    };
    let values =
        values.with_context(|| format!("{}: the data is truncated or corrupt", path.display()))?;
    Ok(Array { shape, values })
}

fn as_f32<T>(values: std::io::Result<Vec<T>>, convert: fn(T) -> f32) -> std::io::Result<Vec<f32>> {
    values.map(|values| values.into_iter().map(convert).collect())
}

/// The header length (read into a buffer of that size) must fit in the file. Magic bytes and
/// version are npyz's to check.
fn check_header_len(path: &Path, file: &mut std::fs::File) -> Result<()> {
    let io_error = || format!("cannot read {}", path.display());
    let file_len = file.metadata().with_context(io_error)?.len();
    let mut start = Vec::with_capacity(12);
    file.by_ref()
        .take(12)
        .read_to_end(&mut start)
        .with_context(io_error)?;
    file.rewind().with_context(io_error)?;
    // Magic (6 bytes) and version (2), then the header length: u16 in version 1, u32 after.
    let header_end = match start.get(6) {
        Some(1) => start
            .get(8..10)
            .map(|len| 10 + u64::from(u16::from_le_bytes([len[0], len[1]]))),
        Some(2 | 3) => start
            .get(8..12)
            .map(|len| 12 + u64::from(u32::from_le_bytes([len[0], len[1], len[2], len[3]]))),
        _ => None,
    };
    match header_end {
        Some(end) if end > file_len => bail!(
            "{}: the header claims {end} bytes, but the file has {file_len} (truncated or corrupt)",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// The header's shape must fit in the file: the values are read into a vector sized by it, so an
/// unchecked shape (a corrupt or hostile file) could ask for any amount of memory.
fn check_size_against_file<R: std::io::Read>(path: &Path, npy: &npyz::NpyFile<R>) -> Result<()> {
    let file_len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let item_len = npy.dtype().num_bytes().unwrap_or(usize::MAX) as u64;
    let data_len = npy
        .shape()
        .iter()
        .try_fold(item_len, |len, &dim| len.checked_mul(dim));
    match data_len {
        Some(len) if len <= file_len => Ok(()),
        _ => bail!(
            "{}: the header's shape {:?} needs more bytes than the file's {file_len} (truncated \
             or corrupt)",
            path.display(),
            npy.shape()
        ),
    }
}

/// Writes a float32 `.npy` file atomically.
pub fn write(path: &Path, array: &Array) -> Result<()> {
    write_values(path, &array.shape, &array.values)
}

/// Writes an int64 `.npy` file (e.g. token ids) of `shape` atomically.
pub fn write_i64(path: &Path, shape: &[usize], values: &[i64]) -> Result<()> {
    write_values(path, shape, values)
}

fn write_values<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[usize],
    values: &[T],
) -> Result<()> {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut bytes = Cursor::new(Vec::new());
    {
        use npyz::WriterBuilder;
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut bytes)
            .begin_nd()?;
        writer.extend(values.iter().copied())?;
        writer.finish()?;
    }
    atomic_write(path, &bytes.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_shape_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let array = Array {
            shape: vec![2, 3, 1],
            values: vec![1.5, -2.0, 0.0, 3.25, f32::MIN_POSITIVE, 7.0],
        };
        write(&path, &array).unwrap();
        assert_eq!(read(&path).unwrap(), array);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY", "NumPy magic");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npy");
        std::fs::write(&path, b"not numpy").unwrap();
        let message = format!("{:#}", read(&path).unwrap_err());
        assert!(
            message.contains("bad.npy") && message.contains("not a .npy"),
            "{message}"
        );
        let missing = format!("{:#}", read(&dir.path().join("none.npy")).unwrap_err());
        assert!(missing.contains("none.npy"), "{missing}");
    }
}
