//! Per-request limits: how much work and how large an answer one request
//! may ask for.
//!
//! Owns: [`MAX_REQUEST_ENTRIES`], [`MAX_REQUEST_TOTAL_ENTRIES`] and the
//! bounded answer to a request over either. Two checks, both before any
//! work:
//!
//! - **Leading array, on the raw frame** (DescribeGroups, DeleteGroups,
//!   FindCoordinator v4+, Metadata, CreateTopics, DeleteTopics,
//!   DescribeConfigs): the count is read before the body is decoded and the
//!   request refused over [`MAX_REQUEST_ENTRIES`]. Decoding a 10 MB
//!   DescribeGroups of empty group ids made ten million strings, and
//!   answering it made ten million entries (gigabytes of memory and a
//!   120 MB response).
//! - **All arrays together, while decoding** (every request;
//!   `codec::decode`): nested arrays (Produce, Fetch, ListOffsets and
//!   OffsetForLeaderEpoch topics → partitions, OffsetCommit/OffsetFetch/OffsetDelete, OffsetFetch
//!   v8+ groups → topics → partitions, LeaveGroup members,
//!   (Incremental)AlterConfigs resources → configs) would need a schema
//!   walker per version to count on the raw frame. Instead the decoder
//!   itself counts (kafka-protocol's element budget, a tierlog patch in
//!   `vendor/kafka-protocol`): it takes one of
//!   [`MAX_REQUEST_TOTAL_ENTRIES`] before decoding each array element, at
//!   every level, reserves no capacity beyond what is left, and stops at
//!   the first element over it.
//!
//! Why memory stays bounded: a decoded request holds at most
//! [`MAX_REQUEST_TOTAL_ENTRIES`] elements (each a struct of at most a few
//! hundred bytes; strings and record bytes are slices of the frame, not
//! copies), so a few tens of MB whatever the frame says; and the frame
//! bytes themselves are bounded per frame by `socket.request.max.bytes`
//! and across connections by `queued.max.request.bytes` (budget.rs), held
//! until the response is written. A decoded element is larger than the
//! bytes it took on the wire (up to about 30 times for a struct of empty
//! strings), so the budget bounds decoded memory to a multiple of itself,
//! not to itself; `tests/hostile.rs` measures the broker's peak RSS under
//! the hostile campaign.
//!
//! A request over a limit gets a bounded answer (one entry, or the
//! top-level error code where the response has one: INVALID_REQUEST —
//! Kafka's code for a request it refuses whole) and no work is done for it;
//! the connection stays open. An API without such an answer here has its
//! connection closed instead (a malformed request). Must never decode or
//! allocate per declared entry on the raw check: a count is read, compared
//! and forgotten.
//!
//! Under the limits, handlers answer a name given twice once (duplicates
//! collapsed) and refuse an empty group id without work (INVALID_GROUP_ID).

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::codec;
use super::ConnError;

/// Most entries one request may carry in its leading array: group ids
/// (DescribeGroups, DeleteGroups), coordinator keys (FindCoordinator v4+),
/// topics (Metadata, CreateTopics, DeleteTopics), config resources
/// (DescribeConfigs). Kafka has no such limit; ten thousand is far above
/// what an admin client batches for one broker.
pub const MAX_REQUEST_ENTRIES: usize = 10_000;

/// Most array entries one request may carry in all its arrays together, at
/// every nesting level (topics and their partitions, groups → topics →
/// partitions, resources and their configs, members), counted while
/// decoding. As many as `max.partitions`' default: a request naming every
/// partition a broker may hold, once, fits. Kafka has no such limit.
pub const MAX_REQUEST_TOTAL_ENTRIES: usize = 100_000;

/// Which limit a request is over.
#[derive(Debug, Clone, Copy)]
pub enum Over {
    /// Its leading array has this many entries, over [`MAX_REQUEST_ENTRIES`].
    Leading(usize),
    /// Its arrays together hold more than [`MAX_REQUEST_TOTAL_ENTRIES`].
    Total,
}

/// The leading array's entry count of a request body (`body`: the frame
/// after its header), for the APIs [`MAX_REQUEST_ENTRIES`] covers; `None`
/// for other APIs, a null array, or a count the body cannot hold (every
/// entry takes at least one byte): such a request is malformed, and the
/// decoder refuses it (the connection closes).
pub fn leading_entries(api: ApiKey, version: i16, body: &[u8]) -> Option<usize> {
    let mut rest = 0;
    let n = declared_entries(api, version, body, &mut rest)?;
    (n <= rest).then_some(n)
}

fn declared_entries(api: ApiKey, version: i16, body: &[u8], rest: &mut usize) -> Option<usize> {
    let flexible = api.request_header_version(version) >= 2;
    let skip = match api {
        ApiKey::DescribeGroups | ApiKey::DeleteGroups => 0,
        ApiKey::Metadata | ApiKey::CreateTopics | ApiKey::DeleteTopics => 0,
        ApiKey::DescribeConfigs => 0,
        // v4+: key_type (int8), then coordinator_keys. Before v4 one key.
        ApiKey::FindCoordinator if version >= 4 => 1,
        _ => return None,
    };
    let mut buf = body.get(skip..)?;
    if flexible {
        // Compact array: unsigned varint of count + 1 (0: null).
        let mut n: u64 = 0;
        for shift in (0..35).step_by(7) {
            if !buf.has_remaining() {
                return None;
            }
            let b = buf.get_u8();
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                *rest = buf.remaining();
                return usize::try_from(n.checked_sub(1)?).ok();
            }
        }
        None
    } else {
        if buf.remaining() < 4 {
            return None;
        }
        let n = buf.get_i32();
        *rest = buf.remaining();
        usize::try_from(n).ok()
    }
}

/// The answer to a request over a limit: INVALID_REQUEST as the response's
/// top-level error code, or in one entry where it has none (and a message
/// where the response has one). `None` for an API without such an answer.
pub fn over_limit_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    over: Over,
) -> Option<Result<BytesMut, ConnError>> {
    let code = ResponseError::InvalidRequest.code();
    let text = match over {
        Over::Leading(entries) => {
            format!("{entries} entries in one {api:?} request; the limit is {MAX_REQUEST_ENTRIES}")
        }
        Over::Total => format!(
            "more than {MAX_REQUEST_TOTAL_ENTRIES} array entries (all levels together) in one \
             {api:?} request"
        ),
    };
    let message = || Some(StrBytes::from_string(text.clone()));
    let empty = || StrBytes::from_static_str("");
    let c = correlation_id;
    Some(match api {
        ApiKey::DescribeGroups => codec::respond(
            api,
            version,
            c,
            &DescribeGroupsResponse::default().with_groups(vec![
                describe_groups_response::DescribedGroup::default()
                    .with_error_code(code)
                    .with_group_state(StrBytes::from_static_str("Dead")),
            ]),
        ),
        ApiKey::DeleteGroups => codec::respond(
            api,
            version,
            c,
            &DeleteGroupsResponse::default().with_results(vec![
                delete_groups_response::DeletableGroupResult::default().with_error_code(code),
            ]),
        ),
        ApiKey::FindCoordinator => codec::respond(
            api,
            version,
            c,
            &FindCoordinatorResponse::default().with_coordinators(vec![
                find_coordinator_response::Coordinator::default()
                    .with_node_id((-1).into())
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(message()),
            ]),
        ),
        ApiKey::Metadata => codec::respond(
            api,
            version,
            c,
            &MetadataResponse::default().with_topics(vec![
                metadata_response::MetadataResponseTopic::default()
                    .with_name(Some(TopicName(empty())))
                    .with_error_code(code)
                    .with_topic_authorized_operations(i32::MIN),
            ]),
        ),
        ApiKey::CreateTopics => codec::respond(
            api,
            version,
            c,
            &CreateTopicsResponse::default().with_topics(vec![
                create_topics_response::CreatableTopicResult::default()
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_error_code(code)
                    .with_error_message(message()),
            ]),
        ),
        ApiKey::DeleteTopics => codec::respond(
            api,
            version,
            c,
            &DeleteTopicsResponse::default().with_responses(vec![
                delete_topics_response::DeletableTopicResult::default()
                    .with_name(Some(TopicName(empty())))
                    .with_error_code(code)
                    .with_error_message(message()),
            ]),
        ),
        ApiKey::DescribeConfigs => codec::respond(
            api,
            version,
            c,
            &DescribeConfigsResponse::default().with_results(vec![
                describe_configs_response::DescribeConfigsResult::default()
                    .with_error_code(code)
                    .with_error_message(message())
                    .with_resource_type(2),
            ]),
        ),
        ApiKey::Produce => codec::respond(
            api,
            version,
            c,
            &ProduceResponse::default().with_responses(vec![
                produce_response::TopicProduceResponse::default().with_partition_responses(vec![
                    produce_response::PartitionProduceResponse::default()
                        .with_index(-1)
                        .with_error_code(code)
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1)
                        .with_error_message(if version >= 8 { message() } else { None }),
                ]),
            ]),
        ),
        ApiKey::Fetch if version >= 7 => codec::respond(
            api,
            version,
            c,
            &FetchResponse::default().with_error_code(code),
        ),
        ApiKey::Fetch => codec::respond(
            api,
            version,
            c,
            &FetchResponse::default().with_responses(vec![
                fetch_response::FetchableTopicResponse::default().with_partitions(vec![
                    fetch_response::PartitionData::default()
                        .with_partition_index(-1)
                        .with_error_code(code)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1),
                ]),
            ]),
        ),
        ApiKey::ListOffsets => codec::respond(
            api,
            version,
            c,
            &ListOffsetsResponse::default().with_topics(vec![
                list_offsets_response::ListOffsetsTopicResponse::default().with_partitions(vec![
                    list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(-1)
                        .with_error_code(code)
                        .with_timestamp(-1)
                        .with_offset(-1),
                ]),
            ]),
        ),
        ApiKey::OffsetForLeaderEpoch => codec::respond(
            api,
            version,
            c,
            &OffsetForLeaderEpochResponse::default().with_topics(vec![
                offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                    .with_partitions(vec![
                        offset_for_leader_epoch_response::EpochEndOffset::default()
                            .with_partition(-1)
                            .with_error_code(code)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    ]),
            ]),
        ),
        ApiKey::OffsetCommit => codec::respond(
            api,
            version,
            c,
            &OffsetCommitResponse::default().with_topics(vec![
                offset_commit_response::OffsetCommitResponseTopic::default().with_partitions(vec![
                    offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(-1)
                        .with_error_code(code),
                ]),
            ]),
        ),
        ApiKey::OffsetFetch if version >= 8 => codec::respond(
            api,
            version,
            c,
            &OffsetFetchResponse::default().with_groups(vec![
                offset_fetch_response::OffsetFetchResponseGroup::default().with_error_code(code),
            ]),
        ),
        ApiKey::OffsetFetch if version >= 2 => codec::respond(
            api,
            version,
            c,
            &OffsetFetchResponse::default().with_error_code(code),
        ),
        ApiKey::OffsetFetch => codec::respond(
            api,
            version,
            c,
            &OffsetFetchResponse::default().with_topics(vec![
                offset_fetch_response::OffsetFetchResponseTopic::default().with_partitions(vec![
                    offset_fetch_response::OffsetFetchResponsePartition::default()
                        .with_partition_index(-1)
                        .with_committed_offset(-1)
                        .with_error_code(code),
                ]),
            ]),
        ),
        ApiKey::OffsetDelete => codec::respond(
            api,
            version,
            c,
            &OffsetDeleteResponse::default().with_error_code(code),
        ),
        ApiKey::LeaveGroup => codec::respond(
            api,
            version,
            c,
            &LeaveGroupResponse::default().with_error_code(code),
        ),
        ApiKey::JoinGroup => codec::respond(
            api,
            version,
            c,
            &JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_protocol_name(Some(empty())),
        ),
        ApiKey::SyncGroup => codec::respond(
            api,
            version,
            c,
            &SyncGroupResponse::default().with_error_code(code),
        ),
        ApiKey::IncrementalAlterConfigs => codec::respond(
            api,
            version,
            c,
            &IncrementalAlterConfigsResponse::default().with_responses(vec![
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(message())
                    .with_resource_type(2),
            ]),
        ),
        ApiKey::AlterConfigs => codec::respond(
            api,
            version,
            c,
            &AlterConfigsResponse::default().with_responses(vec![
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(message())
                    .with_resource_type(2),
            ]),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    fn body<T: Encodable>(req: &T, version: i16) -> BytesMut {
        let mut out = BytesMut::new();
        req.encode(&mut out, version).unwrap();
        out
    }

    #[test]
    fn the_leading_count_is_read_without_decoding_for_each_covered_api() {
        let ids = |n: usize| {
            (0..n)
                .map(|i| GroupId(StrBytes::from_string(i.to_string())))
                .collect::<Vec<_>>()
        };
        for v in [0, 4, 5] {
            let b = body(&DescribeGroupsRequest::default().with_groups(ids(300)), v);
            assert_eq!(
                leading_entries(ApiKey::DescribeGroups, v, &b),
                Some(300),
                "v{v}"
            );
        }
        for v in [0, 2] {
            let b = body(&DeleteGroupsRequest::default().with_groups_names(ids(7)), v);
            assert_eq!(
                leading_entries(ApiKey::DeleteGroups, v, &b),
                Some(7),
                "v{v}"
            );
        }
        let keys = (0..129)
            .map(|i| StrBytes::from_string(i.to_string()))
            .collect();
        let b = body(
            &FindCoordinatorRequest::default().with_coordinator_keys(keys),
            4,
        );
        assert_eq!(leading_entries(ApiKey::FindCoordinator, 4, &b), Some(129));
        let b = body(
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
            3,
        );
        assert_eq!(
            leading_entries(ApiKey::FindCoordinator, 3, &b),
            None,
            "one key before v4"
        );
        for v in [1, 9, 12] {
            let all = body(&MetadataRequest::default().with_topics(None), v);
            assert_eq!(
                leading_entries(ApiKey::Metadata, v, &all),
                None,
                "null: all topics"
            );
            let topics = vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("t"))));
                3
            ];
            let b = body(&MetadataRequest::default().with_topics(Some(topics)), v);
            assert_eq!(leading_entries(ApiKey::Metadata, v, &b), Some(3), "v{v}");
        }
        // A count the body cannot hold is the decoder's to refuse; a
        // truncated varint says nothing.
        assert_eq!(
            leading_entries(ApiKey::DeleteGroups, 1, &0x7fff_fff0i32.to_be_bytes()),
            None
        );
        let mut b = 3i32.to_be_bytes().to_vec();
        b.extend_from_slice(&[0, 0, 0]);
        assert_eq!(leading_entries(ApiKey::DeleteGroups, 1, &b), Some(3));
        assert_eq!(
            leading_entries(ApiKey::DeleteGroups, 2, &[0xff, 0xff]),
            None
        );
        assert_eq!(leading_entries(ApiKey::Produce, 9, &[0, 0, 0, 1]), None);
    }

    #[test]
    fn nested_arrays_are_decoded_up_to_the_total_and_no_further() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let produce = |partitions: usize| {
            ProduceRequest::default().with_topic_data(vec![TopicProduceData::default()
                .with_partition_data(vec![PartitionProduceData::default(); partitions])])
        };
        for v in [3, 9] {
            // One topic and its partitions: the topic counts too.
            let mut at = body(&produce(MAX_REQUEST_TOTAL_ENTRIES - 1), v).freeze();
            let req: ProduceRequest = codec::decode(&mut at, v).expect("at the limit");
            assert_eq!(
                req.topic_data[0].partition_data.len(),
                MAX_REQUEST_TOTAL_ENTRIES - 1
            );
            let mut over = body(&produce(MAX_REQUEST_TOTAL_ENTRIES), v).freeze();
            let refused = codec::decode::<ProduceRequest>(&mut over, v);
            assert!(matches!(refused, Err(ConnError::OverEntryLimit)), "v{v}");
        }
        // A count the frame cannot hold is still malformed, not over.
        let mut short = bytes::Bytes::from_static(&[0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
        let refused = codec::decode::<LeaveGroupRequest>(&mut short, 3);
        assert!(matches!(refused, Err(ConnError::Malformed(_))));
    }

    #[test]
    fn every_covered_api_has_a_one_entry_answer() {
        for (api, version) in [
            (ApiKey::DescribeGroups, 5),
            (ApiKey::DeleteGroups, 2),
            (ApiKey::FindCoordinator, 4),
            (ApiKey::Metadata, 12),
            (ApiKey::CreateTopics, 7),
            (ApiKey::DeleteTopics, 6),
            (ApiKey::DescribeConfigs, 4),
        ] {
            let out = over_limit_response(api, version, 7, Over::Leading(1_000_000))
                .expect("an answer")
                .expect("encodes");
            assert!(out.len() < 200, "{api:?}: {} bytes", out.len());
        }
        // Over the total: every version the broker serves of every API with
        // nested arrays encodes its answer.
        let nested = [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::ListOffsets,
            ApiKey::OffsetForLeaderEpoch,
            ApiKey::OffsetCommit,
            ApiKey::OffsetFetch,
            ApiKey::OffsetDelete,
            ApiKey::LeaveGroup,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::IncrementalAlterConfigs,
            ApiKey::AlterConfigs,
            ApiKey::CreateTopics,
            ApiKey::DescribeConfigs,
        ];
        for api in nested {
            let &(_, min, max) = crate::broker::SUPPORTED_APIS
                .iter()
                .find(|(k, _, _)| *k == api)
                .expect("served");
            for version in min..=max {
                let out = over_limit_response(api, version, 7, Over::Total)
                    .expect("an answer")
                    .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
                assert!(out.len() < 300, "{api:?} v{version}: {} bytes", out.len());
            }
        }
    }
}
