//! The results table: one row per report, written or failed, after the
//! decisions it covers. Decisions past the last covered one are pending.

use rusqlite::{params, Connection};

use crate::spool::IndexError;
use crate::triage::Decision;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS results(
  id INTEGER PRIMARY KEY,
  first_decision INTEGER NOT NULL UNIQUE,
  last_decision INTEGER NOT NULL,
  unit TEXT NOT NULL,
  study_uid TEXT,
  mode TEXT NOT NULL,
  state TEXT NOT NULL,
  sr_uid TEXT,
  sc_uid TEXT,
  error TEXT,
  decided_at INTEGER NOT NULL,
  written_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hl7_outbox(
  id INTEGER PRIMARY KEY,
  first_decision INTEGER NOT NULL UNIQUE,
  control_id TEXT NOT NULL,
  message TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  done_at INTEGER
);
CREATE INDEX IF NOT EXISTS hl7_outbox_due ON hl7_outbox(state, next_attempt_at);
";

pub fn init(conn: &Connection) -> Result<(), IndexError> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// Images that decisions still waiting for their report rest on (the
/// heatmap is drawn from one): SQL about an instance `i`, for
/// [`crate::spool::Spool::hold_while`].
pub fn held_until_reported() -> String {
    format!(
        "i.calling_ae != '{}' AND i.sop_instance_uid IN (
           SELECT input.value FROM decisions d, json_each(d.record, '$.inputs') input
           WHERE d.id > (SELECT COALESCE(MAX(last_decision), 0) FROM results))",
        super::OWN_AE
    )
}

/// The decisions of one unit made together: what one report covers.
#[derive(Debug, Clone)]
pub struct Batch {
    pub first: i64,
    pub last: i64,
    pub decisions: Vec<Decision>,
}

/// Decisions not yet covered by a report, grouped by unit and moment, the
/// oldest first.
pub fn pending(conn: &Connection, limit: usize) -> Result<Vec<Batch>, IndexError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, record FROM decisions
         WHERE id > (SELECT COALESCE(MAX(last_decision), 0) FROM results)
         ORDER BY id LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit as i64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut batches: Vec<Batch> = Vec::new();
    for row in rows {
        let (id, json) = row?;
        let Ok(decision) = serde_json::from_str::<Decision>(&json) else {
            tracing::error!(message = "a stored decision cannot be read back", id);
            continue;
        };
        match batches.last_mut() {
            Some(b)
                if b.decisions[0].unit == decision.unit
                    && b.decisions[0].decided_at_ms == decision.decided_at_ms =>
            {
                b.last = id;
                b.decisions.push(decision);
            }
            _ => batches.push(Batch {
                first: id,
                last: id,
                decisions: vec![decision],
            }),
        }
    }
    // The last batch may continue past the limit: leave it for next time
    // unless it is all there is.
    if batches.len() > 1 {
        let n: i64 = batches.iter().map(|b| b.decisions.len() as i64).sum();
        if n >= limit as i64 {
            batches.pop();
        }
    }
    Ok(batches)
}

/// What became of one report.
#[derive(Debug, Clone)]
pub struct Written {
    pub mode: &'static str,
    pub state: &'static str,
    pub sr_uid: Option<String>,
    pub sc_uid: Option<String>,
    pub error: Option<String>,
    /// The HL7 message to queue: (control id, text).
    pub hl7: Option<(String, String)>,
}

/// Records the report and, in the same transaction, queues its HL7
/// message (control id, text) when there is one.
pub fn record(
    conn: &Connection,
    batch: &Batch,
    w: &Written,
    hl7: Option<&(String, String)>,
    now_ms: i64,
) -> Result<(), IndexError> {
    if let Some((control_id, message)) = hl7 {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO hl7_outbox(first_decision, control_id, message, state, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
        )?
        .execute(params![batch.first, control_id, message, now_ms])?;
    }
    let d = &batch.decisions[0];
    conn.prepare_cached(
        "INSERT OR REPLACE INTO results(first_decision, last_decision, unit, study_uid, mode, state,
            sr_uid, sc_uid, error, decided_at, written_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        batch.first,
        batch.last,
        d.unit,
        d.study_uid,
        w.mode,
        w.state,
        w.sr_uid,
        w.sc_uid,
        w.error,
        d.decided_at_ms,
        now_ms
    ])?;
    Ok(())
}

/// Counts of reports by state, for status.
pub fn counts(conn: &Connection) -> Result<Vec<(String, i64)>, IndexError> {
    let mut stmt =
        conn.prepare("SELECT state || ' (' || mode || ')', COUNT(*) FROM results GROUP BY 1")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An HL7 message waiting for its ACK.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: i64,
    pub control_id: String,
    pub message: String,
    pub attempts: u32,
    pub created_at_ms: i64,
}

pub fn outbox_due(
    conn: &Connection,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<Outgoing>, IndexError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, control_id, message, attempts, created_at FROM hl7_outbox
         WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now_ms, limit as i64], |r| {
        Ok(Outgoing {
            id: r.get(0)?,
            control_id: r.get(1)?,
            message: r.get(2)?,
            attempts: r.get::<_, i64>(3)? as u32,
            created_at_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn outbox_next_due(conn: &Connection) -> Result<Option<i64>, IndexError> {
    Ok(conn.query_row(
        "SELECT min(next_attempt_at) FROM hl7_outbox WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )?)
}

/// What became of one delivery attempt.
pub enum Hl7Update {
    Sent,
    Retry { error: String, at_ms: i64 },
    Dead(String),
}

pub fn outbox_update(
    conn: &Connection,
    id: i64,
    update: &Hl7Update,
    now_ms: i64,
) -> Result<(), IndexError> {
    match update {
        Hl7Update::Sent => conn.execute(
            "UPDATE hl7_outbox SET state = 'sent', attempts = attempts + 1, done_at = ?2 WHERE id = ?1",
            params![id, now_ms],
        )?,
        Hl7Update::Retry { error, at_ms } => conn.execute(
            "UPDATE hl7_outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
            params![id, error, at_ms],
        )?,
        Hl7Update::Dead(error) => conn.execute(
            "UPDATE hl7_outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2, done_at = ?3 WHERE id = ?1",
            params![id, error, now_ms],
        )?,
    };
    Ok(())
}

/// HL7 messages by state, for status.
pub fn outbox_counts(conn: &Connection) -> Result<Vec<(String, i64)>, IndexError> {
    let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM hl7_outbox GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_held_until_the_decisions_on_them_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::spool::open_for_maintenance(&dir.path().join("index.sqlite")).unwrap();
        crate::inference::store::init(&conn).unwrap();
        init(&conn).unwrap();
        for (id, ae) in [
            (1, "CT01"),
            (2, "CT01"),
            (3, "CT01"),
            (4, super::super::OWN_AE),
        ] {
            crate::spool::insert_instance_row(&conn, id, 1, ae);
        }
        // Decision 1 rests on instance 1 and is reported; decision 2 on
        // instances 2 and 4 (say) and is not yet.
        for (id, inputs) in [(1, r#"["2.25.1"]"#), (2, r#"["2.25.2","2.25.4"]"#)] {
            conn.execute(
                "INSERT INTO decisions(id, decided_at, unit, modality, outcome, model_name, model_version,
                   model_sha256, engine, received_last_at, record)
                 VALUES (?1, 0, 'u', 'CT', 'urgent', 'm', '1', 'h', 'tract', 0, ?2)",
                params![id, format!(r#"{{"inputs":{inputs}}}"#)],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO results(first_decision, last_decision, unit, mode, state, decided_at, written_at)
             VALUES (1, 1, 'u', 'full', 'written', 0, 0)",
            [],
        )
        .unwrap();
        let held = || -> Vec<i64> {
            conn.prepare(&format!(
                "SELECT i.id FROM instances i WHERE {} ORDER BY i.id",
                held_until_reported()
            ))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        assert_eq!(held(), vec![2]);
        conn.execute(
            "INSERT INTO results(first_decision, last_decision, unit, mode, state, decided_at, written_at)
             VALUES (2, 2, 'u', 'full', 'failed', 0, 0)",
            [],
        )
        .unwrap();
        assert!(held().is_empty());
    }
}
