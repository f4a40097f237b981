//! Group APIs on the wire: FindCoordinator, the classic rebalance protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and group administration
//! (ListGroups, DescribeGroups, DeleteGroups). Committed offsets are in
//! `offsets.rs`, the coordinator's clock driver in `group_driver.rs`.
//!
//! Each handler only decodes the request for its version, calls the
//! [`GroupCoordinator`](crate::coordinator::GroupCoordinator) (which
//! decides everything) and encodes its answer, mapping
//! [`GroupError`]s to codes in `errors.rs`. A JoinGroup or SyncGroup the
//! coordinator parks is awaited here, never under a lock. Handlers whose
//! call can change what the catalog must hold about a group (join, sync,
//! leave, delete) write the coordinator's records before they answer, so a
//! SyncGroup that returned survives a restart.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::authz::Authz;
use super::errors::{group_code, group_result_code};
use super::group_driver::write_records;
use super::logging::escape;
use super::{Ctx, NODE_ID};
use crate::coordinator::messages::{JoinRequest, JoinResponse, SyncRequest};
use crate::coordinator::{ClassicGroupState, GroupError};
use crate::security::acl::{AclOperation, ResourceType};

pub(super) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

// ---- FindCoordinator -------------------------------------------------------

/// Needs Describe on the group (key type 0) or the transactional id (1):
/// GROUP_AUTHORIZATION_FAILED / TRANSACTIONAL_ID_AUTHORIZATION_FAILED per
/// key otherwise, as in Kafka.
pub fn find_coordinator(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    // 0 = group, 1 = transaction: this broker coordinates both (the
    // transaction coordinator is in `transactions.rs`); Describe on the
    // group or transactional id is needed.
    let key_type = req.key_type;
    let answer = |key: &str| -> (i16, Option<StrBytes>) {
        use kafka_protocol::ResponseError as E;
        let (rt, refused) = match key_type {
            0 => (ResourceType::Group, E::GroupAuthorizationFailed),
            1 => (
                ResourceType::TransactionalId,
                E::TransactionalIdAuthorizationFailed,
            ),
            other => {
                return (
                    E::InvalidRequest.code(),
                    Some(s(&format!(
                        "unknown coordinator key type {other} (0: group, 1: transaction)"
                    ))),
                )
            }
        };
        if auth.allows(AclOperation::Describe, rt, key) {
            (0, None)
        } else {
            (refused.code(), None)
        }
    };
    let host = s(&ctx.settings.advertised_host);
    let port = ctx.settings.advertised_port;
    if version >= 4 {
        // A key given twice is answered once (at most MAX_REQUEST_ENTRIES,
        // checked before decoding).
        let mut seen = HashSet::new();
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .map(|k| {
                let (error, message) = answer(&k);
                let node = if error == 0 { NODE_ID } else { -1 };
                find_coordinator_response::Coordinator::default()
                    .with_key(k)
                    .with_node_id(node.into())
                    .with_host(if error == 0 { host.clone() } else { s("") })
                    .with_port(if error == 0 { port } else { -1 })
                    .with_error_code(error)
                    .with_error_message(message)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (error, message) = answer(&req.key);
    let node = if error == 0 { NODE_ID } else { -1 };
    FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_error_message(message)
        .with_node_id(node.into())
        .with_host(if error == 0 { host } else { s("") })
        .with_port(if error == 0 { port } else { -1 })
}

// ---- JoinGroup ---------------------------------------------------------------

fn join_error(e: &GroupError, member: &str) -> JoinGroupResponse {
    // MEMBER_ID_REQUIRED hands out the id to join with.
    let member = match e {
        GroupError::MemberIdRequired { member_id } => member_id.as_str(),
        _ => member,
    };
    JoinGroupResponse::default()
        .with_error_code(group_code(e))
        .with_generation_id(-1)
        .with_member_id(s(member))
        .with_protocol_name(Some(s("")))
}

fn join_response(r: JoinResponse) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.as_deref().map(s))
        .with_protocol_name(Some(s(&r.protocol_name)))
        .with_leader(s(&r.leader))
        .with_member_id(s(&r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    join_group_response::JoinGroupResponseMember::default()
                        .with_member_id(s(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(s))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

/// The group APIs a member uses (JoinGroup, SyncGroup, Heartbeat,
/// LeaveGroup) need Read on the group: GROUP_AUTHORIZATION_FAILED.
fn may_read_group(auth: &Authz, group: &str) -> bool {
    auth.group(AclOperation::Read, group)
}

pub async fn join_group(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    let member_id = req.member_id.to_string();
    if !may_read_group(auth, &req.group_id) {
        return JoinGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1)
            .with_member_id(s(&member_id))
            .with_protocol_name(Some(s("")));
    }
    // v0 has no rebalance timeout: it is the session timeout.
    let rebalance_timeout_ms = if version == 0 || req.rebalance_timeout_ms <= 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    };
    let join = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: member_id.clone(),
        // KIP-345 (v5+): a static member.
        group_instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        // KIP-394 (v4+).
        require_known_member_id: version >= 4,
    };
    let pending = ctx.groups.join_group(join, ctx.engine.now_ms());
    // Replaced by a newer JoinGroup of the same member, or the broker is
    // shutting down.
    let result =
        super::throttling::parked(pending.wait(|| Err(GroupError::RebalanceInProgress))).await;
    write_records(ctx).await;
    match result {
        Ok(r) => join_response(r),
        Err(e) => join_error(&e, &member_id),
    }
}

// ---- SyncGroup ---------------------------------------------------------------

pub async fn sync_group(ctx: &Arc<Ctx>, auth: &Authz, req: SyncGroupRequest) -> SyncGroupResponse {
    if !may_read_group(auth, &req.group_id) {
        return SyncGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code());
    }
    let sync = SyncRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        generation_id: req.generation_id,
        protocol_type: req.protocol_type.as_ref().map(|p| p.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|p| p.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let pending = ctx.groups.sync_group(sync, ctx.engine.now_ms());
    let result =
        super::throttling::parked(pending.wait(|| Err(GroupError::RebalanceInProgress))).await;
    // The completed generation is in the catalog before anyone hears of it.
    write_records(ctx).await;
    match result {
        Ok(r) => SyncGroupResponse::default()
            .with_protocol_type(r.protocol_type.as_deref().map(s))
            .with_protocol_name(r.protocol_name.as_deref().map(s))
            .with_assignment(r.assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(group_code(&e)),
    }
}

// ---- Heartbeat -----------------------------------------------------------------

pub fn heartbeat(ctx: &Arc<Ctx>, auth: &Authz, req: HeartbeatRequest) -> HeartbeatResponse {
    if !may_read_group(auth, &req.group_id) {
        return HeartbeatResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code());
    }
    let result = ctx.groups.heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id,
        ctx.engine.now_ms(),
    );
    HeartbeatResponse::default().with_error_code(group_result_code(&result))
}

// ---- LeaveGroup ------------------------------------------------------------------

pub async fn leave_group(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    if !may_read_group(auth, &req.group_id) {
        return LeaveGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code());
    }
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results = ctx
        .groups
        .leave_group(req.group_id.0.as_str(), &leaving, ctx.engine.now_ms());
    write_records(ctx).await;
    if version >= 3 {
        LeaveGroupResponse::default().with_members(
            leaving
                .into_iter()
                .zip(results)
                .map(|((id, instance), result)| {
                    leave_group_response::MemberResponse::default()
                        .with_member_id(s(&id))
                        .with_group_instance_id(instance.as_deref().map(s))
                        .with_error_code(group_result_code(&result))
                })
                .collect(),
        )
    } else {
        LeaveGroupResponse::default().with_error_code(results.first().map_or(0, group_result_code))
    }
}

// ---- ListGroups / DescribeGroups / DeleteGroups --------------------------------

/// A group's state and protocol type as listed: live groups from the
/// coordinator, groups known only by their committed offsets as Empty
/// consumer groups.
async fn all_groups(ctx: &Arc<Ctx>) -> BTreeMap<String, (ClassicGroupState, String)> {
    let stored = ctx
        .blocking(|engine| engine.groups_with_offsets())
        .await
        .and_then(|r| r)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot list groups with committed offsets");
            Vec::new()
        });
    let mut out: BTreeMap<String, (ClassicGroupState, String)> = stored
        .into_iter()
        .map(|g| (g, (ClassicGroupState::Empty, "consumer".to_string())))
        .collect();
    for (name, g) in ctx.groups.list() {
        let protocol_type = g.protocol_type.unwrap_or_else(|| "consumer".to_string());
        out.insert(name, (g.state, protocol_type));
    }
    out
}

/// Every group with Describe on the cluster, else only the groups the
/// principal may Describe (Kafka's rule).
pub async fn list_groups(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let all = auth.cluster(AclOperation::Describe);
    let states: BTreeSet<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let classic = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case("classic"));
    let groups = if classic {
        all_groups(ctx).await
    } else {
        BTreeMap::new()
    };
    ListGroupsResponse::default().with_groups(
        groups
            .into_iter()
            .filter(|(name, (state, _))| {
                (all || auth.group(AclOperation::Describe, name))
                    && (states.is_empty() || states.contains(&state.name().to_ascii_lowercase()))
            })
            .map(|(name, (state, protocol_type))| {
                list_groups_response::ListedGroup::default()
                    .with_group_id(GroupId(s(&name)))
                    .with_protocol_type(s(&protocol_type))
                    .with_group_state(s(state.name()))
                    .with_group_type(s("classic"))
            })
            .collect(),
    )
}

/// Needs Describe on each group (GROUP_AUTHORIZATION_FAILED); the
/// authorized operations are computed from the ACLs.
pub async fn describe_groups(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let ask_operations = req.include_authorized_operations;
    let stored: HashSet<String> = ctx
        .blocking(|engine| engine.groups_with_offsets())
        .await
        .and_then(|r| r)
        .unwrap_or_default()
        .into_iter()
        .collect();
    // Kafka's "not requested" value unless asked.
    let operations = |group: &str| {
        if ask_operations {
            auth.operations(ResourceType::Group, group)
        } else {
            i32::MIN
        }
    };
    // A group id given twice is described once (at most
    // MAX_REQUEST_ENTRIES ids, checked before decoding).
    let mut seen = HashSet::new();
    let described = req
        .groups
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .map(|id| {
            let base = describe_groups_response::DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(operations(&id));
            if id.0.is_empty() {
                return base.with_error_code(group_code(&GroupError::InvalidGroupId));
            }
            if !auth.group(AclOperation::Describe, &id) {
                return base.with_authorized_operations(i32::MIN).with_error_code(
                    kafka_protocol::ResponseError::GroupAuthorizationFailed.code(),
                );
            }
            match ctx.groups.describe(id.0.as_str()) {
                Some(g) => base
                    .with_group_state(s(g.state.name()))
                    .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or("")))
                    .with_protocol_data(s(&g.protocol_data))
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|m| {
                                describe_groups_response::DescribedGroupMember::default()
                                    .with_member_id(s(&m.member_id))
                                    .with_group_instance_id(m.group_instance_id.as_deref().map(s))
                                    .with_client_id(s(&m.client_id))
                                    .with_client_host(s(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                None if stored.contains(id.0.as_str()) => base
                    .with_group_state(s(ClassicGroupState::Empty.name()))
                    .with_protocol_type(s("consumer")),
                // Kafka describes an unknown group as Dead, without error.
                None => base.with_group_state(s(ClassicGroupState::Dead.name())),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(described)
}

/// Forgets a Dead group however its delete ends (a cancelled request
/// included).
struct ForgetDead<'a> {
    ctx: &'a Arc<Ctx>,
    group: &'a str,
}

impl Drop for ForgetDead<'_> {
    fn drop(&mut self) {
        self.ctx.groups.forget_dead(self.group);
    }
}

/// DeleteGroups: each distinct group in turn (a name given twice is
/// answered once, an empty one gets INVALID_GROUP_ID without work; at most
/// MAX_REQUEST_ENTRIES names, checked before decoding). Every group is one
/// await apart, so a request whose client left stops between two groups
/// (the connection drops this future); a group whose delete began is
/// finished or forgotten whole (`ForgetDead`).
/// Needs Delete on each group (GROUP_AUTHORIZATION_FAILED).
pub async fn delete_groups(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    let mut seen = HashSet::new();
    for id in req.groups_names {
        if !seen.insert(id.clone()) {
            continue;
        }
        if id.0.is_empty() {
            results.push(
                delete_groups_response::DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(group_code(&GroupError::InvalidGroupId)),
            );
            continue;
        }
        if !auth.group(AclOperation::Delete, &id) {
            results.push(
                delete_groups_response::DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(
                        kafka_protocol::ResponseError::GroupAuthorizationFailed.code(),
                    ),
            );
            continue;
        }
        let name = id.0.to_string();
        // No commit runs meanwhile; joins see the group Dead.
        let offsets_guard = ctx.groups.lock_offsets(&name).await;
        let result = match ctx.groups.mark_dead(&name) {
            Err(e) => Err(e),
            Ok(in_memory) => {
                let _forget = ForgetDead { ctx, group: &name };
                let n = name.clone();
                match ctx
                    .blocking(move |engine| {
                        let deleted = engine.delete_committed_offsets(&n, None);
                        drop(offsets_guard);
                        deleted
                    })
                    .await
                    .and_then(|r| r)
                {
                    // An Empty group this coordinator knows exists even
                    // without offsets.
                    Ok(0) if !in_memory => Err(GroupError::GroupIdNotFound),
                    Ok(_) => Ok(()),
                    Err(e) => {
                        tracing::error!(group = %escape(&name), error = %escape(&e.to_string()), "cannot delete committed offsets");
                        Err(GroupError::StoreUnavailable {
                            reason: e.to_string(),
                        })
                    }
                }
            }
        };
        results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(group_result_code(&result)),
        );
    }
    write_records(ctx).await;
    DeleteGroupsResponse::default().with_results(results)
}
