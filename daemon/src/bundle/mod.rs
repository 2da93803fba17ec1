//! Model bundles: one signed file (`.flb`, a canonical ustar archive) holding
//! the model, its manifest, golden cases and model card. A [`Bundle`] exists
//! only for a file that passed every check.

mod build;
mod container;
mod keys;
mod manifest;
mod signature;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

pub use build::{build, BuildError};
pub use container::{ContainerError, MAX_BUNDLE_BYTES};
pub use keys::{
    KeyError, KeyId, PublicKey, SecretKey, TrustStore, TrustedKey, DEMO_VENDOR_KEY_NAME,
    DEMO_VENDOR_PUBLIC_KEY,
};
pub use manifest::{
    Aggregation, AggregationRule, Applicability, ChannelWindow, Code, DType, FileEntry, Finding,
    Golden, GoldenCase, Manifest, ManifestError, OperatingPoint, Preprocessing, ReferenceStats,
    Role, RouteError, Tensor, Window, WindowKind, FORMAT, MAX_MANIFEST_BYTES,
};

use signature::SignatureFile;

/// The first entry of a bundle.
pub const MANIFEST: &str = "manifest.toml";
/// The last entry of a bundle.
pub const SIGNATURE: &str = "signature.toml";
/// The usual extension of a bundle file.
pub const EXTENSION: &str = "flb";

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("not a firstlook bundle: {0}")]
    Layout(&'static str),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: listed in manifest.toml but missing from the bundle")]
    MissingFile { path: String },
    #[error("{path}: in the bundle but not listed in manifest.toml")]
    UnlistedFile { path: String },
    #[error("{path}: {actual} bytes but manifest.toml says {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: sha256 mismatch")]
    HashMismatch { path: String },
    #[error("signature.toml: {0}")]
    SignatureFile(String),
    #[error("signed by unknown key {key_id}")]
    UnknownKey { key_id: KeyId },
    #[error("signature does not verify")]
    BadSignature,
    #[error("signed with the public demo TEST key but manifest.toml says clinical_use = true")]
    DemoKeyClinicalUse,
}

/// A verified bundle: container canonical, manifest valid, every file listed
/// and matching, signature good under a trusted key.
#[derive(Clone)]
pub struct Bundle {
    bytes: Vec<u8>,
    manifest: Manifest,
    /// Where each of `manifest.files` lies in `bytes`, in the same order.
    files: Vec<Range<usize>>,
    signer: TrustedKey,
    sha256: [u8; 32],
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .field("signer", &self.signer)
            .field("sha256", &self.sha256_hex())
            .finish_non_exhaustive()
    }
}

/// The demo bundle, built into the binary: the model used when
/// `[triage] bundle` is not set. Trained on synthetic data; not for clinical use.
pub const EMBEDDED_DEMO: &[u8] = include_bytes!("../../../models/demo/firstlook-demo.flb");

impl Bundle {
    /// The embedded demo bundle, verified like any other against the demo
    /// vendor key.
    pub fn embedded_demo() -> Result<Bundle, BundleError> {
        Bundle::verify(EMBEDDED_DEMO.to_vec(), &TrustStore::demo())
    }

    /// Reads and verifies a bundle file.
    pub fn open(path: &Path, trust: &TrustStore) -> Result<Bundle, BundleError> {
        let io_error = |source| BundleError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_error)?;
        let size = file.metadata().map_err(io_error)?.len();
        if size > MAX_BUNDLE_BYTES as u64 {
            return Err(ContainerError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: MAX_BUNDLE_BYTES,
            }
            .into());
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_BUNDLE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        Bundle::verify(bytes, trust)
    }

    /// Verifies a bundle held in memory: container, signature, manifest,
    /// then files.
    pub fn verify(bytes: Vec<u8>, trust: &TrustStore) -> Result<Bundle, BundleError> {
        let (manifest, files, signer) = {
            let entries = container::decode(&bytes)?;
            let (first, rest) = entries
                .split_first()
                .ok_or(BundleError::Layout("the archive is empty"))?;
            if first.name != MANIFEST {
                return Err(BundleError::Layout("the first entry must be manifest.toml"));
            }
            let Some((last, body)) = rest.split_last().filter(|(l, _)| l.name == SIGNATURE) else {
                return Err(BundleError::Layout("the last entry must be signature.toml"));
            };
            // The signature first: nothing unsigned is parsed beyond the
            // container and the signature file itself.
            let signature = SignatureFile::parse(last.data).map_err(BundleError::SignatureFile)?;
            let signer = trust
                .find(&signature.key_id)
                .ok_or(BundleError::UnknownKey {
                    key_id: signature.key_id,
                })?;
            if !signature.verifies(first.data, &signer.key) {
                return Err(BundleError::BadSignature);
            }
            let manifest = Manifest::from_toml_bytes(first.data)?;
            let files = check_files(&manifest, body)?;
            (manifest, files, signer.clone())
        };
        if manifest.clinical_use && signer.key == PublicKey::demo_vendor() {
            return Err(BundleError::DemoKeyClinicalUse);
        }
        let sha256 = Sha256::digest(&bytes).into();
        Ok(Bundle {
            bytes,
            manifest,
            files,
            signer,
            sha256,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `manifest.toml` as it stands in the file (the first member).
    pub fn manifest_toml(&self) -> &[u8] {
        container::decode(&self.bytes)
            .ok()
            .and_then(|entries| entries.first().map(|e| e.data))
            .unwrap_or_default()
    }

    /// The contents of a listed file.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        let i = self.manifest.files.iter().position(|f| f.path == path)?;
        Some(&self.bytes[self.files[i].clone()])
    }

    fn file_with_role(&self, role: Role) -> Option<&[u8]> {
        let i = self.manifest.files.iter().position(|f| f.role == role)?;
        Some(&self.bytes[self.files[i].clone()])
    }

    /// The model (role `model`).
    pub fn model_bytes(&self) -> &[u8] {
        self.file_with_role(Role::Model).unwrap_or_default()
    }

    /// The int8 model (role `model_int8`), when the bundle has one.
    pub fn int8_model_bytes(&self) -> Option<&[u8]> {
        self.file_with_role(Role::ModelInt8)
    }

    /// The model card, named by `model_card` in the manifest.
    pub fn model_card(&self) -> &[u8] {
        self.file(&self.manifest.model_card).unwrap_or_default()
    }

    /// The trusted key that signed the bundle.
    pub fn signer(&self) -> &TrustedKey {
        &self.signer
    }

    pub fn key_id(&self) -> KeyId {
        self.signer.key.key_id()
    }

    /// sha256 of the whole bundle file, for audit and traceability.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The whole bundle file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Every entry listed, every listed file present with its size and sha256,
/// in the manifest's order. Returns where each listed file lies.
fn check_files(
    manifest: &Manifest,
    body: &[container::Entry<'_>],
) -> Result<Vec<Range<usize>>, BundleError> {
    if let Some(e) = body.iter().find(|e| manifest.file(e.name).is_none()) {
        return Err(BundleError::UnlistedFile {
            path: e.name.to_owned(),
        });
    }
    let mut ranges = Vec::with_capacity(manifest.files.len());
    for listed in &manifest.files {
        let Some(entry) = body.iter().find(|e| e.name == listed.path) else {
            return Err(BundleError::MissingFile {
                path: listed.path.clone(),
            });
        };
        let actual = entry.data.len() as u64;
        if actual != listed.size {
            return Err(BundleError::SizeMismatch {
                path: listed.path.clone(),
                expected: listed.size,
                actual,
            });
        }
        if hex::encode(Sha256::digest(entry.data)) != listed.sha256 {
            return Err(BundleError::HashMismatch {
                path: listed.path.clone(),
            });
        }
        ranges.push(entry.offset..entry.offset + entry.data.len());
    }
    if body
        .iter()
        .zip(&manifest.files)
        .any(|(e, f)| e.name != f.path)
    {
        return Err(BundleError::Layout(
            "the files are not in the order of the manifest's [[files]]",
        ));
    }
    Ok(ranges)
}
