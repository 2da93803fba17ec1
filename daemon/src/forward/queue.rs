//! The forward queue of one destination, as index queries and updates.

use rusqlite::{params, Connection, OptionalExtension};

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
    /// Part of a study with an urgent finding: sent first, DIMSE priority HIGH.
    pub urgent: bool,
}

/// `waiting`: for each series with an instance waiting out a backoff, the
/// first such instance. What came after it in its series waits too, also
/// what arrived after the backoff began.
const NEXT_BATCH: &str =
    "WITH waiting AS MATERIALIZED (
       SELECT i.series_uid AS series, min(i.id) AS first
       FROM deliveries d JOIN instances i ON i.id = d.instance_id
       WHERE d.destination=?1 AND d.state='pending' AND d.next_attempt_at>?2 AND i.series_uid IS NOT NULL
       GROUP BY i.series_uid)
     SELECT i.id, i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax_uid, i.series_uid, i.segment,
            i.body_offset, i.body_len, i.dataset_offset, d.attempts, i.study_uid, d.priority
     FROM deliveries d JOIN instances i ON i.id = d.instance_id
     WHERE d.destination=?1 AND d.state='pending' AND d.next_attempt_at<=?2
       AND NOT EXISTS (SELECT 1 FROM waiting w WHERE w.series = i.series_uid AND w.first < i.id)
     ORDER BY d.priority DESC, i.id LIMIT ?3";

/// Due instances, urgent studies' first (their report ahead of their
/// images), then in arrival order (which keeps each series in order), none
/// behind an earlier instance of its series that is not yet due.
pub fn next_batch(
    tx: &Connection,
    destination: &str,
    now_ms: i64,
    limit: u64,
) -> Result<Vec<Queued>, IndexError> {
    let mut stmt = tx.prepare_cached(NEXT_BATCH)?;
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
            urgent: r.get::<_, i64>(11)? > 0,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Raises the pending deliveries of `study_uid` to `priority` (never
/// lowers one).
pub fn prioritise(tx: &Connection, study_uid: &str, priority: i64) -> Result<usize, IndexError> {
    Ok(tx.execute(
        "UPDATE deliveries SET priority = max(priority, ?2)
         WHERE state = 'pending'
           AND instance_id IN (SELECT id FROM instances WHERE study_uid = ?1 AND superseded = 0)",
        params![study_uid, priority],
    )?)
}

/// When the next pending delivery falls due, if any, after a look at the
/// queue at `looked_at` gave out nothing: what was already due then waits
/// behind an instance of its series, so only what falls due later counts
/// (else a backoff would be waited out in 10 ms polls).
pub fn next_due(
    tx: &Connection,
    destination: &str,
    looked_at: i64,
) -> Result<Option<i64>, IndexError> {
    Ok(tx.query_row(
        "SELECT min(next_attempt_at) FROM deliveries
         WHERE destination=?1 AND state='pending' AND next_attempt_at>?2",
        params![destination, looked_at],
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
    if let Some(fault) = crate::failpoints::hit("forward-record") {
        return Err(fault.sqlite_error().into());
    }
    tx.prepare_cached(
        "UPDATE deliveries SET state='delivered', attempts=attempts+1, last_status=?3, reason=?4, done_at=?5
         WHERE instance_id=?1 AND destination=?2",
    )?
    .execute(params![instance_id, destination, status, comment, now_ms])?;
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
         WHERE instance_id=?1 AND destination=?2 AND state='pending'",
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
         WHERE instance_id=?1 AND destination=?2 AND state='pending'",
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
    let Some(broken): Option<i64> = tx
        .query_row(
            "UPDATE deliveries SET broken_associations=broken_associations+1
             WHERE instance_id=?1 AND destination=?2 AND state='pending' RETURNING broken_associations",
            params![q.instance_id, destination],
            |r| r.get(0),
        )
        .optional()?
    else {
        // Superseded by a newer version meanwhile: nothing left to charge.
        return Ok(false);
    };
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

/// Takes back one charge of a broken association from an instance: the
/// break turned out to be the destination's. If the charges had
/// dead-lettered it, it is taken up again. Returns how many were taken up.
pub fn uncharge_break(
    tx: &Connection,
    instance_id: i64,
    destination: &str,
    now_ms: i64,
) -> Result<usize, IndexError> {
    let revived = tx.execute(
        &format!(
            "UPDATE deliveries SET {}
             WHERE instance_id=?2 AND destination=?3 AND state='dead' AND broken_associations>=?4",
            crate::spool::requeue_set("the destination broke on other instances too")
        ),
        params![now_ms, instance_id, destination, MAX_BROKEN_ASSOCIATIONS],
    )?;
    tx.execute(
        "UPDATE deliveries SET broken_associations=max(broken_associations-1, 0)
         WHERE instance_id=?1 AND destination=?2 AND state='pending'",
        params![instance_id, destination],
    )?;
    Ok(revived)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(conn: &Connection, id: i64, study: &str) {
        conn.execute(
            "INSERT INTO instances(id, sop_instance_uid, sop_class_uid, transfer_syntax_uid, study_uid,
               calling_ae, peer, segment, offset, record_len, body_offset, body_len, dataset_offset, hash, received_at)
             VALUES (?1, ?2, '1.2', '1.2.840.10008.1.2.1', ?3, 'CT', 'p', 1, ?1, 1, 0, 1, 0, x'00', 0)",
            params![id, format!("2.25.{id}"), study],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO deliveries(instance_id, destination, state, next_attempt_at) VALUES (?1, 'pacs', 'pending', 0)",
            params![id],
        )
        .unwrap();
    }

    #[test]
    fn the_queue_query_is_planned_once_not_on_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::spool::open_for_maintenance(&dir.path().join("index.sqlite")).unwrap();
        add(&conn, 1, "2.25.100");
        for now in 1..10 {
            assert_eq!(next_batch(&conn, "pacs", now, 10).unwrap().len(), 1);
        }
        let stmt = conn.prepare_cached(NEXT_BATCH).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    #[test]
    fn an_urgent_study_goes_first_its_report_ahead_of_its_images() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::spool::open_for_maintenance(&dir.path().join("index.sqlite")).unwrap();
        add(&conn, 1, "2.25.100");
        add(&conn, 2, "2.25.200");
        add(&conn, 3, "2.25.100");
        add(&conn, 4, "2.25.200");
        let order = |conn: &Connection| -> Vec<(i64, bool)> {
            next_batch(conn, "pacs", 1, 10)
                .unwrap()
                .iter()
                .map(|q| (q.instance_id, q.urgent))
                .collect()
        };
        assert_eq!(
            order(&conn),
            [(1, false), (2, false), (3, false), (4, false)]
        );
        // The report (5) of study 200 arrives with priority 2; its images are raised to 1.
        add(&conn, 5, "2.25.200");
        conn.execute(
            "UPDATE deliveries SET priority = 2 WHERE instance_id = 5",
            [],
        )
        .unwrap();
        assert_eq!(prioritise(&conn, "2.25.200", 1).unwrap(), 3);
        assert_eq!(
            order(&conn),
            [(5, true), (2, true), (4, true), (1, false), (3, false)]
        );
        // Delivered ones are left alone; a raised priority is never lowered.
        conn.execute(
            "UPDATE deliveries SET state = 'delivered' WHERE instance_id = 1",
            [],
        )
        .unwrap();
        assert_eq!(prioritise(&conn, "2.25.100", 1).unwrap(), 1);
        assert_eq!(prioritise(&conn, "2.25.200", 1).unwrap(), 3);
        assert_eq!(order(&conn)[0], (5, true));
    }

    #[test]
    fn a_break_taken_back_revives_what_the_breaks_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::spool::open_for_maintenance(&dir.path().join("index.sqlite")).unwrap();
        add(&conn, 1, "2.25.100");
        add(&conn, 2, "2.25.100");
        let queued = |id: i64| {
            next_batch(&conn, "pacs", i64::MAX, 10)
                .unwrap()
                .into_iter()
                .find(|q| q.instance_id == id)
        };
        let q1 = queued(1).unwrap();
        for _ in 0..MAX_BROKEN_ASSOCIATIONS {
            broke_association(&conn, &q1, "pacs", "aborted", 10, 20, i64::MAX).unwrap();
        }
        let q2 = queued(2).unwrap();
        broke_association(&conn, &q2, "pacs", "aborted", 10, 20, i64::MAX).unwrap();
        let state = |id: i64| -> (String, i64) {
            conn.query_row(
                "SELECT state, broken_associations FROM deliveries WHERE instance_id=?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(state(1), ("dead".into(), 3));
        assert_eq!(state(2), ("pending".into(), 1));

        assert_eq!(uncharge_break(&conn, 1, "pacs", 30).unwrap(), 1);
        assert_eq!(uncharge_break(&conn, 1, "pacs", 30).unwrap(), 0);
        assert_eq!(state(1), ("pending".into(), 0));
        assert!(queued(1).is_some());
        assert_eq!(uncharge_break(&conn, 2, "pacs", 30).unwrap(), 0);
        assert_eq!(state(2), ("pending".into(), 0));
        // A dead letter for another reason (a refusal) is left alone.
        dead(&conn, 2, "pacs", Some(0xA900), "refused", 40).unwrap();
        assert_eq!(uncharge_break(&conn, 2, "pacs", 50).unwrap(), 0);
        assert_eq!(state(2).0, "dead");
    }

    #[test]
    fn a_version_superseded_while_on_the_wire_is_not_dead_lettered_or_charged() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::spool::open_for_maintenance(&dir.path().join("index.sqlite")).unwrap();
        add(&conn, 1, "2.25.100");
        let q = next_batch(&conn, "pacs", 1, 10).unwrap().remove(0);
        conn.execute(
            "UPDATE deliveries SET state='superseded' WHERE instance_id=1",
            [],
        )
        .unwrap();
        dead(&conn, 1, "pacs", Some(0xA900), "refused", 10).unwrap();
        assert!(!broke_association(&conn, &q, "pacs", "aborted", 10, 20, 0).unwrap());
        assert!(!retry(&conn, &q, "pacs", Some(0xA700), "busy", 10, 20, i64::MAX).unwrap());
        let row: (String, i64, i64) = conn
            .query_row(
                "SELECT state, attempts, broken_associations FROM deliveries WHERE instance_id=1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, ("superseded".into(), 0, 0));
    }

    #[test]
    fn nothing_overtakes_an_instance_of_its_series_waiting_out_a_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::spool::open_for_maintenance(&dir.path().join("index.sqlite")).unwrap();
        for id in 1..=4 {
            add(&conn, id, "2.25.100");
        }
        conn.execute(
            "UPDATE instances SET series_uid = CASE WHEN id = 4 THEN '2.25.9' ELSE '2.25.8' END",
            [],
        )
        .unwrap();
        // 1 and 2 were delivered; 3 waits out a backoff until 100. 4 is of another series.
        conn.execute(
            "UPDATE deliveries SET state='delivered' WHERE instance_id IN (1, 2)",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE deliveries SET next_attempt_at=100 WHERE instance_id=3",
            [],
        )
        .unwrap();
        // 5 arrives in 3's series meanwhile, due at once.
        add(&conn, 5, "2.25.100");
        conn.execute("UPDATE instances SET series_uid='2.25.8' WHERE id=5", [])
            .unwrap();
        let ids = |now: i64| -> Vec<i64> {
            next_batch(&conn, "pacs", now, 10)
                .unwrap()
                .iter()
                .map(|q| q.instance_id)
                .collect()
        };
        assert_eq!(ids(50), [4]);
        assert_eq!(ids(100), [3, 4, 5]);
        // 5, due but held back, does not make the worker look again before 100.
        assert_eq!(next_due(&conn, "pacs", 50).unwrap(), Some(100));
    }
}
