//! One classic group and its members: the data of the state machine and
//! the steps every request handler composes (start a rebalance, complete
//! the join phase, remove or replace a member). Pure: time comes in as
//! engine-clock milliseconds, answers to parked requests go out on their
//! oneshot channels.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use tokio::sync::oneshot;

use super::messages::{JoinResponse, JoinResult, JoinedMember, SyncResult};
use super::{ClassicGroupState, GroupError};
use crate::catalog::{StoredGroup, StoredMember};

/// A member of a classic group.
#[derive(Debug)]
pub(crate) struct ClassicGroupMember {
    pub id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    /// Protocols in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// A JoinGroup response being held.
    pub join_waiter: Option<oneshot::Sender<JoinResult>>,
    /// A SyncGroup response being held.
    pub sync_waiter: Option<oneshot::Sender<SyncResult>>,
    /// Engine-clock ms of the member's last sign of life; its session
    /// expires `session_timeout_ms` later.
    pub last_heartbeat_ms: i64,
}

impl ClassicGroupMember {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Whether its session has run out at `now_ms`. Members waiting for a
    /// join or sync response are alive.
    pub fn session_expired(&self, now_ms: i64) -> bool {
        self.join_waiter.is_none()
            && self.sync_waiter.is_none()
            && now_ms.saturating_sub(self.last_heartbeat_ms) > self.session_timeout_ms
    }
}

/// The first rebalance of an Empty group waits
/// `group.initial.rebalance.delay.ms` for more members; each member that
/// joins meanwhile extends the wait by another delay, in all at most the
/// group's rebalance timeout (Kafka's `InitialDelayedJoin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InitialDelay {
    /// When the current delay ends.
    pub until_ms: i64,
    /// One delay.
    pub delay_ms: i64,
    /// What is left of the rebalance timeout for further extensions.
    pub remaining_ms: i64,
    /// A member joined during the current delay.
    pub new_member_added: bool,
}

/// A classic group.
#[derive(Debug)]
pub(crate) struct ClassicGroup {
    pub state: ClassicGroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order.
    pub members: indexmap::IndexMap<String, ClassicGroupMember>,
    /// Member ids handed out with MEMBER_ID_REQUIRED (JoinGroup v4+) that
    /// have not joined yet, with when they expire (engine-clock ms).
    pub pending: HashMap<String, i64>,
    /// When a PreparingRebalance completes even if some members have not
    /// rejoined.
    pub rebalance_deadline_ms: Option<i64>,
    /// The initial rebalance delay of a group that was Empty.
    pub initial_delay: Option<InitialDelay>,
    /// Members of the current generation that have not sent SyncGroup yet;
    /// those still here at `sync_deadline_ms` (the rebalance timeout after
    /// the join completed) are removed, as Kafka does, so followers never
    /// wait forever for a leader that heartbeats but never syncs.
    pub pending_sync: BTreeSet<String>,
    pub sync_deadline_ms: Option<i64>,
    /// When the group's last member went (it became Empty after having
    /// members); its committed offsets expire from then (KIP-211).
    pub emptied_at_ms: Option<i64>,
    /// What the catalog holds for the group may be out of date (it became
    /// Stable, Empty or Dead, or a static member took a new member id).
    pub dirty: bool,
}

impl ClassicGroup {
    pub fn new() -> Self {
        ClassicGroup {
            state: ClassicGroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: indexmap::IndexMap::new(),
            pending: HashMap::new(),
            rebalance_deadline_ms: None,
            initial_delay: None,
            pending_sync: BTreeSet::new(),
            sync_deadline_ms: None,
            emptied_at_ms: None,
            dirty: false,
        }
    }

    /// A stored group as reloaded at coordinator start: Stable in its
    /// generation; every member gets one session timeout from `now_ms` to
    /// heartbeat.
    pub fn reload(stored: StoredGroup, now_ms: i64) -> Self {
        let protocol = stored.protocol_name.clone().unwrap_or_default();
        let mut g = ClassicGroup::new();
        g.state = ClassicGroupState::Stable;
        g.generation = stored.generation_id;
        g.protocol_type = stored.protocol_type;
        g.protocol = stored.protocol_name;
        g.leader = stored.leader_id;
        for m in stored.members {
            g.members.insert(
                m.member_id.clone(),
                ClassicGroupMember {
                    id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: i64::from(m.session_timeout_ms),
                    rebalance_timeout_ms: i64::from(m.rebalance_timeout_ms),
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat_ms: now_ms,
                },
            );
        }
        g
    }

    /// What the catalog stores for the group (its current generation).
    pub fn to_stored(&self, group_id: &str) -> StoredGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        StoredGroup {
            group_id: group_id.to_string(),
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader_id: self.leader.clone(),
            emptied_at_ms: None,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: i32::try_from(m.session_timeout_ms).unwrap_or(i32::MAX),
                    rebalance_timeout_ms: i32::try_from(m.rebalance_timeout_ms).unwrap_or(i32::MAX),
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// What the catalog stores for the group once it is Empty: no members,
    /// and when its last member went (its offsets age from then).
    pub fn to_stored_emptied(&self, group_id: &str, emptied_at_ms: i64) -> StoredGroup {
        StoredGroup {
            group_id: group_id.to_string(),
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: None,
            leader_id: None,
            emptied_at_ms: Some(emptied_at_ms),
            members: Vec::new(),
        }
    }

    /// Move to `target`, which must be allowed from the current state (see
    /// [`ClassicGroupState::valid_previous_states`]).
    pub fn transition_to(&mut self, target: ClassicGroupState) {
        debug_assert!(
            target.can_follow(self.state),
            "illegal group transition {:?} -> {:?}",
            self.state,
            target
        );
        self.state = target;
        if matches!(
            target,
            ClassicGroupState::Stable | ClassicGroupState::Empty | ClassicGroupState::Dead
        ) {
            self.dirty = true;
        }
    }

    pub fn is(&self, state: ClassicGroupState) -> bool {
        self.state == state
    }

    /// Nothing is left of it but possibly committed offsets.
    pub fn is_vacant(&self) -> bool {
        self.is(ClassicGroupState::Empty) && self.members.is_empty() && self.pending.is_empty()
    }

    /// Protocols every member supports.
    fn common_protocols(&self) -> BTreeSet<String> {
        let mut iter = self.members.values();
        let Some(first) = iter.next() else {
            return BTreeSet::new();
        };
        let mut common: BTreeSet<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in iter {
            let theirs: BTreeSet<String> = m.protocols.iter().map(|(n, _)| n.clone()).collect();
            common = common.intersection(&theirs).cloned().collect();
        }
        common
    }

    /// Whether a member offering `protocols` of `protocol_type` fits.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let common = self.common_protocols();
        protocols.iter().any(|(n, _)| common.contains(n))
    }

    /// The protocol for the next generation: each member votes for its most
    /// preferred protocol among those all support; most votes wins (ties
    /// by name, so the choice is deterministic).
    pub fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols();
        let mut votes: BTreeMap<String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| common.contains(n)) {
                *votes.entry(n.clone()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes.into_iter().find(|(_, v)| *v == best).map(|(n, _)| n)
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or_default()
    }

    /// Start (or keep going) a rebalance. `initial_delay_ms` applies only
    /// to a group that was Empty.
    pub fn prepare_rebalance(&mut self, now_ms: i64, initial_delay_ms: i64) {
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        if self.is(ClassicGroupState::CompletingRebalance) {
            // Assignments of the generation being completed are void:
            // followers waiting for theirs retry with a new JoinGroup.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        self.emptied_at_ms = None;
        if self.is(ClassicGroupState::PreparingRebalance) {
            return;
        }
        let timeout = self.max_rebalance_timeout_ms();
        if self.is(ClassicGroupState::Empty) && initial_delay_ms > 0 {
            let delay = initial_delay_ms.min(timeout.max(1));
            self.initial_delay = Some(InitialDelay {
                until_ms: now_ms.saturating_add(delay),
                delay_ms: delay,
                remaining_ms: (timeout - delay).max(0),
                new_member_added: false,
            });
            self.rebalance_deadline_ms = None;
        } else {
            self.rebalance_deadline_ms = Some(now_ms.saturating_add(timeout));
        }
        self.transition_to(ClassicGroupState::PreparingRebalance);
    }

    /// Complete the join phase if every member rejoined (and no initial
    /// delay is running), or `force` (rebalance timeout, end of the
    /// initial delay).
    pub fn maybe_complete_join(&mut self, now_ms: i64, force: bool) {
        if !self.is(ClassicGroupState::PreparingRebalance) {
            return;
        }
        if !force && (self.initial_delay.is_some() || !self.all_joined()) {
            return;
        }
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(member = %crate::text::escape(&id), "member did not rejoin before the rebalance timeout");
            self.members.shift_remove(&id);
        }
        self.pending.clear();
        self.initial_delay = None;
        self.rebalance_deadline_ms = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.emptied_at_ms = Some(now_ms);
            self.transition_to(ClassicGroupState::Empty);
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.transition_to(ClassicGroupState::CompletingRebalance);
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline_ms = Some(now_ms.saturating_add(self.max_rebalance_timeout_ms()));
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let everyone = self.joined_members(&protocol);
        for m in self.members.values_mut() {
            m.last_heartbeat_ms = now_ms;
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(Ok(JoinResponse {
                    generation_id: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                }));
            }
        }
        tracing::info!(generation = self.generation, members = self.members.len(), protocol = %crate::text::escape(&protocol), "group rebalanced");
    }

    fn joined_members(&self, protocol: &str) -> Vec<JoinedMember> {
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(protocol),
            })
            .collect()
    }

    /// Add a new member (its JoinGroup parked on `tx`) and start or join
    /// the rebalance.
    pub fn add_and_join(
        &mut self,
        mut member: ClassicGroupMember,
        protocol_type: &str,
        tx: oneshot::Sender<JoinResult>,
        now_ms: i64,
        initial_delay_ms: i64,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(protocol_type.to_string());
        }
        member.join_waiter = Some(tx);
        self.members.insert(member.id.clone(), member);
        if let Some(d) = self.initial_delay.as_mut() {
            d.new_member_added = true;
        }
        self.prepare_rebalance(now_ms, initial_delay_ms);
        self.maybe_complete_join(now_ms, false);
    }

    /// Remove a member (left or expired) and rebalance the rest.
    pub fn remove_member(&mut self, id: &str, now_ms: i64) {
        let Some(mut m) = self.members.shift_remove(id) else {
            return;
        };
        self.pending_sync.remove(id);
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(Err(GroupError::unknown_member(id)));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(Err(GroupError::unknown_member(id)));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        match self.state {
            ClassicGroupState::Stable | ClassicGroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, 0);
                self.maybe_complete_join(now_ms, false);
            }
            ClassicGroupState::PreparingRebalance => self.maybe_complete_join(now_ms, false),
            ClassicGroupState::Empty | ClassicGroupState::Dead => {}
        }
    }

    /// The join response a member gets without waiting (its generation is
    /// already formed).
    pub fn current_join_response(&self, member: &str) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        JoinResponse {
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            members: if leader == member {
                self.joined_members(&protocol)
            } else {
                Vec::new()
            },
            protocol_name: protocol,
            leader,
            member_id: member.to_string(),
        }
    }

    /// Topics the members subscribe to, when the group speaks the consumer
    /// protocol; `None` when that cannot be told (then every topic counts
    /// as subscribed).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.clone()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(subscription_topics(&m.metadata_for(&protocol))?);
        }
        Some(topics)
    }

    /// The member id registered for static member `instance` (KIP-345).
    pub fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.group_instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// Kafka's `validateCurrentMember`: FencedInstanceId when `instance`
    /// is registered under another member id, else UnknownMemberId when
    /// `member` is not in the group.
    pub fn validate_member(&self, member: &str, instance: Option<&str>) -> Result<(), GroupError> {
        if let Some(i) = instance {
            if self
                .static_member(i)
                .is_some_and(|registered| registered != member)
            {
                return Err(GroupError::FencedInstanceId {
                    instance_id: i.to_string(),
                });
            }
        }
        if !self.members.contains_key(member) {
            return Err(GroupError::unknown_member(member));
        }
        Ok(())
    }

    /// Static member `old` takes member id `new` (KIP-345): same place in
    /// the join order, same assignment; a join or sync of `old` still held
    /// is answered FencedInstanceId; leadership and a pending SyncGroup
    /// move to `new`. From now on `old` is unknown (fenced when it names its
    /// instance id).
    fn replace_static_member(&mut self, old: &str, new: &str) {
        let Some((index, _, mut m)) = self.members.shift_remove_full(old) else {
            return;
        };
        let fenced = || GroupError::FencedInstanceId {
            instance_id: m.group_instance_id.clone().unwrap_or_default(),
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(Err(fenced()));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(Err(fenced()));
        }
        m.id = new.to_string();
        self.members.shift_insert(index, new.to_string(), m);
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new.to_string());
        }
        if self.pending_sync.remove(old) {
            self.pending_sync.insert(new.to_string());
        }
        self.dirty = true;
    }

    /// A known static member rejoins with an unknown member id: `joining`
    /// (its new id, protocols and timeouts) replaces the registered member,
    /// as Kafka's `updateStaticMemberAndRebalance` does. In a Stable group
    /// whose selected protocol and this member's subscribed topics stay the
    /// same the answer is immediate (returned): the current generation, no
    /// rebalance. As JoinGroup v0-v8 has no `skip_assignment`, a replaced
    /// leader is told the old leader id and no members, so it does not run
    /// the assignor and its SyncGroup gets its current assignment (the group
    /// records the new id as leader for the next rebalance). Otherwise the
    /// join is held: in PreparingRebalance it simply joins; in
    /// CompletingRebalance (the leader may be assigning to the old id) and
    /// for a changed protocol or subscription a rebalance starts.
    pub fn rejoin_static(
        &mut self,
        old: &str,
        joining: ClassicGroupMember,
        tx: oneshot::Sender<JoinResult>,
        now_ms: i64,
    ) -> Option<JoinResponse> {
        let old_leader = self.leader.clone().unwrap_or_default();
        let new_id = joining.id.clone();
        self.replace_static_member(old, &new_id);
        let protocol = self.protocol.clone().unwrap_or_default();
        let consumer = self.protocol_type.as_deref() == Some("consumer");
        let m = self.members.get_mut(&new_id)?;
        let before = m.metadata_for(&protocol);
        m.protocols = joining.protocols;
        m.session_timeout_ms = joining.session_timeout_ms;
        m.rebalance_timeout_ms = joining.rebalance_timeout_ms;
        m.client_id = joining.client_id;
        m.client_host = joining.client_host;
        m.last_heartbeat_ms = now_ms;
        let after = m.metadata_for(&protocol);
        let same_subscription = match (
            consumer,
            subscription_topics(&before),
            subscription_topics(&after),
        ) {
            (true, Some(b), Some(a)) => a == b,
            _ => before == after,
        };
        if self.is(ClassicGroupState::Stable)
            && same_subscription
            && self.select_protocol() == self.protocol
        {
            tracing::info!(member = %crate::text::escape(&new_id), replaced = %crate::text::escape(old), "static member rejoined a stable group: no rebalance");
            let mut resp = self.current_join_response(&new_id);
            resp.leader = old_leader;
            resp.members = Vec::new();
            return Some(resp);
        }
        if let Some(m) = self.members.get_mut(&new_id) {
            m.join_waiter = Some(tx);
        }
        self.prepare_rebalance(now_ms, 0);
        self.maybe_complete_join(now_ms, false);
        None
    }

    /// Time-driven steps at `now_ms`: pending member ids, sessions, the
    /// sync deadline, the initial delay and the rebalance timeout.
    pub fn tick(&mut self, name: &str, now_ms: i64) {
        let before = self.pending.len();
        self.pending.retain(|_, until| *until > now_ms);
        if self.pending.len() != before {
            self.maybe_complete_join(now_ms, false);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_expired(now_ms))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %crate::text::escape(name), member = %crate::text::escape(&id), "session timed out: removing the member");
            self.remove_member(&id, now_ms);
        }
        if self.sync_deadline_ms.is_some_and(|d| now_ms >= d) {
            self.sync_deadline_ms = None;
            let unsynced = std::mem::take(&mut self.pending_sync);
            for id in unsynced {
                tracing::info!(group = %crate::text::escape(name), member = %crate::text::escape(&id), "no SyncGroup within the rebalance timeout: removing the member");
                self.remove_member(&id, now_ms);
            }
        }
        if !self.is(ClassicGroupState::PreparingRebalance) {
            return;
        }
        if let Some(d) = self.initial_delay {
            if now_ms < d.until_ms {
                return;
            }
            if d.new_member_added && d.remaining_ms > 0 {
                let extra = d.delay_ms.min(d.remaining_ms);
                self.initial_delay = Some(InitialDelay {
                    until_ms: d.until_ms.saturating_add(extra),
                    delay_ms: d.delay_ms,
                    remaining_ms: d.remaining_ms - extra,
                    new_member_added: false,
                });
                return;
            }
            self.maybe_complete_join(now_ms, true);
        } else if self.rebalance_deadline_ms.is_some_and(|d| now_ms >= d) {
            self.maybe_complete_join(now_ms, true);
        } else {
            self.maybe_complete_join(now_ms, false);
        }
    }
}

/// Topics of a consumer protocol subscription (`ConsumerProtocolSubscription`,
/// any version); `None` when it does not decode.
pub(crate) fn subscription_topics(metadata: &Bytes) -> Option<BTreeSet<String>> {
    let mut meta = metadata.clone();
    if meta.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([meta[0], meta[1]]);
    let _ = bytes::Buf::get_i16(&mut meta);
    // Newer versions only add fields at the end.
    let sub = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)).ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}
