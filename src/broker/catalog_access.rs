//! The engine methods through which the broker's group coordinator driver
//! and InitProducerId reach the catalog: committed offsets, stored group
//! metadata, producer ids, the engine clock.
//!
//! Engine-facade code: each method only forwards to the catalog under the
//! engine's catalog lock, one catalog transaction each. It lives here, not
//! in `catalog/` (the catalog must not know the engine) and not in the
//! sans-io `coordinator/`; it belongs with the engine facade.

use crate::catalog::{CommittedOffset, StoredGroup};
use crate::error::Result;
use crate::{lock, Engine};

impl Engine {
    /// Store committed offsets of `group`, in one transaction.
    pub fn commit_offsets(&self, group: &str, offsets: &[CommittedOffset]) -> Result<()> {
        lock(&self.inner.catalog).commit_offsets(group, offsets)
    }

    /// Committed offsets of `group`.
    pub fn committed_offsets(&self, group: &str) -> Result<Vec<CommittedOffset>> {
        lock(&self.inner.catalog).committed_offsets(group)
    }

    /// Delete committed offsets of `group` (all with `None`).
    pub fn delete_committed_offsets(
        &self,
        group: &str,
        partitions: Option<&[(String, u32)]>,
    ) -> Result<usize> {
        lock(&self.inner.catalog).delete_committed_offsets(group, partitions)
    }

    /// Delete the committed offsets of `group` committed at or before
    /// `commit_ms_at_most` (one transaction); how many went.
    pub fn expire_committed_offsets(&self, group: &str, commit_ms_at_most: i64) -> Result<usize> {
        lock(&self.inner.catalog).expire_committed_offsets(group, commit_ms_at_most)
    }

    /// Every group with committed offsets.
    pub fn groups_with_offsets(&self) -> Result<Vec<String>> {
        lock(&self.inner.catalog).groups_with_offsets()
    }

    /// Store a group's completed generation (replacing what was stored).
    pub fn store_group(&self, group: &StoredGroup) -> Result<()> {
        let now = self.now_ms();
        lock(&self.inner.catalog).store_group(group, now)
    }

    /// Remove a group's stored metadata; whether there was any.
    pub fn delete_stored_group(&self, group_id: &str) -> Result<bool> {
        lock(&self.inner.catalog).delete_group(group_id)
    }

    /// Every stored group (what a starting group coordinator reloads).
    pub fn stored_groups(&self) -> Result<Vec<StoredGroup>> {
        lock(&self.inner.catalog).stored_groups()
    }

    /// A new producer id, never handed out before by this data directory.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        lock(&self.inner.catalog).allocate_producer_id()
    }

    /// The engine clock's now, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }

    /// The engine's clock (the group coordinator's driver reads it).
    pub fn clock(&self) -> crate::clock::SharedClock {
        std::sync::Arc::clone(&self.inner.config.clock)
    }
}
