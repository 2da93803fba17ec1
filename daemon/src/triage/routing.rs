//! Does a model apply to an instance (routing), and can it judge it (gate)?
//!
//! An instance no route takes is not the model's business: it is forwarded
//! untouched and counted. An instance a route takes but that cannot be
//! assessed gets a "not assessable" decision with the reason, so that a
//! technologist never mistakes silence for "no finding".

use crate::bundle::{Manifest, Preprocessing};

use super::series::is_volume;
use super::InstanceFacts;

#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// The model takes the instance through preprocessing route `route`.
    Applies { route: usize },
    /// No route takes it; the reason is for counting and debugging.
    NotApplicable(String),
}

/// The first preprocessing route whose modality and filters take `facts`.
pub fn route(manifest: &Manifest, facts: &InstanceFacts) -> Routing {
    let na = |reason: String| Routing::NotApplicable(reason);
    let Some(modality) = facts.modality.as_deref() else {
        return na("no Modality".into());
    };
    if facts.rows.is_none() || facts.cols.is_none() {
        return na(format!(
            "{modality} instance without Rows/Columns: not an image"
        ));
    }
    let app = &manifest.applicability;
    if !app.modalities.iter().any(|m| m == modality) {
        return na(format!("modality {modality} is not covered by this model"));
    }
    if !app.sop_classes.is_empty() && !app.sop_classes.contains(&facts.sop_class_uid) {
        return na(format!(
            "SOP class {} is not covered by this model",
            facts.sop_class_uid
        ));
    }
    if let Some(part) = &facts.body_part {
        if !app.body_parts.is_empty()
            && !app.body_parts.iter().any(|p| p.eq_ignore_ascii_case(part))
        {
            return na(format!("body part {part} is not covered by this model"));
        }
    }
    let mut first_refusal = None;
    for (i, p) in manifest.preprocessing.iter().enumerate() {
        if !p.modalities.iter().any(|m| m == modality) {
            continue;
        }
        match refuse(p, facts) {
            None => return Routing::Applies { route: i },
            Some(reason) => {
                first_refusal.get_or_insert(reason);
            }
        }
    }
    na(first_refusal.unwrap_or_else(|| format!("no preprocessing route for {modality}")))
}

/// Why route `p` does not take `facts`, if it does not. A filter on an
/// attribute the instance lacks does not refuse it (the gate may).
fn refuse(p: &Preprocessing, facts: &InstanceFacts) -> Option<String> {
    if let Some(view) = &facts.view_position {
        if !p.view_positions.is_empty() && !p.view_positions.iter().any(|v| v == view) {
            return Some(format!("view position {view} is not covered by this model"));
        }
    }
    if let Some(photometric) = &facts.photometric {
        let ok = if p.photometric.is_empty() {
            matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2")
        } else {
            p.photometric.iter().any(|v| v == photometric)
        };
        if !ok {
            return Some(format!(
                "photometric interpretation {photometric} is not covered by this model"
            ));
        }
    }
    if let (Some([min_rows, min_cols]), Some(rows), Some(cols)) =
        (p.min_size, facts.rows, facts.cols)
    {
        if u64::from(rows) < min_rows || u64::from(cols) < min_cols {
            return Some(format!(
                "{rows}x{cols} is smaller than the model's minimum {min_rows}x{min_cols}"
            ));
        }
    }
    if let (Some([lo, hi]), Some(spacing)) = (p.pixel_spacing_mm, facts.pixel_spacing) {
        if spacing.iter().any(|s| !(lo..=hi).contains(s)) {
            return Some(format!(
                "pixel spacing {:.3}x{:.3} mm is outside the model's {lo}-{hi} mm",
                spacing[0], spacing[1]
            ));
        }
    }
    None
}

/// Smallest |normal · z| for a slice to count as axial (about 25° of tilt).
const AXIAL_MIN_COS: f64 = 0.9;

/// Whether an instance the model takes can be assessed; `Err` is the reason
/// it cannot, in words for the technologist.
pub fn gate(manifest: &Manifest, facts: &InstanceFacts) -> Result<(), String> {
    if facts.body_part.is_none() && !manifest.applicability.body_parts.is_empty() {
        return Err("BodyPartExamined is missing: the body part cannot be confirmed".into());
    }
    if facts.frames != 1 {
        return Err(format!(
            "{} frames: only single-frame images are assessed",
            facts.frames
        ));
    }
    if facts.photometric.is_none() {
        return Err("PhotometricInterpretation is missing".into());
    }
    match (facts.rows, facts.cols) {
        (Some(r), Some(c)) if r >= 16 && c >= 16 => {}
        (r, c) => {
            return Err(format!(
                "image size {}x{} is too small to assess",
                r.unwrap_or(0),
                c.unwrap_or(0)
            ))
        }
    }
    if facts.modality.as_deref().is_some_and(is_volume) {
        let Some(orientation) = facts.orientation else {
            return Err("ImageOrientationPatient is missing: slice orientation unknown".into());
        };
        let n = super::normal(&orientation);
        if n[2].abs() < AXIAL_MIN_COS {
            return Err(format!(
                "not an axial slice (normal {:.2}, {:.2}, {:.2})",
                n[0], n[1], n[2]
            ));
        }
        if facts.pixel_spacing.is_none() {
            return Err("PixelSpacing is missing: field of view unknown".into());
        }
    }
    Ok(())
}
