//! Framing and the glue to the `kafka-protocol` codecs.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::element_budget::with_element_budget;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::limits::MAX_REQUEST_TOTAL_ENTRIES;
use super::ConnError;

/// A frame's size from its 4-byte prefix. A size that is negative or above
/// `max` is refused before any allocation.
pub fn frame_size(prefix: [u8; 4], max: usize) -> Result<usize, ConnError> {
    let size = i32::from_be_bytes(prefix);
    if size < 0 || size as usize > max {
        return Err(ConnError::TooLarge {
            size: i64::from(size),
            limit: max,
        });
    }
    Ok(size as usize)
}

/// Read a frame's `size` bytes after its prefix.
pub async fn read_frame_body<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    size: usize,
) -> Result<Bytes, ConnError> {
    // Read into spare capacity: no zeroing of a buffer about to be filled.
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let mut limited = (&mut *stream).take((size - buf.len()) as u64);
        if limited.read_buf(&mut buf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(buf.freeze())
}

/// Frames up to this size are copied behind their size prefix and written
/// with one call; larger ones are written as they are, in slices.
const COPY_FRAME_BYTES: usize = 64 << 10;

/// Bytes of a large frame written before the connection's task yields
/// (as `records_send` does between `sendfile(2)` calls).
pub const WRITE_SLICE_BYTES: usize = 1 << 20;

/// Write one frame (`bytes` already holds header + body).
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    stream: &mut W,
    bytes: &[u8],
) -> Result<(), ConnError> {
    if bytes.len() > COPY_FRAME_BYTES {
        // A large response (a Fetch of copied records) is written where
        // it was encoded, not copied once more behind its size, and in
        // slices with a yield between them, so the worker also serves
        // other connections (a produce waiting for its ack) meanwhile.
        stream
            .write_all(&(bytes.len() as i32).to_be_bytes())
            .await?;
        for (i, slice) in bytes.chunks(WRITE_SLICE_BYTES).enumerate() {
            if i > 0 {
                tokio::task::yield_now().await;
            }
            stream.write_all(slice).await?;
        }
        stream.flush().await?;
        return Ok(());
    }
    let mut out = BytesMut::with_capacity(4 + bytes.len());
    out.put_i32(bytes.len() as i32);
    out.extend_from_slice(bytes);
    stream.write_all(&out).await?;
    // TLS streams hold written bytes until flushed (TCP's flush is a no-op).
    stream.flush().await?;
    Ok(())
}

/// An encoded response (header included): one buffer, or a Fetch
/// response's parts with file regions (`records_send.rs`).
#[derive(Debug)]
pub enum Response {
    Buffer(BytesMut),
    Send(super::records_send::RecordsSend),
}

impl Response {
    /// `Some` of a buffer (for `.map(Response::some)`).
    pub fn some(buffer: BytesMut) -> Option<Response> {
        Some(Response::Buffer(buffer))
    }
}

impl From<BytesMut> for Response {
    fn from(buffer: BytesMut) -> Self {
        Response::Buffer(buffer)
    }
}

/// Write one response as a frame.
pub async fn write_response<W: super::records_send::SocketWriter>(
    stream: &mut W,
    response: &Response,
) -> Result<(), ConnError> {
    match response {
        Response::Buffer(bytes) => write_frame(stream, bytes).await,
        Response::Send(send) => super::records_send::write_send(stream, send).await,
    }
}

/// API key and version from the first four bytes, without consuming them.
pub fn peek_api(frame: &Bytes) -> Result<(i16, i16), ConnError> {
    if frame.len() < 8 {
        return Err(ConnError::Malformed(format!(
            "frame of {} bytes has no request header",
            frame.len()
        )));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    Ok((key, version))
}

/// Decode the request header (consumes it). The header owns its bytes
/// (the client id and any unknown tagged field are copied, a few bytes):
/// a decoded header holding a slice of the frame would keep the frame
/// shared, and Produce could then not take the frame's body as writable
/// without copying all of its records (`produce::decode`).
pub fn decode_header(
    frame: &mut Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<RequestHeader, ConnError> {
    let mut header = RequestHeader::decode(frame, api_key.request_header_version(version))
        .map_err(|e| ConnError::Malformed(format!("{api_key:?} v{version} header: {e}")))?;
    header.client_id = header
        .client_id
        .map(|id| StrBytes::from_string(id.as_str().to_owned()));
    for value in header.unknown_tagged_fields.values_mut() {
        *value = Bytes::copy_from_slice(value);
    }
    Ok(header)
}

/// Decode a request body, with at most [`MAX_REQUEST_TOTAL_ENTRIES`] array
/// entries in all (`ConnError::OverEntryLimit` past it: the decode stops
/// there, see limits.rs). Bytes after a complete body are ignored, as
/// Kafka's own parser does: librdkafka's all-topics Metadata v12 request
/// carries three trailing zero bytes.
pub fn decode<T: Decodable>(frame: &mut Bytes, version: i16) -> Result<T, ConnError> {
    let (body, spent) =
        with_element_budget(MAX_REQUEST_TOTAL_ENTRIES, || T::decode(frame, version));
    let body = body.map_err(|e| {
        if spent {
            ConnError::OverEntryLimit
        } else {
            ConnError::Malformed(format!("v{version} body: {e}"))
        }
    })?;
    if frame.has_remaining() {
        let n = frame.remaining().min(32);
        tracing::debug!(
            left = frame.remaining(),
            bytes = ?&frame[..n],
            "ignoring bytes after the v{version} request body"
        );
    }
    Ok(body)
}

/// Encode a response with its header.
pub fn respond<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<BytesMut, ConnError> {
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, api_key.response_header_version(version))
        .map_err(|e| ConnError::Malformed(format!("cannot encode response header: {e}")))?;
    body.encode(&mut out, version).map_err(|e| {
        ConnError::Malformed(format!(
            "cannot encode {api_key:?} v{version} response: {e}"
        ))
    })?;
    Ok(out)
}

/// A request for an API tierlog does not implement (yet): answered with
/// UNSUPPORTED_VERSION where the response has a place for an error, so the
/// client gets a clear error rather than a dropped connection.
pub fn unsupported_api(
    frame: &mut Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<Option<BytesMut>, ConnError> {
    use kafka_protocol::messages::SaslHandshakeResponse;
    let range = api_key.valid_versions();
    if version < range.min || version > range.max {
        return Err(ConnError::Unsupported(format!("{api_key:?} v{version}")));
    }
    let header = decode_header(frame, api_key, version)?;
    let c = header.correlation_id;
    let code = kafka_protocol::ResponseError::UnsupportedVersion.code();
    let out = match api_key {
        ApiKey::SaslHandshake => respond(
            api_key,
            version,
            c,
            &SaslHandshakeResponse::default().with_error_code(code),
        )?,
        other => {
            return Err(ConnError::Unsupported(format!(
                "{other:?} v{version} is not implemented"
            )))
        }
    };
    Ok(Some(out))
}

/// Hostile input: every request type and version the broker serves decodes
/// arbitrary bytes, and bodies declaring huge array counts, to an error or
/// a value, never a panic (the vendored decoder caps what a count may
/// reserve by the bytes left; `tests/kafka.rs` pins that on the wire).
#[cfg(test)]
mod hostile_tests {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Decodable;
    use proptest::prelude::*;

    use super::super::api_versions::SUPPORTED_APIS;

    /// Decode `body` as `api`'s request at `version`; `false` for an API
    /// this test does not know (so a newly served API fails it).
    fn decode_as(api: ApiKey, body: &[u8], version: i16) -> bool {
        macro_rules! decode {
            ($($key:ident => $ty:ty),* $(,)?) => {
                match api {
                    $(ApiKey::$key => {
                        let mut bytes = bytes::Bytes::copy_from_slice(body);
                        let _ = <$ty as Decodable>::decode(&mut bytes, version);
                        true
                    })*
                    _ => false,
                }
            };
        }
        decode!(
            Produce => ProduceRequest,
            Fetch => FetchRequest,
            ListOffsets => ListOffsetsRequest,
            Metadata => MetadataRequest,
            ApiVersions => ApiVersionsRequest,
            CreateTopics => CreateTopicsRequest,
            DeleteTopics => DeleteTopicsRequest,
            DescribeConfigs => DescribeConfigsRequest,
            AlterConfigs => AlterConfigsRequest,
            IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
            DescribeCluster => DescribeClusterRequest,
            FindCoordinator => FindCoordinatorRequest,
            JoinGroup => JoinGroupRequest,
            SyncGroup => SyncGroupRequest,
            Heartbeat => HeartbeatRequest,
            LeaveGroup => LeaveGroupRequest,
            OffsetCommit => OffsetCommitRequest,
            OffsetFetch => OffsetFetchRequest,
            OffsetDelete => OffsetDeleteRequest,
            ListGroups => ListGroupsRequest,
            DescribeGroups => DescribeGroupsRequest,
            DeleteGroups => DeleteGroupsRequest,
            InitProducerId => InitProducerIdRequest,
            DescribeLogDirs => DescribeLogDirsRequest,
            CreatePartitions => CreatePartitionsRequest,
            DescribeProducers => DescribeProducersRequest,
            DeleteRecords => DeleteRecordsRequest,
            OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
            AddPartitionsToTxn => AddPartitionsToTxnRequest,
            AddOffsetsToTxn => AddOffsetsToTxnRequest,
            TxnOffsetCommit => TxnOffsetCommitRequest,
            EndTxn => EndTxnRequest,
            ListTransactions => ListTransactionsRequest,
            DescribeTransactions => DescribeTransactionsRequest,
            SaslHandshake => SaslHandshakeRequest,
            SaslAuthenticate => SaslAuthenticateRequest,
            AlterUserScramCredentials => AlterUserScramCredentialsRequest,
            DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
            CreateAcls => CreateAclsRequest,
            DescribeAcls => DescribeAclsRequest,
            DeleteAcls => DeleteAclsRequest,
            DescribeClientQuotas => DescribeClientQuotasRequest,
            AlterClientQuotas => AlterClientQuotasRequest,
        )
    }

    fn decode_every_request(body: &[u8]) {
        for &(api, min, max) in SUPPORTED_APIS {
            for version in min..=max {
                assert!(
                    decode_as(api, body, version),
                    "{api:?} is served but not fuzzed here"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic_a_request_decoder(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            decode_every_request(&body);
        }
    }

    #[test]
    fn huge_declared_counts_never_panic_a_request_decoder() {
        // Every field read as a count or a length says i32::MAX (or, as a
        // compact varint, close to u32::MAX).
        for body in [[0x7fu8, 0xff, 0xff, 0xff].repeat(16), vec![0xff; 64]] {
            decode_every_request(&body);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// A decoded header keeps no reference into the frame: the rest of
    /// the frame (a Produce body) can then be made writable in place.
    /// With the client id left as a slice of the frame, every Produce
    /// copied its records once more.
    #[test]
    fn decoded_header_leaves_the_frame_unshared() {
        for version in [3i16, 9] {
            let header_version = ApiKey::Produce.request_header_version(version);
            let mut header = RequestHeader::default()
                .with_request_api_key(ApiKey::Produce as i16)
                .with_request_api_version(version)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("rdkafka")));
            if header_version >= 2 {
                header = header.with_unknown_tagged_field(99, Bytes::from_static(b"tag"));
            }
            let mut framed = BytesMut::new();
            header.encode(&mut framed, header_version).unwrap();
            framed.put_slice(&[5u8; 64]);
            // As the connection reads it: one buffer, frozen, unshared.
            let mut frame = framed.freeze();
            let decoded = super::decode_header(&mut frame, ApiKey::Produce, version).unwrap();
            assert_eq!(decoded.client_id.as_deref(), Some("rdkafka"));
            assert_eq!(decoded.correlation_id, 7);
            let at = frame.as_ptr();
            let body = frame
                .try_into_mut()
                .unwrap_or_else(|_| panic!("v{version}: the header holds the frame"));
            assert_eq!(body.as_ptr(), at);
            assert_eq!(&body[..], &[5u8; 64][..]);
            drop(decoded);
        }
    }
}

#[cfg(test)]
mod write_tests {
    use tokio::io::AsyncReadExt;

    /// Small frames (copied behind their prefix) and large ones (written
    /// in slices) arrive as the size prefix and exactly their bytes.
    #[tokio::test]
    async fn frames_of_every_size_arrive_whole() {
        let sizes = [0, 1, super::COPY_FRAME_BYTES, super::COPY_FRAME_BYTES + 1];
        let large = 2 * super::WRITE_SLICE_BYTES + 12345;
        for len in sizes.into_iter().chain([large]) {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (mut a, mut b) = tokio::io::duplex(64 << 10);
            let reader = tokio::spawn(async move {
                let mut out = Vec::new();
                b.read_to_end(&mut out).await.unwrap();
                out
            });
            super::write_frame(&mut a, &bytes).await.unwrap();
            drop(a);
            let got = reader.await.unwrap();
            assert_eq!(&got[..4], &(len as i32).to_be_bytes(), "{len} bytes");
            assert!(got[4..] == bytes[..], "{len} bytes: the body differs");
        }
    }
}
