//! Metadata (with topic auto-creation) and DescribeCluster.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::logging::escape;
use super::{errors, Ctx, NODE_ID};
use crate::config::{is_internal_topic, validate_topic_name};
use crate::{ErrorKind, TopicInfo};

/// `topic_authorized_operations` when they were not asked for.
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's AclOperation codes allowed on a topic: READ, WRITE, CREATE,
/// DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS. tierlog has no
/// ACLs yet, so a client may do all of them (Kafka's answer without an
/// authorizer: every operation the resource supports).
const TOPIC_OPERATIONS: &[u8] = &[3, 4, 5, 6, 7, 8, 10, 11];

/// On the cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
const CLUSTER_OPERATIONS: &[u8] = &[5, 7, 8, 9, 10, 11, 12];

/// The authorized-operations field: a bit per allowed operation when the
/// client asked, else Kafka's "omitted" value.
fn operations(asked: bool, ops: &[u8]) -> i32 {
    if asked {
        ops.iter().fold(0, |bits, &op| bits | 1 << op)
    } else {
        OPERATIONS_OMITTED
    }
}

fn topic_entry(info: &TopicInfo, ask_ops: bool) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(info.name.clone()))))
        .with_topic_id(info.id)
        .with_is_internal(is_internal_topic(&info.name))
        .with_topic_authorized_operations(operations(ask_ops, TOPIC_OPERATIONS))
        .with_partitions(
            (0..info.partitions as i32)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(NODE_ID.into())
                        // The only epoch (clients validate positions
                        // against it with OffsetForLeaderEpoch).
                        .with_leader_epoch(super::leader_epochs::LEADER_EPOCH)
                        .with_replica_nodes(vec![NODE_ID.into()])
                        .with_isr_nodes(vec![NODE_ID.into()])
                })
                .collect(),
        )
}

fn error_entry(name: Option<String>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(id)
        .with_error_code(code)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}

pub async fn metadata(ctx: &Arc<Ctx>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let settings = ctx.settings.clone();
    // v0 sends an empty list for "all topics"; v1+ sends null.
    let requested: Option<Vec<(Option<String>, uuid::Uuid)>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
    };
    let ask_topic_ops = req.include_topic_authorized_operations;
    // v8–v10 only; later clients use DescribeCluster.
    let ask_cluster_ops = req.include_cluster_authorized_operations;
    // Before v4 there is no flag and creation is implied.
    let allow_create =
        settings.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let num_partitions = settings.num_partitions;
    let topics = ctx
        .blocking(move |engine| match requested {
            None => engine.topics().iter().map(|i| topic_entry(i, ask_topic_ops)).collect::<Vec<_>>(),
            Some(list) => list
                .into_iter()
                .map(|(name, id)| {
                    let Some(name) = name else {
                        return match engine.topic_by_id(id) {
                            Ok(info) => topic_entry(&info, ask_topic_ops),
                            Err(_) => error_entry(None, id, ResponseError::UnknownTopicId.code()),
                        };
                    };
                    match engine.topic(&name) {
                        Ok(info) => topic_entry(&info, ask_topic_ops),
                        Err(_) if validate_topic_name(&name).is_err() => {
                            error_entry(Some(name), id, ResponseError::InvalidTopicException.code())
                        }
                        Err(_) if allow_create && !is_internal_topic(&name) => {
                            match engine.create_topic(&name, num_partitions, &Default::default()) {
                                Ok(info) => {
                                    tracing::info!(topic = %escape(&name), partitions = num_partitions, "auto-created topic");
                                    topic_entry(&info, ask_topic_ops)
                                }
                                // Created concurrently by another request.
                                Err(e) if e.kind() == ErrorKind::AlreadyExists => engine
                                    .topic(&name)
                                    .map(|i| topic_entry(&i, ask_topic_ops))
                                    .unwrap_or_else(|e| error_entry(Some(name.clone()), id, errors::code(&e))),
                                Err(e) => error_entry(Some(name), id, errors::code(&e)),
                            }
                        }
                        Err(_) => error_entry(Some(name), id, ResponseError::UnknownTopicOrPartition.code()),
                    }
                })
                .collect(),
        })
        .await
        .unwrap_or_default();
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(NODE_ID.into())
            .with_host(StrBytes::from_string(settings.advertised_host.clone()))
            .with_port(settings.advertised_port)])
        .with_cluster_id(Some(StrBytes::from_string(
            ctx.engine.cluster_id().to_string(),
        )))
        .with_controller_id(NODE_ID.into())
        .with_cluster_authorized_operations(operations(ask_cluster_ops, CLUSTER_OPERATIONS))
        .with_topics(topics)
}

pub fn describe_cluster(ctx: &Arc<Ctx>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(ctx.engine.cluster_id().to_string()))
        .with_controller_id(NODE_ID.into())
        .with_endpoint_type(1)
        .with_cluster_authorized_operations(operations(
            req.include_cluster_authorized_operations,
            CLUSTER_OPERATIONS,
        ))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(NODE_ID.into())
            .with_host(StrBytes::from_string(ctx.settings.advertised_host.clone()))
            .with_port(ctx.settings.advertised_port)])
}
