//! `firstlookd demo`: the daemon on its embedded defaults, a local PACS sink,
//! and a simulated scanner sending generated CT and CR studies through it.
//! The studies are synthetic phantoms — not for clinical use.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use firstlook_phantom::{Finding, Kind, StudySpec};

use crate::config::{AeTitle, Bounded, Config, Destination, DestinationName, PeerAddress};
use crate::daemon::Daemon;
use crate::dimse::{Priority, Status};
use crate::forward::scu::{ScuOptions, StoreScu};
use crate::spool::part10;
use crate::status;

/// What the simulated scanner sends.
fn studies() -> Vec<(&'static str, StudySpec)> {
    vec![
        (
            "CT head, no finding",
            StudySpec::new(Kind::Ct, 101).with_count(24),
        ),
        (
            "CT head, haemorrhage",
            StudySpec::new(Kind::Ct, 102)
                .with_finding(Finding::Hemorrhage)
                .with_count(24),
        ),
        (
            "CR chest, no finding",
            StudySpec::new(Kind::Cr, 103).with_count(1),
        ),
        (
            "CR chest, pneumothorax",
            StudySpec::new(Kind::Cr, 104)
                .with_finding(Finding::Pneumothorax)
                .with_count(1),
        ),
        (
            "CR chest, effusion",
            StudySpec::new(Kind::Cr, 105)
                .with_finding(Finding::Effusion)
                .with_count(1),
        ),
    ]
}

const DEMO_USER: &str = "demo";

fn node_config(
    base: Config,
    ae: &str,
    spool: &Path,
    listen: std::net::SocketAddr,
) -> anyhow::Result<Config> {
    let mut c = base;
    c.node.ae_title = AeTitle::try_from(ae.to_string()).map_err(anyhow::Error::msg)?;
    c.node.spool_dir = spool.to_path_buf();
    c.node.listen = listen;
    demo_watermarks(&mut c);
    Ok(c)
}

/// The demo spools into a temporary folder on whatever disk the host has,
/// often a shared one well past the appliance's 90 % mark; the appliance's
/// own spool partition keeps the defaults.
fn demo_watermarks(c: &mut Config) {
    c.spool.high_watermark_percent = Bounded::new(98).expect("in range");
    c.spool.low_watermark_percent = Bounded::new(95).expect("in range");
}

pub async fn run(once: bool) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("firstlook-demo-")
        .tempdir()?;
    println!("firstlook demo — synthetic phantom studies, not for clinical use");
    println!("working folder: {}", dir.path().display());

    let mut sink_cfg = node_config(
        Config::embedded_defaults(),
        "DEMOPACS",
        &dir.path().join("pacs"),
        "127.0.0.1:0".parse()?,
    )?;
    sink_cfg.triage.enabled = false;
    sink_cfg.panel.enabled = false;
    let sink = Daemon::start(sink_cfg)
        .await
        .context("starting the demo PACS sink")?;

    let mut cfg = Config::embedded_defaults();
    cfg.node.spool_dir = dir.path().join("firstlook");
    demo_watermarks(&mut cfg);
    // A login for this demo only, so the cards can show the (synthetic)
    // patients and take feedback.
    let users = dir.path().join(crate::panel::users::DEFAULT_FILE_NAME);
    let mut secret = [0u8; 6];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let password = hex::encode(secret);
    crate::panel::users::set_password(&users, DEMO_USER, &password)?;
    cfg.panel.users_file = Some(users);
    cfg.destinations.push(Destination {
        name: DestinationName::try_from("demo-pacs".to_string()).map_err(anyhow::Error::msg)?,
        ae_title: AeTitle::try_from("DEMOPACS".to_string()).map_err(anyhow::Error::msg)?,
        address: PeerAddress::try_from(sink.listen_addr.to_string()).map_err(anyhow::Error::msg)?,
        calling_ae_title: None,
        max_pdu_length: cfg.node.max_pdu_length,
        tls: None,
    });
    let daemon = match Daemon::start(cfg.clone()).await {
        Ok(d) => d,
        Err(crate::daemon::StartError::Bind { addr, .. }) => {
            println!("port {addr} is busy; the demo daemon takes a free port instead");
            cfg.node.listen = "127.0.0.1:0".parse()?;
            cfg.panel.listen = "127.0.0.1:0".parse()?;
            Daemon::start(cfg).await?
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "firstlookd listening on {} as FIRSTLOOK; PACS sink DEMOPACS on {}",
        daemon.listen_addr, sink.listen_addr
    );
    match daemon.panel_addr {
        Some(addr) => println!(
            "panel: open http://{addr}/ (live alerts; /metrics, /healthz); log in as {DEMO_USER} / {password} (this demo only)"
        ),
        None => println!("panel: not available (its port is busy; see the log)"),
    }
    let alerts = tokio::spawn(print_decisions(daemon.subscribe_decisions()));

    let started = Instant::now();
    let mut sent = 0usize;
    for (label, spec) in studies() {
        let instances = firstlook_phantom::generate(&spec)?;
        let contexts = vec![(
            instances[0].sop_class_uid.clone(),
            vec![instances[0].transfer_syntax_uid.clone()],
        )];
        let opts = ScuOptions {
            address: daemon.listen_addr.to_string(),
            calling_ae: "DEMO_SCANNER".into(),
            called_ae: "FIRSTLOOK".into(),
            max_pdu: 65536,
            connect_timeout: Duration::from_secs(5),
            dimse_timeout: Duration::from_secs(30),
            tls: None,
        };
        let (mut scu, _) = StoreScu::connect(&opts, &contexts).await?;
        for inst in &instances {
            let Some((ctx, _)) =
                scu.context_for(&inst.sop_class_uid, &[inst.transfer_syntax_uid.as_str()])
            else {
                bail!("firstlookd did not accept {}", inst.sop_class_uid);
            };
            let at = part10::dataset_offset(&inst.file_bytes)
                .context("phantom wrote a bad Part-10 file")?;
            let (status, comment) = scu
                .store(
                    ctx,
                    &inst.sop_class_uid,
                    &inst.sop_instance_uid,
                    &inst.file_bytes[at..],
                    Priority::Medium,
                )
                .await?;
            if !Status(status).is_ok() {
                bail!(
                    "firstlookd refused an instance: 0x{status:04X} {}",
                    comment.unwrap_or_default()
                );
            }
            sent += 1;
        }
        scu.release().await;
        println!("scanner sent  {label:<26} {} instance(s)", instances.len());
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    let units = studies().len();
    let decided = loop {
        let r = status::report(daemon.spool.dir())?;
        let t = r.triage.as_ref();
        let units_done = t.map_or(0, |t| t.decided_units);
        if units_done as usize >= units && t.is_some_and(|t| t.queue == 0) {
            break r;
        }
        if Instant::now() > deadline {
            bail!("triage did not decide on every study within two minutes:\n{r}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Each decision brings an SR and a heatmap image, forwarded like the
    // scanner's images.
    let report = loop {
        let r = status::report(daemon.spool.dir())?;
        let pending: u64 = r.destinations.iter().map(|d| d.pending).sum();
        let done: u64 = r.destinations.iter().map(|d| d.delivered + d.dead).sum();
        if pending == 0 && r.results as usize >= 2 * units && done >= sent as u64 + r.results {
            break r;
        }
        if Instant::now() > deadline {
            bail!("forwarding did not finish within two minutes:\n{r}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let sink_report = status::report(sink.spool.dir())?;
    println!();
    println!("sent by the scanner:        {sent} instances");
    println!("held by firstlookd:         {} instances", report.instances);
    println!(
        "results written:            {} (an SR and a heatmap per study decision)",
        report.results
    );
    for d in &report.destinations {
        println!(
            "forwarded to {:<14} {} delivered, {} dead-lettered",
            d.name, d.delivered, d.dead
        );
    }
    println!(
        "arrived at the PACS sink:   {} instances",
        sink_report.instances
    );
    if let Some(t) = &decided.triage {
        println!(
            "triage decisions:           {} urgent, {} no finding, {} not assessable, {} errors",
            t.urgent, t.no_finding, t.not_assessable, t.errors
        );
    }
    println!("end to end in {:.1} s", started.elapsed().as_secs_f64());
    let expected = sent as u64 + report.results;
    if sink_report.instances != expected {
        bail!(
            "the PACS sink holds {} of {expected} instances ({sent} images, {} results)",
            sink_report.instances,
            report.results
        );
    }
    if !once {
        println!();
        println!(
            "firstlookd keeps running: send more with\n  storescu -aec FIRSTLOOK {} {} FILE.dcm\nCtrl-C to stop.",
            daemon.listen_addr.ip(),
            daemon.listen_addr.port()
        );
        tokio::signal::ctrl_c().await?;
    }
    daemon.stop().await;
    sink.stop().await;
    alerts.abort();
    Ok(())
}

/// Prints each decision as it is made, alerts first in line.
async fn print_decisions(
    mut rx: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::inference::DecisionEvent>>,
) {
    use crate::triage::Outcome;
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                println!("({n} decisions not shown)");
                continue;
            }
            Err(_) => return,
        };
        let d = &event.decision;
        let tag = match d.outcome {
            Outcome::Urgent => "ALERT ",
            Outcome::Finding => "FINDING",
            Outcome::NoFinding => "  ok  ",
            Outcome::NotAssessable => "NOT ASSESSABLE",
            Outcome::Error => "ERROR ",
        };
        let score = match (d.score, d.threshold) {
            (Some(s), Some(t)) => format!(
                "score {s:6.2} {} {t:.2}",
                if f64::from(s) > t { ">" } else { "<=" }
            ),
            _ => String::new(),
        };
        let label = if d.model.clinical_use {
            ""
        } else {
            " — synthetic model, not for clinical use"
        };
        println!(
            "{tag} {:<24} {:<3} {score}  {} ms from C-STORE to decision ({}){}{}",
            d.finding_display.as_deref().unwrap_or("(no model)"),
            d.modality,
            d.decided_at_ms - d.received_last_ms,
            d.completion,
            d.reason
                .as_deref()
                .map(|r| format!(" — {r}"))
                .unwrap_or_default(),
            label,
        );
    }
}
