//! Triage's tables in the spool index: one result row per instance looked
//! at, the append-only decision log, and the model's state for `status`.

use rusqlite::{params, Connection, OptionalExtension};

use crate::spool::{IndexError, NewInstance};
use crate::triage::{Decision, SliceOutcome, SliceResult};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS triage_results(
  instance_id INTEGER PRIMARY KEY,
  outcome TEXT NOT NULL,
  reason TEXT,
  result TEXT,
  decided INTEGER NOT NULL DEFAULT 0,
  done_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS triage_results_open ON triage_results(decided) WHERE decided = 0;
-- An instance's result goes with it when a retired segment's instances are
-- forgotten (ids are never given out again); the decision log keeps what
-- was decided.
CREATE TRIGGER IF NOT EXISTS triage_results_go_with_instances AFTER DELETE ON instances
  BEGIN DELETE FROM triage_results WHERE instance_id = old.id; END;
CREATE TABLE IF NOT EXISTS decisions(
  id INTEGER PRIMARY KEY,
  decided_at INTEGER NOT NULL,
  unit TEXT NOT NULL,
  study_uid TEXT,
  series_uid TEXT,
  modality TEXT NOT NULL,
  finding TEXT,
  outcome TEXT NOT NULL,
  score REAL,
  threshold REAL,
  model_name TEXT NOT NULL,
  model_version TEXT NOT NULL,
  model_sha256 TEXT NOT NULL,
  engine TEXT NOT NULL,
  received_last_at INTEGER NOT NULL,
  record TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
  BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
  BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TABLE IF NOT EXISTS triage_model(
  id INTEGER PRIMARY KEY CHECK (id = 0),
  state TEXT NOT NULL,
  name TEXT,
  version TEXT,
  sha256 TEXT,
  engine TEXT,
  clinical_use INTEGER,
  error TEXT,
  updated_at INTEGER NOT NULL
);
";

pub fn init(conn: &Connection) -> Result<(), IndexError> {
    conn.execute_batch(SCHEMA)?;
    crate::spool::add_column(conn, "triage_model", "note", "TEXT")?;
    // Results an older firstlookd kept after forgetting their instances,
    // whose ids it could give out again: a new image under such an id
    // would look already triaged.
    conn.execute(
        "DELETE FROM triage_results WHERE instance_id NOT IN (SELECT id FROM instances)",
        [],
    )?;
    Ok(())
}

/// Instances triage has still to look at, or to decide on (their series
/// still open): SQL about an instance `i`, for [`crate::spool::Spool::hold_while`].
pub fn held_until_decided() -> String {
    format!(
        "i.superseded = 0 AND i.calling_ae != '{}'
         AND NOT EXISTS (SELECT 1 FROM triage_results t WHERE t.instance_id = i.id AND t.decided = 1)",
        crate::results::OWN_AE
    )
}

/// An instance not yet looked at by triage.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub instance_id: i64,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
    pub modality: Option<String>,
    pub instance_number: Option<i64>,
    pub segment: i64,
    pub body_offset: u64,
    pub body_len: u64,
    pub received_at_ms: i64,
    pub calling_ae: String,
}

impl Pending {
    /// An instance as it was just indexed (so without a triage result), as
    /// [`pending`] would return it; `None` for the box's own results.
    pub fn indexed(new: &NewInstance) -> Option<Pending> {
        let (h, s) = (&new.record.header, &new.record.summary);
        (h.calling_ae != crate::results::OWN_AE).then(|| Pending {
            instance_id: new.id,
            sop_instance_uid: h.sop_instance_uid.clone(),
            sop_class_uid: h.sop_class_uid.clone(),
            transfer_syntax_uid: h.transfer_syntax_uid.clone(),
            study_uid: s.study_instance_uid.clone(),
            series_uid: s.series_instance_uid.clone(),
            modality: s.modality.clone(),
            instance_number: s.instance_number,
            segment: new.record.segment,
            body_offset: new.record.body_offset,
            body_len: new.record.body_len,
            received_at_ms: h.received_at,
            calling_ae: h.calling_ae.clone(),
        })
    }
}

/// Instances after `after` without a triage result, oldest first; never
/// the box's own results.
pub fn pending(conn: &Connection, after: i64, limit: usize) -> Result<Vec<Pending>, IndexError> {
    let mut stmt = conn.prepare_cached(
        "SELECT i.id, i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, i.study_uid,
                i.series_uid, i.modality, i.instance_number, i.segment, i.body_offset, i.body_len,
                i.received_at, i.calling_ae
         FROM instances i
         WHERE i.id > ?1 AND i.superseded = 0 AND i.calling_ae != ?3
           AND NOT EXISTS (SELECT 1 FROM triage_results t WHERE t.instance_id = i.id)
         ORDER BY i.id LIMIT ?2",
    )?;
    let own = crate::results::OWN_AE;
    let rows = stmt.query_map(params![after, limit as i64, own], |r| {
        Ok(Pending {
            instance_id: r.get(0)?,
            sop_instance_uid: r.get(1)?,
            sop_class_uid: r.get(2)?,
            transfer_syntax_uid: r.get(3)?,
            study_uid: r.get(4)?,
            series_uid: r.get(5)?,
            modality: r.get(6)?,
            instance_number: r.get(7)?,
            segment: r.get(8)?,
            body_offset: r.get::<_, i64>(9)? as u64,
            body_len: r.get::<_, i64>(10)? as u64,
            received_at_ms: r.get(11)?,
            calling_ae: r.get(12)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An instance no model route takes: counted, never judged.
pub fn record_not_applicable(
    conn: &Connection,
    instance_id: i64,
    reason: &str,
    now_ms: i64,
) -> Result<(), IndexError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO triage_results(instance_id, outcome, reason, result, decided, done_at)
         VALUES (?1, 'not_applicable', ?2, NULL, 1, ?3)",
    )?
    .execute(params![instance_id, reason, now_ms])?;
    Ok(())
}

/// One instance's result, and the decisions (with the instances they
/// close) that it or a timeout produced; the index runs each call in one
/// transaction. Returns the decisions' ids.
pub fn record(
    tx: &Connection,
    slice: Option<&SliceResult>,
    decisions: &[Decision],
    closes: &[i64],
    now_ms: i64,
) -> Result<Vec<i64>, IndexError> {
    if let Some(fault) = crate::failpoints::hit("triage-record") {
        return Err(fault.sqlite_error().into());
    }
    if let Some(slice) = slice {
        let (outcome, reason) = match &slice.outcome {
            SliceOutcome::Scored { .. } => ("scored", None),
            SliceOutcome::NotAssessable(r) => ("not_assessable", Some(r.as_str())),
            SliceOutcome::Error(r) => ("error", Some(r.as_str())),
        };
        let json = serde_json::to_string(slice).expect("a slice result serialises");
        tx.prepare_cached(
            "INSERT OR REPLACE INTO triage_results(instance_id, outcome, reason, result, decided, done_at)
             VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        )?
        .execute(params![slice.facts.instance_id, outcome, reason, json, now_ms])?;
    }
    let mut ids = Vec::with_capacity(decisions.len());
    for d in decisions {
        let json = serde_json::to_string(d).expect("a decision serialises");
        tx.prepare_cached(
            "INSERT INTO decisions(decided_at, unit, study_uid, series_uid, modality, finding, outcome,
                score, threshold, model_name, model_version, model_sha256, engine, received_last_at, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?
        .execute(params![
            d.decided_at_ms,
            d.unit,
            d.study_uid,
            d.series_uid,
            d.modality,
            d.finding,
            d.outcome.as_str(),
            d.score.map(f64::from),
            d.threshold,
            d.model.name,
            d.model.version,
            d.model.sha256,
            d.model.engine,
            d.received_last_ms,
            json,
        ])?;
        ids.push(tx.last_insert_rowid());
    }
    for id in closes {
        tx.prepare_cached("UPDATE triage_results SET decided = 1 WHERE instance_id = ?1")?
            .execute(params![id])?;
    }
    Ok(ids)
}

/// Results still waiting for their series to complete (after a restart).
pub fn undecided(conn: &Connection) -> Result<Vec<SliceResult>, IndexError> {
    let mut stmt = conn.prepare(
        "SELECT result FROM triage_results WHERE decided = 0 AND result IS NOT NULL ORDER BY instance_id",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for json in rows {
        match serde_json::from_str(&json?) {
            Ok(slice) => out.push(slice),
            Err(e) => tracing::warn!(message = "unreadable triage result skipped", error = %e),
        }
    }
    Ok(out)
}

/// The model's state as `status` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelState {
    /// "loading", "ready", "failed" or "disabled".
    pub state: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub sha256: Option<String>,
    pub engine: Option<String>,
    pub clinical_use: Option<bool>,
    pub error: Option<String>,
    /// Why the engine is not the one `auto` would have liked (the GPU's).
    #[serde(default)]
    pub note: Option<String>,
    pub updated_at_ms: i64,
}

pub fn set_model_state(conn: &Connection, s: &ModelState) -> Result<(), IndexError> {
    conn.execute(
        "INSERT OR REPLACE INTO triage_model(id, state, name, version, sha256, engine, clinical_use, error, updated_at, note)
         VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            s.state,
            s.name,
            s.version,
            s.sha256,
            s.engine,
            s.clinical_use,
            s.error,
            s.updated_at_ms,
            s.note
        ],
    )?;
    Ok(())
}

pub fn model_state(conn: &Connection) -> Result<Option<ModelState>, IndexError> {
    Ok(conn
        .query_row(
            "SELECT state, name, version, sha256, engine, clinical_use, error, updated_at, note FROM triage_model WHERE id = 0",
            [],
            |r| {
                Ok(ModelState {
                    state: r.get(0)?,
                    name: r.get(1)?,
                    version: r.get(2)?,
                    sha256: r.get(3)?,
                    engine: r.get(4)?,
                    clinical_use: r.get(5)?,
                    error: r.get(6)?,
                    updated_at_ms: r.get(7)?,
                    note: r.get(8)?,
                })
            },
        )
        .optional()?)
}

/// The last `limit` decisions, newest first.
pub fn recent_decisions(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<(i64, Decision)>, IndexError> {
    let mut stmt = conn.prepare("SELECT id, record FROM decisions ORDER BY id DESC LIMIT ?1")?;
    let rows = stmt.query_map(params![limit as i64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, json) = row?;
        if let Ok(d) = serde_json::from_str(&json) {
            out.push((id, d));
        }
    }
    Ok(out)
}

/// Whether triage's tables exist (a spool from before triage has none).
pub fn present(conn: &Connection) -> Result<bool, IndexError> {
    crate::spool::table_exists(conn, "decisions")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::spool::open_for_maintenance(&dir.path().join("index.sqlite")).unwrap();
        init(&conn).unwrap();
        (dir, conn)
    }

    use crate::spool::insert_instance_row as instance;

    fn ids(conn: &Connection, sql: &str) -> Vec<i64> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_triage_result_goes_with_its_forgotten_instance() {
        let (_dir, conn) = index();
        for (id, segment) in [(1, 7), (2, 8)] {
            instance(&conn, id, segment, "CR01");
            record_not_applicable(&conn, id, "no route", 0).unwrap();
        }
        crate::spool::forget_instances(&conn, 7).unwrap();
        let left = ids(
            &conn,
            "SELECT instance_id FROM triage_results ORDER BY instance_id",
        );
        assert_eq!(left, vec![2]);
    }

    #[test]
    fn results_an_older_version_kept_for_forgotten_instances_go_at_start() {
        let (_dir, conn) = index();
        instance(&conn, 2, 8, "CR01");
        // As an older firstlookd left them: instance 1 forgotten, its result kept.
        for id in [1, 2] {
            record_not_applicable(&conn, id, "no route", 0).unwrap();
        }
        init(&conn).unwrap();
        let left = ids(
            &conn,
            "SELECT instance_id FROM triage_results ORDER BY instance_id",
        );
        assert_eq!(left, vec![2]);
        // So an instance given id 1 again is triaged.
        instance(&conn, 1, 9, "CR01");
        let pending: Vec<i64> = pending(&conn, 0, 10)
            .unwrap()
            .iter()
            .map(|p| p.instance_id)
            .collect();
        assert_eq!(pending, vec![1]);
    }

    #[test]
    fn instances_are_held_until_triage_has_decided_on_them() {
        let (_dir, conn) = index();
        let slice = |id: i64| SliceResult {
            facts: crate::triage::InstanceFacts {
                instance_id: id,
                ..Default::default()
            },
            outcome: SliceOutcome::Error("x".into()),
            started_at_ms: 0,
            ended_at_ms: 0,
            timing: Default::default(),
        };
        // 1: not looked at; 2: looked at, its series open; 3: decided;
        // 4: no route takes it; 5: the box's own result; 6: superseded.
        for id in 1..=6 {
            let ae = if id == 5 {
                crate::results::OWN_AE
            } else {
                "CT01"
            };
            instance(&conn, id, 1, ae);
        }
        record(&conn, Some(&slice(2)), &[], &[], 0).unwrap();
        record(&conn, Some(&slice(3)), &[], &[3], 0).unwrap();
        record_not_applicable(&conn, 4, "no route", 0).unwrap();
        conn.execute("UPDATE instances SET superseded = 1 WHERE id = 6", [])
            .unwrap();
        let held = format!(
            "SELECT i.id FROM instances i WHERE {} ORDER BY i.id",
            held_until_decided()
        );
        assert_eq!(ids(&conn, &held), vec![1, 2]);
    }
}
