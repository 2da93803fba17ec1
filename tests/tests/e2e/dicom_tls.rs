//! DICOM over TLS (PS3.15 BCP 195) against DCMTK built with OpenSSL:
//! `storescu +tls` into firstlookd's TLS port, firstlookd into `storescp
//! +tls`, with certificates from a throwaway CA checked both ways.

use std::path::Path;
use std::time::Duration;

use firstlook_e2e::*;

const SETTLE: Duration = Duration::from_secs(60);

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// storescu's TLS arguments: present `client` (key, cert) or nothing
/// (`+tla`), and trust `ca` for the server.
fn tls_args<'a>(client: Option<&'a Pki>, ca: &'a Path) -> Vec<&'a str> {
    let mut args = match client {
        Some(p) => vec!["+tls", s(&p.server_key), s(&p.server_cert)],
        None => vec!["+tla"],
    };
    args.extend(["+cf", s(ca)]);
    args
}

/// A scanner allowed only over TLS sends with `storescu +tls`; the images
/// reach a `storescp +tls` PACS that demands firstlookd's client
/// certificate, byte-identical. The same scanner in the clear is refused.
#[test]
fn storescu_over_tls_to_storescp_over_tls_byte_identical() {
    let dir = scratch("dicom-tls");
    let pki = Pki::new(&dir.path().join("pki"));
    let mut pacs = StoreScp::start_tls(dir.path(), free_port(), &pki, &pki);
    let tls_port = free_port();
    let cfg = DaemonConfig::new()
        .dicom_tls(tls_port, &pki, Some(&pki.ca_cert))
        .scanner_over_tls_only("CT01", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port).tls(
            &pki.ca_cert,
            Some((pki.server_cert.as_path(), pki.server_key.as_path())),
        ));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 7001).with_count(12),
        &dir.path().join("ct"),
    );
    let ct_dir = dir.path().join("ct");

    let clear = storescu(daemon.port, "CT01", &["+sd"], &[ct_dir.as_path()]);
    assert!(
        clear.text().contains("Association Rejected"),
        "CT01 in the clear must be rejected:\n{clear}"
    );

    let mut args = tls_args(Some(&pki), &pki.ca_cert);
    args.push("+sd");
    let out = storescu(tls_port, "CT01", &args, &[ct_dir.as_path()]);
    assert!(out.status.success(), "storescu +tls failed:\n{out}");
    assert_eq!(
        storescu_successes(&out.stderr).len(),
        12,
        "storescu +tls should report 12 successes:\n{out}"
    );

    let status = daemon.wait_settled(12, SETTLE);
    let d = status.destination("pacs");
    assert_eq!((d.delivered, d.dead), (12, 0), "{}", status.summary());
    assert_delivered_identical(&ct, &pacs.received());
    let log = pacs.log_text();
    assert!(
        !log.contains("TLS error") && !log.contains("certificate verify failed"),
        "{log}"
    );
}

/// With `client_ca`, a peer without a certificate, or with one another CA
/// signed, or speaking plain DICOM, or offering only TLS 1.1, is closed
/// before any association: nothing stored, each refusal audited, and the
/// trusted scanner still served.
#[test]
fn untrusted_or_outdated_peers_are_refused_before_any_association() {
    let dir = scratch("dicom-tls-refused");
    let pki = Pki::new(&dir.path().join("pki"));
    let stranger = Pki::new(&dir.path().join("stranger-pki"));
    let tls_port = free_port();
    let cfg = DaemonConfig::new()
        .dicom_tls(tls_port, &pki, Some(&pki.ca_cert))
        .scanner("CT01", &["127.0.0.1"]);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 7002).with_count(2),
        &dir.path().join("ct"),
    );
    let files: Vec<&Path> = ct.iter().map(|f| f.path.as_path()).collect();

    let anonymous = storescu(tls_port, "CT01", &tls_args(None, &pki.ca_cert), &files);
    assert!(
        !anonymous.status.success(),
        "no client certificate:\n{anonymous}"
    );
    let foreign = storescu(
        tls_port,
        "CT01",
        &tls_args(Some(&stranger), &pki.ca_cert),
        &files,
    );
    assert!(!foreign.status.success(), "untrusted CA:\n{foreign}");
    let plain = storescu(tls_port, "CT01", &[], &files);
    assert!(!plain.status.success(), "plain DICOM on TLS:\n{plain}");
    assert_eq!(daemon.status().instances, 0, "nothing may be stored");

    // The server, not the client, refuses TLS 1.1: the same client gets
    // TLS 1.2 when it offers it.
    let s_client = |version: &str| {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["s_client", "-connect", &format!("127.0.0.1:{tls_port}")])
            .args([version, "-cipher", "DEFAULT@SECLEVEL=0"])
            .args(["-cert", s(&pki.server_cert), "-key", s(&pki.server_key)])
            .args(["-CAfile", s(&pki.ca_cert)])
            .stdin(std::process::Stdio::null());
        run_cmd(&mut cmd, Duration::from_secs(30))
    };
    let old = s_client("-tls1_1");
    assert!(!old.status.success(), "TLS 1.1 was accepted:\n{old}");
    assert!(
        old.text().contains("SSL alert number") && old.text().contains("Cipher is (NONE)"),
        "TLS 1.1 should end in an alert from the server, with no session:\n{old}"
    );
    let tls12 = s_client("-tls1_2");
    assert!(
        tls12.text().contains("Protocol  : TLSv1.2") && !tls12.text().contains("Cipher is (NONE)"),
        "TLS 1.2 should be accepted:\n{tls12}"
    );

    let audit = std::fs::read_to_string(daemon.spool_dir().join("audit.log")).expect("audit.log");
    let refused = audit
        .lines()
        .filter(|l| l.contains("TLS handshake failed") && l.contains("EventOutcomeIndicator=\"4\""))
        .count();
    assert!(refused >= 4, "each refused peer is audited:\n{audit}");

    let ok = storescu(
        tls_port,
        "CT01",
        &tls_args(Some(&pki), &pki.ca_cert),
        &files,
    );
    assert!(ok.status.success(), "the trusted scanner:\n{ok}");
    assert_eq!(storescu_successes(&ok.stderr).len(), 2, "{ok}");
    daemon.assert_running();
}

/// A PACS whose certificate our CA did not sign gets nothing: the
/// instances stay queued with the TLS failure as the reason, and go once
/// the PACS presents a trusted certificate.
#[test]
fn forwarding_refuses_a_pacs_whose_certificate_is_not_trusted() {
    let dir = scratch("dicom-tls-untrusted-pacs");
    let pki = Pki::new(&dir.path().join("pki"));
    let impostor = Pki::new(&dir.path().join("impostor-pki"));
    let pacs_port = free_port();
    let impostor_dir = dir.path().join("impostor");
    std::fs::create_dir_all(&impostor_dir).unwrap();
    let mut fake = StoreScp::start_tls(&impostor_dir, pacs_port, &impostor, &pki);
    let cfg = DaemonConfig::ct01_to_pacs(pacs_port);
    let mut cfg = cfg;
    cfg.destinations[0] = DestinationConfig::new("pacs", "PACS", pacs_port).tls(
        &pki.ca_cert,
        Some((pki.server_cert.as_path(), pki.server_key.as_path())),
    );
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 7003).with_count(3),
        &dir.path().join("ct"),
    );
    let files: Vec<&Path> = ct.iter().map(|f| f.path.as_path()).collect();
    let out = storescu(daemon.port, "CT01", &[], &files);
    assert!(out.status.success(), "{out}");

    let status = wait_until(SETTLE, "a TLS failure on the destination", |last| {
        let st = daemon.status();
        *last = st.summary();
        let d = st.destination("pacs");
        d.last_error
            .as_deref()
            .is_some_and(|e| e.contains("TLS"))
            .then_some(st)
    });
    let d = status.destination("pacs");
    assert_eq!(
        (d.pending, d.delivered, d.dead),
        (3, 0, 0),
        "{}",
        status.summary()
    );
    assert!(fake.received().is_empty(), "the impostor got images");
    drop(fake);

    let mut pacs = StoreScp::start_tls(dir.path(), pacs_port, &pki, &pki);
    let status = daemon.wait_settled(3, SETTLE);
    assert_eq!(
        status.destination("pacs").delivered,
        3,
        "{}",
        status.summary()
    );
    assert_delivered_identical(&ct, &pacs.received());
}
