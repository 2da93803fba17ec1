use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use firstlook::config::Config;
use firstlook::daemon::Daemon;

/// firstlookd: receives images from the scanner, keeps every one safe on
/// disk, and forwards them to PACS.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Site configuration (TOML). Without it, embedded defaults: loopback only.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate a configuration file without starting.
    CheckConfig { file: PathBuf },
    /// Queue depths, dead letters and disk use, read from the spool.
    Status {
        /// Spool folder to read; defaults to the configuration's spool_dir.
        #[arg(long)]
        spool: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Dead letters: send them again, or give them up.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Demo: the daemon, a local PACS sink and a simulated scanner.
    #[cfg(feature = "demo")]
    Demo {
        /// Exit once the studies have been forwarded.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Send dead-lettered instances again: those named, or all of them.
    Requeue {
        #[command(flatten)]
        choice: DeadLetterChoice,
    },
    /// Give dead-lettered instances up: those named, or all with --all.
    Discard {
        #[command(flatten)]
        choice: DeadLetterChoice,
        /// Every dead letter (of --destination, if given).
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::Args)]
struct DeadLetterChoice {
    /// Spool folder; defaults to the configuration's spool_dir.
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Only this destination's dead letters.
    #[arg(long)]
    destination: Option<String>,
    /// SOP Instance UIDs.
    uids: Vec<String>,
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<Config> {
    match config {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::embedded_defaults()),
    }
}

/// To the journal when standard error is systemd's journal stream (with
/// levels and fields kept), else to standard error.
fn init_logs(default: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIRSTLOOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let journal = firstlook::systemd::stderr_is_journal()
        .then(|| match tracing_journald::layer() {
            Ok(layer) => Some(layer.with_syslog_identifier("firstlookd".into())),
            Err(e) => {
                eprintln!("firstlookd: cannot log to the journal ({e}); logging to standard error");
                None
            }
        })
        .flatten();
    let stderr = journal
        .is_none()
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("firstlookd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                let text = std::fs::read_to_string(&file)?;
                if let Err(e) = c.check_tls(&text, &file.display().to_string()) {
                    eprintln!("{e}");
                    return Ok(std::process::ExitCode::from(2));
                }
                if c.triage.enabled && c.triage.engine == firstlook::config::EngineChoice::Tensorrt
                {
                    if let Some(why) = firstlook::model::tensorrt_unavailable() {
                        eprintln!(
                            "{}",
                            c.engine_error(
                                &text,
                                &file.display().to_string(),
                                format!("engine = \"tensorrt\" cannot run: {why}"),
                                "use engine = \"auto\" (the best engine this build and machine have), or run the Jetson build"
                            )
                        );
                        return Ok(std::process::ExitCode::from(2));
                    }
                }
                if c.triage.enabled {
                    match firstlook::inference::load_bundle(&c.triage) {
                        Ok(bundle) => {
                            let m = bundle.manifest();
                            println!(
                                "{}: model {} {} (sha256 {}){}",
                                file.display(),
                                m.name,
                                m.version,
                                bundle.sha256_hex(),
                                if m.clinical_use {
                                    ""
                                } else {
                                    " — a demonstration model, NOT FOR CLINICAL USE"
                                }
                            );
                        }
                        Err(reason) => {
                            eprintln!(
                                "{}",
                                c.triage_error(
                                    &text,
                                    &file.display().to_string(),
                                    reason,
                                    "point [triage] bundle at a signed .flb and list its vendor's public key in trusted_keys; `firstlook-provision bundle verify` says why a bundle is refused"
                                )
                            );
                            return Ok(std::process::ExitCode::from(2));
                        }
                    }
                }
                println!(
                    "{}: OK (AE {}, listening on {}, {} scanner entries, {} destinations)",
                    file.display(),
                    c.node.ae_title,
                    c.node.listen,
                    c.scanners.len(),
                    c.destinations.len()
                );
                Ok(std::process::ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(std::process::ExitCode::from(2))
            }
        },
        Command::Status { spool, json } => {
            let dir = match spool {
                Some(d) => d,
                None => load(cli.config.as_ref())?.node.spool_dir,
            };
            let report = firstlook::status::report(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::DeadLetters { action } => {
            use firstlook::dead_letters::{apply, Action};
            let (action, choice, all) = match action {
                DeadLetterAction::Requeue { choice } => (Action::Requeue, choice, false),
                DeadLetterAction::Discard { choice, all } => (Action::Discard, choice, all),
            };
            let dir = match choice.spool {
                Some(d) => d,
                None => load(cli.config.as_ref())?.node.spool_dir,
            };
            let n = apply(
                &dir,
                action,
                choice.destination.as_deref(),
                &choice.uids,
                all,
            )?;
            let verb = match action {
                Action::Requeue => "requeued",
                Action::Discard => "discarded",
            };
            println!("{verb} {n} dead letter{}", if n == 1 { "" } else { "s" });
            Ok(std::process::ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Command::Demo { once } => {
            // The demo PACS sink has no destinations by design: no warning for it.
            init_logs("warn,firstlook::daemon=error");
            runtime()?.block_on(firstlook::demo::run(once))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Run => {
            init_logs("info");
            #[cfg(feature = "failpoints")]
            for name in firstlook::failpoints::arm_from_env().map_err(anyhow::Error::msg)? {
                tracing::warn!(message = "failpoint armed from the environment", name = %name);
            }
            let config = load(cli.config.as_ref())?;
            confine(&config)?;
            let notifier = firstlook::systemd::Notifier::from_env().map(std::sync::Arc::new);
            runtime()?.block_on(async move {
                let daemon = Daemon::start(config).await?;
                if let Some(n) = &notifier {
                    n.ready(&format!("accepting DICOM on {}", daemon.listen_addr));
                    tokio::spawn(firstlook::systemd::supervise(
                        std::sync::Arc::clone(n),
                        daemon.liveness(),
                        daemon.spool.dir().to_path_buf(),
                        daemon.stopping(),
                    ));
                }
                shutdown_signal().await;
                tracing::info!(message = "shutting down");
                if let Some(n) = &notifier {
                    n.stopping();
                }
                daemon.stop().await;
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// Before any thread starts: they all inherit the confinement.
fn confine(config: &Config) -> anyhow::Result<()> {
    use firstlook::sandbox::{confine_writes, writable_paths, Confinement};
    if !config.node.confine_writes {
        tracing::warn!(message = "filesystem writes not confined: node.confine_writes is off");
        return Ok(());
    }
    let folders = writable_paths(config);
    let shown: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
    match confine_writes(&folders)? {
        Confinement::Enforced => {
            tracing::info!(message = "filesystem writes confined", to = ?shown)
        }
        Confinement::Partial => tracing::warn!(
            message = "filesystem writes confined only in part: this kernel's Landlock is older than ABI 3",
            to = ?shown
        ),
        Confinement::Unsupported => tracing::warn!(
            message = "filesystem writes not confined: this kernel has no Landlock (Linux 5.13 or later, enabled at boot)"
        ),
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
