//! firstlook: receive images from the scanner, keep every one safe, forward
//! them to PACS. See ARCHITECTURE.md for the map.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bundle;
pub mod config;
pub mod daemon;
pub mod dataset;
pub mod dead_letters;
#[cfg(feature = "demo")]
pub mod demo;
pub mod dimse;
pub mod durable;
pub mod failpoints;
pub mod forward;
pub mod fuzzing;
pub mod host;
pub mod inference;
pub mod ingest;
pub mod liveness;
pub mod model;
pub mod panel;
pub mod pem;
pub mod privileges;
pub mod results;
pub mod sandbox;
/// DICOM pixel decoding lives in the kernels; the daemon's name for it.
pub use firstlook_kernels::dicom as pixels;
pub mod spool;
pub mod status;
pub mod systemd;
pub mod tls;
pub mod triage;
pub mod ul;
