//! Partition directories as a whole: removing a deleted topic's, clearing
//! the way for a new partition, finishing removals a crash interrupted.
//!
//! The rule every function here keeps: a directory is removed only when it
//! provably belongs to no live topic, which means its `partition.metadata`
//! names a topic id the catalog recorded as deleted (or it already carries
//! the `-delete` suffix, which only a removal gives it). A directory whose
//! owner cannot be proven (no metadata file, an unreadable one, or an id
//! the catalog never deleted) is renamed aside with the `-stray` suffix and
//! kept: never removed, or read as another topic's, by its name alone.
//! Callers make the catalog decision first; these only carry it out, and
//! each is idempotent when repeated after a crash.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::local_log::sync_dir;
use super::{partition_metadata, paths};

/// Move a partition directory aside (renamed to `…-delete`, which the next
/// open also finishes removing) and remove it. Nothing to do when absent.
pub fn discard(data_dir: &Path, topic: &str, partition: u32) -> Result<()> {
    if let Some(doomed) = mark_deleted(data_dir, topic, partition)? {
        remove_marked(&doomed);
    }
    Ok(())
}

/// The cheap, durable half of [`discard`]: rename the directory to its
/// `-delete` name (which only a deletion gives it; the next open finishes
/// removing it) and return that name; `None` when absent.
pub fn mark_deleted(data_dir: &Path, topic: &str, partition: u32) -> Result<Option<PathBuf>> {
    let dir = paths::partition_dir(data_dir, topic, partition);
    if !dir.exists() {
        return Ok(None);
    }
    let doomed = paths::deleted_partition_dir(data_dir, topic, partition, &uuid::Uuid::new_v4());
    std::fs::rename(&dir, &doomed).map_err(|e| Error::io("cannot delete partition", &dir, e))?;
    sync_dir(data_dir)?;
    Ok(Some(doomed))
}

/// The slow half of [`discard`]: remove a directory [`mark_deleted`]
/// renamed (a failure is retried at the next open).
pub fn remove_marked(doomed: &Path) {
    if let Err(e) = std::fs::remove_dir_all(doomed) {
        tracing::warn!(dir = %doomed.display(), error = %e, "cannot remove deleted partition; will retry at next open");
    }
}

/// What [`clear_way`] did with a directory in a new partition's way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// Nothing was there.
    Empty,
    /// A deleted topic's directory, removed.
    Removed(uuid::Uuid),
    /// A directory of unproven ownership, kept under this new name.
    SetAside(PathBuf),
}

/// Make way for partition `partition` of a new `topic` (or one being
/// restored): a directory already there is removed if its metadata names a
/// topic in `deleted`, else set aside as `-stray`.
pub fn clear_way(
    data_dir: &Path,
    topic: &str,
    partition: u32,
    deleted: &HashSet<uuid::Uuid>,
) -> Result<Cleared> {
    let dir = paths::partition_dir(data_dir, topic, partition);
    if !dir.exists() {
        return Ok(Cleared::Empty);
    }
    let owner = partition_metadata::read(&dir);
    if let Ok(Some(id)) = owner {
        if deleted.contains(&id) {
            discard(data_dir, topic, partition)?;
            return Ok(Cleared::Removed(id));
        }
    }
    let stray = paths::stray_partition_dir(data_dir, topic, partition, &uuid::Uuid::new_v4());
    std::fs::rename(&dir, &stray).map_err(|e| Error::io("cannot move aside", &dir, e))?;
    sync_dir(data_dir)?;
    let owner = match owner {
        Ok(Some(id)) => format!("topic id {id}, which was never deleted here"),
        Ok(None) => "no partition.metadata".to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(
        dir = %dir.display(), kept_as = %stray.display(), %owner,
        "a directory of unproven ownership was in a new partition's way; it is kept, not deleted"
    );
    Ok(Cleared::SetAside(stray))
}

/// At open: finish removing `-delete` directories, and remove directories
/// whose metadata names a topic in `deleted` (a crash between DeleteTopics'
/// catalog transaction and its file removal), except those in `live`.
/// Returns how many directories went.
pub fn remove_deleted(
    data_dir: &Path,
    deleted: &HashSet<uuid::Uuid>,
    live: &HashSet<PathBuf>,
) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() || live.contains(&path) {
            continue;
        }
        let name = entry.file_name();
        let doomed = if name.to_string_lossy().ends_with(paths::DELETE_SUFFIX) {
            path
        } else if matches!(partition_metadata::read(&path), Ok(Some(id)) if deleted.contains(&id)) {
            let doomed = data_dir.join(format!(
                "{}.{}{}",
                name.to_string_lossy(),
                uuid::Uuid::new_v4().simple(),
                paths::DELETE_SUFFIX
            ));
            if let Err(e) = std::fs::rename(&path, &doomed)
                .map_err(|e| Error::io("cannot delete partition", &path, e))
            {
                tracing::warn!(error = %e, "cannot remove a deleted topic's partition");
                continue;
            }
            tracing::info!(dir = %path.display(), "removing a deleted topic's partition left by an interrupted delete");
            doomed
        } else {
            continue;
        };
        match std::fs::remove_dir_all(&doomed) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(dir = %doomed.display(), error = %e, "cannot remove deleted partition")
            }
        }
    }
    removed
}

/// Create partition directory `dir` for topic `topic_id` with an empty log
/// starting at `next_offset` (a restored partition: everything before is
/// in the bucket) and the idempotent producer state `producer_snapshot`
/// (a `.snapshot` file's JSON) at that offset.
pub fn create_starting_at(
    dir: &Path,
    topic_id: uuid::Uuid,
    next_offset: i64,
    index_interval_bytes: u64,
    now_ms: i64,
    producer_snapshot: Option<&[u8]>,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io("cannot create partition directory", dir, e))?;
    partition_metadata::write(dir, topic_id)?;
    drop(super::segment::LogSegment::create(
        dir,
        next_offset,
        index_interval_bytes,
        now_ms,
    )?);
    if let Some(snapshot) = producer_snapshot {
        let path = paths::segment_file(dir, next_offset, paths::SNAPSHOT_EXT);
        std::fs::write(&path, snapshot)
            .map_err(|e| Error::io("cannot write producer snapshot", &path, e))?;
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_deleted_topics_directory_is_removed() {
        let data = tempfile::tempdir().unwrap();
        let gone = uuid::Uuid::new_v4();
        let unknown = uuid::Uuid::new_v4();
        let deleted: HashSet<_> = [gone].into();
        let mk = |topic: &str, id: Option<uuid::Uuid>| {
            let dir = paths::partition_dir(data.path(), topic, 0);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("00000000000000000000.log"), b"data").unwrap();
            if let Some(id) = id {
                partition_metadata::write(&dir, id).unwrap();
            }
            dir
        };
        assert_eq!(
            clear_way(data.path(), "none", 0, &deleted).unwrap(),
            Cleared::Empty
        );
        mk("a", Some(gone));
        assert_eq!(
            clear_way(data.path(), "a", 0, &deleted).unwrap(),
            Cleared::Removed(gone)
        );
        for (topic, id) in [("b", Some(unknown)), ("c", None)] {
            mk(topic, id);
            let Cleared::SetAside(kept) = clear_way(data.path(), topic, 0, &deleted).unwrap()
            else {
                panic!("{topic}: not set aside");
            };
            assert!(
                kept.join("00000000000000000000.log").exists(),
                "{topic}: data kept"
            );
            assert!(!paths::partition_dir(data.path(), topic, 0).exists());
        }
        // At open: the deleted topic's directory goes, the others stay.
        let d = mk("d", Some(gone));
        let e = mk("e", Some(unknown));
        let f = mk("f", None);
        let live_but_deleted = mk("g", Some(gone));
        let live: HashSet<_> = [live_but_deleted.clone()].into();
        assert_eq!(remove_deleted(data.path(), &deleted, &live), 1);
        assert!(!d.exists());
        assert!(e.exists() && f.exists() && live_but_deleted.exists());
    }
}
