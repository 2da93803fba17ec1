//! The attributes triage routes and gates on, read from a stored instance.

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, Tag};

use crate::triage::InstanceFacts;

use super::store::Pending;

fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    crate::pixels::text(obj, tag).filter(|s| !s.is_empty())
}

fn floats<const N: usize>(obj: &DefaultDicomObject, tag: Tag) -> Option<[f64; N]> {
    let v = obj.element(tag).ok()?.to_multi_float64().ok()?;
    let array: [f64; N] = v.get(..N)?.try_into().ok()?;
    array.iter().all(|x| x.is_finite()).then_some(array)
}

fn uint(obj: &DefaultDicomObject, tag: Tag) -> Option<u32> {
    obj.element(tag).ok()?.to_int::<u32>().ok()
}

/// What the index knows about an instance, before its data set is read.
pub fn from_index(p: &Pending) -> InstanceFacts {
    InstanceFacts {
        instance_id: p.instance_id,
        sop_instance_uid: p.sop_instance_uid.clone(),
        sop_class_uid: p.sop_class_uid.clone(),
        study_uid: p.study_uid.clone(),
        series_uid: p.series_uid.clone(),
        modality: p.modality.clone(),
        instance_number: p.instance_number,
        frames: 1,
        received_at_ms: p.received_at_ms,
        calling_ae: p.calling_ae.clone(),
        ..Default::default()
    }
}

/// `base` completed from the data set. `has_pixels`: whether it holds Pixel
/// Data (the data set may have been read only up to it).
pub fn read(obj: &DefaultDicomObject, base: InstanceFacts, has_pixels: bool) -> InstanceFacts {
    InstanceFacts {
        modality: text(obj, tags::MODALITY).or(base.modality),
        body_part: text(obj, tags::BODY_PART_EXAMINED).map(|s| s.to_ascii_uppercase()),
        view_position: text(obj, tags::VIEW_POSITION),
        photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION),
        rows: uint(obj, tags::ROWS).filter(|_| has_pixels),
        cols: uint(obj, tags::COLUMNS).filter(|_| has_pixels),
        frames: text(obj, tags::NUMBER_OF_FRAMES)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1),
        pixel_spacing: floats(obj, tags::PIXEL_SPACING)
            .or_else(|| floats(obj, tags::IMAGER_PIXEL_SPACING)),
        orientation: floats(obj, tags::IMAGE_ORIENTATION_PATIENT),
        position: floats(obj, tags::IMAGE_POSITION_PATIENT),
        instance_number: text(obj, tags::INSTANCE_NUMBER)
            .and_then(|s| s.parse().ok())
            .or(base.instance_number),
        images_in_acquisition: text(obj, tags::IMAGES_IN_ACQUISITION).and_then(|s| s.parse().ok()),
        ..base
    }
}
