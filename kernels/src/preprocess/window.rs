//! VOI windowing to [0, 1].

use super::PreprocessError;

#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// A fixed window in modality units (e.g. HU: centre 40, width 80 for brain).
    Fixed { center: f32, width: f32 },
    /// From the `low` to the `high` percentile (0-100) of the image itself,
    /// for radiographs whose stored values carry no absolute meaning.
    Percentile { low: f32, high: f32 },
    /// DICOM LINEAR (PS3.3 C.11.2.1.2.1): the window of the image's VOI module.
    Linear { center: f32, width: f32 },
    /// DICOM SIGMOID (PS3.3 C.11.2.1.3.1).
    Sigmoid { center: f32, width: f32 },
    /// A VOI LUT Sequence table, outputs already scaled to [0, 1]; inputs
    /// below `first_mapped` take the first entry, beyond the end the last.
    Lut { first_mapped: f32, values: Vec<f32> },
}

impl Window {
    pub fn validate(&self) -> Result<(), PreprocessError> {
        match *self {
            Window::Linear { center, width } => {
                if !(center.is_finite() && width.is_finite() && width >= 1.0) {
                    return Err(PreprocessError::Window(format!(
                        "a LINEAR window needs a finite centre and a width >= 1 (got {center}, {width})"
                    )));
                }
            }
            Window::Fixed { center, width } | Window::Sigmoid { center, width } => {
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
            Window::Lut {
                first_mapped,
                ref values,
            } => {
                if values.is_empty() || !first_mapped.is_finite() {
                    return Err(PreprocessError::Window("the VOI LUT is empty".into()));
                }
            }
        }
        Ok(())
    }

    /// (lower, upper) bounds for `values`: the input range the window maps
    /// onto [0, 1] (for a LUT, the inputs it covers).
    pub fn bounds(&self, values: &[f32]) -> (f32, f32) {
        match *self {
            Window::Fixed { center, width }
            | Window::Linear { center, width }
            | Window::Sigmoid { center, width } => (center - width / 2.0, center + width / 2.0),
            Window::Lut {
                first_mapped,
                ref values,
            } => (first_mapped, first_mapped + values.len() as f32 - 1.0),
            Window::Percentile { low, high } => percentiles(values, low, high),
        }
    }

    /// Maps `values` to [0, 1]. An image with no usable range (constant, or
    /// no finite value) is an error: a blank input must never be scored.
    pub fn apply(&self, values: &[f32]) -> Result<Vec<f32>, PreprocessError> {
        match *self {
            Window::Linear { center, width } => return Ok(linear(values, center, width)),
            Window::Sigmoid { center, width } => {
                return Ok(values
                    .iter()
                    .map(|&x| {
                        let y = 1.0 / (1.0 + (-4.0 * (x - center) / width).exp());
                        if y.is_nan() {
                            0.0
                        } else {
                            y
                        }
                    })
                    .collect())
            }
            Window::Lut {
                first_mapped,
                values: ref lut,
            } => {
                let last = lut.len() - 1;
                return Ok(values
                    .iter()
                    .map(|&x| {
                        let at = (x - first_mapped).max(0.0);
                        lut[if at.is_nan() {
                            0
                        } else {
                            (at as usize).min(last)
                        }]
                    })
                    .collect());
            }
            Window::Fixed { .. } | Window::Percentile { .. } => {}
        }
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

/// DICOM LINEAR windowing to [0, 1]: `x <= c - 0.5 - (w-1)/2` → 0,
/// `x > c - 0.5 + (w-1)/2` → 1, else `((x - (c - 0.5)) / (w - 1) + 0.5)`.
fn linear(values: &[f32], center: f32, width: f32) -> Vec<f32> {
    let (c, w) = (center - 0.5, width - 1.0);
    let (lo, hi) = (c - w / 2.0, c + w / 2.0);
    values
        .iter()
        .map(|&x| {
            if x <= lo || x.is_nan() {
                0.0
            } else if x > hi {
                1.0
            } else {
                (x - c) / w + 0.5
            }
        })
        .collect()
}

/// Linear-interpolated percentile `p` (0-100) of `values`; 0 when empty.
/// The two order statistics it interpolates between are found by selection
/// (O(n)), not by sorting; `values` is reordered.
pub fn percentile(values: &mut [f32], p: f32) -> f32 {
    let Some((i, frac)) = rank(values.len(), p) else {
        return values.first().copied().unwrap_or(0.0);
    };
    let (_, &mut lo, upper) = values.select_nth_unstable_by(i, f32::total_cmp);
    interpolate(lo, upper, frac)
}

/// Percentiles `low` <= `high` of the finite values in `values`, as
/// [`percentile`] gives each. A sample of the image brackets each rank; one
/// pass counts what lies below and inside each bracket, a second gathers
/// the few values inside, and the selections run on those. When a bracket
/// misses its rank (a sample unlike the image), both are selected over the
/// whole image, the second only above the first.
pub fn percentiles(values: &[f32], low: f32, high: f32) -> (f32, f32) {
    if let Some(found) = bracketed(values, low, high) {
        return found;
    }
    let mut finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (Some((i, lf)), Some((j, hf))) = (rank(finite.len(), low), rank(finite.len(), high)) else {
        let v = finite.first().copied().unwrap_or(0.0);
        return (v, v);
    };
    if j <= i {
        let a = percentile(&mut finite, low);
        return (a, percentile(&mut finite, high));
    }
    let (_, &mut lo, upper) = finite.select_nth_unstable_by(i, f32::total_cmp);
    let a = interpolate(lo, upper, lf);
    let (_, &mut lo, rest) = upper.select_nth_unstable_by(j - i - 1, f32::total_cmp);
    (a, interpolate(lo, rest, hf))
}

/// Below this many values, selecting over all of them is as quick.
const BRACKET_FROM: usize = 1 << 14;

/// A value range expected to hold one rank.
#[derive(Clone, Copy)]
struct Bracket {
    floor: f32,
    ceiling: f32,
}

impl Bracket {
    /// Around the sample's rank for `p`, six binomial standard deviations
    /// (plus a few) either side.
    fn around(sample: &[f32], p: f32) -> Bracket {
        let q = f64::from(p.clamp(0.0, 100.0)) / 100.0;
        let len = sample.len() as f64;
        let margin = (6.0 * (len * q * (1.0 - q)).sqrt()) as usize + 4;
        let at = (q * (len - 1.0)) as usize;
        Bracket {
            floor: at
                .checked_sub(margin)
                .map_or(f32::NEG_INFINITY, |k| sample[k]),
            ceiling: sample.get(at + margin).copied().unwrap_or(f32::INFINITY),
        }
    }

    fn below(self, v: f32) -> bool {
        v < self.floor && v > f32::NEG_INFINITY
    }

    fn holds(self, v: f32) -> bool {
        v >= self.floor && v <= self.ceiling && v.abs() < f32::INFINITY
    }
}

fn bracketed(values: &[f32], low: f32, high: f32) -> Option<(f32, f32)> {
    const SAMPLES: usize = 4096;
    if values.len() < BRACKET_FROM {
        return None;
    }
    // Positions from a fixed pseudo-random sequence: a regular stride
    // would alias with the image's own periodic structure.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut sample: Vec<f32> = (0..SAMPLES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values[(state % values.len() as u64) as usize]
        })
        .filter(|v| v.is_finite())
        .collect();
    if sample.len() < SAMPLES / 2 {
        return None;
    }
    sample.sort_unstable_by(f32::total_cmp);
    let brackets = [
        Bracket::around(&sample, low),
        Bracket::around(&sample, high),
    ];
    // Counting only: branch-free, so it vectorises.
    let (mut n, mut below, mut inside) = (0usize, [0usize; 2], [0usize; 2]);
    for chunk in values.chunks(1 << 12) {
        let (mut c, mut b, mut h) = (0u32, [0u32; 2], [0u32; 2]);
        for &v in chunk {
            c += u32::from(v.abs() < f32::INFINITY);
            for k in 0..2 {
                b[k] += u32::from(brackets[k].below(v));
                h[k] += u32::from(brackets[k].holds(v));
            }
        }
        n += c as usize;
        for k in 0..2 {
            below[k] += b[k] as usize;
            inside[k] += h[k] as usize;
        }
    }
    let ranks = [rank(n, low)?, rank(n, high)?];
    for k in 0..2 {
        let (i, _) = ranks[k];
        let last = (i + 1).min(n - 1);
        if i < below[k] || last >= below[k] + inside[k] {
            return None;
        }
    }
    // Gathering: most blocks hold nothing inside either bracket and are
    // skipped after a branch-free test.
    let mut gathered = [Vec::with_capacity(inside[0]), Vec::with_capacity(inside[1])];
    for block in values.chunks(16) {
        let any = block.iter().fold(false, |a, &v| {
            a | brackets[0].holds(v) | brackets[1].holds(v)
        });
        if any {
            for &v in block {
                for k in 0..2 {
                    if brackets[k].holds(v) {
                        gathered[k].push(v);
                    }
                }
            }
        }
    }
    let mut found = [0.0f32; 2];
    for k in 0..2 {
        let (i, frac) = ranks[k];
        let (_, &mut a, upper) = gathered[k].select_nth_unstable_by(i - below[k], f32::total_cmp);
        found[k] = if i + 1 >= n {
            a
        } else {
            interpolate(a, upper, frac)
        };
    }
    Some((found[0], found[1]))
}

/// The lower order statistic's index and the weight of the next one.
fn rank(n: usize, p: f32) -> Option<(usize, f32)> {
    if n < 2 {
        return None;
    }
    let pos = f64::from(p.clamp(0.0, 100.0)) / 100.0 * (n - 1) as f64;
    let i = pos.floor() as usize;
    Some((i, (pos - i as f64) as f32))
}

/// `lo` moved `frac` of the way to the smallest of `upper` (the values
/// above it).
fn interpolate(lo: f32, upper: &[f32], frac: f32) -> f32 {
    if upper.is_empty() {
        return lo;
    }
    let hi = upper.iter().copied().fold(f32::INFINITY, f32::min);
    lo + (hi - lo) * frac
}
