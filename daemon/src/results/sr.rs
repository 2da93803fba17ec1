//! The report as a DICOM Comprehensive 3D SR following TID 1500 (Measurement
//! Report), the way the IHE AI Results profile uses it: a device observer,
//! the procedure reported, an image library of the source instances, and
//! per finding a measurement group (TID 1501) with the finding, its
//! qualitative evaluation (present / absent / undetermined), the score as a
//! measurement, the operating point, the algorithm (TID 4019: name, version,
//! bundle hash) and a reference to the heatmap image. A present finding the
//! model's map locates is a planar ROI group (TID 1410) instead, with the
//! map's region on the key image as an Image Region (SCOORD).

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;

use crate::triage::Outcome;

use super::content::{self, add_children, sequence, Code, Item, Rel};
use super::report::{date_time, FindingResult, InstanceRef, Report};

pub const SOP_CLASS: &str = uids::COMPREHENSIVE3_DSR_STORAGE;

/// Codes this profile needs beyond the bundle's finding codes.
mod codes {
    use super::Code;

    pub fn c(value: &str, scheme: &str, meaning: &str) -> Code {
        Code::new(value, scheme, meaning)
    }
    pub fn present() -> Code {
        c("52101004", "SCT", "Present")
    }
    pub fn absent() -> Code {
        c("2667000", "SCT", "Absent")
    }
    pub fn undetermined() -> Code {
        c("373068000", "SCT", "Undetermined")
    }
    pub fn score() -> Code {
        c("246262008", "SCT", "Score")
    }
    pub fn logit_unit() -> Code {
        c("1", "UCUM", "no units")
    }
    /// Private: the bundle's decision threshold on the same scale as the score.
    pub fn threshold() -> Code {
        c("threshold", "99FIRSTLOOK", "Operating point threshold")
    }
    /// Private: no model could run, so no finding was looked for.
    pub fn no_model() -> Code {
        c("no-model", "99FIRSTLOOK", "No model available")
    }
}

fn modality_code(modality: &str) -> Option<Code> {
    let meaning = match modality {
        "CR" => "Computed Radiography",
        "DX" => "Digital Radiography",
        "CT" => "Computed Tomography",
        "MR" => "Magnetic Resonance",
        "MG" => "Mammography",
        _ => return None,
    };
    Some(Code::dcm(modality, meaning))
}

fn procedure(modality: &str) -> Code {
    match modality {
        "CR" | "DX" => Code::new("363680008", "SCT", "Radiographic imaging procedure"),
        "CT" => Code::new("77477000", "SCT", "Computerized axial tomography"),
        "MR" => Code::new("113091000", "SCT", "Magnetic resonance imaging"),
        _ => Code::new("71388002", "SCT", "Procedure"),
    }
}

fn algorithm(report: &Report, finding: Option<&FindingResult>) -> Vec<Item> {
    let m = &report.model;
    let mut parameters = format!("bundle sha256 {}; engine {}", m.sha256, m.engine);
    if let Some(f) = finding {
        if let Some(t) = f.threshold {
            parameters.push_str(&format!("; threshold {}", content::decimal_string(t)));
        }
        if let Some(op) = &f.operating_point {
            parameters.push_str(&format!("; operating point {op}"));
        }
    }
    if !m.clinical_use {
        parameters.push_str("; synthetic demo model, not for clinical use");
    }
    vec![
        Item::text(
            Rel::HasConceptMod,
            &Code::dcm("111001", "Algorithm Name"),
            &m.name,
        ),
        Item::text(
            Rel::HasConceptMod,
            &Code::dcm("111003", "Algorithm Version"),
            &m.version,
        ),
        Item::text(
            Rel::HasConceptMod,
            &Code::dcm("111002", "Algorithm Parameters"),
            &parameters,
        ),
    ]
}

fn observer(report: &Report) -> Vec<Item> {
    let d = &report.device;
    let obs = |value: &str, meaning: &str, text: &str| {
        Item::text(Rel::HasObsContext, &Code::dcm(value, meaning), text)
    };
    vec![
        Item::code(
            Rel::HasObsContext,
            &Code::dcm("121005", "Observer Type"),
            &Code::dcm("121007", "Device"),
        ),
        Item::uidref(
            Rel::HasObsContext,
            &Code::dcm("121012", "Device Observer UID"),
            &d.uid,
        ),
        obs("121013", "Device Observer Name", &d.name),
        obs("121014", "Device Observer Manufacturer", &d.manufacturer),
        obs("121015", "Device Observer Model Name", &d.model_name),
        obs("121016", "Device Observer Serial Number", &d.serial),
    ]
}

fn image_library(report: &Report) -> Item {
    let entries = report
        .sources
        .iter()
        .map(|s| {
            let modality = modality_code(&s.modality)
                .map(|m| Item::code(Rel::HasAcqContext, &Code::dcm("121139", "Modality"), &m));
            Item::image(
                Rel::Contains,
                &Code::new("260753009", "SCT", "Source"),
                &s.sop_class,
                &s.sop_instance,
            )
            .children(modality.into_iter().collect())
        })
        .collect();
    let group = Item::container(
        Rel::Contains,
        &Code::dcm("126200", "Image Library Group"),
        entries,
    );
    Item::container(
        Rel::Contains,
        &Code::dcm("111028", "Image Library"),
        vec![group],
    )
}

fn group(report: &Report, f: &FindingResult) -> Item {
    let mut items = vec![
        Item::text(
            Rel::HasObsContext,
            &Code::dcm("112039", "Tracking Identifier"),
            &f.id,
        ),
        Item::uidref(
            Rel::HasObsContext,
            &Code::dcm("112040", "Tracking Unique Identifier"),
            &f.tracking_uid,
        ),
        Item::code(Rel::Contains, &Code::dcm("121071", "Finding"), &f.code),
    ];
    items.extend(algorithm(report, Some(f)));
    let region = report.regions.iter().find(|r| r.finding == f.id);
    if let Some(r) = region {
        items.push(Item::rectangle(
            Rel::Contains,
            &Code::dcm("111030", "Image Region"),
            r.rect,
            &r.image.sop_class,
            &r.image.sop_instance,
            r.frame,
        ));
    }
    if let Some(score) = f.score {
        items.push(
            Item::num(
                Rel::Contains,
                &codes::score(),
                f64::from(score),
                &codes::logit_unit(),
            )
            .children(algorithm(report, Some(f))),
        );
    }
    if let Some(t) = f.threshold {
        items.push(Item::num(
            Rel::Contains,
            &codes::threshold(),
            t,
            &codes::logit_unit(),
        ));
    }
    let evaluation = match f.outcome {
        Outcome::Urgent | Outcome::Finding => codes::present(),
        Outcome::NoFinding => codes::absent(),
        Outcome::NotAssessable | Outcome::Error => codes::undetermined(),
    };
    items.push(Item::code(Rel::Contains, &f.code, &evaluation));
    if let Some(reason) = &f.reason {
        items.push(Item::text(
            Rel::Contains,
            &Code::dcm("121106", "Comment"),
            reason,
        ));
    }
    for s in &report.sources {
        items.push(Item::image(
            Rel::Contains,
            &Code::dcm("121112", "Source of Measurement"),
            &s.sop_class,
            &s.sop_instance,
        ));
    }
    if let Some(h) = &report.heatmap {
        items.push(Item::image(
            Rel::Contains,
            &Code::dcm("121200", "Illustration of ROI"),
            &h.sop_class,
            &h.sop_instance,
        ));
    }
    // A located finding is a planar ROI's group (TID 1410), any other one
    // the image's (TID 1501).
    Item::template_container(
        Rel::Contains,
        &Code::dcm("125007", "Measurement Group"),
        if region.is_some() { "1410" } else { "1501" },
        items,
    )
}

fn no_model_group(report: &Report, tracking_uid: &str) -> FindingResult {
    FindingResult {
        id: "no-model".into(),
        display: "No model available".into(),
        code: codes::no_model(),
        outcome: Outcome::Error,
        score: None,
        threshold: None,
        operating_point: None,
        reason: Some(format!(
            "no model could run ({} {})",
            report.model.name, report.model.version
        )),
        tracking_uid: tracking_uid.into(),
    }
}

/// Attributes every new instance of ours carries: patient and study from
/// the source, equipment, dates.
pub fn common(report: &Report, obj: &mut InMemDicomObject, sop_class: &str, instance_uid: &str) {
    for element in report.study.iter() {
        obj.put(element.clone());
    }
    let (date, time) = date_time(report.decided_at_ms);
    let d = &report.device;
    obj.put_str(tags::SOP_CLASS_UID, VR::UI, sop_class);
    obj.put_str(tags::SOP_INSTANCE_UID, VR::UI, instance_uid);
    obj.put_str(tags::INSTANCE_CREATION_DATE, VR::DA, &date);
    obj.put_str(tags::INSTANCE_CREATION_TIME, VR::TM, &time);
    obj.put_str(tags::CONTENT_DATE, VR::DA, &date);
    obj.put_str(tags::CONTENT_TIME, VR::TM, &time);
    obj.put_str(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000");
    obj.put_str(tags::MANUFACTURER, VR::LO, &d.manufacturer);
    obj.put_str(tags::MANUFACTURER_MODEL_NAME, VR::LO, &d.model_name);
    obj.put_str(tags::DEVICE_SERIAL_NUMBER, VR::LO, &d.serial);
    obj.put_str(tags::SOFTWARE_VERSIONS, VR::LO, &d.software_version);
    obj.put_str(tags::STATION_NAME, VR::SH, content::truncate(&d.name, 16));
}

/// The SR data set (without file meta).
pub fn build(report: &Report) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    common(report, &mut obj, SOP_CLASS, &report.sr.instance_uid);
    obj.put_str(tags::MODALITY, VR::CS, "SR");
    obj.put_str(tags::SERIES_INSTANCE_UID, VR::UI, &report.sr.series_uid);
    obj.put_str(
        tags::SERIES_NUMBER,
        VR::IS,
        report.sr.series_number.to_string(),
    );
    obj.put_str(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        content::truncate(&format!("AI results: {}", report.model.name), 64),
    );
    obj.put_str(tags::INSTANCE_NUMBER, VR::IS, "1");
    sequence(
        &mut obj,
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        vec![],
    );
    sequence(&mut obj, tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]);
    let mut scheme = InMemDicomObject::new_empty();
    scheme.put_str(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "99FIRSTLOOK");
    scheme.put_str(
        tags::CODING_SCHEME_NAME,
        VR::ST,
        "firstlook private codes (decision threshold, no model)",
    );
    scheme.put_str(
        tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
        VR::ST,
        "firstlook project",
    );
    sequence(
        &mut obj,
        tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
        vec![scheme],
    );
    obj.put_str(tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    obj.put_str(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
    obj.put_str(tags::PRELIMINARY_FLAG, VR::CS, "PRELIMINARY");
    let mut evidence: Vec<&InstanceRef> = report.sources.iter().collect();
    evidence.extend(report.heatmap.as_ref());
    sequence(
        &mut obj,
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        vec![evidence_item(&report.study_uid, &evidence)],
    );

    // The root: TID 1500.
    obj.put_str(tags::VALUE_TYPE, VR::CS, "CONTAINER");
    sequence(
        &mut obj,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![Code::dcm("126000", "Imaging Measurement Report").item()],
    );
    obj.put_str(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    sequence(
        &mut obj,
        tags::CONTENT_TEMPLATE_SEQUENCE,
        vec![content::template("1500")],
    );
    let mut children = vec![Item::code(
        Rel::HasConceptMod,
        &Code::dcm("121049", "Language of Content Item and Descendants"),
        &Code::new("en-US", "RFC5646", "English (United States)"),
    )];
    children.extend(observer(report));
    children.push(Item::code(
        Rel::HasConceptMod,
        &Code::dcm("121058", "Procedure reported"),
        &procedure(report.modality()),
    ));
    children.push(image_library(report));
    let groups = if report.findings.is_empty() {
        let tracking = format!("{}.1", report.sr.instance_uid);
        let tracking = content::truncate(&tracking, 64).trim_end_matches('.');
        vec![group(report, &no_model_group(report, tracking))]
    } else {
        report.findings.iter().map(|f| group(report, f)).collect()
    };
    children.push(Item::container(
        Rel::Contains,
        &Code::dcm("126010", "Imaging Measurements"),
        groups,
    ));
    add_children(&mut obj, children);
    obj
}

/// One study's instances by series: (0008,1115) items under the study.
fn evidence_item(study_uid: &str, refs: &[&InstanceRef]) -> InMemDicomObject {
    let mut series: Vec<(&str, Vec<InMemDicomObject>)> = Vec::new();
    for r in refs {
        let item = content::sop_reference(&r.sop_class, &r.sop_instance);
        match series.iter_mut().find(|(uid, _)| *uid == r.series_uid) {
            Some((_, items)) => items.push(item),
            None => series.push((&r.series_uid, vec![item])),
        }
    }
    let series = series
        .into_iter()
        .map(|(uid, items)| {
            let mut s = InMemDicomObject::new_empty();
            sequence(&mut s, tags::REFERENCED_SOP_SEQUENCE, items);
            s.put_str(tags::SERIES_INSTANCE_UID, VR::UI, uid);
            s
        })
        .collect();
    let mut study = InMemDicomObject::new_empty();
    sequence(&mut study, tags::REFERENCED_SERIES_SEQUENCE, series);
    study.put_str(tags::STUDY_INSTANCE_UID, VR::UI, study_uid);
    study
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::report::{Device, NewInstance, Region};
    use crate::triage::ModelInfo;

    fn finding(id: &str, code: &str, outcome: Outcome, score: f32) -> FindingResult {
        FindingResult {
            id: id.into(),
            display: id.into(),
            code: Code::new(code, "SCT", id),
            outcome,
            score: Some(score),
            threshold: Some(1.0),
            operating_point: None,
            reason: None,
            tracking_uid: format!("1.2.3.9.{code}"),
        }
    }

    fn image() -> InstanceRef {
        InstanceRef {
            sop_class: uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE.into(),
            sop_instance: "1.2.3.4".into(),
            series_uid: "1.2.3".into(),
            modality: "CR".into(),
        }
    }

    fn report(regions: Vec<Region>) -> Report {
        Report {
            study: InMemDicomObject::new_empty(),
            study_uid: "1.2".into(),
            sources: vec![image()],
            findings: vec![
                finding("pneumothorax", "36118008", Outcome::Urgent, 4.0),
                finding("effusion", "60046008", Outcome::Finding, 2.0),
                finding("nodule", "27925004", Outcome::NoFinding, -3.0),
            ],
            model: ModelInfo {
                name: "m".into(),
                version: "1".into(),
                sha256: "ab".into(),
                engine: "tract".into(),
                clinical_use: false,
            },
            device: Device {
                uid: "1.2.9".into(),
                name: "FIRSTLOOK".into(),
                manufacturer: "firstlook project".into(),
                model_name: "box".into(),
                serial: "1".into(),
                software_version: "0".into(),
            },
            decided_at_ms: 0,
            sr: NewInstance {
                series_uid: "1.2.5".into(),
                instance_uid: "1.2.6".into(),
                series_number: 9901,
            },
            heatmap: None,
            regions,
        }
    }

    fn items(obj: &InMemDicomObject) -> &[InMemDicomObject] {
        obj.element(tags::CONTENT_SEQUENCE)
            .map_or(&[], |e| e.items().unwrap_or(&[]))
    }

    fn concept(item: &InMemDicomObject) -> String {
        let name = &item
            .element(tags::CONCEPT_NAME_CODE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        name.element(tags::CODE_VALUE)
            .unwrap()
            .to_str()
            .unwrap()
            .trim()
            .to_string()
    }

    /// A measurement group: its template, the tracking identifier, the
    /// Image Region's first point when it has one.
    type Group = (String, String, Option<(f32, f32)>);

    fn groups(obj: &InMemDicomObject) -> Vec<Group> {
        let measurements = items(obj)
            .iter()
            .find(|i| concept(i) == "126010")
            .expect("Imaging Measurements");
        items(measurements)
            .iter()
            .map(|g| {
                let template = g
                    .element(tags::CONTENT_TEMPLATE_SEQUENCE)
                    .unwrap()
                    .items()
                    .unwrap()[0]
                    .element(tags::TEMPLATE_IDENTIFIER)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim()
                    .to_string();
                let tracking = items(g)
                    .iter()
                    .find(|i| concept(i) == "112039")
                    .unwrap()
                    .element(tags::TEXT_VALUE)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                let region = items(g).iter().find(|i| concept(i) == "111030").map(|r| {
                    let p = r
                        .element(tags::GRAPHIC_DATA)
                        .unwrap()
                        .to_multi_float32()
                        .unwrap();
                    (p[0], p[1])
                });
                (template, tracking, region)
            })
            .collect()
    }

    #[test]
    fn each_located_finding_is_a_planar_roi_group_with_its_own_region() {
        let region = |finding: &str, x: f32| Region {
            finding: finding.into(),
            image: image(),
            frame: None,
            rect: [x, 20.0, x + 100.0, 120.0],
        };
        let sr = build(&report(vec![
            region("effusion", 300.0),
            region("pneumothorax", 10.0),
        ]));
        assert_eq!(
            groups(&sr),
            [
                ("1410".into(), "pneumothorax".into(), Some((10.0, 20.0))),
                ("1410".into(), "effusion".into(), Some((300.0, 20.0))),
                ("1501".into(), "nodule".into(), None),
            ]
        );
        let unlocated = build(&report(Vec::new()));
        assert!(groups(&unlocated)
            .iter()
            .all(|(template, _, region)| template == "1501" && region.is_none()));
    }
}
