//! Deterministic synthetic DICOM studies ("phantoms") for the firstlook demo,
//! tests and benchmarks.
//!
//! [`generate`] turns a [`StudySpec`] into complete DICOM Part-10 files held in
//! memory; [`write_study`] writes them to a folder as `<SOPInstanceUID>.dcm`.
//! The same spec always yields the same UIDs and the same bytes; a different
//! seed (or kind, finding, count or size) yields different UIDs, so phantoms
//! never collide in a store that deduplicates by SOP Instance UID.
//!
//! Every instance carries `ImageComments = "SYNTHETIC PHANTOM - NOT FOR
//! CLINICAL USE"` and made-up patient data.
//!
//! The anatomy is drawn per study from the seed: a chest radiograph (CR or
//! DX) with lungs, vessel markings, heart, mediastinum, ribs, clavicles,
//! spine, diaphragm and soft tissue, varied in size, rotation, exposure,
//! noise, bit depth and photometric interpretation, sometimes with ECG leads
//! or lines; a head CT with scalp, skull, sulci, grey and white matter and
//! ventricles. Findings vary in size and side and are sometimes subtle.
//! [`training`] renders the same anatomy at model resolution together with
//! ground-truth masks, for the training recipe.

#![forbid(unsafe_code)]

mod chest;
mod cr;
mod ct;
mod error;
mod field;
mod head;
mod noise;
mod study;
pub mod training;
mod uid;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use error::PhantomError;
pub use uid::{is_valid_uid, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// SOP Class UID of CT Image Storage.
pub const CT_IMAGE_STORAGE: &str = dicom_dictionary_std::uids::CT_IMAGE_STORAGE;
/// SOP Class UID of Computed Radiography Image Storage.
pub const CR_IMAGE_STORAGE: &str = dicom_dictionary_std::uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE;
/// SOP Class UID of Digital X-Ray Image Storage - For Presentation.
pub const DX_IMAGE_STORAGE: &str =
    dicom_dictionary_std::uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION;
/// Transfer syntax of every generated file: Explicit VR Little Endian.
pub const TRANSFER_SYNTAX_UID: &str = dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN;
/// Text put in ImageComments of every instance.
pub const SYNTHETIC_COMMENT: &str = "SYNTHETIC PHANTOM - NOT FOR CLINICAL USE";

/// Smallest accepted image side, in pixels.
pub const MIN_SIDE: u32 = 16;
/// Largest accepted image side, in pixels.
pub const MAX_SIDE: u32 = 8192;
/// Largest accepted number of instances in one study.
pub const MAX_COUNT: usize = 100_000;

/// Imaging modality of the phantom study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Kind {
    /// Head CT: axial slices, CT Image Storage.
    Ct,
    /// Chest radiograph: Computed Radiography Image Storage.
    Cr,
    /// Chest radiograph: Digital X-Ray Image Storage - For Presentation.
    Dx,
}

impl Kind {
    /// Lower-case name, as accepted by [`FromStr`] and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ct => "ct",
            Kind::Cr => "cr",
            Kind::Dx => "dx",
        }
    }

    /// Whether this kind is a chest radiograph (CR or DX).
    pub fn is_radiograph(self) -> bool {
        matches!(self, Kind::Cr | Kind::Dx)
    }

    /// SOP Class UID of this kind's instances.
    pub fn sop_class_uid(self) -> &'static str {
        match self {
            Kind::Ct => CT_IMAGE_STORAGE,
            Kind::Cr => CR_IMAGE_STORAGE,
            Kind::Dx => DX_IMAGE_STORAGE,
        }
    }

    /// Default (columns, rows) when the spec gives no size.
    pub fn default_size(self) -> (u32, u32) {
        match self {
            Kind::Ct => (512, 512),
            Kind::Cr | Kind::Dx => (2048, 2500),
        }
    }

    /// Default number of instances a command-line run generates.
    pub fn default_count(self) -> usize {
        match self {
            Kind::Ct => 40,
            Kind::Cr | Kind::Dx => 1,
        }
    }

    /// Findings this kind's phantom can draw ([`Finding::None`] always).
    pub fn supports(self, finding: Finding) -> bool {
        matches!(
            (self, finding),
            (_, Finding::None)
                | (Kind::Ct, Finding::Hemorrhage)
                | (
                    Kind::Cr | Kind::Dx,
                    Finding::Pneumothorax | Finding::Effusion
                )
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = PhantomError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ct" => Ok(Kind::Ct),
            "cr" => Ok(Kind::Cr),
            "dx" => Ok(Kind::Dx),
            _ => Err(PhantomError::UnknownKind(s.to_owned())),
        }
    }
}

/// Finding drawn into the phantom.
///
/// CT (head) supports [`Finding::Hemorrhage`]; CR and DX (chest) support
/// [`Finding::Pneumothorax`] and [`Finding::Effusion`]. Any other pairing is
/// refused with [`PhantomError::FindingNotApplicable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Finding {
    /// Normal study.
    None,
    /// Chest: a lucent rim without lung markings outside a visceral pleural
    /// line, apical and lateral, of varied size and side.
    Pneumothorax,
    /// Chest: a basal opacity with a meniscus and a blunted costophrenic
    /// angle, of varied volume and side.
    Effusion,
    /// Head CT: acute blood (50-90 HU) as a subdural crescent, an epidural
    /// lens or an intraparenchymal blob with oedema; varied size and side.
    Hemorrhage,
}

impl Finding {
    /// Lower-case name, as accepted by [`FromStr`] and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::None => "none",
            Finding::Pneumothorax => "pneumothorax",
            Finding::Effusion => "effusion",
            Finding::Hemorrhage => "hemorrhage",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Finding {
    type Err = PhantomError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Finding::None),
            "pneumothorax" => Ok(Finding::Pneumothorax),
            "effusion" => Ok(Finding::Effusion),
            "hemorrhage" | "haemorrhage" => Ok(Finding::Hemorrhage),
            _ => Err(PhantomError::UnknownFinding(s.to_owned())),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StudySpec {
    /// Modality.
    pub kind: Kind,
    /// Finding drawn into the images (must suit `kind`, see [`Kind::supports`]).
    pub finding: Finding,
    /// Seed: the whole study (UIDs, patient, dates, pixels) follows from it.
    pub seed: u64,
    /// Number of instances: CT slices, or CR images (at least 1).
    pub count: usize,
    /// Columns; `None` for the kind's default (CT 512, CR/DX 2048).
    pub width: Option<u32>,
    /// Rows; `None` for the kind's default (CT 512, CR/DX 2500).
    pub height: Option<u32>,
}

impl StudySpec {
    /// A normal study of `kind` with the kind's default count and size.
    pub fn new(kind: Kind, seed: u64) -> Self {
        StudySpec {
            kind,
            finding: Finding::None,
            seed,
            count: kind.default_count(),
            width: None,
            height: None,
        }
    }

    /// The same spec with another finding.
    pub fn with_finding(mut self, finding: Finding) -> Self {
        self.finding = finding;
        self
    }

    /// The same spec with another instance count.
    pub fn with_count(mut self, count: usize) -> Self {
        self.count = count;
        self
    }

    /// The same spec with an explicit image size (columns × rows).
    pub fn with_size(mut self, width: u32, height: u32) -> Self {
        self.width = Some(width);
        self.height = Some(height);
        self
    }

    /// (columns, rows) that will be generated.
    pub fn size(&self) -> (u32, u32) {
        let (w, h) = self.kind.default_size();
        (self.width.unwrap_or(w), self.height.unwrap_or(h))
    }

    /// Checks the spec, as [`generate`] does before producing anything.
    pub fn validate(&self) -> Result<(), PhantomError> {
        if !self.kind.supports(self.finding) {
            return Err(PhantomError::FindingNotApplicable {
                kind: self.kind,
                finding: self.finding,
            });
        }
        if self.count == 0 || self.count > MAX_COUNT {
            return Err(PhantomError::InvalidCount {
                count: self.count,
                max: MAX_COUNT,
            });
        }
        let (width, height) = self.size();
        for side in [width, height] {
            if !(MIN_SIDE..=MAX_SIDE).contains(&side) {
                return Err(PhantomError::InvalidSize {
                    width,
                    height,
                    min: MIN_SIDE,
                    max: MAX_SIDE,
                });
            }
        }
        Ok(())
    }
}

/// One generated instance: identifiers and the complete Part-10 file.
#[derive(Clone, PartialEq, Eq)]
pub struct Instance {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// A complete DICOM file: 128-byte preamble, `DICM`, file meta group, data set.
    pub file_bytes: Vec<u8>,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("sop_class_uid", &self.sop_class_uid)
            .field("sop_instance_uid", &self.sop_instance_uid)
            .field("study_instance_uid", &self.study_instance_uid)
            .field("series_instance_uid", &self.series_instance_uid)
            .field("transfer_syntax_uid", &self.transfer_syntax_uid)
            .field("file_bytes.len", &self.file_bytes.len())
            .finish()
    }
}

/// Generates every instance of the study, in instance-number order.
pub fn generate(spec: &StudySpec) -> Result<Vec<Instance>, PhantomError> {
    let study = study::Study::new(spec)?;
    (0..spec.count).map(|i| study.instance(i)).collect()
}

/// Generates instance `index` (0-based) of the study alone; the result equals
/// `generate(spec)?[index]`. Useful to stream a large study.
pub fn generate_instance(spec: &StudySpec, index: usize) -> Result<Instance, PhantomError> {
    study_with(spec, index)?.instance(index)
}

/// Where the finding is on instance `index` (0-based): `width × height`
/// bytes, row by row, 1 inside the finding and 0 elsewhere. All 0 for a
/// study without a finding, or a slice the finding does not reach.
pub fn finding_mask(spec: &StudySpec, index: usize) -> Result<Vec<u8>, PhantomError> {
    Ok(study_with(spec, index)?.mask(index))
}

fn study_with(spec: &StudySpec, index: usize) -> Result<study::Study, PhantomError> {
    let study = study::Study::new(spec)?;
    if index >= spec.count {
        return Err(PhantomError::IndexOutOfRange {
            index,
            count: spec.count,
        });
    }
    Ok(study)
}

/// Generates the study and writes each instance to `out_dir` (created if
/// missing) as `<SOPInstanceUID>.dcm`. Returns the paths in instance order.
///
/// Instances are generated and written one at a time, so memory stays at one
/// image whatever the count.
pub fn write_study(spec: &StudySpec, out_dir: &Path) -> Result<Vec<PathBuf>, PhantomError> {
    let study = study::Study::new(spec)?;
    std::fs::create_dir_all(out_dir).map_err(|source| PhantomError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::with_capacity(spec.count);
    for i in 0..spec.count {
        let instance = study.instance(i)?;
        let path = out_dir.join(format!("{}.dcm", instance.sop_instance_uid));
        std::fs::write(&path, &instance.file_bytes).map_err(|source| PhantomError::Io {
            path: path.clone(),
            source,
        })?;
        paths.push(path);
    }
    Ok(paths)
}
