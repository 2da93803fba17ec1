//! The heatmap as a Secondary Capture image: RGB, same patient and study,
//! its own series, the text burnt in (and said so), derived from the key
//! source instance.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use super::content::{self, sequence, Code};
use super::render::Rgb;
use super::report::{InstanceRef, NewInstance, Report};
use super::sr::common;

pub const SOP_CLASS: &str = uids::SECONDARY_CAPTURE_IMAGE_STORAGE;

pub fn build(
    report: &Report,
    sc: &NewInstance,
    picture: &Rgb,
    key: Option<&InstanceRef>,
    laterality: Option<&str>,
) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    common(report, &mut obj, SOP_CLASS, &sc.instance_uid);
    obj.put_str(tags::MODALITY, VR::CS, "OT");
    obj.put_str(tags::CONVERSION_TYPE, VR::CS, "WSD");
    obj.put_str(tags::SERIES_INSTANCE_UID, VR::UI, &sc.series_uid);
    obj.put_str(tags::SERIES_NUMBER, VR::IS, sc.series_number.to_string());
    obj.put_str(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        content::truncate(
            &format!("AI heatmap, not a diagnosis: {}", report.model.name),
            64,
        ),
    );
    obj.put_str(tags::INSTANCE_NUMBER, VR::IS, "1");
    obj.put_str(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY");
    obj.put(DataElement::empty(tags::PATIENT_ORIENTATION, VR::CS));
    // Type 2C: dciodvfy wants it present, so an unknown side is sent empty.
    match laterality {
        Some(side) => obj.put_str(tags::LATERALITY, VR::CS, side),
        None => obj.put(DataElement::empty(tags::LATERALITY, VR::CS)),
    };
    obj.put_str(tags::BURNED_IN_ANNOTATION, VR::CS, "YES");
    obj.put_str(tags::RECOGNIZABLE_VISUAL_FEATURES, VR::CS, "NO");
    obj.put_str(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    obj.put_str(
        tags::DERIVATION_DESCRIPTION,
        VR::ST,
        format!(
            "AI output, not a diagnosis: map of model {} {} over the source image",
            report.model.name, report.model.version
        ),
    );
    if let Some(k) = key {
        let mut source = content::sop_reference(&k.sop_class, &k.sop_instance);
        sequence(
            &mut source,
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            vec![Code::dcm("121322", "Source image for image processing operation").item()],
        );
        sequence(&mut obj, tags::SOURCE_IMAGE_SEQUENCE, vec![source]);
    }
    for (tag, value) in [
        (tags::SAMPLES_PER_PIXEL, 3u16),
        (tags::PLANAR_CONFIGURATION, 0),
        (tags::ROWS, picture.height as u16),
        (tags::COLUMNS, picture.width as u16),
        (tags::BITS_ALLOCATED, 8),
        (tags::BITS_STORED, 8),
        (tags::HIGH_BIT, 7),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
    }
    obj.put_str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB");
    let mut pixels = picture.pixels.clone();
    if pixels.len() % 2 == 1 {
        pixels.push(0);
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(pixels),
    ));
    obj
}
