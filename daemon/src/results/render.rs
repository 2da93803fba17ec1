//! The heatmap picture: the source image in grey, the model's map over it
//! in colour, and below it a legend and burnt-in text. Pure: pixels in,
//! RGB bytes out.

use font8x8::legacy::BASIC_LEGACY;

/// An RGB picture, row by row, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Rgb {
    fn new(width: usize, height: usize) -> Rgb {
        Rgb {
            width,
            height,
            pixels: vec![0; width * height * 3],
        }
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let at = (y * self.width + x) * 3;
            self.pixels[at..at + 3].copy_from_slice(&c);
        }
    }

    fn fill(&mut self, x0: usize, y0: usize, w: usize, h: usize, c: [u8; 3]) {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                self.set(x, y, c);
            }
        }
    }

    /// ASCII text (anything else shows as `?`) at `scale` × the 8×8 font.
    fn text(&mut self, x0: usize, y0: usize, text: &str, scale: usize, c: [u8; 3]) {
        for (i, ch) in text.chars().enumerate() {
            let glyph = BASIC_LEGACY[if ch.is_ascii() {
                ch as usize
            } else {
                '?' as usize
            }];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        let (x, y) = (x0 + (i * 8 + col) * scale, y0 + row * scale);
                        self.fill(x, y, scale, scale, c);
                    }
                }
            }
        }
    }
}

/// A grey image with values in [0, 1].
pub struct Grey<'a> {
    pub width: usize,
    pub height: usize,
    pub values: &'a [f32],
}

/// The colour of map value `p` in [0, 1]: blue, cyan, green, yellow, red.
pub fn colour(p: f32) -> [u8; 3] {
    let p = p.clamp(0.0, 1.0) * 4.0;
    let (r, g, b) = match p as u32 {
        0 => (0.0, p, 1.0),
        1 => (0.0, 1.0, 2.0 - p),
        2 => (p - 2.0, 1.0, 0.0),
        _ => (1.0, (4.0 - p).max(0.0), 0.0),
    };
    [(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8]
}

/// How strongly map value `p` covers the image: nothing up to 0.55 (a map
/// of logits near 0 says nothing), then rising to 0.65.
fn alpha(p: f32) -> f32 {
    ((p - 0.55) / 0.45).clamp(0.0, 1.0) * 0.65
}

/// Draws `image` with `map` (same size, values in [0, 1]) over it, then a
/// panel below with a colour legend (when there is a map) and `lines`.
pub fn picture(image: &Grey, map: Option<&[f32]>, lines: &[String]) -> Rgb {
    let scale = if image.width >= 640 { 2 } else { 1 };
    let line_h = 10 * scale;
    let legend_h = if map.is_some() {
        14 * scale + line_h
    } else {
        0
    };
    let panel = 6 * scale + legend_h + line_h * lines.len();
    let mut out = Rgb::new(image.width, image.height + panel);
    for (i, &v) in image.values.iter().enumerate() {
        let g = v.clamp(0.0, 1.0) * 255.0;
        let (x, y) = (i % image.width, i / image.width);
        let px = match map.and_then(|m| m.get(i)) {
            Some(&p) => {
                let (a, c) = (alpha(p), colour(p));
                [0, 1, 2].map(|k| (g * (1.0 - a) + f32::from(c[k]) * a) as u8)
            }
            None => [g as u8; 3],
        };
        out.set(x, y, px);
    }
    let mut y = image.height + 3 * scale;
    if map.is_some() {
        let bar_w = (image.width / 2).max(16);
        let x0 = 4 * scale;
        for x in 0..bar_w {
            let c = colour(x as f32 / (bar_w - 1) as f32);
            out.fill(x0 + x, y, 1, 8 * scale, c);
        }
        let white = [255, 255, 255];
        out.text(x0 + bar_w + 4 * scale, y, "0 .. 1 model map", scale, white);
        y += 14 * scale;
        let _ = line_h;
    }
    for line in lines {
        out.text(4 * scale, y, line, scale, [255, 255, 0]);
        y += line_h;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_colour_ramp_runs_from_blue_to_red() {
        assert_eq!(colour(0.0), [0, 0, 255]);
        assert_eq!(colour(0.5), [0, 255, 0]);
        assert_eq!(colour(1.0), [255, 0, 0]);
        assert_eq!(colour(-3.0), colour(0.0));
    }

    #[test]
    fn the_picture_keeps_the_image_and_adds_a_panel_with_text() {
        let values = vec![0.5f32; 64 * 32];
        let grey = Grey {
            width: 64,
            height: 32,
            values: &values,
        };
        let plain = picture(&grey, None, &["AI".into()]);
        assert_eq!(plain.width, 64);
        assert_eq!(plain.height, 32 + 6 + 10);
        // The image area is the grey value, untouched without a map.
        assert_eq!(&plain.pixels[..3], &[127, 127, 127]);
        // Some text pixels are yellow.
        assert!(plain.pixels.chunks(3).any(|p| p == [255, 255, 0]));
        // A hot map tints the image towards red.
        let hot = vec![1.0f32; 64 * 32];
        let tinted = picture(&grey, Some(&hot), &[]);
        let p = &tinted.pixels[..3];
        assert!(p[0] > p[2] && p[0] > 127, "{p:?}");
        // A cold map leaves it grey.
        let cold = vec![0.0f32; 64 * 32];
        assert_eq!(
            &picture(&grey, Some(&cold), &[]).pixels[..3],
            &[127, 127, 127]
        );
    }
}
