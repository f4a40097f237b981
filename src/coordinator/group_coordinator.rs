//! The group coordinator (Kafka's `GroupCoordinatorShard`): the registry of
//! groups, composing the [`GroupMetadataManager`] and the
//! [`OffsetMetadataManager`] over it under one lock, plus what the broker
//! needs to serialise catalog writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::group::ClassicGroup;
use super::group_metadata_manager::{GroupMetadataManager, Groups};
use super::messages::{
    GroupDescription, GroupListing, JoinRequest, JoinResult, Pending, SyncRequest, SyncResult,
};
use super::offset_metadata_manager::OffsetMetadataManager;
use super::{ClassicGroupState, GroupError, GroupSettings};
use crate::catalog::StoredGroup;

/// A change the catalog must get so that it holds what the coordinator
/// would reload (written in the order [`GroupCoordinator::take_records`]
/// returns them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    /// The group completed a generation (or a static member took a new
    /// member id), or became Empty (stored without members, with when it
    /// emptied): store it, replacing what was stored.
    Store(StoredGroup),
    /// The group is Dead (DeleteGroups), or Empty without ever having had
    /// a member leave here: remove what is stored.
    Delete(String),
}

/// What one [`GroupCoordinator::tick`] leaves the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TickOutcome {
    /// An offset expiry round is due: offsets whose age counts from at or
    /// before this engine-clock ms expire.
    pub expire_offsets_before: Option<i64>,
}

struct Shard {
    groups: Groups,
    offsets: OffsetMetadataManager,
    /// Records of groups forgotten from `groups` (vacant or deleted) not
    /// yet taken, the newest per group.
    forgotten: BTreeMap<String, GroupRecord>,
    /// Stored groups are reloaded.
    loaded: bool,
}

/// Every group this broker coordinates. Sans-io: time is an argument,
/// catalog reads and writes are the caller's (see [`GroupRecord`]).
pub struct GroupCoordinator {
    groups_manager: GroupMetadataManager,
    shard: Mutex<Shard>,
    /// Per group: held from an offset write's membership check until the
    /// catalog write is done (OffsetCommit, OffsetDelete, DeleteGroups,
    /// expiry), so a member fenced by a rebalance after its check cannot
    /// overwrite the new generation's commits, and a delete cannot
    /// interleave with a commit.
    offset_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Held while [`GroupRecord`]s taken are written, so records are
    /// written in the order they were taken.
    records_lock: tokio::sync::Mutex<()>,
}

/// A group's offset lock, held until dropped (it may be moved into the
/// blocking task that writes the catalog, so a cancelled request still
/// holds it until its write is done).
pub struct OffsetsGuard {
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
    /// A coordinator with no groups, not loaded yet (every group request
    /// gets CoordinatorLoadInProgress until [`Self::load`]); `started_ms`
    /// is the engine clock now.
    pub fn new(settings: GroupSettings, started_ms: i64) -> Self {
        GroupCoordinator {
            groups_manager: GroupMetadataManager::new(settings),
            shard: Mutex::new(Shard {
                groups: HashMap::new(),
                offsets: OffsetMetadataManager::new(settings, started_ms),
                forgotten: BTreeMap::new(),
                loaded: false,
            }),
            offset_locks: Arc::default(),
            records_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn shard(&self) -> MutexGuard<'_, Shard> {
        crate::lock(&self.shard)
    }

    /// The shard, once loaded.
    fn loaded(&self) -> Result<MutexGuard<'_, Shard>, GroupError> {
        let shard = self.shard();
        if shard.loaded {
            Ok(shard)
        } else {
            Err(GroupError::CoordinatorLoadInProgress)
        }
    }

    /// Reload the groups the catalog stores; from now on requests are
    /// served. A group stored with members is Stable in its generation; one
    /// stored Empty only tells when it emptied (its offsets age from then).
    pub fn load(&self, stored: Vec<StoredGroup>, now_ms: i64) {
        let mut shard = self.shard();
        let (emptied, live): (Vec<StoredGroup>, Vec<StoredGroup>) =
            stored.into_iter().partition(|g| g.members.is_empty());
        for g in emptied {
            let at = g.emptied_at_ms.unwrap_or(now_ms);
            shard.offsets.group_forgotten(&g.group_id, Some(at));
        }
        self.groups_manager.load(&mut shard.groups, live, now_ms);
        shard.loaded = true;
    }

    pub fn join_group(&self, req: JoinRequest, now_ms: i64) -> Pending<JoinResult> {
        match self.loaded() {
            Ok(mut shard) => self
                .groups_manager
                .join_group(&mut shard.groups, req, now_ms),
            Err(e) => Pending::Ready(Err(e)),
        }
    }

    pub fn sync_group(&self, req: SyncRequest, now_ms: i64) -> Pending<SyncResult> {
        match self.loaded() {
            Ok(mut shard) => self
                .groups_manager
                .sync_group(&mut shard.groups, req, now_ms),
            Err(e) => Pending::Ready(Err(e)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let mut shard = self.loaded()?;
        self.groups_manager.heartbeat(
            &mut shard.groups,
            group_id,
            member,
            instance,
            generation,
            now_ms,
        )
    }

    pub fn leave_group(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Vec<Result<(), GroupError>> {
        match self.loaded() {
            Ok(mut shard) => {
                self.groups_manager
                    .leave_group(&mut shard.groups, group_id, leaving, now_ms)
            }
            Err(e) => leaving.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Expire sessions, pending member ids and sync deadlines, complete
    /// rebalance delays and timeouts, forget vacant groups; says whether an
    /// offset expiry round is due (every
    /// `offsets.retention.check.interval.ms`).
    pub fn tick(&self, now_ms: i64) -> TickOutcome {
        let mut shard = self.shard();
        if !shard.loaded {
            return TickOutcome::default();
        }
        let Shard {
            groups,
            offsets,
            forgotten,
            ..
        } = &mut *shard;
        self.groups_manager.tick(groups, now_ms);
        // Nothing is left of a vacant group: forget it (its committed
        // offsets stay in the catalog), so transient group ids do not pile
        // up. When it emptied out is kept for offset expiry.
        groups.retain(|name, g| {
            let keep = !g.is_vacant();
            if !keep {
                offsets.group_forgotten(name, g.emptied_at_ms);
                if g.dirty {
                    forgotten.insert(name.clone(), empty_record(name, g));
                }
            }
            keep
        });
        TickOutcome {
            expire_offsets_before: offsets.expiry_due(now_ms),
        }
    }

    /// Changes the catalog has not got yet, newest state of each group;
    /// write them under [`Self::lock_records`], in order.
    pub fn take_records(&self) -> Vec<GroupRecord> {
        let mut shard = self.shard();
        let mut out: Vec<GroupRecord> =
            std::mem::take(&mut shard.forgotten).into_values().collect();
        for (name, g) in shard.groups.iter_mut() {
            if !std::mem::take(&mut g.dirty) {
                continue;
            }
            match g.state {
                ClassicGroupState::Stable => out.push(GroupRecord::Store(g.to_stored(name))),
                ClassicGroupState::Empty => out.push(empty_record(name, g)),
                ClassicGroupState::Dead => out.push(GroupRecord::Delete(name.clone())),
                // Mid-rebalance: the stored generation stays until the
                // next one completes (or the group empties).
                ClassicGroupState::PreparingRebalance | ClassicGroupState::CompletingRebalance => {}
            }
        }
        out
    }

    /// Records that could not be written: take them again next time.
    pub fn records_failed(&self, records: &[GroupRecord]) {
        let mut shard = self.shard();
        for r in records {
            let name = match r {
                GroupRecord::Store(g) => &g.group_id,
                GroupRecord::Delete(n) => n,
            };
            match shard.groups.get_mut(name) {
                Some(g) => g.dirty = true,
                None => {
                    // Unless a newer record of the group is waiting.
                    shard
                        .forgotten
                        .entry(name.clone())
                        .or_insert_with(|| r.clone());
                }
            }
        }
    }

    /// Serialises writes of taken records.
    pub async fn lock_records(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.records_lock.lock().await
    }

    /// Wait for `group`'s offset lock.
    pub async fn lock_offsets(&self, group: &str) -> OffsetsGuard {
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

    /// OffsetCommit's checks against the group (see
    /// [`OffsetMetadataManager::validate_offset_commit`]); hold the group's
    /// offset lock across this and the write.
    pub fn validate_offset_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let mut shard = self.loaded()?;
        let Shard {
            groups, offsets, ..
        } = &mut *shard;
        offsets.validate_offset_commit(groups, group_id, member_id, instance_id, generation, now_ms)
    }

    /// Topics whose offsets OffsetDelete must keep (see
    /// [`OffsetMetadataManager::protected_topics`]).
    pub fn protected_topics(&self, group_id: &str) -> Result<Option<BTreeSet<String>>, GroupError> {
        let shard = self.loaded()?;
        shard.offsets.protected_topics(&shard.groups, group_id)
    }

    /// From when `group`'s offsets age (see
    /// [`OffsetMetadataManager::offsets_age_from`]).
    pub fn offsets_age_from(&self, group_id: &str) -> Option<i64> {
        let shard = self.shard();
        shard.offsets.offsets_age_from(&shard.groups, group_id)
    }

    /// DeleteGroups, first step: a group with members or in a rebalance is
    /// NonEmptyGroup; otherwise it turns Dead (joins and commits are
    /// refused) until [`Self::forget_dead`]. Whether the group was in
    /// memory (an Empty group this coordinator knows exists even without
    /// offsets).
    pub fn mark_dead(&self, group_id: &str) -> Result<bool, GroupError> {
        let mut shard = self.loaded()?;
        match shard.groups.get_mut(group_id) {
            Some(g) if !g.members.is_empty() || !g.is(ClassicGroupState::Empty) => {
                Err(GroupError::NonEmptyGroup)
            }
            Some(g) => {
                g.transition_to(ClassicGroupState::Dead);
                Ok(true)
            }
            None => {
                let mut g = ClassicGroup::new();
                g.transition_to(ClassicGroupState::Dead);
                shard.groups.insert(group_id.to_string(), g);
                Ok(false)
            }
        }
    }

    /// DeleteGroups, last step (however the delete ended): forget a Dead
    /// group.
    pub fn forget_dead(&self, group_id: &str) {
        let mut shard = self.shard();
        if shard
            .groups
            .get(group_id)
            .is_some_and(|g| g.is(ClassicGroupState::Dead))
        {
            shard.groups.remove(group_id);
            shard.forgotten.insert(
                group_id.to_string(),
                GroupRecord::Delete(group_id.to_string()),
            );
        }
    }

    /// ListGroups' view of the groups in memory.
    pub fn list(&self) -> BTreeMap<String, GroupListing> {
        let shard = self.shard();
        self.groups_manager.list(&shard.groups)
    }

    /// DescribeGroups' view of one group in memory (`None`: nothing live).
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let shard = self.shard();
        self.groups_manager.describe(&shard.groups, group_id)
    }
}

/// The record of a group that is Empty: stored without members when its
/// last member left here (so another broker knows when it emptied), else
/// removed.
fn empty_record(name: &str, g: &ClassicGroup) -> GroupRecord {
    match g.emptied_at_ms {
        Some(at) => GroupRecord::Store(g.to_stored_emptied(name, at)),
        None => GroupRecord::Delete(name.to_string()),
    }
}
