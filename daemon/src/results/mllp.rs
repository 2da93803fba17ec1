//! Sends the HL7 outbox to the RIS over MLLP: one message per connection,
//! answered by an ACK; anything else (no listener, a NACK, a stall) is
//! retried with backoff from the outbox in the spool index, and given up
//! (dead, with the reason) only after the forwarder's give-up time.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

use crate::config::{Forward, Hl7};
use crate::spool::{now_ms, Spool};

use super::hl7::{parse_ack, Ack};
use super::store;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];
/// An ACK larger than this is not an ACK.
const MAX_REPLY: usize = 64 * 1024;

/// Frames `message`, sends it and reads the reply.
async fn exchange(address: &str, message: &str, timeout: Duration) -> Result<String, String> {
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| format!("no connection to {address} within {timeout:?}"))?
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("socket: {e}"))?;
    let mut frame = Vec::with_capacity(message.len() + 3);
    frame.push(START);
    frame.extend_from_slice(message.as_bytes());
    frame.extend_from_slice(&END);
    let io = async {
        stream.write_all(&frame).await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other(
                    "the RIS closed the connection before an ACK",
                ));
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.windows(2).any(|w| w == END) {
                return Ok(reply);
            }
            if reply.len() > MAX_REPLY {
                return Err(std::io::Error::other("the reply is too long for an ACK"));
            }
        }
    };
    let reply = tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| format!("no ACK within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let body = reply
        .iter()
        .position(|&b| b == START)
        .map_or(&reply[..], |at| &reply[at + 1..]);
    Ok(String::from_utf8_lossy(body).into_owned())
}

/// Runs the outbox until shutdown. `wake` is notified when a message is added.
pub async fn run(
    spool: Arc<Spool>,
    cfg: Hl7,
    forward: Forward,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout = Duration::from_secs(cfg.timeout_secs.get());
    let address = cfg.address.as_str().to_string();
    loop {
        let due = spool
            .index()
            .call(|c| store::outbox_due(c, now_ms(), 16))
            .await
            .unwrap_or_default();
        for m in due {
            let outcome = match exchange(&address, &m.message, timeout).await {
                Ok(reply) => match parse_ack(&reply, &m.control_id) {
                    Ack::Accepted => Ok(()),
                    Ack::Refused(why) => Err(format!("the RIS refused it: {why}")),
                },
                Err(e) => Err(e),
            };
            let now = now_ms();
            let update = match &outcome {
                Ok(()) => {
                    tracing::info!(message = "HL7 result delivered", control_id = %m.control_id, attempts = m.attempts + 1);
                    store::Hl7Update::Sent
                }
                Err(e) => {
                    let given_up =
                        now - m.created_at_ms > forward.give_up_after().as_millis() as i64;
                    if given_up {
                        tracing::error!(message = "HL7 result given up", control_id = %m.control_id, error = %e);
                        store::Hl7Update::Dead(e.clone())
                    } else {
                        let backoff = crate::forward::backoff::delay(
                            m.attempts + 1,
                            forward.retry_initial(),
                            forward.retry_max(),
                            rand::random::<f64>(),
                        );
                        tracing::warn!(message = "HL7 result not delivered; retrying", control_id = %m.control_id, error = %e, retry_in_ms = backoff.as_millis() as u64);
                        store::Hl7Update::Retry {
                            error: e.clone(),
                            at_ms: now + backoff.as_millis() as i64,
                        }
                    }
                }
            };
            let id = m.id;
            if let Err(e) = spool
                .index()
                .call(move |c| store::outbox_update(c, id, &update, now))
                .await
            {
                tracing::warn!(message = "cannot record an HL7 delivery", error = %e);
            }
        }
        let next = spool
            .index()
            .call(store::outbox_next_due)
            .await
            .ok()
            .flatten();
        let wait = next.map_or(Duration::from_secs(60), |t| {
            Duration::from_millis((t - now_ms()).clamp(0, 60_000) as u64)
        });
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
