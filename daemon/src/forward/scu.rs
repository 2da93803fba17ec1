//! A Storage SCU association: used by forwarding, and by the demo's
//! simulated scanner.

use std::time::Duration;

use dicom_ul::pdu::{
    AssociationRJResult, AssociationRQ, Pdu, PresentationContextProposed,
    PresentationContextResultReason, UserVariableItem,
};
use tokio::net::TcpStream;

use crate::dimse::{Command, CommandField, Fragment, Priority, Reassembler};
use crate::ul::{
    PduReader, PduWriter, Received, WireError, APPLICATION_CONTEXT, IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
};

/// Why an association or a C-STORE on it failed.
#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    /// The TLS handshake failed (an untrusted certificate, no common protocol).
    #[error("TLS with {address} failed: {source}")]
    Tls {
        address: String,
        source: std::io::Error,
    },
    /// The peer rejected the association.
    #[error("association rejected ({}): {reason}", if *.permanent { "permanent" } else { "transient" })]
    Rejected { permanent: bool, reason: String },
    /// The peer aborted.
    #[error("association aborted by the peer")]
    Aborted,
    /// The wire failed (timeout, closed, malformed).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Association parameters.
#[derive(Debug, Clone)]
pub struct ScuOptions {
    pub address: String,
    pub calling_ae: String,
    pub called_ae: String,
    pub max_pdu: u32,
    pub connect_timeout: Duration,
    pub dimse_timeout: Duration,
    /// DICOM over TLS, when the peer speaks it.
    pub tls: Option<crate::tls::Client>,
}

pub struct StoreScu {
    reader: PduReader,
    writer: PduWriter,
    peer_max_pdu: u32,
    our_max_pdu: u32,
    accepted: Vec<(u8, String, String)>,
    next_message_id: u16,
    dimse_timeout: Duration,
}

impl StoreScu {
    /// Connects and negotiates the given (abstract syntax, transfer syntaxes)
    /// contexts; ids are assigned 1, 3, 5...
    pub async fn connect(
        opts: &ScuOptions,
        contexts: &[(String, Vec<String>)],
    ) -> Result<(StoreScu, Vec<u8>), ScuError> {
        let connect = TcpStream::connect(opts.address.as_str());
        let stream = tokio::time::timeout(opts.connect_timeout, connect)
            .await
            .map_err(|_| ScuError::Connect {
                address: opts.address.clone(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })?
            .map_err(|source| ScuError::Connect {
                address: opts.address.clone(),
                source,
            })?;
        stream
            .set_nodelay(true)
            .map_err(|source| ScuError::Connect {
                address: opts.address.clone(),
                source,
            })?;
        let (mut reader, mut writer) = match &opts.tls {
            None => crate::ul::tcp(stream),
            Some(tls) => {
                crate::ul::split(tls.connect(stream, opts.connect_timeout).await.map_err(
                    |source| ScuError::Tls {
                        address: opts.address.clone(),
                        source,
                    },
                )?)
            }
        };
        writer.limit_stalls(opts.dimse_timeout);
        let proposed: Vec<PresentationContextProposed> = contexts
            .iter()
            .enumerate()
            .map(|(i, (abs, ts))| PresentationContextProposed {
                id: (2 * i + 1) as u8,
                abstract_syntax: abs.clone(),
                transfer_syntaxes: ts.clone(),
            })
            .collect();
        let ids: Vec<u8> = proposed.iter().map(|p| p.id).collect();
        let rq = AssociationRQ {
            protocol_version: 1,
            calling_ae_title: opts.calling_ae.clone(),
            called_ae_title: opts.called_ae.clone(),
            application_context_name: APPLICATION_CONTEXT.to_string(),
            presentation_contexts: proposed.clone(),
            user_variables: vec![
                UserVariableItem::MaxLength(opts.max_pdu),
                UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
                UserVariableItem::ImplementationVersionName(
                    IMPLEMENTATION_VERSION_NAME.to_string(),
                ),
            ],
        };
        writer.send(&Pdu::AssociationRQ(rq)).await?;
        let ac = match reader.read(opts.max_pdu, opts.dimse_timeout).await? {
            Pdu::AssociationAC(ac) => ac,
            Pdu::AssociationRJ(rj) => {
                return Err(ScuError::Rejected {
                    permanent: rj.result == AssociationRJResult::Permanent,
                    reason: rj.source.to_string(),
                })
            }
            Pdu::AbortRQ { .. } => return Err(ScuError::Aborted),
            other => {
                return Err(ScuError::Protocol(format!(
                    "expected A-ASSOCIATE-AC, got {}",
                    other.short_description()
                )))
            }
        };
        let peer_max_pdu = crate::ul::announced_max_pdu(&ac.user_variables);
        let accepted = ac
            .presentation_contexts
            .iter()
            .filter(|r| r.reason == PresentationContextResultReason::Acceptance)
            .filter_map(|r| {
                let p = proposed.iter().find(|p| p.id == r.id)?;
                Some((
                    r.id,
                    p.abstract_syntax.clone(),
                    r.transfer_syntax.trim_end_matches(['\0', ' ']).to_string(),
                ))
            })
            .collect();
        Ok((
            StoreScu {
                reader,
                writer,
                peer_max_pdu,
                our_max_pdu: opts.max_pdu,
                accepted,
                next_message_id: 1,
                dimse_timeout: opts.dimse_timeout,
            },
            ids,
        ))
    }

    /// `tick` is called whenever the peer takes part of a message.
    pub fn on_progress(&mut self, tick: Box<dyn Fn() + Send + Sync>) {
        self.writer.on_progress(tick);
    }

    /// The accepted context for a SOP class in one of the given syntaxes,
    /// preferring the earlier syntax.
    pub fn context_for(&self, sop_class: &str, syntaxes: &[&str]) -> Option<(u8, String)> {
        syntaxes.iter().find_map(|ts| {
            self.accepted
                .iter()
                .find(|(_, abs, t)| abs == sop_class && t == ts)
                .map(|(id, _, t)| (*id, t.clone()))
        })
    }

    /// Sends one C-STORE and waits for its response: `(status, error comment)`.
    pub async fn store(
        &mut self,
        context_id: u8,
        sop_class: &str,
        sop_instance: &str,
        dataset: &[u8],
        priority: Priority,
    ) -> Result<(u16, Option<String>), ScuError> {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        let rq = Command::c_store_rq(id, sop_class, sop_instance, priority);
        self.writer
            .send_message(context_id, true, &rq.encode(), self.peer_max_pdu)
            .await?;
        self.writer
            .send_message(context_id, false, dataset, self.peer_max_pdu)
            .await?;
        let rsp = self.read_response().await?;
        if rsp.field != CommandField::CStoreRsp || rsp.responding_to != Some(id) {
            return Err(ScuError::Protocol(format!(
                "expected C-STORE-RSP to message {id}, got {:?} to {:?}",
                rsp.field, rsp.responding_to
            )));
        }
        let status = rsp
            .status
            .ok_or_else(|| ScuError::Protocol("C-STORE-RSP without a status".into()))?;
        Ok((status, rsp.error_comment))
    }

    /// Sends a C-ECHO on the verification context.
    pub async fn echo(&mut self, context_id: u8) -> Result<u16, ScuError> {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        self.writer
            .send_message(
                context_id,
                true,
                &Command::c_echo_rq(id).encode(),
                self.peer_max_pdu,
            )
            .await?;
        let rsp = self.read_response().await?;
        rsp.status
            .ok_or_else(|| ScuError::Protocol("C-ECHO-RSP without a status".into()))
    }

    async fn read_response(&mut self) -> Result<Command, ScuError> {
        let mut reassembler = Reassembler::new();
        let mut response = None;
        loop {
            let received = self
                .reader
                .read_message(self.our_max_pdu, self.dimse_timeout)
                .await?;
            let data = match received {
                Received::PData(data) => data,
                Received::Other(Pdu::AbortRQ { .. }) => return Err(ScuError::Aborted),
                Received::Other(other) => {
                    return Err(ScuError::Protocol(format!(
                        "unexpected {} while waiting for a response",
                        other.short_description()
                    )))
                }
            };
            for pdv in data {
                let fragment = reassembler
                    .push(pdv.context_id, pdv.is_command, pdv.is_last, &pdv.data)
                    .map_err(|e| ScuError::Protocol(e.to_string()))?;
                match fragment {
                    Fragment::Command { command, .. } if !command.has_dataset => {
                        return Ok(command)
                    }
                    Fragment::Command { command, .. } => response = Some(command),
                    Fragment::Data { last: true, .. } => {
                        if let Some(c) = response.take() {
                            return Ok(c);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Releases the association (A-RELEASE), waiting briefly for the reply.
    pub async fn release(mut self) {
        if self.writer.send(&Pdu::ReleaseRQ).await.is_ok() {
            let _ = self
                .reader
                .read(self.our_max_pdu, Duration::from_secs(5))
                .await;
        }
        self.writer.shutdown().await;
    }

    /// Aborts the association.
    pub async fn abort(mut self) {
        let _ = self
            .writer
            .send(&Pdu::AbortRQ {
                source: dicom_ul::pdu::AbortRQSource::ServiceUser,
            })
            .await;
        self.writer.shutdown().await;
    }
}
