//! ApiVersions, and the table of what tierlog serves.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::{codec, ConnError};

/// APIs and version ranges tierlog serves. Fetch stops at v12 (v13+ name
/// topics by id only) and ListOffsets at v9 (v8: earliest local offset, v9:
/// latest tiered offset; v10 adds a timeout field), versions every current
/// client still negotiates. Group APIs stop where the classic protocol does
/// (JoinGroup v8+ add reasons, v9 skip-assignment for KIP-848 servers);
/// OffsetCommit and OffsetFetch start where `kafka-protocol` does.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    // Transactions: up to the versions before KIP-890 part 2 (server-side
    // epoch bumps per transaction); AddPartitionsToTxn v4 is the batched
    // broker form. ListTransactions v1 adds the duration filter.
    (ApiKey::AddPartitionsToTxn, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeTransactions, 0, 0),
    // SaslHandshake v0 is listed because librdkafka before 2.1 (Debian's
    // kcat) enables SASL only when the broker's range covers v0 and v1;
    // it then uses v1 like every current client. A v0 handshake itself
    // (raw SASL tokens after it) is refused (sasl.rs).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|&(k, min, max)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

/// Whether ApiVersions `version` is answered UNSUPPORTED_VERSION.
pub fn unsupported(version: i16) -> bool {
    let max = SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == ApiKey::ApiVersions)
        .map(|t| t.2)
        .unwrap_or(0);
    version > max || version < 0
}

/// Answer ApiVersions. A version newer than tierlog knows gets, as KIP-511
/// asks, a v0 response with UNSUPPORTED_VERSION and the supported ranges,
/// so the client retries with one it finds there (old librdkafka cannot
/// parse anything else).
pub fn handle(frame: &mut Bytes, version: i16) -> Result<BytesMut, ConnError> {
    if unsupported(version) {
        // The header's correlation id sits at bytes 4..8 in every version.
        let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let resp = ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys());
        return codec::respond(ApiKey::ApiVersions, 0, correlation, &resp);
    }
    let header = codec::decode_header(frame, ApiKey::ApiVersions, version)?;
    let _req: ApiVersionsRequest = codec::decode(frame, version)?;
    let resp = ApiVersionsResponse::default().with_api_keys(api_keys());
    codec::respond(ApiKey::ApiVersions, version, header.correlation_id, &resp)
}
