//! The panel's JSON and image routes. `/api/status` carries no patient
//! data and is open; everything naming or showing a patient needs a login.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dicom_dictionary_std::tags;
use serde::{Deserialize, Serialize};

use super::auth::LoggedIn;
use super::feed::Alert;
use super::store::{self, Action, DismissReason, Feedback, Heatmap, HistoryFilter};
use super::{thumbnail, Panel};
use crate::results::source;
use crate::triage::Decision;

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(message = "panel request failed", error = %e);
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the spool index cannot be read",
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such decision").into_response()
}

/// Who the images are of, read from the first image a decision rests on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Patient {
    pub name: String,
    pub id: String,
    pub accession: String,
    pub study_description: String,
}

impl Panel {
    async fn patient(&self, d: &Decision) -> Option<Patient> {
        let key = d.study_uid.clone().unwrap_or_else(|| d.unit.clone());
        if let Some(p) = self.patients.lock().expect("patients lock").get(&key) {
            return p.clone();
        }
        let p = self.read_patient(d).await;
        let mut cache = self.patients.lock().expect("patients lock");
        if cache.len() >= 1000 {
            cache.clear();
        }
        cache.insert(key, p.clone());
        p
    }

    async fn read_patient(&self, d: &Decision) -> Option<Patient> {
        let first = d.inputs.first()?.clone();
        let stored = source::locate(&self.spool, vec![first])
            .await
            .ok()?
            .into_iter()
            .next()?;
        let spool = Arc::clone(&self.spool);
        tokio::task::spawn_blocking(move || {
            // The attributes come before the pixels: read those first.
            let head = source::read_first(&spool, &stored, HEAD_BYTES).ok()?;
            let obj = match crate::spool::part10::parse(&head, true) {
                Ok(obj) => obj,
                Err(_) => {
                    let whole = source::read(&spool, &stored).ok()?;
                    crate::spool::part10::parse(&whole, true).ok()?
                }
            };
            let text = |t| crate::pixels::text(&obj, t).unwrap_or_default();
            Some(Patient {
                name: text(tags::PATIENT_NAME)
                    .replace('^', " ")
                    .trim()
                    .to_string(),
                id: text(tags::PATIENT_ID),
                accession: text(tags::ACCESSION_NUMBER),
                study_description: text(tags::STUDY_DESCRIPTION),
            })
        })
        .await
        .ok()?
    }
}

const HEAD_BYTES: u64 = 64 * 1024;

/// A decision as a logged-in user sees it.
#[derive(Serialize)]
struct Detailed<'a> {
    #[serde(flatten)]
    alert: Alert<'a>,
    patient: Option<Patient>,
    feedback_comment: Option<&'a str>,
    feedback_user: Option<&'a str>,
}

async fn detailed(
    panel: &Panel,
    rows: Vec<(i64, Decision)>,
    feedback: HashMap<i64, Feedback>,
) -> Vec<serde_json::Value> {
    let mut out = Vec::with_capacity(rows.len());
    for (id, d) in &rows {
        let f = feedback.get(id);
        let v = Detailed {
            alert: Alert::of(*id, d, f),
            patient: panel.patient(d).await,
            feedback_comment: f.and_then(|f| f.comment.as_deref()),
            feedback_user: f.map(|f| f.user.as_str()),
        };
        out.push(serde_json::to_value(v).expect("a decision serialises"));
    }
    out
}

pub async fn alert(
    State(panel): State<Arc<Panel>>,
    _user: LoggedIn,
    Path(id): Path<i64>,
) -> Response {
    let found = panel
        .spool
        .index()
        .call(move |c| {
            let d = store::decision(c, id)?;
            let f = store::latest_feedback(c, &[id])?;
            Ok((d, f))
        })
        .await;
    match found {
        Ok((Some(d), f)) => {
            let mut v = detailed(&panel, vec![(id, d)], f).await;
            Json(v.pop()).into_response()
        }
        Ok((None, _)) => not_found(),
        Err(e) => internal(e),
    }
}

pub async fn history(
    State(panel): State<Arc<Panel>>,
    _user: LoggedIn,
    Query(filter): Query<HistoryFilter>,
) -> Response {
    let found = panel
        .spool
        .index()
        .call(move |c| {
            let rows = store::history(c, &filter)?;
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            let f = store::latest_feedback(c, &ids)?;
            let choices = store::choices(c)?;
            Ok((rows, f, choices))
        })
        .await;
    match found {
        Ok((rows, f, choices)) => Json(serde_json::json!({
            "decisions": detailed(&panel, rows, f).await,
            "scanners": choices.scanners,
            "findings": choices.findings,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
pub struct FeedbackForm {
    action: Action,
    reason: Option<DismissReason>,
    comment: Option<String>,
}

const MAX_COMMENT: usize = 500;

pub async fn feedback(
    State(panel): State<Arc<Panel>>,
    user: LoggedIn,
    Path(id): Path<i64>,
    Json(form): Json<FeedbackForm>,
) -> Response {
    let comment = form
        .comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT)
    {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("a comment has at most {MAX_COMMENT} characters"),
        )
            .into_response();
    }
    match (form.action, form.reason) {
        (Action::Dismissed, None) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                "a dismissal needs a reason",
            )
                .into_response()
        }
        (Action::Dismissed, Some(DismissReason::Other)) if comment.is_none() => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                "say why when the reason is \"other\"",
            )
                .into_response()
        }
        (Action::Acknowledged, Some(_)) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                "an acknowledgement takes no reason",
            )
                .into_response()
        }
        _ => {}
    }
    let f = Feedback {
        decision: id,
        action: form.action,
        reason: form.reason,
        comment,
        user: user.user,
        at_ms: crate::spool::now_ms(),
    };
    let stored = f.clone();
    match panel
        .spool
        .index()
        .call(move |c| store::record_feedback(c, &stored))
        .await
    {
        Ok(Some(_)) => {
            tracing::info!(message = "alert feedback", decision = id, action = ?f.action, reason = ?f.reason, user = %f.user);
            let _ = panel.feedback.send(f.clone());
            Json(f).into_response()
        }
        Ok(None) => not_found(),
        Err(e) => internal(e),
    }
}

pub async fn thumbnail(
    State(panel): State<Arc<Panel>>,
    _user: LoggedIn,
    Path(id): Path<i64>,
) -> Response {
    let uid = match panel
        .spool
        .index()
        .call(move |c| store::heatmap(c, id))
        .await
    {
        Ok(Heatmap::Shown(uid)) => uid,
        Ok(Heatmap::NotYet) => {
            return (StatusCode::NOT_FOUND, "no heatmap yet for this decision").into_response()
        }
        // The report's one map shows a stronger finding of the same image.
        Ok(Heatmap::None) => return StatusCode::NO_CONTENT.into_response(),
        Err(e) => return internal(e),
    };
    let Some(stored) = source::locate(&panel.spool, vec![uid])
        .await
        .ok()
        .and_then(|v| v.into_iter().next())
    else {
        return (StatusCode::NOT_FOUND, "the heatmap is no longer held").into_response();
    };
    let spool = Arc::clone(&panel.spool);
    let png = tokio::task::spawn_blocking(move || {
        let bytes = source::read(&spool, &stored)?;
        thumbnail::png_of_rgb_instance(&bytes, thumbnail::MAX_SIDE)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match png {
        Err(e) => {
            // The reason may name the instance: debug level only.
            tracing::debug!(message = "heatmap unreadable", decision = id, error = %e);
            tracing::error!(
                message = "a heatmap cannot be read from the spool",
                decision = id
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the heatmap cannot be read",
            )
                .into_response()
        }
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            png,
        )
            .into_response(),
    }
}

/// The status bar: no patient data, so no login needed.
pub async fn status(State(panel): State<Arc<Panel>>) -> Response {
    let report = match super::report(&panel).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let destinations: Vec<_> = report
        .destinations
        .iter()
        .map(|d| {
            serde_json::json!({
                "name": d.name,
                "link": if d.pending > 0 && d.last_error.is_some() { "down" } else { "up" },
                "pending": d.pending,
                "dead": d.dead,
                "oldest_pending_secs": d.oldest_pending_secs,
            })
        })
        .collect();
    let triage = report.triage.as_ref();
    let model = triage.and_then(|t| t.model.as_ref());
    let used = crate::spool::DiskUsage {
        total_bytes: report.disk_total_bytes,
        used_bytes: report.disk_used_bytes,
        available_bytes: report.disk_available_bytes,
    }
    .used_percent();
    Json(serde_json::json!({
        "mode": if panel.config.triage.enabled { panel.config.results.mode.as_str() } else { "triage off" },
        "model": model.map(|m| serde_json::json!({
            "state": m.state, "name": m.name, "version": m.version, "engine": m.engine,
            "clinical_use": m.clinical_use, "error": m.error,
        })),
        "destinations": destinations,
        "triage_queue": triage.map_or(0, |t| t.queue + t.awaiting_series),
        "disk": {
            "used_percent": used,
            "available_bytes": report.disk_available_bytes,
            "refusing": panel.spool.watermarks().refusing(),
        },
        "last_received_ms": report.last_received_ms,
        "instances": report.instances,
    }))
    .into_response()
}
