//! DeleteRecords: move a partition's log start offset forward, as Kafka
//! Streams does to purge repartition topics and `kafka-delete-records`
//! does by hand. The new log start is durable before the answer; the
//! segments wholly below it leave both tiers with the next retention run
//! and remote log manager round.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::{errors, Ctx};
use crate::config::TopicConfig;
use crate::security::acl::AclOperation;

/// Needs Delete on each topic.
pub async fn delete_records(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = req.topics;
    let auth = auth.clone();
    let topics = ctx
        .blocking(move |engine| {
            topics
                .into_iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let allowed = auth.topic(AclOperation::Delete, &name);
                    // Kafka refuses it where the policy keeps records by key.
                    let deletable = engine.topic(&name).map(|info| {
                        TopicConfig::resolve(&info.overrides, engine.topic_defaults())
                            .map_or(true, |c| c.cleanup_policy.delete)
                    });
                    let partitions = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            let result = DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1);
                            let code = match &deletable {
                                _ if !allowed => ResponseError::TopicAuthorizationFailed.code(),
                                Err(e) => errors::code(e),
                                Ok(false) => ResponseError::PolicyViolation.code(),
                                Ok(true) if p.partition_index < 0 => {
                                    ResponseError::UnknownTopicOrPartition.code()
                                }
                                Ok(true) if p.offset < -1 => ResponseError::OffsetOutOfRange.code(),
                                Ok(true) => match engine.delete_records(
                                    &name,
                                    p.partition_index as u32,
                                    p.offset,
                                ) {
                                    Ok(low) => return result.with_low_watermark(low),
                                    Err(e) => errors::code(&e),
                                },
                            };
                            result.with_error_code(code)
                        })
                        .collect();
                    DeleteRecordsTopicResult::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    DeleteRecordsResponse::default().with_topics(topics)
}
