//! The local tier: one partition's segments on local disk.
//!
//! Owns: segment files, their indexes, the recovery point, appends, reads,
//! rolls, flushes, truncation and segment deletion. Plain synchronous
//! `std::fs` I/O, called from a blocking context; it must never use tokio,
//! talk to the remote tier or decide retention (it only executes
//! deletions it is asked for).

pub mod local_log;
pub mod offset_index;
pub mod partition_dirs;
pub mod partition_metadata;
pub mod paths;
pub mod producer_state;
pub mod reader;
pub mod recovery;
pub mod segment;
pub mod segments;
pub mod time_index;
pub mod writer;

mod index_file;

pub use local_log::{AppendInfo, LocalLog, PendingFlush};
pub use recovery::RecoveryReport;
pub use segment::LogSegment;
