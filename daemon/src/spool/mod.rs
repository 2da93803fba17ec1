//! The durable journal of received instances: segment files holding each
//! instance as a Part-10 byte stream, and a SQLite index of instances and
//! their delivery state per destination.
//!
//! **Invariant:** an instance is acknowledged only after its record was
//! fdatasync'ed and indexed. Recovery at start re-indexes every intact record
//! the index lost, and ignores torn ones (they were never acknowledged).

mod disk;
mod index;
pub mod part10;
mod record;
mod recovery;
mod segment;
mod writer;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use disk::{usage, DiskUsage, Watermarks};
pub use index::{
    add_column, open_read_only, requeue_set, table_exists, Index, IndexError, InsertOutcome,
};
#[cfg(test)]
pub(crate) use index::{forget_instances, insert, insert_instance_row, Source};

/// Opens the index for a one-off change beside a running daemon.
pub fn open_for_maintenance(path: &Path) -> Result<rusqlite::Connection, IndexError> {
    index::open_connection(path)
}
pub use record::{RecordHeader, RecordSummary, StoredRecord};
pub use recovery::RecoveryReport;
pub use segment::OpenSegment;
pub use writer::{Committed, InstanceWriter};

/// Where a committed record is queued: for which destinations (none: kept,
/// not sent), at which priority (0: normal).
#[derive(Debug, Clone)]
pub struct Queue {
    pub destinations: Arc<[String]>,
    pub priority: i64,
}

use segment::SegmentFile;

/// Why the spool could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A filesystem operation on the spool failed.
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another firstlookd holds this spool.
    #[error("spool {0} is in use by another firstlookd (lock held)")]
    Locked(PathBuf),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Settings the spool needs from the configuration.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    pub destinations: Vec<String>,
    pub segment_max_bytes: u64,
    pub high_watermark_percent: u64,
    pub low_watermark_percent: u64,
}

/// A segment idle in the pool stops taking new records after this long, so
/// that it can be retired once delivered.
const SEGMENT_MAX_AGE: Duration = Duration::from_secs(3600);

/// A hold ([`Spool::hold_while`]) keeps an instance's segment for at most
/// this long after the instance was received (and not at all once the disk
/// is past its high watermark): a part of the box that is stuck must not
/// fill the disk and stop the scanners.
const HOLD_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// New instances a follower of [`Spool::follow_indexed`] may fall behind
/// by before it is told it lagged (and must ask the index).
const INDEXED_BACKLOG: usize = 1024;

/// An instance just indexed, in the order the index gave out ids.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub id: i64,
    pub record: Arc<StoredRecord>,
}

struct Pooled {
    segment: SegmentFile,
    since: std::time::Instant,
}

pub struct Spool {
    dir: PathBuf,
    segments_dir: PathBuf,
    index: Index,
    destinations: Arc<[String]>,
    pub(crate) segment_max_bytes: u64,
    next_segment: AtomicI64,
    idle: Mutex<Vec<Pooled>>,
    /// A preallocated segment made ahead of need, off the ingest path.
    spare: Mutex<Option<SegmentFile>>,
    preparing: std::sync::atomic::AtomicBool,
    /// Segments that may still receive records (pooled or held by a writer).
    active: Mutex<HashSet<i64>>,
    watermarks: Watermarks,
    work: tokio::sync::watch::Sender<u64>,
    indexed: tokio::sync::broadcast::Sender<NewInstance>,
    /// Conditions under which an instance's segment is kept: see
    /// [`Spool::hold_while`].
    holds: Mutex<Vec<String>>,
    /// Declared after `index`: fields drop in order, so the index has closed
    /// before the lock lets a successor in.
    _lock: nix::fcntl::Flock<File>,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn index_path(dir: &Path) -> PathBuf {
    dir.join("index.sqlite")
}

impl Spool {
    /// Opens the spool, taking its lock, and runs recovery before anything
    /// else can write.
    pub fn open(opts: &SpoolOptions) -> Result<(Arc<Spool>, RecoveryReport), SpoolError> {
        let dir = opts.dir.clone();
        let segments_dir = dir.join("segments");
        std::fs::create_dir_all(&segments_dir).map_err(io_err(&segments_dir))?;
        let lock_path = dir.join("firstlookd.lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| SpoolError::Locked(dir.clone()))?;
        let mut conn = index::open_connection(&index_path(&dir))?;
        let report = recovery::recover(&mut conn, &segments_dir, &opts.destinations)?;
        let spool = Spool {
            dir: dir.clone(),
            segments_dir,
            index: Index::start(conn),
            destinations: opts.destinations.clone().into(),
            segment_max_bytes: opts.segment_max_bytes,
            next_segment: AtomicI64::new(report.next_segment_id),
            idle: Mutex::new(Vec::new()),
            spare: Mutex::new(None),
            preparing: std::sync::atomic::AtomicBool::new(false),
            active: Mutex::new(HashSet::new()),
            watermarks: Watermarks::new(
                dir,
                opts.high_watermark_percent,
                opts.low_watermark_percent,
            ),
            work: tokio::sync::watch::Sender::new(0),
            indexed: tokio::sync::broadcast::channel(INDEXED_BACKLOG).0,
            holds: Mutex::new(Vec::new()),
            _lock: lock,
        };
        spool.watermarks.check();
        let spool = Arc::new(spool);
        spool.prepare_spare();
        Ok((spool, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    pub fn watermarks(&self) -> &Watermarks {
        &self.watermarks
    }

    /// A writer for one association.
    pub fn writer(self: &Arc<Self>) -> InstanceWriter {
        InstanceWriter::start(Arc::clone(self))
    }

    /// How ingest queues what it stores: for every destination, at normal
    /// priority.
    pub(crate) fn ingest_queue(&self) -> Queue {
        Queue {
            destinations: Arc::clone(&self.destinations),
            priority: 0,
        }
    }

    /// Indexes a sealed record, queued as `queue` says (success here is what
    /// allows the C-STORE success). `then` gets the outcome on the index
    /// thread once it is committed, after new work is announced. If the
    /// index is closed, `then` is dropped uncalled: a reply channel it holds
    /// then reports the index closed, never a success.
    pub(crate) fn commit_then(
        &self,
        record: StoredRecord,
        queue: Queue,
        then: impl FnOnce(Result<InsertOutcome, IndexError>) + Send + 'static,
    ) {
        let work = self.work.clone();
        let indexed = self.indexed.clone();
        let record = Arc::new(record);
        let inserted = Arc::clone(&record);
        let _ = self.index.submit_then(
            move |tx| {
                let outcome = index::insert(
                    tx,
                    &record,
                    &queue.destinations,
                    now_ms(),
                    index::Source::Ingest,
                )?;
                if let (InsertOutcome::Inserted { id } | InsertOutcome::Replaced { id, .. }, true) =
                    (&outcome, queue.priority > 0)
                {
                    tx.execute(
                        "UPDATE deliveries SET priority = ?2 WHERE instance_id = ?1",
                        rusqlite::params![id, queue.priority],
                    )?;
                }
                Ok(outcome)
            },
            move |r| {
                match r {
                    Ok(InsertOutcome::Inserted { id } | InsertOutcome::Replaced { id, .. }) => {
                        // No follower: nothing is kept.
                        let _ = indexed.send(NewInstance {
                            id,
                            record: inserted,
                        });
                        announce(&work);
                    }
                    // Its refused deliveries may have been queued again.
                    Ok(InsertOutcome::Duplicate { .. }) => announce(&work),
                    _ => {}
                }
                then(r)
            },
        );
    }

    /// Stores an instance the box made itself (a result), durably, queued
    /// for `destinations` only (none: kept, not sent) at `priority` (0:
    /// normal). The same bytes stored again are a duplicate, not a second
    /// copy.
    pub async fn store_own(
        self: &Arc<Self>,
        header: RecordHeader,
        meta: Vec<u8>,
        dataset: Vec<u8>,
        summary: RecordSummary,
        destinations: Vec<String>,
        priority: i64,
    ) -> std::io::Result<InsertOutcome> {
        let writer = self.writer();
        writer.begin(header, meta).await?;
        writer.data(vec![bytes::Bytes::from(dataset)]).await?;
        let Committed { offset, outcome } = writer
            .seal_and_commit_to(
                summary,
                Queue {
                    destinations: destinations.into(),
                    priority,
                },
            )
            .await?;
        match outcome {
            Ok(o @ (InsertOutcome::Inserted { .. } | InsertOutcome::Replaced { .. })) => Ok(o),
            Ok(o) => {
                let _ = writer.unwrite(offset).await;
                Ok(o)
            }
            Err(e) => {
                let _ = writer.unwrite(offset).await;
                Err(std::io::Error::other(e))
            }
        }
    }

    /// Wakes forwarders: new work may be due.
    pub fn notify_work(&self) {
        announce(&self.work);
    }

    /// A receiver that changes whenever new work is committed; none is missed
    /// between a look at the queue and the wait.
    pub fn subscribe_work(&self) -> tokio::sync::watch::Receiver<u64> {
        self.work.subscribe()
    }

    /// Every instance indexed from now on, in id order, as its index entry
    /// is committed. A follower more than [`INDEXED_BACKLOG`] behind is told
    /// it lagged; instances indexed by recovery before the start are not
    /// among them.
    pub fn follow_indexed(&self) -> tokio::sync::broadcast::Receiver<NewInstance> {
        self.indexed.subscribe()
    }

    /// Reads a stored instance's data set (everything after the file meta)
    /// into `buf`.
    pub fn read_dataset_into(
        &self,
        segment: i64,
        body_offset: u64,
        dataset_offset: u64,
        body_len: u64,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        segment::read_range_into(
            &self.segments_dir,
            segment,
            body_offset + dataset_offset,
            body_len - dataset_offset,
            buf,
        )
    }

    /// Opens the segment holding a stored instance, to read it in parts.
    pub fn open_segment(&self, segment: i64) -> std::io::Result<OpenSegment> {
        OpenSegment::open(&self.segments_dir, segment)
    }

    fn preallocate_bytes(&self) -> u64 {
        let free = usage(&self.dir).map_or(0, |u| u.available_bytes);
        self.segment_max_bytes.min(64 * 1024 * 1024).min(free / 8)
    }

    fn new_segment(&self) -> std::io::Result<SegmentFile> {
        let id = self.next_segment.fetch_add(1, Ordering::Relaxed);
        self.active.lock().expect("active").insert(id);
        SegmentFile::create(&self.segments_dir, id, self.preallocate_bytes()).inspect_err(|_| {
            self.active.lock().expect("active").remove(&id);
        })
    }

    /// Makes the next segment in the background unless one is ready or being made.
    fn prepare_spare(self: &Arc<Self>) {
        if self.spare.lock().expect("spare").is_some()
            || self.preparing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("spool-prepare".into())
            .spawn(move || {
                match this.new_segment() {
                    Ok(seg) => *this.spare.lock().expect("spare") = Some(seg),
                    Err(e) => {
                        tracing::warn!(message = "cannot prepare a spool segment", error = %e)
                    }
                }
                this.preparing.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.preparing.store(false, Ordering::Release);
        }
    }

    fn acquire_segment(self: &Arc<Self>) -> Option<SegmentFile> {
        loop {
            let pooled = self.idle.lock().expect("segment pool").pop();
            match pooled {
                Some(p) if p.since.elapsed() > SEGMENT_MAX_AGE => {
                    self.active.lock().expect("active").remove(&p.segment.id);
                }
                Some(p) => return Some(p.segment),
                None => break,
            }
        }
        let spare = self.spare.lock().expect("spare").take();
        self.prepare_spare();
        if spare.is_some() {
            return spare;
        }
        match self.new_segment() {
            Ok(seg) => Some(seg),
            Err(e) => {
                tracing::error!(message = "cannot create a spool segment", error = %e);
                None
            }
        }
    }

    fn release_segment(&self, mut segment: SegmentFile, broken: bool) {
        if let Err(e) = segment.clear_tail() {
            tracing::warn!(message = "cannot clear the end of a spool segment", error = %e);
        }
        if broken || segment.len() >= self.segment_max_bytes {
            self.active.lock().expect("active").remove(&segment.id);
            return;
        }
        self.idle.lock().expect("segment pool").push(Pooled {
            segment,
            since: std::time::Instant::now(),
        });
    }

    /// Keeps every segment holding an instance for which `condition` (SQL
    /// over the index about an instance `i`) is true: another part of the
    /// box still needs it. A hold lasts at most a day after the instance
    /// was received, whatever the retention, and none is kept while the
    /// disk is past its high watermark.
    pub fn hold_while(&self, condition: impl Into<String>) {
        self.holds.lock().expect("holds").push(condition.into());
    }

    /// Deletes segments whose every instance was delivered everywhere (or
    /// superseded) longer than `retention` ago and is not held
    /// ([`Spool::hold_while`]). Returns how many went.
    pub async fn retire_delivered(&self, retention: Duration) -> Result<usize, SpoolError> {
        let active: Vec<i64> = self
            .active
            .lock()
            .expect("active")
            .iter()
            .copied()
            .collect();
        let now = now_ms();
        let cutoff = now - retention.as_millis() as i64;
        let mut holds = recovery::Holds {
            conditions: self.holds.lock().expect("holds").clone(),
            since_ms: now - HOLD_LIMIT.as_millis() as i64,
        };
        if self.watermarks.refusing() && !holds.conditions.is_empty() {
            tracing::warn!(
                message = "spool disk past its high watermark: delivered images are retired even if triage or results still wanted them"
            );
            holds.conditions.clear();
        }
        let retired = self
            .index
            .call(move |tx| recovery::mark_retirable(tx, &active, cutoff, &holds))
            .await?;
        if retired.is_empty() {
            return Ok(0);
        }
        // The retirement must be durable before any file goes.
        self.index.checkpoint().await?;
        for id in &retired {
            let path = segment::segment_path(&self.segments_dir, *id);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(message = "cannot delete a retired segment", path = %path.display(), error = %e);
            }
        }
        let ids = retired.clone();
        self.index
            .call(move |tx| recovery::forget_segments(tx, &ids))
            .await?;
        Ok(retired.len())
    }
}

fn announce(work: &tokio::sync::watch::Sender<u64>) {
    work.send_modify(|n| *n = n.wrapping_add(1));
}
