//! Line-by-line reading of the text formats (ListOps, AAN and GLUE TSVs): one reused buffer,
//! lines without their `\n` / `\r\n` (nothing else trimmed: trailing spaces and empty fields are
//! data), 1-based line numbers for error messages, I/O errors naming the file.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::{DataError, Result};

/// Calls `visit(line_number, line)` for every line of `path`; returns the number of lines.
pub fn for_each_line(
    path: &Path,
    mut visit: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<usize> {
    let file = File::open(path).map_err(|source| DataError::io(path, source))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut bytes = Vec::new();
    let mut lines = 0;
    loop {
        bytes.clear();
        let read = reader
            .read_until(b'\n', &mut bytes)
            .map_err(|source| DataError::io(path, source))?;
        if read == 0 {
            return Ok(lines);
        }
        lines += 1;
        let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        visit(lines, line)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_everything_but_their_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tsv");
        std::fs::write(&path, "a\tb \r\n\t\n\nlast").unwrap();
        let mut seen = Vec::new();
        let count = for_each_line(&path, |number, line| {
            seen.push((number, line.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 4);
        let expected: Vec<(usize, Vec<u8>)> = vec![
            (1, b"a\tb ".to_vec()),
            (2, b"\t".to_vec()),
            (3, b"".to_vec()),
            (4, b"last".to_vec()),
        ];
        assert_eq!(seen, expected);
        let missing = for_each_line(&dir.path().join("none"), |_, _| Ok(())).unwrap_err();
        assert!(missing.to_string().contains("none"), "{missing}");
    }
}
