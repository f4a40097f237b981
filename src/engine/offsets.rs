//! The engine methods through which the broker's group coordinator driver
//! and InitProducerId reach the catalog: committed offsets, stored group
//! metadata, producer ids, the engine clock.
//!
//! Each method only forwards to the catalog under the engine's catalog
//! lock, one catalog transaction each (the catalog must not know the
//! engine, and `coordinator/` is sans-io).

use crate::catalog::{CommittedOffset, StoredGroup};
use crate::error::Result;
use crate::sync::lock;

use super::Engine;

impl Engine {
    /// Store committed offsets of `group`, in one transaction.
    pub fn commit_offsets(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        lock(self.catalog()).commit_offsets(group, offsets)
    }

    /// Committed offsets of `group`.
    pub fn committed_offsets(&self, group: &str) -> Result<Vec<CommittedOffset>> {
        lock(self.catalog()).committed_offsets(group)
    }

    /// Delete committed offsets of `group` (all with `None`).
    pub fn delete_committed_offsets(
        &self,
        group: &str,
        partitions: Option<&[(String, u32)]>,
    ) -> Result<usize> {
        lock(self.catalog()).delete_committed_offsets(group, partitions)
    }

    /// Delete the committed offsets of `group` committed at or before
    /// `commit_ms_at_most` (one transaction); how many went.
    pub fn expire_committed_offsets(&self, group: &str, commit_ms_at_most: i64) -> Result<usize> {
        lock(self.catalog()).expire_committed_offsets(group, commit_ms_at_most)
    }

    /// Every group with committed offsets.
    pub fn groups_with_offsets(&self) -> Result<Vec<String>> {
        lock(self.catalog()).groups_with_offsets()
    }

    /// Store a group's completed generation (replacing what was stored).
    pub fn store_group(&self, group: &StoredGroup) -> Result<()> {
        let now = self.now_ms();
        lock(self.catalog()).store_group(group, now)
    }

    /// Remove a group's stored metadata; whether there was any.
    pub fn delete_stored_group(&self, group_id: &str) -> Result<bool> {
        lock(self.catalog()).delete_group(group_id)
    }

    /// Every stored group (what a starting group coordinator reloads).
    pub fn stored_groups(&self) -> Result<Vec<StoredGroup>> {
        lock(self.catalog()).stored_groups()
    }

    /// A new producer id, never handed out before by this data directory.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        lock(self.catalog()).allocate_producer_id()
    }

    /// The engine's clock (the group coordinator's driver reads it).
    pub fn clock(&self) -> crate::clock::SharedClock {
        std::sync::Arc::clone(&self.config.clock)
    }
}
