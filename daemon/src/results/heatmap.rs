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

/// The picture for one report: `key` is the instance shown (as read, and
/// its Part-10 bytes); `map_for` the finding whose map is drawn. Without a model, a
/// route or decodable pixels, the text is drawn on what there is.
pub fn picture(
    key: Option<(&part10::Stored, &[u8])>,
    manifest: Option<&Manifest>,
    model: Option<&mut Model>,
    map_for: Option<&FindingResult>,
    text: &[String],
) -> Rgb {
    let mut text = text.to_vec();
    match key.map(|(stored, bytes)| shown(stored, bytes, manifest, model, map_for)) {
        Some(Ok((grey, map, note))) => {
            text.extend(note);
            let g = Grey {
                width: grey.width,
                height: grey.height,
                values: &grey.values,
            };
            render::picture(&g, map.as_deref(), &text)
        }
        Some(Err(e)) => {
            text.push(format!("image not shown: {e}"));
            blank(&text)
        }
        None => blank(&text),
    }
}

fn blank(text: &[String]) -> Rgb {
    let values = vec![0.0f32; 512 * 64];
    let g = Grey {
        width: 512,
        height: 64,
        values: &values,
    };
    render::picture(&g, None, text)
}

type Shown = (Image, Option<Vec<f32>>, Option<String>);

fn shown(
    stored: &part10::Stored,
    bytes: &[u8],
    manifest: Option<&Manifest>,
    model: Option<&mut Model>,
    map_for: Option<&FindingResult>,
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
        return Ok((grey, None, None));
    };
    let Some(model) = model else {
        return Ok((
            grey,
            None,
            Some("no map: the model could not be loaded".into()),
        ));
    };
    let Some(finding) = manifest.finding(&f.id) else {
        return Ok((grey, None, None));
    };
    let map = model
        .input(&image, route)
        .and_then(|input| model.heatmap(&input, finding.output_index));
    let (mh, mw, values) = match map {
        Ok(Some(m)) => m,
        Ok(None) => return Ok((grey, None, Some("the model gives no map".into()))),
        Err(e) => return Ok((grey, None, Some(format!("no map: {e}")))),
    };
    // The map covers the model's input; with a letterbox, only the part
    // where the image was placed is the image.
    let (pr, pc, top, left) = model_pipeline.placement(&image.image);
    let (sy, sx) = (
        mh as f64 / model_pipeline.rows as f64,
        mw as f64 / model_pipeline.cols as f64,
    );
    let (y0, x0) = ((top as f64 * sy) as usize, (left as f64 * sx) as usize);
    let (ch, cw) = (
        ((pr as f64 * sy).round() as usize).clamp(1, mh - y0),
        ((pc as f64 * sx).round() as usize).clamp(1, mw - x0),
    );
    let crop: Vec<f32> = (y0..y0 + ch)
        .flat_map(|y| {
            values[y * mw + x0..y * mw + x0 + cw]
                .iter()
                .map(|&v| sigmoid(v))
        })
        .collect();
    let crop = Image {
        width: cw,
        height: ch,
        values: crop,
    };
    let map = resize(&crop, cols, rows).map_err(|e| e.to_string())?;
    Ok((
        grey,
        Some(map.values),
        Some(format!("map: {} (sigmoid of the model's map)", f.display)),
    ))
}
