//! The aborted-transaction index of one segment (Kafka's
//! `TransactionIndex`): one entry per ABORT marker the segment holds.
//!
//! ## Format
//!
//! See [`crate::format::txn_index`]: 34-byte big-endian entries (version,
//! producer id, first offset, last offset = the marker's, last stable
//! offset), in marker order.
//!
//! The entries live in memory and are written through: an ABORT marker's
//! entry is appended to the file when the marker is appended
//! ([`TransactionIndex::append`]); truncation and rebuilds rewrite it. The
//! file of every segment this build wrote exists (empty when no
//! transaction was aborted in it), so a missing file means "not known"
//! and the loader rebuilds it from the markers, as it does for every
//! segment it recovers. A file that does not decode is an error naming it
//! (for a segment the loader trusts) or rebuilt (for one it recovers).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::producer_snapshot::AbortedTxn;
use crate::format::txn_index::{decode_txn_index, encode_entry, encode_txn_index};

/// The aborted transactions whose markers are in one segment.
#[derive(Debug)]
pub struct TransactionIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// The file is missing or holds other entries: rewrite it on the next
    /// flush.
    dirty: bool,
}

impl TransactionIndex {
    /// A new, empty index (its file written on the next flush).
    pub fn empty(path: PathBuf) -> Self {
        TransactionIndex {
            path,
            entries: Vec::new(),
            dirty: true,
        }
    }

    /// The index in `path`: `Ok(None)` when the file does not exist, an
    /// error naming the file when it cannot be read or does not decode.
    pub fn load(path: PathBuf) -> Result<Option<Self>> {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot read transaction index", &path, e)),
        };
        let entries = decode_txn_index(&bytes).map_err(|e| {
            Error::data(format!("corrupt transaction index {}: {e}", path.display()))
        })?;
        Ok(Some(TransactionIndex {
            path,
            entries,
            dirty: false,
        }))
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries, in marker order.
    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    /// Add the entry of an ABORT marker just appended to the segment and
    /// write it to the file (the marker is in the page cache too; both are
    /// fsynced with the segment). A marker not after the last entry's is
    /// ignored (a replay of one already indexed).
    pub fn append(&mut self, entry: AbortedTxn) -> Result<()> {
        if self
            .entries
            .last()
            .is_some_and(|l| l.last_offset >= entry.last_offset)
        {
            return Ok(());
        }
        self.entries.push(entry);
        if self.dirty {
            return self.flush(false);
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&encode_entry(&entry)))
            .map_err(|e| Error::io("cannot write transaction index", &self.path, e))
    }

    /// Replace every entry (a rebuild); written on the next flush.
    pub fn replace(&mut self, entries: Vec<AbortedTxn>) {
        self.entries = entries;
        self.dirty = true;
    }

    /// Drop the entries of markers at or after `offset` (truncation).
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = self.entries.partition_point(|a| a.last_offset < offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.dirty = true;
        }
    }

    /// Write the file if it is missing or stale; fsync it when `sync`.
    pub fn flush(&mut self, sync: bool) -> Result<()> {
        if !self.dirty && !sync {
            return Ok(());
        }
        let write = || -> std::io::Result<()> {
            if self.dirty {
                let tmp = self.path.with_extension("txnindex.tmp");
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&encode_txn_index(&self.entries))?;
                if sync {
                    f.sync_all()?;
                }
                std::fs::rename(&tmp, &self.path)
            } else {
                std::fs::File::open(&self.path)?.sync_all()
            }
        };
        write().map_err(|e| Error::io("cannot write transaction index", &self.path, e))?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn appends_write_through_and_truncation_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        assert!(TransactionIndex::load(path.clone()).unwrap().is_none());
        let mut idx = TransactionIndex::empty(path.clone());
        idx.flush(false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 0);
        idx.append(txn(1, 0, 4)).unwrap();
        idx.append(txn(2, 2, 9)).unwrap();
        idx.append(txn(2, 2, 9)).unwrap(); // a replay: ignored
        assert_eq!(std::fs::read(&path).unwrap().len(), 68);
        let back = TransactionIndex::load(path.clone()).unwrap().unwrap();
        assert_eq!(back.entries(), &[txn(1, 0, 4), txn(2, 2, 9)]);
        idx.truncate_to(9);
        idx.flush(false).unwrap();
        let back = TransactionIndex::load(path.clone()).unwrap().unwrap();
        assert_eq!(back.entries(), &[txn(1, 0, 4)]);
    }

    #[test]
    fn a_garbled_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000042.txnindex");
        std::fs::write(&path, [0u8; 35]).unwrap();
        let e = TransactionIndex::load(path).unwrap_err().to_string();
        assert!(
            e.contains("00000000000000000042.txnindex") && e.contains("multiple of the 34-byte"),
            "{e}"
        );
    }
}
