//! What one report says, gathered before any DICOM is written: the unit's
//! decisions with their finding codes, the source instances, the study it
//! belongs to and the device that made it.

use dicom_object::InMemDicomObject;

use crate::triage::{ModelInfo, Outcome};

use super::content::Code;

/// An instance referenced by a report.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRef {
    pub sop_class: String,
    pub sop_instance: String,
    pub series_uid: String,
    pub modality: String,
}

/// The box, as the observer of the report (never a person).
#[derive(Debug, Clone)]
pub struct Device {
    pub uid: String,
    pub name: String,
    pub manufacturer: String,
    pub model_name: String,
    pub serial: String,
    pub software_version: String,
}

/// One finding's decision, with the codes the bundle gives it.
#[derive(Debug, Clone)]
pub struct FindingResult {
    pub id: String,
    pub display: String,
    pub code: Code,
    pub outcome: Outcome,
    /// The aggregated logit.
    pub score: Option<f32>,
    pub threshold: Option<f64>,
    pub operating_point: Option<String>,
    pub reason: Option<String>,
    pub tracking_uid: String,
}

/// Where the model locates a finding on the key image.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// The finding's id in the bundle.
    pub finding: String,
    pub image: InstanceRef,
    /// 1-based, for a multi-frame image.
    pub frame: Option<u32>,
    /// Column and row of the top left and bottom right corners, in the
    /// image's pixel coordinates ((0, 0) is the top left corner of its
    /// first pixel).
    pub rect: [f32; 4],
}

/// UIDs and numbers of one new instance in a new series.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub series_uid: String,
    pub instance_uid: String,
    pub series_number: i64,
}

#[derive(Debug, Clone)]
pub struct Report {
    /// Patient and study attributes copied from a source instance.
    pub study: InMemDicomObject,
    pub study_uid: String,
    pub sources: Vec<InstanceRef>,
    pub findings: Vec<FindingResult>,
    pub model: ModelInfo,
    pub device: Device,
    /// When the decision was made: the content date and time.
    pub decided_at_ms: i64,
    pub sr: NewInstance,
    /// The heatmap image, when one is made.
    pub heatmap: Option<InstanceRef>,
    /// Where the model locates each present finding its maps show.
    pub regions: Vec<Region>,
}

impl Report {
    pub fn modality(&self) -> &str {
        self.sources.first().map_or("", |s| s.modality.as_str())
    }
}

/// `ms` since the epoch as DICOM DA and TM (UTC).
pub fn date_time(ms: i64) -> (String, String) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = firstlook_kernels::dates::civil_from_days(days);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!(
            "{:02}{:02}{:02}.{:03}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            ms.rem_euclid(1000)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_utc_calendar_values() {
        assert_eq!(date_time(0), ("19700101".into(), "000000.000".into()));
        assert_eq!(
            date_time(951_786_123_004),
            ("20000229".into(), "010203.004".into())
        );
        assert_eq!(
            date_time(1_798_761_599_999),
            ("20261231".into(), "235959.999".into())
        );
    }
}
