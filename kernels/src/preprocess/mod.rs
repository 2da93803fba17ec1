//! From modality values (after the modality LUT: HU for CT, stored values
//! for radiographs) to the model's input tensor.
//!
//! The order is fixed and shared by the daemon and the training recipe (which
//! gets its arrays from `firstlook-phantom`, which calls this module):
//! area-resize → window to [0, 1] → invert MONOCHROME1 → normalise.
//! Resizing first keeps the cost independent of the detector size; it is
//! linear, so it commutes with the modality LUT.

mod resize;
mod window;

pub use resize::area_resize;
pub use window::{percentile, Window};

/// A grey image of `width × height` values, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// Why an image could not be preprocessed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PreprocessError {
    #[error("image is {width}x{height} but holds {len} values")]
    Shape {
        width: usize,
        height: usize,
        len: usize,
    },
    #[error("image is empty")]
    Empty,
    #[error("target size {0}x{1} is invalid")]
    Target(usize, usize),
    #[error("normalisation std {0} must be positive and finite")]
    Std(f32),
    #[error("window is invalid: {0}")]
    Window(String),
    #[error("the image has no usable range to window ({lo} to {hi}): blank or unreadable")]
    Flat { lo: f32, hi: f32 },
}

/// The steps for one route (one set of modalities), as the bundle manifest
/// describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub window: Window,
    pub invert_monochrome1: bool,
    /// Output rows and columns.
    pub rows: usize,
    pub cols: usize,
    pub normalize_mean: f32,
    pub normalize_std: f32,
}

impl Pipeline {
    pub fn validate(&self) -> Result<(), PreprocessError> {
        if self.rows == 0 || self.cols == 0 || self.rows > 4096 || self.cols > 4096 {
            return Err(PreprocessError::Target(self.rows, self.cols));
        }
        if !(self.normalize_std.is_finite()
            && self.normalize_std > 0.0
            && self.normalize_mean.is_finite())
        {
            return Err(PreprocessError::Std(self.normalize_std));
        }
        self.window.validate()
    }

    /// Window, invert and resize, without the final normalisation: values in
    /// [0, 1], `rows × cols`.
    pub fn unit(&self, image: &Image, monochrome1: bool) -> Result<Vec<f32>, PreprocessError> {
        self.validate()?;
        check(image)?;
        let small = area_resize(image, self.cols, self.rows)?;
        let mut out = self.window.apply(&small.values)?;
        if monochrome1 && self.invert_monochrome1 {
            for v in &mut out {
                *v = 1.0 - *v;
            }
        }
        Ok(out)
    }

    /// The model input: [`Pipeline::unit`] then `(x - mean) / std`.
    pub fn run(&self, image: &Image, monochrome1: bool) -> Result<Vec<f32>, PreprocessError> {
        let mut out = self.unit(image, monochrome1)?;
        let inv = 1.0 / self.normalize_std;
        for v in &mut out {
            *v = (*v - self.normalize_mean) * inv;
        }
        Ok(out)
    }
}

fn check(image: &Image) -> Result<(), PreprocessError> {
    if image.width == 0 || image.height == 0 {
        return Err(PreprocessError::Empty);
    }
    if image.values.len() != image.width * image.height {
        return Err(PreprocessError::Shape {
            width: image.width,
            height: image.height,
            len: image.values.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
