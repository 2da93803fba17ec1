//! One association, from A-ASSOCIATE-RQ to release or abort.

use std::net::SocketAddr;
use std::sync::Arc;

use dicom_ul::pdu::{AbortRQServiceProviderReason, AbortRQSource, Pdu};
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::policy::{self, AcceptedContext, Load};
use super::store::{Incoming, StoreOutcome};
use super::{Connection, Ingest, STORE_LIMIT};
use crate::audit::{Event, Outcome, Studies};
use crate::dimse::{Command, CommandField, Fragment, Reassembler, Status};
use crate::liveness::Beat;
use crate::ul::{PduReader, PduWriter, Pdv, Received, WireError};

pub async fn run(
    ingest: Arc<Ingest>,
    conn: Connection,
    peer: SocketAddr,
    handshake: OwnedSemaphorePermit,
    shutdown: watch::Receiver<bool>,
) {
    let cfg = &ingest.config.node;
    let Connection {
        mut reader,
        mut writer,
        over_tls,
        artim_left,
    } = conn;
    // A scanner that stops reading our responses must not hold the
    // association (and its slot) forever.
    writer.limit_stalls(cfg.dimse_timeout());

    // ARTIM: the request must come promptly.
    let rq = match reader
        .read(cfg.max_pdu_length.get() as u32, artim_left)
        .await
    {
        Ok(Pdu::AssociationRQ(rq)) => rq,
        Ok(other) => {
            tracing::warn!(message = "expected A-ASSOCIATE-RQ", got = %other.short_description());
            abort(&mut writer, AbortRQServiceProviderReason::UnexpectedPdu).await;
            return;
        }
        Err(e) => {
            tracing::info!(message = "no association request", error = %e);
            if matches!(e, WireError::Malformed(_) | WireError::TooLarge { .. }) {
                abort(
                    &mut writer,
                    AbortRQServiceProviderReason::InvalidPduParameter,
                )
                .await;
            }
            return;
        }
    };
    drop(handshake);
    let permit = Arc::clone(&ingest.slots).try_acquire_owned().ok();
    let load = Load {
        slot_available: permit.is_some(),
        disk_refusing: ingest.spool.watermarks().check(),
        over_tls,
    };
    let accepted = match policy::negotiate(&rq, peer.ip(), &ingest.config, load) {
        Ok(a) => a,
        Err(rejected) => {
            ingest.refused(
                peer,
                rq.calling_ae_title.trim(),
                format!(
                    "association rejected (called AE {}): {}",
                    rq.called_ae_title.trim(),
                    rejected.why
                ),
            );
            let _ = writer.send(&Pdu::AssociationRJ(rejected.rj)).await;
            // PS3.8 §9.1.3: the requestor closes the connection on receiving the
            // rejection; closing first risks it reading a reset, not the reason.
            let linger = cfg.artim_timeout().min(std::time::Duration::from_secs(2));
            let _ = tokio::time::timeout(linger, reader.wait_closed()).await;
            writer.shutdown().await;
            return;
        }
    };
    if writer.send(&Pdu::AssociationAC(accepted.ac)).await.is_err() {
        return;
    }
    let calling_ae = rq.calling_ae_title.trim().to_string();
    ingest.audit.record(Event::Association {
        peer,
        calling_ae: calling_ae.clone(),
        outcome: Outcome::Success,
    });
    tracing::info!(
        message = "association accepted",
        calling_ae = %calling_ae,
        contexts = accepted.contexts.len(),
        peer_max_pdu = accepted.peer_max_pdu
    );
    let mut session = Session {
        beat: ingest
            .liveness
            .transient(format!("association from {calling_ae}"), STORE_LIMIT),
        ingest: Arc::clone(&ingest),
        contexts: accepted.contexts,
        peer_max_pdu: accepted.peer_max_pdu,
        calling_ae,
        peer,
        reassembler: Reassembler::new(),
        incoming: None,
        stored: 0,
        failed: 0,
        studies: Studies::default(),
        spool_writer: None,
    };
    let end = session.serve(&mut reader, &mut writer, shutdown).await;
    tracing::info!(
        message = "association ended",
        how = end,
        stored = session.stored,
        failed = session.failed
    );
    if session.stored + session.failed > 0 {
        let outcome = match session.failed {
            0 => Outcome::Success,
            n => Outcome::MinorFailure(format!("{n} instances refused")),
        };
        ingest.audit.record(Event::Received {
            peer,
            calling_ae: session.calling_ae,
            studies: session.studies,
            outcome,
        });
    }
    drop(permit);
}

/// Returns once the daemon is stopping.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn abort(writer: &mut PduWriter, reason: AbortRQServiceProviderReason) {
    let _ = writer
        .send(&Pdu::AbortRQ {
            source: AbortRQSource::ServiceProvider(reason),
        })
        .await;
    writer.shutdown().await;
}

struct Session {
    ingest: Arc<Ingest>,
    contexts: Vec<AcceptedContext>,
    peer_max_pdu: u32,
    calling_ae: String,
    peer: SocketAddr,
    reassembler: Reassembler,
    incoming: Option<Incoming>,
    stored: u64,
    failed: u64,
    /// What was stored, for the audit trail.
    studies: Studies,
    spool_writer: Option<crate::spool::InstanceWriter>,
    beat: Beat,
}

impl Session {
    async fn serve(
        &mut self,
        reader: &mut PduReader,
        writer: &mut PduWriter,
        mut shutdown: watch::Receiver<bool>,
    ) -> &'static str {
        let node = &self.ingest.config.node;
        let max_pdu = node.max_pdu_length.get() as u32;
        let idle = node.dimse_timeout();
        let linger = node.artim_timeout().min(std::time::Duration::from_secs(2));
        loop {
            let between_messages = self.reassembler.idle() && self.incoming.is_none();
            let read = if between_messages {
                tokio::select! {
                    biased;
                    r = reader.read_message(max_pdu, idle) => r,
                    () = stopping(&mut shutdown) => {
                        abort(writer, AbortRQServiceProviderReason::ReasonNotSpecified).await;
                        return "daemon stopping: aborted between messages";
                    }
                }
            } else {
                // A C-STORE under way is finished and answered, even at shutdown.
                reader.read_message(max_pdu, idle).await
            };
            let pdu = match read {
                Ok(p) => p,
                Err(WireError::Closed) => return "connection closed",
                Err(WireError::Timeout(_)) => {
                    abort(writer, AbortRQServiceProviderReason::ReasonNotSpecified).await;
                    return "idle timeout: aborted";
                }
                Err(e @ (WireError::TooLarge { .. } | WireError::Malformed(_))) => {
                    tracing::warn!(message = "bad PDU", error = %e);
                    abort(writer, AbortRQServiceProviderReason::InvalidPduParameter).await;
                    return "bad PDU: aborted";
                }
                Err(e) => {
                    tracing::warn!(message = "network error", error = %e);
                    return "network error";
                }
            };
            match pdu {
                Received::PData(data) => {
                    for pdv in data {
                        if let Err(why) = self.on_pdv(pdv, writer).await {
                            tracing::warn!(message = "protocol error", error = %why);
                            abort(writer, AbortRQServiceProviderReason::UnexpectedPduParameter)
                                .await;
                            return "protocol error: aborted";
                        }
                    }
                }
                Received::Other(Pdu::ReleaseRQ) => {
                    if self.reassembler.in_data() {
                        tracing::warn!(
                            message =
                                "release requested in the middle of a data set; it is discarded"
                        );
                    }
                    let _ = writer.send(&Pdu::ReleaseRP).await;
                    // The requestor closes first (PS3.8 §7.2); wait briefly for it.
                    let _ = tokio::time::timeout(linger, reader.wait_closed()).await;
                    writer.shutdown().await;
                    return "released";
                }
                Received::Other(Pdu::AbortRQ { .. }) => return "aborted by peer",
                Received::Other(other) => {
                    tracing::warn!(message = "unexpected PDU", got = %other.short_description());
                    abort(writer, AbortRQServiceProviderReason::UnexpectedPdu).await;
                    return "unexpected PDU: aborted";
                }
            }
        }
    }

    async fn on_pdv(&mut self, pdv: Pdv, writer: &mut PduWriter) -> Result<(), String> {
        let fragment = self
            .reassembler
            .push(pdv.context_id, pdv.is_command, pdv.is_last, &pdv.data)
            .map_err(|e| e.to_string())?;
        match fragment {
            Fragment::Pending => Ok(()),
            Fragment::Command {
                context_id,
                command,
            } => self.on_command(context_id, command, writer).await,
            Fragment::Data { last, .. } => {
                let Some(incoming) = self.incoming.as_mut() else {
                    return Err("data without a pending C-STORE".into());
                };
                incoming.data(pdv.data).await;
                if last {
                    let incoming = self.incoming.take().expect("checked above");
                    let outcome = {
                        let _step = self.beat.busy();
                        incoming.finish().await
                    };
                    self.respond_store(outcome, writer).await
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn on_command(
        &mut self,
        context_id: u8,
        command: Command,
        writer: &mut PduWriter,
    ) -> Result<(), String> {
        let Some(ctx) = self.contexts.iter().find(|c| c.id == context_id).cloned() else {
            return Err(format!(
                "message on presentation context {context_id}, which was not accepted"
            ));
        };
        match command.field {
            CommandField::CEchoRq => {
                let rsp = command.response(Status::SUCCESS.0);
                self.send_command(context_id, &rsp, writer).await
            }
            CommandField::CStoreRq if command.has_dataset => {
                if self.spool_writer.is_none() {
                    self.spool_writer = Some(self.ingest.spool.writer());
                }
                let spool_writer = self.spool_writer.take().expect("just set");
                self.incoming = Some(
                    Incoming::begin(
                        Arc::clone(&self.ingest.spool),
                        spool_writer,
                        context_id,
                        ctx,
                        command,
                        &self.calling_ae,
                        self.peer,
                    )
                    .await,
                );
                Ok(())
            }
            CommandField::CStoreRq => {
                let rsp = command
                    .response(Status::CANNOT_UNDERSTAND.0)
                    .with_error_comment("C-STORE-RQ without a data set");
                self.failed += 1;
                self.send_command(context_id, &rsp, writer).await
            }
            _ if command.has_dataset => {
                // Answered once its data set has been drained.
                self.incoming = Some(Incoming::unsupported(context_id, command));
                Ok(())
            }
            _ => {
                let rsp = command.response(Status::UNRECOGNIZED_OPERATION.0);
                self.send_command(context_id, &rsp, writer).await
            }
        }
    }

    async fn respond_store(
        &mut self,
        outcome: StoreOutcome,
        writer: &mut PduWriter,
    ) -> Result<(), String> {
        if let Some(w) = outcome.writer {
            self.spool_writer = Some(w);
        }
        if Status(outcome.status).is_ok() {
            self.stored += 1;
            if let Some(class) = &outcome.command.affected_sop_class {
                self.studies.add(outcome.study_uid.as_deref(), class);
            }
        } else {
            self.failed += 1;
        }
        let mut rsp = outcome.command.response(outcome.status);
        if let Some(c) = &outcome.comment {
            rsp = rsp.with_error_comment(c);
        }
        self.send_command(outcome.context_id, &rsp, writer).await
    }

    async fn send_command(
        &mut self,
        context_id: u8,
        command: &Command,
        writer: &mut PduWriter,
    ) -> Result<(), String> {
        writer
            .send_message(context_id, true, &command.encode(), self.peer_max_pdu)
            .await
            .map_err(|e| e.to_string())
    }
}
