//! From a DICOM data set to modality values for preprocessing: pixel data
//! decoded for every transfer syntax a scanner sends (native, deflate, RLE,
//! JPEG baseline/extended/lossless, JPEG 2000 through `dicom-pixeldata`;
//! JPEG-LS with the `jpegls` feature), Bits Stored masking and sign
//! extension, the modality LUT (Rescale Slope/Intercept), Pixel Padding,
//! every frame, the image's own VOI (windows, function, VOI LUT Sequence)
//! and the attributes that route an image to a model.

mod voi;

pub use voi::{Voi, VoiFunction, VoiLut, VoiWindow};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, Tag};
use dicom_pixeldata::PixelDecoder;

use crate::preprocess::Image;

#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    #[error("{0} is missing, unreadable or not finite")]
    Attribute(&'static str),
    #[error("pixel data in transfer syntax {0} cannot be decoded by this build{1}")]
    NoDecoder(String, &'static str),
    #[error("compressed pixel data could not be decoded: {0}")]
    Decode(String),
    #[error("transfer syntax {0} is unknown")]
    UnknownSyntax(String),
    #[error("{0} is not supported (only grey-scale images with 8 or 16 bits allocated)")]
    Unsupported(String),
    #[error("pixel data holds {got} bytes, {frames} frame(s) of {rows}x{cols} at {bits} bits need {want}")]
    Length {
        rows: usize,
        cols: usize,
        bits: u16,
        frames: usize,
        want: usize,
        got: usize,
    },
}

/// One grey-scale frame in modality units with what routes it.
#[derive(Debug, Clone)]
pub struct ModalityImage {
    /// Empty when the data set has no Modality.
    pub modality: String,
    pub body_part: Option<String>,
    pub monochrome1: bool,
    /// Which frame of the instance this is (0-based).
    pub frame: u32,
    /// Modality values (HU for CT); padding pixels replaced by the darkest
    /// value of the rest of the image.
    pub image: Image,
    /// How the image asks to be displayed.
    pub voi: Voi,
}

/// A text attribute without its padding.
pub fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
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

/// The pixel attributes every frame shares.
struct Layout {
    modality: String,
    body_part: Option<String>,
    monochrome1: bool,
    rows: usize,
    cols: usize,
    bits: u16,
    stored: u16,
    signed: bool,
    frames: usize,
    slope: f32,
    intercept: f32,
    /// Stored values (after masking) that are padding, inclusive.
    padding: Option<(i64, i64)>,
    encapsulated: bool,
}

fn layout(obj: &DefaultDicomObject) -> Result<Layout, PixelError> {
    let syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_owned();
    let ts = dicom_encoding::TransferSyntaxIndex::get(
        &dicom_transfer_syntax_registry::TransferSyntaxRegistry,
        &syntax,
    )
    .ok_or_else(|| PixelError::UnknownSyntax(syntax.clone()))?;
    let encapsulated = ts.is_encapsulated_pixel_data();
    if encapsulated && !ts.can_decode_all() {
        let hint = if syntax.starts_with("1.2.840.10008.1.2.4.8") {
            " (JPEG-LS needs the `jpegls` feature)"
        } else {
            ""
        };
        return Err(PixelError::NoDecoder(syntax, hint));
    }
    if !encapsulated && ts.endianness() == dicom_encoding::transfer_syntax::Endianness::Big {
        return Err(PixelError::Unsupported(format!(
            "big-endian transfer syntax {syntax}"
        )));
    }
    // Routing needs the modality, decoding does not.
    let modality = text(obj, tags::MODALITY).unwrap_or_default();
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
    if samples != 1 {
        return Err(PixelError::Unsupported(format!(
            "{samples} samples per pixel"
        )));
    }
    let frames = text(obj, tags::NUMBER_OF_FRAMES)
        .filter(|s| !s.is_empty())
        .map_or(Ok(1), |s| s.parse::<usize>())
        .map_err(|_| PixelError::Attribute("NumberOfFrames"))?;
    if frames == 0 {
        return Err(PixelError::Attribute("NumberOfFrames"));
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
    let slope = float(obj, tags::RESCALE_SLOPE, "RescaleSlope", 1.0)? as f32;
    let intercept = float(obj, tags::RESCALE_INTERCEPT, "RescaleIntercept", 0.0)? as f32;
    if slope == 0.0 {
        return Err(PixelError::Unsupported("RescaleSlope 0".into()));
    }
    let pad = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_int::<i64>().ok())
            .map(|v| sample_value(v as u32, stored, signed) as i64)
    };
    let padding = match (
        pad(tags::PIXEL_PADDING_VALUE),
        pad(tags::PIXEL_PADDING_RANGE_LIMIT),
    ) {
        (Some(a), Some(b)) => Some((a.min(b), a.max(b))),
        (Some(a), None) => Some((a, a)),
        _ => None,
    };
    Ok(Layout {
        modality,
        body_part: text(obj, tags::BODY_PART_EXAMINED).filter(|s| !s.is_empty()),
        monochrome1,
        rows,
        cols,
        bits,
        stored,
        signed,
        frames,
        slope,
        intercept,
        padding,
        encapsulated,
    })
}

/// A raw sample keeping only the stored bits, sign-extended when signed.
fn sample_value(raw: u32, stored: u16, signed: bool) -> i32 {
    let shift = 32 - u32::from(stored);
    if signed {
        ((raw << shift) as i32) >> shift
    } else {
        ((raw << shift) >> shift) as i32
    }
}

/// Frame 0 of the instance.
pub fn modality_image(obj: &DefaultDicomObject) -> Result<ModalityImage, PixelError> {
    Ok(images(obj, false)?.remove(0))
}

/// Every frame of the instance.
pub fn modality_frames(obj: &DefaultDicomObject) -> Result<Vec<ModalityImage>, PixelError> {
    images(obj, true)
}

/// Frame 0, or every frame when `all`.
fn images(obj: &DefaultDicomObject, all: bool) -> Result<Vec<ModalityImage>, PixelError> {
    let layout = layout(obj)?;
    let voi = Voi::read(obj);
    let decoded = if !layout.encapsulated {
        None
    } else if all {
        Some(obj.decode_pixel_data())
    } else {
        Some(obj.decode_pixel_data_frame(0))
    }
    .transpose()
    .map_err(|e| PixelError::Decode(e.to_string()))?;
    let native;
    let bytes: &[u8] = match &decoded {
        Some(d) => d.data(),
        None => {
            native = native_bytes(obj)?;
            &native
        }
    };
    let frames = if all { layout.frames } else { 1 };
    Ok(frames_from(&layout, bytes, frames)?
        .into_iter()
        .enumerate()
        .map(|(i, image)| ModalityImage {
            modality: layout.modality.clone(),
            body_part: layout.body_part.clone(),
            monochrome1: layout.monochrome1,
            frame: i as u32,
            image,
            voi: voi.clone(),
        })
        .collect())
}

fn native_bytes(obj: &DefaultDicomObject) -> Result<std::borrow::Cow<'_, [u8]>, PixelError> {
    obj.element(tags::PIXEL_DATA)
        .map_err(|_| PixelError::Attribute("PixelData"))?
        .to_bytes()
        .map_err(|_| PixelError::Attribute("PixelData"))
}

/// The first `frames` frames of native little-endian sample bytes, as
/// modality values with padding replaced.
fn frames_from(layout: &Layout, data: &[u8], frames: usize) -> Result<Vec<Image>, PixelError> {
    let per_frame = layout.rows * layout.cols;
    let bytes_per = usize::from(layout.bits / 8);
    let want = per_frame * frames * bytes_per;
    if data.len() < want {
        return Err(PixelError::Length {
            rows: layout.rows,
            cols: layout.cols,
            bits: layout.bits,
            frames,
            want,
            got: data.len(),
        });
    }
    let frame_bytes = per_frame * bytes_per;
    Ok(data[..want]
        .chunks_exact(frame_bytes)
        .map(|frame| Image {
            width: layout.cols,
            height: layout.rows,
            values: modality_values(layout, frame),
        })
        .collect())
}

/// Stored values of one frame's little-endian samples, in one pass.
fn samples<'a>(layout: &Layout, frame: &'a [u8]) -> impl Iterator<Item = i32> + 'a {
    let (stored, signed, bits) = (layout.stored, layout.signed, layout.bits);
    let step = usize::from(bits / 8);
    frame.chunks_exact(step).map(move |c| {
        let raw = if bits == 8 {
            u32::from(c[0])
        } else {
            u32::from(u16::from_le_bytes([c[0], c[1]]))
        };
        sample_value(raw, stored, signed)
    })
}

/// The modality LUT, with padding pixels set to the darkest value of the
/// rest (the lowest for MONOCHROME2, the highest for MONOCHROME1), so that
/// padding reads as background and never skews a percentile window.
fn modality_values(layout: &Layout, frame: &[u8]) -> Vec<f32> {
    let rescale = |v: i32| v as f32 * layout.slope + layout.intercept;
    let Some((lo, hi)) = layout.padding else {
        return samples(layout, frame).map(rescale).collect();
    };
    let samples: Vec<i32> = samples(layout, frame).collect();
    let is_pad = |v: i32| (lo..=hi).contains(&i64::from(v));
    let kept = samples.iter().filter(|&&v| !is_pad(v)).map(|&v| rescale(v));
    let darkest = if layout.monochrome1 {
        kept.fold(f32::NEG_INFINITY, f32::max)
    } else {
        kept.fold(f32::INFINITY, f32::min)
    };
    samples
        .iter()
        .map(|&v| {
            if is_pad(v) && darkest.is_finite() {
                darkest
            } else {
                rescale(v)
            }
        })
        .collect()
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
