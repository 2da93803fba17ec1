//! One frame's stored samples read as modality values, row by row, from
//! memory or straight from a file: the modality LUT is applied as the
//! resize reads, never to a full-size copy.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::Format;
use crate::preprocess::Rows;

/// Bytes that can be read at any offset from several threads at once.
pub trait ReadAt: Sync + std::fmt::Debug {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// Where a frame's stored samples are.
#[derive(Debug, Clone, Copy)]
pub(super) enum Samples<'a> {
    Held(&'a [u8]),
    /// In `source` from `offset` on; each thread that reads the frame reads
    /// a band of rows at a time into a buffer of its own, small enough to
    /// stay in its core's cache.
    At {
        source: &'a dyn ReadAt,
        offset: u64,
    },
}

/// About this much of a frame is read at once from a [`Samples::At`].
const BAND_BYTES: usize = 256 * 1024;

/// A thread's band of rows from the frame it read last.
struct Band {
    frame: u64,
    first: usize,
    rows: usize,
    bytes: Vec<u8>,
}

thread_local! {
    static BAND: RefCell<Band> = const {
        RefCell::new(Band { frame: 0, first: 0, rows: 0, bytes: Vec::new() })
    };
}

/// Frame ids start at 1: a band with frame 0 holds nothing.
static NEXT_FRAME: AtomicU64 = AtomicU64::new(1);

impl Band {
    fn row(
        &mut self,
        frame: u64,
        source: &dyn ReadAt,
        offset: u64,
        step: usize,
        height: usize,
        y: usize,
    ) -> io::Result<&[u8]> {
        if self.frame != frame || y < self.first || y >= self.first + self.rows {
            let rows = (BAND_BYTES / step).clamp(1, height - y);
            self.frame = 0;
            self.bytes.resize(rows * step, 0);
            source.read_exact_at(&mut self.bytes, offset + (y * step) as u64)?;
            self.frame = frame;
            self.first = y;
            self.rows = rows;
        }
        let at = (y - self.first) * step;
        Ok(&self.bytes[at..at + step])
    }
}

/// One frame's stored samples, read as modality values row by row.
///
/// A frame read from a file ([`Samples::At`]) that cannot read a row leaves
/// that row out and keeps the first error: [`Rows::failure`]. The resize
/// checks it, so a preprocessed input never holds rows that were not read.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    width: usize,
    height: usize,
    samples: Samples<'a>,
    format: Format,
    /// What padding pixels read as: the darkest value of the rest (the
    /// lowest for MONOCHROME2, the highest for MONOCHROME1), so that padding
    /// reads as background and never skews a percentile window.
    fill: Option<f32>,
    id: u64,
    failure: OnceLock<String>,
}

impl<'a> Frame<'a> {
    pub(super) fn new(
        width: usize,
        height: usize,
        samples: Samples<'a>,
        format: Format,
        monochrome1: bool,
    ) -> Frame<'a> {
        let mut frame = Frame {
            width,
            height,
            samples,
            format,
            fill: None,
            id: NEXT_FRAME.fetch_add(1, Ordering::Relaxed),
            failure: OnceLock::new(),
        };
        if let Some((lo, hi)) = format.padding {
            let mut darkest = None::<i32>;
            let mut sink = vec![0.0f32; width];
            for y in 0..height {
                frame.with_row(y, |row| {
                    frame.add_samples(row, &mut sink, |v| {
                        if !(lo..=hi).contains(&i64::from(v)) {
                            darkest = Some(match darkest {
                                Some(d) if (v > d) != monochrome1 => d,
                                _ => v,
                            });
                        }
                        0.0
                    })
                });
            }
            frame.fill = darkest.map(|v| v as f32 * format.slope + format.intercept);
        }
        frame
    }

    /// `f` on row `y`'s stored bytes; nothing when they cannot be read.
    fn with_row(&self, y: usize, f: impl FnOnce(&[u8])) {
        let step = usize::from(self.format.bits / 8) * self.width;
        match self.samples {
            Samples::Held(bytes) => f(&bytes[y * step..(y + 1) * step]),
            Samples::At { source, offset } => BAND.with_borrow_mut(|band| {
                match band.row(self.id, source, offset, step, self.height, y) {
                    Ok(row) => f(row),
                    Err(e) => {
                        let _ = self
                            .failure
                            .set(format!("the stored pixel data cannot be read: {e}"));
                    }
                }
            }),
        }
    }

    /// `dst[i] += g(stored value i)` with each value masked to Bits Stored
    /// and sign-extended; one loop per sample layout so that each vectorises.
    fn add_samples(&self, bytes: &[u8], dst: &mut [f32], mut g: impl FnMut(i32) -> f32) {
        let Format {
            bits,
            stored,
            signed,
            ..
        } = self.format;
        let shift = 32 - u32::from(stored);
        let words = || {
            bytes
                .chunks_exact(2)
                .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])) << shift)
        };
        let bytes8 = || bytes.iter().map(|&b| u32::from(b) << shift);
        match (bits, signed) {
            (8, false) => dst
                .iter_mut()
                .zip(bytes8())
                .for_each(|(d, w)| *d += g((w >> shift) as i32)),
            (8, true) => dst
                .iter_mut()
                .zip(bytes8())
                .for_each(|(d, w)| *d += g((w as i32) >> shift)),
            (_, false) => {
                // Blocks of eight let the compiler keep the loop in vector
                // registers.
                let mut blocks = dst.chunks_exact_mut(8);
                let mut sources = bytes.chunks_exact(16);
                for (d, c) in (&mut blocks).zip(&mut sources) {
                    for (k, d) in d.iter_mut().enumerate() {
                        let w = u32::from(u16::from_le_bytes([c[2 * k], c[2 * k + 1]])) << shift;
                        *d += g((w >> shift) as i32);
                    }
                }
                for (d, c) in blocks
                    .into_remainder()
                    .iter_mut()
                    .zip(sources.remainder().chunks_exact(2))
                {
                    let w = u32::from(u16::from_le_bytes([c[0], c[1]])) << shift;
                    *d += g((w >> shift) as i32);
                }
            }
            (_, true) => dst
                .iter_mut()
                .zip(words())
                .for_each(|(d, w)| *d += g((w as i32) >> shift)),
        }
    }
}

impl Rows for Frame<'_> {
    fn width(&self) -> usize {
        self.width
    }

    fn height(&self) -> usize {
        self.height
    }

    fn add_row(&self, y: usize, weight: f32, dst: &mut [f32]) {
        let (a, b) = (self.format.slope * weight, self.format.intercept * weight);
        self.with_row(y, |row| match (self.format.padding, self.fill) {
            (Some((lo, hi)), Some(fill)) => {
                let fill = fill * weight;
                self.add_samples(row, dst, |v| {
                    if (lo..=hi).contains(&i64::from(v)) {
                        fill
                    } else {
                        v as f32 * a + b
                    }
                })
            }
            _ => self.add_samples(row, dst, |v| v as f32 * a + b),
        });
    }

    fn failure(&self) -> Option<String> {
        self.failure.get().cloned()
    }
}
