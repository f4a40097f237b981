//! The catalog: what topics exist, their ids, partition counts and config
//! overrides, remote segment states, committed consumer offsets, classic
//! group metadata, SCRAM credentials, ACLs, client quotas, the producer id
//! counter and the transaction coordinator's state (`transactions`,
//! migration 0008).
//!
//! Owns the durable metadata. Behind the narrow [`Catalog`] trait so that
//! moving it from SQLite to PostgreSQL (docs/design.md §10) is one new module.
//! Must never hold log data or do partition I/O.

mod groups;
mod offsets;
pub mod quotas;
pub mod snapshot;
mod sqlite;
mod sqlite_acls;
mod sqlite_groups;
mod sqlite_quotas;
mod sqlite_scram;
mod sqlite_transactions;
mod transactions;

use std::collections::BTreeMap;

pub use groups::{StoredGroup, StoredMember};
pub use offsets::CommittedOffset;
pub use sqlite::SqliteCatalog;
pub use transactions::{PendingTxnOffset, StoredTransaction};

use crate::error::Result;

/// A topic as the catalog stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: u32,
    /// Config overrides by Kafka name (validated before they get here).
    pub configs: BTreeMap<String, String>,
    pub created_ms: i64,
}

/// Where a tiered segment is in its lifecycle (docs/design.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemoteState {
    /// A row exists; objects may be partly uploaded. Never read from.
    CopyStarted,
    /// All objects and the manifest are in the bucket. Only now may the
    /// local copy be deleted, and only these count for retention.
    CopyFinished,
    /// Chosen for deletion; objects may be partly deleted.
    DeleteStarted,
    /// Objects gone.
    DeleteFinished,
}

impl RemoteState {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteState::CopyStarted => "COPY_STARTED",
            RemoteState::CopyFinished => "COPY_FINISHED",
            RemoteState::DeleteStarted => "DELETE_STARTED",
            RemoteState::DeleteFinished => "DELETE_FINISHED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "COPY_STARTED" => RemoteState::CopyStarted,
            "COPY_FINISHED" => RemoteState::CopyFinished,
            "DELETE_STARTED" => RemoteState::DeleteStarted,
            "DELETE_FINISHED" => RemoteState::DeleteFinished,
            _ => return None,
        })
    }
}

/// A tiered segment as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSegment {
    pub segment_uuid: uuid::Uuid,
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub partition: u32,
    pub base_offset: i64,
    /// Inclusive.
    pub last_offset: i64,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub log_size: u64,
    pub index_size: u64,
    pub timeindex_size: u64,
    pub log_crc32c: u32,
    pub state: RemoteState,
    pub updated_ms: i64,
    /// CRC32C of the `.index` and `.timeindex` objects and the `.log`
    /// object's block checksums (`None` for segments tiered before they
    /// were recorded).
    pub index_crc32c: Option<u32>,
    pub timeindex_crc32c: Option<u32>,
    pub log_blocks: Option<std::sync::Arc<crate::format::manifest::BlockChecksums>>,
    /// Size and CRC32C of the `.txnindex` object (`None` for segments
    /// tiered before they were recorded, migration 0011). A size of 0 (no
    /// aborted transaction ends in the segment) spares readers its GET.
    pub txnindex: Option<crate::format::manifest::ObjectInfo>,
}

impl RemoteSegment {
    /// Bytes in the bucket for this segment.
    pub fn total_size(&self) -> u64 {
        self.log_size + self.index_size + self.timeindex_size
    }

    /// Whether the catalog records this segment's `.txnindex` object as
    /// empty: no aborted transaction ends in it, and readers need no GET.
    pub fn txn_index_known_empty(&self) -> bool {
        self.txnindex.is_some_and(|t| t.size == 0)
    }
}

/// What `tierlog restore` writes into an empty catalog
/// ([`Catalog::restore`]).
#[derive(Debug, Clone, Default)]
pub struct CatalogRestore {
    pub topics: Vec<TopicRecord>,
    /// Tiered segments to register (each `COPY_FINISHED`).
    pub segments: Vec<RemoteSegment>,
    /// The producer-id counter is raised to at least this.
    pub next_producer_id: i64,
    /// Committed offsets, by group.
    pub committed_offsets: Vec<(String, CommittedOffset)>,
    pub groups: Vec<StoredGroup>,
    /// SCRAM credentials (users), by user and mechanism.
    pub users: Vec<crate::security::ScramCredential>,
    /// ACL bindings.
    pub acls: Vec<crate::security::acl::AclBinding>,
    /// Transactional ids' coordinator state.
    pub transactions: Vec<StoredTransaction>,
    /// Client quotas.
    pub client_quotas: Vec<quotas::ClientQuota>,
    /// When the restore ran (stamps the restored group rows).
    pub restored_ms: i64,
}

/// The catalog as the engine and its background jobs share it.
pub(crate) type SharedCatalog = std::sync::Arc<std::sync::Mutex<Box<dyn Catalog>>>;

/// Durable metadata store. Every method is one transaction.
pub trait Catalog: Send {
    /// Add a topic; `AlreadyExists` if the name is taken.
    fn create_topic(&mut self, topic: &TopicRecord) -> Result<()>;
    /// Remove a topic and its configs, returning what was removed;
    /// `NotFound` if absent. In the same transaction its id is recorded as
    /// deleted (see [`Catalog::deleted_topic_ids`]) and its remote segments
    /// are scheduled for deletion.
    fn delete_topic(&mut self, name: &str, deleted_ms: i64) -> Result<TopicRecord>;
    /// Ids of every topic deleted from this catalog: a partition directory
    /// naming one of them belongs to no live topic and may be removed.
    fn deleted_topic_ids(&self) -> Result<std::collections::HashSet<uuid::Uuid>>;
    /// Deleted topics (id, name) whose objects the reaper has not finished
    /// removing from the bucket.
    fn deleted_topics_to_clean(&self) -> Result<Vec<(uuid::Uuid, String)>>;
    /// Record that nothing of deleted topic `id` is left in the bucket.
    fn mark_deleted_topic_cleaned(&mut self, id: uuid::Uuid, cleaned_ms: i64) -> Result<()>;
    /// Every topic, by name.
    fn topics(&self) -> Result<Vec<TopicRecord>>;
    /// Replace a topic's config overrides; `NotFound` if absent.
    fn set_topic_configs(&mut self, name: &str, configs: &BTreeMap<String, String>) -> Result<()>;
    /// Set topic `name`'s partition count (CreatePartitions grows it; a
    /// failed growth sets it back). `NotFound` for an unknown topic.
    fn set_topic_partitions(&mut self, name: &str, partitions: u32) -> Result<()>;

    /// Add what `tierlog restore` rebuilt (topics, their tiered segments,
    /// committed offsets, stored groups) and raise the producer-id counter
    /// to at least its `next_producer_id`, in one transaction; nothing
    /// changes if any of it fails.
    fn restore(&mut self, restored: &CatalogRestore) -> Result<()>;

    /// Record a new tiered segment (its state is usually `CopyStarted`);
    /// `NotFound` if its topic id was deleted.
    fn insert_remote_segment(&mut self, segment: &RemoteSegment) -> Result<()>;
    /// The log cleaner's commit, one transaction: `new` (a cleaned
    /// segment, `COPY_STARTED`) becomes `COPY_FINISHED` with its sizes and
    /// checksums, and every segment of `replaced` (each `COPY_FINISHED`)
    /// becomes `DELETE_STARTED`. Nothing changes if any row is not in the
    /// state expected (retention expired one meanwhile).
    fn replace_remote_segments(
        &mut self,
        new: &RemoteSegment,
        replaced: &[RemoteSegment],
        now_ms: i64,
    ) -> Result<()>;
    /// Move a segment to `state`, replacing its sizes and checksum with
    /// `segment`'s; fails unless it is in `from`.
    fn transition_remote_segment(
        &mut self,
        segment: &RemoteSegment,
        from: RemoteState,
    ) -> Result<()>;
    /// Tiered segments of a partition, by base offset (every state).
    fn remote_segments(&self, topic_id: uuid::Uuid, partition: u32) -> Result<Vec<RemoteSegment>>;
    /// Tiered segments in `state`, across topics.
    fn remote_segments_in_state(&self, state: RemoteState) -> Result<Vec<RemoteSegment>>;
    /// Every segment uuid the catalog knows (any state), for the orphan
    /// reaper.
    fn remote_segment_uuids(&self) -> Result<std::collections::HashSet<uuid::Uuid>>;

    /// Store committed offsets of `group` (insert or replace), all in one
    /// transaction.
    fn commit_offsets(&mut self, group: &str, offsets: &[CommittedOffset]) -> Result<()>;
    /// Committed offsets of `group`, by topic and partition.
    fn committed_offsets(&self, group: &str) -> Result<Vec<CommittedOffset>>;
    /// Delete committed offsets of `group`: every one with `None`, else the
    /// listed `(topic, partition)`s. Returns how many rows went.
    fn delete_committed_offsets(
        &mut self,
        group: &str,
        partitions: Option<&[(String, u32)]>,
    ) -> Result<usize>;
    /// Delete the committed offsets of `group` committed at or before
    /// `commit_ms_at_most` (offset expiry, KIP-211), in one transaction.
    /// Returns how many rows went.
    fn expire_committed_offsets(&mut self, group: &str, commit_ms_at_most: i64) -> Result<usize>;
    /// Every group with at least one committed offset.
    fn groups_with_offsets(&self) -> Result<Vec<String>>;

    /// Store `group` (its generation, protocol, leader and members),
    /// replacing what was stored for it, in one transaction.
    fn store_group(&mut self, group: &StoredGroup, stored_ms: i64) -> Result<()>;
    /// Remove the stored metadata of `group` (nothing if none); whether a
    /// row went.
    fn delete_group(&mut self, group_id: &str) -> Result<bool>;
    /// Every stored group, by group id, members in join order.
    fn stored_groups(&self) -> Result<Vec<StoredGroup>>;
    /// The producer-id counter: the id [`Catalog::allocate_producer_id`]
    /// hands out next (read only, for the catalog snapshot).
    fn next_producer_id(&self) -> Result<i64>;
    /// Store a user's SCRAM credential for its mechanism, replacing the
    /// one stored before.
    fn upsert_scram_credential(
        &mut self,
        credential: &crate::security::ScramCredential,
        now_ms: i64,
    ) -> Result<()>;
    /// Remove a user's credential for `mechanism`; whether one was there.
    fn delete_scram_credential(
        &mut self,
        user: &str,
        mechanism: crate::security::ScramMechanism,
    ) -> Result<bool>;
    /// SCRAM credentials of `user` (every user with `None`), by user and
    /// mechanism.
    fn scram_credentials(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<crate::security::ScramCredential>>;
    /// Store ACL bindings (one already stored stays one row).
    fn create_acls(&mut self, acls: &[crate::security::acl::AclBinding], now_ms: i64)
        -> Result<()>;
    /// Remove these ACL bindings (absent ones are skipped), in one
    /// transaction.
    fn delete_acls(&mut self, acls: &[crate::security::acl::AclBinding]) -> Result<()>;
    /// Every ACL binding, sorted.
    fn acls(&self) -> Result<Vec<crate::security::acl::AclBinding>>;
    /// Apply client quota changes (set or remove a key of an entity) in
    /// order, in one transaction.
    fn alter_client_quotas(&mut self, changes: &[quotas::QuotaChange], now_ms: i64) -> Result<()>;
    /// Every stored client quota.
    fn client_quotas(&self) -> Result<Vec<quotas::ClientQuota>>;
    /// Take the next producer id (durable before it is returned, so no id is
    /// handed out twice, even across restarts).
    fn allocate_producer_id(&mut self) -> Result<i64>;
    /// Store (insert or replace) a transactional id's coordinator state.
    fn store_transaction(&mut self, txn: &StoredTransaction) -> Result<()>;
    /// Remove a transactional id's state (expired); whether it existed.
    fn delete_transaction(&mut self, transactional_id: &str) -> Result<bool>;
    /// Every stored transactional id, by id.
    fn stored_transactions(&self) -> Result<Vec<StoredTransaction>>;
}
