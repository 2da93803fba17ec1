//! The audit trail, in the spirit of IHE ATNA (DICOM PS3.15 A.5): who did
//! what and when, as RFC 5424 syslog lines carrying DICOM audit message
//! XML, appended to a local file and, when configured, sent to the
//! hospital's audit repository over TLS.
//!
//! Recording never waits: records go through a bounded queue to a writer
//! thread; when it is full they are counted and the count is itself audited.

mod changes;
mod log_file;
mod message;
pub mod refusals;
mod remote;
mod syslog;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::spool::now_ms;

pub use changes::{note_bundle, note_config};

/// Records waiting for the writer thread, at most.
const QUEUE: usize = 8192;
/// Records the writer takes in one batch (one write, one sync).
const BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Remote(#[from] crate::tls::TlsError),
}

/// How an audited event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused or partly failed, with why.
    MinorFailure(String),
    /// Failed in a way that needs attention, with why.
    SeriousFailure(String),
}

/// Instances by study, then by SOP class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Studies(pub BTreeMap<String, BTreeMap<String, u32>>);

impl Studies {
    pub fn add(&mut self, study_uid: Option<&str>, sop_class_uid: &str) {
        let study = study_uid.unwrap_or("unknown");
        let classes = match self.0.get_mut(study) {
            Some(c) => c,
            None => self.0.entry(study.to_string()).or_default(),
        };
        match classes.get_mut(sop_class_uid) {
            Some(n) => *n += 1,
            None => {
                classes.insert(sop_class_uid.to_string(), 1);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What is audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ApplicationStart,
    ApplicationStop,
    /// An A-ASSOCIATE-RQ answered: accepted, or rejected with why.
    Association {
        peer: SocketAddr,
        calling_ae: String,
        outcome: Outcome,
    },
    /// What one association stored.
    Received {
        peer: SocketAddr,
        calling_ae: String,
        studies: Studies,
        outcome: Outcome,
    },
    /// What one association to a destination delivered.
    Sent {
        destination: String,
        called_ae: String,
        address: String,
        studies: Studies,
        outcome: Outcome,
    },
    Login {
        user: String,
        peer: Option<IpAddr>,
        outcome: Outcome,
    },
    Logout {
        user: String,
        peer: Option<IpAddr>,
    },
    /// A model bundle put to use that differs from the last one (installed,
    /// or rolled back to), or one that could not be used.
    Bundle {
        path: String,
        name: String,
        sha256: String,
        previous: Option<String>,
        /// It is the bundle used before the previous one.
        rollback: bool,
        outcome: Outcome,
    },
    /// The configuration differs from the one of the last start.
    Config {
        path: String,
        sha256: String,
        previous_sha256: Option<String>,
    },
    /// Records dropped because the queue was full.
    Lost {
        count: u64,
    },
}

/// Who records: this node.
#[derive(Debug, Clone)]
pub struct Source {
    pub ae_title: String,
    pub hostname: String,
    pub pid: u32,
    pub site: Option<String>,
}

impl Source {
    pub fn of(config: &Config) -> Source {
        Source {
            ae_title: config.node.ae_title.as_str().to_string(),
            hostname: crate::host::name().unwrap_or_default(),
            pid: std::process::id(),
            site: config.audit.enterprise_site_id.clone(),
        }
    }

    fn audit_source_id(&self) -> String {
        match self.hostname.is_empty() {
            true => self.ae_title.clone(),
            false => format!("{}@{}", self.ae_title, self.hostname),
        }
    }
}

enum Msg {
    Record(Box<Event>, i64),
    Flush(oneshot::Sender<()>),
}

/// Where events are recorded; cheap to clone. [`AuditLog::off`] records nothing.
#[derive(Clone)]
pub struct AuditLog {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    pub fn off() -> AuditLog {
        AuditLog {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Opens the audit file and starts the writer (and the forwarder to the
    /// audit repository, when configured). Needs a Tokio runtime.
    pub fn start(config: &Config) -> Result<AuditLog, AuditError> {
        let cfg = &config.audit;
        if !cfg.enabled {
            return Ok(AuditLog::off());
        }
        let path = cfg.file_in(&config.node.spool_dir);
        let file = log_file::AuditFile::open(
            &path,
            cfg.max_file_mb.get() << 20,
            cfg.keep_files.get() as u32,
        )
        .map_err(|source| AuditError::File {
            path: path.display().to_string(),
            source,
        })?;
        let forward = match &cfg.syslog_tls {
            Some(s) => {
                let remote = remote::Remote::new(s)?;
                let (tx, rx) = mpsc::channel(remote::QUEUE);
                let skipped = Arc::clone(&remote.skipped);
                tokio::spawn(remote.run(rx));
                Some((tx, skipped))
            }
            None => None,
        };
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            file,
            forward,
            source: Source::of(config),
            dropped: Arc::clone(&dropped),
        };
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| AuditError::File {
                path: path.display().to_string(),
                source,
            })?;
        Ok(AuditLog {
            tx: Some(tx),
            dropped,
        })
    }

    /// Records `event` now; never waits.
    pub fn record(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Record(Box::new(event), now_ms())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits (a few seconds at most) until everything recorded so far is in
    /// the audit file.
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut msg = Msg::Flush(done);
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if tokio::time::Instant::now() < deadline => {
                    msg = m;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => return,
            }
        }
        let _ = tokio::time::timeout_at(deadline, wait).await;
    }
}

struct Writer {
    file: log_file::AuditFile,
    forward: Option<(mpsc::Sender<String>, Arc<AtomicU64>)>,
    source: Source,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let mut lines = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next {
                match msg {
                    Msg::Record(event, at) => lines.push(self.line(&event, at)),
                    Msg::Flush(done) => flushes.push(done),
                }
                next = if lines.len() < BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            let lost = self.dropped.swap(0, Ordering::Relaxed);
            if lost > 0 {
                lines.push(self.line(&Event::Lost { count: lost }, now_ms()));
            }
            if let Err(e) = self.file.append(&lines) {
                tracing::error!(message = "cannot write the audit file; these records are lost", records = lines.len(), error = %e);
            }
            if let Some((tx, skipped)) = &self.forward {
                for l in lines {
                    if tx.try_send(l).is_err() {
                        skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    fn line(&self, event: &Event, at_ms: i64) -> String {
        let at = syslog::timestamp(at_ms);
        let xml = message::xml(event, &at, &self.source);
        syslog::line(
            &message::outcome(event),
            &at,
            &self.source.hostname,
            self.source.pid,
            &xml,
        )
    }
}

/// The default audit file: in the spool folder (the daemon's writable state).
pub fn default_file(spool_dir: &Path) -> std::path::PathBuf {
    spool_dir.join("audit.log")
}

#[cfg(test)]
mod tests;
