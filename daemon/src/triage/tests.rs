//! Table-driven tests of routing, gating, series completion, aggregation and
//! decisions, on the demo bundle's manifest (and variants of it).

use std::sync::OnceLock;

use crate::bundle::Bundle;
use crate::bundle::{AggregationRule, Manifest};

use super::*;

fn demo() -> &'static Manifest {
    static M: OnceLock<Manifest> = OnceLock::new();
    M.get_or_init(|| Bundle::embedded_demo().unwrap().manifest().clone())
}

const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
const CORONAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];

fn cr(uid: &str) -> InstanceFacts {
    InstanceFacts {
        instance_id: 1,
        sop_instance_uid: uid.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.1".into(),
        study_uid: Some("1.2.3".into()),
        series_uid: Some("1.2.3.4".into()),
        modality: Some("CR".into()),
        body_part: Some("CHEST".into()),
        view_position: Some("PA".into()),
        photometric: Some("MONOCHROME1".into()),
        rows: Some(2500),
        cols: Some(2048),
        frames: 1,
        pixel_spacing: Some([0.15, 0.15]),
        received_at_ms: 1_000,
        ..Default::default()
    }
}

fn ct(series: &str, n: i64, z: f64, of: Option<u32>) -> InstanceFacts {
    InstanceFacts {
        instance_id: n,
        sop_instance_uid: format!("{series}.{n}"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        study_uid: Some("1.2.3".into()),
        series_uid: Some(series.into()),
        modality: Some("CT".into()),
        body_part: Some("HEAD".into()),
        photometric: Some("MONOCHROME2".into()),
        rows: Some(512),
        cols: Some(512),
        frames: 1,
        pixel_spacing: Some([0.45, 0.45]),
        orientation: Some(AXIAL),
        position: Some([-115.0, -115.0, z]),
        instance_number: Some(n),
        images_in_acquisition: of,
        received_at_ms: 1_000 + n,
        ..Default::default()
    }
}

fn with(mut f: InstanceFacts, change: impl FnOnce(&mut InstanceFacts)) -> InstanceFacts {
    change(&mut f);
    f
}

#[test]
fn routing_table() {
    let mut filtered = demo().clone();
    filtered.preprocessing[0].view_positions = vec!["PA".into(), "AP".into()];
    filtered.preprocessing[0].min_size = Some([1024, 1024]);
    filtered.preprocessing[0].pixel_spacing_mm = Some([0.1, 0.2]);
    filtered.applicability.sop_classes = vec![
        "1.2.840.10008.5.1.4.1.1.1".into(),
        "1.2.840.10008.5.1.4.1.1.2".into(),
    ];
    let cases: Vec<(&str, &Manifest, InstanceFacts, Option<usize>)> = vec![
        ("CR chest", demo(), cr("a"), Some(0)),
        (
            "DX chest",
            demo(),
            with(cr("a"), |f| f.modality = Some("DX".into())),
            Some(0),
        ),
        ("CT head", demo(), ct("s", 1, 0.0, None), Some(1)),
        (
            "CT brain, lower case",
            demo(),
            with(ct("s", 1, 0.0, None), |f| {
                f.body_part = Some("brain".into())
            }),
            Some(1),
        ),
        (
            "MR is not covered",
            demo(),
            with(ct("s", 1, 0.0, None), |f| f.modality = Some("MR".into())),
            None,
        ),
        (
            "no modality",
            demo(),
            with(cr("a"), |f| f.modality = None),
            None,
        ),
        (
            "an SR has no rows",
            demo(),
            with(cr("a"), |f| {
                f.rows = None;
                f.cols = None
            }),
            None,
        ),
        (
            "CR of a hand",
            demo(),
            with(cr("a"), |f| f.body_part = Some("HAND".into())),
            None,
        ),
        (
            "body part missing is routed (the gate decides)",
            demo(),
            with(cr("a"), |f| f.body_part = None),
            Some(0),
        ),
        (
            "RGB",
            demo(),
            with(cr("a"), |f| f.photometric = Some("RGB".into())),
            None,
        ),
        ("filters pass", &filtered, cr("a"), Some(0)),
        (
            "lateral view refused",
            &filtered,
            with(cr("a"), |f| f.view_position = Some("LL".into())),
            None,
        ),
        (
            "missing view position passes",
            &filtered,
            with(cr("a"), |f| f.view_position = None),
            Some(0),
        ),
        (
            "too small",
            &filtered,
            with(cr("a"), |f| f.rows = Some(800)),
            None,
        ),
        (
            "spacing too coarse",
            &filtered,
            with(cr("a"), |f| f.pixel_spacing = Some([0.3, 0.3])),
            None,
        ),
        (
            "SOP class not listed",
            &filtered,
            with(cr("a"), |f| {
                f.sop_class_uid = "1.2.840.10008.5.1.4.1.1.7".into()
            }),
            None,
        ),
        (
            "the filters of the CR route do not touch CT",
            &filtered,
            ct("s", 1, 0.0, None),
            Some(1),
        ),
    ];
    for (name, manifest, facts, want) in cases {
        let got = route(manifest, &facts);
        match (want, &got) {
            (Some(r), Routing::Applies { route }) => assert_eq!(*route, r, "{name}"),
            (None, Routing::NotApplicable(reason)) => assert!(!reason.is_empty(), "{name}"),
            _ => panic!("{name}: got {got:?}, wanted route {want:?}"),
        }
    }
}

#[test]
fn gate_table() {
    let cases: Vec<(&str, InstanceFacts, Option<&str>)> = vec![
        ("CR chest", cr("a"), None),
        ("CT axial", ct("s", 1, 0.0, None), None),
        (
            "CT tilted 20 degrees",
            with(ct("s", 1, 0.0, None), |f| {
                let (s, c) = 20f64.to_radians().sin_cos();
                f.orientation = Some([1.0, 0.0, 0.0, 0.0, c, -s]);
            }),
            None,
        ),
        (
            "CT coronal",
            with(ct("s", 1, 0.0, None), |f| f.orientation = Some(CORONAL)),
            Some("not an axial slice"),
        ),
        (
            "CT without orientation",
            with(ct("s", 1, 0.0, None), |f| f.orientation = None),
            Some("ImageOrientationPatient is missing"),
        ),
        (
            "CT with a degenerate orientation",
            with(ct("s", 1, 0.0, None), |f| f.orientation = Some([0.0; 6])),
            Some("not an axial slice"),
        ),
        (
            "CT without pixel spacing",
            with(ct("s", 1, 0.0, None), |f| f.pixel_spacing = None),
            Some("PixelSpacing is missing"),
        ),
        (
            "CR without pixel spacing is fine",
            with(cr("a"), |f| f.pixel_spacing = None),
            None,
        ),
        (
            "body part missing",
            with(cr("a"), |f| f.body_part = None),
            Some("BodyPartExamined is missing"),
        ),
        (
            "multi-frame",
            with(cr("a"), |f| f.frames = 3),
            Some("3 frames"),
        ),
        (
            "tiny",
            with(cr("a"), |f| f.rows = Some(8)),
            Some("too small"),
        ),
        (
            "no photometric",
            with(cr("a"), |f| f.photometric = None),
            Some("PhotometricInterpretation is missing"),
        ),
    ];
    for (name, facts, want) in cases {
        match (gate(demo(), &facts), want) {
            (Ok(()), None) => {}
            (Err(reason), Some(part)) => {
                assert!(reason.contains(part), "{name}: {reason:?} lacks {part:?}")
            }
            (got, _) => panic!("{name}: got {got:?}, wanted {want:?}"),
        }
    }
}

fn scored(facts: InstanceFacts, logits: [f32; 3]) -> SliceResult {
    SliceResult {
        started_at_ms: facts.received_at_ms + 10,
        ended_at_ms: facts.received_at_ms + 20,
        facts,
        outcome: SliceOutcome::Scored {
            logits: logits.to_vec(),
        },
        timing: Timing::default(),
    }
}

fn failed(facts: InstanceFacts, outcome: SliceOutcome) -> SliceResult {
    SliceResult {
        started_at_ms: facts.received_at_ms,
        ended_at_ms: facts.received_at_ms,
        facts,
        outcome,
        timing: Timing::default(),
    }
}

fn slice(series: &str, n: i64, z: f64, of: Option<u32>) -> SliceResult {
    scored(ct(series, n, z, of), [0.0, 0.0, n as f32])
}

fn uids(unit: &Unit) -> Vec<String> {
    unit.slices
        .iter()
        .map(|s| s.facts.sop_instance_uid.clone())
        .collect()
}

#[test]
fn a_radiograph_is_its_own_unit() {
    let mut a = Assembler::new(5_000);
    let unit = a.add(scored(cr("x"), [0.0; 3]), 0).unwrap();
    assert_eq!(unit.key, UnitKey::Instance("x".into()));
    assert_eq!(unit.completion, Completion::Single);
    assert_eq!(a.open_series(), 0);
}

#[test]
fn series_completes_on_count_sorted_by_position_whatever_the_arrival_order() {
    let mut a = Assembler::new(5_000);
    // Arrival order 3, 1, 2; instance numbers disagree with position on purpose.
    assert!(a.add(slice("s", 3, 10.0, Some(3)), 0).is_none());
    assert!(a.add(slice("s", 1, 30.0, Some(3)), 10).is_none());
    let unit = a.add(slice("s", 2, 20.0, Some(3)), 20).unwrap();
    assert_eq!(unit.completion, Completion::Count { expected: 3 });
    assert_eq!(uids(&unit), ["s.3", "s.2", "s.1"]);
    assert_eq!(a.open_series(), 0);
    assert_eq!(a.next_deadline(), None);
}

#[test]
fn duplicate_slices_count_once_and_the_last_copy_wins() {
    let mut a = Assembler::new(5_000);
    assert!(a.add(slice("s", 1, 0.0, Some(3)), 0).is_none());
    assert!(a.add(slice("s", 2, 1.0, Some(3)), 1).is_none());
    let mut again = slice("s", 2, 1.0, Some(3));
    again.outcome = SliceOutcome::Scored {
        logits: vec![0.0, 0.0, 9.0],
    };
    assert!(a.add(again, 2).is_none(), "a duplicate does not complete");
    let unit = a.add(slice("s", 3, 2.0, Some(3)), 3).unwrap();
    assert_eq!(unit.slices.len(), 3);
    assert_eq!(
        unit.slices[1].outcome,
        SliceOutcome::Scored {
            logits: vec![0.0, 0.0, 9.0]
        }
    );
}

#[test]
fn series_without_a_count_completes_after_the_idle_time() {
    let mut a = Assembler::new(5_000);
    a.add(slice("s", 1, 0.0, None), 1_000);
    a.add(slice("t", 1, 0.0, Some(10)), 2_000);
    a.add(slice("s", 2, 1.0, None), 3_000);
    assert_eq!(a.next_deadline(), Some(7_000));
    assert!(a.due(6_999).is_empty());
    let due = a.due(7_000);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].key, UnitKey::Series("t".into()));
    assert_eq!(
        due[0].completion,
        Completion::Idle {
            received: 1,
            expected: Some(10)
        }
    );
    let due = a.due(8_000);
    assert_eq!(due[0].key, UnitKey::Series("s".into()));
    assert_eq!(due[0].slices.len(), 2);
    assert!(a.due(100_000).is_empty());
}

#[test]
fn late_slices_reopen_a_judged_series_which_then_waits_for_idle() {
    let mut a = Assembler::new(5_000);
    a.add(slice("s", 1, 0.0, Some(2)), 0);
    assert!(a.add(slice("s", 2, 1.0, Some(2)), 1).is_some());
    // The scanner re-sends slice 2 and adds a third.
    assert!(a.add(slice("s", 2, 1.0, Some(2)), 100).is_none());
    assert!(a.add(slice("s", 3, 2.0, Some(2)), 200).is_none());
    let due = a.due(5_200);
    assert_eq!(due.len(), 1);
    assert!(due[0].reassessed);
    assert_eq!(uids(&due[0]), ["s.1", "s.2", "s.3"]);
}

#[test]
fn slices_without_positions_sort_by_instance_number() {
    let mut a = Assembler::new(5_000);
    for n in [2, 3, 1] {
        let mut s = slice("s", n, 0.0, Some(3));
        s.facts.position = None;
        if let Some(unit) = a.add(s, n) {
            assert_eq!(uids(&unit), ["s.1", "s.2", "s.3"]);
            return;
        }
    }
    panic!("series never completed");
}

#[test]
fn aggregation_table() {
    use AggregationRule::*;
    let s = [0.0, 5.0, 6.0, -1.0, 7.0, 7.5, 8.0];
    type Case<'a> = (AggregationRule, Option<u32>, &'a [f32], Option<f32>);
    let cases: Vec<Case> = vec![
        (Max, None, &s, Some(8.0)),
        (Max, None, &[], None),
        (TopKMean, Some(2), &s, Some(7.75)),
        (TopKMean, Some(100), &[1.0, 3.0], Some(2.0)),
        (ConsecutiveK, Some(3), &s, Some(7.0)),
        (ConsecutiveK, Some(2), &s, Some(7.5)),
        (ConsecutiveK, Some(1), &s, Some(8.0)),
        // Fewer slices than k: the whole series is the window.
        (ConsecutiveK, Some(5), &[4.0, 2.0], Some(2.0)),
    ];
    for (rule, k, scores, want) in cases {
        assert_eq!(
            aggregate(rule, k, scores),
            want,
            "{rule:?} k={k:?} {scores:?}"
        );
    }
}

fn info() -> ModelInfo {
    ModelInfo {
        name: "firstlook-demo".into(),
        version: "0.1.0".into(),
        sha256: "ab".repeat(32),
        engine: "tract".into(),
        clinical_use: false,
    }
}

fn outcomes(decisions: &[Decision]) -> Vec<(&str, Outcome)> {
    decisions
        .iter()
        .map(|d| (d.finding.as_deref().unwrap_or("-"), d.outcome))
        .collect()
}

fn single(result: SliceResult) -> Unit {
    Unit {
        key: UnitKey::Instance(result.facts.sop_instance_uid.clone()),
        slices: vec![result],
        completion: Completion::Single,
        reassessed: false,
    }
}

#[test]
fn radiograph_decisions_against_the_operating_points() {
    let mut m = demo().clone();
    m.findings[0].threshold = 1.0;
    m.findings[1].threshold = 2.0;
    let m = &m;
    let (pt, ef) = (1.0, 2.0);
    let cases: Vec<(&str, SliceResult, [Outcome; 2])> = vec![
        (
            "both under",
            scored(cr("a"), [pt - 0.01, ef - 1.0, 99.0]),
            [Outcome::NoFinding, Outcome::NoFinding],
        ),
        (
            "pneumothorax over",
            scored(cr("a"), [pt + 0.01, ef - 1.0, 0.0]),
            [Outcome::Urgent, Outcome::NoFinding],
        ),
        (
            "exactly at the threshold is not over",
            scored(cr("a"), [pt, ef, 0.0]),
            [Outcome::NoFinding, Outcome::NoFinding],
        ),
        (
            "not assessable",
            failed(cr("a"), SliceOutcome::NotAssessable("lateral".into())),
            [Outcome::NotAssessable, Outcome::NotAssessable],
        ),
        (
            "error",
            failed(cr("a"), SliceOutcome::Error("decoder".into())),
            [Outcome::Error, Outcome::Error],
        ),
    ];
    for (name, result, want) in cases {
        let d = decide(Some(m), &single(result), &info(), 5_000);
        assert_eq!(
            outcomes(&d),
            [("pneumothorax", want[0]), ("effusion", want[1])],
            "{name}"
        );
        for d in &d {
            assert_eq!(d.inputs, ["a"], "{name}");
            assert_eq!(d.received_first_ms, 1_000);
            assert_eq!(d.decided_at_ms, 5_000);
            assert_eq!(d.model, info());
            assert!(d.threshold.is_some() && d.operating_point.is_some());
        }
    }
}

#[test]
fn a_non_urgent_finding_over_its_threshold_is_a_finding() {
    let mut m = demo().clone();
    m.findings[1].urgent = false;
    let d = decide(
        Some(&m),
        &single(scored(cr("a"), [0.0, 100.0, 0.0])),
        &info(),
        0,
    );
    assert_eq!(d[1].outcome, Outcome::Finding);
}

fn series_unit(slices: Vec<SliceResult>, completion: Completion) -> Unit {
    Unit {
        key: UnitKey::Series("s".into()),
        slices,
        completion,
        reassessed: false,
    }
}

#[test]
fn series_decisions_table() {
    let m = demo();
    let t = m.findings[2].threshold as f32;
    let ok = |n: i64, v: f32| scored(ct("s", n, n as f64, Some(4)), [0.0, 0.0, v]);
    let na = |n: i64| {
        failed(
            ct("s", n, n as f64, Some(4)),
            SliceOutcome::NotAssessable("coronal".into()),
        )
    };
    let err = |n: i64| {
        failed(
            ct("s", n, n as f64, Some(4)),
            SliceOutcome::Error("decoder".into()),
        )
    };
    let all = Completion::Count { expected: 4 };
    let partial = Completion::Idle {
        received: 3,
        expected: Some(4),
    };
    type Case = (
        &'static str,
        Vec<SliceResult>,
        Completion,
        Outcome,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "all under",
            vec![
                ok(1, t - 1.0),
                ok(2, t - 0.5),
                ok(3, t - 2.0),
                ok(4, t - 3.0),
            ],
            all.clone(),
            Outcome::NoFinding,
            None,
        ),
        (
            "one slice over: max",
            vec![
                ok(1, t - 1.0),
                ok(2, t + 0.5),
                ok(3, t - 2.0),
                ok(4, t - 3.0),
            ],
            all.clone(),
            Outcome::Urgent,
            None,
        ),
        (
            "positive even with a failed slice, with a caveat",
            vec![ok(1, t + 1.0), err(2), ok(3, t), ok(4, t)],
            all.clone(),
            Outcome::Urgent,
            Some("1 of 4 slices were not scored"),
        ),
        (
            "a failed slice never makes a negative",
            vec![ok(1, t - 1.0), err(2), ok(3, t - 1.0), ok(4, t - 1.0)],
            all.clone(),
            Outcome::Error,
            Some("1 of 4 slices failed"),
        ),
        (
            "one slice not assessable is a note",
            vec![ok(1, t - 1.0), na(2), ok(3, t - 1.0), ok(4, t - 1.0)],
            all.clone(),
            Outcome::NoFinding,
            Some("1 of 4 slices not assessable"),
        ),
        (
            "most slices not assessable",
            vec![ok(1, t - 1.0), na(2), na(3), na(4)],
            all.clone(),
            Outcome::NotAssessable,
            Some("3 of 4 slices not assessable"),
        ),
        (
            "an incomplete negative series is not assessable",
            vec![ok(1, t - 1.0), ok(2, t - 1.0), ok(3, t - 1.0)],
            partial.clone(),
            Outcome::NotAssessable,
            Some("3 of 4 slices arrived"),
        ),
        (
            "an incomplete positive series is urgent",
            vec![ok(1, t - 1.0), ok(2, t + 1.0), ok(3, t - 1.0)],
            partial,
            Outcome::Urgent,
            None,
        ),
    ];
    for (name, slices, completion, want, reason) in cases {
        let d = decide(Some(m), &series_unit(slices, completion), &info(), 0);
        assert_eq!(outcomes(&d), [("hemorrhage", want)], "{name}");
        match reason {
            Some(part) => assert!(
                d[0].reason.as_deref().unwrap_or("").contains(part),
                "{name}: reason {:?} lacks {part:?}",
                d[0].reason
            ),
            None => assert_eq!(d[0].reason, None, "{name}"),
        }
        assert_eq!(d[0].series_uid.as_deref(), Some("s"));
    }
}

#[test]
fn consecutive_k_needs_adjacent_slices_over_the_threshold() {
    let mut m = demo().clone();
    m.aggregation.rule = AggregationRule::ConsecutiveK;
    m.aggregation.k = Some(2);
    let t = m.findings[2].threshold as f32;
    let ok = |n: i64, v: f32| scored(ct("s", n, n as f64, Some(4)), [0.0, 0.0, v]);
    let apart = vec![
        ok(1, t + 1.0),
        ok(2, t - 1.0),
        ok(3, t + 1.0),
        ok(4, t - 1.0),
    ];
    let together = vec![
        ok(1, t - 1.0),
        ok(2, t + 1.0),
        ok(3, t + 1.0),
        ok(4, t - 1.0),
    ];
    let all = Completion::Count { expected: 4 };
    let d = decide(Some(&m), &series_unit(apart, all.clone()), &info(), 0);
    assert_eq!(d[0].outcome, Outcome::NoFinding);
    let d = decide(Some(&m), &series_unit(together, all), &info(), 0);
    assert_eq!(d[0].outcome, Outcome::Urgent);
}

#[test]
fn without_a_model_every_unit_is_an_error_with_the_reason() {
    let unit = single(failed(
        cr("a"),
        SliceOutcome::Error("model unavailable: bad signature".into()),
    ));
    let d = decide(None, &unit, &info(), 0);
    assert_eq!(outcomes(&d), [("-", Outcome::Error)]);
    assert_eq!(
        d[0].reason.as_deref(),
        Some("model unavailable: bad signature")
    );
}

#[test]
fn a_short_logits_vector_is_an_error_not_a_negative() {
    let mut r = scored(cr("a"), [0.0; 3]);
    r.outcome = SliceOutcome::Scored { logits: vec![0.0] };
    let d = decide(Some(demo()), &single(r), &info(), 0);
    assert_eq!(
        outcomes(&d),
        [
            ("pneumothorax", Outcome::NoFinding),
            ("effusion", Outcome::Error)
        ]
    );
}
