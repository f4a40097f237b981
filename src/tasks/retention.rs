//! Retention by Kafka's names, as a plan (a pure function) and the local
//! retention job that carries out its local part.
//!
//! `retention.ms` / `retention.bytes` apply to the whole log (remote
//! `COPY_FINISHED` segments plus local segments not tiered), and
//! `local.retention.ms` / `local.retention.bytes` (-2: the total values) to
//! the local copy. With remote storage on for a topic, a local segment is
//! deleted only once its remote copy is `COPY_FINISHED`; with it off (or no
//! remote tier at all), retention is Kafka's over the local log. The active
//! segment is never deleted.
//!
//! The remote log manager's expiration job carries out the total part of
//! the plan (remote segments, and the local copies below them); the local
//! retention job here carries out the local part. It runs with or without
//! a remote tier, every `log.retention.check.interval.ms`. It reads the
//! tiered segments from the partition's in-memory map (the `COPY_FINISHED`
//! rows), never the store.

use crate::catalog::RemoteSegment;
use crate::config::TopicConfig;
use crate::error::Result;
use crate::failpoints::fail_point;
use crate::log_manager::LogManager;
use crate::metrics::EventLevel;
use crate::unified_log::UnifiedLog;

/// A local segment as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalSegmentInfo {
    pub base_offset: i64,
    /// Offset after its last batch.
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
}

/// What retention would delete now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetentionPlan {
    /// How many of the oldest `COPY_FINISHED` segments total retention
    /// expires (deleted oldest first by the expiration job).
    pub remote_expired: usize,
    /// Local segments wholly below this offset go (`i64::MIN`: none).
    pub local_cut: i64,
}

/// Plan retention for one partition: `finished` are its `COPY_FINISHED`
/// segments by base offset, `local` its local segments oldest first (the
/// active one last), `remote_on` whether remote storage governs it,
/// `floor` the log start offset DeleteRecords set (0: none): every segment
/// wholly below it goes from both tiers, tiered or not (nobody may read
/// it, so no copy is waited for).
pub(crate) fn plan(
    finished: &[RemoteSegment],
    local: &[LocalSegmentInfo],
    config: &TopicConfig,
    remote_on: bool,
    floor: i64,
    now: i64,
) -> RetentionPlan {
    let tiered_end = tiered_end(finished);
    let sealed_local = &local[..local.len().saturating_sub(1)];

    // Total retention over the whole log, oldest first: (next offset,
    // size, max timestamp, is remote).
    let mut whole: Vec<(i64, u64, i64, bool)> = finished
        .iter()
        .map(|r| (r.last_offset + 1, r.log_size, r.max_timestamp, true))
        .collect();
    whole.extend(
        local
            .iter()
            .filter(|l| l.base_offset >= tiered_end)
            .map(|l| (l.next_offset, l.size, l.max_timestamp, false)),
    );
    let total_size: u64 = whole.iter().map(|w| w.1).sum();
    let expired_total = expired_prefix(
        whole.iter().map(|w| (w.1, w.2)).collect(),
        total_size,
        config.retention_ms,
        config.retention_bytes,
        now,
        // The active segment (last) is never expired by this pass.
        whole.len().saturating_sub(1),
    );
    let mut remote_expired = 0;
    let mut total_cut = i64::MIN; // everything below is expired
    for w in &whole[..expired_total] {
        if w.3 {
            remote_expired += 1;
        } else if remote_on {
            // A local segment not tiered: with remote storage on it waits
            // for its copy; without, it is Kafka's retention.
            break;
        }
        total_cut = total_cut.max(w.0);
    }

    // Local retention over the local copy.
    let (local_ms, local_bytes) = if remote_on {
        (
            config.effective_local_retention_ms(),
            config.effective_local_retention_bytes(),
        )
    } else {
        (config.retention_ms, config.retention_bytes)
    };
    let local_size: u64 = local.iter().map(|l| l.size).sum();
    let expired_local = expired_prefix(
        local.iter().map(|l| (l.size, l.max_timestamp)).collect(),
        local_size,
        local_ms,
        local_bytes,
        now,
        sealed_local.len(),
    );
    let mut local_cut = total_cut.min(sealed_local.last().map_or(i64::MIN, |l| l.next_offset));
    for l in &sealed_local[..expired_local] {
        if remote_on && l.next_offset > tiered_end {
            break; // its copy is not COPY_FINISHED yet
        }
        local_cut = local_cut.max(l.next_offset);
    }
    // DeleteRecords: the sealed segments wholly below the floor, in either
    // tier (the active one is never deleted).
    let remote_below_floor = finished
        .iter()
        .take_while(|r| r.last_offset < floor)
        .count();
    if let Some(l) = sealed_local
        .iter()
        .take_while(|l| l.next_offset <= floor)
        .last()
    {
        local_cut = local_cut.max(l.next_offset);
    }
    RetentionPlan {
        remote_expired: remote_expired.max(remote_below_floor),
        local_cut,
    }
}

/// The log start offset DeleteRecords set for `partition` (0: none, or the
/// partition is offline).
pub(crate) fn start_floor(partition: &UnifiedLog) -> i64 {
    partition.with_log(|log| Ok(log.start_floor())).unwrap_or(0)
}

/// The offset after the highest `COPY_FINISHED` segment of `rows`
/// (`i64::MIN` with none).
pub(crate) fn tiered_end(rows: &[RemoteSegment]) -> i64 {
    rows.iter()
        .filter(|r| r.state == crate::catalog::RemoteState::CopyFinished)
        .map(|r| r.last_offset + 1)
        .max()
        .unwrap_or(i64::MIN)
}

/// How many of the oldest segments `(size, max_timestamp)` are expired by
/// `retention_ms` (-1: never) or by `retention_bytes` (-1: unlimited; delete
/// while the rest still holds at least that much), looking at the first
/// `eligible` only.
pub(crate) fn expired_prefix(
    segments: Vec<(u64, i64)>,
    total: u64,
    retention_ms: i64,
    retention_bytes: i64,
    now: i64,
    eligible: usize,
) -> usize {
    let mut n = 0;
    let mut remaining = total;
    for &(size, max_ts) in segments.iter().take(eligible) {
        let by_time = retention_ms >= 0 && max_ts < now.saturating_sub(retention_ms);
        let by_size =
            retention_bytes >= 0 && remaining.saturating_sub(size) >= retention_bytes as u64;
        if !(by_time || by_size) {
            break;
        }
        remaining -= size;
        n += 1;
    }
    n
}

/// The local segments of `partition`, oldest first (`None`: offline or
/// closed).
pub(crate) fn local_segments(partition: &UnifiedLog) -> Option<Vec<LocalSegmentInfo>> {
    partition
        .with_log(|log| {
            Ok(log
                .segments()
                .map(|s| LocalSegmentInfo {
                    base_offset: s.base_offset(),
                    next_offset: s.next_offset(),
                    size: s.size(),
                    max_timestamp: s.max_timestamp(),
                })
                .collect())
        })
        .ok()
}

/// The local retention job: for every partition, delete the local segments
/// the plan cuts. `remote_tier` says whether the engine has a remote tier
/// (without one, every topic has Kafka's local retention). Returns how
/// many segments went.
pub(crate) fn run_local_retention(logs: &LogManager, remote_tier: bool, now: i64) -> usize {
    let mut deleted = 0;
    for topic in logs.topic_states() {
        let Ok(config) = TopicConfig::resolve(&topic.record.configs, logs.topic_defaults()) else {
            continue;
        };
        for (p, partition) in topic.partitions.iter().enumerate() {
            match retain_partition(partition, &config, remote_tier, now) {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(topic = %topic.record.name, partition = p, error = %e, "local retention failed; will retry");
                    logs.record_event(
                        EventLevel::Warn,
                        format!(
                            "local retention of {}-{p} failed (retried next run): {e}",
                            topic.record.name
                        ),
                    );
                }
            }
        }
    }
    deleted
}

fn retain_partition(
    partition: &UnifiedLog,
    config: &TopicConfig,
    remote_tier: bool,
    now: i64,
) -> Result<usize> {
    let finished: Vec<RemoteSegment> = partition
        .remote_segments()
        .iter()
        .map(|s| (**s).clone())
        .collect();
    // Remote storage governs a topic while it is on. Turned off, the topic
    // gets Kafka's local retention again (retention.* over the local log),
    // and what it tiered stays readable until total retention expires it:
    // local copies never wait for an upload that will not come.
    let remote_on = remote_tier && config.remote_storage_enable;
    let Some(local) = local_segments(partition) else {
        return Ok(0);
    };
    let plan = plan(
        &finished,
        &local,
        config,
        remote_on,
        start_floor(partition),
        now,
    );
    if plan.local_cut <= local.first().map_or(i64::MAX, |l| l.base_offset) {
        return Ok(0);
    }
    let deleted = partition.with_log(|log| {
        let deleted = log.delete_segments_below(plan.local_cut)?;
        // Without a remote tier the local log start is the log start:
        // producers with no batch left are forgotten, as in Kafka. With
        // one, older batches may still be remote, so only
        // `producer.id.expiration.ms` removes producers.
        if !remote_on {
            log.remove_producers_below(log.log_start_offset());
        }
        Ok(deleted)
    })?;
    fail_point!("retention.after_delete_local");
    Ok(deleted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_by_time_and_size() {
        let segs = vec![(100, 10), (100, 20), (100, 30), (100, 40)];
        assert_eq!(expired_prefix(segs.clone(), 400, -1, -1, 1000, 3), 0);
        assert_eq!(
            expired_prefix(segs.clone(), 400, 975, -1, 1000, 3),
            2,
            "ts 10 and 20 < 25"
        );
        assert_eq!(
            expired_prefix(segs.clone(), 400, -1, 200, 1000, 3),
            2,
            "keep at least 200 bytes"
        );
        assert_eq!(
            expired_prefix(segs.clone(), 400, -1, 0, 1000, 3),
            3,
            "never the last"
        );
        assert_eq!(expired_prefix(segs, 400, 0, -1, 1000, 3), 3);
    }

    fn local(bounds: &[(i64, i64, i64)]) -> Vec<LocalSegmentInfo> {
        bounds
            .iter()
            .map(|&(base, next, ts)| LocalSegmentInfo {
                base_offset: base,
                next_offset: next,
                size: 100,
                max_timestamp: ts,
            })
            .collect()
    }

    #[test]
    fn without_remote_storage_it_is_kafkas_retention_and_spares_the_active_segment() {
        let config = TopicConfig::resolve(
            &[("retention.ms".to_string(), "100".to_string())].into(),
            &Default::default(),
        )
        .unwrap();
        let segs = local(&[(0, 10, 10), (10, 20, 20), (20, 30, 950), (30, 35, 960)]);
        let p = plan(&[], &segs, &config, false, 0, 1000);
        assert_eq!(
            p,
            RetentionPlan {
                remote_expired: 0,
                local_cut: 20
            }
        );
        let all_old = local(&[(0, 10, 10), (10, 20, 20)]);
        assert_eq!(
            plan(&[], &all_old, &config, false, 0, 1000).local_cut,
            10,
            "never the active one"
        );
    }

    #[test]
    fn with_remote_storage_local_copies_wait_for_their_upload() {
        let config = TopicConfig::resolve(
            &[
                ("retention.ms".to_string(), "-1".to_string()),
                ("local.retention.bytes".to_string(), "0".to_string()),
            ]
            .into(),
            &Default::default(),
        )
        .unwrap();
        let segs = local(&[(0, 10, 10), (10, 20, 20), (20, 30, 30)]);
        // Nothing tiered: nothing local may go.
        assert_eq!(plan(&[], &segs, &config, true, 0, 1000).local_cut, i64::MIN);
    }

    #[test]
    fn delete_records_floor_removes_what_is_wholly_below_it_from_both_tiers() {
        // Keep everything by time and size: only the floor deletes.
        let config = TopicConfig::resolve(
            &[("retention.ms".to_string(), "-1".to_string())].into(),
            &Default::default(),
        )
        .unwrap();
        let row = |base: i64, last: i64| RemoteSegment {
            segment_uuid: uuid::Uuid::new_v4(),
            topic: "t".into(),
            topic_id: uuid::Uuid::nil(),
            partition: 0,
            base_offset: base,
            last_offset: last,
            first_timestamp: 0,
            max_timestamp: 0,
            log_size: 100,
            index_size: 0,
            timeindex_size: 0,
            log_crc32c: 0,
            state: crate::catalog::RemoteState::CopyFinished,
            updated_ms: 0,
            index_crc32c: None,
            timeindex_crc32c: None,
            log_blocks: None,
            txnindex: None,
        };
        let finished = [row(0, 9), row(10, 19)];
        // Local: the tiered copies, a sealed untiered one, the active one.
        let segs = local(&[(0, 10, 1), (10, 20, 2), (20, 30, 3), (30, 35, 4)]);
        let p = plan(&finished, &segs, &config, true, 25, 1000);
        assert_eq!(
            p,
            RetentionPlan {
                remote_expired: 2,
                local_cut: 20
            },
            "25 lies in [20, 30): that segment stays"
        );
        // Past the untiered sealed segment: it goes without waiting for an
        // upload; never the active one.
        let p = plan(&finished, &segs, &config, true, 35, 1000);
        assert_eq!((p.remote_expired, p.local_cut), (2, 30));
        assert_eq!(
            plan(&finished, &segs, &config, true, 0, 1000).remote_expired,
            0
        );
    }
}
