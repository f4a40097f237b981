//! Produce: validate and append each partition's batches, per-partition
//! errors. acks 0, 1 and -1 all append before answering (one replica:
//! "all" is this broker); other acks get INVALID_REQUIRED_ACKS. acks=0
//! gets no response at all, and when it failed the connection is closed
//! (Kafka's way of making the client refresh its metadata).
//! Transactional batches are checked against the transaction coordinator:
//! without a transactional id TRANSACTIONAL_ID_AUTHORIZATION_FAILED, to a
//! partition not added to the open transaction INVALID_TXN_STATE, from a
//! fenced epoch INVALID_PRODUCER_EPOCH.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::logging::escape;
use super::{errors, Ctx};
use crate::security::acl::{AclOperation, ResourceType};

/// Produce needs Write on each topic (Kafka 3.x: idempotent producers need
/// nothing more, KIP-679); a topic without it gets
/// TOPIC_AUTHORIZATION_FAILED for each partition, the others are appended.
pub async fn produce(ctx: &Arc<Ctx>, auth: &Authz, req: ProduceRequest) -> ProduceResponse {
    if !matches!(req.acks, -1..=1) {
        // Kafka's answer: nothing is appended.
        return refuse_all(
            req,
            ResponseError::InvalidRequiredAcks,
            "acks must be -1 (all), 0 or 1",
        );
    }
    // A transactional produce holds the transaction lock for reading, so
    // no batch of a transaction lands after the marker that ended it.
    let transactional_id = req
        .transactional_id
        .as_ref()
        .filter(|t| !t.0.is_empty())
        .map(|t| t.0.to_string());
    let _txn_guard = match transactional_id {
        Some(_) => Some(ctx.txn_lock.read().await),
        None => None,
    };
    let txns = Arc::clone(&ctx.txns);
    let topics = req.topic_data;
    let acks = req.acks;
    let auth = auth.clone();
    let result = ctx
        .blocking(move |engine| {
            topics
                .into_iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let allowed = auth.topic(AclOperation::Write, &name);
                    // A transactional produce also needs Write on its
                    // transactional id (every partition refused otherwise).
                    let txn_allowed = transactional_id.as_ref().is_none_or(|id| {
                        auth.allows(AclOperation::Write, ResourceType::TransactionalId, id)
                    });

                    let partitions = t
                        .partition_data
                        .into_iter()
                        .map(|p| {
                            let mut resp = PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1);
                            if !txn_allowed {
                                return resp.with_error_code(
                                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                                );
                            }
                            if !allowed {
                                return resp.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                            }
                            if p.index < 0 {
                                return resp.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                            }
                            let Some(records) = p.records else {
                                return resp.with_error_code(ResponseError::InvalidRequest.code());
                            };
                            // One broker is one in-sync replica: acks=all
                            // cannot meet a min.insync.replicas above 1
                            // (Kafka refuses such a produce before appending).
                            let min_insync = if acks == -1 {
                                engine
                                    .with_log(&name, p.index as u32, |log| Ok(log.config().min_insync_replicas))
                                    .unwrap_or(1)
                            } else {
                                1
                            };
                            if min_insync > 1 {
                                return resp
                                    .with_error_code(ResponseError::NotEnoughReplicas.code())
                                    .with_error_message(Some(StrBytes::from_string(format!(
                                        "min.insync.replicas is {min_insync} and tierlog is one broker: acks=all cannot be met"
                                    ))));
                            }
                            // Transactional batches: only from a transactional
                            // producer, and only to a partition added to its
                            // open transaction (KIP-890's verification).
                            if let Ok(h) = crate::format::BatchHeader::parse(&records) {
                                // (Without a producer id the validator refuses it:
                                // INVALID_RECORD.)
                                if h.is_transactional() && !h.is_control() && h.producer_id >= 0 {
                                    let checked = match &transactional_id {
                                        None => Err((
                                            ResponseError::TransactionalIdAuthorizationFailed.code(),
                                            "transactional batches need a transactional id".to_string(),
                                        )),
                                        Some(id) => txns
                                            .check_produce(id, h.producer_id, h.producer_epoch, &name, p.index)
                                            .map_err(|e| (errors::txn_code(&e), e.to_string())),
                                    };
                                    if let Err((code, message)) = checked {
                                        return resp
                                            .with_error_code(code)
                                            .with_error_message(Some(StrBytes::from_string(message)));
                                    }
                                }
                            }
                            // Offsets are assigned in place, so the bytes are copied once.
                            let mut bytes = records.to_vec();
                            match engine.append(&name, p.index as u32, &mut bytes) {
                                Ok(info) => {
                                    resp.base_offset = info.base_offset;
                                    resp.log_append_time_ms = info.log_append_time.unwrap_or(-1);
                                    if let Ok(o) = engine.offsets(&name, p.index as u32) {
                                        resp.log_start_offset = o.log_start_offset;
                                    }
                                    resp
                                }
                                Err(e) => {
                                    tracing::debug!(topic = %escape(&name), partition = p.index, error = %escape(&e.to_string()), "produce rejected");
                                    resp.error_code = errors::code(&e);
                                    resp.error_message = Some(StrBytes::from_string(e.to_string()));
                                    resp.record_errors = e
                                        .record_errors()
                                        .iter()
                                        .map(|&i| BatchIndexAndErrorMessage::default().with_batch_index(i))
                                        .collect();
                                    resp
                                }
                            }
                        })
                        .collect();
                    TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_partition_responses(partitions)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    ProduceResponse::default().with_responses(result)
}

/// The same error for every partition of the request; nothing appended.
fn refuse_all(req: ProduceRequest, error: ResponseError, message: &'static str) -> ProduceResponse {
    ProduceResponse::default().with_responses(
        req.topic_data
            .into_iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name)
                    .with_topic_id(t.topic_id)
                    .with_partition_responses(
                        t.partition_data
                            .into_iter()
                            .map(|p| {
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_base_offset(-1)
                                    .with_log_append_time_ms(-1)
                                    .with_log_start_offset(-1)
                                    .with_error_code(error.code())
                                    .with_error_message(Some(StrBytes::from_static_str(message)))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The first partition error of a produce response, if any.
pub fn first_error(resp: &ProduceResponse) -> Option<i16> {
    resp.responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .map(|p| p.error_code)
        .find(|&c| c != 0)
}
