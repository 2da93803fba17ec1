use std::net::SocketAddr;

use super::*;

fn source() -> Source {
    Source {
        ae_title: "FIRSTLOOK".into(),
        hostname: "edge-01".into(),
        pid: 4242,
        site: Some("St. Elsewhere & Co".into()),
    }
}

/// A writer to `audit.log` in `dir`.
fn writer(dir: &tempfile::TempDir) -> Writer {
    Writer {
        file: log_file::AuditFile::open(&dir.path().join("audit.log"), 1 << 20, 2).unwrap(),
        forward: None,
        source: source(),
        dropped: Arc::new(AtomicU64::new(0)),
    }
}

fn peer() -> SocketAddr {
    "10.1.2.3:40000".parse().unwrap()
}

fn studies() -> Studies {
    let mut s = Studies::default();
    s.add(Some("1.2.3"), "1.2.840.10008.5.1.4.1.1.2");
    s.add(Some("1.2.3"), "1.2.840.10008.5.1.4.1.1.2");
    s.add(Some("1.2.3"), "1.2.840.10008.5.1.4.1.1.88.22");
    s.add(None, "1.2.840.10008.5.1.4.1.1.7");
    s
}

fn every_event() -> Vec<Event> {
    vec![
        Event::ApplicationStart,
        Event::ApplicationStop,
        Event::Association {
            peer: peer(),
            calling_ae: "CT01".into(),
            outcome: Outcome::Success,
        },
        Event::Association {
            peer: peer(),
            calling_ae: "EVIL<\"&'>\n".into(),
            outcome: Outcome::MinorFailure("calling AE title not configured".into()),
        },
        Event::Received {
            peer: peer(),
            calling_ae: "CT01".into(),
            studies: studies(),
            outcome: Outcome::Success,
        },
        Event::Sent {
            destination: "pacs".into(),
            called_ae: "PACS".into(),
            address: "pacs.hospital.local:104".into(),
            studies: studies(),
            outcome: Outcome::MinorFailure("2 instances not delivered".into()),
        },
        Event::Login {
            user: "tech1".into(),
            peer: Some("127.0.0.1".parse().unwrap()),
            outcome: Outcome::Success,
        },
        Event::Login {
            user: String::new(),
            peer: None,
            outcome: Outcome::MinorFailure("wrong user name or password".into()),
        },
        Event::Logout {
            user: "tech1".into(),
            peer: Some("::1".parse().unwrap()),
        },
        Event::Bundle {
            path: "/var/lib/firstlook/model.flb".into(),
            name: "demo 1.0".into(),
            sha256: "ab".repeat(32),
            previous: Some("cd".repeat(32)),
            rollback: true,
            outcome: Outcome::Success,
        },
        Event::Bundle {
            path: "/var/lib/firstlook/model.flb".into(),
            name: String::new(),
            sha256: String::new(),
            previous: None,
            rollback: false,
            outcome: Outcome::SeriousFailure("signature does not verify".into()),
        },
        Event::Config {
            path: "/etc/firstlook/firstlook.toml".into(),
            sha256: "ef".repeat(32),
            previous_sha256: None,
        },
        Event::Lost { count: 3 },
    ]
}

/// The XML of a syslog line, after checking its RFC 5424 header.
fn parse_line(line: &str) -> (u8, &str) {
    assert!(!line.contains('\n'), "one line per record: {line}");
    let (pri, rest) = line[1..].split_once('>').expect("PRI");
    let fields: Vec<&str> = rest.splitn(8, ' ').collect();
    assert_eq!(fields[0], "1", "version");
    assert!(
        fields[1].ends_with('Z') && fields[1].len() == 24,
        "{}",
        fields[1]
    );
    assert_eq!(
        &fields[2..7],
        ["edge-01", "firstlookd", "4242", "IHE+RFC-3881", "-"]
    );
    let xml = fields[7]
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .expect("XML declaration");
    (pri.parse().unwrap(), xml)
}

#[test]
fn every_event_is_a_well_formed_syslog_line_with_a_dicom_audit_message() {
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&dir);
    for event in every_event() {
        let line = w.line(&event, 1_765_000_000_123);
        let (pri, xml) = parse_line(&line);
        let doc = roxmltree::Document::parse(xml)
            .unwrap_or_else(|e| panic!("{event:?} gives malformed XML ({e}): {xml}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "AuditMessage");
        let children: Vec<&str> = root
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name())
            .collect();
        assert_eq!(children[0], "EventIdentification", "{children:?}");
        assert!(children[1..].starts_with(&["ActiveParticipant"]));
        let source_at = children
            .iter()
            .position(|c| *c == "AuditSourceIdentification")
            .expect("AuditSourceIdentification");
        assert!(children[1..source_at]
            .iter()
            .all(|c| *c == "ActiveParticipant"));
        assert!(children[source_at + 1..]
            .iter()
            .all(|c| *c == "ParticipantObjectIdentification"));

        let ident = root.first_element_child().unwrap();
        assert_eq!(
            ident.attribute("EventDateTime"),
            Some("2025-12-06T05:46:40.123Z")
        );
        let (id, type_code, action) = message::kind(&event);
        assert_eq!(ident.attribute("EventActionCode"), Some(action));
        let event_id = ident.first_element_child().unwrap();
        assert_eq!(event_id.tag_name().name(), "EventID");
        assert_eq!(event_id.attribute("csd-code"), Some(id.0));
        assert_eq!(event_id.attribute("codeSystemName"), Some("DCM"));
        let type_codes: Vec<_> = ident
            .children()
            .filter(|n| n.has_tag_name("EventTypeCode"))
            .map(|n| n.attribute("csd-code").unwrap())
            .collect();
        assert_eq!(
            type_codes,
            type_code.map(|c| c.0).into_iter().collect::<Vec<_>>()
        );

        let outcome = message::outcome(&event);
        let (indicator, severity) = match &outcome {
            Outcome::Success => ("0", 5),
            Outcome::MinorFailure(_) => ("4", 4),
            Outcome::SeriousFailure(_) => ("8", 3),
        };
        assert_eq!(ident.attribute("EventOutcomeIndicator"), Some(indicator));
        assert_eq!(pri, 80 + severity, "facility authpriv");
        let description = ident
            .children()
            .find(|n| n.has_tag_name("EventOutcomeDescription"))
            .and_then(|n| n.text());
        match &outcome {
            Outcome::Success => assert_eq!(description, None),
            Outcome::MinorFailure(why) | Outcome::SeriousFailure(why) => {
                assert_eq!(description, Some(why.as_str()))
            }
        }
        for p in root
            .children()
            .filter(|n| n.has_tag_name("ActiveParticipant"))
        {
            assert!(!p.attribute("UserID").unwrap().is_empty());
            assert!(matches!(
                p.attribute("UserIsRequestor"),
                Some("true" | "false")
            ));
        }
        let src = root
            .children()
            .find(|n| n.has_tag_name("AuditSourceIdentification"))
            .unwrap();
        assert_eq!(src.attribute("AuditSourceID"), Some("FIRSTLOOK@edge-01"));
        assert_eq!(
            src.attribute("AuditEnterpriseSiteID"),
            Some("St. Elsewhere & Co")
        );
    }
}

#[test]
fn hostile_values_are_escaped_and_read_back_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&dir);
    let line = w.line(
        &Event::Association {
            peer: peer(),
            calling_ae: "EVIL<\"&'>\n\u{1}".into(),
            outcome: Outcome::MinorFailure("a\nb".into()),
        },
        0,
    );
    let (_, xml) = parse_line(&line);
    let doc = roxmltree::Document::parse(xml).unwrap();
    let scanner = doc
        .descendants()
        .find(|n| n.has_tag_name("ActiveParticipant"))
        .unwrap();
    assert_eq!(scanner.attribute("UserID"), Some("EVIL<\"&'>\n\u{FFFD}"));
    assert_eq!(scanner.attribute("NetworkAccessPointID"), Some("10.1.2.3"));
    assert_eq!(scanner.attribute("NetworkAccessPointTypeCode"), Some("2"));
}

#[test]
fn transfers_name_each_study_with_its_sop_classes_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&dir);
    let line = w.line(
        &Event::Received {
            peer: peer(),
            calling_ae: "CT01".into(),
            studies: studies(),
            outcome: Outcome::Success,
        },
        0,
    );
    let (_, xml) = parse_line(&line);
    let doc = roxmltree::Document::parse(xml).unwrap();
    let objects: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("ParticipantObjectIdentification"))
        .collect();
    assert_eq!(objects.len(), 2);
    let study = objects
        .iter()
        .find(|o| o.attribute("ParticipantObjectID") == Some("1.2.3"))
        .unwrap();
    assert_eq!(study.attribute("ParticipantObjectTypeCode"), Some("2"));
    assert_eq!(study.attribute("ParticipantObjectTypeCodeRole"), Some("3"));
    let classes: Vec<_> = study
        .children()
        .filter(|n| n.has_tag_name("SOPClass"))
        .map(|n| {
            (
                n.attribute("UID").unwrap(),
                n.attribute("NumberOfInstances").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        classes,
        [
            ("1.2.840.10008.5.1.4.1.1.2", "2"),
            ("1.2.840.10008.5.1.4.1.1.88.22", "1")
        ]
    );
    let roles: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("RoleIDCode"))
        .map(|n| n.attribute("csd-code").unwrap())
        .collect();
    assert_eq!(
        roles,
        ["110153", "110152"],
        "scanner is source, we are destination"
    );
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn records_dropped_on_a_full_queue_are_counted_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (tx, rx) = sync_channel(1);
    let log = AuditLog {
        tx: Some(tx),
        dropped: Arc::new(AtomicU64::new(0)),
    };
    // Nobody reads yet: the first record fills the queue, the next two are dropped.
    log.record(Event::ApplicationStart);
    log.record(Event::ApplicationStop);
    log.record(Event::ApplicationStop);
    assert_eq!(log.dropped.load(Ordering::Relaxed), 2);
    let mut writer = writer(&dir);
    writer.dropped = Arc::clone(&log.dropped);
    drop(log);
    writer.run(rx);
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("csd-code=\"110120\""), "the start");
    assert!(lines[1].contains("csd-code=\"110133\""), "the loss");
    assert!(lines[1].contains("2 audit records were dropped"));
}

#[test]
fn configuration_and_bundle_changes_are_audited_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (tx, rx) = sync_channel(64);
    let log = AuditLog {
        tx: Some(tx),
        dropped: Arc::new(AtomicU64::new(0)),
    };
    let spool = dir.path();
    note_config(&log, spool, "/etc/f.toml", "aa");
    note_config(&log, spool, "/etc/f.toml", "aa");
    note_config(&log, spool, "/etc/f.toml", "bb");
    note_bundle(&log, spool, "m.flb", "model 1", "b1");
    note_bundle(&log, spool, "m.flb", "model 1", "b1");
    note_bundle(&log, spool, "m.flb", "model 2", "b2");
    note_bundle(&log, spool, "m.flb", "model 1", "b1");
    drop(log);
    let events: Vec<Event> = rx
        .iter()
        .map(|m| match m {
            Msg::Record(e, _) => *e,
            Msg::Flush(_) => panic!("no flush was asked for"),
        })
        .collect();
    let bundle = |name: &str, sha: &str, previous: Option<&str>, rollback| Event::Bundle {
        path: "m.flb".into(),
        name: name.into(),
        sha256: sha.into(),
        previous: previous.map(String::from),
        rollback,
        outcome: Outcome::Success,
    };
    assert_eq!(
        events,
        [
            Event::Config {
                path: "/etc/f.toml".into(),
                sha256: "aa".into(),
                previous_sha256: None
            },
            Event::Config {
                path: "/etc/f.toml".into(),
                sha256: "bb".into(),
                previous_sha256: Some("aa".into())
            },
            bundle("model 1", "b1", None, false),
            bundle("model 2", "b2", Some("b1"), false),
            bundle("model 1", "b1", Some("b2"), true),
        ]
    );
    assert!(
        !path.exists(),
        "nothing was written by these checks themselves"
    );
}

#[tokio::test]
async fn the_log_appends_every_record_and_flush_waits_for_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded_defaults();
    config.node.spool_dir = dir.path().to_path_buf();
    let log = AuditLog::start(&config).unwrap();
    for event in every_event() {
        log.record(event);
    }
    log.flush().await;
    let lines = read_lines(&default_file(dir.path()));
    assert_eq!(lines.len(), every_event().len());
    for line in &lines {
        let xml = line.split_once(" - <?xml").expect("header then XML").1;
        assert!(xml.ends_with("</AuditMessage>"));
    }
}
