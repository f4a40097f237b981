//! ListOffsets: earliest (remote tier included), earliest local, latest,
//! latest tiered, max timestamp, and by timestamp. Latest with
//! read_committed (isolation level 1) is the last stable offset.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::log::TimestampAndOffset;

use super::authz::Authz;
use super::{errors, leader_epochs, Ctx};
use crate::security::acl::AclOperation;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// KIP-405 (v8+): the first offset on local disk.
const EARLIEST_LOCAL: i64 = -4;
/// KIP-1005 (v9+): the last offset in the remote tier (-1 if none).
const LATEST_TIERED: i64 = -5;

/// Needs Describe on each topic (TOPIC_AUTHORIZATION_FAILED per partition
/// otherwise).
pub async fn list_offsets(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let topics = req.topics;
    let auth = auth.clone();
    // The leader epoch is a v4+ field (an older response cannot carry it).
    let epoch = if version >= 4 {
        leader_epochs::LEADER_EPOCH
    } else {
        -1
    };
    let read_committed = req.isolation_level == 1;
    let out = ctx
        .blocking(move |engine| {
            topics
                .into_iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let allowed = auth.topic(AclOperation::Describe, &name);
                    let partitions = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            let resp = ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_timestamp(-1)
                                .with_offset(-1)
                                .with_leader_epoch(-1);
                            if !allowed {
                                return resp.with_error_code(
                                    ResponseError::TopicAuthorizationFailed.code(),
                                );
                            }
                            if p.partition_index < 0 {
                                return resp.with_error_code(
                                    ResponseError::UnknownTopicOrPartition.code(),
                                );
                            }
                            // An unknown partition is that whatever the
                            // epoch (the lookups below report it).
                            if let Some(e) = leader_epochs::partition_epoch_error(
                                engine,
                                &name,
                                p.partition_index,
                                p.current_leader_epoch,
                            ) {
                                return resp.with_error_code(e.code());
                            }
                            let partition = p.partition_index as u32;
                            let found = match p.timestamp {
                                LATEST if read_committed => engine
                                    .last_stable_offset(&name, partition)
                                    .map(|lso| Some(TimestampAndOffset::without_timestamp(lso))),
                                LATEST => engine.offsets(&name, partition).map(|o| {
                                    Some(TimestampAndOffset::without_timestamp(o.log_end_offset))
                                }),
                                EARLIEST => engine.offsets(&name, partition).map(|o| {
                                    Some(TimestampAndOffset::without_timestamp(o.log_start_offset))
                                }),
                                EARLIEST_LOCAL => engine.offsets(&name, partition).map(|o| {
                                    Some(TimestampAndOffset::without_timestamp(
                                        o.local_log_start_offset,
                                    ))
                                }),
                                LATEST_TIERED => engine.offsets(&name, partition).map(|o| {
                                    Some(TimestampAndOffset::without_timestamp(
                                        o.last_tiered_offset.unwrap_or(-1),
                                    ))
                                }),
                                MAX_TIMESTAMP => engine.max_timestamp_offset(&name, partition),
                                ts if ts >= 0 => engine.offset_for_timestamp(&name, partition, ts),
                                other => {
                                    return resp
                                        .with_error_code(ResponseError::InvalidRequest.code())
                                        .with_timestamp(other)
                                }
                            };
                            match found {
                                Ok(Some(found)) => resp
                                    .with_offset(found.offset)
                                    .with_timestamp(found.timestamp)
                                    .with_leader_epoch(epoch),
                                Ok(None) => resp,
                                Err(e) => resp.with_error_code(errors::code(&e)),
                            }
                        })
                        .collect();
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    ListOffsetsResponse::default().with_topics(out)
}
