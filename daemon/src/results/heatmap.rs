//! The heatmap image's pixels: the key instance shown with its route's first
//! window, the model run again on it for the reported finding's map, and
//! the text every copy of it must carry.

use firstlook_kernels::preprocess::{resize, Image, Pipeline, Rows};

use crate::bundle::Manifest;
use crate::model::Model;
use crate::spool::part10;
use crate::triage::Outcome;

use super::render::{self, Grey, Rgb};
use super::report::FindingResult;

/// Longest side of the shown image.
const DISPLAY: usize = 768;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Urgent => "URGENT finding",
        Outcome::Finding => "finding",
        Outcome::NoFinding => "no finding",
        Outcome::NotAssessable => "not assessable",
        Outcome::Error => "ERROR, not assessed",
    }
}

/// The burnt-in lines.
pub fn lines(model: &crate::triage::ModelInfo, findings: &[FindingResult]) -> Vec<String> {
    let mut lines = vec!["AI output - not a diagnosis".to_string()];
    let mut m = format!("model {} {}", model.name, model.version);
    if !model.clinical_use {
        m.push_str(" - synthetic, NOT FOR CLINICAL USE");
    }
    lines.push(m);
    for f in findings {
        let mut l = format!("{}: {}", f.display, outcome_label(f.outcome));
        if let (Some(s), Some(t)) = (f.score, f.threshold) {
            l.push_str(&format!(" (score {s:.2}, threshold {t:.2})"));
        }
        if let Some(r) = &f.reason {
            l.push_str(&format!(" - {r}"));
        }
        lines.push(l);
    }
    lines
}

/// The picture for one report, and where on the key image the model's maps
/// put each present finding of `findings` (by finding id): `key` is the
/// instance shown (as read, and its Part-10 bytes); `map_for` the finding
/// whose map is drawn. Without a model, a route or decodable pixels, the
/// text is drawn on what there is.
pub fn picture(
    key: Option<(&part10::Stored, &[u8])>,
    manifest: Option<&Manifest>,
    model: Option<&mut Model>,
    map_for: Option<&FindingResult>,
    findings: &[FindingResult],
    text: &[String],
) -> (Rgb, Vec<Located>) {
    let mut text = text.to_vec();
    let shown = key.map(|(stored, bytes)| shown(stored, bytes, manifest, model, map_for, findings));
    match shown {
        Some(Ok(shown)) => {
            text.extend(shown.note);
            if !shown.regions.is_empty() {
                text.push("magenta box: where the model locates a finding".into());
            }
            let g = Grey {
                width: shown.grey.width,
                height: shown.grey.height,
                values: &shown.grey.values,
            };
            let picture = render::picture(&g, shown.map.as_deref(), &shown.outlines, &text);
            (picture, shown.regions)
        }
        Some(Err(e)) => {
            text.push(format!("image not shown: {e}"));
            (blank(&text), Vec::new())
        }
        None => (blank(&text), Vec::new()),
    }
}

fn blank(text: &[String]) -> Rgb {
    let values = vec![0.0f32; 512 * 64];
    let g = Grey {
        width: 512,
        height: 64,
        values: &values,
    };
    render::picture(&g, None, &[], text)
}

/// Where a map puts a present finding on the frame shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// The finding's id in the bundle.
    pub finding: String,
    /// Left, top, right, bottom in the source's pixels.
    pub rect: [f32; 4],
    /// The frame shown (1-based), for a multi-frame image.
    pub frame: Option<u32>,
}

struct Shown {
    grey: Image,
    /// The map over `grey`, 0 to 1.
    map: Option<Vec<f32>>,
    note: Option<String>,
    /// Where the maps locate the present findings (by id), in the source's
    /// pixels.
    regions: Vec<Located>,
    /// The same in `grey`'s pixels.
    outlines: Vec<[f32; 4]>,
}

impl Shown {
    fn plain(grey: Image, note: Option<String>) -> Shown {
        Shown {
            grey,
            map: None,
            note,
            regions: Vec::new(),
            outlines: Vec::new(),
        }
    }
}

fn shown(
    stored: &part10::Stored,
    bytes: &[u8],
    manifest: Option<&Manifest>,
    model: Option<&mut Model>,
    map_for: Option<&FindingResult>,
    findings: &[FindingResult],
) -> Result<Shown, String> {
    let pixels = stored.pixels(bytes).map_err(|e| e.to_string())?;
    let image = pixels.frame(0).map_err(|e| e.to_string())?;
    let manifest = manifest.ok_or("no model bundle")?;
    let route = manifest
        .route_index(&image.modality)
        .ok_or_else(|| format!("no route for modality {}", image.modality))?;
    let model_pipeline = manifest.preprocessing[route]
        .pipeline_for(&image.voi)
        .map_err(|e| e.to_string())?;
    let (w, h) = (image.image.width(), image.image.height());
    let scale = (DISPLAY as f64 / w.max(h) as f64).min(1.0);
    let (cols, rows) = (
        ((w as f64 * scale).round() as usize).max(1),
        ((h as f64 * scale).round() as usize).max(1),
    );
    let display = Pipeline {
        channels: vec![model_pipeline.channels[0].clone()],
        invert_monochrome1: true,
        rows,
        cols,
        letterbox: false,
        normalize_mean: 0.0,
        normalize_std: 1.0,
    };
    let grey = display
        .unit(&image.image, image.monochrome1)
        .map_err(|e| e.to_string())?;
    let grey = Image {
        width: cols,
        height: rows,
        values: grey,
    };
    let Some(f) = map_for else {
        return Ok(Shown::plain(grey, None));
    };
    let Some(model) = model else {
        return Ok(Shown::plain(
            grey,
            Some("no map: the model could not be loaded".into()),
        ));
    };
    let maps = model
        .input(&image, route)
        .and_then(|input| model.maps(&input));
    let maps = match maps {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(Shown::plain(grey, Some("the model gives no map".into()))),
        Err(e) => return Ok(Shown::plain(grey, Some(format!("no map: {e}")))),
    };
    let (mh, mw) = (maps.rows, maps.cols);
    // The maps cover the model's input; with a letterbox, only the part
    // where the image was placed is the image.
    let (pr, pc, top, left) = model_pipeline.placement(&image.image);
    let (sy, sx) = (
        mh as f64 / model_pipeline.rows as f64,
        mw as f64 / model_pipeline.cols as f64,
    );
    let (y0, x0) = (
        ((top as f64 * sy) as usize).min(mh - 1),
        ((left as f64 * sx) as usize).min(mw - 1),
    );
    let (ch, cw) = (
        ((pr as f64 * sy).round() as usize).clamp(1, mh - y0),
        ((pc as f64 * sx).round() as usize).clamp(1, mw - x0),
    );
    let crop = |plane: &[f32]| Image {
        width: cw,
        height: ch,
        values: (y0..y0 + ch)
            .flat_map(|y| &plane[y * mw + x0..y * mw + x0 + cw])
            .copied()
            .collect(),
    };
    let plane_of = |id: &str| {
        manifest
            .finding(id)
            .and_then(|d| maps.plane(d.output_index))
    };
    let frame = (pixels.frames() > 1).then_some(1);
    let regions: Vec<Located> = findings
        .iter()
        .filter(|g| matches!(g.outcome, Outcome::Urgent | Outcome::Finding))
        .filter_map(|g| {
            let rect = located(&crop(plane_of(&g.id)?), w, h)?;
            Some(Located {
                finding: g.id.clone(),
                rect,
                frame,
            })
        })
        .collect();
    let (ox, oy) = (cols as f32 / w as f32, rows as f32 / h as f32);
    let outlines = regions
        .iter()
        .map(|r| {
            let [x0, y0, x1, y1] = r.rect;
            [x0 * ox, y0 * oy, x1 * ox, y1 * oy]
        })
        .collect();
    let Some(plane) = plane_of(&f.id) else {
        return Ok(Shown {
            regions,
            outlines,
            ..Shown::plain(grey, None)
        });
    };
    let mut drawn = crop(plane);
    for v in &mut drawn.values {
        *v = sigmoid(*v);
    }
    let map = resize(&drawn, cols, rows).map_err(|e| e.to_string())?;
    Ok(Shown {
        grey,
        map: Some(map.values),
        note: Some(format!("map: {} (sigmoid of the model's map)", f.display)),
        regions,
        outlines,
    })
}

/// Where a map (its cells covering an image of `cols` × `rows` pixels)
/// puts its finding: the rectangle around the connected cells that hold its
/// peak and stand at least half as far above the map's median as the peak
/// does, as the image's column and row of the top left and bottom right
/// corners. None for a flat map.
pub fn located(map: &Image, cols: usize, rows: usize) -> Option<[f32; 4]> {
    let (w, h) = (map.width, map.height);
    let (peak, &top) = map
        .values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    let mut values = map.values.clone();
    let middle = values.len() / 2;
    let (_, &mut median, _) = values.select_nth_unstable_by(middle, f32::total_cmp);
    if top.is_nan() || top <= median {
        return None;
    }
    let half = median + (top - median) / 2.0;
    let mut seen = vec![false; w * h];
    let mut stack = vec![peak];
    seen[peak] = true;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    while let Some(at) = stack.pop() {
        let (x, y) = (at % w, at / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
        let neighbours = [
            (x > 0).then(|| at - 1),
            (x + 1 < w).then(|| at + 1),
            (y > 0).then(|| at - w),
            (y + 1 < h).then(|| at + w),
        ];
        for n in neighbours.into_iter().flatten() {
            if !seen[n] && map.values[n] >= half {
                seen[n] = true;
                stack.push(n);
            }
        }
    }
    let (sx, sy) = (cols as f32 / w as f32, rows as f32 / h as f32);
    Some([
        x0 as f32 * sx,
        y0 as f32 * sy,
        x1 as f32 * sx,
        y1 as f32 * sy,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(width: usize, height: usize, hot: &[(usize, usize, f32)]) -> Image {
        let mut values = vec![0.0; width * height];
        for &(x, y, v) in hot {
            values[y * width + x] = v;
        }
        Image {
            width,
            height,
            values,
        }
    }

    #[test]
    fn the_region_is_the_peaks_blob_scaled_to_the_image() {
        // The peak's blob at half its height (columns 1-2, rows 1-3), a
        // lower rim around it, and another blob apart.
        let m = map(
            8,
            4,
            &[
                (1, 1, 0.7),
                (2, 1, 0.9),
                (2, 2, 0.5),
                (1, 3, 0.45),
                (2, 3, 0.6),
                (3, 3, 0.4),
                (3, 1, 0.2),
                (6, 0, 0.8),
            ],
        );
        assert_eq!(located(&m, 800, 400), Some([100.0, 100.0, 300.0, 400.0]));
    }

    #[test]
    fn a_flat_map_locates_nothing() {
        assert_eq!(located(&map(4, 4, &[]), 40, 40), None);
        assert_eq!(located(&map(0, 0, &[]), 40, 40), None);
        assert_eq!(located(&map(2, 1, &[(0, 0, f32::NAN)]), 40, 40), None);
    }

    #[test]
    fn the_half_height_is_above_the_median_not_zero() {
        let mut m = map(4, 4, &[(0, 0, 3.0), (1, 0, 2.5), (2, 0, 1.4)]);
        for v in &mut m.values {
            *v += 2.0;
        }
        assert_eq!(located(&m, 4, 4), Some([0.0, 0.0, 2.0, 1.0]));
    }

    #[test]
    fn diagonal_cells_are_not_connected() {
        let m = map(4, 4, &[(1, 1, 0.9), (2, 2, 0.8)]);
        assert_eq!(located(&m, 4, 4), Some([1.0, 1.0, 2.0, 2.0]));
    }
}
