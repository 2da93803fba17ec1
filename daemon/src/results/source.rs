//! The instances a report rests on, read back from the spool.

use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use rusqlite::{params, OptionalExtension};

use crate::spool::Spool;

use super::report::InstanceRef;

/// Where an instance sits in the spool, and what the index knows of it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub reference: InstanceRef,
    segment: i64,
    body_offset: u64,
    body_len: u64,
}

/// The newest stored copy of each SOP Instance UID (in the given order);
/// instances the spool no longer holds are left out.
pub async fn locate(spool: &Spool, uids: Vec<String>) -> Result<Vec<Stored>, String> {
    spool
        .index()
        .call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT sop_class_uid, series_uid, modality, segment, body_offset, body_len
                 FROM instances WHERE sop_instance_uid = ?1 AND superseded = 0
                 ORDER BY id DESC LIMIT 1",
            )?;
            let mut found = Vec::with_capacity(uids.len());
            for uid in uids {
                let row = stmt
                    .query_row(params![uid], |r| {
                        Ok(Stored {
                            reference: InstanceRef {
                                sop_class: r.get(0)?,
                                sop_instance: uid.clone(),
                                series_uid: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                                modality: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                            },
                            segment: r.get(3)?,
                            body_offset: r.get::<_, i64>(4)? as u64,
                            body_len: r.get::<_, i64>(5)? as u64,
                        })
                    })
                    .optional()?;
                found.extend(row);
            }
            Ok(found)
        })
        .await
        .map_err(|e| e.to_string())
}

/// The instance's Part-10 bytes (preamble, file meta, data set).
pub fn read(spool: &Spool, s: &Stored) -> Result<Vec<u8>, String> {
    read_first(spool, s, u64::MAX)
}

/// At most the first `max` of the instance's Part-10 bytes.
pub fn read_first(spool: &Spool, s: &Stored, max: u64) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    spool
        .read_dataset_into(s.segment, s.body_offset, 0, s.body_len.min(max), &mut buf)
        .map_err(|e| format!("instance {} cannot be read: {e}", s.reference.sop_instance))?;
    Ok(buf)
}

/// Patient and study attributes a new instance in the same study copies;
/// the type 2 ones (with their VR) are written empty when the source lacks
/// them.
const STUDY: [(Tag, Option<VR>); 14] = [
    (tags::SPECIFIC_CHARACTER_SET, None),
    (tags::PATIENT_NAME, Some(VR::PN)),
    (tags::PATIENT_ID, Some(VR::LO)),
    (tags::ISSUER_OF_PATIENT_ID, None),
    (tags::PATIENT_BIRTH_DATE, Some(VR::DA)),
    (tags::PATIENT_SEX, Some(VR::CS)),
    (tags::STUDY_INSTANCE_UID, None),
    (tags::STUDY_DATE, Some(VR::DA)),
    (tags::STUDY_TIME, Some(VR::TM)),
    (tags::REFERRING_PHYSICIAN_NAME, Some(VR::PN)),
    (tags::STUDY_ID, Some(VR::SH)),
    (tags::ACCESSION_NUMBER, Some(VR::SH)),
    (tags::STUDY_DESCRIPTION, None),
    (tags::INSTITUTION_NAME, None),
];

/// The side the source shows, for a derived image's series: its Laterality,
/// else its Image Laterality when that names one side. None when unknown or
/// unpaired.
pub fn laterality(source: &DefaultDicomObject) -> Option<String> {
    let side = |tag| {
        source
            .element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_string())
            .filter(|s| s == "R" || s == "L")
    };
    side(tags::LATERALITY).or_else(|| side(tags::IMAGE_LATERALITY))
}

pub fn study_attributes(source: &DefaultDicomObject) -> InMemDicomObject {
    let mut out = InMemDicomObject::new_empty();
    for (tag, type2) in STUDY {
        match (source.element(tag), type2) {
            (Ok(e), _) => {
                out.put(e.clone());
            }
            (Err(_), Some(vr)) => {
                out.put(DataElement::empty(tag, vr));
            }
            (Err(_), None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use dicom_core::VR;
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    use super::*;

    fn source(elements: &[(dicom_core::Tag, &str)]) -> DefaultDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        for &(tag, value) in elements {
            obj.put_str(tag, VR::CS, value);
        }
        obj.with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE)
                .media_storage_sop_instance_uid("1.2.3")
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN),
        )
        .unwrap()
    }

    #[test]
    fn laterality_names_a_side_or_nothing() {
        assert_eq!(
            laterality(&source(&[(tags::LATERALITY, "L")])),
            Some("L".into())
        );
        assert_eq!(
            laterality(&source(&[
                (tags::LATERALITY, ""),
                (tags::IMAGE_LATERALITY, "R")
            ])),
            Some("R".into())
        );
        assert_eq!(
            laterality(&source(&[
                (tags::LATERALITY, "R"),
                (tags::IMAGE_LATERALITY, "L")
            ])),
            Some("R".into())
        );
        assert_eq!(laterality(&source(&[(tags::IMAGE_LATERALITY, "U")])), None);
        assert_eq!(laterality(&source(&[(tags::IMAGE_LATERALITY, "B")])), None);
        assert_eq!(laterality(&source(&[])), None);
    }
}
