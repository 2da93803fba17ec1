//! The report as an HL7 v2.5 ORU^R01 for a RIS: who (PID), which study
//! (OBR, by accession number), and per finding what the model said (OBX),
//! marked preliminary machine output.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::triage::Outcome;

use super::report::{date_time, Report};

/// A text attribute of the copied study attributes, without padding.
fn attr(study: &InMemDicomObject, tag: Tag) -> String {
    study
        .element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_string())
        .unwrap_or_default()
}

/// Escapes HL7's delimiters (PS: HL7 v2.5 §2.7) in a field's text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '~' => out.push_str("\\R\\"),
            '&' => out.push_str("\\T\\"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A DICOM PN (its alphabetic group) as an HL7 XPN: the components keep
/// their `^` separators, each escaped on its own.
fn person_name(pn: &str) -> String {
    let alphabetic = pn.split('=').next().unwrap_or("");
    alphabetic
        .split('^')
        .map(escape)
        .collect::<Vec<_>>()
        .join("^")
}

/// Who sends and who receives, as MSH-3 to MSH-6 give them.
#[derive(Debug, Clone)]
pub struct Parties {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
}

/// `YYYYMMDDHHMMSS` (UTC, with its offset) for HL7 timestamps.
fn ts(ms: i64) -> String {
    let (d, t) = date_time(ms);
    format!("{d}{}+0000", &t[..6])
}

/// The ORU^R01 for `report`, segments separated by CR.
pub fn oru(report: &Report, parties: &Parties, control_id: &str, now_ms: i64) -> String {
    let study = &report.study;
    let urgent = report.findings.iter().any(|f| f.outcome == Outcome::Urgent);
    let mut segments = vec![
        format!(
            "MSH|^~\\&|{}|{}|{}|{}|{}||ORU^R01^ORU_R01|{}|P|2.5",
            escape(&parties.sending_application),
            escape(&parties.sending_facility),
            escape(&parties.receiving_application),
            escape(&parties.receiving_facility),
            ts(now_ms),
            escape(control_id)
        ),
        format!(
            "PID|1||{}||{}||{}|{}",
            escape(&attr(study, tags::PATIENT_ID)),
            person_name(&attr(study, tags::PATIENT_NAME)),
            escape(&attr(study, tags::PATIENT_BIRTH_DATE)),
            escape(&attr(study, tags::PATIENT_SEX)),
        ),
    ];
    let accession = escape(&attr(study, tags::ACCESSION_NUMBER));
    // OBR-5 priority: S (stat) when a finding is urgent, else R (routine).
    segments.push(format!(
        "OBR|1|{accession}|{accession}|{}^{}^99FIRSTLOOK|{}|||{}||||||||||||||{}|||P",
        escape(&report.model.name),
        escape("AI triage"),
        if urgent { "S" } else { "R" },
        ts(report.decided_at_ms),
        ts(report.decided_at_ms),
    ));
    let mut n = 0;
    let mut obx = |value_type: &str, id: String, value: String, units: &str, flag: &str| {
        n += 1;
        format!("OBX|{n}|{value_type}|{id}||{value}|{units}||{flag}|||P")
    };
    for f in &report.findings {
        let id = format!(
            "{}^{}^{}",
            escape(&f.code.value),
            escape(&f.code.meaning),
            escape(&f.code.scheme)
        );
        let (value, flag) = match f.outcome {
            Outcome::Urgent | Outcome::Finding => ("52101004^Present^SCT", "A"),
            Outcome::NoFinding => ("2667000^Absent^SCT", "N"),
            Outcome::NotAssessable | Outcome::Error => ("373068000^Undetermined^SCT", ""),
        };
        segments.push(obx("CWE", id.clone(), value.into(), "", flag));
        if let Some(score) = f.score {
            segments.push(obx(
                "NM",
                "246262008^Score^SCT".into(),
                format!("{score:.4}"),
                "1^no units^UCUM",
                "",
            ));
        }
    }
    let mut note = format!(
        "AI output - not a diagnosis. Model {} {} (sha256 {})",
        report.model.name, report.model.version, report.model.sha256
    );
    if !report.model.clinical_use {
        note.push_str(", synthetic model, NOT FOR CLINICAL USE");
    }
    segments.push(obx(
        "TX",
        "121106^Comment^DCM".into(),
        escape(&note),
        "",
        "",
    ));
    segments.push(obx(
        "ST",
        "110180^Study Instance UID^DCM".into(),
        escape(&report.study_uid),
        "",
        "",
    ));
    segments.push(obx(
        "ST",
        "121071^Report SOP Instance UID^99FIRSTLOOK".into(),
        escape(&report.sr.instance_uid),
        "",
        "",
    ));
    let mut out = segments.join("\r");
    out.push('\r');
    out
}

/// What an acknowledgement said: accepted, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    Accepted,
    /// MSA-1 and MSA-3 (or the reason the reply is not an ACK).
    Refused(String),
}

/// Reads an ACK for `control_id` (MSA-1 AA or CA accepts it).
pub fn parse_ack(message: &str, control_id: &str) -> Ack {
    let Some(msa) = message.split(['\r', '\n']).find(|s| s.starts_with("MSA|")) else {
        return Ack::Refused("the reply has no MSA segment".into());
    };
    let fields: Vec<&str> = msa.split('|').collect();
    let code = fields.get(1).copied().unwrap_or("");
    let about = fields.get(2).copied().unwrap_or("");
    if about != control_id {
        return Ack::Refused(format!(
            "the ACK is for message {about:?}, not {control_id:?}"
        ));
    }
    match code {
        "AA" | "CA" => Ack::Accepted,
        other => Ack::Refused(format!(
            "{other}: {}",
            fields.get(3).copied().unwrap_or("(no text)")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_names_keep_their_components() {
        assert_eq!(person_name("DOE^JANE^^DR"), "DOE^JANE^^DR");
        assert_eq!(person_name("O|BRIEN^SEAN=オブライエン"), "O\\F\\BRIEN^SEAN");
    }

    #[test]
    fn delimiters_are_escaped() {
        assert_eq!(
            escape("a|b^c~d\\e&f\rg"),
            "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f g"
        );
    }

    #[test]
    fn acks_are_read_by_code_and_control_id() {
        assert_eq!(parse_ack("MSH|^~\\&|RIS\rMSA|AA|42\r", "42"), Ack::Accepted);
        assert_eq!(parse_ack("MSH|^~\\&|RIS\rMSA|CA|42\r", "42"), Ack::Accepted);
        assert!(
            matches!(parse_ack("MSA|AE|42|busy\r", "42"), Ack::Refused(r) if r.contains("busy"))
        );
        assert!(matches!(parse_ack("MSA|AA|41\r", "42"), Ack::Refused(_)));
        assert!(matches!(parse_ack("garbage", "42"), Ack::Refused(_)));
    }
}
