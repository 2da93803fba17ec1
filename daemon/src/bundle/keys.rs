//! ed25519 keys as one-line text files, and the set of keys a box trusts.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The demo vendor's public key: a deliberately public TEST key whose secret
/// half is in the repository. Only the embedded demo defaults trust it.
pub const DEMO_VENDOR_PUBLIC_KEY: &str =
    include_str!("../../../models/demo/keys/demo-vendor-TEST-KEY-NOT-SECRET.pub");
/// The name [`TrustStore::demo`] gives the demo vendor key.
pub const DEMO_VENDOR_KEY_NAME: &str = "demo-vendor-TEST-KEY";

const SECRET_PREFIX: &str = "firstlook-ed25519-secret:";
const PUBLIC_PREFIX: &str = "firstlook-ed25519-public:";
const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<KeyError>,
    },
    #[error("not a {expected} key file: expected one line `{prefix}<64 hex digits>`{hint}")]
    Format {
        expected: &'static str,
        prefix: &'static str,
        hint: &'static str,
    },
    #[error("not a valid ed25519 public key")]
    InvalidPublicKey,
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// The first 8 bytes of sha256(public key); names a key in `signature.toml`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A signing key. Its `Debug` shows only the key id.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public_key().key_id())
    }
}

impl SecretKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SecretKey::from_bytes(seed))
    }

    pub fn from_bytes(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// `firstlook-ed25519-secret:<hex>` and a newline.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", hex::encode(self.0.to_bytes()))
    }

    pub fn from_text(text: &str) -> Result<SecretKey, KeyError> {
        parse_line(text, "secret", SECRET_PREFIX, PUBLIC_PREFIX).map(SecretKey::from_bytes)
    }

    pub fn load(path: &Path) -> Result<SecretKey, KeyError> {
        in_file(
            path,
            read_key_file(path).and_then(|t| SecretKey::from_text(&t)),
        )
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidPublicKey)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn key_id(&self) -> KeyId {
        let digest: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }

    /// `firstlook-ed25519-public:<hex>` and a newline.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}\n", hex::encode(self.0.as_bytes()))
    }

    pub fn from_text(text: &str) -> Result<PublicKey, KeyError> {
        PublicKey::from_bytes(parse_line(text, "public", PUBLIC_PREFIX, SECRET_PREFIX)?)
    }

    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        in_file(
            path,
            read_key_file(path).and_then(|t| PublicKey::from_text(&t)),
        )
    }

    /// The demo vendor's TEST key, [`DEMO_VENDOR_PUBLIC_KEY`].
    pub fn demo_vendor() -> PublicKey {
        PublicKey::from_text(DEMO_VENDOR_PUBLIC_KEY).expect("the embedded demo key parses")
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

/// A public key a box accepts bundles from, with a name for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub name: String,
    pub key: PublicKey,
}

/// The public keys a box accepts bundles from.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
}

impl TrustStore {
    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Trusts only the demo vendor's public TEST key; for the embedded demo
    /// defaults, never for a site.
    pub fn demo() -> TrustStore {
        let mut store = TrustStore::new();
        store.add(DEMO_VENDOR_KEY_NAME, PublicKey::demo_vendor());
        store
    }

    /// The keys in `paths` (one-line public key files, each named by its file
    /// stem); without any, [`TrustStore::demo`].
    pub fn from_key_files(paths: &[PathBuf]) -> Result<TrustStore, KeyError> {
        if paths.is_empty() {
            return Ok(TrustStore::demo());
        }
        let mut store = TrustStore::new();
        for path in paths {
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            store.add(name, PublicKey::load(path)?);
        }
        Ok(store)
    }

    /// Adds a key; a key already trusted keeps its first name.
    pub fn add(&mut self, name: impl Into<String>, key: PublicKey) {
        if !self.keys.iter().any(|k| k.key == key) {
            self.keys.push(TrustedKey {
                name: name.into(),
                key,
            });
        }
    }

    pub fn find(&self, id: &KeyId) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.key.key_id() == *id)
    }

    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn parse_line(
    text: &str,
    expected: &'static str,
    prefix: &'static str,
    other_prefix: &'static str,
) -> Result<[u8; 32], KeyError> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let hint = if line.starts_with(other_prefix) {
        if expected == "secret" {
            " (this is a public key file)"
        } else {
            " (this is a secret key file)"
        }
    } else {
        ""
    };
    let error = || KeyError::Format {
        expected,
        prefix,
        hint,
    };
    let hex_part = line.strip_prefix(prefix).ok_or_else(error)?;
    let mut bytes = [0u8; 32];
    if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut bytes).is_err() {
        return Err(error());
    }
    Ok(bytes)
}

/// A file that is not UTF-8 reads as empty, and so fails as the wrong format.
fn read_key_file(path: &Path) -> Result<String, KeyError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(String::from_utf8(bytes).unwrap_or_default())
}

fn in_file<T>(path: &Path, result: Result<T, KeyError>) -> Result<T, KeyError> {
    result.map_err(|e| match e {
        KeyError::Io { .. } => e,
        other => KeyError::InFile {
            path: path.to_owned(),
            source: Box::new(other),
        },
    })
}
