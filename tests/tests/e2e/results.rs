//! Results into PACS: storescu sends a positive CR, a negative CR, a CR the
//! model cannot assess and a CT series through firstlookd to Orthanc. For
//! each decision an SR (TID 1500) and a heatmap Secondary Capture arrive
//! in the source's study; dicom3tools' dciodvfy finds no error in them,
//! DCMTK's dsrdump renders the SR, and pydicom + highdicom read back the
//! findings, scores, algorithm and references the decision log holds, and
//! for each urgent finding an image region on the phantom's own lesion.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use firstlook::triage::{Decision, Outcome};
use firstlook_e2e::*;
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(180);

/// dciodvfy's verdict: (errors, warnings).
fn dciodvfy(file: &Path) -> (Vec<String>, Vec<String>) {
    let out = run_cmd(
        Command::new("/usr/bin/dciodvfy").arg(file),
        Duration::from_secs(60),
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    let pick = |kind: &str| {
        text.lines()
            .filter(|l| l.starts_with(kind))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    (pick("Error"), pick("Warning"))
}

/// A report as the results table holds it: unit, state, SR and heatmap UIDs.
type ReportRow = (String, String, String, String);

/// The decision log and the reports written for it, from the index.
fn logged(spool: &Path) -> (Vec<Decision>, Vec<ReportRow>) {
    let conn = firstlook::spool::open_for_maintenance(&firstlook::spool::index_path(spool))
        .expect("index");
    let mut stmt = conn
        .prepare("SELECT record FROM decisions ORDER BY id")
        .unwrap();
    let decisions = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|j| serde_json::from_str(&j.unwrap()).unwrap())
        .collect();
    let mut stmt = conn
        .prepare("SELECT unit, state, coalesce(sr_uid, ''), coalesce(sc_uid, '') FROM results ORDER BY id")
        .unwrap();
    let results = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (decisions, results)
}

/// The smallest and largest x and y of `points`.
fn bounds(points: &[(f64, f64)]) -> [f64; 4] {
    let lowest = |of: fn(&(f64, f64)) -> f64| points.iter().map(of).fold(f64::MAX, f64::min);
    let highest = |of: fn(&(f64, f64)) -> f64| points.iter().map(of).fold(f64::MIN, f64::max);
    [
        lowest(|p| p.0),
        lowest(|p| p.1),
        highest(|p| p.0),
        highest(|p| p.1),
    ]
}

#[test]
fn reports_and_heatmaps_reach_orthanc_valid_and_readable_by_other_stacks() {
    let dir = scratch("results");
    let mut pacs = Orthanc::start(dir.path());
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", &pacs.ae_title.clone(), pacs.dicom_port))
        .triage("engine = \"tract\"")
        .results("mode = \"full\"\nuid_root = \"1.2.826.0.1.3680043.10.1234\"\ndevice_serial = \"E2E-0001\"");
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let send = dir.path().join("send");
    let positive_spec = StudySpec::new(Kind::Cr, 104).with_finding(Finding::Pneumothorax);
    let positive = phantom(&positive_spec, &send.join("cr-positive"));
    let negative = phantom(&StudySpec::new(Kind::Cr, 103), &send.join("cr-negative"));
    let unassessable = phantom(
        &StudySpec::new(Kind::Cr, 107),
        &send.join("cr-unassessable"),
    );
    // Without Body Part Examined the gate refuses to judge it.
    let erase = run_cmd(
        Command::new("/usr/bin/dcmodify")
            .args(["-nb", "-ea", "(0018,0015)"])
            .arg(&unassessable[0].path),
        Duration::from_secs(30),
    );
    assert!(erase.status.success(), "{erase}");
    let unassessable = vec![DicomFile::read(&unassessable[0].path)];
    let ct_spec = StudySpec::new(Kind::Ct, 102)
        .with_finding(Finding::Hemorrhage)
        .with_count(24);
    let ct = phantom(&ct_spec, &send.join("ct"));
    let out = storescu(daemon.port, "SCANNER", &["+sd", "+r"], &[send.as_path()]);
    assert!(out.status.success(), "storescu failed:\n{out}");
    assert_eq!(storescu_successes(&out.stderr).len(), 27, "{out}");

    daemon.wait_decided(4, SETTLE);
    let status = wait_until(SETTLE, "8 results written and delivered", |last| {
        let s = daemon.status();
        *last = s.summary();
        (s.results == 8 && s.destinations.iter().all(|d| d.pending == 0)).then_some(s)
    });
    assert_eq!(
        status.destination("pacs").delivered,
        27 + 8,
        "{}",
        status.summary()
    );
    assert_eq!(status.destination("pacs").dead, 0, "{}", status.summary());

    let (decisions, results) = logged(daemon.spool_dir());
    assert_eq!(results.len(), 4, "{results:#?}");
    assert!(results.iter().all(|r| r.1 == "written"), "{results:#?}");
    let unit_of = |f: &DicomFile| format!("instance {}", f.sop_instance_uid);
    let ct_unit = decisions
        .iter()
        .find(|d| d.unit.starts_with("series "))
        .expect("a CT decision")
        .unit
        .clone();
    let want: BTreeMap<String, Vec<(&str, Outcome)>> = [
        (
            unit_of(&positive[0]),
            vec![
                ("pneumothorax", Outcome::Urgent),
                ("effusion", Outcome::NoFinding),
            ],
        ),
        (
            unit_of(&negative[0]),
            vec![
                ("pneumothorax", Outcome::NoFinding),
                ("effusion", Outcome::NoFinding),
            ],
        ),
        (
            unit_of(&unassessable[0]),
            vec![
                ("pneumothorax", Outcome::NotAssessable),
                ("effusion", Outcome::NotAssessable),
            ],
        ),
        (ct_unit.clone(), vec![("hemorrhage", Outcome::Urgent)]),
    ]
    .into_iter()
    .collect();

    // Every original arrived unchanged, beside the results.
    let files = dir.path().join("from-orthanc");
    std::fs::create_dir_all(&files).unwrap();
    let mut fetched = Vec::new();
    for id in pacs.get("/instances").as_array().unwrap().clone() {
        let id = id.as_str().unwrap();
        let path = files.join(format!("{id}.dcm"));
        let url = format!("http://127.0.0.1:{}/instances/{id}/file", pacs.http_port);
        let got = run_cmd(
            Command::new("curl")
                .args(["-s", "-f", "-o"])
                .arg(&path)
                .arg(&url),
            Duration::from_secs(30),
        );
        assert!(got.status.success(), "{got}");
        fetched.push(DicomFile::read(&path));
    }
    let sent: Vec<DicomFile> = positive
        .iter()
        .chain(&negative)
        .chain(&unassessable)
        .chain(&ct)
        .cloned()
        .collect();
    assert_delivered_identical(&sent, &fetched);
    assert_eq!(fetched.len(), 27 + 8);

    let mut warnings = Vec::new();
    for (unit, state, sr_uid, sc_uid) in &results {
        assert_eq!(state, "written");
        let sr = fetched
            .iter()
            .find(|f| &f.sop_instance_uid == sr_uid)
            .unwrap_or_else(|| panic!("the SR of {unit} is not in Orthanc"));
        let sc = fetched
            .iter()
            .find(|f| &f.sop_instance_uid == sc_uid)
            .unwrap_or_else(|| panic!("the heatmap of {unit} is not in Orthanc"));
        assert!(
            sr_uid.starts_with("1.2.826.0.1.3680043.10.1234."),
            "{sr_uid}"
        );
        for f in [sr, sc] {
            let (errors, warn) = dciodvfy(&f.path);
            assert!(
                errors.is_empty(),
                "dciodvfy on {} of {unit}:\n{}",
                f.path.display(),
                errors.join("\n")
            );
            warnings.extend(
                warn.into_iter()
                    .map(|w| format!("{}: {w}", f.sop_class_uid)),
            );
        }
        let dump = run_cmd(
            Command::new("/usr/bin/dsrdump").arg(&sr.path),
            Duration::from_secs(30),
        );
        assert!(dump.status.success(), "dsrdump failed:\n{dump}");
        assert!(
            dump.stdout.contains("Imaging Measurement Report"),
            "{}",
            dump.stdout
        );
        assert!(dump.stdout.contains("UNVERIFIED"), "{}", dump.stdout);

        // The independent reading matches the decision log.
        let read = run_cmd(
            Command::new("python3")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/read_sr.py"))
                .arg(&sr.path),
            Duration::from_secs(120),
        );
        assert!(
            read.status.success(),
            "highdicom could not read the SR of {unit}:\n{read}"
        );
        let read: Value = serde_json::from_str(&read.stdout).unwrap();
        let mine: Vec<&Decision> = decisions.iter().filter(|d| &d.unit == unit).collect();
        let expected = &want[unit];
        assert_eq!(mine.len(), expected.len(), "{unit}: {mine:#?}");
        assert_eq!(read["verification"], "UNVERIFIED");
        assert_eq!(read["completion"], "COMPLETE");
        assert_eq!(
            read["observers"][0]["type"]["value"], "121007",
            "a device observer: {read}"
        );
        assert_eq!(read["observers"][0]["name"], NODE_AE);
        let library: Vec<&str> = read["image_library"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            library,
            mine[0]
                .inputs
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            "{unit}"
        );
        let groups = read["groups"].as_array().unwrap();
        assert_eq!(groups.len(), expected.len(), "{unit}: {read}");
        for (finding, outcome) in expected {
            let d = mine
                .iter()
                .find(|d| d.finding.as_deref() == Some(finding))
                .unwrap();
            assert_eq!(d.outcome, *outcome, "{unit} {finding}: {d:#?}");
            let g = groups
                .iter()
                .find(|g| g["tracking_identifier"] == *finding)
                .unwrap_or_else(|| panic!("{unit}: no group for {finding}: {read}"));
            assert_eq!(g["algorithm"]["name"], d.model.name.as_str());
            assert_eq!(g["algorithm"]["version"], d.model.version.as_str());
            let params = g["algorithm"]["parameters"].to_string();
            assert!(params.contains(&d.model.sha256), "{params}");
            let evaluation = g["evaluations"][0]["value"]["meaning"].as_str().unwrap();
            let want_eval = match outcome {
                Outcome::Urgent | Outcome::Finding => "Present",
                Outcome::NoFinding => "Absent",
                _ => "Undetermined",
            };
            assert_eq!(evaluation, want_eval, "{unit} {finding}: {g}");
            let score = g["measurements"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"]["value"] == "246262008")
                .map(|m| m["value"].as_f64().unwrap());
            match d.score {
                Some(s) => {
                    let got = score.unwrap_or_else(|| panic!("{unit} {finding}: no score: {g}"));
                    assert!((got - f64::from(s)).abs() < 1e-4, "{got} vs {s}");
                }
                None => assert!(score.is_none(), "{g}"),
            }
            let images: Vec<&str> = g["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["uid"].as_str().unwrap())
                .collect();
            for input in &d.inputs {
                assert!(
                    images.contains(&input.as_str()),
                    "{unit}: {input} not referenced"
                );
            }
            assert!(
                images.contains(&sc_uid.as_str()),
                "{unit}: the heatmap is not referenced"
            );
            let region = &g["region"];
            if *outcome != Outcome::Urgent {
                assert!(region.is_null(), "{unit} {finding}: {g}");
                continue;
            }
            // The urgent finding is located on its key image, over the
            // phantom's own ground truth.
            assert_eq!(region["graphic_type"], "POLYLINE", "{g}");
            assert_eq!(region["relationship"], "SELECTED FROM", "{g}");
            let image = region["image"].as_str().unwrap();
            let (spec, files) = if unit == &ct_unit {
                (&ct_spec, &ct)
            } else {
                (&positive_spec, &positive)
            };
            let index = files
                .iter()
                .position(|f| f.sop_instance_uid == image)
                .unwrap_or_else(|| panic!("{unit}: the region is on {image}, not a source"));
            let points: Vec<(f64, f64)> = region["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            assert_eq!(points.len(), 5, "{g}");
            assert_eq!(points[0], points[4], "a closed outline: {g}");
            let (width, height) = spec.size();
            let [x0, y0, x1, y1] = bounds(&points);
            assert!(
                0.0 <= x0
                    && x0 < x1
                    && x1 <= f64::from(width)
                    && 0.0 <= y0
                    && y0 < y1
                    && y1 <= f64::from(height),
                "{unit}: region {points:?} on a {width}x{height} image"
            );
            let truth = firstlook_phantom::finding_mask(spec, index).unwrap();
            let w = width as usize;
            let lesion: Vec<(f64, f64)> = truth
                .iter()
                .enumerate()
                .filter(|&(_, &m)| m == 1)
                .map(|(i, _)| ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5))
                .collect();
            let covered = lesion
                .iter()
                .filter(|(x, y)| x0 <= *x && *x < x1 && y0 <= *y && *y < y1)
                .count();
            let [lx0, ly0, lx1, ly1] = bounds(&lesion);
            let area = (x1 - x0) * (y1 - y0) / f64::from(width * height);
            eprintln!(
                "{unit} {finding}: region ({x0}, {y0})-({x1}, {y1}), {:.1}% of the image, covers {covered} of the lesion's {} pixels (lesion within ({lx0}, {ly0})-({lx1}, {ly1}), instance {})",
                100.0 * area,
                lesion.len(),
                index + 1,
            );
            // The map is coarse (32 x 32 cells) and a thin lesion may fill
            // part of a cell: the region must touch the lesion and stay small.
            assert!(
                covered > 0,
                "{unit}: the region {points:?} is not on the lesion"
            );
            assert!(area < 0.25, "{unit}: the region is {area:.2} of the image");
        }
    }

    // Orthanc: each study holds its originals plus an SR and a heatmap series.
    for (files, modality) in [(&positive, "CR"), (&ct, "CT")] {
        let study = files[0].study_uid();
        let studies = pacs.get("/studies?expand");
        let s = studies
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["MainDicomTags"]["StudyInstanceUID"] == study.as_str())
            .unwrap_or_else(|| panic!("study {study} not in Orthanc"));
        let mut modalities: Vec<String> = s["Series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| {
                pacs.get(&format!("/series/{}", id.as_str().unwrap()))["MainDicomTags"]["Modality"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        modalities.sort();
        let mut want = vec![modality.to_string(), "OT".into(), "SR".into()];
        want.sort();
        assert_eq!(modalities, want, "study {study}");
    }
    eprintln!(
        "dciodvfy warnings ({}):\n{}",
        warnings.len(),
        warnings.join("\n")
    );
}

/// A RIS on loopback speaking MLLP: NACKs the first message it gets (AE),
/// acknowledges the rest (AA), and keeps every message.
fn mllp_listener(listener: std::net::TcpListener) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::{Read, Write};
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let keep = std::sync::Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut frame = Vec::new();
            let mut buf = [0u8; 4096];
            while !frame.windows(2).any(|w| w == [0x1C, 0x0D]) {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => frame.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&frame)
                .trim_start_matches('\u{b}')
                .trim_end_matches(['\u{1c}', '\r'])
                .to_string();
            let control = text
                .split('\r')
                .next()
                .and_then(|msh| msh.split('|').nth(9))
                .unwrap_or("")
                .to_string();
            let first = {
                let mut g = keep.lock().unwrap();
                g.push(text);
                g.len() == 1
            };
            let code = if first {
                "AE|{c}|busy, try later"
            } else {
                "AA|{c}"
            };
            let ack = format!(
                "\u{b}MSH|^~\\&|RIS||FIRSTLOOK||20260101000000||ACK^R01^ACK|A{control}|P|2.5\rMSA|{}\r\u{1c}\r",
                code.replace("{c}", &control)
            );
            let _ = stream.write_all(ack.as_bytes());
        }
    });
    got
}

fn outbox(spool: &Path) -> Vec<(String, i64, String)> {
    let conn = firstlook::spool::open_for_maintenance(&firstlook::spool::index_path(spool))
        .expect("index");
    let mut stmt = conn
        .prepare("SELECT state, attempts, coalesce(last_error, '') FROM hl7_outbox ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn an_urgent_result_reaches_the_ris_over_mllp_despite_a_dead_listener_and_a_nack() {
    let dir = scratch("results-hl7");
    let mut pacs = PyPacs::start(dir.path(), free_port(), &[]);
    let ris_port = free_port();
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port))
        .triage("engine = \"tract\"")
        .results(&format!(
            "mode = \"full\"\n[results.hl7]\naddress = \"127.0.0.1:{ris_port}\"\nreceiving_application = \"TESTRIS\"\ntimeout_secs = 5"
        ));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let send = dir.path().join("send");
    let positive_spec = StudySpec::new(Kind::Cr, 104).with_finding(Finding::Pneumothorax);
    let positive = phantom(&positive_spec, &send.join("cr-positive"));
    let negative = phantom(&StudySpec::new(Kind::Cr, 103), &send.join("cr-negative"));
    let out = storescu(daemon.port, "SCANNER", &["+sd", "+r"], &[send.as_path()]);
    assert!(out.status.success(), "storescu failed:\n{out}");
    daemon.wait_decided(2, SETTLE);

    // Nobody listens yet: the message waits in the outbox with the reason.
    let spool = daemon.spool_dir().to_path_buf();
    let waiting = wait_until(SETTLE, "a failed HL7 attempt", |last| {
        let o = outbox(&spool);
        *last = format!("{o:?}");
        o.first().filter(|m| m.1 >= 1).cloned()
    });
    assert_eq!(waiting.0, "pending");
    assert!(waiting.2.contains("connect"), "{waiting:?}");

    let listener = std::net::TcpListener::bind(("127.0.0.1", ris_port)).unwrap();
    let got = mllp_listener(listener);
    let sent = wait_until(SETTLE, "the HL7 message acknowledged", |last| {
        let o = outbox(&spool);
        *last = format!("{o:?}");
        o.first().filter(|m| m.0 == "sent").cloned()
    });
    // Only the urgent report goes to the RIS, once, after a NACK.
    assert_eq!(outbox(&spool).len(), 1, "{:?}", outbox(&spool));
    assert!(
        sent.1 >= 3,
        "a connection failure, a NACK, then an ACK: {sent:?}"
    );
    let messages = got.lock().unwrap().clone();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_eq!(messages[0], messages[1], "the retry is the same message");
    let m = &messages[1];
    let segment = |name: &str| -> Vec<String> {
        m.split('\r')
            .find(|s| s.starts_with(&format!("{name}|")))
            .unwrap_or_else(|| panic!("no {name} in {m}"))
            .split('|')
            .map(str::to_string)
            .collect()
    };
    let text = |tag: dicom_object::Tag| {
        let obj = dicom_object::open_file(&positive[0].path).unwrap();
        obj.element(tag)
            .map(|e| {
                e.to_str()
                    .unwrap()
                    .trim_end_matches(['\0', ' '])
                    .to_string()
            })
            .unwrap_or_default()
    };
    let msh = segment("MSH");
    assert_eq!(msh[8], "ORU^R01^ORU_R01");
    assert_eq!(msh[4], "TESTRIS");
    assert_eq!(msh[11], "2.5");
    let pid = segment("PID");
    assert_eq!(
        pid[3],
        text(dicom_object::Tag(0x0010, 0x0020)),
        "PID-3 patient id"
    );
    let obr = segment("OBR");
    let accession = text(dicom_object::Tag(0x0008, 0x0050));
    assert!(!accession.is_empty());
    assert_eq!(obr[2], accession, "OBR-2 accession");
    assert_eq!(obr[5], "S", "OBR-5 priority stat");
    assert!(
        m.contains("|CWE|36118008^Pneumothorax^SCT||52101004^Present^SCT|||A|"),
        "{m}"
    );
    assert!(m.contains("not a diagnosis"), "{m}");
    assert!(!m.contains(&negative[0].sop_instance_uid));
    let delivered = daemon.wait_settled(2, SETTLE);
    assert_eq!(
        delivered.destination("pacs").delivered,
        2 + 4,
        "images and results"
    );
    let sent: Vec<DicomFile> = positive.into_iter().chain(negative).collect();
    assert_delivered_identical(&sent, &pacs.received());

    // The urgent study's report and heatmap went with DIMSE priority HIGH,
    // the other study's with MEDIUM.
    let (decisions, results) = logged(&spool);
    let log = pacs.log_text();
    let priority = |uid: &str| -> String {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("STORED {uid} priority ")))
            .unwrap_or_else(|| panic!("{uid} not stored:\n{log}"))
            .trim()
            .to_string()
    };
    for (unit, _, sr, sc) in &results {
        let urgent = decisions
            .iter()
            .any(|d| &d.unit == unit && d.outcome == Outcome::Urgent);
        let want = if urgent { "1" } else { "0" };
        assert_eq!(priority(sr), want, "SR of {unit}");
        assert_eq!(priority(sc), want, "heatmap of {unit}");
    }
}
