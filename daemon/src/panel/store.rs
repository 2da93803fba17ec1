//! What the panel reads from the spool index.

use rusqlite::{params, Connection};

use crate::spool::IndexError;
use crate::triage::Decision;

/// Decisions after `after` in log order, or without it the newest `limit`
/// (oldest first).
pub fn decisions_after(
    conn: &Connection,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<(i64, Decision)>, IndexError> {
    let present: bool = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decisions'")?
        .exists([])?;
    if !present {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, String)> = match after {
        Some(after) => conn
            .prepare_cached(
                "SELECT id, record FROM decisions WHERE id > ?1 ORDER BY id LIMIT 10000",
            )?
            .query_map(params![after], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?,
        None => {
            let mut newest: Vec<(i64, String)> = conn
                .prepare_cached("SELECT id, record FROM decisions ORDER BY id DESC LIMIT ?1")?
                .query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            newest.reverse();
            newest
        }
    };
    Ok(rows
        .into_iter()
        .filter_map(|(id, json)| serde_json::from_str(&json).ok().map(|d| (id, d)))
        .collect())
}
