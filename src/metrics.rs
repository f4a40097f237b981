//! Metrics in the Prometheus text exposition format (0.0.4), served at
//! `GET /metrics` on the broker's `metrics_listen` address.
//!
//! Owns: the engine's counters ([`Metrics`], one registry per engine, so
//! two engines in one process never mix their figures), the object-store
//! wrapper that counts every request the remote tier makes
//! ([`MeteredStore`]), the rendering of counters and per-partition offsets
//! read at scrape time, and the small HTTP endpoint (it serves the routes
//! it is given: `/metrics`, and the engine's `/v1/tier/status`). Must
//! never block a hot path: counters are relaxed atomics.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as StoreResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    fn store_result<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
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
    /// The log cleaner's state, for a partition of a compacted topic.
    pub cleaning: Option<CleaningFigures>,
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
    let gauges: [(&str, &str, Figure); 4] = [
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

/// Counts every request the remote tier makes to `inner` (and its errors)
/// in the engine's [`Metrics`].
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }

    fn count<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        self.metrics.store_result(r)
    }
}

impl std::fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

/// A multipart upload whose parts and completion are counted.
#[derive(Debug)]
struct MeteredUpload {
    inner: Box<dyn MultipartUpload>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        self.metrics.remote_put_requests.add(1);
        self.metrics
            .remote_put_bytes
            .add(data.content_length() as u64);
        let metrics = Arc::clone(&self.metrics);
        let part = self.inner.put_part(data);
        Box::pin(async move { metrics.store_result(part.await) })
    }

    async fn complete(&mut self) -> StoreResult<PutResult> {
        self.metrics.remote_put_requests.add(1);
        let r = self.inner.complete().await;
        self.metrics.store_result(r)
    }

    async fn abort(&mut self) -> StoreResult<()> {
        let r = self.inner.abort().await;
        self.metrics.store_result(r)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        self.metrics.remote_put_requests.add(1);
        self.metrics
            .remote_put_bytes
            .add(payload.content_length() as u64);
        let r = self.inner.put_opts(location, payload, opts).await;
        self.count(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        self.metrics.remote_put_requests.add(1);
        let inner = self.count(self.inner.put_multipart_opts(location, opts).await)?;
        Ok(Box::new(MeteredUpload {
            inner,
            metrics: Arc::clone(&self.metrics),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> StoreResult<GetResult> {
        self.metrics.remote_get_requests.add(1);
        let head = options.head;
        let mut r = self.count(self.inner.get_opts(location, options).await)?;
        if head {
            return Ok(r);
        }
        // Stream bodies are counted as their bytes arrive; a local file's
        // by the range it serves.
        let metrics = Arc::clone(&self.metrics);
        r.payload = match r.payload {
            object_store::GetResultPayload::Stream(s) => object_store::GetResultPayload::Stream(
                s.inspect(move |chunk| match chunk {
                    Ok(b) => metrics.remote_get_bytes.add(b.len() as u64),
                    Err(_) => metrics.remote_errors.add(1),
                })
                .boxed(),
            ),
            #[allow(unreachable_patterns)]
            other => {
                metrics.remote_get_bytes.add(r.range.end - r.range.start);
                other
            }
        };
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> StoreResult<Vec<Bytes>> {
        self.metrics.remote_get_requests.add(ranges.len() as u64);
        let r = self.count(self.inner.get_ranges(location, ranges).await)?;
        let bytes: usize = r.iter().map(Bytes::len).sum();
        self.metrics.remote_get_bytes.add(bytes as u64);
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<Path>>,
    ) -> BoxStream<'static, StoreResult<Path>> {
        let metrics = Arc::clone(&self.metrics);
        let errors = Arc::clone(&self.metrics);
        let counted = locations
            .inspect(move |_| metrics.remote_delete_requests.add(1))
            .boxed();
        self.inner
            .delete_stream(counted)
            .inspect(move |r| {
                if r.is_err() {
                    errors.remote_errors.add(1);
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        self.metrics.remote_list_requests.add(1);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> StoreResult<ListResult> {
        self.metrics.remote_list_requests.add(1);
        let r = self.inner.list_with_delimiter(prefix).await;
        self.count(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> StoreResult<()> {
        let r = self.inner.copy_opts(from, to, options).await;
        self.count(r)
    }
}

/// One answer of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `200 OK`, `404 Not Found`, …
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

/// The Prometheus exposition's content type.
pub const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers `GET <path>?<query>` given the query (`""` without one); `None`
/// once the engine is gone. Runs on a blocking thread.
pub type Route = dyn Fn(&str) -> Option<Response> + Send + Sync;

/// The endpoint's paths (`/metrics`, `/v1/tier/status`) and their routes.
pub type Routes = Vec<(&'static str, Arc<Route>)>;

/// Largest request head the endpoint reads.
const MAX_HEAD: usize = 8 * 1024;

/// Serve `GET` of each route's path (`/metrics`, …) on `listener` until
/// `shutdown` turns true, one short-lived task per connection
/// (`Connection: close`). Another path gets 404, another method 405.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: Routes,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let routes = Arc::new(routes);
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "metrics endpoint ready (GET /metrics)"
    );
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint cannot accept");
                crate::clock::monotonic_sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let routes = Arc::clone(&routes);
        tokio::spawn(async move {
            let answer =
                tokio::time::timeout(std::time::Duration::from_secs(10), answer(stream, routes))
                    .await;
            if let Ok(Err(e)) = answer {
                tracing::debug!(%peer, error = %e, "metrics request failed");
            }
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, routes: Arc<Routes>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let target = String::from_utf8_lossy(target).into_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let plain = |status, body: &str| Response {
        status,
        content_type: EXPOSITION,
        body: body.to_string(),
    };
    let route = routes.iter().find(|(p, _)| *p == path).map(|(_, r)| r);
    let r = match (method, route) {
        (b"GET", Some(route)) => {
            let (route, query) = (Arc::clone(route), query.to_string());
            match tokio::task::spawn_blocking(move || route(&query)).await {
                Ok(Some(r)) => r,
                _ => plain("503 Service Unavailable", "the engine is shut down\n"),
            }
        }
        (_, Some(_)) => plain("405 Method Not Allowed", "only GET\n"),
        _ => plain("404 Not Found", "see /metrics\n"),
    };
    let response = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        r.status,
        r.content_type,
        r.body.len(),
        r.body
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
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
