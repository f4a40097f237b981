//! Committed offsets of groups (Kafka's `OffsetMetadataManager`): who may
//! commit (OffsetCommit's checks against the group), what a commit stores,
//! how OffsetFetch answers from the stored rows, which topics OffsetDelete
//! may touch, and when offsets expire (KIP-211). The rows themselves live
//! in the catalog; the broker reads and writes them through the engine.
//! Pure: no I/O, time as an argument.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::group_metadata_manager::Groups;
use super::{ClassicGroupState, GroupError, GroupSettings};
use crate::catalog::CommittedOffset;

/// Largest committed offset metadata accepted (Kafka's
/// `offset.metadata.max.bytes`).
pub const MAX_METADATA_BYTES: usize = 4096;

/// One partition of an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An OffsetCommit's result per topic, per partition.
pub type CommitResults = Vec<(String, Vec<(i32, Result<(), GroupError>)>)>;

/// One partition's committed offset as OffsetFetch answers it (offset -1,
/// epoch -1 and empty metadata when nothing is committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Offset decisions and KIP-211 expiry bookkeeping.
#[derive(Debug)]
pub(crate) struct OffsetMetadataManager {
    settings: GroupSettings,
    /// When groups forgotten from the registry (Empty, no members left)
    /// lost their last member in this run (engine-clock ms): their
    /// committed offsets expire from then.
    emptied: HashMap<String, i64>,
    /// The engine clock when the coordinator started: offsets of groups
    /// this run has not seen empty out expire counting from here at the
    /// earliest.
    started_ms: i64,
    /// When the next expiry round is due.
    next_expiry_ms: i64,
}

impl OffsetMetadataManager {
    pub fn new(settings: GroupSettings, started_ms: i64) -> Self {
        OffsetMetadataManager {
            settings,
            emptied: HashMap::new(),
            started_ms,
            next_expiry_ms: started_ms.saturating_add(Self::interval(settings)),
        }
    }

    fn interval(settings: GroupSettings) -> i64 {
        settings.offsets_retention_check_interval_ms.max(1)
    }

    /// Kafka's `validateOffsetCommit`, in its order: a Dead group (being
    /// deleted) is GroupDead; a commit naming a member or a generation must
    /// come from a current member (UnknownMemberId) of the current
    /// generation (IllegalGeneration); a simple commit (generation -1, no
    /// member) is only for a group without members (UnknownMemberId); then
    /// a group completing a rebalance is RebalanceInProgress. A generation
    /// given for a group unknown here is IllegalGeneration. A static
    /// member's commit (v7+ instance id) under a member id other than the
    /// one registered for its instance id is FencedInstanceId, checked first
    /// among the member checks. A valid commit counts as a heartbeat.
    pub fn validate_offset_commit(
        &self,
        groups: &mut Groups,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let Some(g) = groups.get_mut(group_id) else {
            // A commit outside group management (assign() consumers, admin
            // tools): the group exists only through its offsets.
            return if generation >= 0 {
                Err(GroupError::IllegalGeneration {
                    generation,
                    current: -1,
                })
            } else {
                Ok(())
            };
        };
        if g.is(ClassicGroupState::Dead) {
            return Err(GroupError::GroupDead);
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            g.validate_member(member_id, instance_id)?;
            let current = g.generation;
            let m = g
                .members
                .get_mut(member_id)
                .ok_or_else(|| GroupError::unknown_member(member_id))?;
            if generation != current {
                return Err(GroupError::IllegalGeneration {
                    generation,
                    current,
                });
            }
            m.last_heartbeat_ms = now_ms;
        } else if !g.is(ClassicGroupState::Empty) {
            return Err(GroupError::unknown_member(member_id));
        }
        if g.is(ClassicGroupState::CompletingRebalance) {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// What an OffsetCommit stores and answers: per topic, per partition,
    /// the result; the rows to store are the `Ok` ones. `group` is the
    /// outcome of [`Self::validate_offset_commit`]; `partitions_of` says how
    /// many partitions a topic has (`None`: no such topic).
    pub fn commit_plan(
        group: &Result<(), GroupError>,
        topics: &[(String, Vec<OffsetCommitPartition>)],
        partitions_of: impl Fn(&str) -> Option<u32>,
        now_ms: i64,
    ) -> (Vec<CommittedOffset>, CommitResults) {
        let mut rows = Vec::new();
        let results = topics
            .iter()
            .map(|(topic, parts)| {
                let count = partitions_of(topic);
                let parts = parts
                    .iter()
                    .map(|p| {
                        let size = p.metadata.as_ref().map_or(0, String::len);
                        let result = if let Err(e) = group {
                            Err(e.clone())
                        } else if !count
                            .is_some_and(|n| p.partition >= 0 && (p.partition as u32) < n)
                        {
                            Err(GroupError::UnknownTopicOrPartition {
                                topic: topic.clone(),
                                partition: p.partition,
                            })
                        } else if size > MAX_METADATA_BYTES {
                            Err(GroupError::OffsetMetadataTooLarge {
                                size,
                                max: MAX_METADATA_BYTES,
                            })
                        } else {
                            rows.push(CommittedOffset {
                                topic: topic.clone(),
                                partition: p.partition as u32,
                                offset: p.offset,
                                leader_epoch: p.leader_epoch,
                                metadata: p.metadata.clone(),
                                commit_ms: now_ms,
                            });
                            Ok(())
                        };
                        (p.partition, result)
                    })
                    .collect();
                (topic.clone(), parts)
            })
            .collect();
        (rows, results)
    }

    /// OffsetFetch from a group's stored rows: the `wanted` topics and
    /// partitions (every stored one with `None`), by topic.
    pub fn fetch(
        committed: &[CommittedOffset],
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let mut by_topic: BTreeMap<&str, BTreeMap<i32, &CommittedOffset>> = BTreeMap::new();
        for c in committed {
            by_topic
                .entry(c.topic.as_str())
                .or_default()
                .insert(c.partition as i32, c);
        }
        let one = |partition: i32, c: Option<&CommittedOffset>| match c {
            Some(c) => FetchedOffset {
                partition,
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata: c.metadata.clone(),
            },
            None => FetchedOffset {
                partition,
                offset: -1,
                leader_epoch: -1,
                metadata: Some(String::new()),
            },
        };
        match wanted {
            Some(topics) => topics
                .into_iter()
                .map(|(name, parts)| {
                    let known = by_topic.get(name.as_str());
                    let parts = parts
                        .into_iter()
                        .map(|p| one(p, known.and_then(|k| k.get(&p).copied())))
                        .collect();
                    (name, parts)
                })
                .collect(),
            None => by_topic
                .iter()
                .map(|(name, parts)| {
                    (
                        name.to_string(),
                        parts.iter().map(|(p, c)| one(*p, Some(c))).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Topics whose offsets OffsetDelete must keep: those the live group's
    /// members subscribe to (`None` for a group without members: none);
    /// NonEmptyGroup when the group has members whose subscriptions cannot
    /// be read.
    pub fn protected_topics(
        &self,
        groups: &Groups,
        group_id: &str,
    ) -> Result<Option<BTreeSet<String>>, GroupError> {
        match groups.get(group_id) {
            Some(g) if !g.members.is_empty() => match g.subscribed_topics() {
                Some(t) => Ok(Some(t)),
                None => Err(GroupError::NonEmptyGroup),
            },
            _ => Ok(None),
        }
    }

    /// A vacant group is forgotten from the registry: remember when it
    /// emptied out, for expiry.
    pub fn group_forgotten(&mut self, group_id: &str, emptied_at_ms: Option<i64>) {
        if let Some(at) = emptied_at_ms {
            self.emptied.insert(group_id.to_string(), at);
        }
    }

    /// The cutoff of an expiry round due at `now_ms` (offsets whose age
    /// counts from at or before it expire), if one is due; schedules the
    /// next one.
    pub fn expiry_due(&mut self, now_ms: i64) -> Option<i64> {
        if now_ms < self.next_expiry_ms {
            return None;
        }
        self.next_expiry_ms = now_ms.saturating_add(Self::interval(self.settings));
        let retention = self.settings.offsets_retention_ms;
        let cutoff = now_ms.saturating_sub(retention);
        // Once both it and the start are past the retention, an emptied
        // instant no longer changes what expires: forget it.
        let started_long_ago = self.started_ms <= cutoff;
        self.emptied
            .retain(|_, at| !started_long_ago || now_ms.saturating_sub(*at) < retention);
        Some(cutoff)
    }

    /// From when `group`'s committed offsets age (engine-clock ms): `None`
    /// while the group has members or is not Empty (its offsets are kept);
    /// else the instant its last member went, or, when this run has not
    /// seen it empty out, the coordinator's start. An offset expires once
    /// the later of this and its own commit time is older than the
    /// retention.
    pub fn offsets_age_from(&self, groups: &Groups, group_id: &str) -> Option<i64> {
        match groups.get(group_id) {
            Some(g) if !g.is_vacant() => None,
            Some(g) => Some(g.emptied_at_ms.unwrap_or(self.started_ms)),
            None => Some(
                self.emptied
                    .get(group_id)
                    .copied()
                    .unwrap_or(self.started_ms),
            ),
        }
    }
}
