//! Committed offset APIs on the wire: OffsetCommit, OffsetFetch,
//! OffsetDelete. Decode, ask the coordinator (membership checks, what to
//! store, what to answer), read or write the catalog through the engine,
//! encode. Offset writes of one group are serialised with their
//! membership checks by the coordinator's per-group offset lock.

use std::sync::Arc;

use kafka_protocol::messages::*;

use super::authz::Authz;
use super::errors::{group_code, group_result_code};
use super::groups::s;
use super::logging::escape;
use super::Ctx;
use crate::security::acl::AclOperation;

const GROUP_AUTHORIZATION_FAILED: i16 =
    kafka_protocol::ResponseError::GroupAuthorizationFailed.code();
const TOPIC_AUTHORIZATION_FAILED: i16 =
    kafka_protocol::ResponseError::TopicAuthorizationFailed.code();
use crate::coordinator::{FetchedOffset, GroupError, OffsetCommitPartition, OffsetMetadataManager};

// ---- OffsetCommit ----------------------------------------------------------------

/// Needs Read on the group (every partition GROUP_AUTHORIZATION_FAILED,
/// nothing stored) and Read on each topic (TOPIC_AUTHORIZATION_FAILED for
/// its partitions, which are not stored; the others are).
pub async fn offset_commit(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    let refused = |topics: Vec<(TopicName, Vec<i32>)>, code: i16| {
        topics.into_iter().map(move |(name, parts)| {
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|i| {
                            offset_commit_response::OffsetCommitResponsePartition::default()
                                .with_partition_index(i)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
    };
    let (req_topics, denied): (Vec<_>, Vec<_>) = req
        .topics
        .into_iter()
        .partition(|t| auth.topic(AclOperation::Read, &t.name));
    let denied: Vec<(TopicName, Vec<i32>)> = denied
        .into_iter()
        .map(|t| {
            (
                t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    if !auth.group(AclOperation::Read, &group_id) {
        let all = req_topics
            .into_iter()
            .map(|t| {
                (
                    t.name,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .chain(denied)
            .collect();
        return OffsetCommitResponse::default()
            .with_topics(refused(all, GROUP_AUTHORIZATION_FAILED).collect());
    }
    // Held until the catalog write is done (moved into it below).
    let offsets_guard = if group_id.is_empty() {
        None
    } else {
        Some(ctx.groups.lock_offsets(&group_id).await)
    };
    let group = ctx.groups.validate_offset_commit(
        &group_id,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id_or_member_epoch,
        ctx.engine.now_ms(),
    );
    let topics: Vec<(String, Vec<OffsetCommitPartition>)> = req_topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| OffsetCommitPartition {
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                })
                .collect();
            (t.name.0.to_string(), parts)
        })
        .collect();
    let result = ctx
        .blocking(move |engine| {
            let (rows, mut results) = OffsetMetadataManager::commit_plan(
                &group,
                &topics,
                |topic| engine.topic(topic).ok().map(|i| i.partitions),
                engine.now_ms(),
            );
            if !rows.is_empty() {
                if let Err(e) = engine.commit_offsets(&group_id, &rows) {
                    tracing::error!(group = %escape(&group_id), error = %escape(&e.to_string()), "cannot store committed offsets");
                    let failed = GroupError::StoreUnavailable {
                        reason: e.to_string(),
                    };
                    for (_, parts) in &mut results {
                        for (_, r) in parts.iter_mut() {
                            if r.is_ok() {
                                *r = Err(failed.clone());
                            }
                        }
                    }
                }
            }
            drop(offsets_guard);
            results
        })
        .await
        .unwrap_or_default();
    OffsetCommitResponse::default().with_topics(
        result
            .into_iter()
            .map(|(name, parts)| {
                offset_commit_response::OffsetCommitResponseTopic::default()
                    .with_name(TopicName(s(&name)))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(i, r)| {
                                offset_commit_response::OffsetCommitResponsePartition::default()
                                    .with_partition_index(i)
                                    .with_error_code(group_result_code(&r))
                            })
                            .collect(),
                    )
            })
            .chain(refused(denied, TOPIC_AUTHORIZATION_FAILED))
            .collect(),
    )
}

// ---- OffsetFetch -------------------------------------------------------------------

/// Topics and partitions an OffsetFetch asks for (`None`: all).
type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// Committed offsets of `group` for `wanted`, by topic.
fn fetch_offsets(
    engine: &crate::Engine,
    group: &str,
    wanted: Wanted,
) -> Result<Vec<(String, Vec<FetchedOffset>)>, GroupError> {
    let committed = engine.committed_offsets(group).map_err(|e| {
        tracing::error!(group = %escape(group), error = %escape(&e.to_string()), "cannot read committed offsets");
        GroupError::StoreUnavailable {
            reason: e.to_string(),
        }
    })?;
    Ok(OffsetMetadataManager::fetch(&committed, wanted))
}

fn fetched_v8(p: FetchedOffset) -> offset_fetch_response::OffsetFetchResponsePartitions {
    offset_fetch_response::OffsetFetchResponsePartitions::default()
        .with_partition_index(p.partition)
        .with_committed_offset(p.offset)
        .with_committed_leader_epoch(p.leader_epoch)
        .with_metadata(p.metadata.as_deref().map(s))
}

fn fetched(p: FetchedOffset) -> offset_fetch_response::OffsetFetchResponsePartition {
    offset_fetch_response::OffsetFetchResponsePartition::default()
        .with_partition_index(p.partition)
        .with_committed_offset(p.offset)
        .with_committed_leader_epoch(p.leader_epoch)
        .with_metadata(p.metadata.as_deref().map(s))
}

/// Committed offsets as the principal may see them: a topic it may not
/// Describe is left out when all were asked for, and answered
/// TOPIC_AUTHORIZATION_FAILED (offset -1) when named.
fn authorized(
    auth: &Authz,
    all: bool,
    topics: Vec<(String, Vec<FetchedOffset>)>,
) -> Vec<(String, Vec<FetchedOffset>, i16)> {
    topics
        .into_iter()
        .filter_map(|(name, parts)| {
            if auth.topic(AclOperation::Describe, &name) {
                Some((name, parts, 0))
            } else if all {
                None
            } else {
                let parts = parts
                    .into_iter()
                    .map(|p| FetchedOffset {
                        partition: p.partition,
                        offset: -1,
                        leader_epoch: -1,
                        metadata: None,
                    })
                    .collect();
                Some((name, parts, TOPIC_AUTHORIZATION_FAILED))
            }
        })
        .collect()
}

/// Needs Describe on each group (GROUP_AUTHORIZATION_FAILED) and on each
/// topic (see [`authorized`]).
pub async fn offset_fetch(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups: Vec<(GroupId, Wanted)> = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                (g.group_id, topics)
            })
            .collect();
        let out = ctx
            .blocking(move |engine| {
                groups
                    .into_iter()
                    .map(|(id, topics)| {
                        let all = topics.is_none();
                        let result = fetch_offsets(engine, id.0.as_str(), topics);
                        (id, all, result)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        return OffsetFetchResponse::default().with_groups(
            out.into_iter()
                .map(|(id, all, result)| {
                    let g = offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(id.clone());
                    if !auth.group(AclOperation::Describe, &id) {
                        return g.with_error_code(GROUP_AUTHORIZATION_FAILED);
                    }
                    match result {
                        Err(e) => g.with_error_code(group_code(&e)),
                        Ok(topics) => g.with_topics(
                            authorized(auth, all, topics)
                                .into_iter()
                                .map(|(name, parts, code)| {
                                    offset_fetch_response::OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(s(&name)))
                                        .with_partitions(
                                            parts
                                                .into_iter()
                                                .map(|p| fetched_v8(p).with_error_code(code))
                                                .collect(),
                                        )
                                })
                                .collect(),
                        ),
                    }
                })
                .collect(),
        );
    }
    let group = req.group_id;
    if !auth.group(AclOperation::Describe, &group) {
        return OffsetFetchResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED);
    }
    let all = req.topics.is_none();
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let result = ctx
        .blocking(move |engine| fetch_offsets(engine, group.0.as_str(), topics))
        .await
        .unwrap_or_else(|e| {
            Err(GroupError::StoreUnavailable {
                reason: e.to_string(),
            })
        });
    match result {
        Err(e) => OffsetFetchResponse::default().with_error_code(group_code(&e)),
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            authorized(auth, all, topics)
                .into_iter()
                .map(|(name, parts, code)| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(TopicName(s(&name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| fetched(p).with_error_code(code))
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

// ---- OffsetDelete ------------------------------------------------------------------

fn offset_delete_error(e: &GroupError) -> OffsetDeleteResponse {
    OffsetDeleteResponse::default().with_error_code(group_code(e))
}

/// Needs Delete on the group (GROUP_AUTHORIZATION_FAILED) and Read on
/// each topic (TOPIC_AUTHORIZATION_FAILED, its offsets kept).
pub async fn offset_delete(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.to_string();
    if !auth.group(AclOperation::Delete, &group_id) {
        return OffsetDeleteResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED);
    }
    // No commit or delete of this group runs until this one is done.
    let _offsets_guard = ctx.groups.lock_offsets(&group_id).await;
    // Topics the live group consumes keep their offsets.
    let subscribed = match ctx.groups.protected_topics(&group_id) {
        Ok(s) => s,
        Err(e) => return offset_delete_error(&e),
    };
    let g = group_id.clone();
    let committed = match ctx
        .blocking(move |engine| engine.committed_offsets(&g))
        .await
        .and_then(|r| r)
    {
        Ok(c) => c,
        Err(e) => {
            return offset_delete_error(&GroupError::StoreUnavailable {
                reason: e.to_string(),
            })
        }
    };
    let live = subscribed.is_some();
    if committed.is_empty() && !live {
        return offset_delete_error(&GroupError::GroupIdNotFound);
    }
    let mut delete = Vec::new();
    let topics: Vec<_> = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = t.name.0.to_string();
            let blocked = subscribed.as_ref().is_some_and(|s| s.contains(&topic));
            let readable = auth.topic(AclOperation::Read, &topic);
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    if !readable {
                        return offset_delete_response::OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(TOPIC_AUTHORIZATION_FAILED);
                    }
                    let result = if blocked {
                        Err(GroupError::GroupSubscribedToTopic {
                            topic: topic.clone(),
                        })
                    } else {
                        if p.partition_index >= 0 {
                            delete.push((topic.clone(), p.partition_index as u32));
                        }
                        Ok(())
                    };
                    offset_delete_response::OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(group_result_code(&result))
                })
                .collect();
            offset_delete_response::OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    if !delete.is_empty() {
        let g = group_id.clone();
        if let Err(e) = ctx
            .blocking(move |engine| engine.delete_committed_offsets(&g, Some(&delete)))
            .await
            .and_then(|r| r)
        {
            tracing::error!(group = %escape(&group_id), error = %escape(&e.to_string()), "cannot delete committed offsets");
            return offset_delete_error(&GroupError::StoreUnavailable {
                reason: e.to_string(),
            });
        }
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
