//! What changed since the last start. The configuration's fingerprint and
//! the last two bundles put to use are kept in small files beside the
//! spool, so a new configuration, a bundle installed and a bundle rolled
//! back to are each audited once, when they take effect.

use std::path::Path;

use super::{AuditLog, Event, Outcome};

const CONFIG_FILE: &str = "audit-config.sha256";
const BUNDLES_FILE: &str = "audit-bundles";

/// Audits the configuration if it differs from the one of the last start.
pub fn note_config(log: &AuditLog, spool_dir: &Path, path: &str, sha256: &str) {
    let file = spool_dir.join(CONFIG_FILE);
    let previous = read_lines(&file).into_iter().next();
    if previous.as_deref() == Some(sha256) {
        return;
    }
    log.record(Event::Config {
        path: path.to_string(),
        sha256: sha256.to_string(),
        previous_sha256: previous,
    });
    remember(&file, &[sha256]);
}

/// Audits a bundle put to use if it is not the one used last time: a
/// rollback when it is the one used before that, else an install.
pub fn note_bundle(log: &AuditLog, spool_dir: &Path, path: &str, name: &str, sha256: &str) {
    let file = spool_dir.join(BUNDLES_FILE);
    let known = read_lines(&file);
    let (last, before) = (known.first(), known.get(1));
    if last.map(String::as_str) == Some(sha256) {
        return;
    }
    log.record(Event::Bundle {
        path: path.to_string(),
        name: name.to_string(),
        sha256: sha256.to_string(),
        previous: last.cloned(),
        rollback: before.map(String::as_str) == Some(sha256),
        outcome: Outcome::Success,
    });
    match last {
        Some(last) => remember(&file, &[sha256, last]),
        None => remember(&file, &[sha256]),
    }
}

fn read_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn remember(file: &Path, lines: &[&str]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    if let Err(e) = crate::durable::replace(file, text.as_bytes(), 0o600) {
        tracing::warn!(message = "cannot remember what was audited; it may be audited again at the next start", file = %file.display(), error = %e);
    }
}
