//! The committed demo bundle (models/demo/firstlook-demo.flb): it verifies
//! under the demo trust store only, any flipped byte breaks it, its golden
//! cases reproduce with tract, and it scores phantom DICOM studies through
//! the daemon's own decode → preprocess → engine path.

use std::path::{Path, PathBuf};

use firstlook::bundle::{build, Bundle, PublicKey, SecretKey, TrustStore};
use firstlook::model::{Model, ModelError, Variant};
use firstlook::pixels::modality_image;
use firstlook_kernels::npy;
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
    let golden = bundle.manifest().golden.clone();
    let (_, report) = Model::load(bundle, Variant::Fp32).unwrap();
    assert!(report.cases >= 4);
    assert!(f64::from(report.max_abs_diff) <= golden.tolerance_abs);
    // The INT8 model against its own expected outputs (from onnxruntime).
    let bundle = Bundle::verify(bytes(), &TrustStore::demo()).unwrap();
    let (_, report) = Model::load(bundle, Variant::Int8).unwrap();
    assert!(f64::from(report.max_abs_diff) <= golden.tolerance_abs_int8.unwrap());
}

/// The demo bundle's staging folder, rebuilt from its own files, with
/// `change` applied, signed again with the (public) demo key.
fn resigned(change: impl FnOnce(&Path)) -> Bundle {
    let bundle = Bundle::verify(bytes(), &TrustStore::demo()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("golden")).unwrap();
    for f in &bundle.manifest().files {
        std::fs::write(dir.path().join(&f.path), bundle.file(&f.path).unwrap()).unwrap();
    }
    std::fs::write(
        dir.path().join("manifest.toml"),
        toml::to_string(bundle.manifest()).unwrap(),
    )
    .unwrap();
    change(dir.path());
    let key = SecretKey::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models/demo/keys/demo-vendor-TEST-KEY-NOT-SECRET.secret"),
    )
    .unwrap();
    Bundle::verify(build(dir.path(), &key).unwrap(), &TrustStore::demo()).unwrap()
}

#[test]
fn a_validly_signed_bundle_whose_model_misses_its_golden_outputs_is_refused() {
    let bundle = resigned(|dir| {
        let path = dir.join("golden/case0_logits.npy");
        let mut array = npy::decode(&std::fs::read(&path).unwrap()).unwrap();
        array.data[0] += 0.01;
        std::fs::write(&path, npy::encode(&array)).unwrap();
    });
    match Model::load(bundle, Variant::Fp32) {
        Err(ModelError::GoldenMismatch {
            case: 0,
            output: 0,
            index: 0,
            ..
        }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a model that misses its golden outputs was loaded"),
    }
}

#[test]
fn the_manifest_routes_are_the_phantom_training_pipelines() {
    let bundle = Bundle::verify(bytes(), &TrustStore::demo()).unwrap();
    let m = bundle.manifest();
    let side = m.inputs[0].shape[3] as usize;
    for modality in ["CR", "DX"] {
        let route = m.route_for(modality).unwrap().pipeline().unwrap();
        assert_eq!(route, firstlook_phantom::training::chest_pipeline(side));
    }
    let route = m.route_for("CT").unwrap().pipeline().unwrap();
    assert_eq!(route, firstlook_phantom::training::head_pipeline(side));
}

/// (probability, flagged) of `finding` for a phantom study (the max over CT slices).
fn score(model: &mut Model, spec: &StudySpec, finding: &str) -> (f32, bool) {
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
            for other in scores.findings.iter().filter(|o| !o.applicable) {
                assert!(
                    !other.positive,
                    "{} flagged on a {}",
                    other.id, image.modality
                );
            }
            (f.probability, f.positive)
        })
        .fold((0.0, false), |(p, flag), (q, f)| (p.max(q), flag || f))
}

#[test]
fn phantom_studies_score_higher_with_their_finding_than_without() {
    let bundle = Bundle::verify(bytes(), &TrustStore::demo()).unwrap();
    let (mut model, _) = Model::load(bundle, Variant::Fp32).unwrap();
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
