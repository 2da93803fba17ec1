//! The forward queue of one destination, as index queries and updates.

use rusqlite::{params, Connection};

use crate::spool::IndexError;

/// One instance due for a destination.
#[derive(Debug, Clone)]
pub struct Queued {
    pub instance_id: i64,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub series_uid: Option<String>,
    pub study_uid: Option<String>,
    pub segment: i64,
    pub body_offset: u64,
    pub body_len: u64,
    pub dataset_offset: u64,
    pub attempts: u32,
}

/// Due instances in arrival order (which keeps each series in order).
pub fn next_batch(
    tx: &Connection,
    destination: &str,
    now_ms: i64,
    limit: u64,
) -> Result<Vec<Queued>, IndexError> {
    let mut stmt = tx.prepare_cached(
        "SELECT i.id, i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax_uid, i.series_uid, i.segment,
                i.body_offset, i.body_len, i.dataset_offset, d.attempts, i.study_uid
         FROM deliveries d JOIN instances i ON i.id = d.instance_id
         WHERE d.destination=?1 AND d.state='pending' AND d.next_attempt_at<=?2
         ORDER BY i.id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![destination, now_ms, limit as i64], |r| {
        Ok(Queued {
            instance_id: r.get(0)?,
            sop_class_uid: r.get(1)?,
            sop_instance_uid: r.get(2)?,
            transfer_syntax_uid: r.get(3)?,
            series_uid: r.get(4)?,
            segment: r.get(5)?,
            body_offset: r.get::<_, i64>(6)? as u64,
            body_len: r.get::<_, i64>(7)? as u64,
            dataset_offset: r.get::<_, i64>(8)? as u64,
            attempts: r.get::<_, i64>(9)? as u32,
            study_uid: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next pending delivery falls due, if any.
pub fn next_due(tx: &Connection, destination: &str) -> Result<Option<i64>, IndexError> {
    Ok(tx.query_row(
        "SELECT min(next_attempt_at) FROM deliveries WHERE destination=?1 AND state='pending'",
        params![destination],
        |r| r.get(0),
    )?)
}

pub fn delivered(
    tx: &Connection,
    instance_id: i64,
    destination: &str,
    status: u16,
    comment: Option<&str>,
    now_ms: i64,
) -> Result<(), IndexError> {
    tx.execute(
        "UPDATE deliveries SET state='delivered', attempts=attempts+1, last_status=?3, reason=?4, done_at=?5
         WHERE instance_id=?1 AND destination=?2",
        params![instance_id, destination, status, comment, now_ms],
    )?;
    Ok(())
}

pub fn dead(
    tx: &Connection,
    instance_id: i64,
    destination: &str,
    status: Option<u16>,
    reason: &str,
    now_ms: i64,
) -> Result<(), IndexError> {
    tx.execute(
        "UPDATE deliveries SET state='dead', attempts=attempts+1, last_status=?3, reason=?4, done_at=?5,
           first_failure_at=coalesce(first_failure_at, ?5)
         WHERE instance_id=?1 AND destination=?2",
        params![instance_id, destination, status, reason, now_ms],
    )?;
    Ok(())
}

/// Reschedules after a transient failure, or dead-letters once failures
/// have lasted longer than `give_up_ms`. Later instances of the same series
/// wait too, so the series still arrives in order. Returns true if dead-lettered.
#[allow(clippy::too_many_arguments)]
pub fn retry(
    tx: &Connection,
    q: &Queued,
    destination: &str,
    status: Option<u16>,
    reason: &str,
    now_ms: i64,
    next_at_ms: i64,
    give_up_ms: i64,
) -> Result<bool, IndexError> {
    let first: Option<i64> = tx.query_row(
        "SELECT first_failure_at FROM deliveries WHERE instance_id=?1 AND destination=?2",
        params![q.instance_id, destination],
        |r| r.get(0),
    )?;
    let first = first.unwrap_or(now_ms);
    if now_ms - first >= give_up_ms {
        let why = format!("gave up after {} attempts: {reason}", q.attempts + 1);
        dead(tx, q.instance_id, destination, status, &why, now_ms)?;
        return Ok(true);
    }
    tx.execute(
        "UPDATE deliveries SET attempts=attempts+1, last_status=?3, reason=?4, first_failure_at=?5, next_attempt_at=?6
         WHERE instance_id=?1 AND destination=?2",
        params![q.instance_id, destination, status, reason, first, next_at_ms],
    )?;
    if let Some(series) = &q.series_uid {
        tx.execute(
            "UPDATE deliveries SET next_attempt_at=max(next_attempt_at, ?3)
             WHERE destination=?2 AND state='pending' AND instance_id IN
               (SELECT id FROM instances WHERE series_uid=?1 AND id>?4)",
            params![series, destination, next_at_ms, q.instance_id],
        )?;
    }
    Ok(false)
}

/// How many times an association may break while one instance is on it
/// before that instance is dead-lettered rather than retried.
pub const MAX_BROKEN_ASSOCIATIONS: i64 = 3;

/// The association broke while `q` was being sent: reschedule it with
/// backoff, or dead-letter it once this happened `MAX_BROKEN_ASSOCIATIONS`
/// times. Returns true if dead-lettered.
#[allow(clippy::too_many_arguments)]
pub fn broke_association(
    tx: &Connection,
    q: &Queued,
    destination: &str,
    reason: &str,
    now_ms: i64,
    next_at_ms: i64,
    give_up_ms: i64,
) -> Result<bool, IndexError> {
    let broken: i64 = tx.query_row(
        "UPDATE deliveries SET broken_associations=broken_associations+1
         WHERE instance_id=?1 AND destination=?2 RETURNING broken_associations",
        params![q.instance_id, destination],
        |r| r.get(0),
    )?;
    if broken >= MAX_BROKEN_ASSOCIATIONS {
        let why = format!(
            "the destination broke the association {broken} times while receiving this instance; last: {reason}"
        );
        dead(tx, q.instance_id, destination, None, &why, now_ms)?;
        return Ok(true);
    }
    retry(
        tx,
        q,
        destination,
        None,
        reason,
        now_ms,
        next_at_ms,
        give_up_ms,
    )
}
