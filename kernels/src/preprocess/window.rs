//! VOI windowing to [0, 1].

use super::PreprocessError;

#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// A fixed window in modality units (e.g. HU: centre 40, width 80 for brain).
    Fixed { center: f32, width: f32 },
    /// From the `low` to the `high` percentile (0-100) of the image itself,
    /// for radiographs whose stored values carry no absolute meaning.
    Percentile { low: f32, high: f32 },
}

impl Window {
    pub fn validate(&self) -> Result<(), PreprocessError> {
        match *self {
            Window::Fixed { center, width } => {
                if !(center.is_finite() && width.is_finite() && width > 0.0) {
                    return Err(PreprocessError::Window(format!(
                        "fixed window needs a finite centre and a positive width (got {center}, {width})"
                    )));
                }
            }
            Window::Percentile { low, high } => {
                if !((0.0..100.0).contains(&low) && low < high && high <= 100.0) {
                    return Err(PreprocessError::Window(format!(
                        "percentiles need 0 <= low < high <= 100 (got {low}, {high})"
                    )));
                }
            }
        }
        Ok(())
    }

    /// (lower, upper) bounds for `values`.
    pub fn bounds(&self, values: &[f32]) -> (f32, f32) {
        match *self {
            Window::Fixed { center, width } => (center - width / 2.0, center + width / 2.0),
            Window::Percentile { low, high } => {
                let mut sorted: Vec<f32> =
                    values.iter().copied().filter(|v| v.is_finite()).collect();
                sorted.sort_by(f32::total_cmp);
                (percentile(&sorted, low), percentile(&sorted, high))
            }
        }
    }

    /// Maps `values` to [0, 1]. An image with no usable range (constant, or
    /// no finite value) is an error: a blank input must never be scored.
    pub fn apply(&self, values: &[f32]) -> Result<Vec<f32>, PreprocessError> {
        let (lo, hi) = self.bounds(values);
        let span = hi - lo;
        if span <= 0.0 || !span.is_finite() {
            return Err(PreprocessError::Flat { lo, hi });
        }
        let inv = 1.0 / span;
        Ok(values
            .iter()
            .map(|&v| {
                let t = (v - lo) * inv;
                if t.is_nan() {
                    0.0
                } else {
                    t.clamp(0.0, 1.0)
                }
            })
            .collect())
    }
}

/// Linear-interpolated percentile `p` (0-100) of sorted values; 0 when empty.
pub fn percentile(sorted: &[f32], p: f32) -> f32 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = f64::from(p.clamp(0.0, 100.0)) / 100.0 * (n - 1) as f64;
            let i = pos.floor() as usize;
            let frac = (pos - i as f64) as f32;
            let j = (i + 1).min(n - 1);
            sorted[i] + (sorted[j] - sorted[i]) * frac
        }
    }
}
