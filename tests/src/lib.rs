//! Harness shared by the end-to-end tests: the `firstlookd` process, real
//! peers (DCMTK `storescp`, Orthanc, pynetdicom scripts), scratch folders,
//! free ports, waiting with deadlines, and Part-10 file comparison.
//!
//! Every process is owned by a guard that kills it on drop; when a test is
//! panicking, the guards print the tail of each process's log so the failure
//! carries its context.

mod browser;
mod daemon;
mod dicom;
mod http;
pub mod metrics;
mod notify;
mod paths;
mod peers;
mod process;
mod scanners;
mod tls;
mod wait;

pub use browser::{browser_dir, Browser};
pub use daemon::{
    Daemon, DaemonConfig, DeadLetter, DestinationConfig, DestinationStatus, Status, StatusExt,
};
pub use dicom::{
    assert_delivered_identical, compare_delivery, duplicates, phantom, pydicom_test_file, uids,
    DicomFile,
};
pub use firstlook_phantom::{write_study, Finding, Kind, StudySpec};
pub use http::{http, json_post};
pub use notify::{Notification, NotifySocket};
pub use paths::{
    demo_bundle, firstlookd_bin, free_port, ort_dylib, py_script, release_bin, scratch, Scratch,
};
pub use peers::{Orthanc, PyPacs, StoreScp};
pub use process::{last_lines, proc_status, python, run_cmd, tail, tool, CmdOutput, Proc};
pub use scanners::{
    echoscu, epoch_ms, probe_association, pynetdicom_send, raw_dimse, storescu, storescu_successes,
    storescu_timed, Probe, RawResult, RawStep,
};
pub use tls::Pki;
pub use wait::{port_open, wait_until};

/// DCMTK tools, by absolute path: pynetdicom installs console scripts with
/// the same names that shadow them on PATH.
pub const STORESCU: &str = "/usr/bin/storescu";
pub const STORESCP: &str = "/usr/bin/storescp";
pub const ECHOSCU: &str = "/usr/bin/echoscu";
pub const DCMSEND: &str = "/usr/bin/dcmsend";
pub const DCMCJPEG: &str = "/usr/bin/dcmcjpeg";
pub const DCMCRLE: &str = "/usr/bin/dcmcrle";
pub const DCMCONV: &str = "/usr/bin/dcmconv";
pub const ORTHANC: &str = "/usr/sbin/Orthanc";

pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
pub const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
pub const DEFLATED_EXPLICIT_LE: &str = "1.2.840.10008.1.2.1.99";

/// The daemon's AE title in every test.
pub const NODE_AE: &str = "FIRSTLOOK";
