//! Study-level identity (patient, dates, UIDs) shared by both kinds, and the
//! per-instance assembly.

use dicom_core::VR;
use dicom_dictionary_std::tags;

use crate::uid::Deriver;
use crate::write::DataSet;
use crate::{
    cr, ct, Instance, Kind, PhantomError, StudySpec, SYNTHETIC_COMMENT, TRANSFER_SYNTAX_UID,
};

/// Days from 1970-01-01 to 2024-01-01.
const BASE_DAY: i64 = 19_723;
/// Study dates fall in the two years from `BASE_DAY`.
const DATE_SPAN_DAYS: u64 = 730;

/// Everything that is the same for all instances of one study.
pub(crate) struct Study {
    pub(crate) kind: Kind,
    pub(crate) finding: crate::Finding,
    pub(crate) count: usize,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) derive: Deriver,
    pub(crate) study_uid: String,
    pub(crate) series_uid: String,
    patient_name: String,
    patient_id: String,
    birth_date: String,
    sex: &'static str,
    age: String,
    date: String,
    time: String,
    accession: String,
    study_id: String,
}

impl Study {
    pub(crate) fn new(spec: &StudySpec) -> Result<Self, PhantomError> {
        spec.validate()?;
        let (width, height) = spec.size();
        let namespace = format!(
            "firstlook-phantom/v1/{}/{}/{}/{}x{}",
            spec.kind, spec.finding, spec.count, width, height
        );
        let derive = Deriver::new(namespace, spec.seed);

        let day = BASE_DAY + (derive.value("study-date", 0) % DATE_SPAN_DAYS) as i64;
        let (year, month, dom) = firstlook_kernels::dates::civil_from_days(day);
        // 07:00:00 to 18:59:59
        let secs = 7 * 3600 + derive.value("study-time", 0) % (12 * 3600);
        let age = 20 + derive.value("patient-age", 0) % 70;
        let birth = derive.value("patient-birth", 0);
        let (birth_month, birth_day) = (1 + birth % 12, 1 + (birth / 12) % 28);
        // Age at the study date, whatever the birthday.
        let birth_year = year as u64
            - age
            - u64::from((birth_month, birth_day) > (u64::from(month), u64::from(dom)));

        Ok(Study {
            kind: spec.kind,
            finding: spec.finding,
            count: spec.count,
            width,
            height,
            study_uid: derive.uid("study", 0),
            series_uid: derive.uid("series", 1),
            patient_name: format!(
                "PHANTOM^{}^{}",
                spec.kind.as_str().to_uppercase(),
                spec.seed
            ),
            patient_id: format!("PH{}", spec.seed),
            birth_date: format!("{birth_year:04}{birth_month:02}{birth_day:02}"),
            sex: if derive.value("patient-sex", 0).is_multiple_of(2) {
                "F"
            } else {
                "M"
            },
            age: format!("{age:03}Y"),
            date: format!("{year:04}{month:02}{dom:02}"),
            time: format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            accession: format!("FL{:08}", derive.value("accession", 0) % 100_000_000),
            study_id: format!("{}", 1 + derive.value("study-id", 0) % 99_999),
            derive,
        })
    }

    /// The finding's ground truth on instance `index`: 1 inside it, row by row.
    pub(crate) fn mask(&self, index: usize) -> Vec<u8> {
        match self.kind {
            Kind::Ct => ct::mask(self, index),
            Kind::Cr | Kind::Dx => cr::mask(self, index),
        }
    }

    /// Builds instance `index` (0-based; InstanceNumber is `index + 1`).
    pub(crate) fn instance(&self, index: usize) -> Result<Instance, PhantomError> {
        let sop_class_uid = self.kind.sop_class_uid();
        let sop_instance_uid = self.derive.uid("instance", index as u64);

        let mut ds = DataSet::new();
        ds.text(tags::SOP_CLASS_UID, VR::UI, sop_class_uid);
        ds.text(tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid.as_str());
        ds.text(tags::STUDY_DATE, VR::DA, self.date.as_str());
        ds.text(tags::SERIES_DATE, VR::DA, self.date.as_str());
        ds.text(tags::CONTENT_DATE, VR::DA, self.date.as_str());
        ds.text(tags::STUDY_TIME, VR::TM, self.time.as_str());
        ds.text(tags::SERIES_TIME, VR::TM, self.time.as_str());
        ds.text(tags::CONTENT_TIME, VR::TM, self.time.as_str());
        ds.text(tags::ACCESSION_NUMBER, VR::SH, self.accession.as_str());
        ds.text(tags::MODALITY, VR::CS, self.kind.as_str().to_uppercase());
        ds.text(tags::MANUFACTURER, VR::LO, "firstlook-phantom");
        ds.text(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
        ds.text(tags::MANUFACTURER_MODEL_NAME, VR::LO, "PHANTOM");
        ds.text(tags::PATIENT_NAME, VR::PN, self.patient_name.as_str());
        ds.text(tags::PATIENT_ID, VR::LO, self.patient_id.as_str());
        ds.text(tags::PATIENT_BIRTH_DATE, VR::DA, self.birth_date.as_str());
        ds.text(tags::PATIENT_SEX, VR::CS, self.sex);
        ds.text(tags::PATIENT_AGE, VR::AS, self.age.as_str());
        ds.text(tags::STUDY_INSTANCE_UID, VR::UI, self.study_uid.as_str());
        ds.text(tags::SERIES_INSTANCE_UID, VR::UI, self.series_uid.as_str());
        ds.text(tags::STUDY_ID, VR::SH, self.study_id.as_str());
        ds.text(tags::SERIES_NUMBER, VR::IS, "1");
        ds.text(tags::INSTANCE_NUMBER, VR::IS, (index + 1).to_string());
        ds.text(tags::IMAGE_COMMENTS, VR::LT, SYNTHETIC_COMMENT);
        ds.text(tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
        ds.us(tags::SAMPLES_PER_PIXEL, 1);
        ds.us(tags::ROWS, self.height as u16);
        ds.us(tags::COLUMNS, self.width as u16);
        ds.us(tags::BITS_ALLOCATED, 16);

        match self.kind {
            Kind::Ct => ct::fill(self, index, &mut ds),
            Kind::Cr | Kind::Dx => cr::fill(self, index, &mut ds),
        }

        Ok(Instance {
            sop_class_uid: sop_class_uid.to_owned(),
            sop_instance_uid,
            study_instance_uid: self.study_uid.clone(),
            series_instance_uid: self.series_uid.clone(),
            transfer_syntax_uid: TRANSFER_SYNTAX_UID.to_owned(),
            file_bytes: ds.into_part10()?,
        })
    }
}
