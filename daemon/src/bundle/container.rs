//! The container: a plain ustar archive that `tar tvf` lists, written one way
//! only. Reading parses the archive, then re-encodes what it parsed and
//! requires the input to match byte for byte, so every header, padding and
//! end-of-archive byte is pinned as well as the contents.

use std::ops::ControlFlow;

use thiserror::Error;

/// A whole bundle file may not be larger than this.
pub const MAX_BUNDLE_BYTES: usize = 512 << 20;
const MAX_ENTRIES: usize = 4096;
const BLOCK: usize = 512;
const NAME_LEN: usize = 100;
const ZEROS: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ContainerError {
    #[error("bundle is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("truncated: the file ends inside the {what} that starts at byte {offset}")]
    Truncated { offset: usize, what: &'static str },
    #[error("entry header at byte {offset}: checksum does not match")]
    BadChecksum { offset: usize },
    #[error("entry header at byte {offset}: {reason}")]
    BadHeader { offset: usize, reason: &'static str },
    #[error("entry {name:?} is a {kind}; only regular files are allowed")]
    NotRegularFile { name: String, kind: &'static str },
    #[error("entry {name:?}: {reason}")]
    BadPath { name: String, reason: &'static str },
    #[error("entry {name:?} appears more than once")]
    Duplicate { name: String },
    #[error("more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("{extra} bytes after the end-of-archive marker")]
    TrailingData { extra: usize },
    #[error("not a canonical firstlook bundle: byte {offset} differs from canonical encoding")]
    NotCanonical { offset: usize },
}

/// One file in the archive, borrowed from the archive's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    /// Where `data` starts in the archive.
    pub offset: usize,
}

/// Checks a name as it may appear in a bundle: `NAME` or `golden/NAME`.
pub(crate) fn check_path(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.starts_with('/') {
        return Err("absolute paths are not allowed");
    }
    if name.split('/').any(|c| c == "..") {
        return Err("`..` is not allowed in paths");
    }
    if name.len() > NAME_LEN {
        return Err("names are limited to 100 bytes");
    }
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        [_] | ["golden", _] => {}
        _ => return Err("only flat names and golden/<name> are allowed"),
    }
    let file = parts[parts.len() - 1];
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if file.is_empty() || file.starts_with('.') || !file.bytes().all(allowed) {
        return Err("names use only A-Z a-z 0-9 . _ - and do not start with `.`");
    }
    Ok(())
}

/// Writes the canonical archive of `entries`, in the order given. Names must
/// have passed [`check_path`].
pub(crate) fn encode(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let total: usize = entries
        .iter()
        .map(|(_, d)| BLOCK + d.len().next_multiple_of(BLOCK))
        .sum::<usize>()
        + 2 * BLOCK;
    let mut out = Vec::with_capacity(total);
    let _ = canonical_pieces(entries.iter().copied(), |piece| {
        out.extend_from_slice(piece);
        ControlFlow::<()>::Continue(())
    });
    out
}

/// Parses a bundle file into its entries; fails unless the file is exactly
/// the canonical encoding of those entries.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<Entry<'_>>, ContainerError> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(ContainerError::TooLarge {
            size: bytes.len(),
            limit: MAX_BUNDLE_BYTES,
        });
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut at = 0;
    loop {
        let header = bytes.get(at..at + BLOCK).ok_or(ContainerError::Truncated {
            offset: at,
            what: "entry header",
        })?;
        if header.iter().all(|&b| b == 0) {
            if bytes.len() < at + 2 * BLOCK {
                return Err(ContainerError::Truncated {
                    offset: at,
                    what: "end-of-archive marker",
                });
            }
            at += 2 * BLOCK;
            break;
        }
        if entries.len() == MAX_ENTRIES {
            return Err(ContainerError::TooManyEntries { limit: MAX_ENTRIES });
        }
        let (name, size) = parse_header(header, at)?;
        if entries.iter().any(|e| e.name == name) {
            return Err(ContainerError::Duplicate {
                name: name.to_owned(),
            });
        }
        let start = at + BLOCK;
        let data = bytes.get(start..).and_then(|rest| rest.get(..size)).ok_or(
            ContainerError::Truncated {
                offset: start,
                what: "data of an entry",
            },
        )?;
        entries.push(Entry {
            name,
            data,
            offset: start,
        });
        at = start + size.next_multiple_of(BLOCK);
    }
    if bytes.len() > at {
        return Err(ContainerError::TrailingData {
            extra: bytes.len() - at,
        });
    }
    if let Some(offset) = first_difference(bytes, &entries) {
        return Err(ContainerError::NotCanonical { offset });
    }
    Ok(entries)
}

/// Re-encodes `entries` piece by piece and compares each piece with the
/// input as it goes, so no second copy of a large bundle is made.
fn first_difference(bytes: &[u8], entries: &[Entry<'_>]) -> Option<usize> {
    let mut at = 0;
    let flow = canonical_pieces(entries.iter().map(|e| (e.name, e.data)), |piece| {
        let theirs = &bytes[at.min(bytes.len())..bytes.len().min(at + piece.len())];
        if let Some(i) = piece.iter().zip(theirs).position(|(a, b)| a != b) {
            return ControlFlow::Break(at + i);
        }
        if theirs.len() < piece.len() {
            return ControlFlow::Break(at + theirs.len());
        }
        at += piece.len();
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(offset) => Some(offset),
        ControlFlow::Continue(()) if at != bytes.len() => Some(at),
        ControlFlow::Continue(()) => None,
    }
}

/// The canonical archive as a sequence of pieces: for each entry its header,
/// its data and zero padding to the block, then two zero blocks.
fn canonical_pieces<'a, B>(
    entries: impl Iterator<Item = (&'a str, &'a [u8])>,
    mut emit: impl FnMut(&[u8]) -> ControlFlow<B>,
) -> ControlFlow<B> {
    for (name, data) in entries {
        emit(&header(name, data.len()))?;
        emit(data)?;
        emit(&ZEROS[..data.len().next_multiple_of(BLOCK) - data.len()])?;
    }
    emit(&ZEROS)
}

fn header(name: &str, size: usize) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size as u64);
    octal(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h
}

/// Zero-padded octal digits filling all but the last byte, which is NUL.
fn octal(field: &mut [u8], mut value: u64) {
    let digits = field.len() - 1;
    for slot in field[..digits].iter_mut().rev() {
        *slot = b'0' + (value & 7) as u8;
        value >>= 3;
    }
    field[digits] = 0;
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = field
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .map_or(field, |end| &field[..end]);
    if text.is_empty() || !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(8)?.checked_add(u64::from(b - b'0'))
    })
}

fn parse_header(h: &[u8], offset: usize) -> Result<(&str, usize), ContainerError> {
    let bad = |reason| ContainerError::BadHeader { offset, reason };
    let stored = parse_octal(&h[148..156]).ok_or(bad("checksum field is not octal"))?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
        .sum();
    if stored != sum {
        return Err(ContainerError::BadChecksum { offset });
    }
    if &h[257..263] != b"ustar\0" || &h[263..265] != b"00" {
        return Err(bad("not a POSIX ustar header"));
    }
    let raw_name = &h[..NAME_LEN];
    let raw_name = &raw_name[..raw_name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN)];
    let name = std::str::from_utf8(raw_name).map_err(|_| bad("name is not UTF-8"))?;
    let kind = match h[156] {
        b'0' | 0 => None,
        b'1' => Some("hard link"),
        b'2' => Some("symbolic link"),
        b'3' => Some("character device"),
        b'4' => Some("block device"),
        b'5' => Some("directory"),
        b'6' => Some("FIFO"),
        b'x' | b'g' => Some("pax extended header"),
        b'L' | b'K' => Some("GNU long-name record"),
        _ => Some("entry of unknown type"),
    };
    if let Some(kind) = kind {
        return Err(ContainerError::NotRegularFile {
            name: name.to_owned(),
            kind,
        });
    }
    check_path(name).map_err(|reason| ContainerError::BadPath {
        name: name.to_owned(),
        reason,
    })?;
    let size = parse_octal(&h[124..136]).ok_or(bad("size field is not octal"))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= MAX_BUNDLE_BYTES)
        .ok_or(bad("size is larger than a bundle may be"))?;
    Ok((name, size))
}
