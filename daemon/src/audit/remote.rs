//! Syslog over TLS (RFC 5425) to the hospital's audit repository: records
//! are sent in order as they are written locally; while the repository is
//! unreachable they wait (up to a bound) and the connection is retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use super::syslog::frame;
use crate::config::AuditSyslog;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Records waiting for the repository, at most; past it the newest are
/// not forwarded (they stay in the local file) and are counted.
pub const QUEUE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Pem(#[from] crate::pem::PemError),
    #[error("the audit repository's TLS settings are unusable: {0}")]
    Tls(String),
    #[error("the audit repository address {0} has no host name to verify")]
    ServerName(String),
}

pub struct Remote {
    address: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    /// Records not forwarded because the queue was full.
    pub skipped: Arc<AtomicU64>,
}

impl Remote {
    pub fn new(cfg: &AuditSyslog) -> Result<Remote, RemoteError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::pem::certificates(&cfg.ca_file)? {
            roots
                .add(cert)
                .map_err(|e| RemoteError::Tls(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RemoteError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    crate::pem::certificates(cert)?,
                    crate::pem::private_key(key)?,
                )
                .map_err(|e| RemoteError::Tls(e.to_string()))?,
            _ => builder.with_no_client_auth(),
        };
        let host = cfg.address.host();
        let server_name = ServerName::try_from(cfg.server_name.as_deref().unwrap_or(host))
            .map_err(|_| RemoteError::ServerName(cfg.address.as_str().to_string()))?
            .to_owned();
        Ok(Remote {
            address: cfg.address.as_str().to_string(),
            server_name,
            connector: TlsConnector::from(Arc::new(config)),
            skipped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sends what arrives on `rx` until it closes.
    pub async fn run(self, mut rx: mpsc::Receiver<String>) {
        let mut pending: Option<String> = None;
        let mut wait = Duration::from_secs(1);
        let mut down_since_logged = false;
        loop {
            let mut stream = match self.connect().await {
                Ok(s) => {
                    if down_since_logged {
                        tracing::info!(message = "audit repository reachable again", address = %self.address);
                    }
                    down_since_logged = false;
                    wait = Duration::from_secs(1);
                    s
                }
                Err(e) => {
                    if !down_since_logged {
                        tracing::warn!(message = "cannot reach the audit repository; records wait in the local audit file", address = %self.address, error = %e);
                        down_since_logged = true;
                    }
                    if rx.is_closed() && rx.is_empty() && pending.is_none() {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                    continue;
                }
            };
            loop {
                let line = match pending.take() {
                    Some(l) => l,
                    None => match rx.recv().await {
                        Some(l) => l,
                        None => {
                            let _ = stream.shutdown().await;
                            return;
                        }
                    },
                };
                let sent =
                    tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&frame(&line))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    pending = Some(line);
                    tracing::warn!(message = "audit repository connection lost; reconnecting", address = %self.address);
                    break;
                }
            }
            let n = self.skipped.swap(0, Ordering::Relaxed);
            if n > 0 {
                tracing::warn!(message = "audit records not forwarded (queue full); they are in the local audit file", count = n);
            }
        }
    }

    async fn connect(
        &self,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Box<dyn std::error::Error + Send + Sync>>
    {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| "connection timed out")??;
        tcp.set_nodelay(true)?;
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.connector.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| "TLS handshake timed out")??;
        Ok(tls)
    }
}
