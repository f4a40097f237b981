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

use super::authz::Authz;
use super::logging::escape;
use super::{errors, Ctx, NODE_ID};
use crate::config::{is_internal_topic, validate_topic_name};
use crate::security::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use crate::{ErrorKind, TopicInfo};

/// `topic_authorized_operations` when they were not asked for.
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// The authorized-operations field: the bits `auth` allows on the
/// resource when the client asked, else Kafka's "omitted" value.
/// Without Describe on the resource, none (Kafka's answer).
fn operations(asked: bool, auth: &Authz, rt: ResourceType, name: &str) -> i32 {
    if asked {
        if auth.allows(AclOperation::Describe, rt, name) {
            auth.operations(rt, name)
        } else {
            0
        }
    } else {
        OPERATIONS_OMITTED
    }
}

fn topic_entry(info: &TopicInfo, ask_ops: bool, auth: &Authz) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(info.name.clone()))))
        .with_topic_id(info.id)
        .with_is_internal(is_internal_topic(&info.name))
        .with_topic_authorized_operations(operations(
            ask_ops,
            auth,
            ResourceType::Topic,
            &info.name,
        ))
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

/// Topics the principal may Describe: all of them when listing every
/// topic (the others are left out), TOPIC_AUTHORIZATION_FAILED for one
/// named without it; auto-creation needs Create on the cluster or the
/// topic (else UNKNOWN_TOPIC_OR_PARTITION), as in Kafka.
pub async fn metadata(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
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
    let auth = auth.clone();
    let cluster_ops = operations(ask_cluster_ops, &auth, ResourceType::Cluster, CLUSTER_NAME);
    let topics = ctx
        .blocking(move |engine| match requested {
            None => engine
                .topics()
                .iter()
                .filter(|i| auth.topic(AclOperation::Describe, &i.name))
                .map(|i| topic_entry(i, ask_topic_ops, &auth))
                .collect::<Vec<_>>(),
            Some(list) => list
                .into_iter()
                .map(|(name, id)| {
                    let Some(name) = name else {
                        return match engine.topic_by_id(id) {
                            Ok(info) if auth.topic(AclOperation::Describe, &info.name) => {
                                topic_entry(&info, ask_topic_ops, &auth)
                            }
                            // Unauthorized ids are answered as unknown, so
                            // ids do not reveal names.
                            _ => error_entry(None, id, ResponseError::UnknownTopicId.code()),
                        };
                    };
                    if !auth.topic(AclOperation::Describe, &name) {
                        return error_entry(Some(name), id, ResponseError::TopicAuthorizationFailed.code());
                    }
                    let may_create = || {
                        auth.cluster(AclOperation::Create) || auth.topic(AclOperation::Create, &name)
                    };
                    match engine.topic(&name) {
                        Ok(info) => topic_entry(&info, ask_topic_ops, &auth),
                        Err(_) if validate_topic_name(&name).is_err() => {
                            error_entry(Some(name), id, ResponseError::InvalidTopicException.code())
                        }
                        Err(_) if allow_create && !is_internal_topic(&name) && may_create() => {
                            match engine.create_topic(&name, num_partitions, &Default::default()) {
                                Ok(info) => {
                                    tracing::info!(topic = %escape(&name), partitions = num_partitions, "auto-created topic");
                                    topic_entry(&info, ask_topic_ops, &auth)
                                }
                                // Created concurrently by another request.
                                Err(e) if e.kind() == ErrorKind::AlreadyExists => engine
                                    .topic(&name)
                                    .map(|i| topic_entry(&i, ask_topic_ops, &auth))
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
        .with_cluster_authorized_operations(cluster_ops)
        .with_topics(topics)
}

/// The cluster's authorized operations are computed from the ACLs (none
/// without Describe on the cluster, as in Kafka, which answers anyone).
pub fn describe_cluster(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(ctx.engine.cluster_id().to_string()))
        .with_controller_id(NODE_ID.into())
        .with_endpoint_type(1)
        .with_cluster_authorized_operations(operations(
            req.include_cluster_authorized_operations,
            auth,
            ResourceType::Cluster,
            CLUSTER_NAME,
        ))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(NODE_ID.into())
            .with_host(StrBytes::from_string(ctx.settings.advertised_host.clone()))
            .with_port(ctx.settings.advertised_port)])
}
