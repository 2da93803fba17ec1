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

/// The outline of a located finding.
const OUTLINE: [u8; 3] = [255, 0, 255];

/// Draws `image` with `map` (same size, values in [0, 1]) over it and
/// `outlines` (left, top, right, bottom in its pixels) around located
/// findings, then a panel below with a colour legend (when there is a map)
/// and `lines`.
pub fn picture(image: &Grey, map: Option<&[f32]>, outlines: &[[f32; 4]], lines: &[String]) -> Rgb {
    let scale = if image.width >= 640 { 2 } else { 1 };
    let lines = wrap(
        lines,
        (image.width.saturating_sub(8 * scale) / (8 * scale)).max(8),
    );
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
    for &[x0, y0, x1, y1] in outlines {
        let clamp = |v: f32, max: usize| (v.max(0.0) as usize).min(max);
        let (x0, x1) = (clamp(x0, image.width), clamp(x1, image.width));
        let (y0, y1) = (clamp(y0, image.height), clamp(y1, image.height));
        let t = 2 * scale;
        let (w, h) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
        out.fill(x0, y0, w, t.min(h), OUTLINE);
        out.fill(x0, y1.saturating_sub(t).max(y0), w, t.min(h), OUTLINE);
        out.fill(x0, y0, t.min(w), h, OUTLINE);
        out.fill(x1.saturating_sub(t).max(x0), y0, t.min(w), h, OUTLINE);
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
    for line in &lines {
        out.text(4 * scale, y, line, scale, [255, 255, 0]);
        y += line_h;
    }
    out
}

/// `lines` broken at spaces (or anywhere, for a longer word) into lines of
/// at most `max` characters; continuations are indented.
fn wrap(lines: &[String], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        let mut rest: Vec<char> = line.chars().collect();
        let mut indent = "";
        loop {
            let room = max - indent.len();
            if rest.len() <= room {
                out.push(format!("{indent}{}", rest.iter().collect::<String>()));
                break;
            }
            let cut = rest[..=room]
                .iter()
                .rposition(|&c| c == ' ')
                .filter(|&at| at > 0)
                .unwrap_or(room);
            out.push(format!(
                "{indent}{}",
                rest[..cut].iter().collect::<String>()
            ));
            rest = rest[cut..]
                .iter()
                .skip_while(|&&c| c == ' ')
                .copied()
                .collect();
            indent = "  ";
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64 × 32 image at half brightness.
    fn mid_grey() -> Grey<'static> {
        static VALUES: [f32; 64 * 32] = [0.5; 64 * 32];
        Grey {
            width: 64,
            height: 32,
            values: &VALUES,
        }
    }

    #[test]
    fn the_colour_ramp_runs_from_blue_to_red() {
        assert_eq!(colour(0.0), [0, 0, 255]);
        assert_eq!(colour(0.5), [0, 255, 0]);
        assert_eq!(colour(1.0), [255, 0, 0]);
        assert_eq!(colour(-3.0), colour(0.0));
    }

    #[test]
    fn the_picture_keeps_the_image_and_adds_a_panel_with_text() {
        let grey = mid_grey();
        let plain = picture(&grey, None, &[], &["AI".into()]);
        assert_eq!(plain.width, 64);
        assert_eq!(plain.height, 32 + 6 + 10);
        // The image area is the grey value, untouched without a map.
        assert_eq!(&plain.pixels[..3], &[127, 127, 127]);
        // Some text pixels are yellow.
        assert!(plain.pixels.chunks(3).any(|p| p == [255, 255, 0]));
        // A hot map tints the image towards red.
        let hot = vec![1.0f32; 64 * 32];
        let tinted = picture(&grey, Some(&hot), &[], &[]);
        let p = &tinted.pixels[..3];
        assert!(p[0] > p[2] && p[0] > 127, "{p:?}");
        // A cold map leaves it grey.
        let cold = vec![0.0f32; 64 * 32];
        assert_eq!(
            &picture(&grey, Some(&cold), &[], &[]).pixels[..3],
            &[127, 127, 127]
        );
    }

    #[test]
    fn a_located_finding_is_outlined_inside_the_image_only() {
        let grey = mid_grey();
        let boxed = picture(&grey, None, &[[10.0, 4.0, 30.0, 40.0]], &[]);
        let at = |x: usize, y: usize| &boxed.pixels[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
        assert_eq!(at(10, 4), OUTLINE);
        assert_eq!(at(29, 20), OUTLINE);
        assert_eq!(at(20, 31), OUTLINE, "the bottom edge clamped to the image");
        assert_eq!(at(20, 20), [127, 127, 127], "inside stays the image");
        assert_eq!(at(5, 20), [127, 127, 127]);
        // Nothing of the outline spills into the text panel.
        assert!(boxed.pixels[64 * 32 * 3..].chunks(3).all(|p| p != OUTLINE));
    }

    #[test]
    fn long_lines_wrap_at_spaces_within_the_picture() {
        let lines = [
            "short".to_string(),
            "Intracranial hemorrhage: URGENT finding (score 4.60, threshold 1.25)".to_string(),
            "x".repeat(25),
        ];
        let wrapped = wrap(&lines, 30);
        assert_eq!(
            wrapped,
            [
                "short",
                "Intracranial hemorrhage:",
                "  URGENT finding (score 4.60,",
                "  threshold 1.25)",
                "xxxxxxxxxxxxxxxxxxxxxxxxx",
            ]
        );
        assert!(wrapped.iter().all(|l| l.len() <= 30));
        assert_eq!(wrap(&["y".repeat(70)], 30).len(), 3);
    }
}
