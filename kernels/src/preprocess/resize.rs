//! Separable resize. Shrinking an axis averages the input area each output
//! pixel covers, with fractional weights at the borders (area); enlarging
//! one interpolates linearly between the two nearest input pixel centres
//! (bilinear, half-pixel centres, edges clamped).

use super::{check, Image, PreprocessError};

/// For each output index along one axis: the input indices it covers and
/// their weights (summing to 1).
fn spans(input: usize, output: usize) -> Vec<Vec<(usize, f32)>> {
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
fn bilinear(input: usize, output: usize) -> Vec<Vec<(usize, f32)>> {
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
pub fn resize(image: &Image, cols: usize, rows: usize) -> Result<Image, PreprocessError> {
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
pub fn area_resize(image: &Image, cols: usize, rows: usize) -> Result<Image, PreprocessError> {
    separable(image, cols, rows, spans)
}

fn separable(
    image: &Image,
    cols: usize,
    rows: usize,
    taps: impl Fn(usize, usize) -> Vec<Vec<(usize, f32)>>,
) -> Result<Image, PreprocessError> {
    check(image)?;
    if cols == 0 || rows == 0 {
        return Err(PreprocessError::Target(rows, cols));
    }
    if cols == image.width && rows == image.height {
        return Ok(image.clone());
    }
    let xs = taps(image.width, cols);
    let ys = taps(image.height, rows);
    let (width, height) = (image.width, image.height);
    let taps_of = |t: &[Vec<(usize, f32)>]| t.iter().map(Vec::len).sum::<usize>();
    // Two orders give the same result; the one that touches fewer values
    // first is cheaper. Shrinking rows first is also the vectorisable one:
    // whole input rows are scaled and added.
    let rows_first =
        taps_of(&ys) * width + rows * taps_of(&xs) <= height * taps_of(&xs) + taps_of(&ys) * cols;
    let mut values = vec![0.0f32; rows * cols];
    if rows_first {
        let mut vertical = vec![0.0f32; rows * width];
        for (dst, taps) in vertical.chunks_exact_mut(width).zip(&ys) {
            for &(i, w) in taps {
                let src = &image.values[i * width..(i + 1) * width];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s * w;
                }
            }
        }
        for (src, dst) in vertical
            .chunks_exact(width)
            .zip(values.chunks_exact_mut(cols))
        {
            for (d, taps) in dst.iter_mut().zip(&xs) {
                *d = taps.iter().map(|&(i, w)| src[i] * w).sum();
            }
        }
    } else {
        let mut horizontal = vec![0.0f32; height * cols];
        for (src, dst) in image
            .values
            .chunks_exact(width)
            .zip(horizontal.chunks_exact_mut(cols))
        {
            for (d, taps) in dst.iter_mut().zip(&xs) {
                *d = taps.iter().map(|&(i, w)| src[i] * w).sum();
            }
        }
        for (dst, taps) in values.chunks_exact_mut(cols).zip(&ys) {
            for &(i, w) in taps {
                let src = &horizontal[i * cols..(i + 1) * cols];
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
