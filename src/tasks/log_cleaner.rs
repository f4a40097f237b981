//! The log cleaner job (Kafka's `LogCleaner` and `LogCleanerManager`):
//! which partition of a compacted topic to clean, and when.
//!
//! Each run looks at every partition of a topic whose `cleanup.policy`
//! includes `compact`. Its *cleanable section* runs from the first dirty
//! offset (where the last pass stopped; the log start at first) to the
//! first uncleanable one: never the active segment, never a segment not yet
//! fsynced, never a segment holding a record younger than
//! `min.compaction.lag.ms`. A partition is due when its dirty ratio (dirty
//! bytes ÷ clean + dirty bytes) reaches `min.cleanable.dirty.ratio`, when
//! its oldest dirty record is older than `max.compaction.lag.ms`, or when a
//! tombstone's delete horizon has passed. Due partitions are cleaned
//! dirtiest first (those past their max lag before all others); when none
//! is due the job waits `log.cleaner.backoff.ms`.
//!
//! The pass itself is `log::cleaner`'s: the key map is built over the
//! cleanable section within `log.cleaner.dedupe.buffer.size` (what does
//! not fit is the next pass's), segments from the log start to the map's
//! end are rewritten in groups of at most `segment.bytes`, each swapped in
//! under the partition's lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::TopicConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::failpoints::fail_point;
use crate::log::cleaner::{
    build_offset_map, clean_group, BatchSource, BuiltMap, CleanStats, CleanerCheckpoint,
    CleanerView, LocalFiles, SegmentInfo, Throttle, STAGING_DIR,
};
use crate::log_manager::LogManager;
use crate::remote::uploader::SegmentOwner;

use super::tiered_compaction::{
    add_stats, commit_tiered, tier_groups, units, TierContext, TieredSource,
};
use crate::metrics::EventLevel;
use crate::sync::lock;
use crate::unified_log::UnifiedLog;

/// The cleaner's broker settings, by Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerSettings {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.dedupe.buffer.size`.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.io.max.bytes.per.second`.
    pub io_max_bytes_per_second: u64,
    /// `log.cleaner.backoff.ms`.
    pub backoff_ms: i64,
}

impl Default for CleanerSettings {
    fn default() -> Self {
        CleanerSettings {
            enable: true,
            dedupe_buffer_bytes: 128 << 20,
            io_max_bytes_per_second: u64::MAX,
            backoff_ms: 15_000,
        }
    }
}

/// Cleaner totals since start, for metrics.
#[derive(Debug, Default)]
pub struct CleanerTotals {
    pub passes: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub failures: AtomicU64,
    pub remote_get_requests: AtomicU64,
    pub remote_put_requests: AtomicU64,
}

/// The cleaner: settings, a stop flag for shutdown, totals, and what
/// tiered compaction needs (with a remote tier).
#[derive(Debug, Default)]
pub struct LogCleaner {
    tier: Option<TierContext>,
    pub settings: CleanerSettings,
    cancelled: Arc<AtomicBool>,
    pub totals: CleanerTotals,
    /// Held for a whole run: the job and `Engine::run_log_cleaner` never
    /// clean at once (two passes over one partition would share its
    /// staging directory).
    running: Mutex<()>,
}

/// One partition's cleanable section and whether it is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    pub first_dirty_offset: i64,
    pub first_uncleanable_offset: i64,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// dirty ÷ (clean + dirty); 0 when both are 0.
    pub dirty_ratio: f64,
    /// Its oldest dirty record passed `max.compaction.lag.ms`.
    pub past_max_lag: bool,
    /// A kept tombstone's delete horizon passed.
    pub horizon_passed: bool,
}

impl Cleanable {
    /// Whether a pass is due by `config`.
    pub fn due(&self, config: &TopicConfig) -> bool {
        (self.dirty_bytes > 0
            && (self.dirty_ratio >= config.min_cleanable_dirty_ratio || self.past_max_lag))
            || self.horizon_passed
    }
}

/// The cleanable section of `segments` (sealed, fsynced, oldest first)
/// from `first_dirty` at `now`; `horizon_ms` is the earliest delete
/// horizon of a kept tombstone (-1: none).
pub fn cleanable_in(
    segments: &[SegmentInfo],
    first_dirty: i64,
    horizon_ms: i64,
    config: &TopicConfig,
    now: i64,
) -> Cleanable {
    let min_lag_bound = now.saturating_sub(config.min_compaction_lag_ms);
    let mut first_uncleanable = segments.last().map_or(first_dirty, |s| s.end_offset);
    let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
    let mut past_max_lag = false;
    for seg in segments {
        if seg.end_offset <= first_dirty {
            clean_bytes += seg.size;
            continue;
        }
        if seg.base_offset >= first_uncleanable {
            break;
        }
        if config.min_compaction_lag_ms > 0 && seg.max_timestamp > min_lag_bound {
            first_uncleanable = seg.base_offset.max(first_dirty);
            break;
        }
        dirty_bytes += seg.size;
        if let Some(first) = seg.first_timestamp {
            past_max_lag |= now.saturating_sub(first) > config.max_compaction_lag_ms;
        }
    }
    let total = clean_bytes + dirty_bytes;
    Cleanable {
        first_dirty_offset: first_dirty,
        first_uncleanable_offset: first_uncleanable.max(first_dirty),
        clean_bytes,
        dirty_bytes,
        dirty_ratio: if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        },
        past_max_lag,
        horizon_passed: horizon_ms >= 0 && now >= horizon_ms,
    }
}

/// One partition as a pass sees it: its local view, its tiered segments
/// (empty unless tiered compaction applies), the whole log as one sequence
/// of segments, where tiering ends, and the first dirty offset.
struct PassPlan {
    view: CleanerView,
    remote: Vec<Arc<crate::catalog::RemoteSegment>>,
    units: Vec<SegmentInfo>,
    tiered_end: i64,
    first_dirty: i64,
}

/// One compacted partition's cleaning state now (metrics, describe).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionCleaning {
    pub topic: String,
    pub partition: u32,
    /// Its cleanable section and dirty ratio.
    pub cleanable: Cleanable,
    /// Where the last pass left it.
    pub checkpoint: CleanerCheckpoint,
}

/// Every online partition of a topic whose `cleanup.policy` includes
/// `compact`, by topic name then partition.
pub(crate) fn compacted_partitions(
    cleaner: &LogCleaner,
    logs: &LogManager,
    now: i64,
) -> Vec<PartitionCleaning> {
    let mut out = Vec::new();
    for topic in logs.topic_states() {
        let Ok(config) = TopicConfig::resolve(&topic.record.configs, logs.topic_defaults()) else {
            continue;
        };
        if !config.cleanup_policy.compact {
            continue;
        }
        for (partition, log) in (0u32..).zip(&topic.partitions) {
            if let Ok(plan) = cleaner.plan(log, &config, None) {
                out.push(PartitionCleaning {
                    topic: topic.record.name.clone(),
                    partition,
                    cleanable: cleanable_in(
                        &plan.units,
                        plan.first_dirty,
                        plan.view.checkpoint.next_delete_horizon_ms,
                        &config,
                        now,
                    ),
                    checkpoint: plan.view.checkpoint,
                });
            }
        }
    }
    out
}

/// What one run of the cleaner did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanerReport {
    pub partitions_cleaned: usize,
    pub stats: CleanStats,
}

impl LogCleaner {
    pub fn new(settings: CleanerSettings) -> Self {
        LogCleaner {
            settings,
            ..Default::default()
        }
    }

    /// Clean tiered segments too, for topics with remote storage on.
    pub(crate) fn with_tier(mut self, tier: TierContext) -> Self {
        self.tier = Some(tier);
        self
    }

    /// Stop a pass under way (at its next batch) and every later one.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Clean every due partition once, dirtiest first.
    pub(crate) fn run(&self, logs: &LogManager, now: i64) -> CleanerReport {
        let mut report = CleanerReport::default();
        if !self.settings.enable {
            return report;
        }
        let _running = lock(&self.running);
        let mut due: Vec<(Arc<UnifiedLog>, SegmentOwner, TopicConfig, Cleanable)> = Vec::new();
        for topic in logs.topic_states() {
            let Ok(config) = TopicConfig::resolve(&topic.record.configs, logs.topic_defaults())
            else {
                continue;
            };
            if !config.cleanup_policy.compact {
                continue;
            }
            for (p, partition) in topic.partitions.iter().enumerate() {
                let Ok(plan) = self.plan(partition, &config, None) else {
                    continue;
                };
                let c = cleanable_in(
                    &plan.units,
                    plan.first_dirty,
                    plan.view.checkpoint.next_delete_horizon_ms,
                    &config,
                    now,
                );
                if c.due(&config) {
                    let owner = SegmentOwner {
                        topic: topic.record.name.clone(),
                        topic_id: topic.record.id,
                        partition: p as u32,
                    };
                    due.push((Arc::clone(partition), owner, config.clone(), c));
                }
            }
        }
        due.sort_by(|a, b| {
            (b.3.past_max_lag, b.3.dirty_ratio)
                .partial_cmp(&(a.3.past_max_lag, a.3.dirty_ratio))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for (partition, owner, config, _) in due {
            if self.cancelled.load(Ordering::SeqCst) {
                break;
            }
            match self.clean_partition(&partition, &owner, &config, now) {
                Ok(Some(stats)) => {
                    report.partitions_cleaned += 1;
                    add_stats(&mut report.stats, &stats);
                }
                Ok(None) => {}
                Err(e) if e.kind() == ErrorKind::Closed => break,
                Err(e) => {
                    self.totals.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic = %owner.topic, partition = owner.partition, error = %e, "log cleaner pass failed; will retry");
                    logs.record_event(
                        EventLevel::Warn,
                        format!(
                            "cleaning {}-{} failed (retried next run): {e}",
                            owner.topic, owner.partition
                        ),
                    );
                }
            }
        }
        self.totals
            .bytes_read
            .fetch_add(report.stats.bytes_read, Ordering::Relaxed);
        self.totals
            .bytes_written
            .fetch_add(report.stats.bytes_written, Ordering::Relaxed);
        self.totals
            .remote_get_requests
            .fetch_add(report.stats.remote_get_requests, Ordering::Relaxed);
        self.totals
            .remote_put_requests
            .fetch_add(report.stats.remote_put_requests, Ordering::Relaxed);
        report
    }

    /// Whether `partition`'s pass covers its tiered segments.
    fn tiered(&self, partition: &UnifiedLog, config: &TopicConfig) -> bool {
        config.remote_storage_enable
            && self.tier.is_some()
            && !partition.remote_segments().is_empty()
    }

    fn plan(
        &self,
        partition: &UnifiedLog,
        config: &TopicConfig,
        tier: Option<(&TierContext, &tokio::runtime::Handle)>,
    ) -> Result<PassPlan> {
        let mut view = partition.with_log(|l| Ok(l.cleaner_view()))?;
        let remote = if self.tiered(partition, config) {
            partition.remote_segments()
        } else {
            Vec::new()
        };
        let (units, tiered_end) = if remote.is_empty() {
            (view.cleanable.clone(), i64::MIN)
        } else {
            units(&view, &remote)
        };
        if let Some((t, handle)) = tier.filter(|_| !remote.is_empty()) {
            // The tiered segments' aborted transactions, from their
            // `.txnindex` objects, before the local ones.
            let below: Vec<_> = remote
                .iter()
                .filter(|r| r.base_offset < view.log_start_offset)
                .cloned()
                .collect();
            let fetcher = t.fetcher.clone();
            let (mut tiered, _) = crate::unified_log::run_on(handle, async move {
                fetcher.aborted_txns(&below, i64::MIN, i64::MAX).await
            })?;
            tiered.retain(|a| a.last_offset < view.log_start_offset);
            tiered.append(&mut view.aborted);
            view.aborted = tiered;
        }
        let log_start = units.first().map_or(view.log_start_offset, |u| {
            u.base_offset.min(view.log_start_offset)
        });
        let first_dirty = view.checkpoint.first_dirty_offset.max(log_start);
        Ok(PassPlan {
            view,
            remote,
            units,
            tiered_end,
            first_dirty,
        })
    }

    /// One pass over one partition. `Ok(None)`: nothing was swapped (the
    /// log changed under the pass; the next run starts again).
    pub(crate) fn clean_partition(
        &self,
        partition: &UnifiedLog,
        owner: &SegmentOwner,
        config: &TopicConfig,
        now: i64,
    ) -> Result<Option<CleanStats>> {
        // Every pass over a topic with remote storage on runs outside
        // tiering rounds: the copy job must never upload a segment while a
        // swap replaces its files (its objects would mix old and new).
        match &self.tier {
            Some(tier) if config.remote_storage_enable => tier
                .manager
                .run_exclusive(|handle| {
                    self.pass(partition, owner, config, now, Some((tier, handle)))
                })
                .unwrap_or_else(|| {
                    Err(Error::new(ErrorKind::Closed, "the engine is shutting down"))
                }),
            _ => self.pass(partition, owner, config, now, None),
        }
    }

    fn pass(
        &self,
        partition: &UnifiedLog,
        owner: &SegmentOwner,
        config: &TopicConfig,
        now: i64,
        tier: Option<(&TierContext, &tokio::runtime::Handle)>,
    ) -> Result<Option<CleanStats>> {
        let plan = self.plan(partition, config, tier)?;
        let view = &plan.view;
        let c = cleanable_in(
            &plan.units,
            plan.first_dirty,
            view.checkpoint.next_delete_horizon_ms,
            config,
            now,
        );
        let mut stats = CleanStats::default();
        let mut throttle = Throttle::new(self.settings.io_max_bytes_per_second)
            .with_cancel(Arc::clone(&self.cancelled));
        let mut source: Box<dyn BatchSource + '_> = match tier {
            Some((t, handle)) if !plan.remote.is_empty() => {
                Box::new(TieredSource::new(&t.fetcher, handle, view, &plan.remote))
            }
            _ => Box::new(LocalFiles),
        };
        let requests_before = tier.map(|(t, _)| t.requests());
        let built = if c.first_uncleanable_offset > c.first_dirty_offset {
            build_offset_map(
                &plan.units,
                source.as_mut(),
                c.first_dirty_offset,
                c.first_uncleanable_offset,
                &view.aborted,
                self.settings.dedupe_buffer_bytes,
                &mut throttle,
                &mut stats,
            )?
            .ok_or_else(|| {
                Error::invalid(format!(
                    "cannot clean {}: one batch at offset {} has more records than log.cleaner.dedupe.buffer.size ({} bytes) has room for",
                    view.name, c.first_dirty_offset, self.settings.dedupe_buffer_bytes
                ))
            })?
        } else {
            // Nothing dirty (a delete horizon passed): rewrite the clean
            // section with an empty map.
            BuiltMap {
                map: crate::log::cleaner::empty_map(),
                end_offset: c.first_dirty_offset,
            }
        };
        let mut next_horizon = -1i64;
        let mut replaced_end = None;
        let mut replaced_segments = 0usize;
        let mut txns = crate::log::cleaner::CleanedTxns::new(&view.aborted);
        let groups = tier_groups(
            &plan.units,
            plan.tiered_end,
            built.end_offset,
            config.segment_bytes,
        );
        for (is_tiered, group) in groups {
            let staged = clean_group(
                view,
                source.as_mut(),
                &group,
                &built,
                &mut txns,
                now,
                config.delete_retention_ms,
                &mut throttle,
                &mut stats,
            )?;
            let staging = view.dir.join(STAGING_DIR);
            if !staged.changed {
                let _ = std::fs::remove_dir_all(&staging);
                continue;
            }
            match tier {
                Some((t, handle)) if is_tiered => {
                    let replaced: Vec<_> = plan
                        .remote
                        .iter()
                        .filter(|r| r.base_offset >= staged.base() && r.last_offset < staged.end())
                        .cloned()
                        .collect();
                    commit_tiered(t, handle, partition, owner, &staged, &replaced, now)?;
                    let _ = std::fs::remove_dir_all(&staging);
                    replaced_segments += replaced.len();
                    replaced_end = Some(staged.end());
                }
                _ => {
                    fail_point!("cleaner.after_stage");
                    if !partition.with_log(|l| l.swap_cleaned(&staged))? {
                        tracing::info!(log = %view.name, "log changed during a cleaning pass; it starts again next run");
                        return Ok(None);
                    }
                }
            }
            if staged.next_delete_horizon_ms >= 0 {
                next_horizon = if next_horizon < 0 {
                    staged.next_delete_horizon_ms
                } else {
                    next_horizon.min(staged.next_delete_horizon_ms)
                };
            }
        }
        if let Some(end) = replaced_end {
            // The local copies of what was replaced are stale: reads of
            // those offsets go to the cleaned segments from now on.
            partition.with_log(|l| l.delete_segments_below(end))?;
        }
        partition.with_log(|l| {
            l.set_cleaner_checkpoint(CleanerCheckpoint {
                first_dirty_offset: built.end_offset,
                next_delete_horizon_ms: next_horizon,
                last_clean_ms: now,
            })
        })?;
        self.totals.passes.fetch_add(1, Ordering::Relaxed);
        if let (Some(before), Some((t, _))) = (requests_before, tier) {
            let after = t.requests();
            stats.remote_get_requests += after.gets - before.gets;
            stats.remote_put_requests += after.puts - before.puts;
        }
        tracing::info!(
            log = %view.name,
            dirty_ratio = c.dirty_ratio,
            bytes_read = stats.bytes_read,
            bytes_written = stats.bytes_written,
            records_kept = stats.records_kept,
            records_read = stats.records_read,
            tiered_segments_replaced = replaced_segments,
            first_dirty_offset = built.end_offset,
            "cleaned"
        );
        Ok(Some(stats))
    }
}
