//! `signature.toml`: an ed25519 signature over the domain-separated sha256 of
//! `manifest.toml`. The manifest holds every file's size and sha256, so the
//! signature covers every file.

use ed25519_dalek::{Signature, Signer};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::keys::{KeyId, PublicKey, SecretKey};

const DOMAIN: &[u8] = b"firstlook-bundle-v1\n";
const MAX_SIGNATURE_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignatureFile {
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureToml {
    algorithm: String,
    key_id: String,
    signature: String,
}

fn message(manifest: &[u8]) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(&Sha256::digest(manifest));
    m
}

impl SignatureFile {
    pub fn sign(manifest: &[u8], key: &SecretKey) -> SignatureFile {
        SignatureFile {
            key_id: key.public_key().key_id(),
            signature: key.signing_key().sign(&message(manifest)).to_bytes(),
        }
    }

    /// Strict verification: non-canonical signatures and small-order keys fail.
    pub fn verifies(&self, manifest: &[u8], key: &PublicKey) -> bool {
        key.verifying_key()
            .verify_strict(&message(manifest), &Signature::from_bytes(&self.signature))
            .is_ok()
    }

    /// The only accepted spelling of a signature file.
    pub fn to_toml(&self) -> String {
        format!(
            "algorithm = \"ed25519\"\nkey_id = \"{}\"\nsignature = \"{}\"\n",
            self.key_id,
            hex::encode(self.signature)
        )
    }

    /// Parses `signature.toml`; anything but the output of [`Self::to_toml`]
    /// is refused, with the reason.
    pub fn parse(bytes: &[u8]) -> Result<SignatureFile, String> {
        if bytes.len() > MAX_SIGNATURE_BYTES {
            return Err(format!(
                "{} bytes; the limit is {MAX_SIGNATURE_BYTES}",
                bytes.len()
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
        let raw: SignatureToml =
            toml::from_str(text).map_err(|e| super::manifest::one_line(text, &e))?;
        if raw.algorithm != "ed25519" {
            return Err(format!(
                "algorithm {:?} is not supported; expected \"ed25519\"",
                raw.algorithm
            ));
        }
        let mut key_id = [0u8; 8];
        hex::decode_to_slice(&raw.key_id, &mut key_id)
            .map_err(|_| "key_id must be 16 hex digits".to_owned())?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&raw.signature, &mut signature)
            .map_err(|_| "signature must be 128 hex digits".to_owned())?;
        let parsed = SignatureFile {
            key_id: KeyId(key_id),
            signature,
        };
        if parsed.to_toml().as_bytes() != bytes {
            return Err("not in canonical form".to_owned());
        }
        Ok(parsed)
    }
}
