//! Classic group metadata as the catalog stores it (Kafka's
//! `GroupMetadataValue` record in `__consumer_offsets`): one row per group
//! whose generation completed (SyncGroup), with its members. Data types
//! only; the group coordinator decides when a group is stored or removed.
//!
//! ## Format
//!
//! Tables `group_metadata` (one row per group) and `group_members` (one
//! row per member, `member_index` = join order), see
//! `migrations/0006_group_metadata.sql`:
//!
//! | column | meaning |
//! |---|---|
//! | `generation_id` | the generation the members are in |
//! | `protocol_type`, `protocol_name` | e.g. `consumer`, `range` |
//! | `leader_id` | the member id of the leader |
//! | `emptied_ms` | set (and no member rows) once the group is Empty: when its last member went |
//! | `subscription` | a member's metadata for `protocol_name` (bytes as the client sent them) |
//! | `assignment` | a member's assignment from the leader's SyncGroup (bytes) |

use bytes::Bytes;

/// A group in a completed generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub group_id: String,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// In join order.
    /// When the group became Empty (engine-clock ms), for a group stored
    /// without members; `None` for a group with a generation to resume.
    pub emptied_at_ms: Option<i64>,
    pub members: Vec<StoredMember>,
}

/// A member of a [`StoredGroup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    /// KIP-345 static membership.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The member's metadata for the group's protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}
