//! firstlookd under systemd's `Type=notify` protocol, with the test as
//! systemd: READY=1 only once the DICOM port accepts, WATCHDOG=1 at half the
//! watchdog period while every part makes progress and none once the
//! forwarder is wedged, STOPPING=1 on SIGTERM, and a C-STORE under way at
//! SIGTERM finished and kept.

use std::time::{Duration, Instant};

use firstlook_e2e::*;

/// `WATCHDOG_USEC`: pings are due every half of it.
const WATCHDOG: Duration = Duration::from_secs(1);

fn largest_gap(times: &[Instant]) -> Duration {
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(Duration::ZERO)
}

#[test]
fn ready_when_listening_watchdog_fed_until_the_forwarder_wedges() {
    let dir = scratch("systemd_watchdog");
    let pacs = StoreScp::start(&dir.path().join("pacs"), free_port(), &[]);
    let mut cfg = DaemonConfig::ct01_to_pacs(pacs.port);
    let notify = NotifySocket::bind(dir.path(), cfg.port);
    cfg = cfg
        .env("NOTIFY_SOCKET", &notify.path.display().to_string())
        .env("WATCHDOG_USEC", &WATCHDOG.as_micros().to_string())
        .env("FIRSTLOOK_FAILPOINTS", "forward-wedge=hang");
    // A forwarding step may take a connection timeout or a response
    // timeout, plus 10 s of slack: 11 s here.
    cfg.forward_timeouts_secs = (1, 1);
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let ready = notify.wait_for("READY=1", Duration::from_secs(20));
    assert_eq!(
        ready.port_accepted,
        Some(true),
        "READY=1 came before the DICOM port accepted connections"
    );
    assert!(
        notify
            .all()
            .iter()
            .any(|n| n.line.starts_with("STATUS=accepting DICOM on")),
        "no STATUS with READY=1: {:?}",
        notify.all()
    );

    // Fed at the configured rate while healthy.
    std::thread::sleep(Duration::from_secs(3));
    let healthy: Vec<Instant> = notify
        .times("WATCHDOG=1")
        .into_iter()
        .filter(|t| *t >= ready.at)
        .collect();
    assert!(
        healthy.len() >= 4,
        "{} watchdog pings in 3 s with WATCHDOG_USEC=1 s (expected one every 0.5 s)",
        healthy.len()
    );
    assert!(
        largest_gap(&healthy) < WATCHDOG,
        "a gap of {:?} between pings, over the watchdog period",
        largest_gap(&healthy)
    );

    // Ingest still takes the study; the forwarder wedges on it.
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 4101).with_count(2),
        &dir.path().join("ct"),
    );
    let files: Vec<&std::path::Path> = ct.iter().map(|f| f.path.as_path()).collect();
    let out = storescu(daemon.port, "CT01", &[], &files);
    assert!(out.status.success(), "storescu failed:\n{out}");
    assert_eq!(storescu_successes(&out.stderr).len(), 2, "{out}");
    let sent = Instant::now();

    let stalled = notify.wait_for("STATUS=stalled:", Duration::from_secs(30));
    assert!(
        stalled
            .line
            .contains("forwarding to pacs has made no progress"),
        "the status should name the wedged forwarder: {}",
        stalled.line
    );
    std::thread::sleep(Duration::from_secs(3));
    let pings = notify.times("WATCHDOG=1");
    let after_stall: Vec<&Instant> = pings.iter().filter(|t| **t > stalled.at).collect();
    assert!(
        after_stall.is_empty(),
        "{} watchdog pings after the forwarder was reported stalled",
        after_stall.len()
    );
    let fed_while_wedging = pings.iter().filter(|t| **t > sent).count();
    assert!(
        fed_while_wedging >= 2,
        "pings should go on until the step overruns its limit (11 s), got {fed_while_wedging}"
    );
    assert!(
        daemon
            .log_text()
            .contains("not feeding the systemd watchdog"),
        "the log should say why: {}",
        daemon.log_tail(30)
    );
    daemon.assert_running();

    daemon.sigterm();
    notify.wait_for("STOPPING=1", Duration::from_secs(10));
}

#[test]
fn sigterm_finishes_the_c_store_under_way_and_keeps_it() {
    let dir = scratch("systemd_sigterm");
    let mut pacs = StoreScp::start(&dir.path().join("pacs"), free_port(), &[]);
    let mut cfg = DaemonConfig::ct01_to_pacs(pacs.port);
    let notify = NotifySocket::bind(dir.path(), cfg.port);
    cfg = cfg.env("NOTIFY_SOCKET", &notify.path.display().to_string());
    // Small PDUs on a slow link: each 512x512 slice takes about 1.6 s.
    cfg.node = "max_pdu_length = 16384\n".into();
    let mut daemon = Daemon::start(dir.path(), &cfg);
    notify.wait_for("READY=1", Duration::from_secs(20));

    let ct = phantom(
        &StudySpec::new(Kind::Ct, 4102).with_count(3),
        &dir.path().join("ct"),
    );
    let sender_log = dir.path().join("sender.log");
    let mut cmd = python("send_pynetdicom.py");
    cmd.args(["127.0.0.1", &daemon.port.to_string(), "CT01", NODE_AE])
        .args(["--pdu-delay", "0.05"])
        .args(ct.iter().map(|f| f.path.as_path()));
    let mut sender = Proc::spawn("send_pynetdicom", &mut cmd, &sender_log);

    wait_until(
        Duration::from_secs(20),
        "the first C-STORE to start",
        |_| {
            sender.assert_running();
            sender.log_text().contains("SENDING").then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = sender.log_text();
    daemon.sigterm();
    assert!(
        !before.contains("STORED"),
        "the first C-STORE should still be under way at SIGTERM:\n{before}"
    );

    notify.wait_for("STOPPING=1", Duration::from_secs(10));
    let status = daemon.terminate();
    assert!(status.success(), "firstlookd exited with {status}");
    // pynetdicom may sit out its own timeout after the abort: what it was
    // told before the daemon exited is what counts.
    let said = sender.log_text();
    sender.kill();
    let stored: Vec<String> = said
        .lines()
        .filter_map(|l| l.strip_prefix("STORED "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert_eq!(
        stored.first().map(String::as_str),
        Some(ct[0].sop_instance_uid.as_str()),
        "the C-STORE under way at SIGTERM should have been answered with success:\n{said}"
    );
    assert!(
        stored.len() < ct.len(),
        "the daemon should stop before the whole study is sent:\n{said}"
    );
    assert!(
        daemon.log_text().contains("daemon stopping: aborted"),
        "the association should be aborted between messages: {}",
        daemon.log_tail(30)
    );

    // Everything acknowledged is kept and delivered, byte for byte.
    daemon.restart();
    daemon.wait_settled(stored.len() as u64, Duration::from_secs(60));
    let acknowledged: Vec<DicomFile> = ct
        .into_iter()
        .filter(|f| stored.contains(&f.sop_instance_uid))
        .collect();
    assert_delivered_identical(&acknowledged, &pacs.received());
}
