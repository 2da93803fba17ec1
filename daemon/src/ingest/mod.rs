//! The Storage SCP: accepts associations from configured scanners, answers
//! C-ECHO, and streams each C-STORE into the spool, acknowledging only what
//! is durable.

mod association;
mod policy;
pub mod sop_classes;
mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::spool::Spool;

pub use policy::{negotiate, AcceptedContext, Load};

/// Connections still to send their A-ASSOCIATE-RQ, at most: a peer that
/// opens sockets and stalls cannot take the association slots scanners need,
/// only these, each for at most ARTIM.
const HANDSHAKES: usize = 256;

/// What every association needs.
pub struct Ingest {
    pub config: Arc<Config>,
    pub spool: Arc<Spool>,
    pub audit: AuditLog,
    /// Associations (counted once their request has arrived).
    slots: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    next_id: AtomicU64,
}

impl Ingest {
    pub fn new(config: Arc<Config>, spool: Arc<Spool>, audit: AuditLog) -> Arc<Ingest> {
        let slots = Arc::new(Semaphore::new(config.node.max_associations.get() as usize));
        Arc::new(Ingest {
            config,
            spool,
            audit,
            slots,
            handshakes: Arc::new(Semaphore::new(HANDSHAKES)),
            next_id: AtomicU64::new(1),
        })
    }

    /// Accepts connections until `shutdown` turns true.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
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
            let span = tracing::info_span!("association", id, peer = %peer);
            tokio::spawn(
                async move {
                    association::run(this, stream, peer, handshake).await;
                }
                .instrument(span),
            );
        }
    }
}
