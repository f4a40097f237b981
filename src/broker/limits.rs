//! Per-request limits: how much work and how large an answer one request
//! may ask for.
//!
//! Owns: [`MAX_REQUEST_ENTRIES`] and the check of a request's leading
//! array count *on the raw frame*, before the body is decoded: decoding a
//! 10 MB DescribeGroups of empty group ids makes ten million strings, and
//! answering it made ten million entries (gigabytes of memory and a
//! 120 MB response). A request over the limit gets a bounded answer (one
//! entry, INVALID_REQUEST — Kafka's code for a request it refuses whole)
//! and no work is done for it. Must never decode or allocate per declared
//! entry: a count is read, compared and forgotten.
//!
//! Under the limit, handlers answer a name given twice once (duplicates
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

/// The answer to a request whose leading array has `entries` entries, over
/// [`MAX_REQUEST_ENTRIES`]: one entry with INVALID_REQUEST (and a message
/// where the response has one). `None` for an API without such an answer.
pub fn over_limit_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    entries: usize,
) -> Option<Result<BytesMut, ConnError>> {
    let code = ResponseError::InvalidRequest.code();
    let message = || {
        Some(StrBytes::from_string(format!(
            "{entries} entries in one {api:?} request; the limit is {MAX_REQUEST_ENTRIES}"
        )))
    };
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
            let out = over_limit_response(api, version, 7, 1_000_000)
                .expect("an answer")
                .expect("encodes");
            assert!(out.len() < 200, "{api:?}: {} bytes", out.len());
        }
    }
}
