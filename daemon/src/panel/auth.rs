//! Logging in to the panel: sessions held in memory (a restart logs
//! everybody out), an HttpOnly SameSite=Strict cookie (Secure under TLS),
//! a per-session CSRF token every POST must echo, idle logout, and login
//! attempts limited per client address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{users, Panel};
use crate::audit::{AuditLog, Event, Outcome};

pub const COOKIE: &str = "firstlook_session";
/// Sent by the page on requests it makes by itself (fetching details for
/// a new card); those do not count as activity for the idle logout.
pub const BACKGROUND_HEADER: &str = "x-firstlook-background";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Failed logins from one address within `WINDOW` before it must wait.
const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);
const LOCKOUT: Duration = Duration::from_secs(60);
/// Addresses remembered at most (a flood of sources cannot grow it further).
const MAX_TRACKED: usize = 10_000;
/// Password checks at once: argon2id takes about 19 MiB and a core each.
const CONCURRENT_CHECKS: usize = 2;

#[derive(Debug, Clone)]
struct Session {
    user: String,
    csrf: String,
    last_active: Instant,
    ip: IpAddr,
}

#[derive(Debug, Clone, Copy)]
struct Attempts {
    failures: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

pub struct Auth {
    sessions: Mutex<HashMap<String, Session>>,
    attempts: Mutex<HashMap<IpAddr, Attempts>>,
    checks: tokio::sync::Semaphore,
    idle: Duration,
    secure_cookie: bool,
    audit: AuditLog,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS has a random source");
    hex::encode(b)
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Auth {
    pub fn new(idle: Duration, secure_cookie: bool, audit: AuditLog) -> Auth {
        Auth {
            sessions: Mutex::default(),
            attempts: Mutex::default(),
            checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
            idle,
            secure_cookie,
            audit,
        }
    }

    fn open(&self, user: &str, ip: IpAddr) -> (String, Session) {
        let s = Session {
            user: user.to_string(),
            csrf: random_token(),
            last_active: Instant::now(),
            ip,
        };
        let token = random_token();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let idle = self.idle;
        sessions.retain(|_, s| {
            let live = s.last_active.elapsed() < idle;
            if !live {
                self.logged_out(s);
            }
            live
        });
        sessions.insert(token.clone(), s.clone());
        (token, s)
    }

    fn find(&self, token: &str, active: bool) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let s = sessions.get_mut(token)?;
        if s.last_active.elapsed() >= self.idle {
            if let Some(s) = sessions.remove(token) {
                self.logged_out(&s);
            }
            return None;
        }
        if active {
            s.last_active = Instant::now();
        }
        Some(s.clone())
    }

    fn close(&self, token: &str) {
        let closed = self.sessions.lock().expect("sessions lock").remove(token);
        if let Some(s) = closed {
            self.logged_out(&s);
        }
    }

    fn logged_out(&self, s: &Session) {
        self.audit.record(Event::Logout {
            user: s.user.clone(),
            peer: Some(s.ip),
        });
    }

    fn audit_login(&self, user: &str, ip: IpAddr, outcome: Outcome) {
        self.audit.record(Event::Login {
            user: user.to_string(),
            peer: Some(ip),
            outcome,
        });
    }

    /// How long `ip` must still wait before trying again, if at all.
    fn locked(&self, ip: IpAddr) -> Option<Duration> {
        let attempts = self.attempts.lock().expect("attempts lock");
        let until = attempts.get(&ip)?.locked_until?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts an attempt as failed before the password is checked, so that
    /// attempts made in parallel count too; a success clears it.
    fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().expect("attempts lock");
        if attempts.len() >= MAX_TRACKED && !attempts.contains_key(&ip) {
            attempts.retain(|_, a| a.locked_until.is_some_and(|t| t > now));
            if attempts.len() >= MAX_TRACKED {
                attempts.clear();
            }
        }
        let fresh = Attempts {
            failures: 0,
            since: now,
            locked_until: None,
        };
        let a = attempts.entry(ip).or_insert(fresh);
        let lock_over = a.locked_until.is_some_and(|t| t <= now);
        if lock_over || now.duration_since(a.since) > WINDOW {
            *a = fresh;
        }
        a.failures += 1;
        if a.failures >= MAX_FAILURES {
            a.locked_until = Some(now + LOCKOUT);
        }
    }

    fn succeeded(&self, ip: IpAddr) {
        self.attempts.lock().expect("attempts lock").remove(&ip);
    }

    fn cookie(&self, token: &str, max_age: Option<u64>) -> String {
        let mut c = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if self.secure_cookie {
            c.push_str("; Secure");
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        c
    }
}

fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// A request from a logged-in user; POSTs must carry the session's CSRF
/// token. Anything else is refused with 401 (or 403 for a bad token).
pub struct LoggedIn {
    pub user: String,
    pub csrf: String,
}

impl FromRequestParts<Arc<Panel>> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        panel: &Arc<Panel>,
    ) -> Result<Self, Self::Rejection> {
        let active = !parts.headers.contains_key(BACKGROUND_HEADER);
        let session = session_token(&parts.headers)
            .and_then(|t| panel.auth.find(t, active))
            .ok_or_else(|| (StatusCode::UNAUTHORIZED, "log in first").into_response())?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !same(sent, &session.csrf) {
                return Err((StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response());
            }
        }
        Ok(LoggedIn {
            user: session.user,
            csrf: session.csrf,
        })
    }
}

#[derive(Deserialize)]
pub struct Credentials {
    user: String,
    password: String,
}

#[derive(Serialize)]
struct SessionInfo<'a> {
    user: &'a str,
    csrf: &'a str,
    idle_logout_secs: u64,
}

/// On loopback the panel answers only to loopback names: a page of another
/// site whose name was rebound to 127.0.0.1 gets nothing.
pub fn host_allowed(headers: &HeaderMap, listen: SocketAddr) -> bool {
    if !listen.ip().is_loopback() {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A POST from a page of another site is refused even before the
/// password is checked (SameSite does not protect the login itself).
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        host,
    ) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
            origin_host != host
        }
        _ => false,
    }
}

pub async fn login(
    State(panel): State<Arc<Panel>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(c): Json<Credentials>,
) -> Response {
    if cross_site(&headers) {
        return (StatusCode::FORBIDDEN, "cross-site login refused").into_response();
    }
    let ip = peer.ip();
    if let Some(wait) = panel.auth.locked(ip) {
        tracing::warn!(message = "panel login refused: too many failures", %ip);
        panel.auth.audit_login(
            &c.user,
            ip,
            Outcome::MinorFailure("refused: too many failed logins from this address".into()),
        );
        let secs = wait.as_secs().max(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            format!("too many failed logins; try again in {secs} s"),
        )
            .into_response();
    }
    let Some(file) = panel.config.panel.users_file.clone() else {
        return (
            StatusCode::UNAUTHORIZED,
            "no panel users are set up: run firstlook-provision set-password",
        )
            .into_response();
    };
    let user = c.user.clone();
    panel.auth.failed(ip);
    let Ok(_permit) = panel.auth.checks.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let ok = tokio::task::spawn_blocking(move || users::verify(&file, &c.user, &c.password))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match ok {
        Ok(true) => {
            panel.auth.succeeded(ip);
            let (token, s) = panel.auth.open(&user, ip);
            tracing::info!(message = "panel login", user = %user, %ip);
            panel.auth.audit_login(&user, ip, Outcome::Success);
            let body = Json(SessionInfo {
                user: &s.user,
                csrf: &s.csrf,
                idle_logout_secs: panel.auth.idle.as_secs(),
            });
            (
                [(header::SET_COOKIE, panel.auth.cookie(&token, None))],
                body,
            )
                .into_response()
        }
        Ok(false) => {
            tracing::warn!(message = "panel login failed", %ip);
            panel.auth.audit_login(
                &user,
                ip,
                Outcome::MinorFailure("wrong user name or password".into()),
            );
            (StatusCode::UNAUTHORIZED, "wrong user name or password").into_response()
        }
        Err(e) => {
            tracing::error!(message = "panel login could not be checked", error = %e);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the user file cannot be read",
            )
                .into_response()
        }
    }
}

pub async fn logout(
    State(panel): State<Arc<Panel>>,
    user: LoggedIn,
    headers: HeaderMap,
) -> Response {
    if let Some(t) = session_token(&headers) {
        panel.auth.close(t);
    }
    tracing::info!(message = "panel logout", user = %user.user);
    (
        [(header::SET_COOKIE, panel.auth.cookie("", Some(0)))],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

pub async fn session(State(panel): State<Arc<Panel>>, user: LoggedIn) -> Response {
    Json(SessionInfo {
        user: &user.user,
        csrf: &user.csrf,
        idle_logout_secs: panel.auth.idle.as_secs(),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_after_the_idle_time_and_background_requests_do_not_extend_them() {
        let auth = Auth::new(Duration::from_millis(200), false, AuditLog::off());
        let (token, _) = auth.open("tech", IpAddr::from([127, 0, 0, 1]));
        std::thread::sleep(Duration::from_millis(120));
        assert!(auth.find(&token, false).is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(auth.find(&token, false).is_none(), "idle past the limit");
        let (token, _) = auth.open("tech", IpAddr::from([127, 0, 0, 1]));
        std::thread::sleep(Duration::from_millis(120));
        assert!(auth.find(&token, true).is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(auth.find(&token, true).is_some(), "activity keeps it");
    }

    #[test]
    fn on_loopback_only_loopback_host_names_are_served() {
        let lo: SocketAddr = "127.0.0.1:8088".parse().unwrap();
        let host = |h: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, h.parse().unwrap());
            m
        };
        for ok in [
            "127.0.0.1:8088",
            "localhost:8088",
            "[::1]:8088",
            "LOCALHOST",
        ] {
            assert!(host_allowed(&host(ok), lo), "{ok}");
        }
        for bad in [
            "evil.example:8088",
            "10.0.0.5:8088",
            "127.0.0.1.evil.example",
        ] {
            assert!(!host_allowed(&host(bad), lo), "{bad}");
        }
        assert!(host_allowed(
            &host("panel.hospital.example"),
            "0.0.0.0:8443".parse().unwrap()
        ));
    }

    #[test]
    fn a_lockout_ends_and_old_failures_are_forgotten() {
        let auth = Auth::new(Duration::from_secs(60), false, AuditLog::off());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            auth.failed(ip);
        }
        assert!(auth.locked(ip).is_some());
        // The lockout is over: one more typo starts counting afresh.
        auth.attempts
            .lock()
            .unwrap()
            .get_mut(&ip)
            .unwrap()
            .locked_until = Some(Instant::now());
        auth.failed(ip);
        assert!(auth.locked(ip).is_none());
        assert_eq!(auth.attempts.lock().unwrap()[&ip].failures, 1);
    }

    #[test]
    fn an_address_is_locked_out_after_repeated_failures_and_a_success_clears_it() {
        let auth = Auth::new(Duration::from_secs(60), false, AuditLog::off());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..MAX_FAILURES - 1 {
            auth.failed(ip);
            assert!(auth.locked(ip).is_none());
        }
        auth.failed(ip);
        assert!(auth.locked(ip).is_some());
        assert!(auth.locked("127.0.0.2".parse().unwrap()).is_none());
        auth.succeeded(ip);
        assert!(auth.locked(ip).is_none());
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_under_tls() {
        assert_eq!(
            Auth::new(Duration::from_secs(1), false, AuditLog::off()).cookie("t", None),
            "firstlook_session=t; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(Auth::new(Duration::from_secs(1), true, AuditLog::off())
            .cookie("t", None)
            .ends_with("; Secure"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; firstlook_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(session_token(&h), Some("abc"));
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8088".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:8088".parse().unwrap());
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(cross_site(&h));
    }
}
