//! Leader epochs (KIP-101, KIP-320): the epoch Metadata, ListOffsets and
//! Fetch report, the check of a client's `current_leader_epoch`, and
//! OffsetForLeaderEpoch, which consumers use after a rebalance or a
//! leader change to detect log truncation before fetching from a
//! committed position.
//!
//! tierlog is the one replica of each partition and never moves its
//! leadership, so every partition has one epoch, [`LEADER_EPOCH`], which
//! starts at the partition's first offset; appends stamp it on every batch.
//! Batches written before tierlog stamped epochs keep the client's -1
//! (Kafka's "no epoch"), which clients treat as unknown.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::{errors, Ctx};
pub use crate::log::LEADER_EPOCH;
use crate::security::acl::AclOperation;

/// A request's `current_leader_epoch` checked as Kafka's leader checks it:
/// -1 asks for no check; an older epoch is FENCED_LEADER_EPOCH (the
/// client saw a leader since replaced), a newer one UNKNOWN_LEADER_EPOCH
/// (the client knows of an epoch this broker does not).
pub fn check_current(current_leader_epoch: i32) -> Result<(), ResponseError> {
    match current_leader_epoch {
        -1 => Ok(()),
        e if e < LEADER_EPOCH => Err(ResponseError::FencedLeaderEpoch),
        e if e > LEADER_EPOCH => Err(ResponseError::UnknownLeaderEpoch),
        _ => Ok(()),
    }
}

/// [`check_current`] for a partition a Fetch or ListOffsets names, in
/// Kafka's order: a partition this broker does not have is reported as
/// that by the read itself (`None` here), whatever epoch was sent; the
/// topic is looked up only when the epoch is wrong, so the common case
/// (-1 or the current epoch) costs nothing.
pub fn partition_epoch_error(
    engine: &crate::Engine,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Option<ResponseError> {
    let e = check_current(current_leader_epoch).err()?;
    let known = engine
        .topic(topic)
        .is_ok_and(|t| u32::try_from(partition).is_ok_and(|p| p < t.partitions));
    known.then_some(e)
}

/// The end offset of `requested_epoch` as Kafka's `LeaderEpochFileCache`
/// answers it, for a partition whose only epoch is [`LEADER_EPOCH`]: the
/// latest epoch ends at the log end offset; an undefined epoch (-1), or one
/// newer than any this partition had, is unknown (-1, -1).
pub fn end_offset_for(requested_epoch: i32, log_end_offset: i64) -> (i32, i64) {
    if requested_epoch == LEADER_EPOCH {
        (LEADER_EPOCH, log_end_offset)
    } else {
        // -1, or newer than the latest epoch (Kafka's "should never be
        // hit" case): undefined, so the client resets by its policy.
        (-1, -1)
    }
}

/// Needs Describe on each topic (TOPIC_AUTHORIZATION_FAILED per partition
/// otherwise), as Kafka asks of a consumer.
pub async fn offset_for_leader_epoch(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req.topics;
    let auth = auth.clone();
    let topics = ctx
        .blocking(move |engine| {
            topics
                .into_iter()
                .map(|t| {
                    let name = t.topic.0.to_string();
                    let allowed = auth.topic(AclOperation::Describe, &name);
                    let partitions = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            let resp = EpochEndOffset::default()
                                .with_partition(p.partition)
                                .with_leader_epoch(-1)
                                .with_end_offset(-1);
                            if !allowed {
                                return resp.with_error_code(
                                    ResponseError::TopicAuthorizationFailed.code(),
                                );
                            }
                            let Ok(partition) = u32::try_from(p.partition) else {
                                return resp.with_error_code(
                                    ResponseError::UnknownTopicOrPartition.code(),
                                );
                            };
                            // The partition first (as Kafka: an unknown
                            // partition is that, whatever epoch was sent).
                            let offsets = match engine.offsets(&name, partition) {
                                Ok(o) => o,
                                Err(e) => return resp.with_error_code(errors::code(&e)),
                            };
                            if let Err(e) = check_current(p.current_leader_epoch) {
                                return resp.with_error_code(e.code());
                            }
                            let (epoch, end) =
                                end_offset_for(p.leader_epoch, offsets.log_end_offset);
                            resp.with_leader_epoch(epoch).with_end_offset(end)
                        })
                        .collect();
                    OffsetForLeaderTopicResult::default()
                        .with_topic(t.topic)
                        .with_partitions(partitions)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_epoch_is_checked_as_kafka_checks_it() {
        assert_eq!(check_current(-1), Ok(()));
        assert_eq!(check_current(LEADER_EPOCH), Ok(()));
        assert_eq!(
            check_current(LEADER_EPOCH + 1),
            Err(ResponseError::UnknownLeaderEpoch)
        );
        assert_eq!(check_current(-2), Err(ResponseError::FencedLeaderEpoch));
    }

    #[test]
    fn the_only_epoch_ends_at_the_log_end_and_others_are_undefined() {
        assert_eq!(end_offset_for(LEADER_EPOCH, 42), (LEADER_EPOCH, 42));
        assert_eq!(end_offset_for(-1, 42), (-1, -1));
        assert_eq!(end_offset_for(LEADER_EPOCH + 3, 42), (-1, -1));
    }
}
