//! Building a bundle from a staging folder: `manifest.toml` (without
//! `[[files]]`), the model, the model card, `golden/` and any other files.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::container::{self, check_path, MAX_BUNDLE_BYTES};
use super::keys::{SecretKey, TrustStore};
use super::manifest::{FileEntry, Manifest, ManifestError, Role, MAX_MANIFEST_BYTES};
use super::signature::SignatureFile;
use super::{Bundle, BundleError, MANIFEST, SIGNATURE};

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Staging { path: PathBuf, reason: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("the bundle would be larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the manifest reads back differently after writing it as TOML")]
    RoundTrip,
    #[error("the built bundle does not verify: {0}")]
    SelfCheck(#[from] BundleError),
}

/// Builds and signs a bundle from `staging_dir`. The same folder and key give
/// the same bytes.
pub fn build(staging_dir: &Path, key: &SecretKey) -> Result<Vec<u8>, BuildError> {
    let manifest_bytes = read_file(&staging_dir.join(MANIFEST), MAX_MANIFEST_BYTES)?;
    let mut manifest = Manifest::parse_unvalidated(&manifest_bytes)?;
    let files = collect(staging_dir)?;
    manifest.files = files
        .iter()
        .map(|(path, data)| FileEntry {
            path: path.clone(),
            role: role_of(path, &manifest.model_card),
            sha256: hex::encode(Sha256::digest(data)),
            size: data.len() as u64,
        })
        .collect();
    manifest.validate()?;
    let text = manifest.to_toml()?;
    if Manifest::from_toml_bytes(text.as_bytes())? != manifest {
        return Err(BuildError::RoundTrip);
    }

    let signature = SignatureFile::sign(text.as_bytes(), key).to_toml();
    let mut entries: Vec<(&str, &[u8])> = vec![(MANIFEST, text.as_bytes())];
    entries.extend(files.iter().map(|(p, d)| (p.as_str(), d.as_slice())));
    entries.push((SIGNATURE, signature.as_bytes()));
    let bytes = container::encode(&entries);
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(BuildError::TooLarge {
            limit: MAX_BUNDLE_BYTES,
        });
    }

    let mut own = TrustStore::new();
    own.add("signing key", key.public_key());
    Ok(Bundle::verify(bytes, &own)?.into_bytes())
}

fn role_of(path: &str, model_card: &str) -> Role {
    match path {
        "model.onnx" => Role::Model,
        "model.int8.onnx" => Role::ModelInt8,
        _ if path.starts_with("golden/") => Role::Golden,
        _ if path == model_card => Role::ModelCard,
        _ => Role::Other,
    }
}

/// Reads at most `limit + 1` bytes, so that the caller can tell a file over
/// the limit.
fn read_file(path: &Path, limit: usize) -> Result<Vec<u8>, BuildError> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut data))
        .map_err(|source| BuildError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(data)
}

/// Every file of the staging folder but the manifest, sorted by path.
fn collect(staging_dir: &Path) -> Result<Vec<(String, Vec<u8>)>, BuildError> {
    let mut files = Vec::new();
    let mut budget = MAX_BUNDLE_BYTES;
    for (name, path) in list(staging_dir)? {
        let staging = |reason: &str| BuildError::Staging {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        let meta = std::fs::symlink_metadata(&path).map_err(|source| BuildError::Io {
            path: path.clone(),
            source,
        })?;
        if name == MANIFEST {
            continue;
        }
        if name == SIGNATURE {
            return Err(staging(
                "signature.toml is written by signing; remove it from the staging folder",
            ));
        }
        if meta.is_dir() && name == "golden" {
            for (inner, inner_path) in list(&path)? {
                let meta =
                    std::fs::symlink_metadata(&inner_path).map_err(|source| BuildError::Io {
                        path: inner_path.clone(),
                        source,
                    })?;
                if !meta.is_file() {
                    return Err(BuildError::Staging {
                        path: inner_path,
                        reason: "golden/ may hold only regular files".to_owned(),
                    });
                }
                let name = format!("golden/{inner}");
                files.push(read_entry(name, &inner_path, &mut budget)?);
            }
        } else if meta.is_dir() {
            return Err(staging("golden/ is the only folder a bundle may have"));
        } else if meta.is_file() {
            files.push(read_entry(name, &path, &mut budget)?);
        } else {
            return Err(staging(
                "not a regular file (links and special files are not followed)",
            ));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>, BuildError> {
    let io_error = |source| BuildError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BuildError::Staging {
                path: path.clone(),
                reason: "file name is not UTF-8".to_owned(),
            })?
            .to_owned();
        out.push((name, path));
    }
    out.sort();
    Ok(out)
}

fn read_entry(
    name: String,
    path: &Path,
    budget: &mut usize,
) -> Result<(String, Vec<u8>), BuildError> {
    check_path(&name).map_err(|reason| BuildError::Staging {
        path: path.to_owned(),
        reason: reason.to_owned(),
    })?;
    let data = read_file(path, *budget)?;
    *budget = budget.checked_sub(data.len()).ok_or(BuildError::TooLarge {
        limit: MAX_BUNDLE_BYTES,
    })?;
    Ok((name, data))
}
