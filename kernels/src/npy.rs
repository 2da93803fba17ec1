//! The NumPy `.npy` format (little-endian `f32`, C order; written as
//! version 1.0): training arrays written by `firstlook-phantom`, golden tensors
//! read from model bundles.

use std::io::Write;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("not a .npy file (bad magic)")]
    Magic,
    #[error("unsupported .npy version {0}.{1}")]
    Version(u8, u8),
    #[error(".npy header is malformed: {0}")]
    Header(String),
    #[error(".npy dtype {0:?} is not supported (expected '<f4')")]
    Dtype(String),
    #[error(".npy data holds {got} bytes, the shape {shape:?} needs {want}")]
    Length {
        shape: Vec<usize>,
        want: usize,
        got: usize,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// An `f32` array with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut text = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + text + newline, padded to 64.
    let unpadded = 10 + text.len() + 1;
    text.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    text.push('\n');
    let mut out = Vec::with_capacity(10 + text.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Writes the header of an `f32` array; the caller then writes the values.
pub fn write_f32_header(w: &mut impl Write, shape: &[usize]) -> std::io::Result<()> {
    w.write_all(&header("<f4", shape))
}

/// Writes `f32` values (little-endian) after a header.
pub fn write_f32_values(w: &mut impl Write, values: &[f32]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(values.len() * 4);
    for v in values {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&buf)
}

/// Encodes a whole `f32` array.
pub fn encode(array: &Array) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + array.data.len() * 4);
    write_f32_header(&mut out, &array.shape).expect("writing to a Vec cannot fail");
    write_f32_values(&mut out, &array.data).expect("writing to a Vec cannot fail");
    out
}

/// Decodes an `f32` `.npy` file.
pub fn decode(bytes: &[u8]) -> Result<Array, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::Magic);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(NpyError::Version(major, minor)),
    };
    let text = bytes
        .get(start..start + len)
        .ok_or_else(|| NpyError::Header("truncated".into()))?;
    let text = std::str::from_utf8(text).map_err(|_| NpyError::Header("not UTF-8".into()))?;
    let field = |name: &str| -> Result<&str, NpyError> {
        let key = format!("'{name}':");
        let at = text
            .find(&key)
            .ok_or_else(|| NpyError::Header(format!("no {name}")))?;
        Ok(text[at + key.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| NpyError::Header("descr".into()))?;
    if descr != "<f4" {
        return Err(NpyError::Dtype(descr.to_owned()));
    }
    if !field("fortran_order")?.starts_with("False") {
        return Err(NpyError::Header("Fortran order is not supported".into()));
    }
    let shape = field("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| NpyError::Header("shape".into()))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| NpyError::Header(format!("dimension {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let data = &bytes[start + len..];
    let want = count.and_then(|c| c.checked_mul(4)).unwrap_or(usize::MAX);
    if data.len() != want {
        return Err(NpyError::Length {
            shape,
            want,
            got: data.len(),
        });
    }
    Ok(Array {
        data: data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        for shape in [vec![3], vec![2, 3], vec![1, 1, 4, 2]] {
            let n = shape.iter().product::<usize>();
            let a = Array {
                shape,
                data: (0..n).map(|i| i as f32 * 0.5).collect(),
            };
            let bytes = encode(&a);
            let header_len = bytes.len() - n * 4;
            assert_eq!(header_len % 64, 0);
            assert_eq!(decode(&bytes).unwrap(), a);
        }
    }

    #[test]
    fn malformed_files_are_errors() {
        let good = encode(&Array {
            shape: vec![2],
            data: vec![1.0, 2.0],
        });
        assert!(matches!(
            decode(&good[..good.len() - 1]),
            Err(NpyError::Length { .. })
        ));
        assert!(matches!(decode(b"NUMPY...."), Err(NpyError::Magic)));
        let mut f8 = good.clone();
        let at = f8.windows(3).position(|w| w == b"<f4").unwrap();
        f8[at + 2] = b'8';
        assert!(matches!(decode(&f8), Err(NpyError::Dtype(_))));
    }
}
