//! The catalog calls the group coordinator and InitProducerId make through
//! the engine: committed offsets and producer ids.

use crate::catalog::CommittedOffset;
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

    /// A new producer id, never handed out before by this data directory.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        lock(self.catalog()).allocate_producer_id()
    }
}
