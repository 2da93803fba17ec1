//! Re-encoding between the uncompressed transfer syntaxes, for a PACS that
//! does not accept the syntax an instance was stored in. Pixel data is not
//! touched; compressed syntaxes are never transcoded.

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Why a data set could not be re-encoded.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// One of the syntaxes is unknown or not a native one.
    #[error("cannot transcode from {from} to {to}")]
    Unsupported { from: String, to: String },
    /// The data set could not be parsed or written.
    #[error("transcoding failed: {0}")]
    Codec(String),
}

pub fn native(dataset: &[u8], from: &str, to: &str) -> Result<Vec<u8>, TranscodeError> {
    let unsupported = || TranscodeError::Unsupported {
        from: from.to_string(),
        to: to.to_string(),
    };
    if !crate::dataset::Encoding::is_native_uid(from)
        || !crate::dataset::Encoding::is_native_uid(to)
    {
        return Err(unsupported());
    }
    let from_ts = TransferSyntaxRegistry.get(from).ok_or_else(unsupported)?;
    let to_ts = TransferSyntaxRegistry.get(to).ok_or_else(unsupported)?;
    let obj = InMemDicomObject::read_dataset_with_ts(dataset, from_ts)
        .map_err(|e| TranscodeError::Codec(e.to_string()))?;
    let mut out = Vec::with_capacity(dataset.len() + 1024);
    obj.write_dataset_with_ts(&mut out, to_ts)
        .map_err(|e| TranscodeError::Codec(e.to_string()))?;
    Ok(out)
}
