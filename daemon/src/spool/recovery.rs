//! Start-up recovery and segment retirement.

use std::path::Path;

use rusqlite::{params, params_from_iter, Connection};

use super::index::{self, IndexError, InsertOutcome};
use super::segment;
use super::{now_ms, SpoolError};

/// What recovery found; logged at start and shown by `firstlookd status`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Intact records the index had lost (acknowledged just before a crash).
    pub reindexed: usize,
    pub duplicates: usize,
    /// Bytes of records torn by a crash; never acknowledged, left unused.
    pub torn_bytes: u64,
    pub next_segment_id: i64,
    /// Deliveries owed to destinations no longer configured: kept for the
    /// retention from the start that found them so, then forgotten.
    pub orphaned: usize,
    /// Deliveries taken up again: their destination is configured again.
    pub resumed: usize,
}

pub fn recover(
    conn: &mut Connection,
    dir: &Path,
    destinations: &[String],
) -> Result<RecoveryReport, SpoolError> {
    let io = |source| SpoolError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut report = RecoveryReport::default();
    let retired: Vec<i64> = {
        let mut stmt = conn
            .prepare("SELECT id FROM segments WHERE state='retired'")
            .map_err(IndexError::from)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(IndexError::from)?;
        rows.collect::<Result<_, _>>().map_err(IndexError::from)?
    };
    for id in &retired {
        let _ = std::fs::remove_file(segment::segment_path(dir, *id));
    }
    let tx = conn.transaction().map_err(IndexError::from)?;
    forget_segments(&tx, &retired)?;
    // Deliveries to destinations no longer configured would hold their
    // segments forever: set aside, kept for the retention from now (a
    // destination taken out for a while must not lose its backlog at once),
    // and taken up again if it comes back. A dead letter stays one.
    let configured = match destinations.len() {
        0 => "0".to_string(),
        n => format!("destination IN ({})", vec!["?"; n].join(",")),
    };
    let now = now_ms();
    let mut resumed = 0;
    for (from, to) in [("orphaned", "pending"), ("orphaned_dead", "dead")] {
        let sql = format!(
            "UPDATE deliveries SET state='{to}', done_at=NULL, next_attempt_at={now}
             WHERE state='{from}' AND {configured}"
        );
        resumed += tx
            .execute(&sql, params_from_iter(destinations.iter()))
            .map_err(IndexError::from)?;
    }
    report.resumed = resumed;
    let mut orphaned = 0;
    for (from, to) in [("pending", "orphaned"), ("dead", "orphaned_dead")] {
        let sql = format!(
            "UPDATE deliveries SET state='{to}', done_at={now} WHERE state='{from}' AND NOT ({configured})"
        );
        orphaned += tx
            .execute(&sql, params_from_iter(destinations.iter()))
            .map_err(IndexError::from)?;
    }
    report.orphaned = orphaned;

    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if let Some(id) = segment::segment_id(&path) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    report.segments = ids.len();
    report.next_segment_id = ids.last().map_or(1, |m| m + 1);
    let now = now_ms();
    for id in ids {
        let scanned_to: i64 = tx
            .query_row(
                "SELECT scanned_to FROM segments WHERE id=?1",
                params![id],
                |r| r.get(0),
            )
            .unwrap_or(0);
        let scan = segment::scan(dir, id, scanned_to as u64).map_err(io)?;
        for rec in &scan.records {
            match index::insert(&tx, rec, destinations, now, index::Source::Recovery)? {
                InsertOutcome::Inserted { .. } | InsertOutcome::Replaced { .. } => {
                    report.reindexed += 1
                }
                InsertOutcome::Duplicate { .. } => report.duplicates += 1,
                InsertOutcome::AlreadyIndexed { .. } => {}
            }
        }
        if scan.torn_bytes > 0 {
            tracing::warn!(
                message =
                    "segment ends in a torn record (never acknowledged); it takes no more writes",
                segment = id,
                torn_bytes = scan.torn_bytes
            );
            report.torn_bytes += scan.torn_bytes;
        }
        // Segments found at start are never appended to again.
        tx.execute(
            "INSERT INTO segments(id, state, scanned_to, created_at) VALUES(?1, 'closed', ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET state='closed', scanned_to=max(scanned_to, excluded.scanned_to)",
            params![id, scan.valid_to as i64, now],
        )
        .map_err(IndexError::from)?;
    }
    tx.commit().map_err(IndexError::from)?;
    conn.execute_batch("PRAGMA wal_checkpoint(FULL)")
        .map_err(IndexError::from)?;
    Ok(report)
}

/// What keeps a segment beyond its retention: any instance in it received
/// after `since_ms` for which one of `conditions` (SQL about an instance
/// `i`) is true.
#[derive(Debug, Default)]
pub struct Holds {
    pub conditions: Vec<String>,
    pub since_ms: i64,
}

/// Marks segments retired when nothing in them is still owed to anyone.
pub fn mark_retirable(
    tx: &Connection,
    active: &[i64],
    cutoff_ms: i64,
    holds: &Holds,
) -> Result<Vec<i64>, IndexError> {
    let held = match holds.conditions.as_slice() {
        [] => String::new(),
        conditions => format!(
            "AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.segment=s.id AND i.received_at > ?2
                             AND (({})))",
            conditions.join(") OR (")
        ),
    };
    let mut stmt = tx.prepare(&format!(
        "SELECT s.id FROM segments s WHERE s.state != 'retired'
           AND NOT EXISTS (SELECT 1 FROM instances i JOIN deliveries d ON d.instance_id=i.id
                           WHERE i.segment=s.id AND (d.state IN ('pending','dead') OR d.done_at > ?1))
           AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.segment=s.id AND i.received_at > ?1)
           {held}"
    ))?;
    let mut params = vec![cutoff_ms];
    if !held.is_empty() {
        params.push(holds.since_ms);
    }
    let candidates: Vec<i64> = stmt
        .query_map(rusqlite::params_from_iter(params), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let retired: Vec<i64> = candidates
        .into_iter()
        .filter(|id| !active.contains(id))
        .collect();
    for id in &retired {
        tx.execute(
            "UPDATE segments SET state='retired' WHERE id=?1",
            params![id],
        )?;
    }
    Ok(retired)
}

pub fn forget_segments(tx: &Connection, ids: &[i64]) -> Result<(), IndexError> {
    for id in ids {
        index::forget_instances(tx, *id)?;
        tx.execute("DELETE FROM segments WHERE id=?1", params![id])?;
    }
    Ok(())
}
