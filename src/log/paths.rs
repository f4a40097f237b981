//! Every local file and directory name, in one place.
//!
//! ```text
//! <data>/catalog.db                          SQLite catalog
//! <data>/.clean-shutdown                     present only after a clean shutdown
//! <data>/cluster-id                          the cluster id reported to clients
//! <data>/.lock                               flock'ed by the engine using the directory
//! <data>/<topic>-<partition>/                one partition
//!     00000000000000000000.log               segment, named by base offset (20 digits)
//!     00000000000000000000.index             its offset index
//!     00000000000000000000.timeindex         its time index
//!     00000000000000000000.txnindex          its aborted-transaction index
//!     00000000000000000000.snapshot          idempotent producer state at that offset
//!     recovery-point                         offset below which data is fsynced
//!     partition.metadata                     the id of the topic owning the directory
//!     cleaner-offset-checkpoint              compacted topics: where cleaning stands
//!     cleaning/                              a cleaning pass's staged segment and swap marker
//! <data>/<topic>-<partition>.<uuid>-delete/  a deleted partition being removed
//! <data>/<topic>-<partition>.<uuid>-stray/   a directory that was in a new
//!                                            partition's way and provably
//!                                            belonged to no deleted topic:
//!                                            kept for the operator, never read
//! ```

use std::path::{Path, PathBuf};

pub const LOG_EXT: &str = "log";
pub const INDEX_EXT: &str = "index";
pub const TIME_INDEX_EXT: &str = "timeindex";
/// The aborted-transaction index of a segment (`log/transaction_index.rs`).
pub const TXN_INDEX_EXT: &str = "txnindex";
pub const SNAPSHOT_EXT: &str = "snapshot";
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// The log start offset DeleteRecords set (`log/log_start.rs`).
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
pub const CATALOG_FILE: &str = "catalog.db";
pub const CLUSTER_ID_FILE: &str = "cluster-id";
pub const LOCK_FILE: &str = ".lock";
pub const DELETE_SUFFIX: &str = "-delete";
pub const STRAY_SUFFIX: &str = "-stray";
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// The log cleaner's per-partition state (`log/cleaner.rs`).
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Where a cleaning pass stages its segment, and its swap marker.
pub const CLEANER_STAGING_DIR: &str = "cleaning";
pub const CLEANER_SWAP_MARKER: &str = "swap";

/// `<data>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// Where a partition directory goes while it is being deleted.
pub fn deleted_partition_dir(
    data_dir: &Path,
    topic: &str,
    partition: u32,
    uuid: &uuid::Uuid,
) -> PathBuf {
    data_dir.join(format!(
        "{topic}-{partition}.{}{DELETE_SUFFIX}",
        uuid.simple()
    ))
}

/// Where a directory in a new partition's way is kept
/// (`<topic>-<partition>.<uuid>-stray`).
pub fn stray_partition_dir(
    data_dir: &Path,
    topic: &str,
    partition: u32,
    uuid: &uuid::Uuid,
) -> PathBuf {
    data_dir.join(format!(
        "{topic}-{partition}.{}{STRAY_SUFFIX}",
        uuid.simple()
    ))
}

/// `<partition dir>/partition.metadata`.
pub fn partition_metadata_file(dir: &Path) -> PathBuf {
    dir.join(PARTITION_METADATA_FILE)
}

/// `<dir>/<base:020>.<ext>`.
pub fn segment_file(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// The base offset of a segment file name like `00000000000000000042.log`
/// with extension `ext`, or `None` for any other name.
pub fn parse_segment_file_name(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// `<data>/.clean-shutdown`.
pub fn clean_shutdown_file(data_dir: &Path) -> PathBuf {
    data_dir.join(CLEAN_SHUTDOWN_FILE)
}

/// `<data>/.lock`, locked exclusively by the engine that has the directory open.
pub fn lock_file(data_dir: &Path) -> PathBuf {
    data_dir.join(LOCK_FILE)
}

/// `<data>/cluster-id`.
pub fn cluster_id_file(data_dir: &Path) -> PathBuf {
    data_dir.join(CLUSTER_ID_FILE)
}

/// `<data>/catalog.db`.
pub fn catalog_file(data_dir: &Path) -> PathBuf {
    data_dir.join(CATALOG_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let p = segment_file(Path::new("/d"), 42, LOG_EXT);
        assert_eq!(p, PathBuf::from("/d/00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_file_name(name, LOG_EXT), Some(42));
        assert_eq!(parse_segment_file_name(name, INDEX_EXT), None);
        let t = segment_file(Path::new("/d"), 42, TXN_INDEX_EXT);
        assert_eq!(t, PathBuf::from("/d/00000000000000000042.txnindex"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_file_name(name, TXN_INDEX_EXT), Some(42));
        assert_eq!(parse_segment_file_name("42.log", LOG_EXT), None);
        assert_eq!(
            parse_segment_file_name("0000000000000000004x.log", LOG_EXT),
            None
        );
    }
}
