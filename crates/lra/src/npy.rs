//! `.npy` files of float32 tensors (NumPy's format, through the `npyz` crate).

use std::io::{BufReader, Cursor};
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
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .with_context(|| format!("{}: not a .npy file", path.display()))?;
    if npy.order() != npyz::Order::C {
        bail!(
            "{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
            path.display()
        );
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let values = match descr.trim_matches('\'') {
        "<f4" => npy.into_vec::<f32>()?,
        "<f8" => npy
            .into_vec::<f64>()?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        "<i8" => npy
            .into_vec::<i64>()?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        "<i4" => npy
            .into_vec::<i32>()?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        "|b1" | "|u1" => npy.into_vec::<u8>()?.into_iter().map(f32::from).collect(),
        other => bail!(
            "{}: dtype {other} is not supported; expected float32 (<f4), float64, int32/64 or bool",
            path.display()
        ),
    };
    Ok(Array { shape, values })
}

/// Writes a float32 `.npy` file atomically.
pub fn write(path: &Path, array: &Array) -> Result<()> {
    let shape: Vec<u64> = array.shape.iter().map(|&d| d as u64).collect();
    let mut bytes = Cursor::new(Vec::new());
    {
        use npyz::WriterBuilder;
        let mut writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut bytes)
            .begin_nd()?;
        writer.extend(array.values.iter().copied())?;
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
