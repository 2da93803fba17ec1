//! From modality values (after the modality LUT: HU for CT, stored values
//! for radiographs) to the model's input tensor, `channels × rows × cols`
//! f32 (NCHW without the batch).
//!
//! The order is fixed and shared by the daemon and the training recipe (which
//! gets its arrays from `firstlook-phantom`, which calls this module):
//! resize (area when shrinking, bilinear when enlarging; optionally
//! letterboxed) → one window per channel to [0, 1] → invert MONOCHROME1 →
//! pad the letterbox with 0 → normalise. Resizing first keeps the cost
//! independent of the detector size; it is linear, so it commutes with the
//! modality LUT.

#[cfg(feature = "cuda")]
pub mod gpu;
mod resize;
mod rows;
mod window;

pub use resize::{area_resize, resize};
pub use rows::Rows;
pub use window::{percentile, percentiles, Window};

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
    #[error("{0}")]
    Read(String),
    #[error("the image has no usable range to window ({lo} to {hi}): blank or unreadable")]
    Flat { lo: f32, hi: f32 },
}

/// The steps for one route (one set of modalities), as the bundle manifest
/// describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// One window per output channel (e.g. CT head: brain, subdural, bone).
    pub channels: Vec<Window>,
    pub invert_monochrome1: bool,
    /// Output rows and columns.
    pub rows: usize,
    pub cols: usize,
    /// Keep the aspect ratio: fit inside `rows × cols`, centred, the rest 0
    /// (black) before normalisation. Otherwise the image is stretched.
    pub letterbox: bool,
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
        if self.channels.is_empty() {
            return Err(PreprocessError::Window("no channel window".into()));
        }
        self.channels.iter().try_for_each(Window::validate)
    }

    /// Where the image lands in the output: (rows, cols, top, left).
    pub fn placement(&self, image: &impl Rows) -> (usize, usize, usize, usize) {
        if !self.letterbox {
            return (self.rows, self.cols, 0, 0);
        }
        let (width, height) = (image.width() as f64, image.height() as f64);
        let scale = (self.rows as f64 / height).min(self.cols as f64 / width);
        let rows = ((height * scale).round() as usize).clamp(1, self.rows);
        let cols = ((width * scale).round() as usize).clamp(1, self.cols);
        (rows, cols, (self.rows - rows) / 2, (self.cols - cols) / 2)
    }

    /// Resize, window each channel and invert, without the final
    /// normalisation: values in [0, 1], `channels × rows × cols`.
    pub fn unit(&self, image: &impl Rows, monochrome1: bool) -> Result<Vec<f32>, PreprocessError> {
        self.validate()?;
        image.check()?;
        let (rows, cols, top, left) = self.placement(image);
        let small = resize(image, cols, rows)?;
        let plane = self.rows * self.cols;
        let mut out = vec![0.0f32; plane * self.channels.len()];
        for (window, dst) in self.channels.iter().zip(out.chunks_exact_mut(plane)) {
            let mut values = window.apply(&small.values)?;
            if monochrome1 && self.invert_monochrome1 {
                for v in &mut values {
                    *v = 1.0 - *v;
                }
            }
            for (y, row) in values.chunks_exact(cols).enumerate() {
                let at = (top + y) * self.cols + left;
                dst[at..at + cols].copy_from_slice(row);
            }
        }
        Ok(out)
    }

    /// The model input: [`Pipeline::unit`] then `(x - mean) / std`.
    pub fn run(&self, image: &impl Rows, monochrome1: bool) -> Result<Vec<f32>, PreprocessError> {
        let mut out = self.unit(image, monochrome1)?;
        let inv = 1.0 / self.normalize_std;
        for v in &mut out {
            *v = (*v - self.normalize_mean) * inv;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
