use std::path::Path;

use sha2::{Digest, Sha256};

use super::container::{self, ContainerError};
use super::signature::SignatureFile;
use super::*;

const STAGING_MANIFEST: &str = include_str!("testdata/manifest.toml");
const DEMO_SECRET: &str =
    include_str!("../../../models/demo/keys/demo-vendor-TEST-KEY-NOT-SECRET.secret");

fn vendor_key() -> SecretKey {
    SecretKey::from_bytes([7; 32])
}

fn other_key() -> SecretKey {
    SecretKey::from_bytes([9; 32])
}

fn trusting(key: &SecretKey) -> TrustStore {
    let mut store = TrustStore::new();
    store.add("test vendor", key.public_key());
    store
}

fn model_bytes() -> Vec<u8> {
    (0..700u32).map(|i| (i * 31 % 251) as u8).collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

/// A staging folder: manifest, fake model, model card, one golden case.
fn staging_with(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "manifest.toml", manifest.as_bytes());
    write(d, "model.onnx", &model_bytes());
    write(d, "MODEL_CARD.md", b"# firstlook-test\n\nNot a model.\n");
    std::fs::create_dir(d.join("golden")).unwrap();
    write(d, "golden/case0_input.npy", b"\x93NUMPY\x01\x00input");
    write(d, "golden/case0_logits.npy", b"\x93NUMPY\x01\x00logits");
    write(d, "golden/case0_heatmap.npy", b"\x93NUMPY\x01\x00heatmap");
    dir
}

fn staging() -> tempfile::TempDir {
    staging_with(STAGING_MANIFEST)
}

fn built() -> Vec<u8> {
    build(staging().path(), &vendor_key()).unwrap()
}

/// (manifest text, files in order) of a bundle.
fn parts(bytes: &[u8]) -> (String, Vec<(String, Vec<u8>)>) {
    let entries = container::decode(bytes).unwrap();
    let manifest = String::from_utf8(entries[0].data.to_vec()).unwrap();
    let files = entries[1..entries.len() - 1]
        .iter()
        .map(|e| (e.name.to_owned(), e.data.to_vec()))
        .collect();
    (manifest, files)
}

/// A bundle with any manifest text and entries, signed by `key`, bypassing
/// every check that `build` makes.
fn assemble(manifest: &str, files: &[(String, Vec<u8>)], key: &SecretKey) -> Vec<u8> {
    let signature = SignatureFile::sign(manifest.as_bytes(), key).to_toml();
    let mut entries: Vec<(&str, &[u8])> = vec![(MANIFEST, manifest.as_bytes())];
    entries.extend(files.iter().map(|(p, d)| (p.as_str(), d.as_slice())));
    entries.push((SIGNATURE, signature.as_bytes()));
    container::encode(&entries)
}

fn verify_err(bytes: Vec<u8>) -> BundleError {
    Bundle::verify(bytes, &trusting(&vendor_key())).unwrap_err()
}

fn built_manifest() -> Manifest {
    Manifest::from_toml_bytes(parts(&built()).0.as_bytes()).unwrap()
}

/// Where each entry's header starts.
fn header_offsets(bytes: &[u8]) -> Vec<usize> {
    container::decode(bytes)
        .unwrap()
        .iter()
        .map(|e| e.offset - 512)
        .collect()
}

/// Edits one header and writes a correct checksum for the edit.
fn patch_header(bytes: &mut [u8], at: usize, edit: impl FnOnce(&mut [u8])) {
    let h = &mut bytes[at..at + 512];
    edit(h);
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn a_built_bundle_verifies_and_exposes_its_parts() {
    let bytes = built();
    let bundle = Bundle::verify(bytes.clone(), &trusting(&vendor_key())).unwrap();
    assert_eq!(bundle.model_bytes(), model_bytes().as_slice());
    assert_eq!(bundle.int8_model_bytes(), None);
    assert_eq!(
        bundle.file("golden/case0_logits.npy"),
        Some(&b"\x93NUMPY\x01\x00logits"[..])
    );
    assert_eq!(bundle.file("nope"), None);
    assert!(bundle.model_card().starts_with(b"# firstlook-test"));
    assert_eq!(bundle.key_id(), vendor_key().public_key().key_id());
    assert_eq!(bundle.signer().name, "test vendor");
    assert_eq!(bundle.sha256_hex(), hex::encode(Sha256::digest(&bytes)));
    assert_eq!(bundle.as_bytes(), bytes.as_slice());

    let m = bundle.manifest();
    assert_eq!(
        (m.name.as_str(), m.version.as_str()),
        ("firstlook-test", "0.1.0")
    );
    assert!(!m.clinical_use);
    assert_eq!(m.logits_len(), 2);
    assert_eq!(m.finding("pneumothorax").unwrap().output_index, 0);
    assert_eq!(
        m.route_for("CT").unwrap().window(),
        Some(Window::Fixed {
            center: 40.0,
            width: 80.0
        })
    );
    let roles: Vec<(&str, Role)> = m.files.iter().map(|f| (f.path.as_str(), f.role)).collect();
    assert_eq!(
        roles,
        [
            ("MODEL_CARD.md", Role::ModelCard),
            ("golden/case0_heatmap.npy", Role::Golden),
            ("golden/case0_input.npy", Role::Golden),
            ("golden/case0_logits.npy", Role::Golden),
            ("model.onnx", Role::Model),
        ]
    );
    let model = m.model_file().unwrap();
    assert_eq!(model.size, 700);
    assert_eq!(model.sha256, hex::encode(Sha256::digest(model_bytes())));
}

#[test]
fn the_container_is_a_plain_canonical_ustar_archive() {
    let bytes = built();
    let names: Vec<String> = container::decode(&bytes)
        .unwrap()
        .iter()
        .map(|e| e.name.to_owned())
        .collect();
    assert_eq!(names.first().unwrap(), MANIFEST);
    assert_eq!(names.last().unwrap(), SIGNATURE);
    for at in header_offsets(&bytes) {
        let h = &bytes[at..at + 512];
        assert_eq!(&h[100..108], b"0000644\0", "mode");
        assert_eq!(&h[108..116], b"0000000\0", "uid");
        assert_eq!(&h[116..124], b"0000000\0", "gid");
        assert_eq!(&h[136..148], b"00000000000\0", "mtime");
        assert_eq!(h[156], b'0', "regular file");
        assert_eq!(&h[257..265], b"ustar\x0000", "magic");
        assert!(h[265..329].iter().all(|&b| b == 0), "user and group names");
    }
    assert_eq!(bytes.len() % 512, 0);
    assert!(bytes[bytes.len() - 1024..].iter().all(|&b| b == 0));
}

#[test]
fn building_twice_gives_identical_bytes() {
    let first = built();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = built();
    assert_eq!(first, second);
    assert_ne!(first, build(staging().path(), &other_key()).unwrap());
}

#[test]
fn flipping_any_byte_makes_verify_fail() {
    let bytes = built();
    let trust = trusting(&vendor_key());
    let mut flipped = bytes.clone();
    for i in 0..bytes.len() {
        flipped[i] ^= 0x01;
        assert!(
            Bundle::verify(flipped.clone(), &trust).is_err(),
            "byte {i} xor 0x01 still verifies"
        );
        flipped[i] ^= 0x01;
    }
    for i in (0..bytes.len()).step_by(7) {
        flipped[i] ^= 0x80;
        assert!(
            Bundle::verify(flipped.clone(), &trust).is_err(),
            "byte {i} xor 0x80 still verifies"
        );
        flipped[i] ^= 0x80;
    }
    assert!(Bundle::verify(flipped, &trust).is_ok());
}

#[test]
fn truncated_bundles_fail() {
    let bytes = built();
    let mut cuts: Vec<usize> = (0..bytes.len()).step_by(97).collect();
    cuts.extend((0..bytes.len()).step_by(512));
    cuts.push(bytes.len() - 1);
    cuts.push(bytes.len() - 512);
    for cut in cuts {
        assert!(
            Bundle::verify(bytes[..cut].to_vec(), &trusting(&vendor_key())).is_err(),
            "cut at {cut} still verifies"
        );
    }
}

#[test]
fn bytes_after_the_end_of_archive_fail() {
    let bytes = built();
    let record_padding = 10240 - bytes.len() % 10240;
    for extra in [
        vec![0u8],
        vec![0; 512],
        vec![0; 1024],
        vec![0; record_padding],
        b"x".to_vec(),
    ] {
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        assert!(
            matches!(
                verify_err(longer),
                BundleError::Container(ContainerError::TrailingData { .. })
            ),
            "{} bytes appended",
            extra.len()
        );
    }
}

#[test]
fn a_key_outside_the_trust_store_fails() {
    let err = Bundle::verify(built(), &trusting(&other_key())).unwrap_err();
    let id = vendor_key().public_key().key_id();
    assert!(matches!(err, BundleError::UnknownKey { key_id } if key_id == id));
    assert_eq!(err.to_string(), format!("signed by unknown key {id}"));
    assert!(matches!(
        Bundle::verify(built(), &TrustStore::new()),
        Err(BundleError::UnknownKey { .. })
    ));
}

#[test]
fn a_signature_by_another_key_under_a_trusted_id_fails() {
    let (manifest, files) = parts(&built());
    let mut forged = SignatureFile::sign(manifest.as_bytes(), &other_key());
    forged.key_id = vendor_key().public_key().key_id();
    let forged = forged.to_toml();
    let mut entries: Vec<(&str, &[u8])> = vec![(MANIFEST, manifest.as_bytes())];
    entries.extend(files.iter().map(|(p, d)| (p.as_str(), d.as_slice())));
    entries.push((SIGNATURE, forged.as_bytes()));
    let err = verify_err(container::encode(&entries));
    assert!(matches!(err, BundleError::BadSignature), "{err}");
    assert_eq!(err.to_string(), "signature does not verify");
}

#[test]
fn an_unlisted_extra_file_fails() {
    let (manifest, mut files) = parts(&built());
    files.push(("extra.bin".to_owned(), b"surprise".to_vec()));
    let err = verify_err(assemble(&manifest, &files, &vendor_key()));
    assert!(
        matches!(&err, BundleError::UnlistedFile { path } if path == "extra.bin"),
        "{err}"
    );
}

#[test]
fn a_missing_listed_file_fails() {
    let (manifest, mut files) = parts(&built());
    files.retain(|(p, _)| p != "MODEL_CARD.md");
    let err = verify_err(assemble(&manifest, &files, &vendor_key()));
    assert!(
        matches!(&err, BundleError::MissingFile { path } if path == "MODEL_CARD.md"),
        "{err}"
    );
}

#[test]
fn a_changed_file_fails_with_its_name() {
    let (manifest, mut files) = parts(&built());
    let model = files.iter().position(|(p, _)| p == "model.onnx").unwrap();
    files[model].1[10] ^= 0xff;
    let err = verify_err(assemble(&manifest, &files, &vendor_key()));
    assert_eq!(err.to_string(), "model.onnx: sha256 mismatch");
    files[model].1.push(0);
    let err = verify_err(assemble(&manifest, &files, &vendor_key()));
    assert!(
        matches!(
            err,
            BundleError::SizeMismatch {
                expected: 700,
                actual: 701,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn files_out_of_the_manifest_order_fail() {
    let (manifest, mut files) = parts(&built());
    files.reverse();
    let err = verify_err(assemble(&manifest, &files, &vendor_key()));
    assert!(matches!(err, BundleError::Layout(_)), "{err}");
}

#[test]
fn the_manifest_must_come_first_and_the_signature_last() {
    let (manifest, files) = parts(&built());
    let signature = SignatureFile::sign(manifest.as_bytes(), &vendor_key()).to_toml();
    let mut entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    entries.insert(0, (SIGNATURE, signature.as_bytes()));
    entries.push((MANIFEST, manifest.as_bytes()));
    let err = verify_err(container::encode(&entries));
    assert!(matches!(err, BundleError::Layout(_)), "{err}");
    let err = verify_err(container::encode(&[]));
    assert!(matches!(err, BundleError::Layout(_)), "{err}");
}

#[test]
fn unsafe_entry_names_fail() {
    let (manifest, files) = parts(&built());
    for name in [
        "../evil",
        "/etc/passwd",
        "golden/../../x",
        "golden/a/b",
        "sub/x",
        ".hidden",
        "a b",
    ] {
        let mut with = files.clone();
        with.push((name.to_owned(), b"x".to_vec()));
        let err = verify_err(assemble(&manifest, &with, &vendor_key()));
        assert!(
            matches!(&err, BundleError::Container(ContainerError::BadPath { name: n, .. }) if n == name),
            "{name}: {err}"
        );
    }
}

#[test]
fn duplicate_entries_fail() {
    let (manifest, mut files) = parts(&built());
    files.push(files[0].clone());
    let err = verify_err(assemble(&manifest, &files, &vendor_key()));
    assert!(
        matches!(
            err,
            BundleError::Container(ContainerError::Duplicate { .. })
        ),
        "{err}"
    );
}

#[test]
fn links_and_directories_fail() {
    for (flag, kind) in [
        (b'1', "hard link"),
        (b'2', "symbolic link"),
        (b'5', "directory"),
    ] {
        let mut bytes = built();
        let at = header_offsets(&bytes)[1];
        patch_header(&mut bytes, at, |h| h[156] = flag);
        let err = verify_err(bytes);
        assert!(
            matches!(err, BundleError::Container(ContainerError::NotRegularFile { kind: k, .. }) if k == kind),
            "{err}"
        );
    }
}

#[test]
fn header_fields_other_than_canonical_fail_at_their_byte() {
    let mut bytes = built();
    let at = header_offsets(&bytes)[1];
    patch_header(&mut bytes, at, |h| {
        h[100..108].copy_from_slice(b"0000755\0")
    });
    let err = verify_err(bytes);
    assert!(
        matches!(err, BundleError::Container(ContainerError::NotCanonical { offset }) if offset == at + 104),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("not a canonical firstlook bundle: byte "));

    let mut bytes = built();
    let at = header_offsets(&bytes)[2];
    patch_header(&mut bytes, at, |h| {
        h[136..147].copy_from_slice(b"14700000000")
    });
    assert!(matches!(
        verify_err(bytes),
        BundleError::Container(ContainerError::NotCanonical { .. })
    ));
}

#[test]
fn the_signature_file_has_one_spelling() {
    let (manifest, files) = parts(&built());
    let good = SignatureFile::sign(manifest.as_bytes(), &vendor_key()).to_toml();
    let signature_hex = good.lines().nth(2).unwrap()[13..].trim_end_matches('"');
    assert_eq!(signature_hex.len(), 128);
    let variants = [
        good.replace(signature_hex, &signature_hex.to_uppercase()),
        good.replace(" = ", "="),
        format!("{good}comment = 1\n"),
        good.replace("ed25519", "rsa"),
        good.trim_end().to_owned(),
    ];
    for variant in variants {
        assert_ne!(variant, good);
        let mut entries: Vec<(&str, &[u8])> = vec![(MANIFEST, manifest.as_bytes())];
        entries.extend(files.iter().map(|(p, d)| (p.as_str(), d.as_slice())));
        entries.push((SIGNATURE, variant.as_bytes()));
        let err = verify_err(container::encode(&entries));
        assert!(
            matches!(err, BundleError::SignatureFile(_)),
            "{variant}: {err}"
        );
    }
}

#[test]
fn size_limits_are_enforced() {
    let huge = vec![0u8; MAX_BUNDLE_BYTES + 1];
    assert!(matches!(
        verify_err(huge),
        BundleError::Container(ContainerError::TooLarge { .. })
    ));
    let (manifest, files) = parts(&built());
    let padded = format!("{manifest}#{}\n", "x".repeat(MAX_MANIFEST_BYTES));
    let err = verify_err(assemble(&padded, &files, &vendor_key()));
    assert!(
        matches!(err, BundleError::Manifest(ManifestError::TooLarge { .. })),
        "{err}"
    );
}

#[test]
fn manifest_errors_surface_through_verify() {
    let (manifest, files) = parts(&built());
    let two_models = manifest.replacen("role = \"model_card\"", "role = \"model\"", 1);
    assert_ne!(two_models, manifest);
    let err = verify_err(assemble(&two_models, &files, &vendor_key()));
    assert!(
        matches!(
            err,
            BundleError::Manifest(ManifestError::ModelFiles { count: 2 })
        ),
        "{err}"
    );
}

fn invalid_field(m: &Manifest) -> String {
    match m.validate() {
        Err(ManifestError::Invalid { field, .. }) => field,
        other => panic!("expected ManifestError::Invalid, got {other:?}"),
    }
}

#[test]
fn manifest_validation_names_what_is_wrong() {
    let good = built_manifest();
    good.validate().unwrap();

    let mut m = good.clone();
    m.files
        .iter_mut()
        .find(|f| f.path == "MODEL_CARD.md")
        .unwrap()
        .role = Role::Model;
    assert_eq!(m.validate(), Err(ManifestError::ModelFiles { count: 2 }));

    let mut m = good.clone();
    m.files.retain(|f| f.role != Role::Model);
    assert_eq!(m.validate(), Err(ManifestError::ModelFiles { count: 0 }));

    let mut m = good.clone();
    for path in ["golden/case0_input.npy", "golden/case0_logits.npy"] {
        m.files.iter_mut().find(|f| f.path == path).unwrap().role = Role::ModelInt8;
    }
    assert_eq!(m.validate(), Err(ManifestError::Int8Files { count: 2 }));

    let mut m = good.clone();
    m.findings[1].output_index = 2;
    assert!(matches!(
        m.validate(),
        Err(ManifestError::OutputIndexOutOfRange {
            index: 2,
            logits: 2,
            ..
        })
    ));

    let mut m = good.clone();
    m.findings[1].output_index = 0;
    assert!(matches!(
        m.validate(),
        Err(ManifestError::DuplicateOutputIndex { index: 0, .. })
    ));

    let mut m = good.clone();
    m.findings[1].id = "pneumothorax".to_owned();
    assert!(matches!(
        m.validate(),
        Err(ManifestError::DuplicateFinding { .. })
    ));

    let mut m = good.clone();
    m.preprocessing[1].resize = [64, 32];
    assert!(matches!(
        m.validate(),
        Err(ManifestError::ResizeMismatch { route: 1, .. })
    ));

    let mut m = good.clone();
    m.applicability.modalities.push("ct".to_owned());
    assert!(matches!(m.validate(), Err(ManifestError::BadCode { .. })));

    let mut m = good.clone();
    m.model_card = "README.md".to_owned();
    assert!(matches!(m.validate(), Err(ManifestError::NotListed { .. })));

    let mut m = good.clone();
    m.golden.cases[0].expected.pop();
    assert_eq!(invalid_field(&m), "golden.cases[0].expected");

    let mut m = good.clone();
    m.findings[0].threshold = f64::NAN;
    assert_eq!(invalid_field(&m), "findings.pneumothorax.threshold");

    let mut m = good.clone();
    m.findings[0].id = "Pneumothorax".to_owned();
    assert_eq!(invalid_field(&m), "findings[0].id");

    let mut m = good.clone();
    m.preprocessing[0].center = Some(1.0);
    assert_eq!(invalid_field(&m), "preprocessing[0].window");

    let mut m = good.clone();
    m.applicability.modalities.push("MR".to_owned());
    assert_eq!(invalid_field(&m), "preprocessing");

    let mut m = good.clone();
    m.aggregation.k = None;
    assert_eq!(invalid_field(&m), "aggregation.k");

    let mut m = good.clone();
    m.reference_stats.histogram = Some(vec![0.2, 0.2]);
    assert_eq!(invalid_field(&m), "reference_stats.histogram");

    let mut m = good.clone();
    m.files[0].sha256 = m.files[0].sha256.to_uppercase();
    assert_eq!(invalid_field(&m), "files.MODEL_CARD.md");

    let mut m = good;
    m.format = 2;
    assert_eq!(m.validate(), Err(ManifestError::UnsupportedFormat(2)));
}

#[test]
fn manifest_parse_errors_name_the_field() {
    let text = parts(&built()).0;
    let without = text.replace("clinical_use = false\n", "");
    assert_ne!(without, text);
    match Manifest::from_toml_bytes(without.as_bytes()) {
        Err(ManifestError::Parse(message)) => {
            assert!(message.contains("clinical_use"), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let unknown = text.replace(
        "clinical_use = false\n",
        "clinical_use = false\nclinical = true\n",
    );
    match Manifest::from_toml_bytes(unknown.as_bytes()) {
        Err(ManifestError::Parse(message)) => {
            assert!(
                message.starts_with("line 5, column 1: unknown field `clinical`"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Manifest::from_toml_bytes(b"\xff\xfe"),
        Err(ManifestError::NotUtf8)
    );
}

#[test]
fn staging_folders_are_checked() {
    let key = vendor_key();

    let dir = staging();
    write(dir.path(), "signature.toml", b"");
    assert!(matches!(
        build(dir.path(), &key),
        Err(BuildError::Staging { .. })
    ));

    let dir = staging();
    std::fs::create_dir(dir.path().join("extra")).unwrap();
    assert!(matches!(
        build(dir.path(), &key),
        Err(BuildError::Staging { .. })
    ));

    let dir = staging();
    std::fs::create_dir(dir.path().join("golden/nested")).unwrap();
    assert!(matches!(
        build(dir.path(), &key),
        Err(BuildError::Staging { .. })
    ));

    let dir = staging();
    std::os::unix::fs::symlink("model.onnx", dir.path().join("link.onnx")).unwrap();
    assert!(matches!(
        build(dir.path(), &key),
        Err(BuildError::Staging { .. })
    ));

    let dir = staging();
    write(dir.path(), ".DS_Store", b"");
    assert!(matches!(
        build(dir.path(), &key),
        Err(BuildError::Staging { .. })
    ));

    let dir = staging();
    std::fs::remove_file(dir.path().join("model.onnx")).unwrap();
    assert!(matches!(
        build(dir.path(), &key),
        Err(BuildError::Manifest(ManifestError::ModelFiles { count: 0 }))
    ));

    // An INT8 model needs its own golden outputs and tolerance.
    let dir = staging();
    write(dir.path(), "model.int8.onnx", b"int8");
    assert!(matches!(
        build(dir.path(), &key),
        Err(BuildError::Manifest(ManifestError::Invalid { ref field, .. })) if field.contains("expected_int8")
    ));
    let manifest = STAGING_MANIFEST
        .replace(
            "expected = [\"golden/case0_logits.npy\", \"golden/case0_heatmap.npy\"]",
            "expected = [\"golden/case0_logits.npy\", \"golden/case0_heatmap.npy\"]\n\
             expected_int8 = [\"golden/case0_int8_logits.npy\", \"golden/case0_int8_heatmap.npy\"]",
        )
        .replace(
            "tolerance_abs = 1e-3",
            "tolerance_abs = 1e-3\ntolerance_abs_int8 = 0.05",
        );
    let dir = staging_with(&manifest);
    write(dir.path(), "model.int8.onnx", b"int8");
    write(
        dir.path(),
        "golden/case0_int8_logits.npy",
        b"\x93NUMPY\x01\x00int8 logits",
    );
    write(
        dir.path(),
        "golden/case0_int8_heatmap.npy",
        b"\x93NUMPY\x01\x00int8 heatmap",
    );
    write(dir.path(), "LICENSE", b"none");
    let bundle = Bundle::verify(build(dir.path(), &key).unwrap(), &trusting(&key)).unwrap();
    assert_eq!(bundle.int8_model_bytes(), Some(&b"int8"[..]));
    assert_eq!(bundle.manifest().file("LICENSE").unwrap().role, Role::Other);
}

#[test]
fn the_demo_key_is_trusted_by_the_demo_store_only_for_non_clinical_bundles() {
    let demo_secret = SecretKey::from_text(DEMO_SECRET).unwrap();
    assert_eq!(demo_secret.public_key(), PublicKey::demo_vendor());
    let demo = TrustStore::demo();
    assert_eq!(demo.keys().len(), 1);
    assert_eq!(demo.keys()[0].name, DEMO_VENDOR_KEY_NAME);

    let bytes = build(staging().path(), &demo_secret).unwrap();
    let bundle = Bundle::verify(bytes, &demo).unwrap();
    assert_eq!(bundle.signer().name, DEMO_VENDOR_KEY_NAME);
    assert!(matches!(
        Bundle::verify(built(), &demo),
        Err(BundleError::UnknownKey { .. })
    ));

    let clinical = STAGING_MANIFEST.replace("clinical_use = false", "clinical_use = true");
    assert!(matches!(
        build(staging_with(&clinical).path(), &demo_secret),
        Err(BuildError::SelfCheck(BundleError::DemoKeyClinicalUse))
    ));
    let (manifest, files) = parts(&build(staging_with(&clinical).path(), &vendor_key()).unwrap());
    let err = Bundle::verify(assemble(&manifest, &files, &demo_secret), &demo).unwrap_err();
    assert!(matches!(err, BundleError::DemoKeyClinicalUse), "{err}");
}

#[test]
fn key_files_say_which_kind_they_expect() {
    let key = vendor_key();
    let secret_text = key.to_text();
    let public_text = key.public_key().to_text();
    assert!(secret_text.starts_with("firstlook-ed25519-secret:"));
    assert!(public_text.starts_with("firstlook-ed25519-public:"));
    assert_eq!(
        SecretKey::from_text(&secret_text).unwrap().public_key(),
        key.public_key()
    );
    assert_eq!(
        PublicKey::from_text(&public_text).unwrap(),
        key.public_key()
    );

    let err = SecretKey::from_text(&public_text).unwrap_err();
    assert!(
        err.to_string()
            .contains("firstlook-ed25519-secret:<64 hex digits>"),
        "{err}"
    );
    assert!(
        err.to_string().contains("this is a public key file"),
        "{err}"
    );
    let err = PublicKey::from_text(&secret_text).unwrap_err();
    assert!(
        err.to_string().contains("this is a secret key file"),
        "{err}"
    );
    for bad in [
        "",
        "firstlook-ed25519-public:abcd",
        "firstlook-ed25519-public:zz",
        "hello",
    ] {
        assert!(matches!(
            PublicKey::from_text(bad),
            Err(KeyError::Format { .. })
        ));
    }
    assert!(!format!("{key:?}").contains(&secret_text[25..]));
    let generated = SecretKey::generate().unwrap();
    assert_ne!(generated.public_key(), key.public_key());
}

#[test]
fn channels_windows_and_filters_are_validated() {
    use firstlook_kernels::dicom::{Voi, VoiFunction, VoiWindow};
    let good = built_manifest();
    let ct = good
        .preprocessing
        .iter()
        .position(|p| p.modalities.contains(&"CT".to_owned()))
        .unwrap();

    // Three channels need an input with three.
    let mut m = good.clone();
    let extra = ChannelWindow {
        window: WindowKind::Fixed,
        percentile_low: None,
        percentile_high: None,
        center: Some(80.0),
        width: Some(200.0),
        voi_index: None,
    };
    m.preprocessing[ct].extra_channels = vec![extra.clone(), extra.clone()];
    assert_eq!(
        invalid_field(&m),
        format!("preprocessing[{ct}].extra_channels")
    );
    m.inputs[0].shape[1] = 3;
    // Every route must then make three channels.
    for (i, p) in m.preprocessing.iter_mut().enumerate() {
        if i != ct {
            p.extra_channels = vec![extra.clone(), extra.clone()];
        }
    }
    m.validate().unwrap();
    let pipeline = m.preprocessing[ct].pipeline().unwrap();
    assert_eq!(pipeline.channels.len(), 3);

    let mut bad = m.clone();
    bad.preprocessing[ct].extra_channels[1].voi_index = Some(1);
    assert_eq!(
        invalid_field(&bad),
        format!("preprocessing[{ct}].extra_channels[1].window")
    );

    // A dicom window takes the image's VOI, and only voi_index.
    let mut m = good.clone();
    let p = &mut m.preprocessing[ct];
    p.window = WindowKind::Dicom;
    p.voi_index = Some(1);
    assert_eq!(invalid_field(&m), format!("preprocessing[{ct}].window"));
    let p = &mut m.preprocessing[ct];
    p.center = None;
    p.width = None;
    m.validate().unwrap();
    let p = &m.preprocessing[ct];
    assert_eq!(p.pipeline(), None, "no VOI, no pipeline");
    let voi = Voi {
        windows: vec![
            VoiWindow {
                center: 40.0,
                width: 80.0,
            },
            VoiWindow {
                center: 600.0,
                width: 2800.0,
            },
        ],
        function: VoiFunction::Sigmoid,
        luts: Vec::new(),
    };
    assert_eq!(
        p.pipeline_for(&voi).unwrap().channels,
        [firstlook_kernels::preprocess::Window::Sigmoid {
            center: 600.0,
            width: 2800.0
        }]
    );
    let one = Voi {
        windows: voi.windows[..1].to_vec(),
        ..voi
    };
    assert_eq!(
        p.pipeline_for(&one),
        Err(RouteError::NoVoi {
            channel: 0,
            index: 1
        })
    );

    // Route filters.
    let mut m = good.clone();
    m.preprocessing[0].view_positions = vec!["pa".into()];
    assert!(matches!(m.validate(), Err(ManifestError::BadCode { .. })));
    let mut m = good.clone();
    m.preprocessing[0].photometric = vec!["RGB".into()];
    assert_eq!(invalid_field(&m), "preprocessing[0].photometric");
    let mut m = good.clone();
    m.preprocessing[0].pixel_spacing_mm = Some([0.3, 0.1]);
    assert_eq!(invalid_field(&m), "preprocessing[0].pixel_spacing_mm");
    let mut m = good;
    m.preprocessing[0].min_size = Some([0, 512]);
    assert_eq!(invalid_field(&m), "preprocessing[0].min_size");
}
