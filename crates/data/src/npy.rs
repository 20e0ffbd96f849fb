//! Reading and writing NumPy `.npy` arrays of floating-point numbers.
//!
//! Heat maps travel between Python tools (iNNvestigate, Zennit, Captum,
//! Quantus) and leukex as `.npy` files, so this is a small, strict reader of
//! the format (<https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>):
//! header versions 1.0, 2.0 and 3.0, `f4` and `f8` in either byte order,
//! C order. Fortran-ordered arrays are refused with a clear message rather
//! than read transposed, and every error names the file.
//!
//! Values are handed out as `f32` (what heat maps need); `f8` data are
//! converted on reading. [`read_f64`] keeps full precision where a caller
//! needs it. Writing is atomic ([`crate::fsutil`]) and always produces
//! version 1.0 little-endian files, which every NumPy reads.

use crate::error::{DataError, Result};
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element type stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    F32,
    F64,
}

/// An n-dimensional array in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
    /// The element type the file stored (before any conversion).
    pub stored: NpyDtype,
}

impl<T> NpyArray<T> {
    /// Number of elements the shape describes (1 for a 0-d array).
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The parsed header: where the data start and how to read them.
#[derive(Debug, Clone, PartialEq)]
struct Header {
    dtype: NpyDtype,
    big_endian: bool,
    shape: Vec<usize>,
    data_offset: usize,
}

/// Reads a `.npy` file of `f4` or `f8` values as `f32`.
pub fn read_f32(path: &Path) -> Result<NpyArray<f32>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_f32(path, &bytes)
}

/// Reads a `.npy` file of `f4` or `f8` values as `f64`.
pub fn read_f64(path: &Path) -> Result<NpyArray<f64>> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_f64(path, &bytes)
}

/// Parses the bytes of a `.npy` file; `path` only names it in errors.
pub fn parse_f32(path: &Path, bytes: &[u8]) -> Result<NpyArray<f32>> {
    let h = parse_header(path, bytes)?;
    let raw = data_bytes(path, bytes, &h)?;
    let data = match h.dtype {
        NpyDtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_bits(word32(c, h.big_endian)))
            .collect(),
        NpyDtype::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_bits(word64(c, h.big_endian)) as f32)
            .collect(),
    };
    Ok(NpyArray {
        shape: h.shape,
        data,
        stored: h.dtype,
    })
}

/// Parses the bytes of a `.npy` file into `f64`.
pub fn parse_f64(path: &Path, bytes: &[u8]) -> Result<NpyArray<f64>> {
    let h = parse_header(path, bytes)?;
    let raw = data_bytes(path, bytes, &h)?;
    let data = match h.dtype {
        NpyDtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_bits(word32(c, h.big_endian)) as f64)
            .collect(),
        NpyDtype::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_bits(word64(c, h.big_endian)))
            .collect(),
    };
    Ok(NpyArray {
        shape: h.shape,
        data,
        stored: h.dtype,
    })
}

fn word32(c: &[u8], big: bool) -> u32 {
    let a = [c[0], c[1], c[2], c[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn word64(c: &[u8], big: bool) -> u64 {
    let a = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
    if big {
        u64::from_be_bytes(a)
    } else {
        u64::from_le_bytes(a)
    }
}

fn data_bytes<'a>(path: &Path, bytes: &'a [u8], h: &Header) -> Result<&'a [u8]> {
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::invalid(path, "npy shape overflows"))?;
    let size = match h.dtype {
        NpyDtype::F32 => 4,
        NpyDtype::F64 => 8,
    };
    let need = count
        .checked_mul(size)
        .ok_or_else(|| DataError::invalid(path, "npy shape overflows"))?;
    let have = bytes.len() - h.data_offset;
    if have < need {
        return Err(DataError::invalid(
            path,
            format!(
                "npy data truncated: shape {:?} needs {need} bytes, file has {have}",
                h.shape
            ),
        ));
    }
    // Trailing bytes are tolerated (NumPy itself ignores them).
    Ok(&bytes[h.data_offset..h.data_offset + need])
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let bad = |reason: String| DataError::invalid(path, reason);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a NumPy .npy file (magic bytes missing)".into()));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("npy header truncated".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => {
            return Err(bad(format!(
                "unsupported npy format version {v}.{}",
                bytes[7]
            )));
        }
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("npy header truncated".into()))?;
    // Version 3 allows UTF-8 headers; 1 and 2 are latin-1, but a valid
    // dictionary of ours is plain ASCII either way.
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| bad("npy header is not text".into()))?;
    let descr = dict_value(text, "descr")
        .ok_or_else(|| bad(format!("npy header has no 'descr': {}", text.trim())))?;
    let fortran = dict_value(text, "fortran_order").ok_or_else(|| {
        bad(format!(
            "npy header has no 'fortran_order': {}",
            text.trim()
        ))
    })?;
    let shape_txt = dict_value(text, "shape")
        .ok_or_else(|| bad(format!("npy header has no 'shape': {}", text.trim())))?;

    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let (big_endian, dtype) = match descr {
        "<f4" | "=f4" => (false, NpyDtype::F32),
        ">f4" => (true, NpyDtype::F32),
        "<f8" | "=f8" => (false, NpyDtype::F64),
        ">f8" => (true, NpyDtype::F64),
        other => {
            return Err(bad(format!(
                "npy dtype '{other}' is not supported (expected float32 '<f4' or float64 '<f8'; \
                 convert with a.astype(np.float32))"
            )));
        }
    };
    match fortran.trim() {
        "False" => {}
        "True" => {
            return Err(bad(
                "npy array is in Fortran (column-major) order; save it in C order \
                 (np.save(path, np.ascontiguousarray(a)))"
                    .into(),
            ));
        }
        other => {
            return Err(bad(format!(
                "npy 'fortran_order' is '{other}', not True/False"
            )));
        }
    }
    let shape = parse_shape(shape_txt).ok_or_else(|| {
        bad(format!(
            "npy shape '{shape_txt}' is not a tuple of integers"
        ))
    })?;
    Ok(Header {
        dtype,
        big_endian,
        shape,
        data_offset: end,
    })
}

/// The text of the value after `'key':` in a Python dict literal, up to the
/// next top-level comma (tuples kept whole).
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat_single = format!("'{key}'");
    let pat_double = format!("\"{key}\"");
    let pos = text
        .find(&pat_single)
        .map(|p| p + pat_single.len())
        .or_else(|| text.find(&pat_double).map(|p| p + pat_double.len()))?;
    let rest = text[pos..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=i]);
                }
            }
            ',' | '}' if depth == 0 => return Some(rest[..i].trim_end()),
            _ => {}
        }
    }
    None
}

fn parse_shape(s: &str) -> Option<Vec<usize>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches('L').parse::<usize>().ok())
        .collect()
}

/// Builds the header bytes for a version-1.0 little-endian C-order file;
/// the total header is padded with spaces to a multiple of 64 bytes and
/// ends in a newline, as NumPy writes it.
fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_txt = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

fn check_len(path: &Path, shape: &[usize], len: usize) -> Result<()> {
    let count: usize = shape.iter().product();
    if count != len {
        return Err(DataError::invalid(
            path,
            format!("shape {shape:?} holds {count} values but {len} were given"),
        ));
    }
    Ok(())
}

/// Encodes `data` (C order) as the bytes of a little-endian `f4` file.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let mut out = header_bytes("<f4", shape);
    out.reserve(data.len() * 4);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Encodes `data` (C order) as the bytes of a little-endian `f8` file.
pub fn encode_f64(shape: &[usize], data: &[f64]) -> Vec<u8> {
    let mut out = header_bytes("<f8", shape);
    out.reserve(data.len() * 8);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `data` (C order, `shape`) as a float32 `.npy` file, atomically.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    check_len(path, shape, data.len())?;
    crate::fsutil::write_bytes_atomic(path, &encode_f32(shape, data))
}

/// Writes `data` (C order, `shape`) as a float64 `.npy` file, atomically.
pub fn write_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    check_len(path, shape, data.len())?;
    crate::fsutil::write_bytes_atomic(path, &encode_f64(shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of `np.save(f, np.arange(6, dtype='<f4').reshape(2, 3))` with
    /// NumPy (the header padded to a multiple of 64 bytes).
    fn numpy_bytes_f4_2x3() -> Vec<u8> {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let mut h = dict.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        for i in 0..6 {
            b.extend_from_slice(&(i as f32).to_le_bytes());
        }
        b
    }

    fn replace(b: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = b.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = b.to_vec();
        out[at..at + to.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn reads_what_numpy_writes() {
        let a = parse_f32(Path::new("a.npy"), &numpy_bytes_f4_2x3()).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(a.stored, NpyDtype::F32);
    }

    #[test]
    fn our_header_is_byte_identical_to_numpys() {
        let data: Vec<f32> = (0..6).map(|i| i as f32).collect();
        assert_eq!(encode_f32(&[2, 3], &data), numpy_bytes_f4_2x3());
    }

    #[test]
    fn round_trips_f32_and_f64_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npy");
        let v: Vec<f32> = vec![-1.5, 0.0, f32::MIN_POSITIVE, 3.25e7];
        write_f32(&p, &[1, 4], &v).unwrap();
        let a = read_f32(&p).unwrap();
        assert_eq!((a.shape, a.data), (vec![1, 4], v));

        let w: Vec<f64> = vec![0.1, -2.0, 1e-300];
        write_f64(&p, &[3], &w).unwrap();
        let b = read_f64(&p).unwrap();
        assert_eq!((b.shape.clone(), b.data), (vec![3], w.clone()));
        // f8 read through the f32 API converts.
        let c = read_f32(&p).unwrap();
        assert_eq!(c.stored, NpyDtype::F64);
        assert_eq!(c.data, w.iter().map(|&x| x as f32).collect::<Vec<_>>());
        // 0-d arrays hold one value.
        write_f32(&p, &[], &[7.0]).unwrap();
        assert_eq!(read_f32(&p).unwrap().data, vec![7.0]);
    }

    #[test]
    fn reads_version_2_and_big_endian() {
        let dict = "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }\n";
        let mut b = b"\x93NUMPY\x02\x00".to_vec();
        b.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.extend_from_slice(&1.5f64.to_be_bytes());
        b.extend_from_slice(&(-2.0f64).to_be_bytes());
        let a = parse_f64(Path::new("v2.npy"), &b).unwrap();
        assert_eq!(a.data, vec![1.5, -2.0]);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        // Same header with True in place of False (same length).
        let b = replace(
            &numpy_bytes_f4_2x3(),
            b"'fortran_order': False",
            b"'fortran_order': True ",
        );
        let e = parse_f32(Path::new("maps/x.npy"), &b)
            .unwrap_err()
            .to_string();
        assert!(e.contains("maps/x.npy") && e.contains("Fortran"), "{e}");

        let b = numpy_bytes_f4_2x3()
            .iter()
            .copied()
            .take(80)
            .collect::<Vec<_>>();
        let e = parse_f32(Path::new("t.npy"), &b).unwrap_err().to_string();
        assert!(e.contains("t.npy") && e.contains("truncated"), "{e}");

        let b = replace(&numpy_bytes_f4_2x3(), b"<f4", b"<i8");
        let e = parse_f32(Path::new("i.npy"), &b).unwrap_err().to_string();
        assert!(e.contains("i.npy") && e.contains("'<i8'"), "{e}");

        let e = parse_f32(Path::new("n.npy"), b"hello world")
            .unwrap_err()
            .to_string();
        assert!(e.contains("n.npy") && e.contains("magic"), "{e}");

        let e = read_f32(Path::new("/nonexistent/m.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/m.npy"), "{e}");
    }

    #[test]
    fn writing_checks_the_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.npy");
        let e = write_f32(&p, &[2, 2], &[1.0]).unwrap_err().to_string();
        assert!(e.contains("bad.npy") && e.contains("[2, 2]"), "{e}");
        assert!(!p.exists());
    }
}
