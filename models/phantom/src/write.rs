//! Assembling a data set and encoding it as a Part-10 file.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::{
    PhantomError, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, TRANSFER_SYNTAX_UID,
};

/// A data set under construction.
pub(crate) struct DataSet {
    obj: InMemDicomObject,
    pixel_bytes: usize,
}

impl DataSet {
    pub(crate) fn new() -> Self {
        DataSet {
            obj: InMemDicomObject::new_empty(),
            pixel_bytes: 0,
        }
    }

    /// A textual attribute (multiple values joined with `\`).
    pub(crate) fn text(&mut self, tag: Tag, vr: VR, value: impl Into<String>) {
        self.obj.put_str(tag, vr, value);
    }

    /// A US attribute.
    pub(crate) fn us(&mut self, tag: Tag, value: u16) {
        self.obj
            .put(DataElement::new(tag, VR::US, PrimitiveValue::from(value)));
    }

    /// An SS attribute.
    pub(crate) fn ss(&mut self, tag: Tag, value: i16) {
        self.obj
            .put(DataElement::new(tag, VR::SS, PrimitiveValue::from(value)));
    }

    /// Pixel Data as OW; signed pixels are passed as their two's-complement bits.
    pub(crate) fn pixel_data(&mut self, pixels: Vec<u16>) {
        self.pixel_bytes = pixels.len() * 2;
        self.obj.put(DataElement::new(
            dicom_dictionary_std::tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(pixels.into()),
        ));
    }

    /// Encodes preamble, `DICM`, file meta group (Explicit VR Little Endian)
    /// and the data set. The media storage UIDs come from the data set's
    /// SOP Class/Instance UID.
    pub(crate) fn into_part10(self) -> Result<Vec<u8>, PhantomError> {
        let capacity = self.pixel_bytes + 4096;
        let file = self.obj.with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(TRANSFER_SYNTAX_UID)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(IMPLEMENTATION_VERSION_NAME),
        )?;
        let mut bytes = Vec::with_capacity(capacity);
        file.write_all(&mut bytes)?;
        Ok(bytes)
    }
}

/// Formats a decimal string (DS): at most `decimals` decimals, trailing zeros
/// dropped, never "-0".
pub(crate) fn fmt_ds(value: f64, decimals: usize) -> String {
    let mut s = format!("{value:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".to_owned();
    }
    debug_assert!(s.len() <= 16, "DS value {s} too long");
    s
}

/// Joins DS values with the DICOM value separator.
pub(crate) fn fmt_ds_multi(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|&v| fmt_ds(v, decimals))
        .collect::<Vec<_>>()
        .join("\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_are_trimmed() {
        assert_eq!(fmt_ds(5.0, 3), "5");
        assert_eq!(fmt_ds(0.45, 4), "0.45");
        assert_eq!(fmt_ds(-0.0001, 3), "0");
        assert_eq!(fmt_ds(-114.975, 3), "-114.975");
        assert_eq!(fmt_ds_multi(&[0.45, 0.45], 4), "0.45\\0.45");
    }
}
