//! The sparse offset index of one segment: offset → byte position.
//!
//! ## Format
//!
//! See [`crate::format::index`]: 8-byte entries `relativeOffset: u32,
//! position: u32`, big-endian, one per `index.interval.bytes` of log, keyed by
//! the base offset of the batch at that position.
//!
//! The entries live in memory; the file is written on [`OffsetIndex::flush`]
//! (segment roll, clean shutdown). It is never the only copy of anything:
//! recovery rebuilds it from the `.log` file.

use std::path::{Path, PathBuf};

use super::index_file::IndexFile;
use crate::format::index::{decode_offset_index, IndexError, OffsetEntry};

/// Offset → position, sparse.
#[derive(Debug)]
pub struct OffsetIndex {
    file: IndexFile<OffsetEntry>,
    base_offset: i64,
}

impl OffsetIndex {
    /// A new, empty index for the segment at `base_offset`.
    pub fn empty(path: PathBuf, base_offset: i64) -> Self {
        Self {
            file: IndexFile::empty(path),
            base_offset,
        }
    }

    /// Load the index file; a missing file is an empty index to be rebuilt.
    pub fn load(path: PathBuf, base_offset: i64) -> Result<Self, IndexError> {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let entries = decode_offset_index(&bytes)?;
        Ok(Self {
            file: IndexFile::loaded(path, entries),
            base_offset,
        })
    }

    /// Path of the index file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.file.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.file.entries.is_empty()
    }

    /// Add an entry for the batch with base offset `offset` at `position`.
    /// Entries must increase; a non-increasing one is ignored.
    pub fn append(&mut self, offset: i64, position: u32) {
        let rel = (offset - self.base_offset) as u32;
        if let Some(last) = self.file.entries.last() {
            if rel <= last.relative_offset || position <= last.position {
                return;
            }
        }
        self.file.entries.push(OffsetEntry {
            relative_offset: rel,
            position,
        });
    }

    /// The last entry with offset ≤ `offset` as `(offset, position)`, or the
    /// segment start `(base_offset, 0)`.
    pub fn lookup(&self, offset: i64) -> (i64, u32) {
        let rel = offset - self.base_offset;
        if rel < 0 {
            return (self.base_offset, 0);
        }
        let idx = self
            .file
            .entries
            .partition_point(|e| i64::from(e.relative_offset) <= rel);
        match idx.checked_sub(1) {
            Some(i) => {
                let e = self.file.entries[i];
                (self.base_offset + i64::from(e.relative_offset), e.position)
            }
            None => (self.base_offset, 0),
        }
    }

    /// The positions of the last two entries at or below `position`
    /// (batch starts), the later one second: `(None, None)` when none is.
    pub fn floor_positions(&self, position: u64) -> (Option<u32>, Option<u32>) {
        let idx = self
            .file
            .entries
            .partition_point(|e| u64::from(e.position) <= position);
        let at = |i: Option<usize>| i.map(|i| self.file.entries[i].position);
        (at(idx.checked_sub(2)), at(idx.checked_sub(1)))
    }

    /// The last entry as `(offset, position)`, if any.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.file
            .entries
            .last()
            .map(|e| (self.base_offset + i64::from(e.relative_offset), e.position))
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
    fn lookup_finds_the_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::empty(dir.path().join("0.index"), 100);
        idx.append(100, 0);
        idx.append(110, 4096);
        idx.append(120, 8192);
        assert_eq!(idx.lookup(99), (100, 0));
        assert_eq!(idx.lookup(100), (100, 0));
        assert_eq!(idx.lookup(115), (110, 4096));
        assert_eq!(idx.lookup(1000), (120, 8192));
        idx.flush(true).unwrap();
        let back = OffsetIndex::load(dir.path().join("0.index"), 100).unwrap();
        assert_eq!(back.lookup(115), (110, 4096));
        assert_eq!(back.len(), 3);
    }
}
