//! Membership of classic groups (Kafka's `GroupMetadataManager`): JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, static membership (KIP-345), the
//! rebalance and what time does to it. Works on the registry the
//! [`super::GroupCoordinator`] holds under its lock; never blocks, never
//! does I/O.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::group::{ClassicGroup, ClassicGroupMember};
use super::messages::{
    GroupDescription, GroupListing, JoinRequest, JoinResult, MemberDescription, Pending,
    SyncRequest, SyncResponse, SyncResult,
};
use super::{ClassicGroupState, GroupError, GroupSettings};
use crate::catalog::StoredGroup;

/// Every group this coordinator has in memory, by group id.
pub(crate) type Groups = HashMap<String, ClassicGroup>;

/// Decides membership; holds only settings (the groups are the
/// coordinator's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupMetadataManager {
    settings: GroupSettings,
}

impl GroupMetadataManager {
    pub fn new(settings: GroupSettings) -> Self {
        GroupMetadataManager { settings }
    }

    /// Reload stored groups (coordinator start): each Stable in its
    /// generation, every member with one session timeout from `now_ms`.
    pub fn load(&self, groups: &mut Groups, stored: Vec<StoredGroup>, now_ms: i64) {
        for g in stored {
            tracing::info!(group = %crate::text::escape(&g.group_id), generation = g.generation_id, members = g.members.len(), "group reloaded");
            let id = g.group_id.clone();
            groups.insert(id, ClassicGroup::reload(g, now_ms));
        }
    }

    /// JoinGroup: answered at once (an error, a MEMBER_ID_REQUIRED, a
    /// member already in the current generation, a static member's
    /// replacement in a Stable group) or parked until the join phase
    /// completes.
    pub fn join_group(
        &self,
        groups: &mut Groups,
        req: JoinRequest,
        now_ms: i64,
    ) -> Pending<JoinResult> {
        let ready = |r: JoinResult| Pending::Ready(r);
        let s = self.settings;
        if req.group_id.is_empty() {
            return ready(Err(GroupError::InvalidGroupId));
        }
        if req.session_timeout_ms < s.min_session_timeout_ms
            || req.session_timeout_ms > s.max_session_timeout_ms
        {
            return ready(Err(GroupError::InvalidSessionTimeout {
                timeout_ms: req.session_timeout_ms,
                min_ms: s.min_session_timeout_ms,
                max_ms: s.max_session_timeout_ms,
            }));
        }
        let initial_delay_ms = i64::from(s.initial_rebalance_delay_ms.max(0));
        if !req.member_id.is_empty() && !groups.contains_key(&req.group_id) {
            return ready(Err(GroupError::unknown_member(&req.member_id)));
        }
        let group = groups
            .entry(req.group_id.clone())
            .or_insert_with(ClassicGroup::new);
        if group.is(ClassicGroupState::Dead) {
            return ready(Err(GroupError::GroupDead));
        }
        if !group.supports(&req.protocol_type, &req.protocols) {
            return ready(Err(GroupError::InconsistentGroupProtocol));
        }
        let new_member = |id: String| ClassicGroupMember {
            id,
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: i64::from(req.session_timeout_ms),
            rebalance_timeout_ms: i64::from(req.rebalance_timeout_ms),
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            last_heartbeat_ms: now_ms,
        };
        let (tx, rx) = oneshot::channel();
        if let (true, Some(instance)) = (req.member_id.is_empty(), &req.group_instance_id) {
            // A static member gets its id at once (no MEMBER_ID_REQUIRED
            // step); a known instance id replaces its registered member.
            let id = format!("{instance}-{}", uuid::Uuid::new_v4());
            match group.static_member(instance).map(str::to_string) {
                Some(old) => {
                    if let Some(resp) = group.rejoin_static(&old, new_member(id), tx, now_ms) {
                        return ready(Ok(resp));
                    }
                }
                None => group.add_and_join(
                    new_member(id),
                    &req.protocol_type,
                    tx,
                    now_ms,
                    initial_delay_ms,
                ),
            }
        } else if req.member_id.is_empty() {
            let id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if req.require_known_member_id {
                // KIP-394: the client retries with this id; until then it
                // holds no place in the group.
                group.pending.insert(
                    id.clone(),
                    now_ms.saturating_add(i64::from(req.session_timeout_ms)),
                );
                return ready(Err(GroupError::MemberIdRequired { member_id: id }));
            }
            group.add_and_join(
                new_member(id),
                &req.protocol_type,
                tx,
                now_ms,
                initial_delay_ms,
            );
        } else if group.pending.remove(&req.member_id).is_some() {
            group.add_and_join(
                new_member(req.member_id.clone()),
                &req.protocol_type,
                tx,
                now_ms,
                initial_delay_ms,
            );
        } else {
            if let Err(e) = group.validate_member(&req.member_id, req.group_instance_id.as_deref())
            {
                return ready(Err(e));
            }
            let is_leader = group.leader.as_deref() == Some(req.member_id.as_str());
            let state = group.state;
            let Some(m) = group.members.get_mut(&req.member_id) else {
                return ready(Err(GroupError::unknown_member(&req.member_id)));
            };
            let changed = m.protocols != req.protocols;
            m.protocols = req.protocols.clone();
            m.session_timeout_ms = i64::from(req.session_timeout_ms);
            m.rebalance_timeout_ms = i64::from(req.rebalance_timeout_ms);
            m.last_heartbeat_ms = now_ms;
            match state {
                ClassicGroupState::PreparingRebalance => {
                    m.join_waiter = Some(tx);
                    group.maybe_complete_join(now_ms, false);
                }
                ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable
                    if !(changed || is_leader && state == ClassicGroupState::Stable) =>
                {
                    // Already in the current generation (a retried join).
                    return ready(Ok(group.current_join_response(&req.member_id)));
                }
                _ => {
                    m.join_waiter = Some(tx);
                    group.prepare_rebalance(now_ms, 0);
                    group.maybe_complete_join(now_ms, false);
                }
            }
        }
        Pending::Parked(rx)
    }

    /// SyncGroup: the leader's completes the generation (every parked
    /// follower gets its assignment); a follower's is parked until then; in
    /// a Stable group the current assignment comes back at once.
    pub fn sync_group(
        &self,
        groups: &mut Groups,
        req: SyncRequest,
        now_ms: i64,
    ) -> Pending<SyncResult> {
        let ready = |r: SyncResult| Pending::Ready(r);
        let Some(group) = groups.get_mut(&req.group_id) else {
            return ready(Err(GroupError::unknown_member(&req.member_id)));
        };
        if let Err(e) = group.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return ready(Err(e));
        }
        if req.generation_id != group.generation {
            return ready(Err(GroupError::IllegalGeneration {
                generation: req.generation_id,
                current: group.generation,
            }));
        }
        let mismatched = |sent: &Option<String>, ours: &Option<String>| {
            sent.as_ref().is_some_and(|p| ours.as_ref() != Some(p))
        };
        if mismatched(&req.protocol_type, &group.protocol_type)
            || mismatched(&req.protocol_name, &group.protocol)
        {
            return ready(Err(GroupError::InconsistentGroupProtocol));
        }
        if matches!(
            group.state,
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable
        ) {
            group.pending_sync.remove(&req.member_id);
            if group.pending_sync.is_empty() {
                group.sync_deadline_ms = None;
            }
        }
        let ok = |assignment: Bytes| SyncResponse {
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            assignment,
        };
        match group.state {
            ClassicGroupState::Empty | ClassicGroupState::Dead => {
                return ready(Err(GroupError::unknown_member(&req.member_id)))
            }
            ClassicGroupState::PreparingRebalance => {
                return ready(Err(GroupError::RebalanceInProgress))
            }
            ClassicGroupState::Stable => {
                let assignment = group.members[&req.member_id].assignment.clone();
                let resp = ok(assignment);
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    m.last_heartbeat_ms = now_ms;
                }
                return ready(Ok(resp));
            }
            ClassicGroupState::CompletingRebalance => {}
        }
        let template = ok(Bytes::new());
        let (tx, rx) = oneshot::channel();
        if let Some(m) = group.members.get_mut(&req.member_id) {
            m.last_heartbeat_ms = now_ms;
            m.sync_waiter = Some(tx);
        }
        if group.leader.as_deref() == Some(req.member_id.as_str()) {
            let mut assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
            for m in group.members.values_mut() {
                m.assignment = assignments.remove(&m.id).unwrap_or_default();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(Ok(SyncResponse {
                        assignment: m.assignment.clone(),
                        ..template.clone()
                    }));
                }
            }
            group.transition_to(ClassicGroupState::Stable);
            tracing::debug!(group = %crate::text::escape(&req.group_id), generation = group.generation, "group stable");
        }
        Pending::Parked(rx)
    }

    /// Heartbeat of `member` in `generation`.
    pub fn heartbeat(
        &self,
        groups: &mut Groups,
        group_id: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let group = groups
            .get_mut(group_id)
            .ok_or_else(|| GroupError::unknown_member(member))?;
        group.validate_member(member, instance)?;
        let current = group.generation;
        let state = group.state;
        let m = group
            .members
            .get_mut(member)
            .ok_or_else(|| GroupError::unknown_member(member))?;
        if generation != current {
            return Err(GroupError::IllegalGeneration {
                generation,
                current,
            });
        }
        m.last_heartbeat_ms = now_ms;
        match state {
            ClassicGroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            ClassicGroupState::Empty | ClassicGroupState::Dead => {
                Err(GroupError::unknown_member(member))
            }
            ClassicGroupState::CompletingRebalance | ClassicGroupState::Stable => Ok(()),
        }
    }

    /// LeaveGroup of each `(member id, instance id)`; an empty member id
    /// with an instance id removes that static member (KIP-345, admin
    /// tools). One result per member, in order.
    pub fn leave_group(
        &self,
        groups: &mut Groups,
        group_id: &str,
        leaving: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Vec<Result<(), GroupError>> {
        let Some(group) = groups.get_mut(group_id) else {
            return leaving
                .iter()
                .map(|(id, _)| Err(GroupError::unknown_member(id)))
                .collect();
        };
        leaving
            .iter()
            .map(|(id, instance)| {
                if id.is_empty() {
                    let current = instance
                        .as_deref()
                        .and_then(|i| group.static_member(i))
                        .map(str::to_string)
                        .ok_or_else(|| GroupError::unknown_member(id))?;
                    tracing::info!(group = %crate::text::escape(group_id), member = %crate::text::escape(&current), "static member removed by its instance id");
                    group.remove_member(&current, now_ms);
                    Ok(())
                } else if group.pending.remove(id).is_some() {
                    group.maybe_complete_join(now_ms, false);
                    Ok(())
                } else {
                    group.validate_member(id, instance.as_deref())?;
                    tracing::info!(group = %crate::text::escape(group_id), member = %crate::text::escape(id), "member left");
                    group.remove_member(id, now_ms);
                    Ok(())
                }
            })
            .collect()
    }

    /// Time-driven steps of every group at `now_ms`.
    pub fn tick(&self, groups: &mut Groups, now_ms: i64) {
        for (name, g) in groups.iter_mut() {
            g.tick(name, now_ms);
        }
    }

    /// Groups in memory that ListGroups shows: Empty ones only exist
    /// through their committed offsets, Dead ones are going.
    pub fn list(&self, groups: &Groups) -> BTreeMap<String, GroupListing> {
        groups
            .iter()
            .filter(|(_, g)| !g.is(ClassicGroupState::Empty) && !g.is(ClassicGroupState::Dead))
            .map(|(name, g)| {
                (
                    name.clone(),
                    GroupListing {
                        state: g.state,
                        protocol_type: g.protocol_type.clone(),
                    },
                )
            })
            .collect()
    }

    /// DescribeGroups of one group in memory with members or a rebalance
    /// going on; `None` otherwise.
    pub fn describe(&self, groups: &Groups, group_id: &str) -> Option<GroupDescription> {
        let g = groups.get(group_id)?;
        if g.is(ClassicGroupState::Empty) && g.members.is_empty() {
            return None;
        }
        let stable = g.is(ClassicGroupState::Stable);
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone(),
            protocol_data: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }
}
