//! The local tier: one partition's segments on local disk.
//!
//! Owns: segment files, their indexes, the recovery point, appends, reads,
//! rolls, flushes, truncation and segment deletion. Plain synchronous
//! `std::fs` I/O, called from a blocking context; it must never use tokio,
//! talk to the remote tier or decide retention (it only executes
//! deletions it is asked for).

pub(crate) mod append_error;
pub mod cleaner;
pub mod file_handles;
pub(crate) mod local_log;
mod log_start;
pub(crate) mod offset_index;
pub(crate) mod offset_map;
pub(crate) mod partition_dirs;
pub mod partition_metadata;
pub mod paths;
pub(crate) mod producer_state;
pub(crate) mod reader;
pub(crate) mod recovery;
pub(crate) mod segment;
pub(crate) mod segments;
pub(crate) mod time_index;
mod topic_rules;
pub(crate) mod transaction_index;
pub(crate) mod writer;

mod index_file;

/// The leader epoch of every partition: tierlog is each partition's one
/// replica and never moves its leadership, so the epoch Kafka would start
/// a new partition at is its only one. Appends stamp it on every batch
/// (the partitionLeaderEpoch field, outside the CRC).
pub const LEADER_EPOCH: i32 = 0;

pub use local_log::{AppendInfo, DeletedSegment, LocalLog, PendingFlush};
pub(crate) use log_start::write as write_log_start_floor;
pub(crate) use reader::holds_records;
pub use recovery::RecoveryReport;
pub use segment::{FileRegion, LogSegment};
pub use time_index::TimestampAndOffset;
