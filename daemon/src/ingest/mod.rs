//! The Storage SCP: accepts associations from configured scanners, answers
//! C-ECHO, and streams each C-STORE into the spool, acknowledging only what
//! is durable.

mod association;
mod policy;
pub mod sop_classes;
mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::audit::refusals::{self, Refusals};
use crate::audit::{AuditLog, Event, Outcome};
use crate::config::Config;
use crate::liveness::Liveness;
use crate::spool::Spool;
use crate::ul::{PduReader, PduWriter};

pub use policy::{negotiate, AcceptedContext, Load};

/// Connections still to send their A-ASSOCIATE-RQ, at most: a peer that
/// opens sockets and stalls cannot take the association slots scanners need,
/// only these, each for at most ARTIM.
const HANDSHAKES: usize = 256;

/// The accept loop never stays busy: only its end is watched.
const ACCEPT_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Making a received instance durable (segment sync, index commit) takes
/// milliseconds on healthy storage; this long means the disk has hung.
const STORE_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// What every association needs.
pub struct Ingest {
    pub config: Arc<Config>,
    pub spool: Arc<Spool>,
    pub audit: AuditLog,
    /// Associations (counted once their request has arrived).
    slots: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    refusals: Refusals,
    next_id: AtomicU64,
    liveness: Arc<Liveness>,
}

impl Ingest {
    pub fn new(
        config: Arc<Config>,
        spool: Arc<Spool>,
        audit: AuditLog,
        liveness: Arc<Liveness>,
    ) -> Arc<Ingest> {
        let slots = Arc::new(Semaphore::new(config.node.max_associations.get() as usize));
        Arc::new(Ingest {
            config,
            spool,
            audit,
            slots,
            handshakes: Arc::new(Semaphore::new(HANDSHAKES)),
            refusals: Refusals::default(),
            next_id: AtomicU64::new(1),
            liveness,
        })
    }

    /// Accepts connections until `shutdown` turns true; with `tls`, each
    /// connection first completes a TLS handshake, within ARTIM. At
    /// shutdown, associations finish the C-STORE under way and are aborted.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let where_ = listener
            .local_addr()
            .map_or_else(|_| "ingest".to_string(), |a| format!("ingest on {a}"));
        let _alive = self.liveness.lifelong(where_, ACCEPT_LIMIT);
        let mut tally = tokio::time::interval(refusals::WINDOW / 4);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tally.tick() => {
                    self.record_suppressed(Some(std::time::Instant::now()));
                    continue;
                }
                _ = shutdown.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(message = "accept failed", error = %e);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!(message = "cannot set TCP_NODELAY", error = %e);
            }
            let Ok(handshake) = Arc::clone(&self.handshakes).try_acquire_owned() else {
                tracing::debug!(message = "too many connections without an association request: closed", %peer);
                drop(stream);
                continue;
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let this = Arc::clone(&self);
            let span = tracing::info_span!("association", id, peer = %peer, tls = tls.is_some());
            let tls = tls.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(
                async move {
                    let Some(conn) = this.secure(stream, peer, tls).await else {
                        return;
                    };
                    association::run(this, conn, peer, handshake, shutdown).await;
                }
                .instrument(span),
            );
        }
        self.record_suppressed(None);
    }

    /// Audits a connection or association refused before any data, unless
    /// its address has had its share of records this window (then it is
    /// counted, and the count audited when the window ends).
    pub fn refused(&self, peer: SocketAddr, calling_ae: &str, why: String) {
        if self.refusals.admit(peer.ip(), std::time::Instant::now()) {
            tracing::warn!(message = "connection refused", calling_ae = %calling_ae, why = %why);
            self.audit.record(Event::Association {
                peer,
                calling_ae: calling_ae.to_string(),
                outcome: Outcome::MinorFailure(why),
            });
        } else {
            tracing::debug!(message = "connection refused (not audited one by one)", calling_ae = %calling_ae, why = %why);
        }
    }

    /// Audits the counts of refusals not recorded one by one, for the
    /// windows ended by `now` (all of them with `None`).
    fn record_suppressed(&self, now: Option<std::time::Instant>) {
        for s in self.refusals.ended(now) {
            let why = s.describe();
            tracing::warn!(message = "refused connections", peer = %s.peer, count = s.count, why = %why);
            self.audit.record(Event::Association {
                peer: SocketAddr::new(s.peer, 0),
                calling_ae: String::new(),
                outcome: Outcome::MinorFailure(why),
            });
        }
    }

    /// The connection's two directions, after the TLS handshake where there
    /// is one; a failed handshake is logged and audited, and ends it.
    async fn secure(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) -> Option<Connection> {
        let artim = self.config.node.artim_timeout();
        let Some(acceptor) = tls else {
            let (reader, writer) = crate::ul::tcp(stream);
            return Some(Connection {
                reader,
                writer,
                over_tls: false,
                artim_left: artim,
            });
        };
        let started = tokio::time::Instant::now();
        let failed = match tokio::time::timeout(artim, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let (reader, writer) = crate::ul::split(tls);
                return Some(Connection {
                    reader,
                    writer,
                    over_tls: true,
                    // The handshake and the A-ASSOCIATE-RQ share one ARTIM.
                    artim_left: artim.saturating_sub(started.elapsed()),
                });
            }
            Ok(Err(e)) => format!("TLS handshake failed: {e}"),
            Err(_) => format!("no TLS handshake within {artim:?}"),
        };
        self.refused(peer, "", failed);
        None
    }
}

/// An accepted connection, ready for its A-ASSOCIATE-RQ.
pub struct Connection {
    pub reader: PduReader,
    pub writer: PduWriter,
    pub over_tls: bool,
    /// What is left of ARTIM for the A-ASSOCIATE-RQ.
    pub artim_left: std::time::Duration,
}
