//! Everything that touches pixels and tensors: DICOM pixel decoding (feature
//! `dicom`), preprocessing (shared with the training recipe through
//! `firstlook-phantom`) and the inference engines (`tract` by default).
#![forbid(unsafe_code)]

pub mod dates;
#[cfg(feature = "dicom")]
pub mod dicom;
pub mod engine;
pub mod npy;
pub mod preprocess;
