//! Idempotent producer state of one partition: per producer id, its epoch
//! and last five batches' sequence ranges and offsets, as Kafka's
//! `ProducerStateManager` keeps them.
//!
//! Owns: the sequence checks an append must pass ([`ProducerStateManager::check`]),
//! the state update after it, and the `<offset>.snapshot` files
//! (format: [`crate::format::producer_snapshot`]) written at every roll and
//! at clean shutdown, so that opening a log reads the latest snapshot and
//! scans only the batches after it. Must never decide retention; snapshots
//! below the log start offset go when their segments go.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::format::producer_snapshot::{
    ProducerBatch, ProducerEntry, ProducerSnapshot, PRODUCER_SNAPSHOT_VERSION,
};
use crate::format::{BatchHeader, Batches};

use super::local_log::LocalLog;
use super::paths::{parse_segment_file_name, segment_file, SNAPSHOT_EXT};

/// Batches remembered per producer (Kafka: at most five in flight).
pub const BATCHES_PER_PRODUCER: usize = 5;

/// What an append's producer check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerCheck {
    /// New batches in sequence (or from no idempotent producer): append.
    Append,
    /// A retry of a batch already in the log: acknowledge it with its
    /// original offsets, append nothing.
    Duplicate(ProducerBatch),
}

/// The sequence number of a batch's last record (sequences wrap at
/// `i32::MAX` to 0, as Kafka's do).
pub fn last_sequence(base: i32, last_offset_delta: i32) -> i32 {
    if base > i32::MAX - last_offset_delta {
        last_offset_delta - (i32::MAX - base) - 1
    } else {
        base + last_offset_delta
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    (last < i32::MAX && next == last + 1) || (last == i32::MAX && next == 0)
}

/// Whether a batch carries idempotent producer state.
fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && !h.is_control()
}

/// Every idempotent producer's state in one partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    /// State from a snapshot.
    pub fn from_snapshot(snapshot: ProducerSnapshot) -> Self {
        ProducerStateManager {
            producers: snapshot
                .producers
                .into_iter()
                .map(|p| (p.producer_id, p))
                .collect(),
        }
    }

    /// The state as a snapshot at `offset`, producers by id.
    pub fn snapshot(&self, offset: i64) -> ProducerSnapshot {
        let mut producers: Vec<ProducerEntry> = self.producers.values().cloned().collect();
        producers.sort_by_key(|p| p.producer_id);
        ProducerSnapshot {
            format_version: PRODUCER_SNAPSHOT_VERSION,
            offset,
            producers,
        }
    }

    /// Producers known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// A producer's state.
    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Check the batches of one append, in order, as Kafka does: a stale
    /// epoch is `InvalidProducerEpoch`; a batch equal to one of the
    /// producer's last five is a duplicate; otherwise its first sequence
    /// must follow the producer's last one (or be 0 with a new epoch), else
    /// `OutOfOrderSequence`. A producer with no state (new, or all its
    /// batches gone with retention) may start at any sequence.
    pub fn check<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a BatchHeader>,
    ) -> Result<ProducerCheck> {
        // Earlier batches of the same request count for later ones.
        let mut pending: HashMap<i64, ProducerEntry> = HashMap::new();
        for h in headers {
            if !is_idempotent(h) {
                continue;
            }
            if h.base_sequence < 0 {
                return Err(Error::invalid(format!(
                    "batch of producer {} has no sequence number",
                    h.producer_id
                )));
            }
            let first = h.base_sequence;
            let last = last_sequence(first, h.last_offset_delta);
            let entry = pending
                .get(&h.producer_id)
                .or_else(|| self.producers.get(&h.producer_id));
            if let Some(e) = entry {
                if h.producer_epoch < e.epoch {
                    return Err(Error::new(
                        ErrorKind::InvalidProducerEpoch,
                        format!(
                            "producer {} epoch {} is older than the current epoch {}",
                            h.producer_id, h.producer_epoch, e.epoch
                        ),
                    ));
                }
                if h.producer_epoch == e.epoch {
                    if let Some(dup) = e
                        .batches
                        .iter()
                        .find(|b| b.first_seq == first && b.last_seq == last)
                    {
                        return Ok(ProducerCheck::Duplicate(*dup));
                    }
                    if let Some(prev) = e.batches.last() {
                        if !in_sequence(prev.last_seq, first) {
                            return Err(Error::new(
                                ErrorKind::OutOfOrderSequence,
                                format!(
                                    "producer {} sent sequence {first} after {} (epoch {})",
                                    h.producer_id, prev.last_seq, e.epoch
                                ),
                            ));
                        }
                    }
                } else if first != 0 {
                    return Err(Error::new(
                        ErrorKind::OutOfOrderSequence,
                        format!(
                            "producer {} starts its new epoch {} at sequence {first}, not 0",
                            h.producer_id, h.producer_epoch
                        ),
                    ));
                }
            }
            let mut next = entry.cloned().unwrap_or(ProducerEntry {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                batches: Vec::new(),
            });
            apply(&mut next, h);
            pending.insert(h.producer_id, next);
        }
        Ok(ProducerCheck::Append)
    }

    /// Record an appended batch (its offsets assigned).
    pub fn update(&mut self, h: &BatchHeader) {
        if !is_idempotent(h) {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                batches: Vec::new(),
            });
        apply(entry, h);
    }
}

fn apply(entry: &mut ProducerEntry, h: &BatchHeader) {
    if h.producer_epoch != entry.epoch {
        entry.epoch = h.producer_epoch;
        entry.batches.clear();
    }
    entry.batches.push(ProducerBatch {
        first_seq: h.base_sequence,
        last_seq: last_sequence(h.base_sequence, h.last_offset_delta),
        first_offset: h.base_offset,
        last_offset: h.last_offset(),
        max_timestamp: h.max_timestamp,
    });
    if entry.batches.len() > BATCHES_PER_PRODUCER {
        entry.batches.remove(0);
    }
}

/// Snapshot files in `dir`, by offset.
fn snapshot_files(dir: &Path) -> Vec<i64> {
    let mut offsets: Vec<i64> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| parse_segment_file_name(n, SNAPSHOT_EXT))
                })
                .collect()
        })
        .unwrap_or_default();
    offsets.sort_unstable();
    offsets
}

/// The snapshot stored at `offset` in `dir`, if it exists and parses.
pub fn read_snapshot(dir: &Path, offset: i64) -> Option<ProducerSnapshot> {
    let path = segment_file(dir, offset, SNAPSHOT_EXT);
    let bytes = std::fs::read(&path).ok()?;
    match ProducerSnapshot::from_json(&bytes) {
        Ok(s) if s.offset == offset => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable producer snapshot");
            None
        }
    }
}

impl LocalLog {
    /// The partition's idempotent producer state.
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producers
    }

    /// Rebuild the producer state: the latest snapshot at or below the log
    /// end (later ones describe data that is gone and are deleted), then
    /// every batch after it. Returns the batches scanned.
    pub(super) fn load_producer_state(&mut self) -> Result<usize> {
        let end = self.log_end_offset();
        let start = self.log_start_offset();
        let mut loaded = None;
        for offset in snapshot_files(self.dir()).into_iter().rev() {
            if offset > end {
                let path = segment_file(self.dir(), offset, SNAPSHOT_EXT);
                std::fs::remove_file(&path).map_err(|e| Error::io("cannot delete", &path, e))?;
                continue;
            }
            if loaded.is_none() && offset >= start {
                loaded = read_snapshot(self.dir(), offset);
            }
        }
        let mut next = start;
        *self.producers = match loaded {
            Some(s) => {
                next = s.offset;
                ProducerStateManager::from_snapshot(s)
            }
            None => ProducerStateManager::default(),
        };
        let mut scanned = 0;
        while next < end {
            let bytes = self.read(next, 1 << 20, true)?;
            if bytes.is_empty() {
                break;
            }
            let before = next;
            for batch in Batches::new(&bytes) {
                let (_, h, _) = batch.map_err(|e| {
                    Error::data(format!(
                        "{}: unreadable batch near offset {next} while rebuilding producer state: {e}",
                        self.name()
                    ))
                })?;
                if h.last_offset() < next {
                    continue;
                }
                self.producers.update(&h);
                scanned += 1;
                next = h.next_offset();
            }
            if next == before {
                break;
            }
        }
        if scanned > 0 || !self.producers.is_empty() {
            tracing::debug!(
                log = self.name(),
                producers = self.producers.len(),
                batches_scanned = scanned,
                "producer state loaded"
            );
        }
        Ok(scanned)
    }

    /// Write the producer state at the log end as `<offset>.snapshot`
    /// (write then rename; not fsynced: a torn file does not parse and the
    /// state is then rebuilt from an older snapshot and the log).
    pub(super) fn write_producer_snapshot(&self) -> Result<()> {
        let offset = self.log_end_offset();
        let path = segment_file(self.dir(), offset, SNAPSHOT_EXT);
        let tmp = path.with_extension(format!("{SNAPSHOT_EXT}.tmp"));
        std::fs::write(&tmp, self.producers.snapshot(offset).to_json())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io("cannot write producer snapshot", &path, e))
    }

    /// Delete snapshots below `offset` (their segments are gone) or above
    /// it (after truncation), as `keep` says.
    pub(super) fn delete_producer_snapshots(&self, doomed: impl Fn(i64) -> bool) -> Result<()> {
        for offset in snapshot_files(self.dir()) {
            if doomed(offset) {
                let path = segment_file(self.dir(), offset, SNAPSHOT_EXT);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("cannot delete", &path, e)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    fn kind(r: Result<ProducerCheck>) -> ErrorKind {
        r.expect_err("rejected").kind()
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut m = ProducerStateManager::default();
        let b0 = header(7, 0, 0, 5, 100);
        assert_eq!(m.check([&b0]).unwrap(), ProducerCheck::Append);
        m.update(&b0);
        // The same batch again: a duplicate with its original offsets.
        match m.check([&header(7, 0, 0, 5, -1)]).unwrap() {
            ProducerCheck::Duplicate(b) => assert_eq!((b.first_offset, b.last_offset), (100, 104)),
            other => panic!("{other:?}"),
        }
        // Next in sequence appends; a gap does not.
        assert_eq!(
            m.check([&header(7, 0, 5, 1, -1)]).unwrap(),
            ProducerCheck::Append
        );
        assert_eq!(
            kind(m.check([&header(7, 0, 7, 1, -1)])),
            ErrorKind::OutOfOrderSequence
        );
        // Within one request, the second batch follows the first.
        assert_eq!(
            m.check([&header(7, 0, 5, 2, -1), &header(7, 0, 7, 1, -1)])
                .unwrap(),
            ProducerCheck::Append
        );
        // A new epoch starts at 0; an old epoch is fenced.
        assert_eq!(
            kind(m.check([&header(7, 1, 5, 1, -1)])),
            ErrorKind::OutOfOrderSequence
        );
        m.update(&header(7, 1, 0, 1, 105));
        assert_eq!(
            kind(m.check([&header(7, 0, 5, 1, -1)])),
            ErrorKind::InvalidProducerEpoch
        );
        // Unknown producers and non-idempotent batches pass.
        assert_eq!(
            m.check([&header(9, 0, 42, 1, -1), &header(-1, -1, -1, 3, -1)])
                .unwrap(),
            ProducerCheck::Append
        );
    }

    #[test]
    fn keeps_five_batches_and_wraps_sequences() {
        let mut m = ProducerStateManager::default();
        for i in 0..7 {
            m.update(&header(1, 0, i * 2, 2, i64::from(i) * 2));
        }
        let e = m.producer(1).unwrap();
        assert_eq!(e.batches.len(), BATCHES_PER_PRODUCER);
        assert_eq!(e.batches[0].first_seq, 4);
        // The oldest batches are forgotten: no longer recognised.
        assert_eq!(
            kind(m.check([&header(1, 0, 0, 2, -1)])),
            ErrorKind::OutOfOrderSequence
        );
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        assert!(in_sequence(i32::MAX, 0));
        let snap = m.snapshot(14);
        let back = ProducerStateManager::from_snapshot(snap.clone());
        assert_eq!(back.snapshot(14), snap);
    }
}
