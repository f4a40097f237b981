//! The group coordinator: FindCoordinator, the classic rebalance protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), committed offsets
//! (OffsetCommit, OffsetFetch, OffsetDelete) and group administration
//! (ListGroups, DescribeGroups, DeleteGroups).
//!
//! Owns group membership, in memory: generations, member ids, the leader,
//! assignments, session and rebalance deadlines. After a restart consumers
//! rejoin, as they do when a Kafka coordinator moves. Committed offsets are
//! the catalog's (durable); this module only checks that a commit comes
//! from a current member. Assignors are the clients' job: the leader's
//! SyncGroup carries every member's assignment, the broker only relays it.
//!
//! Each group runs Kafka's state machine:
//!
//! ```text
//! Empty ──join──► PreparingRebalance ──all joined / rebalance timeout──► CompletingRebalance
//!   ▲                   ▲      │                                           │ leader's SyncGroup
//!   └── last member ────┘      └──────── a member joins, leaves, expires ◄─┴──► Stable
//! ```
//!
//! JoinGroup responses are held until every known member has rejoined or
//! the rebalance timeout passes; followers' SyncGroup responses until the
//! leader's assignment arrives. A held request waits on a oneshot channel,
//! never while holding the groups lock. One timer task
//! ([`GroupCoordinator::run_timers`]) expires sessions, pending member ids,
//! rebalance deadlines and sync deadlines (members that have not sent
//! SyncGroup within the rebalance timeout after their join completed are
//! removed). Must never block on I/O while holding the groups lock (catalog
//! writes happen after it is released); offset writes of one group are
//! serialised with their membership checks by a per-group async lock.
//!
//! Static members (KIP-345, `group.instance.id`): a member is registered
//! under its instance id; one that rejoins with an unknown member id takes
//! a new member id and the old one is fenced (FENCED_INSTANCE_ID wherever
//! it names the instance id). In a Stable group it gets the current
//! generation and its assignment back without a rebalance (see
//! [`Group::rejoin_static`]). Static members never leave on their own
//! (clients send no LeaveGroup for them); they go by session timeout or a
//! LeaveGroup naming their instance id.
//!
//! Committed offsets expire (KIP-211) by [`run_offset_expiry`], a task
//! [`super::serve`] owns and awaits at shutdown: groups with members keep
//! them; the coordinator remembers when each group emptied out, the one
//! thing about expiry it keeps in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Ctx, NODE_ID};
use crate::catalog::CommittedOffset;

/// Coordinator settings (Kafka's `group.*` broker configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of
    /// an empty group waits for more members.
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.retention.minutes`, in milliseconds: how long committed
    /// offsets of a group without members are kept (KIP-211).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: between expiry rounds.
    pub offsets_retention_check_interval_ms: i64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 3_600_000,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}

/// Largest committed offset metadata accepted (Kafka's
/// `offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;

/// How often the timer task looks at deadlines.
const TICK: Duration = Duration::from_millis(100);

const NONE: i16 = 0;

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

struct Member {
    id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    /// Protocols in the member's order of preference.
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// A JoinGroup response being held.
    join_waiter: Option<oneshot::Sender<JoinGroupResponse>>,
    /// A SyncGroup response being held.
    sync_waiter: Option<oneshot::Sender<SyncGroupResponse>>,
    last_heartbeat: Instant,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// In join order.
    members: indexmap::IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED (JoinGroup v4+) that
    /// have not joined yet, with when they expire.
    pending: HashMap<String, Instant>,
    /// When a PreparingRebalance completes even if some members have not
    /// rejoined.
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group does not complete before this
    /// (`group.initial.rebalance.delay.ms`).
    initial_delay_until: Option<Instant>,
    /// Members of the current generation that have not sent SyncGroup yet;
    /// those still here at `sync_deadline` (the rebalance timeout after
    /// the join completed) are removed, as Kafka does, so followers never
    /// wait forever for a leader that heartbeats but never syncs.
    pending_sync: BTreeSet<String>,
    sync_deadline: Option<Instant>,
    /// DeleteGroups is deleting the group's offsets: joins are refused
    /// (COORDINATOR_NOT_AVAILABLE, Kafka's answer for a Dead group).
    deleting: bool,
    /// When the group's last member went (it became Empty after having
    /// members); its committed offsets expire from then (KIP-211).
    emptied_at: Option<Instant>,
}

impl Group {
    fn new() -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: indexmap::IndexMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            pending_sync: BTreeSet::new(),
            sync_deadline: None,
            deleting: false,
            emptied_at: None,
        }
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
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
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
    fn select_protocol(&self) -> Option<String> {
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

    /// Start (or keep going) a rebalance.
    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        self.pending_sync.clear();
        self.sync_deadline = None;
        if self.state == GroupState::CompletingRebalance {
            // Assignments of the generation being completed are void:
            // followers waiting for theirs retry with a new JoinGroup.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(
                        SyncGroupResponse::default()
                            .with_error_code(code(ResponseError::RebalanceInProgress)),
                    );
                }
            }
        }
        if self.state == GroupState::Empty && !initial_delay.is_zero() {
            self.initial_delay_until = Some(now + initial_delay);
        }
        self.emptied_at = None;
        if self.state != GroupState::PreparingRebalance {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default();
            self.rebalance_deadline = Some(now + timeout);
            self.state = GroupState::PreparingRebalance;
        }
    }

    /// Complete the join phase if every member rejoined (and the initial
    /// delay is over), or `force` (rebalance timeout).
    fn maybe_complete_join(&mut self, now: Instant, force: bool) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if !force {
            if !self.all_joined() {
                return;
            }
            if self.initial_delay_until.is_some_and(|t| now < t) {
                return;
            }
        }
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(member = %id, "member did not rejoin before the rebalance timeout");
            self.members.shift_remove(&id);
        }
        self.pending.clear();
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.emptied_at = Some(now);
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
        self.state = GroupState::CompletingRebalance;
        self.pending_sync = self.members.keys().cloned().collect();
        let sync_timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.sync_deadline = Some(now + sync_timeout);
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let everyone: Vec<join_group_response::JoinGroupResponseMember> = self
            .members
            .values()
            .map(|m| {
                join_group_response::JoinGroupResponseMember::default()
                    .with_member_id(s(&m.id))
                    .with_group_instance_id(m.group_instance_id.as_deref().map(s))
                    .with_metadata(m.metadata_for(&protocol))
            })
            .collect();
        for m in self.members.values_mut() {
            m.last_heartbeat = now;
            if let Some(w) = m.join_waiter.take() {
                let resp = JoinGroupResponse::default()
                    .with_generation_id(self.generation)
                    .with_protocol_type(self.protocol_type.as_deref().map(s))
                    .with_protocol_name(Some(s(&protocol)))
                    .with_leader(s(&leader))
                    .with_member_id(s(&m.id))
                    .with_members(if m.id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    });
                let _ = w.send(resp);
            }
        }
        tracing::info!(generation = self.generation, members = self.members.len(), %protocol, "group rebalanced");
    }

    /// Remove a member (left or expired) and rebalance the rest.
    fn remove_member(&mut self, id: &str, now: Instant) {
        let Some(mut m) = self.members.shift_remove(id) else {
            return;
        };
        self.pending_sync.remove(id);
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(
                JoinGroupResponse::default()
                    .with_error_code(code(ResponseError::UnknownMemberId))
                    .with_member_id(s(id)),
            );
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(
                SyncGroupResponse::default().with_error_code(code(ResponseError::UnknownMemberId)),
            );
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, Duration::ZERO);
                self.maybe_complete_join(now, false);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, false),
            GroupState::Empty => {}
        }
    }

    /// The join response a member gets without waiting (its generation is
    /// already formed).
    fn current_join_response(&self, member: &str) -> JoinGroupResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member {
            self.members
                .values()
                .map(|m| {
                    join_group_response::JoinGroupResponseMember::default()
                        .with_member_id(s(&m.id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(s))
                        .with_metadata(m.metadata_for(&protocol))
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.as_deref().map(s))
            .with_protocol_name(Some(s(&protocol)))
            .with_leader(s(&leader))
            .with_member_id(s(member))
            .with_members(members)
    }

    /// Topics the members subscribe to, when the group speaks the consumer
    /// protocol; `None` when that cannot be told (then every topic counts
    /// as subscribed).
    fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
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
    fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.group_instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// Kafka's `validateCurrentMember`: FENCED_INSTANCE_ID when `instance`
    /// is registered under another member id, else UNKNOWN_MEMBER_ID when
    /// `member` is not in the group.
    fn validate_member(&self, member: &str, instance: Option<&str>) -> Result<(), i16> {
        if let Some(registered) = instance.and_then(|i| self.static_member(i)) {
            if registered != member {
                return Err(code(ResponseError::FencedInstanceId));
            }
        }
        if !self.members.contains_key(member) {
            return Err(code(ResponseError::UnknownMemberId));
        }
        Ok(())
    }

    /// Static member `old` takes member id `new` (KIP-345): same place in
    /// the join order, same assignment; a join or sync of `old` still held
    /// is answered FENCED_INSTANCE_ID; leadership and a pending SyncGroup
    /// move to `new`. From now on `old` is unknown (fenced when it names its
    /// instance id).
    fn replace_static_member(&mut self, old: &str, new: &str) {
        let Some((index, _, mut m)) = self.members.shift_remove_full(old) else {
            return;
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(join_error(ResponseError::FencedInstanceId, old));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(sync_error(ResponseError::FencedInstanceId));
        }
        m.id = new.to_string();
        self.members.shift_insert(index, new.to_string(), m);
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new.to_string());
        }
        if self.pending_sync.remove(old) {
            self.pending_sync.insert(new.to_string());
        }
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
    fn rejoin_static(
        &mut self,
        old: &str,
        joining: Member,
        tx: oneshot::Sender<JoinGroupResponse>,
        now: Instant,
    ) -> Option<JoinGroupResponse> {
        let old_leader = self.leader.clone().unwrap_or_default();
        let new_id = joining.id.clone();
        self.replace_static_member(old, &new_id);
        let protocol = self.protocol.clone().unwrap_or_default();
        let consumer = self.protocol_type.as_deref() == Some("consumer");
        let m = self.members.get_mut(&new_id)?;
        let before = m.metadata_for(&protocol);
        m.protocols = joining.protocols;
        m.session_timeout = joining.session_timeout;
        m.rebalance_timeout = joining.rebalance_timeout;
        m.client_id = joining.client_id;
        m.client_host = joining.client_host;
        m.last_heartbeat = now;
        let after = m.metadata_for(&protocol);
        let same_subscription = match (
            consumer,
            subscription_topics(&before),
            subscription_topics(&after),
        ) {
            (true, Some(b), Some(a)) => a == b,
            _ => before == after,
        };
        if self.state == GroupState::Stable
            && same_subscription
            && self.select_protocol() == self.protocol
        {
            tracing::info!(member = %new_id, replaced = %old, "static member rejoined a stable group: no rebalance");
            return Some(
                self.current_join_response(&new_id)
                    .with_leader(s(&old_leader))
                    .with_members(Vec::new()),
            );
        }
        if let Some(m) = self.members.get_mut(&new_id) {
            m.join_waiter = Some(tx);
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, Duration::ZERO);
        }
        self.maybe_complete_join(now, false);
        None
    }
}

/// Topics of a consumer protocol subscription (`ConsumerProtocolSubscription`,
/// any version); `None` when it does not decode.
fn subscription_topics(metadata: &Bytes) -> Option<BTreeSet<String>> {
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

/// Every group this broker coordinates.
pub(crate) struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    /// Per group: held from an offset write's membership check until the
    /// catalog write is done (OffsetCommit, OffsetDelete, DeleteGroups), so
    /// a member fenced by a rebalance after its check cannot overwrite the
    /// new generation's commits, and a delete cannot interleave with a
    /// commit.
    offset_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    settings: GroupSettings,
    /// When groups forgotten from `groups` (Empty, no members left) lost
    /// their last member in this broker run: their committed offsets
    /// expire from then. Locked after `groups`, never before.
    emptied: Mutex<HashMap<String, Instant>>,
    /// The engine clock when the coordinator started: offsets of groups
    /// this run has not seen empty out expire counting from here at the
    /// earliest.
    started_ms: i64,
}

/// A group's offset lock, held until dropped (it may be moved into the
/// blocking task that writes the catalog, so a cancelled request still
/// holds it until its write is done).
pub(crate) struct OffsetsGuard {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    group: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for OffsetsGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = crate::lock(&self.locks);
        // Only the map holds it: nobody waits, forget it.
        if locks
            .get(&self.group)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.group);
        }
    }
}

impl GroupCoordinator {
    /// A coordinator with no groups; `started_ms` is the engine clock now.
    pub fn new(settings: GroupSettings, started_ms: i64) -> Self {
        GroupCoordinator {
            groups: Mutex::new(HashMap::new()),
            offset_locks: Arc::default(),
            settings,
            emptied: Mutex::new(HashMap::new()),
            started_ms,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        crate::lock(&self.groups)
    }

    /// Wait for `group`'s offset lock.
    async fn lock_offsets(&self, group: &str) -> OffsetsGuard {
        let lock = Arc::clone(
            crate::lock(&self.offset_locks)
                .entry(group.to_string())
                .or_default(),
        );
        OffsetsGuard {
            locks: Arc::clone(&self.offset_locks),
            group: group.to_string(),
            guard: Some(lock.lock_owned().await),
        }
    }

    /// Expire sessions, pending member ids and rebalance timeouts, every
    /// [`TICK`], until the task is aborted.
    pub async fn run_timers(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.expire(Instant::now());
        }
    }

    fn expire(&self, now: Instant) {
        let mut groups = self.lock();
        for (name, g) in groups.iter_mut() {
            let before = g.pending.len();
            g.pending.retain(|_, until| *until > now);
            if g.pending.len() != before {
                g.maybe_complete_join(now, false);
            }
            // Members waiting for a join or sync response are alive.
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| {
                    m.join_waiter.is_none()
                        && m.sync_waiter.is_none()
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %name, member = %id, "session timed out: removing the member");
                g.remove_member(&id, now);
            }
            if g.sync_deadline.is_some_and(|d| now >= d) {
                g.sync_deadline = None;
                let unsynced = std::mem::take(&mut g.pending_sync);
                for id in unsynced {
                    tracing::info!(group = %name, member = %id, "no SyncGroup within the rebalance timeout: removing the member");
                    g.remove_member(&id, now);
                }
            }
            if g.state == GroupState::PreparingRebalance {
                if g.rebalance_deadline.is_some_and(|d| now >= d) {
                    g.maybe_complete_join(now, true);
                } else {
                    g.maybe_complete_join(now, false);
                }
            }
        }
        // Nothing is left of a group without members: forget it (its
        // committed offsets stay in the catalog), so transient group ids do
        // not pile up. When it emptied out is kept for offset expiry.
        let mut emptied = crate::lock(&self.emptied);
        groups.retain(|name, g| {
            let keep = g.deleting
                || !(g.state == GroupState::Empty && g.members.is_empty() && g.pending.is_empty());
            if let (false, Some(at)) = (keep, g.emptied_at) {
                emptied.insert(name.clone(), at);
            }
            keep
        });
    }

    /// From when `group`'s committed offsets age, in engine-clock ms
    /// (`now_ms` is that clock at `now`): `None` while the group has
    /// members or is not Empty (its offsets are kept); else the instant its
    /// last member went, or, when this run has not seen it empty out, the
    /// coordinator's start. An offset expires once the later of this and
    /// its own commit time is older than the retention.
    fn offsets_age_from(&self, group: &str, now: Instant, now_ms: i64) -> Option<i64> {
        let to_ms = |at: Instant| {
            let ago =
                i64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(i64::MAX);
            now_ms.saturating_sub(ago)
        };
        let groups = self.lock();
        match groups.get(group) {
            Some(g)
                if g.deleting
                    || g.state != GroupState::Empty
                    || !g.members.is_empty()
                    || !g.pending.is_empty() =>
            {
                None
            }
            Some(g) => Some(g.emptied_at.map_or(self.started_ms, to_ms)),
            None => Some(
                crate::lock(&self.emptied)
                    .get(group)
                    .copied()
                    .map_or(self.started_ms, to_ms),
            ),
        }
    }
}

// ---- Committed offset expiry (KIP-211) ---------------------------------------

/// Delete expired committed offsets every
/// `offsets.retention.check.interval.ms` until `shutdown` turns true (or
/// its sender goes). Kafka ≥ 2.1's rule: a group with members, or in any
/// state but Empty, keeps every offset; an Empty group's offsets expire
/// `offsets.retention.minutes` after it lost its last member; offsets of a
/// group that never had members here (standalone commits of `assign()`
/// consumers) expire that long after their own commit. Ages count from the
/// later of the commit time and that instant (see
/// [`GroupCoordinator::offsets_age_from`]).
pub(crate) async fn run_offset_expiry(
    ctx: Arc<Ctx>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(
        u64::try_from(ctx.groups.settings.offsets_retention_check_interval_ms)
            .unwrap_or(1)
            .max(1),
    );
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        expire_offsets(&ctx, &shutdown).await;
    }
}

/// One expiry round: one catalog transaction per group with something to
/// expire, under that group's offset lock (so no commit interleaves).
async fn expire_offsets(ctx: &Arc<Ctx>, shutdown: &tokio::sync::watch::Receiver<bool>) {
    let coordinator = &ctx.groups;
    let retention = coordinator.settings.offsets_retention_ms;
    let now = Instant::now();
    let now_ms = ctx.engine.now_ms();
    let cutoff = now_ms.saturating_sub(retention);
    {
        // Once both it and the start are past the retention, an emptied
        // instant no longer changes what expires: forget it.
        let started_long_ago = coordinator.started_ms <= cutoff;
        crate::lock(&coordinator.emptied).retain(|_, at| {
            !started_long_ago || now.saturating_duration_since(*at).as_millis() < retention as u128
        });
    }
    let names = match ctx
        .blocking(|engine| engine.groups_with_offsets())
        .await
        .and_then(|r| r)
    {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "offset expiry: cannot list groups with committed offsets");
            return;
        }
    };
    for name in names {
        if *shutdown.borrow() {
            return;
        }
        let guard = coordinator.lock_offsets(&name).await;
        match coordinator.offsets_age_from(&name, now, now_ms) {
            Some(from) if from <= cutoff => {}
            _ => continue,
        }
        let n = name.clone();
        match ctx
            .blocking(move |engine| {
                let expired = engine.expire_committed_offsets(&n, cutoff);
                drop(guard);
                expired
            })
            .await
            .and_then(|r| r)
        {
            Ok(0) => {}
            Ok(count) => tracing::info!(group = %name, count, "committed offsets expired"),
            Err(e) => tracing::error!(group = %name, error = %e, "cannot expire committed offsets"),
        }
    }
}

// ---- FindCoordinator -------------------------------------------------------

pub fn find_coordinator(
    ctx: &Arc<Ctx>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    // 0 = group, 1 = transaction (transactions are not supported).
    let (error, message) = match req.key_type {
        0 => (NONE, None),
        _ => (
            code(ResponseError::CoordinatorNotAvailable),
            Some(s("transactions are not supported by tierlog")),
        ),
    };
    let host = s(&ctx.settings.advertised_host);
    let port = ctx.settings.advertised_port;
    let node = if error == NONE { NODE_ID } else { -1 };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|k| {
                find_coordinator_response::Coordinator::default()
                    .with_key(k)
                    .with_node_id(node.into())
                    .with_host(if error == NONE { host.clone() } else { s("") })
                    .with_port(if error == NONE { port } else { -1 })
                    .with_error_code(error)
                    .with_error_message(message.clone())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_error_message(message)
        .with_node_id(node.into())
        .with_host(if error == NONE { host } else { s("") })
        .with_port(if error == NONE { port } else { -1 })
}

// ---- JoinGroup ---------------------------------------------------------------

fn join_error(e: ResponseError, member: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code(e))
        .with_generation_id(-1)
        .with_member_id(s(member))
        .with_protocol_name(Some(s("")))
}

pub async fn join_group(
    ctx: &Arc<Ctx>,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    let coordinator = &ctx.groups;
    let settings = coordinator.settings;
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    // KIP-345 (v5+): a static member.
    let instance_id = req.group_instance_id.as_ref().map(|i| i.to_string());
    if group_id.is_empty() {
        return join_error(ResponseError::InvalidGroupId, &member_id);
    }
    if req.session_timeout_ms < settings.min_session_timeout_ms
        || req.session_timeout_ms > settings.max_session_timeout_ms
    {
        return join_error(ResponseError::InvalidSessionTimeout, &member_id);
    }
    // v0 has no rebalance timeout: it is the session timeout.
    let rebalance_timeout_ms = if version == 0 || req.rebalance_timeout_ms <= 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    };
    let protocol_type = req.protocol_type.to_string();
    let protocols: Vec<(String, Bytes)> = req
        .protocols
        .iter()
        .map(|p| (p.name.to_string(), p.metadata.clone()))
        .collect();
    let now = Instant::now();
    let initial_delay = Duration::from_millis(settings.initial_rebalance_delay_ms.max(0) as u64);
    let waiter = {
        let mut groups = coordinator.lock();
        if !member_id.is_empty() && !groups.contains_key(&group_id) {
            return join_error(ResponseError::UnknownMemberId, &member_id);
        }
        let group = groups.entry(group_id.clone()).or_insert_with(Group::new);
        if group.deleting {
            return join_error(ResponseError::CoordinatorNotAvailable, &member_id);
        }
        if !group.supports(&protocol_type, &protocols) {
            return join_error(ResponseError::InconsistentGroupProtocol, &member_id);
        }
        let new_member = |id: String| Member {
            id,
            group_instance_id: instance_id.clone(),
            client_id: client_id.to_string(),
            client_host: client_host.to_string(),
            session_timeout: Duration::from_millis(req.session_timeout_ms as u64),
            rebalance_timeout: Duration::from_millis(rebalance_timeout_ms as u64),
            protocols: protocols.clone(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            last_heartbeat: now,
        };
        let (tx, rx) = oneshot::channel();
        if let (true, Some(instance)) = (member_id.is_empty(), &instance_id) {
            // A static member gets its id at once (no MEMBER_ID_REQUIRED
            // step); a known instance id replaces its registered member.
            let id = format!("{instance}-{}", uuid::Uuid::new_v4());
            match group.static_member(instance).map(str::to_string) {
                Some(old) => {
                    if let Some(resp) = group.rejoin_static(&old, new_member(id), tx, now) {
                        return resp;
                    }
                }
                None => add_and_join(
                    group,
                    new_member(id),
                    &protocol_type,
                    tx,
                    now,
                    initial_delay,
                ),
            }
        } else if member_id.is_empty() {
            let id = format!("{client_id}-{}", uuid::Uuid::new_v4());
            if version >= 4 {
                // KIP-394: the client retries with this id; until then it
                // holds no place in the group.
                group.pending.insert(
                    id.clone(),
                    now + Duration::from_millis(req.session_timeout_ms as u64),
                );
                return join_error(ResponseError::MemberIdRequired, &id);
            }
            add_and_join(
                group,
                new_member(id),
                &protocol_type,
                tx,
                now,
                initial_delay,
            );
        } else if group.pending.remove(&member_id).is_some() {
            add_and_join(
                group,
                new_member(member_id.clone()),
                &protocol_type,
                tx,
                now,
                initial_delay,
            );
        } else {
            if let Err(e) = group.validate_member(&member_id, instance_id.as_deref()) {
                return JoinGroupResponse::default()
                    .with_error_code(e)
                    .with_generation_id(-1)
                    .with_member_id(s(&member_id))
                    .with_protocol_name(Some(s("")));
            }
            let Some(m) = group.members.get_mut(&member_id) else {
                return join_error(ResponseError::UnknownMemberId, &member_id);
            };
            let changed = m.protocols != protocols;
            m.protocols = protocols.clone();
            m.session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
            m.rebalance_timeout = Duration::from_millis(rebalance_timeout_ms as u64);
            m.last_heartbeat = now;
            let is_leader = group.leader.as_deref() == Some(member_id.as_str());
            match group.state {
                GroupState::PreparingRebalance => {
                    m.join_waiter = Some(tx);
                    group.maybe_complete_join(now, false);
                }
                GroupState::CompletingRebalance | GroupState::Stable
                    if !(changed || is_leader && group.state == GroupState::Stable) =>
                {
                    // Already in the current generation (a retried join).
                    return group.current_join_response(&member_id);
                }
                _ => {
                    m.join_waiter = Some(tx);
                    group.prepare_rebalance(now, Duration::ZERO);
                    group.maybe_complete_join(now, false);
                }
            }
        }
        rx
    };
    match waiter.await {
        Ok(resp) => resp,
        // Replaced by a newer JoinGroup of the same member, or the broker is
        // shutting down.
        Err(_) => join_error(ResponseError::RebalanceInProgress, &member_id),
    }
}

fn add_and_join(
    group: &mut Group,
    mut member: Member,
    protocol_type: &str,
    tx: oneshot::Sender<JoinGroupResponse>,
    now: Instant,
    initial_delay: Duration,
) {
    if group.members.is_empty() {
        group.protocol_type = Some(protocol_type.to_string());
    }
    member.join_waiter = Some(tx);
    group.members.insert(member.id.clone(), member);
    group.prepare_rebalance(now, initial_delay);
    group.maybe_complete_join(now, false);
}

// ---- SyncGroup ---------------------------------------------------------------

fn sync_error(e: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code(e))
}

pub async fn sync_group(ctx: &Arc<Ctx>, req: SyncGroupRequest) -> SyncGroupResponse {
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let now = Instant::now();
    let waiter = {
        let mut groups = ctx.groups.lock();
        let Some(group) = groups.get_mut(&group_id) else {
            return sync_error(ResponseError::UnknownMemberId);
        };
        if let Err(e) = group.validate_member(&member_id, req.group_instance_id.as_deref()) {
            return SyncGroupResponse::default().with_error_code(e);
        }
        if req.generation_id != group.generation {
            return sync_error(ResponseError::IllegalGeneration);
        }
        let mismatched = |sent: &Option<StrBytes>, ours: &Option<String>| {
            sent.as_ref()
                .is_some_and(|p| ours.as_deref() != Some(p.as_str()))
        };
        if mismatched(&req.protocol_type, &group.protocol_type)
            || mismatched(&req.protocol_name, &group.protocol)
        {
            return sync_error(ResponseError::InconsistentGroupProtocol);
        }
        if matches!(
            group.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) {
            group.pending_sync.remove(&member_id);
            if group.pending_sync.is_empty() {
                group.sync_deadline = None;
            }
        }
        let protocol_type = group.protocol_type.as_deref().map(s);
        let protocol_name = group.protocol.as_deref().map(s);
        let ok = |assignment: Bytes| {
            SyncGroupResponse::default()
                .with_protocol_type(protocol_type.clone())
                .with_protocol_name(protocol_name.clone())
                .with_assignment(assignment)
        };
        match group.state {
            GroupState::Empty => return sync_error(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                return sync_error(ResponseError::RebalanceInProgress)
            }
            GroupState::Stable => {
                let m = &mut group.members[&member_id];
                m.last_heartbeat = now;
                return ok(m.assignment.clone());
            }
            GroupState::CompletingRebalance => {}
        }
        let (tx, rx) = oneshot::channel();
        if let Some(m) = group.members.get_mut(&member_id) {
            m.last_heartbeat = now;
            m.sync_waiter = Some(tx);
        }
        if group.leader.as_deref() == Some(member_id.as_str()) {
            let mut assignments: HashMap<String, Bytes> = req
                .assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect();
            for m in group.members.values_mut() {
                m.assignment = assignments.remove(&m.id).unwrap_or_default();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(ok(m.assignment.clone()));
                }
            }
            group.state = GroupState::Stable;
            tracing::debug!(group = %group_id, generation = group.generation, "group stable");
        }
        rx
    };
    match waiter.await {
        Ok(resp) => resp,
        Err(_) => sync_error(ResponseError::RebalanceInProgress),
    }
}

// ---- Heartbeat -----------------------------------------------------------------

pub fn heartbeat(ctx: &Arc<Ctx>, req: HeartbeatRequest) -> HeartbeatResponse {
    let error = {
        let mut groups = ctx.groups.lock();
        match groups.get_mut(req.group_id.0.as_str()) {
            None => ResponseError::UnknownMemberId.code(),
            Some(group) => match group
                .validate_member(req.member_id.as_str(), req.group_instance_id.as_deref())
                .map(|()| group.members.get_mut(req.member_id.as_str()))
            {
                Err(e) => e,
                Ok(None) => ResponseError::UnknownMemberId.code(),
                Ok(Some(m)) => {
                    if req.generation_id != group.generation {
                        ResponseError::IllegalGeneration.code()
                    } else {
                        m.last_heartbeat = Instant::now();
                        match group.state {
                            GroupState::PreparingRebalance => {
                                ResponseError::RebalanceInProgress.code()
                            }
                            GroupState::Empty => ResponseError::UnknownMemberId.code(),
                            _ => NONE,
                        }
                    }
                }
            },
        }
    };
    HeartbeatResponse::default().with_error_code(error)
}

// ---- LeaveGroup ------------------------------------------------------------------

pub fn leave_group(ctx: &Arc<Ctx>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<StrBytes>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.clone()))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let now = Instant::now();
    let mut groups = ctx.groups.lock();
    let group = groups.get_mut(req.group_id.0.as_str());
    let mut results = Vec::new();
    match group {
        None => {
            for (id, instance) in leaving {
                results.push((id, instance, code(ResponseError::UnknownMemberId)));
            }
        }
        Some(group) => {
            for (id, instance) in leaving {
                let error = if id.is_empty() {
                    // Removal by instance id alone (KIP-345, admin tools).
                    match instance
                        .as_deref()
                        .and_then(|i| group.static_member(i))
                        .map(str::to_string)
                    {
                        Some(current) => {
                            tracing::info!(group = %req.group_id.0, member = %current, "static member removed by its instance id");
                            group.remove_member(&current, now);
                            NONE
                        }
                        None => code(ResponseError::UnknownMemberId),
                    }
                } else if group.pending.remove(&id).is_some() {
                    group.maybe_complete_join(now, false);
                    NONE
                } else {
                    match group.validate_member(&id, instance.as_deref()) {
                        Ok(()) => {
                            tracing::info!(group = %req.group_id.0, member = %id, "member left");
                            group.remove_member(&id, now);
                            NONE
                        }
                        Err(e) => e,
                    }
                };
                results.push((id, instance, error));
            }
        }
    }
    if version >= 3 {
        LeaveGroupResponse::default().with_members(
            results
                .into_iter()
                .map(|(id, instance, error)| {
                    leave_group_response::MemberResponse::default()
                        .with_member_id(s(&id))
                        .with_group_instance_id(instance)
                        .with_error_code(error)
                })
                .collect(),
        )
    } else {
        LeaveGroupResponse::default().with_error_code(results.first().map(|r| r.2).unwrap_or(NONE))
    }
}

// ---- OffsetCommit ----------------------------------------------------------------

/// Kafka's `validateOffsetCommit`, in its order: a group being deleted
/// (Kafka's Dead) is COORDINATOR_NOT_AVAILABLE; a commit naming a member or
/// a generation must come from a current member (UNKNOWN_MEMBER_ID) of the
/// current generation (ILLEGAL_GENERATION); a simple commit (generation -1,
/// no member) is only for a group without members (UNKNOWN_MEMBER_ID);
/// then a group completing a rebalance is REBALANCE_IN_PROGRESS. A
/// generation given for a group unknown here is ILLEGAL_GENERATION. A
/// static member's commit (v7+ instance id) under a member id other than
/// the one registered for its instance id is FENCED_INSTANCE_ID, checked
/// first among the member checks.
fn validate_offset_commit(
    groups: &mut HashMap<String, Group>,
    group_id: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Option<i16> {
    let Some(g) = groups.get_mut(group_id) else {
        // A commit outside group management (assign() consumers, admin
        // tools): the group exists only through its offsets.
        return (generation >= 0).then(|| code(ResponseError::IllegalGeneration));
    };
    if g.deleting {
        return Some(code(ResponseError::CoordinatorNotAvailable));
    }
    if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
        if let Err(e) = g.validate_member(member_id, instance_id) {
            return Some(e);
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return Some(code(ResponseError::UnknownMemberId));
        };
        if generation != g.generation {
            return Some(code(ResponseError::IllegalGeneration));
        }
        m.last_heartbeat = Instant::now();
    } else if g.state != GroupState::Empty {
        return Some(code(ResponseError::UnknownMemberId));
    }
    if g.state == GroupState::CompletingRebalance {
        return Some(code(ResponseError::RebalanceInProgress));
    }
    None
}

pub async fn offset_commit(ctx: &Arc<Ctx>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    // Held until the catalog write is done (moved into it below).
    let mut offsets_guard = None;
    let group_error = if group_id.is_empty() {
        Some(code(ResponseError::InvalidGroupId))
    } else {
        offsets_guard = Some(ctx.groups.lock_offsets(&group_id).await);
        validate_offset_commit(
            &mut ctx.groups.lock(),
            &group_id,
            &member_id,
            req.group_instance_id.as_deref(),
            req.generation_id_or_member_epoch,
        )
    };
    let topics = req.topics;
    let result = ctx
        .blocking(move |engine_ref| {
            let now = engine_ref.now_ms();
            let mut to_store = Vec::new();
            let mut out: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::new();
            for t in &topics {
                let name = t.name.0.to_string();
                let known = engine_ref.topic(&name).ok();
                let mut parts = Vec::new();
                for p in &t.partitions {
                    let error = if let Some(e) = group_error {
                        e
                    } else if !known
                        .as_ref()
                        .is_some_and(|i| p.partition_index >= 0 && (p.partition_index as u32) < i.partitions)
                    {
                        code(ResponseError::UnknownTopicOrPartition)
                    } else if p
                        .committed_metadata
                        .as_ref()
                        .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
                    {
                        code(ResponseError::OffsetMetadataTooLarge)
                    } else {
                        to_store.push(CommittedOffset {
                            topic: name.clone(),
                            partition: p.partition_index as u32,
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                            commit_ms: now,
                        });
                        NONE
                    };
                    parts.push((p.partition_index, error));
                }
                out.push((t.name.clone(), parts));
            }
            if !to_store.is_empty() {
                if let Err(e) = engine_ref.commit_offsets(&group_id, &to_store) {
                    tracing::error!(group = %group_id, error = %e, "cannot store committed offsets");
                    let failed = code(ResponseError::CoordinatorNotAvailable);
                    for (_, parts) in &mut out {
                        for (_, err) in parts.iter_mut() {
                            if *err == NONE {
                                *err = failed;
                            }
                        }
                    }
                }
            }
            drop(offsets_guard);
            out
        })
        .await
        .unwrap_or_default();
    OffsetCommitResponse::default().with_topics(
        result
            .into_iter()
            .map(|(name, parts)| {
                offset_commit_response::OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(i, e)| {
                                offset_commit_response::OffsetCommitResponsePartition::default()
                                    .with_partition_index(i)
                                    .with_error_code(e)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

// ---- OffsetFetch -------------------------------------------------------------------

/// One partition's committed offset as fetched: (partition, offset,
/// leader epoch, metadata, error).
type FetchedPartition = (i32, i64, i32, Option<String>, i16);

/// Topics and partitions an OffsetFetch asks for.
type WantedTopics = Vec<(TopicName, Vec<i32>)>;

/// Committed offsets of `group` for `wanted` topics (all with `None`).
fn fetch_offsets(
    engine: &crate::Engine,
    group: &str,
    wanted: Option<WantedTopics>,
) -> Result<Vec<(TopicName, Vec<FetchedPartition>)>, i16> {
    let committed = engine.committed_offsets(group).map_err(|e| {
        tracing::error!(%group, error = %e, "cannot read committed offsets");
        code(ResponseError::CoordinatorNotAvailable)
    })?;
    let mut by_topic: BTreeMap<String, BTreeMap<i32, &CommittedOffset>> = BTreeMap::new();
    for c in &committed {
        by_topic
            .entry(c.topic.clone())
            .or_default()
            .insert(c.partition as i32, c);
    }
    let one = |p: i32, c: Option<&&CommittedOffset>| match c {
        Some(c) => (p, c.offset, c.leader_epoch, c.metadata.clone(), NONE),
        None => (p, -1, -1, Some(String::new()), NONE),
    };
    Ok(match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(name, parts)| {
                let known = by_topic.get(name.0.as_str());
                let parts = parts
                    .into_iter()
                    .map(|p| one(p, known.and_then(|k| k.get(&p))))
                    .collect();
                (name, parts)
            })
            .collect(),
        None => by_topic
            .iter()
            .map(|(name, parts)| {
                (
                    TopicName(s(name)),
                    parts.iter().map(|(p, c)| one(*p, Some(c))).collect(),
                )
            })
            .collect(),
    })
}

pub async fn offset_fetch(
    ctx: &Arc<Ctx>,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups: Vec<(GroupId, Option<WantedTopics>)> = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
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
                        let result = fetch_offsets(engine, id.0.as_str(), topics);
                        (id, result)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        return OffsetFetchResponse::default().with_groups(
            out.into_iter()
                .map(|(id, result)| {
                    let g = offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(id);
                    match result {
                        Err(e) => g.with_error_code(e),
                        Ok(topics) => g.with_topics(
                            topics
                                .into_iter()
                                .map(|(name, parts)| {
                                    offset_fetch_response::OffsetFetchResponseTopics::default()
                                        .with_name(name)
                                        .with_partitions(
                                            parts
                                                .into_iter()
                                                .map(|(p, o, e, m, err)| {
                                                    offset_fetch_response::OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(o)
                                                        .with_committed_leader_epoch(e)
                                                        .with_metadata(m.map(|m| s(&m)))
                                                        .with_error_code(err)
                                                })
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
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let result = ctx
        .blocking(move |engine| fetch_offsets(engine, group.0.as_str(), topics))
        .await
        .unwrap_or(Err(code(ResponseError::CoordinatorNotAvailable)));
    match result {
        Err(e) => OffsetFetchResponse::default().with_error_code(e),
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, parts)| {
                    offset_fetch_response::OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, o, e, m, err)| {
                                    offset_fetch_response::OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(e)
                                        .with_metadata(m.map(|m| s(&m)))
                                        .with_error_code(err)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

// ---- ListGroups / DescribeGroups / DeleteGroups / OffsetDelete --------------------------

/// A group's state and protocol type as listed: live groups from memory,
/// groups known only by their committed offsets as Empty consumer groups.
async fn all_groups(ctx: &Arc<Ctx>) -> BTreeMap<String, (GroupState, String)> {
    let stored = ctx
        .blocking(|engine| engine.groups_with_offsets())
        .await
        .and_then(|r| r)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot list groups with committed offsets");
            Vec::new()
        });
    let mut out: BTreeMap<String, (GroupState, String)> = stored
        .into_iter()
        .map(|g| (g, (GroupState::Empty, "consumer".to_string())))
        .collect();
    for (name, g) in ctx.groups.lock().iter() {
        if g.state == GroupState::Empty && !out.contains_key(name) {
            continue; // nothing left of it
        }
        let protocol_type = g
            .protocol_type
            .clone()
            .unwrap_or_else(|| "consumer".to_string());
        out.insert(name.clone(), (g.state, protocol_type));
    }
    out
}

pub async fn list_groups(ctx: &Arc<Ctx>, req: ListGroupsRequest) -> ListGroupsResponse {
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
            .filter(|(_, (state, _))| {
                states.is_empty() || states.contains(&state.name().to_ascii_lowercase())
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

pub async fn describe_groups(ctx: &Arc<Ctx>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let stored = ctx
        .blocking(|engine| engine.groups_with_offsets())
        .await
        .and_then(|r| r)
        .unwrap_or_default();
    // No authorization: every group operation (READ 3, DELETE 6,
    // DESCRIBE 8) when asked, else Kafka's "not requested" value.
    let operations = if req.include_authorized_operations {
        (1 << 3) | (1 << 6) | (1 << 8)
    } else {
        i32::MIN
    };
    let groups = ctx.groups.lock();
    let described = req
        .groups
        .into_iter()
        .map(|id| {
            let base = describe_groups_response::DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(operations);
            if id.0.is_empty() {
                return base.with_error_code(code(ResponseError::InvalidGroupId));
            }
            match groups.get(id.0.as_str()) {
                Some(g) if g.state != GroupState::Empty || !g.members.is_empty() => {
                    let stable = g.state == GroupState::Stable;
                    let protocol = g.protocol.clone().unwrap_or_default();
                    base.with_group_state(s(g.state.name()))
                        .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or("")))
                        .with_protocol_data(s(if stable { &protocol } else { "" }))
                        .with_members(
                            g.members
                                .values()
                                .map(|m| {
                                    let d =
                                        describe_groups_response::DescribedGroupMember::default()
                                            .with_member_id(s(&m.id))
                                            .with_group_instance_id(
                                                m.group_instance_id.as_deref().map(s),
                                            )
                                            .with_client_id(s(&m.client_id))
                                            .with_client_host(s(&m.client_host));
                                    if stable {
                                        d.with_member_metadata(m.metadata_for(&protocol))
                                            .with_member_assignment(m.assignment.clone())
                                    } else {
                                        d
                                    }
                                })
                                .collect(),
                        )
                }
                _ if stored.iter().any(|g| g == id.0.as_str()) => base
                    .with_group_state(s(GroupState::Empty.name()))
                    .with_protocol_type(s("consumer")),
                // Kafka describes an unknown group as Dead, without error.
                _ => base.with_group_state(s("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(described)
}

/// Clears a group's `deleting` mark (and forgets the group, which is
/// Empty and refused joins meanwhile) however the delete ends.
struct DeletingMark<'a> {
    coordinator: &'a GroupCoordinator,
    group: &'a str,
}

impl Drop for DeletingMark<'_> {
    fn drop(&mut self) {
        let mut groups = self.coordinator.lock();
        if groups.get(self.group).is_some_and(|g| g.deleting) {
            groups.remove(self.group);
        }
    }
}

pub async fn delete_groups(ctx: &Arc<Ctx>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in req.groups_names {
        let name = id.0.to_string();
        // No commit runs meanwhile; joins see the mark.
        let offsets_guard = ctx.groups.lock_offsets(&name).await;
        let checked = {
            let mut groups = ctx.groups.lock();
            match groups.get_mut(&name) {
                Some(g) if !g.members.is_empty() || g.state != GroupState::Empty => {
                    Err(code(ResponseError::NonEmptyGroup))
                }
                Some(g) => {
                    g.deleting = true;
                    Ok(true)
                }
                None => {
                    let mut g = Group::new();
                    g.deleting = true;
                    groups.insert(name.clone(), g);
                    Ok(false)
                }
            }
        };
        let error = match checked {
            Err(e) => e,
            Ok(in_memory) => {
                let _mark = DeletingMark {
                    coordinator: &ctx.groups,
                    group: &name,
                };
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
                    Ok(0) if !in_memory => code(ResponseError::GroupIdNotFound),
                    Ok(_) => NONE,
                    Err(e) => {
                        tracing::error!(group = %name, error = %e, "cannot delete committed offsets");
                        code(ResponseError::CoordinatorNotAvailable)
                    }
                }
            }
        };
        results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(error),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_delete(ctx: &Arc<Ctx>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.to_string();
    // No commit or delete of this group runs until this one is done.
    let _offsets_guard = ctx.groups.lock_offsets(&group_id).await;
    // Topics the live group consumes keep their offsets.
    let subscribed: Result<Option<BTreeSet<String>>, i16> = {
        let groups = ctx.groups.lock();
        match groups.get(&group_id) {
            Some(g) if !g.members.is_empty() => match g.subscribed_topics() {
                Some(t) => Ok(Some(t)),
                None => Err(code(ResponseError::NonEmptyGroup)),
            },
            _ => Ok(None),
        }
    };
    let subscribed = match subscribed {
        Ok(s) => s,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e),
    };
    let g = group_id.clone();
    let committed = match ctx
        .blocking(move |engine| engine.committed_offsets(&g))
        .await
        .and_then(|r| r)
    {
        Ok(c) => c,
        Err(_) => {
            return OffsetDeleteResponse::default()
                .with_error_code(code(ResponseError::CoordinatorNotAvailable))
        }
    };
    let live = subscribed.is_some();
    if committed.is_empty() && !live {
        return OffsetDeleteResponse::default()
            .with_error_code(code(ResponseError::GroupIdNotFound));
    }
    let mut delete = Vec::new();
    let topics: Vec<_> = req
        .topics
        .into_iter()
        .map(|t| {
            let blocked = subscribed
                .as_ref()
                .is_some_and(|s| s.contains(t.name.0.as_str()));
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let error = if blocked {
                        code(ResponseError::GroupSubscribedToTopic)
                    } else {
                        if p.partition_index >= 0 {
                            delete.push((t.name.0.to_string(), p.partition_index as u32));
                        }
                        NONE
                    };
                    offset_delete_response::OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
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
            tracing::error!(group = %group_id, error = %e, "cannot delete committed offsets");
            return OffsetDeleteResponse::default()
                .with_error_code(code(ResponseError::CoordinatorNotAvailable));
        }
    }
    OffsetDeleteResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, now: Instant) -> Member {
        Member {
            id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            last_heartbeat: now,
        }
    }

    #[test]
    fn join_completes_when_all_members_rejoined() {
        let now = Instant::now();
        let mut g = Group::new();
        let (tx1, mut rx1) = oneshot::channel();
        add_and_join(
            &mut g,
            member("a", now),
            "consumer",
            tx1,
            now,
            Duration::ZERO,
        );
        let r1 = rx1.try_recv().expect("first member joins at once");
        assert_eq!(r1.generation_id, 1);
        assert_eq!(r1.leader.as_str(), "a");
        assert_eq!(r1.members.len(), 1);
        assert_eq!(g.state, GroupState::CompletingRebalance);

        // A second member: the group waits for "a" to rejoin.
        let (tx2, mut rx2) = oneshot::channel();
        add_and_join(
            &mut g,
            member("b", now),
            "consumer",
            tx2,
            now,
            Duration::ZERO,
        );
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(rx2.try_recv().is_err(), "held until a rejoins");
        let (tx1, mut rx1) = oneshot::channel();
        g.members.get_mut("a").unwrap().join_waiter = Some(tx1);
        g.maybe_complete_join(now, false);
        let (r1, r2) = (rx1.try_recv().unwrap(), rx2.try_recv().unwrap());
        assert_eq!((r1.generation_id, r2.generation_id), (2, 2));
        assert_eq!(r1.members.len(), 2, "the leader gets every member");
        assert!(r2.members.is_empty());

        // "b" goes away: "a" is alone in generation 3 once it rejoins.
        g.state = GroupState::Stable;
        g.remove_member("b", now);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        g.maybe_complete_join(now + Duration::from_secs(31), true);
        assert_eq!(g.state, GroupState::Empty, "a never rejoined: dropped");
        assert_eq!(g.generation, 3);
    }

    #[test]
    fn protocol_votes_pick_the_common_favourite() {
        let now = Instant::now();
        let mut g = Group::new();
        let mut a = member("a", now);
        a.protocols = vec![
            ("cooperative-sticky".into(), Bytes::new()),
            ("range".into(), Bytes::new()),
        ];
        let mut b = member("b", now);
        b.protocols = vec![("range".into(), Bytes::new())];
        g.members.insert("a".into(), a);
        g.members.insert("b".into(), b);
        assert_eq!(g.select_protocol().as_deref(), Some("range"));
    }
}
