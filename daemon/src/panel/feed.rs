//! The live feed: every decision as a server-sent event whose id is its row
//! in the decision log. A client that reconnects with `Last-Event-ID` gets
//! what it missed from the log, then the live events, so no alert is lost
//! across a network blip or a daemon restart. The events carry no patient
//! data (no names, IDs or UIDs).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use tokio_stream::wrappers::BroadcastStream;

use crate::triage::Decision;

use super::store::{Action, DismissReason, Feedback};

use super::Panel;

/// What the feed says about a decision.
#[derive(Debug, Serialize)]
pub struct Alert<'a> {
    pub id: i64,
    pub finding: Option<&'a str>,
    pub finding_display: Option<&'a str>,
    pub outcome: &'a str,
    pub modality: &'a str,
    pub scanner: &'a str,
    pub score: Option<f32>,
    pub threshold: Option<f64>,
    pub operating_point: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub completion: &'a str,
    pub received_last_ms: i64,
    pub decided_at_ms: i64,
    pub model_name: &'a str,
    pub model_version: &'a str,
    pub engine: &'a str,
    pub clinical_use: bool,
    /// The latest acknowledgement or dismissal, without its comment (free
    /// text may name the patient).
    pub feedback: Option<FeedbackState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeedbackState {
    pub decision: i64,
    pub action: Action,
    pub reason: Option<DismissReason>,
    pub at_ms: i64,
}

impl From<&Feedback> for FeedbackState {
    fn from(f: &Feedback) -> Self {
        FeedbackState {
            decision: f.decision,
            action: f.action,
            reason: f.reason,
            at_ms: f.at_ms,
        }
    }
}

impl<'a> Alert<'a> {
    pub fn of(id: i64, d: &'a Decision, feedback: Option<&Feedback>) -> Alert<'a> {
        Alert {
            id,
            finding: d.finding.as_deref(),
            finding_display: d.finding_display.as_deref(),
            outcome: d.outcome.as_str(),
            modality: &d.modality,
            scanner: &d.scanner,
            score: d.score,
            threshold: d.threshold,
            operating_point: d.operating_point.as_deref(),
            reason: d.reason.as_deref(),
            completion: &d.completion,
            received_last_ms: d.received_last_ms,
            decided_at_ms: d.decided_at_ms,
            model_name: &d.model.name,
            model_version: &d.model.version,
            engine: &d.model.engine,
            clinical_use: d.model.clinical_use,
            feedback: feedback.map(FeedbackState::from),
        }
    }
}

fn event(id: i64, d: &Decision, f: Option<&Feedback>) -> Event {
    let json = serde_json::to_string(&Alert::of(id, d, f)).expect("an alert serialises");
    Event::default()
        .id(id.to_string())
        .event("decision")
        .data(json)
}

/// Feedback has no id of its own: the browser's Last-Event-ID stays the
/// last decision's, and a replayed decision carries its latest feedback.
fn feedback_event(f: &Feedback) -> Event {
    let json = serde_json::to_string(&FeedbackState::from(f)).expect("feedback serialises");
    Event::default().event("feedback").data(json)
}

/// Decisions when nothing was seen yet: the newest few, for context.
const FIRST_LOOK: usize = 50;
/// Decisions replayed per connection; a client further behind gets the
/// rest on its next (immediate) reconnection.
const REPLAY_MAX: usize = 500;

pub async fn handler(
    State(panel): State<Arc<Panel>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    // Subscribe before reading the log, so nothing falls between the two.
    let live = panel.events.subscribe();
    let feedback = panel.feedback.subscribe();
    // A read-only connection: replays never wait on, or hold up, the
    // writer that commits what scanners send.
    let dir = panel.spool.dir().to_path_buf();
    let (missed, said) = tokio::task::spawn_blocking(move || {
        let c = crate::spool::open_read_only(&crate::spool::index_path(&dir))?;
        let missed = super::store::decisions_after(&c, last_seen, FIRST_LOOK, REPLAY_MAX)?;
        let ids: Vec<i64> = missed.iter().map(|(id, _)| *id).collect();
        let said = super::store::latest_feedback(&c, &ids)?;
        Ok::<_, crate::spool::IndexError>((missed, said))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()))
    .unwrap_or_else(|e| {
        tracing::error!(message = "the feed cannot replay the decision log", error = %e);
        Default::default()
    });
    let behind = last_seen.is_some() && missed.len() == REPLAY_MAX;
    let replayed_to = missed.last().map(|(id, _)| *id).or(last_seen).unwrap_or(0);
    let replay = stream::iter(
        missed
            .into_iter()
            .map(move |(id, d)| Ok::<_, Infallible>(event(id, &d, said.get(&id)))),
    );
    // A subscriber that falls too far behind ends its stream: the browser
    // reconnects with Last-Event-ID and the log fills the gap.
    let live = BroadcastStream::new(live)
        .take_while(|r| std::future::ready(r.is_ok()))
        .filter_map(move |r| {
            std::future::ready(match r {
                Ok(ev) if ev.id > replayed_to => Some(Ok(event(ev.id, &ev.decision, None))),
                _ => None,
            })
        });
    let feedback = BroadcastStream::new(feedback)
        .filter_map(|r| std::future::ready(r.ok().map(|f| Some(Ok(feedback_event(&f))))));
    // The merged stream ends when the decisions do (so the browser resumes
    // from the log), however much feedback is still to come.
    let live = stream::select(
        live.map(Some).chain(stream::once(std::future::ready(None))),
        feedback,
    )
    .take_while(|e| std::future::ready(e.is_some()))
    .filter_map(std::future::ready);
    let stream: futures_util::stream::BoxStream<'static, Result<Event, Infallible>> = if behind {
        // End here; the browser comes straight back for the next page.
        let again = Event::default()
            .retry(std::time::Duration::from_millis(50))
            .comment("more to replay");
        replay
            .chain(stream::once(std::future::ready(Ok(again))))
            .boxed()
    } else {
        let steady = Event::default()
            .retry(std::time::Duration::from_secs(2))
            .comment("live");
        stream::once(std::future::ready(Ok(steady)))
            .chain(replay)
            .chain(live)
            .boxed()
    };
    Sse::new(stream).keep_alive(KeepAlive::default())
}
