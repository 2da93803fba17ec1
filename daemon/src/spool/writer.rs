//! Streams one association's instances into a segment on a thread of its
//! own, so that disk writes overlap with receiving the next PDUs.

use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use tokio::sync::oneshot;
use xxhash_rust::xxh3::Xxh3;

use super::record::{self, RecordHeader, RecordSummary, StoredRecord};
use super::segment::SegmentFile;
use super::{IndexError, InsertOutcome, Queue, Spool};

enum Op {
    Begin {
        header: RecordHeader,
        meta: Vec<u8>,
    },
    Data(Vec<bytes::Bytes>),
    /// Seal the record, then index it: queued as `queue` says, else for the
    /// spool's destinations at normal priority.
    Seal {
        summary: RecordSummary,
        queue: Option<Queue>,
        reply: oneshot::Sender<io::Result<Committed>>,
    },
    /// Abandon the instance being written (never acknowledged).
    Discard,
    /// Remove the last sealed record, found to be a duplicate.
    Unwrite {
        offset: u64,
    },
}

/// A record on stable storage, and how indexing it went.
#[derive(Debug)]
pub struct Committed {
    pub offset: u64,
    pub outcome: Result<InsertOutcome, IndexError>,
}

/// One association's writer. Dropping it ends the thread and returns the
/// segment to the spool.
pub struct InstanceWriter {
    ops: Option<mpsc::SyncSender<Op>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl InstanceWriter {
    pub(super) fn start(spool: Arc<Spool>) -> InstanceWriter {
        // Bounded: if the disk is slower than the network, the association
        // task waits here and TCP backpressure reaches the scanner.
        let (tx, rx) = mpsc::sync_channel::<Op>(32);
        let thread = thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || run(spool, rx))
            .expect("spawn spool writer");
        InstanceWriter {
            ops: Some(tx),
            thread: Some(thread),
        }
    }

    /// Starts a record: the header and the Part-10 preamble and file meta.
    pub async fn begin(&self, header: RecordHeader, meta: Vec<u8>) -> io::Result<()> {
        self.send_async(Op::Begin { header, meta }).await
    }

    /// Appends data set bytes to the current record.
    pub async fn data(&self, bytes: Vec<bytes::Bytes>) -> io::Result<()> {
        self.send_async(Op::Data(bytes)).await
    }

    /// Completes the current record, waits until it is on stable storage and
    /// then until indexing it (for the spool's destinations) is committed:
    /// the index thread answers ([`Spool::commit_then`]). An error: the
    /// record is not known to be stored (if it was sealed before the writer
    /// or the index stopped, recovery indexes it at the next start).
    pub async fn seal_and_commit(&self, summary: RecordSummary) -> io::Result<Committed> {
        self.seal_queued(summary, None).await
    }

    /// [`InstanceWriter::seal_and_commit`], queued as `queue` says.
    pub async fn seal_and_commit_to(
        &self,
        summary: RecordSummary,
        queue: Queue,
    ) -> io::Result<Committed> {
        self.seal_queued(summary, Some(queue)).await
    }

    async fn seal_queued(
        &self,
        summary: RecordSummary,
        queue: Option<Queue>,
    ) -> io::Result<Committed> {
        let (reply, rx) = oneshot::channel();
        self.send_async(Op::Seal {
            summary,
            queue,
            reply,
        })
        .await?;
        rx.await
            .map_err(|_| io::Error::other("spool writer or index stopped"))?
    }

    pub async fn discard(&self) -> io::Result<()> {
        self.send_async(Op::Discard).await
    }

    pub async fn unwrite(&self, offset: u64) -> io::Result<()> {
        self.send_async(Op::Unwrite { offset }).await
    }

    async fn send_async(&self, op: Op) -> io::Result<()> {
        let Some(tx) = self.ops.as_ref() else {
            return Err(io::Error::other("spool writer stopped"));
        };
        match tx.try_send(op) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(op)) => {
                let tx = tx.clone();
                tokio::task::spawn_blocking(move || tx.send(op).is_ok())
                    .await
                    .map_err(io::Error::other)?
                    .then_some(())
                    .ok_or_else(|| io::Error::other("spool writer stopped"))
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                Err(io::Error::other("spool writer stopped"))
            }
        }
    }
}

impl Drop for InstanceWriter {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has truncated any open
        // record and handed back its segment; the runtime does not wait for it.
        self.ops.take();
        self.thread.take();
    }
}

struct Open {
    offset: u64,
    head_len: u64,
    body_len: u64,
    hasher: Xxh3,
    header: RecordHeader,
    error: Option<io::Error>,
}

fn run(spool: Arc<Spool>, rx: mpsc::Receiver<Op>) {
    let mut segment: Option<SegmentFile> = None;
    let mut open: Option<Open> = None;
    while let Ok(op) = rx.recv() {
        match op {
            Op::Begin { header, meta } => {
                if let Some(stale) = open.take() {
                    abandon(&spool, &mut segment, stale.offset);
                }
                if segment
                    .as_ref()
                    .is_some_and(|s| s.len() >= spool.segment_max_bytes)
                {
                    if let Some(full) = segment.take() {
                        spool.release_segment(full, false);
                    }
                }
                if segment.is_none() {
                    segment = spool.acquire_segment();
                }
                let Some(seg) = segment.as_mut() else {
                    open = Some(Open {
                        offset: 0,
                        head_len: 0,
                        body_len: 0,
                        hasher: Xxh3::new(),
                        header,
                        error: Some(io::Error::other("no segment could be opened")),
                    });
                    continue;
                };
                let head = record::encode_head(&header);
                let offset = seg.len();
                let mut hasher = Xxh3::new();
                hasher.update(&meta);
                let error = seg.append(&head).and_then(|_| seg.append(&meta)).err();
                open = Some(Open {
                    offset,
                    head_len: head.len() as u64,
                    body_len: meta.len() as u64,
                    hasher,
                    header,
                    error,
                });
            }
            Op::Data(parts) => {
                if let (Some(o), Some(seg)) = (open.as_mut(), segment.as_mut()) {
                    for bytes in parts {
                        if o.error.is_some() {
                            break;
                        }
                        o.hasher.update(&bytes);
                        o.body_len += bytes.len() as u64;
                        o.error = seg.append(&bytes).err();
                    }
                }
            }
            Op::Seal {
                summary,
                queue,
                reply,
            } => {
                let result = match (open.take(), segment.as_mut()) {
                    (Some(o), Some(seg)) => seal(seg, o, summary),
                    (Some(o), None) => {
                        Err(o.error.unwrap_or_else(|| io::Error::other("no segment")))
                    }
                    (None, _) => Err(io::Error::other("seal without an open record")),
                };
                if let Err(e) = &result {
                    tracing::warn!(message = "spool write failed", error = %e);
                    // The failed record may have left bytes behind; the segment
                    // is retired from writing rather than trusted again.
                    if let Some(seg) = segment.take() {
                        spool.release_segment(seg, true);
                    }
                }
                match result {
                    Ok(record) => {
                        let offset = record.offset;
                        let queue = queue.unwrap_or_else(|| spool.ingest_queue());
                        spool.commit_then(record, queue, move |outcome| {
                            let _ = reply.send(Ok(Committed { offset, outcome }));
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Op::Discard => {
                if let Some(o) = open.take() {
                    abandon(&spool, &mut segment, o.offset);
                }
            }
            Op::Unwrite { offset } => {
                if let Some(seg) = segment.as_mut() {
                    if seg.rewind(offset).is_err() {
                        if let Some(seg) = segment.take() {
                            spool.release_segment(seg, true);
                        }
                    }
                }
            }
        }
    }
    if let Some(o) = open.take() {
        abandon(&spool, &mut segment, o.offset);
    }
    if let Some(seg) = segment.take() {
        spool.release_segment(seg, false);
    }
}

fn seal(seg: &mut SegmentFile, o: Open, summary: RecordSummary) -> io::Result<StoredRecord> {
    if let Some(e) = o.error {
        let _ = seg.rewind(o.offset);
        return Err(e);
    }
    let hash = o.hasher.digest128();
    let trailer = record::encode_trailer(hash, &summary);
    if let Err(e) = seg.seal_record(o.offset, o.body_len, &trailer) {
        let _ = seg.rewind(o.offset);
        return Err(e);
    }
    Ok(StoredRecord {
        segment: seg.id,
        offset: o.offset,
        len: o.head_len + o.body_len + trailer.len() as u64,
        body_offset: o.offset + o.head_len,
        body_len: o.body_len,
        hash,
        header: o.header,
        summary,
    })
}

fn abandon(spool: &Spool, segment: &mut Option<SegmentFile>, offset: u64) {
    if let Some(seg) = segment.as_mut() {
        if seg.rewind(offset).is_err() {
            // Leave the torn bytes: recovery ignores them, and no more
            // records go after them.
            if let Some(seg) = segment.take() {
                spool.release_segment(seg, true);
            }
        }
    }
}
