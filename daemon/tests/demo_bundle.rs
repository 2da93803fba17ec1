//! The committed demo bundle (models/demo/firstlook-demo.flb): it verifies
//! under the demo trust store only, any flipped byte breaks it, its golden
//! cases reproduce with tract, and it scores phantom DICOM studies through
//! the daemon's own decode → preprocess → engine path.

use std::path::PathBuf;

use firstlook::bundle::{Bundle, PublicKey, SecretKey, TrustStore};
use firstlook::model::{Model, Variant};
use firstlook::pixels::modality_image;
use firstlook_phantom::{Finding, Kind, StudySpec};

fn bundle_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/demo/firstlook-demo.flb")
}

fn bytes() -> Vec<u8> {
    std::fs::read(bundle_path()).expect("the demo bundle is committed")
}

#[test]
fn the_demo_bundle_verifies_and_says_it_is_not_for_clinical_use() {
    let bundle = Bundle::verify(bytes(), &TrustStore::demo()).unwrap();
    let m = bundle.manifest();
    assert!(!m.clinical_use);
    assert!(m.intended_use.contains("NOT FOR CLINICAL USE"));
    assert!(m.training_data.to_lowercase().contains("synthetic"));
    let card = String::from_utf8(bundle.model_card().to_vec()).unwrap();
    assert!(card.contains("NOT FOR CLINICAL USE"));
    let ids: Vec<&str> = m.findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["pneumothorax", "effusion", "hemorrhage"]);
    assert!(bundle.int8_model_bytes().is_some());
    assert!(bundle.model_bytes().len() < 5_000_000, "student under 5 MB");
}

#[test]
fn the_demo_bundle_is_refused_by_a_store_without_the_demo_key() {
    let mut store = TrustStore::new();
    store.add("site", SecretKey::generate().unwrap().public_key());
    assert!(Bundle::verify(bytes(), &store).is_err());
    let mut with_demo = TrustStore::new();
    with_demo.add("demo", PublicKey::demo_vendor());
    assert!(Bundle::verify(bytes(), &with_demo).is_ok());
}

#[test]
fn flipping_bytes_anywhere_in_the_demo_bundle_makes_it_fail() {
    let good = bytes();
    let store = TrustStore::demo();
    // Every byte of the first 4 KiB (manifest header and text), then a
    // stride across the models and golden files, and the last 2 KiB
    // (signature and end-of-archive blocks).
    let len = good.len();
    let positions = (0..4096.min(len))
        .chain((4096..len).step_by(997))
        .chain(len.saturating_sub(2048)..len);
    let mut tried = 0;
    for at in positions {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert!(
            Bundle::verify(bad, &store).is_err(),
            "flipping byte {at} went unnoticed"
        );
        tried += 1;
    }
    assert!(tried > 6000, "{tried}");
}

#[test]
fn golden_cases_reproduce_with_tract_within_the_manifest_tolerance() {
    let bundle = Bundle::verify(bytes(), &TrustStore::demo()).unwrap();
    let tolerance = bundle.manifest().golden.tolerance_abs;
    let mut model = Model::load(bundle, Variant::Fp32).unwrap();
    let report = model.check_golden(None).unwrap();
    assert!(report.cases >= 3);
    assert!(f64::from(report.max_abs_diff) <= tolerance);
}

#[test]
fn a_wrong_golden_expectation_is_caught() {
    let bundle = Bundle::verify(bytes(), &TrustStore::demo()).unwrap();
    let mut model = Model::load(bundle, Variant::Fp32).unwrap();
    // Far tighter than float noise allows between engines: must fail or be
    // exactly equal, and tract and onnxruntime never agree to 1e-12 on all values.
    assert!(model.check_golden(Some(1e-12)).is_err());
}

#[test]
fn the_int8_model_runs_and_stays_close_to_fp32() {
    let bundle = Bundle::verify(bytes(), &TrustStore::demo()).unwrap();
    let mut model = Model::load(bundle, Variant::Int8).unwrap();
    let report = model.check_golden(Some(1.0)).unwrap();
    assert!(
        report.max_abs_diff > 0.0,
        "INT8 should not be bit-identical"
    );
}

/// Probability of `finding` for a phantom study's image (the max over CT slices).
fn score(model: &mut Model, spec: &StudySpec, finding: &str) -> f32 {
    firstlook_phantom::generate(spec)
        .unwrap()
        .iter()
        .map(|inst| {
            let obj = dicom_object::OpenFileOptions::new()
                .read_preamble(dicom_object::file::ReadPreamble::Always)
                .from_reader(inst.file_bytes.as_slice())
                .unwrap();
            let image = modality_image(&obj).unwrap();
            let scores = model.score(&image).unwrap();
            let f = scores.findings.iter().find(|f| f.id == finding).unwrap();
            assert!(f.applicable);
            f.probability
        })
        .fold(0.0, f32::max)
}

#[test]
fn phantom_studies_score_higher_with_their_finding_than_without() {
    let bundle = Bundle::verify(bytes(), &TrustStore::demo()).unwrap();
    let mut model = Model::load(bundle, Variant::Fp32).unwrap();
    let mut pairs = Vec::new();
    for seed in 900..904 {
        for (kind, finding, name) in [
            (Kind::Cr, Finding::Pneumothorax, "pneumothorax"),
            (Kind::Dx, Finding::Effusion, "effusion"),
        ] {
            let normal = StudySpec::new(kind, seed);
            let sick = StudySpec::new(kind, seed).with_finding(finding);
            pairs.push((
                name,
                score(&mut model, &sick, name),
                score(&mut model, &normal, name),
            ));
        }
        let normal = StudySpec::new(Kind::Ct, seed).with_count(26);
        let sick = normal.clone().with_finding(Finding::Hemorrhage);
        pairs.push((
            "hemorrhage",
            score(&mut model, &sick, "hemorrhage"),
            score(&mut model, &normal, "hemorrhage"),
        ));
    }
    let right = pairs
        .iter()
        .filter(|(_, sick, normal)| sick > normal)
        .count();
    assert!(right * 4 >= pairs.len() * 3, "{pairs:?}");
}
