//! The technologist's panel, served by firstlookd: the page, its live
//! feed of decisions (server-sent events that resume from the decision log),
//! `/healthz` and `/metrics`. Binds to loopback unless configured otherwise.
//! Nothing it serves without a login carries patient data.

mod feed;
mod metrics;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::inference::Events;
use crate::spool::Spool;
use crate::status::{self, StatusReport};

pub use feed::Alert;

/// What every handler shares.
pub struct Panel {
    pub config: Arc<Config>,
    pub spool: Arc<Spool>,
    pub events: Events,
}

pub fn router(panel: Arc<Panel>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(feed::handler))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(panel)
}

/// Binds the panel's port and serves until shutdown. A port that cannot
/// be bound is reported and leaves the rest of the daemon running.
pub async fn start(
    panel: Panel,
    mut shutdown: watch::Receiver<bool>,
) -> Option<(SocketAddr, JoinHandle<()>)> {
    let addr = panel.config.panel.listen;
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(message = "the panel cannot listen; images are still received and forwarded", %addr, error = %e);
            return None;
        }
    };
    let bound = listener.local_addr().ok()?;
    let app = router(Arc::new(panel));
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        });
        if let Err(e) = serve.await {
            tracing::error!(message = "the panel stopped", error = %e);
        }
    });
    tracing::info!(message = "panel listening", url = %format!("http://{bound}/"));
    Some((bound, task))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn report(panel: &Panel) -> Result<StatusReport, String> {
    let dir = panel.spool.dir().to_path_buf();
    tokio::task::spawn_blocking(move || status::report(&dir).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

/// Liveness (the process answers) and readiness (images are accepted and,
/// with triage on, the model is ready): 200 when ready, else 503, with
/// each check's state.
async fn health(State(panel): State<Arc<Panel>>) -> Response {
    let refusing = panel.spool.watermarks().refusing();
    let status = report(&panel).await;
    let model = match (&status, panel.config.triage.enabled) {
        (_, false) => "disabled".to_string(),
        (Ok(s), true) => s
            .triage
            .as_ref()
            .and_then(|t| t.model.as_ref())
            .map_or("starting".to_string(), |m| m.state.clone()),
        (Err(_), true) => "unknown".to_string(),
    };
    let index = match &status {
        Ok(_) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let ready = !refusing && status.is_ok() && (model == "ready" || model == "disabled");
    let body = serde_json::json!({
        "live": true,
        "ready": ready,
        "checks": {
            "spool_index": index,
            "disk": if refusing { "past the high watermark: refusing images" } else { "ok" },
            "model": model,
        },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics_text(State(panel): State<Arc<Panel>>) -> Response {
    let dir = panel.spool.dir().to_path_buf();
    let text = tokio::task::spawn_blocking(move || {
        let status = status::report(&dir).map_err(|e| e.to_string())?;
        let conn = crate::spool::open_read_only(&crate::spool::index_path(&dir))
            .map_err(|e| e.to_string())?;
        metrics::render(&status, &conn).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match text {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
