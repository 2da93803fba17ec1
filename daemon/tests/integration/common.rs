//! What the in-process tests share: a daemon on a given spool and a phantom
//! CT series sent with the daemon's own Storage SCU.

use std::path::Path;
use std::time::Duration;

use firstlook::config::Config;
use firstlook::daemon::Daemon;
use firstlook::dimse::Priority;
use firstlook::forward::scu::{ScuError, ScuOptions, StoreScu};
use firstlook::spool::part10;
use firstlook_phantom::{Instance, Kind, StudySpec};

/// A daemon on `spool` with the given watermarks, accepting CT01 from loopback.
pub async fn start_daemon(spool: &Path, high: u8, low: u8) -> Daemon {
    start_with(
        spool,
        &format!("[spool]\nhigh_watermark_percent = {high}\nlow_watermark_percent = {low}\n"),
    )
    .await
}

/// A daemon on `spool` accepting CT01 from loopback, with `extra` tables.
pub async fn start_with(spool: &Path, extra: &str) -> Daemon {
    let text = format!(
        "[node]\nae_title = \"FIRSTLOOK\"\nlisten = \"127.0.0.1:0\"\nspool_dir = \"{}\"\n\
         [[scanners]]\nae_title = \"CT01\"\nhosts = [\"127.0.0.1\"]\n{extra}",
        spool.display()
    );
    Daemon::start(Config::parse(&text, "test.toml").unwrap())
        .await
        .unwrap()
}

/// A phantom CT series and how to send it.
pub struct CtSeries {
    pub instances: Vec<Instance>,
    contexts: Vec<(String, Vec<String>)>,
}

impl CtSeries {
    pub fn new(seed: u64, count: usize) -> CtSeries {
        let instances =
            firstlook_phantom::generate(&StudySpec::new(Kind::Ct, seed).with_count(count)).unwrap();
        let first = &instances[0];
        let contexts = vec![(
            first.sop_class_uid.clone(),
            vec![first.transfer_syntax_uid.clone()],
        )];
        CtSeries {
            instances,
            contexts,
        }
    }

    pub async fn connect(&self, d: &Daemon) -> Result<StoreScu, ScuError> {
        StoreScu::connect(&scu_options(d), &self.contexts)
            .await
            .map(|(scu, _)| scu)
    }

    /// Sends instance `i`: (status, error comment).
    pub async fn store(&self, scu: &mut StoreScu, i: usize) -> (u16, Option<String>) {
        let inst = &self.instances[i];
        let (ctx, _) = scu
            .context_for(&inst.sop_class_uid, &[inst.transfer_syntax_uid.as_str()])
            .unwrap();
        let at = part10::dataset_offset(&inst.file_bytes).unwrap();
        scu.store(
            ctx,
            &inst.sop_class_uid,
            &inst.sop_instance_uid,
            &inst.file_bytes[at..],
            Priority::Medium,
        )
        .await
        .unwrap()
    }
}

pub fn scu_options(d: &Daemon) -> ScuOptions {
    ScuOptions {
        address: d.listen_addr.to_string(),
        calling_ae: "CT01".into(),
        called_ae: "FIRSTLOOK".into(),
        max_pdu: 65536,
        connect_timeout: Duration::from_secs(5),
        dimse_timeout: Duration::from_secs(30),
        tls: None,
    }
}
