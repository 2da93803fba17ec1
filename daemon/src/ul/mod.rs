//! The upper layer on the wire: PDU framing with size limits and timeouts,
//! shared by ingest (acceptor) and forward (requestor). PDU encoding and
//! decoding themselves come from dicom-ul.

mod wire;

pub use wire::{
    decode_control, split, split_pdata, tcp, write_pdata, PduReader, PduWriter, Pdv, Received,
    WireError, APPLICATION_CONTEXT,
};

/// Implementation class UID and version name we announce.
pub use crate::spool::part10::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// The maximum PDU length a peer announced in its user information; 0
/// (also when absent) means no limit.
pub fn announced_max_pdu(items: &[dicom_ul::pdu::UserVariableItem]) -> u32 {
    items
        .iter()
        .find_map(|v| match v {
            dicom_ul::pdu::UserVariableItem::MaxLength(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0)
}
