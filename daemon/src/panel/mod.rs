//! The technologist's panel, served by firstlookd: the page, its live
//! feed of decisions (server-sent events that resume from the decision log),
//! `/healthz` and `/metrics`. Binds to loopback unless configured otherwise.
//! Nothing it serves without a login carries patient data.

mod api;
mod auth;
mod feed;
mod metrics;
mod store;
mod thumbnail;
mod tls;
pub mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::inference::Events;
use crate::spool::Spool;
use crate::status::{self, StatusReport};

pub use feed::Alert;
pub use store::{Action, DismissReason, Feedback};

/// What every handler shares.
pub struct Panel {
    config: Arc<Config>,
    spool: Arc<Spool>,
    events: Events,
    auth: auth::Auth,
    feedback: broadcast::Sender<Feedback>,
    /// Patient details by study (or their absence), read once from the spool.
    patients: Mutex<HashMap<String, Option<api::Patient>>>,
}

impl Panel {
    pub fn new(
        config: Arc<Config>,
        spool: Arc<Spool>,
        events: Events,
        audit: crate::audit::AuditLog,
    ) -> Panel {
        let idle = Duration::from_secs(config.panel.idle_logout_minutes.get() * 60);
        let secure = config.panel.tls_cert.is_some();
        Panel {
            config,
            spool,
            events,
            auth: auth::Auth::new(idle, secure, audit),
            feedback: broadcast::channel(256).0,
            patients: Mutex::default(),
        }
    }
}

pub fn router(panel: Arc<Panel>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(feed::handler))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(api::status))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/session", get(auth::session))
        .route("/api/history", get(api::history))
        .route("/api/alerts/{id}", get(api::alert))
        .route("/api/alerts/{id}/thumbnail.png", get(api::thumbnail))
        .route("/api/alerts/{id}/feedback", post(api::feedback))
        .layer(axum::middleware::map_response(no_store))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&panel),
            loopback_names_only,
        ))
        .with_state(panel)
}

async fn loopback_names_only(
    State(panel): State<Arc<Panel>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if auth::host_allowed(request.headers(), panel.config.panel.listen) {
        next.run(request).await
    } else {
        (StatusCode::MISDIRECTED_REQUEST, "unknown host name").into_response()
    }
}

/// Nothing the panel serves may linger in a shared browser's cache, and
/// no page of it may be framed by another.
async fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(header::HeaderValue::from_static("no-store"));
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

/// Binds the panel's port and serves until shutdown. A port that cannot
/// be bound is reported and leaves the rest of the daemon running.
/// The panel's port, bound, and its certificate and key, read: what must
/// happen before the daemon gives up root.
pub struct Socket {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

fn cannot_listen(addr: SocketAddr, e: &dyn std::fmt::Display) {
    tracing::error!(message = "the panel cannot listen; images are still received and forwarded", %addr, error = %e);
}

/// Binds the panel's port (and reads its TLS files); `None`, logged, when
/// it cannot: the rest of the daemon runs on.
pub async fn bind(config: &Config) -> Option<Socket> {
    let addr = config.panel.listen;
    let tls = match (&config.panel.tls_cert, &config.panel.tls_key) {
        (Some(cert), Some(key)) => match tls::acceptor(cert, key) {
            Ok(a) => Some(a),
            Err(e) => {
                cannot_listen(addr, &e);
                return None;
            }
        },
        _ => None,
    };
    match TcpListener::bind(addr).await {
        Ok(listener) => Some(Socket { listener, tls }),
        Err(e) => {
            cannot_listen(addr, &e);
            None
        }
    }
}

/// Serves the panel on its bound socket until shutdown.
pub async fn start(
    panel: Panel,
    socket: Socket,
    mut shutdown: watch::Receiver<bool>,
) -> Option<(SocketAddr, JoinHandle<()>)> {
    let addr = panel.config.panel.listen;
    let cannot = |e: &dyn std::fmt::Display| cannot_listen(addr, e);
    if let Err(e) = panel.spool.index().call(store::init).await {
        cannot(&e);
        return None;
    }
    let Socket { listener, tls } = socket;
    let bound = listener.local_addr().ok()?;
    let app = router(Arc::new(panel)).into_make_service_with_connect_info::<SocketAddr>();
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let task = match tls {
        Some(acceptor) => {
            let listener = match tls::TlsListener::new(listener, acceptor) {
                Ok(l) => l,
                Err(e) => {
                    cannot(&e);
                    return None;
                }
            };
            let serve = axum::serve(listener.tap_io(|_| {}), app).with_graceful_shutdown(stop);
            tokio::spawn(async move {
                if let Err(e) = serve.await {
                    tracing::error!(message = "the panel stopped", error = %e);
                }
            })
        }
        None => {
            let listener = listener.tap_io(|s| {
                let _ = s.set_nodelay(true);
            });
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop);
            tokio::spawn(async move {
                if let Err(e) = serve.await {
                    tracing::error!(message = "the panel stopped", error = %e);
                }
            })
        }
    };
    tracing::info!(message = "panel listening", url = %format!("{scheme}://{bound}/"));
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
