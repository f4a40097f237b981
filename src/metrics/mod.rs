//! Metrics in the Prometheus text exposition format (0.0.4), and the HTTP
//! endpoint that serves them on the broker's `metrics_listen` address with
//! `/healthz`, `/readyz` and the status page at `/`.
//!
//! Owns: the engine's counters ([`Metrics`], one registry per engine, so
//! two engines in one process never mix their figures), the object-store
//! wrapper that counts every request the remote tier makes
//! ([`MeteredStore`], `store.rs`), the rendering of counters and
//! per-partition figures read at scrape time, the ring of recent
//! warnings and errors (`events.rs`), readiness (`endpoint.rs`), the
//! status page's HTML (`status_page.rs`), and the small HTTP endpoint.
//! Must never know the engine (it is given render closures and figures)
//! and never block a hot path: counters are relaxed atomics.

mod endpoint;
mod events;
mod status_page;
mod store;

pub use endpoint::{serve, Endpoint, Pages, Readiness, Render, Response, Route};

/// The Prometheus exposition's content type.
pub const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";
pub use events::{Event, EventLevel, RecentEvents};
pub use status_page::{
    render_status_page, GroupLag, GroupPartitionLag, OfflinePartition, StatusFigures,
};
pub use store::MeteredStore;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use object_store::Result as StoreResult;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (bytes held, waiters), with the highest
/// value it reached.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicU64,
    max: AtomicU64,
}

impl Gauge {
    pub fn add(&self, n: u64) {
        let now = self.now.fetch_add(n, Ordering::Relaxed) + n;
        self.max.fetch_max(now, Ordering::Relaxed);
    }

    pub fn sub(&self, n: u64) {
        self.now.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// The highest value since the engine started.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }
}

/// Highest Kafka API key counted per key (higher ones share the last slot).
const API_SLOTS: usize = 128;

/// The engine's counters. Per-partition offsets are not kept here: they are
/// read from the partitions when scraped.
#[derive(Debug)]
pub struct Metrics {
    pub append_records: Counter,
    pub append_bytes: Counter,
    pub append_errors: Counter,
    pub read_bytes_local: Counter,
    pub read_bytes_remote: Counter,
    pub remote_get_requests: Counter,
    pub remote_get_bytes: Counter,
    pub remote_put_requests: Counter,
    pub remote_put_bytes: Counter,
    pub remote_delete_requests: Counter,
    pub remote_list_requests: Counter,
    pub remote_errors: Counter,
    /// Kafka requests by API key (the broker counts them).
    requests: Vec<Counter>,
    pub connections_opened: Counter,
    pub connections_closed: Counter,
    /// Connections closed on accept: over `max.connections(.per.ip)`.
    pub connections_rejected: Counter,
    /// Connections closed after `connections.max.idle.ms` without activity.
    pub connections_idle_closed: Counter,
    /// Connections closed because a request frame did not arrive within
    /// `request_read_timeout_ms`.
    pub request_read_timeouts: Counter,
    /// Request bytes the broker holds (frame bodies being read, queued or
    /// handled), within `queued.max.request.bytes`.
    pub request_bytes_buffered: Gauge,
    /// Connections waiting for room in `queued.max.request.bytes` before
    /// reading a frame body.
    pub request_budget_waiters: Gauge,
    /// Requests abandoned because their client disconnected.
    pub requests_abandoned: Counter,
    /// Per-connection warnings not logged by the broker's rate limit.
    pub log_warnings_suppressed: Counter,
    /// Recent warnings and errors an operator should see (upload failures,
    /// partitions taken offline, failed cleaning or retention), newest
    /// last; shown on the status page.
    pub events: Arc<RecentEvents>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            append_records: Counter::default(),
            append_bytes: Counter::default(),
            append_errors: Counter::default(),
            read_bytes_local: Counter::default(),
            read_bytes_remote: Counter::default(),
            remote_get_requests: Counter::default(),
            remote_get_bytes: Counter::default(),
            remote_put_requests: Counter::default(),
            remote_put_bytes: Counter::default(),
            remote_delete_requests: Counter::default(),
            remote_list_requests: Counter::default(),
            remote_errors: Counter::default(),
            requests: (0..API_SLOTS).map(|_| Counter::default()).collect(),
            connections_opened: Counter::default(),
            connections_closed: Counter::default(),
            connections_rejected: Counter::default(),
            connections_idle_closed: Counter::default(),
            request_read_timeouts: Counter::default(),
            request_bytes_buffered: Gauge::default(),
            request_budget_waiters: Gauge::default(),
            requests_abandoned: Counter::default(),
            log_warnings_suppressed: Counter::default(),
            events: Arc::new(RecentEvents::default()),
        }
    }
}

impl Metrics {
    /// Count one Kafka request with API key `api_key`.
    pub fn request(&self, api_key: i16) {
        let slot = usize::try_from(api_key).unwrap_or(0).min(API_SLOTS - 1);
        self.requests[slot].add(1);
    }

    /// Count `r` in `remote_errors` when it failed; pass it on.
    pub(crate) fn store_result<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        if r.is_err() {
            self.remote_errors.add(1);
        }
        r
    }

    /// Kafka requests so far with API key `api_key`.
    pub fn requests(&self, api_key: i16) -> u64 {
        let slot = usize::try_from(api_key).unwrap_or(0).min(API_SLOTS - 1);
        self.requests[slot].get()
    }
}

/// One partition's figures at scrape time.
#[derive(Debug, Clone)]
pub struct PartitionFigures {
    pub topic: String,
    pub partition: u32,
    pub log_start_offset: i64,
    pub local_log_start_offset: i64,
    pub log_end_offset: i64,
    /// -1 when nothing is tiered.
    pub last_tiered_offset: i64,
    /// Bytes of the local segments.
    pub local_bytes: u64,
    /// Bytes of the `.log` objects of its `COPY_FINISHED` segments.
    pub remote_bytes: u64,
    /// The topic has `remote.storage.enable=true` and a remote tier is
    /// configured.
    pub remote_storage: bool,
    /// The log cleaner's state, for a partition of a compacted topic.
    pub cleaning: Option<CleaningFigures>,
}

impl PartitionFigures {
    /// Offsets not yet in the remote tier (the active segment's included:
    /// only sealed segments are tiered); `None` when the partition is not
    /// tiered at all.
    pub fn tiering_lag(&self) -> Option<i64> {
        let tiered_end = (self.last_tiered_offset + 1).max(self.log_start_offset);
        self.remote_storage
            .then(|| (self.log_end_offset - tiered_end).max(0))
    }
}

/// A compacted partition's cleaning state at scrape time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleaningFigures {
    /// Dirty bytes ÷ (clean + dirty) over its cleanable section.
    pub dirty_ratio: f64,
    /// Where the dirty section starts.
    pub first_dirty_offset: i64,
    /// When its last cleaning pass ended (engine clock, ms); -1: never.
    pub last_clean_ms: i64,
}

/// The log cleaner's totals since the engine started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanerFigures {
    pub passes: u64,
    pub failures: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests of tiered compaction to the remote tier.
    pub remote_get_requests: u64,
    pub remote_put_requests: u64,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Reads one figure of a partition.
type Figure = fn(&PartitionFigures) -> i64;
/// Formats one cleaning figure of a compacted partition.
type CleaningFigure = fn(&CleaningFigures) -> String;

/// The exposition text: every counter, the log cleaner's totals, then
/// per-partition gauges.
pub fn render(m: &Metrics, cleaner: &CleanerFigures, partitions: &[PartitionFigures]) -> String {
    let mut out = String::with_capacity(4096 + partitions.len() * 512);
    let counters: [(&str, &str, &Counter); 19] = [
        (
            "tierlog_append_records_total",
            "records appended",
            &m.append_records,
        ),
        (
            "tierlog_append_bytes_total",
            "record batch bytes appended",
            &m.append_bytes,
        ),
        (
            "tierlog_append_errors_total",
            "appends refused or failed",
            &m.append_errors,
        ),
        (
            "tierlog_read_local_bytes_total",
            "record bytes read from local segments",
            &m.read_bytes_local,
        ),
        (
            "tierlog_read_remote_bytes_total",
            "record bytes read from the remote tier",
            &m.read_bytes_remote,
        ),
        (
            "tierlog_remote_get_requests_total",
            "GET requests to the object store (ranged reads included)",
            &m.remote_get_requests,
        ),
        (
            "tierlog_remote_get_bytes_total",
            "bytes received from the object store",
            &m.remote_get_bytes,
        ),
        (
            "tierlog_remote_put_requests_total",
            "PUT requests, multipart starts, parts and completions",
            &m.remote_put_requests,
        ),
        (
            "tierlog_remote_put_bytes_total",
            "bytes sent to the object store",
            &m.remote_put_bytes,
        ),
        (
            "tierlog_remote_delete_requests_total",
            "objects deleted from the object store",
            &m.remote_delete_requests,
        ),
        (
            "tierlog_remote_list_requests_total",
            "LIST requests to the object store",
            &m.remote_list_requests,
        ),
        (
            "tierlog_remote_errors_total",
            "object store requests that failed",
            &m.remote_errors,
        ),
        (
            "tierlog_connections_opened_total",
            "Kafka connections accepted",
            &m.connections_opened,
        ),
        (
            "tierlog_connections_closed_total",
            "Kafka connections ended",
            &m.connections_closed,
        ),
        (
            "tierlog_connections_rejected_total",
            "Kafka connections closed on accept (max.connections, max.connections.per.ip)",
            &m.connections_rejected,
        ),
        (
            "tierlog_connections_idle_closed_total",
            "Kafka connections closed after connections.max.idle.ms idle",
            &m.connections_idle_closed,
        ),
        (
            "tierlog_request_read_timeouts_total",
            "Kafka connections closed because a request frame did not arrive within request_read_timeout_ms",
            &m.request_read_timeouts,
        ),
        (
            "tierlog_requests_abandoned_total",
            "requests whose client disconnected before the answer (work stopped)",
            &m.requests_abandoned,
        ),
        (
            "tierlog_log_warnings_suppressed_total",
            "per-connection warnings dropped by the log rate limit",
            &m.log_warnings_suppressed,
        ),
    ];
    for (name, help, c) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", c.get());
    }
    let broker_gauges: [(&str, &str, u64); 3] = [
        (
            "tierlog_request_bytes_buffered",
            "request bytes held now (queued.max.request.bytes bounds it)",
            m.request_bytes_buffered.get(),
        ),
        (
            "tierlog_request_bytes_buffered_max",
            "most request bytes held at once since start",
            m.request_bytes_buffered.max(),
        ),
        (
            "tierlog_request_budget_waiters",
            "connections waiting for room in queued.max.request.bytes",
            m.request_budget_waiters.get(),
        ),
    ];
    for (name, help, v) in broker_gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }
    let cleaner_counters: [(&str, &str, u64); 6] = [
        (
            "tierlog_log_cleaner_passes_total",
            "log cleaner passes finished (one partition each)",
            cleaner.passes,
        ),
        (
            "tierlog_log_cleaner_failures_total",
            "log cleaner passes that failed (retried next run)",
            cleaner.failures,
        ),
        (
            "tierlog_log_cleaner_read_bytes_total",
            "segment bytes the log cleaner read (key map and rewrite)",
            cleaner.bytes_read,
        ),
        (
            "tierlog_log_cleaner_write_bytes_total",
            "segment bytes the log cleaner wrote",
            cleaner.bytes_written,
        ),
        (
            "tierlog_log_cleaner_remote_get_requests_total",
            "GET requests tiered compaction made to the remote tier",
            cleaner.remote_get_requests,
        ),
        (
            "tierlog_log_cleaner_remote_put_requests_total",
            "PUT requests tiered compaction made to the remote tier",
            cleaner.remote_put_requests,
        ),
    ];
    for (name, help, v) in cleaner_counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    family(
        &mut out,
        "tierlog_requests_total",
        "counter",
        "Kafka requests by API",
    );
    for (key, c) in m.requests.iter().enumerate() {
        let n = c.get();
        if n == 0 {
            continue;
        }
        let api = kafka_protocol::messages::ApiKey::try_from(key as i16)
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|_| format!("api_{key}"));
        let _ = writeln!(out, "tierlog_requests_total{{api=\"{api}\"}} {n}");
    }
    let gauges: [(&str, &str, Figure); 6] = [
        (
            "tierlog_log_start_offset",
            "first offset of the log, remote tier included",
            |p| p.log_start_offset,
        ),
        (
            "tierlog_local_log_start_offset",
            "first offset on local disk",
            |p| p.local_log_start_offset,
        ),
        (
            "tierlog_log_end_offset",
            "offset the next record gets",
            |p| p.log_end_offset,
        ),
        (
            "tierlog_last_tiered_offset",
            "last offset in the remote tier (-1: none)",
            |p| p.last_tiered_offset,
        ),
        (
            "tierlog_local_log_bytes",
            "bytes of the local segments",
            |p| p.local_bytes as i64,
        ),
        (
            "tierlog_remote_log_bytes",
            "bytes of the tiered segments' .log objects",
            |p| p.remote_bytes as i64,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        for p in partitions {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                label(&p.topic),
                p.partition,
                value(p)
            );
        }
    }
    let cleaning: [(&str, &str, CleaningFigure); 3] = [
        (
            "tierlog_log_cleaner_dirty_ratio",
            "compacted partitions: dirty bytes / (clean + dirty) over the cleanable section",
            |c| c.dirty_ratio.to_string(),
        ),
        (
            "tierlog_log_cleaner_first_dirty_offset",
            "compacted partitions: where the uncleaned section starts",
            |c| c.first_dirty_offset.to_string(),
        ),
        (
            "tierlog_log_cleaner_last_clean_timestamp_ms",
            "compacted partitions: when the last cleaning pass ended (-1: never)",
            |c| c.last_clean_ms.to_string(),
        ),
    ];
    for (name, help, value) in cleaning {
        family(&mut out, name, "gauge", help);
        for p in partitions {
            if let Some(c) = &p.cleaning {
                let _ = writeln!(
                    out,
                    "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                    label(&p.topic),
                    p.partition,
                    value(c)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_and_escapes_labels() {
        let m = Metrics::default();
        m.append_bytes.add(42);
        m.request(0);
        m.request(0);
        m.request(1);
        let cleaner = CleanerFigures {
            passes: 3,
            failures: 1,
            bytes_read: 4096,
            bytes_written: 512,
            remote_get_requests: 7,
            remote_put_requests: 2,
        };
        let plain = PartitionFigures {
            topic: "we\"ird\\".into(),
            partition: 3,
            log_start_offset: 0,
            local_log_start_offset: 5,
            log_end_offset: 9,
            last_tiered_offset: 4,
            local_bytes: 100,
            remote_bytes: 250,
            remote_storage: true,
            cleaning: None,
        };
        let compacted = PartitionFigures {
            topic: "table".into(),
            partition: 0,
            cleaning: Some(CleaningFigures {
                dirty_ratio: 0.25,
                first_dirty_offset: 7,
                last_clean_ms: 1_700_000_000_000,
            }),
            ..plain.clone()
        };
        let text = render(&m, &cleaner, &[plain, compacted]);
        for line in [
            "tierlog_log_cleaner_passes_total 3\n",
            "tierlog_log_cleaner_failures_total 1\n",
            "tierlog_log_cleaner_read_bytes_total 4096\n",
            "tierlog_log_cleaner_remote_put_requests_total 2\n",
            "tierlog_log_cleaner_write_bytes_total 512\n",
            "tierlog_log_cleaner_dirty_ratio{topic=\"table\",partition=\"0\"} 0.25\n",
            "tierlog_log_cleaner_first_dirty_offset{topic=\"table\",partition=\"0\"} 7\n",
            "tierlog_log_cleaner_last_clean_timestamp_ms{topic=\"table\",partition=\"0\"} 1700000000000\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Only compacted partitions have cleaning gauges.
        assert!(
            !text.contains("tierlog_log_cleaner_dirty_ratio{topic=\"we"),
            "{text}"
        );
        assert!(text.contains("tierlog_append_bytes_total 42\n"), "{text}");
        assert!(
            text.contains("tierlog_remote_log_bytes{topic=\"table\",partition=\"0\"} 250\n"),
            "{text}"
        );
        assert!(
            text.contains("tierlog_requests_total{api=\"Produce\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("tierlog_requests_total{api=\"Fetch\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tierlog_log_end_offset{topic=\"we\\\"ird\\\\\",partition=\"3\"} 9\n"),
            "{text}"
        );
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "undeclared {name}");
            }
        }
    }
}
