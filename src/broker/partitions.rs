//! CreatePartitions: grow a topic, as Kafka's admin clients and
//! `kafka-topics --alter --partitions N` do. Partitions are only ever
//! added; assignments may name only this broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::{errors, Ctx, NODE_ID};
use crate::security::acl::AclOperation;
use crate::ErrorKind;

/// Needs Alter on each topic.
pub async fn create_partitions(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let auth = auth.clone();
    let validate_only = req.validate_only;
    let mut counts: BTreeMap<TopicName, usize> = BTreeMap::new();
    for t in &req.topics {
        *counts.entry(t.name.clone()).or_default() += 1;
    }
    let topics = req.topics;
    let results = ctx
        .blocking(move |engine| {
            let mut answered: Vec<TopicName> = Vec::new();
            let mut results = Vec::new();
            for t in topics {
                let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
                let fail = |code: ResponseError, message: String| {
                    result
                        .clone()
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(message)))
                };
                let name = t.name.0.to_string();
                let n = counts.get(&t.name).copied().unwrap_or(0);
                if n > 1 {
                    // Kafka's answer: INVALID_REQUEST, once, nothing done.
                    if !answered.contains(&t.name) {
                        answered.push(t.name.clone());
                        results.push(fail(
                            ResponseError::InvalidRequest,
                            format!("topic '{name}' appears {n} times in one CreatePartitions request"),
                        ));
                    }
                    continue;
                }
                if !auth.topic(AclOperation::Alter, &name) {
                    results.push(fail(
                        ResponseError::TopicAuthorizationFailed,
                        format!("{} may not Alter topic '{name}'", auth.principal),
                    ));
                    continue;
                }
                let current = match engine.topic(&name) {
                    Ok(info) => info.partitions,
                    Err(e) => {
                        results.push(fail(
                            ResponseError::UnknownTopicOrPartition,
                            e.to_string(),
                        ));
                        continue;
                    }
                };
                let total = t.count;
                if total <= current as i32 {
                    results.push(fail(
                        ResponseError::InvalidPartitions,
                        format!(
                            "topic '{name}' has {current} partitions: the new count {total} must be larger"
                        ),
                    ));
                    continue;
                }
                if let Some(assignments) = &t.assignments {
                    if assignments.len() as i64 != i64::from(total) - i64::from(current) {
                        results.push(fail(
                            ResponseError::InvalidReplicaAssignment,
                            format!(
                                "{} assignments for {} new partitions",
                                assignments.len(),
                                i64::from(total) - i64::from(current)
                            ),
                        ));
                        continue;
                    }
                    if assignments
                        .iter()
                        .any(|a| a.broker_ids.is_empty() || a.broker_ids.iter().any(|b| b.0 != NODE_ID))
                    {
                        results.push(fail(
                            ResponseError::InvalidReplicaAssignment,
                            format!("tierlog is one broker (id {NODE_ID}); assignments must name only it"),
                        ));
                        continue;
                    }
                }
                results.push(match engine.create_partitions(&name, total as u32, validate_only) {
                    Ok(_) => result,
                    Err(e) => {
                        let code = match e.kind() {
                            ErrorKind::Invalid => ResponseError::InvalidPartitions.code(),
                            _ => errors::code(&e),
                        };
                        result
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(e.to_string())))
                    }
                });
            }
            results
        })
        .await
        .unwrap_or_default();
    CreatePartitionsResponse::default().with_results(results)
}
