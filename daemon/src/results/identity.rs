//! The box's identity as the author of results: a device UID made once and
//! kept in the spool folder, and UIDs for the instances it writes, derived
//! from the decision they report so that writing a result again after a
//! crash gives the same instance, byte for byte.

use std::io::Write;
use std::path::Path;

use xxhash_rust::xxh3::xxh3_128;

/// Why the identity could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a device identity (expected `2.25.<number> <number>`)")]
    Malformed { path: String },
    #[error("no randomness: {0}")]
    Random(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The device observer UID.
    pub device_uid: String,
    /// Differs for every spool made, so a wiped spool (whose decision
    /// numbers start again) never reuses a UID.
    pub incarnation: u32,
}

const FILE: &str = "device-identity";

impl Identity {
    /// Reads the identity kept in `dir`, making it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(FILE);
        let shown = path.display().to_string();
        let io = |source| IdentityError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return parse(&text).ok_or(IdentityError::Malformed { path: shown });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut random = [0u8; 20];
        getrandom::fill(&mut random).map_err(|e| IdentityError::Random(e.to_string()))?;
        let id = Identity {
            device_uid: format!(
                "2.25.{}",
                u128::from_le_bytes(random[..16].try_into().expect("16 bytes"))
            ),
            incarnation: u32::from_le_bytes(random[16..].try_into().expect("4 bytes")) | 1,
        };
        let tmp = dir.join(format!("{FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        writeln!(f, "{} {}", id.device_uid, id.incarnation).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(id)
    }

    /// UID number `k` of the report that starts at decision `first`: under
    /// `root` when one is configured, else a `2.25` UUID-derived UID.
    pub fn uid(&self, root: Option<&str>, first: i64, k: u32) -> String {
        match root {
            Some(root) => format!("{root}.{}.{first}.{k}", self.incarnation),
            None => {
                let key = format!("{}:{}:{first}:{k}", self.device_uid, self.incarnation);
                // A version-4-shaped UUID from the hash, as PS3.5 B.2 allows.
                let mut v = xxh3_128(key.as_bytes());
                v &= !(0xF000u128 << 64);
                v |= 0x4000u128 << 64;
                v &= !(0xC000_0000_0000_0000u128);
                v |= 0x8000_0000_0000_0000u128;
                format!("2.25.{v}")
            }
        }
    }
}

fn parse(text: &str) -> Option<Identity> {
    let mut words = text.split_whitespace();
    let uid = words.next()?;
    let incarnation = words.next()?.parse().ok()?;
    let valid =
        uid.starts_with("2.25.") && uid.len() <= 64 && uid[5..].bytes().all(|b| b.is_ascii_digit());
    valid.then(|| Identity {
        device_uid: uid.to_string(),
        incarnation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.device_uid.len() <= 64 && a.device_uid.starts_with("2.25."));
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Identity::load_or_create(other.path()).unwrap(), a);
        std::fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::Malformed { .. })
        ));
    }

    #[test]
    fn uids_are_stable_distinct_and_valid() {
        let id = Identity {
            device_uid: "2.25.1234".into(),
            incarnation: 77,
        };
        let u = id.uid(None, 5, 1);
        assert_eq!(u, id.uid(None, 5, 1));
        assert_ne!(u, id.uid(None, 5, 2));
        assert_ne!(u, id.uid(None, 6, 1));
        for uid in [u, id.uid(Some("1.2.826.0.1.3680043.10.999"), 123_456, 4)] {
            assert!(uid.len() <= 64, "{uid}");
            assert!(uid.split('.').all(|c| !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))));
        }
        assert_eq!(id.uid(Some("1.2.3"), 9, 2), "1.2.3.77.9.2");
    }
}
