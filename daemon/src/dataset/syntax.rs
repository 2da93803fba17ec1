//! How a transfer syntax lays out a data set, from the registry.

use dicom_encoding::transfer_syntax::{Codec, Endianness, TransferSyntaxIndex};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// The byte layout of a data set in a given transfer syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
    pub deflated: bool,
    /// Pixel Data is a sequence of fragments (compressed, or encapsulated
    /// uncompressed), not a plain value.
    pub encapsulated: bool,
}

/// A transfer syntax firstlook cannot store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// The UID is not a transfer syntax the registry knows.
    #[error("transfer syntax {0} is not known")]
    Unknown(String),
}

impl Encoding {
    pub const IMPLICIT_LE: Encoding = Encoding {
        explicit_vr: false,
        big_endian: false,
        deflated: false,
        encapsulated: false,
    };

    /// Looks a transfer syntax UID up in the registry. Every known syntax is
    /// stored as sent, whether or not we could decode its pixel data.
    pub fn of(ts_uid: &str) -> Result<Encoding, SyntaxError> {
        let uid = ts_uid.trim_end_matches(['\0', ' ']);
        let ts = TransferSyntaxRegistry
            .get(uid)
            .ok_or_else(|| SyntaxError::Unknown(uid.to_string()))?;
        Ok(Encoding {
            // Implicit VR Little Endian is the only standard implicit syntax.
            explicit_vr: uid != "1.2.840.10008.1.2",
            big_endian: ts.endianness() == Endianness::Big,
            // The only data set codecs in the standard are the deflated ones.
            deflated: matches!(ts.codec(), Codec::Dataset(_)),
            encapsulated: matches!(ts.codec(), Codec::EncapsulatedPixelData(..)),
        })
    }

    /// Is this syntax one without compression of the pixel data, so that a
    /// destination may also be offered Explicit VR Little Endian?
    pub fn is_native_uid(ts_uid: &str) -> bool {
        matches!(
            ts_uid.trim_end_matches(['\0', ' ']),
            "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_syntaxes_are_known_with_their_layout() {
        let implicit = Encoding::of("1.2.840.10008.1.2").unwrap();
        assert!(!implicit.explicit_vr && !implicit.big_endian && !implicit.deflated);
        let explicit = Encoding::of("1.2.840.10008.1.2.1\0").unwrap();
        assert!(explicit.explicit_vr && !explicit.big_endian);
        assert!(Encoding::of("1.2.840.10008.1.2.2").unwrap().big_endian);
        let deflated = Encoding::of("1.2.840.10008.1.2.1.99").unwrap();
        assert!(deflated.deflated && !deflated.encapsulated);
        for native in [
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2.2",
        ] {
            assert!(!Encoding::of(native).unwrap().encapsulated, "{native}");
        }
        for compressed in [
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.80",
            "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.91",
            "1.2.840.10008.1.2.5",
        ] {
            let e = Encoding::of(compressed).unwrap_or_else(|e| panic!("{compressed}: {e}"));
            assert!(
                e.explicit_vr && !e.deflated && e.encapsulated,
                "{compressed}"
            );
        }
        assert!(matches!(
            Encoding::of("1.2.3.4"),
            Err(SyntaxError::Unknown(_))
        ));
    }
}
