//! The sparse time index of one segment: timestamp → offset.
//!
//! ## Format
//!
//! See [`crate::format::index`]: 12-byte entries `timestamp: i64,
//! relativeOffset: u32`, big-endian. An entry `(t, o)` says: the largest
//! timestamp among offsets ≤ `o` is `t`. Entries are added beside offset
//! index entries when the max timestamp grew, and once more when the segment
//! is sealed, so the last entry holds the segment's max timestamp.
//!
//! Like the offset index it lives in memory and is written on flush; recovery
//! rebuilds it from the log.

use std::path::{Path, PathBuf};

use super::index_file::IndexFile;
use crate::format::index::{decode_time_index, IndexError, TimeEntry};

/// A timestamp and the offset it belongs to (Kafka's
/// `TimestampAndOffset`): a time index entry, or the answer of a lookup
/// by timestamp (ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampAndOffset {
    /// Milliseconds since the epoch; -1 when unknown (Kafka's
    /// `NO_TIMESTAMP`).
    pub timestamp: i64,
    pub offset: i64,
}

impl TimestampAndOffset {
    /// An offset with no timestamp (ListOffsets' earliest and latest).
    pub fn without_timestamp(offset: i64) -> Self {
        TimestampAndOffset {
            timestamp: -1,
            offset,
        }
    }
}

/// Timestamp → offset, sparse.
#[derive(Debug)]
pub struct TimeIndex {
    file: IndexFile<TimeEntry>,
    base_offset: i64,
}

impl TimeIndex {
    /// A new, empty index.
    pub fn empty(path: PathBuf, base_offset: i64) -> Self {
        Self {
            file: IndexFile::empty(path),
            base_offset,
        }
    }

    /// Load the index file; a missing file is an empty index.
    pub fn load(path: PathBuf, base_offset: i64) -> Result<Self, IndexError> {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let entries = decode_time_index(&bytes)?;
        Ok(Self {
            file: IndexFile::loaded(path, entries),
            base_offset,
        })
    }

    /// Path of the index file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.file.entries.is_empty()
    }

    /// Record that the max timestamp up to `offset` is `timestamp`, if that is
    /// larger than the last entry's timestamp.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let rel = (offset - self.base_offset) as u32;
        if let Some(last) = self.file.entries.last() {
            if timestamp <= last.timestamp || rel < last.relative_offset {
                return;
            }
        }
        self.file.entries.push(TimeEntry {
            timestamp,
            relative_offset: rel,
        });
    }

    /// The last entry whose timestamp is strictly below `timestamp`: every
    /// offset up to it holds only smaller timestamps, so a search for the
    /// first record at or after `timestamp` can start after it.
    pub fn lookup_below(&self, timestamp: i64) -> Option<TimestampAndOffset> {
        let idx = self
            .file
            .entries
            .partition_point(|e| e.timestamp < timestamp);
        idx.checked_sub(1).map(|i| self.entry(self.file.entries[i]))
    }

    /// The last entry.
    pub fn last(&self) -> Option<TimestampAndOffset> {
        self.file.entries.last().map(|e| self.entry(*e))
    }

    fn entry(&self, e: TimeEntry) -> TimestampAndOffset {
        TimestampAndOffset {
            timestamp: e.timestamp,
            offset: self.base_offset + i64::from(e.relative_offset),
        }
    }

    /// Drop every entry (before a rebuild).
    pub fn clear(&mut self) {
        self.file.clear();
    }

    /// Write entries not yet in the file; fsync when `sync`.
    pub fn flush(&mut self, sync: bool) -> std::io::Result<()> {
        self.file.flush(sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_below_is_strict() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = TimeIndex::empty(dir.path().join("0.timeindex"), 0);
        idx.maybe_append(100, 5);
        idx.maybe_append(90, 6); // not larger: ignored
        idx.maybe_append(200, 10);
        assert_eq!(idx.file.entries.len(), 2);
        let at = |timestamp, offset| Some(TimestampAndOffset { timestamp, offset });
        assert_eq!(idx.lookup_below(100), None);
        assert_eq!(idx.lookup_below(101), at(100, 5));
        assert_eq!(idx.lookup_below(10_000), at(200, 10));
        idx.flush(true).unwrap();
        let back = TimeIndex::load(dir.path().join("0.timeindex"), 0).unwrap();
        assert_eq!(back.last(), at(200, 10));
    }
}
