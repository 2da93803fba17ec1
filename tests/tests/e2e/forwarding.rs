//! Scanners → firstlookd → PACS with real peers: DCMTK, pynetdicom, Orthanc.
//! Every instance must arrive, with its transfer syntax and data set bytes
//! exactly as the scanner sent them.

use std::path::Path;
use std::time::Duration;

use firstlook_e2e::*;

const SETTLE: Duration = Duration::from_secs(60);

fn paths(files: &[DicomFile]) -> Vec<&Path> {
    files.iter().map(|f| f.path.as_path()).collect()
}

/// 30 CT slices with storescu and 2 radiographs with dcmsend, both from
/// configured AEs, reach storescp byte-identical after the file meta.
#[test]
fn storescu_and_dcmsend_to_storescp_byte_identical() {
    let dir = scratch("dcmtk");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("CT01", &["127.0.0.1"])
        .scanner("CR01", &["127.0.0.0/8"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let ct = phantom(
        &StudySpec::new(Kind::Ct, 1001).with_count(30),
        &dir.path().join("ct"),
    );
    let cr = phantom(
        &StudySpec::new(Kind::Cr, 1002).with_count(2),
        &dir.path().join("cr"),
    );

    let ct_dir = dir.path().join("ct");
    let out = storescu(daemon.port, "CT01", &["+sd"], &[ct_dir.as_path()]);
    assert!(out.status.success(), "storescu failed:\n{out}");
    assert_eq!(
        storescu_successes(&out.stderr).len(),
        30,
        "storescu should report 30 successes:\n{out}"
    );

    let mut cmd = tool(DCMSEND);
    cmd.args(["-v", "-aet", "CR01", "-aec", NODE_AE, "127.0.0.1"])
        .arg(daemon.port.to_string())
        .args(paths(&cr));
    let out = run_cmd(&mut cmd, Duration::from_secs(60));
    assert!(out.status.success(), "dcmsend failed:\n{out}");

    let status = daemon.wait_settled(32, SETTLE);
    let d = status.destination("pacs");
    assert_eq!(
        (d.delivered, d.dead),
        (32, 0),
        "status: {}",
        status.summary()
    );
    let received = pacs.received();
    let sent: Vec<DicomFile> = ct.into_iter().chain(cr).collect();
    assert_delivered_identical(&sent, &received);
    assert_eq!(
        duplicates(&received),
        Default::default(),
        "instances delivered more than once"
    );
}

/// JPEG lossless (dcmcjpeg, sent by storescu), RLE (dcmcrle, sent by dcmsend),
/// pydicom's JPEG 2000, JPEG lossy, JPEG-LS and RLE samples and a deflated
/// radiograph (dcmconv), sent by pynetdicom, pass through without transcoding:
/// the transfer syntax at storescp is the one sent, and the data set bytes
/// are identical.
#[test]
fn compressed_transfer_syntaxes_pass_through_unchanged() {
    let dir = scratch("compressed");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("*", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);

    // Encapsulate phantom slices with DCMTK.
    let native = phantom(
        &StudySpec::new(Kind::Ct, 1101).with_count(5),
        &dir.path().join("native"),
    );
    let encode = |tool_path: &str, args: &[&str], sub: &str, files: &[DicomFile]| {
        let out_dir = dir.path().join(sub);
        std::fs::create_dir_all(&out_dir).expect("mkdir");
        files
            .iter()
            .map(|f| {
                let out_path = out_dir.join(f.path.file_name().expect("name"));
                let out = run_cmd(
                    tool(tool_path).args(args).arg(&f.path).arg(&out_path),
                    Duration::from_secs(60),
                );
                assert!(out.status.success(), "{tool_path} failed:\n{out}");
                DicomFile::read(&out_path)
            })
            .collect::<Vec<_>>()
    };
    let jpeg = encode(DCMCJPEG, &["+e1"], "jpeg-ll", &native[..3]);
    let rle = encode(DCMCRLE, &[], "rle", &native[3..]);
    for f in &jpeg {
        assert_eq!(f.transfer_syntax, JPEG_LOSSLESS_SV1, "dcmcjpeg +e1 output");
    }
    for f in &rle {
        assert_eq!(f.transfer_syntax, RLE_LOSSLESS, "dcmcrle output");
    }

    // Implicit VR Little Endian made by dcmconv, sent by storescu proposing
    // implicit only (-xi).
    let native2 = phantom(
        &StudySpec::new(Kind::Ct, 1103).with_count(2),
        &dir.path().join("native2"),
    );
    let implicit = encode(DCMCONV, &["+ti"], "implicit", &native2);
    assert_eq!(
        implicit[0].transfer_syntax, IMPLICIT_VR_LE,
        "dcmconv +ti output"
    );
    let implicit_dir = dir.path().join("implicit");
    let out = storescu(
        daemon.port,
        "CT01",
        &["-xi", "+sd"],
        &[implicit_dir.as_path()],
    );
    assert!(out.status.success(), "storescu -xi failed:\n{out}");

    // storescu proposes JPEG lossless (-xs) plus uncompressed syntaxes.
    let jpeg_dir = dir.path().join("jpeg-ll");
    let out = storescu(daemon.port, "CT01", &["-xs", "+sd"], &[jpeg_dir.as_path()]);
    assert!(out.status.success(), "storescu -xs failed:\n{out}");
    assert_eq!(storescu_successes(&out.stderr).len(), 3, "storescu:\n{out}");
    // dcmsend proposes each file's own syntax; never decompress.
    let mut cmd = tool(DCMSEND);
    cmd.args(["-v", "-dn", "-aet", "CT01", "-aec", NODE_AE, "127.0.0.1"])
        .arg(daemon.port.to_string())
        .args(paths(&rle));
    let out = run_cmd(&mut cmd, Duration::from_secs(60));
    assert!(out.status.success(), "dcmsend -dn failed:\n{out}");

    // pydicom's samples, sent by pynetdicom exactly as they are in the files
    // (DCMTK re-encodes some of them, e.g. dropping group lengths, so it
    // cannot be the reference for these).
    // Deflated Explicit VR Little Endian made by dcmconv from a radiograph,
    // padded to an even length as PS3.5 A.5 asks (dcmconv leaves it odd,
    // which storescp refuses to receive). pydicom's image_dfl.dcm is not
    // used: it carries 8 stray bytes (a gzip trailer) after its deflate stream.
    let cr = phantom(
        &StudySpec::new(Kind::Cr, 1102).with_size(256, 256),
        &dir.path().join("cr"),
    );
    let deflated: Vec<DicomFile> = encode(DCMCONV, &["+td"], "deflated", &cr)
        .iter()
        .map(pad_to_even_length)
        .collect();
    assert_eq!(
        deflated[0].transfer_syntax, DEFLATED_EXPLICIT_LE,
        "dcmconv +td output"
    );
    let samples: Vec<DicomFile> = [
        "JPEG2000.dcm",
        "JPEG-lossy.dcm",
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_rle.dcm",
        "MR_small_RLE.dcm",
    ]
    .iter()
    .map(|n| DicomFile::read(&pydicom_test_file(n)))
    .chain(deflated)
    .collect();
    let (stored, out) = pynetdicom_send(daemon.port, "MODALITY", None, &paths(&samples));
    assert!(out.status.success(), "send_pynetdicom.py failed:\n{out}");
    assert_eq!(stored.len(), samples.len(), "pynetdicom:\n{out}");

    let sent: Vec<DicomFile> = jpeg
        .into_iter()
        .chain(rle)
        .chain(implicit)
        .chain(samples)
        .collect();
    let status = daemon.wait_settled(sent.len() as u64, SETTLE);
    let d = status.destination("pacs");
    assert_eq!(
        (d.delivered, d.dead),
        (sent.len() as u64, 0),
        "status: {}",
        status.summary()
    );
    assert_delivered_identical(&sent, &pacs.received());
}

/// Implicit VR Little Endian and Explicit VR Big Endian instances sent
/// back to back on one association: each reaches storescp (which accepts
/// both syntaxes) in the syntax it was sent in, byte-identical. The daemon
/// must not fall back to Explicit VR Little Endian just because the
/// association it already has open to the PACS was negotiated for another
/// instance's syntax.
#[test]
fn native_syntaxes_arriving_together_are_not_transcoded() {
    let dir = scratch("native-mix");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("RAW01", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let convert = |seed: u64, flag: &str, sub: &str| {
        let native = phantom(
            &StudySpec::new(Kind::Ct, seed).with_count(2),
            &dir.path().join(format!("{sub}-native")),
        );
        let out_dir = dir.path().join(sub);
        std::fs::create_dir_all(&out_dir).expect("mkdir");
        native
            .iter()
            .map(|f| {
                let out_path = out_dir.join(f.path.file_name().expect("name"));
                let out = run_cmd(
                    tool(DCMCONV).arg(flag).arg(&f.path).arg(&out_path),
                    Duration::from_secs(60),
                );
                assert!(out.status.success(), "dcmconv {flag} failed:\n{out}");
                DicomFile::read(&out_path)
            })
            .collect::<Vec<_>>()
    };
    let implicit = convert(1601, "+ti", "implicit");
    let big = convert(1602, "+tb", "big-endian");
    assert_eq!(implicit[0].transfer_syntax, IMPLICIT_VR_LE);
    assert_eq!(big[0].transfer_syntax, EXPLICIT_VR_BE);
    let order = [&implicit[0], &big[0], &implicit[1], &big[1]];
    let steps: Vec<RawStep> = order
        .iter()
        .map(|f| RawStep {
            file: f.path.clone(),
            ..Default::default()
        })
        .collect();
    let (results, out) = raw_dimse(dir.path(), daemon.port, "RAW01", &steps);
    assert!(out.status.success(), "raw_dimse.py failed:\n{out}");
    for r in results.iter().filter(|r| r.uid.is_some()) {
        assert_eq!(r.status, Some(0), "{r:?}\n{out}");
    }
    let status = daemon.wait_settled(4, SETTLE);
    assert_eq!(
        status.destination("pacs").delivered,
        4,
        "{}",
        status.summary()
    );
    let sent: Vec<DicomFile> = order.iter().map(|f| (*f).clone()).collect();
    let problems = compare_delivery(&sent, &pacs.received());
    assert!(
        problems.is_empty(),
        "instances were transcoded on the way to a PACS that accepts their syntax:\n{}",
        problems.join("\n")
    );
}

/// The file with a NUL byte appended if its data set has an odd length.
fn pad_to_even_length(f: &DicomFile) -> DicomFile {
    if f.dataset.len() % 2 == 1 {
        let mut bytes = std::fs::read(&f.path).expect("read");
        bytes.push(0);
        std::fs::write(&f.path, bytes).expect("write");
    }
    DicomFile::read(&f.path)
}

/// Orthanc as the PACS: every SOP Instance UID sent is in Orthanc's index.
#[test]
fn orthanc_as_pacs_receives_every_instance() {
    let dir = scratch("orthanc");
    let mut orthanc = Orthanc::start(dir.path());
    let cfg = DaemonConfig::new()
        .scanner("CT01", &["127.0.0.1"])
        .destination(DestinationConfig::new(
            "orthanc",
            &orthanc.ae_title.clone(),
            orthanc.dicom_port,
        ));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 1201).with_count(20),
        &dir.path().join("ct"),
    );
    let cr = phantom(
        &StudySpec::new(Kind::Cr, 1202)
            .with_count(3)
            .with_size(512, 512),
        &dir.path().join("cr"),
    );
    let ct_dir = dir.path().join("ct");
    let cr_dir = dir.path().join("cr");
    let out = storescu(
        daemon.port,
        "CT01",
        &["+sd"],
        &[ct_dir.as_path(), cr_dir.as_path()],
    );
    assert!(out.status.success(), "storescu failed:\n{out}");

    let status = daemon.wait_settled(23, SETTLE);
    let d = status.destination("orthanc");
    assert_eq!(
        (d.delivered, d.dead),
        (23, 0),
        "status: {}",
        status.summary()
    );
    let expected = uids(&ct.into_iter().chain(cr).collect::<Vec<_>>());
    let in_orthanc: std::collections::BTreeSet<String> =
        orthanc.sop_instance_uids().into_iter().collect();
    let missing: Vec<&String> = expected.difference(&in_orthanc).collect();
    assert!(
        missing.is_empty(),
        "{} of {} instances missing from Orthanc: {missing:?}",
        missing.len(),
        expected.len()
    );
    assert_eq!(
        in_orthanc.len(),
        expected.len(),
        "Orthanc holds extra instances"
    );
}

/// storescu (CT01) and pynetdicom (US02) send at the same time; every
/// instance of both arrives intact.
#[test]
fn pynetdicom_and_storescu_send_concurrently() {
    let dir = scratch("concurrent");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("CT01", &["127.0.0.1"])
        .scanner("CR02", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 1301).with_count(25),
        &dir.path().join("ct"),
    );
    let cr = phantom(
        &StudySpec::new(Kind::Cr, 1302)
            .with_count(25)
            .with_size(512, 512),
        &dir.path().join("cr"),
    );
    let port = daemon.port;
    let cr_dir = dir.path().join("cr");
    let py = std::thread::spawn(move || pynetdicom_send(port, "CR02", None, &[cr_dir.as_path()]));
    let ct_dir = dir.path().join("ct");
    let out = storescu(port, "CT01", &["+sd"], &[ct_dir.as_path()]);
    let (py_stored, py_out) = py.join().expect("pynetdicom thread");
    assert!(out.status.success(), "storescu failed:\n{out}");
    assert!(
        py_out.status.success(),
        "send_pynetdicom.py failed:\n{py_out}"
    );
    assert_eq!(py_stored.len(), 25, "pynetdicom successes:\n{py_out}");
    assert_eq!(
        storescu_successes(&out.stderr).len(),
        25,
        "storescu:\n{out}"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("calling_ae=CT01") && log.contains("calling_ae=CR02"),
        "both calling AEs should have associated:\n{}",
        daemon.log_tail(40)
    );

    let status = daemon.wait_settled(50, SETTLE);
    assert_eq!(
        status.destination("pacs").delivered,
        50,
        "{}",
        status.summary()
    );
    let sent: Vec<DicomFile> = ct.into_iter().chain(cr).collect();
    assert_delivered_identical(&sent, &pacs.received());
}

/// Small and unlimited PDUs in every direction: storescu receiving at most
/// 4096 bytes and sending at most 4096; pynetdicom announcing "unlimited"
/// (0); and the daemon's own SCU sending to a storescp that accepts only
/// 4096-byte PDUs (destination max_pdu_length = 4096).
#[test]
fn small_and_unlimited_pdu_sizes_deliver_byte_identical() {
    let dir = scratch("pdu");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &["--max-pdu", "4096"]);
    let mut dest = DestinationConfig::new("pacs", "PACS", pacs.port);
    dest.max_pdu_length = Some(4096);
    let cfg = DaemonConfig::new()
        .scanner("CT01", &["127.0.0.1"])
        .scanner("CT02", &["127.0.0.1"])
        .destination(dest);
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let small = phantom(
        &StudySpec::new(Kind::Ct, 1401).with_count(6),
        &dir.path().join("small"),
    );
    let unlimited = phantom(
        &StudySpec::new(Kind::Ct, 1402).with_count(6),
        &dir.path().join("unlimited"),
    );
    let small_dir = dir.path().join("small");
    let out = storescu(
        daemon.port,
        "CT01",
        &["--max-pdu", "4096", "--max-send-pdu", "4096", "+sd"],
        &[small_dir.as_path()],
    );
    assert!(
        out.status.success(),
        "storescu with 4096-byte PDUs failed:\n{out}"
    );
    assert_eq!(storescu_successes(&out.stderr).len(), 6, "storescu:\n{out}");

    let unlimited_dir = dir.path().join("unlimited");
    let (stored, out) = pynetdicom_send(daemon.port, "CT02", Some(0), &[unlimited_dir.as_path()]);
    assert!(
        out.status.success(),
        "pynetdicom with max PDU 0 failed:\n{out}"
    );
    assert_eq!(stored.len(), 6, "pynetdicom:\n{out}");
    assert!(
        daemon.log_text().contains("peer_max_pdu=0"),
        "the daemon should have seen an unlimited (0) max PDU from pynetdicom:\n{}",
        daemon.log_tail(30)
    );

    let status = daemon.wait_settled(12, SETTLE);
    assert_eq!(
        status.destination("pacs").delivered,
        12,
        "{}",
        status.summary()
    );
    let sent: Vec<DicomFile> = small.into_iter().chain(unlimited).collect();
    assert_delivered_identical(&sent, &pacs.received());
}

/// A raw sender splits the command set over several PDVs (one per PDU, and
/// several per PDU) and the data set into small fragments: the daemon
/// reassembles both and every instance arrives byte-identical.
#[test]
fn fragmented_command_and_data_pdvs_are_reassembled() {
    let dir = scratch("fragments");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::new()
        .scanner("RAW01", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let files = phantom(
        &StudySpec::new(Kind::Cr, 1501)
            .with_count(5)
            .with_size(128, 128),
        &dir.path().join("cr"),
    );
    let step = |f: &DicomFile, cmd_frag, data_frag, pdvs_per_pdu| RawStep {
        file: f.path.clone(),
        cmd_frag,
        data_frag,
        pdvs_per_pdu,
        mutate: None,
    };
    let steps = vec![
        // Command in 16-byte PDVs, one PDV per PDU; data in 1000-byte PDVs.
        step(&files[0], 16, 1000, 1),
        // Command in 7-byte PDVs packed 4 to a PDU; data in 333-byte PDVs, 5 to a PDU.
        step(&files[1], 7, 333, 4),
        // Command cut in two; data in one PDV.
        step(&files[2], 60, 0, 1),
        // Everything in as few PDUs as possible: command and data PDVs share PDUs.
        step(&files[3], 0, 4000, 8),
        // One byte of command per PDV.
        step(&files[4], 1, 2048, 3),
    ];
    let (results, out) = raw_dimse(dir.path(), daemon.port, "RAW01", &steps);
    assert!(out.status.success(), "raw_dimse.py failed:\n{out}");
    let stored: Vec<&RawResult> = results.iter().filter(|r| r.uid.is_some()).collect();
    assert_eq!(stored.len(), 5, "one response per C-STORE expected:\n{out}");
    for r in &stored {
        assert_eq!(r.status, Some(0), "C-STORE not successful: {r:?}\n{out}");
    }
    assert_eq!(
        results.last().and_then(|r| r.end.as_deref()),
        Some("released"),
        "{out}"
    );
    let status = daemon.wait_settled(5, SETTLE);
    assert_eq!(
        status.destination("pacs").delivered,
        5,
        "{}",
        status.summary()
    );
    assert_delivered_identical(&files, &pacs.received());
}
