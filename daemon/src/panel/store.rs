//! What the panel reads from the spool index.

use rusqlite::{params, Connection};

use crate::inference::store;
use crate::spool::IndexError;
use crate::triage::Decision;

/// Decisions after `after` in log order, or without it the newest `limit`
/// (oldest first).
pub fn decisions_after(
    conn: &Connection,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<(i64, Decision)>, IndexError> {
    if !store::present(conn)? {
        return Ok(Vec::new());
    }
    let Some(after) = after else {
        let mut newest = store::recent_decisions(conn, limit)?;
        newest.reverse();
        return Ok(newest);
    };
    let rows: Vec<(i64, String)> = conn
        .prepare_cached("SELECT id, record FROM decisions WHERE id > ?1 ORDER BY id LIMIT 10000")?
        .query_map(params![after], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, json)| serde_json::from_str(&json).ok().map(|d| (id, d)))
        .collect())
}
