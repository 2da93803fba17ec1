//! The end-to-end tests, one module per area, in one test binary (one link,
//! one executable on disk, however many areas there are).

mod association;
mod audit;
mod browser;
mod crash;
mod dicom_tls;
mod engines;
mod faults;
mod forwarding;
mod hostile_peers;
mod models;
mod panel;
mod preprocess_parity;
mod privileges;
mod results;
mod systemd_notify;
mod triage;
