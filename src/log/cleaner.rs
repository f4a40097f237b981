//! The log cleaner's work on one partition (Kafka's `Cleaner`): build the
//! key → latest offset map over the dirty section, rewrite sealed segments
//! keeping the latest record per key, and swap them in crash-safely.
//!
//! Owns: the mechanics of one cleaning pass and of the swap, the
//! per-partition `cleaner-offset-checkpoint`, and the completion or
//! rollback of a half-done swap at open. Must never decide *when* or
//! *which* partition to clean (`tasks/log_cleaner.rs` does), nor clean the
//! active segment or a segment not yet fsynced.
//!
//! ## What is kept
//!
//! A record stays when its key has no later offset in the map (records at
//! or after the map's end offset are newer than anything in it). Keyless
//! records go (Kafka counts them invalid). A tombstone stays until its
//! batch's delete horizon (set to now + `delete.retention.ms` the first
//! time the cleaner keeps it, KIP-534) has passed. A batch keeps its
//! offsets, codec and producer fields; a batch all of whose records go is
//! dropped, except an idempotent producer's retained batch, which stays as
//! an empty header so its sequence survives a rebuild of producer state
//! from the log.
//!
//! ## Transactions (Kafka's `CleanedTransactionMetadata`)
//!
//! The cleaner never reads at or above the last stable offset. Records of
//! aborted transactions (known from the segments' `.txnindex`es) are
//! discarded, their batches dropped like emptied ones. A transaction
//! marker stays while a batch of its transaction stays in the log (read in
//! this pass and not dropped, an emptied header included); once none
//! does, it gets a delete horizon (now + `delete.retention.ms`, KIP-534,
//! as tombstones do) and the first pass after that horizon removes it. A
//! pass reads from the log start, so every batch of a transaction whose
//! marker it reads is read before the marker. The cleaned segment's
//! `.txnindex` keeps the entries of the ABORT markers it keeps whose
//! transaction still has a batch in the log.
//!
//! ## The swap
//!
//! Cleaned segments are written to `<partition>/cleaning/`, one group of
//! old segments (up to `segment.bytes`) into one new segment named by the
//! group's first base offset, fsynced. Then, under the partition's lock:
//! 1. `cleaning/swap` is written (tmp, fsync, rename, fsync): "base end",
//!    the offset range the new segment replaces. This is the commit point.
//! 2. The old segments with a base in (base, end) are deleted.
//! 3. The new `.index`, `.timeindex` and `.log` are renamed over the old
//!    ones of `base`.
//! 4. The marker and the staging directory are removed.
//!
//! At open ([`finish_interrupted_swap`]): with a marker, steps 2–4 are
//! done again (each is idempotent); without one, the staging directory is
//! removed (the old segments were never touched). A cleaned segment may end
//! before the next one starts (its last records were removed): its range
//! still runs to the next base offset.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::failpoints::fail_point;
use crate::format::batch::{BatchHeader, HEADER_SIZE};
use crate::format::compact::{delete_horizon, filter_batch, Filtered};
use crate::format::records::{records_section, walk_records};

use super::local_log::{sync_dir, LocalLog};
use super::offset_map::OffsetMap;
use super::paths::{
    parse_segment_file_name, segment_file, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT,
};
use super::segment::{FileBatches, LogSegment};

/// Per-partition cleaner state file.
pub const CHECKPOINT_FILE: &str = super::paths::CLEANER_CHECKPOINT_FILE;
/// Staging directory for cleaned segments.
pub const STAGING_DIR: &str = super::paths::CLEANER_STAGING_DIR;
const SWAP_MARKER: &str = super::paths::CLEANER_SWAP_MARKER;

/// Where cleaning of a partition stands, kept in `cleaner-offset-checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerCheckpoint {
    /// Offsets below this were cleaned (the clean section); -1: never.
    pub first_dirty_offset: i64,
    /// The earliest delete horizon of a tombstone the cleaner kept (a pass
    /// is due then, to remove it); -1: none.
    pub next_delete_horizon_ms: i64,
    /// When the last pass ended (engine clock); -1: never.
    pub last_clean_ms: i64,
}

impl Default for CleanerCheckpoint {
    fn default() -> Self {
        CleanerCheckpoint {
            first_dirty_offset: -1,
            next_delete_horizon_ms: -1,
            last_clean_ms: -1,
        }
    }
}

impl CleanerCheckpoint {
    pub(super) fn read(dir: &Path) -> Self {
        let Ok(text) = std::fs::read_to_string(dir.join(CHECKPOINT_FILE)) else {
            return Self::default();
        };
        let mut cp = Self::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let Ok(v) = v.trim().parse::<i64>() else {
                continue;
            };
            match k.trim() {
                "first_dirty_offset" => cp.first_dirty_offset = v,
                "next_delete_horizon_ms" => cp.next_delete_horizon_ms = v,
                "last_clean_ms" => cp.last_clean_ms = v,
                _ => {}
            }
        }
        cp
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let text = format!(
            "version: 0\nfirst_dirty_offset: {}\nnext_delete_horizon_ms: {}\nlast_clean_ms: {}\n",
            self.first_dirty_offset, self.next_delete_horizon_ms, self.last_clean_ms
        );
        write_durably(dir, CHECKPOINT_FILE, text.as_bytes())
    }
}

/// Write `dir/name` through a temporary file, fsynced and renamed.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| Error::io("cannot write", &path, e))?;
    sync_dir(dir)
}

/// A sealed, fsynced segment as the cleaner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    /// The end of its offset range (the next segment's base).
    pub end_offset: i64,
    pub size: u64,
    /// Largest record timestamp (-1: none).
    pub max_timestamp: i64,
    /// Max timestamp of its first batch (`None`: empty).
    pub first_timestamp: Option<i64>,
    pub log_path: PathBuf,
}

/// What the cleaner needs of a partition, taken under its lock.
#[derive(Debug, Clone)]
pub struct CleanerView {
    pub name: String,
    pub dir: PathBuf,
    pub log_start_offset: i64,
    /// Sealed segments wholly below the recovery point and the last stable
    /// offset, oldest first.
    pub cleanable: Vec<SegmentInfo>,
    /// Bytes of every segment, the active one included.
    pub total_bytes: u64,
    pub checkpoint: CleanerCheckpoint,
    /// Last offsets of the batches idempotent producers' state remembers:
    /// such a batch is never dropped whole.
    pub producer_batches: HashSet<i64>,
    pub index_interval_bytes: u64,
    /// The local segments' aborted transactions (their `.txnindex`es;
    /// tiered compaction adds the tiered segments'): their batches stay
    /// out of the key map (an aborted record never supersedes a committed
    /// one) and are discarded.
    pub aborted: Vec<crate::format::producer_snapshot::AbortedTxn>,
}

/// One pass's view of the transactions it reads (Kafka's
/// `CleanedTransactionMetadata`): which batches belong to aborted
/// transactions, and whether a marker's transaction still has a batch in
/// the log. Fed every batch of the pass in offset order.
#[derive(Debug, Default)]
pub struct CleanedTxns {
    /// Aborted transactions not reached yet, by first offset (reversed:
    /// the next one last).
    pending: Vec<crate::format::producer_snapshot::AbortedTxn>,
    /// Producer id → its aborted transaction being read.
    ongoing_aborted: std::collections::HashMap<i64, crate::format::producer_snapshot::AbortedTxn>,
    /// Producer id → whether a batch of its current transaction stays.
    retained: std::collections::HashMap<i64, bool>,
}

/// What a pass does with a transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerFate {
    /// No batch of its transaction stays: it may go once its delete
    /// horizon has passed.
    pub discardable: bool,
    /// The `.txnindex` entry the cleaned segment keeps for it (an ABORT
    /// marker whose transaction still has a batch).
    pub index_entry: Option<crate::format::producer_snapshot::AbortedTxn>,
}

impl CleanedTxns {
    /// For a pass over a log whose aborted transactions are `aborted`.
    pub fn new(aborted: &[crate::format::producer_snapshot::AbortedTxn]) -> Self {
        let mut pending = aborted.to_vec();
        pending.sort_by_key(|a| std::cmp::Reverse((a.first_offset, a.last_offset)));
        CleanedTxns {
            pending,
            ..Default::default()
        }
    }

    fn consume_up_to(&mut self, offset: i64) {
        while let Some(next) = self.pending.last().copied() {
            if next.first_offset > offset {
                break;
            }
            self.pending.pop();
            self.ongoing_aborted.insert(next.producer_id, next);
        }
    }

    /// A data batch is read: whether it belongs to an aborted transaction
    /// (its records are discarded).
    pub fn on_batch(&mut self, h: &BatchHeader) -> bool {
        self.consume_up_to(h.last_offset());
        h.is_transactional() && !h.is_control() && self.ongoing_aborted.contains_key(&h.producer_id)
    }

    /// Whether the data batch `h` (already passed to
    /// [`CleanedTxns::on_batch`]) stays in the cleaned segment.
    pub fn batch_kept(&mut self, h: &BatchHeader, kept: bool) {
        if h.is_transactional() && !h.is_control() {
            *self.retained.entry(h.producer_id).or_insert(false) |= kept;
        }
    }

    /// A marker of `kind` is read: its fate.
    pub fn on_marker(
        &mut self,
        h: &BatchHeader,
        kind: Option<crate::format::records::ControlType>,
    ) -> MarkerFate {
        self.consume_up_to(h.last_offset());
        let retained = self.retained.remove(&h.producer_id).unwrap_or(false);
        let aborted = self.ongoing_aborted.remove(&h.producer_id);
        let index_entry = match kind {
            Some(crate::format::records::ControlType::Abort) if retained => Some(
                aborted.unwrap_or(crate::format::producer_snapshot::AbortedTxn {
                    producer_id: h.producer_id,
                    first_offset: h.base_offset,
                    last_offset: h.base_offset,
                    last_stable_offset: h.base_offset + 1,
                }),
            ),
            _ => None,
        };
        MarkerFate {
            // An unreadable marker type is kept (never guess).
            discardable: !retained && kind.is_some(),
            index_entry,
        }
    }
}

/// Whether `h` is a batch of an aborted transaction in `aborted`.
pub fn is_aborted(
    h: &BatchHeader,
    aborted: &[crate::format::producer_snapshot::AbortedTxn],
) -> bool {
    h.is_transactional()
        && !h.is_control()
        && aborted.iter().any(|a| {
            a.producer_id == h.producer_id
                && a.first_offset <= h.base_offset
                && h.base_offset < a.last_offset
        })
}

impl CleanerView {
    /// Where the dirty section starts: the checkpoint, or the log start.
    pub fn first_dirty_offset(&self) -> i64 {
        self.checkpoint
            .first_dirty_offset
            .max(self.log_start_offset)
    }
}

/// Caps the cleaner's reads and writes at a byte rate
/// (`log.cleaner.io.max.bytes.per.second`).
/// Also where a pass notices the engine is shutting down.
pub struct Throttle {
    rate: u64,
    start: Instant,
    bytes: u64,
    cancel: Option<Arc<AtomicBool>>,
}

impl Throttle {
    pub fn new(bytes_per_second: u64) -> Self {
        Throttle {
            rate: bytes_per_second.max(1),
            start: Instant::now(),
            bytes: 0,
            cancel: None,
        }
    }

    /// End the pass (an `ErrorKind::Closed` error) once `cancel` is set.
    pub fn with_cancel(mut self, cancel: Arc<AtomicBool>) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Count `n` bytes read or written: sleeps while ahead of the rate;
    /// an error once the pass is cancelled.
    pub fn account(&mut self, n: u64) -> Result<()> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
        {
            return Err(Error::new(ErrorKind::Closed, "the log cleaner was stopped"));
        }
        self.bytes += n;
        if self.rate == u64::MAX {
            return Ok(());
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            // Sleeps in slices, so a stop is seen within a second.
            std::thread::sleep((due - elapsed).min(Duration::from_secs(1)));
        }
        Ok(())
    }
}

/// A map with no key (a pass with nothing dirty: tombstones past their
/// horizon still go).
pub fn empty_map() -> OffsetMap {
    OffsetMap::new(0, 0)
}

/// What a pass did, for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub batches_rewritten: u64,
    /// Requests to the remote tier (tiered compaction).
    pub remote_get_requests: u64,
    pub remote_put_requests: u64,
}

/// The key map over the dirty section and where it stops.
pub struct BuiltMap {
    pub map: OffsetMap,
    /// Offsets below this are in the map; records from here on are newer
    /// than anything in it.
    pub end_offset: i64,
}

fn read_err(
    path: &Path,
    e: std::result::Result<crate::format::FormatError, std::io::Error>,
) -> Error {
    match e {
        Ok(f) => Error::data(format!("corrupt batch in {}: {f}", path.display())),
        Err(io) => Error::io("cannot read segment", path, io),
    }
}

/// Where a pass reads a segment's batches: its local file, or (for the
/// tiered part of a log, `tasks::log_cleaner`) the remote tier.
pub trait BatchSource {
    /// Hand every batch of `seg` to `f`, in order, until it returns false.
    fn for_each_batch(
        &mut self,
        seg: &SegmentInfo,
        throttle: &mut Throttle,
        f: &mut dyn FnMut(&BatchHeader, &[u8]) -> Result<bool>,
    ) -> Result<()>;
}

/// Batches from local segment files.
pub struct LocalFiles;

impl BatchSource for LocalFiles {
    fn for_each_batch(
        &mut self,
        seg: &SegmentInfo,
        throttle: &mut Throttle,
        f: &mut dyn FnMut(&BatchHeader, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let path = &seg.log_path;
        let file = super::file_handles::open(path)
            .map_err(|e| Error::io("cannot open segment", path, e))?;
        let mut batches = FileBatches::new(&file, 0, seg.size, 1 << 20);
        loop {
            match batches.next_batch() {
                Ok(None) => return Ok(()),
                Ok(Some((_, header, bytes))) => {
                    throttle.account(bytes.len() as u64)?;
                    if !f(&header, bytes)? {
                        return Ok(());
                    }
                }
                Err(e) => return Err(read_err(path, e)),
            }
        }
    }
}

/// Build the map over `[from, until)` of the view's cleanable segments,
/// within `buffer_bytes`. Stops before the first batch that might not fit;
/// `None` when not even one batch fits (the buffer is too small for it).
/// Batches of `aborted` transactions stay out of the map.
#[allow(clippy::too_many_arguments)]
pub fn build_offset_map(
    segments: &[SegmentInfo],
    source: &mut dyn BatchSource,
    from: i64,
    until: i64,
    aborted: &[crate::format::producer_snapshot::AbortedTxn],
    buffer_bytes: u64,
    throttle: &mut Throttle,
    stats: &mut CleanStats,
) -> Result<Option<BuiltMap>> {
    let expected = usize::try_from(until - from).unwrap_or(usize::MAX);
    let mut map = OffsetMap::new(buffer_bytes, expected);
    let mut end = from;
    let mut full = false;
    for seg in segments
        .iter()
        .filter(|s| s.end_offset > from && s.base_offset < until)
    {
        source.for_each_batch(seg, throttle, &mut |h, bytes| {
            stats.bytes_read += bytes.len() as u64;
            if h.last_offset() < from {
                return Ok(true);
            }
            if h.base_offset >= until {
                return Ok(false);
            }
            if h.is_control() || is_aborted(h, aborted) {
                end = h.next_offset();
                return Ok(true);
            }
            if !map.has_room_for(h.record_count.max(0) as usize) {
                full = true;
                return Ok(false);
            }
            let section = records_section(h, bytes).map_err(|e| {
                Error::data(format!("corrupt batch in {}: {e}", seg.log_path.display()))
            })?;
            walk_records(&section, h.record_count, false, |r| {
                if let Some(k) = r.key {
                    map.put(k, h.base_offset + i64::from(r.offset_delta));
                }
            })
            .map_err(|e| {
                Error::data(format!("corrupt batch in {}: {e}", seg.log_path.display()))
            })?;
            end = h.next_offset();
            Ok(true)
        })?;
        if full {
            break;
        }
        // The whole segment is in the map, its gaps included.
        end = end.max(seg.end_offset.min(until));
    }
    if end <= from {
        return Ok(None);
    }
    Ok(Some(BuiltMap {
        map,
        end_offset: end,
    }))
}

/// A cleaned segment written to the staging directory, waiting for
/// [`LocalLog::swap_cleaned`].
#[derive(Debug)]
pub struct StagedSegment {
    /// The segments it replaces, as they were when the pass read them.
    pub replaces: Vec<SegmentInfo>,
    /// Whether cleaning changed anything (a record dropped, a batch
    /// rewritten): an unchanged group is not swapped.
    pub changed: bool,
    /// Batches it holds (at least one: when no record stays, the last
    /// batch's bare header does).
    pub batches: usize,
    /// Its files in the staging directory: `.log`, `.index`, `.timeindex`,
    /// `.txnindex`.
    pub files: [PathBuf; 4],
    /// First batch's max timestamp and the largest timestamp (-1: none).
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    /// Earliest delete horizon of a tombstone it keeps; -1: none.
    pub next_delete_horizon_ms: i64,
    pub size: u64,
}

impl StagedSegment {
    /// The first offset of the range it replaces.
    pub fn base(&self) -> i64 {
        self.replaces.first().map_or(0, |s| s.base_offset)
    }
    /// The end (exclusive) of the range it replaces.
    pub fn end(&self) -> i64 {
        self.replaces.last().map_or(0, |s| s.end_offset)
    }
}

/// Clean `group` (consecutive segments of the view) with `built` into one
/// new segment in the staging directory, fsynced. `txns` follows the
/// pass's transactions across its groups (see the module doc).
#[allow(clippy::too_many_arguments)]
pub fn clean_group(
    view: &CleanerView,
    source: &mut dyn BatchSource,
    group: &[SegmentInfo],
    built: &BuiltMap,
    txns: &mut CleanedTxns,
    now_ms: i64,
    delete_retention_ms: i64,
    throttle: &mut Throttle,
    stats: &mut CleanStats,
) -> Result<StagedSegment> {
    let Some(first) = group.first() else {
        return Err(Error::internal("an empty group of segments to clean"));
    };
    let staging = view.dir.join(STAGING_DIR);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io("cannot clear", &staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::io("cannot create", &staging, e))?;
    let mut out = LogSegment::create(
        &staging,
        first.base_offset,
        view.index_interval_bytes,
        now_ms,
    )?;
    let new_horizon = now_ms.saturating_add(delete_retention_ms);
    let mut next_horizon = -1i64;
    let (mut changed, mut batches) = (false, 0usize);
    // The last batch read, kept as a bare header if nothing else stays: a
    // cleaned segment always holds a batch, so its range stays readable
    // (its last offset) and it never becomes an empty object.
    let mut last_read: Option<(BatchHeader, Vec<u8>)> = None;
    // The last batch read when it was a marker the pass removed: kept
    // whole instead if nothing else stays.
    let mut last_removed_marker: Option<(BatchHeader, Vec<u8>)> = None;
    for seg in group {
        let mut written = 0u64;
        source.for_each_batch(seg, throttle, &mut |h, bytes| {
            stats.bytes_read += bytes.len() as u64;
            stats.records_read += h.record_count.max(0) as u64;
            last_read = Some((*h, bytes[..HEADER_SIZE.min(bytes.len())].to_vec()));
            last_removed_marker = None;
            let corrupt = |e: crate::format::FormatError| {
                Error::data(format!("corrupt batch in {}: {e}", seg.log_path.display()))
            };
            if h.is_control() {
                let fate = txns.on_marker(h, crate::format::records::control_type(h, bytes));
                let horizon_set;
                let marker: &[u8] = if fate.discardable {
                    match delete_horizon(h) {
                        Some(t) if t <= now_ms => {
                            changed = true;
                            last_removed_marker = Some((*h, bytes.to_vec()));
                            return Ok(true);
                        }
                        Some(t) => {
                            next_horizon = if next_horizon < 0 {
                                t
                            } else {
                                next_horizon.min(t)
                            };
                            bytes
                        }
                        None => {
                            changed = true;
                            next_horizon = if next_horizon < 0 {
                                new_horizon
                            } else {
                                next_horizon.min(new_horizon)
                            };
                            horizon_set =
                                crate::format::compact::with_delete_horizon(h, bytes, new_horizon)
                                    .map_err(corrupt)?;
                            &horizon_set
                        }
                    }
                } else {
                    bytes
                };
                let header = BatchHeader::parse(marker).map_err(|e| {
                    Error::internal(format!("a rewritten marker does not parse: {e}"))
                })?;
                out.append(marker, &[(0, header)])?;
                if let Some(entry) = fate.index_entry {
                    out.append_aborted_txn(entry)?;
                }
                batches += 1;
                stats.bytes_written += marker.len() as u64;
                written += marker.len() as u64;
                return Ok(true);
            }
            // Records of an aborted transaction are discarded.
            let discard = txns.on_batch(h);
            let horizon = delete_horizon(h);
            let mut kept_tombstone = false;
            let mut kept = 0u64;
            let keep_empty = h.producer_id >= 0 && view.producer_batches.contains(&h.last_offset());
            let filtered = filter_batch(h, bytes, new_horizon, keep_empty, |r| {
                let keep = !discard
                    && match r.key {
                        None => false,
                        Some(_) if r.offset >= built.end_offset => true,
                        Some(k) => built.map.get(k).is_none_or(|latest| r.offset >= latest),
                    }
                    && (!r.tombstone || horizon.is_none_or(|t| t > now_ms));
                kept_tombstone |= keep && r.tombstone;
                kept += u64::from(keep);
                keep
            })
            .map_err(corrupt)?;
            txns.batch_kept(h, filtered != Filtered::Dropped);
            if kept_tombstone {
                let t = horizon.unwrap_or(new_horizon);
                next_horizon = if next_horizon < 0 {
                    t
                } else {
                    next_horizon.min(t)
                };
            }
            let rewritten;
            let batch: &[u8] = match &filtered {
                Filtered::Unchanged => {
                    kept = h.record_count.max(0) as u64;
                    bytes
                }
                Filtered::Rewritten(b) => {
                    stats.batches_rewritten += 1;
                    changed = true;
                    rewritten = b;
                    rewritten
                }
                Filtered::Dropped => {
                    changed = true;
                    return Ok(true);
                }
            };
            batches += 1;
            stats.records_kept += kept;
            let header = BatchHeader::parse(batch)
                .map_err(|e| Error::internal(format!("a rewritten batch does not parse: {e}")))?;
            out.append(batch, &[(0, header)])?;
            stats.bytes_written += batch.len() as u64;
            written += batch.len() as u64;
            Ok(true)
        })?;
        throttle.account(written)?;
    }
    if batches == 0 {
        if let Some((h, marker)) = last_removed_marker {
            out.append(&marker, &[(0, h)])?;
            stats.bytes_written += marker.len() as u64;
            batches = 1;
        } else if let Some((h, head)) = last_read {
            let empty = crate::format::compact::empty_batch(&h, &head);
            let header = BatchHeader::parse(&empty)
                .map_err(|e| Error::internal(format!("an empty batch does not parse: {e}")))?;
            out.append(&empty, &[(0, header)])?;
            stats.bytes_written += empty.len() as u64;
            batches = 1;
        }
    }
    out.seal()?;
    out.flush()?;
    out.flush_indexes(true)?;
    sync_dir(&staging)?;
    let size = out.size();
    let files = out.file_paths();
    let first_timestamp = out.first_batch_timestamp().unwrap_or(-1);
    let max_timestamp = out.max_timestamp();
    drop(out);
    Ok(StagedSegment {
        replaces: group.to_vec(),
        changed,
        batches,
        files,
        first_timestamp,
        max_timestamp,
        next_delete_horizon_ms: next_horizon,
        size,
    })
}

/// Split `segments` (consecutive, oldest first) from the first through the
/// one holding `end_offset - 1` into groups for one new segment each: at
/// most `segment_bytes` together (a single larger one alone) and an offset
/// span the index's 32-bit relative offsets can hold.
pub fn group_segments(
    segments: &[SegmentInfo],
    end_offset: i64,
    segment_bytes: u64,
) -> Vec<Vec<SegmentInfo>> {
    let mut groups: Vec<Vec<SegmentInfo>> = Vec::new();
    let mut current: Vec<SegmentInfo> = Vec::new();
    let mut bytes = 0u64;
    for seg in segments.iter().filter(|s| s.base_offset < end_offset) {
        let span_ok = current
            .first()
            .is_none_or(|f| seg.end_offset - f.base_offset <= i64::from(i32::MAX));
        if !current.is_empty() && (bytes + seg.size > segment_bytes || !span_ok) {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += seg.size;
        current.push(seg.clone());
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

impl LocalLog {
    /// What the cleaner needs of this log (see [`CleanerView`]).
    pub fn cleaner_view(&self) -> CleanerView {
        let active_base = self.active().base_offset();
        let segs: Vec<&LogSegment> = self.segments.iter().collect();
        let cleanable = segs
            .windows(2)
            .map(|w| (w[0], w[1].base_offset()))
            // Never past the last stable offset (Kafka's first uncleanable
            // offset): an open transaction's keys must not supersede
            // records before it yet.
            .filter(|(s, end)| {
                s.base_offset() < active_base
                    && *end <= self.recovery_point
                    && *end <= self.last_stable_offset()
            })
            .map(|(s, end)| SegmentInfo {
                base_offset: s.base_offset(),
                end_offset: end,
                size: s.size(),
                max_timestamp: s.max_timestamp(),
                first_timestamp: s.first_batch_timestamp(),
                log_path: s.log_path().to_path_buf(),
            })
            .collect();
        let producer_batches = self
            .producers
            .snapshot(0)
            .producers
            .iter()
            .flat_map(|p| p.batches.iter().map(|b| b.last_offset))
            .collect();
        CleanerView {
            name: self.name().to_string(),
            dir: self.dir().to_path_buf(),
            log_start_offset: self.log_start_offset(),
            cleanable,
            total_bytes: self.size_bytes(),
            checkpoint: *self.cleaner,
            producer_batches,
            index_interval_bytes: self.config().index_interval_bytes,
            aborted: self
                .segments
                .iter()
                .flat_map(|s| s.aborted_txns().iter().copied())
                .collect(),
        }
    }

    /// The cleaner's state of this log.
    pub fn cleaner_checkpoint(&self) -> CleanerCheckpoint {
        *self.cleaner
    }

    /// Record where cleaning stands (durably).
    pub fn set_cleaner_checkpoint(&mut self, cp: CleanerCheckpoint) -> Result<()> {
        cp.write(self.dir())?;
        *self.cleaner = cp;
        Ok(())
    }

    /// Swap `staged` in for the segments it replaces (see the module doc).
    /// `Ok(false)` when those segments changed since the pass read them
    /// (retention deleted one): nothing is swapped, the staging directory
    /// goes, the next pass starts again.
    pub fn swap_cleaned(&mut self, staged: &StagedSegment) -> Result<bool> {
        let dir = self.dir().to_path_buf();
        let staging = dir.join(STAGING_DIR);
        let (base, end) = (staged.base(), staged.end());
        let current: Vec<(i64, u64)> = self
            .segments
            .iter()
            .filter(|s| s.base_offset() >= base && s.base_offset() < end)
            .map(|s| (s.base_offset(), s.size()))
            .collect();
        let expected: Vec<(i64, u64)> = staged
            .replaces
            .iter()
            .map(|s| (s.base_offset, s.size))
            .collect();
        if current != expected || end > self.active().base_offset() {
            let _ = std::fs::remove_dir_all(&staging);
            return Ok(false);
        }
        write_durably(&staging, SWAP_MARKER, format!("{base} {end}\n").as_bytes())?;
        fail_point!("cleaner.swap.after_marker");
        for (b, _) in current.iter().skip(1) {
            if let Some(old) = self.segments.remove(*b) {
                old.delete_files()?;
            }
        }
        fail_point!("cleaner.swap.after_delete_old");
        // The old segment of `base` goes from the map (dropping it forgets
        // its cached handle) before its files are replaced.
        drop(self.segments.remove(base));
        rename_staged(&staging, &dir, base)?;
        fail_point!("cleaner.swap.after_rename");
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io("cannot remove", &staging, e))?;
        sync_dir(&dir)?;
        let now = self.clock().now_ms();
        let mut seg = match LogSegment::open(&dir, base, self.config().index_interval_bytes, now)? {
            Ok(seg) => seg,
            Err((seg, c)) => {
                return Err(Error::data(format!(
                    "cleaned segment {} does not read back at position {}: {}",
                    seg.log_path().display(),
                    c.position,
                    c.reason
                )))
            }
        };
        seg.extend_end(end);
        self.segments.insert(seg);
        Ok(true)
    }
}

/// Move the staged files of segment `base` into `dir`, indexes first, the
/// log last; a file already moved is skipped.
fn rename_staged(staging: &Path, dir: &Path, base: i64) -> Result<()> {
    for ext in [INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT, LOG_EXT] {
        let from = segment_file(staging, base, ext);
        let to = segment_file(dir, base, ext);
        if ext == LOG_EXT {
            super::file_handles::forget(&to);
        }
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot move cleaned segment file", &from, e)),
        }
    }
    sync_dir(dir)
}

/// At open: finish a swap whose marker was written, or roll back one whose
/// marker was not (see the module doc). Returns a description of what was
/// done, if anything.
pub(super) fn finish_interrupted_swap(dir: &Path) -> Result<Option<String>> {
    let staging = dir.join(STAGING_DIR);
    if !staging.exists() {
        return Ok(None);
    }
    let marker = staging.join(SWAP_MARKER);
    let range = std::fs::read_to_string(&marker).ok().and_then(|t| {
        let mut it = t.split_whitespace().map(|v| v.parse::<i64>());
        match (it.next(), it.next()) {
            (Some(Ok(b)), Some(Ok(e))) => Some((b, e)),
            _ => None,
        }
    });
    let Some((base, end)) = range else {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io("cannot remove", &staging, e))?;
        return Ok(Some(format!(
            "removed an unfinished cleaning pass's files ({})",
            staging.display()
        )));
    };
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("cannot list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let old = [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT]
            .iter()
            .filter_map(|ext| parse_segment_file_name(name, ext))
            .any(|b| b > base && b < end);
        if old {
            std::fs::remove_file(entry.path())
                .map_err(|e| Error::io("cannot delete", &entry.path(), e))?;
        }
    }
    rename_staged(&staging, dir, base)?;
    std::fs::remove_dir_all(&staging).map_err(|e| Error::io("cannot remove", &staging, e))?;
    sync_dir(dir)?;
    Ok(Some(format!(
        "finished an interrupted swap of cleaned segment {base} (offsets {base}..{end})"
    )))
}
