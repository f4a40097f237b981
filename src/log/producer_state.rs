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

use std::collections::HashMap;
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
    /// Aborted transactions whose markers are at or above the log start
    /// offset, by marker offset (the partition's aborted-transaction
    /// index, Kafka's `.txnindex` entries).
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
    /// the last stable offset after it. A marker of a newer epoch (the
    /// coordinator fenced the producer) starts that epoch.
    pub fn complete_txn(
        &mut self,
        producer_id: i64,
        epoch: i16,
        marker_offset: i64,
        kind: ControlType,
        timestamp_ms: i64,
    ) {
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
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: marker_offset,
                last_stable_offset,
            });
        }
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

/// Rebuild a log's producer state: the latest snapshot at or below the log
/// end (later ones describe data that is gone and are deleted), then every
/// batch after it. With no usable snapshot, as in Kafka, only the last two
/// segments are scanned (older producers are taken to have expired). A
/// batch that cannot be read ends the scan with a warning naming the file
/// and position; the state built so far is kept. Returns the state, whether
/// a snapshot was used, the offset scanned from and the batches scanned.
pub(super) fn rebuild(
    name: &str,
    dir: &Path,
    segments: &LogSegments,
    (start, end): (i64, i64),
    now: i64,
) -> Result<(ProducerStateManager, bool, i64, usize)> {
    let mut loaded = None;
    for offset in snapshot_files(dir).into_iter().rev() {
        if offset > end {
            let path = segment_file(dir, offset, SNAPSHOT_EXT);
            std::fs::remove_file(&path).map_err(|e| Error::io("cannot delete", &path, e))?;
            continue;
        }
        if loaded.is_none() && offset >= start {
            loaded = read_snapshot(dir, offset);
        }
    }
    let had_snapshot = loaded.is_some();
    let (mut producers, from) = match loaded {
        Some(s) => {
            let from = s.offset;
            (ProducerStateManager::from_snapshot(s), from)
        }
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
    let mut scanned = 0;
    for seg in segments.starting_at(from) {
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
                    producers.complete_txn(
                        h.producer_id,
                        h.producer_epoch,
                        h.base_offset,
                        kind,
                        at,
                    );
                }
            } else {
                producers.update(h, at);
            }
            scanned += 1;
        });
        if let Err(e) = result {
            tracing::warn!(
                log = %name,
                error = %e,
                "unreadable batch while rebuilding producer state; keeping the state read before it"
            );
            break;
        }
    }
    Ok((producers, had_snapshot, from, scanned))
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
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::log::LocalLog;

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

    use crate::error::ErrorKind;

    /// The public kind of a refusal, as the broker sees it.
    fn kind(r: std::result::Result<ProducerCheck, AppendError>) -> ErrorKind {
        Error::from(r.expect_err("rejected")).kind()
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut m = ProducerStateManager::default();
        let b0 = header(7, 0, 0, 5, 100);
        assert_eq!(m.check([&b0]).unwrap(), ProducerCheck::Append);
        m.update(&b0, 0);
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
        m.update(&header(7, 1, 0, 1, 105), 0);
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

    /// A refusal says which producer, which epoch and which sequences, so
    /// an operator can tell a lost batch from a fenced producer.
    #[test]
    fn a_refusal_names_the_producer_and_its_sequences() {
        let mut m = ProducerStateManager::default();
        m.update(&header(7, 2, 0, 5, 100), 0);
        let gap = m.check([&header(7, 2, 7, 1, -1)]).unwrap_err();
        assert!(
            matches!(
                gap,
                AppendError::OutOfOrderSequence {
                    producer_id: 7,
                    epoch: 2,
                    expected: 5,
                    got: 7
                }
            ),
            "{gap:?}"
        );
        let message = Error::from(gap).to_string();
        assert!(
            message.contains("producer 7 (epoch 2): got sequence 7, expected 5"),
            "{message}"
        );
        // A new epoch must start again at 0.
        let new_epoch = m.check([&header(7, 3, 5, 1, -1)]).unwrap_err();
        assert!(
            matches!(
                new_epoch,
                AppendError::OutOfOrderSequence {
                    producer_id: 7,
                    epoch: 3,
                    expected: 0,
                    got: 5
                }
            ),
            "{new_epoch:?}"
        );
        let fenced = m.check([&header(7, 1, 5, 1, -1)]).unwrap_err();
        assert!(
            matches!(
                fenced,
                AppendError::InvalidProducerEpoch {
                    producer_id: 7,
                    current: 2,
                    got: 1
                }
            ),
            "{fenced:?}"
        );
        let message = Error::from(fenced).to_string();
        assert!(
            message.contains("producer 7 epoch 1 is older than the current epoch 2"),
            "{message}"
        );
        let unsequenced = m.check([&header(8, 0, -1, 1, -1)]).unwrap_err();
        let message = Error::from(unsequenced).to_string();
        assert!(
            message.contains("producer 8 (epoch 0) has no sequence number"),
            "{message}"
        );
        // After the largest sequence the next one is 0.
        m.update(&header(9, 0, i32::MAX - 1, 2, 200), 0);
        let wrapped = m.check([&header(9, 0, 1, 1, -1)]).unwrap_err();
        assert!(
            matches!(
                wrapped,
                AppendError::OutOfOrderSequence {
                    expected: 0,
                    got: 1,
                    ..
                }
            ),
            "{wrapped:?}"
        );
    }

    /// Through the log's public boundary: the kind the broker maps to
    /// OUT_OF_ORDER_SEQUENCE_NUMBER, the message naming the partition's
    /// producer and sequences, nothing appended.
    #[test]
    fn an_append_out_of_sequence_is_refused_with_the_sequences() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(T0);
        let mut log = open(dir.path(), &clock, false);
        log.append(&mut idempotent_batch(3, 0, 2, T0)).unwrap();
        let e = log.append(&mut idempotent_batch(3, 5, 1, T0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfOrderSequence);
        assert!(!e.is_io(), "a refusal keeps the partition online");
        assert!(
            e.to_string()
                .contains("producer 3 (epoch 0): got sequence 5, expected 2"),
            "{e}"
        );
        assert_eq!(log.log_end_offset(), 2);
    }

    #[test]
    fn keeps_five_batches_and_wraps_sequences() {
        let mut m = ProducerStateManager::default();
        for i in 0..7 {
            m.update(&header(1, 0, i * 2, 2, i64::from(i) * 2), 0);
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

    const T0: i64 = 1_700_000_000_000;

    /// `n` records from producer `pid` (epoch 0) from sequence `seq`, with
    /// timestamp `ts`.
    fn idempotent_batch(pid: i64, seq: i32, n: usize, ts: i64) -> Vec<u8> {
        let mut b = crate::format::BatchBuilder::new();
        for i in 0..n {
            b.push(crate::format::Record::new(
                None,
                Some(format!("{pid}-{seq}-{i}").into_bytes()),
                ts,
            ));
        }
        let mut bytes = b.build().unwrap();
        bytes[43..51].copy_from_slice(&pid.to_be_bytes());
        bytes[51..53].copy_from_slice(&0i16.to_be_bytes());
        bytes[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    fn open(dir: &Path, clock: &crate::clock::ManualClock, clean: bool) -> LocalLog {
        LocalLog::open(
            dir.to_path_buf(),
            "t-0".into(),
            crate::config::TopicConfig::default(),
            std::sync::Arc::new(clock.clone()),
            clean,
        )
        .unwrap()
        .0
    }

    #[test]
    fn producers_idle_past_the_expiration_are_forgotten() {
        let mut m = ProducerStateManager::default();
        m.update(&header(1, 0, 0, 1, 0), T0);
        m.update(&header(2, 0, 0, 1, 1), T0 + 600);
        // An older snapshot's entry (no last_timestamp): its last batch's
        // max timestamp counts.
        let mut old = header(3, 0, 0, 1, 2);
        old.max_timestamp = T0 + 900;
        m.update(&old, -1);
        assert_eq!(m.remove_expired(T0 + 999, 1000), 0);
        assert_eq!(m.remove_expired(T0 + 1000, 1000), 1, "idle exactly 1000 ms");
        assert!(m.producer(1).is_none());
        assert!(m.producer(2).is_some() && m.producer(3).is_some());
        assert_eq!(m.remove_expired(T0 + 1900, 1000), 2);
        assert!(m.is_empty());
        // Offset-based eviction keeps producers with a batch at or above
        // the log start.
        m.update(&header(4, 0, 0, 5, 10), T0);
        m.update(&header(5, 0, 0, 5, 20), T0);
        assert_eq!(m.remove_below(15), 1);
        assert!(m.producer(4).is_none() && m.producer(5).is_some());
    }

    #[test]
    fn an_expired_producer_leaves_the_log_and_the_next_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(T0);
        let mut log = open(dir.path(), &clock, false);
        log.set_producer_id_expiration_ms(1000);
        log.append(&mut idempotent_batch(1, 0, 2, T0)).unwrap();
        clock.advance(600);
        log.append(&mut idempotent_batch(2, 0, 2, T0)).unwrap();
        clock.advance(500);
        // The periodic path: producer 1 has been idle for 1100 ms.
        log.expire_producers(clock.now_ms());
        assert!(log.producer_state().producer(1).is_none());
        assert!(log.producer_state().producer(2).is_some());
        // Forgotten: it may start at any sequence.
        log.append(&mut idempotent_batch(1, 40, 1, T0)).unwrap();
        // At a roll, idle producers are not written to the snapshot.
        clock.advance(1000);
        log.append(&mut idempotent_batch(1, 41, 1, T0)).unwrap();
        let now = clock.now_ms();
        log.roll(now).unwrap();
        let snap = read_snapshot(dir.path(), log.log_end_offset()).unwrap();
        let ids: Vec<i64> = snap.producers.iter().map(|p| p.producer_id).collect();
        assert_eq!(ids, vec![1], "producer 2 was idle for 1500 ms");
        assert_eq!(snap.producers[0].last_timestamp, now);
    }

    /// A transactional batch of producer `pid` (epoch 0).
    fn txn_batch(pid: i64, seq: i32, n: usize) -> Vec<u8> {
        let mut bytes = idempotent_batch(pid, seq, n, T0);
        bytes[22] |= 0x10;
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    #[test]
    fn open_transactions_hold_the_lso_and_aborts_are_indexed_across_a_crash() {
        use crate::format::records::ControlType;
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(T0);
        let mut log = open(dir.path(), &clock, false);
        log.append(&mut idempotent_batch(9, 0, 1, T0)).unwrap(); // offset 0
        log.append(&mut txn_batch(1, 0, 2)).unwrap(); // 1-2
        log.append(&mut txn_batch(2, 0, 2)).unwrap(); // 3-4
        assert_eq!(log.last_stable_offset(), 1);
        assert_eq!(log.append_marker(1, 0, ControlType::Abort, 0).unwrap(), 5);
        assert_eq!(log.last_stable_offset(), 3, "producer 2 is still open");
        log.roll(T0).unwrap(); // the snapshot at 6 has the abort and the open one
        assert_eq!(log.append_marker(2, 0, ControlType::Commit, 0).unwrap(), 6);
        log.append(&mut txn_batch(1, 2, 1)).unwrap(); // 7, open again
        assert_eq!(log.append_marker(1, 0, ControlType::Abort, 0).unwrap(), 8);
        assert_eq!(log.last_stable_offset(), 9);
        assert!(
            log.append_marker(1, -1, ControlType::Abort, 0).is_err(),
            "a marker of an older epoch is refused"
        );
        drop(log); // a crash: the tail after the snapshot is scanned again

        let mut log = open(dir.path(), &clock, false);
        assert_eq!(log.last_stable_offset(), 9);
        let aborted: Vec<(i64, i64, i64)> = log
            .aborted_txns(0, 9)
            .iter()
            .map(|a| (a.producer_id, a.first_offset, a.last_offset))
            .collect();
        assert_eq!(aborted, vec![(1, 1, 5), (1, 7, 8)]);
        assert_eq!(
            log.aborted_txns(6, 7),
            vec![],
            "nothing aborted overlaps [6, 7)"
        );
        assert_eq!(log.aborted_txns(2, 3).len(), 1);
        // An open transaction survives the crash too.
        log.append(&mut txn_batch(3, 0, 1)).unwrap(); // 9
        log.roll(T0).unwrap();
        drop(log);
        let log = open(dir.path(), &clock, false);
        assert_eq!(log.last_stable_offset(), 9);
        assert_eq!(
            log.producer_state()
                .producer(3)
                .unwrap()
                .current_txn_first_offset,
            Some(9)
        );
    }

    fn snapshot_offsets(dir: &Path) -> Vec<i64> {
        snapshot_files(dir)
    }

    /// Whether a retry of `batch` is recognised as a duplicate.
    fn is_duplicate(log: &LocalLog, batch: &[u8]) -> bool {
        let h = BatchHeader::parse(batch).unwrap();
        matches!(
            log.producer_state().check([&h]),
            Ok(ProducerCheck::Duplicate(_))
        )
    }

    #[test]
    fn a_restart_after_a_roll_reads_the_roll_snapshot_and_scans_only_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(T0);
        let mut log = open(dir.path(), &clock, false);
        let before_roll = idempotent_batch(1, 0, 3, T0);
        log.append(&mut before_roll.clone()).unwrap();
        log.append(&mut idempotent_batch(2, 0, 1, T0)).unwrap();
        log.roll(T0).unwrap();
        assert_eq!(snapshot_offsets(dir.path()), vec![4]);
        let after_roll = idempotent_batch(1, 3, 2, T0);
        log.append(&mut after_roll.clone()).unwrap();
        drop(log); // a crash: no shutdown snapshot

        let mut log = open(dir.path(), &clock, false);
        assert!(is_duplicate(&log, &before_roll));
        assert!(is_duplicate(&log, &after_roll));
        assert!(log.producer_state().producer(2).is_some());
        // Loading again shows the path taken: the snapshot at 4, then the
        // one batch after it.
        assert_eq!(log.load_producer_state().unwrap(), 1);
    }

    #[test]
    fn without_a_snapshot_only_the_last_two_segments_are_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(T0);
        let mut log = open(dir.path(), &clock, false);
        for pid in 1..=4 {
            log.append(&mut idempotent_batch(pid, 0, 2, T0)).unwrap();
            log.append(&mut idempotent_batch(pid, 2, 2, T0)).unwrap();
            if pid < 4 {
                log.roll(T0).unwrap();
            }
        }
        drop(log);
        for offset in snapshot_offsets(dir.path()) {
            std::fs::remove_file(segment_file(dir.path(), offset, SNAPSHOT_EXT)).unwrap();
        }

        let mut log = open(dir.path(), &clock, false);
        assert_eq!(log.segment_count(), 4);
        let known: Vec<bool> = (1..=4)
            .map(|pid| log.producer_state().producer(pid).is_some())
            .collect();
        assert_eq!(known, vec![false, false, true, true]);
        assert_eq!(log.producer_state().producer(4).unwrap().batches.len(), 2);
        // The rebuilt state was snapshotted at the log end: the next open
        // scans nothing.
        assert_eq!(snapshot_offsets(dir.path()), vec![16]);
        assert_eq!(log.load_producer_state().unwrap(), 0);
    }

    #[test]
    fn a_rolls_snapshot_is_synced_with_its_sealed_segment() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(T0);
        let mut log = open(dir.path(), &clock, false);
        log.append(&mut idempotent_batch(1, 0, 2, T0)).unwrap();
        log.roll(T0).unwrap();
        let snapshot = segment_file(dir.path(), 2, SNAPSHOT_EXT);
        assert!(snapshot.exists());
        let pending = log.pending_flush().expect("the sealed segment waits");
        assert!(pending.files.contains(&snapshot), "{:?}", pending.files);
        pending.sync().unwrap();
        log.complete_flush(&pending).unwrap();
        assert!(log.pending_flush().is_none());
    }

    #[test]
    fn a_corrupt_snapshot_falls_back_to_the_one_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(T0);
        let mut log = open(dir.path(), &clock, false);
        let first = idempotent_batch(1, 0, 1, T0);
        log.append(&mut first.clone()).unwrap();
        log.roll(T0).unwrap();
        log.append(&mut idempotent_batch(2, 0, 1, T0)).unwrap();
        log.roll(T0).unwrap();
        log.append(&mut idempotent_batch(3, 0, 1, T0)).unwrap();
        drop(log);
        assert_eq!(snapshot_offsets(dir.path()), vec![1, 2]);
        std::fs::write(segment_file(dir.path(), 2, SNAPSHOT_EXT), b"{\"format_ver").unwrap();

        let mut log = open(dir.path(), &clock, false);
        // Producer 1 is only in the snapshot at 1 (the last two segments
        // alone would not know it).
        assert!(is_duplicate(&log, &first));
        assert!((2..=3).all(|pid| log.producer_state().producer(pid).is_some()));
        assert_eq!(log.load_producer_state().unwrap(), 2);
    }

    #[test]
    fn an_unreadable_batch_keeps_the_state_before_it_and_the_log_online() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(T0);
        let config = crate::config::TopicConfig {
            index_interval_bytes: 0,
            ..Default::default()
        };
        let open_clean = || {
            LocalLog::open(
                dir.path().to_path_buf(),
                "t-0".into(),
                config.clone(),
                std::sync::Arc::new(clock.clone()),
                true,
            )
        };
        let (mut log, _) = open_clean().unwrap();
        let b0 = idempotent_batch(1, 0, 1, T0);
        log.append(&mut b0.clone()).unwrap();
        log.append(&mut idempotent_batch(1, 1, 1, T0)).unwrap();
        log.append(&mut idempotent_batch(1, 2, 1, T0)).unwrap();
        log.roll(T0).unwrap();
        log.append(&mut idempotent_batch(2, 0, 1, T0)).unwrap();
        log.close().unwrap();
        for offset in snapshot_offsets(dir.path()) {
            std::fs::remove_file(segment_file(dir.path(), offset, SNAPSHOT_EXT)).unwrap();
        }
        // Break the magic byte of the second batch of the sealed segment
        // (its index entries let the clean open skip over it).
        let path = segment_file(dir.path(), 0, super::super::paths::LOG_EXT);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[b0.len() + 16] = 7;
        std::fs::write(&path, bytes).unwrap();

        let (log, _) = open_clean().expect("a bad batch does not take the log offline");
        let p1 = log
            .producer_state()
            .producer(1)
            .expect("read before the bad batch");
        assert_eq!(p1.batches.len(), 1);
        assert!(log.producer_state().producer(2).is_none());
    }
}
