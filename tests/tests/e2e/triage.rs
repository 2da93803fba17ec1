//! Scanner → firstlookd → model → decision, beside forwarding: storescu
//! sends synthetic radiographs and a CT series; the right decisions come out
//! with everything they rest on, and the images still reach storescp
//! byte-identical, also when the model cannot be loaded at all.

use std::collections::BTreeMap;
use std::time::Duration;

use firstlook::bundle::{Bundle, EMBEDDED_DEMO};
use firstlook::triage::{Decision, Outcome};
use firstlook_e2e::*;

const SETTLE: Duration = Duration::from_secs(120);

/// (unit, finding) → decision, from the newest decisions in status.
fn by_unit(status: &Status) -> BTreeMap<(String, String), Decision> {
    let t = status.triage.as_ref().expect("triage status");
    t.recent
        .iter()
        .map(|d| {
            (
                (d.unit.clone(), d.finding.clone().unwrap_or_default()),
                d.clone(),
            )
        })
        .collect()
}

fn slice_z(file: &DicomFile) -> f64 {
    let obj = dicom_object::open_file(&file.path).unwrap();
    let ipp = obj
        .element(dicom_object::Tag(0x0020, 0x0032))
        .unwrap()
        .to_multi_float64()
        .unwrap();
    ipp[2]
}

#[test]
fn storescu_cr_and_ct_get_the_right_decisions_and_still_reach_the_pacs() {
    let dir = scratch("triage");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port))
        .triage("engine = \"tract\"");
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let positive = phantom(
        &StudySpec::new(Kind::Cr, 104).with_finding(Finding::Pneumothorax),
        &dir.path().join("send/cr-positive"),
    );
    let negative = phantom(
        &StudySpec::new(Kind::Cr, 103),
        &dir.path().join("send/cr-negative"),
    );
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 102)
            .with_finding(Finding::Hemorrhage)
            .with_count(24),
        &dir.path().join("send/ct"),
    );
    // storescu sends a folder in file-name (random UID) order: the slices
    // arrive out of position order.
    let send = dir.path().join("send");
    let out = storescu(daemon.port, "SCANNER", &["+sd", "+r"], &[send.as_path()]);
    assert!(out.status.success(), "storescu failed:\n{out}");
    assert_eq!(storescu_successes(&out.stderr).len(), 26, "{out}");

    let status = daemon.wait_decided(3, SETTLE);
    let t = status.triage.as_ref().unwrap();
    let model = t.model.as_ref().expect("model state");
    assert_eq!(model.state, "ready", "{}", status.summary());
    assert_eq!(model.clinical_use, Some(false));
    let decisions = by_unit(&status);
    assert_eq!(decisions.len(), 5, "{}", status.summary());

    let cr_pos = format!("instance {}", positive[0].sop_instance_uid);
    let cr_neg = format!("instance {}", negative[0].sop_instance_uid);
    let series = {
        let obj = dicom_object::open_file(&ct[0].path).unwrap();
        let uid = obj.element(dicom_object::Tag(0x0020, 0x000E)).unwrap();
        format!("series {}", uid.to_str().unwrap().trim_end_matches('\0'))
    };
    let want = [
        (&cr_pos, "pneumothorax", Outcome::Urgent),
        (&cr_pos, "effusion", Outcome::NoFinding),
        (&cr_neg, "pneumothorax", Outcome::NoFinding),
        (&cr_neg, "effusion", Outcome::NoFinding),
        (&series, "hemorrhage", Outcome::Urgent),
    ];
    let sha = Bundle::verify(
        EMBEDDED_DEMO.to_vec(),
        &firstlook::bundle::TrustStore::demo(),
    )
    .unwrap()
    .sha256_hex();
    for (unit, finding, outcome) in want {
        let d = decisions
            .get(&(unit.clone(), finding.to_string()))
            .unwrap_or_else(|| panic!("no decision on {finding} for {unit}: {decisions:#?}"));
        assert_eq!(d.outcome, outcome, "{unit} {finding}: {d:#?}");
        // Traceable: model, hash, engine, operating point, inputs, times.
        assert_eq!(d.model.name, "firstlook-demo");
        assert_eq!(d.model.sha256, sha);
        assert_eq!(d.model.engine, "tract");
        let (score, threshold) = (d.score.unwrap(), d.threshold.unwrap());
        assert_eq!(
            f64::from(score) > threshold,
            outcome == Outcome::Urgent,
            "{d:#?}"
        );
        assert!(d
            .operating_point
            .as_deref()
            .unwrap()
            .contains("sensitivity"));
        assert!(d.received_first_ms <= d.received_last_ms);
        assert!(d.received_last_ms <= d.inference_ended_ms);
        assert!(d.inference_started_ms <= d.inference_ended_ms);
        assert!(d.inference_ended_ms <= d.decided_at_ms);
    }
    let ct_decision = &decisions[&(series.clone(), "hemorrhage".to_string())];
    assert_eq!(ct_decision.completion, "all 24 slices");
    let mut by_z: Vec<&DicomFile> = ct.iter().collect();
    by_z.sort_by(|a, b| slice_z(a).total_cmp(&slice_z(b)));
    let in_order: Vec<&str> = by_z.iter().map(|f| f.sop_instance_uid.as_str()).collect();
    assert_eq!(ct_decision.inputs, in_order, "inputs in slice order");
    assert_eq!(
        decisions[&(cr_pos.clone(), "pneumothorax".into())].inputs,
        [positive[0].sop_instance_uid.clone()]
    );

    let status = daemon.wait_settled(26, SETTLE);
    assert_eq!(status.destination("pacs").delivered, 26);
    let sent: Vec<DicomFile> = positive.into_iter().chain(negative).chain(ct).collect();
    assert_delivered_identical(&sent, &pacs.received());
    // In shadow mode (the harness's default) the three reports and their
    // heatmaps are kept on the box and nothing more is sent.
    let status = wait_until(SETTLE, "6 results kept", |last| {
        let s = daemon.status();
        *last = s.summary();
        (s.results == 6).then_some(s)
    });
    assert_eq!(status.instances, 26);
    let t = status.triage.as_ref().unwrap();
    assert_eq!(
        t.reports,
        [("written (shadow)".to_string(), 3)],
        "{}",
        status.summary()
    );
    assert_eq!(status.destination("pacs").delivered, 26);
    assert_eq!(status.destination("pacs").pending, 0);
    assert_eq!(pacs.received().len(), 26);

    // The decision log is append-only, even for someone with the file.
    let conn =
        firstlook::spool::open_for_maintenance(&firstlook::spool::index_path(daemon.spool_dir()))
            .unwrap();
    let update = conn.execute("UPDATE decisions SET outcome = 'no_finding'", []);
    assert!(update.is_err(), "a decision was changed: {update:?}");
    let delete = conn.execute("DELETE FROM decisions", []);
    assert!(delete.is_err(), "decisions were deleted: {delete:?}");
}

#[test]
fn a_corrupt_bundle_gives_error_decisions_and_does_not_delay_forwarding() {
    let dir = scratch("triage-corrupt");
    let mut bytes = EMBEDDED_DEMO.to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let bundle = dir.path().join("corrupt.flb");
    std::fs::write(&bundle, &bytes).unwrap();

    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port))
        .triage(&format!("bundle = \"{}\"", bundle.display()))
        .triage("series_idle_secs = 2");
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let cr = phantom(
        &StudySpec::new(Kind::Cr, 104).with_finding(Finding::Pneumothorax),
        &dir.path().join("send/cr"),
    );
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 102).with_count(6),
        &dir.path().join("send/ct"),
    );
    let send = dir.path().join("send");
    let out = storescu(daemon.port, "SCANNER", &["+sd", "+r"], &[send.as_path()]);
    assert!(out.status.success(), "storescu failed:\n{out}");

    // Forwarding finishes as it would without a model at all.
    let status = daemon.wait_settled(7, Duration::from_secs(60));
    assert_eq!(status.destination("pacs").delivered, 7);
    let sent: Vec<DicomFile> = cr.into_iter().chain(ct).collect();
    assert_delivered_identical(&sent, &pacs.received());

    // No image is silently unjudged: each unit has an error with the reason.
    let status = daemon.wait_decided(2, SETTLE);
    let t = status.triage.as_ref().unwrap();
    let model = t.model.as_ref().unwrap();
    assert_eq!(model.state, "failed", "{}", status.summary());
    assert!(
        model.error.as_deref().unwrap().contains("corrupt.flb"),
        "{model:?}"
    );
    assert_eq!(
        (t.errors, t.urgent, t.no_finding),
        (2, 0, 0),
        "{}",
        status.summary()
    );
    for d in &t.recent {
        assert_eq!(d.outcome, Outcome::Error);
        assert!(
            d.reason.as_deref().unwrap().contains("corrupt.flb"),
            "{d:?}"
        );
    }
    daemon.assert_running();
}

#[test]
fn a_ct_series_interrupted_by_a_crash_is_judged_whole_after_restart() {
    let dir = scratch("triage-restart");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("SCANNER", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 102)
            .with_finding(Finding::Hemorrhage)
            .with_count(12),
        &dir.path().join("ct"),
    );
    let (first, rest) = ct.split_at(6);
    let paths = |files: &[DicomFile]| -> Vec<std::path::PathBuf> {
        files.iter().map(|f| f.path.clone()).collect()
    };
    let first_paths = paths(first);
    let refs: Vec<&std::path::Path> = first_paths.iter().map(|p| p.as_path()).collect();
    let out = storescu(daemon.port, "SCANNER", &[], &refs);
    assert!(out.status.success(), "{out}");
    wait_until(SETTLE, "six slices scored", |last| {
        let s = daemon.status();
        *last = s.summary();
        let t = s.triage.as_ref()?;
        (t.awaiting_series == 6).then_some(())
    });
    daemon.kill9();
    daemon.restart();
    let rest_paths = paths(rest);
    let refs: Vec<&std::path::Path> = rest_paths.iter().map(|p| p.as_path()).collect();
    let out = storescu(daemon.port, "SCANNER", &[], &refs);
    assert!(out.status.success(), "{out}");
    let status = daemon.wait_decided(1, SETTLE);
    let t = status.triage.as_ref().unwrap();
    assert_eq!(t.recent.len(), 1, "{}", status.summary());
    let d = &t.recent[0];
    assert_eq!(d.completion, "all 12 slices", "{d:#?}");
    assert_eq!(d.inputs.len(), 12);
    assert_eq!(d.outcome, Outcome::Urgent, "{d:#?}");
    daemon.wait_settled(12, SETTLE);
    assert_delivered_identical(&ct, &pacs.received());
}
