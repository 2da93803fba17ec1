use std::io::IoSlice;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use dicom_ul::pdu::{Pdu, MAXIMUM_PDU_SIZE};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// DICOM application context name.
pub const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";

/// Association-control PDUs (RQ, AC, RJ...) larger than this are refused.
const MAX_CONTROL_PDU: u32 = 1024 * 1024;

/// A failure on the wire.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// Nothing (or not a whole PDU) arrived in time.
    #[error("timed out after {0:?} waiting for a PDU")]
    Timeout(Duration),
    /// The peer took none of what we were sending for this long.
    #[error("the peer took nothing of what was sent for {0:?}")]
    WriteStalled(Duration),
    /// The peer announced a PDU larger than allowed.
    #[error("PDU of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: u32, limit: u32 },
    /// The PDU could not be decoded.
    #[error("malformed PDU: {0}")]
    Malformed(String),
    /// A socket error.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// One presentation data value, sharing the buffer of the PDU it came in.
#[derive(Debug, Clone)]
pub struct Pdv {
    pub context_id: u8,
    pub is_command: bool,
    pub is_last: bool,
    pub data: Bytes,
}

/// A PDU as read: P-DATA split into values without copying, anything else
/// decoded by dicom-ul.
#[derive(Debug)]
pub enum Received {
    PData(Vec<Pdv>),
    Other(Pdu),
}

type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// The two directions of a plain TCP connection.
pub fn tcp(stream: TcpStream) -> (PduReader, PduWriter) {
    let (r, w) = stream.into_split();
    (PduReader::new(Box::new(r)), PduWriter::new(Box::new(w)))
}

/// The two directions of any other stream (TLS).
pub fn split<S>(stream: S) -> (PduReader, PduWriter)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, w) = tokio::io::split(stream);
    (PduReader::new(Box::new(r)), PduWriter::new(Box::new(w)))
}

/// Reads whole PDUs from a connection.
pub struct PduReader {
    stream: ReadHalf,
    buffers: BufferRing,
}

impl PduReader {
    fn new(stream: ReadHalf) -> Self {
        PduReader {
            stream,
            buffers: BufferRing::default(),
        }
    }

    /// Reads one PDU and decodes it fully (for association control).
    pub async fn read(&mut self, max_pdata: u32, timeout: Duration) -> Result<Pdu, WireError> {
        let (kind, body) = self.read_raw(max_pdata, timeout).await?;
        decode_control(kind, &body)
    }

    /// Reads one PDU; P-DATA values come back as slices of one buffer.
    /// `max_pdata` bounds P-DATA PDUs (our announced maximum); the whole PDU
    /// must arrive within `timeout`, which also defeats a peer trickling bytes.
    pub async fn read_message(
        &mut self,
        max_pdata: u32,
        timeout: Duration,
    ) -> Result<Received, WireError> {
        let (kind, body) = self.read_raw(max_pdata, timeout).await?;
        if kind == 0x04 {
            split_pdata(body).map(Received::PData)
        } else {
            decode_control(kind, &body).map(Received::Other)
        }
    }

    /// Waits for the peer to close its side, reading and dropping at most
    /// 64 kB meanwhile (after a rejection or release the peer has nothing more
    /// to say). Bounded by the caller's timeout.
    pub async fn wait_closed(&mut self) {
        let mut buf = [0u8; 4096];
        let mut budget = 64 * 1024usize;
        while budget > 0 {
            match self.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    }

    async fn read_raw(
        &mut self,
        max_pdata: u32,
        timeout: Duration,
    ) -> Result<(u8, Bytes), WireError> {
        tokio::time::timeout(timeout, self.read_inner(max_pdata))
            .await
            .map_err(|_| WireError::Timeout(timeout))?
    }

    async fn read_inner(&mut self, max_pdata: u32) -> Result<(u8, Bytes), WireError> {
        let eof = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                WireError::Closed
            } else {
                WireError::Io(e)
            }
        };
        let mut head = [0u8; 6];
        self.stream.read_exact(&mut head).await.map_err(eof)?;
        let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
        let limit = if head[0] == 0x04 {
            max_pdata
        } else {
            MAX_CONTROL_PDU
        };
        if len > limit {
            return Err(WireError::TooLarge { len, limit });
        }
        let len = len as usize;
        let body = self.buffers.room_for(len);
        while body.len() < len {
            let want = len - body.len();
            let n = self
                .stream
                .read_buf(&mut (&mut *body).limit(want))
                .await
                .map_err(eof)?;
            if n == 0 {
                return Err(WireError::Closed);
            }
        }
        Ok((head[0], body.split().freeze()))
    }
}

/// PDU bodies are carved one after another out of a few large buffers, used
/// in turn. A buffer is reused once every value read into it has been dropped
/// (written to the spool by then); only if one is still held is a new one
/// allocated. A fresh allocation per PDU cost the daemon a page fault for
/// every page it received: glibc hands freed memory back to the system and
/// the next PDU faults it in again (12 % of the daemon's CPU during ingest).
#[derive(Default)]
struct BufferRing {
    ring: [BytesMut; RING_BUFFERS],
    at: usize,
}

const RING_BUFFERS: usize = 4;
const RING_BUFFER_BYTES: usize = 256 * 1024;

impl BufferRing {
    /// An empty buffer with room for `len` bytes.
    fn room_for(&mut self, len: usize) -> &mut BytesMut {
        // Anything left over from a read cut short is dropped.
        self.ring[self.at].clear();
        if self.ring[self.at].capacity() < len {
            self.at = (self.at + 1) % RING_BUFFERS;
            let next = &mut self.ring[self.at];
            next.clear();
            if !next.try_reclaim(len) {
                *next = BytesMut::with_capacity(len.max(RING_BUFFER_BYTES));
            }
        }
        &mut self.ring[self.at]
    }
}

/// Decodes a PDU other than P-DATA from its type and body.
pub fn decode_control(kind: u8, body: &[u8]) -> Result<Pdu, WireError> {
    let mut whole = Vec::with_capacity(6 + body.len());
    whole.push(kind);
    whole.push(0);
    whole.extend_from_slice(&(body.len() as u32).to_be_bytes());
    whole.extend_from_slice(body);
    match dicom_ul::read_pdu(&whole[..], MAXIMUM_PDU_SIZE, false) {
        Ok(Some(pdu)) => Ok(pdu),
        Ok(None) => Err(WireError::Malformed("incomplete PDU".into())),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

/// Splits a P-DATA-TF body into its presentation data values (PS3.8 §9.3.5).
pub fn split_pdata(body: Bytes) -> Result<Vec<Pdv>, WireError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0usize;
    while pos < body.len() {
        if body.len() - pos < 6 {
            return Err(WireError::Malformed(
                "P-DATA item shorter than its header".into(),
            ));
        }
        let item_len =
            u32::from_be_bytes([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]]) as usize;
        if item_len < 2 || item_len > body.len() - pos - 4 {
            return Err(WireError::Malformed(format!(
                "P-DATA item length {item_len} does not fit"
            )));
        }
        let control = body[pos + 5];
        out.push(Pdv {
            context_id: body[pos + 4],
            is_command: control & 0x01 != 0,
            is_last: control & 0x02 != 0,
            data: body.slice(pos + 6..pos + 4 + item_len),
        });
        pos += 4 + item_len;
    }
    if out.is_empty() {
        return Err(WireError::Malformed("P-DATA without any value".into()));
    }
    Ok(out)
}

/// Writes PDUs to a connection. Each PDU or message is flushed: over TLS
/// the last record may otherwise wait in the session for the next write.
pub struct PduWriter {
    stream: WriteHalf,
    buf: Vec<u8>,
    /// How long one write may wait for the peer to take anything (a peer
    /// that stops reading must not hold the task forever).
    stall_limit: Option<Duration>,
    /// Called whenever the peer has taken part of a message.
    progress: Option<Box<dyn Fn() + Send + Sync>>,
}

impl PduWriter {
    fn new(stream: WriteHalf) -> Self {
        PduWriter {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            stall_limit: None,
            progress: None,
        }
    }

    /// Fails a write with [`WireError::WriteStalled`] once the peer has
    /// taken nothing for `limit`.
    pub fn limit_stalls(&mut self, limit: Duration) {
        self.stall_limit = Some(limit);
    }

    /// `tick` is called each time the peer takes part of a message: a long
    /// message on a slow link is progress, not a stall.
    pub fn on_progress(&mut self, tick: Box<dyn Fn() + Send + Sync>) {
        self.progress = Some(tick);
    }

    pub async fn send(&mut self, pdu: &Pdu) -> Result<(), WireError> {
        self.buf.clear();
        dicom_ul::write_pdu(&mut self.buf, pdu).map_err(|e| WireError::Malformed(e.to_string()))?;
        bounded(self.stall_limit, self.stream.write_all(&self.buf)).await?;
        bounded(self.stall_limit, self.stream.flush()).await?;
        Ok(())
    }

    /// Sends a message (command or data set) as P-DATA-TF PDUs no larger
    /// than `peer_max` (0 = unlimited), fragmenting as needed.
    pub async fn send_message(
        &mut self,
        context_id: u8,
        is_command: bool,
        bytes: &[u8],
        peer_max: u32,
    ) -> Result<(), WireError> {
        if bytes.len() <= 64 * 1024 {
            write_pdata(&mut self.buf, context_id, is_command, bytes, peer_max);
            bounded(self.stall_limit, self.stream.write_all(&self.buf)).await?;
            bounded(self.stall_limit, self.stream.flush()).await?;
            return Ok(());
        }
        // Large data sets go out header + slice, without copying them first,
        // several PDUs per system call: one call per PDU (16 kB to a default
        // DCMTK peer) cost a wake-up on both sides of the connection each.
        let max_payload = max_payload(peer_max);
        let count = bytes.len().div_ceil(max_payload);
        let per_write = (GATHER_BYTES / max_payload).clamp(1, 64);
        let mut chunks = bytes.chunks(max_payload).enumerate();
        loop {
            let group: Vec<([u8; 12], &[u8])> = chunks
                .by_ref()
                .take(per_write)
                .map(|(i, chunk)| {
                    let last = i + 1 == count;
                    (pdv_header(context_id, is_command, last, chunk.len()), chunk)
                })
                .collect();
            if group.is_empty() {
                break;
            }
            let mut slices: Vec<IoSlice<'_>> = group
                .iter()
                .flat_map(|(head, chunk)| [IoSlice::new(head), IoSlice::new(chunk)])
                .collect();
            write_all_vectored(
                &mut self.stream,
                &mut slices,
                self.stall_limit,
                self.progress.as_deref(),
            )
            .await?;
        }
        bounded(self.stall_limit, self.stream.flush()).await?;
        Ok(())
    }

    pub async fn shutdown(&mut self) {
        let _ = bounded(self.stall_limit, self.stream.shutdown()).await;
    }
}

/// `io` within `limit`, if there is one.
async fn bounded<T>(
    limit: Option<Duration>,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, WireError> {
    match limit {
        None => Ok(io.await?),
        Some(limit) => match tokio::time::timeout(limit, io).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(WireError::WriteStalled(limit)),
        },
    }
}

/// How much of a large message goes to the socket per system call.
const GATHER_BYTES: usize = 256 * 1024;

async fn write_all_vectored(
    stream: &mut WriteHalf,
    mut slices: &mut [IoSlice<'_>],
    stall_limit: Option<Duration>,
    progress: Option<&(dyn Fn() + Send + Sync)>,
) -> Result<(), WireError> {
    while !slices.is_empty() {
        let n = bounded(stall_limit, stream.write_vectored(slices)).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        if let Some(tick) = progress {
            tick();
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Encodes a message as P-DATA-TF PDUs into `out` (cleared first).
pub fn write_pdata(
    out: &mut Vec<u8>,
    context_id: u8,
    is_command: bool,
    bytes: &[u8],
    peer_max: u32,
) {
    out.clear();
    let mut chunks = bytes.chunks(max_payload(peer_max)).peekable();
    if bytes.is_empty() {
        push_pdv(out, context_id, is_command, true, &[]);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        push_pdv(out, context_id, is_command, last, chunk);
    }
}

/// Largest PDV value that fits the peer's maximum PDU: a PDV item adds 6
/// bytes (length, context id, control header) inside the PDU, and the
/// peer's maximum counts the PDU's variable part. 0 means unlimited.
fn max_payload(peer_max: u32) -> usize {
    if peer_max == 0 {
        u32::MAX as usize - 6
    } else {
        (peer_max as usize).saturating_sub(6).max(1)
    }
}

/// P-DATA-TF PDU header and PDV item header for one value of `len` bytes.
fn pdv_header(context_id: u8, is_command: bool, last: bool, len: usize) -> [u8; 12] {
    let item_len = len as u32 + 2;
    let mut h = [0u8; 12];
    h[0] = 0x04;
    h[2..6].copy_from_slice(&(item_len + 4).to_be_bytes());
    h[6..10].copy_from_slice(&item_len.to_be_bytes());
    h[10] = context_id;
    h[11] = u8::from(is_command) | (u8::from(last) << 1);
    h
}

fn push_pdv(out: &mut Vec<u8>, context_id: u8, is_command: bool, last: bool, chunk: &[u8]) {
    out.extend_from_slice(&pdv_header(context_id, is_command, last, chunk.len()));
    out.extend_from_slice(chunk);
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::{PDataValueType, Pdu};

    fn decode_all(mut bytes: &[u8]) -> Vec<Pdu> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_be_bytes(bytes[2..6].try_into().unwrap()) as usize;
            out.push(
                dicom_ul::read_pdu(&bytes[..6 + len], MAXIMUM_PDU_SIZE, true)
                    .unwrap()
                    .unwrap(),
            );
            bytes = &bytes[6 + len..];
        }
        out
    }

    #[test]
    fn messages_are_fragmented_to_the_peer_maximum() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        write_pdata(&mut out, 3, false, &data, 4096);
        let pdus = decode_all(&out);
        assert_eq!(pdus.len(), 3);
        let mut joined = Vec::new();
        for (i, pdu) in pdus.iter().enumerate() {
            let Pdu::PData { data: pdvs } = pdu else {
                panic!("not P-DATA")
            };
            assert_eq!(pdvs.len(), 1);
            let pdv = &pdvs[0];
            assert_eq!(pdv.presentation_context_id, 3);
            assert_eq!(pdv.value_type, PDataValueType::Data);
            assert_eq!(pdv.is_last, i == 2);
            assert!(pdv.data.len() + 6 <= 4096);
            joined.extend_from_slice(&pdv.data);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn our_pdata_split_agrees_with_dicom_ul() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        write_pdata(&mut out, 5, false, &data, 1024);
        let mut joined = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[2..6].try_into().unwrap()) as usize;
            let pdvs = split_pdata(Bytes::copy_from_slice(&rest[6..6 + len])).unwrap();
            let Pdu::PData { data: theirs } =
                dicom_ul::read_pdu(&rest[..6 + len], MAXIMUM_PDU_SIZE, true)
                    .unwrap()
                    .unwrap()
            else {
                panic!()
            };
            assert_eq!(pdvs.len(), theirs.len());
            for (a, b) in pdvs.iter().zip(&theirs) {
                assert_eq!(a.data.as_ref(), b.data.as_slice());
                assert_eq!(a.is_last, b.is_last);
                assert_eq!(a.context_id, b.presentation_context_id);
            }
            joined.extend(pdvs.iter().flat_map(|p| p.data.to_vec()));
            rest = &rest[6 + len..];
        }
        assert_eq!(joined, data);
    }

    fn read_all(reader: &mut PduReader, n: usize) -> Vec<Pdv> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut pdvs = Vec::new();
            for _ in 0..n {
                match reader
                    .read_message(1 << 20, Duration::from_secs(5))
                    .await
                    .unwrap()
                {
                    Received::PData(p) => pdvs.extend(p),
                    Received::Other(p) => panic!("not P-DATA: {p:?}"),
                }
            }
            pdvs
        })
    }

    #[test]
    fn pdus_read_into_shared_buffers_stay_intact_and_reuse_released_memory() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut wire = Vec::new();
        write_pdata(&mut wire, 1, false, &data, 100_000);
        let pdus = wire.len().div_ceil(100_000);
        let mut reader = PduReader::new(Box::new(std::io::Cursor::new(wire)));

        // Every value held: each is its own bytes, whatever buffer it is in.
        let first_half = read_all(&mut reader, pdus / 2);
        let held: Vec<u8> = first_half.iter().flat_map(|p| p.data.to_vec()).collect();
        assert_eq!(held, data[..held.len()]);

        // Released as they come: after the first lap of the ring the same
        // memory is read into again instead of new allocations.
        let starts: std::collections::HashSet<usize> = first_half
            .iter()
            .map(|p| p.data.as_ptr() as usize - 6)
            .collect();
        drop(first_half);
        let mut rest = Vec::new();
        let mut reused = 0;
        for _ in pdus / 2..pdus {
            let pdv = read_all(&mut reader, 1).remove(0);
            reused += usize::from(starts.contains(&(pdv.data.as_ptr() as usize - 6)));
            rest.extend_from_slice(&pdv.data);
            assert_eq!(pdv.is_last, rest.len() + held.len() == data.len());
        }
        assert_eq!(rest, data[held.len()..]);
        assert!(reused > 0, "no PDU was read into released memory");
    }

    /// A connection that takes at most `max` bytes per write.
    struct Trickle {
        out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        max: usize,
        calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Trickle {
        fn accept(&self, bufs: &[IoSlice<'_>]) -> usize {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut out = self.out.lock().unwrap();
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            n
        }
    }

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Ok(self.accept(&[IoSlice::new(buf)])))
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Ok(self.accept(bufs)))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn large_messages_go_out_as_whole_pdus_several_per_write() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 31 % 253) as u8).collect();
        for (max, peer_max) in [
            (usize::MAX, 16_384u32),
            (1000, 16_384),
            (70_001, 4096),
            (usize::MAX, 0),
        ] {
            let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut writer = PduWriter::new(Box::new(Trickle {
                out: out.clone(),
                max,
                calls: calls.clone(),
            }));
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(writer.send_message(7, false, &data, peer_max))
                .unwrap();
            let pdus = decode_all(&out.lock().unwrap());
            let mut joined = Vec::new();
            for (i, pdu) in pdus.iter().enumerate() {
                let Pdu::PData { data: pdvs } = pdu else {
                    panic!("not P-DATA")
                };
                assert_eq!(pdvs.len(), 1);
                assert_eq!(pdvs[0].presentation_context_id, 7);
                assert_eq!(pdvs[0].is_last, i + 1 == pdus.len());
                assert!(peer_max == 0 || pdvs[0].data.len() + 6 <= peer_max as usize);
                joined.extend_from_slice(&pdvs[0].data);
            }
            assert_eq!(joined, data, "max {max}, peer max {peer_max}");
            if max == usize::MAX && peer_max == 16_384 {
                assert!(
                    calls.load(std::sync::atomic::Ordering::Relaxed) < pdus.len() / 4,
                    "{} writes for {} PDUs",
                    calls.load(std::sync::atomic::Ordering::Relaxed),
                    pdus.len()
                );
            }
        }
    }

    /// The peer takes the first 300 kB, then reads nothing more.
    #[test]
    fn a_peer_that_stops_reading_stalls_the_write_after_the_limit() {
        let (ours, theirs) = tokio::io::duplex(300 * 1024);
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut writer = PduWriter::new(Box::new(ours));
        writer.limit_stalls(Duration::from_millis(200));
        let counted = ticks.clone();
        writer.on_progress(Box::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }));
        let data = vec![5u8; 4 << 20];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let r = rt.block_on(writer.send_message(1, false, &data, 16_384));
        assert!(
            matches!(r, Err(WireError::WriteStalled(d)) if d == Duration::from_millis(200)),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        drop(theirs);
    }

    #[test]
    fn malformed_pdata_is_an_error() {
        for body in [
            &[0u8, 0, 0, 1, 1, 0][..],
            &[0, 0, 0, 9, 1, 3, 0][..],
            &[][..],
            &[0, 0][..],
        ] {
            assert!(
                split_pdata(Bytes::copy_from_slice(body)).is_err(),
                "{body:?}"
            );
        }
    }

    #[test]
    fn unlimited_peer_gets_one_pdu() {
        let mut out = Vec::new();
        write_pdata(&mut out, 1, true, &[1, 2, 3], 0);
        let pdus = decode_all(&out);
        let Pdu::PData { data } = &pdus[0] else {
            panic!()
        };
        assert!(data[0].is_last);
        assert_eq!(data[0].value_type, PDataValueType::Command);
    }
}
