//! Results into PACS: for every triage decision, a DICOM SR (TID 1500) and
//! a heatmap Secondary Capture in the source's study, written into the
//! spool and forwarded like any instance (durable, retried, dead-lettered),
//! or kept on the box in shadow mode.
//!
//! The decision log drives it: decisions past the last one a report covers
//! are pending, so a restart or a full disk delays results, never loses
//! them; the UIDs come from the decision, so a report written twice is one
//! instance.

mod content;
mod heatmap;
pub mod hl7;
mod identity;
mod mllp;
mod render;
mod report;
pub mod sc;
pub(crate) mod source;
pub mod sr;
mod store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_dictionary_std::uids;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bundle::Manifest;
use crate::config::{Config, ResultsMode};
use crate::inference::Events;
use crate::model::{Model, Variant};
use crate::spool::{now_ms, part10, RecordHeader, RecordSummary, Spool};
use crate::triage::{Outcome, SliceOutcome, SliceResult};

pub use identity::Identity;
pub use store::{counts, outbox_counts};

use content::Code;
use report::{Device, FindingResult, InstanceRef, NewInstance, Region, Report};
use store::{Batch, Written};

/// The calling AE recorded in the spool for instances the box made: triage
/// never looks at them.
pub const OWN_AE: &str = "firstlook:results";

/// Series numbers of the box's series: high, out of the scanner's way.
const SR_SERIES_NUMBER: i64 = 9901;
const SC_SERIES_NUMBER: i64 = 9902;

/// The model, kept for drawing maps; loaded once, at start.
struct Drawing {
    manifest: Option<Arc<Manifest>>,
    model: Mutex<Option<Model>>,
}

struct Writer {
    hl7_wake: Arc<tokio::sync::Notify>,
    config: Arc<Config>,
    spool: Arc<Spool>,
    identity: Identity,
    device: Device,
    drawing: Arc<Drawing>,
}

/// Starts the results writer beside triage.
pub async fn start(
    config: Arc<Config>,
    spool: Arc<Spool>,
    events: &Events,
    mut shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    if let Err(e) = spool.index().call(store::init).await {
        tracing::error!(message = "results cannot create their table; no results are written", error = %e);
        return Vec::new();
    }
    let dir = spool.dir().to_path_buf();
    let identity = match tokio::task::spawn_blocking(move || Identity::load_or_create(&dir)).await {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => {
            tracing::error!(message = "no device identity; no results are written", error = %e);
            return Vec::new();
        }
        Err(_) => return Vec::new(),
    };
    let device = Device {
        uid: identity.device_uid.clone(),
        name: config.node.ae_title.as_str().to_string(),
        manufacturer: "firstlook project".into(),
        model_name: "firstlook edge appliance".into(),
        serial: config
            .results
            .device_serial
            .clone()
            .or_else(crate::host::name)
            .unwrap_or_else(|| "unknown".into()),
        software_version: env!("CARGO_PKG_VERSION").into(),
    };
    let bundle = crate::inference::load_bundle(&config.triage);
    let drawing = Arc::new(Drawing {
        manifest: bundle.as_ref().ok().map(|b| Arc::new(b.manifest().clone())),
        model: Mutex::new(None),
    });
    {
        let drawing = Arc::clone(&drawing);
        tokio::task::spawn_blocking(move || {
            // Held while loading: a heatmap drawn meanwhile waits for the
            // model instead of going out without its map.
            let mut slot = drawing.model.lock().expect("model lock");
            if let Ok(bundle) = bundle {
                match Model::load_with(
                    bundle,
                    Variant::Fp32,
                    crate::config::EngineChoice::Tract,
                    1,
                    None,
                ) {
                    Ok((model, _)) => *slot = Some(model),
                    Err(e) => {
                        tracing::warn!(message = "heatmaps are drawn without maps: the model cannot load", error = %e)
                    }
                }
            }
        });
    }
    // A report needs the images its decisions rest on.
    spool.hold_while(store::held_until_reported());
    let hl7_wake = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    if let Some(hl7) = config.results.hl7.clone() {
        tasks.push(tokio::spawn(mllp::run(
            Arc::clone(&spool),
            hl7,
            config.forward.clone(),
            Arc::clone(&hl7_wake),
            shutdown.clone(),
        )));
    }
    let w = Writer {
        hl7_wake,
        config,
        spool,
        identity,
        device,
        drawing,
    };
    let mut wake = events.subscribe();
    tasks.push(tokio::spawn(async move {
        loop {
            let retry = w.run_pending().await;
            let wait = if retry {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(30)
            };
            tokio::select! {
                _ = wake.recv() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }));
    tasks
}

impl Writer {
    /// Writes every pending report; true when one must be tried again.
    async fn run_pending(&self) -> bool {
        loop {
            let batches = match self.spool.index().call(|c| store::pending(c, 256)).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(message = "cannot read pending results", error = %e);
                    return true;
                }
            };
            if batches.is_empty() {
                return false;
            }
            for batch in batches {
                let span = tracing::info_span!(
                    "study",
                    uid = batch.decisions[0].study_uid.as_deref().unwrap_or("-")
                );
                let _enter = span.enter();
                let written = match self.write(&batch).await {
                    Ok(w) => w,
                    Err(Retry(e)) => {
                        tracing::warn!(message = "results not written yet; retrying", unit = %batch.decisions[0].unit, error = %e);
                        return true;
                    }
                };
                if written.state == "failed" {
                    tracing::error!(message = "no results for a decision", unit = %batch.decisions[0].unit, error = written.error.as_deref().unwrap_or(""));
                } else {
                    tracing::info!(message = "results written", unit = %batch.decisions[0].unit, mode = written.mode, sr = written.sr_uid.as_deref().unwrap_or(""));
                }
                let now = now_ms();
                let queued_hl7 = written.hl7.is_some();
                if let Err(e) = self
                    .spool
                    .index()
                    .call(move |c| store::record(c, &batch, &written, written.hl7.as_ref(), now))
                    .await
                {
                    tracing::warn!(message = "cannot record results", error = %e);
                    return true;
                }
                if queued_hl7 {
                    self.hl7_wake.notify_one();
                }
            }
        }
    }

    async fn write(&self, batch: &Batch) -> Result<Written, Retry> {
        let mode = self.config.results.mode;
        let failed = |error: String| Written {
            mode: mode.as_str(),
            state: "failed",
            sr_uid: None,
            sc_uid: None,
            error: Some(error),
            hl7: None,
        };
        let first = &batch.decisions[0];
        let inputs = first.inputs.clone();
        let sources = source::locate(&self.spool, inputs).await.map_err(Retry)?;
        let root = self.config.results.uid_root.as_ref().map(|r| r.as_str());
        let uid = |k: u32| self.identity.uid(root, batch.first, k);
        let findings = self.findings(batch, &uid);
        let strongest = strongest(&findings).cloned();
        let strongest_id = strongest.as_ref().map(|f| f.id.as_str());
        let Some(key_at) = self.key_slice(strongest_id, &sources).await else {
            return Ok(failed(
                "the source instances are no longer in the spool".into(),
            ));
        };
        let spool = Arc::clone(&self.spool);
        let key = sources[key_at].clone();
        let key_bytes = tokio::task::spawn_blocking(move || source::read(&spool, &key))
            .await
            .map_err(|e| Retry(e.to_string()))?;
        let key_bytes = match key_bytes {
            Ok(b) => b,
            Err(e) => return Ok(failed(e)),
        };
        let key_stored = match part10::Stored::read(&key_bytes) {
            Ok(stored) => stored,
            Err(e) => return Ok(failed(e)),
        };
        let study_uid = match first.study_uid.clone() {
            Some(uid) => uid,
            None => return Ok(failed("the source has no Study Instance UID".into())),
        };
        let sc = NewInstance {
            series_uid: uid(3),
            instance_uid: uid(4),
            series_number: SC_SERIES_NUMBER,
        };
        let key_ref = sources[key_at].reference.clone();
        let laterality = source::laterality(key_stored.attributes());
        let mut report = Report {
            study: source::study_attributes(key_stored.attributes()),
            study_uid,
            sources: sources.iter().map(|s| s.reference.clone()).collect(),
            findings,
            model: first.model.clone(),
            device: self.device.clone(),
            decided_at_ms: first.decided_at_ms,
            sr: NewInstance {
                series_uid: uid(1),
                instance_uid: uid(2),
                series_number: SR_SERIES_NUMBER,
            },
            heatmap: Some(InstanceRef {
                sop_class: sc::SOP_CLASS.into(),
                sop_instance: sc.instance_uid.clone(),
                series_uid: sc.series_uid.clone(),
                modality: "OT".into(),
            }),
            regions: Vec::new(),
        };
        let text = heatmap::lines(&report.model, &report.findings);
        let drawing = Arc::clone(&self.drawing);
        // A series' key slice is the shown finding's: another finding is not
        // located on a slice chosen for a different one.
        let findings: Vec<FindingResult> = if report.sources.len() == 1 {
            report.findings.clone()
        } else {
            strongest.iter().cloned().collect()
        };
        let (picture, located) = tokio::task::spawn_blocking(move || {
            let mut model = drawing.model.lock().expect("model lock");
            heatmap::picture(
                Some((&key_stored, key_bytes.as_slice())),
                drawing.manifest.as_deref(),
                model.as_mut(),
                strongest.as_ref(),
                &findings,
                &text,
            )
        })
        .await
        .map_err(|e| Retry(e.to_string()))?;
        report.regions = located
            .into_iter()
            .map(|l| Region {
                finding: l.finding,
                image: key_ref.clone(),
                frame: l.frame,
                rect: l.rect,
            })
            .collect();
        let sc_obj = sc::build(
            &report,
            &sc,
            &picture,
            Some(&key_ref),
            laterality.as_deref(),
        );
        let sr_obj = sr::build(&report);
        let destinations = match mode {
            ResultsMode::Full => self.spool.destinations().to_vec(),
            ResultsMode::Shadow => Vec::new(),
        };
        let urgent = batch.decisions.iter().any(|d| d.outcome == Outcome::Urgent);
        let raise = urgent && self.config.results.urgent_priority && mode == ResultsMode::Full;
        // An urgent report goes ahead of everything, its heatmap and its
        // study's images right after.
        let priorities = if raise { [2, 1] } else { [0, 0] };
        for ((obj, sop_class, instance, series), priority) in [
            (
                &sr_obj,
                sr::SOP_CLASS,
                &report.sr.instance_uid,
                &report.sr.series_uid,
            ),
            (&sc_obj, sc::SOP_CLASS, &sc.instance_uid, &sc.series_uid),
        ]
        .into_iter()
        .zip(priorities)
        {
            let mut dataset = Vec::new();
            obj.write_dataset_with_ts(
                &mut dataset,
                &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .map_err(|e| Retry(format!("cannot encode a result: {e}")))?;
            let meta = part10::file_meta(sop_class, instance, uids::EXPLICIT_VR_LITTLE_ENDIAN, "");
            let header = RecordHeader {
                sop_class_uid: sop_class.into(),
                sop_instance_uid: instance.clone(),
                transfer_syntax_uid: uids::EXPLICIT_VR_LITTLE_ENDIAN.into(),
                calling_ae: OWN_AE.into(),
                peer: "local".into(),
                received_at: now_ms(),
                dataset_offset: meta.len() as u64,
            };
            let summary = RecordSummary {
                study_instance_uid: Some(report.study_uid.clone()),
                series_instance_uid: Some(series.clone()),
                modality: Some(
                    if sop_class == sr::SOP_CLASS {
                        "SR"
                    } else {
                        "OT"
                    }
                    .into(),
                ),
                instance_number: Some(1),
            };
            self.spool
                .store_own(
                    header,
                    meta,
                    dataset,
                    summary,
                    destinations.clone(),
                    priority,
                )
                .await
                .map_err(|e| Retry(format!("cannot write a result to the spool: {e}")))?;
        }
        if raise {
            let study = report.study_uid.clone();
            let raised = self
                .spool
                .index()
                .call(move |c| crate::forward::queue::prioritise(c, &study, 1))
                .await;
            match raised {
                Ok(n) => {
                    tracing::info!(message = "urgent study sent first", deliveries = n);
                    self.spool.notify_work();
                }
                Err(e) => {
                    tracing::warn!(message = "cannot raise the urgent study's priority", error = %e)
                }
            }
        }
        let hl7 = self.config.results.hl7.as_ref().and_then(|h| {
            (mode == ResultsMode::Full && (urgent || h.all_reports)).then(|| {
                let control_id = format!("FL{}-{}", self.identity.incarnation, batch.first);
                let parties = hl7::Parties {
                    sending_application: h.sending_application.clone(),
                    sending_facility: h.sending_facility.clone(),
                    receiving_application: h.receiving_application.clone(),
                    receiving_facility: h.receiving_facility.clone(),
                };
                let message = hl7::oru(&report, &parties, &control_id, now_ms());
                (control_id, message)
            })
        });
        Ok(Written {
            mode: mode.as_str(),
            state: "written",
            sr_uid: Some(report.sr.instance_uid.clone()),
            sc_uid: Some(sc.instance_uid.clone()),
            error: None,
            hl7,
        })
    }

    fn findings(&self, batch: &Batch, uid: &dyn Fn(u32) -> String) -> Vec<FindingResult> {
        let manifest = self.drawing.manifest.as_deref();
        batch
            .decisions
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let id = d.finding.clone()?;
                let f = manifest.and_then(|m| m.finding(&id));
                let code = f.map_or_else(
                    || {
                        Code::new(
                            &id,
                            "99FIRSTLOOK",
                            d.finding_display.as_deref().unwrap_or(&id),
                        )
                    },
                    |f| Code::new(&f.code.value, &f.code.scheme, &f.code.meaning),
                );
                Some(FindingResult {
                    display: d.finding_display.clone().unwrap_or_else(|| id.clone()),
                    id,
                    code,
                    outcome: d.outcome,
                    score: d.score,
                    threshold: d.threshold,
                    operating_point: d.operating_point.clone(),
                    reason: d.reason.clone(),
                    tracking_uid: uid(10 + i as u32),
                })
            })
            .collect()
    }

    /// Which source to show: the slice with the highest score for the
    /// report's strongest finding (the only one for a radiograph).
    async fn key_slice(
        &self,
        strongest: Option<&str>,
        sources: &[source::Stored],
    ) -> Option<usize> {
        if sources.len() <= 1 {
            return (!sources.is_empty()).then_some(0);
        }
        let index = self
            .drawing
            .manifest
            .as_deref()
            .zip(strongest)
            .and_then(|(m, id)| m.finding(id))
            .map(|f| f.output_index);
        let uids: Vec<String> = sources
            .iter()
            .map(|s| s.reference.sop_instance.clone())
            .collect();
        let scores = self
            .spool
            .index()
            .call(move |c| slice_scores(c, &uids))
            .await
            .unwrap_or_default();
        let at = index.and_then(|k| {
            scores
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.as_ref().and_then(|l| l.get(k)).map(|&v| (i, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
        });
        Some(at.unwrap_or(sources.len() / 2))
    }
}

/// The finding with the highest score over its threshold: the one whose
/// map is drawn and whose best slice is shown.
fn strongest(findings: &[FindingResult]) -> Option<&FindingResult> {
    strongest_by(findings, |f| (f.score, f.threshold, f.outcome))
}

/// The finding a report's heatmap shows: the scored one furthest above (or
/// least below) its operating point.
pub fn strongest_by<T>(
    items: &[T],
    of: impl Fn(&T) -> (Option<f32>, Option<f64>, Outcome),
) -> Option<&T> {
    let margin = |t: &T| {
        let (score, threshold, _) = of(t);
        f64::from(score.unwrap_or(f32::MIN)) - threshold.unwrap_or(0.0)
    };
    items
        .iter()
        .filter(|t| {
            let (score, _, outcome) = of(t);
            score.is_some() && outcome != Outcome::Error
        })
        .max_by(|a, b| margin(a).total_cmp(&margin(b)))
}

/// Each instance's logits as triage stored them.
fn slice_scores(
    conn: &rusqlite::Connection,
    uids: &[String],
) -> Result<Vec<Option<Vec<f32>>>, crate::spool::IndexError> {
    let mut stmt = conn.prepare_cached(
        "SELECT tr.result FROM triage_results tr JOIN instances i ON i.id = tr.instance_id
         WHERE i.sop_instance_uid = ?1 AND i.superseded = 0 ORDER BY i.id DESC LIMIT 1",
    )?;
    uids.iter()
        .map(|uid| {
            let json: Option<String> = rusqlite::OptionalExtension::optional(
                stmt.query_row([uid], |r| r.get::<_, Option<String>>(0)),
            )?
            .flatten();
            Ok(json
                .and_then(|j| serde_json::from_str::<SliceResult>(&j).ok())
                .and_then(|s| match s.outcome {
                    SliceOutcome::Scored { logits } => Some(logits),
                    _ => None,
                }))
        })
        .collect()
}

/// A failure worth trying again later (the spool, the disk).
struct Retry(String);
