//! CreateTopics and DeleteTopics.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::{errors, Ctx, NODE_ID};
use crate::config::{refuse_internal_topic, validate_topic_name, TopicConfig, MAX_PARTITIONS};
use crate::security::acl::AclOperation;
use crate::ErrorKind;

fn fail(
    result: CreatableTopicResult,
    code: ResponseError,
    message: String,
) -> CreatableTopicResult {
    result
        .with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

/// Needs Create on the cluster or on the topic (TOPIC_AUTHORIZATION_FAILED
/// otherwise, as Kafka answers).
pub async fn create_topics(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let create_any = auth.cluster(AclOperation::Create);
    let auth = auth.clone();
    let default_partitions = ctx.settings.num_partitions;
    let validate_only = req.validate_only;
    // A name given twice gets INVALID_REQUEST, once, and nothing of it is
    // created (Kafka's answer); the other topics of the request go ahead.
    let mut counts: BTreeMap<TopicName, usize> = BTreeMap::new();
    for t in &req.topics {
        *counts.entry(t.name.clone()).or_default() += 1;
    }
    let mut duplicates: Vec<CreatableTopicResult> = Vec::new();
    let mut topics = Vec::new();
    for t in req.topics {
        match counts.get(&t.name) {
            Some(&n) if n > 1 => {
                if !duplicates.iter().any(|d| d.name == t.name) {
                    let message = format!(
                        "topic '{}' appears {n} times in one CreateTopics request; none of them was created",
                        t.name.0
                    );
                    duplicates.push(fail(
                        CreatableTopicResult::default()
                            .with_name(t.name)
                            .with_num_partitions(-1)
                            .with_replication_factor(-1),
                        ResponseError::InvalidRequest,
                        message,
                    ));
                }
            }
            _ => topics.push(t),
        }
    }
    let results = ctx
        .blocking(move |engine| {
            topics
                .into_iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let result = CreatableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_num_partitions(-1)
                        .with_replication_factor(-1);
                    if !create_any && !auth.topic(AclOperation::Create, &name) {
                        return fail(
                            result,
                            ResponseError::TopicAuthorizationFailed,
                            format!("{} may not Create topic '{name}'", auth.principal),
                        );
                    }
                    if let Err(e) = validate_topic_name(&name) {
                        return fail(result, ResponseError::InvalidTopicException, e.to_string());
                    }
                    if let Err(e) = refuse_internal_topic(&name) {
                        return fail(result, ResponseError::InvalidRequest, e.to_string());
                    }
                    let partitions = if !t.assignments.is_empty() {
                        if t.assignments.iter().any(|a| a.broker_ids.iter().any(|b| b.0 != NODE_ID) || a.broker_ids.is_empty()) {
                            return fail(
                                result,
                                ResponseError::InvalidReplicaAssignment,
                                format!("tierlog is one broker (id {NODE_ID}); assignments must name only it"),
                            );
                        }
                        t.assignments.len() as i64
                    } else if t.num_partitions == -1 {
                        i64::from(default_partitions)
                    } else {
                        i64::from(t.num_partitions)
                    };
                    if partitions < 1 || partitions > i64::from(MAX_PARTITIONS) {
                        return fail(
                            result,
                            ResponseError::InvalidPartitions,
                            format!("number of partitions must be between 1 and {MAX_PARTITIONS}, got {partitions}"),
                        );
                    }
                    if t.replication_factor != -1 && t.replication_factor != 1 {
                        return fail(
                            result,
                            ResponseError::InvalidReplicationFactor,
                            format!(
                                "replication factor {} is impossible: tierlog is one broker (durability comes from the remote tier)",
                                t.replication_factor
                            ),
                        );
                    }
                    let mut overrides = BTreeMap::new();
                    for c in t.configs {
                        if let Some(v) = c.value {
                            overrides.insert(c.name.to_string(), v.to_string());
                        }
                    }
                    if let Err(e) = TopicConfig::resolve(&overrides, engine.topic_defaults()) {
                        return fail(result, ResponseError::InvalidConfig, e.to_string());
                    }
                    let info = if validate_only {
                        if engine.topic(&name).is_ok() {
                            return fail(result, ResponseError::TopicAlreadyExists, format!("topic '{name}' already exists"));
                        }
                        None
                    } else {
                        match engine.create_topic(&name, partitions as u32, &overrides) {
                            Ok(info) => Some(info),
                            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                                return fail(result, ResponseError::TopicAlreadyExists, e.to_string())
                            }
                            Err(e) => {
                                return result
                                    .with_error_code(errors::code(&e))
                                    .with_error_message(Some(StrBytes::from_string(e.to_string())))
                            }
                        }
                    };
                    let effective = TopicConfig::effective(&overrides, engine.topic_defaults());
                    result
                        .with_topic_id(info.map(|i| i.id).unwrap_or_default())
                        .with_num_partitions(partitions as i32)
                        .with_replication_factor(1)
                        .with_configs(Some(
                            effective
                                .into_iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfigs::default()
                                        .with_config_source(if overrides.contains_key(&k) { 1 } else { 5 })
                                        .with_name(StrBytes::from_string(k))
                                        .with_value(Some(StrBytes::from_string(v)))
                                })
                                .collect(),
                        ))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    CreateTopicsResponse::default().with_topics(results.into_iter().chain(duplicates).collect())
}

/// Needs Delete on each topic (TOPIC_AUTHORIZATION_FAILED; by id, an
/// unauthorized one answers UNKNOWN_TOPIC_ID, so ids reveal nothing).
pub async fn delete_topics(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let auth = auth.clone();
    // v0-5 name topics in topic_names; v6 in topics, by name or id.
    let mut wanted: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .into_iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    wanted.extend(
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)),
    );
    let results = ctx
        .blocking(move |engine| {
            wanted
                .into_iter()
                .map(|(name, id)| {
                    let resolved = match &name {
                        Some(n) => Ok(n.clone()),
                        None => engine.topic_by_id(id).map(|t| t.name),
                    };
                    let result = DeletableTopicResult::default()
                        .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
                        .with_topic_id(id);
                    if let Ok(n) = &resolved {
                        if !auth.topic(AclOperation::Delete, n) {
                            let code = if name.is_none() {
                                ResponseError::UnknownTopicId
                            } else {
                                ResponseError::TopicAuthorizationFailed
                            };
                            return result.with_error_code(code.code());
                        }
                    }
                    let outcome = resolved.and_then(|n: String| engine.delete_topic(&n));
                    match outcome {
                        Ok(()) => result,
                        Err(e) => {
                            let code = if name.is_none() && e.kind() == ErrorKind::NotFound {
                                ResponseError::UnknownTopicId.code()
                            } else {
                                errors::code(&e)
                            };
                            result
                                .with_error_code(code)
                                .with_error_message(Some(StrBytes::from_string(e.to_string())))
                        }
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    DeleteTopicsResponse::default().with_responses(results)
}
