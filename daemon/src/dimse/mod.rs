//! DIMSE over dicom-ul: command sets, statuses and the reassembly of P-DATA
//! values into messages. No IO: ingest and forward feed it bytes.

mod command;
mod reassembly;
mod status;

pub use command::{Command, CommandError, CommandField, Priority};
pub use reassembly::{Fragment, Reassembler, ReassemblyError};
pub use status::{Status, StatusClass};

/// Verification SOP class (C-ECHO).
pub const VERIFICATION_SOP_CLASS: &str = "1.2.840.10008.1.1";
