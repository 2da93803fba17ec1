//! Writes the fuzzers' seed corpus (`fuzz/corpus/<target>/`): real inputs of
//! each kind, made by the daemon's own code and the phantom, and a few
//! broken ones. Run once when a target is added:
//! `cargo run --release --example fuzz_seeds -- fuzz/corpus`.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use dicom_ul::pdu::{AbortRQSource, AssociationRJ, AssociationRJResult, AssociationRJSource, Pdu};
use firstlook::dimse::{Command, Priority};
use firstlook::forward::scu::{ScuOptions, StoreScu};
use firstlook::spool::part10;
use firstlook_phantom::{Kind, StudySpec};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

fn pdu(p: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    dicom_ul::write_pdu(&mut out, p).expect("encode PDU");
    out
}

/// The A-ASSOCIATE-RQ the daemon's own SCU sends, as it goes on the wire.
fn association_rq() -> Vec<u8> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = [0u8; 6];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        let rj = AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceUser(
                dicom_ul::pdu::AssociationRJServiceUserReason::NoReasonGiven,
            ),
        };
        s.write_all(&pdu(&Pdu::AssociationRJ(rj))).unwrap();
        [head.to_vec(), body].concat()
    });
    let opts = ScuOptions {
        address,
        calling_ae: "CT01".into(),
        called_ae: "FIRSTLOOK".into(),
        max_pdu: 16384,
        connect_timeout: std::time::Duration::from_secs(5),
        dimse_timeout: std::time::Duration::from_secs(5),
        tls: None,
    };
    let contexts = vec![(CT.to_string(), vec![EXPLICIT_LE.to_string()])];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rejected = rt.block_on(StoreScu::connect(&opts, &contexts));
    assert!(rejected.is_err(), "the recorder rejects");
    peer.join().unwrap()
}

fn small_ct_dataset() -> Vec<u8> {
    let spec = StudySpec::new(Kind::Ct, 7).with_count(1).with_size(16, 16);
    let file = firstlook_phantom::generate(&spec)
        .unwrap()
        .remove(0)
        .file_bytes;
    file[part10::dataset_offset(&file).unwrap()..].to_vec()
}

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let rq = association_rq();
    write(&root, "pdu", "associate-rq", &rq);
    write(&root, "pdu", "associate-rq-truncated", &rq[..rq.len() / 2]);
    write(&root, "pdu", "release-rq", &pdu(&Pdu::ReleaseRQ));
    write(
        &root,
        "pdu",
        "abort",
        &pdu(&Pdu::AbortRQ {
            source: AbortRQSource::ServiceUser,
        }),
    );
    let store = Command::c_store_rq(1, CT, "1.2.3.4", Priority::Medium);
    let mut pdata = Vec::new();
    firstlook::ul::write_pdata(&mut pdata, 1, true, &store.encode(), 16384);
    write(&root, "pdu", "pdata-command", &pdata);

    write(&root, "dimse_command", "c-store-rq", &store.encode());
    write(
        &root,
        "dimse_command",
        "c-echo-rq",
        &Command::c_echo_rq(2).encode(),
    );
    write(
        &root,
        "dimse_command",
        "c-store-rsp",
        &store.response(0xA700).with_error_comment("full").encode(),
    );
    write(&root, "dimse_command", "truncated", &store.encode()[..20]);

    let ds = small_ct_dataset();
    write(
        &root,
        "dataset",
        "ct-explicit-le",
        &[[1u8, 4].as_slice(), &ds].concat(),
    );
    write(
        &root,
        "dataset",
        "ct-odd-fragments",
        &[[1u8, 1].as_slice(), &ds].concat(),
    );
    write(
        &root,
        "dataset",
        "ct-truncated",
        &[[1u8, 4].as_slice(), &ds[..ds.len() / 3]].concat(),
    );

    let config = "[node]\nae_title = \"FIRSTLOOK\"\nlisten = \"0.0.0.0:11112\"\nspool_dir = \"/var/lib/firstlook/spool\"\n\
                  max_associations = 16\n\n[[scanners]]\nae_title = \"CT01\"\nhosts = [\"10.1.2.7\", \"10.1.2.0/24\"]\n\n\
                  [[destinations]]\nname = \"pacs\"\nae_title = \"PACS\"\naddress = \"10.1.3.50:104\"\n\n\
                  [audit.syslog_tls]\naddress = \"audit.example:6514\"\nca_file = \"ca.pem\"\n";
    write(&root, "config", "site", config.as_bytes());
    write(
        &root,
        "config",
        "unknown-key",
        b"[node]\nae_title = \"X\"\nlisten = \"127.0.0.1:1\"\nspool_dir = \"s\"\ncolour = 1\n",
    );

    let demo = firstlook::bundle::Bundle::embedded_demo().unwrap();
    write(&root, "manifest", "demo-manifest", demo.manifest_toml());
    let manifest = include_bytes!("../src/bundle/testdata/manifest.toml");
    write(&root, "manifest", "manifest", manifest);
    write(
        &root,
        "manifest",
        "manifest-truncated",
        &manifest[..manifest.len() / 2],
    );

    for (name, request) in [
        ("healthz", "GET /healthz\nHost: 127.0.0.1:8088\n\n"),
        ("status", "GET /api/status\nHost: localhost:8088\n\n"),
        ("login", "POST /api/login\nHost: localhost:8088\ncontent-type: application/json\n\n{\"user\":\"tech1\",\"password\":\"x\"}"),
        ("alert", "GET /api/alerts/1\nHost: localhost:8088\nCookie: firstlook_session=00\n\n"),
        ("feedback", "POST /api/alerts/1/feedback\nHost: localhost:8088\nx-csrf-token: 00\ncontent-type: application/json\n\n{\"action\":\"confirm\"}"),
        ("rebound-host", "GET /\nHost: evil.example\n\n"),
    ] {
        write(&root, "panel_request", name, request.as_bytes());
    }
    println!("seed corpus written to {}", root.display());
}
