use super::*;
use dicom_ul::pdu::PresentationContextProposed;

const CONFIG: &str = r#"
[node]
ae_title = "FIRSTLOOK"
spool_dir = "/tmp/x"

[node.tls]
listen = "0.0.0.0:2762"
cert = "/etc/firstlook/dicom.crt"
key = "/etc/firstlook/dicom.key"

[[scanners]]
ae_title = "CT01"
hosts = ["10.1.2.0/24"]

[[scanners]]
ae_title = "CT09"
hosts = ["10.1.2.0/24"]
require_tls = true
"#;

fn rq(calling: &str, called: &str, contexts: &[(&str, &[&str])]) -> AssociationRQ {
    AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling.into(),
        called_ae_title: called.into(),
        application_context_name: APPLICATION_CONTEXT.into(),
        presentation_contexts: contexts
            .iter()
            .enumerate()
            .map(|(i, (abs, ts))| PresentationContextProposed {
                id: (2 * i + 1) as u8,
                abstract_syntax: abs.to_string(),
                transfer_syntaxes: ts.iter().map(|t| t.to_string()).collect(),
            })
            .collect(),
        user_variables: vec![UserVariableItem::MaxLength(4096)],
    }
}

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const OK_LOAD: Load = Load {
    slot_available: true,
    disk_refusing: false,
    over_tls: false,
};

fn reason(r: Result<Accepted, Rejected>) -> (AssociationRJResult, AssociationRJSource) {
    match r {
        Err(rej) => (rej.rj.result, rej.rj.source),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn rejections_carry_the_reason_ps3_8_defines() {
    let cfg = Config::parse(CONFIG, "t").unwrap();
    let lan: IpAddr = "10.1.2.9".parse().unwrap();
    let user = |r| AssociationRJSource::ServiceUser(r);
    let table = [
        (
            rq("CT02", "FIRSTLOOK", &[(CT, &["1.2.840.10008.1.2"])]),
            lan,
            OK_LOAD,
            AssociationRJResult::Permanent,
            user(AssociationRJServiceUserReason::CallingAETitleNotRecognized),
        ),
        (
            rq("CT01", "OTHER", &[(CT, &["1.2.840.10008.1.2"])]),
            lan,
            OK_LOAD,
            AssociationRJResult::Permanent,
            user(AssociationRJServiceUserReason::CalledAETitleNotRecognized),
        ),
        (
            rq("CT01", "FIRSTLOOK", &[(CT, &["1.2.840.10008.1.2"])]),
            "10.1.3.9".parse().unwrap(),
            OK_LOAD,
            AssociationRJResult::Permanent,
            user(AssociationRJServiceUserReason::NoReasonGiven),
        ),
        (
            rq("CT01", "FIRSTLOOK", &[(CT, &["1.2.840.10008.1.2"])]),
            lan,
            Load {
                slot_available: false,
                disk_refusing: false,
                over_tls: false,
            },
            AssociationRJResult::Transient,
            AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        ),
        (
            rq("CT01", "FIRSTLOOK", &[(CT, &["1.2.840.10008.1.2"])]),
            lan,
            Load {
                slot_available: true,
                disk_refusing: true,
                over_tls: false,
            },
            AssociationRJResult::Transient,
            AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        ),
    ];
    for (i, (rq, ip, load, result, source)) in table.into_iter().enumerate() {
        assert_eq!(
            reason(negotiate(&rq, ip, &cfg, load)),
            (result, source),
            "case {i}"
        );
    }
}

#[test]
fn a_scanner_that_requires_tls_is_refused_in_the_clear() {
    let cfg = Config::parse(CONFIG, "t").unwrap();
    let lan: IpAddr = "10.1.2.9".parse().unwrap();
    let ct09 = rq("CT09", "FIRSTLOOK", &[(CT, &["1.2.840.10008.1.2"])]);
    let rejected = negotiate(&ct09, lan, &cfg, OK_LOAD).unwrap_err();
    assert_eq!(rejected.rj.result, AssociationRJResult::Permanent);
    assert!(rejected.why.contains("TLS"), "{}", rejected.why);
    let over_tls = Load {
        over_tls: true,
        ..OK_LOAD
    };
    assert!(negotiate(&ct09, lan, &cfg, over_tls).is_ok());
    let ct01 = rq("CT01", "FIRSTLOOK", &[(CT, &["1.2.840.10008.1.2"])]);
    assert!(negotiate(&ct01, lan, &cfg, OK_LOAD).is_ok());
    assert!(negotiate(&ct01, lan, &cfg, over_tls).is_ok());
    // A wildcard entry for the same hosts does not let CT09 in the clear.
    let wildcard = format!("{CONFIG}\n[[scanners]]\nae_title = \"*\"\nhosts = [\"10.1.2.0/24\"]\n");
    let cfg = Config::parse(&wildcard, "t").unwrap();
    assert!(negotiate(&ct09, lan, &cfg, OK_LOAD).is_err());
    assert!(negotiate(&ct09, lan, &cfg, over_tls).is_ok());
    let ct02 = rq("CT02", "FIRSTLOOK", &[(CT, &["1.2.840.10008.1.2"])]);
    assert!(negotiate(&ct02, lan, &cfg, OK_LOAD).is_ok());
}

#[test]
fn contexts_are_accepted_per_sop_class_and_known_syntax() {
    let cfg = Config::parse(CONFIG, "t").unwrap();
    let r = rq(
        "CT01",
        "FIRSTLOOK",
        &[
            (CT, &["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]),
            (CT, &["1.2.840.10008.1.2.4.70"]),
            ("1.2.840.10008.1.1", &["1.2.840.10008.1.2"]),
            ("1.2.3.4.5", &["1.2.840.10008.1.2"]),
            (CT, &["1.2.3.private"]),
            (CT, &["1.2.840.10008.1.2"]),
        ],
    );
    let a = negotiate(&r, "10.1.2.9".parse().unwrap(), &cfg, OK_LOAD).unwrap();
    let reasons: Vec<_> =
        a.ac.presentation_contexts
            .iter()
            .map(|p| p.reason.clone())
            .collect();
    use PresentationContextResultReason::*;
    assert_eq!(
        reasons,
        vec![
            Acceptance,
            Acceptance,
            Acceptance,
            AbstractSyntaxNotSupported,
            TransferSyntaxesNotSupported,
            Acceptance
        ]
    );
    let ts: Vec<_> = a
        .contexts
        .iter()
        .map(|c| c.transfer_syntax.as_str())
        .collect();
    // Explicit VR LE is preferred over the default Implicit VR LE when both are offered.
    assert_eq!(
        ts,
        vec![
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2"
        ]
    );
    assert_eq!(a.peer_max_pdu, 4096);
    assert!(a
        .ac
        .user_variables
        .contains(&UserVariableItem::MaxLength(262_144)));
}
