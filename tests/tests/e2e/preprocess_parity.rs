//! Preprocessing parity: the same files through firstlook's decoders and
//! kernels, and through an independent reference (pydicom with the
//! pylibjpeg decoders for decoding, the modality LUT and the image's own
//! VOI; numpy for padding, resize, letterbox, windows and normalisation:
//! tests/reference/preprocess.py). Every f32 output must agree within 1e-4
//! relative; the largest difference of each case is printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use firstlook::pixels::{modality_frames, trailing_pixel_data, ModalityImage, Pixels};
use firstlook_e2e::*;
use firstlook_kernels::npy;
use firstlook_kernels::preprocess::{Pipeline, Rows, Window};
use serde_json::{json, Value};

const TOLERANCE: f32 = 1e-4;

fn reference_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/preprocess.py")
}

/// The reference's output for every frame: (shape, values).
fn reference(file: &Path, pipeline: &Value, out: &Path) -> (Vec<usize>, Vec<f32>) {
    let result = run_cmd(
        Command::new("python3")
            .arg(reference_script())
            .arg(file)
            .arg(pipeline.to_string())
            .arg(out),
        Duration::from_secs(300),
    );
    assert!(result.status.success(), "reference failed:\n{result}");
    let array = npy::decode(&std::fs::read(out).unwrap()).unwrap();
    (array.shape, array.data)
}

fn window(spec: &Value, image: &ModalityImage<impl Rows>) -> Window {
    let f = |k: &str| spec[k].as_f64().unwrap() as f32;
    match spec["window"].as_str().unwrap() {
        "fixed" => Window::Fixed {
            center: f("center"),
            width: f("width"),
        },
        "percentile" => Window::Percentile {
            low: f("low"),
            high: f("high"),
        },
        "dicom" => image
            .voi
            .window(spec["index"].as_u64().unwrap_or(0) as usize)
            .expect("the image has the VOI view the case asks for"),
        other => panic!("unknown window {other}"),
    }
}

/// firstlook's output for every frame: (shape, values), the way the
/// daemon's workers get it: the data set read up to its Pixel Data, native
/// samples read in place from the file's bytes (others from the whole data
/// set), the modality LUT applied as the resize reads each row.
fn ours(file: &Path, p: &Value) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(file).unwrap();
    let header = firstlook::spool::part10::parse(&bytes, true).unwrap();
    let whole = dicom_object::open_file(file).unwrap();
    let pixels = match trailing_pixel_data(&header, &bytes) {
        Some(data) => Pixels::native(&header, data),
        None => Pixels::all_frames(&whole),
    }
    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let frames: Vec<_> = (0..pixels.frames())
        .map(|i| pixels.frame(i).unwrap())
        .collect();
    let channels = p["channels"].as_array().unwrap();
    let (rows, cols) = (
        p["rows"].as_u64().unwrap() as usize,
        p["cols"].as_u64().unwrap() as usize,
    );
    let mut data = Vec::new();
    for image in &frames {
        let pipeline = Pipeline {
            channels: channels.iter().map(|c| window(c, image)).collect(),
            invert_monochrome1: p["invert_monochrome1"].as_bool().unwrap(),
            rows,
            cols,
            letterbox: p["letterbox"].as_bool().unwrap(),
            normalize_mean: p["mean"].as_f64().unwrap() as f32,
            normalize_std: p["std"].as_f64().unwrap() as f32,
        };
        data.extend(pipeline.run(&image.image, image.monochrome1).unwrap());
    }
    (vec![frames.len(), channels.len(), rows, cols], data)
}

fn pipeline(channels: Value, rows: u32, cols: u32, letterbox: bool) -> Value {
    json!({
        "channels": channels,
        "invert_monochrome1": true,
        "rows": rows,
        "cols": cols,
        "letterbox": letterbox,
        "mean": 0.5,
        "std": 0.25,
    })
}

/// Compares one case; returns the largest absolute difference.
fn check(name: &str, file: &Path, p: &Value, dir: &Path) -> f32 {
    check_within(name, file, p, dir, None)
}

/// [`check`], or within an absolute tolerance when one is given.
fn check_within(name: &str, file: &Path, p: &Value, dir: &Path, absolute: Option<f32>) -> f32 {
    let out = dir.join(format!("{}.npy", name.replace([' ', ','], "_")));
    let (ref_shape, want) = reference(file, p, &out);
    let (shape, got) = ours(file, p);
    assert_eq!(shape, ref_shape, "{name}: shapes differ");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = (g - w).abs();
        assert!(d.is_finite(), "{name}: value {i} is {g} (reference {w})");
        if d > worst {
            (worst, at) = (d, i);
        }
    }
    println!(
        "PARITY {name:<58} {:>9} values  max_abs_err={worst:.3e} (at {at}: ours {} reference {})",
        got.len(),
        got[at],
        want[at]
    );
    let allowed = absolute.unwrap_or(TOLERANCE * scale);
    assert!(
        worst <= allowed,
        "{name}: max abs error {worst} at {at} (ours {}, reference {}) exceeds {allowed}",
        got[at],
        want[at]
    );
    worst
}

fn head_windows() -> Value {
    json!([
        {"window": "fixed", "center": 40.0, "width": 80.0},
        {"window": "fixed", "center": 80.0, "width": 200.0},
        {"window": "fixed", "center": 600.0, "width": 2800.0},
    ])
}

#[test]
fn ct_several_windows_jpeg2000_padding_and_sigmoid_match_pydicom() {
    let dir = scratch("parity-ct");
    let ct = pydicom_test_file("CT_small.dcm");
    check(
        "CT native, brain+subdural+bone, padding, bilinear up",
        &ct,
        &pipeline(head_windows(), 256, 256, false),
        dir.path(),
    );
    check(
        "CT JPEG 2000 (693_J2KR), windows + its own, letterbox",
        &pydicom_test_file("693_J2KR.dcm"),
        &pipeline(
            json!([
                {"window": "fixed", "center": 40.0, "width": 80.0},
                {"window": "dicom", "index": 0},
            ]),
            200,
            256,
            true,
        ),
        dir.path(),
    );
    let sigmoid = dir.path().join("ct_sigmoid.dcm");
    let out = run_cmd(
        Command::new("python3")
            .arg(reference_script())
            .args(["--sigmoid"])
            .arg(&ct)
            .arg(&sigmoid)
            .args(["40", "400"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out}");
    check(
        "CT with a SIGMOID VOI LUT function",
        &sigmoid,
        &pipeline(json!([{"window": "dicom"}]), 64, 64, false),
        dir.path(),
    );
}

#[test]
fn radiographs_monochrome1_and_voi_lut_sequence_match_pydicom() {
    let dir = scratch("parity-cr");
    let percentile = json!([{"window": "percentile", "low": 0.5, "high": 99.5}]);
    check(
        "CR MONOCHROME1 JPEG 2000 (RG1_J2KR), percentile, letterbox",
        &pydicom_test_file("RG1_J2KR.dcm"),
        &pipeline(percentile.clone(), 256, 256, true),
        dir.path(),
    );
    check(
        "CR MONOCHROME1 native (RG1_UNCI), its own window",
        &pydicom_test_file("RG1_UNCI.dcm"),
        &pipeline(json!([{"window": "dicom"}]), 256, 256, false),
        dir.path(),
    );
    check(
        "VOI LUT Sequence (vlut_04)",
        &pydicom_test_file("vlut_04.dcm"),
        &pipeline(json!([{"window": "dicom"}]), 128, 128, false),
        dir.path(),
    );
    // The demo model's own route on a phantom chest stored MONOCHROME1.
    let phantom_dir = dir.path().join("phantom");
    let file = (1..40)
        .find_map(|seed| {
            let files = phantom(
                &StudySpec::new(Kind::Dx, seed),
                &phantom_dir.join(seed.to_string()),
            );
            let obj = dicom_object::open_file(&files[0].path).unwrap();
            let pi = obj.element(dicom_object::Tag(0x0028, 0x0004)).unwrap();
            (pi.to_str().unwrap().trim() == "MONOCHROME1").then(|| files[0].path.clone())
        })
        .expect("a MONOCHROME1 phantom among 40 seeds");
    check(
        "phantom DX MONOCHROME1, the demo chest route",
        &file,
        &pipeline(percentile, 256, 256, false),
        dir.path(),
    );
}

#[test]
fn rle_jpeg_lossless_and_multi_frame_match_pydicom() {
    let dir = scratch("parity-codecs");
    let percentile = json!([{"window": "percentile", "low": 1.0, "high": 99.0}]);
    check(
        "MR RLE",
        &pydicom_test_file("MR_small_RLE.dcm"),
        &pipeline(json!([{"window": "dicom"}]), 64, 64, false),
        dir.path(),
    );
    check(
        "JPEG lossless process 14 (JPEG-LL)",
        &pydicom_test_file("JPEG-LL.dcm"),
        &pipeline(percentile.clone(), 128, 64, false),
        dir.path(),
    );
    for name in [
        "emri_small.dcm",
        "emri_small_RLE.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
    ] {
        check(
            &format!("multi-frame, 10 frames ({name})"),
            &pydicom_test_file(name),
            &pipeline(percentile.clone(), 32, 48, true),
            dir.path(),
        );
    }
}

#[test]
fn jpeg_ls_matches_pydicom() {
    let dir = scratch("parity-jpegls");
    let lossless = pydicom_test_file("MR_small_jpeg_ls_lossless.dcm");
    if cfg!(feature = "jpegls") {
        check(
            "MR JPEG-LS lossless, its own window, bilinear up",
            &lossless,
            &pipeline(json!([{"window": "dicom"}]), 96, 96, false),
            dir.path(),
        );
        check(
            "JPEG-LS near-lossless 16-bit",
            &pydicom_test_file("JPEGLSNearLossless_16.dcm"),
            &pipeline(
                json!([{"window": "percentile", "low": 1.0, "high": 99.0}]),
                32,
                32,
                false,
            ),
            dir.path(),
        );
    } else {
        let obj = dicom_object::open_file(&lossless).unwrap();
        let err = modality_frames(&obj).unwrap_err().to_string();
        assert!(err.contains("jpegls"), "{err}");
    }
}

/// Lossy JPEG made by DCMTK's dcmcjpeg from pydicom's 8-bit grey sample:
/// baseline (process 1). The standard lets decoders differ within its IDCT
/// accuracy limits, so jpeg-decoder and libjpeg may differ by a grey level.
#[test]
fn lossy_jpeg_baseline_matches_pydicom_within_a_grey_level() {
    let dir = scratch("parity-jpeg-lossy");
    let native = dir.path().join("native.dcm");
    let baseline = dir.path().join("baseline.dcm");
    let source = pydicom_test_file("JPGLosslessP14SV1_1s_1f_8b.dcm");
    let out = run_cmd(
        tool("/usr/bin/dcmdjpeg").arg(&source).arg(&native),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out}");
    let out = run_cmd(
        tool(DCMCJPEG).arg("+eb").arg(&native).arg(&baseline),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out}");
    // A fixed window over the 8-bit range: one grey level is 1/255 before
    // normalisation by std 0.25.
    let worst = check_within(
        "JPEG baseline 8-bit lossy (dcmcjpeg +eb)",
        &baseline,
        &pipeline(
            json!([{"window": "fixed", "center": 127.5, "width": 255.0}]),
            768,
            1024,
            false,
        ),
        dir.path(),
        Some(4.0 / 255.0 + 1e-6),
    );
    println!(
        "baseline JPEG decoders differ by at most {:.2} grey levels",
        worst * 0.25 * 255.0
    );
}
