//! The DICOM audit message (PS3.15 A.5.1) for each [`Event`], as one line of
//! XML (values escaped, newlines included, so a record never spans lines).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Event, Outcome, Source, Studies};

/// A coded value: `csd-code`, `codeSystemName`, `originalText`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub &'static str, pub &'static str, pub &'static str);

const fn dcm(code: &'static str, text: &'static str) -> Code {
    Code(code, "DCM", text)
}

pub const APPLICATION_ACTIVITY: Code = dcm("110100", "Application Activity");
pub const INSTANCES_TRANSFERRED: Code = dcm("110104", "DICOM Instances Transferred");
pub const SECURITY_ALERT: Code = dcm("110113", "Security Alert");
pub const USER_AUTHENTICATION: Code = dcm("110114", "User Authentication");
pub const APPLICATION_START: Code = dcm("110120", "Application Start");
pub const APPLICATION_STOP: Code = dcm("110121", "Application Stop");
pub const LOGIN: Code = dcm("110122", "Login");
pub const LOGOUT: Code = dcm("110123", "Logout");
pub const NODE_AUTHENTICATION: Code = dcm("110126", "Node Authentication");
pub const SECURITY_CONFIGURATION: Code = dcm("110129", "Security Configuration");
pub const SOFTWARE_CONFIGURATION: Code = dcm("110131", "Software Configuration");
pub const AUDIT_RECORDING_STOPPED: Code = dcm("110133", "Audit Recording Stopped");
const ROLE_APPLICATION: Code = dcm("110150", "Application");
const ROLE_DESTINATION: Code = dcm("110152", "Destination Role ID");
const ROLE_SOURCE: Code = dcm("110153", "Source Role ID");
const STUDY_INSTANCE_UID: Code = dcm("110180", "Study Instance UID");
const URI: Code = Code("12", "RFC-3881", "URI");
const APPLICATION_SERVER: Code = Code("4", "DCM", "Application Server");

/// PS3.15 A.5.1 EventOutcomeIndicator.
fn outcome_indicator(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "0",
        Outcome::MinorFailure(_) => "4",
        Outcome::SeriousFailure(_) => "8",
    }
}

/// The event's identification codes and action.
pub fn kind(event: &Event) -> (Code, Option<Code>, &'static str) {
    match event {
        Event::ApplicationStart => (APPLICATION_ACTIVITY, Some(APPLICATION_START), "E"),
        Event::ApplicationStop => (APPLICATION_ACTIVITY, Some(APPLICATION_STOP), "E"),
        Event::Association { .. } => (SECURITY_ALERT, Some(NODE_AUTHENTICATION), "E"),
        Event::Received { .. } => (INSTANCES_TRANSFERRED, None, "C"),
        Event::Sent { .. } => (INSTANCES_TRANSFERRED, None, "R"),
        Event::Login { .. } => (USER_AUTHENTICATION, Some(LOGIN), "E"),
        Event::Logout { .. } => (USER_AUTHENTICATION, Some(LOGOUT), "E"),
        Event::Bundle { .. } => (SECURITY_ALERT, Some(SOFTWARE_CONFIGURATION), "E"),
        Event::Config { .. } => (SECURITY_ALERT, Some(SECURITY_CONFIGURATION), "E"),
        Event::Lost { .. } => (SECURITY_ALERT, Some(AUDIT_RECORDING_STOPPED), "E"),
    }
}

/// The event's outcome (every event has one).
pub fn outcome(event: &Event) -> Outcome {
    match event {
        Event::Association { outcome, .. }
        | Event::Received { outcome, .. }
        | Event::Sent { outcome, .. }
        | Event::Login { outcome, .. }
        | Event::Bundle { outcome, .. } => outcome.clone(),
        Event::Lost { count } => Outcome::SeriousFailure(format!(
            "{count} audit records were dropped: the audit queue was full"
        )),
        Event::ApplicationStart
        | Event::ApplicationStop
        | Event::Logout { .. }
        | Event::Config { .. } => Outcome::Success,
    }
}

/// The `<AuditMessage>` element for `event`, at `at` (RFC 3339, UTC).
pub fn xml(event: &Event, at: &str, source: &Source) -> String {
    let (id, type_code, action) = kind(event);
    let outcome = outcome(event);
    let mut x = Xml::default();
    x.open("AuditMessage", &[]);
    x.open(
        "EventIdentification",
        &[
            ("EventActionCode", action),
            ("EventDateTime", at),
            ("EventOutcomeIndicator", outcome_indicator(&outcome)),
        ],
    );
    x.code("EventID", id);
    if let Some(t) = type_code {
        x.code("EventTypeCode", t);
    }
    if let Outcome::MinorFailure(why) | Outcome::SeriousFailure(why) = &outcome {
        x.text("EventOutcomeDescription", why);
    }
    x.close("EventIdentification");
    participants(&mut x, event, source);
    x.open(
        "AuditSourceIdentification",
        &[
            (
                "AuditEnterpriseSiteID",
                source.site.as_deref().unwrap_or(""),
            ),
            ("AuditSourceID", &source.audit_source_id()),
        ],
    );
    x.code("AuditSourceTypeCode", APPLICATION_SERVER);
    x.close("AuditSourceIdentification");
    objects(&mut x, event);
    x.close("AuditMessage");
    x.0
}

fn participants(x: &mut Xml, event: &Event, source: &Source) {
    let me = |x: &mut Xml, requestor: bool, role: Code| {
        x.participant(
            &source.ae_title,
            &format!("AETITLES={};PID={}", source.ae_title, source.pid),
            requestor,
            Some((&source.hostname, "1")),
            Some(role),
        );
    };
    match event {
        Event::ApplicationStart
        | Event::ApplicationStop
        | Event::Bundle { .. }
        | Event::Config { .. }
        | Event::Lost { .. } => me(x, true, ROLE_APPLICATION),
        Event::Association {
            peer, calling_ae, ..
        }
        | Event::Received {
            peer, calling_ae, ..
        } => {
            x.participant(
                calling_ae,
                &format!("AETITLES={calling_ae}"),
                true,
                Some((&peer.ip().to_string(), "2")),
                Some(ROLE_SOURCE),
            );
            me(x, false, ROLE_DESTINATION);
        }
        Event::Sent {
            called_ae, address, ..
        } => {
            me(x, true, ROLE_SOURCE);
            x.participant(
                called_ae,
                &format!("AETITLES={called_ae}"),
                false,
                Some((address, if is_ip(address) { "2" } else { "1" })),
                Some(ROLE_DESTINATION),
            );
        }
        Event::Login { user, peer, .. } | Event::Logout { user, peer, .. } => {
            let peer = peer.map(|p| p.to_string());
            x.participant(user, "", true, peer.as_deref().map(|p| (p, "2")), None);
            me(x, false, ROLE_APPLICATION);
        }
    }
}

fn is_ip(address: &str) -> bool {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok()
}

fn objects(x: &mut Xml, event: &Event) {
    match event {
        Event::Received { studies, .. } | Event::Sent { studies, .. } => study_objects(x, studies),
        Event::Bundle {
            path,
            name,
            previous,
            sha256,
            rollback,
            outcome,
        } => {
            let mut details = Vec::new();
            if *outcome == Outcome::Success {
                details.push(("sha256", sha256.as_str()));
                if let Some(p) = previous {
                    details.push(("previous-sha256", p));
                }
                details.push(("change", if *rollback { "rollback" } else { "install" }));
            }
            security_resource(x, path, name, &details);
        }
        Event::Config {
            path,
            sha256,
            previous_sha256,
        } => {
            let mut details = vec![("sha256", sha256.as_str())];
            if let Some(p) = previous_sha256 {
                details.push(("previous-sha256", p));
            }
            security_resource(x, path, "", &details);
        }
        _ => {}
    }
}

/// A file the event changed (configuration, model bundle), by path.
fn security_resource(x: &mut Xml, path: &str, name: &str, details: &[(&str, &str)]) {
    x.open(
        "ParticipantObjectIdentification",
        &[
            ("ParticipantObjectID", path),
            ("ParticipantObjectTypeCode", "2"),
            ("ParticipantObjectTypeCodeRole", "13"),
        ],
    );
    x.code("ParticipantObjectIDTypeCode", URI);
    if !name.is_empty() {
        x.text("ParticipantObjectName", name);
    }
    for (kind, value) in details {
        x.detail(kind, value);
    }
    x.close("ParticipantObjectIdentification");
}

fn study_objects(x: &mut Xml, studies: &Studies) {
    for (study, classes) in &studies.0 {
        x.open(
            "ParticipantObjectIdentification",
            &[
                ("ParticipantObjectID", study),
                ("ParticipantObjectTypeCode", "2"),
                ("ParticipantObjectTypeCodeRole", "3"),
            ],
        );
        x.code("ParticipantObjectIDTypeCode", STUDY_INSTANCE_UID);
        sop_classes(x, classes);
        x.close("ParticipantObjectIdentification");
    }
}

fn sop_classes(x: &mut Xml, classes: &BTreeMap<String, u32>) {
    for (class, n) in classes {
        x.empty(
            "SOPClass",
            &[("UID", class), ("NumberOfInstances", &n.to_string())],
        );
    }
}

/// Appends elements; attribute values and text are escaped.
#[derive(Default)]
struct Xml(String);

impl Xml {
    fn start(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.0.push('<');
        self.0.push_str(name);
        for (k, v) in attrs {
            if !v.is_empty() {
                let _ = write!(self.0, " {k}=\"{}\"", Escaped(v));
            }
        }
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.start(name, attrs);
        self.0.push('>');
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.start(name, attrs);
        self.0.push_str("/>");
    }

    fn close(&mut self, name: &str) {
        let _ = write!(self.0, "</{name}>");
    }

    fn text(&mut self, name: &str, text: &str) {
        let _ = write!(self.0, "<{name}>{}</{name}>", Escaped(text));
    }

    fn code(&mut self, name: &str, c: Code) {
        self.empty(
            name,
            &[
                ("csd-code", c.0),
                ("codeSystemName", c.1),
                ("originalText", c.2),
            ],
        );
    }

    fn detail(&mut self, kind: &str, value: &str) {
        let value = super::syslog::base64(value.as_bytes());
        self.empty(
            "ParticipantObjectDetail",
            &[("type", kind), ("value", &value)],
        );
    }

    fn participant(
        &mut self,
        user: &str,
        alternative: &str,
        requestor: bool,
        access_point: Option<(&str, &str)>,
        role: Option<Code>,
    ) {
        let (nap, nap_type) = access_point.unwrap_or(("", ""));
        // UserID is required; an empty one (a login with no name) is shown as such.
        let user = if user.is_empty() { "(none)" } else { user };
        self.open(
            "ActiveParticipant",
            &[
                ("UserID", user),
                ("AlternativeUserID", alternative),
                ("UserIsRequestor", if requestor { "true" } else { "false" }),
                ("NetworkAccessPointID", nap),
                ("NetworkAccessPointTypeCode", nap_type),
            ],
        );
        if let Some(role) = role {
            self.code("RoleIDCode", role);
        }
        self.close("ActiveParticipant");
    }
}

/// XML 1.0 escaping; characters XML cannot carry at all become U+FFFD.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&apos;")?,
                '\t' => f.write_str("&#9;")?,
                '\n' => f.write_str("&#10;")?,
                '\r' => f.write_str("&#13;")?,
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                    f.write_str("\u{FFFD}")?
                }
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}
