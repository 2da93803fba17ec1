//! The Part-10 preamble and file meta information group (PS3.10 §7.1),
//! built from what the association told us, and the stored instance read
//! back.

use std::ops::Range;

use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};

use crate::pixels::{PixelError, Pixels, ReadAt, TrailingPixels};

/// A stored instance read for its pixels: the data set up to Pixel Data,
/// and the whole data set only when the pixel data cannot be read in place
/// (compressed, or followed by other elements).
pub struct Stored {
    header: DefaultDicomObject,
    whole: Option<DefaultDicomObject>,
    /// Where the native pixel data sits in the bytes, when read in place.
    in_place: Option<Range<usize>>,
}

impl Stored {
    pub fn read(bytes: &[u8]) -> Result<Stored, String> {
        let header = parse(bytes, true)?;
        let in_place = TrailingPixels::value_in(&header, bytes, bytes.len());
        let whole = match in_place {
            Some(_) => None,
            None => Some(parse(bytes, false)?),
        };
        Ok(Stored {
            header,
            whole,
            in_place,
        })
    }

    /// From the first bytes (`head`) of a `total`-byte instance whose native
    /// Pixel Data ends it: everything before the pixels, which are left
    /// where they are ([`Stored::pixels_at`]). `None` when `head` does not
    /// reach the Pixel Data element, or the instance is laid out otherwise:
    /// then it has to be read whole.
    pub fn read_head(head: &[u8], total: usize) -> Option<Stored> {
        let header = parse(head, true).ok()?;
        let in_place = TrailingPixels::value_in(&header, head, total)?;
        Some(Stored {
            header,
            whole: None,
            in_place: Some(in_place),
        })
    }

    /// The data set's attributes (without Pixel Data when read in place).
    pub fn attributes(&self) -> &DefaultDicomObject {
        self.whole.as_ref().unwrap_or(&self.header)
    }

    pub fn has_pixels(&self) -> bool {
        self.in_place.is_some() || self.attributes().element(tags::PIXEL_DATA).is_ok()
    }

    /// Frame 0's pixels; `bytes` are the ones [`Stored::read`] was given.
    pub fn pixels<'a>(&'a self, bytes: &'a [u8]) -> Result<Pixels<'a>, PixelError> {
        match &self.in_place {
            Some(range) => match bytes.get(range.clone()) {
                Some(data) => Pixels::native(&self.header, data),
                None => Err(PixelError::Attribute("PixelData")),
            },
            None => Pixels::first_frame(self.attributes()),
        }
    }

    /// Frame 0's pixels for a [`Stored::read_head`], read from `source`
    /// as they are resized; `base` is where the instance starts there.
    pub fn pixels_at<'a>(
        &'a self,
        source: &'a dyn ReadAt,
        base: u64,
    ) -> Result<Pixels<'a>, PixelError> {
        match &self.in_place {
            Some(range) => {
                Pixels::native_at(&self.header, source, base + range.start as u64, range.len())
            }
            None => Pixels::first_frame(self.attributes()),
        }
    }
}

/// A stored instance (preamble, meta, data set) parsed back; with
/// `until_pixels`, only up to its Pixel Data, whose value the caller reads
/// in place from `bytes`.
pub fn parse(bytes: &[u8], until_pixels: bool) -> Result<DefaultDicomObject, String> {
    let options = OpenFileOptions::new().read_preamble(ReadPreamble::Always);
    if until_pixels {
        options.read_until(tags::PIXEL_DATA)
    } else {
        options
    }
    .from_reader(bytes)
    .map_err(|e| format!("the stored instance cannot be parsed: {e}"))
}

/// Our implementation class UID (a 2.25 UUID-derived UID).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.83011187419620442402618651339066719411";
pub const IMPLEMENTATION_VERSION_NAME: &str = "FIRSTLOOK_010";

/// Preamble, "DICM" and the file meta group, ready to precede a data set.
pub fn file_meta(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax_uid: &str,
    source_ae: &str,
) -> Vec<u8> {
    let mut group = Vec::with_capacity(256);
    put(&mut group, 0x0001, b"OB", &[0x00, 0x01]);
    put_text(&mut group, 0x0002, b"UI", sop_class_uid, 0);
    put_text(&mut group, 0x0003, b"UI", sop_instance_uid, 0);
    put_text(&mut group, 0x0010, b"UI", transfer_syntax_uid, 0);
    put_text(&mut group, 0x0012, b"UI", IMPLEMENTATION_CLASS_UID, 0);
    put_text(&mut group, 0x0013, b"SH", IMPLEMENTATION_VERSION_NAME, b' ');
    if !source_ae.is_empty() {
        put_text(&mut group, 0x0016, b"AE", source_ae, b' ');
    }
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    put(&mut out, 0x0000, b"UL", &(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out
}

fn put(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&0x0002u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    if vr == b"OB" {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

fn put_text(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], text: &str, pad: u8) {
    let mut v = text.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    put(out, element, vr, &v);
}

/// Finds where the data set starts in a Part-10 file, by reading the group
/// length of the file meta.
pub fn dataset_offset(file: &[u8]) -> Option<usize> {
    if file.len() < 144 || &file[128..132] != b"DICM" {
        return None;
    }
    // (0002,0000) UL, explicit VR LE: 8 header bytes then 4 value bytes.
    if file[132..136] != [0x02, 0x00, 0x00, 0x00] || &file[136..138] != b"UL" {
        return None;
    }
    let len = u32::from_le_bytes(file[140..144].try_into().ok()?) as usize;
    let end = 144usize.checked_add(len)?;
    (end <= file.len()).then_some(end)
}

/// The transfer syntax UID from a Part-10 file's meta group.
pub fn transfer_syntax(file: &[u8]) -> Option<String> {
    let end = dataset_offset(file)?;
    let mut pos = 144;
    while pos + 8 <= end {
        let element = u16::from_le_bytes([file[pos + 2], file[pos + 3]]);
        let vr = &file[pos + 4..pos + 6];
        let (len, head) = if vr == b"OB" || vr == b"UN" {
            (
                u32::from_le_bytes(file[pos + 8..pos + 12].try_into().ok()?) as usize,
                12,
            )
        } else {
            (
                u16::from_le_bytes([file[pos + 6], file[pos + 7]]) as usize,
                8,
            )
        };
        let value = file.get(pos + head..pos + head + len)?;
        if element == 0x0010 {
            return Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            );
        }
        pos += head + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use firstlook_kernels::preprocess::Rows;

    #[test]
    fn meta_round_trips_through_our_reader() {
        let meta = file_meta(
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.3.4",
            "1.2.840.10008.1.2.4.70",
            "CT01",
        );
        let mut file = meta.clone();
        file.extend_from_slice(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100");
        assert_eq!(dataset_offset(&file), Some(meta.len()));
        assert_eq!(
            transfer_syntax(&file).as_deref(),
            Some("1.2.840.10008.1.2.4.70")
        );
        assert_eq!(meta.len() % 2, 0);
    }

    /// A phantom chest radiograph (native, about 10 MB): its folder, path and bytes.
    fn phantom_cr(seed: u64) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let files = firstlook_phantom::write_study(
            &firstlook_phantom::StudySpec::new(firstlook_phantom::Kind::Cr, seed),
            dir.path(),
        )
        .unwrap();
        let bytes = std::fs::read(&files[0]).unwrap();
        let path = files[0].clone();
        (dir, path, bytes)
    }

    #[test]
    fn the_attributes_parse_from_the_first_bytes_of_a_large_image() {
        let (_dir, _, bytes) = phantom_cr(5);
        assert!(bytes.len() > 1_000_000);
        let head = parse(&bytes[..64 * 1024], true).expect("parsed up to the pixels");
        let name = crate::pixels::text(&head, tags::PATIENT_NAME).unwrap();
        assert!(!name.is_empty());
        assert!(
            parse(&bytes[..200], true).is_err(),
            "cut inside the attributes"
        );
    }

    #[test]
    fn a_large_native_image_is_read_as_its_head_and_its_pixels_where_they_lie() {
        let (_dir, path, bytes) = phantom_cr(1);
        let whole = Stored::read(&bytes).unwrap();
        let range = whole.in_place.clone().expect("native pixels at the end");
        let element = range.start - 12;

        let head = Stored::read_head(&bytes[..64 * 1024], bytes.len()).expect("head");
        assert_eq!(head.in_place, Some(range));
        for tag in [tags::SOP_INSTANCE_UID, tags::ROWS, tags::PATIENT_NAME] {
            assert_eq!(
                crate::pixels::text(head.attributes(), tag),
                crate::pixels::text(whole.attributes(), tag)
            );
        }
        let file = std::fs::File::open(&path).unwrap();
        let from_file = head.pixels_at(&file, 0).unwrap();
        let from_file = from_file.frame(0).unwrap();
        let in_memory = whole.pixels(&bytes).unwrap();
        assert_eq!(
            from_file.decoded().image,
            in_memory.frame(0).unwrap().decoded().image
        );
        assert_eq!(from_file.image.failure(), None);
        // The head must reach through the Pixel Data element's header.
        assert!(Stored::read_head(&bytes[..element + 12], bytes.len()).is_some());
        assert!(Stored::read_head(&bytes[..element + 11], bytes.len()).is_none());
        assert!(Stored::read_head(&bytes[..200], bytes.len()).is_none());
        // Sizes that disagree with the element found there.
        assert!(Stored::read_head(&bytes[..64 * 1024], bytes.len() + 2).is_none());
    }

    #[test]
    fn non_part10_bytes_are_rejected() {
        assert_eq!(dataset_offset(&[0u8; 200]), None);
        assert_eq!(dataset_offset(b"short"), None);
    }
}
