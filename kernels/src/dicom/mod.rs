//! From a DICOM data set to modality values for preprocessing: pixel data
//! decoded for every transfer syntax a scanner sends (native, deflate, RLE,
//! JPEG baseline/extended/lossless, JPEG 2000 through `dicom-pixeldata`;
//! JPEG-LS with the `jpegls` feature), Bits Stored masking and sign
//! extension, the modality LUT (Rescale Slope/Intercept), Pixel Padding,
//! every frame, the image's own VOI (windows, function, VOI LUT Sequence)
//! and the attributes that route an image to a model.

mod frame;
mod voi;

pub use frame::{Frame, ReadAt};
pub use voi::{Voi, VoiFunction, VoiLut, VoiWindow};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, Tag};
use dicom_pixeldata::PixelDecoder;

use std::borrow::Cow;
use std::ops::Range;

use crate::preprocess::{Image, Rows};
use frame::Samples;

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

/// One grey-scale frame in modality units with what routes it. `S` is
/// how the values are held: decoded ([`Image`]), or still as the stored
/// samples ([`Frame`]), read row by row by the resize.
#[derive(Debug, Clone)]
pub struct ModalityImage<S = Image> {
    /// Empty when the data set has no Modality.
    pub modality: String,
    pub body_part: Option<String>,
    pub monochrome1: bool,
    /// Which frame of the instance this is (0-based).
    pub frame: u32,
    /// Modality values (HU for CT); padding pixels replaced by the darkest
    /// value of the rest of the image.
    pub image: S,
    /// How the image asks to be displayed.
    pub voi: Voi,
}

impl<S: Rows> ModalityImage<S> {
    /// The same frame with every value decoded.
    pub fn decoded(&self) -> ModalityImage<Image> {
        ModalityImage {
            modality: self.modality.clone(),
            body_part: self.body_part.clone(),
            monochrome1: self.monochrome1,
            frame: self.frame,
            image: self.image.to_image(),
            voi: self.voi.clone(),
        }
    }
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
    frames: usize,
    format: Format,
    encapsulated: bool,
}

/// How one frame's little-endian samples become modality values.
#[derive(Debug, Clone, Copy)]
struct Format {
    bits: u16,
    stored: u16,
    signed: bool,
    slope: f32,
    intercept: f32,
    /// Stored values (after masking) that are padding, inclusive.
    padding: Option<(i64, i64)>,
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
        frames,
        format: Format {
            bits,
            stored,
            signed,
            slope,
            intercept,
            padding,
        },
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

/// Frame 0 of the instance, decoded.
pub fn modality_image(obj: &DefaultDicomObject) -> Result<ModalityImage, PixelError> {
    Pixels::first_frame(obj)?.frame(0).map(|f| f.decoded())
}

/// Every frame of the instance, decoded.
pub fn modality_frames(obj: &DefaultDicomObject) -> Result<Vec<ModalityImage>, PixelError> {
    let pixels = Pixels::all_frames(obj)?;
    (0..pixels.frames())
        .map(|i| pixels.frame(i).map(|f| f.decoded()))
        .collect()
}

/// An instance's pixel data as stored samples (decompressed when the
/// transfer syntax is encapsulated), with what it takes to read them as
/// modality values.
pub struct Pixels<'a> {
    layout: Layout,
    voi: Voi,
    data: Data<'a>,
    frames: usize,
}

enum Data<'a> {
    Held(Cow<'a, [u8]>),
    At { source: &'a dyn ReadAt, offset: u64 },
}

impl<'a> Pixels<'a> {
    /// Frame 0 only (an encapsulated instance decompresses only that frame).
    pub fn first_frame(obj: &'a DefaultDicomObject) -> Result<Pixels<'a>, PixelError> {
        Self::read(obj, false)
    }

    /// Every frame.
    pub fn all_frames(obj: &'a DefaultDicomObject) -> Result<Pixels<'a>, PixelError> {
        Self::read(obj, true)
    }

    fn read(obj: &'a DefaultDicomObject, all: bool) -> Result<Pixels<'a>, PixelError> {
        let layout = layout(obj)?;
        let voi = Voi::read(obj);
        let data = if layout.encapsulated {
            let decoded = if all {
                obj.decode_pixel_data()
            } else {
                obj.decode_pixel_data_frame(0)
            }
            .map_err(|e| PixelError::Decode(e.to_string()))?;
            Cow::Owned(decoded.data().to_vec())
        } else {
            native_bytes(obj)?
        };
        let frames = if all { layout.frames } else { 1 };
        let len = data.len();
        Pixels::new(layout, voi, Data::Held(data), len, frames)
    }

    /// A natively encoded instance whose data set was read only up to its
    /// Pixel Data (`header`), with that element's value given apart, so
    /// that the samples are never copied.
    pub fn native(header: &DefaultDicomObject, data: &'a [u8]) -> Result<Pixels<'a>, PixelError> {
        Self::native_from(header, Data::Held(Cow::Borrowed(data)), data.len())
    }

    /// Like [`Pixels::native`], with the element's `len` bytes of value left
    /// in `source` at `offset`: each frame's rows are read from there as
    /// they are resized, so the samples are never held whole in memory.
    pub fn native_at(
        header: &DefaultDicomObject,
        source: &'a dyn ReadAt,
        offset: u64,
        len: usize,
    ) -> Result<Pixels<'a>, PixelError> {
        Self::native_from(header, Data::At { source, offset }, len)
    }

    fn native_from(
        header: &DefaultDicomObject,
        data: Data<'a>,
        len: usize,
    ) -> Result<Pixels<'a>, PixelError> {
        let layout = layout(header)?;
        if layout.encapsulated {
            return Err(PixelError::Unsupported(
                "reading encapsulated pixel data apart from its data set".into(),
            ));
        }
        let frames = layout.frames;
        Pixels::new(layout, Voi::read(header), data, len, frames)
    }

    fn new(
        layout: Layout,
        voi: Voi,
        data: Data<'a>,
        len: usize,
        frames: usize,
    ) -> Result<Pixels<'a>, PixelError> {
        let want = layout.rows * layout.cols * usize::from(layout.format.bits / 8) * frames;
        if len < want {
            return Err(PixelError::Length {
                rows: layout.rows,
                cols: layout.cols,
                bits: layout.format.bits,
                frames,
                want,
                got: len,
            });
        }
        Ok(Pixels {
            layout,
            voi,
            data,
            frames,
        })
    }

    /// How many frames are held.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Frame `i`, not yet decoded.
    pub fn frame(&self, i: usize) -> Result<ModalityImage<Frame<'_>>, PixelError> {
        if i >= self.frames {
            return Err(PixelError::Attribute("NumberOfFrames"));
        }
        let l = &self.layout;
        let size = l.rows * l.cols * usize::from(l.format.bits / 8);
        let samples = match &self.data {
            Data::Held(data) => Samples::Held(&data[i * size..(i + 1) * size]),
            Data::At { source, offset } => Samples::At {
                source: *source,
                offset: offset + (i * size) as u64,
            },
        };
        let frame = Frame::new(l.cols, l.rows, samples, l.format, l.monochrome1);
        Ok(ModalityImage {
            modality: l.modality.clone(),
            body_part: l.body_part.clone(),
            monochrome1: l.monochrome1,
            frame: i as u32,
            image: frame,
            voi: self.voi.clone(),
        })
    }
}

/// Where the value of a native Pixel Data element that ends a data set
/// would be, for a data set read only up to its Pixel Data: located from
/// the sizes its header gives, to be checked against the element's own tag,
/// VR and length ([`TrailingPixels::matches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailingPixels {
    explicit: bool,
    /// The element's header: tag, (VR,) length.
    pub element: Range<usize>,
    /// Its value, without the padding byte of an odd length.
    pub value: Range<usize>,
}

impl TrailingPixels {
    /// `None` when the instance cannot be laid out so (encapsulated,
    /// big-endian, sizes larger than `total` bytes).
    pub fn locate(header: &DefaultDicomObject, total: usize) -> Option<TrailingPixels> {
        let layout = layout(header).ok()?;
        let syntax = header.meta().transfer_syntax().trim_end_matches('\0');
        let explicit = match syntax {
            "1.2.840.10008.1.2" => false,
            "1.2.840.10008.1.2.1" => true,
            _ => return None,
        };
        let len = layout.rows * layout.cols * usize::from(layout.format.bits / 8) * layout.frames;
        let even = len + len % 2;
        u32::try_from(even).ok()?;
        let start = total.checked_sub(even)?;
        let element = start.checked_sub(if explicit { 12 } else { 8 })?..start;
        Some(TrailingPixels {
            explicit,
            element,
            value: start..start + len,
        })
    }

    /// Whether `head`, the bytes at [`TrailingPixels::element`], are this
    /// Pixel Data element's header.
    pub fn matches(&self, head: &[u8]) -> bool {
        let tag = [0xE0, 0x7F, 0x10, 0x00];
        let even = (self.value.len() + self.value.len() % 2) as u32;
        let length = even.to_le_bytes();
        if self.explicit {
            head.len() == 12
                && head[..4] == tag
                && (&head[4..6] == b"OW" || &head[4..6] == b"OB")
                && head[6..8] == [0, 0]
                && head[8..] == length
        } else {
            head.len() == 8 && head[..4] == tag && head[4..] == length
        }
    }

    /// Where the value is, for a `total`-byte data set whose first bytes
    /// (`head`, or all of them) hold the element's header and it checks.
    pub fn value_in(
        header: &DefaultDicomObject,
        head: &[u8],
        total: usize,
    ) -> Option<Range<usize>> {
        let at = TrailingPixels::locate(header, total)?;
        at.matches(head.get(at.element.clone())?)
            .then_some(at.value)
    }
}

/// The value of a native Pixel Data element that ends `file` (the usual
/// layout), for a data set read only up to its Pixel Data (`header`).
/// `None` when the instance is laid out otherwise (encapsulated, big-endian,
/// data after the pixels, lengths that disagree); then the data set has to
/// be read whole.
pub fn trailing_pixel_data<'a>(header: &DefaultDicomObject, file: &'a [u8]) -> Option<&'a [u8]> {
    TrailingPixels::value_in(header, file, file.len()).map(|value| &file[value])
}

fn native_bytes(obj: &DefaultDicomObject) -> Result<Cow<'_, [u8]>, PixelError> {
    obj.element(tags::PIXEL_DATA)
        .map_err(|_| PixelError::Attribute("PixelData"))?
        .to_bytes()
        .map_err(|_| PixelError::Attribute("PixelData"))
}

#[cfg(test)]
pub(crate) mod tests {
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    use super::*;

    /// A single-frame greyscale image with the given pixel attributes, raw
    /// pixel bytes and DS attributes (Rescale Slope and Intercept, say).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grey_object(
        width: u16,
        height: u16,
        bits: u16,
        stored: u16,
        signed: bool,
        photometric: &str,
        pixels: Vec<u8>,
        extra: &[(Tag, &str)],
    ) -> DefaultDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        obj.put_str(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE);
        obj.put_str(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1");
        obj.put_str(tags::MODALITY, VR::CS, "CT");
        obj.put_str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric);
        for (tag, value) in [
            (tags::SAMPLES_PER_PIXEL, 1),
            (tags::ROWS, height),
            (tags::COLUMNS, width),
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

    /// A 2×2 single-frame image with the given pixel attributes and raw pixel bytes.
    fn object(
        bits: u16,
        stored: u16,
        signed: bool,
        pixels: Vec<u8>,
        extra: &[(Tag, &str)],
    ) -> DefaultDicomObject {
        grey_object(2, 2, bits, stored, signed, "MONOCHROME2", pixels, extra)
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

    /// The file's bytes in `syntax`, with `extra` written after Pixel Data.
    fn file_bytes(obj: &DefaultDicomObject, syntax: &str) -> Vec<u8> {
        let mut obj = obj.clone();
        obj.meta_mut().set_transfer_syntax(syntax_of(syntax));
        let mut out = Vec::new();
        obj.write_all(&mut out).unwrap();
        out
    }

    fn syntax_of(uid: &str) -> &'static dicom_encoding::transfer_syntax::TransferSyntax {
        dicom_encoding::TransferSyntaxIndex::get(
            &dicom_transfer_syntax_registry::TransferSyntaxRegistry,
            uid,
        )
        .unwrap()
    }

    fn header(bytes: &[u8]) -> DefaultDicomObject {
        dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .from_reader(bytes)
            .unwrap()
    }

    #[test]
    fn pixel_data_is_found_in_place_at_the_end_of_a_native_file() {
        let pixels = words([0x0102, 0x0304, 0x0506, 0x0708]);
        let obj = object(16, 16, false, pixels.clone(), &[]);
        for syntax in [
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
        ] {
            let bytes = file_bytes(&obj, syntax);
            let head = header(&bytes);
            assert!(head.element(tags::PIXEL_DATA).is_err(), "{syntax}");
            let data = trailing_pixel_data(&head, &bytes).expect(syntax);
            assert_eq!(data, pixels.as_slice(), "{syntax}");
            let pixels = Pixels::native(&head, data).unwrap();
            let frame = pixels.frame(0).unwrap();
            assert_eq!(
                frame.decoded().image,
                modality_image(&obj).unwrap().image,
                "{syntax}"
            );
        }
        // An odd 8-bit length is padded to even in the file.
        let mut odd = object(8, 8, false, vec![1, 2, 3], &[]);
        odd.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(1u16),
        ));
        odd.put(DataElement::new(
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(3u16),
        ));
        let bytes = file_bytes(&odd, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let head = header(&bytes);
        assert_eq!(trailing_pixel_data(&head, &bytes), Some(&[1u8, 2, 3][..]));
    }

    #[test]
    fn other_layouts_are_not_read_in_place() {
        let obj = object(16, 16, false, words([1, 2, 3, 4]), &[]);
        // Something after Pixel Data.
        let mut trailing = obj.clone();
        trailing.put(DataElement::new(
            tags::DATA_SET_TRAILING_PADDING,
            VR::OB,
            PrimitiveValue::from(vec![0u8; 8]),
        ));
        let bytes = file_bytes(&trailing, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        assert_eq!(trailing_pixel_data(&header(&bytes), &bytes), None);
        // A header claiming more rows than the file holds.
        let bytes = file_bytes(&obj, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let mut head = header(&bytes);
        head.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(3u16),
        ));
        assert_eq!(trailing_pixel_data(&head, &bytes), None);
        // Other syntaxes are never read in place, and Pixels::native
        // refuses encapsulated ones.
        for uid in [
            "1.2.840.10008.1.2.2",
            uids::JPEG_BASELINE8_BIT,
            uids::RLE_LOSSLESS,
        ] {
            let mut head = header(&bytes);
            head.meta_mut().set_transfer_syntax(syntax_of(uid));
            assert_eq!(trailing_pixel_data(&head, &bytes), None, "{uid}");
            assert!(Pixels::native(&head, &[0; 8]).is_err(), "{uid}");
        }
    }

    #[test]
    fn padding_reads_as_the_darkest_other_value_when_resized_straight() {
        let obj = object(
            16,
            16,
            false,
            words([0, 100, 200, 300]),
            &[(tags::RESCALE_INTERCEPT, "-10")],
        );
        let mut obj = obj;
        obj.put(DataElement::new(
            tags::PIXEL_PADDING_VALUE,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
        let pixels = Pixels::first_frame(&obj).unwrap();
        let frame = pixels.frame(0).unwrap();
        assert_eq!(
            frame.image.to_image().values,
            vec![90.0, 90.0, 190.0, 290.0]
        );
        let mut line = vec![0.0f32; 2];
        frame.image.add_row(0, 0.5, &mut line);
        assert_eq!(line, vec![45.0, 45.0]);
    }

    /// Bytes read at offsets, as a segment file is, counting the reads and
    /// failing any that reaches past `fail_from`.
    #[derive(Debug)]
    struct Source {
        bytes: Vec<u8>,
        fail_from: usize,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl ReadAt for Source {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let at = offset as usize;
            if at + buf.len() > self.fail_from {
                return Err(std::io::Error::other("the disk went away"));
            }
            buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn frames_read_from_a_file_preprocess_exactly_as_frames_in_memory() {
        use crate::preprocess::{Pipeline, PreprocessError, Window};
        // Large enough to be resized on several threads, each reading
        // several bands; padded, so that the darkest value is found first.
        let (width, height) = (1100u16, 1000u16);
        let mut state = 0x2545_f491u32;
        let pixels: Vec<u8> = (0..usize::from(width) * usize::from(height))
            .flat_map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let v = if i % 97 == 0 {
                    0
                } else {
                    (state % 4000) as u16 + 50
                };
                v.to_le_bytes()
            })
            .collect();
        let mut obj = grey_object(
            width,
            height,
            16,
            12,
            false,
            "MONOCHROME1",
            pixels,
            &[(tags::RESCALE_SLOPE, "2"), (tags::RESCALE_INTERCEPT, "-5")],
        );
        obj.put(DataElement::new(
            tags::PIXEL_PADDING_VALUE,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
        let bytes = file_bytes(&obj, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let head = header(&bytes);
        let at = TrailingPixels::locate(&head, bytes.len()).unwrap();
        assert!(at.matches(&bytes[at.element.clone()]));
        let pipeline = Pipeline {
            channels: vec![
                Window::Percentile {
                    low: 0.5,
                    high: 99.5,
                },
                Window::Fixed {
                    center: 3000.0,
                    width: 4000.0,
                },
            ],
            invert_monochrome1: true,
            rows: 256,
            cols: 200,
            letterbox: true,
            normalize_mean: 0.5,
            normalize_std: 0.25,
        };
        let source = |fail_from| Source {
            bytes: bytes.clone(),
            fail_from,
            reads: Default::default(),
        };
        let (offset, len) = (at.value.start as u64, at.value.len());

        let held = Pixels::native(&head, &bytes[at.value.clone()]).unwrap();
        let expected = pipeline.run(&held.frame(0).unwrap().image, true).unwrap();
        let file = source(usize::MAX);
        let read = Pixels::native_at(&head, &file, offset, len).unwrap();
        let frame = read.frame(0).unwrap();
        assert_eq!(frame.image.failure(), None);
        assert_eq!(pipeline.run(&frame.image, true).unwrap(), expected);
        let reads = file.reads.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            (4..usize::from(height) / 8).contains(&reads),
            "{reads} reads: in bands, not whole and not a row at a time"
        );

        // A read that fails half-way through is an error, never an input
        // made of the rows that could be read.
        let failing = source(at.value.start + len / 2);
        let read = Pixels::native_at(&head, &failing, offset, len).unwrap();
        let frame = read.frame(0).unwrap();
        match pipeline.run(&frame.image, true) {
            Err(PreprocessError::Read(why)) => assert!(why.contains("the disk went away"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Fewer bytes than the frames need is refused up front.
        assert!(matches!(
            Pixels::native_at(&head, &file, offset, len - 2),
            Err(PixelError::Length { .. })
        ));
    }
}
