use std::path::PathBuf;

use crate::{Finding, Kind};

/// Why a phantom could not be generated or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PhantomError {
    #[error("unknown phantom kind {0:?} (expected \"ct\", \"cr\" or \"dx\")")]
    UnknownKind(String),

    #[error(
        "unknown finding {0:?} (expected \"none\", \"pneumothorax\", \"effusion\" or \"hemorrhage\")"
    )]
    UnknownFinding(String),

    #[error("finding {finding} cannot be drawn in a {kind} phantom")]
    FindingNotApplicable { kind: Kind, finding: Finding },

    #[error("instance count {count} is out of range (1..={max})")]
    InvalidCount { count: usize, max: usize },

    #[error("image size {width}x{height} is out of range (each side {min}..={max})")]
    InvalidSize {
        width: u32,
        height: u32,
        min: u32,
        max: u32,
    },

    #[error("instance index {index} is out of range (study has {count})")]
    IndexOutOfRange { index: usize, count: usize },

    #[error("preprocessing a training sample")]
    Preprocess(#[from] firstlook_kernels::preprocess::PreprocessError),

    #[error("building the DICOM file meta group")]
    Meta(#[source] Box<dicom_object::WithMetaError>),

    #[error("encoding the DICOM file")]
    Encode(#[source] Box<dicom_object::WriteError>),

    #[error("writing {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<dicom_object::WithMetaError> for PhantomError {
    fn from(e: dicom_object::WithMetaError) -> Self {
        PhantomError::Meta(Box::new(e))
    }
}

impl From<dicom_object::WriteError> for PhantomError {
    fn from(e: dicom_object::WriteError) -> Self {
        PhantomError::Encode(Box::new(e))
    }
}
