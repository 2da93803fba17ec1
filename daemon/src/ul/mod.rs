//! The upper layer on the wire: PDU framing with size limits and timeouts,
//! shared by ingest (acceptor) and forward (requestor). PDU encoding and
//! decoding themselves come from dicom-ul.

mod wire;

pub use wire::{
    split_pdata, write_pdata, PduReader, PduWriter, Pdv, Received, WireError, APPLICATION_CONTEXT,
};

/// Implementation class UID and version name we announce.
pub use crate::spool::part10::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};
