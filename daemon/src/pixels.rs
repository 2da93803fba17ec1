//! From a DICOM data set to modality values for preprocessing: native
//! (uncompressed) grey-scale pixel data, the modality LUT (Rescale
//! Slope/Intercept) and the attributes that route an image to a model.
//! Encapsulated (compressed) pixel data is refused with a clear error until
//! the decoders arrive with triage.

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, Tag};
use firstlook_kernels::preprocess::Image;

#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    #[error("{0} is missing, unreadable or not finite")]
    Attribute(&'static str),
    #[error("pixel data is encapsulated (transfer syntax {0}); only native pixel data is decoded so far")]
    Encapsulated(String),
    #[error("transfer syntax {0} is unknown")]
    UnknownSyntax(String),
    #[error(
        "{0} is not supported (only single-frame grey-scale images with 8 or 16 bits allocated)"
    )]
    Unsupported(String),
    #[error("pixel data holds {got} bytes, {rows}x{cols} at {bits} bits needs {want}")]
    Length {
        rows: usize,
        cols: usize,
        bits: u16,
        want: usize,
        got: usize,
    },
}

/// A grey-scale image in modality units with what routes it.
#[derive(Debug, Clone)]
pub struct ModalityImage {
    pub modality: String,
    pub body_part: Option<String>,
    pub monochrome1: bool,
    pub image: Image,
}

/// A text attribute without its padding.
pub(crate) fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    obj.element(tag)
        .ok()?
        .to_str()
        .ok()
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned())
}

fn uint(obj: &DefaultDicomObject, tag: Tag, name: &'static str) -> Result<u32, PixelError> {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .ok_or(PixelError::Attribute(name))
}

/// A decimal attribute: `default` only when it is absent; an unreadable or
/// non-finite value is an error, never a silent default.
fn float(
    obj: &DefaultDicomObject,
    tag: Tag,
    name: &'static str,
    default: f64,
) -> Result<f64, PixelError> {
    let Ok(element) = obj.element(tag) else {
        return Ok(default);
    };
    element
        .to_multi_float64()
        .ok()
        .and_then(|v| v.first().copied())
        .filter(|v| v.is_finite())
        .ok_or(PixelError::Attribute(name))
}

pub fn modality_image(obj: &DefaultDicomObject) -> Result<ModalityImage, PixelError> {
    let syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_owned();
    let registry = dicom_encoding::TransferSyntaxIndex::get(
        &dicom_transfer_syntax_registry::TransferSyntaxRegistry,
        &syntax,
    );
    match registry {
        Some(ts) if ts.is_encapsulated_pixel_data() => {
            return Err(PixelError::Encapsulated(syntax))
        }
        Some(ts) if ts.endianness() == dicom_encoding::transfer_syntax::Endianness::Big => {
            return Err(PixelError::Unsupported(format!(
                "big-endian transfer syntax {syntax}"
            )))
        }
        Some(_) => {}
        None => return Err(PixelError::UnknownSyntax(syntax)),
    }
    let modality = text(obj, tags::MODALITY).ok_or(PixelError::Attribute("Modality"))?;
    let photometric = text(obj, tags::PHOTOMETRIC_INTERPRETATION)
        .ok_or(PixelError::Attribute("PhotometricInterpretation"))?;
    let monochrome1 = match photometric.as_str() {
        "MONOCHROME1" => true,
        "MONOCHROME2" => false,
        other => {
            return Err(PixelError::Unsupported(format!(
                "PhotometricInterpretation {other}"
            )))
        }
    };
    let samples = uint(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?;
    let frames = text(obj, tags::NUMBER_OF_FRAMES)
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    if samples != 1 || frames != 1 {
        return Err(PixelError::Unsupported(format!(
            "{samples} samples per pixel, {frames} frames"
        )));
    }
    let rows = uint(obj, tags::ROWS, "Rows")? as usize;
    let cols = uint(obj, tags::COLUMNS, "Columns")? as usize;
    let bits = uint(obj, tags::BITS_ALLOCATED, "BitsAllocated")? as u16;
    let stored = uint(obj, tags::BITS_STORED, "BitsStored")? as u16;
    let signed = uint(obj, tags::PIXEL_REPRESENTATION, "PixelRepresentation")? == 1;
    if !(bits == 8 || bits == 16) || stored == 0 || stored > bits {
        return Err(PixelError::Unsupported(format!(
            "{bits} bits allocated, {stored} stored"
        )));
    }
    let data = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| PixelError::Attribute("PixelData"))?
        .to_bytes()
        .map_err(|_| PixelError::Attribute("PixelData"))?;
    let want = rows * cols * usize::from(bits / 8);
    if data.len() < want {
        return Err(PixelError::Length {
            rows,
            cols,
            bits,
            want,
            got: data.len(),
        });
    }
    let slope = float(obj, tags::RESCALE_SLOPE, "RescaleSlope", 1.0)? as f32;
    let intercept = float(obj, tags::RESCALE_INTERCEPT, "RescaleIntercept", 0.0)? as f32;
    if slope == 0.0 {
        return Err(PixelError::Unsupported("RescaleSlope 0".into()));
    }
    let shift = 32 - u32::from(stored);
    let sample = |raw: u32| -> f32 {
        // Keep only the stored bits, sign-extending when signed.
        if signed {
            (((raw << shift) as i32) >> shift) as f32
        } else {
            ((raw << shift) >> shift) as f32
        }
    };
    let values: Vec<f32> = if bits == 8 {
        data[..want].iter().map(|&b| sample(u32::from(b))).collect()
    } else {
        data[..want]
            .chunks_exact(2)
            .map(|c| sample(u32::from(u16::from_le_bytes([c[0], c[1]]))))
            .collect()
    };
    let values = values.into_iter().map(|v| v * slope + intercept).collect();
    Ok(ModalityImage {
        modality,
        body_part: text(obj, tags::BODY_PART_EXAMINED).filter(|s| !s.is_empty()),
        monochrome1,
        image: Image {
            width: cols,
            height: rows,
            values,
        },
    })
}

#[cfg(test)]
mod tests {
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    use super::*;

    /// A 2×2 single-frame image with the given pixel attributes and raw pixel bytes.
    fn object(
        bits: u16,
        stored: u16,
        signed: bool,
        pixels: Vec<u8>,
        extra: &[(Tag, &str)],
    ) -> DefaultDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        obj.put_str(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE);
        obj.put_str(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1");
        obj.put_str(tags::MODALITY, VR::CS, "CT");
        obj.put_str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
        for (tag, value) in [
            (tags::SAMPLES_PER_PIXEL, 1),
            (tags::ROWS, 2),
            (tags::COLUMNS, 2),
            (tags::BITS_ALLOCATED, bits),
            (tags::BITS_STORED, stored),
            (tags::HIGH_BIT, stored - 1),
            (tags::PIXEL_REPRESENTATION, u16::from(signed)),
        ] {
            obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
        }
        for &(tag, value) in extra {
            obj.put_str(tag, VR::DS, value);
        }
        let vr = if bits == 8 { VR::OB } else { VR::OW };
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            vr,
            PrimitiveValue::from(pixels),
        ));
        obj.with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("2.25.1"),
        )
        .unwrap()
    }

    fn words(values: [u16; 4]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn signed_12_bit_values_are_sign_extended_and_garbage_high_bits_dropped() {
        // 0x0FFF is -1 in 12 bits; 0xF800 | 0x0800 keeps only 0x800 = -2048.
        let obj = object(16, 12, true, words([0x0FFF, 0x0001, 0xF800, 0x07FF]), &[]);
        let img = modality_image(&obj).unwrap();
        assert_eq!(img.image.values, vec![-1.0, 1.0, -2048.0, 2047.0]);
    }

    #[test]
    fn unsigned_values_are_masked_to_bits_stored_and_rescaled() {
        let obj = object(
            16,
            12,
            false,
            words([0xF000, 0x0001, 0x0FFF, 0x1400]),
            &[
                (tags::RESCALE_SLOPE, "2"),
                (tags::RESCALE_INTERCEPT, "-1024"),
            ],
        );
        let img = modality_image(&obj).unwrap();
        assert_eq!(img.image.values, vec![-1024.0, -1022.0, 7166.0, 1024.0]);
    }

    #[test]
    fn eight_bit_signed_pixels_decode() {
        let obj = object(8, 8, true, vec![0x80, 0xFF, 0x00, 0x7F], &[]);
        let img = modality_image(&obj).unwrap();
        assert_eq!(img.image.values, vec![-128.0, -1.0, 0.0, 127.0]);
    }

    #[test]
    fn bad_rescale_or_short_pixel_data_is_an_error() {
        let obj = object(
            16,
            16,
            false,
            words([1, 2, 3, 4]),
            &[(tags::RESCALE_SLOPE, "abc")],
        );
        assert!(matches!(
            modality_image(&obj),
            Err(PixelError::Attribute("RescaleSlope"))
        ));
        let obj = object(
            16,
            16,
            false,
            words([1, 2, 3, 4]),
            &[(tags::RESCALE_SLOPE, "0")],
        );
        assert!(matches!(
            modality_image(&obj),
            Err(PixelError::Unsupported(_))
        ));
        let obj = object(16, 16, false, vec![0; 6], &[]);
        assert!(matches!(
            modality_image(&obj),
            Err(PixelError::Length { .. })
        ));
    }
}
