//! The persistence both sparse indexes share: entries in memory, the file a
//! prefix of them written on flush, rewritten after a truncation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::format::index::{OffsetEntry, TimeEntry};

/// An index entry with a fixed-size encoding and a relative offset.
pub trait IndexEntry: Copy {
    /// Append the entry's encoding to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);
}

impl IndexEntry for OffsetEntry {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode());
    }
}

impl IndexEntry for TimeEntry {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode());
    }
}

/// Entries of one index file.
#[derive(Debug)]
pub struct IndexFile<E> {
    path: PathBuf,
    pub(super) entries: Vec<E>,
    /// How many of `entries` the file holds (a prefix).
    persisted: usize,
    /// The file holds entries no longer in `entries`, or does not exist yet.
    rewrite: bool,
}

impl<E: IndexEntry> IndexFile<E> {
    /// No entries, file to be (re)written on the next flush.
    pub fn empty(path: PathBuf) -> Self {
        IndexFile {
            path,
            entries: Vec::new(),
            persisted: 0,
            rewrite: true,
        }
    }

    /// Entries that are already in the file at `path`.
    pub fn loaded(path: PathBuf, entries: Vec<E>) -> Self {
        IndexFile {
            path,
            persisted: entries.len(),
            entries,
            rewrite: false,
        }
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drop every entry (before a rebuild).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.persisted = 0;
        self.rewrite = true;
    }

    /// Write entries not yet in the file; fsync when `sync`.
    pub fn flush(&mut self, sync: bool) -> std::io::Result<()> {
        if !self.rewrite && self.persisted == self.entries.len() && !sync {
            return Ok(());
        }
        let mut file: File = if self.rewrite {
            self.persisted = 0;
            File::create(&self.path)?
        } else {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?
        };
        let mut buf = Vec::new();
        for e in &self.entries[self.persisted..] {
            e.encode_into(&mut buf);
        }
        file.write_all(&buf)?;
        if sync {
            file.sync_all()?;
        }
        self.persisted = self.entries.len();
        self.rewrite = false;
        Ok(())
    }
}
