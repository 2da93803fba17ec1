//! The technologist's panel in real headless chromium (Debian's, driven by
//! playwright-core): log in, see a positive CR's alert card with the
//! patient and the heatmap, acknowledge and dismiss it (stored and counted),
//! keep every alert across a daemon restart, browse the history, and be
//! refused and slowed down with a wrong password. Screenshots land in
//! `target/screenshots/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use firstlook_e2e::*;
use serde_json::{json, Value};

const SETTLE: Duration = Duration::from_secs(120);
const CARD: Duration = Duration::from_secs(30);
const USER: &str = "tech1";
const PASSWORD: &str = "correct horse battery";

fn screenshots() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn patient_name(file: &DicomFile) -> String {
    let obj = dicom_object::open_file(&file.path).unwrap();
    obj.element(dicom_object::Tag(0x0010, 0x0010))
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .replace('^', " ")
        .trim()
        .to_string()
}

fn log_in(b: &mut Browser) {
    b.fill("#user", USER);
    b.fill("#password", PASSWORD);
    b.click("#login button[type=submit]");
    b.wait_visible("#me", Duration::from_secs(10));
}

/// The id and the moment it was painted of the first urgent card not in
/// `known`.
fn new_urgent_card(b: &mut Browser, known: &[i64]) -> (i64, u64) {
    let v = b.wait_for(
        "known => { for (const c of document.querySelectorAll('.card.urgent')) {
                      const id = +c.dataset.id;
                      if (!known.includes(id) && c.dataset.shownAt) return [id, +c.dataset.shownAt];
                    } return null; }",
        json!(known),
        CARD,
    );
    (v[0].as_i64().unwrap(), v[1].as_u64().unwrap())
}

fn feedback_count(port: u16, labels: &[(&str, &str)]) -> f64 {
    let (scrape, _) = metrics::scrape(port);
    metrics::sample(&scrape, "firstlook_feedback_total", labels).unwrap_or(0.0)
}

#[test]
fn an_alert_reaches_chromium_is_acknowledged_dismissed_and_survives_a_restart() {
    let dir = scratch("browser");
    let cfg = DaemonConfig::new()
        .scanner("CR01", &["127.0.0.1"])
        .triage("engine = \"tract\"");
    let mut daemon = Daemon::start(dir.path(), &cfg);
    daemon.set_panel_password(USER, PASSWORD);
    let study = |seed: u64, name: &str| {
        phantom(
            &StudySpec::new(Kind::Cr, seed).with_finding(Finding::Pneumothorax),
            &dir.path().join(name),
        )
    };
    let shots = screenshots();

    let mut b = Browser::start();
    b.goto(&daemon.panel_url());
    b.wait_visible("#link.live", Duration::from_secs(10));
    log_in(&mut b);

    // A positive CR: the card is up within the second, with the patient
    // and the heatmap for the logged-in user.
    let first = study(104, "first");
    let responses = storescu_timed(daemon.port, "CR01", &[first[0].path.as_path()]);
    let (first_id, shown_at) = new_urgent_card(&mut b, &[]);
    let latency = shown_at as i64 - responses[0] as i64;
    println!("C-STORE response -> alert card visible in chromium: {latency} ms");
    assert!(latency >= 0, "the card cannot precede the response");
    let card = format!("#d{first_id}");
    let name = patient_name(&first[0]);
    b.wait_for(
        "([sel, name]) => document.querySelector(sel + ' .patient').textContent.includes(name)",
        json!([card, name]),
        CARD,
    );
    b.wait_visible(&format!("{card} img.thumb"), CARD);
    let painted = b.eval(
        "sel => { const i = document.querySelector(sel + ' img.thumb');
                  return i.complete && i.naturalWidth > 0; }",
        json!(card),
    );
    assert_eq!(
        painted,
        json!(true),
        "the heatmap thumbnail is a real image"
    );
    let text = b.eval("sel => document.querySelector(sel).innerText", json!(card));
    let text = text.as_str().unwrap();
    for expected in [
        "URGENT",
        "Pneumothorax",
        "CR01",
        "operating point",
        "not for clinical use",
    ] {
        assert!(text.contains(expected), "card lacks {expected:?}: {text}");
    }
    assert_eq!(
        b.eval(
            "() => getComputedStyle(document.getElementById('synthetic')).display",
            json!(null)
        ),
        json!("block"),
        "the synthetic-model banner is shown"
    );
    b.screenshot(&shots.join("panel-feed.png"), None);
    b.screenshot(&shots.join("panel-alert-card.png"), Some(&card));

    // The cue sounds again and again until someone acknowledges.
    let cues = |b: &mut Browser| {
        b.eval("() => +(document.body.dataset.cues || 0)", json!(null))
            .as_u64()
            .unwrap()
    };
    b.wait_for(
        "() => +(document.body.dataset.cues || 0) >= 2",
        json!(null),
        CARD,
    );

    // Acknowledge: the flashing and the cue stop, and it is stored and counted.
    b.click(&format!("{card} button.ack"));
    b.wait_for(
        "sel => document.querySelector(sel).dataset.feedback === 'acknowledged'",
        json!(card),
        CARD,
    );
    assert_eq!(
        b.eval(
            "sel => document.querySelector(sel).classList.contains('flash')",
            json!(card)
        ),
        json!(false)
    );
    let after_ack = cues(&mut b);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        cues(&mut b),
        after_ack,
        "the cue stopped with the acknowledgement"
    );
    assert_eq!(
        feedback_count(
            daemon.panel_port,
            &[("finding", "pneumothorax"), ("action", "acknowledged")]
        ),
        1.0
    );

    // Dismiss another: a reason is required; "other" takes a text.
    let second = study(105, "second");
    storescu_timed(daemon.port, "CR01", &[second[0].path.as_path()]);
    let (second_id, _) = new_urgent_card(&mut b, &[first_id]);
    let card2 = format!("#d{second_id}");
    b.click(&format!("{card2} button.dismiss"));
    b.wait_for(
        "sel => document.querySelector(sel + ' .err').textContent.includes('reason')",
        json!(card2),
        CARD,
    );
    b.select(&format!("{card2} select.why"), "other");
    b.fill(
        &format!("{card2} input.why-text"),
        "patient moved, repeat ordered",
    );
    b.click(&format!("{card2} button.dismiss"));
    b.wait_for(
        "sel => document.querySelector(sel).dataset.feedback === 'dismissed'",
        json!(card2),
        CARD,
    );
    assert_eq!(
        feedback_count(
            daemon.panel_port,
            &[
                ("finding", "pneumothorax"),
                ("action", "dismissed"),
                ("reason", "other")
            ]
        ),
        1.0
    );

    // The daemon goes down hard and comes back; an alert made while the
    // page was cut off still arrives, and the feedback was kept.
    daemon.kill9();
    b.wait_visible("#link.down", Duration::from_secs(10));
    daemon.restart();
    let third = study(106, "third");
    storescu_timed(daemon.port, "CR01", &[third[0].path.as_path()]);
    let reconnected_before = b.eval(
        "() => document.getElementById('link').className",
        json!(null),
    );
    println!("page link state when the third C-STORE was answered: {reconnected_before}");
    let (third_id, _) = new_urgent_card(&mut b, &[first_id, second_id]);
    assert!(third_id > second_id);
    b.wait_visible("#link.live", Duration::from_secs(10));
    // Sessions do not outlive the daemon: patient details go with them.
    b.wait_for(
        "() => !document.getElementById('login').hidden",
        json!(null),
        CARD,
    );
    let body = b.eval("() => document.body.innerText", json!(null));
    assert!(
        !body.as_str().unwrap().contains(&name),
        "patient data shown without a session"
    );
    b.goto(&daemon.panel_url());
    let replayed = b.wait_for(
        "([a, d]) => { const x = document.getElementById('d' + a), y = document.getElementById('d' + d);
                       return x && y ? [x.dataset.feedback, y.dataset.feedback] : null; }",
        json!([first_id, second_id]),
        CARD,
    );
    assert_eq!(replayed, json!(["acknowledged", "dismissed"]));
    log_in(&mut b);

    // History: every decision, filterable, with what was said about it.
    b.click("#tab-history");
    b.wait_for(
        "() => document.querySelectorAll('#history-rows tr').length >= 6",
        json!(null),
        CARD,
    );
    b.select("#f-outcome", "urgent");
    b.click("#filters button[type=submit]");
    let rows = b.wait_for(
        "() => { const r = [...document.querySelectorAll('#history-rows tr')];
                 return r.length === 3 ? r.map(tr => tr.innerText) : null; }",
        json!(null),
        CARD,
    );
    let rows: Vec<String> = serde_json::from_value::<Vec<String>>(rows).unwrap();
    assert!(
        rows.iter()
            .all(|r| r.contains("URGENT") && r.contains("CR01")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("Acknowledged") && r.contains(USER)),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("Dismissed (other)") && r.contains("patient moved")),
        "{rows:?}"
    );
    assert!(rows.iter().any(|r| r.contains(&name)), "{rows:?}");
    b.screenshot(&shots.join("panel-history.png"), None);

    // Logging out takes every patient detail off the page.
    b.click("#logout");
    b.wait_visible("#login", Duration::from_secs(10));
    let body = b.eval("() => document.body.innerText", json!(null));
    assert!(!body.as_str().unwrap().contains(&name), "{body}");
    daemon.wait_decided(3, SETTLE);
}

#[test]
fn a_wrong_password_is_refused_then_the_address_must_wait() {
    let dir = scratch("browser-login");
    let cfg = DaemonConfig::new().scanner("CR01", &["127.0.0.1"]);
    let daemon = Daemon::start(dir.path(), &cfg);
    daemon.set_panel_password(USER, PASSWORD);
    let mut b = Browser::start();
    b.goto(&daemon.panel_url());
    let attempt = |b: &mut Browser, password: &str| -> String {
        b.eval(
            "() => { document.getElementById('login-error').textContent = ''; }",
            Value::Null,
        );
        b.fill("#user", USER);
        b.fill("#password", password);
        b.click("#login button[type=submit]");
        b.wait_for(
            "() => document.getElementById('login-error').textContent || null",
            Value::Null,
            Duration::from_secs(15),
        )
        .as_str()
        .unwrap()
        .to_string()
    };
    for _ in 0..5 {
        let said = attempt(&mut b, "not the password");
        assert!(said.contains("wrong user name or password"), "{said}");
    }
    // Locked out: even the right password waits now.
    let said = attempt(&mut b, PASSWORD);
    assert!(said.contains("too many failed logins"), "{said}");
    assert_eq!(
        b.eval("() => document.getElementById('me').hidden", Value::Null),
        json!(true)
    );
    b.screenshot(&screenshots().join("panel-login-refused.png"), None);
}

/// The outcome, the first line and the colours of the first card of `class`.
fn card_look(b: &mut Browser, class: &str) -> Value {
    let f = "cls => { const c = document.querySelector('.card.' + cls);
                      if (!c || !c.dataset.shownAt) return null;
                      const s = getComputedStyle(c);
                      return [c.querySelector('.what').innerText, c.querySelector('.meta').innerText,
                              s.borderLeftColor, s.backgroundColor]; }";
    match b.try_cmd(json!({"cmd": "wait_function", "expression": f, "arg": class,
                           "timeout_ms": CARD.as_millis() as u64}))
    {
        Ok(v) => v,
        Err(e) => panic!(
            "no {class} card: {e}\ncards: {}",
            b.eval(
                "() => [...document.querySelectorAll('.card')].map(c => c.className + ': ' + c.innerText)",
                Value::Null
            )
        ),
    }
}

#[test]
fn images_the_model_cannot_judge_are_shown_apart_never_silently() {
    let dir = scratch("browser-unjudged");
    let cfg = DaemonConfig::new()
        .scanner("CR01", &["127.0.0.1"])
        .triage("engine = \"tract\"");
    let tract_dir = dir.path().join("tract");
    std::fs::create_dir_all(&tract_dir).unwrap();
    let daemon = Daemon::start(&tract_dir, &cfg);
    // Without Body Part Examined the gate refuses to judge it.
    let unassessable = phantom(
        &StudySpec::new(Kind::Cr, 107),
        &dir.path().join("unassessable"),
    );
    let out = run_cmd(
        std::process::Command::new("/usr/bin/dcmodify")
            .args(["-nb", "-ea", "(0018,0015)"])
            .arg(&unassessable[0].path),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out}");
    let negative = phantom(&StudySpec::new(Kind::Cr, 103), &dir.path().join("negative"));

    let mut b = Browser::start();
    b.goto(&daemon.panel_url());
    b.wait_visible("#link.live", Duration::from_secs(10));
    storescu_timed(
        daemon.port,
        "CR01",
        &[unassessable[0].path.as_path(), negative[0].path.as_path()],
    );
    let unjudged = card_look(&mut b, "not_assessable");
    let plain = card_look(&mut b, "no_finding");
    assert!(
        unjudged[0].as_str().unwrap().starts_with("NOT ASSESSABLE"),
        "{unjudged}"
    );
    assert!(
        unjudged[1]
            .as_str()
            .unwrap()
            .contains("BodyPartExamined is missing"),
        "{unjudged}"
    );
    assert_ne!(
        unjudged[2], plain[2],
        "not assessable does not look like no finding"
    );
    assert_ne!(unjudged[3], plain[3]);
    b.screenshot(&screenshots().join("panel-not-assessable.png"), None);

    // A model that cannot run: every image is an error card, and the status
    // bar says so.
    let broken = DaemonConfig::new()
        .scanner("CR01", &["127.0.0.1"])
        .triage("engine = \"onnxruntime\"")
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so");
    let broken_dir = dir.path().join("broken");
    std::fs::create_dir_all(&broken_dir).unwrap();
    let daemon = Daemon::start(&broken_dir, &broken);
    b.goto(&daemon.panel_url());
    b.wait_visible("#link.live", Duration::from_secs(10));
    storescu_timed(daemon.port, "CR01", &[negative[0].path.as_path()]);
    let error = card_look(&mut b, "error");
    assert_eq!(
        b.eval(
            "() => [...document.querySelectorAll('.card .actions')].some(a => a.offsetParent !== null)",
            Value::Null
        ),
        json!(false),
        "acknowledging needs a login"
    );
    assert!(
        error[0]
            .as_str()
            .unwrap()
            .starts_with("ERROR: not assessed"),
        "{error}"
    );
    for other in [&unjudged, &plain] {
        assert_ne!(error[2], other[2], "an error looks like no other outcome");
    }
    b.wait_for(
        "() => /model: .*failed/.test(document.getElementById('status').innerText)",
        Value::Null,
        CARD,
    );
    b.screenshot(&screenshots().join("panel-error.png"), None);
}
