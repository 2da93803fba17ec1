//! One incoming C-STORE: validated as it streams into the spool, answered
//! only once the outcome is known and, for success, durable.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::Instrument;

use super::policy::AcceptedContext;
use super::sop_classes::is_storage;
use crate::dataset::DatasetScanner;
use crate::dimse::{Command, Status};
use crate::spool::{
    self, part10, Committed, InsertOutcome, InstanceWriter, RecordHeader, RecordSummary, Spool,
};

pub struct Incoming {
    context_id: u8,
    command: Command,
    state: State,
}

enum State {
    Writing {
        writer: InstanceWriter,
        scanner: Box<DatasetScanner>,
        pending: Pending,
        received: u64,
        sop_class: String,
        sop_instance: String,
    },
    /// The answer is decided; the rest of the data set is drained unread.
    Failed {
        status: Status,
        comment: String,
        writer: Option<InstanceWriter>,
    },
}

/// Fragments gathered before they go to the writer thread: one hand-off per
/// 64 kB rather than one per PDU (storescu's PDUs are 16 kB), early enough
/// that writeback overlaps the rest of the transfer.
#[derive(Default)]
struct Pending {
    parts: Vec<bytes::Bytes>,
    len: usize,
}

const HANDOFF_BYTES: usize = 64 * 1024;

impl Pending {
    async fn push(&mut self, bytes: bytes::Bytes, writer: &InstanceWriter) -> std::io::Result<()> {
        self.len += bytes.len();
        self.parts.push(bytes);
        if self.len >= HANDOFF_BYTES {
            self.flush(writer).await
        } else {
            Ok(())
        }
    }

    async fn flush(&mut self, writer: &InstanceWriter) -> std::io::Result<()> {
        if self.parts.is_empty() {
            return Ok(());
        }
        self.len = 0;
        writer.data(std::mem::take(&mut self.parts)).await
    }
}

/// The answer to one C-STORE, and the writer handed back for the next.
pub struct StoreOutcome {
    pub context_id: u8,
    pub command: Command,
    pub status: u16,
    pub comment: Option<String>,
    pub writer: Option<InstanceWriter>,
    /// The data set's Study Instance UID, once it was read whole.
    pub study_uid: Option<String>,
}

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.')
        && !uid.contains("..")
}

impl Incoming {
    pub async fn begin(
        spool: Arc<Spool>,
        writer: InstanceWriter,
        context_id: u8,
        ctx: AcceptedContext,
        command: Command,
        calling_ae: &str,
        peer: SocketAddr,
    ) -> Incoming {
        let fail = |status: Status, comment: &str, writer: InstanceWriter| State::Failed {
            status,
            comment: comment.to_string(),
            writer: Some(writer),
        };
        let sop_class = command.affected_sop_class.clone().unwrap_or_default();
        let sop_instance = command.affected_sop_instance.clone().unwrap_or_default();
        let state = if !is_storage(&ctx.abstract_syntax) {
            fail(
                Status::SOP_CLASS_NOT_SUPPORTED,
                "not a storage context",
                writer,
            )
        } else if sop_class != ctx.abstract_syntax {
            fail(
                Status::DATASET_DOES_NOT_MATCH,
                "Affected SOP Class differs from the presentation context",
                writer,
            )
        } else if !valid_uid(&sop_instance) {
            fail(
                Status::CANNOT_UNDERSTAND,
                "invalid Affected SOP Instance UID",
                writer,
            )
        } else if spool.watermarks().refusing() {
            fail(
                Status::OUT_OF_RESOURCES,
                "spool disk past its high watermark",
                writer,
            )
        } else {
            let meta =
                part10::file_meta(&sop_class, &sop_instance, &ctx.transfer_syntax, calling_ae);
            let header = RecordHeader {
                sop_class_uid: sop_class.clone(),
                sop_instance_uid: sop_instance.clone(),
                transfer_syntax_uid: ctx.transfer_syntax.clone(),
                calling_ae: calling_ae.to_string(),
                peer: peer.to_string(),
                received_at: spool::now_ms(),
                dataset_offset: meta.len() as u64,
            };
            match writer.begin(header, meta).await {
                Ok(()) => State::Writing {
                    writer,
                    scanner: Box::new(DatasetScanner::new(ctx.encoding)),
                    pending: Pending::default(),
                    received: 0,
                    sop_class,
                    sop_instance,
                },
                Err(e) => {
                    tracing::error!(message = "cannot start a spool record", error = %e);
                    fail(
                        Status::OUT_OF_RESOURCES,
                        "cannot write to the spool",
                        writer,
                    )
                }
            }
        };
        Incoming {
            context_id,
            command,
            state,
        }
    }

    /// A message firstlook does not implement; answered after its data set.
    pub fn unsupported(context_id: u8, command: Command) -> Incoming {
        Incoming {
            context_id,
            command,
            state: State::Failed {
                status: Status::UNRECOGNIZED_OPERATION,
                comment: "operation not supported".into(),
                writer: None,
            },
        }
    }

    pub async fn data(&mut self, bytes: bytes::Bytes) {
        let State::Writing {
            writer,
            scanner,
            pending,
            received,
            ..
        } = &mut self.state
        else {
            return;
        };
        *received += bytes.len() as u64;
        let failure = if let Err(e) = scanner.push(&bytes) {
            Some((
                Status::CANNOT_UNDERSTAND,
                format!("malformed data set: {e}"),
            ))
        } else if let Err(e) = pending.push(bytes, writer).await {
            tracing::error!(message = "spool write failed", error = %e);
            Some((
                Status::OUT_OF_RESOURCES,
                "cannot write to the spool".to_string(),
            ))
        } else {
            None
        };
        if let Some((status, comment)) = failure {
            self.fail(status, comment).await;
        }
    }

    async fn fail(&mut self, status: Status, comment: String) {
        let failed = State::Failed {
            status,
            comment,
            writer: None,
        };
        if let State::Writing { writer, .. } = std::mem::replace(&mut self.state, failed) {
            let _ = writer.discard().await;
            if let State::Failed { writer: slot, .. } = &mut self.state {
                *slot = Some(writer);
            }
        }
    }

    pub async fn finish(self) -> StoreOutcome {
        let Incoming {
            context_id,
            command,
            state,
        } = self;
        let mut study_uid = None;
        let (status, comment, writer) = match state {
            State::Failed {
                status,
                comment,
                writer,
            } => (status, Some(comment), writer),
            State::Writing {
                writer,
                scanner,
                mut pending,
                received,
                sop_class,
                sop_instance,
            } => {
                let (status, comment) = match pending.flush(&writer).await {
                    // PS3.5 §7.1 (and §A.5 for deflate): a data set has even length.
                    Ok(()) if received % 2 == 1 => {
                        let _ = writer.discard().await;
                        (
                            Status::CANNOT_UNDERSTAND,
                            Some(format!("data set has odd length {received}")),
                        )
                    }
                    Ok(()) => {
                        let (status, comment, study) =
                            complete(&writer, scanner, &sop_class, &sop_instance).await;
                        study_uid = study;
                        (status, comment)
                    }
                    Err(e) => {
                        tracing::error!(message = "spool write failed", error = %e);
                        let _ = writer.discard().await;
                        (
                            Status::OUT_OF_RESOURCES,
                            Some("cannot write to the spool".into()),
                        )
                    }
                };
                (status, comment, Some(writer))
            }
        };
        if !status.is_ok() {
            tracing::warn!(message = "C-STORE refused", status = %status, reason = comment.as_deref().unwrap_or(""));
        }
        StoreOutcome {
            context_id,
            command,
            status: status.0,
            comment,
            writer,
            study_uid,
        }
    }
}

async fn complete(
    writer: &InstanceWriter,
    scanner: Box<DatasetScanner>,
    sop_class: &str,
    sop_instance: &str,
) -> (Status, Option<String>, Option<String>) {
    let summary = match scanner.finish() {
        Ok(s) => s,
        Err(e) => {
            let _ = writer.discard().await;
            return (
                Status::CANNOT_UNDERSTAND,
                Some(format!("malformed data set: {e}")),
                None,
            );
        }
    };
    if summary.sop_instance_uid.as_deref() != Some(sop_instance) {
        let _ = writer.discard().await;
        return (
            Status::DATASET_DOES_NOT_MATCH,
            Some("SOP Instance UID in the data set differs from the command".into()),
            None,
        );
    }
    if summary.sop_class_uid.as_deref() != Some(sop_class) {
        let _ = writer.discard().await;
        return (
            Status::DATASET_DOES_NOT_MATCH,
            Some("SOP Class UID in the data set differs from the command".into()),
            None,
        );
    }
    let span = tracing::info_span!(
        "study",
        uid = summary.study_instance_uid.as_deref().unwrap_or("-")
    );
    let study_uid = summary.study_instance_uid.clone();
    let record_summary = RecordSummary {
        study_instance_uid: summary.study_instance_uid,
        series_instance_uid: summary.series_instance_uid,
        modality: summary.modality,
        instance_number: summary.instance_number,
    };
    let (status, comment) = seal_and_index(writer, record_summary, sop_instance)
        .instrument(span)
        .await;
    (status, comment, study_uid)
}

async fn seal_and_index(
    writer: &InstanceWriter,
    record_summary: RecordSummary,
    sop_instance: &str,
) -> (Status, Option<String>) {
    let Committed { offset, outcome } = match writer.seal_and_commit(record_summary).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(message = "spool write failed", error = %e);
            return (
                Status::OUT_OF_RESOURCES,
                Some("cannot write to the spool".into()),
            );
        }
    };
    match outcome {
        Ok(InsertOutcome::Inserted { .. }) | Ok(InsertOutcome::AlreadyIndexed { .. }) => {
            tracing::debug!(message = "stored", sop_instance_uid = sop_instance);
            (Status::SUCCESS, None)
        }
        Ok(InsertOutcome::Replaced { .. }) => {
            tracing::warn!(
                message = "instance received again with different content; both kept, the newest is forwarded",
                sop_instance_uid = sop_instance
            );
            (Status::SUCCESS, None)
        }
        Ok(InsertOutcome::Duplicate { .. }) => {
            tracing::info!(
                message = "duplicate instance, identical bytes: not stored twice",
                sop_instance_uid = sop_instance
            );
            let _ = writer.unwrite(offset).await;
            (Status::SUCCESS, None)
        }
        Err(e) => {
            tracing::error!(message = "spool index failed", error = %e);
            let _ = writer.unwrite(offset).await;
            (
                Status::OUT_OF_RESOURCES,
                Some("cannot index in the spool".into()),
            )
        }
    }
}
