//! Idempotent producer state of one partition: per producer id, its epoch
//! and last five batches' sequence ranges and offsets, as Kafka's
//! `ProducerStateManager` keeps them.
//!
//! Owns: the sequence checks an append must pass ([`ProducerStateManager::check`]),
//! the state update after it, and the `<offset>.snapshot` files
//! (format: [`crate::format::producer_snapshot`]) written at every roll and
//! at clean shutdown, so that opening a log reads the latest snapshot and
//! scans only the batches after it. Producers idle longer than
//! `producer.id.expiration.ms` are forgotten (checked at rolls, at shutdown
//! and by the background flush job), and so are producers with no batch
//! left after retention. Must never decide retention; snapshots below the
//! log start offset go when their segments go.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::producer_snapshot::{
    AbortedTxn, ProducerBatch, ProducerEntry, ProducerSnapshot, PRODUCER_SNAPSHOT_VERSION,
};
use crate::format::records::ControlType;
use crate::format::BatchHeader;

use super::append_error::AppendError;
use super::paths::{parse_segment_file_name, segment_file, SNAPSHOT_EXT};
use super::segments::LogSegments;

/// Batches remembered per producer (Kafka: at most five in flight).
pub const BATCHES_PER_PRODUCER: usize = 5;

pub use crate::config::DEFAULT_PRODUCER_ID_EXPIRATION_MS;

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

/// The sequence number that follows `last` (wrapping at `i32::MAX` to 0).
fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == next_sequence(last)
}

/// Whether a batch carries idempotent producer state.
fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && !h.is_control()
}

/// Every idempotent producer's state in one partition.
#[derive(Debug, Default, Clone)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// Aborted transactions whose markers are in the local log, by marker
    /// offset: a cache of the local segments' `.txnindex` entries, carried
    /// in snapshots (and so in older manifests). Entries below the local
    /// log start are pruned when their segments go (they are in those
    /// segments' txnindexes, tiered with them).
    aborted: Vec<AbortedTxn>,
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
            aborted: snapshot.aborted_txns,
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
            aborted_txns: self.aborted.clone(),
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
    /// epoch is [`AppendError::InvalidProducerEpoch`]; a batch equal to one
    /// of the producer's last five is a duplicate; otherwise its first
    /// sequence must follow the producer's last one (or be 0 with a new
    /// epoch), else [`AppendError::OutOfOrderSequence`]. A producer with no
    /// state (new, or all its batches gone with retention) may start at any
    /// sequence.
    pub(crate) fn check<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a BatchHeader>,
    ) -> std::result::Result<ProducerCheck, AppendError> {
        // Earlier batches of the same request count for later ones.
        let mut pending: HashMap<i64, ProducerEntry> = HashMap::new();
        for h in headers {
            if !is_idempotent(h) {
                continue;
            }
            if h.base_sequence < 0 {
                return Err(AppendError::MissingSequence {
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                });
            }
            let first = h.base_sequence;
            let last = last_sequence(first, h.last_offset_delta);
            let entry = pending
                .get(&h.producer_id)
                .or_else(|| self.producers.get(&h.producer_id));
            if let Some(e) = entry {
                if h.producer_epoch < e.epoch {
                    return Err(AppendError::InvalidProducerEpoch {
                        producer_id: h.producer_id,
                        current: e.epoch,
                        got: h.producer_epoch,
                    });
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
                            return Err(AppendError::OutOfOrderSequence {
                                producer_id: h.producer_id,
                                epoch: e.epoch,
                                expected: next_sequence(prev.last_seq),
                                got: first,
                            });
                        }
                    }
                } else if first != 0 {
                    // A new epoch starts its sequences again at 0.
                    return Err(AppendError::OutOfOrderSequence {
                        producer_id: h.producer_id,
                        epoch: h.producer_epoch,
                        expected: 0,
                        got: first,
                    });
                }
            }
            let mut next = entry
                .cloned()
                .unwrap_or_else(|| ProducerEntry::new(h.producer_id, h.producer_epoch));
            apply(&mut next, h, -1);
            pending.insert(h.producer_id, next);
        }
        Ok(ProducerCheck::Append)
    }

    /// Record an appended batch (its offsets assigned), appended at
    /// `timestamp_ms` (the broker's clock; when rebuilding from the log, the
    /// batch's max timestamp).
    pub fn update(&mut self, h: &BatchHeader, timestamp_ms: i64) {
        if !is_idempotent(h) {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_id, h.producer_epoch));
        apply(entry, h, timestamp_ms);
        if h.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(h.base_offset);
        }
    }

    /// Record a transaction marker of `producer_id` at `marker_offset`
    /// (Kafka's `appendEndTxnMarker`): the producer's open transaction
    /// ends; an aborted one is added to the aborted-transaction index with
    /// the last stable offset after it, and that entry is returned (for
    /// the `.txnindex` of the segment holding the marker). A marker of a
    /// newer epoch (the coordinator fenced the producer) starts that epoch.
    pub fn complete_txn(
        &mut self,
        producer_id: i64,
        epoch: i16,
        marker_offset: i64,
        kind: ControlType,
        timestamp_ms: i64,
    ) -> Option<AbortedTxn> {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(producer_id, epoch));
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = entry.last_timestamp.max(timestamp_ms);
        let first = entry.current_txn_first_offset.take();
        if kind == ControlType::Abort {
            let first_offset = first.unwrap_or(marker_offset);
            let last_stable_offset = self.first_unstable_offset().unwrap_or(marker_offset + 1);
            let txn = AbortedTxn {
                producer_id,
                first_offset,
                last_offset: marker_offset,
                last_stable_offset,
            };
            self.aborted.push(txn);
            return Some(txn);
        }
        None
    }

    /// Forget cached aborted transactions whose markers are below
    /// `offset` (the local log start moved: their segments' txnindexes
    /// hold them).
    pub fn prune_aborted_below(&mut self, offset: i64) {
        self.aborted.retain(|a| a.last_offset >= offset);
    }

    /// The first offset of the oldest open transaction (Kafka's first
    /// unstable offset); `None` when no transaction is open.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|p| p.current_txn_first_offset)
            .min()
    }

    /// Aborted transactions that overlap `[from, upper)` (Kafka's
    /// `collectAbortedTransactions`): a read_committed consumer reading
    /// that range drops their records.
    pub fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < upper)
            .copied()
            .collect()
    }

    /// The aborted-transaction index, by marker offset.
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Forget producers idle for `expiration_ms` or longer at `now_ms`
    /// (Kafka's `producer.id.expiration.ms`: `now - last timestamp >=
    /// expiration`). Returns how many were removed. A producer that comes
    /// back afterwards is treated as new: it may start at any sequence.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        // A producer with an open transaction is kept: its first offset
        // holds the last stable offset until the coordinator ends it.
        self.producers.retain(|_, p| {
            p.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(p.last_activity_ms()) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Forget producers whose last batch is wholly below `log_start_offset`
    /// (retention removed all their batches), as Kafka does when the log
    /// start offset moves. Returns how many were removed.
    pub fn remove_below(&mut self, log_start_offset: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, p| {
            p.current_txn_first_offset.is_some()
                || p.batches
                    .last()
                    .is_some_and(|b| b.last_offset >= log_start_offset)
        });
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
        before - self.producers.len()
    }
}

impl ProducerEntry {
    fn new(producer_id: i64, epoch: i16) -> Self {
        ProducerEntry {
            producer_id,
            epoch,
            batches: Vec::new(),
            last_timestamp: -1,
            current_txn_first_offset: None,
        }
    }
}

fn apply(entry: &mut ProducerEntry, h: &BatchHeader, timestamp_ms: i64) {
    entry.last_timestamp = entry.last_timestamp.max(timestamp_ms);
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

/// What [`rebuild`] found.
pub(super) struct Rebuilt {
    pub producers: ProducerStateManager,
    /// Whether a snapshot was used.
    pub had_snapshot: bool,
    /// The offset scanned from.
    pub from: i64,
    pub scanned: usize,
    /// The `.txnindex` entries of each segment whose index was not known,
    /// by base offset, for the segments scanned whole.
    pub txn_indexes: BTreeMap<i64, Vec<AbortedTxn>>,
}

/// Rebuild a log's producer state: the latest snapshot at or below the log
/// end (later ones describe data that is gone and are deleted), then every
/// batch after it. With no usable snapshot, as in Kafka, only the last two
/// segments are scanned (older producers are taken to have expired). A
/// batch that cannot be read ends the scan with a warning naming the file
/// and position; the state built so far is kept.
///
/// Segments whose transaction index is not known (recovered, or its file
/// missing) get it rebuilt, as Kafka's loader does by replaying producer
/// state over them: the replay then starts at the latest snapshot at or
/// below the first such segment (the log start without one), so each
/// ABORT marker's entry has its transaction's first offset and the last
/// stable offset of its time.
pub(super) fn rebuild(
    name: &str,
    dir: &Path,
    segments: &LogSegments,
    (start, end): (i64, i64),
    now: i64,
) -> Result<Rebuilt> {
    let unknown: Vec<i64> = segments
        .iter()
        .filter(|s| !s.txn_index_known())
        .map(|s| s.base_offset())
        .collect();
    let newest_allowed = unknown.first().map_or(end, |&b| b.min(end));
    let mut loaded = None;
    for offset in snapshot_files(dir).into_iter().rev() {
        if offset > end {
            let path = segment_file(dir, offset, SNAPSHOT_EXT);
            std::fs::remove_file(&path).map_err(|e| Error::io("cannot delete", &path, e))?;
            continue;
        }
        if loaded.is_none() && offset >= start && offset <= newest_allowed {
            loaded = read_snapshot(dir, offset);
        }
    }
    let had_snapshot = loaded.is_some();
    let (mut producers, from) = match loaded {
        Some(s) => {
            let from = s.offset;
            (ProducerStateManager::from_snapshot(s), from)
        }
        None if !unknown.is_empty() => (ProducerStateManager::default(), start),
        None => {
            let bases = segments.base_offsets();
            let from = bases
                .len()
                .checked_sub(2)
                .map(|i| bases[i])
                .unwrap_or(start);
            (ProducerStateManager::default(), from)
        }
    };
    let mut txn_indexes: BTreeMap<i64, Vec<AbortedTxn>> =
        unknown.iter().map(|&b| (b, Vec::new())).collect();
    let mut scanned = 0;
    for seg in segments.starting_at(from) {
        let base = seg.base_offset();
        let mut entries = Vec::new();
        let result = seg.for_each_batch_from(from, |h| {
            let at = if h.max_timestamp >= 0 {
                h.max_timestamp
            } else {
                now
            };
            if h.is_control() {
                // Transaction markers are rare: read the one batch for its type.
                let kind = seg
                    .read(h.base_offset, h.size(), true)
                    .ok()
                    .flatten()
                    .and_then(|b| crate::format::records::control_type(h, &b));
                if let Some(kind) = kind {
                    if let Some(txn) = producers.complete_txn(
                        h.producer_id,
                        h.producer_epoch,
                        h.base_offset,
                        kind,
                        at,
                    ) {
                        entries.push(txn);
                    }
                }
            } else {
                producers.update(h, at);
            }
            scanned += 1;
        });
        if result.is_ok() {
            if let Some(rebuilt) = txn_indexes.get_mut(&base) {
                *rebuilt = entries;
            }
        } else {
            // This segment and the later ones were not scanned whole:
            // their indexes stay unknown.
            txn_indexes.retain(|&b, _| b < base);
        }
        if let Err(e) = result {
            tracing::warn!(
                log = %name,
                error = %e,
                "unreadable batch while rebuilding producer state; keeping the state read before it"
            );
            break;
        }
    }
    Ok(Rebuilt {
        producers,
        had_snapshot,
        from,
        scanned,
        txn_indexes,
    })
}

/// Write `producers` as `<dir>/<offset>.snapshot` (write then rename) and
/// return its path. Not fsynced here: a roll's snapshot is synced with its
/// sealed segment by the background flush, a shutdown's by `close`. A torn
/// file does not parse, and the state is then rebuilt from an older
/// snapshot and the log.
pub(super) fn write_snapshot(
    dir: &Path,
    producers: &ProducerStateManager,
    offset: i64,
) -> Result<std::path::PathBuf> {
    let path = segment_file(dir, offset, SNAPSHOT_EXT);
    let tmp = path.with_extension(format!("{SNAPSHOT_EXT}.tmp"));
    std::fs::write(&tmp, producers.snapshot(offset).to_json())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io("cannot write producer snapshot", &path, e))?;
    Ok(path)
}

/// Delete the snapshots in `dir` whose offset `doomed` says.
pub(super) fn delete_snapshots(dir: &Path, doomed: impl Fn(i64) -> bool) -> Result<()> {
    for offset in snapshot_files(dir) {
        if doomed(offset) {
            let path = segment_file(dir, offset, SNAPSHOT_EXT);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("cannot delete", &path, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
