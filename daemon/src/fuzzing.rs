//! Entry points for coverage-guided fuzzing (`fuzz/`, cargo-fuzz) and for
//! the test that replays the committed corpus on every run. Each takes
//! arbitrary bytes, must return without panicking or hanging, and says
//! whether the input was accepted (so the replay can show the corpus
//! reaches past the first check).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use crate::config::Config;
use crate::dataset::{DatasetScanner, Encoding};
use crate::dimse::{Command, Reassembler};
use crate::ingest::{negotiate, Load};
use crate::ul::{decode_control, split_pdata};

/// A fuzz entry point: arbitrary bytes in, accepted or not out.
pub type Target = fn(&[u8]) -> bool;

/// The targets, by the name of their corpus folder and fuzz target.
pub const TARGETS: [(&str, Target); 6] = [
    ("pdu", pdu),
    ("dimse_command", dimse_command),
    ("dataset", dataset),
    ("config", config),
    ("manifest", manifest),
    ("panel_request", panel_request),
];

/// One PDU as it comes off the wire (type, reserved, length, body): P-DATA
/// is split and reassembled, anything else decoded, and an association
/// request negotiated against the embedded defaults.
pub fn pdu(data: &[u8]) -> bool {
    let Some((head, body)) = data.split_first_chunk::<6>() else {
        return false;
    };
    if head[0] == 0x04 {
        let Ok(pdvs) = split_pdata(Bytes::copy_from_slice(body)) else {
            return false;
        };
        let mut r = Reassembler::new();
        return pdvs.iter().all(|p| {
            r.push(p.context_id, p.is_command, p.is_last, &p.data)
                .is_ok()
        });
    }
    match decode_control(head[0], body) {
        Ok(dicom_ul::pdu::Pdu::AssociationRQ(rq)) => {
            let load = Load {
                slot_available: true,
                disk_refusing: false,
                over_tls: false,
            };
            let ip = std::net::IpAddr::from([127, 0, 0, 1]);
            negotiate(&rq, ip, defaults(), load).is_ok()
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

/// A DIMSE command set (group 0000, implicit VR little endian).
pub fn dimse_command(data: &[u8]) -> bool {
    Command::decode(data).is_ok()
}

/// A data set as it streams in: the first byte picks the encoding, the
/// second the fragment size.
pub fn dataset(data: &[u8]) -> bool {
    let Some((&[syntax, step], body)) = data.split_first_chunk::<2>() else {
        return false;
    };
    let encoding = Encoding {
        explicit_vr: syntax & 1 != 0,
        big_endian: syntax & 2 != 0,
        deflated: syntax & 4 != 0,
        encapsulated: syntax & 8 != 0,
    };
    let mut scanner = DatasetScanner::new(encoding);
    for chunk in body.chunks(usize::from(step).max(1) * 16) {
        if scanner.push(chunk).is_err() {
            return false;
        }
    }
    scanner.finish().is_ok()
}

/// A configuration file.
pub fn config(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|text| Config::parse(text, "fuzz.toml").is_ok())
}

/// A bundle's `manifest.toml`, and the same bytes as a whole bundle file.
pub fn manifest(data: &[u8]) -> bool {
    let manifest = crate::bundle::Manifest::from_toml_bytes(data).is_ok();
    let bundle = crate::bundle::Bundle::verify(data.to_vec(), &crate::bundle::TrustStore::demo());
    manifest || bundle.is_ok()
}

fn defaults() -> &'static Config {
    static DEFAULTS: OnceLock<Config> = OnceLock::new();
    DEFAULTS.get_or_init(Config::embedded_defaults)
}

/// The panel's routes behind their middleware, on an empty spool, in a
/// runtime of their own: built once per process.
struct PanelUnderTest {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

fn panel() -> &'static PanelUnderTest {
    static PANEL: OnceLock<PanelUnderTest> = OnceLock::new();
    PANEL.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = std::env::temp_dir().join(format!("firstlook-fuzz-{}", std::process::id()));
        let mut config = Config::embedded_defaults();
        config.node.spool_dir = dir.join("spool");
        config.panel.users_file = Some(dir.join("panel-users"));
        let router = runtime.block_on(async {
            let opts = crate::daemon::spool_options(&config);
            let (spool, _) = crate::spool::Spool::open(&opts).expect("a spool for the panel");
            let panel = crate::panel::Panel::new(
                Arc::new(config),
                spool,
                crate::inference::events(),
                crate::audit::AuditLog::off(),
            );
            crate::panel::router(Arc::new(panel))
        });
        PanelUnderTest { runtime, router }
    })
}

/// An HTTP request to the panel: `METHOD PATH`, header lines, a blank line,
/// the body. Served by the real router and handlers; the answer must come
/// within a second (the live feed, which never ends, is left out).
pub fn panel_request(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let Some((method, path)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return false;
    };
    if path.starts_with("/events") {
        return false;
    }
    let mut request = axum::http::Request::builder().method(method).uri(path);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            request = request.header(k.trim(), v.trim());
        }
    }
    let Ok(mut request) = request.body(axum::body::Body::from(body.to_string())) else {
        return false;
    };
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let p = panel();
    let answered = p.runtime.block_on(async {
        use tower::ServiceExt;
        tokio::time::timeout(Duration::from_secs(1), async {
            let response = p.router.clone().oneshot(request).await.ok()?;
            let status = response.status();
            axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .ok()?;
            Some(status)
        })
        .await
    });
    match answered {
        Ok(Some(status)) => status.is_success(),
        Ok(None) => false,
        Err(_) => panic!("the panel did not answer within a second: {text:?}"),
    }
}
