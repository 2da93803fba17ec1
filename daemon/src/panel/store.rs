//! What the panel reads from the spool index, and the technologists'
//! feedback it keeps there.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::inference::store;
use crate::spool::IndexError;
use crate::triage::Decision;

/// Decision log rows (id, JSON record) as decisions; a record that no
/// longer reads is left out.
fn decoded(rows: Vec<(i64, String)>) -> Vec<(i64, Decision)> {
    rows.into_iter()
        .filter_map(|(id, json)| serde_json::from_str(&json).ok().map(|d| (id, d)))
        .collect()
}

/// At most `limit` decisions after `after` in log order, or without it
/// (or with an id the log never reached: another spool) the newest `first`
/// (oldest first).
pub fn decisions_after(
    conn: &Connection,
    after: Option<i64>,
    first: usize,
    limit: usize,
) -> Result<Vec<(i64, Decision)>, IndexError> {
    if !store::present(conn)? {
        return Ok(Vec::new());
    }
    let newest: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM decisions", [], |r| {
        r.get(0)
    })?;
    let Some(after) = after.filter(|&a| a <= newest) else {
        let mut newest = store::recent_decisions(conn, first)?;
        newest.reverse();
        return Ok(newest);
    };
    let rows: Vec<(i64, String)> = conn
        .prepare_cached("SELECT id, record FROM decisions WHERE id > ?1 ORDER BY id LIMIT ?2")?
        .query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(decoded(rows))
}

const FEEDBACK_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feedback(
  id INTEGER PRIMARY KEY,
  decision INTEGER NOT NULL,
  finding TEXT,
  action TEXT NOT NULL,
  reason TEXT,
  comment TEXT,
  user TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_decision ON feedback(decision);
";

pub fn init(conn: &Connection) -> Result<(), IndexError> {
    conn.execute_batch(FEEDBACK_SCHEMA)?;
    Ok(())
}

/// What a technologist said about a decision, and who and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub decision: i64,
    pub action: Action,
    pub reason: Option<DismissReason>,
    pub comment: Option<String>,
    pub user: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Acknowledged,
    Dismissed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DismissReason {
    FalsePositive,
    AlreadyKnown,
    PoorImageQuality,
    Other,
}

fn as_text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn from_text<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

/// Stores feedback on an existing decision; `None` when there is no such
/// decision.
pub fn record_feedback(conn: &Connection, f: &Feedback) -> Result<Option<i64>, IndexError> {
    let finding: Option<Option<String>> = conn
        .query_row(
            "SELECT finding FROM decisions WHERE id = ?1",
            params![f.decision],
            |r| r.get(0),
        )
        .optional()?;
    let Some(finding) = finding else {
        return Ok(None);
    };
    conn.execute(
        "INSERT INTO feedback(decision, finding, action, reason, comment, user, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            f.decision,
            finding,
            as_text(&f.action),
            f.reason.as_ref().map(as_text),
            f.comment,
            f.user,
            f.at_ms
        ],
    )?;
    Ok(Some(conn.last_insert_rowid()))
}

/// The latest feedback on each of `decisions` that has any.
pub fn latest_feedback(
    conn: &Connection,
    decisions: &[i64],
) -> Result<HashMap<i64, Feedback>, IndexError> {
    let mut out = HashMap::new();
    let (Some(low), Some(high)) = (decisions.iter().min(), decisions.iter().max()) else {
        return Ok(out);
    };
    if !crate::spool::table_exists(conn, "feedback")? {
        return Ok(out);
    }
    let wanted: std::collections::HashSet<i64> = decisions.iter().copied().collect();
    // Oldest first, so the latest feedback on a decision is the one kept.
    let mut stmt = conn.prepare_cached(
        "SELECT decision, action, reason, comment, user, at FROM feedback
         WHERE decision BETWEEN ?1 AND ?2 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![low, high], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    for row in rows {
        let (decision, action, reason, comment, user, at_ms) = row?;
        let Some(action) = from_text(&action).filter(|_| wanted.contains(&decision)) else {
            continue;
        };
        out.insert(
            decision,
            Feedback {
                decision,
                action,
                reason: reason.as_deref().and_then(from_text),
                comment,
                user,
                at_ms,
            },
        );
    }
    Ok(out)
}

/// Which decisions the history view shows.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct HistoryFilter {
    pub scanner: Option<String>,
    pub finding: Option<String>,
    pub outcome: Option<String>,
    /// Decided at or after, ms since the epoch.
    pub since_ms: Option<i64>,
    /// Decided before, ms since the epoch.
    pub until_ms: Option<i64>,
    pub limit: Option<usize>,
}

pub const HISTORY_MAX: usize = 500;

/// Decisions matching `f`, newest first.
pub fn history(conn: &Connection, f: &HistoryFilter) -> Result<Vec<(i64, Decision)>, IndexError> {
    if !store::present(conn)? {
        return Ok(Vec::new());
    }
    let empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let rows: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT id, record FROM decisions
             WHERE (?1 IS NULL OR json_extract(record, '$.scanner') = ?1)
               AND (?2 IS NULL OR finding = ?2)
               AND (?3 IS NULL OR outcome = ?3)
               AND (?4 IS NULL OR decided_at >= ?4)
               AND (?5 IS NULL OR decided_at < ?5)
             ORDER BY id DESC LIMIT ?6",
        )?
        .query_map(
            params![
                empty(&f.scanner),
                empty(&f.finding),
                empty(&f.outcome),
                f.since_ms,
                f.until_ms,
                f.limit.unwrap_or(100).min(HISTORY_MAX) as i64
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    Ok(decoded(rows))
}

/// One decision from the log.
pub fn decision(conn: &Connection, id: i64) -> Result<Option<Decision>, IndexError> {
    if !store::present(conn)? {
        return Ok(None);
    }
    let json: Option<String> = conn
        .query_row(
            "SELECT record FROM decisions WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// A decision's heatmap, as far as the results table tells.
#[derive(Debug, PartialEq)]
pub enum Heatmap {
    /// No report covers the decision yet (or none will).
    NotYet,
    /// The report's map shows another of its findings, or there is no map.
    None,
    /// The Secondary Capture's SOP Instance UID.
    Shown(String),
}

/// The heatmap image of the report covering decision `id`, when it shows
/// that decision's finding (a report has one map, of its strongest finding).
pub fn heatmap(conn: &Connection, id: i64) -> Result<Heatmap, IndexError> {
    if !crate::spool::table_exists(conn, "results")? {
        return Ok(Heatmap::NotYet);
    }
    let report: Option<(Option<String>, i64, i64)> = conn
        .query_row(
            "SELECT sc_uid, first_decision, last_decision FROM results
             WHERE first_decision <= ?1 AND last_decision >= ?1 ORDER BY id DESC LIMIT 1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (uid, first, last) = match report {
        None => return Ok(Heatmap::NotYet),
        Some((None, ..)) => return Ok(Heatmap::None),
        Some((Some(uid), first, last)) => (uid, first, last),
    };
    let batch: Vec<(i64, String)> = conn
        .prepare_cached("SELECT id, record FROM decisions WHERE id BETWEEN ?1 AND ?2")?
        .query_map(params![first, last], |r| {
            Ok((r.get(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let batch = decoded(batch);
    let shown = crate::results::strongest_by(&batch, |(_, d)| (d.score, d.threshold, d.outcome));
    Ok(match shown {
        Some((i, _)) if *i == id => Heatmap::Shown(uid),
        _ => Heatmap::None,
    })
}

/// Scanners and findings (code, name) seen in the decision log, for the
/// history filters.
#[derive(Debug, Default, Serialize)]
pub struct Choices {
    pub scanners: Vec<String>,
    pub findings: Vec<(String, String)>,
}

pub fn choices(conn: &Connection) -> Result<Choices, IndexError> {
    if !store::present(conn)? {
        return Ok(Choices::default());
    }
    let scanners = conn
        .prepare_cached(
            "SELECT DISTINCT json_extract(record, '$.scanner') FROM decisions
             WHERE json_extract(record, '$.scanner') IS NOT NULL ORDER BY 1",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let findings = conn
        .prepare_cached(
            "SELECT finding, max(json_extract(record, '$.finding_display')) FROM decisions
             WHERE finding IS NOT NULL GROUP BY finding ORDER BY finding",
        )?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })?
        .collect::<Result<_, _>>()?;
    Ok(Choices { scanners, findings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_names_round_trip_as_snake_case() {
        assert_eq!(
            as_text(&DismissReason::PoorImageQuality),
            "poor_image_quality"
        );
        assert_eq!(
            from_text::<DismissReason>("already_known"),
            Some(DismissReason::AlreadyKnown)
        );
        assert_eq!(from_text::<Action>("burnt"), None);
    }
}
