//! Start-up and shutdown: one code path for the binary, the demo and tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::{self, AuditLog, Event};
use crate::config::Config;
use crate::forward;
use crate::inference::{self, DecisionEvent, Events};
use crate::ingest::Ingest;
use crate::liveness::{Beat, Liveness};
use crate::spool::{RecoveryReport, Spool, SpoolError, SpoolOptions};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spool could not be opened or recovered.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The DICOM port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Started as root, it could not become `node.run_as`.
    #[error(transparent)]
    Privileges(#[from] crate::privileges::PrivilegeError),
    /// The audit trail could not be started.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The DICOM TLS listener's certificate, key or client CAs are unusable.
    #[error("[node.tls]: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A destination's TLS settings are unusable.
    #[error(transparent)]
    DestinationTls(#[from] forward::DestinationTlsError),
    /// `[triage] engine` names a backend this build or machine cannot run.
    #[error("[triage] engine = \"{engine}\": {why}")]
    Engine { engine: &'static str, why: String },
}

/// A running firstlookd.
pub struct Daemon {
    pub listen_addr: SocketAddr,
    /// Where DICOM over TLS is accepted, when `[node.tls]` is configured.
    pub tls_listen_addr: Option<SocketAddr>,
    /// Where the panel listens, when it is on and its port could be bound.
    pub panel_addr: Option<SocketAddr>,
    pub spool: Arc<Spool>,
    pub recovery: RecoveryReport,
    events: Events,
    audit: AuditLog,
    liveness: Arc<Liveness>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// One look at the disk and the spool index: milliseconds when healthy.
const SPOOL_STEP_LIMIT: Duration = Duration::from_secs(60);

impl Daemon {
    /// Binds the ports, gives up root (to `node.run_as`), recovers the
    /// spool and starts ingest, forwarding, triage, results and the panel.
    pub async fn start(config: Config) -> Result<Daemon, StartError> {
        check_engine(&config)?;
        let config = Arc::new(config);
        let addr = config.node.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let listen_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let tls_listener = match &config.node.tls {
            Some(t) => {
                let acceptor = crate::tls::acceptor(
                    &t.cert,
                    &t.key,
                    t.client_ca.as_deref(),
                    "the certificate and key do not make a TLS server",
                )?;
                let addr = t.listen;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                Some((listener, acceptor))
            }
            None => None,
        };
        let tls_listen_addr = tls_listener.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let forward_tls = forward::tls_clients(&config)?;
        let panel_socket = match config.panel.enabled {
            true => crate::panel::bind(&config).await,
            false => None,
        };
        crate::privileges::drop_to(config.node.run_as.as_deref(), &config.node.spool_dir)?;
        let opts = spool_options(&config);
        let (spool, recovery) = tokio::task::spawn_blocking(move || Spool::open(&opts))
            .await
            .expect("spool open task")?;
        tracing::info!(
            message = "spool recovered",
            segments = recovery.segments,
            reindexed = recovery.reindexed,
            duplicates = recovery.duplicates,
            torn_bytes = recovery.torn_bytes,
            resumed = recovery.resumed
        );
        if recovery.orphaned > 0 {
            tracing::warn!(
                message = "deliveries owed to destinations no longer configured: kept for the retention, then deleted unless the destination is configured again",
                deliveries = recovery.orphaned,
                retention_hours = config.spool.retention_hours.get()
            );
        }
        let audit = AuditLog::start(&config)?;
        audit.record(Event::ApplicationStart);
        if !config.source.sha256.is_empty() {
            audit::note_config(
                &audit,
                &config.node.spool_dir,
                &config.source.path,
                &config.source.sha256,
            );
        }
        if config.destinations.is_empty() {
            tracing::warn!(message = "no [[destinations]] configured: images are forwarded nowhere and kept in the spool for the retention");
        }
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let liveness = Liveness::new();
        let ingest = Ingest::new(
            Arc::clone(&config),
            Arc::clone(&spool),
            audit.clone(),
            Arc::clone(&liveness),
        );
        if let Some((listener, acceptor)) = tls_listener {
            let ingest = Arc::clone(&ingest);
            tasks.push(tokio::spawn(ingest.serve(
                listener,
                Some(acceptor),
                rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(ingest.serve(listener, None, rx.clone())));
        tasks.extend(forward::spawn_workers(
            Arc::clone(&config),
            Arc::clone(&spool),
            forward_tls,
            rx.clone(),
            audit.clone(),
            &liveness,
        ));
        tasks.push(tokio::spawn(watch_disk(
            Arc::clone(&spool),
            rx.clone(),
            liveness.lifelong("spool", SPOOL_STEP_LIMIT),
        )));
        tasks.push(tokio::spawn(retire(
            Arc::clone(&spool),
            config.spool.retention(),
            rx.clone(),
        )));
        let events = inference::events();
        let mut panel_addr = None;
        if let Some(socket) = panel_socket {
            let panel = crate::panel::Panel::new(
                Arc::clone(&config),
                Arc::clone(&spool),
                events.clone(),
                audit.clone(),
            );
            if let Some((addr, task)) = crate::panel::start(panel, socket, rx.clone()).await {
                panel_addr = Some(addr);
                tasks.push(task);
            }
        }
        if config.triage.enabled {
            tasks.extend(
                inference::start(
                    &config.triage,
                    Arc::clone(&spool),
                    events.clone(),
                    rx.clone(),
                    &audit,
                    &liveness,
                )
                .await,
            );
            tasks.extend(
                crate::results::start(Arc::clone(&config), Arc::clone(&spool), &events, rx).await,
            );
        }
        // Anything recovered is due now.
        spool.notify_work();
        tracing::info!(
            message = "firstlookd ready",
            listen = %listen_addr,
            tls_listen = ?tls_listen_addr,
            ae_title = %config.node.ae_title
        );
        Ok(Daemon {
            listen_addr,
            tls_listen_addr,
            panel_addr,
            spool,
            recovery,
            events,
            audit,
            liveness,
            shutdown,
            tasks,
        })
    }

    /// What the systemd watchdog is fed on.
    pub fn liveness(&self) -> Arc<Liveness> {
        Arc::clone(&self.liveness)
    }

    /// Turns true when the daemon starts stopping.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Every triage decision from now on, as it is stored.
    pub fn subscribe_decisions(&self) -> tokio::sync::broadcast::Receiver<Arc<DecisionEvent>> {
        self.events.subscribe()
    }

    /// Stops accepting, lets workers finish their step, and returns.
    pub async fn stop(self) {
        self.liveness.stop();
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        // Writer threads of ended associations finish their last step and let
        // go of the spool; only then is its lock released for a successor.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.spool) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.audit.record(Event::ApplicationStop);
        self.audit.flush().await;
    }
}

/// A backend the configuration insists on must be one that can run.
fn check_engine(config: &Config) -> Result<(), StartError> {
    let triage = &config.triage;
    if triage.enabled && triage.engine == crate::config::EngineChoice::Tensorrt {
        if let Some(why) = crate::model::tensorrt_unavailable() {
            return Err(StartError::Engine {
                engine: triage.engine.as_str(),
                why,
            });
        }
    }
    Ok(())
}

/// The spool a configuration describes.
pub(crate) fn spool_options(config: &Config) -> SpoolOptions {
    SpoolOptions {
        dir: config.node.spool_dir.clone(),
        destinations: config
            .destinations
            .iter()
            .map(|d| d.name.as_str().to_string())
            .collect(),
        segment_max_bytes: config.spool.segment_max_bytes(),
        high_watermark_percent: config.spool.high_watermark_percent.get(),
        low_watermark_percent: config.spool.low_watermark_percent.get(),
    }
}

/// Keeps the watermarks current, and shows the index answering.
async fn watch_disk(spool: Arc<Spool>, mut shutdown: watch::Receiver<bool>, beat: Beat) {
    loop {
        {
            let _step = beat.busy();
            spool.watermarks().check();
            if let Err(e) = spool.index().call(|_| Ok(())).await {
                tracing::warn!(message = "the spool index does not answer", error = %e);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn retire(spool: Arc<Spool>, retention: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = shutdown.changed() => return,
        }
        match spool.retire_delivered(retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(message = "retired delivered segments", count = n),
            Err(e) => tracing::warn!(message = "cannot retire segments", error = %e),
        }
    }
}
