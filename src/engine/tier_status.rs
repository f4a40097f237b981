//! `tierlog tier status`: each partition's place in the tiers, read now
//! from the local log, the catalog, the remote log manager and the log
//! cleaner, as one JSON document the broker serves at
//! `GET /v1/tier/status[?topic=NAME]` on its `metrics_listen` address.
//!
//! Owns the document's shape ([`TierStatus`]; the CLI parses the same
//! types). Must never change anything: it reads under the same locks as a
//! fetch and one catalog query per partition.
//!
//! ## Format
//!
//! ```json
//! {"format_version": 1, "now_ms": 1700000000000, "remote": "s3://bucket/prefix",
//!  "partitions": [{
//!    "topic": "orders", "topic_id": "<uuid>", "partition": 0,
//!    "remote_storage_enable": true, "offline": null,
//!    "log_start_offset": 0, "local_log_start_offset": 700,
//!    "last_tiered_offset": 799, "log_end_offset": 1000,
//!    "local_bytes": 40960, "local_segments": 3, "remote_bytes": 81920,
//!    "segments": {"copy_started": 0, "copy_finished": 8, "delete_started": 0, "delete_finished": 2},
//!    "copy_lag_bytes": 4096, "copy_lag_segments": 1, "oldest_untiered_age_ms": 1200,
//!    "last_upload_error": {"error": "…", "at_ms": 1699999990000, "base_offset": 800,
//!                          "consecutive_failures": 2, "next_attempt_ms": 1700000001000},
//!    "cleaner": {"dirty_ratio": 0.25, "first_dirty_offset": 700, "last_clean_ms": 1699999000000}}]}
//! ```
//!
//! - Offsets are Kafka's: `log_start_offset` is the first readable in
//!   either tier, `local_log_start_offset` the first on local disk,
//!   `last_tiered_offset` the last in a `COPY_FINISHED` segment (`null`:
//!   none), `log_end_offset` the next to be written. All four are `null`
//!   while the partition is offline (`offline` then holds why).
//! - `segments` counts the catalog's rows of the partition by lifecycle
//!   state (docs/design.md §4); `remote_bytes` sums the `COPY_FINISHED`
//!   ones' objects.
//! - Tiering lag (Kafka's `RemoteCopyLagBytes`/`RemoteCopyLagSegments`):
//!   sealed, non-empty local segments above the last tiered offset;
//!   `oldest_untiered_age_ms` is how long the oldest of them has been
//!   sealed (since the next segment was created, or since the broker
//!   opened the log after a restart). All 0/`null` for a topic without
//!   `remote.storage.enable`.
//! - `last_upload_error`: the last failed upload since the broker started
//!   (`null`: none), kept after a later success, which sets
//!   `consecutive_failures` to 0 and `next_attempt_ms` to `null`.
//! - `cleaner`: for a topic whose `cleanup.policy` includes `compact`, the
//!   dirty ratio now, the first dirty offset and when the last pass ended
//!   (-1: never); `null` otherwise.
//!
//! Fields are only ever added; a reader ignores the ones it does not know.

use serde::{Deserialize, Serialize};

use crate::catalog::RemoteState;
use crate::config::TopicConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::lock;

use super::Engine;

/// Where the admin endpoint serves the document.
pub const STATUS_PATH: &str = "/v1/tier/status";

/// The status document's version.
pub const TIER_STATUS_VERSION: u32 = 1;

/// `GET /v1/tier/status`: every partition asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierStatus {
    pub format_version: u32,
    /// The broker's clock when it answered (ms).
    pub now_ms: i64,
    /// The remote tier's URL (no secrets); `null` without one.
    pub remote: Option<String>,
    pub partitions: Vec<PartitionTierStatus>,
}

/// One partition's tiering state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionTierStatus {
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub partition: u32,
    pub remote_storage_enable: bool,
    /// Why the partition is offline; `null` when online.
    pub offline: Option<String>,
    pub log_start_offset: Option<i64>,
    pub local_log_start_offset: Option<i64>,
    pub last_tiered_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub local_bytes: u64,
    pub local_segments: usize,
    pub remote_bytes: u64,
    pub segments: SegmentStates,
    pub copy_lag_bytes: u64,
    pub copy_lag_segments: usize,
    pub oldest_untiered_age_ms: Option<i64>,
    pub last_upload_error: Option<UploadErrorStatus>,
    pub cleaner: Option<CleanerStatus>,
}

/// Catalog rows of a partition by lifecycle state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentStates {
    pub copy_started: usize,
    pub copy_finished: usize,
    pub delete_started: usize,
    pub delete_finished: usize,
}

/// The last failed upload of a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadErrorStatus {
    pub error: String,
    pub at_ms: i64,
    pub base_offset: i64,
    pub consecutive_failures: u32,
    pub next_attempt_ms: Option<i64>,
}

/// The log cleaner's state of a compacted partition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CleanerStatus {
    pub dirty_ratio: f64,
    pub first_dirty_offset: i64,
    /// Engine clock, ms; -1: never.
    pub last_clean_ms: i64,
}

/// Local segments of a partition as the status needs them.
struct LocalFigures {
    bytes: u64,
    segments: usize,
    lag_bytes: u64,
    lag_segments: usize,
    oldest_untiered_sealed_ms: Option<i64>,
}

impl Engine {
    /// Every partition's tiering state (of `topic` only, when given;
    /// `NotFound` for an unknown one), read now.
    pub fn tier_status(&self, topic: Option<&str>) -> Result<TierStatus> {
        let now = self.now_ms();
        let states = match topic {
            Some(name) => vec![self.logs.topic(name)?],
            None => {
                let mut all = self.logs.topic_states();
                all.sort_by(|a, b| a.record.name.cmp(&b.record.name));
                all
            }
        };
        let mut cleaning: std::collections::HashMap<(String, u32), CleanerStatus> = self
            .log_cleaner_partitions()
            .into_iter()
            .map(|p| {
                let status = CleanerStatus {
                    dirty_ratio: p.cleanable.dirty_ratio,
                    first_dirty_offset: p.cleanable.first_dirty_offset,
                    last_clean_ms: p.checkpoint.last_clean_ms,
                };
                ((p.topic, p.partition), status)
            })
            .collect();
        let mut partitions = Vec::new();
        for state in states {
            let record = &state.record;
            let tiered = TopicConfig::resolve(&record.configs, self.logs.topic_defaults())
                .is_ok_and(|c| c.remote_storage_enable);
            for (p, log) in state.partitions.iter().enumerate() {
                let p = p as u32;
                let rows = lock(&self.catalog).remote_segments(record.id, p)?;
                let mut segments = SegmentStates::default();
                let mut remote_bytes = 0;
                for row in &rows {
                    match row.state {
                        RemoteState::CopyStarted => segments.copy_started += 1,
                        RemoteState::CopyFinished => {
                            segments.copy_finished += 1;
                            remote_bytes += row.total_size();
                        }
                        RemoteState::DeleteStarted => segments.delete_started += 1,
                        RemoteState::DeleteFinished => segments.delete_finished += 1,
                    }
                }
                let tiered_end = crate::tasks::retention::tiered_end(&rows);
                let offsets = log.offsets();
                let local = log.with_log(|l| {
                    let all: Vec<_> = l.segments().collect();
                    let mut f = LocalFigures {
                        bytes: all.iter().map(|s| s.size()).sum(),
                        segments: all.len(),
                        lag_bytes: 0,
                        lag_segments: 0,
                        oldest_untiered_sealed_ms: None,
                    };
                    // Every segment but the last (the active one) is sealed;
                    // it was sealed when the next one was created.
                    for pair in all.windows(2) {
                        let (s, next) = (pair[0], pair[1]);
                        if tiered && !s.is_empty() && s.base_offset() >= tiered_end {
                            f.lag_bytes += s.size();
                            f.lag_segments += 1;
                            f.oldest_untiered_sealed_ms.get_or_insert(next.created_ms());
                        }
                    }
                    Ok(f)
                });
                let offline = match (&offsets, &local) {
                    (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
                    _ => None,
                };
                let offsets = offsets.ok();
                let local = local.ok();
                let failure = self
                    .remote
                    .as_ref()
                    .and_then(|m| m.last_upload_failure(record.id, p));
                partitions.push(PartitionTierStatus {
                    topic: record.name.clone(),
                    topic_id: record.id,
                    partition: p,
                    remote_storage_enable: tiered,
                    offline,
                    log_start_offset: offsets.as_ref().map(|o| o.log_start_offset),
                    local_log_start_offset: offsets.as_ref().map(|o| o.local_log_start_offset),
                    last_tiered_offset: offsets.as_ref().and_then(|o| o.last_tiered_offset),
                    log_end_offset: offsets.as_ref().map(|o| o.log_end_offset),
                    local_bytes: local.as_ref().map_or(0, |l| l.bytes),
                    local_segments: local.as_ref().map_or(0, |l| l.segments),
                    remote_bytes,
                    segments,
                    copy_lag_bytes: local.as_ref().map_or(0, |l| l.lag_bytes),
                    copy_lag_segments: local.as_ref().map_or(0, |l| l.lag_segments),
                    oldest_untiered_age_ms: local
                        .as_ref()
                        .and_then(|l| l.oldest_untiered_sealed_ms)
                        .map(|sealed| now.saturating_sub(sealed).max(0)),
                    last_upload_error: failure.map(|f| UploadErrorStatus {
                        error: f.error,
                        at_ms: f.at_ms,
                        base_offset: f.base_offset,
                        consecutive_failures: f.consecutive_failures,
                        next_attempt_ms: f.next_attempt_ms,
                    }),
                    cleaner: cleaning.remove(&(record.name.clone(), p)),
                });
            }
        }
        Ok(TierStatus {
            format_version: TIER_STATUS_VERSION,
            now_ms: now,
            remote: self.remote.as_ref().map(|m| m.store().url().to_string()),
            partitions,
        })
    }

    /// [`Engine::tier_status`] as the JSON document the admin endpoint
    /// serves.
    pub fn tier_status_json(&self, topic: Option<&str>) -> Result<String> {
        let status = self.tier_status(topic)?;
        serde_json::to_string_pretty(&status).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot encode the tier status: {e}"),
            )
        })
    }
}

/// The endpoint's answer to `GET /v1/tier/status?<query>`: `topic=NAME`
/// (optional) picks one topic; an unknown one is 404, another key 400.
pub(crate) fn route(engine: &Engine, query: &str) -> crate::metrics::Response {
    let mut topic = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            // Kafka topic names are [a-zA-Z0-9._-]: nothing to decode.
            Some(("topic", name)) if !name.is_empty() => topic = Some(name),
            _ => {
                return crate::metrics::Response {
                    status: "400 Bad Request",
                    content_type: "text/plain; charset=utf-8",
                    body: format!("unknown parameter '{pair}' (only topic=NAME)\n"),
                }
            }
        }
    }
    match engine.tier_status_json(topic) {
        Ok(body) => crate::metrics::Response {
            status: "200 OK",
            content_type: "application/json",
            body,
        },
        Err(e) => crate::metrics::Response {
            status: if e.kind() == ErrorKind::NotFound {
                "404 Not Found"
            } else {
                "500 Internal Server Error"
            },
            content_type: "text/plain; charset=utf-8",
            body: format!("{e}\n"),
        },
    }
}
