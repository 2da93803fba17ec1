//! Where resizing reads its input from: a decoded [`Image`], or anything
//! that can produce one row at a time (e.g. a frame's stored samples, read
//! straight from the DICOM bytes, so the full-size image in f32 is never
//! written out).

use super::{Image, PreprocessError};

/// A grey image readable one row at a time.
pub trait Rows: Sync {
    fn width(&self) -> usize;
    fn height(&self) -> usize;
    /// `dst[x] += value(x, y) * weight` for the `width` values of row `y`.
    fn add_row(&self, y: usize, weight: f32, dst: &mut [f32]);

    /// Why rows could not be read, for a source that reads them from
    /// elsewhere: those rows were left out of what `add_row` added.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Shape errors that make the image unusable.
    fn check(&self) -> Result<(), PreprocessError> {
        if self.width() == 0 || self.height() == 0 {
            return Err(PreprocessError::Empty);
        }
        Ok(())
    }

    /// The whole image as values.
    fn to_image(&self) -> Image {
        let (width, height) = (self.width(), self.height());
        let mut values = vec![0.0f32; width * height];
        for (y, row) in values.chunks_exact_mut(width.max(1)).enumerate() {
            self.add_row(y, 1.0, row);
        }
        Image {
            width,
            height,
            values,
        }
    }
}

impl Rows for Image {
    fn width(&self) -> usize {
        self.width
    }

    fn height(&self) -> usize {
        self.height
    }

    fn add_row(&self, y: usize, weight: f32, dst: &mut [f32]) {
        let src = &self.values[y * self.width..(y + 1) * self.width];
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s * weight;
        }
    }

    fn check(&self) -> Result<(), PreprocessError> {
        if self.width == 0 || self.height == 0 {
            return Err(PreprocessError::Empty);
        }
        if self.values.len() != self.width * self.height {
            return Err(PreprocessError::Shape {
                width: self.width,
                height: self.height,
                len: self.values.len(),
            });
        }
        Ok(())
    }

    fn to_image(&self) -> Image {
        self.clone()
    }
}
