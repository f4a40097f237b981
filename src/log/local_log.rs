//! [`LocalLog`]: one partition's segments on local disk.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::clock::SharedClock;
use crate::config::TopicConfig;
use crate::error::{Error, Result};

use super::paths::{segment_file, RECOVERY_POINT_FILE, SNAPSHOT_EXT};
use super::producer_state::{ProducerStateManager, DEFAULT_PRODUCER_ID_EXPIRATION_MS};
use super::segment::LogSegment;
use super::segments::LogSegments;
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
    ) -> Self {
        let now = clock.now_ms();
        LocalLog {
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
        }
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
                crate::error::ErrorKind::OutOfRange,
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

    /// Delete every segment whose records are all below `offset`, rolling
    /// first if that includes the active one. Returns the base offsets and
    /// sizes deleted. Retention decides `offset`; this only executes.
    pub fn delete_segments_below(&mut self, offset: i64) -> Result<Vec<(i64, u64)>> {
        let mut deleted = Vec::new();
        while let Some(first) = self.segments.first() {
            if first.is_empty() || first.next_offset() > offset {
                break;
            }
            if self.segments.len() == 1 {
                let now = self.clock.now_ms();
                self.roll(now)?;
            }
            let base = first_base(&self.segments);
            if let Some(seg) = self.segments.remove(base) {
                deleted.push((base, seg.size()));
                seg.delete_files()?;
            }
        }
        if !deleted.is_empty() {
            let start = self.log_start_offset();
            self.delete_producer_snapshots(|o| o < start)?;
            sync_dir(&self.dir)?;
            tracing::info!(log = %self.name, segments = deleted.len(), log_start_offset = self.log_start_offset(), "deleted segments");
        }
        Ok(deleted)
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
