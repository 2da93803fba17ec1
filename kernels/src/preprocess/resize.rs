//! Separable resize. Shrinking an axis averages the input area each output
//! pixel covers, with fractional weights at the borders (area); enlarging
//! one interpolates linearly between the two nearest input pixel centres
//! (bilinear, half-pixel centres, edges clamped).

use super::{Image, PreprocessError, Rows};

/// For each output index along one axis: the input indices it covers and
/// their weights (summing to 1).
pub(super) fn spans(input: usize, output: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| {
            let start = o as f64 * scale;
            let end = (o as f64 + 1.0) * scale;
            let mut taps = Vec::new();
            let mut i = start.floor() as usize;
            while (i as f64) < end && i < input {
                let lo = start.max(i as f64);
                let hi = end.min(i as f64 + 1.0);
                if hi > lo {
                    taps.push((i, ((hi - lo) / scale) as f32));
                }
                i += 1;
            }
            taps
        })
        .collect()
}

/// Bilinear taps: output pixel centres mapped to input coordinates.
pub(super) fn bilinear(input: usize, output: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| {
            let x = ((o as f64 + 0.5) * scale - 0.5).clamp(0.0, (input - 1) as f64);
            let i = x.floor() as usize;
            let t = (x - i as f64) as f32;
            if t == 0.0 || i + 1 >= input {
                vec![(i, 1.0)]
            } else {
                vec![(i, 1.0 - t), (i + 1, t)]
            }
        })
        .collect()
}

/// Area when shrinking an axis, bilinear when enlarging it.
pub fn resize(image: &impl Rows, cols: usize, rows: usize) -> Result<Image, PreprocessError> {
    let taps = |input: usize, output: usize| {
        if output > input {
            bilinear(input, output)
        } else {
            spans(input, output)
        }
    };
    separable(image, cols, rows, taps)
}

/// Area averaging on both axes, whatever the direction.
pub fn area_resize(image: &impl Rows, cols: usize, rows: usize) -> Result<Image, PreprocessError> {
    separable(image, cols, rows, spans)
}

/// Taps along a row, laid out flat: output `o` is the dot product of
/// `weights[at[o]..at[o + 1]]` with the inputs from `first[o]` on (every
/// tap list is a run of consecutive inputs).
struct RowTaps {
    first: Vec<usize>,
    at: Vec<usize>,
    weights: Vec<f32>,
}

impl RowTaps {
    fn new(taps: &[Vec<(usize, f32)>]) -> RowTaps {
        let mut flat = RowTaps {
            first: Vec::with_capacity(taps.len()),
            at: vec![0],
            weights: Vec::new(),
        };
        for t in taps {
            flat.first.push(t.first().map_or(0, |&(i, _)| i));
            debug_assert!(t.windows(2).all(|p| p[1].0 == p[0].0 + 1));
            flat.weights.extend(t.iter().map(|&(_, w)| w));
            flat.at.push(flat.weights.len());
        }
        flat
    }

    fn len(&self) -> usize {
        self.first.len()
    }
}

fn horizontal(src: &[f32], xs: &RowTaps, dst: &mut [f32]) {
    for (o, d) in dst.iter_mut().enumerate() {
        let weights = &xs.weights[xs.at[o]..xs.at[o + 1]];
        let from = &src[xs.first[o]..xs.first[o] + weights.len()];
        *d = from.iter().zip(weights).map(|(s, w)| s * w).sum();
    }
}

/// Images with at least this many pixels are resized on several threads.
const PARALLEL_FROM: usize = 1 << 20;
const MAX_THREADS: usize = 4;

/// Output rows `dst` (each `xs.len()` wide) from the input rows `ys` take.
fn shrink_rows(image: &impl Rows, ys: &[Vec<(usize, f32)>], xs: &RowTaps, dst: &mut [f32]) {
    let mut line = vec![0.0f32; image.width()];
    for (dst, taps) in dst.chunks_exact_mut(xs.len()).zip(ys) {
        line.fill(0.0);
        for &(i, w) in taps {
            image.add_row(i, w, &mut line);
        }
        horizontal(&line, xs, dst);
    }
}

fn separable(
    image: &impl Rows,
    cols: usize,
    rows: usize,
    taps: impl Fn(usize, usize) -> Vec<Vec<(usize, f32)>>,
) -> Result<Image, PreprocessError> {
    image.check()?;
    if cols == 0 || rows == 0 {
        return Err(PreprocessError::Target(rows, cols));
    }
    let resized = resample(image, cols, rows, taps)?;
    match image.failure() {
        Some(why) => Err(PreprocessError::Read(why)),
        None => Ok(resized),
    }
}

fn resample(
    image: &impl Rows,
    cols: usize,
    rows: usize,
    taps: impl Fn(usize, usize) -> Vec<Vec<(usize, f32)>>,
) -> Result<Image, PreprocessError> {
    let (width, height) = (image.width(), image.height());
    if cols == width && rows == height {
        return Ok(image.to_image());
    }
    let xs = taps(width, cols);
    let ys = taps(height, rows);
    let taps_of = |t: &[Vec<(usize, f32)>]| t.iter().map(Vec::len).sum::<usize>();
    // Two orders give the same result. Rows first: each output row adds the
    // input rows it covers (read, converted and added whole, which
    // vectorises), then takes its columns; nothing full-size is written.
    // Columns first: every input row is read once and its columns taken,
    // then the shrunk rows are added. A column tap (a short dot product per
    // output) costs about four row taps; the cheaper order is used.
    const COLUMN_TAP: usize = 4;
    let rows_first = taps_of(&ys) * width + rows * taps_of(&xs) * COLUMN_TAP
        <= height * width + height * taps_of(&xs) * COLUMN_TAP + taps_of(&ys) * cols;
    let mut values = vec![0.0f32; rows * cols];
    let xs = RowTaps::new(&xs);
    if rows_first {
        // Output rows are independent: a large image is split over the
        // cores (two on the appliance's CPU path).
        let parts = if width * height >= PARALLEL_FROM {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
        } else {
            1
        };
        let per = rows.div_ceil(parts);
        std::thread::scope(|scope| {
            let mut chunks = values.chunks_mut(per * cols).zip(ys.chunks(per));
            let mine = chunks.next();
            for (dst, ys) in chunks {
                let xs = &xs;
                scope.spawn(move || shrink_rows(image, ys, xs, dst));
            }
            if let Some((dst, ys)) = mine {
                shrink_rows(image, ys, &xs, dst);
            }
        });
    } else {
        let mut line = vec![0.0f32; width];
        let mut shrunk = vec![0.0f32; height * cols];
        for (y, dst) in shrunk.chunks_exact_mut(cols).enumerate() {
            line.fill(0.0);
            image.add_row(y, 1.0, &mut line);
            horizontal(&line, &xs, dst);
        }
        for (dst, taps) in values.chunks_exact_mut(cols).zip(&ys) {
            for &(i, w) in taps {
                let src = &shrunk[i * cols..(i + 1) * cols];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s * w;
                }
            }
        }
    }
    Ok(Image {
        width: cols,
        height: rows,
        values,
    })
}
