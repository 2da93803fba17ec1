//! Syslog over TLS (RFC 5425) to the hospital's audit repository: records
//! are sent in order as they are written locally; while the repository is
//! unreachable they wait (up to a bound) and the connection is retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::syslog::frame;
use crate::config::AuditSyslog;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Records waiting for the repository, at most; past it the newest are
/// not forwarded (they stay in the local file) and are counted.
pub const QUEUE: usize = 10_000;

pub struct Remote {
    address: String,
    client: crate::tls::Client,
    /// Records not forwarded because the queue was full.
    pub skipped: Arc<AtomicU64>,
}

impl Remote {
    pub fn new(cfg: &AuditSyslog) -> Result<Remote, crate::tls::TlsError> {
        let files = crate::tls::ClientFiles {
            ca_file: &cfg.ca_file,
            client_cert: cfg.client_cert.as_deref(),
            client_key: cfg.client_key.as_deref(),
        };
        let server_name = cfg.server_name.as_deref().unwrap_or(cfg.address.host());
        Ok(Remote {
            address: cfg.address.as_str().to_string(),
            client: crate::tls::Client::new(
                files,
                server_name,
                "the audit repository's TLS settings are unusable",
            )?,
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
        Ok(self.client.connect(tcp, CONNECT_TIMEOUT).await?)
    }
}
