//! The audit trail (IHE ATNA, DICOM PS3.15 A.5): a working session with a
//! scanner, a stranger, the PACS and the panel leaves one RFC 5424 line per
//! event in the audit file, each a well-formed DICOM audit message; the same
//! records reach an audit repository over TLS (Python's ssl, i.e. OpenSSL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use firstlook_e2e::*;

const SETTLE: Duration = Duration::from_secs(90);
const USER: &str = "tech1";
const PASSWORD: &str = "correct horse battery";

/// One audit record: its syslog priority and its XML, parsed.
struct Record {
    pri: u8,
    xml: String,
}

impl Record {
    fn doc(&self) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(&self.xml)
            .unwrap_or_else(|e| panic!("malformed audit XML ({e}): {}", self.xml))
    }

    /// (EventID, EventTypeCode, EventActionCode, EventOutcomeIndicator).
    fn kind(&self) -> (String, String, String, String) {
        let doc = self.doc();
        let ident = doc
            .descendants()
            .find(|n| n.has_tag_name("EventIdentification"))
            .expect("EventIdentification");
        let code = |tag: &str| {
            ident
                .children()
                .find(|n| n.has_tag_name(tag))
                .and_then(|n| n.attribute("csd-code"))
                .unwrap_or("")
                .to_string()
        };
        let attr = |a: &str| ident.attribute(a).unwrap_or("").to_string();
        (
            code("EventID"),
            code("EventTypeCode"),
            attr("EventActionCode"),
            attr("EventOutcomeIndicator"),
        )
    }

    /// UserID of every ActiveParticipant.
    fn users(&self) -> Vec<String> {
        self.doc()
            .descendants()
            .filter(|n| n.has_tag_name("ActiveParticipant"))
            .map(|n| n.attribute("UserID").unwrap_or("").to_string())
            .collect()
    }

    /// (study UID, instances) of every study object.
    fn studies(&self) -> Vec<(String, u32)> {
        self.doc()
            .descendants()
            .filter(|n| n.has_tag_name("ParticipantObjectIdentification"))
            .map(|o| {
                let n = o
                    .children()
                    .filter(|c| c.has_tag_name("SOPClass"))
                    .map(|c| {
                        c.attribute("NumberOfInstances")
                            .unwrap()
                            .parse::<u32>()
                            .unwrap()
                    })
                    .sum();
                (o.attribute("ParticipantObjectID").unwrap().to_string(), n)
            })
            .collect()
    }
}

/// Checks one RFC 5424 line and returns its record.
fn parse(line: &str) -> Record {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once(">1 ").expect("PRI and version 1");
    let fields: Vec<&str> = rest.splitn(7, ' ').collect();
    assert_eq!(fields.len(), 7, "{line}");
    assert!(
        fields[0].ends_with('Z') && fields[0].contains('T'),
        "timestamp: {line}"
    );
    assert_eq!(fields[2], "firstlookd", "APP-NAME: {line}");
    assert!(fields[3].parse::<u32>().is_ok(), "PROCID: {line}");
    assert_eq!(fields[4], "IHE+RFC-3881", "MSGID: {line}");
    assert_eq!(fields[5], "-", "no structured data: {line}");
    let xml = fields[6]
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .unwrap_or_else(|| panic!("XML declaration: {line}"));
    let record = Record {
        pri: pri.parse().expect("PRI is a number"),
        xml: xml.to_string(),
    };
    assert_eq!(
        record.doc().root_element().tag_name().name(),
        "AuditMessage"
    );
    assert_eq!(record.pri / 8, 10, "facility authpriv: {line}");
    record
}

fn audit_file(daemon: &Daemon) -> Vec<Record> {
    std::fs::read_to_string(daemon.spool_dir().join("audit.log"))
        .expect("audit.log in the spool folder")
        .lines()
        .map(parse)
        .collect()
}

fn find<'a>(records: &'a [Record], id: &str, type_code: &str, outcome: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| {
            let (i, t, _, o) = r.kind();
            i == id && t == type_code && o == outcome
        })
        .collect()
}

fn login(daemon: &Daemon, jar: &Path, password: &str) -> (u16, String) {
    let body = format!(r#"{{"user":"{USER}","password":"{password}"}}"#);
    http(
        &format!("{}/api/login", daemon.panel_url()),
        jar,
        &json_post(&body, &[]),
    )
}

#[test]
fn a_session_with_scanner_stranger_pacs_and_panel_is_audited() {
    let dir = scratch("audit");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::ct01_to_pacs(pacs.port);
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let ct_dir = dir.path().join("ct");
    let ct = phantom(&StudySpec::new(Kind::Ct, 1301).with_count(3), &ct_dir);
    let study = ct[0].study_uid();
    let out = storescu(daemon.port, "CT01", &["+sd"], &[ct_dir.as_path()]);
    assert_eq!(storescu_successes(&out.stderr).len(), 3, "{out}");
    let probe = probe_association(daemon.port, "STRANGER", NODE_AE);
    assert_eq!(probe.outcome, "rejected", "{probe:?}");
    daemon.wait_settled(3, SETTLE);
    assert_eq!(pacs.received().len(), 3);

    daemon.set_panel_password(USER, PASSWORD);
    let jar = dir.path().join("jar");
    assert_eq!(login(&daemon, &jar, "wrong guess!").0, 401);
    let (code, text) = login(&daemon, &jar, PASSWORD);
    assert_eq!(code, 200, "{text}");
    let session: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let token = format!("x-csrf-token: {}", session["csrf"].as_str().unwrap());
    let (code, _) = http(
        &format!("{}/api/logout", daemon.panel_url()),
        &jar,
        &json_post("{}", &["-H", &token]),
    );
    assert_eq!(code, 204);
    let status = daemon.terminate();
    assert!(
        status.success(),
        "firstlookd exits cleanly on SIGTERM: {status:?}"
    );

    let records = audit_file(&daemon);
    let (first, last) = (records[0].kind(), records.last().unwrap().kind());
    assert_eq!(
        (first.0.as_str(), first.1.as_str()),
        ("110100", "110120"),
        "starts with Application Start"
    );
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        ("110100", "110121"),
        "ends with Application Stop"
    );
    assert_eq!(
        find(&records, "110113", "110129", "0").len(),
        1,
        "a first start audits its configuration"
    );
    let bundle = find(&records, "110113", "110131", "0");
    assert_eq!(bundle.len(), 1, "the model bundle put to use");
    assert!(bundle[0].xml.contains("embedded demo"), "{}", bundle[0].xml);

    let accepted = find(&records, "110113", "110126", "0");
    assert!(accepted
        .iter()
        .any(|r| r.users().contains(&"CT01".to_string())));
    let rejected = find(&records, "110113", "110126", "4");
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].users().contains(&"STRANGER".to_string()));
    assert_eq!(rejected[0].pri % 8, 4, "a refusal is a warning");

    let received: Vec<_> = find(&records, "110104", "", "0")
        .into_iter()
        .filter(|r| r.kind().2 == "C")
        .collect();
    assert_eq!(received.len(), 1, "one record for storescu's association");
    assert_eq!(received[0].studies(), [(study.clone(), 3)]);
    assert_eq!(received[0].users()[0], "CT01");
    let sent: u32 = find(&records, "110104", "", "0")
        .into_iter()
        .filter(|r| r.kind().2 == "R")
        .flat_map(|r| r.studies())
        .filter(|(s, _)| *s == study)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(sent, 3, "every instance delivered to the PACS is audited");

    let failed = find(&records, "110114", "110122", "4");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].users()[0], USER);
    assert_eq!(find(&records, "110114", "110122", "0").len(), 1);
    assert_eq!(find(&records, "110114", "110123", "0").len(), 1);

    let text = std::fs::read_to_string(daemon.spool_dir().join("audit.log")).unwrap();
    assert!(!text.contains(PASSWORD) && !text.contains("wrong guess!"));
}

/// A stranger knocking again and again (a port scan, a misconfigured
/// modality retrying) gets its first refusals audited one by one and the
/// rest counted in one record, and the scanner is served meanwhile.
#[test]
fn a_flood_of_refusals_is_audited_in_bounded_records_none_uncounted() {
    let dir = scratch("audit-flood");
    let cfg = DaemonConfig::new().scanner("CT01", &["127.0.0.1"]);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    const KNOCKS: usize = 25;
    for _ in 0..KNOCKS {
        let out = echoscu(daemon.port, "STRANGER", NODE_AE);
        assert_ne!(out.code(), Some(0), "a stranger must be refused:\n{out}");
    }
    let ok = echoscu(daemon.port, "CT01", NODE_AE);
    assert_eq!(ok.code(), Some(0), "the scanner is served:\n{ok}");
    assert!(daemon.terminate().success());

    let records = audit_file(&daemon);
    let refused = find(&records, "110113", "110126", "4");
    let one_by_one: Vec<_> = refused
        .iter()
        .filter(|r| r.users().contains(&"STRANGER".to_string()))
        .collect();
    let limit = 10;
    assert_eq!(one_by_one.len(), limit, "the first refusals, one by one");
    let counted: Vec<_> = refused
        .iter()
        .filter(|r| r.xml.contains("more refused connections from this address"))
        .collect();
    assert_eq!(counted.len(), 1, "one record for the rest");
    assert!(
        counted[0].xml.contains(&format!("{} more", KNOCKS - limit)),
        "{}",
        counted[0].xml
    );
    assert!(counted[0].xml.contains("127.0.0.1"), "{}", counted[0].xml);
    assert_eq!(refused.len(), limit + 1);
}

#[test]
fn a_restart_with_a_changed_configuration_audits_the_change_once() {
    let dir = scratch("audit-config");
    let cfg = DaemonConfig::new().scanner("CT01", &["127.0.0.1"]);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    daemon.terminate();
    daemon.restart();
    daemon.terminate();
    let config = std::fs::read_to_string(&daemon.config_path).unwrap();
    std::fs::write(
        &daemon.config_path,
        config.replace(
            "[[scanners]]",
            "[[scanners]]\nae_title = \"CR01\"\nhosts = [\"127.0.0.1\"]\n\n[[scanners]]",
        ),
    )
    .unwrap();
    daemon.restart();
    daemon.terminate();
    let records = audit_file(&daemon);
    assert_eq!(
        find(&records, "110100", "110121", "0").len(),
        3,
        "three clean stops"
    );
    let changes = find(&records, "110113", "110129", "0");
    assert_eq!(
        changes.len(),
        2,
        "first start and the change, not the plain restart"
    );
    let details = |r: &Record| {
        r.doc()
            .descendants()
            .filter(|n| n.has_tag_name("ParticipantObjectDetail"))
            .map(|n| n.attribute("type").unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(details(changes[0]), ["sha256"]);
    assert_eq!(details(changes[1]), ["sha256", "previous-sha256"]);
    let starts = find(&records, "110100", "110120", "0");
    assert_eq!(starts.len(), 3);
}

/// An audit repository (tests/py/syslog_tls_server.py) with `pki`'s
/// server certificate; what it receives lands in the returned file.
fn repository(dir: &Path, pki: &Pki) -> (Proc, u16, PathBuf) {
    let port = free_port();
    let received = dir.join("repository.bytes");
    let mut proc = Proc::spawn(
        "audit repository",
        python("syslog_tls_server.py")
            .arg(port.to_string())
            .arg(&pki.server_cert)
            .arg(&pki.server_key)
            .arg(&received),
        &dir.join("repository.log"),
    );
    wait_until(
        Duration::from_secs(20),
        "the audit repository to listen",
        |_| {
            proc.assert_running();
            port_open(port).then_some(())
        },
    );
    (proc, port, received)
}

fn daemon_config(port: u16, ca: &Path) -> DaemonConfig {
    let mut cfg = DaemonConfig::new().scanner("CT01", &["127.0.0.1"]);
    cfg.extra = format!(
        "\n[audit.syslog_tls]\naddress = \"localhost:{port}\"\nca_file = \"{}\"\n",
        ca.display()
    );
    cfg
}

#[test]
fn records_reach_an_audit_repository_over_tls() {
    let dir = scratch("audit-tls");
    let pki = Pki::new(&dir.path().join("pki"));
    let (_repository, port, received) = repository(dir.path(), &pki);
    let daemon = Daemon::start(dir.path(), &daemon_config(port, &pki.ca_cert));
    let probe = probe_association(daemon.port, "STRANGER", NODE_AE);
    assert_eq!(probe.outcome, "rejected", "{probe:?}");

    // RFC 5425 octet counting: "LEN SP MSG", back to back.
    let frames = wait_until(
        Duration::from_secs(30),
        "the rejection at the repository",
        |_| {
            let raw = std::fs::read(&received).unwrap_or_default();
            let frames = octet_frames(&raw);
            frames
                .iter()
                .any(|f| f.contains("STRANGER"))
                .then_some(frames)
        },
    );
    let local: Vec<String> = std::fs::read_to_string(daemon.spool_dir().join("audit.log"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    for f in &frames {
        parse(f);
        assert!(
            local.contains(f),
            "each forwarded record is also in the local file: {f}"
        );
    }
    assert_eq!(frames[0], local[0], "in order, from the start");
}

#[test]
fn a_repository_whose_certificate_is_not_trusted_gets_nothing() {
    let dir = scratch("audit-tls-untrusted");
    let pki = Pki::new(&dir.path().join("pki"));
    let other = Pki::new(&dir.path().join("other-pki"));
    let (_repository, port, received) = repository(dir.path(), &pki);
    let daemon = Daemon::start(dir.path(), &daemon_config(port, &other.ca_cert));
    let probe = probe_association(daemon.port, "STRANGER", NODE_AE);
    assert_eq!(probe.outcome, "rejected", "{probe:?}");
    wait_until(
        Duration::from_secs(30),
        "the daemon to report the repository unreachable",
        |_| {
            daemon
                .log_text()
                .contains("cannot reach the audit repository")
                .then_some(())
        },
    );
    let local = std::fs::read_to_string(daemon.spool_dir().join("audit.log")).unwrap();
    assert!(local.contains("STRANGER"), "the local file has it all");
    assert_eq!(
        std::fs::read(&received).unwrap_or_default(),
        b"",
        "not a byte to a repository the CA did not sign"
    );
}

/// Splits RFC 5425 frames; a trailing partial frame is left out.
fn octet_frames(mut raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(sp) = raw.iter().position(|&b| b == b' ') {
        let Ok(len) = std::str::from_utf8(&raw[..sp]).unwrap().parse::<usize>() else {
            panic!(
                "not an octet count: {:?}",
                String::from_utf8_lossy(&raw[..sp.min(40)])
            );
        };
        let Some(msg) = raw.get(sp + 1..sp + 1 + len) else {
            break;
        };
        out.push(String::from_utf8(msg.to_vec()).expect("UTF-8"));
        raw = &raw[sp + 1 + len..];
    }
    out
}
