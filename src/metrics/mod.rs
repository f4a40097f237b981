//! Metrics in the OpenMetrics text format, kept and encoded with the
//! `prometheus-client` crate, and the HTTP endpoint that serves them on the
//! broker's `metrics_listen` address with `/healthz`, `/readyz` and the
//! status page at `/`.
//!
//! Owns: the engine's metrics ([`Metrics`]: one `prometheus-client`
//! `Registry` per engine, so two engines in one process never mix their
//! figures), the lock-free latency [`Histogram`] (`histogram.rs`), requests
//! and response error codes by API (`requests.rs`), the object-store
//! wrapper that counts and times every request the remote tier makes
//! ([`MeteredStore`], `store.rs`), the figures read at scrape time
//! ([`ScrapeFigures`], `figures.rs`: per-partition offsets, the log
//! cleaner, tiering lag, consumer-group lag) and their
//! exposition, the ring of recent warnings and errors (`events.rs`),
//! readiness (`endpoint.rs`), the status page's HTML (`status_page.rs`),
//! and the small HTTP endpoint.
//! Must never know the engine (it is given render closures and figures)
//! and never block a hot path: counters, gauges and histograms are relaxed
//! atomics; only a scrape walks the registry.
//!
//! Names: a counter is registered without its `_total`, which the
//! encoder appends, so every sample keeps the name it had before the
//! crate (`tierlog_append_records_total`); the `# TYPE` line names the
//! family (`tierlog_append_records`), as OpenMetrics wants.

mod endpoint;
mod events;
mod figures;
mod histogram;
mod requests;
mod status_page;
mod store;

pub use endpoint::{serve, Endpoint, Pages, Readiness, Render, Response, Route};

/// Client quota types, the `quota_type` label of the throttle metrics
/// (Kafka's `Produce`, `Fetch`, `Request` quota types).
pub const QUOTA_TYPES: [&str; 3] = ["produce", "fetch", "request"];

/// The exposition's content type (OpenMetrics 1.0, which Prometheus reads).
pub const EXPOSITION: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub use events::{Event, EventLevel, RecentEvents};
pub use figures::{CleanerFigures, CleaningFigures, PartitionFigures, ScrapeFigures, TieringLag};
pub use histogram::{Histogram, Series, LATENCY_BUCKETS, ROUND_BUCKETS};
pub use requests::{error_name, RequestCounters};
pub use status_page::{
    human_bytes, render_status_page, GroupLag, GroupPartitionLag, OfflinePartition, StatusFigures,
};
pub use store::MeteredStore;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use object_store::Result as StoreResult;
use prometheus_client::registry::Registry;

/// A monotonically increasing count (`inc`, `inc_by`, `get`): the crate's
/// atomic counter; clones share the count.
pub type Counter = prometheus_client::metrics::counter::Counter;

/// A value that goes up and down (bytes held, waiters), with the highest
/// value it reached.
#[derive(Debug, Default, Clone)]
pub struct Gauge {
    now: prometheus_client::metrics::gauge::Gauge,
    max: prometheus_client::metrics::gauge::Gauge,
}

impl Gauge {
    pub fn add(&self, n: u64) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let now = self.now.inc_by(n).saturating_add(n);
        self.max.inner().fetch_max(now, Ordering::Relaxed);
    }

    pub fn sub(&self, n: u64) {
        self.now.dec_by(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn get(&self) -> u64 {
        self.now.get().max(0) as u64
    }

    /// The highest value since the engine started.
    pub fn max(&self) -> u64 {
        self.max.get().max(0) as u64
    }
}

/// A cache's lookups: a hit is one served without loading (waiting for
/// another reader's load included), a miss one that loaded the object
/// (a GET); evictions are entries dropped to stay within the cache's
/// bytes; `bytes` is the weight of the entries it holds (added when one is
/// loaded, taken off when the cache reports it removed).
#[derive(Debug, Default, Clone)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub evictions: Counter,
    pub bytes: prometheus_client::metrics::gauge::Gauge,
}

/// The engine's metrics, registered once in its own registry. Figures
/// that live elsewhere (per-partition offsets, the log cleaner's totals,
/// lags) are read at scrape time ([`ScrapeFigures`]).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
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
    /// Kafka requests by API key, and the error codes of their responses
    /// (the broker counts them).
    requests: Arc<RequestCounters>,
    pub connections_opened: Counter,
    pub connections_closed: Counter,
    /// Connections closed on accept: over `max.connections(.per.ip)`.
    pub connections_rejected: Counter,
    /// Connections closed after `connections.max.idle.ms` without activity.
    pub connections_idle_closed: Counter,
    /// TLS handshakes that failed (plaintext on a TLS port, an untrusted
    /// client certificate, a timeout).
    pub tls_handshake_failures: Counter,
    /// SASL authentications that succeeded (re-authentications included).
    pub sasl_authentications: Counter,
    /// SASL authentications refused (SASL_AUTHENTICATION_FAILED).
    pub sasl_authentication_failures: Counter,
    /// Connections closed because their SASL session expired
    /// (`connections.max.reauth.ms`) without re-authentication.
    pub sasl_sessions_expired: Counter,
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
    /// Milliseconds clients were throttled for by their client quotas
    /// (Kafka's `throttle-time`), by quota type in [`QUOTA_TYPES`] order.
    pub quota_throttle_time_ms: [Counter; 3],
    /// Responses throttled by a client quota, by quota type.
    pub quota_throttled: [Counter; 3],
    /// Per-connection warnings not logged by the broker's rate limit.
    pub log_warnings_suppressed: Counter,
    /// Produce requests, decoded to answered (the broker observes it).
    pub produce_duration: Histogram,
    /// One partition's read (a Fetch's or the embedded API's) from local
    /// segments.
    pub read_duration_local: Histogram,
    /// One partition's read for a fetch from the remote tier (chunk cache
    /// and ranged GETs), to its end even when the fetch stopped waiting.
    pub read_duration_remote: Histogram,
    /// Object-store GETs, to the last byte of the body.
    pub remote_get_duration: Histogram,
    /// Object-store PUTs (single, multipart parts and completions).
    pub remote_put_duration: Histogram,
    /// Rounds of the copy (tiering) job.
    pub tiering_round_duration: Histogram,
    /// The remote read path's chunk cache (`remote.cache.bytes`).
    pub chunk_cache: CacheMetrics,
    /// The remote read path's index cache (`remote.index.cache.bytes`).
    pub index_cache: CacheMetrics,
    /// Recent warnings and errors an operator should see (upload failures,
    /// partitions taken offline, failed cleaning or retention), newest
    /// last; shown on the status page.
    pub events: Arc<RecentEvents>,
}

impl Default for Metrics {
    fn default() -> Self {
        let c = Counter::default;
        let mut m = Metrics {
            registry: Registry::default(),
            append_records: c(),
            append_bytes: c(),
            append_errors: c(),
            read_bytes_local: c(),
            read_bytes_remote: c(),
            remote_get_requests: c(),
            remote_get_bytes: c(),
            remote_put_requests: c(),
            remote_put_bytes: c(),
            remote_delete_requests: c(),
            remote_list_requests: c(),
            remote_errors: c(),
            requests: Arc::new(RequestCounters::default()),
            connections_opened: c(),
            connections_closed: c(),
            connections_rejected: c(),
            connections_idle_closed: c(),
            tls_handshake_failures: c(),
            sasl_authentications: c(),
            sasl_authentication_failures: c(),
            sasl_sessions_expired: c(),
            request_read_timeouts: c(),
            request_bytes_buffered: Gauge::default(),
            request_budget_waiters: Gauge::default(),
            requests_abandoned: c(),
            quota_throttle_time_ms: Default::default(),
            quota_throttled: Default::default(),
            log_warnings_suppressed: c(),
            produce_duration: Histogram::latency(),
            read_duration_local: Histogram::latency(),
            read_duration_remote: Histogram::latency(),
            remote_get_duration: Histogram::latency(),
            remote_put_duration: Histogram::latency(),
            tiering_round_duration: Histogram::new(&ROUND_BUCKETS),
            chunk_cache: CacheMetrics::default(),
            index_cache: CacheMetrics::default(),
            events: Arc::new(RecentEvents::default()),
        };
        m.register();
        m
    }
}

impl Metrics {
    /// Register every metric in the engine's registry (once, at creation;
    /// the registry holds clones sharing the same atomics).
    fn register(&mut self) {
        let r = &mut self.registry;
        // Counters: the encoder appends `_total` to these names.
        let counters: [(&str, &str, &Counter); 23] = [
            ("tierlog_append_records", "records appended", &self.append_records),
            ("tierlog_append_bytes", "record batch bytes appended", &self.append_bytes),
            ("tierlog_append_errors", "appends refused or failed", &self.append_errors),
            (
                "tierlog_read_local_bytes",
                "record bytes read from local segments",
                &self.read_bytes_local,
            ),
            (
                "tierlog_read_remote_bytes",
                "record bytes read from the remote tier",
                &self.read_bytes_remote,
            ),
            (
                "tierlog_remote_get_requests",
                "GET requests to the object store (ranged reads included)",
                &self.remote_get_requests,
            ),
            (
                "tierlog_remote_get_bytes",
                "bytes received from the object store",
                &self.remote_get_bytes,
            ),
            (
                "tierlog_remote_put_requests",
                "PUT requests, multipart starts, parts and completions",
                &self.remote_put_requests,
            ),
            (
                "tierlog_remote_put_bytes",
                "bytes sent to the object store",
                &self.remote_put_bytes,
            ),
            (
                "tierlog_remote_delete_requests",
                "objects deleted from the object store",
                &self.remote_delete_requests,
            ),
            (
                "tierlog_remote_list_requests",
                "LIST requests to the object store",
                &self.remote_list_requests,
            ),
            (
                "tierlog_remote_errors",
                "object store requests that failed",
                &self.remote_errors,
            ),
            (
                "tierlog_connections_opened",
                "Kafka connections accepted",
                &self.connections_opened,
            ),
            (
                "tierlog_connections_closed",
                "Kafka connections ended",
                &self.connections_closed,
            ),
            (
                "tierlog_connections_rejected",
                "Kafka connections closed on accept (max.connections, max.connections.per.ip)",
                &self.connections_rejected,
            ),
            (
                "tierlog_connections_idle_closed",
                "Kafka connections closed after connections.max.idle.ms idle",
                &self.connections_idle_closed,
            ),
            (
                "tierlog_tls_handshake_failures",
                "TLS handshakes that failed on SSL and SASL_SSL listeners",
                &self.tls_handshake_failures,
            ),
            (
                "tierlog_sasl_authentications",
                "SASL authentications that succeeded",
                &self.sasl_authentications,
            ),
            (
                "tierlog_sasl_authentication_failures",
                "SASL authentications refused (SASL_AUTHENTICATION_FAILED)",
                &self.sasl_authentication_failures,
            ),
            (
                "tierlog_sasl_sessions_expired",
                "connections closed at the end of their SASL session (connections.max.reauth.ms)",
                &self.sasl_sessions_expired,
            ),
            (
                "tierlog_request_read_timeouts",
                "Kafka connections closed because a request frame did not arrive within request_read_timeout_ms",
                &self.request_read_timeouts,
            ),
            (
                "tierlog_requests_abandoned",
                "requests whose client disconnected before the answer (work stopped)",
                &self.requests_abandoned,
            ),
            (
                "tierlog_log_warnings_suppressed",
                "per-connection warnings dropped by the log rate limit",
                &self.log_warnings_suppressed,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "tierlog_request_bytes_buffered",
            "request bytes held now (queued.max.request.bytes bounds it)",
            self.request_bytes_buffered.now.clone(),
        );
        r.register(
            "tierlog_request_bytes_buffered_max",
            "most request bytes held at once since start",
            self.request_bytes_buffered.max.clone(),
        );
        r.register(
            "tierlog_request_budget_waiters",
            "connections waiting for room in queued.max.request.bytes",
            self.request_budget_waiters.now.clone(),
        );
        let quota_series = |counters: &[Counter; 3]| {
            Series::new(
                "quota_type",
                QUOTA_TYPES
                    .iter()
                    .zip(counters)
                    .map(|(t, c)| (*t, c.clone()))
                    .collect(),
            )
        };
        r.register(
            "tierlog_client_quota_throttle_time_ms",
            "milliseconds responses were throttled for by client quotas (produce: producer_byte_rate, fetch: consumer_byte_rate, request: request_percentage)",
            quota_series(&self.quota_throttle_time_ms),
        );
        r.register(
            "tierlog_client_quota_throttled",
            "responses throttled by a client quota, by quota type",
            quota_series(&self.quota_throttled),
        );
        r.register_collector(Box::new(requests::RequestsCollector(Arc::clone(
            &self.requests,
        ))));
        r.register(
            "tierlog_produce_duration_seconds",
            "Produce requests: decoded to answered (validation, append, fsync when due)",
            self.produce_duration.clone(),
        );
        r.register(
            "tierlog_read_duration_seconds",
            "one partition's read (a Fetch's or the embedded API's), by the tier that served it (long-poll waits excluded)",
            Series::new(
                "tier",
                vec![
                    ("local", self.read_duration_local.clone()),
                    ("remote", self.read_duration_remote.clone()),
                ],
            ),
        );
        r.register(
            "tierlog_remote_get_duration_seconds",
            "object store GETs, to the body's last byte",
            self.remote_get_duration.clone(),
        );
        r.register(
            "tierlog_remote_put_duration_seconds",
            "object store PUTs, multipart parts and completions",
            self.remote_put_duration.clone(),
        );
        r.register(
            "tierlog_tiering_round_duration_seconds",
            "rounds of the copy (tiering) job",
            self.tiering_round_duration.clone(),
        );
        let caches = |f: fn(&CacheMetrics) -> &Counter| {
            Series::new(
                "cache",
                vec![
                    ("chunk", f(&self.chunk_cache).clone()),
                    ("index", f(&self.index_cache).clone()),
                ],
            )
        };
        r.register(
            "tierlog_remote_cache_hits",
            "remote read cache lookups served from memory (chunk: .log chunks, index: decoded .index/.timeindex)",
            caches(|c| &c.hits),
        );
        r.register(
            "tierlog_remote_cache_misses",
            "remote read cache lookups that loaded from the object store",
            caches(|c| &c.misses),
        );
        r.register(
            "tierlog_remote_cache_evictions",
            "remote read cache entries evicted to stay within the cache's bytes",
            caches(|c| &c.evictions),
        );
        r.register(
            "tierlog_remote_cache_bytes",
            "bytes held by the remote read caches (chunk: remote.cache.bytes, index: remote.index.cache.bytes)",
            Series::new(
                "cache",
                vec![
                    ("chunk", self.chunk_cache.bytes.clone()),
                    ("index", self.index_cache.bytes.clone()),
                ],
            ),
        );
    }

    /// Count one Kafka request with API key `api_key`.
    pub fn request(&self, api_key: i16) {
        self.requests.request(api_key);
    }

    /// Kafka requests so far with API key `api_key`.
    pub fn requests(&self, api_key: i16) -> u64 {
        self.requests.requests(api_key)
    }

    /// Count error `code` (Kafka's) in a response to `api_key`; 0 is not
    /// an error and is not counted.
    pub fn request_error(&self, api_key: i16, code: i16) {
        self.requests.error(api_key, code);
    }

    /// Error `code` in responses to `api_key` so far.
    pub fn request_errors(&self, api_key: i16, code: i16) -> u64 {
        self.requests.errors(api_key, code)
    }

    /// Count `r` in `remote_errors` when it failed; pass it on.
    pub(crate) fn store_result<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        if r.is_err() {
            self.remote_errors.inc();
        }
        r
    }
}

/// The exposition text: the registry's metrics, then the figures read
/// now, then OpenMetrics' `# EOF`.
pub fn render(m: &Metrics, figures: ScrapeFigures) -> String {
    let mut out = String::with_capacity(16384 + figures.partitions.len() * 1024);
    let mut scraped = Registry::default();
    scraped.register_collector(Box::new(figures));
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &m.registry);
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &scraped);
    let _ = prometheus_client::encoding::text::encode_eof(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_and_escapes_labels() {
        let m = Metrics::default();
        m.append_bytes.inc_by(42);
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
        m.produce_duration
            .observe(std::time::Duration::from_millis(3));
        m.request_error(1, 3);
        m.chunk_cache.hits.inc();
        m.chunk_cache.bytes.inc_by(1024);
        let groups = vec![GroupLag {
            group: "g\"1".into(),
            partitions: vec![
                GroupPartitionLag {
                    topic: "table".into(),
                    partition: 0,
                    committed: 4,
                    log_end_offset: Some(9),
                },
                // A partition gone: no lag, its committed offset only.
                GroupPartitionLag {
                    topic: "gone".into(),
                    partition: 0,
                    committed: 2,
                    log_end_offset: None,
                },
            ],
        }];
        let tiering_lag = vec![TieringLag {
            topic: "table".into(),
            partition: 0,
            bytes: 4096,
            segments: 2,
            seconds: 1.5,
        }];
        let text = render(
            &m,
            ScrapeFigures {
                cleaner,
                partitions: vec![plain, compacted],
                tiering_lag,
                groups,
            },
        );
        for line in [
            "tierlog_produce_duration_seconds_count 1\n",
            "tierlog_produce_duration_seconds_bucket{le=\"0.005\"} 1\n",
            "tierlog_read_duration_seconds_count{tier=\"remote\"} 0\n",
            "tierlog_request_errors_total{api=\"Fetch\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 1\n",
            "tierlog_remote_cache_hits_total{cache=\"chunk\"} 1\n",
            "tierlog_remote_cache_misses_total{cache=\"index\"} 0\n",
            "tierlog_remote_cache_bytes{cache=\"chunk\"} 1024\n",
            "tierlog_tiering_lag_bytes{topic=\"table\",partition=\"0\"} 4096\n",
            "tierlog_tiering_lag_segments{topic=\"table\",partition=\"0\"} 2\n",
            "tierlog_tiering_lag_seconds{topic=\"table\",partition=\"0\"} 1.5\n",
            "tierlog_consumer_group_lag{group=\"g\\\"1\",topic=\"table\",partition=\"0\"} 5\n",
            "tierlog_consumer_group_committed_offset{group=\"g\\\"1\",topic=\"gone\",partition=\"0\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains("tierlog_consumer_group_lag{group=\"g\\\"1\",topic=\"gone\""),
            "{text}"
        );
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
        // Every sample line belongs to a family declared before it, with
        // the suffix its type gives it; the text ends as OpenMetrics wants.
        let mut declared = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                declared.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let ok = declared.iter().any(|(family, kind)| match kind.as_str() {
                    "counter" => name == format!("{family}_total"),
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name == format!("{family}{s}")),
                    _ => name == family,
                });
                assert!(ok, "undeclared {name}");
            }
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
