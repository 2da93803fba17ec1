//! The demo model end to end with real tools: phantom files that DCMTK and
//! pydicom read, the committed bundle verified and refused when tampered with
//! by `firstlook-provision`, and real images from pydicom-data decoded and
//! scored through firstlook's own path.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use firstlook::pixels::modality_image;
use firstlook_e2e::{
    demo_bundle, pydicom_test_file, release_bin, run_cmd, scratch, write_study, Finding, Kind,
    StudySpec,
};

fn provision(args: &[&str]) -> firstlook_e2e::CmdOutput {
    run_cmd(
        Command::new(release_bin("firstlook-provision")).args(args),
        Duration::from_secs(120),
    )
}

#[test]
fn phantom_files_parse_with_dcmdump_and_pydicom() {
    let dir = scratch("phantom_files_parse");
    let mut files = Vec::new();
    for (kind, finding, count) in [
        (Kind::Cr, Finding::Pneumothorax, 1),
        (Kind::Dx, Finding::Effusion, 1),
        (Kind::Ct, Finding::Hemorrhage, 3),
    ] {
        let spec = StudySpec::new(kind, 31)
            .with_finding(finding)
            .with_count(count);
        files.extend(write_study(&spec, &dir.path().join(kind.as_str())).unwrap());
    }
    for file in &files {
        let out = run_cmd(
            Command::new("/usr/bin/dcmdump").arg("-q").arg(file),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "dcmdump {}:\n{out}", file.display());
        assert!(
            out.stdout
                .contains("SYNTHETIC PHANTOM - NOT FOR CLINICAL USE"),
            "{out}"
        );
    }
    let script = "import sys, pydicom\n\
        for p in sys.argv[1:]:\n\
        \x20   d = pydicom.dcmread(p)\n\
        \x20   a = d.pixel_array\n\
        \x20   assert a.shape == (d.Rows, d.Columns), (p, a.shape)\n\
        \x20   assert int(a.max()) < (1 << d.BitsStored) if d.PixelRepresentation == 0 else True\n\
        \x20   print(d.Modality, d.SOPClassUID, d.PhotometricInterpretation, a.shape)\n";
    let out = run_cmd(
        Command::new("python3").arg("-c").arg(script).args(&files),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "pydicom:\n{out}");
    assert_eq!(out.stdout.lines().count(), files.len(), "{out}");
    assert!(
        out.stdout.contains("DX 1.2.840.10008.5.1.4.1.1.1.1 "),
        "{out}"
    );
}

#[test]
fn provision_verifies_the_demo_bundle_and_refuses_a_tampered_copy() {
    let out = provision(&["bundle", "verify", demo_bundle().to_str().unwrap()]);
    assert!(out.status.success(), "{out}");
    assert!(out.stdout.contains("clinical_use: false"), "{out}");

    let dir = scratch("tampered_bundle");
    let mut bytes = std::fs::read(demo_bundle()).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    let bad = dir.path().join("tampered.flb");
    std::fs::write(&bad, bytes).unwrap();
    let out = provision(&["bundle", "verify", bad.to_str().unwrap()]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("tampered.flb"), "{out}");
}

#[test]
fn real_radiograph_and_head_ct_from_pydicom_data_decode_in_range() {
    let cr = dicom_object::open_file(pydicom_test_file("RG1_UNCR.dcm")).unwrap();
    let cr = modality_image(&cr).unwrap();
    assert_eq!(cr.modality, "CR");
    assert!(cr.monochrome1);
    assert_eq!((cr.image.width, cr.image.height), (1841, 1955));
    let max = cr.image.values.iter().copied().fold(f32::MIN, f32::max);
    assert!(max < 32768.0, "15 bits stored: {max}");

    let ct = dicom_object::open_file(pydicom_test_file("693_UNCR.dcm")).unwrap();
    let ct = modality_image(&ct).unwrap();
    assert_eq!(ct.modality, "CT");
    assert!(!ct.monochrome1);
    let (lo, hi) = ct
        .image
        .values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!((-3100.0..=-900.0).contains(&lo), "air/padding in HU: {lo}");
    assert!((500.0..=4000.0).contains(&hi), "bone in HU: {hi}");
}

#[test]
fn the_demo_bundle_scores_real_images_through_firstlooks_own_path() {
    let files = [
        pydicom_test_file("RG1_UNCR.dcm"),
        pydicom_test_file("693_UNCR.dcm"),
    ];
    let bundle = demo_bundle();
    let mut args = vec!["bundle", "try", "--json", bundle.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = provision(&args);
    assert!(out.status.success(), "{out}");
    assert!(out.stderr.contains("golden check passed"), "{out}");
    let results: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_eq!(r["clinical_use"], false);
        for f in r["findings"].as_object().unwrap().values() {
            let p = f["probability"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p), "{r}");
        }
    }
    assert_eq!(results[0]["modality"], "CR");
    assert_eq!(results[0]["findings"]["hemorrhage"]["applicable"], false);
    assert_eq!(results[1]["modality"], "CT");
    assert_eq!(results[1]["findings"]["hemorrhage"]["applicable"], true);
}

#[test]
fn bundle_try_decodes_jpeg_2000_and_refuses_what_it_cannot_decode_clearly() {
    let out = provision(&[
        "bundle",
        "try",
        demo_bundle().to_str().unwrap(),
        pydicom_test_file("693_J2KI.dcm").to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("hemorrhage"), "{out}");
    // 12-bit lossy JPEG (extended, process 4) has no decoder here yet.
    let out = provision(&[
        "bundle",
        "try",
        demo_bundle().to_str().unwrap(),
        pydicom_test_file("JPGExtended.dcm").to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("could not be decoded"), "{out}");
}

/// Modality values of a real file as pydicom decodes them (its own
/// `apply_modality_lut`; pixel padding replaced by the darkest value as the
/// parity reference does), summarised: count, sum, min, max and every 9973rd value.
fn pydicom_summary(path: &Path) -> Vec<f64> {
    let script = "import sys, pydicom\n\
        sys.path.insert(0, sys.argv[2])\n\
        from preprocess import modality_values\n\
        d = pydicom.dcmread(sys.argv[1])\n\
        a = modality_values(d.pixel_array, d).ravel()\n\
        print(len(a), a.sum(), a.min(), a.max(), *a[::9973])\n";
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference");
    let out = run_cmd(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .arg(reference),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "pydicom:\n{out}");
    out.stdout
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn decoded_values_match_pydicom_pixel_for_pixel_on_real_files() {
    for name in ["RG1_UNCR.dcm", "693_UNCR.dcm", "693_UNCI.dcm"] {
        let path = pydicom_test_file(name);
        let image = modality_image(&dicom_object::open_file(&path).unwrap()).unwrap();
        let values: Vec<f64> = image.image.values.iter().map(|&v| f64::from(v)).collect();
        let ours: Vec<f64> = [
            values.len() as f64,
            values.iter().sum(),
            values.iter().copied().fold(f64::MAX, f64::min),
            values.iter().copied().fold(f64::MIN, f64::max),
        ]
        .into_iter()
        .chain(values.iter().step_by(9973).copied())
        .collect();
        let theirs = pydicom_summary(&path);
        assert_eq!(ours.len(), theirs.len(), "{name}");
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{name} item {i}: ours {a}, pydicom {b}"
            );
        }
    }
}
