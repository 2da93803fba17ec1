//! The panel's machine-facing side: `/healthz` says whether the box takes
//! images and has its model, `/metrics` parses as Prometheus text and counts
//! what happened, and the live feed gives every decision as a server-sent
//! event that a client reconnecting with `Last-Event-ID` resumes from,
//! across a daemon restart. Nothing unauthenticated carries patient data.

use std::process::Command;
use std::time::Duration;

use firstlook_e2e::*;

const SETTLE: Duration = Duration::from_secs(120);

fn get(port: u16, path: &str, headers: &[&str], max_secs: u32) -> CmdOutput {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-N", "-i", "--max-time", &max_secs.to_string()]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    run_cmd(&mut cmd, Duration::from_secs(u64::from(max_secs) + 30))
}

/// The ids of the `decision` events in an SSE body.
fn event_ids(body: &str) -> Vec<i64> {
    body.lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| v.trim().parse().unwrap())
        .collect()
}

fn phi_of(file: &DicomFile) -> Vec<String> {
    let mut phi = vec![file.sop_instance_uid.clone()];
    for tag in [
        dicom_object::Tag(0x0010, 0x0010),
        dicom_object::Tag(0x0010, 0x0020),
        dicom_object::Tag(0x0008, 0x0050),
        dicom_object::Tag(0x0020, 0x000D),
    ] {
        if let Some(v) = file.text(tag).filter(|v| !v.is_empty()) {
            phi.push(v);
        }
    }
    phi
}

fn assert_no_phi(what: &str, text: &str, files: &[DicomFile]) {
    for f in files {
        for v in phi_of(f) {
            assert!(!text.contains(&v), "{what} carries {v:?}:\n{text}");
        }
    }
}

#[test]
fn health_and_metrics_report_the_box_and_parse_as_prometheus_text() {
    let dir = scratch("panel-metrics");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port))
        .triage("engine = \"tract\"");
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let send = dir.path().join("send");
    let mut files = phantom(
        &StudySpec::new(Kind::Cr, 104).with_finding(Finding::Pneumothorax),
        &send.join("positive"),
    );
    files.extend(phantom(
        &StudySpec::new(Kind::Cr, 103),
        &send.join("negative"),
    ));
    let out = storescu(daemon.port, "SCANNER", &["+sd", "+r"], &[send.as_path()]);
    assert!(out.status.success(), "{out}");
    daemon.wait_decided(2, SETTLE);
    daemon.wait_settled(2, SETTLE);
    assert_eq!(pacs.received().len(), 2);

    let health = get(daemon.panel_port, "/healthz", &[], 10);
    assert!(health.stdout.starts_with("HTTP/1.1 200"), "{health}");
    let body: serde_json::Value =
        serde_json::from_str(health.stdout.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["checks"]["model"], "ready", "{body}");

    let metrics = get(daemon.panel_port, "/metrics", &[], 10);
    assert!(metrics.stdout.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.stdout.contains("text/plain; version=0.0.4"),
        "{metrics}"
    );
    let (parsed, text) = firstlook_e2e::metrics::scrape(daemon.panel_port);
    assert_no_phi("/metrics", &text, &files);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        firstlook_e2e::metrics::sample(&parsed, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
    };
    assert_eq!(value("firstlook_spool_instances", &[]), 2.0);
    assert_eq!(
        value("firstlook_spool_delivered", &[("destination", "pacs")]),
        2.0
    );
    assert_eq!(
        value("firstlook_forward_queue_depth", &[("destination", "pacs")]),
        0.0
    );
    assert_eq!(
        value("firstlook_dead_lettered", &[("destination", "pacs")]),
        0.0
    );
    assert_eq!(
        value(
            "firstlook_decisions_total",
            &[("finding", "pneumothorax"), ("outcome", "urgent")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "firstlook_decisions_total",
            &[("finding", "effusion"), ("outcome", "no_finding")]
        ),
        2.0
    );
    assert_eq!(
        value("firstlook_model_ready", &[("model", "firstlook-demo")]),
        1.0
    );
    let histogram = parsed
        .samples
        .iter()
        .find(|s| s.metric == "firstlook_decision_latency_seconds")
        .unwrap_or_else(|| panic!("no latency histogram in\n{text}"));
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let inf = buckets.last().unwrap();
            assert_eq!(inf.count, 4.0, "{buckets:?}");
            assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        }
        other => panic!("latency is not a histogram: {other:?}"),
    }
}

#[test]
fn the_feed_pushes_decisions_and_resumes_from_last_event_id_across_a_restart() {
    let dir = scratch("panel-feed");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port))
        .triage("engine = \"tract\"");
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let study = |seed: u64, finding: Option<Finding>, name: &str| {
        let mut spec = StudySpec::new(Kind::Cr, seed);
        if let Some(f) = finding {
            spec = spec.with_finding(f);
        }
        phantom(&spec, &dir.path().join(name))
    };
    let first = study(104, Some(Finding::Pneumothorax), "first");
    let out = storescu(daemon.port, "SCANNER", &[], &[first[0].path.as_path()]);
    assert!(out.status.success(), "{out}");
    daemon.wait_decided(1, SETTLE);

    // A new client gets what was decided so far.
    let seen = get(daemon.panel_port, "/events", &[], 2);
    assert!(seen.stdout.contains("text/event-stream"), "{seen}");
    let ids = event_ids(&seen.stdout);
    assert_eq!(ids.len(), 2, "two findings on one CR:\n{seen}");
    assert!(seen.stdout.contains("\"outcome\":\"urgent\""), "{seen}");
    assert!(seen.stdout.contains("\"clinical_use\":false"), "{seen}");
    let last = *ids.iter().max().unwrap();
    // An id this log never reached (another box's spool): a first look, not silence.
    let foreign = get(daemon.panel_port, "/events", &["Last-Event-ID: 999999"], 2);
    assert_eq!(event_ids(&foreign.stdout), ids, "{foreign}");

    // A client listening live gets a new decision as it is made.
    let port = daemon.panel_port;
    let listener =
        std::thread::spawn(move || get(port, "/events", &[&format!("Last-Event-ID: {last}")], 20));
    std::thread::sleep(Duration::from_secs(2));
    let second = study(103, None, "second");
    let out = storescu(daemon.port, "SCANNER", &[], &[second[0].path.as_path()]);
    assert!(out.status.success(), "{out}");
    daemon.wait_decided(2, SETTLE);
    let live = listener.join().unwrap();
    let live_ids = event_ids(&live.stdout);
    assert_eq!(
        live_ids.len(),
        2,
        "the second CR's two decisions, live:\n{live}"
    );
    assert!(live_ids.iter().all(|&id| id > last));
    let last = *live_ids.iter().max().unwrap();

    // Restarted, with a decision made before the client comes back: the
    // client resumes from its Last-Event-ID and misses nothing.
    daemon.kill9();
    daemon.restart();
    let third = study(105, Some(Finding::Effusion), "third");
    let out = storescu(daemon.port, "SCANNER", &[], &[third[0].path.as_path()]);
    assert!(out.status.success(), "{out}");
    daemon.wait_decided(3, SETTLE);
    let resumed = get(
        daemon.panel_port,
        "/events",
        &[&format!("Last-Event-ID: {last}")],
        3,
    );
    let resumed_ids = event_ids(&resumed.stdout);
    assert_eq!(
        resumed_ids.len(),
        2,
        "the third CR's decisions after the restart:\n{resumed}"
    );
    assert!(
        resumed_ids.iter().all(|&id| id > last),
        "{resumed_ids:?} after {last}"
    );

    let all: Vec<DicomFile> = first.into_iter().chain(second).chain(third).collect();
    for body in [&seen.stdout, &live.stdout, &resumed.stdout] {
        assert_no_phi("the feed", body, &all);
    }
    let page = get(daemon.panel_port, "/", &[], 10);
    assert!(page.stdout.contains("EventSource(\"/events\")"), "{page}");
    assert!(page.stdout.contains("not for clinical use"), "{page}");
    daemon.wait_settled(3, SETTLE);
    assert_eq!(pacs.received().len(), 3);
}

const USER: &str = "tech1";
const PASSWORD: &str = "correct horse battery";

#[test]
fn every_route_with_patient_data_needs_a_login_and_posts_need_the_csrf_token() {
    let dir = scratch("panel-auth");
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .triage("engine = \"tract\"");
    let mut daemon = Daemon::start(dir.path(), &cfg);
    daemon.set_panel_password(USER, PASSWORD);
    let files = phantom(
        &StudySpec::new(Kind::Cr, 104).with_finding(Finding::Pneumothorax),
        &dir.path().join("cr"),
    );
    let out = storescu(daemon.port, "SCANNER", &[], &[files[0].path.as_path()]);
    assert!(out.status.success(), "{out}");
    daemon.wait_decided(1, SETTLE);
    let base = daemon.panel_url();
    let anon = dir.path().join("anon.jar");
    let feedback = r#"{"action":"acknowledged"}"#;

    // Route by route, without a session: refused, and nothing about the patient.
    let get_routes = [
        "/api/alerts/1",
        "/api/alerts/1/thumbnail.png",
        "/api/history",
        "/api/session",
    ];
    for route in get_routes {
        let (code, text) = http(&format!("{base}{route}"), &anon, &[]);
        assert_eq!(code, 401, "GET {route} without a login:\n{text}");
        assert_no_phi(route, &text, &files);
    }
    for route in ["/api/alerts/1/feedback", "/api/logout"] {
        let (code, text) = http(&format!("{base}{route}"), &anon, &json_post(feedback, &[]));
        assert_eq!(code, 401, "POST {route} without a login:\n{text}");
    }
    // What is open carries no patient data.
    for route in ["/", "/api/status", "/healthz", "/metrics"] {
        let (code, text) = http(&format!("{base}{route}"), &anon, &[]);
        assert_eq!(code, 200, "GET {route}:\n{text}");
        assert_no_phi(route, &text, &files);
    }
    let (_, events) = http(&format!("{base}/events"), &anon, &["--max-time", "2"]);
    assert_no_phi("/events", &events, &files);

    // A wrong password, a login from another site, then the right one.
    let jar = dir.path().join("tech.jar");
    let login = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
    let (code, _) = http(
        &format!("{base}/api/login"),
        &jar,
        &json_post(r#"{"user":"tech1","password":"guess"}"#, &[]),
    );
    assert_eq!(code, 401);
    let (code, _) = http(
        &format!("{base}/api/login"),
        &jar,
        &json_post(&login, &["-H", "Origin: http://elsewhere.example"]),
    );
    assert_eq!(code, 403, "a cross-site login is refused");
    let (code, text) = http(&format!("{base}/api/login"), &jar, &json_post(&login, &[]));
    assert_eq!(code, 200, "{text}");
    let cookie = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no session cookie:\n{text}"));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    let session: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let csrf = session["csrf"].as_str().unwrap().to_string();

    // Logged in: the patient is there.
    let (code, text) = http(&format!("{base}/api/alerts/1"), &jar, &[]);
    assert_eq!(code, 200, "{text}");
    let name = dicom_object::open_file(&files[0].path)
        .unwrap()
        .element(dicom_object::Tag(0x0010, 0x0020))
        .unwrap()
        .to_str()
        .unwrap()
        .trim()
        .to_string();
    assert!(
        text.contains(&name),
        "the patient ID for a logged-in user:\n{text}"
    );
    assert!(text.contains("no-store"), "{text}");
    let (code, text) = http(&format!("{base}/api/history"), &jar, &[]);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(&name));

    // The CR's one heatmap belongs to its strongest finding's card only.
    let thumbnails = wait_until(SETTLE, "both decisions' thumbnails answered", |last| {
        let codes: Vec<u16> = (1..=2)
            .map(|id| http(&format!("{base}/api/alerts/{id}/thumbnail.png"), &jar, &[]).0)
            .collect();
        *last = format!("{codes:?}");
        (!codes.contains(&404)).then_some(codes)
    });
    let mut sorted = thumbnails.clone();
    sorted.sort();
    assert_eq!(sorted, vec![200, 204], "{thumbnails:?}");
    let urgent = 1 + thumbnails.iter().position(|&c| c == 200).unwrap();
    let png = dir.path().join("thumb.png");
    let out = run_cmd(
        Command::new("curl")
            .args(["-s", "--max-time", "10", "-b"])
            .arg(&jar)
            .arg("-o")
            .arg(&png)
            .arg(format!("{base}/api/alerts/{urgent}/thumbnail.png")),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG image");

    // A POST without the CSRF token, or with another, is refused.
    let url = format!("{base}/api/alerts/1/feedback");
    let (code, _) = http(&url, &jar, &json_post(feedback, &[]));
    assert_eq!(code, 403);
    let (code, _) = http(
        &url,
        &jar,
        &json_post(feedback, &["-H", "x-csrf-token: 00"]),
    );
    assert_eq!(code, 403);
    let with_token = format!("x-csrf-token: {csrf}");
    let (code, text) = http(
        &url,
        &jar,
        &json_post(r#"{"action":"dismissed"}"#, &["-H", &with_token]),
    );
    assert_eq!(code, 422, "a dismissal without a reason:\n{text}");
    let (code, text) = http(&url, &jar, &json_post(feedback, &["-H", &with_token]));
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(&format!("\"user\":\"{USER}\"")), "{text}");
    let (code, _) = http(
        &format!("{base}/api/alerts/999999/feedback"),
        &jar,
        &json_post(feedback, &["-H", &with_token]),
    );
    assert_eq!(code, 404);

    // Logged out, the same cookie opens nothing.
    let (code, _) = http(
        &format!("{base}/api/logout"),
        &jar,
        &json_post("{}", &["-H", &with_token]),
    );
    assert_eq!(code, 204);
    let (code, _) = http(&format!("{base}/api/alerts/1"), &jar, &[]);
    assert_eq!(code, 401);
}

#[test]
fn beyond_loopback_the_panel_speaks_tls_with_the_provisioned_certificate() {
    let dir = scratch("panel-tls");
    let pki = Pki::new(&dir.path().join("pki"));
    let mut cfg = DaemonConfig::new().scanner("SCANNER", &["127.0.0.1"]);
    cfg.panel = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        pki.server_cert.display(),
        pki.server_key.display()
    );
    let daemon = Daemon::start(dir.path(), &cfg);
    daemon.set_panel_password(USER, PASSWORD);
    let base = format!("https://127.0.0.1:{}", daemon.panel_port);
    let jar = dir.path().join("jar");
    let ca = pki.ca_cert.to_str().unwrap();
    let (code, text) = http(&format!("{base}/healthz"), &jar, &["--cacert", ca]);
    assert_eq!(code, 200, "{text}");
    let login = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
    let mut args = json_post(&login, &[]);
    args.extend(["--cacert", ca]);
    let (code, text) = http(&format!("{base}/api/login"), &jar, &args);
    assert_eq!(code, 200, "{text}");
    assert!(
        text.lines()
            .any(|l| l.to_ascii_lowercase().starts_with("set-cookie:") && l.contains("; Secure")),
        "the session cookie is Secure under TLS:\n{text}"
    );
    // Plain HTTP on the TLS port gets nothing.
    let plain = run_cmd(
        Command::new("curl").args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{}/healthz", daemon.panel_port),
        ]),
        Duration::from_secs(30),
    );
    assert!(!plain.stdout.contains("\"ready\""), "{plain}");
}

#[test]
fn wrong_passwords_sent_in_parallel_all_count_towards_the_lockout() {
    let dir = scratch("panel-parallel-logins");
    let daemon = Daemon::start(
        dir.path(),
        &DaemonConfig::new().scanner("SCANNER", &["127.0.0.1"]),
    );
    daemon.set_panel_password(USER, PASSWORD);
    let url = format!("{}/api/login", daemon.panel_url());
    let guesses: Vec<_> = (0..8)
        .map(|i| {
            let (url, jar) = (url.clone(), dir.path().join(format!("jar{i}")));
            std::thread::spawn(move || {
                http(
                    &url,
                    &jar,
                    &json_post(
                        &format!(r#"{{"user":"{USER}","password":"guess {i}"}}"#),
                        &[],
                    ),
                )
                .0
            })
        })
        .collect();
    let codes: Vec<u16> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
    assert!(codes.iter().all(|&c| c == 401 || c == 429), "{codes:?}");
    let login = format!(r#"{{"user":"{USER}","password":"{PASSWORD}"}}"#);
    let (code, text) = http(&url, &dir.path().join("jar"), &json_post(&login, &[]));
    assert_eq!(
        code, 429,
        "locked out even with the right password:\n{text}"
    );
    assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
    // Another site's name rebound to loopback gets nothing at all.
    let (code, _) = http(
        &format!("{}/api/status", daemon.panel_url()),
        &dir.path().join("jar"),
        &["-H", "Host: evil.example:8088"],
    );
    assert_eq!(code, 421);
}
