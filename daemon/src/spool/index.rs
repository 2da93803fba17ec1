//! The SQLite index of the spool: instances, their delivery state per
//! destination, and segments. One thread owns the writing connection and
//! commits whatever work is queued in one transaction (group commit).
//!
//! Durability of an acknowledged instance rests on its segment record, which
//! is fdatasync'ed before the index is touched; the index runs with
//! `synchronous=NORMAL` and recovery re-indexes any record it lost.

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::record::StoredRecord;
use crate::failpoints;

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// SQLite reported an error.
    #[error("spool index: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The index thread is gone (the daemon is shutting down).
    #[error("spool index is closed")]
    Closed,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS segments(
  id INTEGER PRIMARY KEY,
  state TEXT NOT NULL DEFAULT 'open',
  scanned_to INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS instances(
  id INTEGER PRIMARY KEY,
  sop_instance_uid TEXT NOT NULL,
  sop_class_uid TEXT NOT NULL,
  transfer_syntax_uid TEXT NOT NULL,
  study_uid TEXT, series_uid TEXT, modality TEXT, instance_number INTEGER,
  calling_ae TEXT NOT NULL, peer TEXT NOT NULL,
  segment INTEGER NOT NULL, offset INTEGER NOT NULL, record_len INTEGER NOT NULL,
  body_offset INTEGER NOT NULL, body_len INTEGER NOT NULL, dataset_offset INTEGER NOT NULL,
  hash BLOB NOT NULL,
  received_at INTEGER NOT NULL,
  superseded INTEGER NOT NULL DEFAULT 0,
  committed_at INTEGER,
  UNIQUE(segment, offset)
);
CREATE INDEX IF NOT EXISTS instances_uid ON instances(sop_instance_uid);
CREATE TABLE IF NOT EXISTS deliveries(
  instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  destination TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  first_failure_at INTEGER,
  last_status INTEGER,
  reason TEXT,
  done_at INTEGER,
  broken_associations INTEGER NOT NULL DEFAULT 0,
  priority INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(instance_id, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_queue ON deliveries(destination, state, next_attempt_at, instance_id);
CREATE TABLE IF NOT EXISTS id_floors(
  name TEXT PRIMARY KEY,
  floor INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

/// Opens (creating if needed) the index with the pragmas the spool relies on.
pub fn open_connection(path: &Path) -> Result<Connection, IndexError> {
    let conn = Connection::open(path)?;
    plan_once(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Sorts and statement journals stay in memory: the daemon may write
    // beneath its spool only (sandbox.rs), not in /tmp.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(SCHEMA)?;
    add_column(&conn, "instances", "committed_at", "INTEGER")?;
    add_column(
        &conn,
        "deliveries",
        "priority",
        "INTEGER NOT NULL DEFAULT 0",
    )?;
    Ok(conn)
}

/// Whether the index has table `name` (a spool from an older firstlookd, or
/// one a feature never ran on, lacks some).
pub fn table_exists(conn: &Connection, name: &str) -> Result<bool, IndexError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([name])?)
}

/// Adds a column that a spool made by an older firstlookd lacks.
pub fn add_column(
    conn: &Connection,
    table: &str,
    column: &str,
    kind: &str,
) -> Result<(), IndexError> {
    let present: bool = conn
        .prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
        ))?
        .exists(params![column])?;
    if !present {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
    }
    Ok(())
}

/// Opens the index for reading only, beside a running daemon.
pub fn open_read_only(path: &Path) -> Result<Connection, IndexError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    plan_once(&conn)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Query plans that do not depend on the values bound: without this, this
/// SQLite (built with STAT4) re-parses and re-plans a cached statement
/// such as the forwarder's queue query every time a text value is bound.
fn plan_once(conn: &Connection) -> Result<(), IndexError> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// What happened to a record offered to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new instance, queued for every destination.
    Inserted { id: i64 },
    /// Same SOP Instance UID and same bytes as an instance already held.
    Duplicate { existing: i64 },
    /// Same SOP Instance UID, different bytes: both kept, this one forwarded.
    Replaced { id: i64, previous: i64 },
    /// This exact record was indexed before (recovery re-reading a segment).
    AlreadyIndexed { id: i64 },
}

/// Where a record offered to the index comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Just written by ingest: it cannot have been indexed before.
    Ingest,
    /// Re-read from a segment at start: it may already be indexed.
    Recovery,
}

/// What a delivery taken up again from the start is set to (`?1`: now),
/// `why` put before the reason it had.
pub fn requeue_set(why: &str) -> String {
    format!(
        "state='pending', attempts=0, next_attempt_at=?1, first_failure_at=NULL,
         broken_associations=0, done_at=NULL, reason='{why}; was: ' || coalesce(reason, '')"
    )
}

/// Records a complete record, deduplicating by SOP Instance UID.
pub fn insert(
    tx: &Connection,
    rec: &StoredRecord,
    destinations: &[String],
    now_ms: i64,
    source: Source,
) -> Result<InsertOutcome, IndexError> {
    if source == Source::Recovery {
        let known: Option<i64> = tx
            .prepare_cached("SELECT id FROM instances WHERE segment=?1 AND offset=?2")?
            .query_row(params![rec.segment, rec.offset as i64], |r| r.get(0))
            .optional()?;
        if let Some(id) = known {
            return Ok(InsertOutcome::AlreadyIndexed { id });
        }
    }
    let previous: Option<(i64, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT id, hash FROM instances WHERE sop_instance_uid=?1 AND superseded=0 ORDER BY id DESC LIMIT 1",
        )?
        .query_row(
            params![rec.header.sop_instance_uid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let hash = rec.hash.to_le_bytes();
    if let Some((existing, h)) = &previous {
        if h.as_slice() == hash.as_slice() {
            if source == Source::Ingest {
                // Sent again: what a destination refused before, or an
                // operator discarded, is tried again.
                tx.prepare_cached(&format!(
                    "UPDATE deliveries SET {} WHERE instance_id=?2 AND state IN ('dead', 'discarded')",
                    requeue_set("sent again")
                ))?
                .execute(params![now_ms, existing])?;
            }
            return Ok(InsertOutcome::Duplicate {
                existing: *existing,
            });
        }
    }
    let h = &rec.header;
    let s = &rec.summary;
    // The id is above any id ever given out (see `forget_instances`).
    tx.prepare_cached(
        "INSERT INTO instances(id, sop_instance_uid, sop_class_uid, transfer_syntax_uid, study_uid, series_uid, modality,
           instance_number, calling_ae, peer, segment, offset, record_len, body_offset, body_len, dataset_offset, hash, received_at,
           committed_at)
         VALUES(max(coalesce((SELECT max(id) FROM instances), 0),
                    coalesce((SELECT floor FROM id_floors WHERE name = 'instances'), 0)) + 1,
                ?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
    )?
    .execute(params![
            h.sop_instance_uid,
            h.sop_class_uid,
            h.transfer_syntax_uid,
            s.study_instance_uid,
            s.series_instance_uid,
            s.modality,
            s.instance_number,
            h.calling_ae,
            h.peer,
            rec.segment,
            rec.offset as i64,
            rec.len as i64,
            rec.body_offset as i64,
            rec.body_len as i64,
            h.dataset_offset as i64,
            hash.as_slice(),
            h.received_at,
            now_ms,
        ])?;
    let id = tx.last_insert_rowid();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO deliveries(instance_id, destination, state, next_attempt_at) VALUES(?1, ?2, 'pending', ?3)",
        )?;
        for d in destinations {
            stmt.execute(params![id, d, now_ms])?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO segments(id, scanned_to, created_at) VALUES(?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET scanned_to=max(scanned_to, excluded.scanned_to)",
    )?
    .execute(params![rec.segment, (rec.offset + rec.len) as i64, now_ms])?;
    match previous {
        Some((previous, _)) => {
            tx.execute(
                "UPDATE instances SET superseded=1 WHERE id=?1",
                params![previous],
            )?;
            tx.execute(
                "UPDATE deliveries SET state='superseded', done_at=?2 WHERE instance_id=?1 AND state IN ('pending','dead')",
                params![previous, now_ms],
            )?;
            Ok(InsertOutcome::Replaced { id, previous })
        }
        None => Ok(InsertOutcome::Inserted { id }),
    }
}

/// An instance row under id `id` (UID `2.25.<id>`), for tests of the tables
/// that name instances by id.
#[cfg(test)]
pub(crate) fn insert_instance_row(conn: &Connection, id: i64, segment: i64, calling_ae: &str) {
    conn.execute(
        "INSERT INTO instances(id, sop_instance_uid, sop_class_uid, transfer_syntax_uid, calling_ae, peer,
           segment, offset, record_len, body_offset, body_len, dataset_offset, hash, received_at)
         VALUES (?1, ?2, '1.2', '1.2.840.10008.1.2.1', ?4, 'p', ?3, ?1, 1, 0, 1, 0, x'00', 0)",
        params![id, format!("2.25.{id}"), segment, calling_ae],
    )
    .expect("instance row");
}

/// Forgets the instances held in a retired segment. Their ids are never
/// given out again (SQLite would reuse the highest ids once their rows are
/// gone): whatever still names an instance by id after it is gone (the
/// triage feeder's cursor, triage results kept by an older firstlookd) must
/// not take a new image for it.
pub fn forget_instances(tx: &Connection, segment: i64) -> Result<(), IndexError> {
    tx.prepare_cached(
        "INSERT INTO id_floors(name, floor)
         SELECT 'instances', m FROM (SELECT max(id) AS m FROM instances WHERE segment = ?1)
         WHERE m IS NOT NULL
         ON CONFLICT(name) DO UPDATE SET floor = max(floor, excluded.floor)",
    )?
    .execute(params![segment])?;
    tx.prepare_cached("DELETE FROM instances WHERE segment = ?1")?
        .execute(params![segment])?;
    Ok(())
}

type Completion = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;
/// A unit of work: runs against the open transaction, says whether it
/// succeeded (else its savepoint is rolled back), and replies after commit.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

/// Handle to the index thread. Dropping it closes the connection (its last
/// checkpoint, the WAL and shared-memory files removed) before returning:
/// whoever opens the spool next must not meet a connection still closing,
/// whose removal of `index.sqlite-wal` by name could take the successor's.
pub struct Index {
    jobs: mpsc::Sender<Msg>,
    thread: Option<thread::JoinHandle<()>>,
}

enum Msg {
    Job(Job),
    /// Make everything committed so far durable (WAL checkpoint).
    Checkpoint(oneshot::Sender<Result<(), IndexError>>),
    /// Close the connection after the work queued before this.
    Close,
}

impl Index {
    /// Moves the connection to its own thread.
    pub fn start(mut conn: Connection) -> Index {
        let (jobs, rx) = mpsc::channel::<Msg>();
        let thread = thread::Builder::new()
            .name("spool-index".into())
            .spawn(move || {
                let mut next = rx.recv().ok();
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Close => break,
                        Msg::Checkpoint(reply) => {
                            let r = conn
                                .execute_batch("PRAGMA wal_checkpoint(FULL)")
                                .map_err(IndexError::from);
                            let _ = reply.send(r);
                        }
                        Msg::Job(first) => {
                            let mut batch = vec![first];
                            while batch.len() < 512 {
                                match rx.try_recv() {
                                    Ok(Msg::Job(job)) => batch.push(job),
                                    Ok(other) => {
                                        next = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            run_batch(&mut conn, batch);
                        }
                    }
                    if next.is_none() {
                        next = rx.recv().ok();
                    }
                }
            })
            .expect("spawn index thread");
        Index {
            jobs,
            thread: Some(thread),
        }
    }

    /// Runs `f` inside the next group-committed transaction; its result is
    /// returned only once that transaction is committed.
    pub async fn call<T, F>(&self, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(f, tx)?;
        rx.await.map_err(|_| IndexError::Closed)?
    }

    /// Blocking form of [`Index::call`], for threads outside the runtime.
    pub fn call_blocking<T, F>(&self, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(f, tx)?;
        rx.blocking_recv().map_err(|_| IndexError::Closed)?
    }

    fn submit<T, F>(
        &self,
        f: F,
        reply: oneshot::Sender<Result<T, IndexError>>,
    ) -> Result<(), IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IndexError> + Send + 'static,
    {
        self.submit_then(f, move |result| {
            let _ = reply.send(result);
        })
    }

    /// Runs `f` inside the next group-committed transaction and hands its
    /// result to `then`, on the index thread, once that transaction is
    /// committed: whoever waits for it is woken by the index thread itself.
    pub fn submit_then<T, F, D>(&self, f: F, then: D) -> Result<(), IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IndexError> + Send + 'static,
        D: FnOnce(Result<T, IndexError>) + Send + 'static,
    {
        let job: Job = Box::new(move |tx| {
            let result = f(tx);
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit_error: Option<&rusqlite::Error>| {
                then(match commit_error {
                    Some(e) => Err(IndexError::Sqlite(clone_error(e))),
                    None => result,
                })
            });
            (ok, completion)
        });
        self.jobs
            .send(Msg::Job(job))
            .map_err(|_| IndexError::Closed)
    }

    /// Waits until everything committed so far is durable.
    pub async fn checkpoint(&self) -> Result<(), IndexError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Msg::Checkpoint(tx))
            .map_err(|_| IndexError::Closed)?;
        rx.await.map_err(|_| IndexError::Closed)?
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.jobs.send(Msg::Close);
        if let Some(thread) = self.thread.take() {
            // A job holding the last reference to the spool drops it on the
            // index thread itself, which then closes on its own.
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(message = "spool index cannot begin a transaction", error = %e);
            // Every job's reply sender is dropped: callers see `Closed`, which
            // becomes a failure status, never a false success.
            return;
        }
    };
    let mut completions = Vec::with_capacity(batch.len());
    let mut broken = None;
    for job in batch {
        // A savepoint per job keeps one failing job from undoing the others
        // and from leaving half its writes behind. The statements are cached:
        // parsing them anew for every instance was a measurable share of the
        // index thread.
        if let Err(e) = run(&tx, "SAVEPOINT job") {
            tracing::error!(message = "spool index cannot open a savepoint", error = %e);
            continue;
        }
        let (ok, completion) = job(&tx);
        let ended = if ok {
            run(&tx, "RELEASE job")
        } else {
            run(&tx, "ROLLBACK TO job").and_then(|()| run(&tx, "RELEASE job"))
        };
        completions.push(completion);
        if let Err(e) = ended {
            // The job's writes may be half in the transaction: none of the
            // batch may be committed.
            tracing::error!(message = "spool index savepoint failed", error = %e);
            broken = Some(e);
            break;
        }
    }
    let commit = match (broken, failpoints::hit("index-commit")) {
        (Some(e), _) => {
            drop(tx);
            Err(e)
        }
        (None, Some(fault)) => {
            drop(tx);
            Err(fault.sqlite_error())
        }
        (None, None) => tx.commit(),
    };
    let err = commit.as_ref().err();
    for c in completions {
        c(err);
    }
}

fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(conn: &Connection) -> Result<Vec<i64>, IndexError> {
        let mut stmt = conn.prepare("SELECT x FROM t ORDER BY x")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    #[test]
    fn a_failing_job_leaves_nothing_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let conn = open_connection(&path).unwrap();
        conn.execute_batch("CREATE TABLE t(x INTEGER)").unwrap();
        let index = Index::start(conn);
        // Hold the index thread so that the next three jobs queue up and
        // run as one batch.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let held = index.jobs.clone();
        let (reply, _) = oneshot::channel::<()>();
        held.send(Msg::Job(Box::new(move |_| {
            wait.recv().unwrap();
            (true, Box::new(move |_| drop(reply)))
        })))
        .unwrap();
        let results: Vec<_> = std::thread::scope(|s| {
            let jobs: Vec<_> = [(1, true), (2, false), (3, true)]
                .into_iter()
                .map(|(x, succeeds)| {
                    let index = &index;
                    let job = s.spawn(move || {
                        index.call_blocking(move |c| {
                            c.execute("INSERT INTO t VALUES (?1)", [x])?;
                            if succeeds {
                                Ok(x)
                            } else {
                                Err(IndexError::Closed)
                            }
                        })
                    });
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    job
                })
                .collect();
            go.send(()).unwrap();
            jobs.into_iter().map(|j| j.join().unwrap()).collect()
        });
        assert_eq!(results[0].as_ref().unwrap(), &1);
        assert!(matches!(results[1], Err(IndexError::Closed)));
        assert_eq!(results[2].as_ref().unwrap(), &3);
        assert_eq!(index.call_blocking(count).unwrap(), vec![1, 3]);
    }

    #[test]
    fn the_same_bytes_sent_again_retry_what_was_refused_or_discarded() {
        use crate::spool::StoredRecord;
        let dir = tempfile::tempdir().unwrap();
        let conn = open_connection(&dir.path().join("index.sqlite")).unwrap();
        let record = |offset: u64| StoredRecord::example(1, offset, "2.25.5");
        let destinations = ["pacs".to_string(), "archive".to_string(), "ris".to_string()];
        let id = match insert(&conn, &record(0), &destinations, 1, Source::Ingest).unwrap() {
            InsertOutcome::Inserted { id } => id,
            other => panic!("{other:?}"),
        };
        for (destination, state) in [
            ("pacs", "dead"),
            ("archive", "discarded"),
            ("ris", "delivered"),
        ] {
            conn.execute(
                "UPDATE deliveries SET state=?2, attempts=3, reason='refused' WHERE destination=?1",
                params![destination, state],
            )
            .unwrap();
        }
        let states = || -> Vec<(String, String, i64)> {
            conn.prepare("SELECT destination, state, attempts FROM deliveries ORDER BY destination")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let before = states();
        // Found again at start (a record written twice): nothing changes.
        assert!(matches!(
            insert(&conn, &record(100), &destinations, 2, Source::Recovery).unwrap(),
            InsertOutcome::Duplicate { .. }
        ));
        assert_eq!(states(), before);
        // Sent again by the scanner.
        assert_eq!(
            insert(&conn, &record(200), &destinations, 3, Source::Ingest).unwrap(),
            InsertOutcome::Duplicate { existing: id }
        );
        let after = |d: &str| states().into_iter().find(|s| s.0 == d).unwrap();
        assert_eq!(after("pacs"), ("pacs".into(), "pending".into(), 0));
        assert_eq!(after("archive"), ("archive".into(), "pending".into(), 0));
        assert_eq!(after("ris"), ("ris".into(), "delivered".into(), 3));
        let reason: String = conn
            .query_row(
                "SELECT reason FROM deliveries WHERE destination='pacs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(reason, "sent again; was: refused");
    }

    #[test]
    fn dropping_the_index_closes_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let index = Index::start(open_connection(&path).unwrap());
        index
            .call_blocking(|c| Ok(c.execute_batch("CREATE TABLE t(x INTEGER)")?))
            .unwrap();
        assert!(dir.path().join("index.sqlite-wal").exists());
        drop(index);
        // The last connection's close checkpoints and removes the WAL.
        assert!(!dir.path().join("index.sqlite-wal").exists());
        assert!(!dir.path().join("index.sqlite-shm").exists());
    }
}
