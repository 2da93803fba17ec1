//! Hostile peers at the DICOM port while a real scanner sends: a hundred
//! connections that stall mid-PDU (slowloris), a thousand connection
//! attempts in a burst, and a PDU announcing 4 GiB. The scanner's study is
//! stored and forwarded intact, the bogus PDU is aborted at once, and the
//! daemon's memory stays bounded.

use std::time::Duration;

use firstlook_e2e::*;

fn peak_rss_mb(pid: u32) -> u64 {
    let kib: u64 = proc_status(pid, "VmHWM:")[0].parse().unwrap();
    kib / 1024
}

fn json_line(text: &str, key: &str) -> serde_json::Value {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get(key).is_some())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn stalled_flooding_and_oversized_peers_do_not_keep_the_scanner_out() {
    let dir = scratch("hostile-peers");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::ct01_to_pacs(pacs.port);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let port = daemon.port.to_string();

    // A hundred sockets that send 3 bytes and stall, well past the 16
    // association slots; they stay for 20 s (ARTIM is 30 s here).
    let stall_log = dir.path().join("stall.log");
    let mut cmd = python("hostile_peers.py");
    cmd.args(["127.0.0.1", &port, "stall", "100", "20"]);
    let mut stall = Proc::spawn("stall", &mut cmd, &stall_log);
    wait_until(
        Duration::from_secs(30),
        "the stalled sockets to be open",
        |_| {
            stall.assert_running();
            stall.log_text().contains("\"opened\"").then_some(())
        },
    );

    let flood = run_cmd(
        python("hostile_peers.py").args(["127.0.0.1", &port, "flood", "1000"]),
        Duration::from_secs(120),
    );
    assert!(flood.status.success(), "{flood}");
    let flood = json_line(&flood.stdout, "attempts");
    println!("flood: {flood}");

    let huge = run_cmd(
        python("hostile_peers.py").args(["127.0.0.1", &port, "huge"]),
        Duration::from_secs(60),
    );
    assert!(huge.status.success(), "{huge}");
    let huge = json_line(&huge.stdout, "answer");
    println!("4 GiB PDU: {huge}");
    assert_eq!(huge["answer"], "A-ABORT", "{huge}");
    assert!(huge["seconds"].as_f64().unwrap() < 5.0, "{huge}");

    // Meanwhile, the real scanner.
    let files = phantom(
        &StudySpec::new(Kind::Ct, 4501)
            .with_count(20)
            .with_size(128, 128),
        &dir.path().join("ct"),
    );
    let out = storescu(
        daemon.port,
        "CT01",
        &["+sd"],
        &[dir.path().join("ct").as_path()],
    );
    assert!(out.status.success(), "the scanner was kept out:\n{out}");
    assert!(
        stall.has_exited().is_none(),
        "the scanner got in while the stalled sockets were still open"
    );
    daemon.wait_settled(20, Duration::from_secs(120));
    assert_delivered_identical(&files, &pacs.received());
    daemon.assert_running();
    let rss = peak_rss_mb(daemon.pid());
    println!("firstlookd peak RSS: {rss} MiB");
    assert!(rss < 400, "peak RSS {rss} MiB");
    let done = stall.wait_exit(Duration::from_secs(60));
    assert!(done.is_some(), "the stalling peer did not finish");
}
