//! Who may associate, what a malformed C-STORE gets, and what `check-config`
//! says about broken files.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use firstlook_e2e::*;

/// A-ASSOCIATE-RJ result, source and reason/diagnostic (PS3.8 9.3.4).
const PERMANENT: u8 = 1;
const TRANSIENT: u8 = 2;
const SERVICE_USER: u8 = 1;
const SERVICE_PROVIDER_PRESENTATION: u8 = 3;

fn rejected(result: u8, source: u8, reason: u8) -> Probe {
    Probe {
        outcome: "rejected".into(),
        result: Some(result),
        source: Some(source),
        reason: Some(reason),
        echo_status: None,
    }
}

/// echoscu from a configured AE succeeds; an unknown calling AE on a known
/// host, a wrong called AE, and (on a second daemon) an unknown source
/// address are rejected permanently with the reasons of PS3.8.
#[test]
fn echo_accepted_and_unknown_peers_rejected_with_exact_reasons() {
    let dir = scratch("policy");
    let cfg = DaemonConfig::new().scanner("CT01", &["127.0.0.1"]);
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let out = echoscu(daemon.port, "CT01", NODE_AE);
    assert_eq!(
        out.code(),
        Some(0),
        "echoscu from CT01 should succeed:\n{out}"
    );

    let ok = probe_association(daemon.port, "CT01", NODE_AE);
    assert_eq!(ok.outcome, "accepted", "{ok:?}");
    assert_eq!(ok.echo_status, Some(0), "{ok:?}");

    // Unknown calling AE on a known host: reason 3, calling AE not recognized.
    let p = probe_association(daemon.port, "CT99", NODE_AE);
    assert_eq!(
        p,
        rejected(PERMANENT, SERVICE_USER, 3),
        "unknown calling AE"
    );
    let out = echoscu(daemon.port, "CT99", NODE_AE);
    assert_ne!(out.code(), Some(0), "echoscu from CT99 must fail:\n{out}");

    // Wrong called AE: reason 7, called AE not recognized.
    let p = probe_association(daemon.port, "CT01", "NOTFIRSTLOOK");
    assert_eq!(p, rejected(PERMANENT, SERVICE_USER, 7), "wrong called AE");

    // Unknown host: only 10.9.9.9 may send, we come from 127.0.0.1.
    let dir2 = scratch("policy-host");
    let cfg2 = DaemonConfig::new().scanner("CT01", &["10.9.9.9"]);
    let mut other = Daemon::start(dir2.path(), &cfg2);
    let p = probe_association(other.port, "CT01", NODE_AE);
    assert_eq!(
        p,
        rejected(PERMANENT, SERVICE_USER, 1),
        "unknown source address"
    );
    let out = echoscu(other.port, "CT01", NODE_AE);
    assert_ne!(
        out.code(),
        Some(0),
        "echoscu from an unknown host must fail:\n{out}"
    );

    daemon.assert_running();
    other.assert_running();
    let log = daemon.log_text();
    assert!(
        log.contains("association rejected"),
        "rejections should be logged:\n{}",
        daemon.log_tail(30)
    );
}

/// With max_associations = 1 and one association held open, the next one is
/// rejected transiently by the service provider (local limit exceeded), and
/// accepted again once the first is released.
#[test]
fn association_limit_rejects_transiently_then_recovers() {
    let dir = scratch("limit");
    let mut cfg = DaemonConfig::new().scanner("*", &["127.0.0.1"]);
    cfg.max_associations = 1;
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let mut cmd = python("assoc_probe.py");
    cmd.arg("127.0.0.1")
        .arg(daemon.port.to_string())
        .arg("HOLDER")
        .arg(NODE_AE)
        .arg("4");
    let mut holder = Proc::spawn(
        "assoc_probe.py (holder)",
        &mut cmd,
        &dir.path().join("holder.log"),
    );
    wait_until(
        Duration::from_secs(30),
        "the first association to be established",
        |last| {
            *last = tail(&holder.log, 5);
            holder.log_text().contains("established").then_some(())
        },
    );
    let p = probe_association(daemon.port, "SECOND", NODE_AE);
    assert_eq!(
        p,
        rejected(TRANSIENT, SERVICE_PROVIDER_PRESENTATION, 2),
        "second association while max_associations = 1 is held"
    );
    let status = holder.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "holder:\n{}",
        holder.log_text()
    );
    assert!(
        holder.log_text().contains("\"accepted\""),
        "holder:\n{}",
        holder.log_text()
    );
    // The slot is free again (the release may take a moment to be seen).
    wait_until(
        Duration::from_secs(10),
        "a new association after the release",
        |last| {
            let p = probe_association(daemon.port, "THIRD", NODE_AE);
            *last = format!("{p:?}");
            (p.outcome == "accepted").then_some(())
        },
    );
    daemon.assert_running();
}

/// With the spool disk past its high watermark (set to 2 % here, below the
/// use of any real disk), new associations are rejected transiently by the
/// service provider, reason 2 (local limit exceeded), and nothing is stored.
#[test]
fn disk_past_high_watermark_rejects_associations_transiently() {
    let dir = scratch("watermark");
    let mut cfg = DaemonConfig::new().scanner("CT01", &["127.0.0.1"]);
    cfg.high_watermark_percent = 2;
    cfg.low_watermark_percent = 1;
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let s = daemon.status();
    let used = 100 - s.disk_available_bytes * 100 / s.disk_total_bytes.max(1);
    assert!(
        used > 2,
        "this test needs a disk more than 2 % used, got {used} %"
    );

    let p = probe_association(daemon.port, "CT01", NODE_AE);
    assert_eq!(
        p,
        rejected(TRANSIENT, SERVICE_PROVIDER_PRESENTATION, 2),
        "association while the spool disk is past its high watermark"
    );
    let files = phantom(
        &StudySpec::new(Kind::Cr, 2101)
            .with_count(1)
            .with_size(64, 64),
        &dir.path().join("cr"),
    );
    let out = storescu(daemon.port, "CT01", &[], &[files[0].path.as_path()]);
    assert_ne!(out.code(), Some(0), "storescu must not succeed:\n{out}");
    assert!(storescu_successes(&out.stderr).is_empty(), "{out}");
    daemon.assert_running();
    assert_eq!(daemon.status().instances, 0, "nothing may be stored");
}

/// Malformed data sets (a truncated last element; an element with an invalid
/// VR) get a 0xCxxx failure, the association goes on, the good instances
/// that follow succeed and are forwarded, and the bad ones are not stored.
#[test]
fn malformed_dataset_fails_with_cxxx_and_association_continues() {
    let dir = scratch("malformed");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("RAW01", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let files = phantom(
        &StudySpec::new(Kind::Cr, 2001)
            .with_count(4)
            .with_size(256, 256),
        &dir.path().join("cr"),
    );
    let step = |f: &DicomFile, mutate| RawStep {
        file: f.path.clone(),
        data_frag: 4000,
        mutate,
        ..Default::default()
    };
    let steps = vec![
        step(&files[0], Some("truncate")),
        step(&files[1], None),
        step(&files[2], Some("garbage")),
        step(&files[3], None),
    ];
    let (results, out) = raw_dimse(dir.path(), daemon.port, "RAW01", &steps);
    assert!(out.status.success(), "raw_dimse.py failed:\n{out}");
    let responses: Vec<&RawResult> = results.iter().filter(|r| r.uid.is_some()).collect();
    assert_eq!(
        responses.len(),
        4,
        "one response per C-STORE expected:\n{out}"
    );
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.uid.as_deref(), Some(files[i].sop_instance_uid.as_str()));
        let status = r.status.unwrap_or_else(|| panic!("no status: {r:?}"));
        if i % 2 == 0 {
            assert_eq!(
                status & 0xF000,
                0xC000,
                "malformed instance {i} should get a 0xCxxx failure, got 0x{status:04X}: {r:?}"
            );
        } else {
            assert_eq!(status, 0, "good instance {i} after a malformed one: {r:?}");
        }
    }
    assert_eq!(
        results.last().and_then(|r| r.end.as_deref()),
        Some("released"),
        "the association should be released normally:\n{out}"
    );

    let good = vec![files[1].clone(), files[3].clone()];
    let status = daemon.wait_settled(2, Duration::from_secs(60));
    assert_eq!(
        status.destination("pacs").delivered,
        2,
        "{}",
        status.summary()
    );
    let received = pacs.received();
    assert_delivered_identical(&good, &received);
    assert_eq!(
        uids(&received),
        uids(&good),
        "only the good instances may reach the PACS"
    );
}

/// A data set of odd length (every element well formed, but a 3-byte value
/// closes it; PS3.5 7.1 requires even lengths) gets a 0xCxxx failure whose
/// comment says "odd length"; the association goes on, the good instance
/// after it succeeds and is forwarded, and the odd one is neither stored nor
/// forwarded.
#[test]
fn odd_length_dataset_fails_with_cxxx_and_association_continues() {
    let dir = scratch("odd-length");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("RAW01", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let files = phantom(
        &StudySpec::new(Kind::Cr, 2101)
            .with_count(2)
            .with_size(256, 256),
        &dir.path().join("cr"),
    );
    assert!(
        files.iter().all(|f| f.dataset.len() % 2 == 0),
        "the phantom data sets must have even length"
    );
    let steps = vec![
        RawStep {
            file: files[0].path.clone(),
            data_frag: 4000,
            mutate: Some("odd_length"),
            ..Default::default()
        },
        RawStep {
            file: files[1].path.clone(),
            data_frag: 4000,
            ..Default::default()
        },
    ];
    let (results, out) = raw_dimse(dir.path(), daemon.port, "RAW01", &steps);
    assert!(out.status.success(), "raw_dimse.py failed:\n{out}");
    let responses: Vec<&RawResult> = results.iter().filter(|r| r.uid.is_some()).collect();
    assert_eq!(
        responses.len(),
        2,
        "one response per C-STORE expected:\n{out}"
    );
    let odd = responses[0];
    assert_eq!(odd.uid.as_deref(), Some(files[0].sop_instance_uid.as_str()));
    let status = odd.status.unwrap_or_else(|| panic!("no status: {odd:?}"));
    assert_eq!(
        status & 0xF000,
        0xC000,
        "an odd-length data set should get a 0xCxxx failure, got 0x{status:04X}: {odd:?}"
    );
    assert!(
        odd.comment
            .as_deref()
            .is_some_and(|c| c.contains("odd length")),
        "the error comment should mention the odd length: {odd:?}"
    );
    let good = responses[1];
    assert_eq!(
        good.uid.as_deref(),
        Some(files[1].sop_instance_uid.as_str())
    );
    assert_eq!(
        good.status,
        Some(0),
        "the good instance after the odd one: {good:?}"
    );
    assert_eq!(
        results.last().and_then(|r| r.end.as_deref()),
        Some("released"),
        "the association should be released normally:\n{out}"
    );

    let status = daemon.wait_settled(1, Duration::from_secs(60));
    assert_eq!(
        status.destination("pacs").delivered,
        1,
        "{}",
        status.summary()
    );
    let received = pacs.received();
    assert_delivered_identical(&files[1..], &received);
    assert_eq!(
        uids(&received),
        uids(&files[1..]),
        "only the good instance may reach the PACS"
    );
}

/// A scanner that aborts the association in the middle of a data set leaves
/// nothing behind: the partial instance is neither stored nor forwarded, and
/// the next association stores normally.
#[test]
fn abort_mid_dataset_stores_nothing_and_next_association_works() {
    let dir = scratch("abort");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("RAW01", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let files = phantom(
        &StudySpec::new(Kind::Ct, 2201).with_count(2),
        &dir.path().join("ct"),
    );
    let (results, out) = raw_dimse(
        dir.path(),
        daemon.port,
        "RAW01",
        &[RawStep {
            file: files[0].path.clone(),
            data_frag: 16000,
            mutate: Some("abort_midway"),
            ..Default::default()
        }],
    );
    assert_eq!(
        results.last().and_then(|r| r.end.as_deref()),
        Some("aborted by us"),
        "{out}"
    );
    wait_until(
        Duration::from_secs(10),
        "the daemon to see the abort",
        |last| {
            *last = daemon.log_tail(5);
            daemon.log_text().contains("aborted by peer").then_some(())
        },
    );
    let (results, out) = raw_dimse(
        dir.path(),
        daemon.port,
        "RAW01",
        &[RawStep {
            file: files[1].path.clone(),
            ..Default::default()
        }],
    );
    assert_eq!(results.first().and_then(|r| r.status), Some(0), "{out}");
    let status = daemon.wait_settled(1, Duration::from_secs(60));
    assert_eq!(
        status.destination("pacs").delivered,
        1,
        "{}",
        status.summary()
    );
    let received = pacs.received();
    assert_delivered_identical(&files[1..], &received);
    assert_eq!(
        received.len(),
        1,
        "the aborted instance must not reach the PACS"
    );
}

/// (name, file text, line the error must point at, text the message must contain)
fn broken_configs() -> Vec<(&'static str, String, usize, &'static str)> {
    let good = |node_extra: &str, spool: &str, scanner_hosts: &str| {
        format!(
            "[node]\nae_title = \"FIRSTLOOK\"\nlisten = \"127.0.0.1:11112\"\nspool_dir = \"/tmp/x\"\n{node_extra}\
             [spool]\n{spool}\
             [[scanners]]\nae_title = \"CT01\"\nhosts = [{scanner_hosts}]\n"
        )
    };
    vec![
        (
            "missing-bundle",
            good("", "", "\"127.0.0.1\"") + "[triage]\nengine = \"tract\"\nbundle = \"/nonexistent/site.flb\"\n",
            11,
            "/nonexistent/site.flb",
        ),
        (
            "unknown-key",
            good("max_asociations = 4\n", "", "\"127.0.0.1\""),
            5,
            "max_asociations",
        ),
        (
            "missing-key",
            "[node]\nae_title = \"FIRSTLOOK\"\nlisten = \"127.0.0.1:11112\"\n\n[[scanners]]\nae_title = \"CT01\"\nhosts = [\"127.0.0.1\"]\n"
                .to_string(),
            1,
            "spool_dir",
        ),
        (
            "bad-ae-title",
            "[node]\nae_title = \"FIRSTLOOK_IS_A_VERY_LONG_TITLE\"\nspool_dir = \"/tmp/x\"\n".to_string(),
            2,
            "16",
        ),
        (
            "bad-cidr",
            good("", "", "\"127.0.0.1\", \"10.0.0.0/33\""),
            8,
            "10.0.0.0/33",
        ),
        (
            "bad-number",
            good("max_associations = 0\n", "", "\"127.0.0.1\""),
            5,
            "out of range",
        ),
        (
            "inverted-watermarks",
            good(
                "",
                "high_watermark_percent = 80\nlow_watermark_percent = 90\n",
                "\"127.0.0.1\"",
            ),
            7,
            "low_watermark_percent",
        ),
    ]
}

/// Each broken file is refused with exit code 2 and one clear message
/// "FILE:LINE:COL: message" on the line at fault, followed by a "fix:" line;
/// a valid file passes with exit code 0.
#[test]
fn check_config_reports_broken_files_with_line_numbers() {
    let dir = scratch("check-config");
    let mut failures = Vec::new();
    for (name, text, line, needle) in broken_configs() {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, &text).expect("write");
        let out = run_cmd(
            Command::new(firstlookd_bin())
                .arg("check-config")
                .arg(&path),
            Duration::from_secs(30),
        );
        let stderr = out.stderr.trim();
        let prefix = format!("{}:{line}:", path.display());
        let first = stderr.lines().next().unwrap_or("");
        let problems: Vec<String> = [
            (out.code() != Some(2)).then(|| format!("exit code {:?}, expected 2", out.code())),
            (!first.starts_with(&prefix))
                .then(|| format!("first line should start with {prefix:?}")),
            (!first.contains(needle)).then(|| format!("message should mention {needle:?}")),
            (!stderr
                .lines()
                .nth(1)
                .is_some_and(|l| l.trim_start().starts_with("fix:")))
            .then(|| "second line should be \"  fix: ...\"".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: {}\n  file:\n{}\n  stderr:\n{stderr}",
                problems.join("; "),
                numbered(&text)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "check-config:\n{}",
        failures.join("\n\n")
    );

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        DaemonConfig::new()
            .scanner("CT01", &["10.1.2.0/24"])
            .destination(DestinationConfig::new("pacs", "PACS", 4242))
            .to_toml(Path::new("/tmp/x")),
    )
    .expect("write");
    let out = run_cmd(
        Command::new(firstlookd_bin())
            .arg("check-config")
            .arg(&good),
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(0), "a valid file must pass:\n{out}");
}

/// The error must point at the entry at fault, not at an earlier entry that
/// happens to share a key name or a value: an empty hosts list in the second
/// [[scanners]] entry, and a destination name used twice that also appears
/// earlier as an AE title.
#[test]
fn check_config_points_at_the_entry_at_fault() {
    let dir = scratch("check-config-place");
    let cases = [
        (
            "empty-hosts-second-scanner",
            "[node]\nae_title = \"FIRSTLOOK\"\nspool_dir = \"/tmp/x\"\n\n\
             [[scanners]]\nae_title = \"CT01\"\nhosts = [\"127.0.0.1\"]\n\n\
             [[scanners]]\nae_title = \"CT02\"\nhosts = []\n",
            11,
            "empty hosts",
        ),
        (
            "duplicate-destination-name",
            "[node]\nae_title = \"PACS\"\nspool_dir = \"/tmp/x\"\n\n\
             [[destinations]]\nname = \"PACS\"\nae_title = \"PACS\"\naddress = \"10.0.0.1:104\"\n\n\
             [[destinations]]\nname = \"PACS\"\nae_title = \"PACS\"\naddress = \"10.0.0.2:104\"\n",
            11,
            "used twice",
        ),
        (
            "dicom-tls-certificate-missing",
            "[node]\nae_title = \"FIRSTLOOK\"\nspool_dir = \"/tmp/x\"\n\n\
             [node.tls]\nlisten = \"0.0.0.0:2762\"\ncert = \"no-such.crt\"\nkey = \"no-such.key\"\n",
            7,
            "cannot read the certificate",
        ),
        (
            "destination-ca-missing",
            "[node]\nae_title = \"FIRSTLOOK\"\nspool_dir = \"/tmp/x\"\n\n\
             [[destinations]]\nname = \"pacs\"\nae_title = \"PACS\"\naddress = \"10.0.0.1:2762\"\n\
             tls = { ca_file = \"no-such-ca.pem\" }\n",
            9,
            "no-such-ca.pem",
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, line, needle) in cases {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = run_cmd(
            Command::new(firstlookd_bin())
                .arg("check-config")
                .arg(&path),
            Duration::from_secs(30),
        );
        let first = out.stderr.lines().next().unwrap_or("").to_string();
        let prefix = format!("{}:{line}:", path.display());
        if out.code() != Some(2) || !first.starts_with(&prefix) || !first.contains(needle) {
            failures.push(format!(
                "{name}: expected exit 2 and \"{prefix}...{needle}...\", got exit {:?}:\n{}\n  file:\n{}",
                out.code(),
                out.stderr.trim(),
                numbered(text)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "check-config:\n{}",
        failures.join("\n\n")
    );
}

fn numbered(text: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| format!("  {:>3} | {l}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}
