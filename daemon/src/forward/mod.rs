//! Forwarding: one worker per destination drains that destination's queue
//! in the spool, one association per batch, retrying transient failures with
//! backoff and dead-lettering permanent refusals. It waits for nothing but
//! the spool (DESIGN.md invariant 2).

pub mod backoff;
pub mod queue;
pub mod scu;
mod transcode;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use crate::audit::{AuditLog, Event, Outcome, Studies};
use crate::config::{Config, Destination};
use crate::dataset::Encoding;
use crate::dimse::{Priority, Status, StatusClass};
use crate::liveness::{Beat, Liveness};
use crate::spool::{now_ms, Spool};
use crate::tls::Client as TlsClient;
use queue::Queued;
use scu::{ScuError, ScuOptions, StoreScu};

pub use backoff::delay as backoff_delay;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Presentation contexts are numbered with odd bytes: at most 128.
const MAX_CONTEXTS: usize = 128;
/// How long an idle association waits for more work before release.
const LINGER: Duration = Duration::from_millis(500);

/// A finished read: the outcome and the buffer it filled.
type Read = (std::io::Result<()>, Vec<u8>);

/// A delivery being recorded in the index.
type Mark = tokio::task::JoinHandle<Result<(), crate::spool::IndexError>>;

/// A destination's TLS settings could not be made into a client.
#[derive(Debug, thiserror::Error)]
#[error("destination \"{name}\": {source}")]
pub struct DestinationTlsError {
    name: String,
    source: crate::tls::TlsError,
}

/// The TLS client of each configured destination (None where it is
/// reached in the clear), in the order of `config.destinations`. Made
/// before privileges are dropped: the key may be readable by root only.
pub fn tls_clients(config: &Config) -> Result<Vec<Option<TlsClient>>, DestinationTlsError> {
    config
        .destinations
        .iter()
        .map(|d| {
            d.tls_client().map_err(|source| DestinationTlsError {
                name: d.name.to_string(),
                source,
            })
        })
        .collect()
}

/// Starts a worker per configured destination; `tls` from [`tls_clients`].
pub fn spawn_workers(
    config: Arc<Config>,
    spool: Arc<Spool>,
    tls: Vec<Option<TlsClient>>,
    shutdown: watch::Receiver<bool>,
    audit: AuditLog,
    liveness: &Arc<Liveness>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // One step waits at most for a connection or a response, then the spool.
    let fwd = &config.forward;
    let step_limit = fwd.connect_timeout().max(fwd.dimse_timeout()) + Duration::from_secs(10);
    config
        .destinations
        .iter()
        .cloned()
        .zip(tls)
        .map(|(dest, tls)| {
            let span =
                tracing::info_span!("forward", destination = %dest.name, tls = tls.is_some());
            let worker = Worker {
                beat: liveness.lifelong(format!("forwarding to {}", dest.name), step_limit),
                config: Arc::clone(&config),
                spool: Arc::clone(&spool),
                name: Arc::from(dest.name.as_str()),
                dest,
                tls,
                audit: audit.clone(),
                breaks: Default::default(),
            };
            let shutdown = shutdown.clone();
            tokio::spawn(async move { worker.run(shutdown).await }.instrument(span))
        })
        .collect()
}

struct Worker {
    config: Arc<Config>,
    spool: Arc<Spool>,
    /// The destination's name, moved into index jobs without copying.
    name: Arc<str>,
    dest: Destination,
    tls: Option<TlsClient>,
    audit: AuditLog,
    beat: Beat,
    breaks: std::sync::Mutex<BreakRun>,
}

/// The associations broken since the destination last stored anything.
/// Breaks on one instance alone point at it (a PACS that chokes on it);
/// breaks on several point at the destination (down, hung, out of space),
/// and then no instance is charged, not even the first one.
#[derive(Debug, Default)]
struct BreakRun {
    breaks: u32,
    instances: BTreeSet<i64>,
    /// Charges made in this run, undone if it turns out to be an outage.
    charged: Vec<i64>,
}

/// What became of one instance offered on an association.
enum Sent {
    /// Stored; its delivery is being recorded.
    Delivered(Mark),
    /// A transient refusal: it, and its series behind it, wait.
    Rescheduled,
    DeadLettered,
}

/// What a break on an instance means, given the run so far.
#[derive(Debug, PartialEq, Eq)]
enum Blame {
    /// Only this instance has broken associations: it is charged.
    Instance,
    /// Others broke too, with no success between: the destination is at
    /// fault. The charges in `refund` are undone.
    Destination { refund: Vec<i64> },
}

impl BreakRun {
    fn stored(&mut self) {
        *self = BreakRun::default();
    }

    fn broke_on(&mut self, instance_id: i64) -> Blame {
        self.breaks += 1;
        self.instances.insert(instance_id);
        if self.instances.len() == 1 {
            self.charged.push(instance_id);
            Blame::Instance
        } else {
            Blame::Destination {
                refund: std::mem::take(&mut self.charged),
            }
        }
    }

    /// How many breaks in a row have been the destination's.
    fn outage_breaks(&self) -> u32 {
        if self.instances.len() > 1 {
            self.breaks
        } else {
            0
        }
    }
}

impl Worker {
    fn name(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    async fn fetch(&self) -> Option<Vec<Queued>> {
        let name = self.name();
        let limit = self.config.forward.batch_size.get();
        match self
            .spool
            .index()
            .call(move |tx| queue::next_batch(tx, &name, now_ms(), limit))
            .await
        {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(message = "cannot read the forward queue", error = %e);
                None
            }
        }
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut work = self.spool.subscribe_work();
        loop {
            if *shutdown.borrow() {
                return;
            }
            work.borrow_and_update();
            let step = self.beat.busy();
            let looked_at = now_ms();
            let Some(batch) = self.fetch().await else {
                drop(step);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            if batch.is_empty() {
                let name = self.name();
                let due = self
                    .spool
                    .index()
                    .call(move |tx| queue::next_due(tx, &name, looked_at))
                    .await
                    .ok()
                    .flatten();
                let wait = due.map_or(Duration::from_secs(5), |at| {
                    Duration::from_millis((at - now_ms()).clamp(10, 5000) as u64)
                });
                drop(step);
                tokio::select! {
                    _ = work.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            self.session(batch, &mut work).await;
            let outage = self.break_run().outage_breaks();
            if outage > 0 {
                // The destination itself is failing: wait before the next
                // association rather than hammer it.
                let fwd = &self.config.forward;
                let pause = backoff::delay(
                    outage - 1,
                    fwd.retry_initial(),
                    fwd.retry_max(),
                    rand::random::<f64>(),
                );
                tracing::info!(
                    message = "destination failing on every instance; pausing",
                    pause_ms = pause.as_millis() as u64
                );
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    fn break_run(&self) -> std::sync::MutexGuard<'_, BreakRun> {
        self.breaks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn contexts_for(batch: &[Queued]) -> Vec<(String, Vec<String>)> {
        let set: BTreeSet<(&str, &str)> = batch
            .iter()
            .flat_map(|q| {
                Self::syntaxes(q)
                    .into_iter()
                    .map(|ts| (q.sop_class_uid.as_str(), ts))
            })
            .collect();
        set.into_iter()
            .map(|(abs, ts)| (abs.to_string(), vec![ts.to_string()]))
            .collect()
    }

    /// The stored syntax, then (for an uncompressed one) the other
    /// uncompressed syntax as a fallback.
    fn syntaxes(q: &Queued) -> Vec<&str> {
        let stored = q.transfer_syntax_uid.as_str();
        let mut v = vec![stored];
        if Encoding::is_native_uid(stored) {
            v.push(if stored == EXPLICIT_LE {
                IMPLICIT_LE
            } else {
                EXPLICIT_LE
            });
        }
        v
    }

    /// One association: sends the batch, then keeps going while more work
    /// arrives that the negotiated contexts can carry.
    async fn session(&self, mut batch: Vec<Queued>, work: &mut watch::Receiver<u64>) {
        if let Some(crate::failpoints::Fault::Hang) = crate::failpoints::hit("forward-wedge") {
            std::future::pending::<()>().await;
        }
        let mut contexts = Self::contexts_for(&batch);
        while contexts.len() > MAX_CONTEXTS && batch.len() > 1 {
            batch.truncate(batch.len() / 2);
            contexts = Self::contexts_for(&batch);
        }
        let fwd = &self.config.forward;
        let opts = ScuOptions {
            address: self.dest.address.as_str().to_string(),
            calling_ae: self.dest.calling_ae(&self.config.node).to_string(),
            called_ae: self.dest.ae_title.as_str().to_string(),
            max_pdu: self.dest.max_pdu_length.get() as u32,
            connect_timeout: fwd.connect_timeout(),
            dimse_timeout: fwd.dimse_timeout(),
            tls: self.tls.clone(),
        };
        let mut scu = match StoreScu::connect(&opts, &contexts).await {
            Ok((mut scu, _)) => {
                scu.on_progress(self.beat.ticker());
                scu
            }
            Err(e) => {
                tracing::warn!(message = "cannot open an association to the destination", error = %e, pending = batch.len());
                let mut attempted = Studies::default();
                for q in &batch {
                    attempted.add(q.study_uid.as_deref(), &q.sop_class_uid);
                }
                self.audit_sent(
                    attempted,
                    Outcome::MinorFailure(format!("cannot open an association: {e}")),
                );
                self.retry_all(&batch, None, &e.to_string()).await;
                return;
            }
        };
        let proposed: std::collections::HashSet<(String, String)> = contexts
            .iter()
            .map(|(abs, ts)| (abs.clone(), ts[0].clone()))
            .collect();
        let mut delivered = 0usize;
        let mut studies = Studies::default();
        loop {
            match self.send_all(&mut scu, &batch, &mut studies).await {
                Ok(n) => delivered += n,
                Err(e) => {
                    tracing::warn!(message = "association to the destination failed", error = %e, delivered);
                    scu.abort().await;
                    self.audit_sent(
                        studies,
                        Outcome::MinorFailure(format!("association failed: {e}")),
                    );
                    return;
                }
            }
            work.borrow_and_update();
            self.beat.progress();
            let mut next = self.fetch().await.unwrap_or_default();
            if next.is_empty() {
                // Linger briefly: a scanner mid-series sends the next image soon.
                if tokio::time::timeout(LINGER, work.changed()).await.is_ok() {
                    next = self.fetch().await.unwrap_or_default();
                }
            }
            // Only instances whose own syntax was proposed: the uncompressed
            // fallback is for a PACS that refused the original, not a shortcut.
            let fits = |q: &Queued| {
                proposed.contains(&(q.sop_class_uid.clone(), q.transfer_syntax_uid.clone()))
            };
            if next.is_empty() || !next.iter().all(fits) {
                break;
            }
            batch = next;
        }
        scu.release().await;
        tracing::info!(
            message = "association to the destination released",
            delivered
        );
        if !studies.is_empty() {
            self.audit_sent(studies, Outcome::Success);
        }
    }

    fn audit_sent(&self, studies: Studies, outcome: Outcome) {
        self.audit.record(Event::Sent {
            destination: self.name.to_string(),
            called_ae: self.dest.ae_title.as_str().to_string(),
            address: self.dest.address.as_str().to_string(),
            studies,
            outcome,
        });
    }

    fn read(&self, q: &Queued, mut buf: Vec<u8>) -> tokio::task::JoinHandle<Read> {
        let spool = Arc::clone(&self.spool);
        let (segment, body_offset, dataset_offset, body_len) =
            (q.segment, q.body_offset, q.dataset_offset, q.body_len);
        tokio::task::spawn_blocking(move || {
            let r =
                spool.read_dataset_into(segment, body_offset, dataset_offset, body_len, &mut buf);
            (r, buf)
        })
    }

    /// Sends a batch, reading each instance while the previous one is on the
    /// wire. Deliveries are recorded as they happen and all committed before
    /// returning, so the next look at the queue cannot send one twice.
    async fn send_all(
        &self,
        scu: &mut StoreScu,
        batch: &[Queued],
        studies: &mut Studies,
    ) -> Result<usize, ScuError> {
        let mut marks = Vec::with_capacity(batch.len());
        let mut delivered = 0;
        // Two buffers: one on the wire, the next instance read into the other.
        let mut spare = Vec::new();
        let mut next_read = batch.first().map(|q| self.read(q, Vec::new()));
        let mut outcome = Ok(());
        let mut held = std::collections::HashSet::new();
        for (i, q) in batch.iter().enumerate() {
            let read = next_read.take().expect("read started for every instance");
            let (read, buf) = match read.await {
                Ok((r, buf)) => (r, buf),
                Err(e) => (Err(std::io::Error::other(e)), Vec::new()),
            };
            next_read = batch
                .get(i + 1)
                .map(|n| self.read(n, std::mem::take(&mut spare)));
            if q.series_uid.as_ref().is_some_and(|s| held.contains(s)) {
                // An earlier instance of its series was rescheduled, and it
                // with it: sending it now would overtake that one.
                spare = buf;
                continue;
            }
            let dataset = read.map(|()| buf.as_slice());
            let span = tracing::info_span!("study", uid = q.study_uid.as_deref().unwrap_or("-"));
            let sent = self.send_one(scu, q, dataset).instrument(span).await;
            spare = buf;
            self.beat.progress();
            match sent {
                Ok(Sent::Delivered(mark)) => {
                    self.break_run().stored();
                    delivered += 1;
                    studies.add(q.study_uid.as_deref(), &q.sop_class_uid);
                    marks.push(mark);
                }
                Ok(Sent::Rescheduled) => held.extend(q.series_uid.iter().cloned()),
                Ok(Sent::DeadLettered) => {}
                Err(e) => {
                    // The association broke while this instance was on it.
                    // If nothing else broke since the last success, it alone
                    // is charged (a PACS that chokes on one instance must not
                    // hold back the rest); the others stay due.
                    let blame = self.break_run().broke_on(q.instance_id);
                    match blame {
                        Blame::Instance => self.broke_on(q, &e.to_string()).await,
                        Blame::Destination { refund } => {
                            self.refund(refund).await;
                            self.retry_all(std::slice::from_ref(q), None, &e.to_string())
                                .await;
                        }
                    }
                    outcome = Err(e);
                    break;
                }
            }
        }
        for m in marks {
            match m.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(message = "cannot record a delivery; it will be sent again", error = %e)
                }
                Err(e) => tracing::error!(message = "delivery record task failed", error = %e),
            }
        }
        outcome.map(|()| delivered)
    }

    /// Sends one instance; Err if the association is no longer usable.
    async fn send_one(
        &self,
        scu: &mut StoreScu,
        q: &Queued,
        dataset: std::io::Result<&[u8]>,
    ) -> Result<Sent, ScuError> {
        let stored_ts = q.transfer_syntax_uid.as_str();
        let Some((ctx, ts)) = scu.context_for(&q.sop_class_uid, &Self::syntaxes(q)) else {
            let reason = format!(
                "destination accepts neither SOP class {} in {} nor an uncompressed fallback",
                q.sop_class_uid, stored_ts
            );
            self.dead(q, None, &reason).await;
            return Ok(Sent::DeadLettered);
        };
        let dataset = match dataset {
            Ok(d) => d,
            Err(e) => {
                self.dead(
                    q,
                    None,
                    &format!("cannot read the instance from the spool: {e}"),
                )
                .await;
                return Ok(Sent::DeadLettered);
            }
        };
        let transcoded;
        let dataset = if ts == stored_ts {
            dataset
        } else {
            match transcode::native(dataset, stored_ts, &ts) {
                Ok(d) => {
                    transcoded = d;
                    transcoded.as_slice()
                }
                Err(e) => {
                    self.dead(q, None, &e.to_string()).await;
                    return Ok(Sent::DeadLettered);
                }
            }
        };
        let (status, comment) = scu
            .store(
                ctx,
                &q.sop_class_uid,
                &q.sop_instance_uid,
                dataset,
                if q.urgent {
                    Priority::High
                } else {
                    Priority::Medium
                },
            )
            .await?;
        let status = Status(status);
        match status.class() {
            StatusClass::Success | StatusClass::Warning => {
                let note = (status != Status::SUCCESS).then(|| {
                    format!(
                        "warning {status}{}",
                        comment
                            .as_deref()
                            .map(|c| format!(": {c}"))
                            .unwrap_or_default()
                    )
                });
                if status != Status::SUCCESS {
                    tracing::info!(message = "destination stored with a warning", status = %status);
                }
                let (spool, name, id) = (Arc::clone(&self.spool), self.name(), q.instance_id);
                Ok(Sent::Delivered(tokio::spawn(async move {
                    spool
                        .index()
                        .call(move |tx| {
                            queue::delivered(tx, id, &name, status.0, note.as_deref(), now_ms())
                        })
                        .await
                })))
            }
            StatusClass::Transient | StatusClass::Pending | StatusClass::Cancel => {
                let reason = describe(status, comment.as_deref());
                self.retry_all(std::slice::from_ref(q), Some(status.0), &reason)
                    .await;
                Ok(Sent::Rescheduled)
            }
            StatusClass::Permanent => {
                let reason = describe(status, comment.as_deref());
                self.dead(q, Some(status.0), &reason).await;
                Ok(Sent::DeadLettered)
            }
        }
    }

    /// How long to wait before trying `q` again after this failure.
    fn next_wait(&self, q: &Queued) -> Duration {
        let fwd = &self.config.forward;
        backoff::delay(
            q.attempts + 1,
            fwd.retry_initial(),
            fwd.retry_max(),
            rand::random::<f64>(),
        )
    }

    fn give_up_ms(&self) -> i64 {
        self.config.forward.give_up_after().as_millis() as i64
    }

    async fn broke_on(&self, q: &Queued, reason: &str) {
        let wait = self.next_wait(q);
        let give_up = self.give_up_ms();
        let (name, q2, reason) = (self.name(), q.clone(), reason.to_string());
        let result = self
            .spool
            .index()
            .call(move |tx| {
                let now = now_ms();
                queue::broke_association(
                    tx,
                    &q2,
                    &name,
                    &reason,
                    now,
                    now + wait.as_millis() as i64,
                    give_up,
                )
            })
            .await;
        match result {
            Ok(true) => tracing::warn!(
                message = "instance dead-lettered: the destination broke the association on it repeatedly",
                sop_instance_uid = %q.sop_instance_uid
            ),
            Ok(false) => {}
            Err(e) => tracing::error!(message = "cannot reschedule a delivery", error = %e),
        }
    }

    /// Undoes the charges of a run of breaks that turned out to be the
    /// destination's, taking up again what they dead-lettered.
    async fn refund(&self, charged: Vec<i64>) {
        if charged.is_empty() {
            return;
        }
        let name = self.name();
        let result = self
            .spool
            .index()
            .call(move |tx| {
                let mut revived = 0;
                for id in charged {
                    revived += queue::uncharge_break(tx, id, &name, now_ms())?;
                }
                Ok(revived)
            })
            .await;
        match result {
            Ok(0) => {}
            Ok(revived) => tracing::warn!(
                message = "dead letters taken up again: the destination breaks on every instance, not only on them",
                count = revived
            ),
            Err(e) => tracing::error!(message = "cannot undo the charges of broken associations", error = %e),
        }
    }

    async fn dead(&self, q: &Queued, status: Option<u16>, reason: &str) {
        tracing::warn!(message = "instance dead-lettered", reason, sop_instance_uid = %q.sop_instance_uid);
        let name = self.name();
        let id = q.instance_id;
        let reason = reason.to_string();
        if let Err(e) = self
            .spool
            .index()
            .call(move |tx| queue::dead(tx, id, &name, status, &reason, now_ms()))
            .await
        {
            tracing::error!(message = "cannot record a dead letter", error = %e);
        }
    }

    async fn retry_all(&self, items: &[Queued], status: Option<u16>, reason: &str) {
        let give_up = self.give_up_ms();
        let name = self.name();
        let waits: Vec<Duration> = items.iter().map(|q| self.next_wait(q)).collect();
        let items = items.to_vec();
        let reason = reason.to_string();
        let result = self
            .spool
            .index()
            .call(move |tx| {
                let now = now_ms();
                let mut dead = 0;
                for (q, wait) in items.iter().zip(waits) {
                    if queue::retry(
                        tx,
                        q,
                        &name,
                        status,
                        &reason,
                        now,
                        now + wait.as_millis() as i64,
                        give_up,
                    )? {
                        dead += 1;
                    }
                }
                Ok(dead)
            })
            .await;
        match result {
            Ok(dead) if dead > 0 => tracing::warn!(
                message = "instances dead-lettered after retrying too long",
                count = dead
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(message = "cannot reschedule deliveries", error = %e),
        }
    }
}

fn describe(status: Status, comment: Option<&str>) -> String {
    match comment {
        Some(c) if !c.is_empty() => format!("destination answered {status}: {c}"),
        _ => format!("destination answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_on_one_instance_are_its_own_breaks_on_several_the_destinations() {
        let mut run = BreakRun::default();
        assert_eq!(run.broke_on(7), Blame::Instance);
        assert_eq!(run.broke_on(7), Blame::Instance);
        assert_eq!(run.outage_breaks(), 0);
        assert_eq!(run.broke_on(8), Blame::Destination { refund: vec![7, 7] });
        assert_eq!(run.outage_breaks(), 3);
        assert_eq!(run.broke_on(7), Blame::Destination { refund: vec![] });
        run.stored();
        assert_eq!(run.outage_breaks(), 0);
        assert_eq!(run.broke_on(9), Blame::Instance);
    }
}
