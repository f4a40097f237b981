//! DescribeProducers (KIP-664): the idempotent producers each partition
//! remembers, as `kafka-transactions describe-producers` shows them, with
//! the first offset of each one's open transaction
//! (`current_txn_start_offset`, -1 when none is open; the coordinator
//! epoch is 0 for a producer in a transaction, this broker's only one).

use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
use kafka_protocol::protocol::StrBytes;

use super::authz::Authz;
use super::{errors, Ctx};
use crate::security::acl::AclOperation;

/// Needs Read on each topic (TOPIC_AUTHORIZATION_FAILED per partition).
pub async fn describe_producers(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = req.topics;
    let auth = auth.clone();
    let topics = ctx
        .blocking(move |engine| {
            topics
                .into_iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let allowed = auth.topic(AclOperation::Read, &name);
                    let partitions = t
                        .partition_indexes
                        .into_iter()
                        .map(|p| {
                            let resp = PartitionResponse::default().with_partition_index(p);
                            if !allowed {
                                return resp.with_error_code(
                                    kafka_protocol::ResponseError::TopicAuthorizationFailed.code(),
                                );
                            }
                            let producers = u32::try_from(p)
                                .map_err(|_| {
                                    crate::Error::not_found(format!("no partition {p} of '{name}'"))
                                })
                                .and_then(|p| engine.with_log(&name, p, |log| Ok(log.producers())));
                            match producers {
                                Ok(producers) => resp.with_active_producers(
                                    producers
                                        .into_iter()
                                        .map(|e| {
                                            let last = e.batches.last();
                                            ProducerState::default()
                                                .with_producer_id(e.producer_id.into())
                                                .with_producer_epoch(i32::from(e.epoch))
                                                .with_last_sequence(last.map_or(-1, |b| b.last_seq))
                                                .with_last_timestamp(if e.last_timestamp >= 0 {
                                                    e.last_timestamp
                                                } else {
                                                    last.map_or(-1, |b| b.max_timestamp)
                                                })
                                                .with_coordinator_epoch(
                                                    if e.current_txn_first_offset.is_some() {
                                                        0
                                                    } else {
                                                        -1
                                                    },
                                                )
                                                .with_current_txn_start_offset(
                                                    e.current_txn_first_offset.unwrap_or(-1),
                                                )
                                        })
                                        .collect(),
                                ),
                                Err(e) => resp
                                    .with_error_code(errors::code(&e))
                                    .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                            }
                        })
                        .collect();
                    TopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    DescribeProducersResponse::default().with_topics(topics)
}
