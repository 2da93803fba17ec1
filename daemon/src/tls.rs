//! TLS, set up one way for every socket that uses it: DICOM ingest and
//! forwarding, the panel's HTTPS and the audit repository. rustls offers
//! TLS 1.2 and 1.3 only, with forward-secret AEAD cipher suites, which is
//! what the BCP 195 profiles of DICOM PS3.15 ask for.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] crate::pem::PemError),
    #[error("{what}: {reason}")]
    Config { what: &'static str, reason: String },
    #[error("\"{0}\" is not a host name or address a certificate can be checked against")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file, as trust anchors.
fn roots(ca_file: &Path, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in crate::pem::certificates(ca_file)? {
        roots.add(cert).map_err(|e| TlsError::Config {
            what,
            reason: format!("{}: {e}", ca_file.display()),
        })?;
    }
    Ok(roots)
}

/// A server presenting `cert` (PEM chain) and `key`; with `client_ca`,
/// every peer must present a certificate signed by one of those CAs.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    what: &'static str,
) -> Result<TlsAcceptor, TlsError> {
    let fail = |e: rustls::Error| TlsError::Config {
        what,
        reason: e.to_string(),
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(fail)?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca, what)?), provider())
                    .build()
                    .map_err(|e| TlsError::Config {
                        what,
                        reason: e.to_string(),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(
            crate::pem::certificates(cert)?,
            crate::pem::private_key(key)?,
        )
        .map_err(fail)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a client needs to reach one server over TLS.
#[derive(Debug, Clone, Copy)]
pub struct ClientFiles<'a> {
    /// PEM certificates of the CAs trusted to sign the server's certificate.
    pub ca_file: &'a Path,
    /// A certificate chain and key to present, when the server asks.
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
}

/// A TLS client for one server: whom it trusts, what it presents, and the
/// name the server's certificate must carry.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(
        files: ClientFiles<'_>,
        server_name: &str,
        what: &'static str,
    ) -> Result<Client, TlsError> {
        let fail = |e: rustls::Error| TlsError::Config {
            what,
            reason: e.to_string(),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(fail)?
            .with_root_certificates(roots(files.ca_file, what)?);
        let config = match (files.client_cert, files.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    crate::pem::certificates(cert)?,
                    crate::pem::private_key(key)?,
                )
                .map_err(fail)?,
            _ => builder.with_no_client_auth(),
        };
        let server_name = ServerName::try_from(server_name)
            .map_err(|_| TlsError::ServerName(server_name.to_string()))?
            .to_owned();
        Ok(Client {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The TLS handshake over a connected socket, within `timeout`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        tokio::time::timeout(
            timeout,
            self.connector.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }
}
