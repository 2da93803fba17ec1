//! The IO around [`crate::triage`]: a feeder reads instances from the spool
//! in arrival order into a bounded queue, inference threads score them, and
//! a collector gathers series, decides, stores decisions (append-only) and
//! announces them on a broadcast channel.
//!
//! Triage only reads the spool. Ingest never waits for it (the feeder is
//! woken, never awaited) and forwarding never looks at it, so a slow,
//! broken or absent model cannot delay an image on its way to PACS.

mod facts;
mod feed;
pub mod store;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::audit::{AuditLog, Event};
use crate::bundle::{Bundle, Manifest, TrustStore};
use crate::config::Triage as TriageConfig;
use crate::model::{Model, Variant};
use crate::spool::{now_ms, IndexError, Spool};
use crate::triage::{decide, Assembler, Decision, ModelInfo, Outcome, Unit};

/// Where TensorRT keeps the engines it builds, in the spool folder (the
/// only place firstlookd writes).
pub const ENGINE_CACHE: &str = "engine-cache";

/// One image through the model: well under a second on a CPU; this long
/// means the engine has hung (the watchdog's measure of triage).
const MODEL_STEP_LIMIT: Duration = Duration::from_secs(120);
/// One look at the spool index for work.
const INDEX_STEP_LIMIT: Duration = Duration::from_secs(60);

use store::{ModelState, Pending};
use worker::{Loaded, Output, Worker};

/// A decision as stored, announced to subscribers (panel, results writer, demo).
#[derive(Debug, Clone)]
pub struct DecisionEvent {
    /// Row id in the decision log.
    pub id: i64,
    pub decision: Decision,
}

pub type Events = broadcast::Sender<Arc<DecisionEvent>>;

/// A channel for decision events; subscribers that fall behind by more than
/// this many lose the oldest (the log in the index keeps them all).
pub fn events() -> Events {
    broadcast::channel(1024).0
}

/// The bundle the configuration names, or the embedded demo bundle.
pub fn load_bundle(cfg: &TriageConfig) -> Result<Bundle, String> {
    let trust =
        TrustStore::from_key_files(&cfg.trusted_keys).map_err(|e| format!("trusted key {e}"))?;
    match &cfg.bundle {
        Some(path) => {
            Bundle::open(path, &trust).map_err(|e| format!("model bundle {}: {e}", path.display()))
        }
        None => Bundle::embedded_demo().map_err(|e| format!("embedded demo bundle: {e}")),
    }
}

/// Audits the bundle put to use when it is not last start's, or its refusal.
fn audit_bundle(
    audit: &AuditLog,
    cfg: &TriageConfig,
    spool_dir: &std::path::Path,
    bundle: &Result<Bundle, String>,
) {
    let path = cfg.bundle.as_ref().map_or_else(
        || "(embedded demo bundle)".to_string(),
        |p| p.display().to_string(),
    );
    match bundle {
        Ok(b) => {
            let m = b.manifest();
            let name = format!("{} {}", m.name, m.version);
            crate::audit::note_bundle(audit, spool_dir, &path, &name, &b.sha256_hex());
        }
        Err(reason) => audit.record(Event::Bundle {
            path,
            name: String::new(),
            sha256: String::new(),
            previous: None,
            rollback: false,
            outcome: crate::audit::Outcome::SeriousFailure(reason.clone()),
        }),
    }
}

/// Starts triage beside ingest and forwarding. Loading the model happens on
/// the inference threads, so start-up does not wait for it.
pub async fn start(
    cfg: &TriageConfig,
    spool: Arc<Spool>,
    events: Events,
    shutdown: watch::Receiver<bool>,
    audit: &AuditLog,
    liveness: &Arc<crate::liveness::Liveness>,
) -> Vec<JoinHandle<()>> {
    if let Err(e) = spool.index().call(store::init).await {
        tracing::error!(message = "triage cannot create its tables; triage is off", error = %e);
        return Vec::new();
    }
    // An image retired before triage decided on it would never be triaged.
    spool.hold_while(store::held_until_decided());
    let bundle = load_bundle(cfg);
    audit_bundle(audit, cfg, spool.dir(), &bundle);
    let engine = crate::model::resolve(cfg.engine).as_str();
    let (manifest, info) = match &bundle {
        Ok(b) => {
            let m = b.manifest();
            (
                Some(Arc::new(m.clone())),
                ModelInfo {
                    name: m.name.clone(),
                    version: m.version.clone(),
                    sha256: b.sha256_hex(),
                    engine: engine.into(),
                    clinical_use: m.clinical_use,
                },
            )
        }
        Err(_) => (
            None,
            ModelInfo {
                name: "(none)".into(),
                version: String::new(),
                sha256: String::new(),
                engine: engine.into(),
                clinical_use: false,
            },
        ),
    };
    let state = ModelState {
        state: if bundle.is_ok() { "loading" } else { "failed" }.into(),
        name: manifest.as_ref().map(|m| m.name.clone()),
        version: manifest.as_ref().map(|m| m.version.clone()),
        sha256: bundle.as_ref().ok().map(|b| b.sha256_hex()),
        engine: Some(engine.into()),
        clinical_use: manifest.as_ref().map(|m| m.clinical_use),
        error: bundle.as_ref().err().cloned(),
        note: crate::model::engine_note(cfg.engine),
        updated_at_ms: now_ms(),
    };
    if let Err(reason) = &bundle {
        tracing::error!(message = "no model: every image gets an error decision", reason = %reason);
    }
    let _ = spool
        .index()
        .call({
            let state = state.clone();
            move |c| store::set_model_state(c, &state)
        })
        .await;

    let (feed_tx, feed_rx) = mpsc::channel::<Pending>(cfg.queue.get() as usize);
    let feed_rx = Arc::new(Mutex::new(feed_rx));
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Output>();
    let mut tasks = Vec::new();
    for n in 0..cfg.workers.get() {
        let spool = Arc::clone(&spool);
        let feed_rx = Arc::clone(&feed_rx);
        let out_tx = out_tx.clone();
        let bundle = bundle.clone();
        let manifest = manifest.clone();
        let choice = crate::model::resolve(cfg.engine);
        let threads = cfg.engine_threads.get() as usize;
        let engine_cache = spool.dir().join(ENGINE_CACHE);
        let state = state.clone();
        let beat = liveness.lifelong(format!("triage worker {n}"), MODEL_STEP_LIMIT);
        tasks.push(tokio::task::spawn_blocking(move || {
            let loaded = match bundle {
                Ok(bundle) => match Model::load_with(
                    bundle,
                    Variant::Fp32,
                    choice,
                    threads,
                    Some(&engine_cache),
                ) {
                    Ok((model, _)) => Loaded::Ready(Box::new(model)),
                    Err(e) => Loaded::Broken(e.to_string()),
                },
                Err(reason) => Loaded::Broken(reason),
            };
            if n == 0 {
                report_loaded(&spool, &loaded, state);
            }
            let mut worker = Worker::new(spool, manifest, loaded);
            loop {
                let next = feed_rx.lock().expect("feed queue").blocking_recv();
                let Some(pending) = next else { return };
                let output = {
                    let _step = beat.busy();
                    worker.process(&pending)
                };
                if out_tx.send(output).is_err() {
                    return;
                }
            }
        }));
    }
    drop(out_tx);
    tasks.push(tokio::spawn(feed::feed(
        Arc::clone(&spool),
        feed_tx,
        cfg.queue.get() as usize,
        shutdown,
        liveness.lifelong("triage feed", INDEX_STEP_LIMIT),
    )));
    tasks.push(tokio::spawn(collect(
        spool,
        out_rx,
        manifest,
        info,
        cfg.series_idle().as_millis() as i64,
        events,
    )));
    tasks
}

fn report_loaded(spool: &Spool, loaded: &Loaded, mut state: ModelState) {
    match loaded {
        Loaded::Ready(model) => {
            state.state = "ready".into();
            state.engine = Some(model.backend().into());
            if let Some(note) = model.note() {
                state.note = Some(note.into());
            }
            if let Some(note) = &state.note {
                tracing::warn!(message = "triage engine", note = %note);
            }
            tracing::info!(
                message = "triage model ready",
                model = %state.name.as_deref().unwrap_or(""),
                version = %state.version.as_deref().unwrap_or(""),
                engine = model.backend(),
                clinical_use = state.clinical_use.unwrap_or(false)
            );
        }
        Loaded::Broken(reason) => {
            state.state = "failed".into();
            state.error = Some(reason.clone());
            tracing::error!(message = "triage model unavailable: images get error decisions", reason = %reason);
        }
    }
    state.updated_at_ms = now_ms();
    let _ = spool
        .index()
        .call_blocking(move |c| store::set_model_state(c, &state));
}

/// Gathers results into units, decides, stores and announces.
async fn collect(
    spool: Arc<Spool>,
    mut rx: mpsc::UnboundedReceiver<Output>,
    manifest: Option<Arc<Manifest>>,
    info: ModelInfo,
    idle_ms: i64,
    events: Events,
) {
    let mut assembler = Assembler::new(idle_ms);
    let c = Collector {
        spool,
        manifest,
        info,
        events,
    };
    match c.spool.index().call(store::undecided).await {
        Ok(waiting) => {
            for slice in waiting {
                if let Some(unit) = assembler.add(slice, now_ms()) {
                    c.commit(None, Some(unit)).await;
                }
            }
        }
        Err(e) => tracing::warn!(message = "cannot restore open series", error = %e),
    }
    loop {
        let wait = assembler
            .next_deadline()
            .map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis((t - now_ms()).max(0) as u64)
            });
        tokio::select! {
            out = rx.recv() => match out {
                None => return,
                Some(Output::NotApplicable { instance_id, reason }) => {
                    tracing::debug!(message = "no model applies", instance_id, reason = %reason);
                    until_stored(&c.spool, move |conn| {
                        store::record_not_applicable(conn, instance_id, &reason, now_ms())
                    }).await;
                }
                Some(Output::Slice(slice)) => {
                    let unit = assembler.add((*slice).clone(), now_ms());
                    c.commit(Some(*slice), unit).await;
                }
            },
            _ = tokio::time::sleep(wait) => {
                for unit in assembler.due(now_ms()) {
                    c.commit(None, Some(unit)).await;
                }
            }
        }
    }
}

struct Collector {
    spool: Arc<Spool>,
    manifest: Option<Arc<Manifest>>,
    info: ModelInfo,
    events: Events,
}

impl Collector {
    async fn commit(&self, slice: Option<crate::triage::SliceResult>, unit: Option<Unit>) {
        let now = now_ms();
        let decisions = unit
            .as_ref()
            .map(|u| decide(self.manifest.as_deref(), u, &self.info, now))
            .unwrap_or_default();
        let closes: Vec<i64> = unit
            .as_ref()
            .map(|u| u.slices.iter().map(|s| s.facts.instance_id).collect())
            .unwrap_or_default();
        let stored = decisions.clone();
        let Some(ids) = until_stored(&self.spool, move |conn| {
            store::record(conn, slice.as_ref(), &stored, &closes, now)
        })
        .await
        else {
            return;
        };
        for (id, decision) in ids.into_iter().zip(decisions) {
            log(&decision);
            let _ = self.events.send(Arc::new(DecisionEvent { id, decision }));
        }
    }
}

/// Stores what triage made of an image, trying again until the index takes
/// it: dropped, it would be a decision never announced, or an image the
/// feeder has gone past and never triages. `None` once the index has closed
/// (shutting down): what was not stored is redone at the next start.
async fn until_stored<T, F>(spool: &Spool, write: F) -> Option<T>
where
    T: Send + 'static,
    F: Fn(&rusqlite::Connection) -> Result<T, IndexError> + Clone + Send + 'static,
{
    let mut wait = Duration::from_millis(50);
    loop {
        match spool.index().call(write.clone()).await {
            Ok(done) => return Some(done),
            Err(IndexError::Closed) => return None,
            Err(e) => {
                tracing::error!(message = "cannot store triage results; trying again", error = %e, retry_in_ms = wait.as_millis() as u64);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn log(d: &Decision) {
    let latency_ms = d.decided_at_ms - d.received_last_ms;
    let finding = d.finding.as_deref().unwrap_or("-");
    match d.outcome {
        Outcome::NoFinding => tracing::info!(
            message = "triage decision", unit = %d.unit, finding, outcome = d.outcome.as_str(),
            score = d.score, latency_ms
        ),
        _ => tracing::warn!(
            message = "triage decision", unit = %d.unit, finding, outcome = d.outcome.as_str(),
            score = d.score, reason = d.reason.as_deref().unwrap_or(""), latency_ms
        ),
    }
}
