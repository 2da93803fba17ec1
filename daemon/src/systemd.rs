//! Running under systemd (`Type=notify`): readiness, a one-line status,
//! the watchdog and stopping, over the notification socket systemd names in
//! `NOTIFY_SOCKET`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::liveness::Liveness;

/// How often the status line is refreshed when there is no watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// The notification socket, when systemd gave one.
pub struct Notifier {
    watchdog: Option<Duration>,
    warned: AtomicBool,
}

impl Notifier {
    pub fn from_env() -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET")?;
        Some(Notifier {
            watchdog: sd_notify::watchdog_enabled(),
            warned: AtomicBool::new(false),
        })
    }

    /// `WatchdogSec=`, when the unit sets one for this process.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(message = "cannot notify systemd", error = %e);
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub fn alive(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&self) {
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping: finishing the transfers under way"),
        ]);
    }
}

/// Feeds the watchdog at half its period while every watched part is
/// healthy, and keeps the status line current; a stalled part stops the
/// feeding (systemd then restarts the daemon) and is named in the status.
/// Returns when `shutdown` turns true.
pub async fn supervise(
    notifier: Arc<Notifier>,
    liveness: Arc<Liveness>,
    spool_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let tick = notifier.watchdog().map_or(STATUS_EVERY, |w| w / 2);
    let mut last_status = tokio::time::Instant::now();
    let mut stalled = None;
    loop {
        match liveness.check() {
            Ok(()) => {
                if stalled.take().is_some() {
                    tracing::info!(message = "every part is making progress again");
                }
                if notifier.watchdog().is_some() {
                    notifier.alive();
                }
            }
            Err(why) => {
                if stalled.as_ref() != Some(&why) {
                    tracing::error!(message = "not feeding the systemd watchdog", reason = %why);
                    notifier.status(&format!("stalled: {why}"));
                }
                stalled = Some(why);
            }
        }
        if stalled.is_none() && last_status.elapsed() >= STATUS_EVERY {
            last_status = tokio::time::Instant::now();
            if let Some(line) = status_line(&spool_dir).await {
                notifier.status(&line);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn status_line(spool_dir: &std::path::Path) -> Option<String> {
    let dir = spool_dir.to_path_buf();
    let report = tokio::task::spawn_blocking(move || crate::status::report(&dir))
        .await
        .ok()?
        .ok()?;
    Some(report.one_line())
}

/// Whether standard error is the journal's stream (systemd sets
/// `JOURNAL_STREAM` to its device and inode); a child that inherited the
/// variable but writes elsewhere logs to standard error.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_is_used_only_when_it_is_our_standard_error() {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata("/proc/self/fd/2").expect("stat stderr");
        std::env::set_var("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        assert!(stderr_is_journal());
        // Inherited from a parent whose standard error was the journal.
        std::env::set_var(
            "JOURNAL_STREAM",
            format!("{}:{}", meta.dev(), meta.ino() + 1),
        );
        assert!(!stderr_is_journal());
        std::env::set_var("JOURNAL_STREAM", "garbage");
        assert!(!stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
        assert!(!stderr_is_journal());
    }
}
