//! Deterministic UIDs and other seed-derived values.
//!
//! A UID is `2.25.<decimal of a 128-bit hash>` (ISO/IEC 9834-8 UUID-derived
//! form, at most 44 characters) of the study's namespace, the seed, a role and
//! an index.

use std::fmt::Write as _;

use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64_with_seed};

/// Implementation Class UID written in every file meta group.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.248903740782630475714840258703559125017";
/// Implementation Version Name written in every file meta group.
pub const IMPLEMENTATION_VERSION_NAME: &str = "FIRSTLOOK_PH";

/// Derives values for one study: `namespace` names everything that shapes
/// its content except the seed.
#[derive(Debug, Clone)]
pub(crate) struct Deriver {
    namespace: String,
    seed: u64,
}

impl Deriver {
    pub(crate) fn new(namespace: String, seed: u64) -> Self {
        Deriver { namespace, seed }
    }

    fn key(&self, role: &str, index: u64) -> String {
        let mut key = String::with_capacity(self.namespace.len() + role.len() + 24);
        let _ = write!(key, "{}/{}/{}", self.namespace, role, index);
        key
    }

    /// `2.25.<128-bit value>` for (role, index).
    pub(crate) fn uid(&self, role: &str, index: u64) -> String {
        let h = xxh3_128_with_seed(self.key(role, index).as_bytes(), self.seed);
        format!("2.25.{h}")
    }

    /// A 64-bit value for (role, index), e.g. to pick a date or seed noise.
    pub(crate) fn value(&self, role: &str, index: u64) -> u64 {
        xxh3_64_with_seed(self.key(role, index).as_bytes(), self.seed)
    }
}

/// Whether `uid` is a valid DICOM UID: at most 64 characters, dot-separated
/// non-empty numeric components without leading zeros.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implementation_class_uid_is_valid() {
        assert!(is_valid_uid(IMPLEMENTATION_CLASS_UID));
    }

    #[test]
    fn uid_validation_rejects_malformed_uids() {
        for bad in ["", "1..2", "1.02", ".1", "1.", "1.2a", &"1".repeat(65)] {
            assert!(!is_valid_uid(bad), "{bad:?} accepted");
        }
        for good in ["0", "1.2.840.10008.1.2.1", "2.25.0", "2.25.10"] {
            assert!(is_valid_uid(good), "{good:?} rejected");
        }
    }

    #[test]
    fn derived_uids_differ_by_role_index_and_seed() {
        let a = Deriver::new("ns".into(), 1);
        let b = Deriver::new("ns".into(), 2);
        assert_ne!(a.uid("study", 0), a.uid("series", 0));
        assert_ne!(a.uid("instance", 0), a.uid("instance", 1));
        assert_ne!(a.uid("study", 0), b.uid("study", 0));
        assert_eq!(
            a.uid("study", 0),
            Deriver::new("ns".into(), 1).uid("study", 0)
        );
        assert!(is_valid_uid(&a.uid("study", 0)));
    }
}
