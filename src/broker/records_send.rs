//! Zero-copy Fetch responses (Kafka's `MultiRecordsSend`): a response as
//! a list of parts, encoded bytes and regions of segment files, written in
//! order, the regions with `sendfile(2)` from the page cache to the socket.
//!
//! A fetch on a plaintext listener (with `socket.sendfile.enable`, outside
//! any client quota) reads local batches as [`FileRegion`]s instead of
//! copies. Until the response is encoded, a partition served from a file
//! carries [`placeholder`] as its records (one static byte, recognized by
//! its address, so a fetch session sees records there); the regions follow
//! in response order. [`fetch_send`] encodes the response around them:
//! the outer structure here, each partition with `kafka-protocol` and its
//! records field spliced (the length prefix and the region in place of the
//! placeholder). [`resolve`] turns it back into an ordinary response (the
//! regions read into memory) wherever bytes must be copied anyway: a TLS
//! connection, or a response this encoder does not handle.
//!
//! Must never send a length that differs from the bytes that follow: a
//! region that reads short (its file shorter than planned, which nothing
//! does to an open segment) ends the connection.

use std::io;
use std::os::fd::AsRawFd;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ConnError;
use crate::log::FileRegion;

/// Records in memory at least this large are sent from their own buffer
/// (one more `send(2)`) instead of being copied into the encoded response.
pub const SPLICE_MIN_BYTES: usize = 64 * 1024;

/// Whether `records` are in memory and large enough to be sent from their
/// own buffer by [`fetch_send`] (not a [`placeholder`]).
pub fn sent_from_memory(records: &Bytes) -> bool {
    records.len() >= SPLICE_MIN_BYTES && !is_placeholder(records)
}

/// The records of a partition served from a file, until encoding.
static PLACEHOLDER: [u8; 1] = [0];

/// What a partition whose records are a [`FileRegion`] carries in its
/// records field until [`fetch_send`] or [`resolve`].
pub fn placeholder() -> Bytes {
    Bytes::from_static(&PLACEHOLDER)
}

/// Whether `records` is the [`placeholder`] (by address: no records read
/// from a log or a client point at this static).
fn is_placeholder(records: &Bytes) -> bool {
    records.len() == 1 && std::ptr::eq(records.as_ptr(), PLACEHOLDER.as_ptr())
}

/// Records spliced into a Fetch response in place of a [`placeholder`]:
/// a region of a segment file, or whole batches in memory in several
/// buffers (a remote read's slices of the cached chunks), sent from where
/// they are.
#[derive(Debug, Clone)]
pub enum Spliced {
    File(FileRegion),
    /// Whole batches in these buffers, in order, and the offset after
    /// the last batch when known.
    Memory {
        parts: Vec<Bytes>,
        next_offset: Option<i64>,
    },
}

impl Spliced {
    /// A remote read's batches, as the slices they came in.
    pub fn memory(batches: crate::remote::fetcher::RemoteBatches) -> Self {
        let next_offset = batches.next_offset();
        Spliced::Memory {
            parts: batches.into_parts(),
            next_offset,
        }
    }

    /// Its bytes.
    pub fn len(&self) -> usize {
        match self {
            Spliced::File(r) => r.len(),
            Spliced::Memory { parts, .. } => parts.iter().map(Bytes::len).sum(),
        }
    }

    /// The offset after its last batch, when known.
    pub fn next_offset(&self) -> Option<i64> {
        match self {
            Spliced::File(r) => Some(r.next_offset()),
            Spliced::Memory { next_offset, .. } => *next_offset,
        }
    }

    /// Its bytes in one buffer (read from the file, or copied together).
    pub fn read(&self) -> crate::Result<Bytes> {
        Ok(match self {
            Spliced::File(r) => Bytes::from(r.read()?),
            Spliced::Memory { parts, .. } if parts.len() == 1 => parts[0].clone(),
            Spliced::Memory { parts, .. } => {
                let mut out = Vec::with_capacity(self.len());
                for p in parts {
                    out.extend_from_slice(p);
                }
                Bytes::from(out)
            }
        })
    }
}

/// One piece of a response, in the order it goes on the wire.
#[derive(Debug)]
pub enum Part {
    Bytes(Bytes),
    File(FileRegion),
}

/// A response as parts; `len` is their total, the frame's size.
#[derive(Debug, Default)]
pub struct RecordsSend {
    parts: Vec<Part>,
    len: usize,
}

impl RecordsSend {
    /// The frame's size (without its 4-byte prefix).
    pub fn size(&self) -> usize {
        self.len
    }

    /// The parts in wire order.
    #[cfg(test)]
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    fn push_bytes(&mut self, bytes: BytesMut) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.parts.push(Part::Bytes(bytes.freeze()));
        }
    }

    fn push_shared(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.parts.push(Part::Bytes(bytes));
        }
    }

    fn push_file(&mut self, region: FileRegion) {
        self.len += region.len();
        self.parts.push(Part::File(region));
    }

    /// All of it in one buffer, the regions read (tests, and writers
    /// that cannot send from a file).
    pub fn to_bytes(&self) -> crate::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len);
        for part in &self.parts {
            match part {
                Part::Bytes(b) => out.extend_from_slice(b),
                Part::File(r) => out.extend_from_slice(&r.read()?),
            }
        }
        Ok(out)
    }
}

/// Why [`fetch_send`] did not encode a response: the caller encodes it
/// the ordinary way ([`resolve`], then `kafka-protocol`).
#[derive(Debug, thiserror::Error)]
pub enum NotEncoded {
    #[error("Fetch v{0} is not encoded with file regions")]
    Version(i16),
    #[error("the response has tagged fields or fields outside its version")]
    Fields,
    #[error("{placeholders} partitions spliced but {regions} records to splice")]
    Regions { placeholders: usize, regions: usize },
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Encode `resp` (header included) as parts, each [`placeholder`]'s
/// records replaced by the next of `regions`. Fetch v4 to v12 (what the
/// broker serves); tagged fields only where empty.
pub fn fetch_send(
    version: i16,
    correlation_id: i32,
    resp: &FetchResponse,
    regions: Vec<Spliced>,
) -> Result<RecordsSend, NotEncoded> {
    if !(4..=12).contains(&version) {
        return Err(NotEncoded::Version(version));
    }
    let placeholders = resp
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.records.as_ref().is_some_and(is_placeholder))
        .count();
    if placeholders != regions.len() {
        return Err(NotEncoded::Regions {
            placeholders,
            regions: regions.len(),
        });
    }
    let flexible = version >= 12;
    // Kafka-protocol refuses a session id before v7; tagged fields are
    // encoded here only when there are none.
    if (version < 7 && resp.session_id != 0)
        || !resp.unknown_tagged_fields.is_empty()
        || !resp.node_endpoints.is_empty()
        || resp
            .responses
            .iter()
            .any(|t| !t.unknown_tagged_fields.is_empty())
    {
        return Err(NotEncoded::Fields);
    }
    let mut send = RecordsSend::default();
    let mut buf = BytesMut::with_capacity(256);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, ApiKey::Fetch.response_header_version(version))
        .map_err(|e| NotEncoded::Encode(e.to_string()))?;
    buf.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(resp.error_code);
        buf.put_i32(resp.session_id);
    }
    put_array_len(&mut buf, resp.responses.len(), flexible);
    let mut regions = regions.into_iter();
    for topic in &resp.responses {
        let name = topic.topic.as_bytes();
        if flexible {
            put_unsigned_varint(&mut buf, name.len() as u64 + 1);
        } else {
            let len = i16::try_from(name.len()).map_err(|_| NotEncoded::Fields)?;
            buf.put_i16(len);
        }
        buf.put_slice(name);
        put_array_len(&mut buf, topic.partitions.len(), flexible);
        for p in &topic.partitions {
            let from_file = p.records.as_ref().is_some_and(is_placeholder);
            // Records in memory (read from the remote tier, or copied)
            // large enough to be worth a part of their own: sent from
            // where they are, not copied into the encoded response.
            let in_memory = p.records.as_ref().filter(|r| sent_from_memory(r)).cloned();
            if !from_file && in_memory.is_none() {
                p.encode(&mut buf, version)
                    .map_err(|e| NotEncoded::Encode(e.to_string()))?;
                continue;
            }
            // Its tagged fields must be empty: the records field is then
            // the last but the tagged-field count (0).
            if flexible
                && (p.diverging_epoch != Default::default()
                    || p.current_leader != Default::default()
                    || p.snapshot_id != Default::default()
                    || !p.unknown_tagged_fields.is_empty())
            {
                return Err(NotEncoded::Fields);
            }
            let spliced = match in_memory {
                Some(records) => Spliced::Memory {
                    parts: vec![records],
                    next_offset: None,
                },
                // The counts matched above: there is one for each.
                None => match regions.next() {
                    Some(spliced) => spliced,
                    None => {
                        return Err(NotEncoded::Regions {
                            placeholders,
                            regions: 0,
                        })
                    }
                },
            };
            let len = spliced.len();
            encode_without_records(p, &mut buf, version)?;
            if flexible {
                put_unsigned_varint(&mut buf, len as u64 + 1);
            } else {
                let len = i32::try_from(len).map_err(|_| NotEncoded::Fields)?;
                buf.put_i32(len);
            }
            send.push_bytes(buf.split());
            match spliced {
                Spliced::Memory { parts, .. } => {
                    parts.into_iter().for_each(|b| send.push_shared(b))
                }
                Spliced::File(r) => send.push_file(r),
            }
            if flexible {
                buf.put_u8(0); // no tagged fields
            }
        }
        if flexible {
            buf.put_u8(0); // the topic's tagged fields: none
        }
    }
    if flexible {
        buf.put_u8(0); // the response's tagged fields: none
    }
    send.push_bytes(buf);
    Ok(send)
}

/// `p` encoded up to (without) its records field: the partition encoded
/// with null records, whose null length (the last bytes when there are no
/// tagged fields, as checked) is then cut off.
fn encode_without_records(
    p: &PartitionData,
    buf: &mut BytesMut,
    version: i16,
) -> Result<(), NotEncoded> {
    let before = buf.len();
    let mut bare = p.clone();
    bare.records = None;
    bare.encode(buf, version)
        .map_err(|e| NotEncoded::Encode(e.to_string()))?;
    // Null records: a compact length of 0 and the tagged-field count 0
    // (flexible), or the length -1.
    let tail: &[u8] = if version >= 12 {
        &[0, 0]
    } else {
        &[0xff, 0xff, 0xff, 0xff]
    };
    if buf.len() < before + tail.len() || !buf.ends_with(tail) {
        return Err(NotEncoded::Fields);
    }
    buf.truncate(buf.len() - tail.len());
    Ok(())
}

fn put_array_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, len as u64 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

fn put_unsigned_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// `resp` with each [`placeholder`] replaced by the next spliced records'
/// bytes (a region read from its file): the ordinary response.
pub fn resolve(mut resp: FetchResponse, regions: Vec<Spliced>) -> crate::Result<FetchResponse> {
    let mut regions = regions.into_iter();
    for p in resp
        .responses
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut())
    {
        if p.records.as_ref().is_some_and(is_placeholder) {
            let bytes = match regions.next() {
                Some(r) => r.read()?,
                None => {
                    return Err(crate::Error::internal(
                        "a fetch response has more file placeholders than regions",
                    ))
                }
            };
            p.records = Some(bytes);
        }
    }
    Ok(resp)
}

/// A connection's writing half, and the TCP socket under it when nothing
/// (TLS) stands between.
pub trait SocketWriter: AsyncWrite + Unpin {
    /// The plain TCP socket, to send to directly.
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

impl SocketWriter for tokio::net::tcp::OwnedWriteHalf {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl<T: tokio::io::AsyncRead + AsyncWrite> SocketWriter for tokio::io::WriteHalf<T> {}

/// Write `send` as one frame: its size, then its parts in order. On a
/// plain TCP stream the parts go straight to the socket, the regions with
/// `sendfile(2)`; otherwise (TLS) the regions are read and written through
/// `writer`. A region that reads short is an error: the frame cannot be
/// completed, so the connection must end.
pub async fn write_send<W: SocketWriter>(
    writer: &mut W,
    send: &RecordsSend,
) -> Result<(), ConnError> {
    let size = i32::try_from(send.size()).map_err(|_| {
        ConnError::Malformed(format!("a {}-byte response cannot be framed", send.size()))
    })?;
    let Some(socket) = writer.socket() else {
        let mut out = Vec::with_capacity(4 + send.size());
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(
            &send
                .to_bytes()
                .map_err(|e| ConnError::Io(io::Error::other(e.to_string())))?,
        );
        writer.write_all(&out).await?;
        writer.flush().await?;
        return Ok(());
    };
    // The size prefix goes with the first bytes.
    let mut pending = BytesMut::with_capacity(4);
    pending.put_i32(size);
    let count = send.parts.len();
    for (i, part) in send.parts.iter().enumerate() {
        let last = i + 1 == count;
        match part {
            Part::Bytes(b) if b.len() >= SPLICE_MIN_BYTES => {
                // Sent from where it is: what is pending goes first.
                if !pending.is_empty() {
                    send_bytes(socket, &pending, true).await?;
                    pending.clear();
                }
                send_bytes(socket, b, !last).await?;
            }
            Part::Bytes(b) => {
                pending.extend_from_slice(b);
                send_bytes(socket, &pending, !last).await?;
                pending.clear();
            }
            Part::File(region) => {
                if !pending.is_empty() {
                    send_bytes(socket, &pending, true).await?;
                    pending.clear();
                }
                send_region(socket, region).await?;
            }
        }
    }
    if !pending.is_empty() {
        send_bytes(socket, &pending, false).await?;
    }
    Ok(())
}

/// `send(2)` all of `bytes`; with `more`, MSG_MORE (the kernel holds a
/// short header back to go out with the file bytes after it). In slices
/// with a yield between, as [`send_region`] (large records in memory).
async fn send_bytes(socket: &TcpStream, bytes: &[u8], more: bool) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    let mut sent = 0;
    while sent < bytes.len() {
        if sent > 0 {
            tokio::task::yield_now().await;
        }
        let end = (sent + super::codec::WRITE_SLICE_BYTES).min(bytes.len());
        let rest = &bytes[sent..end];
        let flags = libc::MSG_NOSIGNAL
            | if more || end < bytes.len() {
                libc::MSG_MORE
            } else {
                0
            };
        let n = socket
            .async_io(tokio::io::Interest::WRITABLE, || {
                // SAFETY: `fd` is the open socket `socket` borrows for the
                // call; the pointer and length are those of `rest`.
                let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), flags) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            })
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    Ok(())
}

/// `sendfile(2)` all of `region` to the socket.
async fn send_region(socket: &TcpStream, region: &FileRegion) -> io::Result<()> {
    let out_fd = socket.as_raw_fd();
    let in_fd = region.file().as_raw_fd();
    let start = libc::off_t::try_from(region.position())
        .map_err(|_| io::Error::other("segment position out of range"))?;
    let end = start + region.len() as libc::off_t;
    let mut offset = start;
    while offset < end {
        // At most a slice per call, and a yield between slices: a 10 MB
        // region to a fast reader would otherwise keep this worker in the
        // kernel for milliseconds, other connections' requests (a
        // produce waiting for its ack) queued behind it.
        if offset > start {
            tokio::task::yield_now().await;
        }
        let want = ((end - offset) as usize).min(super::codec::WRITE_SLICE_BYTES);
        let n = socket
            .async_io(tokio::io::Interest::WRITABLE, || {
                // SAFETY: both descriptors are open for the call (the socket
                // and the region's file are borrowed); `offset` is a valid
                // off_t the kernel advances by what it sent.
                let n = unsafe { libc::sendfile(out_fd, in_fd, &mut offset, want) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            })
            .await?;
        if n == 0 {
            // The file ends before the region: the frame cannot be
            // completed with the bytes it declared.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ends at {offset}, before the {} bytes planned from {}",
                    region.log_path().display(),
                    region.len(),
                    region.position()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Decodable, StrBytes};

    use crate::log::LocalLog;

    const T0: i64 = 1_700_000_000_000;

    fn batch(n: usize, value_len: usize) -> Vec<u8> {
        let mut b = crate::format::BatchBuilder::new();
        for i in 0..n {
            let mut v = format!("value-{i}-").into_bytes();
            v.resize(value_len, b'x');
            b.push(crate::format::Record::new(None, Some(v), T0));
        }
        b.build().unwrap()
    }

    /// A log of `batches` of (records, record size).
    fn log_of(dir: &std::path::Path, batches: &[(usize, usize)]) -> LocalLog {
        let clock = crate::clock::ManualClock::new(T0);
        let mut log = LocalLog::open(
            dir.to_path_buf(),
            "t-0".into(),
            crate::config::TopicConfig::default(),
            std::sync::Arc::new(clock),
            false,
        )
        .unwrap()
        .0;
        for &(n, len) in batches {
            log.append(&mut batch(n, len)).unwrap();
        }
        log
    }

    /// A log of a few batches of different sizes, and regions of it.
    fn log_with_batches(dir: &std::path::Path) -> LocalLog {
        log_of(dir, &[(3, 10), (50, 100), (1, 5000), (7, 300)])
    }

    fn region(log: &LocalLog, offset: i64, max_bytes: usize) -> FileRegion {
        log.plan_read(offset, max_bytes, true)
            .unwrap()
            .read
            .unwrap()
            .region()
            .unwrap()
            .unwrap()
    }

    fn partition(index: i32) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(61)
            .with_last_stable_offset(61)
            .with_log_start_offset(0)
            .with_aborted_transactions(Some(Vec::new()))
            .with_records(Some(Bytes::new()))
    }

    /// A response mixing partitions from files, with copied records, with
    /// errors, null fields and aborted transactions, valid at `version`.
    fn response(version: i16, regions: &[Spliced]) -> FetchResponse {
        let inline = regions[0].read().unwrap();
        let topic = |name: &str, partitions| {
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                .with_partitions(partitions)
        };
        let large = Bytes::from(
            inline
                .iter()
                .copied()
                .cycle()
                .take(SPLICE_MIN_BYTES + 1000)
                .collect::<Vec<u8>>(),
        );
        let mut aborted = partition(3).with_records(Some(placeholder()));
        aborted.aborted_transactions = Some(vec![AbortedTransaction::default()
            .with_producer_id(7.into())
            .with_first_offset(2)]);
        let mut resp = FetchResponse::default()
            .with_throttle_time_ms(5)
            .with_responses(vec![
                topic(
                    "alpha",
                    vec![
                        partition(0).with_records(Some(placeholder())),
                        partition(1).with_error_code(1).with_records(None),
                        partition(2).with_records(Some(inline)),
                        aborted,
                    ],
                ),
                topic("", vec![]),
                topic(
                    "beta",
                    vec![
                        partition(0)
                            .with_aborted_transactions(None)
                            .with_records(Some(placeholder())),
                        // Large records in memory (a remote read): sent
                        // from their own buffer.
                        partition(1).with_records(Some(large)),
                    ],
                ),
            ]);
        if version >= 7 {
            resp.session_id = 1234;
            resp.error_code = 0;
        }
        if version >= 11 {
            for p in resp
                .responses
                .iter_mut()
                .flat_map(|t| t.partitions.iter_mut())
            {
                p.preferred_read_replica = (-1).into();
            }
        }
        resp
    }

    /// For every Fetch version served, the response built with file
    /// regions is byte for byte the one `kafka-protocol` encodes with the
    /// records copied in, and decodes back to it.
    #[test]
    fn file_region_responses_match_the_copying_encoder_for_every_served_version() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with_batches(dir.path());
        let all = region(&log, 0, 1 << 20); // all four batches
        assert_eq!(all.next_offset(), 61);
        let some = region(&log, 3, 6000); // some: trimmed to whole batches
                                          // A remote read's batches: slices of chunks, cut anywhere.
        let bytes = Bytes::from(region(&log, 53, 10).read().unwrap()); // one oversized batch (KIP-74)
        let slices = vec![bytes.slice(..7), bytes.slice(7..100), bytes.slice(100..)];
        let regions = vec![
            Spliced::File(all),
            Spliced::File(some),
            Spliced::Memory {
                parts: slices.clone(),
                next_offset: None,
            },
        ];
        let (min, max) = crate::broker::SUPPORTED_APIS
            .iter()
            .find(|(k, _, _)| *k == ApiKey::Fetch)
            .map(|&(_, min, max)| (min, max))
            .unwrap();
        for version in min..=max {
            let resp = response(version, &regions);
            let send = fetch_send(version, 99, &resp, regions.clone()).unwrap();
            let spliced = send.to_bytes().unwrap();
            assert_eq!(spliced.len(), send.size());
            assert_eq!(
                send.parts()
                    .iter()
                    .filter(|p| matches!(p, Part::File(_)))
                    .count(),
                2
            );
            // The remote read's slices are sent as they are.
            for slice in &slices {
                assert!(send
                    .parts()
                    .iter()
                    .any(|p| matches!(p, Part::Bytes(b) if b.as_ptr() == slice.as_ptr())));
            }
            // The large in-memory records are a part of their own, the
            // small ones encoded in place.
            assert_eq!(
                send.parts()
                    .iter()
                    .filter(|p| matches!(p, Part::Bytes(b) if b.len() >= SPLICE_MIN_BYTES))
                    .count(),
                1
            );
            let resolved = resolve(resp, regions.clone()).unwrap();
            let copied =
                super::super::codec::respond(ApiKey::Fetch, version, 99, &resolved).unwrap();
            assert_eq!(spliced, copied.to_vec(), "Fetch v{version}");
            let mut buf = Bytes::from(spliced);
            let header =
                ResponseHeader::decode(&mut buf, ApiKey::Fetch.response_header_version(version))
                    .unwrap();
            assert_eq!(header.correlation_id, 99);
            let decoded = FetchResponse::decode(&mut buf, version).unwrap();
            let records = |r: &FetchResponse| -> Vec<Option<Bytes>> {
                r.responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.records.clone())
                    .collect()
            };
            assert_eq!(records(&decoded), records(&resolved), "Fetch v{version}");
            assert_eq!(decoded.session_id, resolved.session_id);
            assert_eq!(
                decoded.responses[0].partitions[0].records.as_deref(),
                Some(&regions[0].read().unwrap()[..])
            );
            assert_eq!(
                decoded.responses[2].partitions[0].records.as_deref(),
                Some(&bytes[..])
            );
        }
    }

    /// What the encoder does not handle is refused (the caller copies),
    /// never encoded wrong.
    #[test]
    fn responses_it_cannot_splice_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with_batches(dir.path());
        let regions = vec![Spliced::File(region(&log, 0, 1 << 20)); 3];
        let resp = response(12, &regions);
        assert!(matches!(
            fetch_send(13, 1, &resp, regions.clone()),
            Err(NotEncoded::Version(13))
        ));
        assert!(matches!(
            fetch_send(12, 1, &resp, regions[..2].to_vec()),
            Err(NotEncoded::Regions { .. })
        ));
        let mut tagged = resp.clone();
        tagged.responses[0].partitions[0].current_leader.leader_id = 3.into();
        assert!(matches!(
            fetch_send(12, 1, &tagged, regions.clone()),
            Err(NotEncoded::Fields)
        ));
        assert!(matches!(
            fetch_send(4, 1, &response(12, &regions), regions.clone()),
            Err(NotEncoded::Fields)
        ));
    }

    /// Over a real socket, `sendfile` included, the frame read back is the
    /// size prefix and exactly the response's bytes.
    #[tokio::test]
    async fn a_response_with_regions_goes_over_tcp_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with_batches(dir.path());
        let regions = vec![
            Spliced::File(region(&log, 0, 1 << 20)),
            Spliced::File(region(&log, 3, 6000)),
            Spliced::File(region(&log, 53, 10)),
        ];
        let send = fetch_send(12, 7, &response(12, &regions), regions).unwrap();
        over_tcp(&send).await;
    }

    /// `send` written by [`write_send`] to a real socket (`sendfile`
    /// included) arrives as its size prefix and exactly its bytes.
    async fn over_tcp(send: &RecordsSend) {
        let expected = send.to_bytes().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            out
        });
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        assert!(w.socket().is_some());
        write_send(&mut w, send).await.unwrap();
        drop(w);
        drop(r);
        let got = client.await.unwrap();
        assert_eq!(&got[..4], &(expected.len() as i32).to_be_bytes());
        assert!(got[4..] == expected[..], "the frame differs");
    }

    /// A region of several slices (one `sendfile` call and a yield
    /// each) arrives whole and in order, on a runtime with one worker
    /// that the reading client shares.
    #[tokio::test]
    async fn a_region_larger_than_a_slice_goes_over_tcp_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_of(dir.path(), &[(1000, 1000); 3]);
        let whole = region(&log, 0, 8 << 20);
        assert!(
            whole.len() > 2 * super::super::codec::WRITE_SLICE_BYTES,
            "{} bytes: not several slices",
            whole.len()
        );
        // `response` serves three partitions from files.
        let regions = vec![
            Spliced::File(whole),
            Spliced::File(region(&log, 1000, 1)),
            Spliced::Memory {
                parts: vec![Bytes::from(region(&log, 2000, 1).read().unwrap())],
                next_offset: None,
            },
        ];
        let send = fetch_send(12, 9, &response(12, &regions), regions).unwrap();
        over_tcp(&send).await;
    }
}
