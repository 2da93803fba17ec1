//! The alert card's picture: the heatmap Secondary Capture the box made for
//! the report (the same image PACS gets), shrunk and sent as PNG.

use dicom_dictionary_std::tags;

pub const MAX_SIDE: usize = 480;

/// `file` is a Part-10 RGB image (8 bits, interleaved samples).
pub fn png_of_rgb_instance(file: &[u8], max_side: usize) -> Result<Vec<u8>, String> {
    let obj = crate::spool::part10::parse(file, false)?;
    let uint = |t| -> Result<usize, String> {
        obj.element(t)
            .map_err(|e| e.to_string())?
            .to_int::<u32>()
            .map(|v| v as usize)
            .map_err(|e| e.to_string())
    };
    let (rows, cols, samples) = (
        uint(tags::ROWS)?,
        uint(tags::COLUMNS)?,
        uint(tags::SAMPLES_PER_PIXEL)?,
    );
    let data = obj
        .element(tags::PIXEL_DATA)
        .map_err(|e| e.to_string())?
        .to_bytes()
        .map_err(|e| e.to_string())?;
    if samples != 3 || data.len() < rows * cols * 3 || rows == 0 || cols == 0 {
        return Err(format!(
            "the heatmap is not an RGB image ({rows}x{cols}x{samples}, {} bytes)",
            data.len()
        ));
    }
    let (w, h, rgb) = shrink(&data[..rows * cols * 3], cols, rows, max_side);
    encode(w, h, &rgb)
}

/// Box-filtered down to at most `max_side` on the long side.
fn shrink(rgb: &[u8], w: usize, h: usize, max_side: usize) -> (usize, usize, Vec<u8>) {
    let long = w.max(h);
    if long <= max_side {
        return (w, h, rgb.to_vec());
    }
    let (nw, nh) = (
        (w * max_side).div_ceil(long).max(1),
        (h * max_side).div_ceil(long).max(1),
    );
    let mut out = vec![0u8; nw * nh * 3];
    for y in 0..nh {
        let (y0, y1) = (y * h / nh, ((y + 1) * h / nh).max(y * h / nh + 1));
        for x in 0..nw {
            let (x0, x1) = (x * w / nw, ((x + 1) * w / nw).max(x * w / nw + 1));
            let mut sum = [0u32; 3];
            for sy in y0..y1 {
                for sx in x0..x1 {
                    let p = (sy * w + sx) * 3;
                    for c in 0..3 {
                        sum[c] += rgb[p + c] as u32;
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            for c in 0..3 {
                out[(y * nw + x) * 3 + c] = (sum[c] / n) as u8;
            }
        }
    }
    (nw, nh, out)
}

fn encode(w: usize, h: usize, rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_keeps_the_aspect_and_averages() {
        let (w, h) = (8, 4);
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                rgb[(y * w + x) * 3] = if x < 4 { 200 } else { 0 };
            }
        }
        let (nw, nh, out) = shrink(&rgb, w, h, 4);
        assert_eq!((nw, nh), (4, 2));
        assert_eq!(out[0], 200);
        assert_eq!(out[(nw - 1) * 3], 0);
        let (same_w, _, same) = shrink(&rgb, w, h, 8);
        assert_eq!((same_w, same), (8, rgb));
    }

    #[test]
    fn png_decodes_back_to_the_pixels() {
        let rgb: Vec<u8> = (0..6 * 5 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let png = encode(6, 5, &rgb).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (6, 5));
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
    }
}
