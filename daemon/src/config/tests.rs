use super::*;

const GOOD: &str = r#"
[node]
ae_title = "FIRSTLOOK"
listen = "127.0.0.1:11112"
spool_dir = "/var/lib/firstlook/spool"
max_associations = 16

[[scanners]]
ae_title = "CT01"
hosts = ["127.0.0.1", "10.1.2.0/24"]

[[destinations]]
name = "pacs"
ae_title = "PACS"
address = "127.0.0.1:4242"
"#;

fn error_of(text: &str) -> (usize, usize, String) {
    match Config::parse(text, "site.toml") {
        Err(ConfigError::Invalid {
            line,
            column,
            message,
            fix,
            ..
        }) => (line, column, format!("{message} | {fix}")),
        Err(other) => panic!("unexpected error kind: {other}"),
        Ok(_) => panic!("broken config was accepted:\n{text}"),
    }
}

#[test]
fn the_issue_example_parses_with_defaults_filled_in() {
    let c = Config::parse(GOOD, "site.toml").expect("valid");
    assert_eq!(c.node.ae_title.as_str(), "FIRSTLOOK");
    assert_eq!(c.node.max_associations.get(), 16);
    assert_eq!(c.destinations[0].calling_ae(&c.node), "FIRSTLOOK");
    assert_eq!(c.spool.high_watermark_percent.get(), 90);
    assert_eq!(c.forward.retry_max_secs.get(), 300);
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let text = GOOD.replace("max_associations = 16", "max_asociations = 16");
    let (line, column, msg) = error_of(&text);
    assert_eq!((line, column), (6, 1));
    assert!(msg.contains("unknown field `max_asociations`"), "{msg}");
    assert!(msg.contains("correct its spelling"), "{msg}");
}

#[test]
fn missing_required_key_says_what_to_add() {
    let text = GOOD.replace("spool_dir = \"/var/lib/firstlook/spool\"\n", "");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 2, "{msg}");
    assert!(msg.contains("missing field `spool_dir`"), "{msg}");
    assert!(msg.contains("add `spool_dir = ...`"), "{msg}");
}

#[test]
fn overlong_ae_title_points_at_the_value() {
    let text = GOOD.replace("\"CT01\"", "\"CT01-EMERGENCY-ROOM\"");
    let (line, column, msg) = error_of(&text);
    assert_eq!((line, column), (9, 12));
    assert!(msg.contains("at most 16"), "{msg}");
}

#[test]
fn bad_network_is_explained() {
    let text = GOOD.replace("10.1.2.0/24", "10.1.2.0/33");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 10);
    assert!(msg.contains("not an IP address or network"), "{msg}");
}

#[test]
fn inverted_watermarks_are_refused() {
    let text =
        format!("{GOOD}\n[spool]\nhigh_watermark_percent = 80\nlow_watermark_percent = 95\n");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 19);
    assert!(
        msg.contains("must be below high_watermark_percent"),
        "{msg}"
    );
}

#[test]
fn destination_without_port_is_refused() {
    let text = GOOD.replace("127.0.0.1:4242", "pacs.local");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 15);
    assert!(msg.contains("not host:port"), "{msg}");
}

#[test]
fn number_out_of_range_gives_the_range() {
    let text = GOOD.replace("max_associations = 16", "max_associations = 0");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 6);
    assert!(msg.contains("from 1 to 1024"), "{msg}");
}

#[test]
fn duplicate_destination_names_are_refused() {
    let text = format!("{GOOD}\n[[destinations]]\nname = \"pacs\"\nae_title = \"P2\"\naddress = \"127.0.0.1:104\"\n");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 18);
    assert!(msg.contains("used twice"), "{msg}");
}

#[test]
fn scanner_policy_distinguishes_host_and_title() {
    let c = Config::parse(GOOD, "site.toml").unwrap();
    let lan: IpAddr = "10.1.2.77".parse().unwrap();
    assert_eq!(c.scanner_allowed("CT01", lan, false), ScannerCheck::Allowed);
    assert_eq!(
        c.scanner_allowed("CT02", lan, false),
        ScannerCheck::UnknownCallingAe
    );
    let other: IpAddr = "10.1.3.1".parse().unwrap();
    assert_eq!(
        c.scanner_allowed("CT01", other, false),
        ScannerCheck::UnknownHost
    );
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    assert_eq!(
        c.scanner_allowed("CT01", mapped, false),
        ScannerCheck::Allowed
    );
}

#[test]
fn embedded_defaults_accept_loopback_only() {
    let c = Config::embedded_defaults();
    assert!(c.node.listen.ip().is_loopback());
    assert_eq!(
        c.scanner_allowed("ANY", "127.0.0.1".parse().unwrap(), false),
        ScannerCheck::Allowed
    );
    assert_eq!(
        c.scanner_allowed("ANY", "192.168.1.4".parse().unwrap(), false),
        ScannerCheck::UnknownHost
    );
}

#[test]
fn cross_field_errors_point_at_the_entry_at_fault() {
    let text = format!("{GOOD}\n[[scanners]]\nae_title = \"CT02\"\nhosts = []\n");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 19, "{msg}");
    // The name also appears earlier as an AE title and as the first destination.
    let text = GOOD.replace("ae_title = \"PACS\"", "ae_title = \"pacs\"");
    let text = format!("{text}\n[[destinations]]\nname = \"pacs\"\nae_title = \"P2\"\naddress = \"127.0.0.1:104\"\n");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 18, "{msg}");
}

#[test]
fn triage_defaults_to_the_embedded_demo_bundle_on_auto() {
    let c = Config::parse(GOOD, "site.toml").expect("valid");
    assert!(c.triage.enabled);
    assert_eq!(c.triage.bundle, None);
    assert_eq!(c.triage.engine, EngineChoice::Auto);
    let text = format!("{GOOD}\n[triage]\nbundle = \"/etc/firstlook/site.flb\"\nengine = \"onnxruntime\"\nseries_idle_secs = 30\n");
    let c = Config::parse(&text, "site.toml").expect("valid");
    assert_eq!(
        c.triage.bundle.as_deref(),
        Some(Path::new("/etc/firstlook/site.flb"))
    );
    assert_eq!(c.triage.engine, EngineChoice::Onnxruntime);
    assert_eq!(c.triage.series_idle(), Duration::from_secs(30));
}

#[test]
fn unknown_engine_lists_the_choices() {
    let text = format!("{GOOD}\n[triage]\nengine = \"cuda\"\n");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 18, "{msg}");
    assert!(
        msg.contains("`tract`") && msg.contains("`onnxruntime`"),
        "{msg}"
    );
    assert!(msg.contains("use one of the values"), "{msg}");
}

#[test]
fn a_panel_beyond_loopback_needs_tls() {
    let text = format!("{GOOD}\n[panel]\nlisten = \"0.0.0.0:8443\"\n");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 18);
    assert!(msg.contains("unencrypted"), "{msg}");
    let text = format!("{GOOD}\n[panel]\nlisten = \"0.0.0.0:8443\"\ntls_cert = \"panel.crt\"\n");
    let (_, _, msg) = error_of(&text);
    assert!(msg.contains("go together"), "{msg}");
    let text = format!(
        "{GOOD}\n[panel]\nlisten = \"0.0.0.0:8443\"\ntls_cert = \"panel.crt\"\ntls_key = \"panel.key\"\n"
    );
    assert!(Config::parse(&text, "t.toml").is_ok());
}

#[test]
fn panel_paths_are_relative_to_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("firstlook.toml");
    std::fs::write(
        &file,
        format!("{GOOD}\n[panel]\ntls_cert = \"tls/panel.crt\"\ntls_key = \"/etc/k.pem\"\n"),
    )
    .unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(
        c.panel.users_file.as_deref(),
        Some(dir.path().join("panel-users").as_path())
    );
    assert_eq!(
        c.panel.tls_cert.as_deref(),
        Some(dir.path().join("tls/panel.crt").as_path())
    );
    assert_eq!(
        c.panel.tls_key.as_deref(),
        Some(std::path::Path::new("/etc/k.pem"))
    );
}

#[test]
fn the_audit_trail_is_on_by_default_beside_the_spool_and_its_tls_settings_are_checked() {
    let c = Config::parse(GOOD, "t.toml").unwrap();
    assert!(c.audit.enabled);
    assert_eq!(
        c.audit.file_in(&c.node.spool_dir),
        c.node.spool_dir.join("audit.log")
    );
    let text = format!(
        "{GOOD}\n[audit.syslog_tls]\naddress = \"audit.example:6514\"\nca_file = \"ca.pem\"\nclient_cert = \"c.pem\"\n"
    );
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 20, "{msg}");
    assert!(msg.contains("go together"), "{msg}");
    let text =
        format!("{GOOD}\n[audit.syslog_tls]\naddress = \"audit.example\"\nca_file = \"ca.pem\"\n");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 18, "{msg}");
    assert!(msg.contains("host:port"), "{msg}");
    let text = format!("{GOOD}\n[audit]\nsyslog = \"x\"\n");
    let (_, _, msg) = error_of(&text);
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn audit_paths_are_relative_to_the_configuration_file_and_its_hash_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("firstlook.toml");
    let text = format!(
        "{GOOD}\n[audit]\nfile = \"log/audit.log\"\n[audit.syslog_tls]\naddress = \"[::1]:6514\"\nca_file = \"ca.pem\"\n"
    );
    std::fs::write(&file, &text).unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(
        c.audit.file_in(&c.node.spool_dir),
        dir.path().join("log/audit.log")
    );
    let tls = c.audit.syslog_tls.as_ref().unwrap();
    assert_eq!(tls.ca_file, dir.path().join("ca.pem"));
    assert_eq!(tls.address.host(), "::1");
    assert_eq!(c.source.sha256.len(), 64);
    assert!(c.source.path.ends_with("firstlook.toml"));
}

#[test]
fn dicom_tls_settings_are_checked_and_their_paths_resolved() {
    let tls = "\n[node.tls]\nlisten = \"0.0.0.0:2762\"\ncert = \"tls/dicom.crt\"\nkey = \"/etc/k.pem\"\nclient_ca = \"ca.pem\"\n";
    let text = format!("{GOOD}{}", tls.replace("0.0.0.0:2762", "127.0.0.1:11112"));
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 18, "{msg}");
    assert!(msg.contains("port of its own"), "{msg}");

    let only_tls = GOOD.replace(
        "hosts = [\"127.0.0.1\", \"10.1.2.0/24\"]\n",
        "hosts = [\"127.0.0.1\", \"10.1.2.0/24\"]\nrequire_tls = true\n",
    );
    let (line, _, msg) = error_of(&only_tls);
    assert_eq!(line, 11, "{msg}");
    assert!(
        msg.contains("no TLS listener") && msg.contains("[node.tls]"),
        "{msg}"
    );
    assert!(Config::parse(&format!("{only_tls}{tls}"), "t.toml").is_ok());

    let text =
        format!("{GOOD}\n[destinations.tls]\nca_file = \"ca.pem\"\nclient_key = \"k.pem\"\n");
    let (line, _, msg) = error_of(&text);
    assert_eq!(line, 19, "{msg}");
    assert!(msg.contains("go together"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("firstlook.toml");
    let dest = "\n[destinations.tls]\nca_file = \"pacs-ca.pem\"\nserver_name = \"pacs.example\"\n";
    std::fs::write(&file, format!("{GOOD}{dest}{tls}")).unwrap();
    let c = Config::load(&file).unwrap();
    let t = c.node.tls.as_ref().unwrap();
    assert_eq!(t.cert, dir.path().join("tls/dicom.crt"));
    assert_eq!(t.key, std::path::Path::new("/etc/k.pem"));
    assert_eq!(
        t.client_ca.as_deref(),
        Some(dir.path().join("ca.pem").as_path())
    );
    let d = c.destinations[0].tls.as_ref().unwrap();
    assert_eq!(d.ca_file, dir.path().join("pacs-ca.pem"));
    assert_eq!(d.server_name.as_deref(), Some("pacs.example"));
}
