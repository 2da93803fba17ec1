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
    let obj = dicom_object::open_file(&file.path).unwrap();
    let mut phi = vec![file.sop_instance_uid.clone()];
    for tag in [
        dicom_object::Tag(0x0010, 0x0010),
        dicom_object::Tag(0x0010, 0x0020),
        dicom_object::Tag(0x0008, 0x0050),
        dicom_object::Tag(0x0020, 0x000D),
    ] {
        if let Ok(e) = obj.element(tag) {
            let v = e
                .to_str()
                .unwrap()
                .trim_end_matches(['\0', ' '])
                .to_string();
            if !v.is_empty() {
                phi.push(v);
            }
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
    let text = metrics.stdout.split("\r\n\r\n").nth(1).unwrap().to_string();
    assert_no_phi("/metrics", &text, &files);
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let s = parsed
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"));
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(value("firstlook_instances_received_total", &[]), 2.0);
    assert_eq!(
        value("firstlook_forwarded_total", &[("destination", "pacs")]),
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
