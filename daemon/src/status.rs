//! `firstlookd status`: what the spool holds and owes, read beside a running daemon.

use std::fmt;
use std::path::Path;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::inference::store::{self, ModelState};
use crate::spool::{index_path, now_ms, open_read_only, usage, IndexError};
use crate::triage::{Decision, Outcome};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationStatus {
    pub name: String,
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    /// Owed to a destination no longer configured: kept for the retention,
    /// sent if it is configured again.
    #[serde(default)]
    pub set_aside: u64,
    /// Age of the oldest pending instance, in seconds.
    pub oldest_pending_secs: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub destination: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub status: Option<u16>,
    pub reason: String,
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub spool_dir: String,
    /// Instances received (the box's own results not counted).
    pub instances: u64,
    /// Instances the box made: SR reports and heatmap images.
    #[serde(default)]
    pub results: u64,
    pub spool_bytes: u64,
    /// When the last instance from a scanner arrived, ms since the epoch.
    #[serde(default)]
    pub last_received_ms: Option<i64>,
    pub disk_total_bytes: u64,
    #[serde(default)]
    pub disk_used_bytes: u64,
    pub disk_available_bytes: u64,
    pub destinations: Vec<DestinationStatus>,
    pub dead_letters: Vec<DeadLetter>,
    /// Absent for a spool triage never ran on.
    pub triage: Option<TriageStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriageStatus {
    pub model: Option<ModelState>,
    /// Instances received and not yet looked at by the model.
    pub queue: u64,
    /// Instances scored, waiting for the rest of their series.
    pub awaiting_series: u64,
    /// Instances no model route takes (forwarded untouched).
    pub not_applicable: u64,
    /// Images and series with at least one decision.
    pub decided_units: u64,
    pub urgent: u64,
    pub finding: u64,
    pub no_finding: u64,
    pub not_assessable: u64,
    pub errors: u64,
    /// Newest first.
    pub recent: Vec<Decision>,
    /// Reports (SR + heatmap) by state and mode, e.g. `written (full)`.
    #[serde(default)]
    pub reports: Vec<(String, i64)>,
    /// HL7 messages to the RIS by state (pending, sent, dead).
    #[serde(default)]
    pub hl7: Vec<(String, i64)>,
}

/// Why status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// There is no spool index at that path yet.
    #[error("no spool at {0} (has firstlookd run with this spool_dir?)")]
    NoSpool(String),
    /// The index could not be read.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The disk could not be measured.
    #[error("cannot measure the spool disk: {0}")]
    Disk(#[from] std::io::Error),
}

impl From<rusqlite::Error> for StatusError {
    fn from(e: rusqlite::Error) -> Self {
        StatusError::Index(IndexError::Sqlite(e))
    }
}

/// The spool's state, read beside a running daemon. A read that meets the
/// daemon checkpointing or opening its index (SQLite I/O errors of a read-only
/// connection racing the writer) is tried again a few times.
pub fn report(spool_dir: &Path) -> Result<StatusReport, StatusError> {
    let path = index_path(spool_dir);
    if !path.exists() {
        return Err(StatusError::NoSpool(spool_dir.display().to_string()));
    }
    let mut tries = 0;
    loop {
        match report_once(spool_dir, &path) {
            Err(StatusError::Index(IndexError::Sqlite(rusqlite::Error::SqliteFailure(e, _))))
                if e.code == rusqlite::ErrorCode::SystemIoFailure && tries < 5 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn report_once(spool_dir: &Path, path: &Path) -> Result<StatusReport, StatusError> {
    let conn = open_read_only(path)?;
    // One read transaction: every count below comes from the same snapshot
    // (a decision counted in one query and missing from the next would make
    // the report contradict itself).
    let snapshot = conn.unchecked_transaction()?;
    let conn = &*snapshot;
    let (instances, results, spool_bytes, last_received_ms): (i64, i64, i64, Option<i64>) = conn
        .query_row(
            "SELECT coalesce(sum(calling_ae != ?1), 0), coalesce(sum(calling_ae = ?1), 0),
                    coalesce(sum(record_len), 0), max(CASE WHEN calling_ae != ?1 THEN received_at END)
             FROM instances",
            [crate::results::OWN_AE],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    let now = now_ms();
    let mut destinations = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT destination,
                    sum(state='pending'), sum(state='delivered'), sum(state='dead'),
                    min(CASE WHEN state='pending' THEN i.received_at END),
                    sum(state IN ('orphaned', 'orphaned_dead'))
             FROM deliveries d JOIN instances i ON i.id=d.instance_id
             GROUP BY destination ORDER BY destination",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        for row in rows {
            let (name, pending, delivered, dead, oldest, set_aside) = row?;
            let last_error: Option<String> = conn
                .query_row(
                    "SELECT reason FROM deliveries WHERE destination=?1 AND state='pending' AND reason IS NOT NULL
                     ORDER BY next_attempt_at DESC LIMIT 1",
                    params![name],
                    |r| r.get(0),
                )
                .ok();
            destinations.push(DestinationStatus {
                name,
                pending: pending as u64,
                delivered: delivered as u64,
                dead: dead as u64,
                set_aside: set_aside as u64,
                oldest_pending_secs: oldest.map(|t| (now - t) / 1000),
                last_error,
            });
        }
    }
    let mut dead_letters = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT d.destination, i.sop_instance_uid, i.sop_class_uid, d.last_status, coalesce(d.reason,''), d.attempts
             FROM deliveries d JOIN instances i ON i.id=d.instance_id WHERE d.state='dead' ORDER BY d.done_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DeadLetter {
                destination: r.get(0)?,
                sop_instance_uid: r.get(1)?,
                sop_class_uid: r.get(2)?,
                status: r.get::<_, Option<i64>>(3)?.map(|s| s as u16),
                reason: r.get(4)?,
                attempts: r.get::<_, i64>(5)? as u32,
            })
        })?;
        for row in rows {
            dead_letters.push(row?);
        }
    }
    let disk = usage(spool_dir)?;
    let triage = if store::present(conn)? {
        Some(triage(conn)?)
    } else {
        None
    };
    Ok(StatusReport {
        spool_dir: spool_dir.display().to_string(),
        instances: instances as u64,
        results: results as u64,
        spool_bytes: spool_bytes as u64,
        last_received_ms,
        disk_total_bytes: disk.total_bytes,
        disk_used_bytes: disk.used_bytes,
        disk_available_bytes: disk.available_bytes,
        destinations,
        dead_letters,
        triage,
    })
}

fn triage(conn: &rusqlite::Connection) -> Result<TriageStatus, StatusError> {
    let count = |sql: &str| -> Result<u64, StatusError> {
        Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
    };
    let mut outcomes = std::collections::HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT outcome, count(*) FROM decisions GROUP BY outcome")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (outcome, n) = row?;
            outcomes.insert(outcome, n as u64);
        }
    }
    let outcome = |o: Outcome| outcomes.get(o.as_str()).copied().unwrap_or(0);
    Ok(TriageStatus {
        model: store::model_state(conn)?,
        queue: count(
            "SELECT count(*) FROM instances i WHERE i.superseded = 0
             AND i.calling_ae != 'firstlook:results'
             AND NOT EXISTS (SELECT 1 FROM triage_results t WHERE t.instance_id = i.id)",
        )?,
        awaiting_series: count("SELECT count(*) FROM triage_results WHERE decided = 0")?,
        not_applicable: count(
            "SELECT count(*) FROM triage_results WHERE outcome = 'not_applicable'",
        )?,
        decided_units: count("SELECT count(DISTINCT unit) FROM decisions")?,
        urgent: outcome(Outcome::Urgent),
        finding: outcome(Outcome::Finding),
        no_finding: outcome(Outcome::NoFinding),
        not_assessable: outcome(Outcome::NotAssessable),
        errors: outcome(Outcome::Error),
        recent: store::recent_decisions(conn, 10)?
            .into_iter()
            .map(|(_, d)| d)
            .collect(),
        reports: if crate::spool::table_exists(conn, "results")? {
            crate::results::counts(conn)?
        } else {
            Vec::new()
        },
        hl7: if crate::spool::table_exists(conn, "hl7_outbox")? {
            crate::results::outbox_counts(conn)?
        } else {
            Vec::new()
        },
    })
}

fn gib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0 * 1024.0)
}

impl StatusReport {
    /// What systemd shows for the service (`STATUS=`): held, queued, dead,
    /// disk, model; no patient data.
    pub fn one_line(&self) -> String {
        let pending: u64 = self.destinations.iter().map(|d| d.pending).sum();
        let dead: u64 = self.destinations.iter().map(|d| d.dead).sum();
        let used = match self.disk_total_bytes {
            0 => 0.0,
            total => 100.0 * (total - self.disk_available_bytes.min(total)) as f64 / total as f64,
        };
        let mut line = format!(
            "{} images held, {pending} waiting for PACS, {dead} dead letters, disk {used:.0} % used",
            self.instances
        );
        if let Some(m) = self.triage.as_ref().and_then(|t| t.model.as_ref()) {
            line.push_str(&format!(
                ", model {} ({})",
                m.state,
                m.engine.as_deref().unwrap_or("no engine")
            ));
        }
        line
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "spool      {}", self.spool_dir)?;
        writeln!(
            f,
            "disk       {:.1} GiB free of {:.1} GiB",
            gib(self.disk_available_bytes),
            gib(self.disk_total_bytes)
        )?;
        writeln!(
            f,
            "held       {} instances and {} results (SR, heatmaps), {:.1} MiB",
            self.instances,
            self.results,
            self.spool_bytes as f64 / (1024.0 * 1024.0)
        )?;
        if self.destinations.is_empty() {
            writeln!(f, "queues     (no deliveries recorded)")?;
        }
        for d in &self.destinations {
            write!(
                f,
                "queue      {:<16} pending {:>6}  delivered {:>8}  dead {:>4}",
                d.name, d.pending, d.delivered, d.dead
            )?;
            if let Some(age) = d.oldest_pending_secs {
                write!(f, "  oldest {age}s")?;
            }
            if d.set_aside > 0 {
                write!(
                    f,
                    "  set aside {} (no longer configured; kept for the retention)",
                    d.set_aside
                )?;
            }
            writeln!(f)?;
            if let Some(e) = &d.last_error {
                writeln!(f, "           last error: {e}")?;
            }
        }
        if let Some(t) = &self.triage {
            write!(f, "{t}")?;
        }
        if !self.dead_letters.is_empty() {
            writeln!(f, "dead letters ({}):", self.dead_letters.len())?;
            for d in &self.dead_letters {
                writeln!(
                    f,
                    "  {:<16} {}  class {}  after {} attempt(s): {}",
                    d.destination, d.sop_instance_uid, d.sop_class_uid, d.attempts, d.reason
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for TriageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.model {
            Some(m) => {
                write!(
                    f,
                    "model      {} {} on {} — {}",
                    m.name.as_deref().unwrap_or("(none)"),
                    m.version.as_deref().unwrap_or(""),
                    m.engine.as_deref().unwrap_or("?"),
                    m.state
                )?;
                if m.clinical_use == Some(false) {
                    write!(f, " (synthetic/demo model — not for clinical use)")?;
                }
                writeln!(f)?;
                if let Some(e) = &m.error {
                    writeln!(f, "           error: {e}")?;
                }
                if let Some(n) = &m.note {
                    writeln!(f, "           note: {n}")?;
                }
            }
            None => writeln!(f, "model      (not started)")?,
        }
        writeln!(
            f,
            "triage     queue {}  awaiting series {}  not applicable {}",
            self.queue, self.awaiting_series, self.not_applicable
        )?;
        writeln!(
            f,
            "decisions  {} urgent  {} finding  {} no finding  {} not assessable  {} error",
            self.urgent, self.finding, self.no_finding, self.not_assessable, self.errors
        )?;
        let list = |v: &[(String, i64)]| {
            v.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        if !self.reports.is_empty() {
            writeln!(f, "results    {}", list(&self.reports))?;
        }
        if !self.hl7.is_empty() {
            writeln!(f, "hl7 to RIS {}", list(&self.hl7))?;
        }
        for d in &self.recent {
            writeln!(
                f,
                "  {:<14} {:<14} {:<3} {}{}",
                d.outcome.as_str(),
                d.finding.as_deref().unwrap_or("-"),
                d.modality,
                d.score
                    .map(|s| format!("score {s:.2}  "))
                    .unwrap_or_default(),
                d.reason.as_deref().unwrap_or(""),
            )?;
        }
        Ok(())
    }
}
