//! The on-disk record of one instance inside a segment file.
//!
//! ```text
//! "FLREC001" | u64 LE body length (patched when the body is complete) | u32 LE header length | header JSON
//! body: a complete Part-10 file (preamble, "DICM", file meta, data set as received)
//! "FLRECEND" | u128 LE xxh3 of body | u32 LE summary length | summary JSON | u64 LE xxh3 of this trailer so far
//! ```
//! A record counts only if its trailer is present and both hashes match; a
//! record torn by a crash fails that test and was never acknowledged.

use serde::{Deserialize, Serialize};

pub const RECORD_MAGIC: &[u8; 8] = b"FLREC001";
pub const TRAILER_MAGIC: &[u8; 8] = b"FLRECEND";
/// Offset of the body-length field inside a record.
pub const BODY_LEN_AT: u64 = 8;

/// Known when the command arrives, before any data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordHeader {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub calling_ae: String,
    pub peer: String,
    /// Unix milliseconds.
    pub received_at: i64,
    /// Offset of the data set inside the body (after the file meta).
    pub dataset_offset: u64,
}

/// Known once the last fragment arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSummary {
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub modality: Option<String>,
    pub instance_number: Option<i64>,
}

/// Where a complete record sits, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub segment: i64,
    pub offset: u64,
    pub len: u64,
    pub body_offset: u64,
    pub body_len: u64,
    pub hash: u128,
    pub header: RecordHeader,
    pub summary: RecordSummary,
}

#[cfg(test)]
impl StoredRecord {
    /// A sealed CR record, for tests of what the index does with one.
    pub(crate) fn example(segment: i64, offset: u64, sop_instance_uid: &str) -> StoredRecord {
        StoredRecord {
            segment,
            offset,
            len: 100,
            body_offset: 40,
            body_len: 50,
            hash: 7,
            header: RecordHeader {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.1".into(),
                sop_instance_uid: sop_instance_uid.into(),
                transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
                calling_ae: "CR01".into(),
                peer: "127.0.0.1".into(),
                received_at: 1,
                dataset_offset: 10,
            },
            summary: RecordSummary::default(),
        }
    }
}

pub fn encode_head(header: &RecordHeader) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("header serialises");
    let mut out = Vec::with_capacity(20 + json.len());
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

pub fn encode_trailer(hash: u128, summary: &RecordSummary) -> Vec<u8> {
    let json = serde_json::to_vec(summary).expect("summary serialises");
    let mut out = Vec::with_capacity(44 + json.len());
    out.extend_from_slice(TRAILER_MAGIC);
    out.extend_from_slice(&hash.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    let check = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&check.to_le_bytes());
    out
}

/// Parses the head of a record: `(body length, header, head length)`, or None
/// if these bytes are not a complete, patched head.
pub fn decode_head(bytes: &[u8]) -> Option<(u64, RecordHeader, usize)> {
    if bytes.len() < 20 || &bytes[..8] != RECORD_MAGIC {
        return None;
    }
    let body_len = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let json_len = u32::from_le_bytes(bytes[16..20].try_into().ok()?) as usize;
    let header = serde_json::from_slice(bytes.get(20..20 + json_len)?).ok()?;
    (body_len > 0).then_some((body_len, header, 20 + json_len))
}

/// Parses a trailer: `(body hash, summary, trailer length)` if intact.
pub fn decode_trailer(bytes: &[u8]) -> Option<(u128, RecordSummary, usize)> {
    if bytes.len() < 36 || &bytes[..8] != TRAILER_MAGIC {
        return None;
    }
    let hash = u128::from_le_bytes(bytes[8..24].try_into().ok()?);
    let json_len = u32::from_le_bytes(bytes[24..28].try_into().ok()?) as usize;
    let end = 28 + json_len;
    let check = u64::from_le_bytes(bytes.get(end..end + 8)?.try_into().ok()?);
    if xxhash_rust::xxh3::xxh3_64(&bytes[..end]) != check {
        return None;
    }
    let summary = serde_json::from_slice(&bytes[28..end]).ok()?;
    Some((hash, summary, end + 8))
}
