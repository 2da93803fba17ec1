//! `firstlook-provision bundle keygen|sign|verify`, run as the field engineer
//! would.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use firstlook::bundle::{Bundle, PublicKey, TrustStore};

const STAGING_MANIFEST: &str = include_str!("../../../daemon/src/bundle/testdata/manifest.toml");
const MODEL: &[u8] = b"\x08\x07not really an onnx model, but bytes all the same";

fn provision(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firstlook-provision"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn staging(dir: &Path) -> PathBuf {
    let s = dir.join("staging");
    std::fs::create_dir_all(s.join("golden")).unwrap();
    std::fs::write(s.join("manifest.toml"), STAGING_MANIFEST).unwrap();
    std::fs::write(s.join("model.onnx"), MODEL).unwrap();
    std::fs::write(s.join("MODEL_CARD.md"), "# firstlook-test\n").unwrap();
    for name in ["case0_input", "case0_logits", "case0_heatmap"] {
        std::fs::write(s.join(format!("golden/{name}.npy")), name).unwrap();
    }
    s
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// keygen, then sign the staging folder: (key prefix, bundle path).
fn signed_bundle(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let prefix = dir.join("vendor");
    let out = provision(&["bundle", "keygen", "--out", p(&prefix)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundle = dir.join("model.flb");
    let staging = staging(dir);
    let key = prefix.with_extension("secret");
    let out = provision(&[
        "bundle",
        "sign",
        "--key",
        p(&key),
        "--dir",
        p(&staging),
        "--out",
        p(&bundle),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (prefix, bundle)
}

/// Runs verify expecting failure; returns its one-line reason.
fn verify_fails(args: &[&str]) -> String {
    let out = provision(args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let reasons = stderr
        .lines()
        .filter(|l| !l.starts_with("no --trust given"));
    assert_eq!(reasons.count(), 1, "{stderr}");
    stderr
}

#[test]
fn keygen_sign_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, bundle) = signed_bundle(dir.path());
    let secret = prefix.with_extension("secret");
    let public = prefix.with_extension("pub");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .starts_with("firstlook-ed25519-public:"));

    let out = provision(&["bundle", "verify", "--trust", p(&public), p(&bundle)]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let key = PublicKey::load(&public).unwrap();
    let mut trust = TrustStore::new();
    trust.add("vendor", key);
    let verified = Bundle::open(&bundle, &trust).unwrap();
    for expected in [
        "OK".to_owned(),
        "firstlook-test".to_owned(),
        "0.1.0".to_owned(),
        "clinical_use: false".to_owned(),
        "pneumothorax (urgent), intracranial_haemorrhage (urgent)".to_owned(),
        format!("vendor (key id {})", key.key_id()),
        verified.sha256_hex(),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} not in:\n{stdout}");
    }
    assert_eq!(verified.model_bytes(), MODEL);
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("k");
    assert!(provision(&["bundle", "keygen", "--out", p(&prefix)])
        .status
        .success());
    let before = std::fs::read(prefix.with_extension("secret")).unwrap();
    let out = provision(&["bundle", "keygen", "--out", p(&prefix)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read(prefix.with_extension("secret")).unwrap(),
        before
    );
}

#[test]
fn verify_names_the_reason_for_a_bad_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bundle) = signed_bundle(dir.path());
    let bytes = std::fs::read(&bundle).unwrap();

    let (other, _) = signed_bundle(&dir.path().join("other"));
    let other_pub = other.with_extension("pub");
    let reason = verify_fails(&["bundle", "verify", "--trust", p(&other_pub), p(&bundle)]);
    assert!(reason.contains("signed by unknown key"), "{reason}");

    let public = dir.path().join("vendor.pub");
    let tampered = dir.path().join("tampered.flb");
    let at = bytes.windows(MODEL.len()).position(|w| w == MODEL).unwrap();
    let mut changed = bytes.clone();
    changed[at + 5] ^= 0x01;
    std::fs::write(&tampered, &changed).unwrap();
    let reason = verify_fails(&["bundle", "verify", "--trust", p(&public), p(&tampered)]);
    assert!(reason.contains("model.onnx: sha256 mismatch"), "{reason}");

    let manifest_size = usize::from_str_radix(&text(&bytes[124..135]), 8).unwrap();
    assert_ne!(
        manifest_size % 512,
        0,
        "the manifest leaves padding to change"
    );
    let mut changed = bytes.clone();
    changed[512 + manifest_size] = 1;
    std::fs::write(&tampered, &changed).unwrap();
    let reason = verify_fails(&["bundle", "verify", "--trust", p(&public), p(&tampered)]);
    assert!(
        reason.contains("not a canonical firstlook bundle"),
        "{reason}"
    );

    let reason = verify_fails(&["bundle", "verify", "--trust", p(&bundle), p(&bundle)]);
    assert!(
        reason.contains("firstlook-ed25519-public:<64 hex digits>"),
        "{reason}"
    );

    let secret = dir.path().join("vendor.secret");
    let reason = verify_fails(&["bundle", "verify", "--trust", p(&secret), p(&bundle)]);
    assert!(reason.contains("this is a secret key file"), "{reason}");
}

#[test]
fn verify_without_trust_uses_the_demo_key() {
    let dir = tempfile::tempdir().unwrap();
    let staging = staging(dir.path());
    let demo_secret = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/demo/keys/demo-vendor-TEST-KEY-NOT-SECRET.secret"
    );
    let bundle = dir.path().join("demo.flb");
    let out = provision(&[
        "bundle",
        "sign",
        "--key",
        demo_secret,
        "--dir",
        p(&staging),
        "--out",
        p(&bundle),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = provision(&["bundle", "verify", p(&bundle)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("demo trust store"));
    assert!(text(&out.stdout).contains("demo-vendor-TEST-KEY"));

    let (_, vendor_bundle) = signed_bundle(&dir.path().join("vendor"));
    let reason = verify_fails(&["bundle", "verify", p(&vendor_bundle)]);
    assert!(reason.contains("signed by unknown key"), "{reason}");
}

#[test]
fn tar_lists_and_extracts_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bundle) = signed_bundle(dir.path());
    let out = Command::new("tar")
        .arg("-tvf")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "manifest.toml",
            "MODEL_CARD.md",
            "golden/case0_heatmap.npy",
            "golden/case0_input.npy",
            "golden/case0_logits.npy",
            "model.onnx",
            "signature.toml",
        ]
    );
    assert!(
        listing.lines().all(|l| l.starts_with("-rw-r--r-- 0/0")),
        "{listing}"
    );

    let extracted = dir.path().join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&bundle)
        .arg("-C")
        .arg(&extracted)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(extracted.join("model.onnx")).unwrap(), MODEL);
}

#[test]
fn bench_times_the_demo_model_back_to_back_or_paced() {
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/demo/firstlook-demo.flb"
    );
    let timed = |args: &[&str]| {
        let started = std::time::Instant::now();
        let out = provision(&[&["bundle", "bench", "--runs", "3"], args, &[demo]].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (report, started.elapsed())
    };
    let (report, _) = timed(&[]);
    assert_eq!(report["backend"], "tract");
    assert_eq!(report["runs"], 3);
    assert_eq!(report["interval_ms"], 0);
    let (min, median) = (
        report["min_ms"].as_f64().unwrap(),
        report["median_ms"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= median, "{report}");
    assert_eq!(report["samples_ms"].as_array().unwrap().len(), 3);

    let (report, elapsed) = timed(&["--interval-ms", "200", "--phase-ms", "50"]);
    assert_eq!(report["interval_ms"], 200);
    assert_eq!(report["phase_ms"], 50);
    assert_eq!(report["runs"], 3);
    // Three starts 200 ms apart, idle in between and not inside the timings.
    assert!(
        elapsed >= std::time::Duration::from_millis(400),
        "{elapsed:?}"
    );
    assert!(report["max_ms"].as_f64().unwrap() < 200.0, "{report}");
}
