//! [`LocalLog`]: one partition's segments on local disk.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::clock::SharedClock;
use crate::config::{MessageTimestampType, TopicConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::failpoints::fail_point;
use crate::format::batch::{self, BatchHeader};

use super::append_error::AppendError;
use super::paths::{segment_file, RECOVERY_POINT_FILE, SNAPSHOT_EXT};
use super::producer_state::{
    ProducerCheck, ProducerStateManager, DEFAULT_PRODUCER_ID_EXPIRATION_MS,
};
use super::recovery::RecoveryReport;
use super::segment::LogSegment;
use super::segments::LogSegments;
use super::time_index::TimestampAndOffset;
use super::writer::FlushState;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Records appended.
    pub record_count: i64,
    /// The broker timestamp stamped on the batches, for LogAppendTime topics.
    pub log_append_time: Option<i64>,
    /// Largest batch max timestamp appended.
    pub max_timestamp: i64,
    /// The batch was an idempotent producer's retry of one already in the
    /// log: nothing was appended, the offsets are the original ones.
    pub duplicate: bool,
}

/// A segment [`LocalLog::delete_segments_below`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedSegment {
    /// Its base offset (the name of its files).
    pub base_offset: i64,
    /// Bytes of its `.log` file.
    pub size: u64,
}

/// One partition's local log.
///
/// Invariants: at least one segment; the last one is active (appends go
/// there); offsets are dense across segments (each segment's base offset is
/// the previous one's next offset).
#[derive(Debug)]
pub struct LocalLog {
    dir: PathBuf,
    name: String,
    config: TopicConfig,
    pub(super) segments: LogSegments,
    /// Offsets below this are fsynced; segments wholly below it are trusted
    /// at open after a crash, the rest are recovered.
    pub(super) recovery_point: i64,
    pub(super) flush_state: FlushState,
    /// Bumped by truncation, so a background flush started before it does
    /// not advance the recovery point past data it did not sync.
    generation: u64,
    clock: SharedClock,
    /// Idempotent producers' sequence state (boxed: the log stays small
    /// enough to sit unboxed in the engine's partition state).
    pub(super) producers: Box<ProducerStateManager>,
    /// Kafka's `producer.id.expiration.ms` (a broker setting).
    pub(super) producer_id_expiration_ms: i64,
    /// Where the log cleaner stands (`cleaner.rs`).
    pub(super) cleaner: Box<super::cleaner::CleanerCheckpoint>,
    /// The log start offset DeleteRecords set (`log_start.rs`; 0: never):
    /// records below it are gone for readers even while their segment
    /// stays.
    start_floor: i64,
    /// Files of segments deleted under the partition's lock, to unlink
    /// after it ([`LocalLog::take_deleted_files`]).
    deleted_files: Vec<PathBuf>,
}

/// Sealed segments waiting for their fsync, taken from a [`LocalLog`] under
/// its lock and synced outside it ([`PendingFlush::sync`]), then reported
/// back with [`LocalLog::complete_flush`] to advance the recovery point.
#[derive(Debug)]
pub struct PendingFlush {
    pub(super) files: Vec<PathBuf>,
    dir: PathBuf,
    /// The recovery point once the files are synced: the active segment's
    /// base offset when the flush was taken.
    target: i64,
    generation: u64,
}

impl PendingFlush {
    /// fsync every file and the directory. A file deleted meanwhile (by
    /// retention) is skipped.
    pub fn sync(&self) -> Result<()> {
        for path in &self.files {
            match File::open(path) {
                Ok(f) => f
                    .sync_all()
                    .map_err(|e| Error::io("cannot fsync", path, e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("cannot open for fsync", path, e)),
            }
        }
        sync_dir(&self.dir)
    }
}

impl LocalLog {
    pub(super) fn from_parts(
        dir: PathBuf,
        name: String,
        config: TopicConfig,
        segments: LogSegments,
        recovery_point: i64,
        clock: SharedClock,
    ) -> Result<Self> {
        let now = clock.now_ms();
        let cleaner = Box::new(super::cleaner::CleanerCheckpoint::read(&dir));
        let start_floor = super::log_start::read(&dir)?;
        Ok(LocalLog {
            dir,
            name,
            config,
            segments,
            recovery_point,
            flush_state: FlushState::new(now),
            generation: 0,
            clock,
            producers: Box::default(),
            producer_id_expiration_ms: DEFAULT_PRODUCER_ID_EXPIRATION_MS,
            cleaner,
            start_floor,
            deleted_files: Vec::new(),
        })
    }

    /// `topic-partition`, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The topic config in force.
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// Apply a changed topic config (takes effect on the next append/roll).
    pub fn set_config(&mut self, config: TopicConfig) {
        self.config = config;
    }

    /// Set `producer.id.expiration.ms` (the broker setting; Kafka's default
    /// of one day until then).
    pub fn set_producer_id_expiration_ms(&mut self, ms: i64) {
        self.producer_id_expiration_ms = ms;
    }

    pub(super) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub(super) fn active(&self) -> &LogSegment {
        // Invariant: a LocalLog always holds at least one segment
        // (recovery::open creates one; nothing removes the last).
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    pub(super) fn active_mut(&mut self) -> &mut LogSegment {
        // Invariant: see `active`.
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    /// Offset of the first record held locally.
    pub fn log_start_offset(&self) -> i64 {
        self.segments.first().map(|s| s.base_offset()).unwrap_or(0)
    }

    /// The log start offset DeleteRecords set (0 when never): records
    /// below it are not served, and segments wholly below it are deleted
    /// by retention, locally and in the bucket.
    pub fn start_floor(&self) -> i64 {
        self.start_floor
    }

    /// DeleteRecords: records below `offset` (at most the log end) go. The
    /// new floor is durable before this returns; it never moves back.
    /// Returns the floor in force.
    pub fn raise_start_floor(&mut self, offset: i64) -> Result<i64> {
        let end = self.log_end_offset();
        if offset < 0 || offset > end {
            return Err(Error::new(
                ErrorKind::OutOfRange,
                format!(
                    "cannot delete records of {} below {offset}: its log ends at {end}",
                    self.name
                ),
            ));
        }
        if offset > self.start_floor {
            super::log_start::write(&self.dir, offset)?;
            self.start_floor = offset;
            tracing::info!(log = %self.name, log_start_offset = offset, "records deleted below");
        }
        Ok(self.start_floor)
    }

    /// Offset the next record will get (the high watermark of a one-broker
    /// log).
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size()).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &LogSegment> {
        self.segments.iter()
    }

    /// Offset below which everything is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Seal the active segment and start a new one at the log end. Does
    /// nothing when the active segment is empty. The sealed segment is not
    /// fsynced here, which would stall appends for as long as its data takes
    /// to reach the disk: the background flush ([`LocalLog::pending_flush`])
    /// syncs it and then advances the recovery point, as Kafka does. Until
    /// then a crash recovers it like the active segment.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        if self.active().is_empty() {
            return Ok(());
        }
        let new_base = self.log_end_offset();
        fail_point!("log.roll.after_seal");
        self.active_mut().seal()?;
        let segment = LogSegment::create(
            &self.dir,
            new_base,
            self.config.index_interval_bytes,
            now_ms,
        )?;
        self.segments.insert(segment);
        // Producer state at the new segment's base: opening the log then
        // scans only the active segment, and tiering ships it. Idle
        // producers are not carried into it.
        self.expire_producers(now_ms);
        if let Err(e) = self.write_producer_snapshot() {
            tracing::warn!(log = %self.name, error = %e, "cannot write producer snapshot");
        }
        // The sealed segment's records are now the background flush's job.
        self.flush_state = FlushState::new(now_ms);
        tracing::debug!(log = %self.name, base_offset = new_base, "rolled to a new segment");
        Ok(())
    }

    /// Sealed segments not yet fsynced (those above the recovery point),
    /// for syncing outside the log's lock; `None` when there are none.
    pub fn pending_flush(&self) -> Option<PendingFlush> {
        let active_base = self.active().base_offset();
        if active_base <= self.recovery_point {
            return None;
        }
        let files = self
            .segments
            .iter()
            .filter(|s| s.base_offset() < active_base && s.next_offset() > self.recovery_point)
            .flat_map(|s| {
                // With the producer snapshot written when it was sealed
                // (named by the next segment's base; may not exist).
                let snapshot = segment_file(&self.dir, s.next_offset(), SNAPSHOT_EXT);
                s.file_paths().into_iter().chain([snapshot])
            })
            .collect();
        Some(PendingFlush {
            files,
            dir: self.dir.clone(),
            target: active_base,
            generation: self.generation,
        })
    }

    /// Advance the recovery point after `flush` was synced, unless the log
    /// was truncated in between.
    pub fn complete_flush(&mut self, flush: &PendingFlush) -> Result<()> {
        fail_point!("log.flush.before_recovery_point");
        if flush.generation == self.generation && flush.target > self.recovery_point {
            self.write_recovery_point(flush.target)?;
        }
        Ok(())
    }

    /// fsync sealed segments still waiting for the background flush, and
    /// advance the recovery point past them.
    fn sync_sealed(&mut self) -> Result<()> {
        if let Some(pending) = self.pending_flush() {
            pending.sync()?;
            self.complete_flush(&pending)?;
        }
        Ok(())
    }

    /// Make everything durable for a clean shutdown: indexes written, all
    /// fsynced, recovery point at the log end.
    pub fn close(&mut self) -> Result<()> {
        self.sync_sealed()?;
        self.active_mut().seal()?;
        self.active_mut().flush_indexes(true)?;
        self.active().flush()?;
        let now = self.clock.now_ms();
        self.expire_producers(now);
        match self.write_producer_snapshot() {
            Ok(path) => File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("cannot fsync", &path, e))?,
            Err(e) => {
                tracing::warn!(log = %self.name, error = %e, "cannot write producer snapshot")
            }
        }
        sync_dir(&self.dir)?;
        let end = self.log_end_offset();
        self.write_recovery_point(end)
    }

    /// Remove every batch whose last offset is ≥ `offset` (a batch holding
    /// `offset` goes whole), so the log ends at or before `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset < self.log_start_offset() {
            return Err(Error::new(
                ErrorKind::OutOfRange,
                format!(
                    "cannot truncate {} to {offset}: below its log start offset {}",
                    self.name,
                    self.log_start_offset()
                ),
            ));
        }
        while self.segments.len() > 1 && self.active().base_offset() >= offset {
            let base = self.active().base_offset();
            if let Some(seg) = self.segments.remove(base) {
                // Unlinked now: the next roll may reuse its base offset
                // (and its index files' names).
                seg.delete_files()?;
            }
        }
        self.generation += 1;
        let removed = self.active_mut().truncate_to(offset)?;
        self.active().flush()?;
        // Make the deletions durable: deleted segments must not come back.
        sync_dir(&self.dir)?;
        let end = self.log_end_offset();
        if self.recovery_point > end {
            self.write_recovery_point(end)?;
        }
        // Producer state of the removed batches goes with them.
        self.delete_producer_snapshots(|o| o > end)?;
        self.load_producer_state()?;
        tracing::info!(log = %self.name, offset, removed_bytes = removed, log_end_offset = end, "truncated");
        Ok(())
    }

    /// Delete every segment and start empty at `offset` (Kafka's
    /// `truncateFullyAndStartAt`): for a log whose end is below what the
    /// remote tier already holds, so new records never reuse an offset.
    /// The producer state is dropped with the segments (a producer seen
    /// again may start at any sequence, as after expiry).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let now = self.clock.now_ms();
        let fresh = LogSegment::create(&self.dir, offset, self.config.index_interval_bytes, now)?;
        let old = self.segments.base_offsets();
        for base in old {
            if let Some(seg) = self.segments.remove(base) {
                seg.delete_files()?;
            }
        }
        self.segments.insert(fresh);
        self.generation += 1;
        sync_dir(&self.dir)?;
        self.write_recovery_point(offset)?;
        self.delete_producer_snapshots(|_| true)?;
        *self.producers = ProducerStateManager::default();
        self.flush_state = FlushState::new(now);
        tracing::warn!(log = %self.name, offset, "local log emptied and restarted at offset");
        Ok(())
    }

    /// Delete every segment whose records are all below `offset`, rolling
    /// first if that includes the active one. Returns the segments deleted,
    /// oldest first. Retention decides `offset`; this only executes. Their
    /// `.log` files are renamed (`.log.deleted`) and the directory synced;
    /// the unlinking waits for [`LocalLog::take_deleted_files`] (done after
    /// the partition's lock by `UnifiedLog::with_log`; a caller holding a
    /// `LocalLog` of its own leaves them for the next open), as Kafka
    /// deletes segments after renaming them.
    pub fn delete_segments_below(&mut self, offset: i64) -> Result<Vec<DeletedSegment>> {
        let mut deleted = Vec::new();
        while let Some(first) = self.segments.first() {
            // (An empty segment that is not the only one was emptied by
            // the cleaner: its range still counts.)
            if (first.is_empty() && self.segments.len() == 1) || first.next_offset() > offset {
                break;
            }
            if self.segments.len() == 1 {
                let now = self.clock.now_ms();
                self.roll(now)?;
            }
            let base = first_base(&self.segments);
            if let Some(seg) = self.segments.remove(base) {
                deleted.push(DeletedSegment {
                    base_offset: base,
                    size: seg.size(),
                });
                // Renamed now, unlinked after the partition's lock
                // (unlinking a large file takes a while). Its base
                // offset is below the log start for good, so no later
                // segment takes its files' names.
                self.deleted_files.extend(seg.mark_deleted()?);
            }
        }
        if !deleted.is_empty() {
            let start = self.log_start_offset();
            self.delete_producer_snapshots(|o| o < start)?;
            // Their aborted transactions are in their txnindexes (tiered
            // with them, or gone with their data).
            self.producers.prune_aborted_below(start);
            sync_dir(&self.dir)?;
            tracing::info!(log = %self.name, segments = deleted.len(), log_start_offset = self.log_start_offset(), "deleted segments");
        }
        Ok(deleted)
    }

    /// The files of the segments deleted since the last call, for the
    /// caller to unlink once it has let go of the log
    /// ([`super::segment::delete_marked`]); until then they are
    /// `.log.deleted` and index files without a `.log`, which the next
    /// open removes.
    pub fn take_deleted_files(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.deleted_files)
    }

    /// fsync everything appended so far: sealed segments waiting for the
    /// background flush, then the active segment.
    pub fn flush(&mut self) -> Result<()> {
        self.sync_sealed()?;
        self.active().flush()?;
        self.flush_state = FlushState::new(self.clock.now_ms());
        Ok(())
    }

    /// Persist the recovery point atomically (write, fsync, rename).
    pub(super) fn write_recovery_point(&mut self, offset: i64) -> Result<()> {
        let path = self.dir.join(RECOVERY_POINT_FILE);
        let tmp = self.dir.join(format!("{RECOVERY_POINT_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{offset}\n").as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&self.dir).map_err(|e| std::io::Error::other(e.to_string()))
        };
        write().map_err(|e| Error::io("cannot write recovery point", &path, e))?;
        self.recovery_point = offset;
        Ok(())
    }

    /// Open (creating if needed) the log in `dir`: the loader
    /// (`recovery.rs`) returns the segments, then the producer state is
    /// rebuilt. `clean_shutdown` says the engine shut down cleanly last
    /// time.
    pub fn open(
        dir: PathBuf,
        name: String,
        config: TopicConfig,
        clock: SharedClock,
        clean_shutdown: bool,
    ) -> Result<(LocalLog, RecoveryReport)> {
        let loaded = super::recovery::load(&dir, &name, &config, &clock, clean_shutdown)?;
        let mut log = LocalLog::from_parts(
            dir,
            name,
            config,
            loaded.segments,
            loaded.recovery_point,
            clock,
        )?;
        if loaded.report.segments_recovered > 0 {
            // What survived recovery is made durable before it is served.
            log.active().flush()?;
        }
        let end = log.log_end_offset();
        if log.recovery_point > end {
            log.write_recovery_point(end)?;
        }
        log.load_producer_state()?;
        if log.start_floor > log.log_end_offset() {
            // Records DeleteRecords moved past were not fsynced and are
            // gone: start at the floor so no offset below it is reused.
            let floor = log.start_floor;
            log.truncate_fully_and_start_at(floor)?;
        }
        Ok((log, loaded.report))
    }

    /// Whole batches starting with the one holding `offset`, at most
    /// `max_bytes` of them from one segment, but always the first batch
    /// whole when `min_one` (Kafka's KIP-74 rule, so a consumer never sticks
    /// on a large batch). Empty at the log end; `OutOfRange` outside
    /// `[log start, log end]`.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<Vec<u8>> {
        let bounds = (self.log_start_offset(), self.log_end_offset());
        super::reader::read(
            &self.name,
            &self.segments,
            bounds,
            offset,
            max_bytes,
            min_one,
        )
    }

    /// [`LocalLog::read`]'s part that needs the log: the range check and
    /// the first segment's read planned (`reader::plan`); the bytes are
    /// read after the lock is released.
    pub(crate) fn plan_read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<super::reader::ReadPlan> {
        let bounds = (self.log_start_offset(), self.log_end_offset());
        super::reader::plan(
            &self.name,
            &self.segments,
            bounds,
            offset,
            max_bytes,
            min_one,
        )
    }

    /// The largest timestamp in the log and its offset (Kafka's
    /// `MAX_TIMESTAMP` lookup), `None` when the log is empty. The offset is
    /// the first record holding it (Kafka since KAFKA-16310, and the remote
    /// tier's answer), not its batch's last offset.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampAndOffset>> {
        super::reader::max_timestamp_offset(&self.segments)
    }

    /// The first record with timestamp ≥ `timestamp`: its timestamp and
    /// offset, or `None` when every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampAndOffset>> {
        super::reader::offset_for_timestamp(&self.segments, timestamp)
    }

    /// The largest timestamp of the log's batches, `None` when it is empty
    /// (no I/O).
    pub(crate) fn max_timestamp(&self) -> Option<i64> {
        super::reader::max_timestamp(&self.segments)
    }

    /// The next segment of a timestamp lookup (after the one based at
    /// `after`), planned to be searched after the lock
    /// ([`super::reader::TimestampStep::find`]).
    pub(crate) fn plan_timestamp_step(
        &self,
        timestamp: i64,
        after: Option<i64>,
    ) -> Result<Option<super::reader::TimestampStep>> {
        super::reader::plan_timestamp_step(&self.segments, timestamp, after)
    }

    /// The partition's idempotent producer state.
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producers
    }

    /// Rebuild the producer state (`producer_state::rebuild`); without a
    /// usable snapshot, a snapshot of the result is written. Returns the
    /// batches scanned.
    pub(super) fn load_producer_state(&mut self) -> Result<usize> {
        let bounds = (self.log_start_offset(), self.log_end_offset());
        let now = self.clock.now_ms();
        let super::producer_state::Rebuilt {
            producers,
            had_snapshot,
            from,
            scanned,
            txn_indexes,
        } = super::producer_state::rebuild(&self.name, &self.dir, &self.segments, bounds, now)?;
        *self.producers = producers;
        for (base, entries) in txn_indexes {
            if let Some(seg) = self.segments.get_mut(base) {
                let count = entries.len();
                seg.set_txn_index(entries)?;
                tracing::info!(log = %self.name, segment = base, aborted_txns = count, "rebuilt the transaction index from the markers");
            }
        }
        if !had_snapshot && bounds.1 > bounds.0 {
            if let Err(e) = self.write_producer_snapshot() {
                tracing::warn!(log = %self.name(), error = %e, "cannot write producer snapshot");
            }
        }
        if scanned > 0 || !self.producers.is_empty() {
            tracing::debug!(
                log = self.name(),
                producers = self.producers.len(),
                batches_scanned = scanned,
                from_offset = from,
                "producer state loaded"
            );
        }
        Ok(scanned)
    }

    /// Forget producers idle for longer than `producer.id.expiration.ms`
    /// (at rolls, at shutdown, and from the background flush job).
    pub fn expire_producers(&mut self, now_ms: i64) {
        let removed = self
            .producers
            .remove_expired(now_ms, self.producer_id_expiration_ms);
        if removed > 0 {
            tracing::debug!(log = %self.name(), removed, remaining = self.producers.len(), "expired idle producers");
        }
    }

    /// Forget producers with no batch at or above `log_start_offset`: the
    /// whole log's start (not only the local one: with tiered storage the
    /// global start can be below the local start, and producers whose
    /// batches are still in the remote tier are kept).
    pub fn remove_producers_below(&mut self, log_start_offset: i64) {
        let removed = self.producers.remove_below(log_start_offset);
        if removed > 0 {
            tracing::debug!(log = %self.name(), removed, log_start_offset, "dropped producers below the log start offset");
        }
    }

    /// The idempotent producers this partition remembers, by id.
    pub fn producers(&self) -> Vec<crate::format::producer_snapshot::ProducerEntry> {
        self.producers.snapshot(self.log_end_offset()).producers
    }

    /// Write the producer state at the log end as `<offset>.snapshot` and
    /// return its path (synced later with its sealed segment, see
    /// [`LocalLog::pending_flush`]).
    pub(super) fn write_producer_snapshot(&self) -> Result<PathBuf> {
        super::producer_state::write_snapshot(&self.dir, &self.producers, self.log_end_offset())
    }

    /// Delete the snapshots whose offset `doomed` says: below the log start
    /// (their segments are gone) or above the end (after truncation).
    pub(super) fn delete_producer_snapshots(&self, doomed: impl Fn(i64) -> bool) -> Result<()> {
        super::producer_state::delete_snapshots(&self.dir, doomed)
    }

    /// Validate and append one or more concatenated record batches (a
    /// produce request's records). Offsets are assigned in place, so on
    /// return `records` holds exactly the bytes stored. Returns the offsets
    /// assigned; nothing is appended when any batch is invalid.
    /// With a `compression.type` other than `producer`, batches in another
    /// codec are recompressed first, and `records` keeps the bytes as sent.
    pub fn append(&mut self, records: &mut [u8]) -> Result<AppendInfo> {
        // The one place an append's refusal becomes the public error.
        match super::topic_rules::recompressed(self.config(), records) {
            Some(mut converted) => self.try_append(&mut converted),
            None => self.try_append(records),
        }
        .map_err(Error::from)
    }

    /// [`LocalLog::append`], refusals by meaning.
    fn try_append(&mut self, records: &mut [u8]) -> std::result::Result<AppendInfo, AppendError> {
        let max = self.config().max_message_bytes;
        let require_keys = self.config().cleanup_policy.compact;
        let mut headers: Vec<(usize, BatchHeader)> = Vec::with_capacity(1);
        let mut pos = 0usize;
        let mut record_count = 0i64;
        while pos < records.len() {
            let h = crate::format::validator::validate_for_append_keyed(
                &records[pos..],
                max,
                require_keys,
            )
            .map_err(|e| AppendError::from_validation(e, pos))?;
            record_count += i64::from(h.record_count);
            headers.push((pos, h));
            pos += h.size();
        }
        if headers.is_empty() {
            return Err(AppendError::EmptyRequest);
        }
        if records.len() as u64 > self.config().segment_bytes {
            return Err(AppendError::RecordsExceedSegment {
                size: records.len(),
                segment_bytes: self.config().segment_bytes,
                partition: self.name().to_string(),
            });
        }
        // Sequence checks are per batch: a request mixing a duplicate with
        // new batches has no right answer (Kafka takes one batch per
        // partition from Produce v3 on).
        if headers.len() > 1 && headers.iter().any(|(_, h)| h.producer_id >= 0) {
            return Err(AppendError::SeveralIdempotentBatches {
                count: headers.len(),
                partition: self.name().to_string(),
            });
        }
        // Idempotent producers: a retried batch is acknowledged with its
        // original offsets, a gap or a fenced epoch is refused.
        if let ProducerCheck::Duplicate(b) = self.producers.check(headers.iter().map(|(_, h)| h))? {
            tracing::debug!(log = %self.name(), first_offset = b.first_offset, "duplicate batch from an idempotent producer");
            return Ok(AppendInfo {
                base_offset: b.first_offset,
                last_offset: b.last_offset,
                record_count: b.last_offset - b.first_offset + 1,
                log_append_time: None,
                max_timestamp: b.max_timestamp,
                duplicate: true,
            });
        }
        let offset_span: i64 = headers
            .iter()
            .map(|(_, h)| i64::from(h.last_offset_delta) + 1)
            .sum();
        let now = self.clock().now_ms();
        if self.config().message_timestamp_type == MessageTimestampType::CreateTime {
            for (at, h) in &headers {
                super::topic_rules::check_timestamp_bounds(self.config(), *at, h, now)?;
            }
        }
        let incoming_max_ts = match self.config().message_timestamp_type {
            MessageTimestampType::LogAppendTime => now,
            MessageTimestampType::CreateTime => headers
                .iter()
                .map(|(_, h)| h.max_timestamp)
                .max()
                .unwrap_or(-1),
        };
        self.maybe_roll(records.len() as u64, offset_span, incoming_max_ts, now)?;

        let base_offset = self.log_end_offset();
        let log_append_time = (self.config().message_timestamp_type
            == MessageTimestampType::LogAppendTime)
            .then_some(now);
        let mut next = base_offset;
        let mut max_timestamp = -1i64;
        for (at, h) in headers.iter_mut() {
            let bytes = &mut records[*at..*at + h.size()];
            batch::set_base_offset(bytes, next);
            batch::set_partition_leader_epoch(bytes, super::LEADER_EPOCH);
            h.base_offset = next;
            h.partition_leader_epoch = super::LEADER_EPOCH;
            if let Some(t) = log_append_time {
                batch::set_log_append_time(bytes, t);
                h.max_timestamp = t;
            }
            max_timestamp = max_timestamp.max(h.max_timestamp);
            next = h.next_offset();
        }
        self.active_mut().append(records, &headers)?;
        for (_, h) in &headers {
            self.producers.update(h, now);
        }
        self.flush_state.unflushed_messages += record_count;
        if self.flush_state.due(self.config(), now) {
            self.flush()?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            record_count,
            log_append_time,
            max_timestamp,
            duplicate: false,
        })
    }

    /// Append a transaction marker (COMMIT or ABORT control batch) of
    /// `producer_id` at `epoch`, as the transaction coordinator does at
    /// EndTxn: the producer's open transaction here ends, an aborted one
    /// joins the aborted-transaction index, and the last stable offset
    /// moves past it. A marker of an epoch older than the producer's is
    /// refused (INVALID_PRODUCER_EPOCH). Returns the marker's offset.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        epoch: i16,
        kind: crate::format::records::ControlType,
        coordinator_epoch: i32,
    ) -> Result<i64> {
        if let Some(p) = self.producers.producer(producer_id) {
            if epoch < p.epoch {
                return Err(AppendError::InvalidProducerEpoch {
                    producer_id,
                    current: p.epoch,
                    got: epoch,
                }
                .into());
            }
        }
        let now = self.clock().now_ms();
        let mut bytes =
            crate::format::records::control_batch(producer_id, epoch, kind, coordinator_epoch, now);
        let mut header =
            BatchHeader::validate(&bytes).map_err(|e| AppendError::from_validation(e, 0))?;
        self.maybe_roll(bytes.len() as u64, 1, now, now)?;
        let offset = self.log_end_offset();
        batch::set_base_offset(&mut bytes, offset);
        header.base_offset = offset;
        self.active_mut().append(&bytes, &[(0, header)])?;
        let aborted = self
            .producers
            .complete_txn(producer_id, epoch, offset, kind, now);
        if let Some(txn) = aborted {
            // Into the `.txnindex` of the segment holding the marker (a
            // failed write takes the partition offline like a failed
            // append; recovery rebuilds the index from the marker).
            self.active_mut().append_aborted_txn(txn)?;
        }
        self.flush_state.unflushed_messages += 1;
        if self.flush_state.due(self.config(), now) {
            self.flush()?;
        }
        Ok(offset)
    }

    /// The last stable offset (Kafka's LSO): the first offset of the
    /// oldest open transaction, or the log end offset (one replica: the
    /// high watermark) when none is open. read_committed reads stop here.
    pub fn last_stable_offset(&self) -> i64 {
        let end = self.log_end_offset();
        self.producers
            .first_unstable_offset()
            .map_or(end, |first| first.min(end))
    }

    /// Aborted transactions overlapping `[from, upper)`, for a
    /// read_committed fetch of that range, from the local segments'
    /// `.txnindex`es (Kafka's `collectAbortedTransactions`): from the
    /// segment holding `from` on, until an entry's last stable offset
    /// reaches `upper`. The second value says whether that happened (else
    /// the walk reached the log end).
    pub fn aborted_txns(
        &self,
        from: i64,
        upper: i64,
    ) -> (Vec<crate::format::producer_snapshot::AbortedTxn>, bool) {
        let mut found = Vec::new();
        // Not only segments below `upper`: a transaction started below it
        // may have been aborted later.
        for seg in self.segments.starting_at(from) {
            let (mut part, complete) =
                crate::format::txn_index::collect_aborted(seg.aborted_txns(), from, upper);
            found.append(&mut part);
            if complete {
                return (found, true);
            }
        }
        (found, false)
    }

    /// Roll first if appending `bytes` bytes spanning `offsets` offsets with
    /// max timestamp `incoming_ts` to the active segment would break a
    /// limit: `segment.bytes`; `segment.ms` (as in Kafka, measured from the
    /// first batch's timestamp to the incoming one, so both come from the
    /// same clock; from the segment's creation by the broker clock when it
    /// has no timestamp); relative offsets beyond i32; positions beyond
    /// 2 GiB. An empty active segment never rolls.
    fn maybe_roll(
        &mut self,
        bytes: u64,
        offsets: i64,
        incoming_ts: i64,
        now_ms: i64,
    ) -> Result<()> {
        let config = self.config();
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let full = active.size() + bytes > config.segment_bytes;
        let waited = match active.first_batch_timestamp() {
            Some(first) if first >= 0 => incoming_ts.saturating_sub(first),
            _ => now_ms.saturating_sub(active.created_ms()),
        };
        let old = waited > config.segment_ms;
        let offsets_overflow =
            active.next_offset() + offsets - active.base_offset() > i64::from(i32::MAX);
        let positions_overflow = active.size() + bytes > i32::MAX as u64;
        if full || old || offsets_overflow || positions_overflow {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// fsync the active segment if `flush.ms` says it is due; for the
    /// background flush task.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool> {
        if self.flush_state.due(self.config(), now_ms) {
            self.flush()?;
            return Ok(true);
        }
        Ok(false)
    }
}

fn first_base(segments: &LogSegments) -> i64 {
    segments.first().map(|s| s.base_offset()).unwrap_or(0)
}

/// fsync a directory so new, renamed and deleted entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot fsync directory", dir, e))
}
