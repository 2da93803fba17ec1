//! Who may associate, and on which presentation contexts. Pure: the caller
//! passes the peer's address and the current load.

use std::net::IpAddr;

use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderPresentationReason, AssociationRJServiceUserReason,
    AssociationRJSource, AssociationRQ, PresentationContextResult, PresentationContextResultReason,
    UserVariableItem,
};

use super::sop_classes::is_storage;
use crate::config::{Config, ScannerCheck};
use crate::dataset::Encoding;
use crate::dimse::VERIFICATION_SOP_CLASS;
use crate::ul::{APPLICATION_CONTEXT, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// What the decision needs to know of the connection and the current load.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub slot_available: bool,
    pub disk_refusing: bool,
    /// The association arrived over DICOM TLS.
    pub over_tls: bool,
}

/// An accepted presentation context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
    pub encoding: Encoding,
}

#[derive(Debug, Clone)]
pub struct Accepted {
    pub ac: AssociationAC,
    pub contexts: Vec<AcceptedContext>,
    /// The requestor's maximum PDU length; 0 means unlimited.
    pub peer_max_pdu: u32,
}

#[derive(Debug, Clone)]
pub struct Rejected {
    pub rj: AssociationRJ,
    /// For the log: why, in words.
    pub why: &'static str,
}

pub fn negotiate(
    rq: &AssociationRQ,
    peer: IpAddr,
    config: &Config,
    load: Load,
) -> Result<Accepted, Rejected> {
    let reject = |result, source, why| {
        Err(Rejected {
            rj: AssociationRJ { result, source },
            why,
        })
    };
    if rq.application_context_name.trim_end_matches(['\0', ' ']) != APPLICATION_CONTEXT {
        return reject(
            AssociationRJResult::Permanent,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
            ),
            "application context not supported",
        );
    }
    if rq.called_ae_title.trim() != config.node.ae_title.as_str() {
        return reject(
            AssociationRJResult::Permanent,
            AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
            ),
            "called AE title is not ours",
        );
    }
    match config.scanner_allowed(rq.calling_ae_title.trim(), peer, load.over_tls) {
        ScannerCheck::Allowed => {}
        ScannerCheck::UnknownCallingAe => {
            return reject(
                AssociationRJResult::Permanent,
                AssociationRJSource::ServiceUser(
                    AssociationRJServiceUserReason::CallingAETitleNotRecognized,
                ),
                "calling AE title not configured for this host",
            )
        }
        // PS3.8 has no reason for an address; the AE title is fine, the host is not.
        ScannerCheck::UnknownHost => {
            return reject(
                AssociationRJResult::Permanent,
                AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::NoReasonGiven),
                "source address not in any [[scanners]] entry",
            )
        }
        ScannerCheck::TlsRequired => {
            return reject(
                AssociationRJResult::Permanent,
                AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::NoReasonGiven),
                "this scanner may only connect over DICOM TLS",
            )
        }
    }
    if !load.slot_available {
        return reject(
            AssociationRJResult::Transient,
            AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
            "too many concurrent associations",
        );
    }
    if load.disk_refusing {
        return reject(
            AssociationRJResult::Transient,
            AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
            "spool disk past the high watermark",
        );
    }

    let mut results = Vec::with_capacity(rq.presentation_contexts.len());
    let mut contexts = Vec::new();
    for pc in &rq.presentation_contexts {
        let abstract_syntax = pc.abstract_syntax.trim_end_matches(['\0', ' ']).to_string();
        let supported = abstract_syntax == VERIFICATION_SOP_CLASS || is_storage(&abstract_syntax);
        let choice = if supported {
            choose_transfer_syntax(&pc.transfer_syntaxes)
        } else {
            None
        };
        let (reason, ts) = match (supported, choice) {
            (false, _) => (
                PresentationContextResultReason::AbstractSyntaxNotSupported,
                "1.2.840.10008.1.2".to_string(),
            ),
            (true, None) => (
                PresentationContextResultReason::TransferSyntaxesNotSupported,
                "1.2.840.10008.1.2".to_string(),
            ),
            (true, Some((ts, encoding))) => {
                contexts.push(AcceptedContext {
                    id: pc.id,
                    abstract_syntax: abstract_syntax.clone(),
                    transfer_syntax: ts.clone(),
                    encoding,
                });
                (PresentationContextResultReason::Acceptance, ts)
            }
        };
        results.push(PresentationContextResult {
            id: pc.id,
            reason,
            transfer_syntax: ts,
        });
    }
    let peer_max_pdu = crate::ul::announced_max_pdu(&rq.user_variables);
    Ok(Accepted {
        ac: AssociationAC {
            protocol_version: 1,
            calling_ae_title: rq.calling_ae_title.clone(),
            called_ae_title: rq.called_ae_title.clone(),
            application_context_name: APPLICATION_CONTEXT.to_string(),
            presentation_contexts: results,
            user_variables: vec![
                UserVariableItem::MaxLength(config.node.max_pdu_length.get() as u32),
                UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
                UserVariableItem::ImplementationVersionName(
                    IMPLEMENTATION_VERSION_NAME.to_string(),
                ),
            ],
        },
        contexts,
        peer_max_pdu,
    })
}

/// The requestor's first known syntax, except that Implicit VR Little Endian
/// (the default every SCU lists) yields to any other known syntax offered.
fn choose_transfer_syntax(offered: &[String]) -> Option<(String, Encoding)> {
    let known: Vec<(String, Encoding)> = offered
        .iter()
        .map(|ts| ts.trim_end_matches(['\0', ' ']).to_string())
        .filter_map(|ts| Encoding::of(&ts).ok().map(|e| (ts, e)))
        .collect();
    known
        .iter()
        .find(|(ts, _)| ts != "1.2.840.10008.1.2")
        .or_else(|| known.first())
        .cloned()
}

#[cfg(test)]
mod tests;
